//! Advisory lock files (`flock`): the store-wide lock that serializes card creation and
//! destruction, and one lock per card for its updates. Released when the guard is dropped
//! or the process dies, so a killed process never leaves a lock behind. A wait is bounded
//! and then names the holder (`crate::checked_dir::lock_file`).

use std::path::Path;

use crate::checked_dir::{CheckedDir, LockFile};
use crate::error::Result;

/// A held exclusive lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    file: LockFile,
}

impl LockGuard {
    /// Takes the exclusive lock on the file `name` in `dir`, waiting at most
    /// the configured lock timeout for other holders.
    /// An existing file is opened without `O_CREAT`; none is followed through a link.
    pub(crate) fn exclusive(dir: &CheckedDir, name: &str) -> Result<LockGuard> {
        let file = dir.lock_file(name)?;
        file.lock(crate::config::lock_timeout()?)?;
        Ok(LockGuard { file })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}
