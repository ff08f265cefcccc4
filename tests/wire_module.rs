//! DESIGN.md §2, "Secrets on the TPM wire" and the salting rule, for the PKCS#11 module:
//! a relay between the module (loaded in this process) and swtpm records every byte
//! across C_Login, key generation, C_Sign, C_Decrypt, C_SetPIN, C_Logout, a login with
//! the new PIN, SO (PUK) login and C_InitPIN. No PIN, PUK, their authValues or the
//! decrypted plaintext appears in the recording; every HMAC session is salted to the SRK
//! at 0x81000001, and the only unsalted sessions are policy sessions.

mod common;

use common::*;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::session::{SessionState, UserType};
use cryptoki::types::AuthPin;
use rsa::pkcs1v15::Pkcs1v15Sign;
use sha2::{Digest, Sha256};
use tpmvsc::card::{CardRecord, pin_auth};
use tpmvsc::tpm::SRK_PERSISTENT;

const PIN1: &str = "Mod-wire-pin1-4417";
const PIN2: &str = "Mod-wire-pin2-9023";
const PIN3: &str = "Mod-wire-pin3-5861";
const PUK: &str = "Mod-wire-puk-73310";
const PLAINTEXT: &[u8; 32] = b"wire-module plaintext 0123456789";
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.into())
}

fn record(store: &TestStore, card: &str) -> CardRecord {
    tpmvsc::provision::find(&store.store(), card)
        .expect("finding the card")
        .1
}

/// Counts, shown through Debug.
#[derive(Debug, Default)]
#[allow(dead_code)]
struct Tally {
    connections: usize,
    commands: usize,
    sessions: usize,
    salted_hmac: usize,
    salted_policy: usize,
    unsalted_policy: usize,
    bound: usize,
}

