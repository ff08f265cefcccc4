//! Security issue, item 1: the salt key is proved by the TPM, never taken from the store.
//!
//! The attack, end to end, as an evil maid with the disk and a bus sniffer would run it:
//! evict the real SRK from 0x81000001, persist a storage key of their own there, write
//! its Name into the card's record and a storage key made under it into csk.json, then
//! wait for the owner's `check-pin` or `C_Login`. A session salted to the planted key
//! would hand them the HMAC key, and the PIN would fall out offline. A relay records
//! every byte: no session may be salted to 0x81000001 while it holds the planted key, no
//! HMAC session may start at all, the DA counter and the card's tries must not move, and
//! the user must be told that the salt key was substituted. `tpm clear-lockout` is run
//! the same way.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use tpmvsc::card::{CARD_FILE, CSK_FILE, GUARD_FILE};
use tpmvsc::tpm::{SRK_PERSISTENT, templates};
use tss_esapi::structures::Public;
use tss_esapi::traits::{Marshall, UnMarshall};

const PIN: &str = "Salt-pin-52841";

fn tool(swtpm: &Swtpm, tool: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(tool)
        .arg("-T")
        .arg(swtpm.tcti())
        .args(args)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tools_present() -> bool {
    [
        "tpm2_evictcontrol",
        "tpm2_createprimary",
        "tpm2_create",
        "tpm2_load",
        "tpm2_readpublic",
        "tpm2_startauthsession",
        "tpm2_policynv",
        "tpm2_flushcontext",
    ]
    .iter()
    .all(|t| require_tool(t))
}

/// Strips tpm2-tools' TPM2B size prefix.
fn without_size(path: &Path) -> String {
    let b = std::fs::read(path).expect("reading a tpm2-tools output file");
    hex::encode(&b[2..])
}

/// The authPolicy of the object whose marshalled public area `hex_public` is.
fn policy_of(hex_public: &str) -> Vec<u8> {
    let bytes = hex::decode(hex_public).expect("hex");
    Public::unmarshall(&bytes)
        .expect("a public area")
        .auth_policy()
        .to_vec()
}

/// The attacker's moves: a key of their own at 0x81000001, and the card's files forged
/// to name it ([`forge_card`]). Returns the Name of the planted key.
fn plant(swtpm: &Swtpm, card_dir: &Path) -> Vec<u8> {
    let name = plant_key(swtpm);
    forge_card(swtpm, card_dir, &name);
    name
}

/// Evicts the real SRK and persists a storage key of the attacker's at 0x81000001;
/// returns its Name.
fn plant_key(swtpm: &Swtpm) -> Vec<u8> {
    let work = tempfile::tempdir().expect("temp dir");
    let p = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    tool(swtpm, "tpm2_evictcontrol", &["-C", "o", "-c", "0x81000001"]);
    tool(
        swtpm,
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc256:aes128cfb", "-c", &p("k.ctx")],
    );
    tool(
        swtpm,
        "tpm2_evictcontrol",
        &["-C", "o", "-c", &p("k.ctx"), "0x81000001"],
    );
    tool(swtpm, "tpm2_flushcontext", &["-t"]);
    tool(
        swtpm,
        "tpm2_readpublic",
        &["-c", "0x81000001", "-n", &p("k.name")],
    );
    std::fs::read(p("k.name")).expect("the planted key's Name")
}

/// A template-faithful forgery of the card's files under the planted key `name`: every
/// object the software checks before it sends a secret looks exactly like what tpmvsc
/// makes (same attributes, same policy), so that only the proof of the salt key stands
/// between the PIN and the attacker.
fn forge_card(swtpm: &Swtpm, card_dir: &Path, name: &[u8]) {
    let work = tempfile::tempdir().expect("temp dir");
    let p = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    let record = read_json(&card_dir.join(CARD_FILE));
    let guard = read_json(&card_dir.join(GUARD_FILE));
    let csk = read_json(&card_dir.join(CSK_FILE));
    let guard_policy = policy_of(guard["blob"]["public"].as_str().expect("hex"));
    let csk_policy = policy_of(csk["blob"]["public"].as_str().expect("hex"));
    std::fs::write(p("guard.pol"), &guard_policy).expect("policy file");
    std::fs::write(p("csk.pol"), &csk_policy).expect("policy file");
    let index = format!(
        "{:#x}",
        record["counter"]["index"].as_u64().expect("counter index")
    );
    let bound = record["counter"]["bound"].as_u64().expect("counter bound");
    std::fs::write(p("bound"), bound.to_be_bytes()).expect("operand file");

    // 2. A guard under it with the card's own guard template and policy, and a storage
    //    key under that (its PolicyNV passes: the card's counter is where it was) with
    //    the card's CSK template and policy and an authValue the attacker knows.
    tool(
        swtpm,
        "tpm2_create",
        &[
            "-C",
            "0x81000001",
            "-G",
            "ecc256:aes128cfb",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|adminwithpolicy|noda|restricted|decrypt",
            "-L",
            &p("guard.pol"),
            "-u",
            &p("g.pub"),
            "-r",
            &p("g.priv"),
        ],
    );
    tool(
        swtpm,
        "tpm2_load",
        &[
            "-C",
            "0x81000001",
            "-u",
            &p("g.pub"),
            "-r",
            &p("g.priv"),
            "-c",
            &p("g.ctx"),
        ],
    );
    tool(
        swtpm,
        "tpm2_startauthsession",
        &["--policy-session", "-S", &p("s.ctx")],
    );
    tool(
        swtpm,
        "tpm2_policynv",
        &[
            "-S",
            &p("s.ctx"),
            "-C",
            &index,
            "-i",
            &p("bound"),
            &index,
            "ule",
        ],
    );
    tool(
        swtpm,
        "tpm2_create",
        &[
            "-C",
            &p("g.ctx"),
            "-P",
            &format!("session:{}", p("s.ctx")),
            "-G",
            "ecc256:aes128cfb",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|adminwithpolicy|restricted|decrypt",
            "-L",
            &p("csk.pol"),
            "-p",
            "attacker",
            "-u",
            &p("c.pub"),
            "-r",
            &p("c.priv"),
        ],
    );
    tool(swtpm, "tpm2_flushcontext", &["-t"]);
    tool(swtpm, "tpm2_flushcontext", &["-s"]);
    let forged = |public: &str, private: &str| {
        serde_json::json!({
            "version": 1,
            "blob": { "public": without_size(Path::new(&p(public))), "private": without_size(Path::new(&p(private))) }
        })
    };
    let fake_guard = forged("g.pub", "g.priv");
    let fake_csk = forged("c.pub", "c.priv");
    // The forgery passes every public-area check tpmvsc makes: only the proof of the
    // salt key can catch it.
    let public = |v: &serde_json::Value| {
        hex::decode(v["blob"]["public"].as_str().expect("hex")).expect("hex")
    };
    let mut gp = [0u8; 32];
    gp.copy_from_slice(&guard_policy);
    let mut cp = [0u8; 32];
    cp.copy_from_slice(&csk_policy);
    assert!(
        templates::made_from(
            &public(&fake_guard),
            &templates::card_guard(&gp).expect("template")
        ),
        "the forged guard looks like tpmvsc's"
    );
    assert!(
        templates::made_from(
            &public(&fake_csk),
            &templates::card_storage_key(&cp).expect("template")
        ),
        "the forged card storage key looks like tpmvsc's"
    );
    for (file, value) in [(GUARD_FILE, &fake_guard), (CSK_FILE, &fake_csk)] {
        std::fs::write(
            card_dir.join(file),
            serde_json::to_vec_pretty(value).expect("JSON"),
        )
        .expect("planting a key file");
    }
    // 3. The card's record names the planted key.
    let mut record = record;
    record["srk"]["name"] = serde_json::Value::String(hex::encode(name));
    std::fs::write(
        card_dir.join(CARD_FILE),
        serde_json::to_vec_pretty(&record).expect("JSON"),
    )
    .expect("rewriting card.json");
}

/// Asserts that nothing in the recording was salted to the planted key and that no HMAC
/// session (the carrier of an authValue) started.
fn assert_nothing_salted_to_the_planted_key(what: &str, conns: &[Recorded]) {
    let sessions = sessions_started(conns);
    for s in &sessions {
        assert_ne!(
            s.start.tpm_key, SRK_PERSISTENT,
            "{what}: a session was salted to the planted key at 0x81000001: {sessions:#x?}"
        );
        assert_ne!(
            s.start.session_type, 0x00,
            "{what}: an HMAC session (a PIN's carrier) was started: {sessions:#x?}"
        );
    }
}

#[test]
fn a_planted_salt_key_gets_no_pin_from_check_pin_or_clear_lockout() {
    if !tools_present() {
        return;
    }
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    let cli = Cli::new(&store, &relay.tcti());
    cli.tpmvsc_stdin(
        &["create", "--name", "v", "--pin", "prompt", "--stdin"],
        &format!("{PIN}\n"),
    )
    .ok("create");
    cli.check_pin("v", PIN).ok("the PIN before the attack");
    let dir = card_dir(&cli, "v");
    let tries = info_u64(&cli, "v", "pin_tries_left");
    plant(&swtpm, &dir);

    let da = da_counter(&swtpm.tcti());
    let before = relay.count();
    let out = cli.check_pin("v", PIN);
    let conns = relay.connections()[before..].to_vec();
    assert_eq!(out.code, 1, "check-pin on the planted card: {out:#?}");
    assert!(
        out.stderr.contains("substituted") && out.stderr.contains("0x81000001"),
        "the error names the substitution: {out:#?}"
    );
    assert_nothing_salted_to_the_planted_key("check-pin", &conns);
    let auth = tpmvsc::card::pin_auth(
        &hex::decode(
            read_json(&dir.join(CARD_FILE))["pin_salt"]
                .as_str()
                .expect("pin_salt"),
        )
        .expect("hex"),
        PIN.as_bytes(),
    );
    for c in &conns {
        for form in secret_forms(&auth)
            .iter()
            .chain(secret_forms(PIN.as_bytes()).iter())
        {
            assert!(
                !contains_bytes(&c.to_tpm, form),
                "the PIN (or its authValue) crossed the wire"
            );
        }
    }
    assert_eq!(da_counter(&swtpm.tcti()), da, "no authorization was tried");
    assert_eq!(info_u64(&cli, "v", "pin_tries_left"), tries, "no try spent");

    // The lockout commands salt to the proved SRK as well: the session of clear-lockout
    // is salted to a primary made from the standard template, never to 0x81000001.
    let empty = store.scratch("empty-lockout-auth");
    std::fs::write(&empty, "").expect("empty lockout auth file");
    let before = relay.count();
    cli.tpmvsc(&[
        "tpm",
        "clear-lockout",
        "--lockout-auth-file",
        empty.to_str().expect("utf-8"),
    ])
    .ok("clear-lockout with the (empty) lockout authorization");
    let conns = relay.connections()[before..].to_vec();
    let standard = tpmvsc::tpm::templates::srk()
        .expect("template")
        .marshall()
        .expect("marshalling");
    let sessions = sessions_started(&conns);
    assert!(!sessions.is_empty(), "clear-lockout started a session");
    for s in sessions.iter().filter(|s| s.start.session_type == 0x00) {
        assert_eq!(
            s.salt_key_template.as_deref(),
            Some(standard.as_slice()),
            "clear-lockout salted its HMAC session to something other than the proved SRK: \
             {sessions:#x?}"
        );
    }
    assert_nothing_salted_to_the_planted_key_hmac_aside(&sessions);
}

/// Policy sessions never carry a secret; still, none may be salted to the planted key.
fn assert_nothing_salted_to_the_planted_key_hmac_aside(sessions: &[SeenSession]) {
    assert!(
        sessions.iter().all(|s| s.start.tpm_key != SRK_PERSISTENT),
        "a session was salted to the planted key: {sessions:#x?}"
    );
}

#[test]
fn a_planted_salt_key_gets_no_pin_from_c_login() {
    if !tools_present() {
        return;
    }
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    set_module_env(&store, &relay.tcti());
    let cli = Cli::new(&store, &relay.tcti());
    cli.tpmvsc_stdin(
        &["create", "--name", "m", "--pin", "prompt", "--stdin"],
        &format!("{PIN}\n"),
    )
    .ok("create");
    let dir = card_dir(&cli, "m");
    plant(&swtpm, &dir);
    let da = da_counter(&swtpm.tcti());
    let tries = info_u64(&cli, "m", "pin_tries_left");

    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    let before = relay.count();
    let rv = p11_rv(s.login(UserType::User, Some(&AuthPin::new(PIN.into()))));
    let conns = relay.connections()[before..].to_vec();
    assert_eq!(
        rv,
        cryptoki::error::RvError::TokenNotRecognized,
        "C_Login on the planted card"
    );
    assert_nothing_salted_to_the_planted_key("C_Login", &conns);
    assert_eq!(da_counter(&swtpm.tcti()), da, "no authorization was tried");
    assert_eq!(info_u64(&cli, "m", "pin_tries_left"), tries, "no try spent");
    drop(s);
    p.finalize().expect("C_Finalize");
}

/// The proof-cache file a process with `tcti` reads in its lock directory.
fn cache_file(lock_dir: &Path, tcti: &str) -> std::path::PathBuf {
    use sha2::Digest as _;
    let tag = hex::encode(&sha2::Sha256::digest(tcti.as_bytes())[..8]);
    lock_dir.join(format!("srk-{tag}.name"))
}

/// True when `path` is in memory (tmpfs or ramfs).
fn in_memory(path: &Path) -> bool {
    let out = Command::new("stat")
        .args(["-f", "-c", "%t"])
        .arg(path)
        .output()
        .expect("stat -f");
    let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
    t == "1021994" || t == "858458f6"
}

/// An attacker with the disk writes the proof cache too: the planted key's Name as the
/// "proved" SRK Name in a lock directory on disk. tpmvsc believes a cache only in memory
/// (tmpfs), which nobody writes offline and a reboot clears, so the planted key is still
/// caught.
#[test]
fn a_proof_cache_planted_on_disk_is_not_believed() {
    if !tools_present() {
        return;
    }
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    let on_disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory on disk");
    assert!(
        !in_memory(on_disk.path()),
        "the test needs a directory on disk: {}",
        on_disk.path().display()
    );
    let lock_dir = on_disk.path().join("locks");
    let cli = Cli::new(&store, &relay.tcti())
        .with_env("TPMVSC_LOCK_DIR", lock_dir.to_str().expect("utf-8"));
    cli.tpmvsc_stdin(
        &["create", "--name", "c", "--pin", "prompt", "--stdin"],
        &format!("{PIN}\n"),
    )
    .ok("create");
    let dir = card_dir(&cli, "c");
    let name = plant(&swtpm, &dir);
    std::fs::write(
        cache_file(&lock_dir, &relay.tcti()),
        format!("{}\n", hex::encode(&name)),
    )
    .expect("planting the proof cache");
    let da = da_counter(&swtpm.tcti());
    let before = relay.count();
    let out = cli.check_pin("c", PIN);
    let conns = relay.connections()[before..].to_vec();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("substituted"), "{out:#?}");
    assert_nothing_salted_to_the_planted_key("check-pin with a planted cache", &conns);
    assert_eq!(da_counter(&swtpm.tcti()), da, "no authorization was tried");
}

