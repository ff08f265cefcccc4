//! The few TPM calls tss-esapi 7.x has no wrapper for, made through `tss-esapi-sys` on a
//! short-lived ESYS context of our own (tss-esapi keeps its context private). Each
//! function opens, uses and closes its own connection, so callers must not hold another
//! connection to a TPM that admits only one (swtpm, /dev/tpm0) at the same time.

#![allow(unsafe_code)] // FFI to libtss2-esys; every block states why it is sound.

use std::ffi::CString;
use std::ptr::null_mut;

use tss_esapi_sys as sys;

use super::TpmError;
use super::error::classify_code;

const SE_HMAC: sys::TPM2_SE = 0x00;
const ALG_SHA256: sys::TPMI_ALG_HASH = 0x000B;
const SESSION_CONTINUE: sys::TPMA_SESSION = 0x01;

/// An ESYS context on its own TCTI, finalized on drop.
struct RawEsys {
    esys: *mut sys::ESYS_CONTEXT,
    tcti: *mut sys::TSS2_TCTI_CONTEXT,
}

impl RawEsys {
    fn open(tcti: &str) -> Result<RawEsys, TpmError> {
        let conf = CString::new(tcti).map_err(|_| TpmError::NoTpm {
            tcti: tcti.to_string(),
            why: "the TCTI string contains a NUL byte".into(),
        })?;
        let mut t: *mut sys::TSS2_TCTI_CONTEXT = null_mut();
        // SAFETY: `conf` is a valid NUL-terminated string for the duration of the call and
        // `t` is a valid out-pointer.
        let rc = unsafe { sys::Tss2_TctiLdr_Initialize(conf.as_ptr(), &mut t) };
        if rc != 0 {
            return Err(TpmError::NoTpm {
                tcti: tcti.to_string(),
                why: format!("TCTI error {rc:#x}"),
            });
        }
        let mut e: *mut sys::ESYS_CONTEXT = null_mut();
        // SAFETY: `t` was initialized above; a NULL ABI version asks for the default.
        let rc = unsafe { sys::Esys_Initialize(&mut e, t, null_mut()) };
        if rc != 0 {
            // SAFETY: `t` came from Tss2_TctiLdr_Initialize and is finalized exactly once.
            unsafe { sys::Tss2_TctiLdr_Finalize(&mut t) };
            return Err(TpmError::NoTpm {
                tcti: tcti.to_string(),
                why: format!("ESYS error {rc:#x}"),
            });
        }
        Ok(RawEsys { esys: e, tcti: t })
    }

    fn check(rc: sys::TSS2_RC) -> Result<(), TpmError> {
        if rc == 0 {
            return Ok(());
        }
        Err(classify_code(rc))
    }

    fn set_auth(&mut self, handle: sys::ESYS_TR, auth: &[u8]) -> Result<(), TpmError> {
        let mut a = sys::TPM2B_AUTH::default();
        if auth.len() > a.buffer.len() {
            return Err(TpmError::Other {
                code: 0,
                what: "authorization value longer than 64 bytes".into(),
            });
        }
        a.size = u16::try_from(auth.len()).unwrap_or(0);
        a.buffer[..auth.len()].copy_from_slice(auth);
        // SAFETY: `self.esys` is a live context; `a` outlives the call.
        let rc = unsafe { sys::Esys_TR_SetAuth(self.esys, handle, &a) };
        a.buffer.iter_mut().for_each(|b| *b = 0);
        RawEsys::check(rc)
    }

