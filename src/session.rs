//! Sessions and their active operations (sign, verify, decrypt, encrypt, digest, find),
//! and the mechanisms the module offers with their sizes and flags (DESIGN.md §5). No
//! pointers and no TPM calls here: the edge parses mechanism parameters into [`Mech`].

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::{HashAlg, Hasher};

/// A mechanism with its parameters, as the edge parsed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mech {
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
    pub fn data_hash(&self) -> Option<HashAlg> {
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
    pub fn key_type(&self) -> Option<CK_KEY_TYPE> {
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
pub struct MechInfo {
    pub mech: CK_MECHANISM_TYPE,
    pub min: CK_ULONG,
    pub max: CK_ULONG,
    pub flags: CK_FLAGS,
}

const EC_FLAGS: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

/// Every mechanism the module offers. Key sizes in bits; RSA 3072 and P-384 are offered
/// only where the TPM has them (`rsa_max`, `ec_max`).
pub fn mechanisms(rsa_max: CK_ULONG, ec_max: CK_ULONG) -> Vec<MechInfo> {
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

/// An operation in progress in a session.
#[derive(Debug)]
pub enum Operation {
    Sign(SignOp),
    Verify(SignOp),
    Decrypt {
        key: CK_OBJECT_HANDLE,
        mech: Mech,
        held: Option<Zeroizing<Vec<u8>>>,
    },
    Encrypt {
        key: CK_OBJECT_HANDLE,
        mech: Mech,
    },
    Digest(Hasher),
}

/// Sign or verify: the key, the mechanism and what the data became so far.
#[derive(Debug)]
pub struct SignOp {
    pub key: CK_OBJECT_HANDLE,
    pub mech: Mech,
    /// Hash-and-sign mechanisms hash multi-part data as it comes.
    pub hasher: Option<Hasher>,
    /// Raw mechanisms collect multi-part data.
    pub buffer: Vec<u8>,
    /// Whether C_SignUpdate was used (then C_Sign is refused, and vice versa).
    pub multipart: bool,
    /// CKA_ALWAYS_AUTHENTICATE key: a C_Login(CKU_CONTEXT_SPECIFIC) is due first.
    pub needs_context_login: bool,
}

impl SignOp {
    pub fn new(key: CK_OBJECT_HANDLE, mech: Mech, needs_context_login: bool) -> SignOp {
        let hasher = mech.data_hash().map(Hasher::new);
        SignOp {
            key,
            mech,
            hasher,
            buffer: Vec::new(),
            multipart: false,
            needs_context_login,
        }
    }

    /// Takes more data (multi-part).
    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        self.multipart = true;
        match &mut self.hasher {
            Some(h) => h.update(data),
            None => {
                if self.buffer.len() + data.len() > 1 << 16 {
                    return Err(Error::DataLenRange("too much data for a raw mechanism"));
                }
                self.buffer.extend_from_slice(data)
            }
        }
        Ok(())
    }

    /// What goes into the private or public operation: the hash for hash-and-sign
    /// mechanisms, the collected data otherwise.
    pub fn finish_input(&mut self, last: Option<&[u8]>) -> Vec<u8> {
        match self.hasher.take() {
            Some(mut h) => {
                if let Some(d) = last {
                    h.update(d);
                }
                h.finalize()
            }
            None => {
                let mut v = std::mem::take(&mut self.buffer);
                if let Some(d) = last {
                    v.extend_from_slice(d);
                }
                v
            }
        }
    }
}

/// One open session.
#[derive(Debug)]
pub struct Session {
    pub slot: CK_SLOT_ID,
    pub rw: bool,
    pub op: Option<Operation>,
    /// Handles found by C_FindObjectsInit, and how many were returned.
    pub find: Option<(Vec<CK_OBJECT_HANDLE>, usize)>,
}

impl Session {
    pub fn new(slot: CK_SLOT_ID, rw: bool) -> Session {
        Session {
            slot,
            rw,
            op: None,
            find: None,
        }
    }
}
