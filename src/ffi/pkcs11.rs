//! The PKCS#11 entry points of libtpmvsc.so (2.40 function list, and the 3.0 interface
//! through C_GetInterfaceList / C_GetInterface). Every function is one call to
//! `entry`, which catches panics, checks that the module is initialized in this
//! process, and maps the inner `Result` to a CK_RV. Raw pointers are turned into owned
//! values here and never go further.
//!
//! # Safety
//! Every `C_*` function has the contract the PKCS#11 specification gives it: pointers are
//! NULL or valid for the sizes the caller states. The functions check for NULL and sizes;
//! they cannot check a dangling pointer.

// The contract is the specification's, stated once above rather than on 92 functions.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::Arc;

use cryptoki_sys::*;
use once_cell::sync::Lazy;
use parking_lot::RwLock;

use crate::error::CallError;
use crate::error::{Error, Result};
use crate::mechanism::HashAlg;
use crate::mechanism::{Mech, mechanisms};
use crate::module::{AttrRead, Module};
use crate::object::Attrs;

static MODULE: Lazy<RwLock<Option<Arc<Module>>>> = Lazy::new(|| RwLock::new(None));

/// The module of this process, or CKR_CRYPTOKI_NOT_INITIALIZED (also in a forked child
/// that has not called C_Initialize itself).
fn current() -> Result<Arc<Module>> {
    match MODULE.read().as_ref() {
        Some(m) if m.pid() == std::process::id() => Ok(Arc::clone(m)),
        _ => Err(Error::from(CallError::NotInitialized)),
    }
}

/// Runs one entry point: panics become CKR_GENERAL_ERROR, errors their CK_RV. The call
/// counts as in flight for C_Finalize while it runs.
fn entry(f: impl FnOnce(&Module) -> Result<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(|| {
        current().and_then(|m| {
            let _in_flight = m.call_started();
            f(&m)
        })
    })) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => e.ck_rv(),
        Err(_) => CKR_GENERAL_ERROR,
    }
}

fn bad() -> Error {
    Error::from(CallError::BadArgument("bad argument"))
}

fn usize_of(n: CK_ULONG) -> Result<usize> {
    usize::try_from(n).map_err(|_| bad())
}

fn ulong_of(n: usize) -> CK_ULONG {
    CK_ULONG::try_from(n).unwrap_or(CK_ULONG::MAX)
}

