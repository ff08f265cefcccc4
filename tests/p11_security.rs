//! DESIGN.md §2 through the PKCS#11 module, against a local attacker with TPM and store
//! access: user keys are noDA (a logged-in session keeps signing while another process
//! has put the TPM into dictionary-attack lockout); a login during the lockout reports the
//! lockout (CKR_PIN_LOCKED), not a wrong PIN, and costs the card no try; user keys do not
//! load under a planted parent; a card directory others can read is refused.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rsa::pkcs1v15::Pkcs1v15Sign;
use sha2::{Digest, Sha256};
use tpmvsc::card::{CSK_FILE, ObjectFile, pin_auth};
use tpmvsc::tpm::Tpm;

const WRONG: &str = "87654321";
const ATTACKER_PIN: &str = "Attacker-pin-6660";
/// DigestInfo prefix of SHA-256 (PKCS#1 v1.5).
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.into())
}

/// The slot whose token is the card named `name` (the store may hold several cards).
fn slot_named(p: &Pkcs11, name: &str) -> Slot {
    let slots = p.get_slots_with_token().expect("C_GetSlotList");
    let found: Vec<Slot> = slots
        .into_iter()
        .filter(|s| p.get_token_info(*s).expect("C_GetTokenInfo").label().trim() == name)
        .collect();
    assert_eq!(found.len(), 1, "one slot holds card {name:?}");
    found[0]
}

/// A user key pair and what software needs to verify its signatures.
#[derive(Debug, Clone)]
struct UserKey {
    id: Vec<u8>,
    private: ObjectHandle,
    public: Public,
}

#[derive(Debug, Clone)]
enum Public {
    Ec(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

fn keygen_ec(s: &Session, id: &[u8]) -> UserKey {
    let (public, private) = p11_keygen(s, None, P256_PARAMS, Some(id), Some("ec key"));
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(s, public))
        .expect("the card's P-256 point");
    UserKey {
        id: id.to_vec(),
        private,
        public: Public::Ec(vk),
    }
}

fn keygen_rsa(s: &Session, id: &[u8]) -> UserKey {
    let (public, private) = p11_keygen(s, Some(2048), &[], Some(id), Some("rsa key"));
    UserKey {
        id: id.to_vec(),
        private,
        public: Public::Rsa(p11_rsa_public(s, public)),
    }
}

/// The private key with CKA_ID `id` as this session sees it.
fn find_private(s: &Session, id: &[u8]) -> ObjectHandle {
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.to_vec()),
        ])
        .expect("C_FindObjects");
    assert_eq!(found.len(), 1, "one private key with CKA_ID {id:02x?}");
    found[0]
}

/// What is signed: CKM_ECDSA over SHA-256(msg), or CKM_RSA_PKCS over its DigestInfo.
fn sign_input(key: &UserKey, msg: &[u8]) -> (Mechanism<'static>, Vec<u8>) {
    let h = Sha256::digest(msg).to_vec();
    match key.public {
        Public::Ec(_) => (Mechanism::Ecdsa, h),
        Public::Rsa(_) => {
            let mut di = SHA256_PREFIX.to_vec();
            di.extend_from_slice(&h);
            (Mechanism::RsaPkcs, di)
        }
    }
}

/// C_Sign with `handle`; the signature must verify in software with `key`'s public half.
fn sign_and_verify(s: &Session, key: &UserKey, handle: ObjectHandle, msg: &[u8], what: &str) {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let (mech, input) = sign_input(key, msg);
    let sig = s
        .sign(&mech, handle, &input)
        .unwrap_or_else(|e| panic!("{what}: C_Sign ({:?}): {e}", key.id));
    match &key.public {
        Public::Ec(vk) => {
            let parsed = p256::ecdsa::Signature::from_slice(&sig)
                .unwrap_or_else(|e| panic!("{what}: a 64-byte ECDSA signature: {e}"));
            vk.verify_prehash(&input, &parsed)
                .unwrap_or_else(|e| panic!("{what}: the ECDSA signature verifies: {e}"));
        }
        Public::Rsa(pk) => {
            pk.verify(Pkcs1v15Sign::new_unprefixed(), &input, &sig)
                .unwrap_or_else(|e| panic!("{what}: the RSA signature verifies: {e}"));
        }
    }
}

