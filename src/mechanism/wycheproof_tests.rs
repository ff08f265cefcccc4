//! The host-side RSA encodings of [`super::rsa`] checked against Project Wycheproof's RSA
//! test vectors (github.com/C2SP/wycheproof, Apache-2.0), kept verbatim in
//! `tests/data/wycheproof/` (its README names the commit and paths).
//!
//! Each vector says whether its input is `valid` (must be accepted with the given result),
//! `invalid` (must be refused) or `acceptable` (either is fine, but nothing may panic).
//! The decryption vectors hold private keys: the tests do the raw RSA step the TPM would do
//! (m = c^d mod n, left-padded to k bytes) and give the result to our decoding, so what is
//! checked is exactly the host's share of C_Decrypt. The signature vectors hold public keys
//! only and go straight to our verification.
//!
//! Every file's cases are counted: the count must match the file's `numberOfTests`, and a
//! floor of valid and of invalid cases must have reached the function under test, so no
//! test passes because a file was empty or misread.

use std::fs;

use rsa::BigUint;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::digest::{HashAlg, digest};
use super::rsa::{
    encrypt_oaep, encrypt_pkcs1, oaep_decode, pkcs1_decrypt_unpad, pkcs1_sign_pad, pss_encode,
    verify_pkcs1, verify_pss,
};
use crate::error::Error;

/// Where the vector files live: found from the crate root, whatever the working directory.
const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wycheproof/");

const PKCS1_DECRYPT_FILE: &str = "rsa_pkcs1_2048_test.json";
const OAEP_SHA256_FILE: &str = "rsa_oaep_2048_sha256_mgf1sha256_test.json";
const OAEP_SHA1_FILE: &str = "rsa_oaep_2048_sha1_mgf1sha1_test.json";
const PKCS1_SIGNATURE_FILE: &str = "rsa_signature_2048_sha256_test.json";
const PSS_SIGNATURE_FILE: &str = "rsa_pss_2048_sha256_mgf1_32_test.json";

// ---------------------------------------------------------------------------------------
// The JSON layout (only the fields these tests use; serde ignores the rest).
// ---------------------------------------------------------------------------------------

/// What a vector expects of the implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expected {
    /// Must be accepted, with the vector's result.
    Valid,
    /// Must be refused.
    Invalid,
    /// May be accepted or refused (legacy or borderline encodings).
    Acceptable,
}

/// One vector file: a named algorithm and groups of cases sharing a key and parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorFile<G> {
    /// E.g. "RSAES-OAEP", "RSASSA-PSS".
    algorithm: String,
    /// The file's own count of its cases, to check nothing was skipped.
    number_of_tests: usize,
    test_groups: Vec<G>,
}

/// An RSA private key as the decryption vectors give it: big-endian hex integers (the
/// modulus with a leading 00 byte, as DER writes it).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorPrivateKey {
    modulus: String,
    public_exponent: String,
    private_exponent: String,
}

/// An RSA public key as the signature vectors give it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorPublicKey {
    modulus: String,
    public_exponent: String,
}

/// A group of decryption cases (RsaesPkcs1Decrypt or RsaesOaepDecrypt).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecryptGroup {
    private_key: VectorPrivateKey,
    /// OAEP only: the label hash, e.g. "SHA-256".
    sha: Option<String>,
    /// OAEP only: the MGF1 hash.
    mgf_sha: Option<String>,
    tests: Vec<DecryptCase>,
}

/// One decryption case.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecryptCase {
    tc_id: u64,
    comment: String,
    flags: Vec<String>,
    /// The plaintext a valid ciphertext decrypts to (hex).
    msg: String,
    /// The ciphertext (hex); not always k bytes long.
    ct: String,
    /// OAEP only: the label (hex); absent for PKCS#1 v1.5, read as empty.
    #[serde(default)]
    label: String,
    result: Expected,
}

/// A group of signature cases (RsassaPkcs1Verify or RsassaPssVerify).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureGroup {
    public_key: VectorPublicKey,
    /// The message hash, e.g. "SHA-256".
    sha: String,
    /// PSS only: the MGF1 hash.
    mgf_sha: Option<String>,
    /// PSS only: the salt length in bytes.
    s_len: Option<usize>,
    tests: Vec<SignatureCase>,
}