/// Where the cache may live (a lock directory in memory), the second process skips the
/// CreatePrimary; on disk every process proves the SRK again.
#[test]
fn the_proved_srk_name_is_cached_in_memory_only() {
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    let shm = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm");
    assert!(in_memory(shm.path()), "/dev/shm is a tmpfs");
    let on_disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory on disk");
    assert!(!in_memory(on_disk.path()));
    let primaries = |conns: &[Recorded]| -> usize {
        conns
            .iter()
            .filter(|c| !c.control)
            .flat_map(|c| split_commands(&c.to_tpm))
            .filter(|c| c.code == CC_CREATE_PRIMARY)
            .count()
    };
    for (dir, cached) in [(shm.path(), true), (on_disk.path(), false)] {
        let locks = dir.join("locks");
        let cli = Cli::new(&store, &relay.tcti())
            .with_env("TPMVSC_LOCK_DIR", locks.to_str().expect("utf-8"));
        cli.tpmvsc(&["tpm", "status"])
            .ok("a first process proves the SRK");
        let before = relay.count();
        cli.tpmvsc(&["tpm", "status"]).ok("a second process");
        let n = primaries(&relay.connections()[before..]);
        if cached {
            assert_eq!(n, 0, "in memory, the proof is reused");
            assert!(cache_file(&locks, &relay.tcti()).exists());
        } else {
            assert!(n >= 1, "on disk, every process proves the SRK again");
            assert!(
                !cache_file(&locks, &relay.tcti()).exists(),
                "no cache on disk"
            );
        }
    }
}

