//! Shared test harness: a real swtpm per test, an optional tpm2-abrmd on a private session
//! bus, temporary stores and a runner for the built binaries. No mocked TPM anywhere.
//! Everything a child process needs is passed in its own environment; the test process
//! never calls `set_var`.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tpmvsc::store::Store;
use tpmvsc::tpm::{Tpm, TpmError};

/// The Windows default PIN every card gets unless told otherwise.
pub const DEFAULT_PIN: &str = "12345678";

/// How long one CLI command may take before the test calls it hung.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

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

/// A temporary card store.
#[derive(Debug)]
pub struct TestStore {
    dir: TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("temp dir for the store"),
        }
    }

    /// The store root (`TPMVSC_STORE`).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn store(&self) -> Store {
        Store::at(self.path())
    }

    /// The directory holding the card directories.
    pub fn cards_dir(&self) -> PathBuf {
        self.path().join("cards")
    }

    /// A scratch file path inside the temp dir (for --pin-file and friends).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// This test's configuration directory (`TPMVSC_CONFIG_DIR`, in place of /etc/tpmvsc).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(self, code: i32, what: &str) -> Output {
        assert_eq!(
            self.code, code,
            "{what}: expected exit {code}, got {self:#?}"
        );
        self
    }

    pub fn ok(self, what: &str) -> Output {
        self.expect_code(0, what)
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// Stderr lines that are not empty.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs the built binaries against one store and one TCTI, configured by environment.
#[derive(Debug, Clone)]
pub struct Cli {
    store: PathBuf,
    config: PathBuf,
    tcti: String,
    lock_dir: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl Cli {
    /// The TPM lock directory is the one this process's in-process `Tpm::open_tcti` uses,
    /// so in-process connections and child processes exclude each other properly.
    pub fn new(store: &TestStore, tcti: &str) -> Cli {
        Cli {
            store: store.path(),
            config: store.config_dir(),
            tcti: tcti.to_string(),
            lock_dir: tpmvsc::tpm::lock_dir(),
            extra_env: Vec::new(),
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Cli {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    fn command(&self, bin: &str, args: &[&str]) -> Command {
        self.command_in(&[], bin, args)
    }

    /// `bin ARGS` run by `wrapper` (`strace … --`, `setpriv …`) when it is not empty.
    fn command_in(&self, wrapper: &[&str], bin: &str, args: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        c.args(args)
            .env("TPMVSC_STORE", &self.store)
            .env("TPMVSC_CONFIG_DIR", &self.config)
            .env("TPMVSC_TCTI", &self.tcti)
            .env("TPMVSC_LOCK_DIR", &self.lock_dir)
            .env("TSS2_LOG", "all+NONE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    /// A `tpmvsc` process not yet waited for (for kill tests). Stdin is empty.
    pub fn spawn_tpmvsc(&self, args: &[&str]) -> Child {
        self.command(env!("CARGO_BIN_EXE_tpmvsc"), args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning tpmvsc")
    }

    /// Runs `tpmvsc ARGS` with no standard input (not a terminal).
    pub fn tpmvsc(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_tpmvsc"), args, None)
    }

    /// Runs `tpmvsc ARGS` with `stdin` as standard input.
    pub fn tpmvsc_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run(env!("CARGO_BIN_EXE_tpmvsc"), args, Some(stdin))
    }

    pub fn tpmvscmgr(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_tpmvscmgr"), args, None)
    }

    pub fn tpmvscmgr_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run(env!("CARGO_BIN_EXE_tpmvscmgr"), args, Some(stdin))
    }

    /// Runs `tpmvsc ARGS` under `wrapper` (e.g. `strace` injecting a fault) with `stdin`.
    pub fn tpmvsc_wrapped(&self, wrapper: &[&str], args: &[&str], stdin: &str) -> Output {
        self.run_in(wrapper, env!("CARGO_BIN_EXE_tpmvsc"), args, Some(stdin))
    }

    fn run(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_in(&[], bin, args, stdin)
    }

    fn run_in(&self, wrapper: &[&str], bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command_in(wrapper, bin, args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("child stdin");
            // The child may exit before reading everything (a refused argument).
            let _ = pipe.write_all(text.as_bytes());
        }
        let mut out_pipe = child.stdout.take().expect("child stdout");
        let mut err_pipe = child.stderr.take().expect("child stderr");
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out_pipe.read_to_string(&mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            s
        });
        let status = wait_with_deadline(&mut child, CLI_TIMEOUT)
            .unwrap_or_else(|| panic!("{bin} {args:?} did not finish in {CLI_TIMEOUT:?}"));
        let stdout = out_t.join().expect("stdout reader");
        let stderr = err_t.join().expect("stderr reader");
        Output {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

/// Waits for a child; kills it and returns None after `limit`.
pub fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("waiting for a child") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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

/// True when `name` is on PATH. Missing: false (the test skips) unless `CI` is set, then
/// it panics.
pub fn require_tool(name: &str) -> bool {
    // System daemons (tpm2-abrmd, sshd) live in sbin directories a user's PATH lacks.
    let found = tpmvsc::simulator::find_program(name).is_some();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required on CI but not installed");
        }
        eprintln!("skipping: {name} is not installed");
    }
    found
}

/// `tpmvsc list --json` as an array.
pub fn list_json(cli: &Cli) -> Vec<serde_json::Value> {
    let out = cli.tpmvsc(&["list", "--json"]).ok("tpmvsc list --json");
    out.json()
        .as_array()
        .expect("list --json is an array")
        .clone()
}

/// `tpmvsc info CARD --json`.
pub fn info_json(cli: &Cli, card: &str) -> serde_json::Value {
    cli.tpmvsc(&["info", card, "--json"])
        .ok("tpmvsc info --json")
        .json()
}

/// Creates a card with the default PIN; returns its `--json` summary.
pub fn create_card(cli: &Cli, name: &str) -> serde_json::Value {
    cli.tpmvsc(&["create", "--name", name, "--json"])
        .ok("tpmvsc create")
        .json()
}

/// Every file under `root`, recursively.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

// ---- Helpers for the PIN/PUK/admin-key lifecycle tests (added; the ones above are
// ---- unchanged).

/// The well-known default admin key of Windows virtual smart cards.
pub const DEFAULT_ADMIN_KEY: &str = "010203040506070801020304050607080102030405060708";

impl Swtpm {
    /// Sets the dictionary-attack parameters (lockout auth empty, as on a fresh swtpm).
    pub fn set_da(&self, max_tries: u32, recovery_time: u32, lockout_recovery: u32) {
        Tpm::open_tcti(&self.tcti())
            .and_then(|mut t| t.set_da_parameters(&[], max_tries, recovery_time, lockout_recovery))
            .expect("setting the DA parameters");
    }
}

impl Cli {
    /// A `tpmvsc` process not yet waited for, with `stdin` written to its standard input
    /// (then closed). Stdout and stderr are discarded.
    pub fn spawn_tpmvsc_stdin(&self, args: &[&str], stdin: &str) -> Child {
        let mut child = self
            .command(env!("CARGO_BIN_EXE_tpmvsc"), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning tpmvsc");
        let mut pipe = child.stdin.take().expect("child stdin");
        // A few short lines fit in the pipe buffer: this never blocks.
        let _ = pipe.write_all(stdin.as_bytes());
        drop(pipe);
        child
    }

    /// `tpmvsc check-pin CARD --stdin` with `pin`.
    pub fn check_pin(&self, card: &str, pin: &str) -> Output {
        self.tpmvsc_stdin(&["check-pin", card, "--stdin"], &format!("{pin}\n"))
    }
}

/// The card's directory, as `info --json` reports it.
pub fn card_dir(cli: &Cli, card: &str) -> PathBuf {
    PathBuf::from(
        info_json(cli, card)["path"]
            .as_str()
            .expect("path in info --json"),
    )
}

/// A numeric field of `info CARD --json`.
pub fn info_u64(cli: &Cli, card: &str, key: &str) -> u64 {
    info_json(cli, card)[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in info --json is a number"))
}

/// A JSON file parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

/// `tpmvsc tpm status --json`.
pub fn tpm_status(cli: &Cli) -> serde_json::Value {
    cli.tpmvsc(&["tpm", "status", "--json"])
        .ok("tpmvsc tpm status --json")
        .json()
}

/// `tpmvsc admin challenge CARD --json`: the challenge and how many are left.
pub fn admin_challenge(cli: &Cli, card: &str) -> (String, u64) {
    let v = cli
        .tpmvsc(&["admin", "challenge", card, "--json"])
        .ok("tpmvsc admin challenge --json")
        .json();
    let c = v["challenge"]
        .as_str()
        .expect("challenge in admin challenge --json")
        .to_string();
    assert_eq!(c.len(), 16, "a challenge is 16 hex digits: {v}");
    let left = v["challenges_left"]
        .as_u64()
        .expect("challenges_left in admin challenge --json");
    (c, left)
}

/// `tpmvsc admin response --challenge CHALLENGE --stdin` with KEY on standard input (a
/// key is never an argument), trimmed.
pub fn admin_response(cli: &Cli, key: &str, challenge: &str) -> String {
    cli.tpmvsc_stdin(
        &["admin", "response", "--challenge", challenge, "--stdin"],
        &format!("{key}\n"),
    )
    .ok("tpmvsc admin response")
    .stdout
    .trim()
    .to_string()
}

/// True when `needle` occurs in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The files under `root` whose bytes contain `needle`.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| contains_bytes(&b, needle)))
        .collect()
}

// ---- Helpers for the wire, hardening and store-attack tests (added; the ones above are
// ---- unchanged).

/// One TCP connection that went through a [`Relay`], recorded in both directions.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// True for swtpm's control port (P+1), false for the TPM command port.
    pub control: bool,
    /// Every byte the client sent, in order.
    pub to_tpm: Vec<u8>,
    /// Every byte the TPM answered, in order.
    pub from_tpm: Vec<u8>,
}

/// A TCP relay between TPM clients and a swtpm that records every byte: it listens on
/// 127.0.0.1:Q and Q+1 and forwards to the swtpm's command port P and control port P+1
/// (the swtpm TCTI derives the control port from the command port). Each accepted
/// connection is recorded separately, in accept order. The listeners stop on drop.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Starts relaying to the swtpm whose command port is `target`.
    pub fn start(target: u16) -> Relay {
        use std::net::TcpListener;
        // Random candidates below the kernel's ephemeral range (32768 and up), where the
        // port after a free one is rarely taken by a client connection.
        let (data, ctrl) = (0..500)
            .find_map(|_| {
                let mut r = [0u8; 2];
                std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").ok()?, &mut r)
                    .ok()?;
                let q = 20_000 + u16::from_le_bytes(r) % 12_000;
                let a = TcpListener::bind(("127.0.0.1", q)).ok()?;
                let b = TcpListener::bind(("127.0.0.1", q + 1)).ok()?;
                Some((a, b))
            })
            .expect("two free consecutive loopback ports for the relay");
        let port = data.local_addr().expect("relay address").port();
        let relay = Relay {
            port,
            log: Default::default(),
            stop: Default::default(),
            swallow: Default::default(),
        };
        for (listener, to, control) in [(data, target, false), (ctrl, target + 1, true)] {
            let log = relay.log.clone();
            let stop = relay.stop.clone();
            let swallow = relay.swallow.clone();
            std::thread::spawn(move || relay_accept(listener, to, control, log, stop, swallow));
        }
        relay
    }

    /// The next TPM command any open connection sends is swallowed: never forwarded and
    /// never answered, its connection to swtpm closed (so that swtpm serves others) while
    /// the client's side stays open — a response lost for good, with the TPM itself fine.
    pub fn swallow_next_command(&self) {
        self.swallow
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `swtpm:host=127.0.0.1,port=Q`: a TCTI that goes through the relay.
    pub fn tcti(&self) -> String {
        tpmvsc::simulator::tcti_for(self.port)
    }

    /// How many connections were accepted so far.
    pub fn count(&self) -> usize {
        self.log.lock().expect("relay log").len()
    }

    /// A copy of every recorded connection so far.
    pub fn connections(&self) -> Vec<Recorded> {
        self.log.lock().expect("relay log").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake both accept loops so that they see the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port + 1));
    }
}

fn relay_accept(
    listener: std::net::TcpListener,
    to: u16,
    control: bool,
    log: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    for client in listener.incoming() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
            // Nothing listens behind the relay: the client sees a closed connection.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let index = {
            let mut l = log.lock().expect("relay log");
            l.push(Recorded {
                control,
                ..Recorded::default()
            });
            l.len() - 1
        };
        let (c2, s2) = (
            client.try_clone().expect("cloning the client socket"),
            server.try_clone().expect("cloning the server socket"),
        );
        let (up, down) = (log.clone(), log.clone());
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The answer pump only learns that its connection was swallowed (never asks).
        let up_swallow = (!control).then(|| (swallow.clone(), frozen.clone()));
        let down_swallow = (!control).then(|| (Default::default(), frozen));
        std::thread::spawn(move || relay_pump(client, server, index, true, up, up_swallow));
        std::thread::spawn(move || relay_pump(s2, c2, index, false, down, down_swallow));
    }
}

/// Copies `from` → `to`, recording each chunk before it is forwarded, so that whatever a
/// client has seen answered is already in the log.
type Swallow = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

fn relay_pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    index: usize,
    upstream: bool,
    log: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    swallow: Option<Swallow>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((wanted, frozen)) = &swallow
            && (frozen.load(SeqCst) || wanted.swap(false, SeqCst))
        {
            // Swallowed: swtpm's side goes (its answer pump ends without closing the
            // client), the client's side stays open and silent until the client closes.
            if !frozen.swap(true, SeqCst) {
                let _ = to.shutdown(std::net::Shutdown::Both);
            }
            continue;
        }
        {
            let mut l = log.lock().expect("relay log");
            let r = &mut l[index];
            if upstream {
                r.to_tpm.extend_from_slice(&buf[..n]);
            } else {
                r.from_tpm.extend_from_slice(&buf[..n]);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if swallow
        .as_ref()
        .is_some_and(|(_, frozen)| frozen.load(SeqCst))
    {
        return;
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// TPM_CC_StartAuthSession.
pub const CC_START_AUTH_SESSION: u32 = 0x0000_0176;
/// TPM_RH_NULL.
pub const TPM_RH_NULL: u32 = 0x4000_0007;

/// One TPM command as sent on the wire.
#[derive(Debug, Clone)]
pub struct WireCommand {
    pub tag: u16,
    pub code: u32,
    /// The whole command, header included.
    pub bytes: Vec<u8>,
}

/// Splits a client→TPM byte stream into TPM commands (tag u16, commandSize u32,
/// commandCode u32, big-endian). Panics on anything that is not a well-formed sequence
/// of commands, so a test cannot pass by misreading the stream.
pub fn split_commands(stream: &[u8]) -> Vec<WireCommand> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        assert!(
            rest.len() >= 10,
            "a truncated TPM command header on the wire: {:02x?}",
            rest
        );
        let tag = u16::from_be_bytes([rest[0], rest[1]]);
        assert!(
            tag == 0x8001 || tag == 0x8002,
            "not a TPM command tag on the wire: {tag:#06x} (stream position {})",
            stream.len() - rest.len()
        );
        let size = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
        assert!(
            size >= 10 && size <= rest.len(),
            "TPM command size {size} does not fit the {} bytes left",
            rest.len()
        );
        let code = u32::from_be_bytes([rest[6], rest[7], rest[8], rest[9]]);
        out.push(WireCommand {
            tag,
            code,
            bytes: rest[..size].to_vec(),
        });
        rest = &rest[size..];
    }
    out
}

/// The fields of a TPM2_StartAuthSession command that say who can read its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAuthSession {
    /// tpmKey: the key the salt is encrypted to, or TPM_RH_NULL (no salt).
    pub tpm_key: u32,
    /// bind: the entity whose authValue is bound in, or TPM_RH_NULL.
    pub bind: u32,
    /// Length of encryptedSalt.
    pub salt_len: usize,
    /// sessionType: 0x00 HMAC, 0x01 policy, 0x03 trial.
    pub session_type: u8,
}

/// Parses a TPM2_StartAuthSession command (as split by [`split_commands`]).
pub fn parse_start_auth_session(c: &WireCommand) -> StartAuthSession {
    assert_eq!(c.code, CC_START_AUTH_SESSION, "not a StartAuthSession");
    let b = &c.bytes;
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
    let tpm_key = u32_at(10);
    let bind = u32_at(14);
    let mut i = 18;
    if c.tag == 0x8002 {
        // An authorization area (audit/encrypt sessions) before the parameters.
        i += 4 + u32_at(18) as usize;
    }
    let nonce = u16_at(i);
    i += 2 + nonce;
    let salt_len = u16_at(i);
    i += 2 + salt_len;
    assert!(i < b.len(), "StartAuthSession too short: {b:02x?}");
    StartAuthSession {
        tpm_key,
        bind,
        salt_len,
        session_type: b[i],
    }
}

/// `needle` as raw bytes and as lowercase and uppercase hex text.
pub fn secret_forms(needle: &[u8]) -> [Vec<u8>; 3] {
    [
        needle.to_vec(),
        hex::encode(needle).into_bytes(),
        hex::encode_upper(needle).into_bytes(),
    ]
}

/// Writes `text` to a new file at `path` (for lockout auth files and the like).
pub fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
}

/// `tpmvsc tpm harden --lockout-auth-file FILE`; returns the output whatever the exit code.
pub fn tpm_harden(cli: &Cli, file: &Path) -> Output {
    cli.tpmvsc(&[
        "tpm",
        "harden",
        "--lockout-auth-file",
        file.to_str().expect("utf-8 path"),
    ])
}

/// `tpmvsc tpm clear-lockout --lockout-auth-file FILE`.
pub fn tpm_clear_lockout(cli: &Cli, file: &Path) -> Output {
    cli.tpmvsc(&[
        "tpm",
        "clear-lockout",
        "--lockout-auth-file",
        file.to_str().expect("utf-8 path"),
    ])
}

/// TPM_CC_CreatePrimary.
pub const CC_CREATE_PRIMARY: u32 = 0x0000_0131;
/// TPM_CC_FlushContext.
pub const CC_FLUSH_CONTEXT: u32 = 0x0000_0165;

/// Splits a TPM→client byte stream into responses (tag, responseSize, responseCode).
pub fn split_responses(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 10 {
        let size = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
        if size < 10 || size > rest.len() {
            break;
        }
        out.push(rest[..size].to_vec());
        rest = &rest[size..];
    }
    out
}

/// The inPublic (marshalled TPMT_PUBLIC) of a CreatePrimary command.
pub fn create_primary_in_public(c: &WireCommand) -> Vec<u8> {
    assert_eq!(c.code, CC_CREATE_PRIMARY, "not a CreatePrimary");
    let b = &c.bytes;
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
    // header (10), primaryHandle (4), authorizationSize and area (tag 0x8002).
    let mut i = 14;
    if c.tag == 0x8002 {
        i += 4 + u32_at(14);
    }
    i += 2 + u16_at(i); // inSensitive
    let n = u16_at(i);
    b[i + 2..i + 2 + n].to_vec()
}

/// A StartAuthSession seen on the wire, with what its salt key was made from when it was
/// a primary created earlier on the same recording (and not flushed since).
#[derive(Debug, Clone)]
pub struct SeenSession {
    pub start: StartAuthSession,
    /// inPublic of the CreatePrimary that returned `start.tpm_key`, if one did.
    pub salt_key_template: Option<Vec<u8>>,
}

/// Every StartAuthSession in the recorded connections (command connections only, in
/// order), each with the template of the transient primary it is salted to, if any.
pub fn sessions_started(conns: &[Recorded]) -> Vec<SeenSession> {
    let mut primaries: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut out = Vec::new();
    for c in conns.iter().filter(|c| !c.control) {
        let responses = split_responses(&c.from_tpm);
        for (i, cmd) in split_commands(&c.to_tpm).iter().enumerate() {
            let ok = |r: &Vec<u8>| r.len() >= 10 && r[6..10] == [0, 0, 0, 0];
            match cmd.code {
                CC_CREATE_PRIMARY => {
                    if let Some(r) = responses.get(i).filter(|r| ok(r) && r.len() >= 14) {
                        let h = u32::from_be_bytes([r[10], r[11], r[12], r[13]]);
                        primaries.retain(|(x, _)| *x != h);
                        primaries.push((h, create_primary_in_public(cmd)));
                    }
                }
                CC_FLUSH_CONTEXT if cmd.bytes.len() >= 14 => {
                    let b = &cmd.bytes;
                    let h = u32::from_be_bytes([b[10], b[11], b[12], b[13]]);
                    primaries.retain(|(x, _)| *x != h);
                }
                CC_START_AUTH_SESSION => {
                    let start = parse_start_auth_session(cmd);
                    let salt_key_template = primaries
                        .iter()
                        .find(|(h, _)| *h == start.tpm_key)
                        .map(|(_, t)| t.clone());
                    out.push(SeenSession {
                        start,
                        salt_key_template,
                    });
                }
                _ => {}
            }
        }
    }
    out
}

// ---- Helpers for the PKCS#11 module tests, tests/p11_*.rs (added; the ones above are
// ---- unchanged).

/// The built module, `libtpmvsc.so`, beside the `tpmvsc` binary.
pub fn module_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tpmvsc"))
        .parent()
        .expect("the binary has a directory")
        .join("libtpmvsc.so")
}

