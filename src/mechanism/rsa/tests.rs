//! Unit tests of `rsa`.

use super::*;
use rsa::rand_core::OsRng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};

/// The bare public operation s^e mod n on a checked key, as the verifies use it.
fn public_op(n: &[u8], e: &[u8], input: &[u8]) -> Result<Vec<u8>> {
    PublicKey::parse(n, e)?.op(input)
}

// `openssl genrsa 1024`, e = 65537.
const N_1024: &str = "cf650f322da0aa93d3b3ddffb0783d3a4d907efff8648c6e29c483ee5993d9eb\
    66b0d1638586a89050810be666adcea3107b89adf4807d46fee321154712420f\
    060f3f1e4bb920ed5f87962f81d4c3aed23e9c2a94aa053179fd0ced1dfb64bc\
    75f59386479d6978e60d35a37f9b23f356fa869d66eddb358be00c92ffa12fc7";
const D_1024: &str = "82db69fe2829f2d6f941c936169b974e5d3869d98a59aefda75ef63b82cbb639\
    407f1a6ee80631ff74bc27cd05466f5616054cb6b4ca09c1acfb94993f51b6d9\
    6dea8072c5b74d9f2c52ab5d3562ab83c6c6c3d654f0a95964266c574ae9fbad\
    8281bfbd017b11c871487bf27f112acce78e36604809c3bea651d912eb8f66c9";
const P_1024: &str = "fc461bf1da2d899ae96e4404334e45903f3706af6bb027f15885e531ed7a02a1\
    b7128b2fceaa6bf68db0024585cf33e4ad77e5480d2a84d299b91b4fabdbac73";
const Q_1024: &str = "d275412de0f9906f5470a0840ae0ccca683f446c4a7806e0b83a3a3cd1b6fc90\
    7ed721d3c66405aa64ca272578a80ff0a25268e1b6e2e4d16a7ce03bb6f5ce5d";

// `openssl genrsa 1025`: modBits ≡ 1 mod 8, so emLen = k - 1 and PSS output starts with 00.
const N_1025: &str = "018c301f9240da1a154a8e9e51f7c8c7e2db5d9bf37f3c1af5be7f197df8e31e\
    cff161eccfadb8c6eca4afe9fee3bd9839e65735bbc57812ca63928f561e619d\
    1260a696e77c27329f0dab13625d042e0431151366a4285c166b4d9867d0b0ef\
    9f30162f4745abb577600545ded5f7877ee53d6a218f66060e07496be64f03e3c5";
const D_1025: &str = "0161475c2fa72294959db914d5d494b620c52970b1ad282486334ad4a96ef0df\
    7ddf2949e85a696500894dcfe318a2ec85dcaeb15c71964373335cf1f181ffda\
    f4ba070f1a2f9d81700bab1ad215ffdc1c3adeaf5a27abee6c95a5a430475656\
    4995fc4f63f0ff3b2c1b29334cac3d1e388ccde28cf8872e132bd00f7798d50b35";
const P_1025: &str = "01bf9dc8a467ef8ad6b3a7f985e34954c82d7c229b5859a0e3b751dba14439dd\
    c6c446c89153c8e5c12301a90ed65a8c490896f65ec57915627067f08cf0e8a597";
const Q_1025: &str = "e2965134f97cf4f312343da8b15afdb2cdc93b54d37ad775ac85aab5ced79a61\
    a3949b677fc6270af1fb32011edeb5f1fabe46e402dc29fd468d52ff05220503";

const E: [u8; 3] = [0x01, 0x00, 0x01];

/// The SHA-512 DigestInfo prefix as RFC 8017 §9.2 note 1 prints it.
const SHA512_PREFIX: &str = "3051300d060960864801650304020305000440";

struct TestKey {
    private: RsaPrivateKey,
    n: Vec<u8>,
    k: usize,
    bits: usize,
}