/// One signature case.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureCase {
    tc_id: u64,
    comment: String,
    flags: Vec<String>,
    /// The signed message itself (hex), not its hash.
    msg: String,
    /// The signature (hex); not always k bytes long.
    sig: String,
    result: Expected,
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Reads and parses one vector file; panics (failing the test) with the path if it cannot.
fn load<T: DeserializeOwned>(file: &str) -> T {
    let path = format!("{DATA_DIR}{file}");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {path}: {e}"))
}

/// Hex to bytes; the vectors are well-formed, so a failure is a broken file.
fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex in a vector ({e}): {s:?}"))
}

/// The module's hash for a Wycheproof hash name.
fn hash_named(name: &str) -> HashAlg {
    match name {
        "SHA-1" => HashAlg::Sha1,
        "SHA-256" => HashAlg::Sha256,
        "SHA-384" => HashAlg::Sha384,
        "SHA-512" => HashAlg::Sha512,
        other => panic!("a vector names hash {other:?}, which the module does not offer"),
    }
}

/// "file tcId N (comment) [flags]", to say which case failed.
fn describe(file: &str, tc_id: u64, comment: &str, flags: &[String]) -> String {
    format!("{file} tcId {tc_id} ({comment}) {flags:?}")
}

/// A vector's private key reduced to what the raw RSA step needs: what the TPM holds.
struct RawPrivateKey {
    /// The modulus as the vector writes it (with its leading 00), for the public-key
    /// functions, which must cope with that.
    n_bytes: Vec<u8>,
    e_bytes: Vec<u8>,
    n: BigUint,
    d: BigUint,
    /// Modulus length in bits.
    bits: usize,
    /// Modulus length in bytes.
    k: usize,
}

impl RawPrivateKey {
    fn from_vector(key: &VectorPrivateKey) -> Self {
        let n_bytes = unhex(&key.modulus);
        let n = BigUint::from_bytes_be(&n_bytes);
        let bits = n.bits();
        RawPrivateKey {
            e_bytes: unhex(&key.public_exponent),
            d: BigUint::from_bytes_be(&unhex(&key.private_exponent)),
            n_bytes,
            n,
            bits,
            k: bits.div_ceil(8),
        }
    }

    /// The raw decryption the TPM does, as the module drives it: `None` where it never
    /// reaches the host decoding, i.e. a ciphertext that is not exactly k bytes (the
    /// module's CKR_ENCRYPTED_DATA_LEN_RANGE check) or not below n (the TPM refuses it);
    /// otherwise c^d mod n as k big-endian bytes.
    fn decrypt_raw(&self, c: &[u8]) -> Option<Vec<u8>> {
        if c.len() != self.k {
            return None;
        }
        let c = BigUint::from_bytes_be(c);
        if c >= self.n {
            return None;
        }
        let m = c.modpow(&self.d, &self.n).to_bytes_be();
        let mut out = vec![0u8; self.k];
        out[self.k - m.len()..].copy_from_slice(&m);
        Some(out)
    }

    /// The raw signing the TPM does on an encoded message of k bytes (below n by
    /// construction of the encodings).
    fn sign_raw(&self, em: &[u8]) -> Vec<u8> {
        self.decrypt_raw(em)
            .unwrap_or_else(|| panic!("an encoded message is not a k-byte integer below n"))
    }
}

/// How many cases of a file ran, by expected result.
#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    /// Invalid cases that reached the function under test (for decryption, those the raw
    /// step did not already refuse).
    invalid_reaching_host: usize,
}

impl Tally {
    fn record(&mut self, expected: Expected, reached_host: bool) {
        match expected {
            Expected::Valid => self.valid += 1,
            Expected::Invalid => {
                self.invalid += 1;
                if reached_host {
                    self.invalid_reaching_host += 1;
                }
            }
            Expected::Acceptable => self.acceptable += 1,
        }
    }

    /// Every case of the file ran, and at least `min_valid` valid and `min_invalid` invalid
    /// cases were put to the function under test.
    fn assert_covers(
        &self,
        file: &str,
        number_of_tests: usize,
        min_valid: usize,
        min_invalid: usize,
    ) {
        let total = self.valid + self.invalid + self.acceptable;
        assert_eq!(
            total, number_of_tests,
            "{file}: ran {total} cases but the file declares {number_of_tests}: {self:?}"
        );
        assert!(
            self.valid >= min_valid,
            "{file}: only {} valid cases ran, expected at least {min_valid}: {self:?}",
            self.valid
        );
        assert!(
            self.invalid_reaching_host >= min_invalid,
            "{file}: only {} invalid cases reached the code under test, expected at least \
             {min_invalid}: {self:?}",
            self.invalid_reaching_host
        );
    }
}

