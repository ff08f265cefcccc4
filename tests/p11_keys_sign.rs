//! Key generation and every signature mechanism of the built module on a real swtpm:
//! each signature made on the card is checked in software (`rsa`, `p256`, `p384`) with the
//! public key read from the card.

mod common;

use common::*;
use cryptoki::error::RvError;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use cryptoki_sys::*;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pss::Pss;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

const SHA1_PREFIX: &[u8] = &[
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

const MSG: &[u8] = b"the quick brown fox jumps over the lazy dog, signed by a TPM";

fn digest_info(prefix: &[u8], hash: &[u8]) -> Vec<u8> {
    [prefix, hash].concat()
}

/// Signs in two updates and a final.
fn sign_multi(s: &Session, m: &Mechanism, key: ObjectHandle, msg: &[u8]) -> Vec<u8> {
    s.sign_init(m, key).expect("C_SignInit");
    let (a, b) = msg.split_at(7);
    s.sign_update(a).expect("C_SignUpdate 1");
    s.sign_update(b).expect("C_SignUpdate 2");
    s.sign_final().expect("C_SignFinal")
}

fn pss(hash: MechanismType, mgf: PkcsMgfType, s_len: u64) -> PkcsPssParams {
    PkcsPssParams {
        hash_alg: hash,
        mgf,
        s_len: s_len.into(),
    }
}

#[test]
fn rsa_key_pairs_have_paired_ids_and_a_sensitive_private_half() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    let (public, private) = p11_keygen(&s, Some(2048), &[], None, Some("rsa"));

    let n = p11_attr(&s, public, AttributeType::Modulus);
    assert_eq!(n.len(), 256, "2048-bit modulus");
    assert_eq!(
        p11_attr(&s, public, AttributeType::PublicExponent),
        vec![1, 0, 1]
    );
    let id = p11_attr(&s, public, AttributeType::Id);
    assert_eq!(
        id,
        Sha1::digest(&n).to_vec(),
        "CKA_ID = SHA-1 of the modulus"
    );
    assert_eq!(
        p11_attr(&s, private, AttributeType::Id),
        id,
        "both halves share CKA_ID"
    );
    assert_eq!(
        p11_attr(&s, private, AttributeType::Modulus),
        n,
        "NSS reads it from the private key"
    );
    assert_eq!(p11_attr(&s, private, AttributeType::Label), b"rsa");

    for (t, want) in [
        (AttributeType::Sensitive, 1),
        (AttributeType::AlwaysSensitive, 1),
        (AttributeType::Extractable, 0),
        (AttributeType::NeverExtractable, 1),
        (AttributeType::AlwaysAuthenticate, 0),
        (AttributeType::Local, 1),
        (AttributeType::Token, 1),
        (AttributeType::Private, 1),
        (AttributeType::Sign, 1),
        (AttributeType::Decrypt, 1),
    ] {
        assert_eq!(p11_attr(&s, private, t), vec![want], "private key {t:?}");
    }
    assert_eq!(p11_attr(&s, public, AttributeType::Private), vec![0]);

    // Exact CK_RVs through the raw function list, on the same module instance.
    let m = raw::RawModule::open();
    let (rv, out) = m.get_attributes(
        s.handle(),
        private.handle(),
        &[CKA_ID, CKA_PRIVATE_EXPONENT, CKA_MODULUS],
        Some(512),
    );
    assert_eq!(rv, CKR_ATTRIBUTE_SENSITIVE, "reading the private exponent");
    assert_eq!(out[1].0, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(out[0].1, id, "the other entries are filled in");
    assert_eq!(out[2].1, n);

    let vendor: CK_ATTRIBUTE_TYPE = CKA_VENDOR_DEFINED | 0x1234;
    let (rv, out) = m.get_attributes(
        s.handle(),
        public.handle(),
        &[CKA_ID, vendor, CKA_MODULUS],
        Some(512),
    );
    assert_eq!(rv, CKR_ATTRIBUTE_TYPE_INVALID, "an unknown attribute");
    assert_eq!(out[1].0, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(out[0].1, id, "CKA_ID still filled");
    assert_eq!(out[2].1, n, "CKA_MODULUS still filled");

    let (rv, out) = m.get_attributes(s.handle(), public.handle(), &[CKA_ID, CKA_MODULUS], None);
    assert_eq!(rv, CKR_OK, "NULL buffers ask for the lengths");
    assert_eq!((out[0].0, out[1].0), (20, 256));

    let (rv, out) = m.get_attributes(s.handle(), public.handle(), &[CKA_MODULUS], Some(10));
    assert_eq!(rv, CKR_BUFFER_TOO_SMALL, "a 10-byte buffer for the modulus");
    assert_eq!(out[0].0, CK_UNAVAILABLE_INFORMATION);
}

#[test]
fn ec_key_pairs_carry_the_point_as_an_octet_string_and_its_sha1_as_id() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    for (params, coord, len_byte) in [(P256_PARAMS, 32usize, 0x41u8), (P384_PARAMS, 48, 0x61)] {
        let (public, private) = p11_keygen(&s, None, params, None, None);
        let der = p11_attr(&s, public, AttributeType::EcPoint);
        assert_eq!(
            &der[..3],
            &[0x04, len_byte, 0x04],
            "DER OCTET STRING 04 {len_byte:02x} 04…"
        );
        assert_eq!(der.len(), 3 + 2 * coord);
        let point = p11_ec_point(&s, public);
        assert_eq!(p11_attr(&s, public, AttributeType::EcParams), params);
        let id = p11_attr(&s, public, AttributeType::Id);
        assert_eq!(
            id,
            Sha1::digest(&point).to_vec(),
            "CKA_ID = SHA-1 of the uncompressed point"
        );
        assert_eq!(p11_attr(&s, private, AttributeType::Id), id);
        assert_eq!(
            p11_attr(&s, private, AttributeType::EcPoint),
            der,
            "point on the private key too"
        );
        assert_eq!(p11_attr(&s, private, AttributeType::Sensitive), vec![1]);
        assert_eq!(p11_attr(&s, private, AttributeType::Extractable), vec![0]);
        assert_eq!(
            p11_attr(&s, private, AttributeType::AlwaysAuthenticate),
            vec![0]
        );
        let m = raw::RawModule::open();
        let (rv, _) = m.get_attributes(s.handle(), private.handle(), &[CKA_VALUE], Some(64));
        assert_eq!(rv, CKR_ATTRIBUTE_SENSITIVE, "the EC private value");
    }
}

fn rsa_mechanisms_round_trip(s: &Session, bits: u64) {
    let (public, private) = p11_keygen(s, Some(bits), &[], None, None);
    let pk = p11_rsa_public(s, public);
    let k = (bits / 8) as usize;
    let unprefixed = Pkcs1v15Sign::new_unprefixed();

    // CKM_RSA_PKCS over caller-made DigestInfos (ssh: SHA-512, 83 bytes).
    for di in [
        digest_info(SHA256_PREFIX, &Sha256::digest(MSG)),
        digest_info(SHA512_PREFIX, &Sha512::digest(MSG)),
    ] {
        let sig = s
            .sign(&Mechanism::RsaPkcs, private, &di)
            .expect("CKM_RSA_PKCS sign");
        assert_eq!(sig.len(), k);
        pk.verify(unprefixed.clone(), &di, &sig)
            .unwrap_or_else(|e| panic!("CKM_RSA_PKCS over a {}-byte DigestInfo: {e}", di.len()));
    }
    assert_eq!(digest_info(SHA512_PREFIX, &Sha512::digest(MSG)).len(), 83);

    // Hash-and-sign PKCS#1 v1.5, single- and multi-part.
    let cases: [(Mechanism, Vec<u8>); 4] = [
        (
            Mechanism::Sha1RsaPkcs,
            digest_info(SHA1_PREFIX, &Sha1::digest(MSG)),
        ),
        (
            Mechanism::Sha256RsaPkcs,
            digest_info(SHA256_PREFIX, &Sha256::digest(MSG)),
        ),
        (
            Mechanism::Sha384RsaPkcs,
            digest_info(SHA384_PREFIX, &Sha384::digest(MSG)),
        ),
        (
            Mechanism::Sha512RsaPkcs,
            digest_info(SHA512_PREFIX, &Sha512::digest(MSG)),
        ),
    ];
    for (mech, di) in &cases {
        let sig = s.sign(mech, private, MSG).expect("single-part sign");
        pk.verify(unprefixed.clone(), di, &sig)
            .unwrap_or_else(|e| panic!("{mech:?} single-part: {e}"));
        let sig2 = sign_multi(s, mech, private, MSG);
        pk.verify(unprefixed.clone(), di, &sig2)
            .unwrap_or_else(|e| panic!("{mech:?} multi-part: {e}"));
        assert_eq!(sig, sig2, "PKCS#1 v1.5 is deterministic");
        // C_Verify on the card's public key.
        s.verify(mech, public, MSG, &sig)
            .expect("C_Verify on the card");
        let mut bad = sig.clone();
        bad[k / 2] ^= 0x01;
        assert_eq!(
            p11_rv(s.verify(mech, public, MSG, &bad)),
            RvError::SignatureInvalid,
            "{mech:?}: a flipped bit"
        );
    }

    // CKM_RSA_PKCS_PSS over a hash, salt = hash length (TLS 1.3), and other salt lengths.
    let h256 = Sha256::digest(MSG);
    for s_len in [32u64, 0, 64] {
        let m = Mechanism::RsaPkcsPss(pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, s_len));
        let sig = s.sign(&m, private, &h256).expect("CKM_RSA_PKCS_PSS sign");
        assert_eq!(sig.len(), k);
        pk.verify(
            Pss::new_with_salt::<Sha256>(usize::try_from(s_len).expect("salt")),
            &h256,
            &sig,
        )
        .unwrap_or_else(|e| panic!("CKM_RSA_PKCS_PSS sLen {s_len}: {e}"));
        s.verify(&m, public, &h256, &sig)
            .expect("C_Verify PSS on the card");
    }
    let h384 = Sha384::digest(MSG);
    let m = Mechanism::RsaPkcsPss(pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48));
    let sig = s.sign(&m, private, &h384).expect("PSS SHA-384");
    pk.verify(Pss::new_with_salt::<Sha384>(48), &h384, &sig)
        .expect("PSS SHA-384 verifies");

    // CKM_SHA256_RSA_PKCS_PSS single and multi-part; SHA-512 too.
    let m = Mechanism::Sha256RsaPkcsPss(pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32));
    let sig = s.sign(&m, private, MSG).expect("CKM_SHA256_RSA_PKCS_PSS");
    pk.verify(Pss::new_with_salt::<Sha256>(32), &h256, &sig)
        .expect("SHA256 PSS single-part");
    let sig = sign_multi(s, &m, private, MSG);
    pk.verify(Pss::new_with_salt::<Sha256>(32), &h256, &sig)
        .expect("SHA256 PSS multi-part");
    s.verify(&m, public, MSG, &sig)
        .expect("C_Verify SHA256 PSS");
    let mut bad = sig.clone();
    bad[0] ^= 0x80;
    assert_eq!(
        p11_rv(s.verify(&m, public, MSG, &bad)),
        RvError::SignatureInvalid
    );
    let m = Mechanism::Sha512RsaPkcsPss(pss(MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64));
    let sig = sign_multi(s, &m, private, MSG);
    pk.verify(Pss::new_with_salt::<Sha512>(64), &Sha512::digest(MSG), &sig)
        .expect("SHA512 PSS multi-part");
}