/// The PIN and the PUK of the card a [`P11World`] creates.
pub const P11_PIN: &str = "12345678";
pub const P11_PUK: &str = "12345678";

/// One test's world for the PKCS#11 module: its own swtpm, store, CLI, and a card `t`
/// made with `--puk default` (slot 0). The module is configured through this process's
/// environment, which [`P11World::new`] sets before any thread of the test starts.
#[derive(Debug)]
pub struct P11World {
    pub swtpm: Swtpm,
    pub store: TestStore,
    pub cli: Cli,
}

impl P11World {
    /// A swtpm (transient SRK), the environment, and card `t` created with `extra` added to
    /// `create --name t --puk default`.
    pub fn new(extra: &[&str]) -> P11World {
        P11World::with_swtpm(Swtpm::start(), extra)
    }

    /// Like [`P11World::new`] on the given swtpm.
    pub fn with_swtpm(swtpm: Swtpm, extra: &[&str]) -> P11World {
        let store = TestStore::new();
        set_module_env(&store, &swtpm.tcti());
        let cli = Cli::new(&store, &swtpm.tcti());
        let mut args = vec!["create", "--name", "t", "--puk", "default"];
        args.extend_from_slice(extra);
        cli.tpmvsc(&args).ok("tpmvsc create (card t)");
        P11World { swtpm, store, cli }
    }

