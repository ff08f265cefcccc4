//! The C edges of the library: the provisioning C API of `include/tpmvsc.h` (and, later,
//! the PKCS#11 entry points). The only place besides `tpm/raw.rs` where `unsafe` is
//! allowed; every dereference is its own block under a `// SAFETY:` line.

#![allow(unsafe_code)]

pub mod capi;
pub mod pkcs11;
