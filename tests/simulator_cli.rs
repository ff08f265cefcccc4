//! `tpmvsc simulator start|status|env|stop`: a swtpm under the store, on loopback only,
//! with persistent state.

mod common;

use std::os::unix::fs::PermissionsExt;

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
    assert!(tcti.starts_with("swtpm:host=127.0.0.1,port="), "{tcti}");
    tcti
}

fn port_of(tcti: &str) -> u16 {
    tcti.rsplit('=')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in the TCTI")
}

/// Local addresses of listening TCP sockets on `port`, from `ss -ltn`.
fn listeners(port: u16) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH"])
        .output()
        .expect("running ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .filter(|a| a.rsplit(':').next() == Some(port.to_string().as_str()))
        .collect()
}

#[test]
fn the_simulator_starts_on_loopback_keeps_its_state_and_stops() {
    let store = TestStore::new();
    // The TCTI here is only a placeholder: `simulator` commands do not use it.
    let sim = Cli::new(&store, "device:/dev/does-not-exist");
    let _guard = StopGuard { cli: &sim };

    let out = sim.tpmvsc(&["simulator", "start"]).ok("simulator start");
    let tcti = started_tcti(&out);
    let port = port_of(&tcti);

    let st = sim
        .tpmvsc(&["simulator", "status", "--json"])
        .ok("status")
        .json();
    assert_eq!(st["running"], true, "{st:#?}");
    assert_eq!(st["tcti"], tcti.as_str());
    let env = sim.tpmvsc(&["simulator", "env"]).ok("env");
    assert_eq!(env.stdout.trim(), format!("export TPMVSC_TCTI={tcti}"));

    // Both ports listen, on 127.0.0.1 only.
    if require_tool("ss") {
        for p in [port, port + 1] {
            let l = listeners(p);
            assert!(!l.is_empty(), "port {p} listens");
            assert!(
                l.iter().all(|a| a == &format!("127.0.0.1:{p}")),
                "port {p} only on loopback: {l:?}"
            );
        }
    }
    let state = store.path().join("simulator");
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
