//! A thin, safe wrapper over libtss2-esys (through `tss-esapi-sys`): one ESYS context on
//! its own TCTI, and one method per TPM command tpmvsc sends.
//!
//! Why not `tss_esapi::Context`: tss-esapi 7.x has no wrapper for TPM2_PolicyNV (the
//! revocation check of DESIGN.md §2), nor for the dictionary-attack commands, and keeps
//! its ESYS context private, so those commands could only run on a second connection —
//! which swtpm and `/dev/tpm0` refuse while the first is open. Here every command shares
//! one connection. tss-esapi's structure types are still used to build and (un)marshal
//! public areas; this file only moves bytes across the C boundary.
//!
//! Every output ESYS allocates is copied out and freed with `Esys_Free` in the same
//! function; authorization values are zeroed in the C structures after each call.

#![allow(unsafe_code)] // FFI to libtss2-esys; every block states why it is sound.

use std::ffi::CString;
use std::ptr::null_mut;

use tss_esapi::structures::{CapabilityData, Public, Signature};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi_sys as sys;
use zeroize::Zeroizing;

use super::TpmError;
use crate::error::tpm::{classify, classify_code};

/// An ESYS object or session reference (ESYS_TR).
pub(crate) type Tr = sys::ESYS_TR;

/// No object / no session.
pub(crate) const NONE: Tr = sys::ESYS_TR_NONE;
/// The password session (TPM_RS_PW).
pub(crate) const PASSWORD: Tr = sys::ESYS_TR_PASSWORD;
/// The owner hierarchy.
pub(crate) const OWNER: Tr = sys::ESYS_TR_RH_OWNER;
/// The lockout hierarchy.
pub(crate) const LOCKOUT: Tr = sys::ESYS_TR_RH_LOCKOUT;

/// Up to three sessions for one command, in the order the TPM sees them.
pub(crate) type Sessions = [Tr; 3];
/// A password session alone (empty or known authValue in the clear: only for entities
/// whose authValue is empty or public).
pub(crate) const PW: Sessions = [PASSWORD, NONE, NONE];

/// TPMA_SESSION bits.
pub(crate) const SESSION_CONTINUE: u8 = 0x01;
pub(crate) const SESSION_DECRYPT: u8 = 0x20;
pub(crate) const SESSION_ENCRYPT: u8 = 0x40;

const SE_HMAC: sys::TPM2_SE = 0x00;
const SE_POLICY: sys::TPM2_SE = 0x01;
const ALG_SHA256: u16 = 0x000B;
const ALG_AES: u16 = 0x0006;
const ALG_CFB: u16 = 0x0043;
const ALG_NULL: u16 = 0x0010;
const ALG_ECDSA: u16 = 0x0018;
const CAP_HANDLES: u32 = 0x0000_0001;
const CAP_TPM_PROPERTIES: u32 = 0x0000_0006;
const SU_CLEAR: u16 = 0x0000;
const ST_HASHCHECK: u16 = 0x8024;
const RH_NULL: u32 = 0x4000_0007;

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// HMAC session salted to a key (parameter encryption with AES-128-CFB).
    SaltedHmac(Tr),
    /// Policy session salted to a key (AES-128-CFB), for policies with PolicyAuthValue.
    SaltedPolicy(Tr),
    /// Unsalted policy session without parameter encryption: it carries no secret.
    Policy,
}

/// A context saved out of the TPM (TPM2_ContextSave); loads back on this TPM only.
#[derive(Clone)]
pub(crate) struct SavedContext(Box<sys::TPMS_CONTEXT>);

impl std::fmt::Debug for SavedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SavedContext({} bytes)", self.0.contextBlob.size)
    }
}

/// An open ESYS context; finalized (connection closed) on drop.
#[derive(Debug)]
pub(crate) struct Esys {
    ctx: *mut sys::ESYS_CONTEXT,
    tcti: *mut sys::TSS2_TCTI_CONTEXT,
}

// SAFETY: an ESYS context may be used from any thread as long as one thread at a time
// uses it; every method takes `&mut self`, so Rust's aliasing rules give exactly that.
unsafe impl Send for Esys {}

/// Fills a TPM2B structure (`size` + `buffer`) from bytes, refusing what does not fit.
macro_rules! tpm2b {
    ($ty:ty, $bytes:expr, $what:expr) => {{
        let bytes: &[u8] = $bytes;
        let mut v = <$ty>::default();
        if bytes.len() > v.buffer.len() {
            return Err(too_long($what, bytes.len(), v.buffer.len()));
        }
        v.size = u16::try_from(bytes.len()).map_err(|_| too_long($what, bytes.len(), 0))?;
        v.buffer[..bytes.len()].copy_from_slice(bytes);
        v
    }};
}

/// The bytes of a TPM2B structure, bounded by its buffer.
macro_rules! tpm2b_bytes {
    ($v:expr) => {{
        let n = usize::from($v.size).min($v.buffer.len());
        $v.buffer[..n].to_vec()
    }};
}

// After the macros: the command groups use them.
mod admin;
mod keys;
mod policies;