/// Input bytes: NULL with a length is refused; length 0 never touches the pointer.
fn bytes<'a>(p: *const u8, len: CK_ULONG) -> Result<&'a [u8]> {
    let n = usize_of(len)?;
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: the caller passes `len` readable bytes at a non-NULL `p` (PKCS#11 contract)
    // that stay valid for the call.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A template copied into owned attributes.
fn template(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Attrs> {
    let n = usize_of(count)?;
    let mut out = Attrs::new();
    if n == 0 {
        return Ok(out);
    }
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: `count` CK_ATTRIBUTE structures at `p` (PKCS#11 contract).
    let list = unsafe { std::slice::from_raw_parts(p, n) };
    for a in list {
        let v = bytes(a.pValue as *const u8, a.ulValueLen)?;
        out.insert(a.type_, v.to_vec());
    }
    Ok(out)
}

/// Writes through a non-NULL out-pointer.
fn put<T>(p: *mut T, v: T) -> Result<()> {
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: non-NULL and, by the PKCS#11 contract, valid for one write of T.
    unsafe { p.write(v) };
    Ok(())
}

/// Reads through a non-NULL in-pointer.
fn get<T: Copy>(p: *const T) -> Result<T> {
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: non-NULL and, by the PKCS#11 contract, valid for one read of T.
    Ok(unsafe { p.read() })
}

/// The two-call convention for a variable-length output of known size `needed`:
/// `out` NULL → report the size, CKR_OK; too small → report it, CKR_BUFFER_TOO_SMALL.
/// Returns true when the caller should produce the output now.
fn size_check(out: *mut u8, len_ptr: *mut CK_ULONG, needed: usize) -> Result<bool> {
    let have = get(len_ptr as *const CK_ULONG)?;
    if out.is_null() {
        put(len_ptr, ulong_of(needed))?;
        return Ok(false);
    }
    if usize_of(have)? < needed {
        put(len_ptr, ulong_of(needed))?;
        return Err(CallError::BufferTooSmall { needed }.into());
    }
    Ok(true)
}

/// The two-call convention around an output whose size `need` is known without running
/// the operation: a size query or a short buffer is answered (the operation stays
/// active); otherwise `produce` runs and its output is written.
fn sized_output(
    out: *mut u8,
    len_ptr: *mut CK_ULONG,
    need: usize,
    produce: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<()> {
    if !size_check(out, len_ptr, need)? {
        return Ok(());
    }
    write_out(out, len_ptr, &produce()?)
}

/// Copies `data` to `out` (size already checked) and writes its length.
fn write_out(out: *mut u8, len_ptr: *mut CK_ULONG, data: &[u8]) -> Result<()> {
    let have = usize_of(get(len_ptr as *const CK_ULONG)?)?;
    if out.is_null() || have < data.len() {
        put(len_ptr, ulong_of(data.len()))?;
        return Err(CallError::BufferTooSmall { needed: data.len() }.into());
    }
    // SAFETY: `out` holds at least `have >= data.len()` writable bytes (contract).
    unsafe { ptr::copy_nonoverlapping(data.as_ptr(), out, data.len()) };
    put(len_ptr, ulong_of(data.len()))
}

/// Space-padded fixed-size text field.
fn pad(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let b = s.as_bytes();
    let n = b.len().min(dst.len());
    dst[..n].copy_from_slice(&b[..n]);
}

fn hash_of(m: CK_MECHANISM_TYPE) -> Result<HashAlg> {
    HashAlg::from_ckm(m).ok_or(Error::MechanismParamInvalid("hash algorithm"))
}

fn mgf_of(m: CK_RSA_PKCS_MGF_TYPE) -> Result<HashAlg> {
    HashAlg::from_mgf(m).ok_or(Error::MechanismParamInvalid("MGF"))
}

/// Reads a mechanism's parameter structure, checking its size.
fn param<T: Copy>(m: &CK_MECHANISM) -> Result<T> {
    if m.pParameter.is_null() || usize_of(m.ulParameterLen)? != std::mem::size_of::<T>() {
        return Err(Error::MechanismParamInvalid(
            "parameter structure missing or of the wrong size",
        ));
    }
    get(m.pParameter as *const T)
}

/// A CK_MECHANISM parsed into [`Mech`].
fn mechanism(p: *const CK_MECHANISM) -> Result<Mech> {
    let m: CK_MECHANISM = get(p)?;
    let pss = |hash: Option<HashAlg>| -> Result<Mech> {
        let prm: CK_RSA_PKCS_PSS_PARAMS = param(&m)?;
        let h = hash_of(prm.hashAlg)?;
        if hash.is_some_and(|x| x != h) {
            return Err(Error::MechanismParamInvalid(
                "hashAlg differs from the mechanism's hash",
            ));
        }
        Ok(Mech::Pss {
            hash: h,
            mgf: mgf_of(prm.mgf)?,
            salt: usize_of(prm.sLen)?,
            prehashed: hash.is_none(),
        })
    };
    Ok(match m.mechanism {
        CKM_RSA_PKCS_KEY_PAIR_GEN => Mech::RsaKeyPairGen,
        CKM_EC_KEY_PAIR_GEN => Mech::EcKeyPairGen,
        CKM_RSA_PKCS => Mech::RsaPkcs,
        CKM_RSA_X_509 => Mech::RsaX509,
        CKM_SHA1_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha1),
        CKM_SHA256_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha256),
        CKM_SHA384_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha384),
        CKM_SHA512_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha512),
        CKM_RSA_PKCS_PSS => pss(None)?,
        CKM_SHA1_RSA_PKCS_PSS => pss(Some(HashAlg::Sha1))?,
        CKM_SHA256_RSA_PKCS_PSS => pss(Some(HashAlg::Sha256))?,
        CKM_SHA384_RSA_PKCS_PSS => pss(Some(HashAlg::Sha384))?,
        CKM_SHA512_RSA_PKCS_PSS => pss(Some(HashAlg::Sha512))?,
        CKM_RSA_PKCS_OAEP => {
            let prm: CK_RSA_PKCS_OAEP_PARAMS = param(&m)?;
            let label = match prm.source {
                0 => Vec::new(),
                CKZ_DATA_SPECIFIED => {
                    bytes(prm.pSourceData as *const u8, prm.ulSourceDataLen)?.to_vec()
                }
                _ => return Err(Error::MechanismParamInvalid("OAEP source")),
            };
            Mech::Oaep {
                hash: hash_of(prm.hashAlg)?,
                mgf: mgf_of(prm.mgf)?,
                label,
            }
        }
        CKM_ECDSA => Mech::Ecdsa,
        CKM_ECDSA_SHA1 => Mech::HashEcdsa(HashAlg::Sha1),
        CKM_ECDSA_SHA256 => Mech::HashEcdsa(HashAlg::Sha256),
        CKM_ECDSA_SHA384 => Mech::HashEcdsa(HashAlg::Sha384),
        CKM_ECDSA_SHA512 => Mech::HashEcdsa(HashAlg::Sha512),
        CKM_ECDH1_DERIVE => {
            let prm: CK_ECDH1_DERIVE_PARAMS = param(&m)?;
            if prm.kdf != CKD_NULL || prm.ulSharedDataLen != 0 {
                return Err(Error::MechanismParamInvalid(
                    "only CKD_NULL without shared data",
                ));
            }
            Mech::Ecdh {
                public: bytes(prm.pPublicData, prm.ulPublicDataLen)?.to_vec(),
            }
        }
        CKM_SHA_1 => Mech::Digest(HashAlg::Sha1),
        CKM_SHA256 => Mech::Digest(HashAlg::Sha256),
        CKM_SHA384 => Mech::Digest(HashAlg::Sha384),
        CKM_SHA512 => Mech::Digest(HashAlg::Sha512),
        other => return Err(Error::MechanismInvalid(other)),
    })
}

// ----- general -----

/// C_Initialize (PKCS#11 2.40 §5.4). Only OS locking is used: mutex callbacks without
/// CKF_OS_LOCKING_OK are refused with CKR_CANT_LOCK. Reads the store only: no TPM access,
/// no output. In a forked child the inherited state is leaked, never dropped (DESIGN.md §6).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        if !args.is_null() {
            let a: CK_C_INITIALIZE_ARGS = get(args as *const CK_C_INITIALIZE_ARGS)?;
            if !a.pReserved.is_null() {
                return Err(bad());
            }
            let fns = [
                a.CreateMutex.is_some(),
                a.DestroyMutex.is_some(),
                a.LockMutex.is_some(),
                a.UnlockMutex.is_some(),
            ];
            let given = fns.iter().filter(|x| **x).count();
            if given != 0 && given != 4 {
                return Err(bad());
            }
            if given == 4 && a.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(Error::from(CallError::CantLock));
            }
        }
        let mut g = MODULE.write();
        if let Some(m) = g.as_ref() {
            if m.pid() == std::process::id() {
                return Err(Error::from(CallError::AlreadyInitialized));
            }
            // Inherited across fork(): dropping it would flush the parent's TPM objects.
            if let Some(old) = g.take() {
                std::mem::forget(old);
            }
        }
        let threads_allowed = args.is_null() || {
            let a: CK_C_INITIALIZE_ARGS = get(args as *const CK_C_INITIALIZE_ARGS)?;
            a.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS == 0
        };
        *g = Some(Arc::new(Module::new(threads_allowed)?));
        Ok(())
    }));
    match r {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => e.ck_rv(),
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// How long C_Finalize waits for calls other threads still have in flight.
const FINALIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// C_Finalize: later calls get CKR_CRYPTOKI_NOT_INITIALIZED at once; calls in flight in
/// other threads are waited for a bounded time (the specification leaves this undefined;
/// a hang is the worst choice), then every loaded object is flushed and the connection
/// closed — or, if a call still holds it, left to that call to release.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        if !reserved.is_null() {
            return Err(bad());
        }
        let m = {
            let mut g = MODULE.write();
            match g.take() {
                Some(m) if m.pid() == std::process::id() => m,
                other => {
                    *g = other;
                    return Err(Error::from(CallError::NotInitialized));
                }
            }
        };
        let deadline = std::time::Instant::now() + FINALIZE_WAIT;
        while m.calls_in_flight() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        m.finalize(deadline);
        Ok(())
    }));
    match r {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => e.ck_rv(),
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// C_GetInfo.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    entry(|_| {
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
        put(info, i)
    })
}

