//! Decryption and ECDH on the card: ciphertexts made in software (`rsa`) with the card's
//! public key decrypt on the card, the two-call convention holds on raw C_Decrypt/C_Sign,
//! and an ECDH secret derived on the card equals the one computed in software (`p256`).

// Raw C_DecryptInit / C_Decrypt / C_SignInit / C_Sign calls through libloading +
// cryptoki-sys (cryptoki hides the two calls). One process per test (nextest).
#![allow(unsafe_code)]

mod common;

use common::*;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki_sys::*;
use rsa::{Oaep, Pkcs1v15Encrypt};
use sha1::Sha1;
use sha2::Sha256;

const SECRET: &[u8] = b"a secret for the card only";

fn oaep_mech<'a>(sha256: bool, label: Option<&'a [u8]>) -> Mechanism<'a> {
    let (h, mgf) = if sha256 {
        (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)
    } else {
        (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1)
    };
    let src = match label {
        Some(l) => PkcsOaepSource::data_specified(l),
        None => PkcsOaepSource::empty(),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(h, mgf, src))
}

fn rsa_key(s: &Session) -> (ObjectHandle, ObjectHandle, rsa::RsaPublicKey) {
    let (public, private) = p11_keygen(s, Some(2048), &[], None, None);
    let pk = p11_rsa_public(s, public);
    (public, private, pk)
}

#[test]
fn software_ciphertexts_decrypt_on_the_card() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    let (_, private, pk) = rsa_key(&s);
    let mut rng = TestRng;

    // CKM_RSA_PKCS
    let ct = pk
        .encrypt(&mut rng, Pkcs1v15Encrypt, SECRET)
        .expect("software PKCS#1 v1.5");
    assert_eq!(
        s.decrypt(&Mechanism::RsaPkcs, private, &ct)
            .expect("CKM_RSA_PKCS decrypt"),
        SECRET
    );

    // CKM_RSA_PKCS_OAEP: SHA-1 and SHA-256, with and without a 3-byte label (no NUL).
    for sha256 in [false, true] {
        for label in [None, Some("abc")] {
            let padding = match (sha256, label) {
                (false, None) => Oaep::new::<Sha1>(),
                (false, Some(l)) => Oaep::new_with_label::<Sha1, _>(l),
                (true, None) => Oaep::new::<Sha256>(),
                (true, Some(l)) => Oaep::new_with_label::<Sha256, _>(l),
            };
            let ct = pk
                .encrypt(&mut rng, padding, SECRET)
                .expect("software OAEP");
            let m = oaep_mech(sha256, label.map(str::as_bytes));
            let pt = s
                .decrypt(&m, private, &ct)
                .unwrap_or_else(|e| panic!("OAEP sha256={sha256} label={label:?}: {e}"));
            assert_eq!(pt, SECRET, "OAEP sha256={sha256} label={label:?}");
            if label.is_some() {
                // The wrong label must not decrypt.
                let wrong = oaep_mech(sha256, Some(b"abd"));
                assert!(
                    s.decrypt(&wrong, private, &ct).is_err(),
                    "a wrong OAEP label decrypts"
                );
            }
        }
    }

    // CKM_RSA_X_509: raw RSA, k bytes out.
    let n = rsa::BigUint::from_bytes_be(&p11_attr(&s, private, AttributeType::Modulus));
    let mut m = vec![0u8; 256];
    getrandom::fill(&mut m[1..]).expect("random");
    m[1] &= 0x7f;
    let c = rsa::BigUint::from_bytes_be(&m).modpow(&rsa::BigUint::from(65537u32), &n);
    let mut ct = c.to_bytes_be();
    while ct.len() < 256 {
        ct.insert(0, 0);
    }
    let pt = s
        .decrypt(&Mechanism::RsaX509, private, &ct)
        .expect("CKM_RSA_X_509 decrypt");
    let mut pt_padded = pt.clone();
    while pt_padded.len() < 256 {
        pt_padded.insert(0, 0);
    }
    assert_eq!(pt_padded, m, "raw RSA gives m back");
    assert_eq!(pt.len(), 256, "CKM_RSA_X_509 output is the modulus size");
}

#[test]
fn encryption_by_the_module_decrypts_on_the_card() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    let (public, private, _) = rsa_key(&s);
    for m in [
        Mechanism::RsaPkcs,
        oaep_mech(false, None),
        oaep_mech(true, Some(b"xyz")),
    ] {
        let ct = s
            .encrypt(&m, public, SECRET)
            .expect("C_Encrypt with the public key");
        assert_eq!(ct.len(), 256);
        assert_eq!(
            s.decrypt(&m, private, &ct).expect("C_Decrypt"),
            SECRET,
            "{m:?}"
        );
    }
}

