//! RSA on the host, around the TPM's raw RSA: the PKCS#1 v1.5 and PSS signature encodings
//! (the TPM then does the raw private-key operation), PKCS#1 v1.5 and OAEP decoding of a
//! raw decryption result, and the public-key operations (verify, encrypt) that need no TPM.
//!
//! Everything follows RFC 8017 byte for byte, so that any client interoperates: ssh's
//! `CKM_RSA_PKCS` over a SHA-512 DigestInfo, NSS's PSS with a salt of the hash length,
//! pkcs11-tool's OAEP with an arbitrary label (CLIENT-NOTES.md). `k` is the modulus length
//! in bytes; all integers are big-endian. Decoding of secret data (the unpad functions)
//! avoids branching on the data until the single valid/invalid decision at the end. No TPM
//! here; the private key never comes near this file.

use std::hint::black_box;

use cryptoki_sys::CKR_FUNCTION_FAILED;
use rsa::BigUint;
use zeroize::Zeroizing;

use super::digest::{HashAlg, Hasher, digest};
use crate::error::{Error, Result};

/// Smallest modulus accepted for public-key operations.
const MIN_MODULUS_BITS: usize = 512;
/// Largest modulus accepted: bounds the cost of a modular exponentiation on client input.
const MAX_MODULUS_BITS: usize = 16384;
/// Bytes of PKCS#1 v1.5 overhead: 00 01|02, at least 8 bytes of PS, 00.
const PKCS1_OVERHEAD: usize = 11;

/// EMSA-PKCS1-v1_5 for signing: 00 01 FF…FF 00 ‖ t, with t any bytes (a caller-made DigestInfo for CKM_RSA_PKCS, up to k-11 bytes: longer → DataLenRange).
pub fn pkcs1_sign_pad(t: &[u8], k: usize) -> Result<Zeroizing<Vec<u8>>> {
    if t.len().saturating_add(PKCS1_OVERHEAD) > k {
        return Err(Error::DataLenRange(
            "CKM_RSA_PKCS input longer than the modulus length - 11",
        ));
    }
    let mut em = Zeroizing::new(vec![0xff; k]);
    em[0] = 0x00;
    em[1] = 0x01;
    let sep = k - t.len() - 1;
    em[sep] = 0x00;
    em[sep + 1..].copy_from_slice(t);
    Ok(em)
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) of an already computed message hash mhash, random salt of salt_len bytes, MGF1 with mgf_hash; mod_bits = modulus bit length; output is k bytes (leading zero byte when emBits < 8k). Errors: mhash length ≠ hash len → DataLenRange; salt too long → MechanismParamInvalid.
pub fn pss_encode(
    mhash: &[u8],
    hash: HashAlg,
    mgf_hash: HashAlg,
    salt_len: usize,
    mod_bits: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let h_len = hash.output_len();
    if mhash.len() != h_len {
        return Err(Error::DataLenRange(
            "PSS input is not a hash of the mechanism's hash algorithm",
        ));
    }
    let layout = PssLayout::new(h_len, salt_len, mod_bits)?;
    let mut salt = Zeroizing::new(vec![0u8; salt_len]);
    fill_random(&mut salt)?;
    let h = pss_hash(hash, mhash, &salt);

    let mut out = Zeroizing::new(vec![0u8; layout.k]);
    let em = &mut out[layout.k - layout.em_len..];
    let (db, rest) = em.split_at_mut(layout.db_len);
    // DB = PS (zeros) ‖ 0x01 ‖ salt
    db[layout.ps_len] = 0x01;
    db[layout.ps_len + 1..].copy_from_slice(&salt);
    mgf1_xor(mgf_hash, &h, db);
    db[0] &= layout.top_byte_mask();
    rest[..h_len].copy_from_slice(&h);
    rest[h_len] = 0xbc;
    Ok(out)
}

/// EME-PKCS1-v1_5 decoding of a raw RSA result em (k bytes): 00 02 PS(≥8 nonzero) 00 M. Invalid → EncryptedDataInvalid. Avoid early returns that leak where it failed (constant-time-ish over em).
pub fn pkcs1_decrypt_unpad(em: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    // The length is public (the modulus length), so this early return leaks nothing.
    if em.len() < PKCS1_OVERHEAD {
        return Err(Error::EncryptedDataInvalid);
    }
    let mut good = ct_eq(em[0], 0x00) & ct_eq(em[1], 0x02);
    let mut found = 0usize;
    let mut sep = 0usize;
    for (i, &b) in em.iter().enumerate().skip(2) {
        let zero = ct_eq(b, 0x00);
        sep = ct_select(zero & (found ^ 1), i, sep);
        found = black_box(found | zero);
    }
    good &= found;
    // PS is em[2..sep]: at least 8 bytes.
    good &= ct_ge(sep, 2 + 8);
    if black_box(good) != 1 {
        return Err(Error::EncryptedDataInvalid);
    }
    Ok(Zeroizing::new(em[sep + 1..].to_vec()))
}

