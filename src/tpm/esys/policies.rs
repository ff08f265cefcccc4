//! Sessions and policy commands.

#![allow(unsafe_code)] // FFI to libtss2-esys; every block states why it is sound.

use std::ptr::{null, null_mut};

use tss_esapi_sys as sys;

use super::*;

impl Esys {
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
}
