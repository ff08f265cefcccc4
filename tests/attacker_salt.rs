//! Security issue, item 1: the salt key is proved by the TPM, never taken from the store.
//!
//! The attack, end to end, as an evil maid with the disk and a bus sniffer would run it:
//! evict the real SRK from 0x81000001, persist a storage key of their own there, write
//! its Name into the card's record and a storage key made under it into csk.json, then
//! wait for the owner's `check-pin` or `C_Login`. A session salted to the planted key
//! would hand them the HMAC key, and the PIN would fall out offline. A relay records
//! every byte: no session may be salted to 0x81000001 while it holds the planted key, no
//! HMAC session may start at all, the DA counter and the card's tries must not move, and
//! the user must be told that the salt key was substituted. `tpm clear-lockout` is run
//! the same way.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use tpmvsc::card::{CARD_FILE, CSK_FILE};
use tpmvsc::tpm::SRK_PERSISTENT;
use tss_esapi::traits::Marshall;

const PIN: &str = "Salt-pin-52841";

fn tool(swtpm: &Swtpm, tool: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(tool)
        .arg("-T")
        .arg(swtpm.tcti())
        .args(args)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tools_present() -> bool {
    [
        "tpm2_evictcontrol",
        "tpm2_createprimary",
        "tpm2_create",
        "tpm2_readpublic",
        "tpm2_flushcontext",
    ]
    .iter()
    .all(|t| require_tool(t))
}

/// Strips tpm2-tools' TPM2B size prefix.
fn without_size(path: &Path) -> String {
    let b = std::fs::read(path).expect("reading a tpm2-tools output file");
    hex::encode(&b[2..])
}

/// The attacker's moves. Returns the Name of the planted key.
fn plant(swtpm: &Swtpm, card_dir: &Path) -> Vec<u8> {
    let work = tempfile::tempdir().expect("temp dir");
    let p = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    // 1. Evict the real SRK and persist a storage key of their own at 0x81000001.
    tool(swtpm, "tpm2_evictcontrol", &["-C", "o", "-c", "0x81000001"]);
    tool(
        swtpm,
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc256:aes128cfb", "-c", &p("k.ctx")],
    );
    tool(
        swtpm,
        "tpm2_evictcontrol",
        &["-C", "o", "-c", &p("k.ctx"), "0x81000001"],
    );
    tool(swtpm, "tpm2_flushcontext", &["-t"]);
    tool(
        swtpm,
        "tpm2_readpublic",
        &["-c", "0x81000001", "-n", &p("k.name")],
    );
    let name = std::fs::read(p("k.name")).expect("the planted key's Name");
    // 2. A storage key made under it, with an authValue the attacker knows, as csk.json.
    tool(
        swtpm,
        "tpm2_create",
        &[
            "-C",
            "0x81000001",
            "-G",
            "ecc256:aes128cfb",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt",
            "-p",
            "attacker",
            "-u",
            &p("c.pub"),
            "-r",
            &p("c.priv"),
        ],
    );
    let csk = serde_json::json!({
        "version": 1,
        "blob": { "public": without_size(Path::new(&p("c.pub"))), "private": without_size(Path::new(&p("c.priv"))) }
    });
    std::fs::write(
        card_dir.join(CSK_FILE),
        serde_json::to_vec_pretty(&csk).expect("JSON"),
    )
    .expect("planting csk.json");
    // 3. The card's record names the planted key.
    let mut record = read_json(&card_dir.join(CARD_FILE));
    record["srk"]["name"] = serde_json::Value::String(hex::encode(&name));
    std::fs::write(
        card_dir.join(CARD_FILE),
        serde_json::to_vec_pretty(&record).expect("JSON"),
    )
    .expect("rewriting card.json");
    name
}

/// Asserts that nothing in the recording was salted to the planted key and that no HMAC
/// session (the carrier of an authValue) started.
fn assert_nothing_salted_to_the_planted_key(what: &str, conns: &[Recorded]) {
    let sessions = sessions_started(conns);
    for s in &sessions {
        assert_ne!(
            s.start.tpm_key, SRK_PERSISTENT,
            "{what}: a session was salted to the planted key at 0x81000001: {sessions:#x?}"
        );
        assert_ne!(
            s.start.session_type, 0x00,
            "{what}: an HMAC session (a PIN's carrier) was started: {sessions:#x?}"
        );
    }
}

#[test]
fn a_planted_salt_key_gets_no_pin_from_check_pin_or_clear_lockout() {
    if !tools_present() {
        return;
    }
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    let cli = Cli::new(&store, &relay.tcti());
    cli.tpmvsc_stdin(
        &["create", "--name", "v", "--pin", "prompt", "--stdin"],
        &format!("{PIN}\n"),
    )
    .ok("create");
    cli.check_pin("v", PIN).ok("the PIN before the attack");
    let dir = card_dir(&cli, "v");
    let tries = info_u64(&cli, "v", "pin_tries_left");
    plant(&swtpm, &dir);

    let da = da_counter(&swtpm.tcti());
    let before = relay.count();
    let out = cli.check_pin("v", PIN);
    let conns = relay.connections()[before..].to_vec();
    assert_eq!(out.code, 1, "check-pin on the planted card: {out:#?}");
    assert!(
        out.stderr.contains("substituted") && out.stderr.contains("0x81000001"),
        "the error names the substitution: {out:#?}"
    );
    assert_nothing_salted_to_the_planted_key("check-pin", &conns);
    let auth = tpmvsc::card::pin_auth(
        &hex::decode(
            read_json(&dir.join(CARD_FILE))["pin_salt"]
                .as_str()
                .expect("pin_salt"),
        )
        .expect("hex"),
        PIN.as_bytes(),
    );
    for c in &conns {
        for form in secret_forms(&auth)
            .iter()
            .chain(secret_forms(PIN.as_bytes()).iter())
        {
            assert!(
                !contains_bytes(&c.to_tpm, form),
                "the PIN (or its authValue) crossed the wire"
            );
        }
    }
    assert_eq!(da_counter(&swtpm.tcti()), da, "no authorization was tried");
    assert_eq!(info_u64(&cli, "v", "pin_tries_left"), tries, "no try spent");

    // The lockout commands salt to the proved SRK as well: the session of clear-lockout
    // is salted to a primary made from the standard template, never to 0x81000001.
    let empty = store.scratch("empty-lockout-auth");
    std::fs::write(&empty, "").expect("empty lockout auth file");
    let before = relay.count();
    cli.tpmvsc(&[
        "tpm",
        "clear-lockout",
        "--lockout-auth-file",
        empty.to_str().expect("utf-8"),
    ])
    .ok("clear-lockout with the (empty) lockout authorization");
    let conns = relay.connections()[before..].to_vec();
    let standard = tpmvsc::tpm::templates::srk()
        .expect("template")
        .marshall()
        .expect("marshalling");
    let sessions = sessions_started(&conns);
    assert!(!sessions.is_empty(), "clear-lockout started a session");
    for s in sessions.iter().filter(|s| s.start.session_type == 0x00) {
        assert_eq!(
            s.salt_key_template.as_deref(),
            Some(standard.as_slice()),
            "clear-lockout salted its HMAC session to something other than the proved SRK: \
             {sessions:#x?}"
        );
    }
    assert_nothing_salted_to_the_planted_key_hmac_aside(&sessions);
}

/// Policy sessions never carry a secret; still, none may be salted to the planted key.
fn assert_nothing_salted_to_the_planted_key_hmac_aside(sessions: &[SeenSession]) {
    assert!(
        sessions.iter().all(|s| s.start.tpm_key != SRK_PERSISTENT),
        "a session was salted to the planted key: {sessions:#x?}"
    );
}

#[test]
fn a_planted_salt_key_gets_no_pin_from_c_login() {
    if !tools_present() {
        return;
    }
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    set_module_env(&store, &relay.tcti());
    let cli = Cli::new(&store, &relay.tcti());
    cli.tpmvsc_stdin(
        &["create", "--name", "m", "--pin", "prompt", "--stdin"],
        &format!("{PIN}\n"),
    )
    .ok("create");
    let dir = card_dir(&cli, "m");
    plant(&swtpm, &dir);
    let da = da_counter(&swtpm.tcti());
    let tries = info_u64(&cli, "m", "pin_tries_left");

    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    let before = relay.count();
    let rv = p11_rv(s.login(UserType::User, Some(&AuthPin::new(PIN.into()))));
    let conns = relay.connections()[before..].to_vec();
    assert_eq!(
        rv,
        cryptoki::error::RvError::TokenNotRecognized,
        "C_Login on the planted card"
    );
    assert_nothing_salted_to_the_planted_key("C_Login", &conns);
    assert_eq!(da_counter(&swtpm.tcti()), da, "no authorization was tried");
    assert_eq!(info_u64(&cli, "m", "pin_tries_left"), tries, "no try spent");
    drop(s);
    p.finalize().expect("C_Finalize");
}
