//! The mechanisms the module offers: [`Mech`], a mechanism with its parameters as the
//! edge parsed them, and the table C_GetMechanismList and C_GetMechanismInfo answer from
//! (DESIGN.md §5).

use cryptoki_sys::*;

use super::HashAlg;

/// A mechanism with its parameters, as the edge parsed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mech {
    RsaKeyPairGen,
    EcKeyPairGen,
    /// CKM_RSA_PKCS: sign a caller-made DigestInfo (any bytes up to k-11), or decrypt.
    RsaPkcs,
    /// CKM_RSA_X_509: raw RSA.
    RsaX509,
    /// CKM_SHAx_RSA_PKCS: hash, DigestInfo, PKCS#1 v1.5.
    HashRsaPkcs(HashAlg),
    /// CKM_RSA_PKCS_PSS (input is the hash) or CKM_SHAx_RSA_PKCS_PSS (`prehashed` false).
    Pss {
        hash: HashAlg,
        mgf: HashAlg,
        salt: usize,
        prehashed: bool,
    },
    /// CKM_RSA_PKCS_OAEP with its label.
    Oaep {
        hash: HashAlg,
        mgf: HashAlg,
        label: Vec<u8>,
    },
    /// CKM_ECDSA (input is the hash).
    Ecdsa,
    /// CKM_ECDSA_SHAx.
    HashEcdsa(HashAlg),
    /// CKM_ECDH1_DERIVE with CKD_NULL and the peer's public point.
    Ecdh {
        public: Vec<u8>,
    },
    /// CKM_SHA_1 / SHA256 / SHA384 / SHA512.
    Digest(HashAlg),
}

impl Mech {
    /// The hash to run over the data in hash-and-sign mechanisms.
    pub(crate) fn data_hash(&self) -> Option<HashAlg> {
        match self {
            Mech::HashRsaPkcs(h) | Mech::HashEcdsa(h) | Mech::Digest(h) => Some(*h),
            Mech::Pss {
                hash,
                prehashed: false,
                ..
            } => Some(*hash),
            _ => None,
        }
    }

    /// Whether the mechanism works with an RSA or an EC key.
    pub(crate) fn key_type(&self) -> Option<CK_KEY_TYPE> {
        match self {
            Mech::RsaPkcs
            | Mech::RsaX509
            | Mech::HashRsaPkcs(_)
            | Mech::Pss { .. }
            | Mech::Oaep { .. } => Some(CKK_RSA),
            Mech::Ecdsa | Mech::HashEcdsa(_) | Mech::Ecdh { .. } => Some(CKK_EC),
            _ => None,
        }
    }
}

/// What one entry of the mechanism table says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MechInfo {
    pub mech: CK_MECHANISM_TYPE,
    pub min: CK_ULONG,
    pub max: CK_ULONG,
    pub flags: CK_FLAGS,
}

const EC_FLAGS: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

/// Every mechanism the module offers. Key sizes in bits, up to `rsa_max` and `ec_max`
/// (the module passes RSA 3072 and P-384, the largest it generates; a TPM without them
/// refuses such a key generation with a TPM error, CKR_DEVICE_ERROR).
pub(crate) fn mechanisms(rsa_max: CK_ULONG, ec_max: CK_ULONG) -> Vec<MechInfo> {
    let rsa = |mech, flags| MechInfo {
        mech,
        min: 2048,
        max: rsa_max,
        flags: flags | CKF_HW,
    };
    let ec = |mech, flags| MechInfo {
        mech,
        min: 256,
        max: ec_max,
        flags: flags | CKF_HW | EC_FLAGS,
    };
    let dig = |mech| MechInfo {
        mech,
        min: 0,
        max: 0,
        flags: CKF_DIGEST,
    };
    let sv = CKF_SIGN | CKF_VERIFY;
    vec![
        rsa(CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR),
        ec(CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR),
        rsa(CKM_RSA_PKCS, sv | CKF_DECRYPT | CKF_ENCRYPT),
        rsa(CKM_RSA_X_509, CKF_DECRYPT | CKF_ENCRYPT),
        rsa(CKM_RSA_PKCS_OAEP, CKF_DECRYPT | CKF_ENCRYPT),
        rsa(CKM_RSA_PKCS_PSS, sv),
        rsa(CKM_SHA1_RSA_PKCS, sv),
        rsa(CKM_SHA256_RSA_PKCS, sv),
        rsa(CKM_SHA384_RSA_PKCS, sv),
        rsa(CKM_SHA512_RSA_PKCS, sv),
        rsa(CKM_SHA1_RSA_PKCS_PSS, sv),
        rsa(CKM_SHA256_RSA_PKCS_PSS, sv),
        rsa(CKM_SHA384_RSA_PKCS_PSS, sv),
        rsa(CKM_SHA512_RSA_PKCS_PSS, sv),
        ec(CKM_ECDSA, sv),
        ec(CKM_ECDSA_SHA1, sv),
        ec(CKM_ECDSA_SHA256, sv),
        ec(CKM_ECDSA_SHA384, sv),
        ec(CKM_ECDSA_SHA512, sv),
        ec(CKM_ECDH1_DERIVE, CKF_DERIVE),
        dig(CKM_SHA_1),
        dig(CKM_SHA256),
        dig(CKM_SHA384),
        dig(CKM_SHA512),
    ]
}