// ---------------------------------------------------------------------------------------
// Decryption: raw RSA as the TPM would, then our unpadding.
// ---------------------------------------------------------------------------------------

/// The host decoding a decryption file is for.
#[derive(Debug, Clone, Copy)]
enum Decoding {
    /// EME-PKCS1-v1_5, [`pkcs1_decrypt_unpad`].
    Pkcs1,
    /// EME-OAEP, [`oaep_decode`], with these hashes (checked against every group).
    Oaep { hash: HashAlg, mgf_hash: HashAlg },
}

/// Runs every case of a decryption file through the raw RSA step and `decoding`, checks
/// each against its expected result, and returns the counts.
fn run_decryption_file(file: &str, algorithm: &str, decoding: Decoding) -> (Tally, usize) {
    let vectors: VectorFile<DecryptGroup> = load(file);
    assert_eq!(
        vectors.algorithm, algorithm,
        "{file}: not the expected algorithm"
    );
    let mut tally = Tally::default();
    for group in &vectors.test_groups {
        if let Decoding::Oaep { hash, mgf_hash } = decoding {
            let named = |s: &Option<String>| hash_named(s.as_deref().unwrap_or_default());
            assert_eq!(named(&group.sha), hash, "{file}: a group's OAEP hash");
            assert_eq!(
                named(&group.mgf_sha),
                mgf_hash,
                "{file}: a group's MGF1 hash"
            );
        }
        let key = RawPrivateKey::from_vector(&group.private_key);
        for case in &group.tests {
            let what = describe(file, case.tc_id, &case.comment, &case.flags);
            let ct = unhex(&case.ct);
            let Some(em) = key.decrypt_raw(&ct) else {
                assert_ne!(
                    case.result,
                    Expected::Valid,
                    "{what}: a valid ciphertext of {} bytes (k = {}) did not pass the raw step",
                    ct.len(),
                    key.k
                );
                tally.record(case.result, false);
                continue;
            };
            let outcome = match decoding {
                Decoding::Pkcs1 => pkcs1_decrypt_unpad(&em),
                Decoding::Oaep { hash, mgf_hash } => {
                    oaep_decode(&em, hash, mgf_hash, &unhex(&case.label))
                }
            };
            match (case.result, outcome) {
                (Expected::Valid, Ok(msg)) => assert_eq!(
                    msg.as_slice(),
                    unhex(&case.msg).as_slice(),
                    "{what}: decoded to the wrong message"
                ),
                (Expected::Valid, Err(e)) => panic!("{what}: valid ciphertext refused: {e:?}"),
                (Expected::Invalid, Ok(msg)) => panic!(
                    "{what}: invalid ciphertext accepted, decoded to {}",
                    hex::encode(msg.as_slice())
                ),
                (Expected::Invalid, Err(e)) => assert!(
                    matches!(e, Error::EncryptedDataInvalid),
                    "{what}: refused, but with {e:?} instead of EncryptedDataInvalid"
                ),
                (Expected::Acceptable, _) => {}
            }
            tally.record(case.result, true);
        }
    }
    (tally, vectors.number_of_tests)
}

/// PKCS#1 v1.5 unpadding recovers every valid message of Wycheproof's 2048-bit vectors
/// (including the special-case ciphertexts and the SSLv23 padding, which RFC 8017 allows)
/// and refuses every invalid one with EncryptedDataInvalid.
#[test]
fn pkcs1_v15_decoding_agrees_with_wycheproof() {
    let (tally, declared) =
        run_decryption_file(PKCS1_DECRYPT_FILE, "RSAES-PKCS1-v1_5", Decoding::Pkcs1);
    // At this commit: 42 valid, 25 invalid (19 reach the unpadding, 6 are malformed
    // ciphertexts the raw step refuses).
    tally.assert_covers(PKCS1_DECRYPT_FILE, declared, 40, 15);
}

