//! Crash-safe file writes and reads that name the file on every error.
//!
//! A write goes to a temporary file in the same directory, is fsynced, renamed over the
//! old file, and the directory is fsynced: a crash at any point leaves the old or the new
//! content, never a mix (DESIGN.md §6).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Format version written into every store file.
pub const FORMAT_VERSION: u32 = 1;

/// Writes `bytes` to `path` atomically (mode 0600). With `durable` the data and the
/// directory entry are fsynced; without it (retry counters, DESIGN.md §6) a crash may
/// lose the write but never leaves a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        if durable {
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Serializes `value` as a versioned JSON record and writes it atomically.
pub fn write_record<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let mut v = serde_json::to_value(value).map_err(|e| Error::corrupt(path, e.to_string()))?;
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("version".into(), FORMAT_VERSION.into());
    }
    let mut bytes =
        serde_json::to_vec_pretty(&v).map_err(|e| Error::corrupt(path, e.to_string()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, durable)
}

/// Reads a versioned JSON record. A missing, truncated, malformed or newer-format file is
/// an error naming the file, never a panic.
pub fn read_record<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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
