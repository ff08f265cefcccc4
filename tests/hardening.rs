//! DESIGN.md §2, hardening: on a TPM whose lockoutAuth is empty anyone with TPM access
//! can switch the dictionary-attack limit off, and `create` and `tpm status` say "no retry
//! limit"; `tpmvsc tpm harden` sets a random lockout authorization (root-only file), the
//! DA parameters (32 tries, 10 minutes) and ClearControl, after which neither the DA
//! counter, the DA parameters nor TPM2_Clear is open to someone without that file.
//!
//! A wrong lockout authorization blocks the lockout hierarchy for lockout_recovery
//! seconds (600 after harden), and a blocked hierarchy refuses the right one too: every
//! "without the authorization" case below runs on its own freshly hardened swtpm, and the
//! "with it" test sends no wrong lockout authorization until its very end.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;
use tpmvsc::tpm::{Tpm, TpmError};

/// A freshly hardened swtpm: its store, CLI and lockout auth file.
struct Hardened {
    swtpm: Swtpm,
    store: TestStore,
    cli: Cli,
    auth_file: PathBuf,
}

fn hardened() -> Hardened {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    let auth_file = store.scratch("lockout-auth");
    tpm_harden(&cli, &auth_file).ok("tpm harden");
    assert_eq!(tpm_status(&cli)["lockout_auth_set"], true);
    Hardened {
        swtpm,
        store,
        cli,
        auth_file,
    }
}

/// The DA settings a status reports (everything but the counter).
fn da_settings(s: &serde_json::Value) -> [serde_json::Value; 4] {
    [
        s["max_tries"].clone(),
        s["recovery_time"].clone(),
        s["lockout_recovery"].clone(),
        s["lockout_auth_set"].clone(),
    ]
}

#[test]
fn on_an_unhardened_tpm_anyone_switches_the_retry_limit_off_and_tpmvsc_says_so() {
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    let s = tpm_status(&cli);
    assert_eq!(s["lockout_auth_set"], false, "{s:#}");

    // An attacker with TPM access and no secret at all.
    Tpm::open_tcti(&swtpm.tcti())
        .and_then(|mut t| t.set_da_parameters(&[], 100_000, 1, 1))
        .expect("the empty lockout auth lets anyone change the DA parameters");
    let s = tpm_status(&cli);
    assert_eq!(s["max_tries"], 100_000, "{s:#}");
    assert_eq!(s["recovery_time"], 1, "{s:#}");
    assert_eq!(s["lockout_auth_set"], false, "{s:#}");
    let human = cli.tpmvsc(&["tpm", "status"]).ok("tpm status");
    assert!(human.stdout.contains("no retry limit"), "{human:#?}");

    let out = cli
        .tpmvsc(&["create", "--name", "w"])
        .ok("create on an unhardened TPM");
    assert!(
        out.stderr.contains("no retry limit"),
        "create warns on a TPM with an empty lockout auth: {out:#?}"
    );
}

#[test]
fn harden_writes_a_private_lockout_auth_sets_32_tries_and_runs_once() {
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    let dir = tempfile::tempdir().expect("temp dir for the auth file");
    let file = dir.path().join("lockout-auth");
    let out = tpm_harden(&cli, &file).ok("tpm harden");
    eprintln!("{out:?}");

    let mode = std::fs::metadata(&file)
        .expect("the lockout auth file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let text = std::fs::read_to_string(&file).expect("reading the lockout auth file");
    let digits = text.trim();
    assert_eq!(digits.len(), 64, "{text:?}");
    assert!(digits.chars().all(|c| c.is_ascii_hexdigit()), "{text:?}");

    let s = tpm_status(&cli);
    assert_eq!(s["lockout_auth_set"], true, "{s:#}");
    assert_eq!(s["max_tries"], 32, "{s:#}");
    assert_eq!(s["recovery_time"], 600, "{s:#}");
    assert_eq!(s["lockout_recovery"], 600, "{s:#}");
    let human = cli.tpmvsc(&["tpm", "status"]).ok("tpm status");
    assert!(!human.stdout.contains("no retry limit"), "{human:#?}");
    let out = cli
        .tpmvsc(&["create", "--name", "h"])
        .ok("create on a hardened TPM");
    assert!(!out.stderr.contains("no retry limit"), "{out:#?}");

    // A second run changes nothing, not even where it was pointed.
    let other = dir.path().join("lockout-auth-2");
    let out = tpm_harden(&cli, &other).ok("tpm harden, second time");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("already"),
        "{out:#?}"
    );
    assert!(!other.exists(), "the second harden wrote {other:?}");
    let out = tpm_harden(&cli, &file).ok("tpm harden, third time, same file");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("already"),
        "{out:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("reading the lockout auth file"),
        text,
        "the lockout auth file is unchanged"
    );
    assert_eq!(da_settings(&tpm_status(&cli)), da_settings(&s));
    // The file still holds the TPM's lockout authorization (proved without a wrong try).
    let auth = hex::decode(digits).expect("hex");
    Tpm::open_tcti(&swtpm.tcti())
        .and_then(|mut t| t.reset_lockout(&auth))
        .expect("the file's auth resets the DA counter");
}

