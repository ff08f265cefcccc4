//! The C edges of the library: the PKCS#11 entry points of libtpmvsc.so, split by the
//! specification's chapters (`general`, `slot`, `session`, `object`, `crypto`, with the
//! function lists and interfaces in `table`), and the provisioning C API of
//! `include/tpmvsc.h` (`capi`). The only place besides the TPM layer's raw calls where
//! `unsafe` is allowed; every dereference is its own block under a `// SAFETY:` line, and
//! the pointer helpers in `args` are `unsafe fn`s whose callers vouch for the pointers.
//!
//! Every PKCS#11 export is one call to `entry` (or, before C_Initialize is needed,
//! `entry_anytime`): it catches panics (CKR_GENERAL_ERROR, since an unwind out of
//! `extern "C"` aborts the host), checks the module is initialized in this process (a
//! forked child gets CKR_CRYPTOKI_NOT_INITIALIZED), counts the call as in flight for
//! C_Finalize, checks the function's access `Rule` — the session handle first, then
//! login and read-write — before it looks at any other argument, and maps the inner
//! `Result` to a CK_RV.
//!
//! # Safety
//! Every `C_*` function has the contract the PKCS#11 specification gives it: pointers are
//! NULL or valid for the sizes the caller states. The functions check for NULL and sizes;
//! they cannot check a dangling pointer.

#![allow(unsafe_code)]
// The contract is the specification's, stated once above rather than on every export.
#![allow(clippy::missing_safety_doc)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cryptoki_sys::*;
use once_cell::sync::Lazy;
use parking_lot::RwLock;

use crate::error::{CallError, Result};
use crate::module::Module;

mod args;
pub mod capi;
pub mod crypto;
pub(crate) mod general;
pub mod object;
pub mod session;
pub mod slot;
pub mod table;

/// The module of this process (None before C_Initialize and after C_Finalize).
static MODULE: Lazy<RwLock<Option<Arc<Module>>>> = Lazy::new(|| RwLock::new(None));

/// The module of this process, or CKR_CRYPTOKI_NOT_INITIALIZED (also in a forked child
/// that has not called C_Initialize itself).
fn current() -> Result<Arc<Module>> {
    match MODULE.read().as_ref() {
        Some(m) if m.pid() == std::process::id() => Ok(Arc::clone(m)),
        _ => Err(CallError::NotInitialized.into()),
    }
}

/// Who may call an entry point: checked before anything else the call passes is looked
/// at, in this order — the session exists, the right user is logged in, it is read-write.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// The module is initialized; no session involved.
    Initialized,
    /// An open session, logged in or not.
    Session(CK_SESSION_HANDLE),
    /// An open read-write session.
    RwSession(CK_SESSION_HANDLE),
    /// A session of a token the user is logged in to.
    User(CK_SESSION_HANDLE),
    /// A read-write session of a token the SO is logged in to.
    RwSo(CK_SESSION_HANDLE),
}

impl Rule {
    fn check(self, m: &Module) -> Result<()> {
        let (h, rw, user) = match self {
            Rule::Initialized => return Ok(()),
            Rule::Session(h) => (h, false, None),
            Rule::RwSession(h) => (h, true, None),
            Rule::User(h) => (h, false, Some(CKU_USER)),
            Rule::RwSo(h) => (h, true, Some(CKU_SO)),
        };
        let (_, is_rw, who) = m.session_view(h)?;
        match user {
            Some(CKU_SO) if who != Some(CKU_SO) => {
                return Err(
                    CallError::NotLoggedIn("this call needs the SO (PUK) logged in").into(),
                );
            }
            Some(CKU_USER) if who != Some(CKU_USER) => {
                return Err(CallError::NotLoggedIn("this call needs the user logged in").into());
            }
            _ => {}
        }
        if rw && !is_rw {
            return Err(CallError::ReadOnlySession("this call changes the token").into());
        }
        Ok(())
    }
}

/// Runs one entry point under `rule` (see the module documentation).
fn entry(rule: Rule, f: impl FnOnce(&Module) -> Result<()>) -> CK_RV {
    entry_anytime(|| {
        let m = current()?;
        let _in_flight = m.call_started();
        rule.check(&m)?;
        f(&m)
    })
}

/// Runs an entry point that works before C_Initialize (the function lists and
/// interfaces, C_Initialize and C_Finalize themselves, C_WaitForSlotEvent's own loop):
/// panics become CKR_GENERAL_ERROR, errors their CK_RV.
fn entry_anytime(f: impl FnOnce() -> Result<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => e.ck_rv(),
        Err(_) => CKR_GENERAL_ERROR,
    }
}
