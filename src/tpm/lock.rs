//! The cross-process lock of a TPM without a resource manager (DESIGN.md §6) and the
//! directories its lock files and per-boot facts live in. Files only: no TPM commands.
//!
//! The lock directory is checked like the store (`crate::checked_dir`): `/run/tpmvsc`
//! for root, `$XDG_RUNTIME_DIR/tpmvsc` for a user, `TPMVSC_LOCK_DIR` when set; a user
//! without a runtime directory falls back to `/tmp/tpmvsc-UID`, which must then be their
//! own private directory (another user could pre-create it and hold the lock). Waits for
//! the lock are bounded and then name the process that holds it.

use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use super::TpmError;
use crate::checked_dir::{CheckedDir, DirRule, LockFile};

/// Directory for lock files shared by every user of one TPM (not checked: see
/// `checked_lock_dir`).
pub fn lock_dir() -> PathBuf {
    runtime_path().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tpmvsc-{}", rustix::process::geteuid().as_raw()))
    })
}

/// The configured lock directory (`TPMVSC_LOCK_DIR`, `lock_dir` in a configuration
/// file), else `/run/tpmvsc` for root and `$XDG_RUNTIME_DIR/tpmvsc` for a user.
fn runtime_path() -> Option<PathBuf> {
    if let Some(d) = crate::config::current()
        .ok()
        .and_then(|c| c.lock_dir.as_ref().map(|s| s.value.clone()))
    {
        return Some(d);
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/run/tpmvsc"));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("tpmvsc"))
}

/// The lock directory, created when missing and checked (refused by name when another
/// user owns it or others may write it).
pub(crate) fn checked_lock_dir() -> crate::Result<CheckedDir> {
    match runtime_path() {
        Some(p) => CheckedDir::create(&p, "lock directory", DirRule::Lock),
        None => CheckedDir::create(&lock_dir(), "lock directory", DirRule::Private),
    }
}

/// The private runtime directory for small per-boot facts (the proved SRK Name), when
/// there is one an offline attacker cannot write and a reboot clears: the lock directory
/// when it is in memory (tmpfs, as `/run` and `$XDG_RUNTIME_DIR` are on most systems)
/// and passes the owner and mode checks; `None` otherwise — the `/tmp` fallback, or a
/// `TPMVSC_LOCK_DIR` or `/run` on disk, where someone with the disk could plant a fact.
pub(crate) fn runtime_dir() -> Option<CheckedDir> {
    let p = runtime_path()?;
    CheckedDir::create(&p, "runtime directory", DirRule::Lock)
        .ok()
        .filter(CheckedDir::is_volatile)
}

/// The names of a TPM's two lock files (`tpm-<tag>.lock`, `tpm-<tag>.wait`), from its
/// TCTI.
pub(crate) fn lock_file_names(tcti: &str) -> [String; 2] {
    let tag = hex::encode(&Sha256::digest(tcti.as_bytes())[..8]);
    [format!("tpm-{tag}.lock"), format!("tpm-{tag}.wait")]
}

/// The cross-process lock of a TPM without resource manager: `tpm-<tag>.lock`, held
/// while a process has a connection, and `tpm-<tag>.wait`, which a process waiting for
/// the lock holds so that the holder can see someone waits and give the TPM up
/// (DESIGN.md §6). The path derives from the TCTI, not from a user's store.
#[derive(Debug)]
pub(crate) struct TpmLock {
    _main: LockFile,
    wait: LockFile,
}

impl TpmLock {
    /// Takes the lock, announcing itself on the wait file while it has to wait; the wait
    /// is bounded and then fails naming the holder.
    pub(crate) fn take(tcti: &str) -> Result<TpmLock, TpmError> {
        let fail = |e: crate::Error| TpmError::Other {
            code: 0,
            what: format!("the TPM's lock: {e}"),
        };
        let dir = checked_lock_dir().map_err(fail)?;
        let [main_name, wait_name] = lock_file_names(tcti);
        let main = dir.lock_file(&main_name).map_err(fail)?;
        let wait = dir.lock_file(&wait_name).map_err(fail)?;
        if !main.try_lock().map_err(fail)? {
            let started = Instant::now();
            let deadline = started + crate::config::lock_timeout().map_err(fail)?;
            wait.lock_until(started, deadline).map_err(fail)?;
            let r = main.lock_until(started, deadline);
            wait.unlock();
            r.map_err(fail)?;
        }
        Ok(TpmLock { _main: main, wait })
    }

    /// True when another process waits for this TPM.
    pub(crate) fn others_waiting(&self) -> bool {
        self.wait.held_by_others()
    }
}