    /// The card's `info --json`.
    pub fn info(&self) -> serde_json::Value {
        info_json(&self.cli, "t")
    }
}

/// Sets TPMVSC_STORE, TPMVSC_TCTI, TPMVSC_LOCK_DIR (the lock dir the in-process TPM
/// connections and the CLI use) and TSS2_LOG for the module loaded into this process.
pub fn set_module_env(store: &TestStore, tcti: &str) {
    set_module_env_locks(store, tcti, &tpmvsc::tpm::lock_dir());
}

/// [`set_module_env`] with the lock directory `lock_dir` (one in memory, say).
#[allow(unsafe_code)]
pub fn set_module_env_locks(store: &TestStore, tcti: &str, lock_dir: &Path) {
    // SAFETY: every p11 test runs in its own process (nextest) and calls this first,
    // before it starts a thread (the CLI runner's pipe readers come later) and before the
    // module is loaded, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("TPMVSC_STORE", store.path());
        std::env::set_var("TPMVSC_TCTI", tcti);
        std::env::set_var("TPMVSC_LOCK_DIR", lock_dir);
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
}

/// Loads the module through `cryptoki` and calls C_Initialize (OS locking).
pub fn p11_load() -> cryptoki::context::Pkcs11 {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let p = Pkcs11::new(module_path()).expect("loading libtpmvsc.so");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    p
}

