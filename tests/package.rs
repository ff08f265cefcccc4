//! The Debian package (`scripts/package.sh`, run by the README's test command before the
//! tests): installed with `dpkg -i` on this machine, it gives working binaries on PATH,
//! man pages, a module p11-kit lists, and the README's commands with no `target/`
//! path; `dpkg -r` then leaves nothing of it in /usr. It needs root (CI runs as root) and
//! refuses to touch a tpmvsc package installed before the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The package `scripts/package.sh` built for this version.
fn package() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "target/debian/tpmvsc_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        p.is_file(),
        "{} is missing: the README's test command builds it (bash scripts/package.sh)",
        p.display()
    );
    p
}

fn run(program: &str, args: &[&str]) -> Output {
    let mut c = Command::new(program);
    c.args(args).env("TSS2_LOG", "all+NONE");
    run_output(c, CLIENT_TIMEOUT)
}

/// Removes the package when the test ends, whatever happened.
struct Removed;

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-r", "tpmvsc"]).output();
    }
}

#[test]
fn the_package_installs_works_as_the_readme_says_and_removes_cleanly() {
    assert!(
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0),
        "dpkg -i needs root (CI runs the tests as root)"
    );
    let deb = package();
    let _machine = machine_lock(true);
    let before = run("dpkg-query", &["-W", "-f", "${Status}", "tpmvsc"]);
    assert!(
        !before.stdout.contains("install ok installed"),
        "a tpmvsc package is installed already; this test would replace and remove it"
    );
    let files: Vec<PathBuf> = run("dpkg-deb", &["-c", deb.to_str().expect("utf-8")])
        .ok("dpkg-deb -c")
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| PathBuf::from(p.trim_start_matches('.')))
        .filter(|p| !p.as_os_str().is_empty() && p != Path::new("/"))
        .collect();
    assert!(
        files.iter().any(|f| f == Path::new("/usr/bin/tpmvsc")),
        "{files:?}"
    );

    let _removed = Removed;
    run("dpkg", &["-i", deb.to_str().expect("utf-8")]).ok("dpkg -i");
    for f in [
        "/usr/bin/tpmvsc",
        "/usr/bin/tpmvscmgr",
        "/usr/lib/x86_64-linux-gnu/pkcs11/libtpmvsc.so",
        "/usr/share/p11-kit/modules/tpmvsc.module",
        "/usr/lib/tmpfiles.d/tpmvsc.conf",
        "/usr/share/bash-completion/completions/tpmvsc",
    ] {
        assert!(Path::new(f).is_file(), "{f} installed");
    }
    let help = run("/usr/bin/tpmvsc", &["--help"]).ok("tpmvsc --help");
    assert!(help.stdout.contains("Usage: tpmvsc"), "{}", help.stdout);
    run("/usr/bin/tpmvscmgr", &["/?"]).ok("tpmvscmgr /?");
    for page in ["tpmvsc", "tpmvscmgr", "tpmvsc-create"] {
        let m = run("man", &["-w", page]).ok(&format!("man -w {page}"));
        assert!(
            m.stdout.trim() == format!("/usr/share/man/man1/{page}.1.gz"),
            "{page}: {}",
            m.stdout
        );
    }
    let page = run("man", &["-P", "cat", "tpmvsc-create"]).ok("man tpmvsc-create");
    assert!(
        page.stdout.contains("--pin-policy"),
        "the page describes the options"
    );
    let modules = run("p11-kit", &["list-modules"]).ok("p11-kit list-modules");
    assert!(
        modules.stdout.contains("tpmvsc") && modules.stdout.contains("TPM virtual smart card"),
        "p11-kit lists the module: {}",
        modules.stdout
    );
    assert!(
        !modules.stderr.contains("tpmvsc"),
        "the module prints nothing in p11-kit: {}",
        modules.stderr
    );

    // The README's commands, as printed: `tpmvsc` from PATH, the module by its installed
    // path, on a simulator and a store of this test's own.
    let store = TestStore::new();
    let s = store.path();
    let s = s.to_str().expect("utf-8");
    let tpmvsc = |args: &[&str]| {
        let mut c = Command::new("tpmvsc");
        c.args(args)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TPMVSC_STORE", s)
            .env("TSS2_LOG", "all+NONE");
        run_output(c, CLIENT_TIMEOUT)
    };
    let started = tpmvsc(&["simulator", "start"]).ok("tpmvsc simulator start");
    let tcti = started
        .stdout
        .trim()
        .strip_prefix("export TPMVSC_TCTI=")
        .expect("the export line")
        .to_string();
    struct Stop<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["simulator", "stop"]);
        }
    }
    let _stop = Stop(&tpmvsc);
    let with_tcti = |args: &[&str]| {
        let mut c = Command::new("tpmvsc");
        c.args(args)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TPMVSC_STORE", s)
            .env("TPMVSC_TCTI", &tcti)
            .env("TSS2_LOG", "all+NONE");
        run_output(c, CLIENT_TIMEOUT)
    };
    with_tcti(&["create", "--name", "work", "--puk", "default"]).ok("tpmvsc create");
    with_tcti(&["list"]).ok("tpmvsc list");
    if require_tool("pkcs11-tool") {
        let mut c = Command::new("pkcs11-tool");
        c.args([
            "--module",
            "/usr/lib/x86_64-linux-gnu/pkcs11/libtpmvsc.so",
            "-L",
        ])
        .env("TPMVSC_STORE", s)
        .env("TPMVSC_TCTI", &tcti)
        .env("TSS2_LOG", "all+NONE");
        let l = run_output(c, CLIENT_TIMEOUT);
        assert!(
            l.code == 0 && l.stdout.contains("work"),
            "pkcs11-tool -L: {l:#?}"
        );
    }
    drop(_stop);

    run("dpkg", &["-r", "tpmvsc"]).ok("dpkg -r");
    let left: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.starts_with("/usr") && f.symlink_metadata().is_ok_and(|m| !m.is_dir()))
        .collect();
    assert!(left.is_empty(), "dpkg -r left {left:?}");
    let after = run("dpkg-query", &["-W", "-f", "${Status}", "tpmvsc"]);
    assert!(!after.stdout.contains("installed"), "{}", after.stdout);
}
