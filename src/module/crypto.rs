//! Sign, verify, decrypt, encrypt and digest operations: starting one, feeding it, and
//! finishing it with the host-side encodings of `mechanism` around the TPM's raw step.

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::Module;
use super::sessions::{Operation, SignOp, invalid_session};
use crate::error::{CallError, Error, Result};
use crate::mechanism::{self, HashAlg, Mech, PrivateResult, PrivateStep};
use crate::object::{self, Object};

impl Module {
    pub(super) fn key_for(
        &self,
        h: CK_SESSION_HANDLE,
        key: CK_OBJECT_HANDLE,
        mech: &Mech,
        usage: CK_ATTRIBUTE_TYPE,
    ) -> Result<Object> {
        let obj = self
            .object_for(h, key)
            .map_err(|_| Error::from(CallError::KeyHandleInvalid("no such key")))?;
        let want_class = match usage {
            CKA_SIGN | CKA_DECRYPT | CKA_DERIVE => CKO_PRIVATE_KEY,
            _ => CKO_PUBLIC_KEY,
        };
        if obj.class() != want_class {
            return Err(Error::KeyTypeInconsistent);
        }
        if mech.key_type() != obj.key_type() {
            return Err(Error::KeyTypeInconsistent);
        }
        if !obj.allows(usage) {
            return Err(Error::KeyFunctionNotPermitted);
        }
        Ok(obj)
    }

    pub fn sign_init(&self, h: CK_SESSION_HANDLE, mech: Mech, key: CK_OBJECT_HANDLE) -> Result<()> {
        let (_, _, who) = self.session_view(h)?;
        if who != Some(CKU_USER) {
            return Err(Error::from(CallError::NotLoggedIn("log in first")));
        }
        check_sign_mech(&mech)?;
        let obj = self.key_for(h, key, &mech, CKA_SIGN)?;
        let always = object::get_bool(&obj.attrs, CKA_ALWAYS_AUTHENTICATE).unwrap_or(false);
        self.start_op(h, Operation::Sign(SignOp::new(key, mech, always)))
    }

