//! Fidelity issue, admin key: recovery must never die. The last administrator challenge
//! is kept for `admin refill` and `admin change-key`: verify, unblock and format refuse to
//! spend it, and a typo'd response to it leaves it in place. Every ticket is spent every
//! way there is, and refill with the right key always works while the admin key is not
//! blocked; a blocked admin key shows in `list` and `info`.

mod common;

use common::*;
use tpmvsc::provision::admin::AdminKey;

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";

fn response(challenge: &str) -> String {
    let c: [u8; 8] = hex::decode(challenge)
        .expect("hex")
        .try_into()
        .expect("8 bytes");
    hex::encode(AdminKey::parse_hex(KEY).expect("key").response(&c))
}

fn managed(cli: &Cli, name: &str) {
    cli.tpmvsc_stdin(
        &["create", "--name", name, "--admin-key", "prompt", "--stdin"],
        &format!("{KEY}\n"),
    )
    .ok("create a managed card");
}

/// A wrong response to the next challenge (one bit off).
fn wrong(challenge: &str) -> String {
    let mut r = hex::decode(response(challenge)).expect("hex");
    r[0] ^= 1;
    hex::encode(r)
}

#[test]
fn the_reserve_challenge_is_never_spent_by_verify_unblock_or_format() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 1, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    managed(&cli, "m");
    // Spend all but the reserve: verify, unblock and format take turns.
    let mut round = 0;
    loop {
        let (c, left) = admin_challenge(&cli, "m");
        if left == 1 {
            break;
        }
        let r = response(&c);
        match round % 3 {
            0 => cli.tpmvsc_stdin(&["admin", "verify", "m", "--stdin"], &format!("{r}\n")),
            1 => cli.tpmvsc_stdin(
                &["unblock", "m", "--admin", "--stdin"],
                &format!("{r}\n12345678\n12345678\n"),
            ),
            _ => cli.tpmvsc_stdin(
                &["format", "m", "--admin", "--stdin", "--yes"],
                &format!("{r}\n12345678\n12345678\n"),
            ),
        }
        .ok("a right response");
        round += 1;
    }
    assert_eq!(round, 31, "31 of the 32 challenges were usable");
    let (c, _) = admin_challenge(&cli, "m");
    let r = response(&c);
    for (args, input) in [
        (vec!["admin", "verify", "m", "--stdin"], format!("{r}\n")),
        (
            vec!["unblock", "m", "--admin", "--stdin"],
            format!("{r}\n12345678\n12345678\n"),
        ),
        (
            vec!["format", "m", "--admin", "--stdin", "--yes"],
            format!("{r}\n12345678\n12345678\n"),
        ),
    ] {
        let out = cli.tpmvsc_stdin(&args, &input);
        assert_eq!(out.code, 1, "{args:?} on the reserve: {out:#?}");
        assert!(out.stderr.contains("reserve"), "{out:#?}");
        assert_eq!(
            admin_challenge(&cli, "m"),
            (c.clone(), 1),
            "the reserve is still there"
        );
    }
    // A typo'd response during refill leaves the reserve in place (and counts).
    let tries = info_u64(&cli, "m", "admin_tries_left");
    let out = cli.tpmvsc_stdin(
        &["admin", "change-key", "m", "--stdin"],
        &format!("{}\n{KEY}\n{KEY}\n", wrong(&c)),
    );
    assert_eq!(out.code, 3, "{out:#?}");
    assert_eq!(
        admin_challenge(&cli, "m"),
        (c.clone(), 1),
        "the reserve survived the typo"
    );
    assert_eq!(info_u64(&cli, "m", "admin_tries_left"), tries - 1);
    // Refill with the right key always works.
    cli.tpmvsc_stdin(
        &["admin", "refill", "m", "--stdin"],
        &format!("{r}\n{KEY}\n"),
    )
    .ok("admin refill on the reserve");
    assert_eq!(admin_challenge(&cli, "m").1, 32, "a full batch again");
    let human = cli.tpmvsc(&["info", "m"]).ok("info");
    assert!(!human.stdout.contains("refill"), "{human:#?}");
}

