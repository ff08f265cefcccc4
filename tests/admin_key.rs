//! The administrator key (DESIGN.md §3) through the `tpmvsc` CLI on a real swtpm: the
//! Windows 3DES challenge-response, one-time challenges, unblock, key change, refill and
//! format.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use tpmvsc::tpm::TpmError;

/// A non-default admin key used by most tests.
const KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
/// Another one, for change-key.
const KEY2: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";

/// Creates a card without a PUK whose admin key is `key` (prompted on stdin).
fn create_managed(cli: &Cli, name: &str, key: &str, extra: &[&str]) {
    let mut args = vec!["create", "--name", name, "--admin-key", "prompt", "--stdin"];
    args.extend_from_slice(extra);
    cli.tpmvsc_stdin(&args, &format!("{key}\n"))
        .ok("create --admin-key prompt");
}

/// `openssl enc -des-ede3 -K KEY -nopad` of the challenge bytes, as lowercase hex.
fn openssl_response(key: &str, challenge_hex: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["enc", "-des-ede3", "-K", key, "-nopad"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running openssl");
    child
        .stdin
        .take()
        .expect("openssl stdin")
        .write_all(&hex::decode(challenge_hex).expect("challenge is hex"))
        .expect("writing the challenge to openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success(), "openssl failed: {out:?}");
    assert_eq!(out.stdout.len(), 8, "one 3DES block from openssl: {out:?}");
    hex::encode(out.stdout)
}

fn random_hex8() -> String {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    hex::encode(b)
}

#[test]
fn responses_match_openssl_des_ede3() {
    if !require_tool("openssl") {
        return;
    }
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();

    let mut challenges = vec!["0000000000000000".to_string(), "1122334455667788".into()];
    challenges.extend((0..6).map(|_| random_hex8()));
    for key in [DEFAULT_ADMIN_KEY, KEY, KEY2] {
        for c in &challenges {
            let ours = admin_response(&cli, key, c);
            assert_eq!(ours.len(), 16, "a response is 16 hex digits: {ours:?}");
            assert_eq!(
                ours.to_lowercase(),
                openssl_response(key, c),
                "key {key}, challenge {c}"
            );
            // Upper-case input gives the same answer.
            assert_eq!(
                admin_response(&cli, &key.to_uppercase(), &c.to_uppercase()).to_lowercase(),
                ours.to_lowercase()
            );
        }
    }

    // A response computed by openssl alone is what a real card accepts.
    create_managed(&cli, "m", KEY, &[]);
    let (c, left) = admin_challenge(&cli, "m");
    let r = openssl_response(KEY, &c);
    cli.tpmvsc_stdin(&["admin", "verify", "m", "--stdin"], &format!("{r}\n"))
        .ok("admin verify with openssl's response");
    let (c2, left2) = admin_challenge(&cli, "m");
    assert_ne!(c2, c, "the verified challenge is spent");
    assert_eq!(left2, left - 1);
}

#[test]
fn an_admin_response_unblocks_once_and_a_replay_fails() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_managed(&cli, "a", KEY, &["--pin-tries", "3"]);
    for _ in 0..3 {
        cli.check_pin("a", "87654321");
    }
    assert_eq!(info_json(&cli, "a")["state"], "blocked");
    let admin_tries = info_u64(&cli, "a", "admin_tries_left");

    let (c1, left1) = admin_challenge(&cli, "a");
    assert_eq!(left1, 32, "a fresh card has a full batch");
    let r1 = admin_response(&cli, KEY, &c1);
    cli.tpmvsc_stdin(
        &["unblock", "a", "--admin", "--stdin"],
        &format!("{r1}\nAdmin-pin-1\nAdmin-pin-1\n"),
    )
    .ok("unblock --admin with the right response");
    let info = info_json(&cli, "a");
    assert_eq!(info["state"], "ready", "{info:#}");
    assert_eq!(info["pin_tries_left"], 3, "{info:#}");
    assert_eq!(info["admin_challenges_left"], left1 - 1, "{info:#}");
    cli.check_pin("a", "Admin-pin-1")
        .ok("the PIN set by the admin");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "a", DEFAULT_PIN),
        Err(TpmError::AuthFail)
    );

    let (c2, left2) = admin_challenge(&cli, "a");
    assert_ne!(c2, c1, "a used challenge is not shown again");
    assert_eq!(left2, left1 - 1, "one challenge per unblock");

    // The same response again: the challenge changed, so it is wrong now.
    cli.tpmvsc_stdin(
        &["unblock", "a", "--admin", "--stdin"],
        &format!("{r1}\nReplay-pin-1\nReplay-pin-1\n"),
    )
    .expect_code(3, "unblock --admin with a replayed response");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "a", "Replay-pin-1"),
        Err(TpmError::AuthFail),
        "the replay set no PIN"
    );
    check_pin(&store, &swtpm.tcti(), "a", "Admin-pin-1").expect("PIN unchanged by the replay");
    let (c3, left3) = admin_challenge(&cli, "a");
    assert_ne!(c3, c2, "the replay spent its challenge");
    assert_eq!(left3, left2 - 1);
    assert_eq!(info_u64(&cli, "a", "admin_tries_left"), admin_tries - 1);
}

