//! DESIGN.md §2, revocation: after `format` or `destroy` the TPM itself refuses every old
//! copy of a card's files. Each card has an NV counter; its guard key (the CSK's parent)
//! authorizes nothing unless the counter is at most the value the guard was made for, and
//! format and destroy move the counter on. Tried as an attacker with write access to the
//! store and the TPM's empty owner authorization would: whole old copies put back,
//! the counter undefined and defined again, the guard bypassed with tpm2-tools, and
//! formats killed at every point.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tpmvsc::card::{CARD_FILE, CardRecord, GUARD_FILE};
use tpmvsc::tpm::{Tpm, TpmError, templates::UserKeyKind};

const PIN: &str = "Revoke-pin-1234";
const NEW_PIN: &str = "Revoke-pin-5678";
const FORMAT_PIN: &str = "Revoke-pin-9012";
const PUK: &str = "Revoke-puk-3456";

/// A card with PIN and PUK.
fn create(cli: &Cli, name: &str) {
    cli.tpmvsc_stdin(
        &[
            "create", "--name", name, "--pin", "prompt", "--puk", "prompt", "--stdin",
        ],
        &format!("{PIN}\n{PUK}\n"),
    )
    .ok("create a card with PIN and PUK");
}

/// Copies every file of a card directory (what an attacker keeps).
fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(to)
        .expect("creating the copy's directory");
    for e in std::fs::read_dir(from).expect("reading the card directory") {
        let e = e.expect("directory entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copying a card file");
    }
}

/// Replaces every file of `dir` with the copy's.
fn restore(copy: &Path, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    copy_dir(copy, dir);
}

fn record_of(dir: &Path) -> CardRecord {
    serde_json::from_value(read_json(&dir.join(CARD_FILE))).expect("card.json")
}

/// The library's own PIN check on the keys the files in `dir` describe (what an attacker
/// with the library and the old PIN would run).
fn check_copy(tcti: &str, dir: &Path, pin: &str) -> Result<(), TpmError> {
    let record = record_of(dir);
    let store = tpmvsc::store::Store::at(dir.parent().and_then(Path::parent).expect("store"));
    let card = store
        .card(&record.card_id)
        .unwrap_or_else(|| panic!("{} is not a card directory", dir.display()));
    let keys = tpmvsc::provision::pin::read_keys(&card, &record).expect("the copy's keys");
    let mut tpm = Tpm::open_tcti(tcti)?;
    tpm.use_srk(&record.srk)?;
    tpm.check_pin(
        keys.csk_ref(),
        &tpmvsc::card::pin_auth(&record.pin_salt, pin.as_bytes()),
    )
}

fn tool(tool: &str, swtpm: &Swtpm, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .arg("-T")
        .arg(swtpm.tcti())
        .args(args)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"))
}

