//! Settings every process must agree on — which TPM, which card store, where lock files
//! live, how long to wait — without relying on the environment, which daemons do not
//! pass on (certmonger's helpers ran with `TPMVSC_TCTI` and `TPMVSC_STORE` unset, and the
//! module showed them no card).
//!
//! Each setting comes from the first of: its environment variable; the user's file
//! `$XDG_CONFIG_HOME/tpmvsc/tpmvsc.conf` (`~/.config/tpmvsc/tpmvsc.conf`); the system file
//! `/etc/tpmvsc/tpmvsc.conf` (`TPMVSC_CONFIG_DIR` replaces `/etc/tpmvsc`, for tests); the
//! built-in default. Every value remembers where it came from (`tpm status`, `info`).
//!
//! A file is TOML with these keys, all optional:
//!
//! ```toml
//! tcti = "device:/dev/tpmrm0"   # the TPM (a TSS2 TCTI string)
//! store = "/srv/cards"          # one card store instead of the system and user stores
//! lock_dir = "/run/tpmvsc"      # lock files shared by every user of the TPM
//! tpm_wait = 30                 # seconds a call waits for the TPM, then CKR_DEVICE_ERROR
//! lock_timeout = 30             # seconds a command waits for a store, card or TPM lock
//! ```
//!
//! A file is read only when it and its directory belong to the caller or root and nobody
//! else may write them: what it says decides which TPM hears the PINs. An unknown key, a
//! malformed value or an untrustworthy file is an error naming the file, never ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Deserialize;

use crate::checked_dir::{CheckedDir, DirRule};
use crate::error::{Error, Result};

/// Environment variable replacing the system configuration directory `/etc/tpmvsc`.
pub(crate) const CONFIG_DIR_ENV: &str = "TPMVSC_CONFIG_DIR";
/// The configuration file's name, in the system and the user directory.
pub(crate) const FILE_NAME: &str = "tpmvsc.conf";
/// The most a configuration file may hold.
const FILE_LIMIT: u64 = 64 * 1024;

/// Environment variables, one per setting.
pub(crate) const TCTI_ENV: &str = "TPMVSC_TCTI";
pub(crate) const STORE_ENV: &str = "TPMVSC_STORE";
pub(crate) const LOCK_DIR_ENV: &str = "TPMVSC_LOCK_DIR";
pub(crate) const TPM_WAIT_ENV: &str = "TPMVSC_TPM_WAIT";
pub(crate) const LOCK_TIMEOUT_ENV: &str = crate::error::LOCK_TIMEOUT_ENV;

/// The TPM when nothing says otherwise: the kernel's resource manager.
pub(crate) const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
const DEFAULT_TPM_WAIT: Duration = Duration::from_secs(30);
/// How long a process waits for a store, card or TPM lock before it gives up.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// An environment variable.
    Env(&'static str),
    /// A configuration file.
    File(PathBuf),
    /// Built in.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

/// One setting and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Setting<T> {
    pub(crate) value: T,
    pub(crate) source: Source,
}

/// Every setting of this process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) tcti: Setting<String>,
    /// One store replacing the system and user stores, when set.
    pub(crate) store: Option<Setting<PathBuf>>,
    /// The lock directory, when set (else the per-user default).
    pub(crate) lock_dir: Option<Setting<PathBuf>>,
    pub(crate) tpm_wait: Setting<Duration>,
    pub(crate) lock_timeout: Setting<Duration>,
}

/// A configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileValues {
    tcti: Option<String>,
    store: Option<PathBuf>,
    lock_dir: Option<PathBuf>,
    tpm_wait: Option<f64>,
    lock_timeout: Option<f64>,
}

static CURRENT: RwLock<Option<Arc<Config>>> = RwLock::new(None);

/// This process's settings, read once (and again after [`reload`]).
pub(crate) fn current() -> Result<Arc<Config>> {
    if let Some(c) = CURRENT.read().as_ref() {
        return Ok(Arc::clone(c));
    }
    let loaded = Arc::new(load()?);
    *CURRENT.write() = Some(Arc::clone(&loaded));
    Ok(loaded)
}