#[test]
fn a_blocked_admin_key_shows_where_people_look() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 1, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    managed(&cli, "b");
    for i in 1..=5 {
        let (c, _) = admin_challenge(&cli, "b");
        let code = if i < 5 { 3 } else { 4 };
        cli.tpmvsc_stdin(
            &["admin", "verify", "b", "--stdin"],
            &format!("{}\n", wrong(&c)),
        )
        .expect_code(code, "a wrong response (the fifth blocks)");
    }
    assert_eq!(info_json(&cli, "b")["admin_blocked"], true);
    let info = cli.tpmvsc(&["info", "b"]).ok("info");
    assert!(
        info.stdout.contains("BLOCKED") && info.stdout.contains("for good"),
        "{info:#?}"
    );
    let list = cli.tpmvsc(&["list"]).ok("list");
    assert!(list.stdout.contains("BLOCKED"), "{list:#?}");
    let (c, _) = admin_challenge(&cli, "b");
    let out = cli.tpmvsc_stdin(
        &["admin", "refill", "b", "--stdin"],
        &format!("{}\n{KEY}\n", response(&c)),
    );
    assert_eq!(
        out.code, 4,
        "refill once the admin key is blocked: {out:#?}"
    );
}

#[test]
fn info_suggests_a_refill_when_few_challenges_are_left() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    managed(&cli, "f");
    let info = cli.tpmvsc(&["info", "f"]).ok("info");
    assert!(!info.stdout.contains("refill"), "{info:#?}");
    while admin_challenge(&cli, "f").1 > 5 {
        let (c, _) = admin_challenge(&cli, "f");
        cli.tpmvsc_stdin(
            &["admin", "verify", "f", "--stdin"],
            &format!("{}\n", response(&c)),
        )
        .ok("verify");
    }
    let info = cli.tpmvsc(&["info", "f"]).ok("info");
    assert!(info.stdout.contains("admin refill f"), "{info:#?}");
}

/// A response the TPM never judged keeps its challenge: during a TPM lockout verify and
/// unblock fail (exit 4) and the next challenge is still the same one; refill and
/// change-key on the reserve fail too and the reserve stays. Once the lockout is cleared,
/// the same responses work and refill restores a full batch.
#[test]
fn a_tpm_lockout_spends_no_challenge_and_the_reserve_survives_it() {
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    managed(&cli, "m");
    create_card(&cli, "other");
    let lock_out = || {
        swtpm.set_da(1, 1000, 1);
        cli.check_pin("other", "Wrong-pin-000")
            .expect_code(3, "a wrong PIN on another card");
        assert_eq!(
            tpm_status(&cli)["in_lockout"],
            true,
            "the TPM is locked out"
        );
    };
    let clear = || {
        cli.tpmvsc_stdin(&["tpm", "clear-lockout"], "\n")
            .ok("clear-lockout (empty lockout auth)");
        swtpm.set_da(1000, 1, 1);
    };
    lock_out();
    let (c, left) = admin_challenge(&cli, "m");
    let r = response(&c);
    for (args, input) in [
        (vec!["admin", "verify", "m", "--stdin"], format!("{r}\n")),
        (
            vec!["unblock", "m", "--admin", "--stdin"],
            format!("{r}\nNew-pin-1234\nNew-pin-1234\n"),
        ),
    ] {
        let out = cli.tpmvsc_stdin(&args, &input);
        assert_eq!(out.code, 4, "{args:?} during a lockout: {out:#?}");
        assert_eq!(
            admin_challenge(&cli, "m"),
            (c.clone(), left),
            "{args:?}: the challenge is given back"
        );
    }
    clear();
    cli.tpmvsc_stdin(&["admin", "verify", "m", "--stdin"], &format!("{r}\n"))
        .ok("the same response once the lockout is cleared");

    // Down to the reserve, then a lockout during refill and change-key.
    loop {
        let (c, left) = admin_challenge(&cli, "m");
        if left == 1 {
            break;
        }
        cli.tpmvsc_stdin(
            &["admin", "verify", "m", "--stdin"],
            &format!("{}\n", response(&c)),
        )
        .ok("verify");
    }
    let (reserve, _) = admin_challenge(&cli, "m");
    let r = response(&reserve);
    lock_out();
    for (args, input) in [
        (
            vec!["admin", "refill", "m", "--stdin"],
            format!("{r}\n{KEY}\n"),
        ),
        (
            vec!["admin", "change-key", "m", "--stdin"],
            format!("{r}\n{KEY}\n{KEY}\n"),
        ),
    ] {
        let out = cli.tpmvsc_stdin(&args, &input);
        assert_eq!(out.code, 4, "{args:?} during a lockout: {out:#?}");
        assert_eq!(
            admin_challenge(&cli, "m"),
            (reserve.clone(), 1),
            "{args:?}: the reserve stays"
        );
    }
    clear();
    cli.tpmvsc_stdin(
        &["admin", "refill", "m", "--stdin"],
        &format!("{r}\n{KEY}\n"),
    )
    .ok("refill on the reserve after the lockout");
    assert_eq!(admin_challenge(&cli, "m").1, 32, "a full batch again");
}
