//! DESIGN.md §2 against someone who can read and write the card store and talk to the
//! TPM: a persistent SRK that was evicted or replaced, a card.json that names another
//! salt key, a card directory open to others, and format making new TPM objects. (Old
//! copies of the store: tests/revocation.rs.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use common::*;
use tpmvsc::card::{CARD_FILE, CSK_FILE};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    EccPoint, EccScheme, KeyDerivationFunctionScheme, Public, PublicBuilder,
    PublicEccParametersBuilder, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};

const PIN: &str = "Store-pin-1234";
const NEW_PIN: &str = "Store-pin-5678";
const FORMAT_PIN: &str = "Store-pin-9012";
const PUK: &str = "Store-puk-3456";
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";
const WRONG: &str = "Wrong-pin-0000";

/// A swtpm with a DA limit no test here reaches and failures that are not forgotten
/// while a test counts them.
fn swtpm(persistent_srk: bool) -> Swtpm {
    let s = if persistent_srk {
        Swtpm::start_with_persistent_srk()
    } else {
        Swtpm::start()
    };
    s.set_da(1000, 600, 1);
    s
}

/// A card with PIN, PUK and admin key `KEY`, all prompted.
fn create_full(cli: &Cli, name: &str) {
    cli.tpmvsc_stdin(
        &[
            "create",
            "--name",
            name,
            "--pin",
            "prompt",
            "--puk",
            "prompt",
            "--admin-key",
            "prompt",
            "--stdin",
        ],
        &format!("{PIN}\n{PUK}\n{KEY}\n"),
    )
    .ok("create a card with PIN, PUK and admin key");
}

/// Runs a tpm2-tools command against the swtpm directly (no other connection open).
fn tpm2(tool: &str, swtpm: &Swtpm, args: &[&str]) -> std::process::Output {
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

#[test]
fn an_evicted_or_replaced_persistent_srk_does_not_stop_the_card() {
    for tool in [
        "tpm2_evictcontrol",
        "tpm2_createprimary",
        "tpm2_flushcontext",
        "tpm2_readpublic",
    ] {
        if !require_tool(tool) {
            return;
        }
    }
    let CliWorld {
        swtpm,
        store: _store,
        cli,
    } = CliWorld::on(swtpm(true));
    create_full(&cli, "e");
    cli.check_pin("e", PIN).ok("check-pin before the eviction");

    tpm2(
        "tpm2_evictcontrol",
        &swtpm,
        &["-C", "o", "-c", "0x81000001"],
    );
    let out = Command::new("tpm2_readpublic")
        .args(["-T", &swtpm.tcti(), "-c", "0x81000001"])
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("running tpm2_readpublic");
    assert!(!out.status.success(), "0x81000001 is gone after eviction");
    cli.check_pin("e", PIN)
        .ok("check-pin with the SRK evicted (re-created from the recorded template)");

    // Another key at 0x81000001: an RSA primary (tpm2-tools' default template).
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = dir.path().join("k.ctx");
    let ctx_s = ctx.to_str().expect("utf-8 path");
    tpm2(
        "tpm2_createprimary",
        &swtpm,
        &["-C", "o", "-G", "rsa2048", "-c", ctx_s],
    );
    tpm2(
        "tpm2_evictcontrol",
        &swtpm,
        &["-C", "o", "-c", ctx_s, "0x81000001"],
    );
    tpm2("tpm2_flushcontext", &swtpm, &["-t"]);
    let out = tpm2("tpm2_readpublic", &swtpm, &["-c", "0x81000001"]);
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("rsa"), "0x81000001 holds the RSA key: {text}");

    cli.check_pin("e", PIN)
        .ok("check-pin with another key at 0x81000001");
    cli.check_pin("e", WRONG)
        .expect_code(3, "a wrong PIN with another key at 0x81000001");
    cli.tpmvsc_stdin(
        &["change-pin", "e", "--stdin"],
        &format!("{PIN}\n{NEW_PIN}\n{NEW_PIN}\n"),
    )
    .ok("change-pin with another key at 0x81000001");
    cli.check_pin("e", NEW_PIN).ok("the new PIN");
}

