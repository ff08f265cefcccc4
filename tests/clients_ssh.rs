//! OpenSSH against the built module on a real swtpm: `ssh-keygen -D` lists the card keys,
//! and a private sshd on 127.0.0.1 (own config, host key and authorized_keys) accepts
//! `ssh -I libtpmvsc.so` and a login through `ssh-agent` + `ssh-add -s`, with an EC and an
//! RSA key (ssh signs CKM_RSA_PKCS over a SHA-512 DigestInfo). The logins are
//! `examples/ssh-login.sh`, run here as it is.

mod common;

use common::*;

fn ssh_tools() -> bool {
    ["ssh", "ssh-keygen", "ssh-agent", "ssh-add"]
        .iter()
        .all(|t| require_tool(t))
        && (std::path::Path::new("/usr/sbin/sshd").is_file() || require_tool("sshd"))
}

#[test]
fn ssh_keygen_prints_the_card_public_keys_without_a_pin() {
    let w = ClientWorld::new();
    if !require_tool("ssh-keygen") {
        return;
    }
    w.keygen("ec-p256", "k");
    w.keygen("rsa2048", "r");
    let mut c = w.command("ssh-keygen");
    c.arg("-D").arg(module_path());
    let out = run_output(c, CLIENT_TIMEOUT);
    assert_success(&out, "ssh-keygen -D");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per key: {}", out.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with(
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABB"
        ) && l.ends_with(" k")),
        "{}",
        out.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ") && l.ends_with(" r")),
        "{}",
        out.stdout
    );
}

/// The example with `key`: ssh -I and ssh-agent logins to a private sshd. Returns the
/// sshd log.
fn login_with(w: &ClientWorld, key: &str) -> String {
    let port = free_port_pair().to_string();
    let (out, work) = w.run_example("ssh-login.sh", &[("KEY", key), ("PORT", &port)]);
    assert_success(&out, "examples/ssh-login.sh");
    assert_output_has(&out, &format!("login with card key {key} ok"), "ssh -I");
    assert_output_has(&out, "login through ssh-agent ok", "ssh through ssh-agent");
    let log = std::fs::read_to_string(work.join("sshd.log")).expect("sshd.log");
    assert_eq!(
        log.matches("Accepted publickey for").count(),
        2,
        "sshd accepted two public-key logins:\n{log}"
    );
    log
}

#[test]
fn ssh_logs_in_with_an_ec_card_key_directly_and_through_the_agent() {
    let w = ClientWorld::new();
    if !ssh_tools() {
        return;
    }
    w.keygen("ec-p256", "k");
    let log = login_with(&w, "k");
    assert!(log.contains("ssh2: ECDSA SHA256:"), "{log}");
}

#[test]
fn ssh_logs_in_with_an_rsa_card_key_directly_and_through_the_agent() {
    let w = ClientWorld::new();
    if !ssh_tools() {
        return;
    }
    w.keygen("rsa2048", "r");
    let log = login_with(&w, "r");
    // rsa-sha2-512: the module signed CKM_RSA_PKCS over a SHA-512 DigestInfo.
    assert!(log.contains("ssh2: RSA SHA256:"), "{log}");
}
