//! Bad input to the command-line tools (issue 13): every `tpmvsc` subcommand and the
//! main `tpmvscmgr` forms run with missing, empty, oversized (a 10 MB file, a 200-byte
//! card name, a 1000-byte PIN line) and special-file inputs (/dev/zero, /dev/null, a
//! directory, a dangling symlink). Each row must finish before a deadline, print no
//! panic, exit 1 or 2 as the row says with a message naming the problem, and leave both
//! cards exactly as they were (same `list --json`, same TPM dictionary-attack counter);
//! afterwards the cards still work.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A bad-input command that takes longer than this has hung.
const DEADLINE: Duration = Duration::from_secs(30);

/// Where a row's standard input comes from.
#[derive(Debug, Clone)]
enum In {
    Nothing,
    Text(String),
    File(PathBuf),
}

/// One command with bad input and how it must be refused.
#[derive(Debug)]
struct Row {
    bin: &'static str,
    args: Vec<String>,
    stdin: In,
    /// 1 (failed) or 2 (usage).
    code: i32,
    /// Words the error message must contain: they name the problem.
    says: Vec<&'static str>,
}

/// `tpmvsc ARGS`, refused with `code`, saying `says`.
fn t(args: &[&str], code: i32, says: &[&'static str]) -> Row {
    Row {
        bin: "tpmvsc",
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: In::Nothing,
        code,
        says: says.to_vec(),
    }
}

/// `tpmvscmgr ARGS`, refused with `code`, saying `says`.
fn m(args: &[&str], code: i32, says: &[&'static str]) -> Row {
    Row {
        bin: "tpmvscmgr",
        ..t(args, code, says)
    }
}

impl Row {
    fn stdin_text(mut self, text: &str) -> Row {
        self.stdin = In::Text(text.to_string());
        self
    }

    fn stdin_file(mut self, path: &Path) -> Row {
        self.stdin = In::File(path.to_path_buf());
        self
    }
}

/// The inputs the rows use, made once in the test's scratch directory.
struct Inputs {
    /// 10 MB of 'A', no line ending.
    big: String,
    /// A 1000-byte line and a line ending.
    long_line: String,
    empty: String,
    dir: String,
    /// A symbolic link to nothing.
    dangling: String,
    /// 4 KiB of random bytes.
    garbage: String,
    /// The default PIN and a line ending.
    pin: String,
    /// A 200-byte name.
    name200: String,
    /// A directory for `install --modules-dir`.
    modules: String,
    /// A FIFO nobody writes to.
    fifo: String,
}

impl Inputs {
    fn make(store: &TestStore) -> Inputs {
        let path = |name: &str| {
            store
                .scratch(name)
                .to_str()
                .expect("UTF-8 scratch path")
                .to_string()
        };
        let i = Inputs {
            big: path("big"),
            long_line: path("long-line"),
            empty: path("empty"),
            dir: path("dir"),
            dangling: path("dangling"),
            garbage: path("garbage"),
            pin: path("pin"),
            name200: "n".repeat(200),
            modules: path("modules"),
            fifo: path("fifo"),
        };
        std::fs::write(&i.big, vec![b'A'; 10_000_000]).expect("writing the 10 MB file");
        std::fs::write(&i.long_line, format!("{}\n", "7".repeat(1000))).expect("long line");
        std::fs::write(&i.empty, "").expect("empty file");
        std::fs::create_dir(&i.dir).expect("directory");
        std::fs::create_dir(&i.modules).expect("directory");
        std::os::unix::fs::symlink(path("nowhere"), &i.dangling).expect("dangling symlink");
        let mut noise = vec![0u8; 4096];
        getrandom::fill(&mut noise).expect("random bytes");
        std::fs::write(&i.garbage, noise).expect("garbage file");
        std::fs::write(&i.pin, format!("{DEFAULT_PIN}\n")).expect("PIN file");
        let made = std::process::Command::new("mkfifo")
            .arg(&i.fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo {}", i.fifo);
        i
    }
}

/// Card "c": default PIN, PUK and the default admin key, with key "k". Card "a": the
/// default admin key and no PUK (so the admin response unblocks it).
fn world() -> (Swtpm, TestStore, Cli) {
    let swtpm = Swtpm::start_with_persistent_srk();
    let store = TestStore::new();
    // Waits (for locks, for a FIFO's writer) end sooner than the rows' deadline.
    let cli = Cli::new(&store, &swtpm.tcti()).with_env("TPMVSC_LOCK_TIMEOUT", "2");
    cli.tpmvsc(&[
        "create",
        "--name",
        "c",
        "--puk",
        "default",
        "--admin-key",
        "default",
    ])
    .ok("create c");
    cli.tpmvsc(&["create", "--name", "a", "--admin-key", "default"])
        .ok("create a");
    (swtpm, store, cli)
}

/// The table: one row per command and bad input. (Kept one row per line.)
#[rustfmt::skip]
fn rows(i: &Inputs, foreign_cert: Option<&str>, root: bool) -> Vec<Row> {
    let (big, long, empty, dir, dangling) =
        (i.big.as_str(), i.long_line.as_str(), i.empty.as_str(), i.dir.as_str(), i.dangling.as_str());
    let (pin, n200, garbage, modules) =
        (i.pin.as_str(), i.name200.as_str(), i.garbage.as_str(), i.modules.as_str());
    let long_text = format!("{}\n", "7".repeat(1000));
    let zero = Path::new("/dev/zero");
    let chr = "is a character device";
    let too_long = "longer than 127 bytes";
    let is_dir = "is a directory";
    let missing = "No such file or directory";
    let challenge = "0000000000000000";
    let harden_says: &[&str] = if root { &["not a regular file"] } else { &["root"] };
    let mut rows = vec![
        // create
        t(&["create"], 2, &["--name"]),
        t(&["create", "--name", ""], 2, &["card name is empty"]),
        t(&["create", "--name", n200], 2, &["200 bytes", "32"]),
        t(&["create", "--name", "x", "--pin-file", "/dev/zero"], 2, &["/dev/zero", chr]),
        t(&["create", "--name", "x", "--pin-file", big], 2, &[too_long]),
        t(&["create", "--name", "x", "--pin-file", dir], 2, &[is_dir]),
        t(&["create", "--name", "x", "--pin-file", dangling], 1, &[missing]),
        t(&["create", "--name", "x", "--pin-file", empty], 2, &["too short"]),
        t(&["create", "--name", "x", "--puk-file", "/dev/null"], 2, &["/dev/null", chr]),
        t(&["create", "--name", "x", "--admin-key-file", long], 2, &[too_long]),
        t(&["create", "--name", "x", "--admin-key-master-file", dir], 2, &[is_dir]),
        t(&["create", "--name", "x", "--pin", "prompt", "--stdin"], 2, &[too_long]).stdin_file(zero),
        t(&["create", "--name", "x", "--pin", "prompt", "--stdin"], 2, &["end of input"]),
        t(&["create", "--name", "x", "--pin-tries", "-1"], 2, &["-1", "1..=255"]),
        t(&["create", "--name", "x", "--pin-tries", "256"], 2, &["1..=255"]),
        t(&["create", "--name", "x", "--puk-tries", "0"], 2, &["1..=255"]),
        t(&["create", "--name", "x", "--card-id", n200], 2, &["not a card ID"]),
        t(&["create", "--name", "x", "--pin-file", pin, "--pin-policy", "garbage"], 2, &["garbage"]),
        // destroy, list, info
        t(&["destroy"], 2, &["CARD"]),
        t(&["destroy", "", "--yes"], 1, &["no card named \"\""]),
        t(&["destroy", n200, "--yes"], 1, &["no card named"]),
        t(&["destroy", "c"], 2, &["not destroyed", "--yes"]),
        t(&["list", "--frobnicate"], 2, &["--frobnicate"]),
        t(&["list", "c"], 2, &["unexpected argument"]),
        t(&["info"], 2, &["CARD"]),
        t(&["info", ""], 1, &["no card named"]),
        t(&["info", n200, "--json"], 1, &["no card named"]),
        // check-pin: a PIN that cannot be right is never tried
        t(&["check-pin", "c", "--pin-file", "/dev/zero"], 2, &["/dev/zero", chr]),
        t(&["check-pin", "c", "--pin-file", big], 2, &[too_long]),
        t(&["check-pin", "c", "--pin-file", long], 2, &[too_long]),
        t(&["check-pin", "c", "--pin-file", empty], 2, &["PIN is empty"]),
        t(&["check-pin", "c", "--pin-file", dir], 2, &[is_dir]),
        t(&["check-pin", "c", "--pin-file", dangling], 1, &[missing]),
        t(&["check-pin", "c", "--stdin"], 2, &[too_long]).stdin_text(&long_text),
        t(&["check-pin", "c"], 2, &[too_long]).stdin_file(zero),
        t(&["check-pin", "c"], 2, &["end of input"]).stdin_file(Path::new("/dev/null")),
        t(&["check-pin", "c"], 2, &["PIN is empty"]).stdin_text("\n"),
        t(&["check-pin", n200, "--pin-file", pin], 1, &["no card named"]),
        t(&["check-pin"], 2, &["CARD"]),
        t(&["check-pin", "c", "--pin-file", ""], 2, &["a value is required"]),
        t(&["check-pin", "c", "--pin-file", &i.fifo], 1, &["in time", "FIFO"]),
        t(&["admin", "verify", "a", "--response-file", &i.fifo], 1, &["in time"]),
        // change-pin, change-puk
        t(&["change-pin", "c", "--stdin"], 2, &[too_long]).stdin_text(&long_text),
        t(&["change-pin", "c", "--stdin"], 2, &[too_long]).stdin_text(&format!("{DEFAULT_PIN}\n{long_text}")),
        t(&["change-pin", "c", "--stdin"], 2, &["current PIN is empty"]).stdin_text("\n"),
        t(&["change-pin", "c", "--stdin"], 2, &[too_long]).stdin_file(zero),
        t(&["change-pin", "--stdin"], 2, &["CARD"]),
        t(&["change-pin", n200, "--stdin"], 1, &["no card named"]).stdin_text(&format!("{DEFAULT_PIN}\nNew-pin-12\nNew-pin-12\n")),
        t(&["change-puk", "c", "--stdin"], 2, &["current PUK is empty"]).stdin_text("\n"),
        t(&["change-puk", "--stdin"], 2, &["CARD"]),
        t(&["change-puk", "c", "--stdin"], 2, &[too_long]).stdin_text(&long_text),
        t(&["change-puk", "c", "--stdin"], 2, &[too_long]).stdin_file(zero),
        t(&["change-puk", "a", "--stdin"], 1, &["without a PUK"]).stdin_text("12345678\nAbcdefgh1\nAbcdefgh1\n"),
        // unblock, format
        t(&["unblock", "c"], 2, &["--puk"]),
        t(&["unblock", "c", "--puk", "--stdin"], 2, &[too_long]).stdin_file(zero),
        t(&["unblock", "c", "--puk", "--stdin"], 2, &["PUK is empty"]).stdin_text("\n"),
        t(&["unblock", "a", "--admin", "--response-file", "/dev/zero"], 2, &["/dev/zero", chr]),
        t(&["unblock", "a", "--admin", "--response-file", big], 2, &[too_long]),
        t(&["unblock", "a", "--admin", "--response-file", dangling], 1, &[missing]),
        t(&["unblock", "a", "--admin", "--response-file", empty], 2, &["16 hexadecimal"]),
        t(&["format", "c", "--puk", "--stdin", "--yes"], 2, &[too_long]).stdin_text(&long_text),
        t(&["format", "a", "--admin", "--response-file", dir, "--yes"], 2, &[is_dir]),
        t(&["format", "--puk", "--yes"], 2, &["CARD"]),
        t(&["format", "c", "--yes"], 2, &["--puk"]),
        t(&["format", "c", "--puk", "--stdin", "--yes"], 2, &[too_long]).stdin_file(zero),
        t(&["format", "c", "--puk", "--stdin", "--yes"], 2, &["PUK is empty"]).stdin_text("\n"),
        t(&["format", "a", "--admin", "--response-file", dangling, "--yes"], 1, &[missing]),
        t(&["format", "a", "--admin", "--response-file", empty, "--yes"], 2, &["16 hexadecimal"]),
        t(&["format", "a", "--admin", "--response-file", "/dev/zero", "--yes"], 2, &[chr]),
        // keygen, keys
        t(&["keygen", "c", "--type", "ec-p256", "--label", "k2", "--pin-file", "/dev/zero"], 2, &["/dev/zero", chr]),
        t(&["keygen", "c", "--type", "ec-p256", "--label", "k2", "--pin-file", long], 2, &[too_long]),
        t(&["keygen", "c", "--type", "ec-p256", "--label", "", "--pin-file", pin], 2, &["label is empty"]),
        t(&["keygen", "c", "--type", "ec-p256", "--label", "k", "--pin-file", pin], 1, &["labelled \"k\" already"]),
        t(&["keygen", "c", "--type", "dsa", "--label", "k2"], 2, &["dsa"]),
        t(&["keygen", "c", "--label", "k2"], 2, &["--type"]),
        t(&["keygen", "c", "--type", "ec-p256"], 2, &["--label"]),
        t(&["keygen", "c", "--type", "ec-p256", "--label", "k2", "--pin-file", dangling], 1, &[missing]),
        t(&["keygen", "c", "--type", "ec-p256", "--label", n200, "--pin-file", pin], 2, &["label"]),
        t(&["keys", n200], 1, &["no card named"]),
        t(&["keys"], 2, &["CARD"]),
        t(&["keys", ""], 1, &["no card named"]),
        // csr: what can be checked without the PIN is, and nothing reaches the TPM
        t(&["csr", "c", "--key", "nokey", "--subject", "CN=x", "--out", "-", "--pin-file", pin], 1, &["no key labelled \"nokey\""]),
        t(&["csr", "c", "--key", "k", "--subject", "CN=x", "--out", "/dev/null", "--pin-file", pin], 2, &["/dev/null is not a regular file"]),
        t(&["csr", "c", "--key", "k", "--subject", "CN=x", "--out", dir, "--pin-file", pin], 2, &["not a regular file"]),
        t(&["csr", "c", "--key", "k", "--subject", "CN=x", "--out", "-", "--pin-file", "/dev/zero"], 2, &[chr]),
        t(&["csr", "c", "--key", "k", "--subject", "not a DN", "--out", "-", "--pin-file", pin], 2, &["not a distinguished name"]),
        t(&["csr", "c", "--key", "k", "--subject", "CN=x", "--san", "bogus", "--out", "-", "--pin-file", pin], 2, &["dns:NAME"]),
        t(&["csr", "c", "--key", "k", "--subject", "", "--out", "-", "--pin-file", pin], 2, &["subject"]),
        t(&["csr", "c", "--key", "", "--subject", "CN=x", "--out", "-", "--pin-file", pin], 1, &["no key labelled \"\""]),
        t(&["csr", "c", "--key", "k", "--subject", "CN=x", "--san", "", "--out", "-", "--pin-file", pin], 2, &["dns:NAME"]),
        t(&["csr", "c", "--key", n200, "--subject", "CN=x", "--out", "-", "--pin-file", pin], 1, &["no key labelled"]),
        t(&["csr", "c", "--key", "k", "--subject", &format!("CN={}", "x".repeat(100_000)), "--out", "-", "--pin-file", pin], 2, &["subject"]),
        t(&["csr", "c", "--key", "k", "--subject", "CN=x", "--out", "-", "--pin-file", dangling], 1, &[missing]),
        t(&["csr", "c", "--key", "k", "--subject", "CN=x"], 2, &["--out"]),
        // import-cert, certs
        t(&["import-cert", "c", "/dev/zero"], 2, &["/dev/zero", chr]),
        t(&["import-cert", "c", "/dev/null"], 2, &["/dev/null", chr]),
        t(&["import-cert", "c", big], 1, &["larger than 1 MiB"]),
        t(&["import-cert", "c", empty], 1, &["certificate is empty"]),
        t(&["import-cert", "c", garbage], 1, &["no X.509 certificate"]),
        t(&["import-cert", "c", dir], 2, &[is_dir]),
        t(&["import-cert", "c", dangling], 1, &[missing]),
        t(&["import-cert", "c", "-"], 1, &["larger than 1 MiB"]).stdin_file(zero),
        t(&["import-cert", "c", "-"], 1, &["certificate is empty"]),
        t(&["certs", n200], 1, &["no card named"]),
        t(&["certs"], 2, &["CARD"]),
        t(&["certs", ""], 1, &["no card named"]),
        t(&["import-cert", "c"], 2, &["FILE"]),
        t(&["import-cert", "c", ""], 2, &["a value is required"]),
        // install: never reaches the system directories
        t(&["install", "--lib-dir", "/dev/null", "--modules-dir", modules], 2, &["/dev/null is not a directory"]),
        t(&["install", "--lib-dir", modules, "--modules-dir", big], 2, &["is not a directory"]),
        t(&["install", "--lib-dir", "", "--modules-dir", modules], 2, &["a value is required"]),
        t(&["install", "--lib-dir", modules, "--modules-dir", ""], 2, &["a value is required"]),
        t(&["install", "--lib-dir", &format!("{modules}/{}", "d".repeat(5000)), "--modules-dir", modules], 1, &["File name too long"]),
        t(&["install", "--lib-dir"], 2, &["--lib-dir"]),
        // admin
        t(&["admin", "challenge", n200], 1, &["no card named"]),
        t(&["admin", "challenge"], 2, &["CARD"]),
        t(&["admin", "challenge", ""], 1, &["no card named"]),
        t(&["admin", "response", "--stdin"], 2, &["--challenge"]),
        t(&["admin"], 2, &["Usage"]),
        t(&["admin", "response", "--challenge", ""], 2, &["16 hexadecimal"]),
        t(&["admin", "response", "--challenge", n200], 2, &["16 hexadecimal"]),
        t(&["admin", "response", "--challenge", challenge, "--admin-key-file", "/dev/zero"], 2, &[chr]),
        t(&["admin", "response", "--challenge", challenge, "--admin-key-file", empty], 2, &["48 hexadecimal"]),
        t(&["admin", "response", "--challenge", challenge, "--stdin"], 2, &[too_long]).stdin_file(zero),
        t(&["admin", "response", "--challenge", challenge, "--card-id", "x", "--master-key-file", big], 2, &[too_long]),
        t(&["admin", "response", "--challenge", challenge, "--card-id", n200, "--stdin"], 2, &["not a card ID"])
            .stdin_text("000102030405060708090a0b0c0d0e0f\n"),
        t(&["admin", "verify", "a", "--response-file", "/dev/null"], 2, &["/dev/null", chr]),
        t(&["admin", "verify", "a", "--stdin"], 2, &["16 hexadecimal"]).stdin_text("\n"),
        t(&["admin", "verify", "a", "--response-file", big], 2, &[too_long]),
        t(&["admin", "verify", "a", "--response-file", dangling], 1, &[missing]),
        t(&["admin", "verify", "--stdin"], 2, &["CARD"]),
        t(&["admin", "change-key", "a", "--response-file", long], 2, &[too_long]),
        t(&["admin", "change-key", "a", "--response-file", empty], 2, &["16 hexadecimal"]),
        t(&["admin", "change-key", "a", "--response-file", "/dev/zero"], 2, &[chr]),
        t(&["admin", "change-key", "a", "--response-file", dangling], 1, &[missing]),
        t(&["admin", "change-key", "--stdin"], 2, &["CARD"]),
        t(&["admin", "refill", "a", "--stdin"], 2, &[too_long]).stdin_file(zero),
        t(&["admin", "refill", "a", "--stdin"], 2, &["16 hexadecimal"]).stdin_text("\n"),
        t(&["admin", "refill", "a", "--response-file", dangling], 1, &[missing]),
        t(&["admin", "refill"], 2, &["CARD"]),
        // tpm
        t(&["tpm", "clear-lockout", "--lockout-auth-file", "/dev/zero"], 2, &[chr]),
        t(&["tpm", "clear-lockout", "--lockout-auth-file", big], 2, &[too_long]),
        t(&["tpm", "clear-lockout", "--lockout-auth-file", dir], 2, &[is_dir]),
        t(&["tpm", "clear-lockout", "--lockout-auth-file", dangling], 1, &[missing]),
        t(&["tpm", "harden", "--lockout-auth-file", "/dev/null"], 2, harden_says),
        t(&["tpm", "harden", "--lockout-auth-file", dir], 2, harden_says),
        t(&["tpm", "harden", "--lockout-auth-file", ""], 2, &["a value is required"]),
        t(&["tpm", "harden", "--lockout-auth-file", &format!("{dir}/{}", "d".repeat(5000))], if root { 1 } else { 2 }, if root { &["File name too long"] } else { &["root"] }),
        t(&["tpm", "harden", "--lockout-auth-file"], 2, &["--lockout-auth-file"]),
        t(&["tpm", "clear-lockout", "--lockout-auth-file", ""], 2, &["a value is required"]),
        t(&["tpm", "status", "--frobnicate"], 2, &["--frobnicate"]),
        t(&["tpm"], 2, &["Usage"]),
        // simulator
        t(&["simulator", "frobnicate"], 2, &["frobnicate"]),
        t(&["simulator"], 2, &["ACTION"]),
        t(&["simulator", ""], 2, &["possible values"]),
        t(&["simulator", "status", "--frobnicate"], 2, &["--frobnicate"]),
        t(&["frobnicate"], 2, &["frobnicate"]),
        t(&["help", "frobnicate"], 2, &["frobnicate"]),
        // tpmvscmgr
        m(&["create", "/name", n200, "/AdminKey", "RANDOM"], 2, &["200 bytes"]),
        m(&["create", "/name", "", "/AdminKey", "RANDOM"], 2, &["card name is empty"]),
        m(&["create", "/name", "x", "/AdminKey", "RANDOM", "/PIN", "PROMPT"], 2, &[too_long]).stdin_file(zero),
        m(&["create", "/name", "x", "/AdminKey", "RANDOM", "/PIN", "PROMPT"], 2, &["end of input"]),
        m(&["create", "/name", "x", "/AdminKey", "PROMPT"], 2, &[too_long]).stdin_text(&long_text),
        m(&["create", "/name", "x", "/AdminKey", "RANDOM", "/PIN", "PROMPT", "/pinpolicy", "minlen", "1000"], 2, &["minlen"]),
        m(&["destroy", "/instance", ""], 2, &["/instance is empty"]),
        m(&["destroy", "/instance", n200], 1, &["no card named"]),
        m(&["destroy"], 2, &["/instance"]),
        m(&["destroy", "/instance"], 2, &["/instance"]),
        m(&["create", "/AdminKey", "RANDOM"], 2, &["/name"]),
        m(&["create", "/name"], 2, &["/name"]),
        m(&["frobnicate"], 2, &["frobnicate"]),
        m(&[], 2, &["no command given"]),
    ];
    if let Some(cert) = foreign_cert {
        rows.push(t(&["import-cert", "c", cert], 1, &["belongs to no key on this card"]));
    }
    rows
}

/// A self-signed certificate whose key is not on any card (openssl), if openssl is here.
fn foreign_certificate(store: &TestStore) -> Option<String> {
    if !require_tool("openssl") {
        return None;
    }
    let cert = store.scratch("foreign.pem");
    let key = store.scratch("foreign.key");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not on the card",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running openssl");
    assert!(status.success(), "openssl req -x509");
    Some(cert.to_str().expect("UTF-8 path").to_string())
}

#[test]
fn every_command_refuses_bad_input_quickly_clearly_and_harmlessly() {
    let (swtpm, store, cli) = world();
    let i = Inputs::make(&store);
    let pin = i.pin.as_str();
    cli.tpmvsc(&[
        "keygen",
        "c",
        "--type",
        "ec-p256",
        "--label",
        "k",
        "--pin-file",
        pin,
    ])
    .ok("keygen c k");
    let cert = foreign_certificate(&store);
    let root = rustix::process::geteuid().is_root();

    let before = cli.tpmvsc(&["list", "--json"]).ok("list --json").stdout;
    let da = da_counter(&swtpm.tcti());
    let table = rows(&i, cert.as_deref(), root);
    let mut failures = Vec::new();
    for row in &table {
        let args: Vec<&str> = row.args.iter().map(String::as_str).collect();
        let what = format!("{} {}", row.bin, shown(&args));
        let stdin = match &row.stdin {
            In::Nothing => Input::Nothing,
            In::Text(text) => Input::Text(text),
            In::File(p) => Input::File(p),
        };
        let out = cli
            .run_input(row.bin, &args, stdin, DEADLINE)
            .unwrap_or_else(|| panic!("{what}: no answer within {DEADLINE:?} (hung)"));
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
            "{what}: panicked: {out:#?}"
        );
        assert!(
            [1, 2].contains(&row.code),
            "{what}: the table asks for 1 or 2"
        );
        // Wrong codes and messages are collected, so that one run shows all of them; harm
        // (below) stops the test at once.
        // The one-line error, or the usage text clap prints for a command group given
        // without its command.
        let message = out
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("{}: ", row.bin)))
            .or_else(|| {
                out.stderr
                    .contains("\nUsage: ")
                    .then_some(out.stderr.as_str())
            });
        match message {
            _ if out.code != row.code => {
                failures.push(format!(
                    "{what}: exit {} (not {}): {:?}",
                    out.code, row.code, out.stderr
                ));
            }
            None => failures.push(format!("{what}: no error message: {out:?}")),
            Some(m) => {
                for word in row.says.iter().filter(|w| !m.contains(*w)) {
                    failures.push(format!("{what}: {word:?} not in the message {m:?}"));
                }
                // Words for people: no PKCS#11 codes, no Rust debug forms, no doubled
                // backslashes.
                for raw in ["CK_RV", "CKR_", "Some(", "\\\\", "Error {"] {
                    if m.contains(raw) {
                        failures.push(format!("{what}: {raw:?} in the message {m:?}"));
                    }
                }
            }
        }
        assert!(
            out.stdout.len() < 4096,
            "{what}: unexpected output: {out:#?}"
        );
        let now = cli.tpmvsc(&["list", "--json"]).ok("list --json").stdout;
        assert_eq!(now, before, "{what}: the cards changed");
        assert_eq!(
            da_counter(&swtpm.tcti()),
            da,
            "{what}: the TPM counted a try"
        );
    }

    assert!(
        failures.is_empty(),
        "{} of {} rows answered otherwise:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );

    // Both cards still work: the PIN, a new key and a request signed with it.
    for card in ["c", "a"] {
        cli.tpmvsc(&["check-pin", card, "--pin-file", pin])
            .ok("check-pin after the bad input");
    }
    cli.tpmvsc(&[
        "keygen",
        "c",
        "--type",
        "ec-p256",
        "--label",
        "k2",
        "--pin-file",
        pin,
    ])
    .ok("keygen after the bad input");
    let csr = store.scratch("k2.csr");
    cli.tpmvsc(&[
        "csr",
        "c",
        "--key",
        "k2",
        "--subject",
        "CN=still works",
        "--out",
        csr.to_str().expect("UTF-8 path"),
        "--pin-file",
        pin,
    ])
    .ok("csr after the bad input");
    assert!(
        std::fs::read_to_string(&csr)
            .expect("reading the request")
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
    );
    assert!(
        std::fs::metadata("/dev/null").is_ok_and(|m| !m.is_file()),
        "/dev/null is still a device"
    );
}

