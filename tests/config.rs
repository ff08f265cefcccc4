//! Settings without environment variables: `/etc/tpmvsc/tpmvsc.conf` (here
//! `TPMVSC_CONFIG_DIR`) and the user's `$XDG_CONFIG_HOME/tpmvsc/tpmvsc.conf` name the
//! TPM, the store and the lock directory for every process — a daemon that passes no
//! environment on included; the environment overrides them; an untrustworthy or
//! malformed file is refused by name; `tpm status` and `info` say where each value came
//! from. And the machine's simulator (`simulator start --system`), which writes the
//! system file so that every process uses it, reachable by the `tss` group only.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

/// `tpmvsc ARGS` with nothing in its environment but PATH and `env`: a daemon's child.
fn bare(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tpmvsc"));
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TSS2_LOG", "all+NONE");
    for (k, v) in env {
        c.env(k, v);
    }
    run_output(c, CLI_TIMEOUT)
}

/// A configuration file at `dir/tpmvsc.conf` (dir made 0755, file 0644).
fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("the configuration directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let f = dir.join("tpmvsc.conf");
    std::fs::write(&f, text).expect("writing the configuration file");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod file");
    f
}

#[test]
fn a_process_without_the_environment_finds_the_tpm_and_the_cards_through_the_system_file() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_card(&cli, "c");
    let etc = store.config_dir();
    let lock_dir = tpmvsc::tpm::lock_dir();
    let file = write_config(
        &etc,
        &format!(
            "# the test's machine\ntcti = \"{}\"\nstore = \"{}\"\nlock_dir = \"{}\"\ntpm_wait = 20\n",
            swtpm.tcti(),
            store.path().display(),
            lock_dir.display()
        ),
    );
    let etc_s = etc.to_str().expect("utf-8");
    let env = [("TPMVSC_CONFIG_DIR", etc_s)];
    let list = bare(&["list", "--json"], &env).ok("list with only the system file");
    let cards = list.json();
    assert_eq!(cards.as_array().map(Vec::len), Some(1), "{cards:#}");
    assert_eq!(cards[0]["name"], "c");
    let mut c = Command::new(env!("CARGO_BIN_EXE_tpmvsc"));
    c.args(["check-pin", "c", "--stdin"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TPMVSC_CONFIG_DIR", etc_s)
        .env("TSS2_LOG", "all+NONE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("check-pin");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{DEFAULT_PIN}\n").as_bytes())
        .expect("the PIN");
    let out = child.wait_with_output().expect("check-pin");
    assert!(
        out.status.success(),
        "check-pin through the file's TPM: {out:?}"
    );

    // Where each setting came from, in text and JSON.
    let status = bare(&["tpm", "status"], &env).ok("tpm status");
    let from = file.display().to_string();
    for key in ["tcti", "store", "lock_dir", "tpm_wait"] {
        assert!(
            status
                .stdout
                .lines()
                .any(|l| l.trim_start().starts_with(key) && l.contains(&from)),
            "{key} from {from}: {}",
            status.stdout
        );
    }
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("lock_timeout") && l.contains("(default)")),
        "{}",
        status.stdout
    );
    let info = bare(&["info", "c", "--json"], &env)
        .ok("info --json")
        .json();
    assert_eq!(info["settings"]["tcti"]["value"], swtpm.tcti().as_str());
    assert_eq!(info["settings"]["tcti"]["source"], from.as_str());
    assert_eq!(info["settings"]["tpm_wait"]["value"], "20 s");
    let text = bare(&["info", "c"], &env).ok("info");
    assert!(
        text.stdout.contains("Settings (and where each came from)"),
        "{}",
        text.stdout
    );

    // The environment wins over the file.
    let other = store.scratch("other-store");
    let o = other.to_str().expect("utf-8");
    let env2 = [("TPMVSC_CONFIG_DIR", etc_s), ("TPMVSC_STORE", o)];
    let cards = bare(&["list", "--json"], &env2)
        .ok("list with TPMVSC_STORE")
        .json();
    assert_eq!(cards.as_array().map(Vec::len), Some(0), "{cards:#}");
    let info = bare(&["tpm", "status", "--json"], &env2)
        .ok("status --json")
        .json();
    assert_eq!(
        info["settings"]["store"]["source"],
        "environment TPMVSC_STORE"
    );

    // The user's file wins over the system's.
    let xdg = store.scratch("xdg");
    let user_file = write_config(&xdg.join("tpmvsc"), &format!("store = \"{o}\"\n"));
    let x = xdg.to_str().expect("utf-8");
    let env3 = [("TPMVSC_CONFIG_DIR", etc_s), ("XDG_CONFIG_HOME", x)];
    let st = bare(&["tpm", "status", "--json"], &env3)
        .ok("status with a user file")
        .json();
    assert_eq!(st["settings"]["store"]["value"], o);
    assert_eq!(
        st["settings"]["store"]["source"],
        user_file.display().to_string().as_str()
    );
    assert_eq!(
        st["settings"]["tcti"]["source"],
        from.as_str(),
        "the rest from the system"
    );
}

