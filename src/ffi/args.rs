//! Raw PKCS#11 arguments into owned, checked values: input bytes, templates, mechanisms,
//! out-pointers, and the two-call convention for variable-length outputs. Each helper
//! that reads or writes through a pointer is an `unsafe fn`: its caller vouches that the
//! pointer is NULL or valid for the size the caller of the entry point gave (the PKCS#11
//! contract); the helpers check NULL and sizes, never a dangling pointer.

use std::ptr;

use cryptoki_sys::*;

use crate::error::{CallError, Error, Result};
use crate::mechanism::{HashAlg, Mech};
use crate::object::Attrs;

/// A NULL pointer or unusable length (CKR_ARGUMENTS_BAD).
pub(super) fn bad() -> Error {
    CallError::BadArgument("a NULL pointer or an unusable length").into()
}

pub(super) fn usize_of(n: CK_ULONG) -> Result<usize> {
    usize::try_from(n).map_err(|_| bad())
}

pub(super) fn ulong_of(n: usize) -> CK_ULONG {
    CK_ULONG::try_from(n).unwrap_or(CK_ULONG::MAX)
}

/// Input bytes: NULL with a length is refused; length 0 never touches the pointer.
///
/// # Safety
/// `p` is NULL or points at `len` readable bytes that stay valid for the returned
/// lifetime.
pub(super) unsafe fn bytes<'a>(p: *const u8, len: CK_ULONG) -> Result<&'a [u8]> {
    let n = usize_of(len)?;
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: non-NULL and, by this function's contract, `n` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A template copied into owned attributes.
///
/// # Safety
/// `p` is NULL or points at `count` CK_ATTRIBUTE structures whose values are valid for
/// their lengths.
pub(super) unsafe fn template(p: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Attrs> {
    let n = usize_of(count)?;
    let mut out = Attrs::new();
    if n == 0 {
        return Ok(out);
    }
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: non-NULL and, by this function's contract, `n` attributes.
    let list = unsafe { std::slice::from_raw_parts(p, n) };
    for a in list {
        // SAFETY: each attribute's value holds its length (this function's contract).
        let v = unsafe { bytes(a.pValue as *const u8, a.ulValueLen) }?;
        out.insert(a.type_, v.to_vec());
    }
    Ok(out)
}

/// Writes through a non-NULL out-pointer.
///
/// # Safety
/// `p` is NULL or valid for one write of `T`.
pub(super) unsafe fn put<T>(p: *mut T, v: T) -> Result<()> {
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: non-NULL and, by this function's contract, valid for one write of T.
    unsafe { p.write(v) };
    Ok(())
}

/// Reads through a non-NULL in-pointer.
///
/// # Safety
/// `p` is NULL or valid for one read of `T`.
pub(super) unsafe fn get<T: Copy>(p: *const T) -> Result<T> {
    if p.is_null() {
        return Err(bad());
    }
    // SAFETY: non-NULL and, by this function's contract, valid for one read of T.
    Ok(unsafe { p.read() })
}

/// What the two-call convention says to do with an output of `needed` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    /// The caller asked for the size only (NULL output): it was written.
    SizeOnly,
    /// The buffer is large enough: produce the output.
    Enough,
}

/// The two-call convention (PKCS#11 2.40 §5.2) for an output of `needed` entries of
/// `T`: a NULL `out` gets the size written ([`Room::SizeOnly`]); a too small `*len` gets
/// the size and [`CallError::BufferTooSmall`].
///
/// # Safety
/// `len_ptr` is NULL or valid for a read and a write of CK_ULONG.
pub(super) unsafe fn room<T>(out: *mut T, len_ptr: *mut CK_ULONG, needed: usize) -> Result<Room> {
    // SAFETY: this function's contract.
    let have = unsafe { get(len_ptr as *const CK_ULONG) }?;
    if out.is_null() {
        // SAFETY: as above.
        unsafe { put(len_ptr, ulong_of(needed)) }?;
        return Ok(Room::SizeOnly);
    }
    if usize_of(have)? < needed {
        // SAFETY: as above.
        unsafe { put(len_ptr, ulong_of(needed)) }?;
        return Err(CallError::BufferTooSmall { needed }.into());
    }
    Ok(Room::Enough)
}

/// Copies `data` to `out` after [`room`] said so, and writes its length.
///
/// # Safety
/// `len_ptr` as for [`room`]; `out` holds `*len_ptr` writable bytes.
pub(super) unsafe fn write_out(out: *mut u8, len_ptr: *mut CK_ULONG, data: &[u8]) -> Result<()> {
    // SAFETY: this function's contract.
    if unsafe { room(out, len_ptr, data.len()) }? == Room::Enough {
        // SAFETY: `out` holds at least `*len_ptr >= data.len()` bytes (checked by room).
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), out, data.len()) };
    }
    // SAFETY: this function's contract.
    unsafe { put(len_ptr, ulong_of(data.len())) }
}

/// Copies a list of entries to `out` under the two-call convention and writes its length.
///
/// # Safety
/// `len_ptr` as for [`room`]; `out` holds `*len_ptr` entries of `T`.
pub(super) unsafe fn write_list<T: Copy>(
    out: *mut T,
    len_ptr: *mut CK_ULONG,
    items: &[T],
) -> Result<()> {
    // SAFETY: this function's contract.
    if unsafe { room(out, len_ptr, items.len()) }? == Room::Enough {
        // SAFETY: `out` holds at least `items.len()` entries (checked by room).
        unsafe { ptr::copy_nonoverlapping(items.as_ptr(), out, items.len()) };
    }
    // SAFETY: this function's contract.
    unsafe { put(len_ptr, ulong_of(items.len())) }
}

