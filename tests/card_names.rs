//! Reliability issue, item 4 and item 10 (messages): a card is never acted on by a name
//! that could mean another card. Names that would show like another name or like an ID
//! are refused at creation; lookups are exact; a reference that could mean two cards is
//! refused with both; a damaged record is named by its file.

mod common;

use common::*;

#[test]
fn names_that_could_be_mistaken_are_refused_at_create() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    for bad in [
        "r ",
        " r",
        "a/b",
        "ROOT\\SMARTCARDREADER\\0000",
        "rootsmartcardreader0001",
        "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "ab\u{202E}cd",
        "6f9619ff8b86d011b42d00c04fc964ff",
        "r\u{200B}",
        "r\u{2060}x",
        "r\u{00AD}",
        "r\u{FE0F}",
        "a\u{00A0}b",
        "r\u{3000}",
    ] {
        let out = cli.tpmvsc(&["create", "--name", bad]);
        assert_eq!(out.code, 2, "create --name {bad:?}: {out:#?}");
        assert!(out.stderr.contains("card name"), "{out:#?}");
    }
    assert!(list_json(&cli).is_empty(), "no card was made");
}

#[test]
fn lookups_are_exact_and_never_reach_another_card() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create_card(&cli, "r");
    create_card(&cli, "other");
    // A trailing space is not the same name: nothing is destroyed.
    let out = cli.tpmvsc(&["destroy", "r ", "--yes"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(list_json(&cli).len(), 2, "both cards are still there");
    // The instance ID in any case, and the card ID in any case, name the card.
    let id = info_json(&cli, "r")["card_id"]
        .as_str()
        .expect("card_id")
        .to_string();
    cli.tpmvsc(&["info", "root\\smartcardreader\\0000"])
        .ok("instance ID in lower case");
    cli.tpmvsc(&["info", &id.to_uppercase()])
        .ok("card ID in upper case");
    // An instance ID whose backslashes the shell ate is recognised and explained.
    let out = cli.tpmvsc(&["destroy", "ROOTSMARTCARDREADER0000", "--yes"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("quote"), "{out:#?}");
    assert_eq!(list_json(&cli).len(), 2);
}

#[test]
fn a_reference_that_could_mean_two_cards_is_refused_with_both() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create_card(&cli, "twin");
    create_card(&cli, "spare");
    // A second card called "twin" (as a restored copy or another front end would make):
    // card "spare" renamed in its record.
    let dir = card_dir(&cli, "spare");
    let mut record = read_json(&dir.join("card.json"));
    record["name"] = serde_json::Value::String("twin".into());
    std::fs::write(
        dir.join("card.json"),
        serde_json::to_vec_pretty(&record).expect("JSON"),
    )
    .expect("rewriting card.json");
    for args in [
        vec!["info", "twin"],
        vec!["destroy", "twin", "--yes"],
        vec!["check-pin", "twin", "--stdin"],
    ] {
        let out = cli.tpmvsc_stdin(&args, "12345678\n");
        assert_eq!(out.code, 1, "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains("more than one card")
                && out.stderr.contains("ROOT\\SMARTCARDREADER\\0000")
                && out.stderr.contains("ROOT\\SMARTCARDREADER\\0001"),
            "{args:?}: {out:#?}"
        );
    }
    assert_eq!(list_json(&cli).len(), 2, "nothing destroyed");
    cli.tpmvsc(&["destroy", "ROOT\\SMARTCARDREADER\\0001", "--yes"])
        .ok("the instance ID names one of them");
}

#[test]
fn a_damaged_record_is_named_by_its_file() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create_card(&cli, "r");
    let dir = card_dir(&cli, "r");
    std::fs::write(dir.join("card.json"), b"{ not json").expect("damaging card.json");
    let out = cli.tpmvsc(&["info", "r"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains(&dir.join("card.json").display().to_string()),
        "the damaged file is named: {out:#?}"
    );
}

#[test]
fn an_altered_key_file_is_named() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create_card(&cli, "r");
    let dir = card_dir(&cli, "r");
    let path = dir.join("csk.json");
    let mut csk = read_json(&path);
    let private = csk["blob"]["private"].as_str().expect("hex").to_string();
    // Flip a byte in the middle of the private blob: the TPM's integrity check fails.
    let mut bytes = hex::decode(&private).expect("hex");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    csk["blob"]["private"] = serde_json::Value::String(hex::encode(bytes));
    std::fs::write(&path, serde_json::to_vec_pretty(&csk).expect("JSON")).expect("altering");
    let out = cli.check_pin("r", DEFAULT_PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(&dir.display().to_string()) && out.stderr.contains("csk.json"),
        "the card's directory and the file are named: {out:#?}"
    );
    assert_eq!(info_u64(&cli, "r", "pin_tries_left"), 5, "no try spent");
}
