//! TPM-wide hardening (DESIGN.md §2): a random lockout authorization, the Windows
//! dictionary-attack parameters and ClearControl, so that neither the DA counter nor
//! TPM2_Clear is open to every member of the `tss` group.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provision::Secret;
use crate::simulator::{DA_LOCKOUT_RECOVERY_SECS, DA_MAX_TRIES, DA_RECOVERY_SECS};
use crate::tpm::{self, Tpm, TpmError};

/// Where `tpm harden` keeps the lockout authorization unless told otherwise (root only).
pub const DEFAULT_LOCKOUT_AUTH_FILE: &str = "/etc/tpmvsc/lockout-auth";

/// What `harden` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HardenOutcome {
    /// The TPM is hardened now; the lockout authorization is in this file.
    Hardened(PathBuf),
    /// The TPM's lockout authorization was set already: nothing was changed.
    AlreadyHardened,
}

/// Hardens the TPM: DA parameters (32 tries, 10 minutes), ClearControl (TPM2_Clear then
/// needs the platform authorization) and a random lockout authorization written to
/// `auth_file` (mode 0600) before the TPM takes it. Idempotent: a TPM whose lockout
/// authorization is set is left alone.
pub fn harden(auth_file: &Path) -> Result<HardenOutcome> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "`tpm harden` changes TPM-wide settings and writes a root-only file: run it as root"
                .into(),
        ));
    }
    check_auth_file_path(auth_file)?;
    let tcti = tpm::configured_tcti();
    {
        let mut t = Tpm::open_tcti(&tcti)?;
        if t.da_status()?.lockout_auth_set {
            return Ok(HardenOutcome::AlreadyHardened);
        }
    }
    tpm::raw::set_da_parameters(
        &tcti,
        &[],
        DA_MAX_TRIES,
        DA_RECOVERY_SECS,
        DA_LOCKOUT_RECOVERY_SECS,
    )?;
    let mut t = Tpm::open_tcti(&tcti)?;
    t.clear_control(&[], true)?;
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut_slice()).map_err(|e| Error::Usage(format!("no randomness: {e}")))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(raw.as_slice())));
    write_private(auth_file, text.as_bytes())?;
    if let Err(e) = t.set_lockout_auth(&[], raw.as_slice()) {
        let _ = std::fs::remove_file(auth_file);
        return Err(e.into());
    }
    Ok(HardenOutcome::Hardened(auth_file.to_path_buf()))
}

/// Reads a lockout authorization file: hex digits (as `harden` writes) or, failing
/// that, the first line as it is. An empty file is the empty authorization. The read is
/// bounded and refuses devices, sockets and directories (`prompt::read_secret_file`).
pub fn read_lockout_auth(path: &Path) -> Result<Secret> {
    let line = crate::prompt::read_secret_file(path, "lockout authorization")?;
    let text = String::from_utf8_lossy(&line);
    let trimmed = text.trim();
    let hexlike = !trimmed.is_empty()
        && trimmed.len().is_multiple_of(2)
        && trimmed.chars().all(|c| c.is_ascii_hexdigit());
    if hexlike && let Ok(bytes) = hex::decode(trimmed) {
        return Ok(Zeroizing::new(bytes));
    }
    Ok(line)
}

/// Resets the TPM's DA counter and lockout with the lockout authorization.
pub fn clear_lockout(auth: &[u8]) -> Result<()> {
    match tpm::raw::reset_lockout(&tpm::configured_tcti(), auth) {
        Ok(()) => Ok(()),
        Err(TpmError::AuthFail) | Err(TpmError::Lockout) => {
            let secs = Tpm::open()
                .and_then(|mut t| t.da_status())
                .map(|d| d.lockout_recovery)
                .ok();
            Err(Error::Usage(format!(
                "the TPM refused the lockout authorization; after a wrong one the lockout \
                 hierarchy stays blocked for {} before the next try",
                secs.map_or("its lockout recovery time".to_string(), |s| format!(
                    "up to {s} s"
                ))
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// The lockout authorization must land in a regular file: checked before the TPM is
/// touched, since written to a device (`/dev/null`) it would be lost for good.
fn check_auth_file_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::Usage(
            "--lockout-auth-file is empty; give the path of a new file".into(),
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::Usage(format!(
            "{} is not a regular file: the lockout authorization must be written to a file \
             you can keep",
            path.display()
        ))),
        _ => Ok(()),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        match std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
        {
            Ok(()) => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
