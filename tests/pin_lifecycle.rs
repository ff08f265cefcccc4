//! PIN and PUK after creation, through the `tpmvsc` CLI on a real swtpm: change, block,
//! unblock, format, and a PIN change killed at any point (DESIGN.md §2).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tpmvsc::tpm::TpmError;

/// The `private` hex of a card's csk.json.
fn csk_private_hex(dir: &Path) -> String {
    read_json(&dir.join("csk.json"))["blob"]["private"]
        .as_str()
        .expect("blob.private in csk.json")
        .to_string()
}

/// Asserts that no file of the store holds the CSK private blob `hex_private`, in hex
/// (either case) or as raw bytes.
fn assert_blob_gone(store: &TestStore, hex_private: &str, what: &str) {
    let raw = hex::decode(hex_private).expect("private blob is hex");
    for needle in [
        hex_private.to_lowercase().into_bytes(),
        hex_private.to_uppercase().into_bytes(),
        raw,
    ] {
        let found = files_containing(&store.path(), &needle);
        assert!(
            found.is_empty(),
            "{what}: the old CSK blob survives in {found:?}"
        );
    }
}

#[test]
fn a_changed_pin_replaces_the_old_one_and_its_blob() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_card(&cli, "c");
    let dir = card_dir(&cli, "c");
    let old_private = csk_private_hex(&dir);
    let old_public = read_json(&dir.join("csk.json"))["blob"]["public"].clone();

    cli.tpmvsc_stdin(
        &["change-pin", "c", "--stdin"],
        "12345678\nNew-pin-42\nNew-pin-42\n",
    )
    .ok("change-pin");

    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "c", DEFAULT_PIN),
        Err(TpmError::AuthFail),
        "the TPM refuses the old PIN"
    );
    check_pin(&store, &swtpm.tcti(), "c", "New-pin-42").expect("the TPM takes the new PIN");
    cli.check_pin("c", DEFAULT_PIN)
        .expect_code(3, "check-pin with the old PIN");
    cli.check_pin("c", "New-pin-42")
        .ok("check-pin with the new PIN");
    assert_eq!(info_u64(&cli, "c", "pin_tries_left"), 5);

    let csk = read_json(&dir.join("csk.json"));
    assert_eq!(
        csk["blob"]["public"], old_public,
        "the CSK is the same key (children stay valid)"
    );
    assert_ne!(csk["blob"]["private"].as_str(), Some(old_private.as_str()));
    assert_blob_gone(&store, &old_private, "after change-pin");
}

#[test]
fn a_new_pin_that_breaks_the_policy_is_refused_before_any_try() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    cli.tpmvsc_stdin(
        &[
            "create",
            "--name",
            "p",
            "--pin",
            "prompt",
            "--pin-policy",
            "uppercase=required",
            "--stdin",
        ],
        "Upper-pin-1\n",
    )
    .ok("create with a PIN policy");
    let tries = info_u64(&cli, "p", "pin_tries_left");
    let da_before = da_counter(&swtpm.tcti());

    // Right current PIN, new PIN without an uppercase letter.
    let out = cli
        .tpmvsc_stdin(
            &["change-pin", "p", "--stdin"],
            "Upper-pin-1\nlower-pin-2\nlower-pin-2\n",
        )
        .expect_code(2, "change-pin to a PIN breaking the policy");
    assert!(!out.stderr.is_empty(), "the refusal says why");
    // Wrong current PIN, new PIN too short: still refused for the policy, no try spent.
    cli.tpmvsc_stdin(&["change-pin", "p", "--stdin"], "Wrong-pin-9\nAb1\nAb1\n")
        .expect_code(2, "change-pin, wrong current PIN and a too-short new one");
    // The library itself (no CLI pre-check) checks the policy before the current PIN
    // reaches the TPM: with a wrong current PIN the answer is the policy, not a wrong PIN.
    let e = tpmvsc::provision::change_pin(&store.store(), "p", b"Wrong-pin-9", b"lower-pin-2")
        .expect_err("the library refuses a new PIN breaking the policy");
    assert!(
        matches!(e, tpmvsc::error::Error::PinRule { length: false, .. }),
        "library change_pin: expected a policy violation, got {e:?}"
    );

    assert_eq!(
        info_u64(&cli, "p", "pin_tries_left"),
        tries,
        "a refused new PIN costs no try"
    );
    assert_eq!(
        da_counter(&swtpm.tcti()),
        da_before,
        "the TPM saw no attempt"
    );
    check_pin(&store, &swtpm.tcti(), "p", "Upper-pin-1").expect("the PIN is unchanged");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "p", "lower-pin-2"),
        Err(TpmError::AuthFail)
    );
}

