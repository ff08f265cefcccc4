//! Host-side cryptography of the mechanisms: hashing, DigestInfo, PKCS#1 v1.5, PSS and OAEP
//! encodings around the TPM's raw RSA, RSA public-key operations, and ECDSA verification.
//!
//! The TPM holds the private keys and does only the private-key step (raw RSA or ECDSA on a
//! digest); everything a client could check with the public key alone happens here, so the
//! encodings must match RFC 8017 and SEC1 byte for byte to interoperate with any client
//! (CLIENT-NOTES.md, "Mechanisms as clients really use them"). No TPM, no `tss_esapi`, no
//! PKCS#11 pointers here: bytes in, bytes or [`crate::Error`] out.

pub(crate) mod digest;
mod dispatch;
pub(crate) mod ec;
pub(crate) mod rsa;
mod table;
#[cfg(test)]
mod wycheproof_tests;

pub(crate) use digest::{HashAlg, Hasher};
pub(crate) use dispatch::{
    PrivateResult, PrivateStep, curve_of, decrypt, encrypt, left_pad, output_len, sign, verify,
};
pub(crate) use table::{Mech, mechanisms};