#[test]
fn an_old_copy_is_refused_by_the_tpm_after_format() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 600, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    create(&cli, "r");
    let dir = card_dir(&cli, "r");
    let before_pin_change = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, before_pin_change.path());

    // A PIN change keeps the card storage key: an old copy plus the old PIN keeps
    // working until format (the documented limit).
    cli.tpmvsc_stdin(
        &["change-pin", "r", "--stdin"],
        &format!("{PIN}\n{NEW_PIN}\n{NEW_PIN}\n"),
    )
    .ok("change-pin");
    let current = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, current.path());
    restore(before_pin_change.path(), &dir);
    cli.check_pin("r", PIN)
        .ok("a copy from before the PIN change opens with the old PIN");
    restore(current.path(), &dir);
    cli.check_pin("r", NEW_PIN).ok("the current card");

    // A key on the card before the format.
    let (old_key, _) = {
        let record = record_of(&dir);
        let card = store.store().card(&record.card_id).expect("card");
        let keys = tpmvsc::provision::pin::read_keys(&card, &record).expect("keys");
        let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("TPM");
        tpm.use_srk(&record.srk).expect("SRK");
        let auth = tpmvsc::card::pin_auth(&record.pin_salt, NEW_PIN.as_bytes());
        tpm.create_user_key(keys.csk_ref(), &auth, UserKeyKind::EccP256)
            .expect("a key under the card")
    };
    let before_format = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, before_format.path());
    let counter = record_of(&dir).counter.expect("the card has a counter");

    cli.tpmvsc_stdin(
        &["format", "r", "--puk", "--stdin", "--yes"],
        &format!("{PUK}\n{FORMAT_PIN}\n{FORMAT_PIN}\n"),
    )
    .ok("format --puk");
    let formatted = record_of(&dir).counter.expect("counter after format");
    assert_eq!(
        formatted.index, counter.index,
        "format keeps the card's counter"
    );
    assert!(
        formatted.bound > counter.bound,
        "format moved the counter on: {counter:?} -> {formatted:?}"
    );
    cli.check_pin("r", FORMAT_PIN).ok("the formatted card");
    let after_format = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, after_format.path());

    // The attacker puts the whole old copy back and uses the old PIN.
    let da_before = da_counter(&swtpm.tcti());
    restore(before_format.path(), &dir);
    let out = cli.check_pin("r", NEW_PIN);
    assert_eq!(out.code, 1, "the old copy after format: {out:#?}");
    assert!(out.stderr.contains("revoked"), "{out:#?}");
    assert_eq!(
        check_copy(&swtpm.tcti(), &dir, NEW_PIN),
        Err(TpmError::Revoked),
        "the TPM refuses the old guard's policy (PolicyNV), whatever the software does"
    );
    for pin in [PIN, "Wrong-pin-0000"] {
        assert_eq!(
            check_copy(&swtpm.tcti(), &dir, pin),
            Err(TpmError::Revoked),
            "no PIN is even tried on a revoked copy ({pin})"
        );
    }
    assert_eq!(
        da_counter(&swtpm.tcti()),
        da_before,
        "no authorization reached the TPM: the copy dies at the guard"
    );
    // Nor do its keys load.
    {
        let record = record_of(&dir);
        let card = store.store().card(&record.card_id).expect("card");
        let keys = tpmvsc::provision::pin::read_keys(&card, &record).expect("keys");
        let mut tpm = Tpm::open_tcti(&swtpm.tcti()).expect("TPM");
        tpm.use_srk(&record.srk).expect("SRK");
        let auth = tpmvsc::card::pin_auth(&record.pin_salt, NEW_PIN.as_bytes());
        assert_eq!(
            tpm.load_user_key(keys.csk_ref(), &auth, &old_key).err(),
            Some(TpmError::Revoked),
            "a key of the old card does not load"
        );
    }
    // The formatted card keeps working once its files are back.
    restore(after_format.path(), &dir);
    cli.check_pin("r", FORMAT_PIN)
        .ok("the formatted card after the attacker's files are gone");
}