fn tries_left(cli: &Cli, card: &str) -> u64 {
    info_u64(cli, card, "pin_tries_left")
}

fn in_lockout(cli: &Cli) -> bool {
    tpm_status(cli)["in_lockout"]
        .as_bool()
        .expect("in_lockout in tpm status --json")
}

/// Another process (the CLI, card `x`, 10 card tries) hammers wrong PINs until the TPM
/// (3 tries, 600 s recovery) is in lockout. Returns how many wrong PINs it took.
fn lock_out_the_tpm_from_another_process(cli: &Cli) -> usize {
    assert!(!in_lockout(cli), "not in lockout before the attack");
    for i in 1..=6 {
        let out = cli.check_pin("x", WRONG);
        eprintln!("wrong PIN {i} on card x from the CLI: exit {}", out.code);
        assert!(
            out.code == 3 || out.code == 4,
            "check-pin with a wrong PIN: a wrong PIN (3) or a lockout (4): {out:#?}"
        );
        if in_lockout(cli) {
            return i;
        }
    }
    panic!(
        "the TPM is not in lockout after 6 wrong PINs with max_tries 3: {:#}",
        tpm_status(cli)
    );
}

/// A swtpm with DA 3 tries / 600 s recovery (set before the module is loaded), card `t`
/// (5 tries, `--puk default`) and card `x` (10 tries) for the other process; with
/// `through_abrmd`, every client (the module in this process, the CLI) goes through
/// tpm2-abrmd.
#[derive(Debug)]
struct LockoutWorld {
    /// Kept running until the test ends (dropped before the swtpm).
    _abrmd: Option<Abrmd>,
    store: TestStore,
    cli: Cli,
    _swtpm: Swtpm,
}

fn lockout_world_with(through_abrmd: bool) -> LockoutWorld {
    let swtpm = Swtpm::start();
    swtpm.set_da(3, 600, 1);
    let store = TestStore::new();
    let (abrmd, cli) = if through_abrmd {
        let a = Abrmd::start(&swtpm);
        let (k, v) = a.env();
        set_module_env(&store, &a.tcti());
        set_test_env(&k, &v);
        let cli = Cli::new(&store, &a.tcti()).with_env(&k, &v);
        (Some(a), cli)
    } else {
        set_module_env(&store, &swtpm.tcti());
        (None, Cli::new(&store, &swtpm.tcti()))
    };
    cli.tpmvsc(&["create", "--name", "t", "--puk", "default"])
        .ok("create card t");
    cli.tpmvsc(&["create", "--name", "x", "--pin-tries", "10"])
        .ok("create card x --pin-tries 10");
    let s = tpm_status(&cli);
    assert_eq!(s["max_tries"], 3, "{s:#}");
    assert_eq!(s["recovery_time"], 600, "{s:#}");
    LockoutWorld {
        _abrmd: abrmd,
        store,
        cli,
        _swtpm: swtpm,
    }
}

fn lockout_world() -> LockoutWorld {
    lockout_world_with(false)
}

fn clear_lockout(w: &LockoutWorld) {
    let empty = w.store.scratch("lockout-auth");
    write_file(&empty, "");
    tpm_clear_lockout(&w.cli, &empty).ok("tpm clear-lockout with the (empty) lockout auth");
    assert!(!in_lockout(&w.cli), "clear-lockout ended the lockout");
}