/// EME-OAEP decoding (RFC 8017 §7.1.2) with label (any bytes, may be empty). Invalid → EncryptedDataInvalid.
pub fn oaep_decode(
    em: &[u8],
    hash: HashAlg,
    mgf_hash: HashAlg,
    label: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let h_len = hash.output_len();
    // Public: depends on the modulus length and the mechanism only.
    if em.len() < 2 * h_len + 2 {
        return Err(Error::EncryptedDataInvalid);
    }
    let l_hash = digest(hash, label);
    let (masked_seed, masked_db) = em[1..].split_at(h_len);
    let mut seed = Zeroizing::new(masked_seed.to_vec());
    mgf1_xor(mgf_hash, masked_db, &mut seed);
    let mut db = Zeroizing::new(masked_db.to_vec());
    mgf1_xor(mgf_hash, &seed, &mut db);

    // DB = lHash' ‖ PS (zeros) ‖ 0x01 ‖ M
    let mut good = ct_eq(em[0], 0x00) & ct_eq_slices(&db[..h_len], &l_hash);
    let mut looking = 1usize;
    let mut index = 0usize;
    let mut bad = 0usize;
    for (i, &b) in db.iter().enumerate().skip(h_len) {
        let one = ct_eq(b, 0x01);
        let zero = ct_eq(b, 0x00);
        index = ct_select(looking & one, i, index);
        bad |= looking & (zero ^ 1) & (one ^ 1);
        looking = black_box(looking & (one ^ 1));
    }
    good &= (looking ^ 1) & (bad ^ 1);
    if black_box(good) != 1 {
        return Err(Error::EncryptedDataInvalid);
    }
    Ok(Zeroizing::new(db[index + 1..].to_vec()))
}

/// Verifies a PKCS#1 v1.5 signature on the host: `t` = what was padded (DigestInfo or raw
/// data, as for [`pkcs1_sign_pad`]). t longer than k-11 → DataLenRange; sig length must be
/// k else SignatureLenRange; mismatch → SignatureInvalid.
pub fn verify_pkcs1(n: &[u8], e: &[u8], t: &[u8], sig: &[u8]) -> Result<()> {
    let key = PublicKey::parse(n, e)?;
    let expected = pkcs1_sign_pad(t, key.k)?;
    if sig.len() != key.k {
        return Err(Error::SignatureLenRange);
    }
    let em = key.op(sig).map_err(|_| Error::SignatureInvalid)?;
    if ct_eq_slices(&em, &expected) != 1 {
        return Err(Error::SignatureInvalid);
    }
    Ok(())
}

/// Verifies an RSASSA-PSS signature on the host (EMSA-PSS-VERIFY, RFC 8017 §9.1.2) of an
/// already computed message hash, with exactly `salt_len` bytes of salt as the mechanism
/// parameters say. mhash of the wrong length → DataLenRange; salt too long for the key →
/// MechanismParamInvalid; sig length ≠ k → SignatureLenRange; mismatch → SignatureInvalid.
pub fn verify_pss(
    n: &[u8],
    e: &[u8],
    mhash: &[u8],
    hash: HashAlg,
    mgf_hash: HashAlg,
    salt_len: usize,
    sig: &[u8],
) -> Result<()> {
    let key = PublicKey::parse(n, e)?;
    let h_len = hash.output_len();
    if mhash.len() != h_len {
        return Err(Error::DataLenRange(
            "PSS input is not a hash of the mechanism's hash algorithm",
        ));
    }
    let layout = PssLayout::new(h_len, salt_len, key.bits)?;
    if sig.len() != key.k {
        return Err(Error::SignatureLenRange);
    }
    let m = key.op(sig).map_err(|_| Error::SignatureInvalid)?;
    let (lead, em) = m.split_at(layout.k - layout.em_len);
    if lead.iter().any(|&b| b != 0) || em[layout.em_len - 1] != 0xbc {
        return Err(Error::SignatureInvalid);
    }
    let (masked_db, rest) = em.split_at(layout.db_len);
    let h = &rest[..h_len];
    if masked_db[0] & !layout.top_byte_mask() != 0 {
        return Err(Error::SignatureInvalid);
    }
    let mut db = masked_db.to_vec();
    mgf1_xor(mgf_hash, h, &mut db);
    db[0] &= layout.top_byte_mask();
    if db[..layout.ps_len].iter().any(|&b| b != 0) || db[layout.ps_len] != 0x01 {
        return Err(Error::SignatureInvalid);
    }
    let salt = &db[layout.ps_len + 1..];
    if ct_eq_slices(&pss_hash(hash, mhash, salt), h) != 1 {
        return Err(Error::SignatureInvalid);
    }
    Ok(())
}

