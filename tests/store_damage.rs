//! A damaged store file is reported by name, never a panic, and a damaged card can still
//! be destroyed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;

fn setup(name: &str) -> (Swtpm, TestStore, Cli, String, PathBuf) {
    let swtpm = Swtpm::start_with_persistent_srk();
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    let c = create_card(&cli, name);
    let id = c["card_id"].as_str().expect("card_id").to_string();
    let path = PathBuf::from(c["path"].as_str().expect("path"));
    (swtpm, store, cli, id, path)
}

fn no_panic(out: &Output) {
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

#[test]
fn a_truncated_card_file_is_listed_as_damaged_and_can_be_destroyed() {
    let (_swtpm, _store, cli, id, path) = setup("torn");
    let f = path.join("card.json");
    let bytes = std::fs::read(&f).expect("card.json");
    std::fs::write(&f, &bytes[..bytes.len() / 2]).expect("truncating card.json");

    let cards = list_json(&cli);
    assert_eq!(cards.len(), 1);
    let state = cards[0]["state"].as_str().expect("state");
    assert!(
        state.starts_with("damaged") && state.contains("card.json"),
        "{state:?}"
    );
    assert_eq!(cards[0]["card_id"], id.as_str());
    let table = cli.tpmvsc(&["list"]).ok("list (table)");
    assert!(table.stdout.contains("damaged"), "{table:#?}");

    for card_ref in ["torn", id.as_str()] {
        let out = cli.tpmvsc(&["info", card_ref]);
        assert_eq!(out.code, 1, "info {card_ref}: {out:#?}");
        no_panic(&out);
    }
    cli.tpmvsc(&["destroy", &id, "--yes"])
        .ok("destroying the damaged card by ID");
    assert!(list_json(&cli).is_empty());
    assert!(!path.exists());
}

fn garbage_in_names_the_file(file: &str) {
    let (_swtpm, _store, cli, _id, path) = setup("g");
    std::fs::write(path.join(file), b"\x00{not json at all").expect("writing garbage");
    let out = cli.tpmvsc(&["info", "g"]);
    assert_eq!(out.code, 1, "info with garbage in {file}: {out:#?}");
    no_panic(&out);
    assert!(
        out.stderr.contains(file),
        "stderr names {file}: {:?}",
        out.stderr
    );
    let list = cli.tpmvsc(&["list", "--json"]);
    assert_eq!(list.code, 0, "{list:#?}");
    no_panic(&list);
}

#[test]
fn garbage_in_the_counters_file_is_reported_by_name() {
    garbage_in_names_the_file("counters.json");
}

#[test]
fn garbage_in_the_card_storage_key_file_is_reported_by_name() {
    garbage_in_names_the_file("csk.json");
}

#[test]
fn a_missing_card_storage_key_file_is_reported_by_name() {
    let (_swtpm, _store, cli, _id, path) = setup("m");
    std::fs::remove_file(path.join("csk.json")).expect("removing csk.json");
    let out = cli.tpmvsc(&["info", "m"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("csk.json"), "{:?}", out.stderr);
}

#[test]
fn a_card_directory_open_to_others_is_refused_before_the_tpm_sees_a_pin() {
    let (_swtpm, store, _cli, _id, path) = setup("open");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    // verify_pin checks the directory before it connects to any TPM (the in-process TCTI
    // would be the default device, which is never reached).
    let e = tpmvsc::provision::verify_pin(&store.store(), "open", DEFAULT_PIN.as_bytes())
        .expect_err("a 0755 card directory must be refused");
    let m = e.to_string();
    assert!(m.contains("755"), "{m}");
    assert_eq!(e.exit_code(), 1);
}
