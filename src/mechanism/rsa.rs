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
pub(crate) fn pkcs1_sign_pad(t: &[u8], k: usize) -> Result<Zeroizing<Vec<u8>>> {
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
pub(crate) fn pss_encode(
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
pub(crate) fn pkcs1_decrypt_unpad(em: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
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
pub(crate) fn oaep_decode(
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
pub(crate) fn verify_pkcs1(n: &[u8], e: &[u8], t: &[u8], sig: &[u8]) -> Result<()> {
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
pub(crate) fn verify_pss(
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
pub(crate) fn encrypt_pkcs1(n: &[u8], e: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
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
pub(crate) fn encrypt_oaep(
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
pub(crate) fn encrypt_raw(n: &[u8], e: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let key = PublicKey::parse(n, e)?;
    if msg.len() > key.k {
        return Err(Error::DataLenRange(
            "CKM_RSA_X_509 input longer than the modulus",
        ));
    }
    key.op(msg)
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
    getrandom::fill(buf).map_err(|e| crate::error::CallError::Randomness(e.to_string()).into())
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
mod tests;