#[test]
fn an_untrustworthy_or_malformed_file_is_refused_by_name() {
    let store = TestStore::new();
    let etc = store.config_dir();
    let e = etc.to_str().expect("utf-8");
    let env = [
        ("TPMVSC_CONFIG_DIR", e),
        ("TPMVSC_STORE", "/nonexistent-store"),
    ];
    let file = write_config(&etc, "tcti = \"device:/dev/tpmrm0\"\n");
    let name = file.display().to_string();
    // Writable by others: another user could point every process at their TPM.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = bare(&["list"], &env).expect_code(1, "a world-writable file");
    assert!(
        out.stderr.contains(&name) && out.stderr.contains("refusing to read it"),
        "{}",
        out.stderr
    );
    // Someone else's file.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::os::unix::fs::chown(&file, Some(4_000_123), None).expect("chown");
    let out = bare(&["list"], &env).expect_code(1, "another user's file");
    assert!(out.stderr.contains("uid 4000123"), "{}", out.stderr);
    std::os::unix::fs::chown(&file, Some(0), None).expect("chown back");
    // A group-writable directory.
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let out = bare(&["list"], &env).expect_code(1, "a group-writable directory");
    assert!(
        out.stderr.contains("group or others can write it"),
        "{}",
        out.stderr
    );
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Malformed content: an unknown key, a wrong type, a relative path, a zero wait.
    for (text, says) in [
        ("tcit = \"x\"\n", "unknown field"),
        ("tpm_wait = \"soon\"\n", "invalid type"),
        ("store = \"cards\"\n", "not an absolute path"),
        ("lock_timeout = 0\n", "is not a wait"),
        ("tcti = \"\"\n", "tcti is empty"),
    ] {
        write_config(&etc, text);
        let out = bare(&["list"], &env).expect_code(1, text);
        assert!(
            out.stderr.contains(&format!("configuration file {name}")) && out.stderr.contains(says),
            "{text}: {}",
            out.stderr
        );
    }
    // A link is not followed.
    std::fs::remove_file(&file).expect("rm");
    let real = store.scratch("real.conf");
    std::fs::write(&real, "tcti = \"device:/dev/tpmrm0\"\n").expect("write");
    std::os::unix::fs::symlink(&real, &file).expect("symlink");
    let out = bare(&["list"], &env).expect_code(1, "a symbolic link");
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
}

/// The gid of the `tss` group.
fn tss_gid() -> u32 {
    std::fs::read_to_string("/etc/group")
        .expect("/etc/group")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"tss")).then(|| f[2].parse().ok())?
        })
        .expect("a tss group (libtss2 packages make it)")
}