impl TestKey {
    fn new(n: &str, d: &str, p: &str, q: &str) -> Self {
        let int = |s: &str| BigUint::from_bytes_be(&hex::decode(s).unwrap());
        let private = RsaPrivateKey::from_components(
            int(n),
            BigUint::from_bytes_be(&E),
            int(d),
            vec![int(p), int(q)],
        )
        .unwrap();
        let n = private.n().to_bytes_be();
        let bits = private.n().bits();
        TestKey {
            private,
            n,
            k: bits.div_ceil(8),
            bits,
        }
    }

    fn k1024() -> Self {
        Self::new(N_1024, D_1024, P_1024, Q_1024)
    }

    fn k1025() -> Self {
        Self::new(N_1025, D_1025, P_1025, Q_1025)
    }

    fn public(&self) -> RsaPublicKey {
        self.private.to_public_key()
    }

    /// The raw private-key operation the TPM does: input^d mod n, k bytes.
    fn private_op(&self, input: &[u8]) -> Vec<u8> {
        let x = BigUint::from_bytes_be(input);
        assert!(&x < self.private.n());
        let y = x.modpow(self.private.d(), self.private.n()).to_bytes_be();
        let mut out = vec![0u8; self.k];
        out[self.k - y.len()..].copy_from_slice(&y);
        out
    }
}

fn sha512_digest_info(data: &[u8]) -> Vec<u8> {
    HashAlg::Sha512
        .digest_info(&digest(HashAlg::Sha512, data))
        .unwrap()
}

#[test]
fn pkcs1_sign_pad_lays_out_the_block_and_limits_the_input() {
    let em = pkcs1_sign_pad(b"abc", 16).unwrap();
    assert_eq!(hex::encode(&*em), "0001ffffffffffffffffffff00616263");
    assert_eq!(pkcs1_sign_pad(&[7; 5], 16).unwrap().len(), 16);
    assert!(matches!(
        pkcs1_sign_pad(&[7; 6], 16),
        Err(Error::DataLenRange(_))
    ));
}

#[test]
fn pkcs1_signature_made_with_raw_rsa_verifies_here_and_in_the_rsa_crate() {
    let key = TestKey::k1024();
    // What ssh signs: a SHA-512 DigestInfo of 83 bytes.
    let t = sha512_digest_info(b"ssh session");
    assert_eq!(t.len(), 83);
    let sig = key.private_op(&pkcs1_sign_pad(&t, key.k).unwrap());
    verify_pkcs1(&key.n, &E, &t, &sig).unwrap();

    let scheme = Pkcs1v15Sign {
        hash_len: Some(64),
        prefix: hex::decode(SHA512_PREFIX).unwrap().into(),
    };
    key.public()
        .verify(scheme, &digest(HashAlg::Sha512, b"ssh session"), &sig)
        .unwrap();

    // CKM_RSA_PKCS over raw data of maximum length.
    let raw = vec![0x5a; key.k - 11];
    let sig = key.private_op(&pkcs1_sign_pad(&raw, key.k).unwrap());
    verify_pkcs1(&key.n, &E, &raw, &sig).unwrap();
    key.public()
        .verify(Pkcs1v15Sign::new_unprefixed(), &raw, &sig)
        .unwrap();
}

#[test]
fn pkcs1_signature_from_the_rsa_crate_verifies_here() {
    let key = TestKey::k1024();
    let hash = digest(HashAlg::Sha512, b"hello");
    let scheme = Pkcs1v15Sign {
        hash_len: Some(64),
        prefix: hex::decode(SHA512_PREFIX).unwrap().into(),
    };
    let sig = key.private.sign(scheme, &hash).unwrap();
    verify_pkcs1(&key.n, &E, &sha512_digest_info(b"hello"), &sig).unwrap();
}

#[test]
fn pkcs1_verify_rejects_bad_signatures_with_the_right_errors() {
    let key = TestKey::k1024();
    let t = sha512_digest_info(b"x");
    let sig = key.private_op(&pkcs1_sign_pad(&t, key.k).unwrap());

    let mut tampered = sig.clone();
    tampered[40] ^= 1;
    assert!(matches!(
        verify_pkcs1(&key.n, &E, &t, &tampered),
        Err(Error::SignatureInvalid)
    ));
    assert!(matches!(
        verify_pkcs1(&key.n, &E, &sha512_digest_info(b"y"), &sig),
        Err(Error::SignatureInvalid)
    ));
    assert!(matches!(
        verify_pkcs1(&key.n, &E, &t, &sig[1..]),
        Err(Error::SignatureLenRange)
    ));
    assert!(matches!(
        verify_pkcs1(&key.n, &E, &t, &[0xff; 128]),
        Err(Error::SignatureInvalid)
    ));
    assert!(matches!(
        verify_pkcs1(&key.n, &E, &[0; 118], &sig),
        Err(Error::DataLenRange(_))
    ));
}