// ----- slots and tokens -----

/// C_GetSlotList: every card is a slot with a token; the store is re-read, so cards
/// other processes made or destroyed show up (DESIGN.md §5).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotList(
    _present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        m.refresh_slots();
        let ids = m.slot_ids();
        if size_check(list as *mut u8, count, ids.len())? {
            for (i, id) in ids.iter().enumerate() {
                // SAFETY: `list` holds `*count >= ids.len()` slots (checked by size_check).
                unsafe { list.add(i).write(*id) };
            }
        }
        put(count, ulong_of(ids.len()))
    })
}

/// C_GetSlotInfo: a virtual reader, never removable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    entry(|m| {
        let (desc, simulated) = m.slot_description(slot)?;
        let mut i = CK_SLOT_INFO {
            slotDescription: [0; 64],
            manufacturerID: [0; 32],
            flags: CKF_TOKEN_PRESENT | CKF_HW_SLOT,
            hardwareVersion: CK_VERSION { major: 2, minor: 0 },
            firmwareVersion: CK_VERSION { major: 0, minor: 1 },
        };
        pad(&mut i.slotDescription, &desc);
        pad(
            &mut i.manufacturerID,
            if simulated {
                "tpmvsc (simulated TPM)"
            } else {
                "tpmvsc"
            },
        );
        put(info, i)
    })
}