#[test]
fn the_system_simulator_serves_every_process_of_the_tss_group_and_nobody_else() {
    if !rustix_is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root"
        );
        return;
    }
    let store = TestStore::new();
    let mut user = OtherUser::new();
    // A base every user can traverse, holding the "machine's" /etc and /run.
    let base = user.base().to_path_buf();
    let etc = base.join("etc");
    let run = base.join("run");
    for d in [&etc, &run] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let (e, r) = (etc.to_str().expect("utf-8"), run.to_str().expect("utf-8"));
    let st_path = store.path();
    let s = st_path.to_str().expect("utf-8");
    let root_env = [("TPMVSC_CONFIG_DIR", e), ("TPMVSC_STORE", s)];
    let start_env = [
        ("TPMVSC_CONFIG_DIR", e),
        ("TPMVSC_STORE", s),
        ("TPMVSC_LOCK_DIR", r),
    ];
    // Stopped whatever happens below.
    struct Stop<'a>(&'a [(&'a str, &'a str)]);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = bare(&["simulator", "stop", "--system"], self.0);
        }
    }
    let _stop = Stop(&start_env);

    // Another file there is the administrator's: left alone, and start refuses.
    let conf = etc.join("tpmvsc.conf");
    write_config(&etc, "tcti = \"device:/dev/tpmrm0\"\n");
    let out =
        bare(&["simulator", "start", "--system"], &start_env).expect_code(1, "a foreign file");
    assert!(
        out.stderr.contains("was not written by the simulator"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&conf).expect("rm");

    let out = bare(&["simulator", "start", "--system"], &start_env).ok("simulator start --system");
    assert!(
        out.stdout.trim().is_empty(),
        "nothing to export: {}",
        out.stdout
    );
    let text = std::fs::read_to_string(&conf).expect("the system file");
    assert!(
        text.starts_with("# Written by `tpmvsc simulator start --system`"),
        "{text}"
    );
    let sock_dir = run.join("simulator");
    let socket = sock_dir.join("swtpm.sock");
    assert!(
        text.contains(&format!("tcti = \"swtpm:path={}\"", socket.display())),
        "{text}"
    );
    let tss = tss_gid();
    let md = std::fs::metadata(&sock_dir).expect("socket directory");
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (0, tss, 0o750),
        "{}",
        sock_dir.display()
    );
    for sk in [socket.clone(), sock_dir.join("swtpm.sock.ctrl")] {
        let md = std::fs::symlink_metadata(&sk).expect("socket");
        assert_eq!(
            (md.gid(), md.mode() & 0o777),
            (tss, 0o660),
            "{}",
            sk.display()
        );
    }
    assert!(std::fs::metadata(&conf).expect("file").mode() & 0o777 == 0o644);

    // Root makes a card with no TCTI anywhere but the file: a simulated one.
    let c = bare(&["create", "--name", "sys", "--json"], &root_env)
        .ok("create via the file")
        .json();
    assert_eq!(c["simulated"], true, "{c:#}");
    bare(&["tpm", "status"], &root_env).ok("root's tpm status");

    // A member of tss reaches it with nothing but the file; another user does not, and
    // is told why.
    let user_env = [("TPMVSC_CONFIG_DIR", e)];
    user.set_groups(&[tss]);
    let ok = user.tpmvsc(&["tpm", "status"], &user_env);
    assert_eq!(ok.code, 0, "a tss member: {ok:#?}");
    assert!(ok.stdout.contains("SIMULATED"), "{}", ok.stdout);
    user.set_groups(&[]);
    let no = user.tpmvsc(&["tpm", "status"], &user_env);
    assert_eq!(no.code, 1, "{no:#?}");
    assert!(
        no.stderr.contains("Permission denied") || no.stderr.contains("may not open"),
        "{}",
        no.stderr
    );

    // Stop: the process and the file go.
    bare(&["simulator", "stop", "--system"], &start_env).ok("simulator stop --system");
    assert!(!conf.exists(), "the system file is removed");
    let st = bare(&["simulator", "status", "--system", "--json"], &start_env)
        .ok("status")
        .json();
    assert_eq!(st["running"], false, "{st:#}");
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
#[allow(unsafe_code)]
fn the_module_in_a_process_without_the_environment_shows_the_card_the_file_names() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    create_card(&cli, "c");
    let etc = store.config_dir();
    write_config(
        &etc,
        &format!(
            "tcti = \"{}\"\nstore = \"{}\"\nlock_dir = \"{}\"\n",
            swtpm.tcti(),
            store.path().display(),
            tpmvsc::tpm::lock_dir().display()
        ),
    );
    // SAFETY: one process per test (nextest); no other thread runs yet, and the module is
    // not loaded.
    unsafe {
        for var in [
            "TPMVSC_TCTI",
            "TPMVSC_STORE",
            "TPMVSC_LOCK_DIR",
            "TPMVSC_TPM_WAIT",
        ] {
            std::env::remove_var(var);
        }
        std::env::set_var("TPMVSC_CONFIG_DIR", &etc);
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    let p = p11_load();
    let slots = p.get_slots_with_token().expect("C_GetSlotList");
    assert_eq!(slots.len(), 1, "the card of the file's store");
    let info = p.get_token_info(slots[0]).expect("C_GetTokenInfo");
    assert_eq!(info.label().trim(), "c");
    let s = p11_user_session(&p);
    s.generate_random_vec(8).expect("the file's TPM answers");
}
