//! The TPM side: a swtpm per test (DA parameters set), tpm2-abrmd on a private bus,
//! and in-process checks against the TPM (a PIN, the DA counter).

use std::io::Read;
use std::path::Path;
use std::process::Child;

use tempfile::TempDir;
use tpmvsc::tpm::{Tpm, TpmError};

use super::*;

/// A swtpm child process on a fresh temporary state directory.
#[derive(Debug)]
pub struct Swtpm {
    dir: TempDir,
    pid: i32,
    port: u16,
    child: Option<Child>,
}

impl Swtpm {
    /// A fresh TPM with generous dictionary-attack parameters (32 tries, 2 s recovery):
    /// swtpm's default of 3 tries would lock the whole TPM after three wrong PINs.
    pub fn start() -> Swtpm {
        let s = Swtpm::launch_in(tempfile::tempdir().expect("temp dir for the swtpm state"));
        Tpm::open_tcti(&s.tcti())
            .and_then(|mut t| t.set_da_parameters(&[], 32, 2, 2))
            .expect("setting the DA parameters of a fresh swtpm");
        s
    }

    /// Like [`Swtpm::start`], with the SRK persisted at 0x81000001 (as the simulator does).
    pub fn start_with_persistent_srk() -> Swtpm {
        let s = Swtpm::launch_in(tempfile::tempdir().expect("temp dir for the swtpm state"));
        tpmvsc::simulator::provision(&s.tcti(), 32, 2, 2).expect("provisioning a fresh swtpm");
        s
    }

    fn launch_in(dir: TempDir) -> Swtpm {
        let l = tpmvsc::simulator::launch(dir.path(), false).expect("launching swtpm");
        Swtpm {
            dir,
            pid: l.pid,
            port: l.port,
            child: l.child,
        }
    }

    /// `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        tpmvsc::simulator::tcti_for(self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Orderly TPM2_Shutdown, stop, and start again on the same state (a reboot).
    pub fn restart(&mut self) {
        Tpm::open_tcti(&self.tcti())
            .expect("opening the TPM to shut it down")
            .shutdown()
            .expect("TPM2_Shutdown before restart");
        self.kill();
        let l = tpmvsc::simulator::launch(self.dir.path(), false).expect("relaunching swtpm");
        self.pid = l.pid;
        self.port = l.port;
        self.child = l.child;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Ok(mut t) = Tpm::open_tcti(&self.tcti())
        {
            let _ = t.shutdown();
        }
        self.kill();
    }
}

/// tpm2-abrmd on a private D-Bus session bus, in front of one swtpm (the library's
/// launcher, shared with the benchmark).
#[derive(Debug)]
pub struct Abrmd(tpmvsc::simulator::Abrmd);

impl Abrmd {
    /// Starts a session bus and tpm2-abrmd on it; waits until the daemon owns its name.
    pub fn start(swtpm: &Swtpm) -> Abrmd {
        Abrmd(tpmvsc::simulator::Abrmd::start(&swtpm.tcti()).expect("starting tpm2-abrmd"))
    }

    /// `tabrmd:bus_name=NAME,bus_type=session`.
    pub fn tcti(&self) -> String {
        self.0.tcti()
    }

    /// The environment child processes need to reach the bus.
    pub fn env(&self) -> (String, String) {
        ("DBUS_SESSION_BUS_ADDRESS".into(), self.0.address.clone())
    }
}

fn uuid_like() -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks `pin` against the card's storage key in the TPM, in this process: the same
/// check the module makes at login. The connection is closed on return.
pub fn check_pin(store: &TestStore, tcti: &str, card: &str, pin: &str) -> Result<(), TpmError> {
    let s = store.store();
    let (dir, record) = tpmvsc::provision::find(&s, card).expect("finding the card in the store");
    let keys = tpmvsc::provision::pin::read_keys(&dir, &record).expect("reading the card's keys");
    let auth = tpmvsc::card::pin_auth(&record.pin_salt, pin.as_bytes());
    let mut tpm = Tpm::open_tcti(tcti)?;
    tpm.use_srk(&record.srk)?;
    tpm.check_pin(keys.csk_ref(), &auth)
}

/// The TPM's dictionary-attack failure counter (connection closed on return).
pub fn da_counter(tcti: &str) -> u32 {
    Tpm::open_tcti(tcti)
        .expect("opening the TPM")
        .da_status()
        .expect("reading DA status")
        .counter
}

impl Swtpm {
    /// Sets the dictionary-attack parameters (lockout auth empty, as on a fresh swtpm).
    pub fn set_da(&self, max_tries: u32, recovery_time: u32, lockout_recovery: u32) {
        Tpm::open_tcti(&self.tcti())
            .and_then(|mut t| t.set_da_parameters(&[], max_tries, recovery_time, lockout_recovery))
            .expect("setting the DA parameters");
    }
}
