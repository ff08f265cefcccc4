//! What the public PKCS#11 conformance suites (google/pkcs11test, python-pkcs11) check,
//! through raw calls: one rule for when an error ends an operation (PKCS#11 2.40 §5.2 —
//! every error but CKR_BUFFER_TOO_SMALL, and never a successful length query), one-shot
//! and multi-part calls never mixed, the session checked before the arguments, the PIN
//! policy's class rules as CKR_PIN_INVALID, certificate attributes kept as given, and a
//! derived key made as its template says.

// Raw calls with NULL pointers and bad handles are the point of this file.
#![allow(unsafe_code)]

#[macro_use]
mod common;

use std::ptr;

use common::raw::*;
use cryptoki_sys::*;

const BAD_SESSION: CK_SESSION_HANDLE = 0xdead_beef;

/// An initialized module, a logged-in R/W session, and a P-256 key pair that signs,
/// verifies and derives.
struct Setup {
    w: RawWorld,
    h: CK_SESSION_HANDLE,
    public: CK_OBJECT_HANDLE,
    private: CK_OBJECT_HANDLE,
}

impl Setup {
    fn new() -> Setup {
        Setup::with(&[])
    }

    fn with(extra: &[&str]) -> Setup {
        let w = RawWorld::with(extra);
        w.init();
        let h = w.open(w.slot(), true);
        w.login(h);
        let mut pt = Template::new();
        pt.bytes(CKA_EC_PARAMS, &P256_OID);
        pt.bool(CKA_VERIFY, true);
        pt.bool(CKA_TOKEN, false);
        let mut kt = Template::new();
        kt.bool(CKA_SIGN, true);
        kt.bool(CKA_DERIVE, true);
        kt.bool(CKA_TOKEN, false);
        let (public, private) = key_pair(&w, h, CKM_EC_KEY_PAIR_GEN, &mut pt, &mut kt);
        Setup {
            w,
            h,
            public,
            private,
        }
    }

    fn f(&self) -> &'static CK_FUNCTION_LIST {
        self.w.f
    }
}

fn key_pair(
    w: &RawWorld,
    h: CK_SESSION_HANDLE,
    m: CK_MECHANISM_TYPE,
    public: &mut Template,
    private: &mut Template,
) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut mech = mech(m);
    let (mut p, mut s) = (0, 0);
    assert_rv(
        p11!(
            w.f,
            C_GenerateKeyPair(
                h,
                &mut mech,
                public.ptr(),
                public.len(),
                private.ptr(),
                private.len(),
                &mut p,
                &mut s
            )
        ),
        CKR_OK,
        "C_GenerateKeyPair",
    );
    (p, s)
}

/// A 2048-bit RSA session key pair for encryption.
fn rsa_pair(s: &Setup) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut pt = Template::new();
    pt.ulong(CKA_MODULUS_BITS, 2048);
    pt.bool(CKA_ENCRYPT, true);
    pt.bool(CKA_TOKEN, false);
    let mut kt = Template::new();
    kt.bool(CKA_DECRYPT, true);
    kt.bool(CKA_TOKEN, false);
    key_pair(&s.w, s.h, CKM_RSA_PKCS_KEY_PAIR_GEN, &mut pt, &mut kt)
}

