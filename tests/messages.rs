//! What people read (fidelity issue, "States shown where people look"): counts in good
//! English, columns that line up, errors that point at the right front end, and names
//! shown as they were typed — one backslash, not two.

mod common;

use common::*;

#[test]
fn counts_read_as_english() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 1, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    cli.tpmvsc(&["create", "--name", "two", "--pin-tries", "2"])
        .ok("a card with two PIN tries");
    let out = cli.check_pin("two", "Wrong-pin-1");
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(
        out.stderr.contains("1 try left") && !out.stderr.contains("1 tries"),
        "{out:#?}"
    );
    cli.check_pin("two", DEFAULT_PIN)
        .ok("the right PIN resets it");

    // A card down to its last challenge (its file cut to one ticket).
    let key = store.scratch("admin-key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef0123456789abcdef\n").expect("key file");
    cli.tpmvsc(&[
        "create",
        "--name",
        "m",
        "--admin-key-file",
        key.to_str().expect("utf-8"),
    ])
    .ok("a managed card");
    let admin = card_dir(&cli, "m").join("admin.json");
    let mut v = read_json(&admin);
    let tickets = v["tickets"].as_array_mut().expect("tickets");
    tickets.truncate(1);
    std::fs::write(&admin, serde_json::to_vec(&v).expect("JSON")).expect("rewriting");
    let out = cli
        .tpmvsc(&["admin", "challenge", "m"])
        .ok("admin challenge");
    assert!(out.stderr.contains("(1 challenge left)"), "{out:#?}");
    let info = cli.tpmvsc(&["info", "m"]).ok("info");
    assert!(
        info.stdout.contains("1 challenge left") && !info.stdout.contains("1 challenges"),
        "{info:#?}"
    );
}

#[test]
fn list_columns_line_up_for_long_names() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    for name in ["a", "a-name-of-thirty-two-characters!"] {
        cli.tpmvsc(&["create", "--name", name]).ok("create");
    }
    let out = cli.tpmvsc(&["list"]).ok("list");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("SLOT") || l.starts_with(char::is_numeric))
        .collect();
    assert_eq!(lines.len(), 3, "{out:#?}");
    // Every card ID and instance ID starts in the column of its header.
    let ids: Vec<(String, String)> = list_json(&cli)
        .iter()
        .map(|c| {
            (
                c["card_id"].as_str().expect("card_id").to_string(),
                c["instance_id"].as_str().expect("instance_id").to_string(),
            )
        })
        .collect();
    let id_col = lines[0].find("CARD ID").expect("CARD ID header");
    let inst_col = lines[0].find("INSTANCE ID").expect("INSTANCE ID header");
    for (l, (id, inst)) in lines[1..].iter().zip(&ids) {
        assert_eq!(l.find(id.as_str()), Some(id_col), "{l:?} in {out:#?}");
        assert_eq!(l.find(inst.as_str()), Some(inst_col), "{l:?} in {out:#?}");
    }
}

#[test]
fn the_eleventh_card_from_tpmvscmgr_points_at_tpmvscmgr_destroy() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    for i in 0..10 {
        cli.tpmvscmgr(&["create", "/name", &format!("c{i}"), "/AdminKey", "RANDOM"])
            .ok("one of ten cards");
    }
    let out = cli.tpmvscmgr(&["create", "/name", "c10", "/AdminKey", "RANDOM"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("10 cards") && out.stderr.contains("tpmvscmgr destroy /instance"),
        "{out:#?}"
    );
}

#[test]
fn names_and_keys_are_shown_as_typed() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    let out = cli
        .tpmvsc(&["create", "--name", "corp\\vsc"])
        .ok("a name with a backslash");
    assert!(
        out.stdout.contains("\"corp\\vsc\"") && !out.stdout.contains("\\\\"),
        "one backslash: {out:#?}"
    );
    let out = cli.tpmvscmgr(&["create", "/name", "x", "/AdminKey", "RANDOM", "x\\y"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(
        out.stderr.contains("\"x\\y\"") && !out.stderr.contains("\\\\"),
        "{out:#?}"
    );
    // A non-hex admin key says what is wrong with it, not only its length.
    let out = cli.tpmvsc_stdin(
        &[
            "admin",
            "response",
            "--challenge",
            "0000000000000000",
            "--stdin",
        ],
        &format!("{}\n", "g".repeat(48)),
    );
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("other characters"), "{out:#?}");
    assert!(!out.stderr.contains("got 48"), "{out:#?}");
}