#[test]
fn pss_signature_made_with_raw_rsa_verifies_here_and_in_the_rsa_crate() {
    for key in [TestKey::k1024(), TestKey::k1025()] {
        let mhash = digest(HashAlg::Sha256, b"tls 1.3 handshake");
        let em = pss_encode(&mhash, HashAlg::Sha256, HashAlg::Sha256, 32, key.bits).unwrap();
        assert_eq!(em.len(), key.k);
        if key.bits % 8 == 1 {
            assert_eq!(em[0], 0);
        }
        assert_eq!(em[key.k - 1], 0xbc);
        let sig = key.private_op(&em);
        verify_pss(
            &key.n,
            &E,
            &mhash,
            HashAlg::Sha256,
            HashAlg::Sha256,
            32,
            &sig,
        )
        .unwrap();
        key.public()
            .verify(Pss::new::<sha2::Sha256>(), &mhash, &sig)
            .unwrap();

        // The declared salt length is checked exactly.
        assert!(matches!(
            verify_pss(
                &key.n,
                &E,
                &mhash,
                HashAlg::Sha256,
                HashAlg::Sha256,
                20,
                &sig
            ),
            Err(Error::SignatureInvalid)
        ));
        let mut tampered = sig.clone();
        tampered[7] ^= 0x80;
        assert!(matches!(
            verify_pss(
                &key.n,
                &E,
                &mhash,
                HashAlg::Sha256,
                HashAlg::Sha256,
                32,
                &tampered
            ),
            Err(Error::SignatureInvalid)
        ));
        assert!(matches!(
            verify_pss(
                &key.n,
                &E,
                &mhash,
                HashAlg::Sha256,
                HashAlg::Sha256,
                32,
                &sig[1..]
            ),
            Err(Error::SignatureLenRange)
        ));
    }
}

#[test]
fn pss_signature_from_the_rsa_crate_verifies_here() {
    for key in [TestKey::k1024(), TestKey::k1025()] {
        let mhash = digest(HashAlg::Sha384, b"abc");
        let sig = key
            .private
            .sign_with_rng(&mut OsRng, Pss::new::<sha2::Sha384>(), &mhash)
            .unwrap();
        verify_pss(
            &key.n,
            &E,
            &mhash,
            HashAlg::Sha384,
            HashAlg::Sha384,
            48,
            &sig,
        )
        .unwrap();
    }
}

#[test]
fn pss_with_other_mgf_hash_and_salt_lengths_round_trips() {
    let key = TestKey::k1025();
    let mhash = digest(HashAlg::Sha256, b"m");
    // Largest salt: emLen - hLen - 2 (what the TCG spec and some TPMs use).
    let em_len = (key.bits - 1).div_ceil(8);
    for salt_len in [0, 20, em_len - 32 - 2] {
        let em = pss_encode(&mhash, HashAlg::Sha256, HashAlg::Sha1, salt_len, key.bits).unwrap();
        let sig = key.private_op(&em);
        verify_pss(
            &key.n,
            &E,
            &mhash,
            HashAlg::Sha256,
            HashAlg::Sha1,
            salt_len,
            &sig,
        )
        .unwrap();
        assert!(matches!(
            verify_pss(
                &key.n,
                &E,
                &mhash,
                HashAlg::Sha256,
                HashAlg::Sha256,
                salt_len,
                &sig
            ),
            Err(Error::SignatureInvalid)
        ));
    }
    assert!(matches!(
        pss_encode(
            &mhash,
            HashAlg::Sha256,
            HashAlg::Sha1,
            em_len - 32 - 1,
            key.bits
        ),
        Err(Error::MechanismParamInvalid(_))
    ));
    assert!(matches!(
        pss_encode(&mhash[1..], HashAlg::Sha256, HashAlg::Sha1, 32, key.bits),
        Err(Error::DataLenRange(_))
    ));
    assert!(matches!(
        verify_pss(
            &key.n,
            &E,
            &mhash,
            HashAlg::Sha256,
            HashAlg::Sha1,
            em_len,
            &[0; 129]
        ),
        Err(Error::MechanismParamInvalid(_))
    ));
}