#[test]
fn an_error_ends_the_operation_a_short_buffer_or_a_length_query_does_not() {
    let s = Setup::new();
    let (f, h) = (s.f(), s.h);
    let ni = CKR_OPERATION_NOT_INITIALIZED;
    let mut c = Checks::default();
    let mut data = *b"abc";
    let mut out = [0u8; 512];
    let mut sha = mech(CKM_SHA256);

    // Digest, one-shot: a NULL length pointer is an error, and ends it.
    c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), ptr::null_mut())
        ),
        CKR_ARGUMENTS_BAD,
        "C_Digest with a NULL length",
    );
    let mut n: CK_ULONG = 32;
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        ni,
        "C_Digest after the error",
    );
    // Digest, multi-part: the same for C_DigestFinal.
    c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
    c.rv(
        p11!(f, C_DigestUpdate(h, data.as_mut_ptr(), 3)),
        CKR_OK,
        "C_DigestUpdate",
    );
    c.rv(
        p11!(f, C_DigestFinal(h, out.as_mut_ptr(), ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_DigestFinal with a NULL length",
    );
    n = 32;
    c.rv(
        p11!(f, C_DigestFinal(h, out.as_mut_ptr(), &mut n)),
        ni,
        "C_DigestFinal after it",
    );
    // A length query and a short buffer keep it; the result is then right.
    c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
    n = 0;
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, ptr::null_mut(), &mut n)
        ),
        CKR_OK,
        "C_Digest length query",
    );
    c.that(n == 32, "the length query says 32");
    n = 31;
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        CKR_BUFFER_TOO_SMALL,
        "C_Digest into 31 bytes",
    );
    c.that(n == 32, "CKR_BUFFER_TOO_SMALL says 32");
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        CKR_OK,
        "C_Digest after the short buffer",
    );
    c.that(hex(&out[..32]) == SHA256_ABC, "SHA-256(abc)");
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        ni,
        "C_Digest once more (the success ended it)",
    );

    // Sign, one-shot and multi-part.
    let mut ecdsa_sha = mech(CKM_ECDSA_SHA256);
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa_sha, s.private)),
        CKR_OK,
        "C_SignInit",
    );
    c.rv(
        p11!(
            f,
            C_Sign(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), ptr::null_mut())
        ),
        CKR_ARGUMENTS_BAD,
        "C_Sign with a NULL length",
    );
    n = 64;
    c.rv(
        p11!(f, C_Sign(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)),
        ni,
        "C_Sign after it",
    );
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa_sha, s.private)),
        CKR_OK,
        "C_SignInit",
    );
    c.rv(
        p11!(f, C_SignUpdate(h, data.as_mut_ptr(), 3)),
        CKR_OK,
        "C_SignUpdate",
    );
    c.rv(
        p11!(f, C_SignFinal(h, out.as_mut_ptr(), ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_SignFinal with a NULL length",
    );
    n = 64;
    c.rv(
        p11!(f, C_SignFinal(h, out.as_mut_ptr(), &mut n)),
        ni,
        "C_SignFinal after it",
    );
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa_sha, s.private)),
        CKR_OK,
        "C_SignInit",
    );
    n = 10;
    c.rv(
        p11!(f, C_Sign(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)),
        CKR_BUFFER_TOO_SMALL,
        "C_Sign into 10 bytes",
    );
    c.that(n == 64, "CKR_BUFFER_TOO_SMALL says 64");
    c.rv(
        p11!(f, C_Sign(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)),
        CKR_OK,
        "C_Sign after the short buffer",
    );
    let mut sig = out[..64].to_vec();

    // Verify: a wrong-length signature ends it; so does a wrong one in C_VerifyFinal.
    c.rv(
        p11!(f, C_VerifyInit(h, &mut ecdsa_sha, s.public)),
        CKR_OK,
        "C_VerifyInit",
    );
    c.rv(
        p11!(f, C_Verify(h, data.as_mut_ptr(), 3, sig.as_mut_ptr(), 63)),
        CKR_SIGNATURE_LEN_RANGE,
        "C_Verify with 63 bytes",
    );
    c.rv(
        p11!(f, C_Verify(h, data.as_mut_ptr(), 3, sig.as_mut_ptr(), 64)),
        ni,
        "C_Verify after it",
    );
    c.rv(
        p11!(f, C_VerifyInit(h, &mut ecdsa_sha, s.public)),
        CKR_OK,
        "C_VerifyInit",
    );
    c.rv(
        p11!(f, C_VerifyUpdate(h, data.as_mut_ptr(), 3)),
        CKR_OK,
        "C_VerifyUpdate",
    );
    let mut zeros = [0u8; 64];
    c.rv(
        p11!(f, C_VerifyFinal(h, zeros.as_mut_ptr(), 64)),
        CKR_SIGNATURE_INVALID,
        "C_VerifyFinal with a wrong signature",
    );
    c.rv(
        p11!(f, C_VerifyFinal(h, sig.as_mut_ptr(), 64)),
        ni,
        "C_VerifyFinal after it",
    );
    c.rv(
        p11!(f, C_VerifyInit(h, &mut ecdsa_sha, s.public)),
        CKR_OK,
        "C_VerifyInit",
    );
    c.rv(
        p11!(f, C_Verify(h, data.as_mut_ptr(), 3, sig.as_mut_ptr(), 64)),
        CKR_OK,
        "C_Verify with the signature",
    );

    // Encrypt and decrypt (RSA PKCS#1 v1.5).
    let (rsa_pub, rsa_priv) = rsa_pair(&s);
    let mut rsa = mech(CKM_RSA_PKCS);
    c.rv(
        p11!(f, C_EncryptInit(h, &mut rsa, rsa_pub)),
        CKR_OK,
        "C_EncryptInit",
    );
    c.rv(
        p11!(
            f,
            C_Encrypt(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), ptr::null_mut())
        ),
        CKR_ARGUMENTS_BAD,
        "C_Encrypt with a NULL length",
    );
    n = 256;
    c.rv(
        p11!(
            f,
            C_Encrypt(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        ni,
        "C_Encrypt after it",
    );
    c.rv(
        p11!(f, C_EncryptInit(h, &mut rsa, rsa_pub)),
        CKR_OK,
        "C_EncryptInit",
    );
    n = 256;
    c.rv(
        p11!(
            f,
            C_Encrypt(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        CKR_OK,
        "C_Encrypt",
    );
    let mut ct = out[..256].to_vec();
    c.rv(
        p11!(f, C_DecryptInit(h, &mut rsa, rsa_priv)),
        CKR_OK,
        "C_DecryptInit",
    );
    n = 256;
    c.rv(
        p11!(
            f,
            C_Decrypt(h, ct.as_mut_ptr(), 10, out.as_mut_ptr(), &mut n)
        ),
        CKR_ENCRYPTED_DATA_LEN_RANGE,
        "C_Decrypt of 10 bytes",
    );
    n = 256;
    c.rv(
        p11!(
            f,
            C_Decrypt(h, ct.as_mut_ptr(), 256, out.as_mut_ptr(), &mut n)
        ),
        ni,
        "C_Decrypt after it",
    );
    c.rv(
        p11!(f, C_DecryptInit(h, &mut rsa, rsa_priv)),
        CKR_OK,
        "C_DecryptInit",
    );
    n = 256;
    c.rv(
        p11!(
            f,
            C_Decrypt(h, ct.as_mut_ptr(), 256, out.as_mut_ptr(), &mut n)
        ),
        CKR_OK,
        "C_Decrypt",
    );
    c.that(
        usize::try_from(n).is_ok_and(|n| &out[..n] == b"abc"),
        "the plaintext comes back",
    );
    c.done();
}

#[test]
fn one_shot_and_multi_part_calls_are_never_mixed() {
    let s = Setup::new();
    let (f, h) = (s.f(), s.h);
    let ni = CKR_OPERATION_NOT_INITIALIZED;
    let active = CKR_OPERATION_ACTIVE;
    let mut c = Checks::default();
    let mut data = *b"abc";
    let mut out = [0u8; 128];
    let mut n: CK_ULONG;
    let mut sha = mech(CKM_SHA256);

    // C_DigestUpdate then C_Digest: refused (and the refusal ends the digest).
    c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
    c.rv(
        p11!(f, C_DigestUpdate(h, data.as_mut_ptr(), 3)),
        CKR_OK,
        "C_DigestUpdate",
    );
    n = 32;
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        active,
        "C_Digest after C_DigestUpdate",
    );
    n = 32;
    c.rv(
        p11!(f, C_DigestFinal(h, out.as_mut_ptr(), &mut n)),
        ni,
        "C_DigestFinal after the refusal",
    );
    // A C_Digest length query, then C_DigestFinal or C_DigestUpdate: refused.
    for (second, what) in [(true, "C_DigestFinal"), (false, "C_DigestUpdate")] {
        c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
        n = 0;
        c.rv(
            p11!(
                f,
                C_Digest(h, data.as_mut_ptr(), 3, ptr::null_mut(), &mut n)
            ),
            CKR_OK,
            "C_Digest length query",
        );
        n = 32;
        let rv = if second {
            p11!(f, C_DigestFinal(h, out.as_mut_ptr(), &mut n))
        } else {
            p11!(f, C_DigestUpdate(h, data.as_mut_ptr(), 3))
        };
        c.rv(rv, active, &format!("{what} after a C_Digest length query"));
    }
    // And the other way round: a C_DigestFinal length query, then C_Digest.
    c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
    n = 0;
    c.rv(
        p11!(f, C_DigestFinal(h, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_DigestFinal length query",
    );
    n = 32;
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)
        ),
        active,
        "C_Digest after a C_DigestFinal length query",
    );

    let mut ecdsa_sha = mech(CKM_ECDSA_SHA256);
    // C_Sign length query, then C_SignUpdate / C_SignFinal; C_SignUpdate, then C_Sign.
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa_sha, s.private)),
        CKR_OK,
        "C_SignInit",
    );
    n = 0;
    c.rv(
        p11!(f, C_Sign(h, data.as_mut_ptr(), 3, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_Sign length query",
    );
    c.rv(
        p11!(f, C_SignUpdate(h, data.as_mut_ptr(), 3)),
        active,
        "C_SignUpdate after a C_Sign length query",
    );
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa_sha, s.private)),
        CKR_OK,
        "C_SignInit",
    );
    n = 0;
    c.rv(
        p11!(f, C_Sign(h, data.as_mut_ptr(), 3, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_Sign length query",
    );
    n = 64;
    c.rv(
        p11!(f, C_SignFinal(h, out.as_mut_ptr(), &mut n)),
        active,
        "C_SignFinal after a C_Sign length query",
    );
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa_sha, s.private)),
        CKR_OK,
        "C_SignInit",
    );
    c.rv(
        p11!(f, C_SignUpdate(h, data.as_mut_ptr(), 3)),
        CKR_OK,
        "C_SignUpdate",
    );
    n = 64;
    c.rv(
        p11!(f, C_Sign(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut n)),
        active,
        "C_Sign after C_SignUpdate",
    );
    // C_VerifyUpdate, then C_Verify.
    c.rv(
        p11!(f, C_VerifyInit(h, &mut ecdsa_sha, s.public)),
        CKR_OK,
        "C_VerifyInit",
    );
    c.rv(
        p11!(f, C_VerifyUpdate(h, data.as_mut_ptr(), 3)),
        CKR_OK,
        "C_VerifyUpdate",
    );
    let mut sig = [0u8; 64];
    c.rv(
        p11!(f, C_Verify(h, data.as_mut_ptr(), 3, sig.as_mut_ptr(), 64)),
        active,
        "C_Verify after C_VerifyUpdate",
    );
    c.done();
}

