//! What each mechanism does around the TPM's one private-key step: the encoding before a
//! signature, the decoding after a decryption, and the public-key operations (verify,
//! encrypt) done here alone. Used by the PKCS#11 module and by `csr` alike, so a
//! mechanism behaves the same whoever asks. The TPM step itself is the caller's closure.

use zeroize::Zeroizing;

use super::ec::{self, Curve};
use super::rsa;
use super::table::Mech;
use crate::error::{Error, Result};
use crate::tpm::PublicKey;

/// The private-key step a signature needs from the TPM.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PrivateStep<'a> {
    /// ECDSA over a digest (the TPM answers r and s).
    Ecdsa { digest: &'a [u8] },
    /// The raw RSA operation on an encoded message (k bytes).
    RsaRaw { em: &'a [u8] },
}

/// What the TPM answered to a [`PrivateStep`].
#[derive(Debug)]
pub(crate) enum PrivateResult {
    Ecdsa { r: Vec<u8>, s: Vec<u8> },
    Rsa(Vec<u8>),
}

/// Signs with `mech` for the key whose public half is `public`: `input` is what the
/// operation collected — the hash for hash-and-sign mechanisms, the data itself for the
/// raw ones (CKM_RSA_PKCS, CKM_ECDSA, CKM_RSA_PKCS_PSS). `tpm` does the private-key step.
pub(crate) fn sign(
    mech: &Mech,
    public: &PublicKey,
    input: &[u8],
    tpm: impl FnOnce(PrivateStep<'_>) -> Result<PrivateResult>,
) -> Result<Vec<u8>> {
    match mech {
        Mech::Ecdsa | Mech::HashEcdsa(_) => {
            let curve = curve_of(public)?;
            let digest = ecdsa_input(curve, input);
            match tpm(PrivateStep::Ecdsa { digest: &digest })? {
                PrivateResult::Ecdsa { r, s } => ec::signature_rs(curve, &r, &s),
                PrivateResult::Rsa(_) => Err(Error::KeyTypeInconsistent),
            }
        }
        Mech::RsaPkcs | Mech::HashRsaPkcs(_) | Mech::Pss { .. } => {
            let (n, _) = rsa_parts(public)?;
            let k = n.len();
            let em = match mech {
                Mech::HashRsaPkcs(hash) => rsa::pkcs1_sign_pad(&hash.digest_info(input)?, k)?,
                Mech::Pss {
                    hash, mgf, salt, ..
                } => {
                    if input.len() != hash.output_len() {
                        return Err(Error::DataLenRange(
                            "the PSS input is the hash of the message",
                        ));
                    }
                    rsa::pss_encode(input, *hash, *mgf, *salt, bit_len(n))?
                }
                _ => rsa::pkcs1_sign_pad(input, k)?,
            };
            match tpm(PrivateStep::RsaRaw { em: &em })? {
                PrivateResult::Rsa(sig) => Ok(left_pad(&sig, k)),
                PrivateResult::Ecdsa { .. } => Err(Error::KeyTypeInconsistent),
            }
        }
        _ => Err(crate::error::CallError::WrongMechanism("not a signature mechanism").into()),
    }
}

/// Verifies `sig` over `input` (as for [`sign`]) with the public key alone.
pub(crate) fn verify(mech: &Mech, public: &PublicKey, input: &[u8], sig: &[u8]) -> Result<()> {
    match (mech, public) {
        (Mech::Ecdsa | Mech::HashEcdsa(_), PublicKey::Ecc { x, y, .. }) => {
            let point = [&[0x04][..], x, y].concat();
            ec::verify(curve_of(public)?, &point, input, sig)
        }
        (Mech::RsaPkcs, PublicKey::Rsa { modulus, exponent }) => {
            rsa::verify_pkcs1(modulus, exponent, input, sig)
        }
        (Mech::HashRsaPkcs(hash), PublicKey::Rsa { modulus, exponent }) => {
            rsa::verify_pkcs1(modulus, exponent, &hash.digest_info(input)?, sig)
        }
        (
            Mech::Pss {
                hash, mgf, salt, ..
            },
            PublicKey::Rsa { modulus, exponent },
        ) => rsa::verify_pss(modulus, exponent, input, *hash, *mgf, *salt, sig),
        (Mech::Ecdsa | Mech::HashEcdsa(_) | Mech::RsaPkcs | Mech::HashRsaPkcs(_), _)
        | (Mech::Pss { .. }, _) => Err(Error::KeyTypeInconsistent),
        _ => Err(crate::error::CallError::WrongMechanism("not a signature mechanism").into()),
    }
}

/// Encrypts with the public key alone (CKM_RSA_PKCS, CKM_RSA_X_509, CKM_RSA_PKCS_OAEP).
pub(crate) fn encrypt(mech: &Mech, public: &PublicKey, data: &[u8]) -> Result<Vec<u8>> {
    let (n, e) = rsa_parts(public)?;
    match mech {
        Mech::RsaPkcs => rsa::encrypt_pkcs1(n, e, data),
        Mech::RsaX509 => rsa::encrypt_raw(n, e, data),
        Mech::Oaep { hash, mgf, label } => rsa::encrypt_oaep(n, e, data, *hash, *mgf, label),
        _ => Err(crate::error::CallError::WrongMechanism("not an encryption mechanism").into()),
    }
}

/// Decrypts: checks the ciphertext's length, lets `tpm` do the raw RSA operation, and
/// decodes its result (constant-time where it checks padding, `rsa`).
pub(crate) fn decrypt(
    mech: &Mech,
    public: &PublicKey,
    ciphertext: &[u8],
    tpm: impl FnOnce(&[u8]) -> Result<Zeroizing<Vec<u8>>>,
) -> Result<Zeroizing<Vec<u8>>> {
    let k = rsa_parts(public)?.0.len();
    if ciphertext.len() != k {
        return Err(Error::EncryptedDataLenRange);
    }
    if !matches!(mech, Mech::RsaX509 | Mech::RsaPkcs | Mech::Oaep { .. }) {
        return Err(crate::error::CallError::WrongMechanism("not a decryption mechanism").into());
    }
    let raw = tpm(ciphertext)?;
    let em = Zeroizing::new(left_pad(&raw, k));
    match mech {
        Mech::RsaPkcs => rsa::pkcs1_decrypt_unpad(&em),
        Mech::Oaep { hash, mgf, label } => rsa::oaep_decode(&em, *hash, *mgf, label),
        _ => Ok(em),
    }
}

/// Signature (and RSA output) length of a key: no TPM command needed (size queries).
pub(crate) fn output_len(k: &PublicKey) -> usize {
    match k {
        PublicKey::Rsa { modulus, .. } => modulus.len(),
        PublicKey::Ecc { x, .. } => 2 * x.len(),
    }
}

/// The curve of an EC public key.
pub(crate) fn curve_of(k: &PublicKey) -> Result<Curve> {
    match k {
        PublicKey::Ecc { bits: 256, .. } => Ok(Curve::P256),
        PublicKey::Ecc { bits: 384, .. } => Ok(Curve::P384),
        _ => Err(Error::KeyTypeInconsistent),
    }
}

fn rsa_parts(k: &PublicKey) -> Result<(&[u8], &[u8])> {
    match k {
        PublicKey::Rsa { modulus, exponent } => Ok((modulus, exponent)),
        PublicKey::Ecc { .. } => Err(Error::KeyTypeInconsistent),
    }
}

/// CKM_ECDSA input as the TPM takes it: a digest of a known hash length; other lengths
/// are cut or left-padded to the field size (SEC1 §4.1.3 uses the leftmost bits).
fn ecdsa_input(curve: Curve, data: &[u8]) -> Vec<u8> {
    match data.len() {
        20 | 32 | 48 | 64 => data.to_vec(),
        _ => {
            let n = curve.field_len();
            if data.len() > n {
                data[..n].to_vec()
            } else {
                left_pad(data, n)
            }
        }
    }
}

/// Bit length of a big-endian integer.
fn bit_len(n: &[u8]) -> usize {
    let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
    match n.get(first) {
        Some(b) => (n.len() - first - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

/// `v` left-padded with zero bytes to `n` bytes (TPM outputs drop leading zeros).
pub(crate) fn left_pad(v: &[u8], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}