/// Every other command that carries a secret refuses the planted card before a session
/// starts (PIN change, PUK unblock, format, admin verify and admin unblock), and harden
/// salts its lockout sessions to the proved SRK only.
#[test]
fn a_planted_salt_key_gets_no_secret_from_any_command() {
    if !tools_present() {
        return;
    }
    const PUK: &str = "Salt-puk-74210";
    const ADMIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    let cli = Cli::new(&store, &relay.tcti());
    cli.tpmvsc_stdin(
        &[
            "create", "--name", "p", "--pin", "prompt", "--puk", "prompt", "--stdin",
        ],
        &format!("{PIN}\n{PUK}\n"),
    )
    .ok("create a card with a PUK");
    let key_file = store.scratch("admin-key");
    std::fs::write(&key_file, format!("{ADMIN}\n")).expect("admin key file");
    cli.tpmvsc_stdin(
        &[
            "create",
            "--name",
            "a",
            "--pin",
            "prompt",
            "--admin-key-file",
            key_file.to_str().expect("utf-8"),
            "--stdin",
        ],
        &format!("{PIN}\n"),
    )
    .ok("create a managed card");
    let (challenge, _) = admin_challenge(&cli, "a");
    let response = admin_response(&cli, ADMIN, &challenge);
    let name = plant_key(&swtpm);
    forge_card(&swtpm, &card_dir(&cli, "p"), &name);
    forge_card(&swtpm, &card_dir(&cli, "a"), &name);
    let da = da_counter(&swtpm.tcti());
    let new = "Salt-new-99881";
    let attempts: [(&str, Vec<&str>, String); 5] = [
        (
            "change-pin",
            vec!["change-pin", "p", "--stdin"],
            format!("{PIN}\n{new}\n{new}\n"),
        ),
        (
            "unblock --puk",
            vec!["unblock", "p", "--puk", "--stdin"],
            format!("{PUK}\n{new}\n{new}\n"),
        ),
        (
            "format --puk",
            vec!["format", "p", "--puk", "--stdin", "--yes"],
            format!("{PUK}\n{new}\n{new}\n"),
        ),
        (
            "admin verify",
            vec!["admin", "verify", "a", "--stdin"],
            format!("{response}\n"),
        ),
        (
            "unblock --admin",
            vec!["unblock", "a", "--admin", "--stdin"],
            format!("{response}\n{new}\n{new}\n"),
        ),
    ];
    for (what, args, stdin) in &attempts {
        let before = relay.count();
        let out = cli.tpmvsc_stdin(args, stdin);
        let conns = relay.connections()[before..].to_vec();
        assert_eq!(out.code, 1, "{what}: {out:#?}");
        assert!(out.stderr.contains("substituted"), "{what}: {out:#?}");
        assert_nothing_salted_to_the_planted_key(what, &conns);
        for secret in [PIN, PUK, new, response.as_str()] {
            for c in &conns {
                for form in secret_forms(secret.as_bytes()) {
                    assert!(
                        !contains_bytes(&c.to_tpm, &form),
                        "{what}: {secret} crossed the wire"
                    );
                }
            }
        }
    }
    assert_eq!(da_counter(&swtpm.tcti()), da, "no authorization was tried");

    // harden uses no card: its lockout sessions are salted to a primary made from the
    // standard template, never to the planted key.
    let before = relay.count();
    cli.tpmvsc(&["tpm", "harden", "--print-lockout-auth"])
        .ok("harden beside a planted key");
    let sessions = sessions_started(&relay.connections()[before..]);
    let standard = tpmvsc::tpm::templates::srk()
        .expect("template")
        .marshall()
        .expect("marshalling");
    assert!(
        sessions.iter().any(|s| s.start.session_type == 0x00),
        "harden authorized its lockout commands in HMAC sessions: {sessions:#x?}"
    );
    for s in sessions.iter().filter(|s| s.start.session_type == 0x00) {
        assert_eq!(
            s.salt_key_template.as_deref(),
            Some(standard.as_slice()),
            "harden salted to something other than the proved SRK: {sessions:#x?}"
        );
    }
    assert_nothing_salted_to_the_planted_key_hmac_aside(&sessions);
}