#[test]
fn every_rsa_2048_signature_mechanism_verifies_in_software() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    rsa_mechanisms_round_trip(&s, 2048);
}

#[test]
fn every_rsa_3072_signature_mechanism_verifies_in_software() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    rsa_mechanisms_round_trip(&s, 3072);
}

#[test]
fn every_ecdsa_mechanism_verifies_in_software() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);

    // P-256
    let (public, private) = p11_keygen(&s, None, P256_PARAMS, None, None);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(&s, public))
        .expect("the card's P-256 point");
    let h = Sha256::digest(MSG);
    let sig = s.sign(&Mechanism::Ecdsa, private, &h).expect("CKM_ECDSA");
    assert_eq!(sig.len(), 64, "r || s, 32 bytes each");
    let parsed = p256::ecdsa::Signature::from_slice(&sig).expect("64-byte signature");
    vk.verify_prehash(&h, &parsed).expect("CKM_ECDSA verifies");
    s.verify(&Mechanism::Ecdsa, public, &h, &sig)
        .expect("C_Verify ECDSA on the card");
    let mut bad = sig.clone();
    bad[40] ^= 0x04;
    assert_eq!(
        p11_rv(s.verify(&Mechanism::Ecdsa, public, &h, &bad)),
        RvError::SignatureInvalid
    );
    // Many signatures: r and s are always left-padded to 32 bytes.
    for i in 0..16u8 {
        let hi = Sha256::digest([i]);
        let sig = s.sign(&Mechanism::Ecdsa, private, &hi).expect("CKM_ECDSA");
        assert_eq!(sig.len(), 64);
        let parsed = p256::ecdsa::Signature::from_slice(&sig).expect("64 bytes");
        vk.verify_prehash(&hi, &parsed).expect("ECDSA verifies");
    }
    for multi in [false, true] {
        let sig = if multi {
            sign_multi(&s, &Mechanism::EcdsaSha256, private, MSG)
        } else {
            s.sign(&Mechanism::EcdsaSha256, private, MSG)
                .expect("CKM_ECDSA_SHA256")
        };
        assert_eq!(sig.len(), 64);
        let parsed = p256::ecdsa::Signature::from_slice(&sig).expect("64 bytes");
        vk.verify_prehash(&h, &parsed)
            .unwrap_or_else(|e| panic!("CKM_ECDSA_SHA256 (multi-part {multi}): {e}"));
        s.verify(&Mechanism::EcdsaSha256, public, MSG, &sig)
            .expect("C_Verify ECDSA_SHA256");
    }

    // P-384
    let (public, private) = p11_keygen(&s, None, P384_PARAMS, None, None);
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(&s, public))
        .expect("the card's P-384 point");
    let h = Sha384::digest(MSG);
    let sig = s
        .sign(&Mechanism::Ecdsa, private, &h)
        .expect("CKM_ECDSA P-384");
    assert_eq!(sig.len(), 96);
    vk.verify_prehash(
        &h,
        &p384::ecdsa::Signature::from_slice(&sig).expect("96 bytes"),
    )
    .expect("P-384 CKM_ECDSA verifies");
    for multi in [false, true] {
        let sig = if multi {
            sign_multi(&s, &Mechanism::EcdsaSha384, private, MSG)
        } else {
            s.sign(&Mechanism::EcdsaSha384, private, MSG)
                .expect("CKM_ECDSA_SHA384")
        };
        assert_eq!(sig.len(), 96);
        vk.verify_prehash(
            &h,
            &p384::ecdsa::Signature::from_slice(&sig).expect("96 bytes"),
        )
        .unwrap_or_else(|e| panic!("CKM_ECDSA_SHA384 (multi-part {multi}): {e}"));
        s.verify(&Mechanism::EcdsaSha384, public, MSG, &sig)
            .expect("C_Verify ECDSA_SHA384");
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert_eq!(
            p11_rv(s.verify(&Mechanism::EcdsaSha384, public, MSG, &bad)),
            RvError::SignatureInvalid
        );
    }
}