/// OAEP decoding with SHA-256 and MGF1-SHA-256 recovers every valid message (with and
/// without labels) and refuses every invalid one.
#[test]
fn oaep_sha256_decoding_agrees_with_wycheproof() {
    let decoding = Decoding::Oaep {
        hash: HashAlg::Sha256,
        mgf_hash: HashAlg::Sha256,
    };
    let (tally, declared) = run_decryption_file(OAEP_SHA256_FILE, "RSAES-OAEP", decoding);
    // At this commit: 18 valid, 19 invalid (13 reach the decoding).
    tally.assert_covers(OAEP_SHA256_FILE, declared, 15, 10);
}

/// OAEP decoding with SHA-1 and MGF1-SHA-1 (pkcs11-tool's and many clients' default)
/// recovers every valid message and refuses every invalid one.
#[test]
fn oaep_sha1_decoding_agrees_with_wycheproof() {
    let decoding = Decoding::Oaep {
        hash: HashAlg::Sha1,
        mgf_hash: HashAlg::Sha1,
    };
    let (tally, declared) = run_decryption_file(OAEP_SHA1_FILE, "RSAES-OAEP", decoding);
    // At this commit: 17 valid, 19 invalid (13 reach the decoding).
    tally.assert_covers(OAEP_SHA1_FILE, declared, 15, 10);
}

/// Our encryptions of the vectors' valid messages, under the vectors' keys and labels,
/// decrypt (raw RSA, then our decoding) back to the same messages: the encrypting side of
/// PKCS#1 v1.5 and OAEP on real 2048-bit keys, with moduli written with a leading 00.
#[test]
fn encryption_of_wycheproof_messages_round_trips_under_the_vector_keys() {
    let mut round_trips = 0usize;
    let files = [
        (PKCS1_DECRYPT_FILE, Decoding::Pkcs1),
        (
            OAEP_SHA256_FILE,
            Decoding::Oaep {
                hash: HashAlg::Sha256,
                mgf_hash: HashAlg::Sha256,
            },
        ),
        (
            OAEP_SHA1_FILE,
            Decoding::Oaep {
                hash: HashAlg::Sha1,
                mgf_hash: HashAlg::Sha1,
            },
        ),
    ];
    for (file, decoding) in files {
        let vectors: VectorFile<DecryptGroup> = load(file);
        for group in &vectors.test_groups {
            let key = RawPrivateKey::from_vector(&group.private_key);
            for case in group.tests.iter().filter(|c| c.result == Expected::Valid) {
                let what = describe(file, case.tc_id, &case.comment, &case.flags);
                let msg = unhex(&case.msg);
                let label = unhex(&case.label);
                let ct = match decoding {
                    Decoding::Pkcs1 => encrypt_pkcs1(&key.n_bytes, &key.e_bytes, &msg),
                    Decoding::Oaep { hash, mgf_hash } => {
                        encrypt_oaep(&key.n_bytes, &key.e_bytes, &msg, hash, mgf_hash, &label)
                    }
                }
                .unwrap_or_else(|e| panic!("{what}: encryption failed: {e:?}"));
                assert_eq!(ct.len(), key.k, "{what}: ciphertext length");
                let em = key
                    .decrypt_raw(&ct)
                    .unwrap_or_else(|| panic!("{what}: our ciphertext is not below n"));
                let back = match decoding {
                    Decoding::Pkcs1 => pkcs1_decrypt_unpad(&em),
                    Decoding::Oaep { hash, mgf_hash } => oaep_decode(&em, hash, mgf_hash, &label),
                }
                .unwrap_or_else(|e| panic!("{what}: our ciphertext did not decode: {e:?}"));
                assert_eq!(back.as_slice(), msg.as_slice(), "{what}: round trip");
                round_trips += 1;
            }
        }
    }
    // 42 + 18 + 17 valid messages at this commit.
    assert!(
        round_trips >= 70,
        "only {round_trips} messages round-tripped"
    );
}

// ---------------------------------------------------------------------------------------
// Signatures: our verification with the vector's public key.
// ---------------------------------------------------------------------------------------

/// The signature scheme a signature file is for.
#[derive(Debug, Clone, Copy)]
enum Scheme {
    /// RSASSA-PKCS1-v1_5 over the DigestInfo of the message hash, [`verify_pkcs1`].
    Pkcs1,
    /// RSASSA-PSS, [`verify_pss`], with these parameters (checked against every group).
    Pss { mgf_hash: HashAlg, salt_len: usize },
}