#[test]
fn an_old_copy_stays_refused_after_destroy_even_when_the_counter_is_defined_again() {
    for t in ["tpm2_nvdefine", "tpm2_nvincrement", "tpm2_nvundefine"] {
        if !require_tool(t) {
            return;
        }
    }
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 600, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    create(&cli, "d");
    let dir = card_dir(&cli, "d");
    let copy = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, copy.path());
    let counter = record_of(&dir).counter.expect("counter");
    let index = format!("{:#x}", counter.index);

    cli.tpmvsc(&["destroy", "d", "--yes"]).ok("destroy");
    assert!(!dir.exists(), "the card's files are gone");
    assert!(
        !Tpm::open_tcti(&swtpm.tcti())
            .expect("TPM")
            .counter_exists(counter.index)
            .expect("reading the NV index"),
        "destroy freed the card's NV index"
    );

    // The attacker puts the copy back: the counter is gone, the card is refused.
    restore(copy.path(), &dir);
    let out = cli.check_pin("d", PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("counter"), "{out:#?}");

    // ... then defines the index again exactly as tpmvsc does (the empty owner
    // authorization allows it) and gives it a value. A counter starts above every value
    // any counter on the TPM held, so the old guard's bound never comes back.
    let def = tool(
        "tpm2_nvdefine",
        &swtpm,
        &[
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "nt=counter|ownerwrite|authread|no_da",
            &index,
        ],
    );
    assert!(def.status.success(), "{def:?}");
    let inc = tool("tpm2_nvincrement", &swtpm, &["-C", "o", &index]);
    assert!(inc.status.success(), "{inc:?}");
    assert_eq!(
        check_copy(&swtpm.tcti(), &dir, PIN),
        Err(TpmError::Revoked),
        "the redefined counter is past the old bound"
    );
    let out = cli.check_pin("d", PIN);
    assert!(out.stderr.contains("revoked"), "{out:#?}");
    assert_eq!(
        tool("tpm2_nvundefine", &swtpm, &["-C", "o", &index])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn undefining_a_live_cards_counter_kills_the_card_and_its_copies() {
    for t in ["tpm2_nvdefine", "tpm2_nvincrement", "tpm2_nvundefine"] {
        if !require_tool(t) {
            return;
        }
    }
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    create(&cli, "l");
    let dir = card_dir(&cli, "l");
    let index = format!("{:#x}", record_of(&dir).counter.expect("counter").index);
    // The documented denial of service: anyone with the owner authorization (empty on
    // most machines) can undefine the index; defining it again does not revive the card.
    assert!(
        tool("tpm2_nvundefine", &swtpm, &["-C", "o", &index])
            .status
            .success()
    );
    let out = cli.check_pin("l", PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("counter"), "{out:#?}");
    assert!(
        tool(
            "tpm2_nvdefine",
            &swtpm,
            &[
                "-C",
                "o",
                "-s",
                "8",
                "-a",
                "nt=counter|ownerwrite|authread|no_da",
                &index
            ]
        )
        .status
        .success()
    );
    assert!(
        tool("tpm2_nvincrement", &swtpm, &["-C", "o", &index])
            .status
            .success()
    );
    let out = cli.check_pin("l", PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("revoked"), "{out:#?}");
}

#[test]
fn the_guard_cannot_be_bypassed_with_its_empty_authorization() {
    for t in ["tpm2_load", "tpm2_flushcontext"] {
        if !require_tool(t) {
            return;
        }
    }
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::on(Swtpm::start_with_persistent_srk());
    create(&cli, "g");
    let dir = card_dir(&cli, "g");
    let work = tempfile::tempdir().expect("temp dir");
    // tpm2-tools' file formats: TPM2B_PUBLIC and TPM2B_PRIVATE (size-prefixed).
    let write_2b = |name: &str, hex_text: &str| {
        let bytes = hex::decode(hex_text).expect("hex");
        let mut out = u16::try_from(bytes.len())
            .expect("size")
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(&bytes);
        let p = work.path().join(name);
        std::fs::write(&p, out).expect("writing a tpm2-tools file");
        p.to_string_lossy().into_owned()
    };
    let guard = read_json(&dir.join(GUARD_FILE));
    let csk = read_json(&dir.join("csk.json"));
    let gpub = write_2b("g.pub", guard["blob"]["public"].as_str().expect("hex"));
    let gpriv = write_2b("g.priv", guard["blob"]["private"].as_str().expect("hex"));
    let cpub = write_2b("c.pub", csk["blob"]["public"].as_str().expect("hex"));
    let cpriv = write_2b("c.priv", csk["blob"]["private"].as_str().expect("hex"));
    let gctx = work.path().join("g.ctx").to_string_lossy().into_owned();
    let cctx = work.path().join("c.ctx").to_string_lossy().into_owned();
    let load_guard = tool(
        "tpm2_load",
        &swtpm,
        &["-C", "0x81000001", "-u", &gpub, "-r", &gpriv, "-c", &gctx],
    );
    assert!(load_guard.status.success(), "{load_guard:?}");
    // The guard's authValue is empty, but userWithAuth is clear: a password session
    // (what tpm2_load uses for the parent) does not authorize loading the CSK.
    let load_csk = tool(
        "tpm2_load",
        &swtpm,
        &["-C", &gctx, "-u", &cpub, "-r", &cpriv, "-c", &cctx],
    );
    assert!(
        !load_csk.status.success(),
        "the CSK loaded under the guard with a password session: {load_csk:?}"
    );
    let _ = tool("tpm2_flushcontext", &swtpm, &["-t"]);
    cli.check_pin("g", PIN).ok("the card itself is fine");
}

#[test]
fn a_format_killed_at_any_point_leaves_the_old_or_the_new_card() {
    const ITERATIONS: u64 = 24;
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 1, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    create(&cli, "f");
    // How long one format takes here: kills are spread over a little more than that.
    let started = std::time::Instant::now();
    cli.tpmvsc_stdin(
        &["format", "f", "--puk", "--stdin", "--yes"],
        &format!("{PUK}\n{PIN}\n{PIN}\n"),
    )
    .ok("a timed format");
    // The last kills come well after a whole format, so that some get through even
    // when the machine is busy.
    let span = u64::try_from((started.elapsed() * 2).as_micros())
        .unwrap_or(80_000)
        .clamp(10_000, 300_000);
    let (mut old, mut new) = (0, 0);
    let mut current = PIN.to_string();
    for i in 0..ITERATIONS {
        let next = format!("Format-pin-{i:04}");
        let delay = Duration::from_micros(i * span / (ITERATIONS - 1));
        let mut child = cli.spawn_tpmvsc_stdin(
            &["format", "f", "--puk", "--stdin", "--yes"],
            &format!("{PUK}\n{next}\n{next}\n"),
        );
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        // The next command resolves what the killed one left.
        let listed = list_json(&cli);
        assert_eq!(listed.len(), 1, "iteration {i}: {listed:#?}");
        let leftovers: Vec<String> = std::fs::read_dir(store.cards_dir())
            .expect("cards dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "iteration {i} (delay {delay:?}): leftovers {leftovers:?}"
        );
        let with_old = check_pin(&store, &swtpm.tcti(), "f", &current);
        let with_new = check_pin(&store, &swtpm.tcti(), "f", &next);
        match (with_old, with_new) {
            (Ok(()), Err(TpmError::AuthFail)) => old += 1,
            (Err(TpmError::AuthFail), Ok(())) => {
                new += 1;
                current = next;
            }
            other => panic!(
                "iteration {i} (delay {delay:?}): not exactly the old or the new card: {other:?}"
            ),
        }
    }
    eprintln!("{old} killed formats left the old card, {new} the new one");
    assert!(
        new > 0,
        "no killed format got through: the kills were too early"
    );
}

#[test]
fn a_full_tpm_nv_gives_a_clear_error_and_no_card() {
    if !require_tool("tpm2_nvdefine") {
        return;
    }
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    // Fill the NV memory with large indices, then with counters like a card's, until the
    // TPM says it is full (TPM_RC_NV_SPACE).
    let fill = |base: u32, size: &str, attrs: &str| {
        for i in 0..1000u32 {
            let idx = format!("{:#x}", base + i);
            let out = tool(
                "tpm2_nvdefine",
                &swtpm,
                &["-C", "o", "-s", size, "-a", attrs, &idx],
            );
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
                assert!(
                    err.contains("0x14b") || err.contains("space"),
                    "the NV filler stopped for another reason: {out:?}"
                );
                return i;
            }
        }
        panic!("1000 NV indices of {size} bytes fitted");
    };
    assert!(fill(0x0150_0000, "2048", "ownerwrite|ownerread") > 0);
    fill(0x0131_0000, "8", "nt=counter|ownerwrite|authread|no_da");
    let out = cli.tpmvsc(&["create", "--name", "full"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("NV memory"), "{out:#?}");
    assert!(list_json(&cli).is_empty(), "no card after the refusal");
    let hidden: Vec<_> = std::fs::read_dir(store.cards_dir())
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(hidden.is_empty(), "nothing left in the store: {hidden:?}");
}

/// The card's guard and CSK as tpm2-tools files (TPM2B_PUBLIC and TPM2B_PRIVATE, size
/// prefixed) in `work`: (guard public, guard private, CSK public, CSK private).
fn tools_files(dir: &Path, work: &Path) -> [String; 4] {
    let write_2b = |name: &str, hex_text: &str| {
        let bytes = hex::decode(hex_text).expect("hex");
        let mut out = u16::try_from(bytes.len())
            .expect("size")
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(&bytes);
        let p = work.join(name);
        std::fs::write(&p, out).expect("writing a tpm2-tools file");
        p.to_string_lossy().into_owned()
    };
    let guard = read_json(&dir.join(GUARD_FILE));
    let csk = read_json(&dir.join("csk.json"));
    [
        write_2b("g.pub", guard["blob"]["public"].as_str().expect("hex")),
        write_2b("g.priv", guard["blob"]["private"].as_str().expect("hex")),
        write_2b("c.pub", csk["blob"]["public"].as_str().expect("hex")),
        write_2b("c.priv", csk["blob"]["private"].as_str().expect("hex")),
    ]
}

/// PolicyNV is checked when the policy command runs, not when the session is used: an
/// attacker with TPM access and a copy of the files satisfies the old guard's policy
/// before the format, keeps the session (tpm2-tools saves it), and tries to load the old
/// card storage key through it afterwards. Without a resource manager every tpmvsc
/// connection flushes sessions others left, so the format itself kills that session.
#[test]
fn a_policy_session_satisfied_before_a_format_dies_with_the_old_card() {
    for t in [
        "tpm2_load",
        "tpm2_startauthsession",
        "tpm2_policynv",
        "tpm2_flushcontext",
    ] {
        if !require_tool(t) {
            return;
        }
    }
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::on(Swtpm::start_with_persistent_srk());
    create(&cli, "p");
    let dir = card_dir(&cli, "p");
    let counter = record_of(&dir).counter.expect("counter");
    let work = tempfile::tempdir().expect("temp dir");
    let [gpub, gpriv, cpub, cpriv] = tools_files(&dir, work.path());
    let w = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    std::fs::write(w("bound"), counter.bound.to_be_bytes()).expect("operand file");
    let index = format!("{:#x}", counter.index);
    let ok = |o: std::process::Output, what: &str| {
        assert!(o.status.success(), "{what}: {o:?}");
    };
    let load_guard = || {
        tool(
            "tpm2_load",
            &swtpm,
            &[
                "-C",
                "0x81000001",
                "-u",
                &gpub,
                "-r",
                &gpriv,
                "-c",
                &w("g.ctx"),
            ],
        )
    };
    let load_csk = || {
        let sess = format!("session:{}", w("s.ctx"));
        tool(
            "tpm2_load",
            &swtpm,
            &[
                "-C",
                &w("g.ctx"),
                "-P",
                &sess,
                "-u",
                &cpub,
                "-r",
                &cpriv,
                "-c",
                &w("c.ctx"),
            ],
        )
    };
    // The session works before the format: the attack is real.
    ok(load_guard(), "loading the guard");
    ok(
        tool(
            "tpm2_startauthsession",
            &swtpm,
            &["--policy-session", "-S", &w("s.ctx")],
        ),
        "a policy session",
    );
    ok(
        tool(
            "tpm2_policynv",
            &swtpm,
            &[
                "-S",
                &w("s.ctx"),
                "-C",
                &index,
                "-i",
                &w("bound"),
                &index,
                "ule",
            ],
        ),
        "PolicyNV while the counter is at the guard's bound",
    );
    ok(
        load_csk(),
        "the CSK loads through the satisfied session before the format",
    );
    let _ = tool("tpm2_flushcontext", &swtpm, &["-t"]);

    cli.tpmvsc_stdin(
        &["format", "p", "--puk", "--stdin", "--yes"],
        &format!("{PUK}\n{FORMAT_PIN}\n{FORMAT_PIN}\n"),
    )
    .ok("format");

    ok(
        load_guard(),
        "the old guard itself still loads (it is only a key)",
    );
    let after = load_csk();
    assert!(
        !after.status.success(),
        "the session satisfied before the format still loaded the old card storage key: \
         {after:?}"
    );
    let _ = tool("tpm2_flushcontext", &swtpm, &["-t"]);
    cli.check_pin("p", FORMAT_PIN).ok("the formatted card");
}

/// Destroy finds the counter from the card ID, not from the record an attacker can
/// write: a damaged record, or one that lost its counter, does not keep copies alive.
#[test]
fn destroy_revokes_copies_even_when_the_record_is_damaged_or_lost_its_counter() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 600, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("garbage", |p| {
            std::fs::write(p, b"{garbage").expect("writing")
        }),
        ("no counter", |p| {
            let mut r = read_json(p);
            r.as_object_mut().expect("object").remove("counter");
            std::fs::write(p, serde_json::to_vec(&r).expect("JSON")).expect("writing");
        }),
        ("another counter", |p| {
            let mut r = read_json(p);
            r["counter"]["index"] = serde_json::json!(0x0130_0000u32 + 7);
            std::fs::write(p, serde_json::to_vec(&r).expect("JSON")).expect("writing");
        }),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        let name = format!("x{i}");
        create(&cli, &name);
        let dir = card_dir(&cli, &name);
        let record = record_of(&dir);
        let counter = record.counter.expect("counter");
        let copy = tempfile::tempdir().expect("temp dir");
        copy_dir(&dir, copy.path());
        damage(&dir.join(CARD_FILE));
        let out = cli.check_pin(&record.card_id, PIN);
        assert_eq!(out.code, 1, "{what}: the altered card is refused: {out:#?}");
        cli.tpmvsc(&["destroy", &record.card_id, "--yes"])
            .ok(&format!("destroy a card whose record has {what}"));
        assert!(
            !Tpm::open_tcti(&swtpm.tcti())
                .expect("TPM")
                .counter_exists(counter.index)
                .expect("reading the NV index"),
            "{what}: destroy incremented and freed the card's counter"
        );
        restore(copy.path(), &dir);
        let r = check_copy(&swtpm.tcti(), &dir, PIN);
        assert!(
            matches!(r, Err(TpmError::CounterGone | TpmError::Revoked)),
            "{what}: the copy from before the destroy still works: {r:?}"
        );
        std::fs::remove_dir_all(&dir).expect("removing the restored copy");
    }
}