#[test]
fn keys_survive_a_new_module_instance_and_are_found_by_id() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let _w = P11World::new(&[]);
    let p = p11_load();
    {
        let s = p11_user_session(&p);
        p11_keygen(&s, Some(2048), &[], Some(b"\x01rsa"), Some("my rsa"));
        p11_keygen(&s, None, P256_PARAMS, Some(b"\x02ec"), Some("my ec"));
    }
    p.finalize().expect("C_Finalize");

    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_ro_session(slot).expect("RO session");
    s.login(UserType::User, Some(&AuthPin::new(P11_PIN.into())))
        .expect("login");
    let find = |class: ObjectClass, id: &[u8]| -> ObjectHandle {
        let mut t = vec![Attribute::Class(class), Attribute::Id(id.to_vec())];
        if class == ObjectClass::PRIVATE_KEY {
            t.push(Attribute::Sign(true)); // as ssh searches
        }
        let found = s.find_objects(&t).expect("C_FindObjects");
        assert_eq!(found.len(), 1, "{class:?} with CKA_ID {id:02x?}");
        found[0]
    };
    let rsa_pub = find(ObjectClass::PUBLIC_KEY, b"\x01rsa");
    let rsa_priv = find(ObjectClass::PRIVATE_KEY, b"\x01rsa");
    assert_eq!(p11_attr(&s, rsa_priv, AttributeType::Label), b"my rsa");
    let sig = s
        .sign(&Mechanism::Sha256RsaPkcs, rsa_priv, MSG)
        .expect("RSA sign after reload");
    p11_rsa_public(&s, rsa_pub)
        .verify(
            Pkcs1v15Sign::new_unprefixed(),
            &digest_info(SHA256_PREFIX, &Sha256::digest(MSG)),
            &sig,
        )
        .expect("RSA signature after reload verifies");

    let ec_pub = find(ObjectClass::PUBLIC_KEY, b"\x02ec");
    let ec_priv = find(ObjectClass::PRIVATE_KEY, b"\x02ec");
    let h = Sha256::digest(MSG);
    let sig = s
        .sign(&Mechanism::Ecdsa, ec_priv, &h)
        .expect("EC sign after reload");
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(&s, ec_pub))
        .expect("point")
        .verify_prehash(
            &h,
            &p256::ecdsa::Signature::from_slice(&sig).expect("64 bytes"),
        )
        .expect("EC signature after reload verifies");
}

