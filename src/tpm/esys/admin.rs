//! Hierarchies, the dictionary-attack protection and NV indices.

#![allow(unsafe_code)] // FFI to libtss2-esys; every block states why it is sound.

use std::ptr::null_mut;

use tss_esapi_sys as sys;

use super::*;

impl Esys {
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