/// Format of a card whose record lost its counter (an attacker removed it, keeping a
/// copy) finds the counter from the card ID, increments it, and so revokes the copy.
#[test]
fn format_revokes_copies_even_when_the_record_lost_its_counter() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 600, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    create(&cli, "n");
    let dir = card_dir(&cli, "n");
    let counter = record_of(&dir).counter.expect("counter");
    let copy = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, copy.path());
    let mut r = read_json(&dir.join(CARD_FILE));
    r.as_object_mut().expect("object").remove("counter");
    std::fs::write(dir.join(CARD_FILE), serde_json::to_vec(&r).expect("JSON")).expect("writing");

    cli.tpmvsc_stdin(
        &["format", "n", "--puk", "--stdin", "--yes"],
        &format!("{PUK}\n{FORMAT_PIN}\n{FORMAT_PIN}\n"),
    )
    .ok("format a card whose record lost its counter");
    let formatted = record_of(&dir).counter.expect("a counter after format");
    assert_eq!(formatted.index, counter.index, "the card ID's own counter");
    assert!(
        formatted.bound > counter.bound,
        "{counter:?} -> {formatted:?}"
    );
    cli.check_pin("n", FORMAT_PIN).ok("the formatted card");
    let now = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, now.path());
    restore(copy.path(), &dir);
    assert_eq!(
        check_copy(&swtpm.tcti(), &dir, PIN),
        Err(TpmError::Revoked),
        "the copy from before the format"
    );
    restore(now.path(), &dir);
    cli.check_pin("n", FORMAT_PIN)
        .ok("the formatted card again");
}