fn keeps_signing_while_another_process_locks_the_tpm_out(w: &LockoutWorld) {
    let p = p11_load();
    let slot = slot_named(&p, "t");
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    s.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("C_Login with the right PIN");
    let ec = keygen_ec(&s, b"ec");
    let rsa = keygen_rsa(&s, b"rsa");
    // Used once: loaded, its context kept by the module.
    sign_and_verify(&s, &ec, ec.private, b"before the lockout", "ECDSA before");
    sign_and_verify(&s, &rsa, rsa.private, b"before the lockout", "RSA before");
    let tries_t = tries_left(&w.cli, "t");
    assert_eq!(tries_t, 5);

    let n = lock_out_the_tpm_from_another_process(&w.cli);
    eprintln!("TPM in lockout after {n} wrong PINs from the CLI");
    let st = tpm_status(&w.cli);
    eprintln!("tpm status during the lockout: {st:#}");

    // User keys are noDA: the logged-in session signs on, several times, both kinds.
    for i in 0..3 {
        let msg = format!("during the lockout, round {i}");
        sign_and_verify(&s, &ec, ec.private, msg.as_bytes(), "ECDSA during lockout");
        sign_and_verify(&s, &rsa, rsa.private, msg.as_bytes(), "RSA during lockout");
        // The other process gets the TPM in between (the module gives it up).
        assert!(in_lockout(&w.cli), "still in lockout (round {i})");
    }
    assert_eq!(
        s.get_session_info()
            .expect("C_GetSessionInfo")
            .session_state(),
        SessionState::RwUser,
        "still logged in"
    );
    assert_eq!(tries_left(&w.cli, "t"), tries_t, "card t spent no try");

    // After C_Logout, a login during the lockout is the lockout, not a wrong PIN.
    s.logout().expect("C_Logout");
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::PinLocked,
        "the right PIN during a TPM lockout (after C_Logout)"
    );
    assert_eq!(tries_left(&w.cli, "t"), tries_t, "no card try spent");
    assert!(
        s.sign(&Mechanism::Ecdsa, ec.private, &[7u8; 32]).is_err(),
        "no signing after logout"
    );
    clear_lockout(w);
    s.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("C_Login after clear-lockout");
    sign_and_verify(&s, &ec, ec.private, b"after clear-lockout", "ECDSA after");
    sign_and_verify(&s, &rsa, rsa.private, b"after clear-lockout", "RSA after");
}

#[test]
fn a_logged_in_session_keeps_signing_while_another_process_locks_the_tpm_out() {
    let w = lockout_world();
    keeps_signing_while_another_process_locks_the_tpm_out(&w);
}

#[test]
fn through_abrmd_a_logged_in_session_keeps_signing_while_another_process_locks_the_tpm_out() {
    if !require_tool("tpm2-abrmd") || !require_tool("dbus-daemon") {
        return;
    }
    let w = lockout_world_with(true);
    keeps_signing_while_another_process_locks_the_tpm_out(&w);
}