    /// An HMAC session salted to the SRK (the persistent one at 0x81000001, or the
    /// standard primary made for the purpose), so that an authorization value rides in
    /// the session's HMAC key and never crosses the wire in the clear. Returns the
    /// session and, when one was made, the transient primary to flush afterwards.
    fn salted_session(&mut self) -> Result<(sys::ESYS_TR, Option<sys::ESYS_TR>), TpmError> {
        let persistent = self
            .handles(super::SRK_PERSISTENT)?
            .contains(&super::SRK_PERSISTENT);
        let (key, made) = if persistent {
            let mut tr: sys::ESYS_TR = sys::ESYS_TR_NONE;
            // SAFETY: live context; `tr` is a valid out-pointer.
            let rc = unsafe {
                sys::Esys_TR_FromTPMPublic(
                    self.esys,
                    super::SRK_PERSISTENT,
                    sys::ESYS_TR_NONE,
                    sys::ESYS_TR_NONE,
                    sys::ESYS_TR_NONE,
                    &mut tr,
                )
            };
            RawEsys::check(rc)?;
            (tr, None)
        } else {
            let public = sys::TPM2B_PUBLIC::try_from(super::templates::srk()?)
                .map_err(super::error::classify)?;
            let sensitive = sys::TPM2B_SENSITIVE_CREATE::default();
            let outside = sys::TPM2B_DATA::default();
            let pcrs = sys::TPML_PCR_SELECTION::default();
            let mut tr: sys::ESYS_TR = sys::ESYS_TR_NONE;
            let (mut a, mut b, mut c, mut d) = (null_mut(), null_mut(), null_mut(), null_mut());
            // SAFETY: live context; inputs are valid structures that outlive the call;
            // the outputs ESYS allocates are freed right below.
            let rc = unsafe {
                sys::Esys_CreatePrimary(
                    self.esys,
                    sys::ESYS_TR_RH_OWNER,
                    sys::ESYS_TR_PASSWORD,
                    sys::ESYS_TR_NONE,
                    sys::ESYS_TR_NONE,
                    &sensitive,
                    &public,
                    &outside,
                    &pcrs,
                    &mut tr,
                    &mut a,
                    &mut b,
                    &mut c,
                    &mut d,
                )
            };
            // SAFETY: each pointer is NULL or allocated by ESYS for the caller.
            unsafe {
                sys::Esys_Free(a.cast());
                sys::Esys_Free(b.cast());
                sys::Esys_Free(c.cast());
                sys::Esys_Free(d.cast());
            }
            RawEsys::check(rc)?;
            (tr, Some(tr))
        };
        let symmetric =
            sys::TPMT_SYM_DEF::try_from(tss_esapi::structures::SymmetricDefinition::AES_128_CFB)
                .map_err(super::error::classify)?;
        let mut session: sys::ESYS_TR = sys::ESYS_TR_NONE;
        // SAFETY: live context; `key` names a loaded key; `symmetric` outlives the call.
        let rc = unsafe {
            sys::Esys_StartAuthSession(
                self.esys,
                key,
                sys::ESYS_TR_NONE,
                sys::ESYS_TR_NONE,
                sys::ESYS_TR_NONE,
                sys::ESYS_TR_NONE,
                std::ptr::null(),
                SE_HMAC,
                &symmetric,
                ALG_SHA256,
                &mut session,
            )
        };
        if let Err(e) = RawEsys::check(rc) {
            if let Some(m) = made {
                // SAFETY: `m` is the primary created above.
                unsafe { sys::Esys_FlushContext(self.esys, m) };
            }
            return Err(e);
        }
        // SAFETY: `session` was just started on this context.
        let rc =
            unsafe { sys::Esys_TRSess_SetAttributes(self.esys, session, SESSION_CONTINUE, 0xff) };
        RawEsys::check(rc)?;
        Ok((session, made))
    }

    /// Runs one lockout-hierarchy command authorized with `auth` in a salted session.
    fn with_lockout(
        &mut self,
        auth: &[u8],
        command: impl FnOnce(*mut sys::ESYS_CONTEXT, sys::ESYS_TR) -> sys::TSS2_RC,
    ) -> Result<(), TpmError> {
        self.set_auth(sys::ESYS_TR_RH_LOCKOUT, auth)?;
        let (session, made) = self.salted_session()?;
        let rc = command(self.esys, session);
        // SAFETY: both handles belong to this context; each is flushed once.
        unsafe {
            sys::Esys_FlushContext(self.esys, session);
            if let Some(m) = made {
                sys::Esys_FlushContext(self.esys, m);
            }
        }
        RawEsys::check(rc)
    }