/// The same attack through tpm2-abrmd (a resource manager: every process has its own
/// handles): an old copy is refused after format and after destroy.
#[test]
fn an_old_copy_is_refused_through_a_resource_manager() {
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 600, 1);
    let abrmd = Abrmd::start(&swtpm);
    let store = TestStore::new();
    let (key, value) = abrmd.env();
    let cli = Cli::new(&store, &abrmd.tcti()).with_env(&key, &value);
    create(&cli, "rm");
    let dir = card_dir(&cli, "rm");
    let copy = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, copy.path());
    cli.tpmvsc_stdin(
        &["format", "rm", "--puk", "--stdin", "--yes"],
        &format!("{PUK}\n{FORMAT_PIN}\n{FORMAT_PIN}\n"),
    )
    .ok("format through abrmd");
    let formatted = tempfile::tempdir().expect("temp dir");
    copy_dir(&dir, formatted.path());
    restore(copy.path(), &dir);
    let out = cli.check_pin("rm", PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("revoked"), "{out:#?}");
    restore(formatted.path(), &dir);
    cli.check_pin("rm", FORMAT_PIN).ok("the formatted card");
    copy_dir(&dir, copy.path());
    cli.tpmvsc(&["destroy", "rm", "--yes"]).ok("destroy");
    restore(copy.path(), &dir);
    let out = cli.check_pin("rm", FORMAT_PIN);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("counter"), "{out:#?}");
}

