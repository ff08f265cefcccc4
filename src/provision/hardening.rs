//! TPM-wide hardening (DESIGN.md §2): a random lockout authorization, the Windows
//! dictionary-attack parameters and ClearControl, so that neither the DA counter nor
//! TPM2_Clear is open to every member of the `tss` group.
//!
//! `harden` proves it holds the lockout authorization with a lockout-authorized command
//! before it calls a TPM hardened: a value someone else set is reported as theirs, never
//! as hardened. Callers that cannot test the value (anyone but root, and nobody may try a
//! wrong one: one wrong lockout authorization blocks the hierarchy) rely on a root-owned
//! marker `harden` writes, bound to the proved SRK Name (a cleared TPM voids it).
//!
//! Each TPM has its own files in the configuration directory, named by a tag of its
//! proved SRK Name (`lockout-auth-<tag>`, `hardened-<tag>.json`): hardening a second TPM
//! (a simulator beside the real one) never touches the first one's value, and an existing
//! lockout authorization file is never overwritten.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provision::Secret;
use crate::tpm::{Tpm, TpmError, WINDOWS_DA};

/// The marker of tpmvsc versions that knew one TPM per machine (still honoured).
const LEGACY_MARKER_FILE: &str = "hardened.json";
/// The lockout authorization file of those versions (still read).
const LEGACY_AUTH_FILE: &str = "lockout-auth";
/// Most bytes a marker can have.
const MARKER_MAX: u64 = 4096;

/// The tag naming one TPM's files: 16 hex digits of its proved SRK Name's digest.
fn tpm_tag(srk_name: &[u8]) -> String {
    let digest = srk_name.get(2..).unwrap_or(srk_name);
    hex::encode(&digest[..digest.len().min(8)])
}

fn marker_file(srk_name: &[u8]) -> String {
    format!("hardened-{}.json", tpm_tag(srk_name))
}

/// Where the new lockout authorization goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escrow {
    /// A file (mode 0600) at a path the administrator chooses, e.g. removable media.
    File(PathBuf),
    /// Printed once on standard output; nothing kept on this machine.
    Print,
}

/// What `harden` did.
#[derive(Debug)]
pub enum HardenOutcome {
    /// The TPM is hardened now with a new lockout authorization; `printed` holds it when
    /// it was escrowed by printing. `adopted`: the TPM's previous value was given with
    /// `--lockout-auth-file` and has been replaced, so nobody else holds it any more.
    Hardened {
        escrow: Escrow,
        printed: Option<Secret>,
        adopted: bool,
    },
    /// tpmvsc hardened this TPM before; `verified`: the stored value was proved again.
    AlreadyHardened { verified: bool },
}

/// How the TPM's lockout authorization stands, as any caller can tell without trying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockoutState {
    /// Empty: anyone with TPM access can reset or switch off the DA counter.
    NoRetryLimit,
    /// Set by `tpmvsc tpm harden` on this TPM (root-owned marker for the proved SRK).
    HardenedByTpmvsc,
    /// Set, but not by tpmvsc (or before the TPM was cleared): whoever holds it controls
    /// the retry limit.
    SetNotVerified,
}

impl LockoutState {
    /// Short text for status lines.
    pub fn describe(self) -> &'static str {
        match self {
            LockoutState::NoRetryLimit => "EMPTY: no retry limit",
            LockoutState::HardenedByTpmvsc => "hardened by tpmvsc",
            LockoutState::SetNotVerified => "lockout authorization set, not verified",
        }
    }

    /// The warning `create` and `list` print, if any.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            LockoutState::NoRetryLimit => Some(
                "no retry limit: the TPM's lockout authorization is empty, so anyone with TPM \
                 access can reset its dictionary-attack counter (fix: `tpmvsc tpm harden` as root)",
            ),
            LockoutState::HardenedByTpmvsc => None,
            LockoutState::SetNotVerified => Some(
                "lockout authorization set, not verified: it was not set by `tpmvsc tpm harden` on \
                 this TPM, so whoever holds it can reset the dictionary-attack counter (unlimited \
                 PIN guesses) and the retry limit is not under your control",
            ),
        }
    }
}

/// The marker: which TPM (by its proved SRK Name) tpmvsc hardened, and where the value
/// went.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    version: u32,
    srk_name: String,
    hardened_unix: u64,
    escrow: String,
}

/// The TPM's lockout state: one GetCapability, the proved SRK Name and the marker.
pub fn lockout_state(tpm: &mut Tpm) -> Result<LockoutState> {
    if !tpm.da_status()?.lockout_auth_set {
        return Ok(LockoutState::NoRetryLimit);
    }
    let srk = tpm.proved_srk_name()?;
    Ok(if read_marker(&srk).is_some() {
        LockoutState::HardenedByTpmvsc
    } else {
        LockoutState::SetNotVerified
    })
}

