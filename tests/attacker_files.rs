//! Attacks on tpmvsc's files, done for real with the files an attacker would plant
//! (DESIGN.md §2, §6): a link at the temporary name of an atomic write, a dangling link at
//! a lock file, a lock someone holds, a card file
//! replaced by a link to `/dev/zero`, a FIFO or a huge file; and what a user without
//! `~/.local/share` or with a read-only store sees. Run as root (as CI is); the other
//! users are fresh uids ([`OtherUser`]).

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The bound given to lock waits in these tests (TPMVSC_LOCK_TIMEOUT).
const SHORT_WAIT: &str = "1";

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn owner_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .uid()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The next pids the kernel will hand out, as an attacker guesses them.
fn next_pids(n: u32) -> Vec<u32> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .expect("reading ns_last_pid")
        .trim()
        .parse()
        .expect("ns_last_pid is a number");
    (last + 1..=last + n).collect()
}

#[test]
fn root_writes_nothing_into_a_users_store_and_a_planted_temp_link_overwrites_nothing() {
    let swtpm = Swtpm::start();
    let user = OtherUser::new();
    let store = user.base().join("store");
    let cli = Cli::new(&TestStore::new(), &swtpm.tcti())
        .with_env("TPMVSC_STORE", &store.display().to_string());
    let card = create_card(&cli, "v");
    let id = card["card_id"].as_str().expect("card_id").to_string();
    let dir = store.join("cards").join(&id);
    // The store becomes the user's, as if they had made it, and they plant a link at the
    // temporary name of the counters write for every pid root's next command may get.
    user.chown(&store);
    let secret = tempfile::tempdir().expect("root's own directory");
    let victim = secret.path().join("root-owned");
    std::fs::write(&victim, b"root's data\n").expect("writing the victim file");
    for pid in next_pids(400) {
        symlink(&victim, dir.join(format!(".counters.json.tmp-{pid}")))
            .expect("planting a temp-name link");
    }
    let before = names_in(&dir);
    let counters = std::fs::read(dir.join("counters.json")).expect("counters.json");

    let out = cli.check_pin("v", DEFAULT_PIN);
    assert_eq!(out.code, 1, "root's check-pin on a user's card: {out:#?}");
    assert!(
        out.stderr.contains(&dir.display().to_string()) && out.stderr.contains("as root"),
        "names the card directory and why root refuses: {out:#?}"
    );
    assert!(
        out.stderr.contains(&user.uid.to_string()),
        "names the owner: {out:#?}"
    );
    assert_eq!(std::fs::read(&victim).expect("victim"), b"root's data\n");
    assert_eq!(names_in(&dir), before, "no file was added or removed");
    assert_eq!(
        std::fs::read(dir.join("counters.json")).expect("counters"),
        counters
    );

    // Reading is not writing: root still lists the user's cards.
    let listed = list_json(&cli);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "ready", "{listed:?}");
    // And a new card is refused before anything is written.
    let out = cli.tpmvsc(&["create", "--name", "w"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(&store.display().to_string()),
        "{out:#?}"
    );
    assert_eq!(names_in(&store.join("cards")), vec![id]);
}

