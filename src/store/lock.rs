//! Advisory lock files (`flock` through `std::fs::File::lock`): the store-wide lock that
//! serializes card creation and destruction, and one lock per card for its updates.
//! Released when the file is dropped or the process dies, so a killed process never
//! leaves a lock behind.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A held exclusive lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    /// Takes the exclusive lock on `path`, waiting for other holders. The file is opened
    /// without O_CREAT when it exists (Debian's protected_regular refuses creating opens
    /// of another user's file in sticky directories).
    pub fn exclusive(path: &Path) -> Result<LockGuard> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io(path, e))?,
            Err(e) => return Err(Error::io(path, e)),
        };
        file.lock().map_err(|e| Error::io(path, e))?;
        Ok(LockGuard {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
