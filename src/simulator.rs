//! `tpmvsc simulator`: a swtpm TPM 2.0 simulator with its state under the store, for
//! machines without a TPM (DESIGN.md §6). It listens on 127.0.0.1 only, keeps its state
//! in a 0700 directory, uses the Windows dictionary-attack parameters instead of swtpm's
//! 3 tries, persists the SRK at 0x81000001, and is never used in place of a missing TPM
//! without the user exporting its TCTI. Cards made on it are software tokens.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::{SMALL_LIMIT, Store};
use crate::tpm::{Tpm, WINDOWS_DA};

const STATE_DIR: &str = "simulator";
const PID_FILE: &str = "swtpm.pid";
const PORT_FILE: &str = "port";
const READY_FILE: &str = "provisioned";

/// A swtpm process started by [`launch`].
#[derive(Debug)]
pub struct Launched {
    /// Process ID (of the daemon when daemonized).
    pub pid: i32,
    /// TPM command port; the control port is `port + 1`.
    pub port: u16,
    /// The child handle when not daemonized (the caller reaps it).
    pub child: Option<std::process::Child>,
}

impl Launched {
    /// The TCTI string for this simulator.
    pub fn tcti(&self) -> String {
        tcti_for(self.port)
    }
}

/// TCTI string of a swtpm on 127.0.0.1:`port`.
pub fn tcti_for(port: u16) -> String {
    format!("swtpm:host=127.0.0.1,port={port}")
}

/// Starts swtpm on two free loopback ports with its state in `state_dir` and waits until
/// it answers. `daemon` detaches it (the CLI); tests keep it as a child.
pub fn launch(state_dir: &Path, daemon: bool) -> Result<Launched> {
    let swtpm = which("swtpm").ok_or_else(|| {
        Error::Simulator(
            "swtpm is not installed; install it with `apt-get install swtpm swtpm-tools`".into(),
        )
    })?;
    let pid_file = state_dir.join(PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let mut last = String::new();
    for _ in 0..20 {
        let port = free_port_pair()?;
        let mut cmd = Command::new(&swtpm);
        cmd.arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={},mode=0600", state_dir.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--pid")
            .arg(format!("file={}", pid_file.display()))
            .arg("--log")
            .arg(format!(
                "file={},level=1",
                state_dir.join("swtpm.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if daemon {
            cmd.arg("--daemon");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Simulator(format!("cannot run swtpm: {e}")))?;
        let child_pid = i32::try_from(child.id()).unwrap_or(0);
        if daemon {
            let status = child
                .wait()
                .map_err(|e| Error::Simulator(format!("swtpm: {e}")))?;
            if !status.success() {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut err);
                }
                last = err.trim().to_string();
                continue;
            }
        }
        if wait_listening(port, Duration::from_secs(10)) {
            let pid = if daemon {
                read_pid(&pid_file).unwrap_or(0)
            } else {
                child_pid
            };
            return Ok(Launched {
                pid,
                port,
                child: if daemon { None } else { Some(child) },
            });
        }
        let _ = child.kill();
        let _ = child.wait();
        last = "swtpm did not start listening".into();
    }
    Err(Error::Simulator(format!("could not start swtpm: {last}")))
}

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

/// State of the store's simulator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub running: bool,
    pub pid: Option<i32>,
    pub port: Option<u16>,
    pub tcti: Option<String>,
    pub state_dir: PathBuf,
}

/// `tpmvsc simulator start`: starts (or finds running) the store's simulator.
pub fn start(store: &Store) -> Result<Status> {
    let dir = store.private_dir(STATE_DIR)?;
    let st = status(store)?;
    if st.running {
        return Ok(st);
    }
    let launched = launch(dir.path(), true)?;
    dir.write_atomic(PORT_FILE, launched.port.to_string().as_bytes(), true)?;
    if !dir.exists(READY_FILE)? {
        provision(
            &launched.tcti(),
            WINDOWS_DA.max_tries,
            WINDOWS_DA.recovery_secs,
            WINDOWS_DA.lockout_recovery_secs,
        )?;
        dir.write_atomic(READY_FILE, b"1\n", true)?;
    }
    status(store)
}

/// `tpmvsc simulator stop`: orderly TPM2_Shutdown, then the process ends.
pub fn stop(store: &Store) -> Result<Status> {
    let st = status(store)?;
    let (Some(pid), Some(tcti)) = (st.pid, st.tcti.clone()) else {
        return Ok(st);
    };
    if st.running {
        if let Ok(mut t) = Tpm::open_tcti(&tcti) {
            let _ = t.shutdown();
        }
        terminate(pid);
    }
    if let Some(dir) = store.existing_private_dir(STATE_DIR)? {
        let _ = dir.remove_file(PID_FILE);
    }
    status(store)
}