#[test]
fn a_dangling_lock_link_is_refused_and_nothing_appears_at_its_target() {
    let CliWorld {
        swtpm: _swtpm,
        store,
        cli,
    } = CliWorld::new();
    let id = create_card(&cli, "l")["card_id"]
        .as_str()
        .expect("card_id")
        .to_string();
    let lock = store.path().join("locks").join(format!("{id}.lock"));
    let _ = std::fs::remove_file(&lock);
    let elsewhere = tempfile::tempdir().expect("a directory for the target");
    let target = elsewhere.path().join("made-by-root");
    symlink(&target, &lock).expect("planting a dangling lock link");

    let out = cli.check_pin("l", DEFAULT_PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(&lock.display().to_string()) && out.stderr.contains("symbolic link"),
        "names the lock file and says it is a link: {out:#?}"
    );
    assert!(
        target.symlink_metadata().is_err(),
        "no file created at the link's target"
    );

    // The same link at the store lock: create is refused too.
    let store_lock = store.path().join("locks/store.lock");
    std::fs::remove_file(&store_lock).expect("removing store.lock");
    symlink(&target, &store_lock).expect("planting a dangling store lock link");
    let out = cli.tpmvsc(&["create", "--name", "m"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("store.lock"), "{out:#?}");
    assert!(target.symlink_metadata().is_err());

    std::fs::remove_file(&lock).expect("removing the planted link");
    std::fs::remove_file(&store_lock).expect("removing the planted link");
    cli.check_pin("l", DEFAULT_PIN)
        .ok("check-pin with the link gone");
}

#[test]
fn a_held_lock_fails_after_the_bound_naming_its_holder() {
    let swtpm = Swtpm::start();
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti()).with_env("TPMVSC_LOCK_TIMEOUT", SHORT_WAIT);
    let id = create_card(&cli, "h")["card_id"]
        .as_str()
        .expect("card_id")
        .to_string();
    let me = std::process::id().to_string();
    let busy = |out: Output, lock: &str, started: Instant| {
        let took = started.elapsed();
        assert_eq!(out.code, 1, "{lock}: {out:#?}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(20),
            "{lock}: gave up after the bound, took {took:?}"
        );
        for needle in [lock, me.as_str(), "TPMVSC_LOCK_TIMEOUT"] {
            assert!(
                out.stderr.contains(needle),
                "{lock}: stderr names {needle:?}: {out:#?}"
            );
        }
    };

    // The store lock: create waits for it.
    let store_lock = store.path().join("locks/store.lock");
    let held = hold_lock(&store_lock);
    let started = Instant::now();
    busy(
        cli.tpmvsc(&["create", "--name", "i"]),
        &store_lock.display().to_string(),
        started,
    );
    drop(held);

    // The card lock (made by the first update of the card): a PIN check waits for it.
    cli.check_pin("h", DEFAULT_PIN).ok("check-pin");
    let card_lock = store.path().join(format!("locks/{id}.lock"));
    let held = hold_lock(&card_lock);
    let started = Instant::now();
    busy(
        cli.check_pin("h", DEFAULT_PIN),
        &card_lock.display().to_string(),
        started,
    );
    drop(held);

    // The TPM's cross-process lock (no resource manager): every command waits for it.
    use sha2::Digest as _;
    let tag = hex::encode(&sha2::Sha256::digest(swtpm.tcti().as_bytes())[..8]);
    let tpm_lock = tpmvsc::tpm::lock_dir().join(format!("tpm-{tag}.lock"));
    assert!(tpm_lock.exists(), "the TPM lock file of earlier commands");
    let held = hold_lock(&tpm_lock);
    let started = Instant::now();
    busy(
        cli.check_pin("h", DEFAULT_PIN),
        &tpm_lock.display().to_string(),
        started,
    );
    drop(held);

    cli.check_pin("h", DEFAULT_PIN)
        .ok("check-pin once the locks are free");
}