/// The only slot (the card), from C_GetSlotList.
pub fn p11_slot(p: &cryptoki::context::Pkcs11) -> cryptoki::slot::Slot {
    let slots = p.get_slots_with_token().expect("C_GetSlotList");
    assert_eq!(slots.len(), 1, "one card, one slot: {slots:?}");
    slots[0]
}

/// A R/W session logged in as user with the default PIN.
pub fn p11_user_session(p: &cryptoki::context::Pkcs11) -> cryptoki::session::Session {
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let s = p.open_rw_session(p11_slot(p)).expect("C_OpenSession (R/W)");
    s.login(UserType::User, Some(&AuthPin::new(P11_PIN.into())))
        .expect("C_Login as user with the default PIN");
    s
}

/// The CK_RV of a failed cryptoki call (panics on success or on a non-PKCS#11 error).
pub fn p11_rv<T: std::fmt::Debug>(r: cryptoki::error::Result<T>) -> cryptoki::error::RvError {
    match r {
        Err(cryptoki::error::Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// DER of the P-256 curve OID (CKA_EC_PARAMS).
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 curve OID.
pub const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Generates a token key pair (RSA when `rsa_bits` is Some, else EC on `ec_params`);
/// returns (public, private). `id`, `label` go on both halves when given.
pub fn p11_keygen(
    s: &cryptoki::session::Session,
    rsa_bits: Option<u64>,
    ec_params: &[u8],
    id: Option<&[u8]>,
    label: Option<&str>,
) -> (
    cryptoki::object::ObjectHandle,
    cryptoki::object::ObjectHandle,
) {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    let mut public = vec![Attribute::Token(true), Attribute::Verify(true)];
    let mut private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
    ];
    let mech = match rsa_bits {
        Some(bits) => {
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![1, 0, 1]));
            public.push(Attribute::Encrypt(true));
            private.push(Attribute::Decrypt(true));
            Mechanism::RsaPkcsKeyPairGen
        }
        None => {
            public.push(Attribute::EcParams(ec_params.to_vec()));
            private.push(Attribute::Derive(true));
            Mechanism::EccKeyPairGen
        }
    };
    for t in [&mut public, &mut private] {
        if let Some(id) = id {
            t.push(Attribute::Id(id.to_vec()));
        }
        if let Some(l) = label {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
    }
    s.generate_key_pair(&mech, &public, &private)
        .expect("C_GenerateKeyPair")
}

/// One attribute's bytes (panics when it cannot be read).
pub fn p11_attr(
    s: &cryptoki::session::Session,
    o: cryptoki::object::ObjectHandle,
    t: cryptoki::object::AttributeType,
) -> Vec<u8> {
    use cryptoki::object::Attribute;
    let a = s
        .get_attributes(o, &[t])
        .unwrap_or_else(|e| panic!("C_GetAttributeValue {t:?}: {e}"));
    match a.into_iter().next() {
        Some(Attribute::Modulus(v))
        | Some(Attribute::PublicExponent(v))
        | Some(Attribute::EcParams(v))
        | Some(Attribute::EcPoint(v))
        | Some(Attribute::Id(v))
        | Some(Attribute::Label(v))
        | Some(Attribute::Value(v))
        | Some(Attribute::Subject(v))
        | Some(Attribute::Issuer(v))
        | Some(Attribute::SerialNumber(v))
        | Some(Attribute::Application(v))
        | Some(Attribute::ObjectId(v)) => v,
        Some(Attribute::Sensitive(b))
        | Some(Attribute::Extractable(b))
        | Some(Attribute::AlwaysAuthenticate(b))
        | Some(Attribute::AlwaysSensitive(b))
        | Some(Attribute::NeverExtractable(b))
        | Some(Attribute::Local(b))
        | Some(Attribute::Token(b))
        | Some(Attribute::Private(b))
        | Some(Attribute::Sign(b))
        | Some(Attribute::Decrypt(b)) => vec![u8::from(b)],
        other => panic!("attribute {t:?} not handled by p11_attr: {other:?}"),
    }
}

/// Raw access to the module's C_* functions through `libloading` + `cryptoki-sys`, for the
/// checks `cryptoki` hides (two-call convention, exact CK_RVs). Opening the same `.so`
/// path that `cryptoki` loaded gives the same module instance: its session handles work
/// here.
#[allow(unsafe_code)]
pub mod raw {
    use cryptoki_sys::*;

    #[derive(Debug)]
    pub struct RawModule {
        _lib: libloading::Library,
        list: *const CK_FUNCTION_LIST,
    }

    impl RawModule {
        /// dlopen + C_GetFunctionList (2.40 table).
        pub fn open() -> RawModule {
            // SAFETY: loading our own module, whose initializers are Rust statics.
            let lib = unsafe { libloading::Library::new(super::module_path()) }
                .expect("dlopen libtpmvsc.so");
            let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
            // SAFETY: C_GetFunctionList has the signature of CK_C_GetFunctionList.
            let rv = unsafe {
                let f: libloading::Symbol<
                    '_,
                    unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV,
                > = lib
                    .get(b"C_GetFunctionList\0")
                    .expect("C_GetFunctionList symbol");
                f(&mut list)
            };
            assert_eq!(rv, CKR_OK, "C_GetFunctionList");
            assert!(!list.is_null(), "C_GetFunctionList gave NULL");
            RawModule { _lib: lib, list }
        }

        /// The library handle (for C_GetInterface and friends).
        pub fn lib(&self) -> &libloading::Library {
            &self._lib
        }

        pub fn list(&self) -> &CK_FUNCTION_LIST {
            // SAFETY: the module's static table, valid while the library is loaded.
            unsafe { &*self.list }
        }

        /// C_GetAttributeValue on `types`, each with a buffer of `cap` bytes (None: NULL
        /// buffer). Returns the CK_RV and each (ulValueLen, bytes read).
        pub fn get_attributes(
            &self,
            session: CK_SESSION_HANDLE,
            object: CK_OBJECT_HANDLE,
            types: &[CK_ATTRIBUTE_TYPE],
            cap: Option<usize>,
        ) -> (CK_RV, Vec<(CK_ULONG, Vec<u8>)>) {
            let mut bufs: Vec<Vec<u8>> =
                types.iter().map(|_| vec![0u8; cap.unwrap_or(0)]).collect();
            let mut tmpl: Vec<CK_ATTRIBUTE> = types
                .iter()
                .zip(bufs.iter_mut())
                .map(|(t, b)| CK_ATTRIBUTE {
                    type_: *t,
                    pValue: if cap.is_some() {
                        b.as_mut_ptr().cast()
                    } else {
                        std::ptr::null_mut()
                    },
                    ulValueLen: b.len() as CK_ULONG,
                })
                .collect();
            let f = self
                .list()
                .C_GetAttributeValue
                .expect("C_GetAttributeValue");
            // SAFETY: the template points into `bufs`, alive for the call.
            let rv = unsafe { f(session, object, tmpl.as_mut_ptr(), tmpl.len() as CK_ULONG) };
            let out = tmpl
                .iter()
                .zip(bufs)
                .map(|(a, b)| {
                    let n = a.ulValueLen;
                    let len = usize::try_from(n).unwrap_or(usize::MAX);
                    let bytes = if n != CK_UNAVAILABLE_INFORMATION && len <= b.len() {
                        b[..len].to_vec()
                    } else {
                        Vec::new()
                    };
                    (n, bytes)
                })
                .collect();
            (rv, out)
        }
    }
}

/// An OS random generator for the software side of the p11 tests (rsa/p256 want a
/// `rand_core` 0.6 RNG).
#[derive(Debug, Clone, Copy, Default)]
pub struct TestRng;

impl rsa::rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_ne_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_ne_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("getrandom");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for TestRng {}

/// The RSA public key of a key object, read from the card (CKA_MODULUS, CKA_PUBLIC_EXPONENT).
pub fn p11_rsa_public(
    s: &cryptoki::session::Session,
    o: cryptoki::object::ObjectHandle,
) -> rsa::RsaPublicKey {
    use cryptoki::object::AttributeType;
    let n = p11_attr(s, o, AttributeType::Modulus);
    let e = p11_attr(s, o, AttributeType::PublicExponent);
    rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from_bytes_be(&e),
    )
    .expect("the card's modulus and exponent make an RSA public key")
}

