//! Object management (PKCS#11 2.40 §5.7): create, copy, destroy, size, attributes and
//! searches. Who may create or change which object is the module's object policy
//! (`module::objects`); the session is checked here first.

use std::ptr;

use cryptoki_sys::*;

use super::args::{bad, put, template, ulong_of, usize_of};
use super::{Rule, entry};
use crate::error::CallError;
use crate::module::AttrRead;

/// C_CreateObject.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CreateObject(
    h: CK_SESSION_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        if out.is_null() {
            return Err(bad());
        }
        // SAFETY: `t` holds `n` attributes (contract).
        let o = m.create_object(h, &unsafe { template(t, n) }?)?;
        // SAFETY: `out` is a non-NULL out-pointer (contract).
        unsafe { put(out, o) }
    })
}

/// C_CopyObject.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_CopyObject(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        if out.is_null() {
            return Err(bad());
        }
        // SAFETY: `t` holds `n` attributes (contract).
        let c = m.copy_object(h, o, &unsafe { template(t, n) }?)?;
        // SAFETY: `out` is a non-NULL out-pointer (contract).
        unsafe { put(out, c) }
    })
}

/// C_DestroyObject.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DestroyObject(h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> CK_RV {
    entry(Rule::Session(h), |m| m.destroy_object(h, o))
}

/// C_GetObjectSize.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetObjectSize(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        if size.is_null() {
            return Err(bad());
        }
        let s = m.object_size(h, o)?;
        // SAFETY: `size` is a non-NULL out-pointer (contract).
        unsafe { put(size, ulong_of(s)) }
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
    entry(Rule::Session(h), |m| {
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
        let mut worst: Option<CallError> = None;
        for (a, r) in list.iter_mut().zip(reads) {
            match r {
                AttrRead::Sensitive => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    worst = Some(CallError::AttributeSensitive);
                }
                AttrRead::Invalid => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    worst.get_or_insert(CallError::AttributeTypeInvalid("not offered"));
                }
                AttrRead::Value(v) => {
                    if a.pValue.is_null() {
                        a.ulValueLen = ulong_of(v.len());
                    } else if usize_of(a.ulValueLen)? < v.len() {
                        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        worst = Some(CallError::BufferTooSmall { needed: v.len() });
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
        match worst {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    })
}

/// C_SetAttributeValue.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SetAttributeValue(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        // SAFETY: `t` holds `n` attributes (contract).
        m.set_attributes(h, o, &unsafe { template(t, n) }?)
    })
}

/// C_FindObjectsInit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjectsInit(
    h: CK_SESSION_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        // SAFETY: `t` holds `n` attributes (contract).
        m.find_init(h, &unsafe { template(t, n) }?)
    })
}

/// C_FindObjects: at most `max` handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjects(
    h: CK_SESSION_HANDLE,
    out: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        let max = usize_of(max)?;
        if count.is_null() || (out.is_null() && max > 0) {
            return Err(bad());
        }
        let found = m.find_next(h, max)?;
        for (i, o) in found.iter().enumerate() {
            // SAFETY: `out` holds `max >= found.len()` handles (contract).
            unsafe { out.add(i).write(*o) };
        }
        // SAFETY: `count` is a non-NULL out-pointer (contract).
        unsafe { put(count, ulong_of(found.len())) }
    })
}

/// C_FindObjectsFinal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_FindObjectsFinal(h: CK_SESSION_HANDLE) -> CK_RV {
    entry(Rule::Session(h), |m| m.find_final(h))
}