#[test]
fn a_wrong_response_spends_its_challenge_and_a_try() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_managed(&cli, "w", KEY, &[]);
    let tries = info_u64(&cli, "w", "admin_tries_left");
    let (c1, left1) = admin_challenge(&cli, "w");
    // The response of another key to this very challenge.
    let wrong = admin_response(&cli, KEY2, &c1);
    let out = cli
        .tpmvsc_stdin(
            &["unblock", "w", "--admin", "--stdin"],
            &format!("{wrong}\nWrong-pin-1\nWrong-pin-1\n"),
        )
        .expect_code(3, "unblock --admin with a wrong response");
    assert!(!out.stderr.is_empty(), "the refusal says why");
    let (c2, left2) = admin_challenge(&cli, "w");
    assert_ne!(c2, c1, "the wrong response spent the challenge");
    assert_eq!(left2, left1 - 1);
    assert_eq!(info_u64(&cli, "w", "admin_tries_left"), tries - 1);
    check_pin(&store, &swtpm.tcti(), "w", DEFAULT_PIN).expect("PIN unchanged");

    // `admin verify` counts the same way.
    cli.tpmvsc_stdin(&["admin", "verify", "w", "--stdin"], &format!("{wrong}\n"))
        .expect_code(3, "admin verify with a wrong response");
    assert_eq!(info_u64(&cli, "w", "admin_tries_left"), tries - 2);
    let (c3, _) = admin_challenge(&cli, "w");
    assert_ne!(c3, c2);

    // The right response to the next challenge works and refills the tries.
    let r = admin_response(&cli, KEY, &c3);
    cli.tpmvsc_stdin(
        &["unblock", "w", "--admin", "--stdin"],
        &format!("{r}\nRight-pin-1\nRight-pin-1\n"),
    )
    .ok("unblock --admin with the right response");
    assert_eq!(info_u64(&cli, "w", "admin_tries_left"), tries);
    check_pin(&store, &swtpm.tcti(), "w", "Right-pin-1").expect("PIN set by the admin");
}

#[test]
fn a_card_without_an_admin_key_refuses_every_admin_command() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    cli.tpmvsc(&["create", "--name", "r", "--admin-key", "random"])
        .ok("create --admin-key random");
    let info = info_json(&cli, "r");
    assert_eq!(info["admin"], "random", "{info:#}");
    assert_eq!(info["admin_challenges_left"], 0, "{info:#}");

    let fake = admin_response(&cli, DEFAULT_ADMIN_KEY, "0000000000000000");
    let fake_file = store.scratch("fake-response");
    std::fs::write(&fake_file, format!("{fake}\n")).expect("writing the response file");
    let fake_path = fake_file.to_str().expect("utf-8 path");
    let runs = [
        cli.tpmvsc(&["admin", "challenge", "r", "--json"]),
        cli.tpmvsc_stdin(
            &[
                "unblock",
                "r",
                "--admin",
                "--response-file",
                fake_path,
                "--stdin",
            ],
            "Admin-pin-1\nAdmin-pin-1\n",
        ),
        cli.tpmvsc_stdin(
            &["unblock", "r", "--admin", "--stdin"],
            &format!("{fake}\nAdmin-pin-1\nAdmin-pin-1\n"),
        ),
        cli.tpmvsc_stdin(
            &["format", "r", "--admin", "--stdin", "--yes"],
            &format!("{fake}\nAdmin-pin-1\nAdmin-pin-1\n"),
        ),
        cli.tpmvsc(&["admin", "verify", "r", "--response-file", fake_path]),
    ];
    for out in runs {
        assert_eq!(out.code, 1, "{out:#?}");
        assert!(out.stderr.contains("no admin key"), "{out:#?}");
    }
    check_pin(&store, &swtpm.tcti(), "r", DEFAULT_PIN).expect("PIN unchanged");
    let after = info_json(&cli, "r");
    assert_eq!(after["pin_tries_left"], info["pin_tries_left"]);
    assert_eq!(after["admin_tries_left"], info["admin_tries_left"]);
}