/// The uncompressed EC point (04 || x || y) of a key object: CKA_EC_POINT without its DER
/// OCTET STRING header (which is checked).
pub fn p11_ec_point(s: &cryptoki::session::Session, o: cryptoki::object::ObjectHandle) -> Vec<u8> {
    let der = p11_attr(s, o, cryptoki::object::AttributeType::EcPoint);
    assert_eq!(
        der[0], 0x04,
        "CKA_EC_POINT is a DER OCTET STRING: {der:02x?}"
    );
    let (len, start) = if der[1] & 0x80 == 0 {
        (usize::from(der[1]), 2)
    } else {
        assert_eq!(der[1], 0x81, "one length byte at most for P-256/P-384");
        (usize::from(der[2]), 3)
    };
    assert_eq!(der.len(), start + len, "OCTET STRING length");
    assert_eq!(der[start], 0x04, "an uncompressed point inside");
    der[start..].to_vec()
}

// ---- Helpers for the client interop tests, tests/clients_*.rs (added; the ones above are
// ---- unchanged).

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
}

impl ClientWorld {
    pub fn new() -> ClientWorld {
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

// ---- Helpers for tests/p11_security.rs and tests/wire_module.rs (added; the ones above
// ---- are unchanged).

/// Sets one more environment variable for the module loaded into this process (e.g.
/// DBUS_SESSION_BUS_ADDRESS for the tabrmd TCTI). Same rules as [`set_module_env`]: call
/// it before the test starts a thread and before the module is loaded.
#[allow(unsafe_code)]
pub fn set_test_env(key: &str, value: &str) {
    // SAFETY: as in set_module_env: each test runs in its own process (nextest) and this
    // runs before any thread of the test starts and before the module is loaded.
    unsafe {
        std::env::set_var(key, value);
    }
}

// ---- Helpers for tests/cli_secrets.rs (added; the ones above are unchanged).

/// What descriptor 3 of a command holds, for [`Cli::tpmvsc_fd3`].
#[derive(Debug, Clone, Copy)]
pub enum Fd3<'a> {
    /// A file opened for reading (`3<FILE`).
    File(&'a Path),
    /// The read end of a pipe that carries this text (`3< <(printf ...)`).
    Pipe(&'a str),
}

impl Cli {
    /// Runs `tpmvsc ARGS` with descriptor 3 open on a file or a pipe, the way a script
    /// hands over a secret without putting it in the arguments: bash opens it (`exec
    /// 3<FILE` or `exec 3< <(printf ...)`; the text travels in bash's environment) and
    /// execs tpmvsc, which inherits it. `stdin` is written to standard input.
    pub fn tpmvsc_fd3(&self, args: &[&str], fd3: Fd3<'_>, stdin: &str) -> Output {
        let (script, value) = match fd3 {
            Fd3::File(p) => (
                r#"exec 3<"$TPMVSC_TEST_FD3" && exec "$0" "$@""#,
                p.to_str().expect("UTF-8 path").to_string(),
            ),
            Fd3::Pipe(text) => (
                r#"exec 3< <(printf '%s' "$TPMVSC_TEST_FD3") && exec "$0" "$@""#,
                text.to_string(),
            ),
        };
        let mut full = vec!["-c", script, env!("CARGO_BIN_EXE_tpmvsc")];
        full.extend_from_slice(args);
        self.clone()
            .with_env("TPMVSC_TEST_FD3", &value)
            .run("bash", &full, Some(stdin))
    }
}

/// A card's PIN and admin retry counters and the TPM's dictionary-attack counter:
/// together, what a refused input must leave as it was.
pub fn tries_and_da(cli: &Cli, card: &str) -> (u64, u64, u32) {
    let info = info_json(cli, card);
    (
        info["pin_tries_left"]
            .as_u64()
            .expect("pin_tries_left in info --json"),
        info["admin_tries_left"].as_u64().unwrap_or(0),
        da_counter(cli.tcti()),
    )
}

// ---- Helpers for tests/cli_bad_input.rs (added; the ones above are unchanged).

/// Where a command's standard input comes from, for [`Cli::run_input`].
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Nothing: standard input is /dev/null's end of input.
    Nothing,
    /// These bytes, through a pipe.
    Text(&'a str),
    /// This file (or device), opened for reading: `< FILE`.
    File(&'a Path),
}

impl Cli {
    /// Runs `bin` (`tpmvsc` or `tpmvscmgr`, the built binaries) with `input` on standard
    /// input, killed after `limit`: `None` when it did not finish in time.
    pub fn run_input(
        &self,
        bin: &str,
        args: &[&str],
        input: Input<'_>,
        limit: Duration,
    ) -> Option<Output> {
        let path = match bin {
            "tpmvsc" => env!("CARGO_BIN_EXE_tpmvsc"),
            "tpmvscmgr" => env!("CARGO_BIN_EXE_tpmvscmgr"),
            other => panic!("not one of the built binaries: {other}"),
        };
        let mut cmd = self.command(path, args);
        match input {
            Input::Nothing => cmd.stdin(Stdio::null()),
            Input::Text(_) => cmd.stdin(Stdio::piped()),
            Input::File(p) => cmd.stdin(
                std::fs::File::open(p).unwrap_or_else(|e| panic!("opening {p:?} as stdin: {e}")),
            ),
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        let writer = match (input, child.stdin.take()) {
            (Input::Text(text), Some(mut pipe)) => {
                let text = text.to_string();
                // A thread, so that a large input cannot block us while the child waits
                // for us to read its output; the child may stop reading early.
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(text.as_bytes());
                }))
            }
            _ => None,
        };
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
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = out_t.join().expect("stdout reader");
        let stderr = err_t.join().expect("stderr reader");
        status.map(|s| Output {
            code: s.code().unwrap_or(-1),
            stdout,
            stderr,
        })
    }
}

// ---- Helpers for tests/attacker_files.rs (added; the ones above are unchanged).

/// A user other than root, for tests that attack tpmvsc's files as another user would:
/// a fresh uid without a passwd entry (tpmvsc looks up no user names, and `useradd` in
/// parallel tests would fight over the lock of /etc/passwd), a base directory others can
/// traverse, a home directory the user owns, and commands run as the user through
/// `setpriv` with a clean environment. Drop removes its files and `/tmp/tpmvsc-UID`,
/// whoever made that.
#[derive(Debug)]
pub struct OtherUser {
    pub uid: u32,
    base: TempDir,
    bin: PathBuf,
}

impl OtherUser {
    pub fn new() -> OtherUser {
        use std::os::unix::fs::PermissionsExt;
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let taken: Vec<u32> = passwd
            .lines()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect();
        let uid = loop {
            let mut r = [0u8; 4];
            getrandom::fill(&mut r).expect("randomness for a uid");
            let uid = 3_000_000 + u32::from_le_bytes(r) % 1_000_000_000;
            let lock_dir = PathBuf::from(format!("/tmp/tpmvsc-{uid}"));
            if !taken.contains(&uid) && lock_dir.symlink_metadata().is_err() {
                break uid;
            }
        };
        let base = tempfile::tempdir().expect("temp dir for another user");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 755 the other user's base directory");
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_tpmvsc"));
        let bin = if reachable_by_others(&bin) {
            bin
        } else {
            let copy = base.path().join("tpmvsc");
            std::fs::copy(&bin, &copy).expect("copying tpmvsc where others can run it");
            copy
        };
        let u = OtherUser { uid, base, bin };
        u.own_dir("home");
        u
    }

    /// The base directory (root's, mode 0755).
    pub fn base(&self) -> &Path {
        self.base.path()
    }

    /// The user's home directory (theirs, mode 0700, empty at first).
    pub fn home(&self) -> PathBuf {
        self.base().join("home")
    }

    /// A new directory under the base, owned by the user, mode 0700.
    pub fn own_dir(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::DirBuilderExt;
        let p = self.base().join(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&p)
            .expect("creating a directory for the other user");
        self.chown(&p);
        p
    }

    /// Hands `path` and everything under it to the user (links themselves, not their
    /// targets).
    pub fn chown(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.uid)).expect("lchown");
        if path.symlink_metadata().expect("lstat").is_dir() {
            for e in std::fs::read_dir(path).expect("read_dir").flatten() {
                self.chown(&e.path());
            }
        }
    }