/// Creates a primary from `template` in the owner hierarchy; returns its Name.
fn primary_name(tcti: &str, template: &Public) -> Vec<u8> {
    let conf = tss_esapi::tcti_ldr::TctiNameConf::from_str(tcti).expect("a TCTI");
    let mut ctx = tss_esapi::Context::new(conf).expect("connecting to swtpm");
    let r = ctx
        .execute_with_session(Some(AuthSession::Password), |c| {
            c.create_primary(Hierarchy::Owner, template.clone(), None, None, None, None)
        })
        .expect("the attacker's CreatePrimary");
    let name = tpmvsc::tpm::name_of(&r.out_public.marshall().expect("marshalling the public"));
    ctx.flush_context(r.key_handle.into())
        .expect("flushing the attacker's primary");
    name
}

/// An ECC P-256 decryption key that is NOT restricted: whoever can use it (empty auth)
/// gets the ECDH value of a salt encrypted to it (TPM2_ECDH_ZGen), so a session salted
/// to it protects nothing.
fn unrestricted_decrypt_template() -> Public {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_decrypt(true)
        .build()
        .expect("attributes");
    let params = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(EccScheme::Null)
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(false)
        .with_is_decryption_key(true)
        .with_restricted(false)
        .build()
        .expect("ECC parameters");
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .expect("the attacker's template")
}

/// The standard SRK template with another unique field: another storage primary.
fn other_storage_template() -> Public {
    let mut bytes = tpmvsc::tpm::templates::srk()
        .expect("SRK template")
        .marshall()
        .expect("marshalling");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    Public::unmarshall(&bytes).expect("the modified template")
}

fn set_srk_record(card_json: &Path, template: Option<&[u8]>, name: &[u8]) {
    let mut v = read_json(card_json);
    if let Some(t) = template {
        v["srk"]["template"] = serde_json::Value::String(hex::encode(t));
    }
    v["srk"]["name"] = serde_json::Value::String(hex::encode(name));
    std::fs::write(card_json, serde_json::to_vec_pretty(&v).expect("JSON"))
        .expect("rewriting card.json");
}

#[test]
fn a_card_json_naming_another_salt_key_gets_no_salted_session() {
    let swtpm = swtpm(false);
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    let cli = Cli::new(&store, &relay.tcti());
    create_full(&cli, "s");
    let dir = card_dir(&cli, "s");
    let card_json = dir.join(CARD_FILE);
    let original = std::fs::read(&card_json).expect("card.json");
    let tries = info_u64(&cli, "s", "pin_tries_left");

    for (what, template) in [
        (
            "unrestricted ECC decryption key",
            unrestricted_decrypt_template(),
        ),
        (
            "storage primary with another unique",
            other_storage_template(),
        ),
    ] {
        let bytes = template.marshall().expect("marshalling");
        let name = primary_name(&swtpm.tcti(), &template);
        set_srk_record(&card_json, Some(&bytes), &name);
        let counter = da_counter(&swtpm.tcti());
        let before = relay.count();
        let out = cli.check_pin("s", PIN);
        let conns = relay.connections()[before..].to_vec();
        eprintln!("{what}: check-pin with the right PIN: {out:?}");
        let sessions = sessions_started(&conns);
        for s in &sessions {
            eprintln!(
                "{what}: StartAuthSession {:x?}, salt key made from the attacker's template: {}",
                s.start,
                s.salt_key_template.as_deref() == Some(bytes.as_slice())
            );
        }
        assert!(
            sessions
                .iter()
                .all(|s| s.salt_key_template.as_deref() != Some(bytes.as_slice())),
            "{what}: a session was salted to the key card.json names"
        );
        assert!(
            sessions.iter().all(|s| s.start.session_type != 0x00),
            "{what}: an HMAC session (the PIN's carrier) was started: {sessions:#x?}"
        );
        assert_eq!(out.code, 1, "{what}: the card is unusable: {out:#?}");
        assert_eq!(
            da_counter(&swtpm.tcti()),
            counter,
            "{what}: no authorization was tried"
        );
        assert_eq!(
            info_u64(&cli, "s", "pin_tries_left"),
            tries,
            "{what}: no card try spent"
        );
        if !out.stderr.to_lowercase().contains("cleared") {
            eprintln!(
                "NOTE {what}: the message does not say 'cleared': {}",
                out.stderr
            );
        }
        std::fs::write(&card_json, &original).expect("restoring card.json");
    }

    // Only srk.name edited: the recorded template re-creates a key with another Name.
    let record = read_json(&card_json);
    let mut name = hex::decode(record["srk"]["name"].as_str().expect("srk.name")).expect("hex");
    let last = name.len() - 1;
    name[last] ^= 1;
    set_srk_record(&card_json, None, &name);
    let counter = da_counter(&swtpm.tcti());
    let out = cli
        .check_pin("s", PIN)
        .expect_code(1, "check-pin with another srk.name");
    assert!(
        out.stderr.to_lowercase().contains("cleared"),
        "reported as a cleared TPM: {out:#?}"
    );
    assert_eq!(da_counter(&swtpm.tcti()), counter);
    assert_eq!(info_u64(&cli, "s", "pin_tries_left"), tries);
    std::fs::write(&card_json, &original).expect("restoring card.json");
    cli.check_pin("s", PIN).ok("the restored card");
}

