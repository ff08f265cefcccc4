//! `tpm …`, `simulator …` and `install`: the machine rather than a card.

use super::args::{SimAction, TpmCmd};
use super::output::{print_json, print_settings, settings_json};
use super::prompt::SecretReader;
use crate::error::{Error, Result};
use crate::provision::hardening;
use crate::store::Store;
use crate::{simulator, tpm};

/// `tpmvsc tpm …`.
pub(super) fn tpm(store: &Store, action: TpmCmd) -> Result<()> {
    match action {
        TpmCmd::Status { json } => status(store, json)?,
        TpmCmd::Harden {
            lockout_auth_file,
            print_lockout_auth,
        } => harden(lockout_auth_file.as_deref(), print_lockout_auth)?,
        TpmCmd::ClearLockout { lockout_auth_file } => {
            let given = match &lockout_auth_file {
                Some(f) => Some(lockout_auth_in(f)?),
                None => None,
            };
            hardening::clear_lockout(given, || {
                let mut r = SecretReader::new(false);
                let a = r.current("Lockout authorization (empty if never set)")?;
                r.finish("lockout authorization")?;
                Ok(a)
            })?;
            println!("The TPM's dictionary-attack counter and lockout are cleared.");
        }
    }
    Ok(())
}

/// `tpmvsc tpm status`.
fn status(store: &Store, json: bool) -> Result<()> {
    let mut t = match tpm::Tpm::open() {
        Ok(t) => t,
        Err(e) => {
            // Where the TPM setting came from is half of why it cannot be reached.
            if !json {
                print_settings(store)?;
            }
            return Err(e.into());
        }
    };
    let info = t.info()?;
    let da = t.da_status()?;
    let lockout = hardening::lockout_state(&mut t)?;
    let srk = t.srk_status()?;
    if json {
        let mut v = serde_json::to_value(&da).unwrap_or_default();
        if let (serde_json::Value::Object(m), Ok(serde_json::Value::Object(i))) =
            (&mut v, serde_json::to_value(&info))
        {
            m.extend(i);
            m.insert("tcti".into(), t.tcti().into());
            m.insert(
                "lockout_state".into(),
                serde_json::to_value(lockout).unwrap_or_default(),
            );
            m.insert("srk".into(), serde_json::to_value(&srk).unwrap_or_default());
            m.insert("settings".into(), settings_json(store)?);
        }
        print_json(&v);
    } else {
        println!(
            "TPM:              {} {} (firmware {}){}",
            info.manufacturer,
            info.vendor,
            info.firmware,
            if info.simulated { ", SIMULATED" } else { "" }
        );
        println!("TCTI:             {}", t.tcti());
        println!(
            "Failed tries:     {} of {} (one forgotten every {} s)",
            da.counter, da.max_tries, da.recovery_time
        );
        println!(
            "Lockout:          {}",
            if da.in_lockout {
                "YES: DA-protected authorizations are refused"
            } else {
                "no"
            }
        );
        println!(
            "Lockout recovery: {} s after a wrong lockout authorization",
            da.lockout_recovery
        );
        match lockout.warning() {
            None => println!("Lockout auth:     {}", lockout.describe()),
            Some(w) => println!(
                "Lockout auth:     {}\n                  {w}",
                lockout.describe()
            ),
        }
        println!(
            "Storage root key: {}{}",
            if srk.persistent {
                "persistent at 0x81000001, proved"
            } else {
                "made from the standard template per process (`tpmvsc simulator` or \
                 `tpm2_evictcontrol` can persist it)"
            },
            if srk.foreign_persistent {
                "; 0x81000001 holds another key, which tpmvsc never uses"
            } else {
                ""
            }
        );
        print_settings(store)?;
    }
    Ok(())
}

/// `tpmvsc tpm harden`.
fn harden(lockout_auth_file: Option<&std::path::Path>, print_lockout_auth: bool) -> Result<()> {
    match hardening::harden(
        lockout_auth_file,
        read_lockout_auth_file(lockout_auth_file)?,
        print_lockout_auth,
    )? {
        hardening::HardenOutcome::AlreadyHardened { verified } => println!(
            "The TPM is hardened by tpmvsc already{}; nothing changed.",
            if verified {
                " (its lockout authorization proved itself again)"
            } else {
                " (not re-verified: its lockout authorization is not in that file)"
            }
        ),
        hardening::HardenOutcome::Hardened {
            escrow,
            printed,
            adopted,
        } => {
            if adopted {
                println!(
                    "The lockout authorization given was the TPM's; it is replaced now, so \
                     whoever set it no longer holds it."
                );
            }
            match (&escrow, printed) {
                (_, Some(value)) => println!(
                    "New lockout authorization (shown once, kept nowhere on this machine: \
                     store it safely): {}",
                    String::from_utf8_lossy(&value)
                ),
                (hardening::Escrow::File(f), None) => println!(
                    "Lockout authorization in {} (root only). Root can read it and so lift \
                     the retry limit: keep a copy off this machine.",
                    f.display()
                ),
                (hardening::Escrow::Print, None) => {}
            }
            println!(
                "TPM hardened: lockout after {} failures with one forgotten every {} s; \
                 TPM2_Clear needs the platform authorization.",
                tpm::WINDOWS_DA.max_tries,
                tpm::WINDOWS_DA.recovery_secs
            );
        }
    };
    Ok(())
}