#[test]
fn the_session_is_checked_before_the_arguments() {
    let s = Setup::new();
    let (f, h) = (s.f(), s.h);
    let f3 = s.w.list_3_0();
    let inv = CKR_SESSION_HANDLE_INVALID;
    let b = BAD_SESSION;
    let mut c = Checks::default();
    // CKM_MD5 is not offered: with a bad session, the session is what is wrong.
    let mut md5 = mech(CKM_MD5);
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_SECRET_KEY);
    let (mut o1, mut o2) = (0, 0);
    let mut buf = [0u8; 16];
    let mut n: CK_ULONG = 16;
    c.rv(
        p11!(f, C_DigestInit(b, &mut md5)),
        inv,
        "C_DigestInit(bad, MD5)",
    );
    c.rv(
        p11!(f, C_SignInit(b, &mut md5, s.private)),
        inv,
        "C_SignInit(bad, MD5)",
    );
    c.rv(
        p11!(f, C_VerifyInit(b, &mut md5, s.public)),
        inv,
        "C_VerifyInit(bad, MD5)",
    );
    c.rv(
        p11!(f, C_EncryptInit(b, &mut md5, s.public)),
        inv,
        "C_EncryptInit(bad, MD5)",
    );
    c.rv(
        p11!(f, C_DecryptInit(b, &mut md5, s.private)),
        inv,
        "C_DecryptInit(bad, MD5)",
    );
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                b,
                &mut md5,
                t.ptr(),
                t.len(),
                t.ptr(),
                t.len(),
                &mut o1,
                &mut o2
            )
        ),
        inv,
        "C_GenerateKeyPair(bad, MD5)",
    );
    c.rv(
        p11!(
            f,
            C_DeriveKey(b, &mut md5, s.private, t.ptr(), t.len(), &mut o1)
        ),
        inv,
        "C_DeriveKey(bad, MD5)",
    );
    // The functions not offered: a bad session first, then CKR_FUNCTION_NOT_SUPPORTED.
    c.rv(
        p11!(f, C_GenerateKey(b, &mut md5, t.ptr(), t.len(), &mut o1)),
        inv,
        "C_GenerateKey(bad)",
    );
    c.rv(
        p11!(
            f,
            C_WrapKey(b, &mut md5, s.public, s.private, buf.as_mut_ptr(), &mut n)
        ),
        inv,
        "C_WrapKey(bad)",
    );
    c.rv(
        p11!(
            f,
            C_UnwrapKey(
                b,
                &mut md5,
                s.private,
                buf.as_mut_ptr(),
                16,
                t.ptr(),
                t.len(),
                &mut o1
            )
        ),
        inv,
        "C_UnwrapKey(bad)",
    );
    c.rv(
        p11!(f, C_SignRecoverInit(b, &mut md5, s.private)),
        inv,
        "C_SignRecoverInit(bad)",
    );
    c.rv(
        p11!(f, C_VerifyRecoverInit(b, &mut md5, s.public)),
        inv,
        "C_VerifyRecoverInit(bad)",
    );
    c.rv(
        p11!(f3, C_MessageSignInit(b, &mut md5, s.private)),
        inv,
        "C_MessageSignInit(bad)",
    );
    c.rv(
        p11!(f, C_GenerateKey(h, &mut md5, t.ptr(), t.len(), &mut o1)),
        CKR_FUNCTION_NOT_SUPPORTED,
        "C_GenerateKey(good)",
    );
    // C_SeedRandom: the session, then its arguments, then what it does.
    c.rv(
        p11!(f, C_SeedRandom(b, ptr::null_mut(), 1)),
        inv,
        "C_SeedRandom(bad, NULL, 1)",
    );
    c.rv(
        p11!(f, C_SeedRandom(h, ptr::null_mut(), 1)),
        CKR_ARGUMENTS_BAD,
        "C_SeedRandom(s, NULL, 1)",
    );
    c.rv(
        p11!(f, C_SeedRandom(h, buf.as_mut_ptr(), 16)),
        CKR_RANDOM_SEED_NOT_SUPPORTED,
        "C_SeedRandom(s, 16 bytes)",
    );
    c.done();
}

