//! `tpmvsc simulator`: a swtpm TPM 2.0 simulator for machines without a TPM (DESIGN.md
//! §6). It uses the Windows dictionary-attack parameters instead of swtpm's 3 tries,
//! persists the SRK at 0x81000001, and is never used in place of a missing TPM unless
//! told: cards made on it are software tokens.
//!
//! It listens on unix sockets, never on TCP: swtpm's control channel hands out the
//! TPM's whole state (every seed) to whoever connects, so only the directory holding the
//! sockets decides who may.
//! - For one user (`start`): state and sockets in the store's `simulator` directory
//!   (0700); the user exports the TCTI it prints.
//! - For the machine (`start --system`, root): state in root's store, sockets in
//!   `<lock dir>/simulator` (`/run/tpmvsc/simulator`, root:tss 0750, sockets 0660), and
//!   the system configuration file points every process at it, daemons included —
//!   members of `tss` can use it (and read its state: they are trusted with the TPM).
//!   `stop --system` removes that file again.

mod abrmd;
mod swtpm;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use abrmd::Abrmd;
pub use swtpm::{Launched, launch, tcti_for};

use crate::checked_dir::{CheckedDir, DirRule};
use crate::error::{Error, Result};
use crate::store::{SMALL_LIMIT, Store};
use crate::tpm::{Tpm, WINDOWS_DA};
use swtpm::Access;

const STATE_DIR: &str = "simulator";
const PID_FILE: &str = "swtpm.pid";
/// The command socket's path, written at start (the system simulator's lives elsewhere).
const SOCKET_FILE: &str = "socket";
const READY_FILE: &str = "provisioned";
const SOCKET_NAME: &str = "swtpm.sock";
/// The first line of a configuration file the system simulator wrote.
const CONFIG_MARKER: &str = "# Written by `tpmvsc simulator start --system`";

/// A program on PATH, or in the system daemon directories (`/usr/sbin`, `/sbin`,
/// `/usr/local/sbin`) that an ordinary user's PATH lacks.
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_program_in(&std::env::var_os("PATH").unwrap_or_default(), name)
}

/// [`find_program`] with `path` as PATH.
pub fn find_program_in(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// First-time set-up of a fresh simulator TPM: DA parameters, then the SRK persisted at
/// 0x81000001.
pub fn provision(tcti: &str, max_tries: u32, recovery: u32, lockout_recovery: u32) -> Result<()> {
    let mut t = Tpm::open_tcti(tcti)?;
    t.set_da_parameters(&[], max_tries, recovery, lockout_recovery)?;
    t.persist_srk()?;
    Ok(())
}

/// Which simulator: the caller's own, or the machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The store's simulator, for the caller.
    User,
    /// The machine's (root), which the system configuration file names.
    System,
}

/// State of a simulator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub running: bool,
    pub pid: Option<i32>,
    /// The command socket (the control socket is beside it, `.ctrl`).
    pub socket: Option<PathBuf>,
    pub tcti: Option<String>,
    pub state_dir: PathBuf,
    /// The system configuration file naming it (`--system` only).
    pub config_file: Option<PathBuf>,
}

/// `tpmvsc simulator start [--system]`: starts (or finds running) the simulator.
pub fn start(store: &Store, scope: Scope) -> Result<Status> {
    if scope == Scope::System {
        require_root()?;
        check_config_is_ours_or_absent()?;
    }
    let dir = store.private_dir(STATE_DIR)?;
    let st = status(store, scope)?;
    if st.running {
        if scope == Scope::System {
            write_system_config(&dir)?;
        }
        return Ok(st);
    }
    let (socket, access) = match scope {
        Scope::User => (dir.join(SOCKET_NAME), Access::Owner),
        Scope::System => (
            system_run_dir()?.join(SOCKET_NAME),
            Access::Group(tss_gid()?),
        ),
    };
    swtpm::launch_unix(dir.path(), &socket, access)?;
    let text = format!("{}\n", socket.display());
    dir.write_atomic(SOCKET_FILE, text.as_bytes(), true)?;
    let tcti = socket_tcti(&socket);
    if !dir.exists(READY_FILE)? {
        provision(
            &tcti,
            WINDOWS_DA.max_tries,
            WINDOWS_DA.recovery_secs,
            WINDOWS_DA.lockout_recovery_secs,
        )?;
        dir.write_atomic(READY_FILE, b"1\n", true)?;
    }
    if scope == Scope::System {
        write_system_config(&dir)?;
    }
    status(store, scope)
}

/// `tpmvsc simulator stop [--system]`: orderly TPM2_Shutdown, then the process ends (and
/// the system configuration file it wrote goes).
pub fn stop(store: &Store, scope: Scope) -> Result<Status> {
    if scope == Scope::System {
        require_root()?;
    }
    let st = status(store, scope)?;
    if let (true, Some(pid), Some(tcti)) = (st.running, st.pid, st.tcti.as_deref()) {
        if let Ok(mut t) = Tpm::open_tcti(tcti) {
            let _ = t.shutdown();
        }
        terminate(pid);
    }
    if let Some(dir) = store.existing_private_dir(STATE_DIR)? {
        let _ = dir.remove_file(PID_FILE);
    }
    if scope == Scope::System {
        remove_system_config()?;
    }
    status(store, scope)
}

