//! Slot and token management (PKCS#11 2.40 §5.5): every card is one slot with one
//! token, the store re-read so that cards other processes made or destroyed show up
//! (DESIGN.md §5); mechanism queries; C_InitToken; C_WaitForSlotEvent.

use std::ffi::c_void;

use cryptoki_sys::*;

use super::args::{bad, bytes, pad, put, write_list};
use super::{Rule, current, entry, entry_anytime};
use crate::error::{CallError, Error};
use crate::mechanism::mechanisms;

/// Largest RSA and EC key sizes offered (bits).
const RSA_MAX: CK_ULONG = 3072;
const EC_MAX: CK_ULONG = 384;

/// C_GetSlotList: the store is re-read first.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotList(
    _present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Initialized, |m| {
        m.refresh_slots();
        // SAFETY: `list` holds `*count` slot IDs, `count` is read and written (contract).
        unsafe { write_list(list, count, &m.slot_ids()) }
    })
}

/// C_GetSlotInfo: a virtual reader, never removable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    entry(Rule::Initialized, |m| {
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
        // SAFETY: `info` is NULL or a CK_SLOT_INFO to fill (contract).
        unsafe { put(info, i) }
    })
}

/// C_GetTokenInfo: label = card name, serial = first 16 hex digits of the card ID,
/// model "TPM VSC" (virtual), PIN count flags and the policy's PIN lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    entry(Rule::Initialized, |m| {
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
        // SAFETY: `info` is NULL or a CK_TOKEN_INFO to fill (contract).
        unsafe { put(info, i) }
    })
}

/// C_GetMechanismList.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Initialized, |m| {
        m.slot_description(slot)?;
        let mechs: Vec<CK_MECHANISM_TYPE> =
            mechanisms(RSA_MAX, EC_MAX).iter().map(|x| x.mech).collect();
        // SAFETY: `list` holds `*count` entries, `count` is read and written (contract).
        unsafe { write_list(list, count, &mechs) }
    })
}

/// C_GetMechanismInfo.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mech: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    entry(Rule::Initialized, |m| {
        m.slot_description(slot)?;
        let x = mechanisms(RSA_MAX, EC_MAX)
            .into_iter()
            .find(|x| x.mech == mech)
            .ok_or(Error::MechanismInvalid(mech))?;
        let i = CK_MECHANISM_INFO {
            ulMinKeySize: x.min,
            ulMaxKeySize: x.max,
            flags: x.flags,
        };
        // SAFETY: `info` is NULL or a CK_MECHANISM_INFO to fill (contract).
        unsafe { put(info, i) }
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
    entry(Rule::Initialized, |m| {
        // SAFETY: `pin` holds `len` bytes (contract).
        let pin = unsafe { bytes(pin, len) }?;
        // SAFETY: the label is 32 bytes (contract); NULL is refused by `bytes`.
        let l = unsafe { bytes(label, 32) }?;
        let text = String::from_utf8_lossy(l).trim_end().to_string();
        m.init_token(slot, pin, &text)
    })
}

/// C_WaitForSlotEvent: with CKF_DONT_BLOCK returns a pending event or CKR_NO_EVENT;
/// otherwise polls the store until a card appears or goes, or C_Finalize (the loop
/// looks for the module anew every turn, so C_Finalize from another thread ends it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    flags: CK_FLAGS,
    slot: *mut CK_SLOT_ID,
    reserved: *mut c_void,
) -> CK_RV {
    entry_anytime(|| {
        // Initialization first, as every entry point but the list getters.
        drop(current()?);
        if !reserved.is_null() || slot.is_null() {
            return Err(bad());
        }
        loop {
            let m = current()?;
            if let Some(s) = m.next_event() {
                // SAFETY: `slot` is a non-NULL out-pointer (contract).
                return unsafe { put(slot, s) };
            }
            if flags & CKF_DONT_BLOCK != 0 {
                return Err(CallError::NoEvent.into());
            }
            drop(m);
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    })
}
