//! Sign, verify, decrypt, encrypt and digest operations: starting one, feeding it, and
//! finishing it with the host-side encodings of `mechanism` around the TPM's raw step.

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::Module;
use super::sessions::{DigestOp, OpKind, Operation, Part, SignOp};
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

    pub(crate) fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: Mech,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        // The user is logged in: the entry point's access rule (ffi) says so.
        check_sign_mech(&mech)?;
        let obj = self.key_for(h, key, &mech, CKA_SIGN)?;
        let always = object::get_bool(&obj.attrs, CKA_ALWAYS_AUTHENTICATE).unwrap_or(false);
        self.start_op(h, Operation::Sign(SignOp::new(key, mech, always)))
    }

    pub(crate) fn verify_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: Mech,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        check_sign_mech(&mech)?;
        self.key_for(h, key, &mech, CKA_VERIFY)?;
        self.start_op(h, Operation::Verify(SignOp::new(key, mech, false)))
    }

    /// Signature length of the active sign operation (no TPM command), for a size query
    /// of C_Sign (`Part::Single`) or C_SignFinal (`Part::Multi`).
    pub(crate) fn sign_len(&self, h: CK_SESSION_HANDLE, part: Part) -> Result<usize> {
        let key = self.with_op(h, OpKind::Sign, Some(part), |op| match op {
            Operation::Sign(op) => Ok(op.key),
            _ => Err(CallError::NoOperation("sign").into()),
        })?;
        let obj = self.operation_key(h, key)?;
        Ok(mechanism::output_len(&obj.public_key()?))
    }

    /// Feeds data to the active sign or verify operation (C_SignUpdate, C_VerifyUpdate).
    pub(crate) fn update(&self, h: CK_SESSION_HANDLE, kind: OpKind, data: &[u8]) -> Result<()> {
        self.with_op(h, kind, Some(Part::Multi), |op| match op {
            Operation::Sign(op) | Operation::Verify(op) => {
                if op.mech.data_hash().is_none() {
                    Err(Error::Unsupported("this mechanism is single-part".into()))
                } else {
                    op.update(data)
                }
            }
            _ => Err(CallError::NoOperation("sign or verify").into()),
        })
    }

    /// Finishes the sign operation with `last` (C_Sign) or without (C_SignFinal).
    pub(crate) fn sign(&self, h: CK_SESSION_HANDLE, last: Option<&[u8]>) -> Result<Vec<u8>> {
        let (slot, _, _) = self.session_view(h)?;
        let part = if last.is_some() {
            Part::Single
        } else {
            Part::Multi
        };
        let Operation::Sign(mut op) = self.take_op(h, OpKind::Sign, part)? else {
            return Err(CallError::NoOperation("sign").into());
        };
        if op.needs_context_login {
            // PKCS#11 2.40 §5.12: C_SignInit, C_Login(CKU_CONTEXT_SPECIFIC), C_Sign.
            return Err(CallError::NotLoggedIn(
                "this key needs the PIN again (CKU_CONTEXT_SPECIFIC)",
            )
            .into());
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

    /// Finishes a verify operation (C_Verify with `last`, C_VerifyFinal without); Ok when
    /// the signature verifies.
    pub(crate) fn verify(
        &self,
        h: CK_SESSION_HANDLE,
        last: Option<&[u8]>,
        sig: &[u8],
    ) -> Result<()> {
        let part = if last.is_some() {
            Part::Single
        } else {
            Part::Multi
        };
        let Operation::Verify(mut op) = self.take_op(h, OpKind::Verify, part)? else {
            return Err(CallError::NoOperation("verify").into());
        };
        let obj = self.operation_key(h, op.key)?;
        let input = op.finish_input(last);
        mechanism::verify(&op.mech, &obj.public_key()?, &input, sig)
    }

    pub(crate) fn decrypt_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: Mech,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        // The user is logged in: the entry point's access rule (ffi) says so.
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

    /// The largest plaintext the active decryption can give (the modulus size), or the
    /// length of a plaintext held for the caller's retry.
    pub(crate) fn decrypt_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let (key, held) = self.with_op(h, OpKind::Decrypt, None, |op| match op {
            Operation::Decrypt { key, held, .. } => Ok((*key, held.as_ref().map(|p| p.len()))),
            _ => Err(CallError::NoOperation("decrypt").into()),
        })?;
        match held {
            Some(n) => Ok(n),
            None => Ok(mechanism::output_len(
                &self.operation_key(h, key)?.public_key()?,
            )),
        }
    }

    /// Decrypts; when the plaintext does not fit `capacity`, it is held (zeroizing) for
    /// the caller's retry and `Err(needed)` comes back inside `Ok`.
    pub(crate) fn decrypt(
        &self,
        h: CK_SESSION_HANDLE,
        data: &[u8],
        capacity: usize,
    ) -> Result<std::result::Result<Zeroizing<Vec<u8>>, usize>> {
        let (slot, _, _) = self.session_view(h)?;
        let Operation::Decrypt { key, mech, held } =
            self.take_op(h, OpKind::Decrypt, Part::Single)?
        else {
            return Err(CallError::NoOperation("decrypt").into());
        };
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

    pub(crate) fn encrypt_init(
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

    /// The ciphertext length of the active encryption (the modulus size).
    pub(crate) fn encrypt_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let key = self.with_op(h, OpKind::Encrypt, None, |op| match op {
            Operation::Encrypt { key, .. } => Ok(*key),
            _ => Err(CallError::NoOperation("encrypt").into()),
        })?;
        Ok(mechanism::output_len(
            &self.operation_key(h, key)?.public_key()?,
        ))
    }

    /// Encrypts with the public key on the host (C_Encrypt).
    pub(crate) fn encrypt(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>> {
        let Operation::Encrypt { key, mech } = self.take_op(h, OpKind::Encrypt, Part::Single)?
        else {
            return Err(CallError::NoOperation("encrypt").into());
        };
        mechanism::encrypt(&mech, &self.operation_key(h, key)?.public_key()?, data)
    }

    /// C_DigestInit.
    pub(crate) fn digest_init(&self, h: CK_SESSION_HANDLE, alg: HashAlg) -> Result<()> {
        self.start_op(
            h,
            Operation::Digest(DigestOp {
                hasher: mechanism::Hasher::new(alg),
                part: None,
            }),
        )
    }

    /// The digest length, for a size query of C_Digest (`Part::Single`) or C_DigestFinal
    /// (`Part::Multi`).
    pub(crate) fn digest_len(&self, h: CK_SESSION_HANDLE, part: Part) -> Result<usize> {
        self.with_op(h, OpKind::Digest, Some(part), |op| match op {
            Operation::Digest(d) => Ok(d.hasher.alg().output_len()),
            _ => Err(CallError::NoOperation("digest").into()),
        })
    }

    /// C_DigestUpdate.
    pub(crate) fn digest_update(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
        self.with_op(h, OpKind::Digest, Some(Part::Multi), |op| match op {
            Operation::Digest(d) => {
                d.hasher.update(data);
                Ok(())
            }
            _ => Err(CallError::NoOperation("digest").into()),
        })
    }

    /// Finishes the digest with `last` (C_Digest) or without (C_DigestFinal).
    pub(crate) fn digest_final(
        &self,
        h: CK_SESSION_HANDLE,
        last: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let part = if last.is_some() {
            Part::Single
        } else {
            Part::Multi
        };
        let Operation::Digest(mut d) = self.take_op(h, OpKind::Digest, part)? else {
            return Err(CallError::NoOperation("digest").into());
        };
        if let Some(x) = last {
            d.hasher.update(x);
        }
        Ok(d.hasher.finalize())
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
