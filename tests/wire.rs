//! DESIGN.md §2, "Secrets on the TPM wire" and the salting rule: a relay between the CLI
//! and swtpm records every byte across create, check-pin (login), change-PIN, PUK unblock,
//! admin unblock and admin change-key. No PIN, PUK, PIN- or PUK-derived authValue,
//! unblock secret X, admin key or admin response appears in the recording, and every
//! TPM2_StartAuthSession names the SRK (0x81000001) as salt key — except the policy
//! sessions used with PolicySecret, which carry no secret themselves (the secret object's
//! authorization rides in the salted HMAC session; `Tpm::check_auth`, `change_csk_auth`).

mod common;

use common::*;
use tpmvsc::card::{ADMIN_FILE, AdminFile, CardRecord, pin_auth};
use tpmvsc::provision::admin::{AdminKey, open_ticket};
use tpmvsc::tpm::SRK_PERSISTENT;

const PIN_P1: &str = "Wire-pin-p1-7731";
const PIN_P2: &str = "Wire-pin-p2-0864";
const PIN_P3: &str = "Wire-pin-p3-5529";
const PUK_P: &str = "Wire-puk-p-41873";
const KEY_P: &str = "5a1e93c0d4b7286f0e1d2c3b4a59687f8e9dacbbcadbe9f8";
const PIN_A1: &str = "Wire-pin-a1-3390";
const PIN_A2: &str = "Wire-pin-a2-1148";
const KEY_A1: &str = "c3a8f1e05b6d7294a0b1c2d3e4f5061728394a5b6c7d8e9f";
const KEY_A2: &str = "7e6d5c4b3a29180f1e2d3c4b5a69788796a5b4c3d2e1f009";

/// Secrets to look for, with a label for the failure message.
#[derive(Default)]
struct Secrets(Vec<(String, Vec<u8>)>);

impl Secrets {
    fn add(&mut self, label: impl Into<String>, value: &[u8]) {
        assert!(
            value.len() >= 8,
            "a secret this short could match by chance"
        );
        self.0.push((label.into(), value.to_vec()));
    }
}

fn record(store: &TestStore, card: &str) -> CardRecord {
    tpmvsc::provision::find(&store.store(), card)
        .expect("finding the card")
        .1
}

/// The unblock secret X behind the card's next challenge under `key`, and the response
/// that opens it (computed here, as the help desk would).
fn next_x(store: &TestStore, card: &str, key: &str) -> ([u8; 32], [u8; 8]) {
    let (dir, _) = tpmvsc::provision::find(&store.store(), card).expect("finding the card");
    let file: AdminFile = dir.read(ADMIN_FILE).expect("reading admin.json");
    let ticket = file.tickets.first().expect("an unused challenge");
    let challenge: [u8; 8] = ticket
        .challenge
        .clone()
        .try_into()
        .expect("a challenge is 8 bytes");
    let response = AdminKey::parse_hex(key)
        .expect("the admin key parses")
        .response(&challenge);
    let x = open_ticket(ticket, &response).expect("the right response opens the ticket");
    (*x, response)
}

/// What one CLI step sent over the wire.
struct Step {
    name: &'static str,
    conns: Vec<Recorded>,
}

#[derive(Debug, Default)]
struct Tally {
    commands: usize,
    salted_hmac: usize,
    salted_policy: usize,
    unsalted_policy: usize,
    bound: usize,
}

