//! The README's main job (scripts/demo.sh) on the built binaries: it starts the simulator
//! TPM, creates cards in both syntaxes, and ends by listing them.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestStore;

/// Stops the demo's simulator even when an assertion fails.
struct StopSimulator(PathBuf);

impl Drop for StopSimulator {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_tpmvsc"))
            .args(["simulator", "stop"])
            .env("TPMVSC_STORE", &self.0)
            .output();
    }
}

#[test]
fn the_readme_run_command_ends_by_listing_the_cards_it_created() {
    let store = TestStore::new();
    let _guard = StopSimulator(store.path());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tpmvsc"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let out = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .env("TPMVSC_DEMO_BIN", &bin)
        .env("TPMVSC_STORE", store.path())
        .env("TPMVSC_LOCK_DIR", tpmvsc::tpm::lock_dir())
        .output()
        .expect("running scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = stdout.lines().rev().take(3).collect();
    assert!(
        tail.iter().any(|l| l.contains(" demo ")
            && l.contains("ROOT\\SMARTCARDREADER\\0000")
            && l.contains("(simulated)")),
        "{stdout}"
    );
    assert!(
        tail.iter()
            .any(|l| l.contains(" win-demo ") && l.contains("ready")),
        "{stdout}"
    );
    // It can run again on the same store (the README says so).
    let again = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .env("TPMVSC_DEMO_BIN", &bin)
        .env("TPMVSC_STORE", store.path())
        .env("TPMVSC_LOCK_DIR", tpmvsc::tpm::lock_dir())
        .output()
        .expect("running scripts/demo.sh again");
    assert!(
        again.status.success(),
        "second demo run failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let cards = tpmvsc::provision::list(&store.store()).expect("list");
    assert_eq!(cards.len(), 2, "{cards:#?}");
}