#[test]
fn key_generation_refuses_what_the_policy_does_not_offer() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let slot = p11_slot(&p);
    // Not logged in.
    let s = p.open_rw_session(slot).expect("RW session");
    let public = [
        Attribute::Token(true),
        Attribute::EcParams(P256_PARAMS.to_vec()),
    ];
    let private = [Attribute::Token(true), Attribute::Sign(true)];
    assert_eq!(
        p11_rv(s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)),
        RvError::UserNotLoggedIn
    );
    s.login(UserType::User, Some(&AuthPin::new(P11_PIN.into())))
        .expect("login");
    // A token key in a RO session.
    let ro = p.open_ro_session(slot).expect("RO session");
    assert_eq!(
        p11_rv(ro.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)),
        RvError::SessionReadOnly
    );
    // RSA-1024 is below the policy.
    let rsa_pub = [Attribute::Token(true), Attribute::ModulusBits(1024.into())];
    let rv = p11_rv(s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &rsa_pub, &private));
    assert!(
        matches!(
            rv,
            RvError::AttributeValueInvalid | RvError::TemplateInconsistent | RvError::KeySizeRange
        ),
        "RSA-1024: {rv:?}"
    );
    // An extractable private key.
    let extractable = [
        Attribute::Token(true),
        Attribute::Sign(true),
        Attribute::Extractable(true),
    ];
    assert_eq!(
        p11_rv(s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &extractable)),
        RvError::TemplateInconsistent
    );
}