/// Hardens the TPM: DA parameters (32 tries, 10 minutes), ClearControl (TPM2_Clear then
/// needs the platform authorization) and a random lockout authorization, escrowed before
/// the TPM takes it: printed once (`print`), or written to `file` (default: this TPM's
/// `lockout-auth-<tag>` in the configuration directory). When the TPM's lockout
/// authorization is set already, the current value — `given` (what the caller read from
/// `file`), else this TPM's default file — must prove itself first; one set by someone
/// else is refused by name, with what to do.
pub fn harden(file: Option<&Path>, given: Option<Secret>, print: bool) -> Result<HardenOutcome> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Usage(
            "`tpm harden` changes TPM-wide settings and writes a root-only file: run it as root"
                .into(),
        ));
    }
    if let Some(path) = file {
        check_auth_file_path(path)?;
    }
    // Public (0755) before anything lands in it: every user reads the marker.
    crate::config::make_system_dir()?;
    let mut t = Tpm::open()?;
    let srk_name = t.proved_srk_name()?;
    let srk = hex::encode(&srk_name);
    let target = file.map_or_else(|| default_lockout_auth_file(&srk_name), Path::to_path_buf);
    let escrow = if print {
        Escrow::Print
    } else {
        Escrow::File(target.clone())
    };
    let da = t.da_status()?;
    if !da.lockout_auth_set {
        if let Escrow::File(path) = &escrow
            && std::fs::symlink_metadata(path).is_ok()
        {
            return Err(Error::Usage(format!(
                "{} exists and may hold the lockout authorization of another TPM (or of this \
                 one before it was cleared); harden never overwrites one. Move it away if it \
                 is no longer needed, or give another path with --lockout-auth-file",
                path.display()
            )));
        }
        t.set_da_parameters(
            &[],
            WINDOWS_DA.max_tries,
            WINDOWS_DA.recovery_secs,
            WINDOWS_DA.lockout_recovery_secs,
        )?;
        t.clear_control(&[], true)?;
        let printed = install_new_value(&mut t, &[], &escrow)?;
        write_marker(&srk_name, &srk, &escrow)?;
        return Ok(HardenOutcome::Hardened {
            escrow,
            printed,
            adopted: false,
        });
    }
    let ours = read_marker(&srk_name).is_some();
    let current = match (given, file) {
        (Some(v), _) => Some(v),
        (None, Some(_)) => None,
        (None, None) => find_lockout_auth_file(&srk_name)
            .map(|p| read_own_lockout_auth(&p))
            .transpose()?,
    };
    let value = match current {
        Some(v) => v,
        None if ours => return Ok(HardenOutcome::AlreadyHardened { verified: false }),
        None => return Err(held_elsewhere(None)),
    };
    // Proof of possession: a lockout-authorized command that is harmless (and part of
    // hardening anyway). A wrong value blocks the lockout hierarchy for its recovery time.
    match t.clear_control(&value, true) {
        Ok(()) => {}
        Err(TpmError::AuthFail | TpmError::Lockout) => {
            let secs = t.da_status().map(|d| d.lockout_recovery).ok();
            return Err(held_elsewhere(secs));
        }
        Err(e) => return Err(e.into()),
    }
    t.set_da_parameters(
        &value,
        WINDOWS_DA.max_tries,
        WINDOWS_DA.recovery_secs,
        WINDOWS_DA.lockout_recovery_secs,
    )?;
    if ours {
        return Ok(HardenOutcome::AlreadyHardened { verified: true });
    }
    // Someone else's value, given to us: replace it, so that they no longer hold it. The
    // file that held it may be overwritten: its value is this TPM's, and dies now.
    let printed = install_new_value(&mut t, &value, &escrow)?;
    write_marker(&srk_name, &srk, &escrow)?;
    Ok(HardenOutcome::Hardened {
        escrow,
        printed,
        adopted: true,
    })
}

/// Draws a new lockout authorization, escrows it, and sets it in the TPM (from
/// `current`). The escrowed copy exists before the TPM takes the value, so a crash never
/// leaves a TPM whose lockout authorization nobody has.
fn install_new_value(t: &mut Tpm, current: &[u8], escrow: &Escrow) -> Result<Option<Secret>> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut_slice()).map_err(|e| Error::Usage(format!("no randomness: {e}")))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(raw.as_slice())));
    match escrow {
        Escrow::File(path) => {
            let staged = staging_path(path);
            write_private(&staged, text.as_bytes())?;
            if let Err(e) = t.set_lockout_auth(current, raw.as_slice()) {
                let _ = std::fs::remove_file(&staged);
                return Err(e.into());
            }
            std::fs::rename(&staged, path).map_err(|e| Error::io(path, e))?;
            Ok(None)
        }
        Escrow::Print => {
            t.set_lockout_auth(current, raw.as_slice())?;
            Ok(Some(Zeroizing::new(text.trim_end().as_bytes().to_vec())))
        }
    }
}

fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or("lockout-auth".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.new"))
}

fn held_elsewhere(blocked_secs: Option<u32>) -> Error {
    let blocked = blocked_secs.map_or(String::new(), |s| {
        format!(" The value given was wrong: the lockout hierarchy is now blocked for up to {s} s.")
    });
    Error::LockoutHeldElsewhere(format!(
        "lockout authorization held by someone else: the retry limit is not under your \
         control.{blocked} Clear the TPM from the firmware setup (every TPM key and card is \
         lost) and run `tpmvsc tpm harden` again, or give the current value with \
         `--lockout-auth-file FILE`"
    ))
}

