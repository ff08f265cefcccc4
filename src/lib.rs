//! tpmvsc — TPM 2.0 virtual smart cards for Linux.
//!
//! Architecture (uses run one way, CONVENTIONS.md §1):
//!
//! - [`provision`]: the sidecar engine (create, list, destroy, PIN checks) used by the
//!   `tpmvsc` and `tpmvscmgr` binaries;
//! - [`card`]: what a card is on disk, PIN policy, secret derivation;
//! - [`tpm`]: the TPM (tss-esapi), templates, policies, sessions, object cache;
//! - [`store`]: versioned, atomically written card files and locks;
//! - [`simulator`]: the swtpm-based simulator for machines without a TPM;
//! - [`checked_dir`]: directories opened once and checked, files in them without following
//!   links, bounded reads, lock files with a bounded wait (used by `store` and `tpm`);
//! - [`error`]: the error type, its messages and exit codes.

pub mod card;
mod checked_dir;
pub mod cli;
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
