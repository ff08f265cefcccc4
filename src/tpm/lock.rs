//! The cross-process lock of a TPM without a resource manager (DESIGN.md §6) and the
//! directory its lock files live in. Files only: no TPM commands here.

use std::fs::File;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::TpmError;

/// Directory for lock files shared by every user of one TPM.
pub fn lock_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TPMVSC_LOCK_DIR") {
        return PathBuf::from(d);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/run/tpmvsc");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("tpmvsc"),
        None => {
            std::env::temp_dir().join(format!("tpmvsc-{}", rustix::process::geteuid().as_raw()))
        }
    }
}

/// The cross-process lock of a TPM without resource manager: `tpm-<tag>.lock`, held
/// while a process has a connection, and `tpm-<tag>.wait`, which a process waiting for
/// the lock holds so that the holder can see someone waits and give the TPM up
/// (DESIGN.md §6). The path derives from the TCTI, not from a user's store.
#[derive(Debug)]
pub struct TpmLock {
    _main: File,
    wait: File,
}

impl TpmLock {
    /// Takes the lock, announcing itself on the wait file while it has to wait.
    pub(crate) fn take(tcti: &str) -> Result<TpmLock, TpmError> {
        let dir = lock_dir();
        let fail = |why: String| TpmError::NoTpm {
            tcti: tcti.to_string(),
            why,
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot create lock dir {}: {e}", dir.display())))?;
        let tag = hex::encode(&Sha256::digest(tcti.as_bytes())[..8]);
        let open = |name: String| {
            let path = dir.join(name);
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| fail(format!("cannot open lock {}: {e}", path.display())))
        };
        let main = open(format!("tpm-{tag}.lock"))?;
        let wait = open(format!("tpm-{tag}.wait"))?;
        match main.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                wait.lock().map_err(|e| fail(format!("cannot lock: {e}")))?;
                let r = main.lock();
                let _ = wait.unlock();
                r.map_err(|e| fail(format!("cannot lock: {e}")))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(format!("cannot lock: {e}"))),
        }
        Ok(TpmLock { _main: main, wait })
    }

    /// True when another process waits for this TPM.
    pub fn others_waiting(&self) -> bool {
        match self.wait.try_lock_shared() {
            Ok(()) => {
                let _ = self.wait.unlock();
                false
            }
            Err(_) => true,
        }
    }
}