#[test]
fn without_the_lockout_auth_nobody_resets_the_da_counter() {
    let h = hardened();
    create_card(&h.cli, "c");
    h.cli
        .check_pin("c", "87654321")
        .expect_code(3, "a wrong PIN");
    assert_eq!(da_counter(&h.swtpm.tcti()), 1);
    assert_eq!(
        Tpm::open_tcti(&h.swtpm.tcti()).and_then(|mut t| t.reset_lockout(&[])),
        Err(TpmError::AuthFail),
        "DictionaryAttackLockReset with the empty auth"
    );
    assert_eq!(da_counter(&h.swtpm.tcti()), 1, "the counter stays");
    // Nor through the CLI with an empty auth file (the hierarchy is blocked by now).
    let empty = h.store.scratch("empty");
    write_file(&empty, "");
    let out = tpm_clear_lockout(&h.cli, &empty);
    assert_ne!(out.code, 0, "{out:#?}");
    assert_eq!(da_counter(&h.swtpm.tcti()), 1, "the counter stays");
}

#[test]
fn without_the_lockout_auth_nobody_changes_the_da_parameters() {
    let h = hardened();
    let before = tpm_status(&h.cli);
    assert_eq!(
        Tpm::open_tcti(&h.swtpm.tcti()).and_then(|mut t| t.set_da_parameters(&[], 100_000, 1, 1)),
        Err(TpmError::AuthFail),
        "DictionaryAttackParameters with the empty auth"
    );
    let after = tpm_status(&h.cli);
    assert_eq!(da_settings(&after), da_settings(&before), "{after:#}");
    assert_eq!(after["max_tries"], 32, "{after:#}");
}

#[test]
fn without_the_lockout_auth_nobody_enables_clear_again() {
    let h = hardened();
    let r = Tpm::open_tcti(&h.swtpm.tcti())
        .expect("opening the TPM")
        .clear_control(&[], false);
    assert_eq!(
        r,
        Err(TpmError::AuthFail),
        "ClearControl(NO) with the empty auth"
    );
}

#[test]
fn without_the_lockout_auth_nobody_clears_the_tpm() {
    let h = hardened();
    create_card(&h.cli, "c");
    let r = Tpm::open_tcti(&h.swtpm.tcti())
        .expect("opening the TPM")
        .clear(&[]);
    assert_eq!(r, Err(TpmError::AuthFail), "TPM2_Clear with the empty auth");
    h.cli
        .check_pin("c", DEFAULT_PIN)
        .ok("the card still works: the TPM was not cleared");
}

