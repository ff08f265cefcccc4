//! Public templates of every object tpmvsc creates: one function per template, so the
//! attributes of DESIGN.md §2 are written in exactly one place.

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Digest, EccParameter, EccPoint, KeyedHashScheme, Public, PublicBuilder,
    PublicEccParametersBuilder, PublicKeyedHashParameters, SymmetricDefinitionObject,
};

use tss_esapi::traits::{Marshall, UnMarshall};

use super::TpmError;
use crate::error::tpm::classify;

/// The standard storage root key: ECC NIST P-256 restricted decryption primary with
/// AES-128-CFB, noDA, empty auth, and the all-zero 32-byte unique of TCG's provisioning
/// guidance. Deterministic: the same TPM seed always yields the same key and Name.
pub fn srk() -> Result<Public, TpmError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(classify)?;
    storage_ecc(attrs, Digest::default(), zero_point()?)
}

/// A card storage key: restricted decryption ECC P-256 under the SRK whose authValue is
/// PIN-derived (userWithAuth: the PIN loads children), adminWithPolicy with `policy`
/// (the PIN/PUK/admin branches), and no noDA: every wrong PIN is counted by the TPM.
pub fn card_storage_key(policy: &[u8; 32]) -> Result<Public, TpmError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_admin_with_policy(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(classify)?;
    let digest = Digest::try_from(policy.to_vec()).map_err(classify)?;
    storage_ecc(attrs, digest, EccPoint::default())
}

/// A card's guard key (DESIGN.md §2, revocation): a restricted decryption ECC P-256 key
/// under the SRK and the parent of the card storage key. Its only authorization is
/// `policy` — PolicyNV on the card's counter — with userWithAuth clear and an empty
/// authValue it never uses (noDA), so loading the CSK needs the counter to be where it
/// was when this guard was made.
pub fn card_guard(policy: &[u8; 32]) -> Result<Public, TpmError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(false)
        .with_admin_with_policy(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(classify)?;
    let digest = Digest::try_from(policy.to_vec()).map_err(classify)?;
    storage_ecc(attrs, digest, EccPoint::default())
}

/// True when the marshalled public area `actual` is an object made from `template`: the
/// same type, name algorithm, attributes, authPolicy and parameters; only the `unique`
/// field (the TPM's public key or seed hash) may differ. Checked before a secret is sent
/// to an object read from the store (DESIGN.md §2).
pub fn made_from(actual: &[u8], template: &Public) -> bool {
    let Ok(t) = template.marshall() else {
        return false;
    };
    // Templates here carry an empty unique: two empty coordinates for ECC, one empty
    // buffer otherwise.
    let empty_unique = match template {
        Public::Ecc { .. } => 4,
        _ => 2,
    };
    let Some(prefix) = t.len().checked_sub(empty_unique) else {
        return false;
    };
    actual.len() > prefix
        && actual[..prefix] == t[..prefix]
        && Public::unmarshall(actual).is_ok_and(|p| p.marshall().is_ok_and(|m| m == actual))
}

/// A sealed data object (PUK object, admin object): its authValue is the secret, no noDA
/// so wrong secrets count, and no adminWithPolicy so the secret itself authorizes
/// `ObjectChangeAuth`. The TPM draws the seed that goes into its Name, so no other object
/// can stand in for it in a PolicySecret.
pub fn sealed_secret() -> Result<Public, TpmError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .build()
        .map_err(classify)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(classify)
}

fn storage_ecc(
    attrs: tss_esapi::attributes::ObjectAttributes,
    policy: Digest,
    unique: EccPoint,
) -> Result<Public, TpmError> {
    let params = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()
    .map_err(classify)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(policy)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(unique)
        .build()
        .map_err(classify)
}

fn zero_point() -> Result<EccPoint, TpmError> {
    let x = EccParameter::try_from(vec![0u8; 32]).map_err(classify)?;
    let y = EccParameter::try_from(vec![0u8; 32]).map_err(classify)?;
    Ok(EccPoint::new(x, y))
}