/// Builds a CK_MECHANISM without parameters.
fn plain(mech: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: mech,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

#[test]
fn decrypt_and_sign_follow_the_two_call_convention() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    let (_, private, pk) = rsa_key(&s);
    let ct = pk
        .encrypt(&mut TestRng, Pkcs1v15Encrypt, SECRET)
        .expect("software encrypt");

    let m = raw::RawModule::open();
    let f = m.list();
    let (init, decrypt) = (
        f.C_DecryptInit.expect("C_DecryptInit"),
        f.C_Decrypt.expect("C_Decrypt"),
    );
    let h = s.handle();
    let mut mech = plain(CKM_RSA_PKCS);
    let mut ct = ct;
    // SAFETY: valid session, mechanism and key handles; buffers live across each call.
    unsafe {
        assert_eq!(
            init(h, &mut mech, private.handle()),
            CKR_OK,
            "C_DecryptInit"
        );
        let mut len: CK_ULONG = 0;
        assert_eq!(
            decrypt(
                h,
                ct.as_mut_ptr(),
                ct.len() as CK_ULONG,
                std::ptr::null_mut(),
                &mut len
            ),
            CKR_OK,
            "C_Decrypt with a NULL output asks for the length"
        );
        assert_eq!(len, 256, "at most the modulus size");

        let mut small = [0u8; 5];
        let mut len: CK_ULONG = small.len() as CK_ULONG;
        assert_eq!(
            decrypt(
                h,
                ct.as_mut_ptr(),
                ct.len() as CK_ULONG,
                small.as_mut_ptr(),
                &mut len
            ),
            CKR_BUFFER_TOO_SMALL
        );
        assert!(
            usize::try_from(len).expect("len") >= SECRET.len() && len <= 256,
            "the needed size comes back: {len}"
        );

        let mut out = vec![0u8; usize::try_from(len).expect("len")];
        let mut len2: CK_ULONG = out.len() as CK_ULONG;
        assert_eq!(
            decrypt(
                h,
                ct.as_mut_ptr(),
                ct.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut len2
            ),
            CKR_OK,
            "the retry succeeds without a new C_DecryptInit"
        );
        assert_eq!(&out[..usize::try_from(len2).expect("len")], SECRET);

        let mut again = [0u8; 256];
        let mut len3: CK_ULONG = 256;
        assert_eq!(
            decrypt(
                h,
                ct.as_mut_ptr(),
                ct.len() as CK_ULONG,
                again.as_mut_ptr(),
                &mut len3
            ),
            CKR_OPERATION_NOT_INITIALIZED,
            "the operation ended with the successful call"
        );
    }

    // C_Sign: GnuTLS asks for the length first; the operation stays active.
    let (ec_pub, ec_priv) = p11_keygen(&s, None, P256_PARAMS, None, None);
    let (sign_init, sign) = (f.C_SignInit.expect("C_SignInit"), f.C_Sign.expect("C_Sign"));
    let mut hash = [0x5au8; 32];
    let mut mech = plain(CKM_ECDSA);
    // SAFETY: as above.
    let sig = unsafe {
        assert_eq!(sign_init(h, &mut mech, ec_priv.handle()), CKR_OK);
        let mut len: CK_ULONG = 0;
        assert_eq!(
            sign(h, hash.as_mut_ptr(), 32, std::ptr::null_mut(), &mut len),
            CKR_OK
        );
        assert_eq!(len, 64, "ECDSA P-256 signature length");
        let mut short = [0u8; 10];
        let mut slen: CK_ULONG = 10;
        assert_eq!(
            sign(h, hash.as_mut_ptr(), 32, short.as_mut_ptr(), &mut slen),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(slen, 64);
        let mut out = vec![0u8; 64];
        let mut olen: CK_ULONG = 64;
        assert_eq!(
            sign(h, hash.as_mut_ptr(), 32, out.as_mut_ptr(), &mut olen),
            CKR_OK
        );
        assert_eq!(olen, 64);
        out
    };
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(&s, ec_pub))
        .expect("point")
        .verify_prehash(
            &hash,
            &p256::ecdsa::Signature::from_slice(&sig).expect("64 bytes"),
        )
        .expect("the signature from the two-call C_Sign verifies");
}

#[test]
fn ecdh_on_the_card_gives_the_software_shared_secret() {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    let (public, private) = p11_keygen(&s, None, P256_PARAMS, None, None);
    let card_point = p11_ec_point(&s, public);

    let sw = p256::SecretKey::random(&mut TestRng);
    let sw_point = sw.public_key().to_encoded_point(false);
    let card_pk = p256::PublicKey::from_sec1_bytes(&card_point).expect("card point");
    let shared = (card_pk.to_projective() * *sw.to_nonzero_scalar()).to_affine();
    let shared_x = shared.to_encoded_point(false).x().expect("x").to_vec();

    for peer in [sw_point.as_bytes().to_vec(), {
        // The peer point as a DER OCTET STRING (some clients pass it this way).
        let mut d = vec![0x04, 0x41];
        d.extend_from_slice(sw_point.as_bytes());
        d
    }] {
        let params = Ecdh1DeriveParams::new(EcKdf::null(), &peer);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let k = s
            .derive_key(&Mechanism::Ecdh1Derive(params), private, &template)
            .expect("C_DeriveKey CKM_ECDH1_DERIVE");
        assert_eq!(
            p11_attr(&s, k, AttributeType::Value),
            shared_x,
            "the derived CKA_VALUE is the shared x coordinate"
        );
    }
}
