//! The PIN check is the TPM's own, and no store file holds a secret in the clear.

mod common;

use common::*;
use tpmvsc::tpm::TpmError;

#[test]
fn wrong_pin_is_counted_by_the_tpm_and_the_right_one_is_not() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_card(&cli, "c");

    let before = da_counter(&swtpm.tcti());
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "c", "87654321"),
        Err(TpmError::AuthFail)
    );
    let after_wrong = da_counter(&swtpm.tcti());
    assert_eq!(after_wrong, before + 1, "the TPM counted the wrong PIN");

    check_pin(&store, &swtpm.tcti(), "c", DEFAULT_PIN).expect("right PIN");
    assert_eq!(
        da_counter(&swtpm.tcti()),
        after_wrong,
        "the right PIN is not counted"
    );
}

#[test]
fn a_pin_read_from_stdin_replaces_the_default() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    cli.tpmvsc_stdin(
        &["create", "--name", "s", "--pin", "prompt", "--stdin"],
        "my-pin-123\n",
    )
    .ok("create --pin prompt --stdin");
    check_pin(&store, &swtpm.tcti(), "s", "my-pin-123").expect("chosen PIN");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "s", DEFAULT_PIN),
        Err(TpmError::AuthFail)
    );
}

#[test]
fn a_pin_read_from_a_file_replaces_the_default() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    let f = store.scratch("pin.txt");
    std::fs::write(&f, "file-pin-42\r\nsecond line\n").expect("writing the PIN file");
    cli.tpmvsc(&[
        "create",
        "--name",
        "f",
        "--pin-file",
        f.to_str().expect("utf-8 path"),
    ])
    .ok("create --pin-file");
    check_pin(&store, &swtpm.tcti(), "f", "file-pin-42").expect("PIN from the file's first line");
    assert_eq!(
        check_pin(&store, &swtpm.tcti(), "f", DEFAULT_PIN),
        Err(TpmError::AuthFail)
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_store_file_holds_a_secret_in_the_clear() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    let pin = "Pin-Secret-7431";
    let puk = "Puk-Secret-9917";
    let admin_hex = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
    cli.tpmvsc_stdin(
        &[
            "create",
            "--name",
            "secret",
            "--pin",
            "prompt",
            "--puk",
            "prompt",
            "--admin-key",
            "prompt",
            "--stdin",
        ],
        &format!("{pin}\n{puk}\n{admin_hex}\n"),
    )
    .ok("create with prompted PIN, PUK and admin key");
    check_pin(&store, &swtpm.tcti(), "secret", pin).expect("the prompted PIN works");

    let info = info_json(&cli, "secret");
    assert_eq!(info["has_puk"], true);
    assert_eq!(info["admin"], "managed");
    let card_dir = std::path::PathBuf::from(info["path"].as_str().expect("path"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(card_dir.join("card.json")).expect("card.json"))
            .expect("card.json is JSON");
    let salt = |k: &str| {
        hex::decode(
            record[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} in card.json")),
        )
        .expect("hex salt")
    };
    let pin_auth = tpmvsc::card::pin_auth(&salt("pin_salt"), pin.as_bytes());
    let puk_auth = tpmvsc::card::pin_auth(&salt("puk_salt"), puk.as_bytes());
    let admin_raw = hex::decode(admin_hex).expect("admin hex");

    let forbidden: Vec<(&str, Vec<u8>)> = vec![
        ("PIN", pin.as_bytes().to_vec()),
        ("PUK", puk.as_bytes().to_vec()),
        ("admin key hex", admin_hex.as_bytes().to_vec()),
        ("admin key HEX", admin_hex.to_uppercase().into_bytes()),
        ("admin key bytes", admin_raw),
        ("PIN auth bytes", pin_auth.to_vec()),
        ("PIN auth hex", hex::encode(&*pin_auth).into_bytes()),
        ("PUK auth bytes", puk_auth.to_vec()),
        ("PUK auth hex", hex::encode(&*puk_auth).into_bytes()),
    ];
    let files: Vec<_> = files_under(&store.path())
        .into_iter()
        .filter(|p| !p.starts_with(store.path().join("simulator")))
        .collect();
    assert!(files.len() >= 4, "card files found: {files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("reading {f:?}: {e}"));
        for (what, needle) in &forbidden {
            assert!(!contains(&bytes, needle), "{f:?} contains the {what}");
        }
    }
}