    /// Handles of one type (first byte of `first`) present in the TPM.
    fn handles(&mut self, first: u32) -> Result<Vec<u32>, TpmError> {
        let mut more: sys::TPMI_YES_NO = 0;
        let mut data: *mut sys::TPMS_CAPABILITY_DATA = null_mut();
        // SAFETY: live context, valid out-pointers; TPM2_CAP_HANDLES = 1.
        let rc = unsafe {
            sys::Esys_GetCapability(
                self.esys,
                sys::ESYS_TR_NONE,
                sys::ESYS_TR_NONE,
                sys::ESYS_TR_NONE,
                1,
                first,
                64,
                &mut more,
                &mut data,
            )
        };
        RawEsys::check(rc)?;
        if data.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: on success ESYS returns a valid TPMS_CAPABILITY_DATA whose union member
        // for TPM2_CAP_HANDLES is `handles`; we copy it out and free it once below.
        let list = unsafe {
            let h = &(*data).data.handles;
            let n = usize::try_from(h.count).unwrap_or(0).min(h.handle.len());
            h.handle[..n].to_vec()
        };
        // SAFETY: `data` was allocated by ESYS for the caller to free.
        unsafe { sys::Esys_Free(data.cast()) };
        // TPM_HT_LOADED_SESSION lists loaded HMAC (0x02..) and policy (0x03..) sessions.
        let same_kind =
            |h: &u32| h >> 24 == first >> 24 || (first >> 24 == 0x02 && h >> 24 == 0x03);
        Ok(list.into_iter().filter(same_kind).collect())
    }
}

impl Drop for RawEsys {
    fn drop(&mut self) {
        // SAFETY: both pointers came from their initializers and are finalized once.
        unsafe {
            sys::Esys_Finalize(&mut self.esys);
            sys::Tss2_TctiLdr_Finalize(&mut self.tcti);
        }
    }
}

/// Sets the TPM's dictionary-attack parameters (TPM2_DictionaryAttackParameters) with the
/// lockout authorization `lockout_auth` (empty on a fresh TPM).
pub fn set_da_parameters(
    tcti: &str,
    lockout_auth: &[u8],
    max_tries: u32,
    recovery_time: u32,
    lockout_recovery: u32,
) -> Result<(), TpmError> {
    let mut e = RawEsys::open(tcti)?;
    e.with_lockout(lockout_auth, |esys, session| {
        // SAFETY: live context; the lockout hierarchy is authorized by the salted session.
        unsafe {
            sys::Esys_DictionaryAttackParameters(
                esys,
                sys::ESYS_TR_RH_LOCKOUT,
                session,
                sys::ESYS_TR_NONE,
                sys::ESYS_TR_NONE,
                max_tries,
                recovery_time,
                lockout_recovery,
            )
        }
    })
}

/// Resets the TPM's dictionary-attack counter and lockout (TPM2_DictionaryAttackLockReset).
pub fn reset_lockout(tcti: &str, lockout_auth: &[u8]) -> Result<(), TpmError> {
    let mut e = RawEsys::open(tcti)?;
    e.with_lockout(lockout_auth, |esys, session| {
        // SAFETY: live context; the lockout hierarchy is authorized by the salted session.
        unsafe {
            sys::Esys_DictionaryAttackLockReset(
                esys,
                sys::ESYS_TR_RH_LOCKOUT,
                session,
                sys::ESYS_TR_NONE,
                sys::ESYS_TR_NONE,
            )
        }
    })
}

/// Keeps libtss2 from logging failed TPM commands (a wrong PIN is one) to stderr, unless
/// the user set `TSS2_LOG` already. For the CLI's `main` only, before any thread starts:
/// the module never changes a host program's environment (DESIGN.md §6).
pub fn quiet_tss_logging_for_cli() {
    if std::env::var_os("TSS2_LOG").is_none() {
        // SAFETY: called first thing in the CLI's single-threaded `main`, before any other
        // thread exists that could read the environment concurrently.
        unsafe { std::env::set_var("TSS2_LOG", "all+NONE") };
    }
}
