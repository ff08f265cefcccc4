//! The TPM layer in this process against a real swtpm: sealed objects, the object cache
//! (context save/load and eviction on TPM_RC_OBJECT_MEMORY), authorization failures,
//! a cleared TPM, and objects a killed process left behind.

mod common;

use std::time::Duration;

use common::*;
use tpmvsc::tpm::{Blob, Tpm, TpmError, templates};

fn make_objects(tpm: &mut Tpm, n: usize) -> Vec<(Blob, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let auth = format!("auth-value-{i}").into_bytes();
            let blob = tpm
                .create_under_srk(
                    templates::sealed_secret().expect("template"),
                    &auth,
                    Some(b"x"),
                )
                .unwrap_or_else(|e| panic!("creating object {i}: {e}"));
            (blob, auth)
        })
        .collect()
}

fn check_all_twice(tpm: &mut Tpm, objs: &[(Blob, Vec<u8>)]) {
    for round in 0..2 {
        for (i, (blob, auth)) in objs.iter().enumerate() {
            tpm.check_auth(blob, auth)
                .unwrap_or_else(|e| panic!("round {round}, object {i}: {e}"));
        }
    }
}

#[test]
fn five_objects_check_round_robin_through_the_cache() {
    let swtpm = Swtpm::start();
    let (objs, srk) = {
        let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("open");
        let srk = tpm.choose_srk().expect("choose_srk");
        let objs = make_objects(&mut tpm, 5);
        check_all_twice(&mut tpm, &objs);
        assert_eq!(
            tpm.check_auth(&objs[0].0, b"wrong"),
            Err(TpmError::AuthFail)
        );
        assert_eq!(
            tpm.check_auth(&objs[3].0, b"auth-value-4"),
            Err(TpmError::AuthFail)
        );
        tpm.check_auth(&objs[3].0, &objs[3].1)
            .expect("right auth after a wrong one");
        (objs, srk)
    };
    // A fresh connection with more cache slots than swtpm has object slots: loading runs
    // into TPM_RC_OBJECT_MEMORY and must evict and retry.
    let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("open again");
    tpm.set_cache_slots(8);
    tpm.use_srk(&srk).expect("use_srk");
    check_all_twice(&mut tpm, &objs);
}

#[test]
fn a_persistent_srk_is_chosen_and_used() {
    let swtpm = Swtpm::start_with_persistent_srk();
    let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("open");
    let srk = tpm.choose_srk().expect("choose_srk");
    let objs = make_objects(&mut tpm, 4);
    drop(tpm);
    let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("open");
    tpm.use_srk(&srk).expect("use_srk");
    check_all_twice(&mut tpm, &objs);
}

#[test]
fn an_srk_with_another_name_means_the_tpm_was_cleared() {
    let swtpm = Swtpm::start();
    let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("open");
    let mut srk = tpm.choose_srk().expect("choose_srk");
    drop(tpm);
    let last = srk.name.len() - 1;
    srk.name[last] ^= 0x01;
    let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("open");
    assert_eq!(tpm.use_srk(&srk), Err(TpmError::Cleared));
}

#[test]
fn objects_a_killed_process_left_loaded_are_flushed() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    for (i, ms) in [10u64, 25, 40, 55].into_iter().enumerate() {
        let mut child = cli.spawn_tpmvsc(&["create", "--name", &format!("k{i}")]);
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("open after killed processes");
    tpm.choose_srk().expect("choose_srk");
    let objs = make_objects(&mut tpm, 3);
    check_all_twice(&mut tpm, &objs);
    drop(tpm);
    create_card(&cli, "after");
    check_pin(&store, &swtpm.tcti(), "after", DEFAULT_PIN)
        .expect("a card made after the kills works");
}

#[test]
fn without_a_tpm_create_fails_and_points_at_the_simulator() {
    let store = TestStore::new();
    let cli = Cli::new(&store, "device:/dev/does-not-exist");
    let out = cli.tpmvsc(&["create", "--name", "x"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("simulator"), "{:?}", out.stderr);
    assert!(!out.stderr.contains("panicked"));
    assert!(list_json(&cli).is_empty());
}
