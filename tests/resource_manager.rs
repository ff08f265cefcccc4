//! Cards through tpm2-abrmd (the tabrmd TCTI): no lock file, no stale-object flush, the
//! resource manager isolates processes. The tabrmd TCTI finds the session bus through
//! DBUS_SESSION_BUS_ADDRESS only, so the PIN checks run in `tpmvsc check-pin` with that
//! variable in its environment.

mod common;

use common::*;

#[test]
fn a_card_is_created_and_its_pin_checked_through_tpm2_abrmd() {
    if !require_tool("tpm2-abrmd") || !require_tool("dbus-daemon") || !require_tool("dbus-send") {
        return;
    }
    let swtpm = Swtpm::start();
    let abrmd = Abrmd::start(&swtpm);
    let store = TestStore::new();
    let (k, v) = abrmd.env();
    let cli = Cli::new(&store, &abrmd.tcti()).with_env(&k, &v);

    let c = create_card(&cli, "rm");
    assert_eq!(c["name"], "rm");
    let c2 = create_card(&cli, "rm2");
    assert_eq!(list_json(&cli).len(), 2);

    cli.check_pin("rm", DEFAULT_PIN)
        .ok("the right PIN through the resource manager");
    let wrong = cli
        .check_pin("rm", "wrong-pin")
        .expect_code(3, "a wrong PIN, counted");
    assert!(wrong.stderr.contains("wrong PIN"), "{wrong:?}");
    cli.check_pin("rm2", DEFAULT_PIN)
        .ok("the second card's PIN");

    cli.tpmvsc(&["destroy", c2["card_id"].as_str().expect("id"), "--yes"])
        .ok("destroy");
    assert_eq!(list_json(&cli).len(), 1);
    drop(abrmd);
}