#[test]
fn the_module_puts_no_secret_on_the_wire_and_salts_every_hmac_session_to_the_srk() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let swtpm = Swtpm::start_with_persistent_srk();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    // The module in this process talks to the TPM through the relay only.
    set_module_env(&store, &relay.tcti());
    let cli = Cli::new(&store, &relay.tcti());
    cli.tpmvsc_stdin(
        &[
            "create", "--name", "w", "--pin", "prompt", "--puk", "prompt", "--stdin",
        ],
        &format!("{PIN1}\n{PUK}\n"),
    )
    .ok("create card w with PIN and PUK");
    let created = relay.count();
    let rec0 = record(&store, "w");

    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession (R/W)");
    s.login(UserType::User, Some(&pin(PIN1)))
        .expect("C_Login with PIN1");
    let (rsa_pub, rsa_priv) = p11_keygen(&s, Some(2048), &[], Some(b"rsa"), Some("rsa"));
    let (ec_pub, ec_priv) = p11_keygen(&s, None, P256_PARAMS, Some(b"ec"), Some("ec"));
    let pk = p11_rsa_public(&s, rsa_pub);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(&s, ec_pub))
        .expect("the card's P-256 point");
    let h = Sha256::digest(b"signed through the relay");
    let mut di = SHA256_PREFIX.to_vec();
    di.extend_from_slice(&h);
    let sig = s
        .sign(&Mechanism::RsaPkcs, rsa_priv, &di)
        .expect("C_Sign RSA");
    pk.verify(Pkcs1v15Sign::new_unprefixed(), &di, &sig)
        .expect("the RSA signature verifies");
    let sig = s
        .sign(&Mechanism::Ecdsa, ec_priv, &h)
        .expect("C_Sign ECDSA");
    vk.verify_prehash(
        &h,
        &p256::ecdsa::Signature::from_slice(&sig).expect("64-byte signature"),
    )
    .expect("the ECDSA signature verifies");
    let ct = pk
        .encrypt(&mut TestRng, rsa::Oaep::new::<Sha256>(), PLAINTEXT)
        .expect("software OAEP");
    let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ));
    assert_eq!(
        s.decrypt(&oaep, rsa_priv, &ct).expect("C_Decrypt OAEP"),
        PLAINTEXT
    );
    s.set_pin(&pin(PIN1), &pin(PIN2))
        .expect("C_SetPIN PIN1 -> PIN2");
    s.logout().expect("C_Logout");
    s.login(UserType::User, Some(&pin(PIN2)))
        .expect("C_Login with the new PIN");
    s.sign(&Mechanism::Ecdsa, ec_priv, &h)
        .expect("C_Sign after the login with the new PIN");
    s.logout().expect("C_Logout");
    s.login(UserType::So, Some(&pin(PUK)))
        .expect("C_Login as SO with the PUK (R/W session)");
    assert_eq!(
        s.get_session_info().expect("info").session_state(),
        SessionState::RwSecurityOfficer
    );
    s.init_pin(&pin(PIN3)).expect("C_InitPIN as SO");
    s.logout().expect("SO C_Logout");
    s.login(UserType::User, Some(&pin(PIN3)))
        .expect("C_Login with the PIN the SO set");
    s.logout().expect("C_Logout");
    drop(s);
    p.finalize().expect("C_Finalize");
    let conns = relay.connections();
    let rec1 = record(&store, "w");
    assert_eq!(
        rec0.pin_salt, rec1.pin_salt,
        "C_SetPIN/C_InitPIN keep the salt"
    );

    // 1. The secrets, in every form, in either direction.
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for p in [PIN1, PIN2, PIN3, PUK] {
        secrets.push((format!("{p:?} (ASCII)"), p.as_bytes().to_vec()));
        for (which, salt) in [
            ("pin_salt", &rec0.pin_salt),
            ("puk_salt", &rec0.puk_salt),
            ("pin_salt at the end", &rec1.pin_salt),
            ("puk_salt at the end", &rec1.puk_salt),
        ] {
            secrets.push((
                format!("auth of {p:?} with {which}"),
                pin_auth(salt, p.as_bytes()).to_vec(),
            ));
        }
    }
    secrets.push(("the decrypted plaintext".into(), PLAINTEXT.to_vec()));
    let mut leaks = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        for (label, value) in &secrets {
            for (form, needle) in ["raw", "hex", "HEX"].iter().zip(secret_forms(value)) {
                for (dir, bytes) in [("to TPM", &c.to_tpm), ("from TPM", &c.from_tpm)] {
                    if contains_bytes(bytes, &needle) {
                        let phase = if i < created {
                            "create (CLI)"
                        } else {
                            "module"
                        };
                        leaks.push(format!("{phase}: connection {i} {dir}: {label} ({form})"));
                    }
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets on the TPM wire:\n{leaks:#?}");

    // 2. The sessions.
    let mut bad = Vec::new();
    let mut tallies = Vec::new();
    for (phase, part) in [
        ("create (CLI)", &conns[..created]),
        ("module", &conns[created..]),
    ] {
        let mut t = Tally {
            connections: part.len(),
            ..Tally::default()
        };
        for c in part.iter().filter(|c| !c.control) {
            t.commands += split_commands(&c.to_tpm).len();
        }
        for seen in sessions_started(part) {
            let st = seen.start;
            t.sessions += 1;
            eprintln!("{phase}: StartAuthSession {st:x?}");
            if st.bind != TPM_RH_NULL {
                t.bound += 1;
            }
            let to_srk = st.tpm_key == SRK_PERSISTENT && st.salt_len > 0;
            match st.session_type {
                0x00 if to_srk => t.salted_hmac += 1,
                0x01 if to_srk => t.salted_policy += 1,
                0x01 if st.tpm_key == TPM_RH_NULL && st.salt_len == 0 => t.unsalted_policy += 1,
                _ => bad.push(format!("{phase}: {st:x?}")),
            }
        }
        eprintln!("{phase}: {t:?}");
        tallies.push((phase, t));
    }
    assert!(
        bad.is_empty(),
        "HMAC sessions not salted to 0x81000001, or unsalted sessions that are not \
         policy sessions:\n{bad:#?}"
    );
    let module = &tallies[1].1;
    assert!(module.commands > 0, "the relay saw the module: {module:?}");
    assert!(
        module.salted_hmac > 0,
        "the module salts its HMAC sessions: {module:?}"
    );
}