    pub fn verify_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: Mech,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        check_sign_mech(&mech)?;
        self.key_for(h, key, &mech, CKA_VERIFY)?;
        self.start_op(h, Operation::Verify(SignOp::new(key, mech, false)))
    }

    /// Signature length of the active sign operation (no TPM command).
    pub fn sign_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let (key, _) = self.active_sign(h)?;
        let obj = self.operation_key(h, key)?;
        Ok(mechanism::output_len(&obj.public_key()?))
    }

    pub(super) fn active_sign(&self, h: CK_SESSION_HANDLE) -> Result<(CK_OBJECT_HANDLE, bool)> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
        match &s.op {
            Some(Operation::Sign(op)) => Ok((op.key, op.needs_context_login)),
            _ => Err(Error::from(CallError::NoOperation("sign"))),
        }
    }

    /// Feeds data to the active sign or verify operation.
    pub fn update(&self, h: CK_SESSION_HANDLE, verify: bool, data: &[u8]) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.get_mut(&h).ok_or_else(invalid_session)?;
        let r = match (&mut s.op, verify) {
            (Some(Operation::Sign(op)), false) | (Some(Operation::Verify(op)), true) => {
                if op.mech.data_hash().is_none() {
                    Err(Error::Unsupported("this mechanism is single-part".into()))
                } else {
                    op.update(data)
                }
            }
            _ => return Err(Error::from(CallError::NoOperation("such"))),
        };
        if r.is_err() {
            s.op = None;
        }
        r
    }

    /// Finishes the sign operation with `last` (C_Sign) or without (C_SignFinal).
    pub fn sign(&self, h: CK_SESSION_HANDLE, last: Option<&[u8]>) -> Result<Vec<u8>> {
        let (slot, _, _) = self.session_view(h)?;
        let mut op = self.take_op(h, "sign", |op| match op {
            Operation::Sign(op) => Ok(op),
            other => Err(Box::new(other)),
        })?;
        // Either error below ends the operation, as every failed C_Sign does.
        if op.needs_context_login {
            // PKCS#11 2.40 §5.12: C_SignInit, C_Login(CKU_CONTEXT_SPECIFIC), C_Sign.
            return Err(Error::from(CallError::NotLoggedIn(
                "this key needs the PIN again (CKU_CONTEXT_SPECIFIC)",
            )));
        }
        if last.is_some() && op.multipart {
            return Err(Error::from(CallError::OperationActive(
                "C_Sign after C_SignUpdate",
            )));
        }
        let obj = self.operation_key(h, op.key)?;
        let input = op.finish_input(last);
        let public = obj.public_key()?;
        let blob = obj
            .blob
            .clone()
            .ok_or_else(|| Error::from(CallError::KeyHandleInvalid("not a TPM key")))?;
        mechanism::sign(&op.mech, &public, &input, |step| match step {
            PrivateStep::Ecdsa { digest } => self
                .with_key(slot, &blob, |t, k| t.sign_ecdsa(k, digest))
                .map(|(r, s)| PrivateResult::Ecdsa { r, s }),
            PrivateStep::RsaRaw { em } => self
                .with_key(slot, &blob, |t, k| t.rsa_raw(k, em, false))
                .map(|sig| PrivateResult::Rsa(sig.to_vec())),
        })
    }

    /// Finishes a verify operation; Ok when the signature verifies.
    pub fn verify(&self, h: CK_SESSION_HANDLE, last: Option<&[u8]>, sig: &[u8]) -> Result<()> {
        let mut op = self.take_op(h, "verify", |op| match op {
            Operation::Verify(op) => Ok(op),
            other => Err(Box::new(other)),
        })?;
        let obj = self.operation_key(h, op.key)?;
        let input = op.finish_input(last);
        mechanism::verify(&op.mech, &obj.public_key()?, &input, sig)
    }

    pub fn decrypt_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: Mech,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        let (_, _, who) = self.session_view(h)?;
        if who != Some(CKU_USER) {
            return Err(Error::from(CallError::NotLoggedIn("log in first")));
        }
        if !matches!(mech, Mech::RsaPkcs | Mech::RsaX509 | Mech::Oaep { .. }) {
            return Err(Error::from(CallError::WrongMechanism(
                "not a decryption mechanism",
            )));
        }
        self.key_for(h, key, &mech, CKA_DECRYPT)?;
        self.start_op(
            h,
            Operation::Decrypt {
                key,
                mech,
                held: None,
            },
        )
    }

    /// The largest plaintext the active decryption can give (the modulus size).
    pub fn decrypt_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
        match &s.op {
            Some(Operation::Decrypt { held: Some(p), .. }) => Ok(p.len()),
            Some(Operation::Decrypt { key, .. }) => {
                let k = *key;
                drop(st);
                let obj = self.operation_key(h, k)?;
                Ok(mechanism::output_len(&obj.public_key()?))
            }
            _ => Err(Error::from(CallError::NoOperation("decrypt"))),
        }
    }

    /// Decrypts; when the plaintext does not fit `capacity`, it is held (zeroizing) for
    /// the caller's retry and `Err(needed)` comes back inside `Ok`.
    pub fn decrypt(
        &self,
        h: CK_SESSION_HANDLE,
        data: &[u8],
        capacity: usize,
    ) -> Result<std::result::Result<Zeroizing<Vec<u8>>, usize>> {
        let (slot, _, _) = self.session_view(h)?;
        let (key, mech, held) = self.take_op(h, "decrypt", |op| match op {
            Operation::Decrypt { key, mech, held } => Ok((key, mech, held)),
            other => Err(Box::new(other)),
        })?;
        let plain = match held {
            Some(p) => p,
            None => {
                let obj = self.operation_key(h, key)?;
                let blob = obj
                    .blob
                    .clone()
                    .ok_or_else(|| Error::from(CallError::KeyHandleInvalid("not a TPM key")))?;
                mechanism::decrypt(&mech, &obj.public_key()?, data, |c| {
                    self.with_key(slot, &blob, |t, kh| t.rsa_raw(kh, c, true))
                })?
            }
        };
        if plain.len() > capacity {
            let needed = plain.len();
            let mut st = self.state.lock();
            if let Some(s) = st.sessions.get_mut(&h) {
                s.op = Some(Operation::Decrypt {
                    key,
                    mech,
                    held: Some(plain),
                });
            }
            return Ok(Err(needed));
        }
        Ok(Ok(plain))
    }

    pub fn encrypt_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: Mech,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        if !matches!(mech, Mech::RsaPkcs | Mech::RsaX509 | Mech::Oaep { .. }) {
            return Err(Error::from(CallError::WrongMechanism(
                "not an encryption mechanism",
            )));
        }
        self.key_for(h, key, &mech, CKA_ENCRYPT)?;
        self.start_op(h, Operation::Encrypt { key, mech })
    }

    pub fn encrypt_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
        let key = match &s.op {
            Some(Operation::Encrypt { key, .. }) => *key,
            _ => return Err(Error::from(CallError::NoOperation("encrypt"))),
        };
        drop(st);
        Ok(mechanism::output_len(
            &self.operation_key(h, key)?.public_key()?,
        ))
    }

    pub fn encrypt(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>> {
        let (key, mech) = self.take_op(h, "encrypt", |op| match op {
            Operation::Encrypt { key, mech } => Ok((key, mech)),
            other => Err(Box::new(other)),
        })?;
        mechanism::encrypt(&mech, &self.operation_key(h, key)?.public_key()?, data)
    }

    pub fn digest_init(&self, h: CK_SESSION_HANDLE, alg: HashAlg) -> Result<()> {
        self.start_op(h, Operation::Digest(mechanism::Hasher::new(alg)))
    }

    pub fn digest_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
        match &s.op {
            Some(Operation::Digest(d)) => Ok(d.alg().output_len()),
            _ => Err(Error::from(CallError::NoOperation("digest"))),
        }
    }

    pub fn digest_update(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.get_mut(&h).ok_or_else(invalid_session)?;
        match &mut s.op {
            Some(Operation::Digest(d)) => {
                d.update(data);
                Ok(())
            }
            _ => Err(Error::from(CallError::NoOperation("digest"))),
        }
    }

    pub fn digest_final(&self, h: CK_SESSION_HANDLE, last: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut d = self.take_op(h, "digest", |op| match op {
            Operation::Digest(d) => Ok(d),
            other => Err(Box::new(other)),
        })?;
        if let Some(x) = last {
            d.update(x);
        }
        Ok(d.finalize())
    }
}

pub(super) fn check_sign_mech(m: &Mech) -> Result<()> {
    match m {
        Mech::RsaPkcs
        | Mech::HashRsaPkcs(_)
        | Mech::Pss { .. }
        | Mech::Ecdsa
        | Mech::HashEcdsa(_) => Ok(()),
        _ => Err(Error::from(CallError::WrongMechanism(
            "not a signature mechanism",
        ))),
    }
}