/// RSAES-PKCS1-v1_5 encryption on the host (CKM_RSA_PKCS): msg ≤ k-11 bytes else
/// DataLenRange; output k bytes.
pub fn encrypt_pkcs1(n: &[u8], e: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let key = PublicKey::parse(n, e)?;
    let k = key.k;
    if msg.len() + PKCS1_OVERHEAD > k {
        return Err(Error::DataLenRange(
            "CKM_RSA_PKCS plaintext longer than the modulus length - 11",
        ));
    }
    let mut em = Zeroizing::new(vec![0u8; k]);
    em[1] = 0x02;
    let sep = k - msg.len() - 1;
    fill_random_nonzero(&mut em[2..sep])?;
    em[sep + 1..].copy_from_slice(msg);
    key.op(&em)
}

/// RSAES-OAEP encryption on the host (RFC 8017 §7.1.1) with `label` (any bytes, may be
/// empty): msg ≤ k - 2·hLen - 2 bytes else DataLenRange; a modulus too small for the hash →
/// KeySizeRange; output k bytes.
pub fn encrypt_oaep(
    n: &[u8],
    e: &[u8],
    msg: &[u8],
    hash: HashAlg,
    mgf_hash: HashAlg,
    label: &[u8],
) -> Result<Vec<u8>> {
    let key = PublicKey::parse(n, e)?;
    let k = key.k;
    let h_len = hash.output_len();
    if k < 2 * h_len + 2 {
        return Err(Error::KeySizeRange);
    }
    if msg.len() > k - 2 * h_len - 2 {
        return Err(Error::DataLenRange(
            "OAEP plaintext longer than the modulus length - 2 * hash length - 2",
        ));
    }
    let mut em = Zeroizing::new(vec![0u8; k]);
    let (seed, db) = em[1..].split_at_mut(h_len);
    // DB = lHash ‖ PS (zeros) ‖ 0x01 ‖ M
    db[..h_len].copy_from_slice(&digest(hash, label));
    let m_start = db.len() - msg.len();
    db[m_start - 1] = 0x01;
    db[m_start..].copy_from_slice(msg);
    fill_random(seed)?;
    mgf1_xor(mgf_hash, seed, db);
    mgf1_xor(mgf_hash, db, seed);
    key.op(&em)
}

/// Raw RSA encryption on the host (CKM_RSA_X_509): msg is an integer < n (shorter input is
/// left-padded); longer than k → DataLenRange, not below n → DataInvalid; output k bytes.
pub fn encrypt_raw(n: &[u8], e: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let key = PublicKey::parse(n, e)?;
    if msg.len() > key.k {
        return Err(Error::DataLenRange(
            "CKM_RSA_X_509 input longer than the modulus",
        ));
    }
    key.op(msg)
}

/// Raw public operation s^e mod n (k bytes), used by the verifies above; input ≥ n → DataInvalid.
///
/// The key itself is checked: a modulus outside 512..=16384 bits → KeySizeRange; an even
/// modulus, or an exponent that is even, below 3 or not below n → KeyTypeInconsistent.
pub fn public_op(n: &[u8], e: &[u8], input: &[u8]) -> Result<Vec<u8>> {
    PublicKey::parse(n, e)?.op(input)
}

/// A checked RSA public key.
struct PublicKey {
    n: BigUint,
    e: BigUint,
    /// Modulus length in bits.
    bits: usize,
    /// Modulus length in bytes.
    k: usize,
}

impl PublicKey {
    fn parse(n: &[u8], e: &[u8]) -> Result<Self> {
        let is_odd = |bytes: &[u8]| bytes.last().is_some_and(|b| b & 1 == 1);
        let n_int = BigUint::from_bytes_be(n);
        let bits = n_int.bits();
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) {
            return Err(Error::KeySizeRange);
        }
        let e_int = BigUint::from_bytes_be(e);
        if !is_odd(n) || !is_odd(e) || e_int < BigUint::from(3u32) || e_int >= n_int {
            return Err(Error::KeyTypeInconsistent);
        }
        Ok(PublicKey {
            n: n_int,
            e: e_int,
            bits,
            k: bits.div_ceil(8),
        })
    }

    /// input^e mod n as k big-endian bytes; input ≥ n → DataInvalid.
    fn op(&self, input: &[u8]) -> Result<Vec<u8>> {
        let x = Zeroizing::new(BigUint::from_bytes_be(input));
        if *x >= self.n {
            return Err(Error::DataInvalid(
                "input is not smaller than the RSA modulus",
            ));
        }
        let y = x.modpow(&self.e, &self.n).to_bytes_be();
        // y < n, so it fits in k bytes; to_bytes_be gives [0] for zero.
        let mut out = vec![0u8; self.k];
        out[self.k - y.len()..].copy_from_slice(&y);
        Ok(out)
    }
}