/// `tpmvsc install [--uninstall]`.
pub(super) fn install(
    lib_dir: &std::path::Path,
    modules_dir: &std::path::Path,
    uninstall: bool,
) -> Result<()> {
    for (flag, dir) in [("--lib-dir", lib_dir), ("--modules-dir", modules_dir)] {
        if dir.as_os_str().is_empty() {
            return Err(Error::Usage(format!(
                "{flag} is empty; give a directory (or leave the option out for the default)"
            )));
        }
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{flag} {} is not a directory",
                dir.display()
            )));
        }
    }
    let lib = lib_dir.join("libtpmvsc.so");
    let reg = modules_dir.join("tpmvsc.module");
    if uninstall {
        for p in [&lib, &reg] {
            match std::fs::remove_file(p) {
                Ok(()) => println!("Removed {}.", p.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("current executable", e))?;
    let built = exe
        .parent()
        .map(|d| d.join("libtpmvsc.so"))
        .unwrap_or_default();
    if !built.is_file() {
        return Err(Error::Usage(format!(
            "{} not found: build it with `cargo build --release` and run target/release/tpmvsc install",
            built.display()
        )));
    }
    for d in [lib_dir, modules_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let bytes = std::fs::read(&built).map_err(|e| Error::io(&built, e))?;
    crate::store::atomic::write_atomic(&lib, &bytes, true)?;
    std::fs::set_permissions(&lib, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io(&lib, e))?;
    let text = format!(
        "# tpmvsc: TPM virtual smart cards (installed by `tpmvsc install`)\nmodule: {}\ncritical: no\n",
        lib.display()
    );
    crate::store::atomic::write_atomic(&reg, text.as_bytes(), true)?;
    std::fs::set_permissions(&reg, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io(&reg, e))?;
    println!(
        "Installed {} and registered it in {}.",
        lib.display(),
        reg.display()
    );
    println!("Programs loading it should run with TSS2_LOG=all+NONE set (see README).");
    Ok(())
}

/// `tpmvsc simulator …`.
pub(super) fn simulator(store: &Store, action: SimAction, system: bool, json: bool) -> Result<()> {
    let scope = if system {
        simulator::Scope::System
    } else {
        simulator::Scope::User
    };
    let flag = if system { " --system" } else { "" };
    match action {
        SimAction::Start => {
            let st = simulator::start(store, scope)?;
            eprintln!(
                "Simulated TPM running (pid {}, state in {}). Cards made on it are software tokens.",
                st.pid.unwrap_or(0),
                st.state_dir.display()
            );
            match &st.config_file {
                Some(f) => eprintln!(
                    "{} names it: every process on this machine uses it now (members of the \
                     tss group may). `tpmvsc simulator stop --system` ends that.",
                    f.display()
                ),
                None => println!("export {}={}", tpm::TCTI_ENV, st.tcti.unwrap_or_default()),
            }
        }
        SimAction::Stop => {
            let was = simulator::status(store, scope)?;
            if !was.running {
                // The configuration file goes even when the process is already gone.
                simulator::stop(store, scope)?;
                println!(
                    "No simulated TPM{flag} was running for the store {} (nothing stopped).",
                    store.root().display()
                );
                return Ok(());
            }
            let st = simulator::stop(store, scope)?;
            if st.running {
                return Err(Error::Simulator(format!(
                    "the simulated TPM (pid {}) is still running; stop it with `kill {}`",
                    st.pid.unwrap_or(0),
                    st.pid.unwrap_or(0)
                )));
            }
            println!(
                "Simulated TPM stopped (pid {}, store {}).",
                was.pid.unwrap_or(0),
                store.root().display()
            );
        }
        SimAction::Status => {
            let st = simulator::status(store, scope)?;
            if json {
                print_json(&st);
            } else if st.running {
                println!(
                    "Simulated TPM running: pid {}, TCTI {}, state {}",
                    st.pid.unwrap_or(0),
                    st.tcti.unwrap_or_default(),
                    st.state_dir.display()
                );
            } else {
                println!(
                    "Simulated TPM not running (start it with `tpmvsc simulator start{flag}`)."
                );
            }
        }
        SimAction::Env => {
            let st = simulator::status(store, scope)?;
            match (st.running, st.tcti) {
                (true, Some(t)) => println!("export {}={t}", tpm::TCTI_ENV),
                _ => {
                    return Err(Error::Simulator(format!(
                        "not running; start it with `tpmvsc simulator start{flag}`"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The lockout authorization in `file` (bounded; a pipe such as /dev/fd/N is read).
fn lockout_auth_in(file: &std::path::Path) -> Result<crate::provision::Secret> {
    let line = super::prompt::read_secret_file(file, "lockout authorization")?;
    Ok(hardening::parse_lockout_auth(&line))
}

/// `harden --lockout-auth-file F`: the TPM's current value when F is an existing file
/// (harden then replaces it), nothing when F is where the new value goes (harden refuses
/// anything but a regular file there).
fn read_lockout_auth_file(
    file: Option<&std::path::Path>,
) -> Result<Option<crate::provision::Secret>> {
    match file {
        Some(f) if f.is_file() => lockout_auth_in(f).map(Some),
        _ => Ok(None),
    }
}