#[test]
fn with_the_lockout_auth_the_counter_is_reset_but_the_tpm_is_not_cleared() {
    let h = hardened();
    create_card(&h.cli, "c");
    for _ in 0..2 {
        h.cli
            .check_pin("c", "87654321")
            .expect_code(3, "a wrong PIN");
    }
    assert_eq!(tpm_status(&h.cli)["counter"], 2);
    let out = tpm_clear_lockout(&h.cli, &h.auth_file).ok("tpm clear-lockout with the file");
    eprintln!("{out:?}");
    let s = tpm_status(&h.cli);
    assert_eq!(s["counter"], 0, "{s:#}");
    assert_eq!(s["in_lockout"], false, "{s:#}");

    // ClearControl disabled TPM2_Clear: even the lockout authorization does not clear.
    let auth = tpmvsc::provision::hardening::parse_lockout_auth(
        std::fs::read_to_string(&h.auth_file)
            .expect("reading the lockout auth file")
            .trim()
            .as_bytes(),
    );
    assert_eq!(auth.len(), 32);
    let r = Tpm::open_tcti(&h.swtpm.tcti())
        .expect("opening the TPM")
        .clear(&auth);
    eprintln!("TPM2_Clear with the lockout auth: {r:?}");
    // TPM_RC_DISABLED: the right authorization, refused because disableClear is set.
    assert_eq!(
        r.as_ref().err().and_then(TpmError::code),
        Some(0x120),
        "TPM2_Clear after harden: {r:?}"
    );
    h.cli
        .check_pin("c", DEFAULT_PIN)
        .ok("the card still works: the TPM was not cleared");
    // The right authorization still works (no wrong one was sent so far).
    Tpm::open_tcti(&h.swtpm.tcti())
        .and_then(|mut t| t.reset_lockout(&auth))
        .expect("DictionaryAttackLockReset with the auth");

    // Last: a wrong file is refused, and the message says how long the hierarchy is
    // blocked now (the lockout recovery time).
    let wrong = h.store.scratch("wrong-auth");
    write_file(&wrong, &format!("{}\n", "ab".repeat(32)));
    let out = tpm_clear_lockout(&h.cli, &wrong).expect_code(2, "clear-lockout with a wrong file");
    let recovery = s["lockout_recovery"].as_u64().expect("lockout_recovery");
    assert_eq!(recovery, 600);
    assert!(
        out.stderr.contains("lockout") && out.stderr.contains(&format!("{recovery} s")),
        "the message names the lockout recovery time: {out:#?}"
    );
    // And now the hierarchy is blocked: even the right file fails for a while.
    let out = tpm_clear_lockout(&h.cli, &h.auth_file);
    assert_ne!(out.code, 0, "{out:#?}");
}

/// `tpm2_changeauth -c lockout VALUE`: someone else sets the lockout authorization first
/// (any member of the `tss` group can on a fresh TPM).
fn squat(swtpm: &Swtpm, value: &str) {
    let out = std::process::Command::new("tpm2_changeauth")
        .args(["-T", &swtpm.tcti(), "-c", "lockout", value])
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("running tpm2_changeauth");
    assert!(out.status.success(), "tpm2_changeauth: {out:?}");
}

#[test]
fn a_squatted_lockout_authorization_is_never_called_hardened() {
    if !require_tool("tpm2_changeauth") {
        return;
    }
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    squat(&swtpm, "squatter-secret");

    let file = store.scratch("lockout-auth");
    let out = tpm_harden(&cli, &file);
    assert_eq!(out.code, 1, "harden on a squatted TPM: {out:#?}");
    assert!(
        out.stderr.contains("held by someone else")
            && out.stderr.contains("not under your control")
            && out.stderr.contains("--lockout-auth-file"),
        "{out:#?}"
    );
    assert!(!file.exists(), "nothing written: {file:?}");
    let s = tpm_status(&cli);
    assert_eq!(s["lockout_state"], "set_not_verified", "{s:#}");
    let human = cli.tpmvsc(&["tpm", "status"]).ok("tpm status");
    assert!(human.stdout.contains("not verified"), "{human:#?}");
    let created = cli.tpmvsc(&["create", "--name", "q"]).ok("create");
    assert!(created.stderr.contains("not verified"), "{created:#?}");
    let listed = cli.tpmvsc(&["list"]).ok("list");
    assert!(listed.stdout.contains("not verified"), "{listed:#?}");

    // A wrong value given is refused the same way (and blocks the lockout hierarchy).
    write_file(&file, "not-the-value");
    let out = tpm_harden(&cli, &file);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("held by someone else"), "{out:#?}");
    assert!(out.stderr.contains("blocked"), "{out:#?}");
    assert_eq!(tpm_status(&cli)["lockout_state"], "set_not_verified");
}