/// Sizes of an EMSA-PSS encoding (RFC 8017 §9.1.1 steps 3 and 7–8).
struct PssLayout {
    /// Modulus length in bytes.
    k: usize,
    /// emBits = modBits - 1.
    em_bits: usize,
    /// emLen = ⌈emBits/8⌉ (k - 1 when modBits ≡ 1 mod 8).
    em_len: usize,
    /// Length of DB = emLen - hLen - 1.
    db_len: usize,
    /// Length of PS = emLen - sLen - hLen - 2.
    ps_len: usize,
}

impl PssLayout {
    fn new(h_len: usize, salt_len: usize, mod_bits: usize) -> Result<Self> {
        if mod_bits < 2 {
            return Err(Error::KeySizeRange);
        }
        let em_bits = mod_bits - 1;
        let em_len = em_bits.div_ceil(8);
        let needed = h_len
            .checked_add(salt_len)
            .and_then(|x| x.checked_add(2))
            .ok_or(Error::MechanismParamInvalid("PSS salt too long"))?;
        if em_len < needed {
            return Err(Error::MechanismParamInvalid(
                "PSS salt too long for the key size and hash",
            ));
        }
        Ok(PssLayout {
            k: mod_bits.div_ceil(8),
            em_bits,
            em_len,
            db_len: em_len - h_len - 1,
            ps_len: em_len - needed,
        })
    }

    /// Mask that clears the leftmost 8·emLen − emBits bits of the encoding.
    fn top_byte_mask(&self) -> u8 {
        0xff >> (8 * self.em_len - self.em_bits)
    }
}

/// H = Hash(0x00 × 8 ‖ mHash ‖ salt).
fn pss_hash(hash: HashAlg, mhash: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(hash);
    h.update(&[0u8; 8]);
    h.update(mhash);
    h.update(salt);
    h.finalize()
}

/// out ^= MGF1(seed, out.len()) with the given hash (RFC 8017 B.2.1).
fn mgf1_xor(hash: HashAlg, seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(hash.output_len())) {
        let mut h = Hasher::new(hash);
        h.update(seed);
        h.update(&counter.to_be_bytes());
        let t = Zeroizing::new(h.finalize());
        for (o, m) in chunk.iter_mut().zip(t.iter()) {
            *o ^= m;
        }
    }
}

fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Ckr {
        rv: CKR_FUNCTION_FAILED,
        why: format!("the system random number generator failed: {e}"),
    })
}

/// Random bytes, none of them zero (the PS of EME-PKCS1-v1_5).
fn fill_random_nonzero(buf: &mut [u8]) -> Result<()> {
    fill_random(buf)?;
    for b in buf.iter_mut() {
        while *b == 0 {
            let mut one = [0u8; 1];
            fill_random(&mut one)?;
            *b = one[0];
        }
    }
    Ok(())
}

/// 1 if a == b, else 0, without a data-dependent branch.
fn ct_eq(a: u8, b: u8) -> usize {
    let x = usize::from(a ^ b);
    x.wrapping_sub(1) >> (usize::BITS - 1)
}

/// 1 if a ≥ b, else 0, for a, b < 2^(usize::BITS - 1).
fn ct_ge(a: usize, b: usize) -> usize {
    (a.wrapping_sub(b) >> (usize::BITS - 1)) ^ 1
}

/// `a` if bit is 1, `b` if bit is 0.
fn ct_select(bit: usize, a: usize, b: usize) -> usize {
    b ^ ((a ^ b) & bit.wrapping_neg())
}

/// 1 if the slices (of equal, public length) are equal, else 0.
fn ct_eq_slices(a: &[u8], b: &[u8]) -> usize {
    if a.len() != b.len() {
        return 0;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    ct_eq(black_box(diff), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::rand_core::OsRng;
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};

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
            let em =
                pss_encode(&mhash, HashAlg::Sha256, HashAlg::Sha1, salt_len, key.bits).unwrap();
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
        let invalid =
            |em: &[u8]| matches!(pkcs1_decrypt_unpad(em), Err(Error::EncryptedDataInvalid));
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
}
