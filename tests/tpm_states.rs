//! Fidelity issue, "states shown where people look": during a TPM dictionary-attack
//! lockout `list` and `info` say "TPM lockout (about N min)", and after the TPM was
//! cleared "TPM cleared: recreate" — in the state column and in JSON.

mod common;

use common::*;
use tpmvsc::tpm::Tpm;

#[test]
fn a_tpm_lockout_shows_in_list_and_info() {
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create_card(&cli, "l");
    // Two failures lock the TPM out; one is forgotten every 120 s.
    swtpm.set_da(2, 120, 1);
    for _ in 0..2 {
        cli.check_pin("l", "Wrong-pin-000")
            .expect_code(3, "a wrong PIN");
    }
    let c = &list_json(&cli)[0];
    assert_eq!(c["state"], "TPM lockout (about 2 min)", "{c:#}");
    assert_eq!(c["tpm_lockout_minutes"], 2, "{c:#}");
    let list = cli.tpmvsc(&["list"]).ok("list");
    assert!(
        list.stdout.contains("TPM lockout (about 2 min)"),
        "{list:#?}"
    );
    let info = cli.tpmvsc(&["info", "l"]).ok("info");
    assert!(info.stdout.contains("TPM lockout"), "{info:#?}");
    assert!(info.stdout.contains("clear-lockout"), "{info:#?}");
}

#[test]
fn a_cleared_tpm_shows_in_list_and_info() {
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create_card(&cli, "c");
    assert_eq!(list_json(&cli)[0]["state"], "ready");
    Tpm::open_tcti(&swtpm.tcti())
        .and_then(|mut t| t.clear(&[]))
        .expect("TPM2_Clear with the (empty) lockout authorization");
    let c = &list_json(&cli)[0];
    assert_eq!(c["state"], "TPM cleared: recreate", "{c:#}");
    assert_eq!(c["tpm_cleared"], true, "{c:#}");
    let info = cli.tpmvsc(&["info", "c"]).ok("info");
    assert!(info.stdout.contains("TPM cleared: recreate"), "{info:#?}");
    let out = cli.check_pin("c", DEFAULT_PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("cleared"), "{out:#?}");
}