    /// Where tpmvsc keeps this user's lock files when XDG_RUNTIME_DIR and TPMVSC_LOCK_DIR
    /// are not set.
    pub fn tmp_lock_dir(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/tpmvsc-{}", self.uid))
    }

    /// `program ARGS` as the user (`setpriv`, no supplementary groups) with only PATH,
    /// HOME, TSS2_LOG and `env` in its environment; stdin empty.
    pub fn command(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.home())
            .env("TSS2_LOG", "all+NONE")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// `tpmvsc ARGS` as the user (see [`OtherUser::command`]), bounded by the CLI timeout.
    pub fn tpmvsc(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_output(self.command(&self.bin, args, env), CLI_TIMEOUT)
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let d = self.tmp_lock_dir();
        match d.symlink_metadata() {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&d);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&d);
            }
            Err(_) => {}
        }
    }
}

/// True when every directory above `path` lets others through and others may run it.
fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    mode(path) & 0o005 == 0o005 && path.ancestors().skip(1).all(|a| mode(a) & 0o001 != 0)
}

/// Takes an exclusive `flock` on the existing file `path` in this process and keeps it
/// while the returned file lives.
pub fn hold_lock(path: &Path) -> std::fs::File {
    let f = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("opening the lock file {}: {e}", path.display()));
    f.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    f
}
