//! Cards through tpm2-abrmd (the tabrmd TCTI): no lock file, no stale-object flush, the
//! resource manager isolates processes. The tabrmd TCTI finds the session bus through
//! DBUS_SESSION_BUS_ADDRESS only, so in-process PIN checks run in a child copy of this
//! test binary (the helper test below) with that variable in its environment.

mod common;

use std::process::Command;

use common::*;
use tpmvsc::tpm::TpmError;

const HELPER_ENV: &str = "TPMVSC_TEST_PIN_HELPER";

/// Not a test of its own: run by [`check_pin_in_child`] with its parameters in the
/// environment; does nothing otherwise.
#[test]
fn pin_check_helper_for_the_resource_manager_tests() {
    let Ok(params) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut it = params.split('\u{1f}');
    let (store, tcti, card, pin) = (
        it.next().expect("store"),
        it.next().expect("tcti"),
        it.next().expect("card"),
        it.next().expect("pin"),
    );
    let s = tpmvsc::store::Store::at(store);
    let (dir, record) = tpmvsc::provision::find(&s, card).expect("card");
    let keys = tpmvsc::provision::pin::read_keys(&dir, &record).expect("the card's keys");
    let auth = tpmvsc::card::pin_auth(&record.pin_salt, pin.as_bytes());
    let result = tpmvsc::tpm::Tpm::open_tcti(tcti).and_then(|mut t| {
        t.use_srk(&record.srk)?;
        t.check_pin(keys.csk_ref(), &auth)
    });
    println!("PIN-CHECK-RESULT={result:?}");
}

fn check_pin_in_child(abrmd: &Abrmd, store: &TestStore, card: &str, pin: &str) -> String {
    let (k, v) = abrmd.env();
    let params = [
        store.path().to_str().expect("utf-8"),
        &abrmd.tcti(),
        card,
        pin,
    ]
    .join("\u{1f}");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "pin_check_helper_for_the_resource_manager_tests",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, params)
        .env(k, v)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("running the PIN check helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split("PIN-CHECK-RESULT=").nth(1))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .to_string()
}

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

    assert_eq!(
        check_pin_in_child(&abrmd, &store, "rm", DEFAULT_PIN),
        "Ok(())"
    );
    assert_eq!(
        check_pin_in_child(&abrmd, &store, "rm", "wrong-pin"),
        format!("{:?}", Err::<(), _>(TpmError::AuthFail))
    );
    assert_eq!(
        check_pin_in_child(&abrmd, &store, "rm2", DEFAULT_PIN),
        "Ok(())"
    );

    cli.tpmvsc(&["destroy", c2["card_id"].as_str().expect("id"), "--yes"])
        .ok("destroy");
    assert_eq!(list_json(&cli).len(), 1);
    drop(abrmd);
}
