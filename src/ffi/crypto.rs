//! Cryptographic functions (PKCS#11 2.40 §5.8–§5.14): sign, verify, encrypt, decrypt and
//! digest; key-pair generation, ECDH derivation and random numbers (§5.14–§5.15); and the
//! functions this module does not offer.
//!
//! One rule for every operation, here in `step` (§5.2): a call that fails with anything
//! but CKR_BUFFER_TOO_SMALL ends the active operation; a successful length query (NULL
//! output) and CKR_BUFFER_TOO_SMALL keep it. A size query never runs a TPM command.

use std::ffi::c_void;

use cryptoki_sys::*;

use super::args::{
    Room, bad, bytes, get, mechanism, put, room, template, ulong_of, usize_of, write_out,
};
use super::{Rule, entry};
use crate::error::{CallError, Error, Result};
use crate::mechanism::Mech;
use crate::module::{MAX_RANDOM, Module, OpKind, Part};

/// Runs one call of the session's `kind` operation; its failure ends the operation
/// unless it is CKR_BUFFER_TOO_SMALL (the one place this rule is written).
fn step(
    m: &Module,
    h: CK_SESSION_HANDLE,
    kind: OpKind,
    f: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let r = f();
    if let Err(e) = &r
        && !matches!(e, Error::Call(CallError::BufferTooSmall { .. }))
    {
        m.end_op(h, kind);
    }
    r
}

/// A variable-length output whose size `need` is known without running the operation
/// (signatures, digests, ciphertexts): a size query or a short buffer is answered as the
/// two-call convention says; otherwise `produce` runs and its output is written.
///
/// # Safety
/// `out` holds `*len` writable bytes; `len` is NULL or valid for a read and a write.
unsafe fn sized(
    out: *mut u8,
    len: *mut CK_ULONG,
    need: impl FnOnce() -> Result<usize>,
    produce: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<()> {
    // SAFETY: this function's contract.
    match unsafe { room(out, len, need()?) }? {
        Room::SizeOnly => Ok(()),
        // SAFETY: this function's contract.
        Room::Enough => unsafe { write_out(out, len, &produce()?) },
    }
}

// ----- sign and verify -----

/// C_SignInit: a logged-in user, a signature mechanism, a private key allowed to sign.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::User(h), |m| {
        // SAFETY: `mech` is NULL or a CK_MECHANISM (contract).
        m.sign_init(h, unsafe { mechanism(mech) }?, key)
    })
}

/// C_Sign: a size query (NULL output) runs no TPM command and keeps the operation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Sign(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Sign, || {
            // SAFETY: `data` holds `len` bytes; `sig` and `sig_len` as the two-call
            // convention has them (contract).
            unsafe {
                let d = bytes(data, len)?;
                sized(
                    sig,
                    sig_len,
                    || m.sign_len(h, Part::Single),
                    || m.sign(h, Some(d)),
                )
            }
        })
    })
}

/// C_SignUpdate: hash-and-sign mechanisms only (the raw ones are single-part).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignUpdate(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Sign, || {
            // SAFETY: `data` holds `len` bytes (contract).
            m.update(h, OpKind::Sign, unsafe { bytes(data, len) }?)
        })
    })
}

/// C_SignFinal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SignFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Sign, || {
            // SAFETY: `sig` and `sig_len` as the two-call convention has them (contract).
            unsafe {
                sized(
                    sig,
                    sig_len,
                    || m.sign_len(h, Part::Multi),
                    || m.sign(h, None),
                )
            }
        })
    })
}

/// C_VerifyInit: any session; the public key verifies on the host.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        // SAFETY: `mech` is NULL or a CK_MECHANISM (contract).
        m.verify_init(h, unsafe { mechanism(mech) }?, key)
    })
}

/// C_Verify.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Verify(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Verify, || {
            // SAFETY: `data` and `sig` hold their lengths (contract).
            let (d, s) = unsafe { (bytes(data, len)?, bytes(sig, sig_len)?) };
            m.verify(h, Some(d), s)
        })
    })
}

/// C_VerifyUpdate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyUpdate(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Verify, || {
            // SAFETY: `data` holds `len` bytes (contract).
            m.update(h, OpKind::Verify, unsafe { bytes(data, len) }?)
        })
    })
}

/// C_VerifyFinal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_VerifyFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Verify, || {
            // SAFETY: `sig` holds `sig_len` bytes (contract).
            m.verify(h, None, unsafe { bytes(sig, sig_len) }?)
        })
    })
}

// ----- encrypt and decrypt -----

/// C_EncryptInit: any session; the public key encrypts on the host.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_EncryptInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        // SAFETY: `mech` is NULL or a CK_MECHANISM (contract).
        m.encrypt_init(h, unsafe { mechanism(mech) }?, key)
    })
}

