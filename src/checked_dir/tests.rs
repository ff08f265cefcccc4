//! Unit tests of `checked_dir`.

use super::*;
use std::os::unix::fs::{PermissionsExt, symlink};

fn tmp() -> (tempfile::TempDir, CheckedDir) {
    let t = tempfile::tempdir().unwrap();
    let d = CheckedDir::open(t.path(), "test directory", DirRule::Store)
        .unwrap()
        .unwrap();
    (t, d)
}

#[test]
fn a_planted_link_at_the_temporary_name_is_skipped_and_its_target_unchanged() {
    let (t, d) = tmp();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // The attacker knows (or guesses) the first name; the second is free.
    symlink(&victim, t.path().join(".rec.json.tmp-aaaa")).unwrap();
    let mut names = ["aaaa", "bbbb"].into_iter().map(|s| Ok(s.to_string()));
    let (tmp, mut f) =
        create_temp(d.fd.as_fd(), d.path(), "rec.json", || names.next().unwrap()).unwrap();
    assert_eq!(tmp, ".rec.json.tmp-bbbb");
    f.write_all(b"new").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // Only planted names: the write fails and says why, still without following.
    let e = create_temp(d.fd.as_fd(), d.path(), "rec.json", || Ok("aaaa".into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("temporary names") && e.contains("rec.json"),
        "{e}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn an_atomic_write_replaces_a_link_instead_of_writing_through_it() {
    let (t, d) = tmp();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    symlink(&victim, t.path().join("rec.json")).unwrap();
    d.write_atomic("rec.json", b"{}", true).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(d.read("rec.json", 10).unwrap(), b"{}");
    let left: Vec<_> = d.entries().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
}

#[test]
fn reads_refuse_links_devices_fifos_and_oversized_files_by_name() {
    let (t, d) = tmp();
    symlink("/dev/zero", t.path().join("zero.json")).unwrap();
    let e = d.read("zero.json", 100).unwrap_err().to_string();
    assert!(
        e.contains("zero.json") && e.contains("symbolic link"),
        "{e}"
    );
    rustix::fs::mkfifoat(d.fd.as_fd(), "fifo.json", Mode::RUSR | Mode::WUSR).unwrap();
    let e = d.read("fifo.json", 100).unwrap_err().to_string();
    assert!(e.contains("fifo.json") && e.contains("FIFO"), "{e}");
    std::fs::write(t.path().join("big.json"), vec![b' '; 101]).unwrap();
    let e = d.read("big.json", 100).unwrap_err().to_string();
    assert!(e.contains("big.json") && e.contains("100 bytes"), "{e}");
    assert_eq!(d.read("big.json", 101).unwrap().len(), 101);
    assert!(d.read_if_exists("missing", 1).unwrap().is_none());
    let e = d.read("missing", 1).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn a_directory_others_can_write_or_a_link_to_one_is_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    let open = t.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = CheckedDir::open(&open, "lock directory", DirRule::Lock)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("open") && e.contains("0777") && e.contains("lock directory"),
        "{e}"
    );
    let link = t.path().join("link");
    symlink(t.path(), &link).unwrap();
    let e = CheckedDir::open(&link, "card store", DirRule::Store)
        .unwrap_err()
        .to_string();
    assert!(e.contains("link") && e.contains("symbolic link"), "{e}");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o750)).unwrap();
    let e = CheckedDir::open(&open, "runtime directory", DirRule::Private)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0750"), "{e}");
    assert!(CheckedDir::open(&open, "card store", DirRule::Store).is_ok());
}

#[test]
fn missing_parents_are_created_private() {
    let t = tempfile::tempdir().unwrap();
    let deep = t.path().join("a/b/c");
    let d = CheckedDir::create(&deep, "card store", DirRule::Store).unwrap();
    for p in [t.path().join("a"), t.path().join("a/b"), deep] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", p.display());
    }
    drop(d);
}

#[test]
fn a_tree_is_removed_without_following_links_out_of_it() {
    let (t, d) = tmp();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"x").unwrap();
    std::fs::create_dir_all(t.path().join("doomed/sub")).unwrap();
    std::fs::write(t.path().join("doomed/sub/f"), b"x").unwrap();
    symlink(&outside, t.path().join("doomed/link")).unwrap();
    d.remove_tree("doomed").unwrap();
    assert!(!t.path().join("doomed").exists());
    assert!(outside.join("keep").exists());
    d.remove_tree("doomed").unwrap();
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(human_size(64 * 1024), "64 KiB");
    assert_eq!(human_size(1 << 20), "1 MiB");
    assert_eq!(human_size(100), "100 bytes");
}