/// Forgets the settings read so far: the next [`current`] reads them again (each
/// C_Initialize, so that a changed file counts from the next initialisation).
pub(crate) fn reload() {
    *CURRENT.write() = None;
}

/// The bound on lock waits (`TPMVSC_LOCK_TIMEOUT`, `lock_timeout` in a file, else 30 s).
pub(crate) fn lock_timeout() -> Result<Duration> {
    Ok(current()?.lock_timeout.value)
}

/// The system configuration directory: `TPMVSC_CONFIG_DIR`, else `/etc/tpmvsc`.
pub(crate) fn system_dir() -> PathBuf {
    non_empty_env(CONFIG_DIR_ENV).map_or_else(|| PathBuf::from("/etc/tpmvsc"), PathBuf::from)
}

/// Makes the system configuration directory when missing (root, 0755: every user reads
/// the configuration file in it) and checks it is root's and writable by root alone.
pub(crate) fn make_system_dir() -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = system_dir();
    std::fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    let md = std::fs::symlink_metadata(&dir).map_err(|e| Error::io(&dir, e))?;
    if !md.is_dir() || md.uid() != 0 || md.mode() & 0o022 != 0 {
        return Err(Error::StorePermissions {
            path: dir,
            why: "the configuration directory must be a directory owned by root and writable \
                  by root alone"
                .into(),
        });
    }
    Ok(dir)
}

/// The user's configuration directory: `$XDG_CONFIG_HOME/tpmvsc`, else
/// `~/.config/tpmvsc`; none for a process without a home.
pub(crate) fn user_dir() -> Option<PathBuf> {
    if let Some(d) = non_empty_env("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(d).join("tpmvsc"));
    }
    non_empty_env("HOME").map(|h| PathBuf::from(h).join(".config/tpmvsc"))
}

fn non_empty_env(var: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(var).filter(|v| !v.is_empty())
}

/// Reads the files and the environment.
fn load() -> Result<Config> {
    let system = read_file(&system_dir())?;
    let user = match user_dir() {
        Some(d) => read_file(&d)?,
        None => None,
    };
    // Highest first: the user's file, then the system's.
    let files: Vec<&(PathBuf, FileValues)> = user.iter().chain(system.iter()).collect();
    let pick = |env: &'static str, get: &dyn Fn(&FileValues) -> bool| -> Option<Source> {
        if non_empty_env(env).is_some() {
            return Some(Source::Env(env));
        }
        files
            .iter()
            .find(|(_, v)| get(v))
            .map(|(p, _)| Source::File(p.clone()))
    };
    let from_file = |src: &Source| -> Option<&FileValues> {
        match src {
            Source::File(p) => files.iter().find(|(q, _)| q == p).map(|(_, v)| v),
            _ => None,
        }
    };
    let env_text = |var: &str| {
        non_empty_env(var)
            .map(|v| v.to_string_lossy().trim().to_string())
            .unwrap_or_default()
    };

    let tcti = match pick(TCTI_ENV, &|v| v.tcti.is_some()) {
        Some(Source::Env(var)) => setting(env_text(var), Source::Env(var)),
        Some(src) => {
            let text = from_file(&src)
                .and_then(|v| v.tcti.clone())
                .unwrap_or_default();
            check_tcti(&text, &src)?;
            setting(text, src)
        }
        None => setting(DEFAULT_TCTI.to_string(), Source::Default),
    };
    let path_setting = |env: &'static str,
                        get: fn(&FileValues) -> Option<PathBuf>|
     -> Result<Option<Setting<PathBuf>>> {
        Ok(match pick(env, &|v| get(v).is_some()) {
            Some(Source::Env(var)) => Some(setting(
                PathBuf::from(non_empty_env(var).unwrap_or_default()),
                Source::Env(var),
            )),
            Some(src) => {
                let p = from_file(&src).and_then(get).unwrap_or_default();
                if !p.is_absolute() {
                    return Err(bad_value(
                        &src,
                        &format!("{} is not an absolute path", p.display()),
                    ));
                }
                Some(setting(p, src))
            }
            None => None,
        })
    };
    let store = path_setting(STORE_ENV, |v| v.store.clone())?;
    let lock_dir = path_setting(LOCK_DIR_ENV, |v| v.lock_dir.clone())?;
    let seconds = |env: &'static str,
                   get: fn(&FileValues) -> Option<f64>,
                   default: Duration|
     -> Result<Setting<Duration>> {
        match pick(env, &|v| get(v).is_some()) {
            Some(Source::Env(var)) => {
                let text = env_text(var);
                let secs = text.parse::<f64>().map_err(|_| {
                    Error::Usage(format!(
                        "{var}={text} is not a number of seconds (e.g. 30 or 0.5)"
                    ))
                })?;
                Ok(setting(
                    duration(secs, &Source::Env(var))?,
                    Source::Env(var),
                ))
            }
            Some(src) => {
                let secs = from_file(&src).and_then(get).unwrap_or_default();
                Ok(setting(duration(secs, &src)?, src))
            }
            None => Ok(setting(default, Source::Default)),
        }
    };
    Ok(Config {
        tcti,
        store,
        lock_dir,
        tpm_wait: seconds(TPM_WAIT_ENV, |v| v.tpm_wait, DEFAULT_TPM_WAIT)?,
        lock_timeout: seconds(LOCK_TIMEOUT_ENV, |v| v.lock_timeout, DEFAULT_LOCK_TIMEOUT)?,
    })
}