/// C_Encrypt (single-part).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Encrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Encrypt, || {
            // SAFETY: `data` holds `len` bytes; `out` and `out_len` as the two-call
            // convention has them (contract).
            unsafe {
                let d = bytes(data, len)?;
                sized(out, out_len, || m.encrypt_len(h), || m.encrypt(h, d))
            }
        })
    })
}

/// C_DecryptInit: a logged-in user and a private key allowed to decrypt.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DecryptInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::User(h), |m| {
        // SAFETY: `mech` is NULL or a CK_MECHANISM (contract).
        m.decrypt_init(h, unsafe { mechanism(mech) }?, key)
    })
}

/// C_Decrypt: a size query reports the modulus size; when the real plaintext then does
/// not fit, it is held (zeroizing) in the session for the retry instead of decrypting
/// twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Decrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Decrypt, || {
            // SAFETY: `data` holds `len` bytes; `out` and `out_len` as the two-call
            // convention has them (contract).
            unsafe {
                let d = bytes(data, len)?;
                // The operation first (as for every other call here), then the buffers.
                let most = m.decrypt_len(h)?;
                if out.is_null() {
                    return put(out_len, ulong_of(most));
                }
                let have = usize_of(get(out_len as *const CK_ULONG)?)?;
                match m.decrypt(h, d, have)? {
                    Ok(plain) => write_out(out, out_len, &plain),
                    Err(needed) => {
                        put(out_len, ulong_of(needed))?;
                        Err(CallError::BufferTooSmall { needed }.into())
                    }
                }
            }
        })
    })
}

// ----- digest -----

/// C_DigestInit: a digest mechanism; no login needed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestInit(h: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM) -> CK_RV {
    entry(Rule::Session(h), |m| {
        // SAFETY: `mech` is NULL or a CK_MECHANISM (contract).
        match unsafe { mechanism(mech) }? {
            Mech::Digest(alg) => m.digest_init(h, alg),
            _ => Err(CallError::WrongMechanism("not a digest mechanism").into()),
        }
    })
}

/// C_Digest.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_Digest(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Digest, || {
            // SAFETY: `data` holds `len` bytes; `out` and `out_len` as the two-call
            // convention has them (contract).
            unsafe {
                let d = bytes(data, len)?;
                sized(
                    out,
                    out_len,
                    || m.digest_len(h, Part::Single),
                    || m.digest_final(h, Some(d)),
                )
            }
        })
    })
}

/// C_DigestUpdate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestUpdate(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Digest, || {
            // SAFETY: `data` holds `len` bytes (contract).
            m.digest_update(h, unsafe { bytes(data, len) }?)
        })
    })
}

/// C_DigestFinal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestFinal(
    h: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Digest, || {
            // SAFETY: `out` and `out_len` as the two-call convention has them (contract).
            unsafe {
                sized(
                    out,
                    out_len,
                    || m.digest_len(h, Part::Multi),
                    || m.digest_final(h, None),
                )
            }
        })
    })
}

/// Keys never leave the TPM, so they cannot be digested.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DigestKey(h: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE) -> CK_RV {
    entry(Rule::Session(h), |m| {
        step(m, h, OpKind::Digest, || {
            // A multi-part digest must be active, and `k` a key the session sees.
            m.digest_len(h, Part::Multi)?;
            let o = m
                .object_for(h, k)
                .map_err(|_| CallError::KeyHandleInvalid("no such key in this session"))?;
            if ![CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY].contains(&o.class()) {
                return Err(CallError::KeyHandleInvalid("not a key").into());
            }
            Err(CallError::KeyIndigestible.into())
        })
    })
}

// ----- keys and random -----

/// C_GenerateKeyPair: a logged-in user; token keys need a read-write session (the
/// module's object policy).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateKeyPair(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    pub_t: *mut CK_ATTRIBUTE,
    pub_n: CK_ULONG,
    priv_t: *mut CK_ATTRIBUTE,
    priv_n: CK_ULONG,
    pub_out: *mut CK_OBJECT_HANDLE,
    priv_out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::User(h), |m| {
        if pub_out.is_null() || priv_out.is_null() {
            return Err(bad());
        }
        // SAFETY: `mech` is NULL or a CK_MECHANISM, the templates hold their counts of
        // attributes, the outputs are non-NULL out-pointers (contract).
        unsafe {
            let mech = mechanism(mech)?;
            let (p, k) = m.generate_key_pair(
                h,
                &mech,
                &template(pub_t, pub_n)?,
                &template(priv_t, priv_n)?,
            )?;
            put(pub_out, p)?;
            put(priv_out, k)
        }
    })
}