#[test]
fn no_secret_crosses_the_wire_and_every_secret_session_is_salted_to_the_srk() {
    let swtpm = Swtpm::start_with_persistent_srk();
    swtpm.set_da(1000, 600, 1);
    let relay = Relay::start(swtpm.port());
    let CliWorld { swtpm, store, cli } = CliWorld::through(swtpm, &relay.tcti());
    let mut secrets = Secrets::default();
    let mut steps: Vec<Step> = Vec::new();
    let mut run = |name: &'static str, args: &[&str], stdin: &str, code: i32| {
        let before = relay.count();
        cli.tpmvsc_stdin(args, stdin).expect_code(code, name);
        let conns = relay.connections()[before..].to_vec();
        steps.push(Step { name, conns });
    };

    // Card "p": PIN, PUK and an admin key (PUK unblock). Card "a": PIN and admin key, no
    // PUK (admin unblock: the Windows rule).
    run(
        "create p",
        &[
            "create",
            "--name",
            "p",
            "--pin",
            "prompt",
            "--puk",
            "prompt",
            "--admin-key",
            "prompt",
            "--stdin",
        ],
        &format!("{PIN_P1}\n{PUK_P}\n{KEY_P}\n"),
        0,
    );
    run(
        "create a",
        &[
            "create",
            "--name",
            "a",
            "--pin",
            "prompt",
            "--admin-key",
            "prompt",
            "--stdin",
        ],
        &format!("{PIN_A1}\n{KEY_A1}\n"),
        0,
    );
    let p = record(&store, "p");
    let a = record(&store, "a");
    assert_eq!(p.srk.name, a.srk.name, "both cards use the same SRK");
    let (x_p, r_p) = next_x(&store, "p", KEY_P);
    secrets.add("X of card p (created at create)", &x_p);
    secrets.add("admin response of card p", &r_p);

    run(
        "check-pin p (login)",
        &["check-pin", "p", "--stdin"],
        &format!("{PIN_P1}\n"),
        0,
    );
    run(
        "change-pin p",
        &["change-pin", "p", "--stdin"],
        &format!("{PIN_P1}\n{PIN_P2}\n{PIN_P2}\n"),
        0,
    );
    run(
        "unblock p --puk",
        &["unblock", "p", "--puk", "--stdin"],
        &format!("{PUK_P}\n{PIN_P3}\n{PIN_P3}\n"),
        0,
    );
    run(
        "check-pin p with the PIN the PUK set",
        &["check-pin", "p", "--stdin"],
        &format!("{PIN_P3}\n"),
        0,
    );

    let (x_a, r1) = next_x(&store, "a", KEY_A1);
    secrets.add("X of card a", &x_a);
    secrets.add("admin response 1 of card a", &r1);
    run(
        "unblock a --admin",
        &["unblock", "a", "--admin", "--stdin"],
        &format!("{}\n{PIN_A2}\n{PIN_A2}\n", hex::encode(r1)),
        0,
    );
    run(
        "check-pin a with the PIN the admin set",
        &["check-pin", "a", "--stdin"],
        &format!("{PIN_A2}\n"),
        0,
    );
    let (x_a_again, r2) = next_x(&store, "a", KEY_A1);
    assert_eq!(x_a_again, x_a, "X changes only with a new batch");
    secrets.add("admin response 2 of card a", &r2);
    run(
        "admin change-key a",
        &["admin", "change-key", "a", "--stdin"],
        &format!("{}\n{KEY_A2}\n{KEY_A2}\n", hex::encode_upper(r2)),
        0,
    );
    let (x_a2, r3) = next_x(&store, "a", KEY_A2);
    assert_ne!(x_a2, x_a, "change-key draws a new X");
    secrets.add("new X of card a (after change-key)", &x_a2);
    secrets.add("admin response under the new key", &r3);
    // The new X works: an admin unblock with the new key.
    run(
        "unblock a --admin with the new key",
        &["unblock", "a", "--admin", "--stdin"],
        &format!("{}\n{PIN_A1}\n{PIN_A1}\n", hex::encode(r3)),
        0,
    );

    // Salts after every step (no format here, so they did not change, but read them last).
    let p = record(&store, "p");
    let a = record(&store, "a");
    for pin in [PIN_P1, PIN_P2, PIN_P3, PUK_P, PIN_A1, PIN_A2] {
        secrets.add(format!("PIN/PUK {pin:?}"), pin.as_bytes());
        for (card, salt) in [
            ("p pin_salt", &p.pin_salt),
            ("p puk_salt", &p.puk_salt),
            ("a pin_salt", &a.pin_salt),
            ("a puk_salt", &a.puk_salt),
        ] {
            secrets.add(
                format!("auth of {pin:?} with {card}"),
                &pin_auth(salt, pin.as_bytes()),
            );
        }
    }
    for key in [KEY_P, KEY_A1, KEY_A2] {
        secrets.add(format!("admin key {key} (text)"), key.as_bytes());
        secrets.add(
            format!("admin key {key} (bytes)"),
            &hex::decode(key).expect("the key is hex"),
        );
    }

    // 1. No secret in either direction of any connection.
    let mut leaks = Vec::new();
    for step in &steps {
        for (i, c) in step.conns.iter().enumerate() {
            for (label, value) in &secrets.0 {
                for (form, needle) in ["raw", "hex", "HEX"].iter().zip(secret_forms(value)) {
                    for (dir, bytes) in [("to TPM", &c.to_tpm), ("from TPM", &c.from_tpm)] {
                        if contains_bytes(bytes, &needle) {
                            leaks.push(format!(
                                "{}: connection {i} {dir}: {label} ({form})",
                                step.name
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets on the TPM wire:\n{leaks:#?}");

    // 2. Every StartAuthSession. A salt key is "the SRK at 0x81000001", or "a transient
    // re-creation of the card's recorded SRK" (a handle a CreatePrimary returned earlier in
    // the same step, made from the template card.json records), or something else.
    let srk_template = p.srk.template.clone();
    let mut total = Tally::default();
    let mut bad = Vec::new();
    let mut transient_srk = Vec::new();
    let mut per_step = Vec::new();
    for step in &steps {
        let mut t = Tally::default();
        for c in step.conns.iter().filter(|c| !c.control) {
            t.commands += split_commands(&c.to_tpm).len();
        }
        let seen = sessions_started(&step.conns);
        for SeenSession {
            start: s,
            salt_key_template,
        } in &seen
        {
            let key = if s.tpm_key == SRK_PERSISTENT {
                "SRK 0x81000001"
            } else if s.tpm_key == TPM_RH_NULL {
                "none"
            } else if salt_key_template.as_deref() == Some(srk_template.as_slice()) {
                "transient primary from the card's SRK template"
            } else {
                "UNKNOWN KEY"
            };
            eprintln!("{}: StartAuthSession {s:x?}: salt key {key}", step.name);
            if s.bind != TPM_RH_NULL {
                t.bound += 1;
            }
            let srk =
                key == "SRK 0x81000001" || key == "transient primary from the card's SRK template";
            match (s.session_type, s.tpm_key) {
                (0x00, _) if srk && s.salt_len > 0 => t.salted_hmac += 1,
                (0x01, _) if srk && s.salt_len > 0 => t.salted_policy += 1,
                (0x01, TPM_RH_NULL) if s.salt_len == 0 => t.unsalted_policy += 1,
                _ => bad.push(format!("{}: {s:x?}, salt key {key}", step.name)),
            }
            if s.tpm_key != SRK_PERSISTENT && s.tpm_key != TPM_RH_NULL {
                transient_srk.push(format!("{}: {s:x?}, salt key {key}", step.name));
            }
        }
        eprintln!(
            "{}: {} connections, {} StartAuthSession, {t:?}",
            step.name,
            step.conns.len(),
            seen.len()
        );
        per_step.push((
            step.name,
            seen.len(),
            t.commands,
            t.salted_hmac + t.salted_policy,
        ));
        total.commands += t.commands;
        total.salted_hmac += t.salted_hmac;
        total.salted_policy += t.salted_policy;
        total.unsalted_policy += t.unsalted_policy;
        total.bound += t.bound;
    }
    eprintln!("all steps: {total:?}");
    for (name, starts, commands, salted) in per_step {
        assert!(
            commands > 0,
            "{name}: no TPM command recorded; the relay saw nothing"
        );
        assert!(starts > 0, "{name}: no StartAuthSession recorded");
        assert!(salted > 0, "{name}: no session salted to the SRK");
    }
    // Security: nothing salted to a key other than the card's SRK; unsalted sessions are
    // policy sessions only (PolicySecret: the secret rides in the salted HMAC session).
    assert!(
        bad.is_empty(),
        "sessions not salted to the card's SRK, or unsalted sessions that are not policy \
         sessions:\n{bad:#?}"
    );
    assert!(total.salted_hmac > 0, "{total:?}");
    // The PIN branch (change-pin) uses a salted policy session; PolicySecret the unsalted one.
    assert!(total.salted_policy > 0, "{total:?}");
    assert!(total.unsalted_policy > 0, "{total:?}");
    // DESIGN.md §2: the SRK is the persistent 0x81000001 when present and holding the
    // recorded Name; the salt key must be that handle, not a primary re-created per process.
    assert!(
        transient_srk.is_empty(),
        "salted to a transient primary although the SRK is persistent at 0x81000001 \
         (card.json srk.name {}, 0x81000001 holds {}):\n{transient_srk:#?}",
        hex::encode(&p.srk.name),
        persistent_name(&swtpm).map_or("?".into(), hex::encode)
    );
}

/// Name of the object at 0x81000001 (tpm2_readpublic), when the tool is there.
fn persistent_name(swtpm: &Swtpm) -> Option<Vec<u8>> {
    if !require_tool("tpm2_readpublic") {
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let file = dir.path().join("name");
    let out = std::process::Command::new("tpm2_readpublic")
        .args(["-T", &swtpm.tcti(), "-c", "0x81000001", "-n"])
        .arg(&file)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .ok()?;
    out.status.success().then(|| std::fs::read(&file).ok())?
}