fn setting<T>(value: T, source: Source) -> Setting<T> {
    Setting { value, source }
}

/// The file in `dir`, when there is one; refused when it or `dir` is not trustworthy.
fn read_file(dir: &Path) -> Result<Option<(PathBuf, FileValues)>> {
    let Some(d) = CheckedDir::open(dir, "configuration directory", DirRule::Config)? else {
        return Ok(None);
    };
    let Some(bytes) = d.read_trusted(FILE_NAME, FILE_LIMIT)? else {
        return Ok(None);
    };
    let path = d.join(FILE_NAME);
    let text = String::from_utf8(bytes).map_err(|_| Error::Config {
        path: path.clone(),
        why: "it is not UTF-8 text".into(),
    })?;
    let values: FileValues = toml::from_str(&text).map_err(|e| Error::Config {
        path: path.clone(),
        why: e.message().to_string(),
    })?;
    validate(&values, &Source::File(path.clone()))?;
    Ok(Some((path, values)))
}

/// Every value a file gives has its form, whether or not the environment overrides it: a
/// broken file is reported, never silently outranked.
fn validate(v: &FileValues, src: &Source) -> Result<()> {
    if let Some(t) = &v.tcti {
        check_tcti(t, src)?;
    }
    for p in [&v.store, &v.lock_dir].into_iter().flatten() {
        if !p.is_absolute() {
            return Err(bad_value(
                src,
                &format!("{} is not an absolute path", p.display()),
            ));
        }
    }
    for secs in [v.tpm_wait, v.lock_timeout].into_iter().flatten() {
        duration(secs, src)?;
    }
    Ok(())
}

fn bad_value(src: &Source, why: &str) -> Error {
    match src {
        Source::File(p) => Error::Config {
            path: p.clone(),
            why: why.to_string(),
        },
        other => Error::Usage(format!("{other}: {why}")),
    }
}

fn check_tcti(text: &str, src: &Source) -> Result<()> {
    if text.trim().is_empty() {
        return Err(bad_value(src, "tcti is empty"));
    }
    Ok(())
}

/// Seconds as a wait: more than zero, at most a day.
fn duration(secs: f64, src: &Source) -> Result<Duration> {
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(bad_value(
            src,
            &format!("{secs} s is not a wait (more than 0, at most 86400)"),
        ))
    }
}

#[cfg(test)]
mod tests;