#[test]
fn wrong_pins_block_the_card_and_the_puk_unblocks_it() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    cli.tpmvsc(&[
        "create",
        "--name",
        "b",
        "--puk",
        "default",
        "--pin-tries",
        "3",
    ])
    .ok("create --puk default --pin-tries 3");
    assert_eq!(info_u64(&cli, "b", "pin_tries_left"), 3);

    for (left, code) in [(2, 3), (1, 3), (0, 4)] {
        cli.check_pin("b", "87654321")
            .expect_code(code, "check-pin with a wrong PIN");
        assert_eq!(info_u64(&cli, "b", "pin_tries_left"), left);
    }
    let info = info_json(&cli, "b");
    assert_eq!(info["state"], "blocked", "{info:#}");
    cli.check_pin("b", DEFAULT_PIN)
        .expect_code(4, "check-pin with the right PIN on a blocked card");
    assert_eq!(info_json(&cli, "b")["state"], "blocked");

    // A wrong PUK is counted and sets nothing.
    let puk_full = info_u64(&cli, "b", "puk_tries_left");
    cli.tpmvsc_stdin(
        &["unblock", "b", "--puk", "--stdin"],
        "87654321\nNever-set-1\nNever-set-1\n",
    )
    .expect_code(3, "unblock with a wrong PUK");
    assert_eq!(
        info_u64(&cli, "b", "puk_tries_left"),
        puk_full - 1,
        "the wrong PUK was counted"
    );
    assert_eq!(info_json(&cli, "b")["state"], "blocked");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "b", "Never-set-1"),
        Err(TpmError::AuthFail)
    );

    cli.tpmvsc_stdin(
        &["unblock", "b", "--puk", "--stdin"],
        "12345678\nFresh-pin-7\nFresh-pin-7\n",
    )
    .ok("unblock with the PUK");
    let info = info_json(&cli, "b");
    assert_eq!(info["state"], "ready", "{info:#}");
    assert_eq!(info["pin_tries_left"], 3, "{info:#}");
    assert_eq!(info["puk_tries_left"], puk_full, "{info:#}");
    cli.check_pin("b", "Fresh-pin-7")
        .ok("check-pin with the PIN set by unblock");
    cli.check_pin("b", DEFAULT_PIN)
        .expect_code(3, "check-pin with the PIN from before the unblock");
}

#[test]
fn unblock_with_a_puk_on_a_card_without_one_is_refused() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_card(&cli, "n");
    let out = cli
        .tpmvsc_stdin(
            &["unblock", "n", "--puk", "--stdin"],
            "12345678\nNew-pin-11\nNew-pin-11\n",
        )
        .expect_code(1, "unblock --puk on a card without a PUK");
    assert!(out.stderr.contains("without a PUK"), "{out:#?}");
    check_pin(&store, &swtpm.tcti(), "n", DEFAULT_PIN).expect("the PIN is unchanged");
    assert_eq!(info_u64(&cli, "n", "pin_tries_left"), 5);
}

#[test]
fn a_changed_puk_replaces_the_old_one() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    cli.tpmvsc(&["create", "--name", "k", "--puk", "default"])
        .ok("create --puk default");

    // A wrong current PUK is counted and changes nothing.
    cli.tpmvsc_stdin(
        &["change-puk", "k", "--stdin"],
        "87654321\nNew-puk-55\nNew-puk-55\n",
    )
    .expect_code(3, "change-puk with a wrong current PUK");
    assert_eq!(info_u64(&cli, "k", "puk_tries_left"), 4);

    cli.tpmvsc_stdin(
        &["change-puk", "k", "--stdin"],
        "12345678\nNew-puk-55\nNew-puk-55\n",
    )
    .ok("change-puk");
    assert_eq!(info_u64(&cli, "k", "puk_tries_left"), 5);

    cli.tpmvsc_stdin(
        &["unblock", "k", "--puk", "--stdin"],
        "12345678\nOld-puk-pin\nOld-puk-pin\n",
    )
    .expect_code(3, "unblock with the old PUK");
    check_pin(&store, &swtpm.tcti(), "k", DEFAULT_PIN).expect("the PIN is unchanged");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "k", "Old-puk-pin"),
        Err(TpmError::AuthFail)
    );

    cli.tpmvsc_stdin(
        &["unblock", "k", "--puk", "--stdin"],
        "New-puk-55\nNew-puk-pin\nNew-puk-pin\n",
    )
    .ok("unblock with the new PUK");
    cli.check_pin("k", "New-puk-pin")
        .ok("the PIN set with the new PUK");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "k", DEFAULT_PIN),
        Err(TpmError::AuthFail)
    );
}

