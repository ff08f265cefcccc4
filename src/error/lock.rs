//! A lock another process kept for the whole wait, in words that name it and its holder.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Environment variable replacing the lock wait bound: seconds, fractions allowed
/// (`0.5`). Tests use a short bound; a slow TPM may want a longer one.
pub(crate) const LOCK_TIMEOUT_ENV: &str = "TPMVSC_LOCK_TIMEOUT";

/// A lock still held by someone else when the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockBusy {
    /// The lock file.
    pub path: PathBuf,
    /// How long this process waited.
    pub waited: Duration,
    /// The processes `/proc/locks` shows holding it (none when they cannot be seen).
    pub holders: Vec<LockHolder>,
}

/// A process holding a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub command: Option<String>,
    /// The owner of `/proc/PID` (the process's user).
    pub uid: Option<u32>,
}

impl fmt::Display for LockBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up waiting for the lock {} after {:.1} s: ",
            self.path.display(),
            self.waited.as_secs_f64()
        )?;
        if self.holders.is_empty() {
            write!(
                f,
                "no process holding it is visible in /proc/locks (it may have just ended, or \
                 runs in another PID namespace); try again"
            )?;
        } else {
            let who: Vec<String> = self.holders.iter().map(LockHolder::to_string).collect();
            let pids: Vec<String> = self.holders.iter().map(|h| h.pid.to_string()).collect();
            write!(
                f,
                "it is held by {}. Wait for it to finish, or end it if it hangs \
                 (`kill {}`)",
                who.join(", "),
                pids.join(" ")
            )?;
        }
        write!(f, "; {LOCK_TIMEOUT_ENV} sets how many seconds to wait")
    }
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        match (&self.command, self.uid) {
            (Some(c), Some(u)) => write!(f, " ({c}, uid {u})"),
            (Some(c), None) => write!(f, " ({c})"),
            (None, Some(u)) => write!(f, " (uid {u})"),
            (None, None) => Ok(()),
        }
    }
}