#[test]
fn a_card_directory_open_to_others_is_refused_by_name() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::on(swtpm(false));
    create_card(&cli, "m");
    let dir = card_dir(&cli, "m");
    let mode = |m: u32| {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    mode(0o755);
    let out = cli
        .check_pin("m", DEFAULT_PIN)
        .expect_code(1, "check-pin on a 0755 card directory");
    let shown = dir.display().to_string();
    assert!(out.stderr.contains(&shown), "names {shown}: {out:#?}");
    assert!(out.stderr.contains("700"), "says 700: {out:#?}");
    mode(0o700);
    cli.check_pin("m", DEFAULT_PIN)
        .ok("check-pin after chmod 700");
}

fn card_field(dir: &Path, key: &str) -> String {
    read_json(&dir.join(CARD_FILE))[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in card.json"))
        .to_string()
}

fn csk_public(dir: &Path) -> String {
    read_json(&dir.join(CSK_FILE))["blob"]["public"]
        .as_str()
        .expect("blob.public in csk.json")
        .to_string()
}

#[test]
fn format_makes_a_new_csk_and_new_puk_or_admin_objects() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::on(swtpm(false));
    create_full(&cli, "f");
    let dir = card_dir(&cli, "f");
    let (csk0, puk0, admin0) = (
        csk_public(&dir),
        card_field(&dir, "puk_name"),
        card_field(&dir, "admin_name"),
    );

    cli.tpmvsc_stdin(
        &["format", "f", "--puk", "--stdin", "--yes"],
        &format!("{PUK}\n{FORMAT_PIN}\n{FORMAT_PIN}\n"),
    )
    .ok("format --puk");
    let dir = card_dir(&cli, "f");
    let (csk1, puk1, admin1) = (
        csk_public(&dir),
        card_field(&dir, "puk_name"),
        card_field(&dir, "admin_name"),
    );
    assert_ne!(csk1, csk0, "format --puk makes a new CSK");
    assert_ne!(puk1, puk0, "format --puk makes a new PUK object");
    assert_eq!(
        admin1, admin0,
        "format --puk has no X: the admin object stays"
    );
    cli.check_pin("f", FORMAT_PIN).ok("the PIN format set");

    let (challenge, _) = admin_challenge(&cli, "f");
    let response = admin_response(&cli, KEY, &challenge);
    cli.tpmvsc_stdin(
        &["format", "f", "--admin", "--stdin", "--yes"],
        &format!("{response}\n{PIN}\n{PIN}\n{NEW_PUK}\n{NEW_PUK}\n"),
    )
    .ok("format --admin (response, new PIN twice, then the new PUK twice)");
    let dir = card_dir(&cli, "f");
    let (csk2, puk2, admin2) = (
        csk_public(&dir),
        card_field(&dir, "puk_name"),
        card_field(&dir, "admin_name"),
    );
    assert_ne!(csk2, csk1, "format --admin makes a new CSK");
    assert_ne!(admin2, admin1, "format --admin makes a new admin object");
    assert_ne!(
        puk2, puk1,
        "format --admin on a PUK card makes a new PUK object (new PUK)"
    );
    cli.check_pin("f", PIN).ok("the PIN format --admin set");
    // The old PUK no longer unblocks; the new one does, through the new CSK's policy.
    cli.tpmvsc_stdin(
        &["unblock", "f", "--puk", "--stdin"],
        &format!("{PUK}\n{NEW_PIN}\n{NEW_PIN}\n"),
    )
    .expect_code(3, "the PUK from before format --admin");
    cli.tpmvsc_stdin(
        &["unblock", "f", "--puk", "--stdin"],
        &format!("{NEW_PUK}\n{NEW_PIN}\n{NEW_PIN}\n"),
    )
    .ok("unblock with the PUK format --admin set");
    cli.check_pin("f", NEW_PIN).ok("the PIN the PUK set");
}

/// The PUK an administrator sets when formatting a card that has one.
const NEW_PUK: &str = "Fresh-PUK-77";