#[test]
fn a_pin_policy_class_rule_is_pin_invalid_and_a_length_rule_pin_len_range() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "12345678\n").expect("writing the PIN file");
    let policy = [
        "--pin-policy",
        "maxlen=12,digits=required,lowercase=disallowed",
    ];
    let file = ["--pin-file", pin_file.to_str().expect("a UTF-8 path")];
    let w = RawWorld::with(&[policy[0], policy[1], file[0], file[1]]);
    w.init();
    let f = w.f;
    let h = w.open(w.slot(), true);
    let mut c = Checks::default();
    let mut old = *b"12345678";
    let cases: [(&[u8], CK_RV, &str); 4] = [
        (b"ABCDEFGH", CKR_PIN_INVALID, "no digit (digits required)"),
        (b"1234abcd", CKR_PIN_INVALID, "lowercase (not allowed)"),
        (b"1234567", CKR_PIN_LEN_RANGE, "7 characters (8 at least)"),
        (
            b"1234567890123",
            CKR_PIN_LEN_RANGE,
            "13 characters (12 at most)",
        ),
    ];
    w.login(h);
    for (new, want, what) in cases {
        let mut new = new.to_vec();
        c.rv(
            p11!(
                f,
                C_SetPIN(h, old.as_mut_ptr(), 8, new.as_mut_ptr(), ulong(new.len()))
            ),
            want,
            &format!("C_SetPIN: {what}"),
        );
    }
    c.rv(p11!(f, C_Logout(h)), CKR_OK, "C_Logout");
    let mut puk = *b"12345678";
    c.rv(
        p11!(f, C_Login(h, CKU_SO, puk.as_mut_ptr(), 8)),
        CKR_OK,
        "C_Login(SO)",
    );
    for (new, want, what) in cases {
        let mut new = new.to_vec();
        c.rv(
            p11!(f, C_InitPIN(h, new.as_mut_ptr(), ulong(new.len()))),
            want,
            &format!("C_InitPIN: {what}"),
        );
    }
    let mut good = *b"Z1234567";
    c.rv(
        p11!(f, C_InitPIN(h, good.as_mut_ptr(), 8)),
        CKR_OK,
        "C_InitPIN with a PIN the policy allows",
    );
    c.done();
}

