//! Sign, verify, decrypt, encrypt and digest operations: starting one, feeding it, and
//! finishing it with the host-side encodings of `mechanism` around the TPM's raw step.

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::Module;
use super::sessions::{Operation, SignOp, invalid_session};
use crate::error::{CallError, Error, Result};
use crate::mechanism::{self, HashAlg, Mech, ec::Curve};
use crate::object::{self, Object};
use crate::tpm::PublicKey;

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
        Ok(signature_len(&obj.public_key()?))
    }

    pub(super) fn active_sign(&self, h: CK_SESSION_HANDLE) -> Result<(CK_OBJECT_HANDLE, bool)> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
        match &s.op {
            Some(Operation::Sign(op)) => Ok((op.key, op.needs_context_login)),
            _ => Err(Error::from(CallError::NoOperation("no sign operation"))),
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
            _ => return Err(Error::from(CallError::NoOperation("no such operation"))),
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
        match &op.mech {
            Mech::Ecdsa | Mech::HashEcdsa(_) => {
                let curve = curve_of(&public)?;
                let digest = ecdsa_input(curve, &input);
                let (r, s) = self.with_key(slot, &blob, |t, k| t.sign_ecdsa(k, &digest))?;
                mechanism::ec::signature_rs(curve, &r, &s)
            }
            mech => {
                let (n, _) = rsa_parts(&public)?;
                let k = n.len();
                let em = match mech {
                    Mech::RsaPkcs => mechanism::rsa::pkcs1_sign_pad(&input, k)?,
                    Mech::HashRsaPkcs(hash) => {
                        mechanism::rsa::pkcs1_sign_pad(&hash.digest_info(&input)?, k)?
                    }
                    Mech::Pss {
                        hash, mgf, salt, ..
                    } => {
                        if input.len() != hash.output_len() {
                            return Err(Error::DataLenRange(
                                "the PSS input is the hash of the message",
                            ));
                        }
                        mechanism::rsa::pss_encode(&input, *hash, *mgf, *salt, bit_len(n))?
                    }
                    _ => return Err(Error::MechanismInvalid(0)),
                };
                let sig = self.with_key(slot, &blob, |t, key| t.rsa_raw(key, &em, false))?;
                Ok(left_pad(&sig, k))
            }
        }
    }

    /// Finishes a verify operation; Ok when the signature verifies.
    pub fn verify(&self, h: CK_SESSION_HANDLE, last: Option<&[u8]>, sig: &[u8]) -> Result<()> {
        let mut op = self.take_op(h, "verify", |op| match op {
            Operation::Verify(op) => Ok(op),
            other => Err(Box::new(other)),
        })?;
        let obj = self.operation_key(h, op.key)?;
        let input = op.finish_input(last);
        let public = obj.public_key()?;
        match &op.mech {
            Mech::Ecdsa | Mech::HashEcdsa(_) => {
                let curve = curve_of(&public)?;
                let point = match &public {
                    PublicKey::Ecc { x, y, .. } => [&[0x04][..], x, y].concat(),
                    PublicKey::Rsa { .. } => return Err(Error::KeyTypeInconsistent),
                };
                mechanism::ec::verify(curve, &point, &input, sig)
            }
            mech => {
                let (n, e) = rsa_parts(&public)?;
                match mech {
                    Mech::RsaPkcs => mechanism::rsa::verify_pkcs1(n, e, &input, sig),
                    Mech::HashRsaPkcs(hash) => {
                        mechanism::rsa::verify_pkcs1(n, e, &hash.digest_info(&input)?, sig)
                    }
                    Mech::Pss {
                        hash, mgf, salt, ..
                    } => mechanism::rsa::verify_pss(n, e, &input, *hash, *mgf, *salt, sig),
                    _ => Err(Error::MechanismInvalid(0)),
                }
            }
        }
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
                Ok(signature_len(&obj.public_key()?))
            }
            _ => Err(Error::from(CallError::NoOperation("no decrypt operation"))),
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
                let public = obj.public_key()?;
                let k = rsa_parts(&public)?.0.len();
                if data.len() != k {
                    return Err(Error::EncryptedDataLenRange);
                }
                let blob = obj
                    .blob
                    .clone()
                    .ok_or_else(|| Error::from(CallError::KeyHandleInvalid("not a TPM key")))?;
                let em = self.with_key(slot, &blob, |t, kh| t.rsa_raw(kh, data, true))?;
                let em = Zeroizing::new(left_pad(&em, k));
                match &mech {
                    Mech::RsaX509 => em,
                    Mech::RsaPkcs => mechanism::rsa::pkcs1_decrypt_unpad(&em)?,
                    Mech::Oaep { hash, mgf, label } => {
                        mechanism::rsa::oaep_decode(&em, *hash, *mgf, label)?
                    }
                    _ => return Err(Error::MechanismInvalid(0)),
                }
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
            _ => return Err(Error::from(CallError::NoOperation("no encrypt operation"))),
        };
        drop(st);
        Ok(signature_len(&self.operation_key(h, key)?.public_key()?))
    }

    pub fn encrypt(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>> {
        let (key, mech) = self.take_op(h, "encrypt", |op| match op {
            Operation::Encrypt { key, mech } => Ok((key, mech)),
            other => Err(Box::new(other)),
        })?;
        let obj = self.operation_key(h, key)?;
        let public = obj.public_key()?;
        let (n, e) = rsa_parts(&public)?;
        match &mech {
            Mech::RsaPkcs => mechanism::rsa::encrypt_pkcs1(n, e, data),
            Mech::RsaX509 => mechanism::rsa::encrypt_raw(n, e, data),
            Mech::Oaep { hash, mgf, label } => {
                mechanism::rsa::encrypt_oaep(n, e, data, *hash, *mgf, label)
            }
            _ => Err(Error::MechanismInvalid(0)),
        }
    }

    pub fn digest_init(&self, h: CK_SESSION_HANDLE, alg: HashAlg) -> Result<()> {
        self.start_op(h, Operation::Digest(mechanism::Hasher::new(alg)))
    }

    pub fn digest_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
        match &s.op {
            Some(Operation::Digest(d)) => Ok(d.alg().output_len()),
            _ => Err(Error::from(CallError::NoOperation("no digest operation"))),
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
            _ => Err(Error::from(CallError::NoOperation("no digest operation"))),
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

pub(super) fn signature_len(k: &PublicKey) -> usize {
    match k {
        PublicKey::Rsa { modulus, .. } => modulus.len(),
        PublicKey::Ecc { x, .. } => 2 * x.len(),
    }
}

pub(super) fn curve_of(k: &PublicKey) -> Result<Curve> {
    match k {
        PublicKey::Ecc { bits: 256, .. } => Ok(Curve::P256),
        PublicKey::Ecc { bits: 384, .. } => Ok(Curve::P384),
        _ => Err(Error::KeyTypeInconsistent),
    }
}

pub(super) fn rsa_parts(k: &PublicKey) -> Result<(&[u8], &[u8])> {
    match k {
        PublicKey::Rsa { modulus, exponent } => Ok((modulus, exponent)),
        PublicKey::Ecc { .. } => Err(Error::KeyTypeInconsistent),
    }
}

/// CKM_ECDSA input as the TPM takes it: a digest of a known hash length; other lengths
/// are cut or left-padded to the field size (SEC1 §4.1.3 uses the leftmost bits).
pub(super) fn ecdsa_input(curve: Curve, data: &[u8]) -> Vec<u8> {
    match data.len() {
        20 | 32 | 48 | 64 => data.to_vec(),
        _ => {
            let n = curve.field_len();
            if data.len() > n {
                data[..n].to_vec()
            } else {
                left_pad(data, n)
            }
        }
    }
}

/// Bit length of a big-endian integer.
pub(super) fn bit_len(n: &[u8]) -> usize {
    let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
    match n.get(first) {
        Some(b) => (n.len() - first - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

pub(super) fn left_pad(v: &[u8], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}
