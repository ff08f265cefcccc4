//! What each operation costs in TPM commands — the figure that matters on a hardware TPM,
//! where a command takes milliseconds to hundreds of milliseconds (DESIGN.md §7). A relay
//! between the module (in this process) and swtpm counts every command by its code. The
//! SRK is persistent at 0x81000001 and the lock directory is in memory, as `/run` is on a
//! real machine, so the SRK's proof is cached for the boot.
//!
//! Bounds asserted here: a signature with a loaded key is one TPM2_Sign; a warm login
//! (connection open, SRK proved) stays within its budget, PolicyNV revocation check
//! included. The counts are printed for the README's table.

mod common;

use std::collections::BTreeMap;

use common::*;
use cryptoki::mechanism::Mechanism;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

const PIN: &str = "Costs-pin-40317";

/// Names of the TPM commands tpmvsc sends.
fn command_name(code: u32) -> String {
    match code {
        0x0131 => "CreatePrimary",
        0x0134 => "NV_Increment",
        0x0149 => "PolicyNV",
        0x014E => "NV_Read",
        0x0151 => "PolicySecret",
        0x0153 => "Create",
        0x0154 => "ECDH_ZGen",
        0x0157 => "Load",
        0x0159 => "RSA_Decrypt",
        0x015D => "Sign",
        0x0161 => "ContextLoad",
        0x0162 => "ContextSave",
        0x0165 => "FlushContext",
        0x0169 => "NV_ReadPublic",
        0x016B => "PolicyAuthValue",
        0x016C => "PolicyCommandCode",
        0x0171 => "PolicyOR",
        0x0173 => "ReadPublic",
        0x0176 => "StartAuthSession",
        0x017A => "GetCapability",
        0x017B => "GetRandom",
        other => return format!("{other:#x}"),
    }
    .to_string()
}

/// The commands the relay saw since `before`, by name.
fn commands_since(relay: &Relay, before: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in relay.connections()[before..].iter().filter(|c| !c.control) {
        for cmd in split_commands(&c.to_tpm) {
            *out.entry(command_name(cmd.code)).or_insert(0) += 1;
        }
    }
    out
}

fn total(m: &BTreeMap<String, usize>) -> usize {
    m.values().sum()
}

#[test]
fn tpm_commands_per_operation_stay_within_their_budget() {
    let shm = tempfile::tempdir_in("/dev/shm").expect("a lock directory in memory");
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    set_module_env_locks(&store, &relay.tcti(), shm.path());
    let cli = Cli::new(&store, &relay.tcti())
        .with_env("TPMVSC_LOCK_DIR", shm.path().to_str().expect("utf-8"));
    cli.tpmvsc_stdin(
        &["create", "--name", "c", "--pin", "prompt", "--stdin"],
        &format!("{PIN}\n"),
    )
    .ok("create");
    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    let pin = AuthPin::new(PIN.into());

    let before = relay.count();
    s.login(UserType::User, Some(&pin)).expect("C_Login");
    let cold = commands_since(&relay, before);
    let (_, key) = p11_keygen(&s, None, P256_PARAMS, Some(b"k"), Some("k"));
    s.logout().expect("C_Logout");

    let before = relay.count();
    s.login(UserType::User, Some(&pin)).expect("C_Login");
    let warm = commands_since(&relay, before);

    let digest = [7u8; 32];
    let before = relay.count();
    s.sign(&Mechanism::Ecdsa, key, &digest)
        .expect("first C_Sign");
    let first_sign = commands_since(&relay, before);
    let before = relay.count();
    s.sign(&Mechanism::Ecdsa, key, &digest).expect("C_Sign");
    let sign = commands_since(&relay, before);

    for (what, m) in [
        ("C_Login, first in the process", &cold),
        ("C_Login, warm connection", &warm),
        ("first C_Sign after login (loads the key)", &first_sign),
        ("C_Sign, key loaded", &sign),
    ] {
        eprintln!("{what}: {} commands {m:?}", total(m));
    }
    assert_eq!(
        sign,
        BTreeMap::from([("Sign".to_string(), 1)]),
        "a signature with a loaded key is one TPM2_Sign"
    );
    assert!(
        !warm.contains_key("CreatePrimary") && !cold.contains_key("CreatePrimary"),
        "no CreatePrimary on a login while the SRK's proof is cached: {cold:?} {warm:?}"
    );
    assert!(
        warm.contains_key("PolicyNV"),
        "the login checks the card's counter: {warm:?}"
    );
    assert!(
        total(&warm) <= 7,
        "a warm login within its budget: {} commands {warm:?}",
        total(&warm)
    );
    drop(s);
    p.finalize().expect("C_Finalize");
}
