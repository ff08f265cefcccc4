//! Objects (create, load, change auth, persist) and using keys (sign, decrypt, ECDH).

#![allow(unsafe_code)] // FFI to libtss2-esys; every block states why it is sound.

use std::ptr::null_mut;

use tss_esapi_sys as sys;
use zeroize::Zeroizing;

use super::*;

impl Esys {
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
}
