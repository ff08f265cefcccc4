//! Crash-safe file writes and bounded reads that name the file on every error, and the
//! versioned JSON records of the store.
//!
//! A write goes to a new temporary file in the same directory (created with `O_EXCL`
//! under an unpredictable name), is fsynced, renamed over the old file, and the directory
//! is fsynced: a crash at any point leaves the old or the new content, never a mix
//! (DESIGN.md §6). The store writes through `CheckedDir`;
//! the path-based functions here are for files a user names (an exported certificate).

use std::os::fd::AsFd;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checked_dir;
use crate::error::{Error, Result};

/// Format version written into every store file.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Largest file [`read_record`] reads: the largest store file kind (object files).
pub(crate) const READ_LIMIT: u64 = 1 << 20;

/// Writes `bytes` to `path` atomically (mode 0600). With `durable` the data and the
/// directory entry are fsynced; without it (retry counters, DESIGN.md §6) a crash may
/// lose the write but never leaves a torn file. The directory is the one `path` names
/// (links above the file are followed: the user chose the path); the file itself is
/// replaced, never written through a link.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let (dir, name) = split(path)?;
    let fd = checked_dir::open_dir_unchecked(dir)?;
    checked_dir::write_atomic_in(fd.as_fd(), dir, name, bytes, durable)
}

/// Serializes `value` as a versioned JSON record and writes it atomically.
pub(crate) fn write_record<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    write_atomic(path, &encode_record(path, value)?, durable)
}

/// Reads a versioned JSON record (at most [`READ_LIMIT`] bytes, a regular file, not
/// through a link). A missing, truncated, malformed or newer-format file is an error
/// naming the file, never a panic.
pub(crate) fn read_record<T: DeserializeOwned>(path: &Path) -> Result<T> {
    decode_record(path, &checked_dir::read_path(path, READ_LIMIT)?)
}

/// `value` as the bytes of a versioned JSON record (`path` names it in errors).
pub(crate) fn encode_record<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    let mut v = serde_json::to_value(value).map_err(|e| Error::corrupt(path, e.to_string()))?;
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("version".into(), FORMAT_VERSION.into());
    }
    let mut bytes =
        serde_json::to_vec_pretty(&v).map_err(|e| Error::corrupt(path, e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parses the bytes of a versioned JSON record read from `path`.
pub(crate) fn decode_record<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(
            path,
            format!("not valid JSON ({e}); the file is truncated or altered"),
        )
    })?;
    match v.get("version").and_then(serde_json::Value::as_u64) {
        Some(n) if n == u64::from(FORMAT_VERSION) => {}
        Some(n) => {
            return Err(Error::corrupt(
                path,
                format!(
                    "format version {n} is not supported by this tpmvsc (knows {FORMAT_VERSION})"
                ),
            ));
        }
        None => return Err(Error::corrupt(path, "no format version")),
    }
    serde_json::from_value(v).map_err(|e| Error::corrupt(path, format!("unexpected content: {e}")))
}

/// The directory and the file name of `path`.
fn split(path: &Path) -> Result<(&Path, &str)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::Usage(format!(
            "{}: not a file name tpmvsc can write",
            path.display()
        ))
    })?;
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::fs;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Rec {
        a: u32,
    }

    #[test]
    fn record_round_trips_and_carries_its_version() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        write_record(&p, &Rec { a: 7 }, true).unwrap();
        assert!(fs::read_to_string(&p).unwrap().contains("\"version\": 1"));
        assert_eq!(read_record::<Rec>(&p).unwrap(), Rec { a: 7 });
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn truncated_garbage_and_future_files_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("card.json");
        write_record(&p, &Rec { a: 7 }, false).unwrap();
        let full = fs::read(&p).unwrap();
        fs::write(&p, &full[..full.len() / 2]).unwrap();
        let e = read_record::<Rec>(&p).unwrap_err().to_string();
        assert!(e.contains("card.json") && e.contains("truncated"), "{e}");
        fs::write(&p, b"\x00\xff garbage").unwrap();
        assert!(
            read_record::<Rec>(&p)
                .unwrap_err()
                .to_string()
                .contains("card.json")
        );
        fs::write(&p, br#"{"version": 9, "a": 1}"#).unwrap();
        assert!(
            read_record::<Rec>(&p)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        fs::write(&p, br#"{"version": 1, "b": 1}"#).unwrap();
        assert!(
            read_record::<Rec>(&p)
                .unwrap_err()
                .to_string()
                .contains("unexpected content")
        );
        fs::remove_file(&p).unwrap();
        assert!(
            read_record::<Rec>(&p)
                .unwrap_err()
                .to_string()
                .contains("card.json")
        );
    }
}
