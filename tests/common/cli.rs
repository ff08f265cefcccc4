//! The built binaries run against one store and one TCTI: the temporary store, the
//! command runner and its outputs, and helpers for the commands tests run most.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tpmvsc::store::Store;

use super::*;

/// How long one CLI command may take before the test calls it hung.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The usual set-up of a CLI test: its own swtpm, a temporary store and a runner on both.
/// Tests destructure it (`let CliWorld { swtpm, store, cli } = CliWorld::new();`), so the
/// names stay the ones the test body uses; keep every part bound (`_swtpm`), as a part not
/// bound is dropped at once and a dropped swtpm stops.
#[derive(Debug)]
pub struct CliWorld {
    pub swtpm: Swtpm,
    pub store: TestStore,
    pub cli: Cli,
}

impl CliWorld {
    /// On a fresh swtpm (transient SRK).
    pub fn new() -> CliWorld {
        CliWorld::on(Swtpm::start())
    }

    /// On the given swtpm.
    pub fn on(swtpm: Swtpm) -> CliWorld {
        let tcti = swtpm.tcti();
        CliWorld::through(swtpm, &tcti)
    }

    /// On the given swtpm, the CLI reaching it through `tcti` (a recording relay, say).
    pub fn through(swtpm: Swtpm, tcti: &str) -> CliWorld {
        let store = TestStore::new();
        let cli = Cli::new(&store, tcti);
        CliWorld { swtpm, store, cli }
    }
}