#[test]
fn format_with_the_puk_keeps_the_card_id_and_sets_a_new_pin() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    let created = cli
        .tpmvsc(&[
            "create",
            "--name",
            "f",
            "--puk",
            "default",
            "--no-format",
            "--json",
        ])
        .ok("create --no-format")
        .json();
    let card_id = created["card_id"].as_str().expect("card_id").to_string();
    let info = info_json(&cli, "f");
    assert_eq!(info["formatted"], false, "{info:#}");
    assert_eq!(info["state"], "unformatted", "{info:#}");
    let old_private = csk_private_hex(&card_dir(&cli, "f"));

    // A wrong PUK formats nothing.
    cli.tpmvsc_stdin(
        &["format", "f", "--puk", "--stdin", "--yes"],
        "87654321\nFormat-pin-0\nFormat-pin-0\n",
    )
    .expect_code(3, "format with a wrong PUK");
    assert_eq!(info_json(&cli, "f")["formatted"], false);
    check_pin(&store, &swtpm.tcti(), "f", DEFAULT_PIN).expect("PIN unchanged");

    cli.tpmvsc_stdin(
        &["format", "f", "--puk", "--stdin", "--yes"],
        "12345678\nFormat-pin-1\nFormat-pin-1\n",
    )
    .ok("format --puk");
    let info = info_json(&cli, "f");
    assert_eq!(
        info["card_id"],
        card_id.as_str(),
        "format keeps the card ID"
    );
    assert_eq!(info["formatted"], true, "{info:#}");
    assert_eq!(info["state"], "ready", "{info:#}");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "f", DEFAULT_PIN),
        Err(TpmError::AuthFail),
        "the PIN from before the format is gone"
    );
    cli.check_pin("f", "Format-pin-1")
        .ok("check-pin with the PIN set by format");
    assert_blob_gone(&store, &old_private, "after format --puk");

    // The PUK still unblocks the formatted card.
    cli.tpmvsc_stdin(
        &["unblock", "f", "--puk", "--stdin"],
        "12345678\nAfter-fmt-2\nAfter-fmt-2\n",
    )
    .ok("unblock --puk after format");
    check_pin(&store, &swtpm.tcti(), "f", "After-fmt-2").expect("PIN set after format");
}

fn jitter_micros() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    u64::from(u16::from_le_bytes(b)) % 2000
}

/// The TPM's verdict on `pin` for the card, without touching its counters; a store that
/// cannot be read is a failure of the iteration `what`.
fn tpm_accepts(store: &TestStore, tcti: &str, card: &str, pin: &str, what: &str) -> bool {
    match check_pin(store, tcti, card, pin) {
        Ok(()) => true,
        Err(TpmError::AuthFail) => false,
        Err(e) => panic!("{what}: checking {pin:?} failed with {e:?}, not a verdict"),
    }
}

const CRASH_ITERATIONS: u64 = 30;

#[test]
fn a_pin_change_killed_at_any_point_leaves_exactly_one_working_pin() {
    let swtpm = Swtpm::start();
    // Every iteration checks one wrong PIN on purpose: no TPM lockout here.
    swtpm.set_da(1000, 1, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    // A killed change-pin may leave its try spent (spent before the TPM sees the PIN, by
    // design): enough tries that the card never blocks during the test.
    cli.tpmvsc(&["create", "--name", "k", "--pin-tries", "255"])
        .ok("create --pin-tries 255");

    let started = Instant::now();
    cli.tpmvsc_stdin(
        &["change-pin", "k", "--stdin"],
        "12345678\nTiming-pin-0\nTiming-pin-0\n",
    )
    .ok("timing change-pin");
    let full = started.elapsed();
    let mut current = "Timing-pin-0".to_string();
    let span = u64::try_from((full * 5 / 4).as_micros())
        .unwrap_or(200_000)
        .max(5_000);
    eprintln!("one change-pin takes {full:?}; kill delays spread over 0-{span} us");

    let mut changed = 0;
    for i in 0..CRASH_ITERATIONS {
        let delay = Duration::from_micros(i * span / (CRASH_ITERATIONS - 1) + jitter_micros());
        let new = format!("Crash-pin-{i:02}");
        let what = format!("iteration {i} (delay {delay:?})");
        let mut child = cli.spawn_tpmvsc_stdin(
            &["change-pin", "k", "--stdin"],
            &format!("{current}\n{new}\n{new}\n"),
        );
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("reaping the killed change-pin");

        let old_ok = tpm_accepts(&store, &swtpm.tcti(), "k", &current, &what);
        let new_ok = tpm_accepts(&store, &swtpm.tcti(), "k", &new, &what);
        assert!(
            old_ok ^ new_ok,
            "{what}, {status}: old PIN accepted: {old_ok}, new PIN accepted: {new_ok}"
        );
        let cards = list_json(&cli);
        assert_eq!(cards.len(), 1, "{what}: {cards:#?}");
        let state = cards[0]["state"].as_str().unwrap_or("");
        assert!(
            state == "ready",
            "{what}, {status}: card state {state:?}: {:#?}",
            cards[0]
        );
        if new_ok {
            changed += 1;
            current = new;
        }
    }
    eprintln!("{changed} of {CRASH_ITERATIONS} killed PIN changes had taken effect");

    // The card is still fully usable afterwards.
    cli.tpmvsc_stdin(
        &["change-pin", "k", "--stdin"],
        &format!("{current}\nFinal-pin-99\nFinal-pin-99\n"),
    )
    .ok("a last change-pin after the kills");
    cli.check_pin("k", "Final-pin-99").ok("the final PIN");
    assert!(!tpm_accepts(
        &store,
        &swtpm.tcti(),
        "k",
        &current,
        "after the final change"
    ));
}
