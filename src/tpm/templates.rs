//! Public templates of every object tpmvsc creates: one function per template, so the
//! attributes of DESIGN.md §2 are written in exactly one place.

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Digest, EccParameter, EccPoint, KeyedHashScheme, Public, PublicBuilder,
    PublicEccParametersBuilder, PublicKeyedHashParameters, SymmetricDefinitionObject,
};

use super::TpmError;
use super::error::classify;

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