/// A format killed just before each of its file and TPM steps — every rename, every
/// write (TPM commands included) — leaves exactly the old or the new card once the
/// next command has run. The kills come from strace's fault injection, so every step
/// is hit, not only those a timer happens to land on.
#[test]
fn a_format_killed_before_each_of_its_steps_leaves_the_old_or_the_new_card() {
    if !require_tool("strace") {
        return;
    }
    let swtpm = Swtpm::start();
    swtpm.set_da(1000, 1, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());
    // A kill between persisting the PUK counter and the TPM's answer costs a try, as a
    // pulled plug would: give the PUK enough of them for every step.
    cli.tpmvsc_stdin(
        &[
            "create",
            "--name",
            "k",
            "--pin",
            "prompt",
            "--puk",
            "prompt",
            "--puk-tries",
            "255",
            "--stdin",
        ],
        &format!("{PIN}\n{PUK}\n"),
    )
    .ok("create a card with PIN and PUK");
    let mut current = PIN.to_string();
    let (mut old, mut new) = (0, 0);
    let mut step = 1;
    loop {
        let next = format!("Killed-pin-{step:04}");
        let inject = format!("inject=renameat,renameat2,write:signal=KILL:when={step}");
        let out = cli.tpmvsc_wrapped(
            &["strace", "-f", "-o", "/dev/null", "-e", &inject, "--"],
            &["format", "k", "--puk", "--stdin", "--yes"],
            &format!("{PUK}\n{next}\n{next}\n"),
        );
        let finished = out.code == 0;
        let listed = list_json(&cli);
        assert_eq!(listed.len(), 1, "step {step}: {listed:#?}");
        let leftovers: Vec<String> = std::fs::read_dir(store.cards_dir())
            .expect("cards dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "step {step}: leftovers {leftovers:?}");
        let with_old = check_pin(&store, &swtpm.tcti(), "k", &current);
        let with_new = check_pin(&store, &swtpm.tcti(), "k", &next);
        match (with_old, with_new) {
            (Ok(()), Err(TpmError::AuthFail)) if !finished => old += 1,
            (Err(TpmError::AuthFail), Ok(())) => {
                new += 1;
                current = next;
            }
            other => panic!(
                "killed before step {step} (finished: {finished}): not exactly the old or the \
                 new card: {other:?} ({out:#?})"
            ),
        }
        if finished {
            break;
        }
        step += 1;
        assert!(step < 400, "format never finished under injection");
    }
    eprintln!("{step} steps: {old} kills left the old card, {new} the new one");
    assert!(old > 0 && new > 1, "both outcomes were reached");
}