#[test]
fn a_pin_that_cannot_be_right_costs_no_try_on_any_command() {
    let (swtpm, store, cli) = world();
    let i = Inputs::make(&store);
    let before = (
        info_u64(&cli, "c", "pin_tries_left"),
        info_u64(&cli, "c", "puk_tries_left"),
        da_counter(&swtpm.tcti()),
    );
    let long_text = format!("{}\n", "7".repeat(1000));
    for (args, input) in [
        (vec!["check-pin", "c", "--stdin"], "\n".to_string()),
        (vec!["check-pin", "c", "--stdin"], long_text.clone()),
        (
            vec!["change-pin", "c", "--stdin"],
            "\nNew-pin-12\nNew-pin-12\n".into(),
        ),
        (
            vec!["unblock", "c", "--puk", "--stdin"],
            "\nNew-pin-12\nNew-pin-12\n".into(),
        ),
        (
            vec!["format", "c", "--puk", "--stdin", "--yes"],
            "\nNew-pin-12\nNew-pin-12\n".into(),
        ),
        (
            vec!["change-puk", "c", "--stdin"],
            format!("{long_text}New-puk-12\nNew-puk-12\n"),
        ),
        (
            vec![
                "keygen", "c", "--type", "ec-p256", "--label", "k", "--stdin",
            ],
            "\n".into(),
        ),
        (
            vec![
                "keygen",
                "c",
                "--type",
                "ec-p256",
                "--label",
                "k",
                "--pin-file",
                &i.empty,
            ],
            String::new(),
        ),
        (
            vec![
                "keygen",
                "c",
                "--type",
                "ec-p256",
                "--label",
                "k",
                "--pin-file",
                &i.long_line,
            ],
            String::new(),
        ),
    ] {
        let out = cli.tpmvsc_stdin(&args, &input);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains("empty") || out.stderr.contains("longer than 127 bytes"),
            "{args:?}: {out:#?}"
        );
    }
    // Shorter than the card's PINs (8 to 127 here), or with a character no PIN has.
    for (args, input, says) in [
        (vec!["check-pin", "c", "--stdin"], "123\n", "8 to 127"),
        (
            vec!["change-pin", "c", "--stdin"],
            "1234567\nNew-pin-12\nNew-pin-12\n",
            "8 to 127",
        ),
        (
            vec!["unblock", "c", "--puk", "--stdin"],
            "1234\nNew-pin-12\nNew-pin-12\n",
            "8 to 127",
        ),
        (
            vec!["check-pin", "c", "--stdin"],
            "1234567\u{e9}\n",
            "printable",
        ),
    ] {
        let out = cli.tpmvsc_stdin(&args, input);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains(says) && out.stderr.contains("nothing was tried"),
            "{args:?}: {out:#?}"
        );
    }
    let after = (
        info_u64(&cli, "c", "pin_tries_left"),
        info_u64(&cli, "c", "puk_tries_left"),
        da_counter(&swtpm.tcti()),
    );
    assert_eq!(after, before, "no retry and no DA count spent");
    check_pin(&store, &swtpm.tcti(), "c", DEFAULT_PIN).expect("the PIN is unchanged");
}

/// The arguments as a shell would show them, long ones cut.
fn shown(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() {
                "''".to_string()
            } else if a.len() > 40 {
                format!(
                    "{}…({} bytes)",
                    a.chars().take(20).collect::<String>(),
                    a.len()
                )
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Output to a reader that went away (`tpmvsc --help | head -1`) ends the command quietly,
/// as for other Unix tools: the status of a SIGPIPE, and no panic on standard error.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::{Command, Stdio};
    for (bin, args) in [
        (env!("CARGO_BIN_EXE_tpmvsc"), vec!["--help"]),
        (env!("CARGO_BIN_EXE_tpmvsc"), vec!["create", "--help"]),
        (env!("CARGO_BIN_EXE_tpmvscmgr"), vec!["/?"]),
    ] {
        let mut child = Command::new(bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning");
        // The reader is gone before the program writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("waiting");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{bin} {args:?}: {stderr}"
        );
        assert_ne!(
            out.status.code(),
            Some(101),
            "{bin} {args:?}: a panic's status"
        );
    }
}