/// One attribute's bytes through C_GetAttributeValue.
fn attribute(
    w: &RawWorld,
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_TYPE,
) -> Vec<u8> {
    let (rv, values) = w.module.get_attributes(h, o, &[t], Some(4096));
    assert_rv(rv, CKR_OK, &format!("C_GetAttributeValue({t:#x})"));
    values[0].1.clone()
}

#[test]
fn a_certificate_keeps_every_attribute_its_template_gives() {
    let s = Setup::new();
    if !common::require_tool("openssl") {
        return;
    }
    let (f, h) = (s.f(), s.h);
    let der = common::openssl_certificate(&s.w.store);
    let given: [(CK_ATTRIBUTE_TYPE, &[u8]); 5] = [
        (CKA_HASH_OF_ISSUER_PUBLIC_KEY, &[0x11; 20]),
        (CKA_HASH_OF_SUBJECT_PUBLIC_KEY, &[0x22; 20]),
        (CKA_START_DATE, b"20260101"),
        (CKA_END_DATE, b"20361231"),
        (CKA_URL, b"https://pki.example/ca.crt"),
    ];
    let mut c = Checks::default();
    for token in [false, true] {
        let mut t = Template::new();
        t.ulong(CKA_CLASS, CKO_CERTIFICATE);
        t.ulong(CKA_CERTIFICATE_TYPE, CKC_X_509);
        t.bool(CKA_TOKEN, token);
        t.bytes(CKA_VALUE, &der);
        for (a, v) in given {
            t.bytes(a, v);
        }
        let mut o = 0;
        c.rv(
            p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
            CKR_OK,
            &format!("C_CreateObject(certificate, token {token})"),
        );
        for (a, v) in given {
            let got = attribute(&s.w, h, o, a);
            c.that(
                got == v,
                &format!("attribute {a:#x} of a token={token} certificate reads back as given"),
            );
        }
    }
    // A token certificate keeps them across a new instance of the module.
    s.w.finalize();
    s.w.init();
    let h = s.w.open(s.w.slot(), false);
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_CERTIFICATE);
    let mut found = [0; 4];
    let mut n: CK_ULONG = 0;
    c.rv(
        p11!(f, C_FindObjectsInit(h, t.ptr(), t.len())),
        CKR_OK,
        "C_FindObjectsInit",
    );
    c.rv(
        p11!(f, C_FindObjects(h, found.as_mut_ptr(), 4, &mut n)),
        CKR_OK,
        "C_FindObjects",
    );
    c.rv(p11!(f, C_FindObjectsFinal(h)), CKR_OK, "C_FindObjectsFinal");
    c.that(n == 1, "one token certificate after C_Finalize");
    if n == 1 {
        for (a, v) in given {
            c.that(
                attribute(&s.w, h, found[0], a) == v,
                &format!("attribute {a:#x} after reloading"),
            );
        }
    }
    // Every other attribute a template gives is kept, or the object is refused.
    let h = s.w.open(s.w.slot(), true);
    s.w.login(h);
    let subject = attribute(&s.w, h, found[0], CKA_SUBJECT);
    let vendor: CK_ATTRIBUTE_TYPE = CKA_VENDOR_DEFINED | 0x4e53_5301;
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_CERTIFICATE);
    t.bytes(CKA_VALUE, &der);
    t.bytes(CKA_SUBJECT, &subject);
    t.bool(CKA_COPYABLE, false);
    t.bool(CKA_DESTROYABLE, false);
    t.ulong(CKA_CERTIFICATE_CATEGORY, 2);
    t.bytes(vendor, b"a vendor's value");
    let mut o = 0;
    c.rv(
        p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
        CKR_OK,
        "C_CreateObject with more attributes",
    );
    for (a, v) in [
        (CKA_COPYABLE, vec![CK_FALSE]),
        (CKA_DESTROYABLE, vec![CK_FALSE]),
        (CKA_CERTIFICATE_CATEGORY, 2u64.to_ne_bytes().to_vec()),
        (vendor, b"a vendor's value".to_vec()),
        (CKA_SUBJECT, subject.clone()),
    ] {
        c.that(
            attribute(&s.w, h, o, a) == v,
            &format!("attribute {a:#x} as given"),
        );
    }
    c.that(
        !attribute(&s.w, h, o, CKA_PUBLIC_KEY_INFO).is_empty(),
        "CKA_PUBLIC_KEY_INFO from the certificate",
    );
    c.rv(
        p11!(f, C_DestroyObject(h, o)),
        CKR_ACTION_PROHIBITED,
        "C_DestroyObject of a non-destroyable one",
    );
    type Bad<'a> = (CK_ATTRIBUTE_TYPE, &'a [u8], CK_RV, &'a str);
    let refused: [Bad; 5] = [
        (
            CKA_START_DATE,
            b"2026-1-1",
            CKR_ATTRIBUTE_VALUE_INVALID,
            "CKA_START_DATE 2026-1-1",
        ),
        (
            CKA_SUBJECT,
            b"\x30\x00",
            CKR_TEMPLATE_INCONSISTENT,
            "a CKA_SUBJECT not the certificate's",
        ),
        (
            CKA_MODULUS,
            &[1, 2, 3],
            CKR_ATTRIBUTE_TYPE_INVALID,
            "CKA_MODULUS on a certificate",
        ),
        (
            CKA_TRUSTED,
            &[CK_TRUE],
            CKR_ATTRIBUTE_READ_ONLY,
            "CKA_TRUSTED true",
        ),
        (
            CKA_CERTIFICATE_CATEGORY,
            &9u64.to_ne_bytes(),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "category 9",
        ),
    ];
    for (a, v, want, what) in refused {
        let mut t = Template::new();
        t.ulong(CKA_CLASS, CKO_CERTIFICATE);
        t.bytes(CKA_VALUE, &der);
        t.bytes(a, v);
        c.rv(
            p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
            want,
            &format!("C_CreateObject with {what}"),
        );
    }
    c.done();
}