/// `tpmvsc simulator status [--system]`.
pub fn status(store: &Store, scope: Scope) -> Result<Status> {
    let state = store.existing_private_dir(STATE_DIR)?;
    let text = |name: &str| {
        let bytes = state.as_ref()?.read(name, SMALL_LIMIT).ok()?;
        Some(String::from_utf8(bytes).ok()?.trim().to_string())
    };
    let pid = text(PID_FILE).and_then(|p| p.parse::<i32>().ok());
    let socket = text(SOCKET_FILE)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let running = match (pid, &socket) {
        (Some(p), Some(s)) => {
            process_alive(p) && swtpm::wait_connectable(s, Duration::from_millis(200))
        }
        _ => false,
    };
    Ok(Status {
        running,
        pid,
        tcti: socket.as_deref().map(socket_tcti),
        socket,
        state_dir: store.root().join(STATE_DIR),
        config_file: (scope == Scope::System).then(system_config_file),
    })
}

/// The TCTI of a simulator on the unix socket `socket`.
fn socket_tcti(socket: &Path) -> String {
    format!("swtpm:path={}", socket.display())
}

fn require_root() -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::Usage(
            "--system needs root: it serves every user of the machine (run it with sudo)".into(),
        ))
    }
}

/// The `tss` group's id: members may use the system simulator, as they may use
/// `/dev/tpmrm0`.
fn tss_gid() -> Result<u32> {
    let text = std::fs::read_to_string("/etc/group").map_err(|e| Error::io("/etc/group", e))?;
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == "tss").then(|| f.nth(1)?.parse::<u32>().ok())?
        })
        .ok_or_else(|| {
            Error::Simulator(
                "there is no group `tss` (the group that may use the TPM): install \
                 tpm2-tools, or create it with `groupadd --system tss`"
                    .into(),
            )
        })
}

/// The system simulator's socket directory, `<lock dir>/simulator`: root:tss 0750, so
/// that only root and `tss` members can reach the sockets; its `locks` directory (root,
/// 0755) holds the TPM's cross-process lock files, made here for every user to open.
fn system_run_dir() -> Result<PathBuf> {
    let base = crate::tpm::lock_dir();
    let run = base.join(STATE_DIR);
    crate::checked_dir::create_missing(&base, "lock directory")?;
    let _ = std::fs::create_dir(&run);
    let dir = CheckedDir::open(&run, "simulator socket directory", DirRule::Lock)?
        .ok_or_else(|| Error::Simulator(format!("{} could not be made", run.display())))?;
    let gid = tss_gid()?;
    dir.set_owner_and_mode(0, gid, 0o750)?;
    Ok(run)
}

/// The system configuration file, `/etc/tpmvsc/tpmvsc.conf`.
fn system_config_file() -> PathBuf {
    crate::config::system_dir().join(crate::config::FILE_NAME)
}

/// Refuses to start when a configuration file the simulator did not write exists: it
/// is the administrator's, and the simulator would replace their TPM setting.
fn check_config_is_ours_or_absent() -> Result<()> {
    let path = system_config_file();
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.starts_with(CONFIG_MARKER) => Err(Error::Simulator(format!(
            "{} exists and was not written by the simulator; it is left as it is. To use \
             the system simulator, move it away (or add its `tcti` line yourself)",
            path.display()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Writes the system configuration file naming the simulator and its lock directory,
/// and makes that directory's lock files for its TCTI, so every user opens them.
fn write_system_config(state: &CheckedDir) -> Result<()> {
    let socket = state
        .read(SOCKET_FILE, SMALL_LIMIT)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| PathBuf::from(s.trim()))
        .ok_or_else(|| Error::Simulator("the simulator's socket is not recorded".into()))?;
    let tcti = socket_tcti(&socket);
    let run = socket.parent().unwrap_or(Path::new("/")).to_path_buf();
    let locks = run.join("locks");
    let _ = std::fs::create_dir(&locks);
    let lock_dir = CheckedDir::open(&locks, "lock directory", DirRule::Lock)?
        .ok_or_else(|| Error::Simulator(format!("{} could not be made", locks.display())))?;
    lock_dir.set_owner_and_mode(0, 0, 0o755)?;
    for name in crate::tpm::lock::lock_file_names(&tcti) {
        lock_dir.make_shared_file(&name)?;
    }
    let text = format!(
        "{CONFIG_MARKER}; `tpmvsc simulator stop --system` removes it.\n\
         # Every process on this machine uses the simulated TPM: cards made on it are\n\
         # software tokens.\n\
         tcti = \"{tcti}\"\n\
         lock_dir = \"{}\"\n",
        locks.display()
    );
    let dir = crate::config::make_system_dir()?;
    let config = CheckedDir::open(&dir, "configuration directory", DirRule::Config)?
        .ok_or_else(|| Error::Simulator(format!("{} could not be made", dir.display())))?;
    config.write_shared_atomic(crate::config::FILE_NAME, text.as_bytes())
}

/// Removes the system configuration file, when the simulator wrote it.
fn remove_system_config() -> Result<()> {
    let path = system_config_file();
    match std::fs::read_to_string(&path) {
        Ok(text) if text.starts_with(CONFIG_MARKER) => {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))
        }
        _ => Ok(()),
    }
}

/// Stops a process: SIGTERM, then SIGKILL after 5 s.
pub fn terminate(pid: i32) {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if process_alive(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

fn process_alive(pid: i32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<i32> {
    let bytes = crate::checked_dir::read_path(path, SMALL_LIMIT).ok()?;
    String::from_utf8(bytes).ok()?.trim().parse().ok()
}