/// Runs every case of a signature file through our verification, hashing the message with
/// `hash` (checked against every group), and returns the counts.
fn run_signature_file(
    file: &str,
    algorithm: &str,
    hash: HashAlg,
    scheme: Scheme,
) -> (Tally, usize) {
    let vectors: VectorFile<SignatureGroup> = load(file);
    assert_eq!(
        vectors.algorithm, algorithm,
        "{file}: not the expected algorithm"
    );
    let mut tally = Tally::default();
    for group in &vectors.test_groups {
        assert_eq!(hash_named(&group.sha), hash, "{file}: a group's hash");
        if let Scheme::Pss { mgf_hash, salt_len } = scheme {
            let mgf = hash_named(group.mgf_sha.as_deref().unwrap_or_default());
            assert_eq!(mgf, mgf_hash, "{file}: a group's MGF1 hash");
            assert_eq!(group.s_len, Some(salt_len), "{file}: a group's salt length");
        }
        let n = unhex(&group.public_key.modulus);
        let e = unhex(&group.public_key.public_exponent);
        for case in &group.tests {
            let what = describe(file, case.tc_id, &case.comment, &case.flags);
            let mhash = digest(hash, &unhex(&case.msg));
            let sig = unhex(&case.sig);
            let outcome = match scheme {
                Scheme::Pkcs1 => {
                    // What a client passes to CKM_RSA_PKCS after hashing: the DigestInfo
                    // with NULL parameters (RFC 8017 §9.2).
                    let t = hash
                        .digest_info(&mhash)
                        .unwrap_or_else(|e| panic!("{what}: DigestInfo: {e:?}"));
                    verify_pkcs1(&n, &e, &t, &sig)
                }
                Scheme::Pss { mgf_hash, salt_len } => {
                    verify_pss(&n, &e, &mhash, hash, mgf_hash, salt_len, &sig)
                }
            };
            match (case.result, outcome) {
                (Expected::Valid, Ok(())) => {}
                (Expected::Valid, Err(e)) => panic!("{what}: valid signature refused: {e:?}"),
                (Expected::Invalid, Ok(())) => panic!("{what}: invalid signature accepted"),
                (Expected::Invalid, Err(e)) => assert!(
                    matches!(e, Error::SignatureInvalid | Error::SignatureLenRange),
                    "{what}: refused, but with {e:?} instead of SignatureInvalid/LenRange"
                ),
                (Expected::Acceptable, _) => {}
            }
            tally.record(case.result, true);
        }
    }
    (tally, vectors.number_of_tests)
}

/// PKCS#1 v1.5 verification of SHA-256 signatures accepts Wycheproof's valid ones (also
/// for e = 3 keys) and refuses every forgery: BER-encoded or altered padding, wrong hash
/// OIDs, trailing garbage, signatures of the wrong length. The one "acceptable" case
/// (DigestInfo without NULL parameters) is refused, since we compare against the DER
/// encoding with NULL.
#[test]
fn pkcs1_v15_signature_verification_agrees_with_wycheproof() {
    let (tally, declared) = run_signature_file(
        PKCS1_SIGNATURE_FILE,
        "RSASSA-PKCS1-v1_5",
        HashAlg::Sha256,
        Scheme::Pkcs1,
    );
    // At this commit: 9 valid, 1 acceptable, 249 invalid.
    tally.assert_covers(PKCS1_SIGNATURE_FILE, declared, 5, 200);
}

/// PSS verification with SHA-256, MGF1-SHA-256 and a 32-byte salt accepts Wycheproof's
/// valid signatures and refuses every modified one.
#[test]
fn pss_sha256_signature_verification_agrees_with_wycheproof() {
    let scheme = Scheme::Pss {
        mgf_hash: HashAlg::Sha256,
        salt_len: 32,
    };
    let (tally, declared) =
        run_signature_file(PSS_SIGNATURE_FILE, "RSASSA-PSS", HashAlg::Sha256, scheme);
    // At this commit: 63 valid, 45 invalid.
    tally.assert_covers(PSS_SIGNATURE_FILE, declared, 50, 35);
}

// ---------------------------------------------------------------------------------------
// Signing: the signature vectors' key is also the private key of the OAEP-SHA256 file.
// ---------------------------------------------------------------------------------------

