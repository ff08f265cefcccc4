//! Session management (PKCS#11 2.40 §5.6): open, close, session info, login and logout,
//! C_InitPIN and C_SetPIN, operation state (not offered) and the 3.0 additions
//! C_LoginUser and C_SessionCancel.

use std::ffi::c_void;

use cryptoki_sys::*;

use super::args::{bad, bytes, put};
use super::{Rule, entry};
use crate::error::{CallError, Error};

/// C_OpenSession: CKF_SERIAL_SESSION is required; notifications are not used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    out: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    entry(Rule::Initialized, |m| {
        if out.is_null() {
            return Err(bad());
        }
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(CallError::ParallelSession.into());
        }
        m.refresh_slots();
        let h = m.open_session(slot, flags & CKF_RW_SESSION != 0)?;
        // SAFETY: `out` is a non-NULL out-pointer (contract).
        unsafe { put(out, h) }
    })
}

/// C_CloseSession.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CloseSession(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(Rule::Session(h), |m| m.close_session(h))
}

/// C_CloseAllSessions.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    entry(Rule::Initialized, |m| m.close_all_sessions(slot))
}

/// C_GetSessionInfo.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSessionInfo(
    h: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        let f = m.session_facts(h)?;
        let i = CK_SESSION_INFO {
            slotID: f.slot,
            state: f.state,
            flags: f.flags,
            ulDeviceError: 0,
        };
        // SAFETY: `info` is NULL or a CK_SESSION_INFO to fill (contract).
        unsafe { put(info, i) }
    })
}

/// Operation state cannot be saved: it may hold TPM-loaded keys.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetOperationState(
    h: CK_SESSION_HANDLE,
    _s: *mut CK_BYTE,
    _l: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |_| not_offered())
}

/// Operation state cannot be restored (see C_GetOperationState).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetOperationState(
    h: CK_SESSION_HANDLE,
    _s: *mut CK_BYTE,
    _l: CK_ULONG,
    _e: CK_OBJECT_HANDLE,
    _a: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::Session(h), |_| not_offered())
}

fn not_offered() -> crate::Result<()> {
    Err(Error::Unsupported("not offered".into()))
}

/// C_Login: CKU_USER = PIN, CKU_SO = PUK, CKU_CONTEXT_SPECIFIC for keys marked
/// CKA_ALWAYS_AUTHENTICATE. The TPM checks the secret.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Login(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        // SAFETY: `pin` holds `len` bytes (contract).
        m.login(h, user, unsafe { bytes(pin, len) }?)
    })
}

/// C_LoginUser (3.0): no named users; the username must be empty.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_LoginUser(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
    name: *mut CK_UTF8CHAR,
    name_len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        // SAFETY: `name` holds `name_len` bytes (contract).
        if !unsafe { bytes(name, name_len) }?.is_empty() {
            return Err(CallError::UserTypeInvalid("named users are not offered").into());
        }
        // SAFETY: `pin` holds `len` bytes (contract).
        m.login(h, user, unsafe { bytes(pin, len) }?)
    })
}

/// C_Logout.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Logout(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(Rule::Session(h), |m| m.logout(h))
}

/// C_InitPIN: the SO (PUK) unblocks and sets a new user PIN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_InitPIN(
    h: CK_SESSION_HANDLE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    entry(Rule::RwSo(h), |m| {
        // SAFETY: `pin` holds `len` bytes (contract).
        m.init_pin(h, unsafe { bytes(pin, len) }?)
    })
}

/// C_SetPIN: the user's PIN, or the PUK when the SO is logged in; a read-write session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetPIN(
    h: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> CK_RV {
    entry(Rule::RwSession(h), |m| {
        // SAFETY: `old` and `new` hold their lengths (contract).
        let (old, new) = unsafe { (bytes(old, old_len)?, bytes(new, new_len)?) };
        m.set_pin(h, old, new)
    })
}

/// C_SessionCancel (3.0): ends the active operation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SessionCancel(h: CK_SESSION_HANDLE, _flags: CK_FLAGS) -> CK_RV {
    entry(Rule::Session(h), |m| m.cancel(h))
}
