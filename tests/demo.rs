//! The README's main job (scripts/demo.sh) on the built binaries: it starts the simulator
//! TPM, creates cards in both syntaxes, runs the enrollment walkthrough on card "demo"
//! (key in the TPM, CSR, throwaway CA, certificate imported), uses the card for TLS
//! handshakes (OpenSSL 3 + pkcs11-provider) and an ssh login to a private sshd, and ends by
//! listing the cards. Every step is checked by what it left behind.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{TestStore, free_port_pair, machine_lock, require_tool, run_output};

/// Stops the demo's simulator even when an assertion fails.
struct StopSimulator(PathBuf);

impl Drop for StopSimulator {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_tpmvsc"))
            .args(["simulator", "stop"])
            .env("TPMVSC_STORE", &self.0)
            .output();
    }
}

/// The demo's clients; under CI a missing one fails.
fn demo_tools() -> bool {
    let tools = ["openssl", "ssh", "ssh-keygen", "ssh-agent", "ssh-add"]
        .iter()
        .all(|t| require_tool(t))
        && (std::path::Path::new("/usr/sbin/sshd").is_file() || require_tool("sshd"));
    let provider = std::path::Path::new("/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so");
    if tools && !provider.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "pkcs11-provider is required on CI but not installed"
        );
        eprintln!("skipping: pkcs11-provider is not installed");
        return false;
    }
    tools
}

/// One run of scripts/demo.sh on `store` with free ports; its output.
fn run_demo(root: &std::path::Path, bin: &std::path::Path, store: &TestStore) -> common::Output {
    let tls = free_port_pair();
    let ssh = loop {
        let p = free_port_pair();
        if p != tls && p != tls + 1 {
            break p;
        }
    };
    let mut c = Command::new("bash");
    c.arg(root.join("scripts/demo.sh"))
        .env("TPMVSC_DEMO_BIN", bin)
        .env("TPMVSC_STORE", store.path())
        .env("TPMVSC_LOCK_DIR", tpmvsc::tpm::lock_dir())
        .env("TLS_PORT", tls.to_string())
        .env("SSH_PORT", ssh.to_string())
        .stdin(std::process::Stdio::null());
    run_output(c, std::time::Duration::from_secs(600))
}

/// What the walkthrough left: its headings and markers in the output, the certificate on
/// the card, the sshd's log.
fn check_walkthrough(store: &TestStore, stdout: &str, stderr: &str) {
    for needle in [
        "== generating an EC P-256 key 'alice'",
        "== enrollment and TLS",
        // examples/openssl-sign-and-tls.sh: CSR from the card, CA, import, TLS both ways
        "Certificate request self-signature ok",
        "certificate public key = card public key",
        "server-side card key: handshake ok",
        "client-side card key: handshake ok, the server verified the card's certificate",
        // examples/ssh-login.sh
        "login with card key alice ok",
        "login through ssh-agent ok",
        "== the certificate on card 'demo'",
        "== cards in the store",
    ] {
        assert!(
            stdout.contains(needle) || stderr.contains(needle),
            "{needle:?} not in the demo's output:\n{stdout}\n{stderr}"
        );
    }
    let work = PathBuf::from(format!("{}-work", store.path().display()));
    let sshd = std::fs::read_to_string(work.join("ssh/sshd.log")).expect("the demo's sshd.log");
    assert_eq!(
        sshd.matches("Accepted publickey for").count(),
        2,
        "sshd accepted the card key twice (ssh -I, ssh-agent):\n{sshd}"
    );
    // The certificate the demo's CA issued is on the card, next to the key (read from the
    // store: the demo stopped its simulator).
    let out = Command::new(env!("CARGO_BIN_EXE_tpmvsc"))
        .args(["certs", "demo", "--json"])
        .env("TPMVSC_STORE", store.path())
        .env("TPMVSC_LOCK_DIR", tpmvsc::tpm::lock_dir())
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("tpmvsc certs");
    assert!(out.status.success(), "{out:?}");
    let certs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("certs --json");
    let list = certs.as_array().expect("an array");
    assert!(
        list.len() == 1
            && list[0]["label"] == "alice"
            && list[0]["has_key"] == true
            && list[0]["subject"] == "CN=demo card,O=Example"
            && list[0]["issuer"]
                .as_str()
                .is_some_and(|i| i.contains("Throwaway Test CA")),
        "the demo's certificate is on card demo next to its key: {certs}"
    );
}

#[test]
fn the_readme_run_command_runs_the_walkthrough_and_ends_by_listing_the_cards() {
    if !demo_tools() {
        return;
    }
    let _machine = machine_lock(false);
    let store = TestStore::new();
    let _guard = StopSimulator(store.path());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tpmvsc"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let out = run_demo(&root, &bin, &store);
    let stdout = &out.stdout;
    assert!(out.code == 0, "demo failed:\n{stdout}\n{}", out.stderr);
    check_walkthrough(&store, stdout, &out.stderr);
    let tail: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("== cards in the store"))
        .collect();
    assert!(
        tail.iter().any(|l| l.contains(" demo ")
            && l.contains("ROOT\\SMARTCARDREADER\\0000")
            && l.contains("(simulated)")),
        "{stdout}"
    );
    assert!(
        tail.iter()
            .any(|l| l.contains(" win-demo ") && l.contains("ready")),
        "{stdout}"
    );
    // It stops the simulator it started.
    assert!(
        stdout.contains("Simulated TPM stopped"),
        "the demo stops its simulator: {stdout}"
    );
    let st = tpmvsc::simulator::status(&store.store(), tpmvsc::simulator::Scope::User)
        .expect("simulator status");
    assert!(!st.running, "the demo left its simulator running: {st:?}");
    // It can run again on the same store (the README says so).
    let again = run_demo(&root, &bin, &store);
    assert!(
        again.code == 0,
        "second demo run failed:\n{}\n{}",
        again.stdout,
        again.stderr
    );
    check_walkthrough(&store, &again.stdout, &again.stderr);
    let cards = tpmvsc::provision::list(&store.store()).expect("list");
    assert_eq!(cards.len(), 2, "{cards:#?}");
}