#[test]
fn a_login_during_a_tpm_lockout_is_pin_locked_and_costs_no_try() {
    let w = lockout_world();
    // Keys made before the lockout, by the CLI.
    let pin_file = w.store.scratch("pin");
    write_file(&pin_file, &format!("{P11_PIN}\n"));
    let pf = pin_file.to_str().expect("utf-8 path");
    w.cli
        .tpmvsc(&[
            "keygen",
            "t",
            "--type",
            "ec-p256",
            "--label",
            "k",
            "--pin-file",
            pf,
        ])
        .ok("tpmvsc keygen");
    lock_out_the_tpm_from_another_process(&w.cli);
    let tries = tries_left(&w.cli, "t");
    assert_eq!(tries, 5);
    let x_tries = tries_left(&w.cli, "x");

    // A new module instance, loaded during the lockout.
    let p = p11_load();
    let slot = slot_named(&p, "t");
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    let counter = tpm_status(&w.cli)["counter"].clone();
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::PinLocked,
        "the right PIN during a TPM lockout: CKR_PIN_LOCKED (DESIGN.md §2)"
    );
    assert_eq!(tries_left(&w.cli, "t"), tries, "the right PIN: no card try");
    assert_eq!(
        s.get_session_info()
            .expect("C_GetSessionInfo")
            .session_state(),
        SessionState::RwPublic,
        "not logged in"
    );
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(WRONG)))),
        RvError::PinLocked,
        "a wrong PIN during a TPM lockout: CKR_PIN_LOCKED, not CKR_PIN_INCORRECT"
    );
    assert_eq!(tries_left(&w.cli, "t"), tries, "a wrong PIN: no card try");
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(WRONG)))),
        RvError::PinLocked,
        "again"
    );
    assert_eq!(tries_left(&w.cli, "t"), tries);
    assert_eq!(tries_left(&w.cli, "x"), x_tries, "card x untouched");
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    eprintln!("token flags during the lockout: {ti:?}");
    assert!(
        !ti.user_pin_count_low() && !ti.user_pin_final_try(),
        "no card try was counted: {ti:?}"
    );
    let st = tpm_status(&w.cli);
    assert_eq!(st["in_lockout"], true, "{st:#}");
    assert_eq!(
        st["counter"], counter,
        "the TPM counted nothing either: {st:#}"
    );

    clear_lockout(&w);
    s.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("C_Login with the right PIN after clear-lockout");
    assert_eq!(tries_left(&w.cli, "t"), 5);
    // The key made before the lockout loads and signs again.
    let by_label = |class: ObjectClass| -> ObjectHandle {
        let found = s
            .find_objects(&[Attribute::Class(class), Attribute::Label(b"k".to_vec())])
            .expect("C_FindObjects");
        assert_eq!(found.len(), 1, "one {class:?} labelled k");
        found[0]
    };
    let public = by_label(ObjectClass::PUBLIC_KEY);
    let key = UserKey {
        id: b"k".to_vec(),
        private: by_label(ObjectClass::PRIVATE_KEY),
        public: Public::Ec(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(&s, public))
                .expect("the card's P-256 point"),
        ),
    };
    sign_and_verify(&s, &key, key.private, b"after clear-lockout", "ECDSA after");
}

