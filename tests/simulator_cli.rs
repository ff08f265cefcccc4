//! `tpmvsc simulator start|status|env|stop`: a swtpm under the store, on loopback only,
//! with persistent state.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use common::*;

/// Stops the store's simulator however the test ends.
struct StopGuard<'a> {
    cli: &'a Cli,
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cli.tpmvsc(&["simulator", "stop"]);
    }
}

fn started_tcti(out: &Output) -> String {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("export TPMVSC_TCTI="))
        .unwrap_or_else(|| panic!("no export line: {out:#?}"));
    let tcti = line
        .trim_start_matches("export TPMVSC_TCTI=")
        .trim()
        .to_string();
    assert!(tcti.starts_with("swtpm:path="), "{tcti}");
    tcti
}

/// The unix socket of a `swtpm:path=` TCTI.
fn socket_of(tcti: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(tcti.trim_start_matches("swtpm:path="))
}

/// The TCP sockets process `pid` listens on, from `ss -ltnp`.
fn tcp_listeners_of(pid: i64) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-ltnpH"])
        .output()
        .expect("running ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_simulator_listens_on_a_private_unix_socket_keeps_its_state_and_stops() {
    let store = TestStore::new();
    // The TCTI here is only a placeholder: `simulator` commands do not use it.
    let sim = Cli::new(&store, "device:/dev/does-not-exist");
    let _guard = StopGuard { cli: &sim };

    let out = sim.tpmvsc(&["simulator", "start"]).ok("simulator start");
    let tcti = started_tcti(&out);
    let socket = socket_of(&tcti);

    let st = sim
        .tpmvsc(&["simulator", "status", "--json"])
        .ok("status")
        .json();
    assert_eq!(st["running"], true, "{st:#?}");
    assert_eq!(st["tcti"], tcti.as_str());
    let env = sim.tpmvsc(&["simulator", "env"]).ok("env");
    assert_eq!(env.stdout.trim(), format!("export TPMVSC_TCTI={tcti}"));

    // It listens on unix sockets in the 0700 state directory, on no TCP port at all:
    // swtpm's control channel would hand any local user the TPM's state.
    let state = store.path().join("simulator");
    assert_eq!(socket.parent(), Some(state.as_path()), "{tcti}");
    for s in [socket.clone(), socket.with_extension("sock.ctrl")] {
        let md = std::fs::symlink_metadata(&s).unwrap_or_else(|e| panic!("{}: {e}", s.display()));
        assert!(md.file_type().is_socket(), "{} is a socket", s.display());
        assert_eq!(md.permissions().mode() & 0o777, 0o600, "{}", s.display());
    }
    if require_tool("ss") {
        let pid = st["pid"].as_i64().expect("the simulator's pid");
        let tcp = tcp_listeners_of(pid);
        assert!(tcp.is_empty(), "the simulator listens on TCP: {tcp:?}");
    }
    let mode = std::fs::metadata(&state)
        .expect("simulator dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "{state:?} mode {mode:o}");

    let cli = Cli::new(&store, &tcti);
    let c = create_card(&cli, "sim");
    assert_eq!(c["simulated"], true);
    check_pin(&store, &tcti, "sim", DEFAULT_PIN).expect("PIN on the simulator");

    let out = sim.tpmvsc(&["simulator", "stop"]).ok("stop");
    assert!(out.stdout.contains("stopped"), "{out:#?}");
    let st = sim
        .tpmvsc(&["simulator", "status", "--json"])
        .ok("status after stop")
        .json();
    assert_eq!(st["running"], false, "{st:#?}");
    sim.tpmvsc(&["simulator", "env"])
        .expect_code(1, "env when stopped");

    let out = sim.tpmvsc(&["simulator", "start"]).ok("second start");
    let tcti2 = started_tcti(&out);
    check_pin(&store, &tcti2, "sim", DEFAULT_PIN).expect("PIN after a simulator restart");
    assert_eq!(
        check_pin(&store, &tcti2, "sim", "wrong-pin"),
        Err(tpmvsc::tpm::TpmError::AuthFail)
    );
    // A second start finds it running.
    let again = sim
        .tpmvsc(&["simulator", "start"])
        .ok("start while running");
    assert_eq!(started_tcti(&again), tcti2);
}

#[test]
fn stop_says_the_truth_when_nothing_runs() {
    let store = TestStore::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tpmvsc"))
        .args(["simulator", "stop"])
        .env("TPMVSC_STORE", store.path())
        .output()
        .expect("tpmvsc simulator stop");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("No simulated TPM was running") && !stdout.contains("stopped ("),
        "{stdout}"
    );
}

/// An ordinary user's PATH has no sbin directory; system daemons are found there anyway,
/// and the simulator starts and stops with such a PATH.
#[test]
fn system_daemons_are_found_without_sbin_on_path() {
    let user_path = "/root/.cargo/bin:/usr/local/bin:/usr/bin:/bin";
    if require_tool("tpm2-abrmd") {
        let found = tpmvsc::simulator::find_program_in(user_path.as_ref(), "tpm2-abrmd")
            .expect("tpm2-abrmd found outside PATH");
        assert!(
            found.starts_with("/usr/sbin") || found.starts_with("/sbin"),
            "{found:?}"
        );
    }
    assert_eq!(
        tpmvsc::simulator::find_program_in(user_path.as_ref(), "no-such-program-here"),
        None
    );
    let store = TestStore::new();
    let sim = Cli::new(&store, "device:/dev/does-not-exist").with_env("PATH", user_path);
    let _guard = StopGuard { cli: &sim };
    sim.tpmvsc(&["simulator", "start"])
        .ok("simulator start with a user's PATH");
    let st = sim
        .tpmvsc(&["simulator", "status", "--json"])
        .ok("status")
        .json();
    assert_eq!(st["running"], true, "{st:#?}");
    let out = sim.tpmvsc(&["simulator", "stop"]).ok("simulator stop");
    assert!(
        out.stdout.contains("stopped") || out.stderr.contains("stopped"),
        "{out:#?}"
    );
}
