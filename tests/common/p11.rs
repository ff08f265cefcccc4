//! The PKCS#11 module through the `cryptoki` crate: the environment it is configured by,
//! loading it, sessions, key pairs and attributes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// The built module, `libtpmvsc.so`, beside the `tpmvsc` binary.
pub fn module_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tpmvsc"))
        .parent()
        .expect("the binary has a directory")
        .join("libtpmvsc.so")
}

/// The PIN and the PUK of the card a [`P11World`] creates.
pub const P11_PIN: &str = "12345678";
pub const P11_PUK: &str = "12345678";

/// One test's world for the PKCS#11 module: its own swtpm, store, CLI, and a card `t`
/// made with `--puk default` (slot 0). The module is configured through this process's
/// environment, which [`P11World::new`] sets before any thread of the test starts.
#[derive(Debug)]
pub struct P11World {
    pub swtpm: Swtpm,
    pub store: TestStore,
    pub cli: Cli,
}

impl P11World {
    /// A swtpm (transient SRK), the environment, and card `t` created with `extra` added to
    /// `create --name t --puk default`.
    pub fn new(extra: &[&str]) -> P11World {
        P11World::with_swtpm(Swtpm::start(), extra)
    }

    /// Like [`P11World::new`] on the given swtpm.
    pub fn with_swtpm(swtpm: Swtpm, extra: &[&str]) -> P11World {
        let CliWorld { swtpm, store, cli } = CliWorld::on(swtpm);
        set_module_env(&store, &swtpm.tcti());
        let mut args = vec!["create", "--name", "t", "--puk", "default"];
        args.extend_from_slice(extra);
        cli.tpmvsc(&args).ok("tpmvsc create (card t)");
        P11World { swtpm, store, cli }
    }

    /// The card's `info --json`.
    pub fn info(&self) -> serde_json::Value {
        info_json(&self.cli, "t")
    }
}

/// Sets TPMVSC_STORE, TPMVSC_TCTI, TPMVSC_LOCK_DIR (the lock dir the in-process TPM
/// connections and the CLI use) and TSS2_LOG for the module loaded into this process.
pub fn set_module_env(store: &TestStore, tcti: &str) {
    set_module_env_locks(store, tcti, &tpmvsc::tpm::lock_dir());
}

/// [`set_module_env`] with the lock directory `lock_dir` (one in memory, say).
#[allow(unsafe_code)]
pub fn set_module_env_locks(store: &TestStore, tcti: &str, lock_dir: &Path) {
    // SAFETY: every p11 test runs in its own process (nextest) and calls this first,
    // before it starts a thread (the CLI runner's pipe readers come later) and before the
    // module is loaded, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("TPMVSC_STORE", store.path());
        std::env::set_var("TPMVSC_TCTI", tcti);
        std::env::set_var("TPMVSC_LOCK_DIR", lock_dir);
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
}

/// Loads the module through `cryptoki` and calls C_Initialize (OS locking).
pub fn p11_load() -> cryptoki::context::Pkcs11 {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    let p = Pkcs11::new(module_path()).expect("loading libtpmvsc.so");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    p
}

/// The only slot (the card), from C_GetSlotList.
pub fn p11_slot(p: &cryptoki::context::Pkcs11) -> cryptoki::slot::Slot {
    let slots = p.get_slots_with_token().expect("C_GetSlotList");
    assert_eq!(slots.len(), 1, "one card, one slot: {slots:?}");
    slots[0]
}

/// A R/W session logged in as user with the default PIN.
pub fn p11_user_session(p: &cryptoki::context::Pkcs11) -> cryptoki::session::Session {
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let s = p.open_rw_session(p11_slot(p)).expect("C_OpenSession (R/W)");
    s.login(UserType::User, Some(&AuthPin::new(P11_PIN.into())))
        .expect("C_Login as user with the default PIN");
    s
}