/// C_GetTokenInfo: label = card name, serial = first 16 hex digits of the card ID,
/// model "TPM VSC" (virtual), PIN count flags and the policy's PIN lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    entry(|m| {
        let f = m.token_facts(slot)?;
        let mut i = CK_TOKEN_INFO {
            label: [0; 32],
            manufacturerID: [0; 32],
            model: [0; 16],
            serialNumber: [0; 16],
            flags: f.flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: f.sessions,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: f.rw_sessions,
            ulMaxPinLen: f.max_pin,
            ulMinPinLen: f.min_pin,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: CK_VERSION { major: 2, minor: 0 },
            firmwareVersion: CK_VERSION { major: 0, minor: 1 },
            utcTime: [b' '; 16],
        };
        pad(&mut i.label, &f.label);
        pad(
            &mut i.manufacturerID,
            if f.simulated {
                "tpmvsc virtual (simulated)"
            } else {
                "tpmvsc virtual card"
            },
        );
        pad(&mut i.model, "TPM VSC");
        pad(&mut i.serialNumber, &f.serial);
        put(info, i)
    })
}

/// C_GetMechanismList.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        m.slot_description(slot)?;
        let mechs = mechanisms(3072, 384);
        if size_check(list as *mut u8, count, mechs.len())? {
            for (i, x) in mechs.iter().enumerate() {
                // SAFETY: `list` holds at least mechs.len() entries (size_check).
                unsafe { list.add(i).write(x.mech) };
            }
        }
        put(count, ulong_of(mechs.len()))
    })
}

/// C_GetMechanismInfo.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mech: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    entry(|m| {
        m.slot_description(slot)?;
        let x = mechanisms(3072, 384)
            .into_iter()
            .find(|x| x.mech == mech)
            .ok_or(Error::MechanismInvalid(mech))?;
        put(
            info,
            CK_MECHANISM_INFO {
                ulMinKeySize: x.min,
                ulMaxKeySize: x.max,
                flags: x.flags,
            },
        )
    })
}

/// C_InitToken: reformat with the PUK as SO PIN (DESIGN.md §5).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> CK_RV {
    entry(|m| {
        let pin = bytes(pin, len)?;
        if label.is_null() {
            return Err(bad());
        }
        // SAFETY: the label is 32 bytes (PKCS#11 contract).
        let l = unsafe { std::slice::from_raw_parts(label, 32) };
        let text = String::from_utf8_lossy(l).trim_end().to_string();
        m.init_token(slot, pin, &text)
    })
}

/// C_WaitForSlotEvent: with CKF_DONT_BLOCK returns a pending event or CKR_NO_EVENT;
/// otherwise polls the store until a card appears or goes, or C_Finalize.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    flags: CK_FLAGS,
    slot: *mut CK_SLOT_ID,
    reserved: *mut c_void,
) -> CK_RV {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        if !reserved.is_null() || slot.is_null() {
            return Err(bad());
        }
        loop {
            let m = current()?;
            if let Some(s) = m.next_event() {
                return put(slot, s);
            }
            if flags & CKF_DONT_BLOCK != 0 {
                return Err(Error::from(CallError::NoEvent));
            }
            drop(m);
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }));
    match r {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => e.ck_rv(),
        Err(_) => CKR_GENERAL_ERROR,
    }
}

// ----- sessions and login -----

