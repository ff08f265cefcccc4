//! Create, list, inspect and destroy cards through the `tpmvsc` CLI on a real swtpm.

mod common;

use common::*;

fn card_is_created_listed_inspected_and_destroyed(swtpm: Swtpm) {
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());

    let created = create_card(&cli, "work");
    assert_eq!(created["name"], "work");
    let card_id = created["card_id"].as_str().expect("card_id").to_string();

    let cards = list_json(&cli);
    assert_eq!(cards.len(), 1, "{cards:#?}");
    let c = &cards[0];
    assert_eq!(c["name"], "work");
    assert_eq!(c["card_id"], card_id.as_str());
    assert_eq!(c["instance_id"], "ROOT\\SMARTCARDREADER\\0000");
    assert_eq!(c["simulated"], true);
    assert_eq!(c["formatted"], true);
    assert_eq!(c["state"], "ready");

    let info = info_json(&cli, "work");
    assert_eq!(info["card_id"], card_id.as_str());
    let path = std::path::PathBuf::from(info["path"].as_str().expect("path"));
    assert!(path.is_dir(), "card directory {path:?} exists");

    // Found by card ID and by instance ID, case-insensitively.
    assert_eq!(info_json(&cli, &card_id.to_uppercase())["name"], "work");
    assert_eq!(
        info_json(&cli, "root\\smartcardreader\\0000")["name"],
        "work"
    );

    // The card survives a reboot of the TPM: the default PIN still passes the TPM's check.
    check_pin(&store, &swtpm.tcti(), "work", DEFAULT_PIN).expect("default PIN before restart");
    let mut swtpm = swtpm;
    swtpm.restart();
    check_pin(&store, &swtpm.tcti(), "work", DEFAULT_PIN).expect("default PIN after restart");

    let cli = Cli::new(&store, &swtpm.tcti());
    cli.tpmvsc(&["destroy", "work", "--yes"])
        .ok("destroy --yes");
    assert!(list_json(&cli).is_empty());
    assert!(!path.exists(), "card directory {path:?} is gone from disk");
}

#[test]
fn card_lifecycle_works_with_a_transient_srk() {
    card_is_created_listed_inspected_and_destroyed(Swtpm::start());
}

#[test]
fn card_lifecycle_works_with_a_persistent_srk() {
    card_is_created_listed_inspected_and_destroyed(Swtpm::start_with_persistent_srk());
}

#[test]
fn no_format_leaves_the_card_unformatted() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    let out = cli
        .tpmvsc(&["create", "--name", "blank", "--no-format", "--json"])
        .ok("create --no-format");
    assert_eq!(out.json()["formatted"], false);
    let info = info_json(&cli, "blank");
    assert_eq!(info["formatted"], false);
    assert_eq!(info["state"], "unformatted");
}

#[test]
fn the_eleventh_card_is_refused() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::on(Swtpm::start_with_persistent_srk());
    for i in 0..10 {
        let c = create_card(&cli, &format!("card{i}"));
        assert_eq!(c["instance_id"], format!("ROOT\\SMARTCARDREADER\\{i:04}"));
    }
    let out = cli
        .tpmvsc(&["create", "--name", "card10"])
        .expect_code(1, "11th card");
    assert!(
        out.stderr.contains("10"),
        "message names the limit: {:?}",
        out.stderr
    );
    assert_eq!(list_json(&cli).len(), 10);
}

#[test]
fn names_may_repeat_and_instance_ids_count_up_without_reuse() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create_card(&cli, "same");
    create_card(&cli, "same");
    let ids: Vec<String> = list_json(&cli)
        .iter()
        .map(|c| c["instance_id"].as_str().expect("instance_id").to_string())
        .collect();
    assert_eq!(
        ids,
        ["ROOT\\SMARTCARDREADER\\0000", "ROOT\\SMARTCARDREADER\\0001"]
    );
    // The repeated name is refused as a reference; an instance ID names one card.
    let out = cli.tpmvsc(&["info", "same"]);
    assert_eq!(out.code, 1, "{out:#?}");
    cli.tpmvsc(&["destroy", "ROOT\\SMARTCARDREADER\\0001", "--yes"])
        .ok("destroy the second");
    // Numbers count up as on Windows: the destroyed card's number is not handed out again.
    let c = create_card(&cli, "third");
    assert_eq!(c["instance_id"], "ROOT\\SMARTCARDREADER\\0002", "{c:#}");
}

#[test]
fn a_name_of_33_bytes_is_refused_as_usage() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    let name = "n".repeat(33);
    let out = cli
        .tpmvsc(&["create", "--name", &name])
        .expect_code(2, "33-byte name");
    assert!(out.stderr.contains("32"), "{:?}", out.stderr);
    assert!(list_json(&cli).is_empty());
    // 32 bytes is fine.
    create_card(&cli, &"n".repeat(32));
}

#[test]
fn destroy_without_yes_and_without_a_terminal_keeps_the_card() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_card(&cli, "keep");
    let out = cli
        .tpmvsc(&["destroy", "keep"])
        .expect_code(2, "destroy without --yes");
    assert!(out.stderr.contains("--yes"), "{:?}", out.stderr);
    assert_eq!(list_json(&cli).len(), 1);
    check_pin(&store, &swtpm.tcti(), "keep", DEFAULT_PIN).expect("card still usable");
}
