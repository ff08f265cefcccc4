//! How provisioning reaches the TPM: a connection of its own (the CLI, the C API) or one
//! the caller lends (the PKCS#11 module keeps one connection per process). Either way the
//! connection is taken only while the store's and the card's locks are held, never the
//! other way round (the crate's lock order, crate docs "Lock order"; DESIGN.md §6).

use std::cell::RefCell;

use crate::error::Error;
use crate::tpm::{Tpm, TpmError};

/// An error that may say the TPM connection is lost (and must not be reused).
pub(crate) trait TpmFailure: From<TpmError> {
    /// True when the connection broke or the TPM is unreachable.
    fn connection_lost(&self) -> bool;
}

impl TpmFailure for TpmError {
    fn connection_lost(&self) -> bool {
        matches!(
            self,
            TpmError::Gone(_) | TpmError::NoTpm { .. } | TpmError::Unresponsive { .. }
        )
    }
}

impl TpmFailure for Error {
    fn connection_lost(&self) -> bool {
        matches!(self, Error::Tpm(e) if e.connection_lost())
    }
}

/// A source of TPM connections for one provisioning operation.
pub(crate) trait TpmAccess {
    /// Runs `f` on the connection, opening it when there is none. Calls do not nest.
    fn run<T, E: TpmFailure>(&self, f: impl FnOnce(&mut Tpm) -> Result<T, E>) -> Result<T, E>;
}

/// A connection of the operation's own, opened at first use and closed when dropped.
#[derive(Debug, Default)]
pub(crate) struct OwnTpm(RefCell<Option<Tpm>>);

impl OwnTpm {
    /// No connection yet.
    pub(crate) fn new() -> OwnTpm {
        OwnTpm::default()
    }

    /// The connection, when one was opened.
    pub(crate) fn into_inner(self) -> Option<Tpm> {
        self.0.into_inner()
    }
}

impl TpmAccess for OwnTpm {
    fn run<T, E: TpmFailure>(&self, f: impl FnOnce(&mut Tpm) -> Result<T, E>) -> Result<T, E> {
        let mut slot = self.0.borrow_mut();
        let tpm = match slot.as_mut() {
            Some(t) => t,
            None => slot.insert(Tpm::open()?),
        };
        let r = f(tpm);
        if r.as_ref().is_err_and(TpmFailure::connection_lost) {
            *slot = None;
        }
        r
    }
}