/// Space-padded fixed-size text field.
pub(super) fn pad(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let b = s.as_bytes();
    let n = b.len().min(dst.len());
    dst[..n].copy_from_slice(&b[..n]);
}

fn hash_of(m: CK_MECHANISM_TYPE) -> Result<HashAlg> {
    HashAlg::from_ckm(m).ok_or(Error::MechanismParamInvalid("hash algorithm"))
}

fn mgf_of(m: CK_RSA_PKCS_MGF_TYPE) -> Result<HashAlg> {
    HashAlg::from_mgf(m).ok_or(Error::MechanismParamInvalid("MGF"))
}

/// Reads a mechanism's parameter structure, checking its size.
///
/// # Safety
/// `m.pParameter` is NULL or valid for `m.ulParameterLen` bytes.
unsafe fn param<T: Copy>(m: &CK_MECHANISM) -> Result<T> {
    if m.pParameter.is_null() || usize_of(m.ulParameterLen)? != std::mem::size_of::<T>() {
        return Err(Error::MechanismParamInvalid(
            "parameter structure missing or of the wrong size",
        ));
    }
    // SAFETY: non-NULL and exactly one T long (checked above, this function's contract).
    unsafe { get(m.pParameter as *const T) }
}

/// A CK_MECHANISM parsed into [`Mech`].
///
/// # Safety
/// `p` is NULL or a CK_MECHANISM whose parameter (and the buffers it points at) are
/// valid for the lengths they give.
pub(super) unsafe fn mechanism(p: *const CK_MECHANISM) -> Result<Mech> {
    // SAFETY: this function's contract.
    let m: CK_MECHANISM = unsafe { get(p) }?;
    let pss = |hash: Option<HashAlg>| -> Result<Mech> {
        // SAFETY: the mechanism's parameter, this function's contract.
        let prm: CK_RSA_PKCS_PSS_PARAMS = unsafe { param(&m) }?;
        let h = hash_of(prm.hashAlg)?;
        if hash.is_some_and(|x| x != h) {
            return Err(Error::MechanismParamInvalid(
                "hashAlg differs from the mechanism's hash",
            ));
        }
        Ok(Mech::Pss {
            hash: h,
            mgf: mgf_of(prm.mgf)?,
            salt: usize_of(prm.sLen)?,
            prehashed: hash.is_none(),
        })
    };
    Ok(match m.mechanism {
        CKM_RSA_PKCS_KEY_PAIR_GEN => Mech::RsaKeyPairGen,
        CKM_EC_KEY_PAIR_GEN => Mech::EcKeyPairGen,
        CKM_RSA_PKCS => Mech::RsaPkcs,
        CKM_RSA_X_509 => Mech::RsaX509,
        CKM_SHA1_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha1),
        CKM_SHA256_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha256),
        CKM_SHA384_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha384),
        CKM_SHA512_RSA_PKCS => Mech::HashRsaPkcs(HashAlg::Sha512),
        CKM_RSA_PKCS_PSS => pss(None)?,
        CKM_SHA1_RSA_PKCS_PSS => pss(Some(HashAlg::Sha1))?,
        CKM_SHA256_RSA_PKCS_PSS => pss(Some(HashAlg::Sha256))?,
        CKM_SHA384_RSA_PKCS_PSS => pss(Some(HashAlg::Sha384))?,
        CKM_SHA512_RSA_PKCS_PSS => pss(Some(HashAlg::Sha512))?,
        CKM_RSA_PKCS_OAEP => {
            // SAFETY: the mechanism's parameter, this function's contract.
            let prm: CK_RSA_PKCS_OAEP_PARAMS = unsafe { param(&m) }?;
            let label = match prm.source {
                0 => Vec::new(),
                CKZ_DATA_SPECIFIED => {
                    // SAFETY: the label the parameter points at (this function's contract).
                    unsafe { bytes(prm.pSourceData as *const u8, prm.ulSourceDataLen) }?.to_vec()
                }
                _ => return Err(Error::MechanismParamInvalid("OAEP source")),
            };
            Mech::Oaep {
                hash: hash_of(prm.hashAlg)?,
                mgf: mgf_of(prm.mgf)?,
                label,
            }
        }
        CKM_ECDSA => Mech::Ecdsa,
        CKM_ECDSA_SHA1 => Mech::HashEcdsa(HashAlg::Sha1),
        CKM_ECDSA_SHA256 => Mech::HashEcdsa(HashAlg::Sha256),
        CKM_ECDSA_SHA384 => Mech::HashEcdsa(HashAlg::Sha384),
        CKM_ECDSA_SHA512 => Mech::HashEcdsa(HashAlg::Sha512),
        CKM_ECDH1_DERIVE => {
            // SAFETY: the mechanism's parameter, this function's contract.
            let prm: CK_ECDH1_DERIVE_PARAMS = unsafe { param(&m) }?;
            if prm.kdf != CKD_NULL || prm.ulSharedDataLen != 0 {
                return Err(Error::MechanismParamInvalid(
                    "only CKD_NULL without shared data",
                ));
            }
            Mech::Ecdh {
                // SAFETY: the peer's point the parameter points at (this function's contract).
                public: unsafe { bytes(prm.pPublicData, prm.ulPublicDataLen) }?.to_vec(),
            }
        }
        CKM_SHA_1 => Mech::Digest(HashAlg::Sha1),
        CKM_SHA256 => Mech::Digest(HashAlg::Sha256),
        CKM_SHA384 => Mech::Digest(HashAlg::Sha384),
        CKM_SHA512 => Mech::Digest(HashAlg::Sha512),
        other => return Err(Error::MechanismInvalid(other)),
    })
}