#[test]
fn oaep_with_a_label_round_trips_through_raw_rsa() {
    let key = TestKey::k1024();
    let label = b"abc";
    for (hash, mgf) in [
        (HashAlg::Sha1, HashAlg::Sha1),
        (HashAlg::Sha256, HashAlg::Sha256),
        (HashAlg::Sha256, HashAlg::Sha1),
    ] {
        let max = key.k - 2 * hash.output_len() - 2;
        for msg in [&b""[..], b"secret", &vec![0x42; max][..]] {
            let ct = encrypt_oaep(&key.n, &E, msg, hash, mgf, label).unwrap();
            assert_eq!(ct.len(), key.k);
            let em = key.private_op(&ct);
            assert_eq!(&*oaep_decode(&em, hash, mgf, label).unwrap(), msg);
        }
        assert!(matches!(
            encrypt_oaep(&key.n, &E, &vec![0; max + 1], hash, mgf, label),
            Err(Error::DataLenRange(_))
        ));

        let ct = encrypt_oaep(&key.n, &E, b"secret", hash, mgf, label).unwrap();
        let em = key.private_op(&ct);
        assert!(matches!(
            oaep_decode(&em, hash, mgf, b"abd"),
            Err(Error::EncryptedDataInvalid)
        ));
        assert!(matches!(
            oaep_decode(&em, hash, mgf, b""),
            Err(Error::EncryptedDataInvalid)
        ));
        for i in [0, 1, 30, key.k - 1] {
            let mut bad = em.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(
                    oaep_decode(&bad, hash, mgf, label),
                    Err(Error::EncryptedDataInvalid)
                ),
                "em byte {i}"
            );
        }
        let mut bad_ct = ct.clone();
        bad_ct[5] ^= 0x10;
        assert!(matches!(
            oaep_decode(&key.private_op(&bad_ct), hash, mgf, label),
            Err(Error::EncryptedDataInvalid)
        ));
    }
    assert!(matches!(
        oaep_decode(&[0; 41], HashAlg::Sha1, HashAlg::Sha1, b""),
        Err(Error::EncryptedDataInvalid)
    ));
    assert!(matches!(
        encrypt_oaep(&key.n, &E, b"", HashAlg::Sha512, HashAlg::Sha512, b""),
        Err(Error::KeySizeRange)
    ));
}

#[test]
fn oaep_interoperates_with_the_rsa_crate() {
    let key = TestKey::k1024();
    let ct = key
        .public()
        .encrypt(
            &mut OsRng,
            Oaep::new_with_label::<sha2::Sha256, _>("abc"),
            b"from rsa",
        )
        .unwrap();
    let em = key.private_op(&ct);
    let msg = oaep_decode(&em, HashAlg::Sha256, HashAlg::Sha256, b"abc").unwrap();
    assert_eq!(&*msg, b"from rsa");

    let ct = encrypt_oaep(
        &key.n,
        &E,
        b"to rsa",
        HashAlg::Sha384,
        HashAlg::Sha1,
        b"lbl",
    )
    .unwrap();
    let msg = key
        .private
        .decrypt(
            Oaep::new_with_mgf_hash_and_label::<sha2::Sha384, sha1::Sha1, _>("lbl"),
            &ct,
        )
        .unwrap();
    assert_eq!(msg, b"to rsa");
}

