//! The TPM's dictionary-attack logic (DESIGN.md §2): wrong PINs are counted by the TPM,
//! a TPM lockout is reported as its own state (not a wrong PIN, no card try spent), and
//! `tpmvsc tpm clear-lockout` with the lockout authorization ends it.

mod common;

use common::*;

fn counter(status: &serde_json::Value) -> u64 {
    status["counter"]
        .as_u64()
        .expect("counter in tpm status --json")
}

#[test]
fn tpm_status_reports_the_dictionary_attack_state() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 600, 7);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    let s = tpm_status(&cli);
    for key in [
        "counter",
        "max_tries",
        "recovery_time",
        "lockout_recovery",
        "in_lockout",
        "lockout_auth_set",
        "manufacturer",
        "vendor",
        "firmware",
        "simulated",
        "tcti",
    ] {
        assert!(s.get(key).is_some(), "{key} missing in {s:#}");
    }
    assert_eq!(s["max_tries"], 1000, "{s:#}");
    assert_eq!(s["recovery_time"], 600, "{s:#}");
    assert_eq!(s["lockout_recovery"], 7, "{s:#}");
    assert_eq!(s["in_lockout"], false, "{s:#}");
    assert_eq!(s["lockout_auth_set"], false, "{s:#}");
    assert_eq!(s["simulated"], true, "{s:#}");
    assert_eq!(s["tcti"], swtpm.tcti().as_str(), "{s:#}");
    assert_eq!(counter(&s), u64::from(da_counter(&swtpm.tcti())));
}

#[test]
fn each_wrong_pin_raises_the_tpm_counter_by_one() {
    let swtpm = Swtpm::start();
    // A long recovery time: no failure is forgotten while the test counts.
    swtpm.set_da(1000, 600, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    create_card(&cli, "c");
    let start = counter(&tpm_status(&cli));
    for i in 1..=3 {
        cli.check_pin("c", "87654321")
            .expect_code(3, "check-pin with a wrong PIN");
        assert_eq!(
            counter(&tpm_status(&cli)),
            start + i,
            "wrong PIN {i} counted by the TPM"
        );
    }
    cli.check_pin("c", DEFAULT_PIN)
        .ok("check-pin with the right PIN");
    assert_eq!(
        counter(&tpm_status(&cli)),
        start + 3,
        "the right PIN is not a failure"
    );
    // A wrong current PIN in change-pin is a TPM failure too.
    cli.tpmvsc_stdin(
        &["change-pin", "c", "--stdin"],
        "87654321\nNew-pin-12\nNew-pin-12\n",
    )
    .expect_code(3, "change-pin with a wrong current PIN");
    assert_eq!(counter(&tpm_status(&cli)), start + 4);
}

#[test]
fn a_tpm_lockout_is_its_own_state_and_clear_lockout_ends_it() {
    let swtpm = Swtpm::start();
    swtpm.set_da(3, 600, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    // More card tries than TPM tries, so the TPM locks out before the card blocks.
    cli.tpmvsc(&[
        "create",
        "--name",
        "l",
        "--puk",
        "default",
        "--pin-tries",
        "10",
    ])
    .ok("create --pin-tries 10");
    assert_eq!(tpm_status(&cli)["in_lockout"], false);

    for _ in 0..3 {
        cli.check_pin("l", "87654321")
            .expect_code(3, "check-pin with a wrong PIN");
    }
    let s = tpm_status(&cli);
    assert_eq!(
        s["in_lockout"], true,
        "three failures with max_tries 3: {s:#}"
    );
    let tries = info_u64(&cli, "l", "pin_tries_left");
    assert_eq!(tries, 7);

    // The right PIN during the lockout: refused as a lockout, and no card try spent.
    let out = cli
        .check_pin("l", DEFAULT_PIN)
        .expect_code(4, "check-pin with the right PIN during a TPM lockout");
    let err = out.stderr.to_lowercase();
    assert!(err.contains("lockout"), "{out:#?}");
    assert!(
        err.contains("unblocking the pin does not clear it"),
        "{out:#?}"
    );
    assert_eq!(
        info_u64(&cli, "l", "pin_tries_left"),
        tries,
        "a lockout is not a wrong PIN"
    );
    // A wrong PIN during the lockout costs no card try either.
    cli.check_pin("l", "87654321")
        .expect_code(4, "check-pin with a wrong PIN during a TPM lockout");
    assert_eq!(info_u64(&cli, "l", "pin_tries_left"), tries);
    // Nor does the PUK get through, or spend a try: unblocking does not clear a lockout.
    let puk_tries = info_u64(&cli, "l", "puk_tries_left");
    cli.tpmvsc_stdin(
        &["unblock", "l", "--puk", "--stdin"],
        "12345678\nLocked-pin-1\nLocked-pin-1\n",
    )
    .expect_code(4, "unblock --puk during a TPM lockout");
    assert_eq!(info_u64(&cli, "l", "puk_tries_left"), puk_tries);
    assert_eq!(tpm_status(&cli)["in_lockout"], true);

    let empty = store.scratch("lockout-auth");
    std::fs::write(&empty, "").expect("writing an empty lockout auth file");
    cli.tpmvsc(&[
        "tpm",
        "clear-lockout",
        "--lockout-auth-file",
        empty.to_str().expect("utf-8 path"),
    ])
    .ok("tpm clear-lockout with the (empty) lockout auth");
    let s = tpm_status(&cli);
    assert_eq!(s["in_lockout"], false, "{s:#}");
    assert_eq!(counter(&s), 0, "{s:#}");

    cli.check_pin("l", DEFAULT_PIN)
        .ok("check-pin with the right PIN after clear-lockout");
    assert_eq!(info_u64(&cli, "l", "pin_tries_left"), 10);
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "l", "Locked-pin-1"),
        Err(tpmvsc::tpm::TpmError::AuthFail),
        "the unblock during the lockout set no PIN"
    );
}

#[test]
fn clear_lockout_with_a_wrong_lockout_auth_is_refused() {
    let swtpm = Swtpm::start();
    swtpm.set_da(3, 600, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    create_card(&cli, "w");
    for _ in 0..3 {
        cli.check_pin("w", "87654321");
    }
    assert_eq!(tpm_status(&cli)["in_lockout"], true);
    let wrong = store.scratch("wrong-auth");
    std::fs::write(&wrong, "not-the-lockout-auth\n").expect("writing the auth file");
    let out = cli.tpmvsc(&[
        "tpm",
        "clear-lockout",
        "--lockout-auth-file",
        wrong.to_str().expect("utf-8 path"),
    ]);
    assert_ne!(out.code, 0, "a wrong lockout auth clears nothing: {out:#?}");
    assert_eq!(tpm_status(&cli)["in_lockout"], true);
}