/// Kinds of user keys a card holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKeyKind {
    Rsa2048,
    Rsa3072,
    EccP256,
    EccP384,
}

/// A user key under a card storage key (DESIGN.md §2): empty authValue and noDA — the
/// PIN gates *loading* it, so using it needs no HMAC session and a TPM-wide lockout does
/// not stop a logged-in session. Sign and decrypt with the NULL scheme, so the host can
/// do any padding (PKCS#1 v1.5 with any DigestInfo, PSS with any salt, OAEP with any
/// label) around a raw TPM operation, and ECC keys serve ECDSA and ECDH.
pub(crate) fn user_key(kind: UserKeyKind) -> Result<Public, TpmError> {
    use tss_esapi::interface_types::key_bits::RsaKeyBits;
    use tss_esapi::structures::{
        EccScheme, KeyDerivationFunctionScheme, PublicRsaParametersBuilder, RsaExponent, RsaScheme,
    };
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true)
        .with_decrypt(true)
        .build()
        .map_err(classify)?;
    let builder = PublicBuilder::new()
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs);
    let built = match kind {
        UserKeyKind::Rsa2048 | UserKeyKind::Rsa3072 => {
            let bits = if kind == UserKeyKind::Rsa2048 {
                RsaKeyBits::Rsa2048
            } else {
                RsaKeyBits::Rsa3072
            };
            let params = PublicRsaParametersBuilder::new()
                .with_scheme(RsaScheme::Null)
                .with_key_bits(bits)
                .with_exponent(RsaExponent::default())
                .with_is_signing_key(true)
                .with_is_decryption_key(true)
                .with_restricted(false)
                .build()
                .map_err(classify)?;
            builder
                .with_public_algorithm(PublicAlgorithm::Rsa)
                .with_rsa_parameters(params)
                .with_rsa_unique_identifier(tss_esapi::structures::PublicKeyRsa::default())
                .build()
        }
        UserKeyKind::EccP256 | UserKeyKind::EccP384 => {
            let curve = if kind == UserKeyKind::EccP256 {
                EccCurve::NistP256
            } else {
                EccCurve::NistP384
            };
            let params = PublicEccParametersBuilder::new()
                .with_ecc_scheme(EccScheme::Null)
                .with_curve(curve)
                .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                // tss-esapi's builder refuses sign+decrypt for ECC even with the NULL
                // scheme the TPM allows; these flags only steer its checks, the object
                // attributes above carry both.
                .with_is_signing_key(false)
                .with_is_decryption_key(true)
                .with_restricted(false)
                .build()
                .map_err(classify)?;
            builder
                .with_public_algorithm(PublicAlgorithm::Ecc)
                .with_ecc_parameters(params)
                .with_ecc_unique_identifier(EccPoint::default())
                .build()
        }
    };
    built.map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_area_is_made_from_its_template_only() {
        let policy = [7u8; 32];
        let template = card_storage_key(&policy).unwrap();
        let mut made = template.marshall().unwrap();
        // What the TPM returns: the same area with a 32-byte point in `unique`.
        made.truncate(made.len() - 4);
        made.extend_from_slice(&[0, 32]);
        made.extend_from_slice(&[1u8; 32]);
        made.extend_from_slice(&[0, 32]);
        made.extend_from_slice(&[2u8; 32]);
        assert!(made_from(&made, &template));
        assert!(!made_from(&made, &card_storage_key(&[8u8; 32]).unwrap()));
        assert!(!made_from(&made, &card_guard(&policy).unwrap()));
        let mut trailing = made.clone();
        trailing.push(0);
        assert!(!made_from(&trailing, &template));
    }

    #[test]
    fn every_user_key_template_builds() {
        for k in [
            UserKeyKind::Rsa2048,
            UserKeyKind::Rsa3072,
            UserKeyKind::EccP256,
            UserKeyKind::EccP384,
        ] {
            user_key(k).unwrap_or_else(|e| panic!("{k:?}: {e}"));
        }
    }
}