#[test]
fn pkcs1_encryption_round_trips_and_interoperates() {
    let key = TestKey::k1024();
    for msg in [&b""[..], b"secret", &vec![0x42; key.k - 11][..]] {
        let ct = encrypt_pkcs1(&key.n, &E, msg).unwrap();
        assert_eq!(ct.len(), key.k);
        let em = key.private_op(&ct);
        assert_eq!(&*pkcs1_decrypt_unpad(&em).unwrap(), msg);
        assert_eq!(key.private.decrypt(Pkcs1v15Encrypt, &ct).unwrap(), msg);
    }
    assert!(matches!(
        encrypt_pkcs1(&key.n, &E, &vec![0; key.k - 10]),
        Err(Error::DataLenRange(_))
    ));
    let ct = key
        .public()
        .encrypt(&mut OsRng, Pkcs1v15Encrypt, b"from rsa")
        .unwrap();
    assert_eq!(
        &*pkcs1_decrypt_unpad(&key.private_op(&ct)).unwrap(),
        b"from rsa"
    );
}

#[test]
fn pkcs1_unpad_rejects_malformed_blocks() {
    let block = |ps_len: usize, msg: &[u8]| {
        let mut em = vec![0x00, 0x02];
        em.extend(std::iter::repeat_n(0x33, ps_len));
        em.push(0x00);
        em.extend_from_slice(msg);
        em
    };
    assert_eq!(&*pkcs1_decrypt_unpad(&block(8, b"hi")).unwrap(), b"hi");
    assert_eq!(pkcs1_decrypt_unpad(&block(8, b"")).unwrap().len(), 0);
    let invalid = |em: &[u8]| matches!(pkcs1_decrypt_unpad(em), Err(Error::EncryptedDataInvalid));
    assert!(invalid(&block(7, b"hi")));
    let mut em = block(8, b"hi");
    em[0] = 1;
    assert!(invalid(&em));
    let mut em = block(8, b"hi");
    em[1] = 1;
    assert!(invalid(&em));
    let mut em = block(20, b"");
    em.pop();
    assert!(invalid(&em)); // no separator
    let mut em = block(20, b"hi");
    em[5] = 0; // separator after 3 bytes of PS
    assert!(invalid(&em));
    assert!(invalid(&[0, 2, 1, 1, 1, 1, 1, 1, 1, 1]));
}

#[test]
fn raw_encryption_is_the_bare_public_operation() {
    let key = TestKey::k1024();
    let msg = b"short integer";
    let ct = encrypt_raw(&key.n, &E, msg).unwrap();
    assert_eq!(ct.len(), key.k);
    let pt = key.private_op(&ct);
    assert_eq!(&pt[key.k - msg.len()..], msg);
    assert!(pt[..key.k - msg.len()].iter().all(|&b| b == 0));
    assert_eq!(public_op(&key.n, &E, &pt).unwrap(), ct);

    assert!(matches!(
        encrypt_raw(&key.n, &E, &key.n),
        Err(Error::DataInvalid(_))
    ));
    assert!(matches!(
        encrypt_raw(&key.n, &E, &[0xff; 128]),
        Err(Error::DataInvalid(_))
    ));
    assert!(matches!(
        encrypt_raw(&key.n, &E, &[0x01; 129]),
        Err(Error::DataLenRange(_))
    ));
}

#[test]
fn bad_public_keys_are_refused() {
    let key = TestKey::k1024();
    assert!(matches!(
        public_op(&key.n[..32], &E, b"x"),
        Err(Error::KeySizeRange)
    ));
    assert!(matches!(public_op(&[], &E, b"x"), Err(Error::KeySizeRange)));
    let mut even = key.n.clone();
    even[127] &= 0xfe;
    assert!(matches!(
        public_op(&even, &E, b"x"),
        Err(Error::KeyTypeInconsistent)
    ));
    assert!(matches!(
        public_op(&key.n, &[1], b"x"),
        Err(Error::KeyTypeInconsistent)
    ));
    assert!(matches!(
        public_op(&key.n, &[], b"x"),
        Err(Error::KeyTypeInconsistent)
    ));
    // Leading zero bytes on the modulus do not change k.
    let mut padded = vec![0, 0];
    padded.extend_from_slice(&key.n);
    assert_eq!(public_op(&padded, &E, b"x").unwrap().len(), 128);
}
