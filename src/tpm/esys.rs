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
use std::ptr::{null, null_mut};

use tss_esapi::structures::{CapabilityData, Public, Signature};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi_sys as sys;
use zeroize::Zeroizing;

use super::TpmError;
use super::error::{classify, classify_code};

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

    // ----- sessions and policies -----

    /// Starts an auth session with SHA-256; `continueSession` set.
    pub(crate) fn start_session(&mut self, kind: SessionKind) -> Result<Tr, TpmError> {
        let (key, se, aes) = match kind {
            SessionKind::SaltedHmac(k) => (k, SE_HMAC, true),
            SessionKind::SaltedPolicy(k) => (k, SE_POLICY, true),
            SessionKind::Policy => (NONE, SE_POLICY, false),
        };
        let mut sym = sys::TPMT_SYM_DEF::default();
        if aes {
            sym.algorithm = ALG_AES;
            sym.keyBits.aes = 128;
            sym.mode.aes = ALG_CFB;
        } else {
            sym.algorithm = ALG_NULL;
        }
        let mut tr: Tr = NONE;
        // SAFETY: live context; `sym` outlives the call; valid out-pointer. A NULL
        // nonceCaller lets ESYS draw one.
        let rc = unsafe {
            sys::Esys_StartAuthSession(
                self.ctx,
                key,
                NONE,
                NONE,
                NONE,
                NONE,
                null(),
                se,
                &sym,
                ALG_SHA256,
                &mut tr,
            )
        };
        check(rc)?;
        self.set_session_attributes(tr, SESSION_CONTINUE, 0xff)?;
        Ok(tr)
    }

    /// Sets the session attributes in `mask` to those in `attrs`.
    pub(crate) fn set_session_attributes(
        &mut self,
        session: Tr,
        attrs: u8,
        mask: u8,
    ) -> Result<(), TpmError> {
        // SAFETY: live context; `session` belongs to it.
        check(unsafe { sys::Esys_TRSess_SetAttributes(self.ctx, session, attrs, mask) })
    }

    /// TPM2_PolicySecret on `auth_object`, whose authorization rides in `sessions`.
    pub(crate) fn policy_secret(
        &mut self,
        auth_object: Tr,
        policy: Tr,
        sessions: Sessions,
    ) -> Result<(), TpmError> {
        let empty = sys::TPM2B_DIGEST::default();
        let mut timeout: *mut sys::TPM2B_TIMEOUT = null_mut();
        let mut ticket: *mut sys::TPMT_TK_AUTH = null_mut();
        // SAFETY: live context; inputs outlive the call; outputs freed below.
        let rc = unsafe {
            sys::Esys_PolicySecret(
                self.ctx,
                auth_object,
                policy,
                sessions[0],
                sessions[1],
                sessions[2],
                &empty,
                &empty,
                &empty,
                0,
                &mut timeout,
                &mut ticket,
            )
        };
        discard(timeout);
        discard(ticket);
        check(rc)
    }

    /// TPM2_PolicyAuthValue.
    pub(crate) fn policy_auth_value(&mut self, policy: Tr) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe { sys::Esys_PolicyAuthValue(self.ctx, policy, NONE, NONE, NONE) })
    }

    /// TPM2_PolicyCommandCode.
    pub(crate) fn policy_command_code(&mut self, policy: Tr, code: u32) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe { sys::Esys_PolicyCommandCode(self.ctx, policy, NONE, NONE, NONE, code) })
    }

    /// TPM2_PolicyOR over 2–8 branch digests.
    pub(crate) fn policy_or(&mut self, policy: Tr, digests: &[[u8; 32]]) -> Result<(), TpmError> {
        let mut list = sys::TPML_DIGEST::default();
        if digests.len() > list.digests.len() {
            return Err(too_long(
                "a PolicyOR list",
                digests.len(),
                list.digests.len(),
            ));
        }
        for (slot, d) in list.digests.iter_mut().zip(digests) {
            *slot = tpm2b!(sys::TPM2B_DIGEST, d, "a policy digest");
        }
        list.count = u32::try_from(digests.len()).unwrap_or(0);
        // SAFETY: live context; `list` outlives the call.
        check(unsafe { sys::Esys_PolicyOR(self.ctx, policy, NONE, NONE, NONE, &list) })
    }

    /// TPM2_PolicyNV: the NV index `nv` (read-authorized through `auth` in `sessions`)
    /// compared from its start with `operand` by `operation` (a TPM_EO value).
    pub(crate) fn policy_nv(
        &mut self,
        auth: Tr,
        nv: Tr,
        policy: Tr,
        sessions: Sessions,
        operand: &[u8],
        operation: u16,
    ) -> Result<(), TpmError> {
        let b = tpm2b!(sys::TPM2B_OPERAND, operand, "a PolicyNV operand");
        // SAFETY: live context; `b` outlives the call.
        check(unsafe {
            sys::Esys_PolicyNV(
                self.ctx,
                auth,
                nv,
                policy,
                sessions[0],
                sessions[1],
                sessions[2],
                &b,
                0,
                operation,
            )
        })
    }

    // ----- objects -----

    /// TPM2_CreatePrimary with an empty authValue; returns the handle and its public area.
    pub(crate) fn create_primary(
        &mut self,
        hierarchy: Tr,
        sessions: Sessions,
        public: &[u8],
    ) -> Result<(Tr, Vec<u8>), TpmError> {
        let public = public_in(public)?;
        let sensitive = sys::TPM2B_SENSITIVE_CREATE::default();
        let outside = sys::TPM2B_DATA::default();
        let pcrs = sys::TPML_PCR_SELECTION::default();
        let mut tr: Tr = NONE;
        let mut out_public: *mut sys::TPM2B_PUBLIC = null_mut();
        let (mut a, mut b, mut c) = (null_mut(), null_mut(), null_mut());
        // SAFETY: live context; inputs outlive the call; outputs taken or freed below.
        let rc = unsafe {
            sys::Esys_CreatePrimary(
                self.ctx,
                hierarchy,
                sessions[0],
                sessions[1],
                sessions[2],
                &sensitive,
                &public,
                &outside,
                &pcrs,
                &mut tr,
                &mut out_public,
                &mut a,
                &mut b,
                &mut c,
            )
        };
        discard(a);
        discard(b);
        discard(c);
        if rc != 0 {
            discard(out_public);
            return Err(classify_code(rc));
        }
        let p = take(out_public, "public area")?;
        Ok((tr, public_out(p)?))
    }

    /// TPM2_Create under `parent`: returns (private blob, marshalled public area). The
    /// authValue and sealed data are the first parameter, encrypted by a session with the
    /// decrypt attribute among `sessions`.
    pub(crate) fn create(
        &mut self,
        parent: Tr,
        sessions: Sessions,
        public: &[u8],
        auth: &[u8],
        data: Option<&[u8]>,
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let public = public_in(public)?;
        let mut sensitive = sys::TPM2B_SENSITIVE_CREATE::default();
        sensitive.sensitive.userAuth = tpm2b!(sys::TPM2B_AUTH, auth, "an authorization value");
        if let Some(d) = data {
            sensitive.sensitive.data = tpm2b!(sys::TPM2B_SENSITIVE_DATA, d, "sealed data");
        }
        sensitive.size = inner_size::<sys::TPMS_SENSITIVE_CREATE>();
        let outside = sys::TPM2B_DATA::default();
        let pcrs = sys::TPML_PCR_SELECTION::default();
        let mut private: *mut sys::TPM2B_PRIVATE = null_mut();
        let mut out_public: *mut sys::TPM2B_PUBLIC = null_mut();
        let (mut a, mut b, mut c) = (null_mut(), null_mut(), null_mut());
        // SAFETY: live context; inputs outlive the call; outputs taken or freed below.
        let rc = unsafe {
            sys::Esys_Create(
                self.ctx,
                parent,
                sessions[0],
                sessions[1],
                sessions[2],
                &sensitive,
                &public,
                &outside,
                &pcrs,
                &mut private,
                &mut out_public,
                &mut a,
                &mut b,
                &mut c,
            )
        };
        sensitive
            .sensitive
            .userAuth
            .buffer
            .iter_mut()
            .for_each(|x| *x = 0);
        sensitive
            .sensitive
            .data
            .buffer
            .iter_mut()
            .for_each(|x| *x = 0);
        discard(a);
        discard(b);
        discard(c);
        if rc != 0 {
            discard(private);
            discard(out_public);
            return Err(classify_code(rc));
        }
        let priv_out = take(private, "private blob")?;
        let pub_out = take(out_public, "public area")?;
        Ok((tpm2b_bytes!(priv_out), public_out(pub_out)?))
    }

    /// TPM2_Load of a child under `parent`.
    pub(crate) fn load(
        &mut self,
        parent: Tr,
        sessions: Sessions,
        private: &[u8],
        public: &[u8],
    ) -> Result<Tr, TpmError> {
        let private = tpm2b!(sys::TPM2B_PRIVATE, private, "a private blob");
        let public = public_in(public)?;
        let mut tr: Tr = NONE;
        // SAFETY: live context; inputs outlive the call; valid out-pointer.
        let rc = unsafe {
            sys::Esys_Load(
                self.ctx,
                parent,
                sessions[0],
                sessions[1],
                sessions[2],
                &private,
                &public,
                &mut tr,
            )
        };
        check(rc)?;
        Ok(tr)
    }

    /// TPM2_ObjectChangeAuth: the object's new private blob under `parent`.
    pub(crate) fn object_change_auth(
        &mut self,
        object: Tr,
        parent: Tr,
        sessions: Sessions,
        new_auth: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let mut a = tpm2b!(sys::TPM2B_AUTH, new_auth, "an authorization value");
        let mut out: *mut sys::TPM2B_PRIVATE = null_mut();
        // SAFETY: live context; `a` outlives the call; output taken or freed below.
        let rc = unsafe {
            sys::Esys_ObjectChangeAuth(
                self.ctx,
                object,
                parent,
                sessions[0],
                sessions[1],
                sessions[2],
                &a,
                &mut out,
            )
        };
        a.buffer.iter_mut().for_each(|b| *b = 0);
        if rc != 0 {
            discard(out);
            return Err(classify_code(rc));
        }
        let p = take(out, "private blob")?;
        Ok(tpm2b_bytes!(p))
    }

    /// TPM2_EvictControl: makes a loaded owner-hierarchy object persistent.
    pub(crate) fn evict_control(
        &mut self,
        object: Tr,
        sessions: Sessions,
        persistent: u32,
    ) -> Result<Tr, TpmError> {
        let mut tr: Tr = NONE;
        // SAFETY: live context; valid out-pointer.
        let rc = unsafe {
            sys::Esys_EvictControl(
                self.ctx,
                OWNER,
                object,
                sessions[0],
                sessions[1],
                sessions[2],
                persistent,
                &mut tr,
            )
        };
        check(rc)?;
        Ok(tr)
    }

    // ----- using keys -----

    /// TPM2_Sign (ECDSA) over a digest with a NULL hash-check ticket; returns (r, s).
    pub(crate) fn sign_ecdsa(
        &mut self,
        key: Tr,
        sessions: Sessions,
        digest: &[u8],
        hash_alg: u16,
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let d = tpm2b!(sys::TPM2B_DIGEST, digest, "a digest");
        let mut scheme = sys::TPMT_SIG_SCHEME {
            scheme: ALG_ECDSA,
            ..Default::default()
        };
        scheme.details.ecdsa.hashAlg = hash_alg;
        let ticket = sys::TPMT_TK_HASHCHECK {
            tag: ST_HASHCHECK,
            hierarchy: RH_NULL,
            ..Default::default()
        };
        let mut out: *mut sys::TPMT_SIGNATURE = null_mut();
        // SAFETY: live context; inputs outlive the call; output taken or freed below.
        let rc = unsafe {
            sys::Esys_Sign(
                self.ctx,
                key,
                sessions[0],
                sessions[1],
                sessions[2],
                &d,
                &scheme,
                &ticket,
                &mut out,
            )
        };
        if rc != 0 {
            discard(out);
            return Err(classify_code(rc));
        }
        match Signature::try_from(take(out, "signature")?).map_err(classify)? {
            Signature::EcDsa(s) => Ok((
                s.signature_r().value().to_vec(),
                s.signature_s().value().to_vec(),
            )),
            _ => Err(TpmError::Other {
                code: 0,
                what: "the TPM returned a non-ECDSA signature".into(),
            }),
        }
    }

    /// TPM2_RSA_Decrypt with the NULL scheme and no label (the raw private operation).
    pub(crate) fn rsa_decrypt_raw(
        &mut self,
        key: Tr,
        sessions: Sessions,
        input: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let c = tpm2b!(sys::TPM2B_PUBLIC_KEY_RSA, input, "an RSA input");
        let scheme = sys::TPMT_RSA_DECRYPT {
            scheme: ALG_NULL,
            ..Default::default()
        };
        let label = sys::TPM2B_DATA::default();
        let mut out: *mut sys::TPM2B_PUBLIC_KEY_RSA = null_mut();
        // SAFETY: live context; inputs outlive the call; output taken or freed below.
        let rc = unsafe {
            sys::Esys_RSA_Decrypt(
                self.ctx,
                key,
                sessions[0],
                sessions[1],
                sessions[2],
                &c,
                &scheme,
                &label,
                &mut out,
            )
        };
        if rc != 0 {
            discard(out);
            return Err(classify_code(rc));
        }
        let mut m = take(out, "RSA output")?;
        let v = Zeroizing::new(tpm2b_bytes!(m));
        m.buffer.iter_mut().for_each(|b| *b = 0);
        Ok(v)
    }

    /// TPM2_ECDH_ZGen: the x coordinate of the shared point with the peer's (x, y).
    pub(crate) fn ecdh_zgen(
        &mut self,
        key: Tr,
        sessions: Sessions,
        x: &[u8],
        y: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let mut p = sys::TPM2B_ECC_POINT::default();
        p.point.x = tpm2b!(sys::TPM2B_ECC_PARAMETER, x, "a point coordinate");
        p.point.y = tpm2b!(sys::TPM2B_ECC_PARAMETER, y, "a point coordinate");
        p.size = inner_size::<sys::TPMS_ECC_POINT>();
        let mut out: *mut sys::TPM2B_ECC_POINT = null_mut();
        // SAFETY: live context; inputs outlive the call; output taken or freed below.
        let rc = unsafe {
            sys::Esys_ECDH_ZGen(
                self.ctx,
                key,
                sessions[0],
                sessions[1],
                sessions[2],
                &p,
                &mut out,
            )
        };
        if rc != 0 {
            discard(out);
            return Err(classify_code(rc));
        }
        let mut z = take(out, "shared point")?;
        let v = Zeroizing::new(tpm2b_bytes!(z.point.x));
        z.point.x.buffer.iter_mut().for_each(|b| *b = 0);
        Ok(v)
    }

    // ----- hierarchies and dictionary attack -----

    /// TPM2_HierarchyChangeAuth.
    pub(crate) fn hierarchy_change_auth(
        &mut self,
        hierarchy: Tr,
        sessions: Sessions,
        new_auth: &[u8],
    ) -> Result<(), TpmError> {
        let mut a = tpm2b!(sys::TPM2B_AUTH, new_auth, "an authorization value");
        // SAFETY: live context; `a` outlives the call.
        let rc = unsafe {
            sys::Esys_HierarchyChangeAuth(
                self.ctx,
                hierarchy,
                sessions[0],
                sessions[1],
                sessions[2],
                &a,
            )
        };
        a.buffer.iter_mut().for_each(|b| *b = 0);
        check(rc)
    }

    /// TPM2_ClearControl through the lockout hierarchy.
    pub(crate) fn clear_control(
        &mut self,
        sessions: Sessions,
        disable: bool,
    ) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe {
            sys::Esys_ClearControl(
                self.ctx,
                LOCKOUT,
                sessions[0],
                sessions[1],
                sessions[2],
                u8::from(disable),
            )
        })
    }

    /// TPM2_Clear through the lockout hierarchy.
    pub(crate) fn clear(&mut self, sessions: Sessions) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe { sys::Esys_Clear(self.ctx, LOCKOUT, sessions[0], sessions[1], sessions[2]) })
    }

    /// TPM2_DictionaryAttackParameters.
    pub(crate) fn da_parameters(
        &mut self,
        sessions: Sessions,
        max_tries: u32,
        recovery_time: u32,
        lockout_recovery: u32,
    ) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe {
            sys::Esys_DictionaryAttackParameters(
                self.ctx,
                LOCKOUT,
                sessions[0],
                sessions[1],
                sessions[2],
                max_tries,
                recovery_time,
                lockout_recovery,
            )
        })
    }

    /// TPM2_DictionaryAttackLockReset.
    pub(crate) fn da_lock_reset(&mut self, sessions: Sessions) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe {
            sys::Esys_DictionaryAttackLockReset(
                self.ctx,
                LOCKOUT,
                sessions[0],
                sessions[1],
                sessions[2],
            )
        })
    }

    // ----- NV indices -----

    /// TPM2_NV_DefineSpace in the owner hierarchy with an empty index authValue.
    pub(crate) fn nv_define(
        &mut self,
        sessions: Sessions,
        index: u32,
        attributes: u32,
        size: u16,
    ) -> Result<Tr, TpmError> {
        let auth = sys::TPM2B_AUTH::default();
        let mut public = sys::TPM2B_NV_PUBLIC::default();
        public.nvPublic.nvIndex = index;
        public.nvPublic.nameAlg = ALG_SHA256;
        public.nvPublic.attributes = attributes;
        public.nvPublic.dataSize = size;
        public.size = inner_size::<sys::TPMS_NV_PUBLIC>();
        let mut tr: Tr = NONE;
        // SAFETY: live context; inputs outlive the call; valid out-pointer.
        let rc = unsafe {
            sys::Esys_NV_DefineSpace(
                self.ctx,
                OWNER,
                sessions[0],
                sessions[1],
                sessions[2],
                &auth,
                &public,
                &mut tr,
            )
        };
        check(rc)?;
        Ok(tr)
    }

    /// TPM2_NV_Increment, authorized by `auth` (the owner or the index).
    pub(crate) fn nv_increment(
        &mut self,
        auth: Tr,
        nv: Tr,
        sessions: Sessions,
    ) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe {
            sys::Esys_NV_Increment(self.ctx, auth, nv, sessions[0], sessions[1], sessions[2])
        })
    }

    /// TPM2_NV_Read of `size` bytes at `offset`.
    pub(crate) fn nv_read(
        &mut self,
        auth: Tr,
        nv: Tr,
        sessions: Sessions,
        size: u16,
        offset: u16,
    ) -> Result<Vec<u8>, TpmError> {
        let mut out: *mut sys::TPM2B_MAX_NV_BUFFER = null_mut();
        // SAFETY: live context; valid out-pointer; output taken or freed below.
        let rc = unsafe {
            sys::Esys_NV_Read(
                self.ctx,
                auth,
                nv,
                sessions[0],
                sessions[1],
                sessions[2],
                size,
                offset,
                &mut out,
            )
        };
        if rc != 0 {
            discard(out);
            return Err(classify_code(rc));
        }
        let d = take(out, "NV data")?;
        Ok(tpm2b_bytes!(d))
    }

    /// TPM2_NV_ReadPublic: (attributes, data size, Name).
    pub(crate) fn nv_read_public(&mut self, nv: Tr) -> Result<(u32, u16, Vec<u8>), TpmError> {
        let mut public: *mut sys::TPM2B_NV_PUBLIC = null_mut();
        let mut name: *mut sys::TPM2B_NAME = null_mut();
        // SAFETY: live context; valid out-pointers; outputs taken or freed below.
        let rc = unsafe {
            sys::Esys_NV_ReadPublic(self.ctx, nv, NONE, NONE, NONE, &mut public, &mut name)
        };
        if rc != 0 {
            discard(public);
            discard(name);
            return Err(classify_code(rc));
        }
        let p = take(public, "NV public area")?;
        let n = take(name, "NV name")?;
        Ok((p.nvPublic.attributes, p.nvPublic.dataSize, name_bytes(&n)))
    }

    /// TPM2_NV_UndefineSpace through the owner hierarchy.
    pub(crate) fn nv_undefine(&mut self, nv: Tr, sessions: Sessions) -> Result<(), TpmError> {
        // SAFETY: live context.
        check(unsafe {
            sys::Esys_NV_UndefineSpace(self.ctx, OWNER, nv, sessions[0], sessions[1], sessions[2])
        })
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