/// C_DeriveKey(CKM_ECDH1_DERIVE) of `private` with `peer` (an uncompressed point) and
/// the template; the CK_RV and the new handle.
fn derive(s: &Setup, peer: &mut [u8], t: &mut Template) -> (CK_RV, CK_OBJECT_HANDLE) {
    let mut params = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: ptr::null_mut(),
        ulPublicDataLen: ulong(peer.len()),
        pPublicData: peer.as_mut_ptr(),
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_ECDH1_DERIVE,
        pParameter: (&mut params as *mut CK_ECDH1_DERIVE_PARAMS).cast(),
        ulParameterLen: ulong(std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>()),
    };
    let mut o = 0;
    let rv = p11!(
        s.f(),
        C_DeriveKey(s.h, &mut m, s.private, t.ptr(), t.len(), &mut o)
    );
    (rv, o)
}

#[test]
fn a_derived_key_is_what_its_template_asks_or_refused() {
    let s = Setup::new();
    let mut c = Checks::default();
    // The peer: the card's own public point (ECDH with itself is still ECDH).
    let point_der = attribute(&s.w, s.h, s.public, CKA_EC_POINT);
    let mut peer = point_der[2..].to_vec();
    c.that(
        peer.len() == 65 && peer[0] == 4,
        "an uncompressed P-256 point",
    );

    // AES-256, for encryption and decryption: made so.
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_SECRET_KEY);
    t.ulong(CKA_KEY_TYPE, CKK_AES);
    t.ulong(CKA_VALUE_LEN, 32);
    t.bool(CKA_ENCRYPT, true);
    t.bool(CKA_DECRYPT, true);
    t.bool(CKA_TOKEN, false);
    let (rv, aes) = derive(&s, &mut peer, &mut t);
    c.rv(rv, CKR_OK, "derive an AES-256 key");
    if rv == CKR_OK {
        let ulong_of = |v: Vec<u8>| CK_ULONG::from_ne_bytes(v.try_into().unwrap_or_default());
        let yes = vec![CK_TRUE];
        c.that(
            ulong_of(attribute(&s.w, s.h, aes, CKA_KEY_TYPE)) == CKK_AES,
            "CKA_KEY_TYPE = CKK_AES",
        );
        c.that(
            attribute(&s.w, s.h, aes, CKA_ENCRYPT) == yes,
            "CKA_ENCRYPT as asked",
        );
        c.that(
            attribute(&s.w, s.h, aes, CKA_DECRYPT) == yes,
            "CKA_DECRYPT as asked",
        );
        c.that(
            attribute(&s.w, s.h, aes, CKA_VALUE).len() == 32,
            "a 32-byte value",
        );
        c.that(
            ulong_of(attribute(&s.w, s.h, aes, CKA_VALUE_LEN)) == 32,
            "CKA_VALUE_LEN = 32",
        );
    }
    // A generic secret of 16 bytes: the leading 16 bytes of the shared secret.
    let mut t = Template::new();
    t.ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    t.ulong(CKA_VALUE_LEN, 16);
    let (rv, g16) = derive(&s, &mut peer, &mut t);
    c.rv(rv, CKR_OK, "derive a 16-byte generic secret");
    let (rv, full) = derive(&s, &mut peer, &mut Template::new());
    c.rv(rv, CKR_OK, "derive with an empty template");
    if c.0.is_empty() {
        let z = attribute(&s.w, s.h, full, CKA_VALUE);
        c.that(z.len() == 32, "the whole shared secret by default");
        c.that(
            attribute(&s.w, s.h, g16, CKA_VALUE) == z[..16],
            "the leading 16 bytes",
        );
        c.that(
            attribute(&s.w, s.h, aes, CKA_VALUE) == z,
            "the AES key is the shared secret",
        );
    }
    // What cannot be made is refused, not made otherwise.
    type Refusal<'a> = (&'a [(CK_ATTRIBUTE_TYPE, CK_ULONG)], CK_RV, &'a str);
    let refusals: [Refusal; 5] = [
        (
            &[(CKA_KEY_TYPE, CKK_DES3)],
            CKR_TEMPLATE_INCONSISTENT,
            "a DES3 key",
        ),
        (
            &[(CKA_CLASS, CKO_PRIVATE_KEY)],
            CKR_TEMPLATE_INCONSISTENT,
            "a private key",
        ),
        (
            &[(CKA_KEY_TYPE, CKK_AES)],
            CKR_TEMPLATE_INCOMPLETE,
            "AES without a length",
        ),
        (
            &[(CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 20)],
            CKR_ATTRIBUTE_VALUE_INVALID,
            "a 20-byte AES key",
        ),
        (
            &[(CKA_VALUE_LEN, 33)],
            CKR_ATTRIBUTE_VALUE_INVALID,
            "more than the shared secret",
        ),
    ];
    for (attrs, want, what) in refusals {
        let mut t = Template::new();
        for (a, v) in attrs {
            t.ulong(*a, *v);
        }
        c.rv(
            derive(&s, &mut peer, &mut t).0,
            want,
            &format!("derive {what}"),
        );
    }
    c.done();
}
