//! General-purpose functions (PKCS#11 2.40 §5.4): C_Initialize, C_Finalize, C_GetInfo,
//! and the legacy parallel-function calls (§5.20).

use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;

use super::args::{bad, get, pad, put};
use super::{MODULE, Rule, entry, entry_anytime};
use crate::error::CallError;
use crate::module::Module;

/// How long C_Finalize waits for calls other threads still have in flight.
const FINALIZE_WAIT: Duration = Duration::from_secs(3);

/// C_Initialize. Only OS locking is used: mutex callbacks without CKF_OS_LOCKING_OK are
/// refused with CKR_CANT_LOCK. Reads the store only: no TPM access, no output. In a
/// forked child the inherited state is leaked, never dropped (DESIGN.md §6).
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    entry_anytime(|| {
        let mut threads_allowed = true;
        if !args.is_null() {
            // SAFETY: a non-NULL argument is a CK_C_INITIALIZE_ARGS (PKCS#11 contract).
            let a: CK_C_INITIALIZE_ARGS = unsafe { get(args as *const CK_C_INITIALIZE_ARGS) }?;
            if !a.pReserved.is_null() {
                return Err(bad());
            }
            let given = [
                a.CreateMutex.is_some(),
                a.DestroyMutex.is_some(),
                a.LockMutex.is_some(),
                a.UnlockMutex.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 0 && given != 4 {
                return Err(bad());
            }
            if given == 4 && a.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(CallError::CantLock.into());
            }
            threads_allowed = a.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS == 0;
        }
        let mut g = MODULE.write();
        if let Some(m) = g.as_ref() {
            if m.pid() == std::process::id() {
                return Err(CallError::AlreadyInitialized.into());
            }
            // Inherited across fork(): dropping it would flush the parent's TPM objects.
            if let Some(old) = g.take() {
                std::mem::forget(old);
            }
        }
        *g = Some(Arc::new(Module::new(threads_allowed)?));
        Ok(())
    })
}

/// C_Finalize: later calls get CKR_CRYPTOKI_NOT_INITIALIZED at once; calls in flight in
/// other threads are waited for a bounded time (the specification leaves this undefined;
/// a hang is the worst choice), then every loaded object is flushed and the connection
/// closed — or, if a call still holds it, left to that call to release.
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    entry_anytime(|| {
        if !reserved.is_null() {
            return Err(bad());
        }
        let m = {
            let mut g = MODULE.write();
            match g.take() {
                Some(m) if m.pid() == std::process::id() => m,
                other => {
                    *g = other;
                    return Err(CallError::NotInitialized.into());
                }
            }
        };
        let deadline = Instant::now() + FINALIZE_WAIT;
        while m.calls_in_flight() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        m.finalize(deadline);
        Ok(())
    })
}

/// C_GetInfo.
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    entry(Rule::Initialized, |_| {
        let mut i = CK_INFO {
            cryptokiVersion: CK_VERSION {
                major: 2,
                minor: 40,
            },
            manufacturerID: [0; 32],
            flags: 0,
            libraryDescription: [0; 32],
            libraryVersion: CK_VERSION { major: 0, minor: 1 },
        };
        pad(&mut i.manufacturerID, "tpmvsc");
        pad(&mut i.libraryDescription, "TPM virtual smart cards");
        // SAFETY: `info` is NULL or a CK_INFO to fill (PKCS#11 contract).
        unsafe { put(info, i) }
    })
}

/// Legacy function: always CKR_FUNCTION_NOT_PARALLEL (PKCS#11 2.40 §5.20).
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn C_GetFunctionStatus(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(Rule::Session(h), |_| Err(CallError::NotParallel.into()))
}

/// Legacy function: always CKR_FUNCTION_NOT_PARALLEL (PKCS#11 2.40 §5.20).
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn C_CancelFunction(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(Rule::Session(h), |_| Err(CallError::NotParallel.into()))
}