#[test]
fn a_card_with_a_puk_is_not_unblocked_with_the_admin_key() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_managed(&cli, "p", KEY, &["--puk", "default"]);
    let info = info_json(&cli, "p");
    assert_eq!(info["has_puk"], true);
    assert_eq!(info["admin"], "managed");

    let (c, left) = admin_challenge(&cli, "p");
    let r = admin_response(&cli, KEY, &c);
    let r_file = store.scratch("response");
    std::fs::write(&r_file, format!("{r}\n")).expect("writing the response file");
    cli.tpmvsc_stdin(
        &[
            "unblock",
            "p",
            "--admin",
            "--response-file",
            r_file.to_str().expect("utf-8 path"),
            "--stdin",
        ],
        "Admin-pin-1\nAdmin-pin-1\n",
    )
    .expect_code(1, "unblock --admin on a card with a PUK");
    cli.tpmvsc_stdin(
        &["unblock", "p", "--admin", "--stdin"],
        &format!("{r}\nAdmin-pin-1\nAdmin-pin-1\n"),
    )
    .expect_code(
        1,
        "unblock --admin (response on stdin) on a card with a PUK",
    );
    assert_eq!(
        admin_challenge(&cli, "p"),
        (c.clone(), left),
        "no challenge was spent"
    );
    assert_eq!(
        info_u64(&cli, "p", "admin_tries_left"),
        info["admin_tries_left"].as_u64().expect("admin_tries_left")
    );
    check_pin(&store, &swtpm.tcti(), "p", DEFAULT_PIN).expect("PIN unchanged");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "p", "Admin-pin-1"),
        Err(TpmError::AuthFail)
    );

    // The library refuses too (the TPM policy has no admin branch; the check comes first).
    let e = tpmvsc::provision::admin::respond(
        &store.store(),
        "p",
        &tpmvsc::provision::admin::parse_response(&r).expect("response"),
        tpmvsc::provision::admin::AdminAction::Unblock {
            new_pin: b"Admin-pin-1",
        },
    )
    .expect_err("library unblock with the admin key on a PUK card");
    assert_eq!(tpmvsc::error::Error::exit_code(&e), 1, "{e:?}");
    assert_eq!(admin_challenge(&cli, "p"), (c.clone(), left));

    // The response still verifies: the admin key manages the card, it just does not
    // reset a PUK card's PIN.
    cli.tpmvsc_stdin(&["admin", "verify", "p", "--stdin"], &format!("{r}\n"))
        .ok("admin verify on a PUK card");
}

#[test]
fn change_key_retires_the_old_key() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_managed(&cli, "k", KEY, &[]);
    // Spend one, so the refilled count is visible.
    let (c0, _) = admin_challenge(&cli, "k");
    cli.tpmvsc_stdin(
        &["admin", "verify", "k", "--stdin"],
        &format!("{}\n", admin_response(&cli, KEY, &c0)),
    )
    .ok("admin verify");
    assert_eq!(admin_challenge(&cli, "k").1, 31);

    let (c1, _) = admin_challenge(&cli, "k");
    let r1 = admin_response(&cli, KEY, &c1);
    cli.tpmvsc_stdin(
        &["admin", "change-key", "k", "--stdin"],
        &format!("{r1}\n{KEY2}\n{KEY2}\n"),
    )
    .ok("admin change-key");
    let (c2, left2) = admin_challenge(&cli, "k");
    assert_eq!(left2, 32, "a new key comes with a full batch");
    assert_eq!(info_json(&cli, "k")["default_admin_key"], false);

    cli.tpmvsc_stdin(
        &["admin", "verify", "k", "--stdin"],
        &format!("{}\n", admin_response(&cli, KEY, &c2)),
    )
    .expect_code(3, "the old key's response to the new challenge");
    let (c3, _) = admin_challenge(&cli, "k");
    assert_ne!(c3, c2);
    cli.tpmvsc_stdin(
        &["admin", "verify", "k", "--stdin"],
        &format!("{}\n", admin_response(&cli, KEY2, &c3)),
    )
    .ok("the new key's response");

    let (c4, _) = admin_challenge(&cli, "k");
    cli.tpmvsc_stdin(
        &["unblock", "k", "--admin", "--stdin"],
        &format!(
            "{}\nOld-key-pin\nOld-key-pin\n",
            admin_response(&cli, KEY, &c4)
        ),
    )
    .expect_code(3, "unblock with the old key");
    let (c5, _) = admin_challenge(&cli, "k");
    cli.tpmvsc_stdin(
        &["unblock", "k", "--admin", "--stdin"],
        &format!(
            "{}\nNew-key-pin\nNew-key-pin\n",
            admin_response(&cli, KEY2, &c5)
        ),
    )
    .ok("unblock with the new key");
    check_pin(&store, &swtpm.tcti(), "k", "New-key-pin").expect("PIN set with the new key");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "k", "Old-key-pin"),
        Err(TpmError::AuthFail)
    );

    // Changing to the well-known key is flagged.
    let (c6, _) = admin_challenge(&cli, "k");
    cli.tpmvsc_stdin(
        &["admin", "change-key", "k", "--stdin"],
        &format!(
            "{}\n{DEFAULT_ADMIN_KEY}\n{DEFAULT_ADMIN_KEY}\n",
            admin_response(&cli, KEY2, &c6)
        ),
    )
    .ok("admin change-key to the default key");
    assert_eq!(info_json(&cli, "k")["default_admin_key"], true);
}