/// The bytes of a TPM2B_NAME (its buffer is called `name`).
fn name_bytes(n: &sys::TPM2B_NAME) -> Vec<u8> {
    let len = usize::from(n.size).min(n.name.len());
    n.name[..len].to_vec()
}

fn too_long(what: &str, len: usize, max: usize) -> TpmError {
    TpmError::Other {
        code: 0,
        what: format!("{what} of {len} bytes does not fit the TPM structure (at most {max})"),
    }
}

fn null_output(what: &str) -> TpmError {
    TpmError::Other {
        code: 0,
        what: format!("the TPM software stack returned no {what}"),
    }
}

/// Copies an ESYS-allocated output and frees it.
fn take<T: Copy>(p: *mut T, what: &str) -> Result<T, TpmError> {
    if p.is_null() {
        return Err(null_output(what));
    }
    // SAFETY: ESYS returned `p` for the caller to own; it points to an initialized `T`.
    let v = unsafe { *p };
    // SAFETY: `p` was allocated by ESYS and is freed exactly once, here.
    unsafe { sys::Esys_Free(p.cast()) };
    Ok(v)
}

/// Frees an ESYS-allocated output the caller does not need (NULL is fine).
fn discard<T>(p: *mut T) {
    // SAFETY: `p` is NULL or was allocated by ESYS for the caller; freed once.
    unsafe { sys::Esys_Free(p.cast()) };
}

/// The `size` of a TPM2B that wraps a structure (ESYS marshals the structure itself and
/// only needs a nonzero size to know it is present).
fn inner_size<T>() -> u16 {
    u16::try_from(std::mem::size_of::<T>()).unwrap_or(u16::MAX)
}

fn check(rc: sys::TSS2_RC) -> Result<(), TpmError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(classify_code(rc))
    }
}

fn public_in(public: &[u8]) -> Result<sys::TPM2B_PUBLIC, TpmError> {
    let p = Public::unmarshall(public).map_err(classify)?;
    sys::TPM2B_PUBLIC::try_from(p).map_err(classify)
}

fn public_out(p: sys::TPM2B_PUBLIC) -> Result<Vec<u8>, TpmError> {
    Public::try_from(p)
        .map_err(classify)?
        .marshall()
        .map_err(classify)
}

impl Esys {
    /// Opens the TPM behind a TCTI configuration string.
    pub(crate) fn open(tcti: &str) -> Result<Esys, TpmError> {
        let no_tpm = |why: String| TpmError::NoTpm {
            tcti: tcti.to_string(),
            why,
        };
        let conf =
            CString::new(tcti).map_err(|_| no_tpm("the TCTI string contains a NUL byte".into()))?;
        let mut t: *mut sys::TSS2_TCTI_CONTEXT = null_mut();
        // SAFETY: `conf` is a NUL-terminated string alive for the call; `t` is an
        // out-pointer.
        let rc = unsafe { sys::Tss2_TctiLdr_Initialize(conf.as_ptr(), &mut t) };
        if rc != 0 || t.is_null() {
            return Err(no_tpm(format!("cannot connect: {}", classify_code(rc))));
        }
        let mut e: *mut sys::ESYS_CONTEXT = null_mut();
        // SAFETY: `t` was initialized above; a NULL ABI version asks for the default.
        let rc = unsafe { sys::Esys_Initialize(&mut e, t, null_mut()) };
        if rc != 0 || e.is_null() {
            // SAFETY: `t` came from Tss2_TctiLdr_Initialize and is finalized once.
            unsafe { sys::Tss2_TctiLdr_Finalize(&mut t) };
            return Err(no_tpm(format!("cannot connect: {}", classify_code(rc))));
        }
        Ok(Esys { ctx: e, tcti: t })
    }

    // ----- capabilities, random, shutdown -----

    fn capability(&mut self, cap: u32, first: u32, count: u32) -> Result<CapabilityData, TpmError> {
        let mut more: sys::TPMI_YES_NO = 0;
        let mut data: *mut sys::TPMS_CAPABILITY_DATA = null_mut();
        // SAFETY: live context, valid out-pointers.
        let rc = unsafe {
            sys::Esys_GetCapability(
                self.ctx, NONE, NONE, NONE, cap, first, count, &mut more, &mut data,
            )
        };
        if rc != 0 {
            discard(data);
            return Err(classify_code(rc));
        }
        let raw = take(data, "capability data")?;
        CapabilityData::try_from(raw).map_err(classify)
    }

    /// Handles of one type present in the TPM, starting at `first`.
    pub(crate) fn handles(&mut self, first: u32, count: u32) -> Result<Vec<u32>, TpmError> {
        match self.capability(CAP_HANDLES, first, count)? {
            CapabilityData::Handles(list) => {
                Ok(list.into_inner().into_iter().map(u32::from).collect())
            }
            _ => Err(null_output("handle list")),
        }
    }