/// Where `tpm harden` keeps the lockout authorization of the TPM whose proved SRK Name is
/// `srk_name` unless told otherwise (root only): `lockout-auth-<tag>` in the
/// configuration directory.
pub(crate) fn default_lockout_auth_file(srk_name: &[u8]) -> PathBuf {
    config_dir().join(format!("lockout-auth-{}", tpm_tag(srk_name)))
}

/// The lockout authorization file to read for this TPM when none is given: its own, or
/// the single file of earlier versions.
pub(crate) fn find_lockout_auth_file(srk_name: &[u8]) -> Option<PathBuf> {
    [
        default_lockout_auth_file(srk_name),
        config_dir().join(LEGACY_AUTH_FILE),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// The configuration directory: `TPMVSC_CONFIG_DIR`, else `/etc/tpmvsc`.
pub fn config_dir() -> PathBuf {
    crate::config::system_dir()
}

/// This TPM's marker, when it and its directory are root's and closed to others' writes
/// and it names this TPM's proved SRK.
fn read_marker(srk_name: &[u8]) -> Option<Marker> {
    let dir = config_dir();
    let root_only = |p: &Path, dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.uid() == 0 && m.mode() & 0o022 == 0 && if dir { m.is_dir() } else { m.is_file() }
        })
    };
    if !root_only(&dir, true) {
        return None;
    }
    let srk = hex::encode(srk_name);
    [marker_file(srk_name), LEGACY_MARKER_FILE.to_string()]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| root_only(p, false))
        .filter_map(|p| crate::checked_dir::read_path(&p, MARKER_MAX).ok())
        .filter_map(|text| serde_json::from_slice::<Marker>(&text).ok())
        .find(|m| m.version == 1 && m.srk_name == srk)
}

fn write_marker(srk_name: &[u8], srk_hex: &str, escrow: &Escrow) -> Result<()> {
    let dir = crate::config::make_system_dir()?;
    let marker = Marker {
        version: 1,
        srk_name: srk_hex.to_string(),
        hardened_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        escrow: match escrow {
            Escrow::File(p) => format!("file:{}", p.display()),
            Escrow::Print => "printed".into(),
        },
    };
    let text = serde_json::to_vec_pretty(&marker).map_err(|e| Error::Usage(e.to_string()))?;
    let path = dir.join(marker_file(srk_name));
    crate::store::atomic::write_atomic(&path, &text, true)?;
    // Readable by everyone (it holds no secret): `tpm status` of any user reads it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(&path, e))
}

/// The configuration directory, root's, mode 0755 (the marker is public; the lockout
/// authorization inside is 0600).
/// Most bytes a lockout authorization file of tpmvsc's holds.
const AUTH_FILE_MAX: u64 = 4096;

/// The lockout authorization in the first line of a file's contents: hex digits (as
/// `harden` writes them) or, failing that, the line as it is. An empty line is the empty
/// authorization.
pub fn parse_lockout_auth(line: &[u8]) -> Secret {
    let text = String::from_utf8_lossy(line);
    let trimmed = text.trim();
    let hexlike = !trimmed.is_empty()
        && trimmed.len().is_multiple_of(2)
        && trimmed.chars().all(|c| c.is_ascii_hexdigit());
    if hexlike && let Ok(bytes) = hex::decode(trimmed) {
        return Zeroizing::new(bytes);
    }
    Zeroizing::new(line.to_vec())
}

/// One of tpmvsc's own lockout authorization files (regular, bounded, not followed
/// through a link).
fn read_own_lockout_auth(path: &Path) -> Result<Secret> {
    let bytes = Zeroizing::new(crate::checked_dir::read_path(path, AUTH_FILE_MAX)?);
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(parse_lockout_auth(line.strip_suffix(b"\r").unwrap_or(line)))
}

/// Resets the TPM's DA counter and lockout with the lockout authorization `given`, else
/// the one in this TPM's lockout authorization file, else the one `ask` gives.
pub fn clear_lockout(given: Option<Secret>, ask: impl FnOnce() -> Result<Secret>) -> Result<()> {
    let mut t = Tpm::open()?;
    let auth = match given {
        Some(v) => v,
        None => match find_lockout_auth_file(&t.proved_srk_name()?) {
            Some(f) => read_own_lockout_auth(&f)?,
            None => ask()?,
        },
    };
    match t.reset_lockout(&auth) {
        Ok(()) => Ok(()),
        Err(TpmError::AuthFail) | Err(TpmError::Lockout) => {
            let secs = t.da_status().map(|d| d.lockout_recovery).ok();
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
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Usage(format!(
                "{} exists: an earlier `tpm harden` was interrupted, and this file may hold the \
                 TPM's lockout authorization. Move it over the lockout authorization file (or \
                 remove it if the TPM does not take its value), then run harden again",
                path.display()
            )),
            _ => Error::io(path, e),
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