/// A user uses no store or lock directory that another user owns or that others may
/// write: each is refused by name before anything is read from or written into it.
#[test]
fn a_user_refuses_directories_of_others_and_ones_others_may_write() {
    let swtpm = Swtpm::start();
    let user = OtherUser::new();
    let stranger = user.uid + 1;
    let tcti = swtpm.tcti();
    let own_locks = user.own_dir("locks");
    let own_store = user.own_dir("store");
    let run = |store: &Path, locks: &Path| {
        user.tpmvsc(
            &["create", "--name", "x"],
            &[
                ("TPMVSC_TCTI", tcti.as_str()),
                ("TPMVSC_STORE", store.to_str().expect("utf-8")),
                ("TPMVSC_LOCK_DIR", locks.to_str().expect("utf-8")),
                ("TPMVSC_LOCK_TIMEOUT", "2"),
            ],
        )
    };
    let refused = |out: Output, dir: &Path, why: &str| {
        assert_eq!(out.code, 1, "{why}: {out:#?}");
        assert!(
            out.stderr.contains(&dir.display().to_string()),
            "{why}: the directory is named: {out:#?}"
        );
    };
    // A store owned by someone else (readable and enterable by everyone).
    let foreign = user.base().join("foreign-store");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(&foreign, Some(stranger), Some(stranger)).expect("chown");
    refused(run(&foreign, &own_locks), &foreign, "another user's store");
    assert!(names_in(&foreign).is_empty(), "nothing written into it");
    // The user's own store, but the group may write it.
    std::fs::set_permissions(&own_store, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    refused(
        run(&own_store, &own_locks),
        &own_store,
        "a group-writable store",
    );
    std::fs::set_permissions(&own_store, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // A lock directory owned by someone else, or open to everyone's writes.
    let foreign_locks = user.base().join("foreign-locks");
    std::fs::create_dir(&foreign_locks).expect("mkdir");
    std::fs::set_permissions(&foreign_locks, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::chown(&foreign_locks, Some(stranger), Some(stranger)).expect("chown");
    refused(
        run(&own_store, &foreign_locks),
        &foreign_locks,
        "another user's lock directory",
    );
    std::fs::set_permissions(&own_locks, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    refused(
        run(&own_store, &own_locks),
        &own_locks,
        "a world-writable lock directory",
    );
    std::fs::set_permissions(&own_locks, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // A card directory in the user's own store that belongs to someone else (root could
    // have planted it): listed as damaged, by name, and never used.
    let out = run(&own_store, &own_locks);
    assert_eq!(out.code, 0, "the user's own directories work: {out:#?}");
    let cards = own_store.join("cards");
    let planted = cards.join("00000000-0000-4000-8000-000000000000");
    std::fs::create_dir(&planted).expect("mkdir");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(&planted, Some(stranger), Some(stranger)).expect("chown");
    let listed = user.tpmvsc(
        &["list"],
        &[
            ("TPMVSC_TCTI", tcti.as_str()),
            ("TPMVSC_STORE", own_store.to_str().expect("utf-8")),
            ("TPMVSC_LOCK_DIR", own_locks.to_str().expect("utf-8")),
        ],
    );
    assert_eq!(listed.code, 0, "{listed:#?}");
    assert!(
        listed.stdout.contains("damaged") && listed.stdout.contains("x"),
        "the planted directory lists as damaged, the user's card as usual: {listed:#?}"
    );
}

#[test]
fn cards_replaced_by_links_devices_fifos_or_huge_files_list_as_damaged_quickly() {
    let swtpm = Swtpm::start();
    let store = TestStore::new();
    set_module_env(&store, &swtpm.tcti());
    let cli = Cli::new(&store, &swtpm.tcti());
    let mut ids = Vec::new();
    for name in ["zero", "fifo", "huge", "moved", "good"] {
        ids.push(
            create_card(&cli, name)["card_id"]
                .as_str()
                .expect("card_id")
                .to_string(),
        );
    }
    let cards = store.cards_dir();
    let dir = |i: usize| cards.join(&ids[i]);
    // card.json -> /dev/zero
    std::fs::remove_file(dir(0).join("card.json")).expect("rm card.json");
    symlink("/dev/zero", dir(0).join("card.json")).expect("card.json -> /dev/zero");
    // counters.json: a FIFO nobody writes
    std::fs::remove_file(dir(1).join("counters.json")).expect("rm counters.json");
    let made = Command::new("mkfifo")
        .arg(dir(1).join("counters.json"))
        .status()
        .expect("running mkfifo");
    assert!(made.success());
    // csk.json: 2 MiB
    std::fs::write(dir(2).join("csk.json"), vec![b' '; 2 << 20]).expect("a 2 MiB csk.json");
    // the whole card directory: a link to where it was moved
    let away = tempfile::tempdir().expect("somewhere else");
    let moved = away.path().join("card");
    std::fs::rename(dir(3), &moved).expect("moving the card away");
    symlink(&moved, dir(3)).expect("a link in its place");

    let started = Instant::now();
    let listed = list_json(&cli);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "list took {:?}",
        started.elapsed()
    );
    let state = |id: &str| {
        listed
            .iter()
            .find(|c| c["card_id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {listed:?}"))["state"]
            .as_str()
            .expect("state")
            .to_string()
    };
    let expect = [
        (0, "card.json", "symbolic link"),
        (1, "counters.json", "FIFO"),
        (2, "csk.json", "64 KiB"),
        (3, ids[3].as_str(), "symbolic link"),
    ];
    for (i, file, why) in expect {
        let s = state(&ids[i]);
        assert!(
            s.starts_with("damaged") && s.contains(file) && s.contains(why),
            "card {i}: {s}"
        );
        let started = Instant::now();
        let out = cli.tpmvsc(&["info", &ids[i]]);
        assert_eq!(out.code, 1, "info on damaged card {i}: {out:#?}");
        assert!(out.stderr.contains(file), "info names {file}: {out:#?}");
        // `keys` reads the card's record and object files, not every file: it fails on
        // what it reads, naming it, and never waits.
        let out = cli.tpmvsc(&["keys", &ids[i]]);
        assert!(
            out.code == 0 || out.stderr.contains(file),
            "keys on damaged card {i}: {out:#?}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    assert_eq!(state(&ids[4]), "ready");
    info_json(&cli, "good");

    // The module's C_Initialize reads the same store: it returns, with the good card.
    let started = Instant::now();
    let p = p11_load();
    let slots = p.get_slots_with_token().expect("C_GetSlotList");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(slots.len(), 1, "only the good card is a slot: {slots:?}");
    let label = p
        .get_token_info(slots[0])
        .expect("C_GetTokenInfo")
        .label()
        .to_string();
    assert_eq!(label.trim(), "good");

    // A damaged card can still be destroyed by its ID, the link without its target.
    cli.tpmvsc(&["destroy", &ids[3], "--yes"])
        .ok("destroying the linked card");
    assert!(
        moved.join("card.json").exists(),
        "the link's target is untouched"
    );
}

#[test]
fn a_new_user_without_local_share_creates_a_card() {
    let swtpm = Swtpm::start();
    let user = OtherUser::new();
    let runtime = user.own_dir("run");
    let tcti = swtpm.tcti();
    let env = [
        ("TPMVSC_TCTI", tcti.as_str()),
        ("XDG_RUNTIME_DIR", runtime.to_str().expect("utf-8 path")),
    ];
    assert!(names_in(&user.home()).is_empty());
    let out = user.tpmvsc(&["create", "--name", "first", "--json"], &env);
    assert_eq!(out.code, 0, "first create of a new user: {out:#?}");
    let home = user.home();
    for d in [".local", ".local/share", ".local/share/tpmvsc"] {
        let p = home.join(d);
        assert_eq!(mode_of(&p), 0o700, "{d}");
        assert_eq!(owner_of(&p), user.uid, "{d}");
    }
    assert_eq!(mode_of(&runtime.join("tpmvsc")), 0o700);
    let out = user.tpmvsc(&["list", "--json"], &env);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.json().as_array().expect("array").len(), 1, "{out:#?}");
}

#[test]
fn a_read_only_store_is_named_as_read_only() {
    let swtpm = Swtpm::start();
    let user = OtherUser::new();
    // Root's store where the user can look but not write.
    let store: PathBuf = user.base().join("store");
    let store_text = store.display().to_string();
    let root_cli = Cli::new(&TestStore::new(), &swtpm.tcti()).with_env("TPMVSC_STORE", &store_text);
    create_card(&root_cli, "r");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let tcti = swtpm.tcti();
    let runtime = user.own_dir("run");
    let env = [
        ("TPMVSC_TCTI", tcti.as_str()),
        ("TPMVSC_STORE", store_text.as_str()),
        ("XDG_RUNTIME_DIR", runtime.to_str().expect("utf-8 path")),
    ];
    let out = user.tpmvsc(&["create", "--name", "u"], &env);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(&format!("{store_text} is read-only")),
        "names the store as read-only: {out:#?}"
    );
    assert!(!out.stderr.contains("store.lock"), "{out:#?}");

    // A read-only mount, seen by root in a mount namespace of its own.
    let script = format!(
        "mount --bind '{s}' '{s}' && mount -o remount,bind,ro '{s}' && exec \"$0\" \"$@\"",
        s = store_text
    );
    let ro = |args: &[&str]| {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .arg(env!("CARGO_BIN_EXE_tpmvsc"))
            .args(args)
            .env("TPMVSC_STORE", &store)
            .env("TPMVSC_TCTI", swtpm.tcti())
            .env("TPMVSC_LOCK_DIR", tpmvsc::tpm::lock_dir())
            .env("TSS2_LOG", "all+NONE");
        run_output(c, Duration::from_secs(60))
    };
    let out = ro(&["list", "--json"]);
    assert_eq!(out.code, 0, "list on a read-only store: {out:#?}");
    let out = ro(&["create", "--name", "x"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(&format!("{store_text} is read-only"))
            && out.stderr.contains("read-only file system"),
        "names the store as read-only: {out:#?}"
    );
    assert!(!out.stderr.contains("store.lock"), "{out:#?}");
}

#[test]
fn a_tmp_lock_dir_another_user_made_is_refused_by_name_without_a_hang() {
    use std::os::unix::fs::PermissionsExt;
    let swtpm = Swtpm::start();
    let user = OtherUser::new();
    // Without XDG_RUNTIME_DIR the user's TPM lock lives in /tmp/tpmvsc-UID. Someone else
    // (root here) made it first, open to everyone, and holds the lock in it.
    let squat = user.tmp_lock_dir();
    std::fs::create_dir(&squat).expect("pre-creating the lock directory");
    std::fs::set_permissions(&squat, std::fs::Permissions::from_mode(0o777)).expect("chmod 777");
    let tcti = swtpm.tcti();
    let started = std::time::Instant::now();
    let out = user.tpmvsc(
        &["create", "--name", "v"],
        &[("TPMVSC_TCTI", tcti.as_str()), ("TPMVSC_LOCK_TIMEOUT", "2")],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "no hang: {:?}",
        started.elapsed()
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(&squat.display().to_string()),
        "the directory is named: {out:#?}"
    );
    assert!(names_in(&squat).is_empty(), "nothing was written into it");
}