    /// TPM properties (TPM_PT values) from `first`, as (property, value) pairs.
    pub(crate) fn properties(
        &mut self,
        first: u32,
        count: u32,
    ) -> Result<Vec<(u32, u32)>, TpmError> {
        match self.capability(CAP_TPM_PROPERTIES, first, count)? {
            CapabilityData::TpmProperties(list) => Ok(list
                .into_iter()
                .map(|p| (u32::from(p.property()), p.value()))
                .collect()),
            _ => Err(null_output("property list")),
        }
    }

    /// `n` (≤ 64) random bytes.
    pub(crate) fn get_random(&mut self, n: u16) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let mut out: *mut sys::TPM2B_DIGEST = null_mut();
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe { sys::Esys_GetRandom(self.ctx, NONE, NONE, NONE, n, &mut out) };
        if rc != 0 {
            discard(out);
            return Err(classify_code(rc));
        }
        let d = take(out, "random bytes")?;
        Ok(Zeroizing::new(tpm2b_bytes!(d)))
    }

    /// TPM2_Shutdown(CLEAR).
    pub(crate) fn shutdown(&mut self) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe { sys::Esys_Shutdown(self.ctx, NONE, NONE, NONE, SU_CLEAR) })
    }

    // ----- ESYS resource handles -----

    /// An ESYS handle for a TPM handle (persistent object, NV index): one ReadPublic.
    pub(crate) fn tr_for(&mut self, handle: u32) -> Result<Tr, TpmError> {
        let mut tr: Tr = NONE;
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe { sys::Esys_TR_FromTPMPublic(self.ctx, handle, NONE, NONE, NONE, &mut tr) };
        check(rc)?;
        Ok(tr)
    }

    /// The Name ESYS holds for a handle (no TPM command).
    pub(crate) fn name(&mut self, tr: Tr) -> Result<Vec<u8>, TpmError> {
        let mut name: *mut sys::TPM2B_NAME = null_mut();
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe { sys::Esys_TR_GetName(self.ctx, tr, &mut name) };
        if rc != 0 {
            discard(name);
            return Err(classify_code(rc));
        }
        let n = take(name, "name")?;
        Ok(name_bytes(&n))
    }

    /// Forgets an ESYS handle without touching the TPM object (persistent handles).
    pub(crate) fn close(&mut self, tr: Tr) {
        let mut t = tr;
        // SAFETY: live context; `t` is a handle of this context, closed once.
        let _ = unsafe { sys::Esys_TR_Close(self.ctx, &mut t) };
    }

    /// Sets the authValue ESYS uses for `tr` in HMAC and password sessions.
    pub(crate) fn set_auth(&mut self, tr: Tr, auth: &[u8]) -> Result<(), TpmError> {
        let mut a = tpm2b!(sys::TPM2B_AUTH, auth, "an authorization value");
        // SAFETY: live context; `a` outlives the call.
        let rc = unsafe { sys::Esys_TR_SetAuth(self.ctx, tr, &a) };
        a.buffer.iter_mut().for_each(|b| *b = 0);
        check(rc)
    }

    /// Flushes a transient object or session from the TPM.
    pub(crate) fn flush(&mut self, tr: Tr) -> Result<(), TpmError> {
        // SAFETY: live context; `tr` is a handle of this context.
        check(unsafe { sys::Esys_FlushContext(self.ctx, tr) })
    }

    /// Saves a loaded object's context (the object stays loaded).
    pub(crate) fn context_save(&mut self, tr: Tr) -> Result<SavedContext, TpmError> {
        let mut out: *mut sys::TPMS_CONTEXT = null_mut();
        // SAFETY: live context, valid out-pointer.
        let rc = unsafe { sys::Esys_ContextSave(self.ctx, tr, &mut out) };
        if rc != 0 {
            discard(out);
            return Err(classify_code(rc));
        }
        Ok(SavedContext(Box::new(take(out, "saved context")?)))
    }

    /// Loads a saved context back (ESYS forgets the authValue: set it again).
    pub(crate) fn context_load(&mut self, saved: &SavedContext) -> Result<Tr, TpmError> {
        let mut tr: Tr = NONE;
        // SAFETY: live context; the saved context outlives the call; valid out-pointer.
        let rc = unsafe { sys::Esys_ContextLoad(self.ctx, &*saved.0, &mut tr) };
        check(rc)?;
        Ok(tr)
    }
}

/// Keeps libtss2 from logging failed TPM commands (a wrong PIN is one) to stderr, unless
/// the user set `TSS2_LOG` already. For the CLI's `main` only, before any thread starts:
/// the module never changes a host program's environment (DESIGN.md §6).
pub(crate) fn quiet_tss_logging_for_cli() {
    if std::env::var_os("TSS2_LOG").is_none() {
        // SAFETY: called first thing in the CLI's single-threaded `main`, before any other
        // thread exists that could read the environment concurrently.
        unsafe { std::env::set_var("TSS2_LOG", "all+NONE") };
    }
}

impl Drop for Esys {
    fn drop(&mut self) {
        // SAFETY: both pointers came from their initializers and are finalized once.
        unsafe {
            sys::Esys_Finalize(&mut self.ctx);
            sys::Tss2_TctiLdr_Finalize(&mut self.tcti);
        }
    }
}
