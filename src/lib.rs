//! tpmvsc — TPM 2.0 virtual smart cards for Linux.
//!
//! Layout, each part using only the ones below it (CONVENTIONS.md §1; README "Layout"):
//!
//! - [`ffi`]: the C edge — the PKCS#11 exports (one entry helper, one access rule per
//!   function) and the provisioning C API; pointers end here;
//! - `module` (private): the PKCS#11 module's process state — slots, tokens, sessions,
//!   objects, the TPM link;
//! - [`cli`]: the `tpmvsc` and `tpmvscmgr` front ends (arguments, prompts, output);
//! - [`provision`]: the engine both front ends and the module use (create, list,
//!   destroy, PIN and PUK, admin tickets, enrollment, TPM hardening);
//! - `object` (private): PKCS#11 objects and their attributes;
//! - `mechanism` (private): PKCS#11 mechanisms — table, dispatch, digests, RSA padding,
//!   ECDSA encodings;
//! - [`card`]: what a card is on disk, PIN policy, secret derivation;
//! - [`simulator`]: the swtpm-based simulator for machines without a TPM;
//! - [`tpm`]: the TPM (tss-esapi), templates, policies, sessions, object cache;
//! - [`store`]: versioned, atomically written card files and locks;
//! - `config` (private): the settings every process shares, from the environment and the
//!   configuration files, each with its source;
//! - `checked_dir` (private): directories opened once and checked, files in them without
//!   following links, bounded reads, lock files with a bounded wait;
//! - [`error`]: the error type, its classes, messages and PKCS#11 codes; TPM and lock
//!   errors in our words. It uses nothing of ours.
//!
//! # Lock order
//!
//! The one order for every lock in the crate (never take one while holding a later one):
//!
//! 1. the module's state (`module`), released before any TPM work, so that a slow RSA key
//!    generation never blocks `C_GetSlotList`;
//! 2. the card's turn in this process (`module`), waited for at most the TPM wait limit;
//! 3. the store lock, then the card's lock file (`store`, taken by `provision`);
//! 4. the TPM connection (`module`'s TPM link, or the caller's own `Tpm`), then the
//!    saved-objects list of an abandoned connection;
//! 5. the TPM's cross-process lock file (inside `Tpm::open`).

pub mod card;
mod checked_dir;
pub mod cli;
mod config;
pub mod error;
pub mod ffi;
mod mechanism;
mod module;
mod object;
pub mod provision;
pub mod simulator;
pub mod store;
pub mod tpm;

pub use error::{Error, Result};