#[test]
fn user_keys_do_not_load_or_sign_under_a_planted_parent() {
    let w = P11World::new(&[]);
    let p = p11_load();
    let (ec, rsa) = {
        let s = p11_user_session(&p);
        let ec = keygen_ec(&s, b"ec");
        let rsa = keygen_rsa(&s, b"rsa");
        sign_and_verify(&s, &ec, ec.private, b"before", "ECDSA before the plant");
        sign_and_verify(&s, &rsa, rsa.private, b"before", "RSA before the plant");
        s.logout().expect("C_Logout");
        (ec, rsa)
    };
    p.finalize().expect("C_Finalize");

    // The attacker: a storage key of their own under the card's guard (its policy needs
    // no secret, only the counter's value), with the card's template and policy and an
    // authValue they know, written over csk.json.
    let (dir, record) = tpmvsc::provision::find(&w.store.store(), "t").expect("finding the card");
    let csk_path = dir.file(CSK_FILE);
    let real_csk = std::fs::read(&csk_path).expect("reading csk.json");
    let keys = tpmvsc::provision::pin::read_keys(&dir, &record).expect("the card's keys");
    let planted = {
        let mut tpm = Tpm::open_tcti(&w.swtpm.tcti()).expect("the attacker opens the TPM");
        tpm.use_srk(&record.srk).expect("the card's SRK");
        tpm.create_csk(
            keys.guard.as_ref(),
            &record.csk_policy(),
            &pin_auth(&record.pin_salt, ATTACKER_PIN.as_bytes()),
        )
        .expect("the attacker's storage key under the card's guard")
    };
    let planted_file = ObjectFile { blob: planted };
    // Written as the store writes its records (versioned JSON), as an attacker would.
    dir.write(CSK_FILE, &planted_file, false)
        .expect("planting csk.json");
    assert_ne!(
        std::fs::read(&csk_path).expect("csk.json"),
        real_csk,
        "csk.json replaced"
    );
    assert_eq!(
        check_pin(&w.store, &w.swtpm.tcti(), "t", ATTACKER_PIN),
        Ok(()),
        "the planted key opens with the attacker's PIN"
    );

    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    let login = s.login(UserType::User, Some(&pin(ATTACKER_PIN)));
    eprintln!("C_Login with the attacker's PIN on the planted csk.json: {login:?}");
    for key in [&ec, &rsa] {
        let handle = if login.is_ok() {
            find_private(&s, &key.id)
        } else {
            key.private
        };
        let (mech, input) = sign_input(key, b"the attacker's message");
        let r = s.sign(&mech, handle, &input);
        eprintln!("C_Sign with {:?} under the planted parent: {r:?}", key.id);
        match r {
            Err(cryptoki::error::Error::Pkcs11(rv, _)) => {
                eprintln!("refused with {rv:?}");
            }
            other => panic!(
                "user key {:?} signed (or failed oddly) under a planted parent: {other:?}",
                key.id
            ),
        }
    }
    // Nor does the RSA key decrypt.
    if login.is_ok() {
        let pk = match &rsa.public {
            Public::Rsa(pk) => pk.clone(),
            Public::Ec(_) => unreachable!("the RSA key"),
        };
        let ct = pk
            .encrypt(
                &mut TestRng,
                rsa::Oaep::new::<Sha256>(),
                b"for the card only",
            )
            .expect("software OAEP");
        let m = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
            MechanismType::SHA256,
            PkcsMgfType::MGF1_SHA256,
            PkcsOaepSource::empty(),
        ));
        let r = s.decrypt(&m, find_private(&s, b"rsa"), &ct);
        eprintln!("C_Decrypt under the planted parent: {r:?}");
        assert!(
            matches!(r, Err(cryptoki::error::Error::Pkcs11(_, _))),
            "decrypted under a planted parent: {r:?}"
        );
        s.logout().expect("C_Logout after the attacker's login");
    }

    // The real csk.json back: the real PIN works and signs.
    std::fs::write(&csk_path, &real_csk).expect("restoring csk.json");
    s.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("C_Login with the real PIN on the real csk.json");
    for key in [&ec, &rsa] {
        let h = find_private(&s, &key.id);
        sign_and_verify(&s, key, h, b"after the restore", "after restoring csk.json");
    }
}

#[test]
fn a_card_directory_others_can_read_is_refused_at_login() {
    let w = P11World::new(&[]);
    let dir = card_dir(&w.cli, "t");
    let mode = |m: u32| {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    s.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("C_Login on a 0700 card directory");
    let ec = keygen_ec(&s, b"ec");
    sign_and_verify(&s, &ec, ec.private, b"0700", "ECDSA on 0700");
    s.logout().expect("C_Logout");

    mode(0o755);
    let r = s.login(UserType::User, Some(&pin(P11_PIN)));
    eprintln!("C_Login on a 0755 card directory: {r:?}");
    let rv = p11_rv(r);
    eprintln!("refused with {rv:?}");
    assert_eq!(
        s.get_session_info()
            .expect("C_GetSessionInfo")
            .session_state(),
        SessionState::RwPublic,
        "not logged in on a 0755 card directory"
    );
    let (mech, input) = sign_input(&ec, b"0755");
    let signed = s.sign(&mech, ec.private, &input);
    eprintln!("C_Sign on a 0755 card directory: {signed:?}");
    assert!(signed.is_err(), "the key is not usable: {signed:?}");

    mode(0o700);
    s.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("C_Login after chmod 700");
    let h = find_private(&s, b"ec");
    sign_and_verify(&s, &ec, h, b"0700 again", "ECDSA after chmod 700");
    assert_eq!(
        tries_left(&w.cli, "t"),
        5,
        "the refused login spent no card try"
    );
}
