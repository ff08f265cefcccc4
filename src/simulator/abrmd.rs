//! tpm2-abrmd on a private D-Bus session bus, for tests and the benchmark.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::find_program;
use crate::error::{Error, Result};

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
