//! A damaged store file is reported by name, never a panic, and a damaged card can still
//! be destroyed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;

fn setup(name: &str) -> (Swtpm, TestStore, Cli, String, PathBuf) {
    let CliWorld { swtpm, store, cli } = CliWorld::on(Swtpm::start_with_persistent_srk());
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

/// A small in-memory file system (tmpfs) mounted for the test and unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("mount point");
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tpmvsc-test",
            ])
            .arg(dir.path())
            .status()
            .expect("running mount")
            .success();
        assert!(ok, "mounting a tmpfs (the test runs as root, as CI does)");
        SmallDisk { dir }
    }

    /// Fills the file system up: returns the filler file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&p).expect("the filler file");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk in the middle of a create or a format: the command fails naming the
/// problem, leaves no hidden directory behind, and the card that was there still works
/// (reliability issue, item 10).
#[test]
fn a_full_disk_fails_create_and_format_and_leaves_the_card_as_it_was() {
    if !require_tool("mount") {
        return;
    }
    let disk = SmallDisk::mount("2M");
    let swtpm = Swtpm::start_with_persistent_srk();
    let store_dir = disk.dir.path().join("store");
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti())
        .with_env("TPMVSC_STORE", store_dir.to_str().expect("utf-8"));
    cli.tpmvsc(&["create", "--name", "f", "--puk", "default"])
        .ok("create on the small disk");
    let filler = disk.fill();
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(store_dir.join("cards"))
            .expect("cards dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    };
    let out = cli.tpmvsc(&["create", "--name", "g"]);
    no_panic(&out);
    assert_eq!(out.code, 1, "create on a full disk: {out:#?}");
    assert!(out.stderr.contains("No space left"), "{out:#?}");
    assert!(leftovers().is_empty(), "after create: {:?}", leftovers());
    let out = cli.tpmvsc_stdin(
        &["format", "f", "--puk", "--stdin", "--yes"],
        "12345678\nFull-disk-1\nFull-disk-1\n",
    );
    no_panic(&out);
    assert_eq!(out.code, 1, "format on a full disk: {out:#?}");
    assert!(out.stderr.contains("No space left"), "{out:#?}");
    assert!(leftovers().is_empty(), "after format: {:?}", leftovers());
    assert_eq!(list_json(&cli).len(), 1, "one card, as before");
    // A PIN check must write the retry counter before the TPM sees the PIN: on a full
    // disk it refuses rather than try uncounted.
    let out = cli.check_pin("f", DEFAULT_PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("No space left"), "{out:#?}");
    std::fs::remove_file(&filler).expect("freeing the disk");
    cli.check_pin("f", DEFAULT_PIN)
        .ok("the card works as before the failed format");
    cli.tpmvsc_stdin(
        &["format", "f", "--puk", "--stdin", "--yes"],
        "12345678\nFull-disk-1\nFull-disk-1\n",
    )
    .ok("format once there is room");
    cli.check_pin("f", "Full-disk-1").ok("the formatted card");
}
