//! Hash algorithms of the mechanisms (SHA-1, SHA-256, SHA-384, SHA-512): one-shot and
//! incremental hashing, DigestInfo encoding and recognition (RFC 8017 §9.2), and the
//! mapping from PKCS#11 mechanism and MGF constants. Pure computation: no TPM, no I/O.

use std::fmt;

use cryptoki_sys::{
    CKG_MGF1_SHA1, CKG_MGF1_SHA256, CKG_MGF1_SHA384, CKG_MGF1_SHA512, CKM_SHA_1, CKM_SHA256,
    CKM_SHA384, CKM_SHA512,
};
use sha2::Digest;

use crate::error::{Error, Result};

/// A hash algorithm the module offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Every algorithm, for the tests.
    #[cfg(test)]
    pub(crate) const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    /// Length of the digest in bytes.
    pub(crate) fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// DER prefix of the DigestInfo for this hash (RFC 8017 §9.2 note 1), with the NULL
    /// parameters that the RFC and every TPM's RSASSA write.
    pub(crate) fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            HashAlg::Sha1 => &PREFIX_SHA1,
            HashAlg::Sha256 => &PREFIX_SHA256,
            HashAlg::Sha384 => &PREFIX_SHA384,
            HashAlg::Sha512 => &PREFIX_SHA512,
        }
    }

    /// DigestInfo = prefix ‖ digest (digest must have output_len bytes, else DataLenRange).
    pub(crate) fn digest_info(self, digest: &[u8]) -> Result<Vec<u8>> {
        if digest.len() != self.output_len() {
            return Err(Error::DataLenRange("digest length does not match the hash"));
        }
        let prefix = self.digest_info_prefix();
        let mut out = Vec::with_capacity(prefix.len() + digest.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(digest);
        Ok(out)
    }

    /// CKM_SHA_1 etc. as used in CK_RSA_PKCS_PSS_PARAMS.hashAlg / CK_RSA_PKCS_OAEP_PARAMS.hashAlg.
    pub(crate) fn from_ckm(m: u64) -> Option<HashAlg> {
        // CK_ULONG is u64 on the 64-bit Linux targets the module is built for.
        match m {
            CKM_SHA_1 => Some(HashAlg::Sha1),
            CKM_SHA256 => Some(HashAlg::Sha256),
            CKM_SHA384 => Some(HashAlg::Sha384),
            CKM_SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// CKG_MGF1_SHA1/256/384/512.
    pub(crate) fn from_mgf(mgf: u64) -> Option<HashAlg> {
        match mgf {
            CKG_MGF1_SHA1 => Some(HashAlg::Sha1),
            CKG_MGF1_SHA256 => Some(HashAlg::Sha256),
            CKG_MGF1_SHA384 => Some(HashAlg::Sha384),
            CKG_MGF1_SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }
}

/// Incremental hash (for multi-part C_DigestUpdate and hash-and-sign C_SignUpdate).
#[derive(Clone)]
pub(crate) struct Hasher {
    state: State,
}

#[derive(Clone)]
enum State {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hash state.
    pub(crate) fn new(alg: HashAlg) -> Self {
        let state = match alg {
            HashAlg::Sha1 => State::Sha1(sha1::Sha1::new()),
            HashAlg::Sha256 => State::Sha256(sha2::Sha256::new()),
            HashAlg::Sha384 => State::Sha384(sha2::Sha384::new()),
            HashAlg::Sha512 => State::Sha512(sha2::Sha512::new()),
        };
        Hasher { state }
    }

    /// The algorithm of this state.
    pub(crate) fn alg(&self) -> HashAlg {
        match self.state {
            State::Sha1(_) => HashAlg::Sha1,
            State::Sha256(_) => HashAlg::Sha256,
            State::Sha384(_) => HashAlg::Sha384,
            State::Sha512(_) => HashAlg::Sha512,
        }
    }

    /// Feed more data.
    pub(crate) fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
            State::Sha384(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far (`alg().output_len()` bytes).
    pub(crate) fn finalize(self) -> Vec<u8> {
        match self.state {
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha384(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

impl fmt::Debug for Hasher {
    /// Names the algorithm only: the state is derived from data that may be secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

/// One-shot hash of `data`.
pub(crate) fn digest(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(alg);
    h.update(data);
    h.finalize()
}

const PREFIX_SHA1: [u8; 15] = [
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];
const PREFIX_SHA256: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const PREFIX_SHA384: [u8; 19] = [
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const PREFIX_SHA512: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // Known DigestInfos of "abc" (prefixes from RFC 8017 §9.2 note 1, digests from FIPS 180-2).
    const ABC_SHA1: &str = "3021300906052b0e03021a05000414a9993e364706816aba3e25717850c26c9cd0d89d";
    const ABC_SHA256: &str = "3031300d060960864801650304020105000420\
        ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const ABC_SHA384: &str = "3041300d060960864801650304020205000430\
        cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
        8086072ba1e7cc2358baeca134c825a7";
    const ABC_SHA512: &str = "3051300d060960864801650304020305000440\
        ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
        2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

    fn known() -> [(HashAlg, Vec<u8>); 4] {
        [
            (HashAlg::Sha1, h(ABC_SHA1)),
            (HashAlg::Sha256, h(ABC_SHA256)),
            (HashAlg::Sha384, h(ABC_SHA384)),
            (HashAlg::Sha512, h(ABC_SHA512)),
        ]
    }

    #[test]
    fn digest_infos_of_abc_match_known_encodings() {
        for (alg, expected) in known() {
            let info = alg.digest_info(&digest(alg, b"abc")).unwrap();
            assert_eq!(info, expected, "{alg:?}");
            assert_eq!(
                info.len(),
                alg.digest_info_prefix().len() + alg.output_len()
            );
        }
    }

    #[test]
    fn digest_info_rejects_a_digest_of_the_wrong_length() {
        assert!(matches!(
            HashAlg::Sha256.digest_info(&[0; 20]),
            Err(Error::DataLenRange(_))
        ));
    }

    #[test]
    fn incremental_hash_equals_one_shot() {
        let data: Vec<u8> = (0u8..=255).cycle().take(1000).collect();
        for alg in HashAlg::ALL {
            let mut hasher = Hasher::new(alg);
            assert_eq!(hasher.alg(), alg);
            for chunk in data.chunks(77) {
                hasher.update(chunk);
            }
            let copy = hasher.clone();
            let d = hasher.finalize();
            assert_eq!(d.len(), alg.output_len());
            assert_eq!(d, digest(alg, &data));
            assert_eq!(copy.finalize(), d);
        }
        assert_eq!(
            format!("{:?}", Hasher::new(HashAlg::Sha384)),
            "Hasher { alg: Sha384, .. }"
        );
    }

    #[test]
    fn pkcs11_constants_map_to_hashes() {
        assert_eq!(HashAlg::from_ckm(0x220), Some(HashAlg::Sha1));
        assert_eq!(HashAlg::from_ckm(0x250), Some(HashAlg::Sha256));
        assert_eq!(HashAlg::from_ckm(0x260), Some(HashAlg::Sha384));
        assert_eq!(HashAlg::from_ckm(0x270), Some(HashAlg::Sha512));
        assert_eq!(HashAlg::from_ckm(0x255), None); // CKM_SHA224
        assert_eq!(HashAlg::from_ckm(0x251), None); // CKM_SHA256_HMAC
        assert_eq!(HashAlg::from_mgf(1), Some(HashAlg::Sha1));
        assert_eq!(HashAlg::from_mgf(2), Some(HashAlg::Sha256));
        assert_eq!(HashAlg::from_mgf(3), Some(HashAlg::Sha384));
        assert_eq!(HashAlg::from_mgf(4), Some(HashAlg::Sha512));
        assert_eq!(HashAlg::from_mgf(5), None); // CKG_MGF1_SHA224
        assert_eq!(HashAlg::from_mgf(0), None);
    }
}