/// The CK_RV of a failed cryptoki call (panics on success or on a non-PKCS#11 error).
pub fn p11_rv<T: std::fmt::Debug>(r: cryptoki::error::Result<T>) -> cryptoki::error::RvError {
    match r {
        Err(cryptoki::error::Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// DER of the P-256 curve OID (CKA_EC_PARAMS).
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 curve OID.
pub const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Generates a token key pair (RSA when `rsa_bits` is Some, else EC on `ec_params`);
/// returns (public, private). `id`, `label` go on both halves when given.
pub fn p11_keygen(
    s: &cryptoki::session::Session,
    rsa_bits: Option<u64>,
    ec_params: &[u8],
    id: Option<&[u8]>,
    label: Option<&str>,
) -> (
    cryptoki::object::ObjectHandle,
    cryptoki::object::ObjectHandle,
) {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    let mut public = vec![Attribute::Token(true), Attribute::Verify(true)];
    let mut private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
    ];
    let mech = match rsa_bits {
        Some(bits) => {
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![1, 0, 1]));
            public.push(Attribute::Encrypt(true));
            private.push(Attribute::Decrypt(true));
            Mechanism::RsaPkcsKeyPairGen
        }
        None => {
            public.push(Attribute::EcParams(ec_params.to_vec()));
            private.push(Attribute::Derive(true));
            Mechanism::EccKeyPairGen
        }
    };
    for t in [&mut public, &mut private] {
        if let Some(id) = id {
            t.push(Attribute::Id(id.to_vec()));
        }
        if let Some(l) = label {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
    }
    s.generate_key_pair(&mech, &public, &private)
        .expect("C_GenerateKeyPair")
}

/// One attribute's bytes (panics when it cannot be read).
pub fn p11_attr(
    s: &cryptoki::session::Session,
    o: cryptoki::object::ObjectHandle,
    t: cryptoki::object::AttributeType,
) -> Vec<u8> {
    use cryptoki::object::Attribute;
    let a = s
        .get_attributes(o, &[t])
        .unwrap_or_else(|e| panic!("C_GetAttributeValue {t:?}: {e}"));
    match a.into_iter().next() {
        Some(Attribute::Modulus(v))
        | Some(Attribute::PublicExponent(v))
        | Some(Attribute::EcParams(v))
        | Some(Attribute::EcPoint(v))
        | Some(Attribute::Id(v))
        | Some(Attribute::Label(v))
        | Some(Attribute::Value(v))
        | Some(Attribute::Subject(v))
        | Some(Attribute::Issuer(v))
        | Some(Attribute::SerialNumber(v))
        | Some(Attribute::Application(v))
        | Some(Attribute::ObjectId(v)) => v,
        Some(Attribute::Sensitive(b))
        | Some(Attribute::Extractable(b))
        | Some(Attribute::AlwaysAuthenticate(b))
        | Some(Attribute::AlwaysSensitive(b))
        | Some(Attribute::NeverExtractable(b))
        | Some(Attribute::Local(b))
        | Some(Attribute::Token(b))
        | Some(Attribute::Private(b))
        | Some(Attribute::Sign(b))
        | Some(Attribute::Decrypt(b)) => vec![u8::from(b)],
        other => panic!("attribute {t:?} not handled by p11_attr: {other:?}"),
    }
}

/// An OS random generator for the software side of the p11 tests (rsa/p256 want a
/// `rand_core` 0.6 RNG).
#[derive(Debug, Clone, Copy, Default)]
pub struct TestRng;

impl rsa::rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_ne_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_ne_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("getrandom");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for TestRng {}

/// The RSA public key of a key object, read from the card (CKA_MODULUS, CKA_PUBLIC_EXPONENT).
pub fn p11_rsa_public(
    s: &cryptoki::session::Session,
    o: cryptoki::object::ObjectHandle,
) -> rsa::RsaPublicKey {
    use cryptoki::object::AttributeType;
    let n = p11_attr(s, o, AttributeType::Modulus);
    let e = p11_attr(s, o, AttributeType::PublicExponent);
    rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from_bytes_be(&e),
    )
    .expect("the card's modulus and exponent make an RSA public key")
}

/// The uncompressed EC point (04 || x || y) of a key object: CKA_EC_POINT without its DER
/// OCTET STRING header (which is checked).
pub fn p11_ec_point(s: &cryptoki::session::Session, o: cryptoki::object::ObjectHandle) -> Vec<u8> {
    let der = p11_attr(s, o, cryptoki::object::AttributeType::EcPoint);
    assert_eq!(
        der[0], 0x04,
        "CKA_EC_POINT is a DER OCTET STRING: {der:02x?}"
    );
    let (len, start) = if der[1] & 0x80 == 0 {
        (usize::from(der[1]), 2)
    } else {
        assert_eq!(der[1], 0x81, "one length byte at most for P-256/P-384");
        (usize::from(der[2]), 3)
    };
    assert_eq!(der.len(), start + len, "OCTET STRING length");
    assert_eq!(der[start], 0x04, "an uncompressed point inside");
    der[start..].to_vec()
}

/// Sets one more environment variable for the module loaded into this process (e.g.
/// DBUS_SESSION_BUS_ADDRESS for the tabrmd TCTI). Same rules as [`set_module_env`]: call
/// it before the test starts a thread and before the module is loaded.
#[allow(unsafe_code)]
pub fn set_test_env(key: &str, value: &str) {
    // SAFETY: as in set_module_env: each test runs in its own process (nextest) and this
    // runs before any thread of the test starts and before the module is loaded.
    unsafe {
        std::env::set_var(key, value);
    }
}

/// A self-signed P-256 certificate made by openssl, as DER.
pub fn openssl_certificate(store: &TestStore) -> Vec<u8> {
    let key = store.scratch("k.pem");
    let pem = store.scratch("c.pem");
    let der = store.scratch("c.der");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=test", "-days", "30", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("running openssl req");
    assert!(st.status.success(), "openssl req: {st:?}");
    let st = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der)
        .output()
        .expect("running openssl x509");
    assert!(st.status.success(), "openssl x509: {st:?}");
    std::fs::read(&der).expect("reading the DER certificate")
}