/// C_OpenSession: CKF_SERIAL_SESSION is required; notifications are not used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    out: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    entry(|m| {
        if out.is_null() {
            return Err(bad());
        }
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(Error::from(CallError::ParallelSession));
        }
        m.refresh_slots();
        let h = m.open_session(slot, flags & CKF_RW_SESSION != 0)?;
        put(out, h)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CloseSession(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(|m| m.close_session(h))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    entry(|m| m.close_all_sessions(slot))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSessionInfo(
    h: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    entry(|m| {
        let f = m.session_facts(h)?;
        put(
            info,
            CK_SESSION_INFO {
                slotID: f.slot,
                state: f.state,
                flags: f.flags,
                ulDeviceError: 0,
            },
        )
    })
}

/// Operation state cannot be saved: it may hold TPM-loaded keys.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetOperationState(
    h: CK_SESSION_HANDLE,
    _s: *mut CK_BYTE,
    _l: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        m.session_facts(h)
            .and(Err(Error::Unsupported("not offered".into())))
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetOperationState(
    h: CK_SESSION_HANDLE,
    _s: *mut CK_BYTE,
    _l: CK_ULONG,
    _e: CK_OBJECT_HANDLE,
    _a: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| {
        m.session_facts(h)
            .and(Err(Error::Unsupported("not offered".into())))
    })
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
    entry(|m| m.login(h, user, bytes(pin, len)?))
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
    entry(|m| {
        if !bytes(name, name_len)?.is_empty() {
            return Err(Error::from(CallError::UserTypeInvalid(
                "named users are not offered",
            )));
        }
        m.login(h, user, bytes(pin, len)?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Logout(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(|m| m.logout(h))
}

/// C_InitPIN: the SO (PUK) unblocks and sets a new user PIN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_InitPIN(
    h: CK_SESSION_HANDLE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    entry(|m| m.init_pin(h, bytes(pin, len)?))
}

/// C_SetPIN: the user's PIN, or the PUK when the SO is logged in.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetPIN(
    h: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> CK_RV {
    entry(|m| m.set_pin(h, bytes(old, old_len)?, bytes(new, new_len)?))
}

/// C_SessionCancel (3.0): ends the active operation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SessionCancel(h: CK_SESSION_HANDLE, _flags: CK_FLAGS) -> CK_RV {
    entry(|m| m.cancel(h))
}

// ----- objects -----

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CreateObject(
    h: CK_SESSION_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| {
        if out.is_null() {
            return Err(bad());
        }
        let o = m.create_object(h, &template(t, n)?)?;
        put(out, o)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CopyObject(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| {
        if out.is_null() {
            return Err(bad());
        }
        let c = m.copy_object(h, o, &template(t, n)?)?;
        put(out, c)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DestroyObject(h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> CK_RV {
    entry(|m| m.destroy_object(h, o))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetObjectSize(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        if size.is_null() {
            return Err(bad());
        }
        let s = m.object_size(h, o)?;
        put(size, ulong_of(s))
    })
}

/// C_GetAttributeValue: every attribute is processed; an unknown, sensitive or too
/// small one gets CK_UNAVAILABLE_INFORMATION and the call returns that error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetAttributeValue(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let count = usize_of(n)?;
        if count > 0 && t.is_null() {
            return Err(bad());
        }
        if count == 0 {
            m.object_size(h, o)?;
            return Ok(());
        }
        // SAFETY: `n` attributes at `t` (contract); we write their lengths and values.
        let list = unsafe { std::slice::from_raw_parts_mut(t, count) };
        let types: Vec<CK_ATTRIBUTE_TYPE> = list.iter().map(|a| a.type_).collect();
        let reads = m.read_attributes(h, o, &types)?;
        let mut rv = CKR_OK;
        for (a, r) in list.iter_mut().zip(reads) {
            match r {
                AttrRead::Sensitive => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = CKR_ATTRIBUTE_SENSITIVE;
                }
                AttrRead::Invalid => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    if rv == CKR_OK {
                        rv = CKR_ATTRIBUTE_TYPE_INVALID;
                    }
                }
                AttrRead::Value(v) => {
                    if a.pValue.is_null() {
                        a.ulValueLen = ulong_of(v.len());
                    } else if usize_of(a.ulValueLen)? < v.len() {
                        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        rv = CKR_BUFFER_TOO_SMALL;
                    } else {
                        // SAFETY: pValue holds ulValueLen >= v.len() bytes (contract).
                        unsafe {
                            ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len())
                        };
                        a.ulValueLen = ulong_of(v.len());
                    }
                }
            }
        }
        if rv == CKR_OK {
            Ok(())
        } else {
            Err(match rv {
                CKR_ATTRIBUTE_SENSITIVE => CallError::AttributeSensitive,
                CKR_ATTRIBUTE_TYPE_INVALID => CallError::AttributeTypeInvalid("not offered"),
                _ => CallError::BufferTooSmall { needed: 0 },
            }
            .into())
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetAttributeValue(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    entry(|m| m.set_attributes(h, o, &template(t, n)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjectsInit(
    h: CK_SESSION_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    entry(|m| m.find_init(h, &template(t, n)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjects(
    h: CK_SESSION_HANDLE,
    out: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let max = usize_of(max)?;
        if count.is_null() || (out.is_null() && max > 0) {
            return Err(bad());
        }
        let found = m.find_next(h, max)?;
        for (i, o) in found.iter().enumerate() {
            // SAFETY: `out` holds `max >= found.len()` handles (contract).
            unsafe { out.add(i).write(*o) };
        }
        put(count, ulong_of(found.len()))
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjectsFinal(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(|m| m.find_final(h))
}

// ----- keys -----

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateKeyPair(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    pub_t: *mut CK_ATTRIBUTE,
    pub_n: CK_ULONG,
    priv_t: *mut CK_ATTRIBUTE,
    priv_n: CK_ULONG,
    pub_out: *mut CK_OBJECT_HANDLE,
    priv_out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| {
        if pub_out.is_null() || priv_out.is_null() {
            return Err(bad());
        }
        let mech = mechanism(mech)?;
        let (p, k) = m.generate_key_pair(
            h,
            &mech,
            &template(pub_t, pub_n)?,
            &template(priv_t, priv_n)?,
        )?;
        put(pub_out, p)?;
        put(priv_out, k)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DeriveKey(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| {
        if out.is_null() {
            return Err(bad());
        }
        let mech = mechanism(mech)?;
        let k = m.derive(h, &mech, base, &template(t, n)?)?;
        put(out, k)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateRandom(
    h: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let n = usize_of(len)?;
        if n > 0 && out.is_null() {
            return Err(bad());
        }
        if n > crate::module::MAX_RANDOM {
            return Err(Error::from(CallError::BadArgument(
                "at most 1 MiB of random bytes per C_GenerateRandom",
            )));
        }
        let buf: &mut [u8] = if n == 0 {
            &mut []
        } else {
            // SAFETY: `out` is non-NULL and holds `len` writable bytes (contract); the
            // slice lives for this call only.
            unsafe { std::slice::from_raw_parts_mut(out, n) }
        };
        m.random(h, buf)
    })
}

/// The TPM's RNG is not seeded by clients.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SeedRandom(
    h: CK_SESSION_HANDLE,
    _s: *mut CK_BYTE,
    _l: CK_ULONG,
) -> CK_RV {
    entry(|m| {
        m.session_facts(h)
            .and(Err(Error::from(CallError::RandomSeedNotSupported)))
    })
}

// ----- sign and verify -----

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| m.sign_init(h, mechanism(mech)?, key))
}

/// C_Sign: a size query (NULL output) runs no TPM command and keeps the operation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Sign(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let d = bytes(data, len)?;
        sized_output(sig, sig_len, m.sign_len(h)?, || m.sign(h, Some(d)))
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignUpdate(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let d = bytes(data, len);
        match d {
            Ok(d) => m.update(h, false, d),
            Err(e) => {
                m.end_op(h);
                Err(e)
            }
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| sized_output(sig, sig_len, m.sign_len(h)?, || m.sign(h, None)))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| m.verify_init(h, mechanism(mech)?, key))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Verify(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let (d, s) = match (bytes(data, len), bytes(sig, sig_len)) {
            (Ok(d), Ok(s)) => (d, s),
            _ => {
                m.end_op(h);
                return Err(bad());
            }
        };
        m.verify(h, Some(d), s)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyUpdate(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(|m| m.update(h, true, bytes(data, len)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    entry(|m| m.verify(h, None, bytes(sig, sig_len)?))
}

// ----- encrypt and decrypt -----

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| m.encrypt_init(h, mechanism(mech)?, key))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Encrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let d = bytes(data, len)?;
        sized_output(out, out_len, m.encrypt_len(h)?, || m.encrypt(h, d))
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|m| m.decrypt_init(h, mechanism(mech)?, key))
}

/// C_Decrypt: a size query reports the modulus size; when the real plaintext then does
/// not fit, it is held (zeroizing) in the session for the retry instead of decrypting twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Decrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let d = bytes(data, len)?;
        let need = m.decrypt_len(h)?;
        let have = usize_of(get(out_len as *const CK_ULONG)?)?;
        if out.is_null() {
            return put(out_len, ulong_of(need));
        }
        match m.decrypt(h, d, have)? {
            Ok(plain) => write_out(out, out_len, &plain),
            Err(needed) => {
                put(out_len, ulong_of(needed))?;
                Err(CallError::BufferTooSmall { needed }.into())
            }
        }
    })
}

// ----- digest -----

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestInit(h: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM) -> CK_RV {
    entry(|m| match mechanism(mech)? {
        Mech::Digest(alg) => m.digest_init(h, alg),
        _ => Err(Error::from(CallError::WrongMechanism(
            "not a digest mechanism",
        ))),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Digest(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| {
        let d = bytes(data, len)?;
        sized_output(out, out_len, m.digest_len(h)?, || {
            m.digest_final(h, Some(d))
        })
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestUpdate(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(|m| m.digest_update(h, bytes(data, len)?))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestFinal(
    h: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|m| sized_output(out, out_len, m.digest_len(h)?, || m.digest_final(h, None)))
}

/// Keys never leave the TPM, so they cannot be digested.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestKey(h: CK_SESSION_HANDLE, _k: CK_OBJECT_HANDLE) -> CK_RV {
    entry(|m| {
        m.session_facts(h)
            .and(Err(Error::from(CallError::KeyIndigestible)))
    })
}

// ----- not offered -----

macro_rules! not_supported {
    ($($name:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(
            /// Not offered by this module (see the README's feature table).
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($(_: $ty),*) -> CK_RV {
                entry(|_| Err(Error::Unsupported("not offered".into())))
            }
        )*
    };
}

not_supported! {
    C_EncryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_EncryptFinal(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_DecryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptFinal(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_SignRecoverInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_SignRecover(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_VerifyRecoverInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_VerifyRecover(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DigestEncryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptDigestUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_SignEncryptUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptVerifyUpdate(a: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_GenerateKey(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: *mut CK_ATTRIBUTE, d: CK_ULONG, e: *mut CK_OBJECT_HANDLE);
    C_WrapKey(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE, d: CK_OBJECT_HANDLE, e: *mut CK_BYTE, f: *mut CK_ULONG);
    C_UnwrapKey(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_ATTRIBUTE, g: CK_ULONG, h: *mut CK_OBJECT_HANDLE);
    C_MessageEncryptInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_EncryptMessage(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG, h: *mut CK_BYTE, i: *mut CK_ULONG);
    C_EncryptMessageBegin(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG);
    C_EncryptMessageNext(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG, h: CK_FLAGS);
    C_MessageEncryptFinal(a: CK_SESSION_HANDLE);
    C_MessageDecryptInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_DecryptMessage(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG, h: *mut CK_BYTE, i: *mut CK_ULONG);
    C_DecryptMessageBegin(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG);
    C_DecryptMessageNext(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG, h: CK_FLAGS);
    C_MessageDecryptFinal(a: CK_SESSION_HANDLE);
    C_MessageSignInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_SignMessage(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG);
    C_SignMessageBegin(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG);
    C_SignMessageNext(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG);
    C_MessageSignFinal(a: CK_SESSION_HANDLE);
    C_MessageVerifyInit(a: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_VerifyMessage(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG);
    C_VerifyMessageBegin(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG);
    C_VerifyMessageNext(a: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG);
    C_MessageVerifyFinal(a: CK_SESSION_HANDLE);
}

/// Legacy functions: always CKR_FUNCTION_NOT_PARALLEL (PKCS#11 2.40 §5.20).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionStatus(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(|m| {
        m.session_facts(h)
            .and(Err(Error::from(CallError::NotParallel)))
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CancelFunction(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(|m| {
        m.session_facts(h)
            .and(Err(Error::from(CallError::NotParallel)))
    })
}

// ----- function lists and interfaces -----

/// Both function lists: the 2.40 entries, then (for 3.0) the extra ones.
macro_rules! function_list {
    ($ty:ident, $version:expr, { $($extra:ident),* }) => {
        $ty {
            version: $version,
            C_Initialize: Some(C_Initialize),
            C_Finalize: Some(C_Finalize),
            C_GetInfo: Some(C_GetInfo),
            C_GetFunctionList: Some(C_GetFunctionList),
            C_GetSlotList: Some(C_GetSlotList),
            C_GetSlotInfo: Some(C_GetSlotInfo),
            C_GetTokenInfo: Some(C_GetTokenInfo),
            C_GetMechanismList: Some(C_GetMechanismList),
            C_GetMechanismInfo: Some(C_GetMechanismInfo),
            C_InitToken: Some(C_InitToken),
            C_InitPIN: Some(C_InitPIN),
            C_SetPIN: Some(C_SetPIN),
            C_OpenSession: Some(C_OpenSession),
            C_CloseSession: Some(C_CloseSession),
            C_CloseAllSessions: Some(C_CloseAllSessions),
            C_GetSessionInfo: Some(C_GetSessionInfo),
            C_GetOperationState: Some(C_GetOperationState),
            C_SetOperationState: Some(C_SetOperationState),
            C_Login: Some(C_Login),
            C_Logout: Some(C_Logout),
            C_CreateObject: Some(C_CreateObject),
            C_CopyObject: Some(C_CopyObject),
            C_DestroyObject: Some(C_DestroyObject),
            C_GetObjectSize: Some(C_GetObjectSize),
            C_GetAttributeValue: Some(C_GetAttributeValue),
            C_SetAttributeValue: Some(C_SetAttributeValue),
            C_FindObjectsInit: Some(C_FindObjectsInit),
            C_FindObjects: Some(C_FindObjects),
            C_FindObjectsFinal: Some(C_FindObjectsFinal),
            C_EncryptInit: Some(C_EncryptInit),
            C_Encrypt: Some(C_Encrypt),
            C_EncryptUpdate: Some(C_EncryptUpdate),
            C_EncryptFinal: Some(C_EncryptFinal),
            C_DecryptInit: Some(C_DecryptInit),
            C_Decrypt: Some(C_Decrypt),
            C_DecryptUpdate: Some(C_DecryptUpdate),
            C_DecryptFinal: Some(C_DecryptFinal),
            C_DigestInit: Some(C_DigestInit),
            C_Digest: Some(C_Digest),
            C_DigestUpdate: Some(C_DigestUpdate),
            C_DigestKey: Some(C_DigestKey),
            C_DigestFinal: Some(C_DigestFinal),
            C_SignInit: Some(C_SignInit),
            C_Sign: Some(C_Sign),
            C_SignUpdate: Some(C_SignUpdate),
            C_SignFinal: Some(C_SignFinal),
            C_SignRecoverInit: Some(C_SignRecoverInit),
            C_SignRecover: Some(C_SignRecover),
            C_VerifyInit: Some(C_VerifyInit),
            C_Verify: Some(C_Verify),
            C_VerifyUpdate: Some(C_VerifyUpdate),
            C_VerifyFinal: Some(C_VerifyFinal),
            C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
            C_VerifyRecover: Some(C_VerifyRecover),
            C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
            C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
            C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
            C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
            C_GenerateKey: Some(C_GenerateKey),
            C_GenerateKeyPair: Some(C_GenerateKeyPair),
            C_WrapKey: Some(C_WrapKey),
            C_UnwrapKey: Some(C_UnwrapKey),
            C_DeriveKey: Some(C_DeriveKey),
            C_SeedRandom: Some(C_SeedRandom),
            C_GenerateRandom: Some(C_GenerateRandom),
            C_GetFunctionStatus: Some(C_GetFunctionStatus),
            C_CancelFunction: Some(C_CancelFunction),
            C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
            $($extra: Some($extra),)*
        }
    };
}

static FUNCTIONS_240: CK_FUNCTION_LIST = function_list!(
    CK_FUNCTION_LIST,
    CK_VERSION {
        major: 2,
        minor: 40
    },
    {}
);

static FUNCTIONS_300: CK_FUNCTION_LIST_3_0 = function_list!(CK_FUNCTION_LIST_3_0, CK_VERSION { major: 3, minor: 0 }, {
    C_GetInterfaceList,
    C_GetInterface,
    C_LoginUser,
    C_SessionCancel,
    C_MessageEncryptInit,
    C_EncryptMessage,
    C_EncryptMessageBegin,
    C_EncryptMessageNext,
    C_MessageEncryptFinal,
    C_MessageDecryptInit,
    C_DecryptMessage,
    C_DecryptMessageBegin,
    C_DecryptMessageNext,
    C_MessageDecryptFinal,
    C_MessageSignInit,
    C_SignMessage,
    C_SignMessageBegin,
    C_SignMessageNext,
    C_MessageSignFinal,
    C_MessageVerifyInit,
    C_VerifyMessage,
    C_VerifyMessageBegin,
    C_VerifyMessageNext,
    C_MessageVerifyFinal
});

/// CK_INTERFACE holds raw pointers; these point at statics that are never written.
struct Interfaces([CK_INTERFACE; 2]);

// SAFETY: the pointers inside refer to immutable statics (function lists and a name).
unsafe impl Sync for Interfaces {}

static INTERFACE_NAME: &[u8; 8] = b"PKCS 11\0";

static INTERFACES: Interfaces = Interfaces([
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: &FUNCTIONS_300 as *const CK_FUNCTION_LIST_3_0 as *mut c_void,
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: &FUNCTIONS_240 as *const CK_FUNCTION_LIST as *mut c_void,
        flags: 0,
    },
]);

/// C_GetFunctionList: the 2.40 table. Works before C_Initialize.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(out: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    match put(
        out,
        &FUNCTIONS_240 as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST,
    ) {
        Ok(()) => CKR_OK,
        Err(e) => e.ck_rv(),
    }
}

/// C_GetInterfaceList (3.0): the 3.0 and the 2.40 interface, two-call convention.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterfaceList(
    list: *mut CK_INTERFACE,
    count: *mut CK_ULONG,
) -> CK_RV {
    let r = (|| -> Result<()> {
        let n = INTERFACES.0.len();
        if size_check(list as *mut u8, count, n)? {
            for (i, x) in INTERFACES.0.iter().enumerate() {
                // SAFETY: `list` holds at least n entries (size_check).
                unsafe { list.add(i).write(CK_INTERFACE { ..*x }) };
            }
        }
        put(count, ulong_of(n))
    })();
    match r {
        Ok(()) => CKR_OK,
        Err(e) => e.ck_rv(),
    }
}

/// C_GetInterface (3.0): by name ("PKCS 11" or NULL) and version (NULL = newest).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    out: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    let r = (|| -> Result<()> {
        if out.is_null() {
            return Err(bad());
        }
        if !name.is_null() {
            // SAFETY: a NUL-terminated name (contract).
            let n = unsafe { std::ffi::CStr::from_ptr(name as *const std::ffi::c_char) };
            if n.to_bytes() != b"PKCS 11" {
                return Err(bad());
            }
        }
        if flags & CKF_INTERFACE_FORK_SAFE != 0 {
            return Err(bad());
        }
        let index = if version.is_null() {
            0
        } else {
            match get(version as *const CK_VERSION)? {
                CK_VERSION { major: 3, minor: 0 } => 0,
                CK_VERSION {
                    major: 2,
                    minor: 40,
                } => 1,
                _ => return Err(bad()),
            }
        };
        put(
            out,
            &INTERFACES.0[index] as *const CK_INTERFACE as *mut CK_INTERFACE,
        )
    })();
    match r {
        Ok(()) => CKR_OK,
        Err(e) => e.ck_rv(),
    }
}
