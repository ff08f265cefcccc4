//! swtpm processes: on loopback TCP ports (tests and the benchmark, each its own) or on
//! unix sockets (`tpmvsc simulator`, where only the socket's directory decides who may
//! connect: swtpm's control channel can read out the TPM's whole state, seeds included,
//! so no other local user may reach it).

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{PID_FILE, find_program, read_pid};
use crate::error::{Error, Result};

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
    let swtpm = find_program("swtpm").ok_or_else(|| {
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

/// Who may connect to a simulator on unix sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The caller only (sockets 0600 in the caller's 0700 directory).
    Owner,
    /// Members of this group too (sockets 0660 with that group): the system simulator.
    Group(u32),
}

/// Starts swtpm as a daemon on the unix socket `socket` (the control channel on
/// `socket.ctrl`, where the swtpm TCTI looks for it) with its state in `state_dir`, and
/// waits until it answers; the daemon's pid.
pub(crate) fn launch_unix(state_dir: &Path, socket: &Path, access: Access) -> Result<i32> {
    let swtpm = find_program("swtpm").ok_or_else(|| {
        Error::Simulator(
            "swtpm is not installed; install it with `apt-get install swtpm swtpm-tools`".into(),
        )
    })?;
    // sun_path holds 108 bytes with its NUL.
    if socket.as_os_str().len() > 100 {
        return Err(Error::Simulator(format!(
            "the socket path {} is too long for a unix socket (at most 100 bytes): use a \
             store with a shorter path (TPMVSC_STORE)",
            socket.display()
        )));
    }
    let ctrl = control_socket(socket);
    for s in [socket, ctrl.as_path()] {
        let _ = std::fs::remove_file(s);
    }
    let perms = match access {
        Access::Owner => "mode=0600".to_string(),
        Access::Group(gid) => format!("mode=0660,gid={gid}"),
    };
    let pid_file = state_dir.join(PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let out = Command::new(&swtpm)
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={},mode=0600", state_dir.display()))
        .arg("--server")
        .arg(format!("type=unixio,path={},{perms}", socket.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={},{perms}", ctrl.display()))
        .arg("--flags")
        .arg("not-need-init,startup-clear")
        .arg("--pid")
        .arg(format!("file={}", pid_file.display()))
        .arg("--log")
        .arg(format!(
            "file={},level=1",
            state_dir.join("swtpm.log").display()
        ))
        .arg("--daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Simulator(format!("cannot run swtpm: {e}")))?;
    if !out.status.success() {
        return Err(Error::Simulator(format!(
            "could not start swtpm: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if !wait_connectable(socket, Duration::from_secs(10)) {
        return Err(Error::Simulator(format!(
            "swtpm did not start listening on {}",
            socket.display()
        )));
    }
    read_pid(&pid_file).ok_or_else(|| Error::Simulator("swtpm wrote no pid file".into()))
}

/// The control socket beside a command socket, as the swtpm TCTI derives it.
pub(crate) fn control_socket(socket: &Path) -> PathBuf {
    let mut s = socket.as_os_str().to_owned();
    s.push(".ctrl");
    PathBuf::from(s)
}

/// True once something accepts connections on the unix socket (bounded).
pub(crate) fn wait_connectable(socket: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if UnixStream::connect(socket).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