#[test]
fn harden_with_the_squatters_value_takes_the_tpm_over() {
    if !require_tool("tpm2_changeauth") {
        return;
    }
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    squat(&swtpm, "squatter-secret");
    let file = store.scratch("lockout-auth");
    write_file(&file, "squatter-secret");
    let out = tpm_harden(&cli, &file).ok("harden with the current value");
    assert!(out.stdout.contains("replaced"), "{out:#?}");
    let new_value = std::fs::read_to_string(&file).expect("the new value");
    assert_eq!(
        new_value.trim().len(),
        64,
        "a new random value: {new_value:?}"
    );
    let s = tpm_status(&cli);
    assert_eq!(s["lockout_state"], "hardened_by_tpmvsc", "{s:#}");
    assert_eq!(s["max_tries"], 32, "{s:#}");
    let listed = cli.tpmvsc(&["list"]).ok("list");
    assert!(listed.stdout.contains("hardened by tpmvsc"), "{listed:#?}");
    // The squatter's value no longer works; ours does.
    assert_eq!(
        Tpm::open_tcti(&swtpm.tcti()).and_then(|mut t| t.reset_lockout(b"squatter-secret")),
        Err(TpmError::AuthFail),
        "the squatter lost the lockout hierarchy"
    );
}

#[test]
fn the_marker_counts_only_when_root_owns_it_and_it_names_this_tpm() {
    let CliWorld {
        swtpm: _swtpm,
        store,
        cli,
    } = CliWorld::new();
    let file = store.scratch("lockout-auth");
    tpm_harden(&cli, &file).ok("harden");
    assert_eq!(tpm_status(&cli)["lockout_state"], "hardened_by_tpmvsc");
    let marker = marker_of(&store.config_dir());
    let original = std::fs::read(&marker).expect("the marker");

    // A marker naming another TPM's SRK (a cleared TPM, or a copied file) is void.
    let mut v: serde_json::Value = serde_json::from_slice(&original).expect("JSON");
    v["srk_name"] = serde_json::Value::String("000b".to_string() + &"00".repeat(32));
    std::fs::write(&marker, serde_json::to_vec(&v).expect("JSON")).expect("rewriting");
    assert_eq!(tpm_status(&cli)["lockout_state"], "set_not_verified");

    // A marker anyone but root could have written is void.
    std::fs::write(&marker, &original).expect("restoring");
    std::os::unix::fs::chown(&marker, Some(65534), Some(65534)).expect("chown");
    assert_eq!(tpm_status(&cli)["lockout_state"], "set_not_verified");
    std::os::unix::fs::chown(&marker, Some(0), Some(0)).expect("chown back");
    std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert_eq!(tpm_status(&cli)["lockout_state"], "set_not_verified");
    std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(tpm_status(&cli)["lockout_state"], "hardened_by_tpmvsc");
}

#[test]
fn harden_can_print_the_value_and_keep_nothing_on_the_machine() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    let file = store.scratch("lockout-auth");
    let out = cli
        .tpmvsc(&[
            "tpm",
            "harden",
            "--print-lockout-auth",
            "--lockout-auth-file",
            file.to_str().expect("utf-8"),
        ])
        .ok("harden --print-lockout-auth");
    assert!(!file.exists(), "no file kept: {file:?}");
    let value = out
        .stdout
        .lines()
        .find_map(|l| l.rsplit(": ").next().filter(|v| v.len() == 64))
        .unwrap_or_else(|| panic!("the printed value: {out:#?}"));
    assert_eq!(tpm_status(&cli)["lockout_state"], "hardened_by_tpmvsc");
    let auth = hex::decode(value).expect("hex");
    Tpm::open_tcti(&swtpm.tcti())
        .and_then(|mut t| t.reset_lockout(&auth))
        .expect("the printed value is the TPM's lockout authorization");
    // Run again: hardened by tpmvsc, the value is not on the machine to re-verify.
    let again = tpm_harden(&cli, &file).ok("harden again");
    assert!(again.stdout.contains("not re-verified"), "{again:#?}");
}

/// The one marker file `harden` left in `config` (`hardened-<tag>.json`).
fn marker_of(config: &std::path::Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(config)
        .expect("the configuration directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hardened-") && n.ends_with(".json"))
        })
        .collect();
    assert_eq!(found.len(), 1, "one marker: {found:?}");
    found[0].clone()
}