/// The private key of the OAEP-SHA256 file, and the signature groups of `file` under the
/// same modulus. Wycheproof signs its SHA-256 signature vectors with that key; if a newer
/// copy of the files stops doing so, this fails rather than testing nothing.
fn signing_key_and_groups(file: &str) -> (RawPrivateKey, Vec<SignatureGroup>) {
    let oaep: VectorFile<DecryptGroup> = load(OAEP_SHA256_FILE);
    let group = oaep
        .test_groups
        .first()
        .unwrap_or_else(|| panic!("{OAEP_SHA256_FILE} has no groups"));
    let key = RawPrivateKey::from_vector(&group.private_key);
    let signatures: VectorFile<SignatureGroup> = load(file);
    let same_key: Vec<SignatureGroup> = signatures
        .test_groups
        .into_iter()
        .filter(|g| BigUint::from_bytes_be(&unhex(&g.public_key.modulus)) == key.n)
        .collect();
    assert!(
        !same_key.is_empty(),
        "{file} has no group under the key of {OAEP_SHA256_FILE}"
    );
    (key, same_key)
}

/// PKCS#1 v1.5 padding followed by the raw RSA step (our CKM_SHA256_RSA_PKCS path)
/// reproduces Wycheproof's valid SHA-256 signatures byte for byte: the encoding is
/// deterministic, so this pins [`pkcs1_sign_pad`] and the DigestInfo exactly.
#[test]
fn pkcs1_v15_signing_reproduces_the_wycheproof_signatures() {
    let (key, groups) = signing_key_and_groups(PKCS1_SIGNATURE_FILE);
    let mut reproduced = 0usize;
    for group in &groups {
        let hash = hash_named(&group.sha);
        for case in group.tests.iter().filter(|c| c.result == Expected::Valid) {
            let what = describe(PKCS1_SIGNATURE_FILE, case.tc_id, &case.comment, &case.flags);
            let t = hash
                .digest_info(&digest(hash, &unhex(&case.msg)))
                .unwrap_or_else(|e| panic!("{what}: DigestInfo: {e:?}"));
            let em = pkcs1_sign_pad(&t, key.k).unwrap_or_else(|e| panic!("{what}: pad: {e:?}"));
            assert_eq!(
                key.sign_raw(&em),
                unhex(&case.sig),
                "{what}: our signature differs from the vector's"
            );
            reproduced += 1;
        }
    }
    // 7 valid signatures under this key at this commit (the other 2 are under e = 3 keys).
    assert!(
        reproduced >= 5,
        "only {reproduced} signatures were reproduced"
    );
}

/// PSS encoding of the vectors' valid messages (fresh random salt of 32 bytes) followed
/// by the raw RSA step gives signatures our verification accepts under the vector's public
/// key, and that differ from the vector's (the salt is random).
#[test]
fn pss_encoding_of_wycheproof_messages_verifies_under_the_vector_key() {
    let (key, groups) = signing_key_and_groups(PSS_SIGNATURE_FILE);
    let mut signed = 0usize;
    for group in &groups {
        let hash = hash_named(&group.sha);
        let mgf_hash = hash_named(group.mgf_sha.as_deref().unwrap_or_default());
        let salt_len = group
            .s_len
            .unwrap_or_else(|| panic!("{PSS_SIGNATURE_FILE}: a PSS group without sLen"));
        let n = unhex(&group.public_key.modulus);
        let e = unhex(&group.public_key.public_exponent);
        for case in group.tests.iter().filter(|c| c.result == Expected::Valid) {
            let what = describe(PSS_SIGNATURE_FILE, case.tc_id, &case.comment, &case.flags);
            let mhash = digest(hash, &unhex(&case.msg));
            let em = pss_encode(&mhash, hash, mgf_hash, salt_len, key.bits)
                .unwrap_or_else(|e| panic!("{what}: encode: {e:?}"));
            assert_eq!(em.len(), key.k, "{what}: encoded length");
            let sig = key.sign_raw(&em);
            assert_ne!(sig, unhex(&case.sig), "{what}: the salt was not random");
            verify_pss(&n, &e, &mhash, hash, mgf_hash, salt_len, &sig)
                .unwrap_or_else(|e| panic!("{what}: our PSS signature does not verify: {e:?}"));
            signed += 1;
        }
    }
    assert!(signed >= 50, "only {signed} PSS signatures were made");
}