#[test]
fn refill_restores_a_full_batch_of_challenges() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_managed(&cli, "f", KEY, &[]);
    for _ in 0..3 {
        let (c, _) = admin_challenge(&cli, "f");
        cli.tpmvsc_stdin(
            &["admin", "verify", "f", "--stdin"],
            &format!("{}\n", admin_response(&cli, KEY, &c)),
        )
        .ok("admin verify");
    }
    let (c, left) = admin_challenge(&cli, "f");
    assert_eq!(left, 29);
    let old_tickets = read_json(&card_dir(&cli, "f").join("admin.json"))["tickets"].clone();

    cli.tpmvsc_stdin(
        &["admin", "refill", "f", "--stdin"],
        &format!("{}\n{KEY}\n", admin_response(&cli, KEY, &c)),
    )
    .ok("admin refill");
    let (c2, left2) = admin_challenge(&cli, "f");
    assert_eq!(left2, 32, "refill gives a full batch");
    assert_eq!(info_u64(&cli, "f", "admin_challenges_left"), 32);
    let new_tickets = read_json(&card_dir(&cli, "f").join("admin.json"))["tickets"].clone();
    for t in new_tickets.as_array().expect("tickets") {
        assert!(
            !old_tickets
                .as_array()
                .expect("tickets")
                .iter()
                .any(|o| o["challenge"] == t["challenge"]),
            "refill draws new challenges"
        );
    }

    // The new batch works for an unblock.
    cli.tpmvsc_stdin(
        &["unblock", "f", "--admin", "--stdin"],
        &format!(
            "{}\nRefill-pin-1\nRefill-pin-1\n",
            admin_response(&cli, KEY, &c2)
        ),
    )
    .ok("unblock with a refilled challenge");
    check_pin(&store, &swtpm.tcti(), "f", "Refill-pin-1").expect("PIN set after refill");
}

#[test]
fn format_with_the_admin_response_keeps_the_card_id_and_the_challenges() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    let created = {
        cli.tpmvsc_stdin(
            &[
                "create",
                "--name",
                "g",
                "--admin-key",
                "prompt",
                "--stdin",
                "--json",
            ],
            &format!("{KEY}\n"),
        )
        .ok("create --admin-key prompt")
        .json()
    };
    let card_id = created["card_id"].as_str().expect("card_id").to_string();
    let (c1, left1) = admin_challenge(&cli, "g");

    // A wrong response formats nothing and spends the challenge.
    cli.tpmvsc_stdin(
        &["format", "g", "--admin", "--stdin", "--yes"],
        &format!(
            "{}\nFormat-pin-0\nFormat-pin-0\n",
            admin_response(&cli, KEY2, &c1)
        ),
    )
    .expect_code(3, "format --admin with a wrong response");
    check_pin(&store, &swtpm.tcti(), "g", DEFAULT_PIN).expect("PIN unchanged");
    let (c2, left2) = admin_challenge(&cli, "g");
    assert_ne!(c2, c1);
    assert_eq!(left2, left1 - 1);

    cli.tpmvsc_stdin(
        &["format", "g", "--admin", "--stdin", "--yes"],
        &format!(
            "{}\nFormat-pin-1\nFormat-pin-1\n",
            admin_response(&cli, KEY, &c2)
        ),
    )
    .ok("format --admin");
    let info = info_json(&cli, "g");
    assert_eq!(
        info["card_id"],
        card_id.as_str(),
        "format keeps the card ID"
    );
    assert_eq!(info["formatted"], true, "{info:#}");
    assert_eq!(info["state"], "ready", "{info:#}");
    assert_eq!(info["admin"], "managed", "{info:#}");
    assert_eq!(info["admin_challenges_left"], left2 - 1, "{info:#}");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "g", DEFAULT_PIN),
        Err(TpmError::AuthFail)
    );
    cli.check_pin("g", "Format-pin-1")
        .ok("the PIN set by format");

    // The challenges left from before the format still unblock.
    for i in 0..2 {
        let (c, _) = admin_challenge(&cli, "g");
        let pin = format!("After-fmt-{i}");
        cli.tpmvsc_stdin(
            &["unblock", "g", "--admin", "--stdin"],
            &format!("{}\n{pin}\n{pin}\n", admin_response(&cli, KEY, &c)),
        )
        .ok("unblock --admin after format --admin");
        check_pin(&store, &swtpm.tcti(), "g", &pin).expect("PIN set after format");
    }
    assert_eq!(admin_challenge(&cli, "g").1, left2 - 3);
}