/// The marker exists for every user's `tpm status`, `create` and `list`: after a first
/// harden on a machine without /etc/tpmvsc, the directory is 0755 and another user
/// reads "hardened by tpmvsc".
#[test]
fn the_marker_is_read_by_other_users_after_a_first_harden() {
    let swtpm = Swtpm::start();
    let user = OtherUser::new();
    let config = user.base().join("etc").join("tpmvsc");
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti())
        .with_env("TPMVSC_CONFIG_DIR", config.to_str().expect("utf-8"));
    let out = cli
        .tpmvsc(&["tpm", "harden"])
        .ok("harden with the default file");
    assert!(out.stdout.contains("lockout-auth-"), "{out:#?}");
    let mode = std::fs::metadata(&config)
        .expect("the configuration directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "mode {mode:o}");
    let lock_dir = user.own_dir("locks");
    let env = [
        ("TPMVSC_TCTI", swtpm.tcti()),
        ("TPMVSC_CONFIG_DIR", config.to_string_lossy().into_owned()),
        ("TPMVSC_LOCK_DIR", lock_dir.to_string_lossy().into_owned()),
        (
            "TPMVSC_STORE",
            user.own_dir("store").to_string_lossy().into_owned(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let status = user.tpmvsc(&["tpm", "status", "--json"], &env);
    assert_eq!(status.code, 0, "{status:#?}");
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON");
    assert_eq!(v["lockout_state"], "hardened_by_tpmvsc", "{status:#?}");
    let created = user.tpmvsc(&["create", "--name", "u"], &env);
    assert_eq!(created.code, 0, "{created:#?}");
    assert!(
        created.stderr.contains("hardened by tpmvsc"),
        "create says so: {created:#?}"
    );
    let listed = user.tpmvsc(&["list"], &env);
    assert!(listed.stdout.contains("hardened by tpmvsc"), "{listed:#?}");
}

/// Each TPM has its own lockout authorization file and marker: hardening a second TPM
/// (a simulator next to the real one) with the same configuration directory leaves the
/// first one hardened, its value where it was, and both clear their lockout without
/// being told which file to read.
#[test]
fn hardening_a_second_tpm_keeps_the_first_ones_value() {
    let first = Swtpm::start();
    let second = Swtpm::start();
    let store = TestStore::new();
    let config = store.config_dir();
    let cli1 = Cli::new(&store, &first.tcti());
    let cli2 = Cli::new(&store, &second.tcti());
    cli1.tpmvsc(&["tpm", "harden"]).ok("harden the first TPM");
    let files = |dir: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("config dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("lockout-auth"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("reading"),
                )
            })
            .collect();
        v.sort();
        v
    };
    let after_first = files(&config);
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    cli2.tpmvsc(&["tpm", "harden"]).ok("harden the second TPM");
    let after_second = files(&config);
    assert_eq!(after_second.len(), 2, "{after_second:?}");
    assert!(
        after_second.contains(&after_first[0]),
        "the first TPM's value is where it was"
    );
    for cli in [&cli1, &cli2] {
        assert_eq!(tpm_status(cli)["lockout_state"], "hardened_by_tpmvsc");
        cli.tpmvsc(&["tpm", "clear-lockout"])
            .ok("clear-lockout finds this TPM's own file");
    }
}

/// A file that may hold a lockout authorization is never overwritten: the value of
/// another TPM would be lost for good.
#[test]
fn harden_never_overwrites_an_existing_lockout_auth_file() {
    let CliWorld {
        swtpm: _swtpm,
        store,
        cli,
    } = CliWorld::new();
    let file = store.scratch("lockout-auth");
    std::fs::write(&file, "00112233445566778899aabbccddeeff\n").expect("an earlier value");
    let out = tpm_harden(&cli, &file);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("never overwrites"), "{out:#?}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("reading"),
        "00112233445566778899aabbccddeeff\n",
        "the file is unchanged"
    );
    assert_eq!(
        tpm_status(&cli)["lockout_auth_set"],
        false,
        "the TPM is unchanged"
    );
}
