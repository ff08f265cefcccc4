//! `tpmvsc create` killed with SIGKILL at any point leaves either no card or a complete,
//! usable one; the next create cleans the leftovers.

mod common;

use std::time::Duration;

use common::*;

const ITERATIONS: u64 = 30;

fn jitter_micros() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    u64::from(u16::from_le_bytes(b)) % 2000
}

#[test]
fn a_create_killed_at_any_point_leaves_no_card_or_a_usable_one() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    // How long one whole create takes here: the kill delays are spread over 0-80 ms, or
    // over a little more than one create when that is shorter, so most kills land mid-way.
    let started = std::time::Instant::now();
    create_card(&cli, "timing");
    let full = started.elapsed();
    cli.tpmvsc(&["destroy", "timing", "--yes"])
        .ok("destroying the timing card");
    let span = u64::try_from((full * 5 / 4).as_micros())
        .unwrap_or(80_000)
        .clamp(10_000, 80_000);
    eprintln!("one create takes {full:?}; kill delays spread over 0-{span} us");
    let mut survived = 0;
    for i in 0..ITERATIONS {
        let delay = Duration::from_micros(i * span / (ITERATIONS - 1) + jitter_micros());
        let name = format!("crash{i}");
        let mut child = cli.spawn_tpmvsc(&["create", "--name", &name]);
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("reaping the killed create");

        let cards = list_json(&cli);
        for c in &cards {
            let state = c["state"].as_str().unwrap_or("");
            assert!(
                !state.starts_with("damaged"),
                "iteration {i} (delay {delay:?}, {status}): damaged card listed: {c:#?}"
            );
            let n = c["name"].as_str().expect("name");
            check_pin(&store, &swtpm.tcti(), n, DEFAULT_PIN).unwrap_or_else(|e| {
                panic!("iteration {i} (delay {delay:?}): card {n} unusable: {e}")
            });
        }
        assert!(cards.len() <= 1, "iteration {i}: {cards:#?}");
        if let Some(c) = cards.first() {
            assert_eq!(c["name"], name.as_str());
            survived += 1;
            cli.tpmvsc(&["destroy", &name, "--yes"])
                .ok("destroying the survivor");
        }
    }
    eprintln!("{survived} of {ITERATIONS} killed creates had finished");

    create_card(&cli, "final");
    check_pin(&store, &swtpm.tcti(), "final", DEFAULT_PIN).expect("the final card works");
    let leftovers: Vec<_> = std::fs::read_dir(store.cards_dir())
        .expect("cards dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".new-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "leftovers after the final create: {leftovers:?}"
    );
}
