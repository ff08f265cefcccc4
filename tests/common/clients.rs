//! Real client programs (ssh, OpenSSL, NSS, GnuTLS, Firefox) against a card: their
//! world, a runner with a deadline and output checks.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

/// How long one client program (an example script, an ssh login, a TLS handshake) may
/// take before the test calls it hung.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// One client test's world: its own swtpm (persistent SRK, as the simulator), store, and
/// card `c` made with `--puk default` and the default PIN, which `pin_file` holds. Client
/// programs get the module's environment through [`ClientWorld::command`]; this process's
/// environment is never changed.
#[derive(Debug)]
pub struct ClientWorld {
    pub swtpm: Swtpm,
    pub store: TestStore,
    pub cli: Cli,
    pub pin_file: PathBuf,
    /// Shared: the package test does not register a module while clients run.
    _machine: std::fs::File,
}

impl ClientWorld {
    pub fn new() -> ClientWorld {
        let machine = machine_lock(false);
        let swtpm = Swtpm::start_with_persistent_srk();
        let store = TestStore::new();
        let cli = Cli::new(&store, &swtpm.tcti());
        cli.tpmvsc(&["create", "--name", "c", "--puk", "default"])
            .ok("tpmvsc create --name c --puk default");
        let pin_file = store.scratch("pin");
        std::fs::write(&pin_file, format!("{DEFAULT_PIN}\n")).expect("writing the PIN file");
        ClientWorld {
            swtpm,
            store,
            cli,
            pin_file,
            _machine: machine,
        }
    }

    /// `tpmvsc keygen c --type KIND --label LABEL --pin-file F`.
    pub fn keygen(&self, kind: &str, label: &str) {
        let pin = self.pin_file.to_str().expect("PIN file path is UTF-8");
        self.cli
            .tpmvsc(&[
                "keygen",
                "c",
                "--type",
                kind,
                "--label",
                label,
                "--pin-file",
                pin,
            ])
            .ok("tpmvsc keygen");
    }

    /// A scratch directory inside the test's temp dir (created).
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.store.scratch(name);
        std::fs::create_dir_all(&d).expect("creating a scratch dir");
        d
    }

    /// `program` with the module's environment (TPMVSC_STORE, TPMVSC_TCTI,
    /// TPMVSC_LOCK_DIR, TSS2_LOG=all+NONE), TPMVSC_MODULE = the built module, and the
    /// built binaries first on PATH (for the example scripts). Stdin is empty.
    pub fn command(&self, program: &str) -> Command {
        let bin_dir = module_path()
            .parent()
            .expect("the module has a directory")
            .to_path_buf();
        let mut path = vec![bin_dir];
        if let Some(p) = std::env::var_os("PATH") {
            path.extend(std::env::split_paths(&p));
        }
        let mut c = Command::new(program);
        c.env("TPMVSC_STORE", self.store.path())
            .env("TPMVSC_TCTI", self.swtpm.tcti())
            .env("TPMVSC_LOCK_DIR", tpmvsc::tpm::lock_dir())
            .env("TSS2_LOG", "all+NONE")
            .env("TPMVSC_MODULE", module_path())
            .env("PATH", std::env::join_paths(path).expect("PATH"))
            .stdin(Stdio::null());
        c
    }

    /// Runs `bash examples/SCRIPT` with CARD=c, PIN_FILE, a fresh WORKDIR (returned) and
    /// `env` added.
    pub fn run_example(&self, script: &str, env: &[(&str, &str)]) -> (Output, PathBuf) {
        let work = self.dir(&format!("work-{script}"));
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(script);
        let mut c = self.command("bash");
        c.arg(&path)
            .env("CARD", "c")
            .env("PIN_FILE", &self.pin_file)
            .env("WORKDIR", &work);
        for (k, v) in env {
            c.env(k, v);
        }
        (run_output(c, CLIENT_TIMEOUT), work)
    }
}

/// Runs a prepared command to its end, capturing both outputs. It runs in its own process
/// group: after `limit` the whole group is killed (servers an example script started too).
pub fn run_output(mut cmd: Command, limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let mut out_pipe = child.stdout.take().expect("child stdout");
    let mut err_pipe = child.stderr.take().expect("child stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = wait_with_deadline(&mut child, limit);
    if status.is_none() {
        // The leader is gone; its group may live on and keep the pipes open.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
    }
    let stdout = out_t.join().expect("stdout reader");
    let stderr = err_t.join().expect("stderr reader");
    let status = status.unwrap_or_else(|| {
        panic!("{what} did not finish in {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    Output {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// A loopback port P with P+1 free too, at the time of asking, drawn at random from
/// 10000..20000: below Linux's ephemeral range (the source ports of every client
/// connection, swtpm's included) and below the simulator's 20000..32000, so that a port
/// checked free here is not taken by another test's connection a moment later.
pub fn free_port_pair() -> u16 {
    use std::net::TcpListener;
    (0..200)
        .find_map(|_| {
            let mut r = [0u8; 2];
            getrandom::fill(&mut r).ok()?;
            let p = 10000 + u16::from_le_bytes(r) % 9999;
            let _a = TcpListener::bind(("127.0.0.1", p)).ok()?;
            let _b = TcpListener::bind(("127.0.0.1", p + 1)).ok()?;
            Some(p)
        })
        .expect("two free consecutive loopback ports")
}

impl ClientWorld {
    /// The enrollment flow with a throwaway local CA in `dir`: `tpmvsc csr` for key
    /// `label` (SAN dns:localhost), `openssl x509 -req -copy_extensions copy`, and
    /// `tpmvsc import-cert`. Returns (CA certificate, card certificate) paths.
    pub fn enroll(&self, label: &str, subject: &str, dir: &Path) -> (PathBuf, PathBuf) {
        let ca_key = dir.join("ca.key");
        let ca = dir.join("ca.pem");
        let csr = dir.join(format!("{label}.csr"));
        let cert = dir.join(format!("{label}.pem"));
        let mut c = self.command("openssl");
        c.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=tpmvsc test CA", "-keyout"])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca);
        run_output(c, CLIENT_TIMEOUT).ok("openssl req -x509 (the test CA)");
        let pin = self.pin_file.to_str().expect("UTF-8 path");
        let csr_s = csr.to_str().expect("UTF-8 path");
        self.cli
            .tpmvsc(&[
                "csr",
                "c",
                "--key",
                label,
                "--subject",
                subject,
                "--san",
                "dns:localhost",
                "--out",
                csr_s,
                "--pin-file",
                pin,
            ])
            .ok("tpmvsc csr");
        let mut c = self.command("openssl");
        c.args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args([
                "-CAcreateserial",
                "-days",
                "1",
                "-copy_extensions",
                "copy",
                "-out",
            ])
            .arg(&cert);
        run_output(c, CLIENT_TIMEOUT).ok("openssl x509 -req (the CA signs the card's CSR)");
        self.cli
            .tpmvsc(&["import-cert", "c", cert.to_str().expect("UTF-8 path")])
            .ok("tpmvsc import-cert");
        (ca, cert)
    }
}

/// Panics, showing the whole output, unless the program exited 0.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.code == 0,
        "{what} failed (exit {}):\n--- stdout\n{}\n--- stderr\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
}

/// Panics, showing the whole output, unless stdout or stderr contains `needle`.
pub fn assert_output_has(out: &Output, needle: &str, what: &str) {
    assert!(
        out.stdout.contains(needle) || out.stderr.contains(needle),
        "{what}: {needle:?} not in the output (exit {}):\n--- stdout\n{}\n--- stderr\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
}