/// `tpmvsc simulator status`.
pub fn status(store: &Store) -> Result<Status> {
    let state = store.existing_private_dir(STATE_DIR)?;
    let number = |name: &str| {
        let bytes = state.as_ref()?.read(name, SMALL_LIMIT).ok()?;
        String::from_utf8(bytes).ok()?.trim().parse::<i64>().ok()
    };
    let pid = number(PID_FILE).and_then(|p| i32::try_from(p).ok());
    let port = number(PORT_FILE).and_then(|p| u16::try_from(p).ok());
    let running = match (pid, port) {
        (Some(p), Some(port)) => {
            process_alive(p) && wait_listening(port, Duration::from_millis(200))
        }
        _ => false,
    };
    Ok(Status {
        running,
        pid,
        port,
        tcti: port.map(tcti_for),
        state_dir: store.root().join(STATE_DIR),
    })
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

fn wait_listening(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A port P with P and P+1 free on 127.0.0.1, drawn at random below Linux's ephemeral
/// range (32768 and up), where the kernel's own picks for outgoing connections would
/// often take P+1 under load.
fn free_port_pair() -> Result<u16> {
    for _ in 0..500 {
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).map_err(|e| Error::Simulator(e.to_string()))?;
        let port = 20000 + u16::from_le_bytes(r) % 12000;
        let a = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let b = TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1));
        if a.is_ok() && b.is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Simulator(
        "no two adjacent free ports on 127.0.0.1".into(),
    ))
}

fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// tpm2-abrmd on a private D-Bus session bus, in front of a simulator: the resource
/// manager for tests and the benchmark. Both processes are killed when this is dropped.
#[derive(Debug)]
pub struct Abrmd {
    bus: std::process::Child,
    abrmd: std::process::Child,
    /// The private bus (`DBUS_SESSION_BUS_ADDRESS` for clients).
    pub address: String,
    /// The daemon's D-Bus name.
    pub name: String,
}

impl Abrmd {
    /// Starts a session bus and tpm2-abrmd on it for `tcti`, and waits until the daemon
    /// owns its name (bounded).
    pub fn start(tcti: &str) -> Result<Abrmd> {
        use std::io::Read;
        let fail = |w: String| Error::Simulator(w);
        let mut bus = Command::new("dbus-daemon")
            .args([
                "--config-file=/usr/share/dbus-1/session.conf",
                "--print-address=1",
                "--nofork",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot run dbus-daemon: {e}")))?;
        let mut line = Vec::new();
        if let Some(mut out) = bus.stdout.take() {
            let mut b = [0u8; 1];
            while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
                line.push(b[0]);
            }
        }
        let address = String::from_utf8_lossy(&line).trim().to_string();
        if address.is_empty() {
            let _ = bus.kill();
            let _ = bus.wait();
            return Err(fail("dbus-daemon printed no address".into()));
        }
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).map_err(|e| fail(e.to_string()))?;
        let name = format!("com.intel.tss2.Tabrmd.x{}", hex::encode(r));
        let abrmd = Command::new(find_program("tpm2-abrmd").unwrap_or_else(|| "tpm2-abrmd".into()))
            .arg("--session")
            .arg(format!("--tcti={tcti}"))
            .arg(format!("--dbus-name={name}"))
            .arg("--allow-root")
            .arg("--flush-all")
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("TSS2_LOG", "all+NONE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let abrmd = match abrmd {
            Ok(a) => a,
            Err(e) => {
                let _ = bus.kill();
                let _ = bus.wait();
                return Err(fail(format!("cannot run tpm2-abrmd: {e}")));
            }
        };
        let a = Abrmd {
            bus,
            abrmd,
            address,
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.ListNames",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &a.address)
                .output()
                .map_err(|e| fail(format!("cannot run dbus-send: {e}")))?;
            if String::from_utf8_lossy(&out.stdout).contains(&a.name) {
                return Ok(a);
            }
            if Instant::now() >= deadline {
                return Err(fail(
                    "tpm2-abrmd did not take its D-Bus name in 20 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TCTI string for clients (with `DBUS_SESSION_BUS_ADDRESS` = [`Abrmd::address`]).
    pub fn tcti(&self) -> String {
        format!("tabrmd:bus_name={},bus_type=session", self.name)
    }
}

impl Drop for Abrmd {
    fn drop(&mut self) {
        for c in [&mut self.abrmd, &mut self.bus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