/// C_DeriveKey: CKM_ECDH1_DERIVE with a card key, a logged-in user.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_DeriveKey(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    out: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(Rule::User(h), |m| {
        if out.is_null() {
            return Err(bad());
        }
        // SAFETY: `mech` is NULL or a CK_MECHANISM, `t` holds `n` attributes, `out` is a
        // non-NULL out-pointer (contract).
        unsafe {
            let mech = mechanism(mech)?;
            let k = m.derive(h, &mech, base, &template(t, n)?)?;
            put(out, k)
        }
    })
}

/// C_GenerateRandom: from the TPM, at most 1 MiB per call, fetched in turns that let
/// other threads' commands in; any session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GenerateRandom(
    h: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(Rule::Session(h), |m| {
        let n = usize_of(len)?;
        if n > 0 && out.is_null() {
            return Err(bad());
        }
        if n > MAX_RANDOM {
            return Err(CallError::BadArgument(
                "at most 1 MiB of random bytes per C_GenerateRandom",
            )
            .into());
        }
        let buf: &mut [u8] = if n == 0 {
            &mut []
        } else {
            // SAFETY: `out` is non-NULL and holds `len` writable bytes (contract); the
            // slice lives for this call only.
            unsafe { std::slice::from_raw_parts_mut(out, n) }
        };
        m.random(h, buf)
    })
}

/// The TPM's generator is not seeded by clients; the arguments are checked first.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_SeedRandom(h: CK_SESSION_HANDLE, s: *mut CK_BYTE, l: CK_ULONG) -> CK_RV {
    entry(Rule::Session(h), |_| {
        // SAFETY: `s` holds `l` bytes (contract).
        unsafe { bytes(s, l) }?;
        Err(CallError::RandomSeedNotSupported.into())
    })
}

// ----- not offered -----

macro_rules! not_offered {
    ($($name:ident ( $session:ident : CK_SESSION_HANDLE $(, $arg:ident : $ty:ty)* );)*) => {
        $(
            /// Not offered by this module (the README's feature table); the session
            /// handle is checked first.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($session: CK_SESSION_HANDLE $(, _: $ty)*) -> CK_RV {
                entry(Rule::Session($session), |_| {
                    Err(Error::Unsupported("not offered by this module".into()))
                })
            }
        )*
    };
}

not_offered! {
    C_EncryptUpdate(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_EncryptFinal(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_DecryptUpdate(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptFinal(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: *mut CK_ULONG);
    C_SignRecoverInit(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_SignRecover(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_VerifyRecoverInit(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_VerifyRecover(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DigestEncryptUpdate(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptDigestUpdate(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_SignEncryptUpdate(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_DecryptVerifyUpdate(h: CK_SESSION_HANDLE, b: *mut CK_BYTE, c: CK_ULONG, d: *mut CK_BYTE, e: *mut CK_ULONG);
    C_GenerateKey(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: *mut CK_ATTRIBUTE, d: CK_ULONG, e: *mut CK_OBJECT_HANDLE);
    C_WrapKey(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE, d: CK_OBJECT_HANDLE, e: *mut CK_BYTE, f: *mut CK_ULONG);
    C_UnwrapKey(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_ATTRIBUTE, g: CK_ULONG, i: *mut CK_OBJECT_HANDLE);
    C_MessageEncryptInit(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_EncryptMessage(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG, i: *mut CK_BYTE, j: *mut CK_ULONG);
    C_EncryptMessageBegin(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG);
    C_EncryptMessageNext(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG, i: CK_FLAGS);
    C_MessageEncryptFinal(h: CK_SESSION_HANDLE);
    C_MessageDecryptInit(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_DecryptMessage(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG, i: *mut CK_BYTE, j: *mut CK_ULONG);
    C_DecryptMessageBegin(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG);
    C_DecryptMessageNext(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG, i: CK_FLAGS);
    C_MessageDecryptFinal(h: CK_SESSION_HANDLE);
    C_MessageSignInit(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_SignMessage(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG);
    C_SignMessageBegin(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG);
    C_SignMessageNext(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: *mut CK_ULONG);
    C_MessageSignFinal(h: CK_SESSION_HANDLE);
    C_MessageVerifyInit(h: CK_SESSION_HANDLE, b: *mut CK_MECHANISM, c: CK_OBJECT_HANDLE);
    C_VerifyMessage(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG);
    C_VerifyMessageBegin(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG);
    C_VerifyMessageNext(h: CK_SESSION_HANDLE, b: *mut c_void, c: CK_ULONG, d: *mut CK_BYTE, e: CK_ULONG, f: *mut CK_BYTE, g: CK_ULONG);
    C_MessageVerifyFinal(h: CK_SESSION_HANDLE);
}
