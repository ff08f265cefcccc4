//! `tpmvsc_*`: the sidecar's C API (`include/tpmvsc.h`) for programs that provision
//! cards themselves, as Windows programs call the SmartCardProvisioning API. Thin over
//! `provision`: every entry point catches panics, checks every pointer, writes outputs
//! only on success, and keeps the last error's message in the context.

use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use zeroize::Zeroizing;

use crate::card::PinPolicy;
use crate::error::{Error, ErrorClass};
use crate::provision::admin::{self, AdminKey};
use crate::provision::{self, AdminKeySpec, CreateRequest, format};
use crate::store::Store;

/// Success.
pub const TPMVSC_OK: c_int = 0;
/// The operation failed; `tpmvsc_error_message` says why.
pub const TPMVSC_ERR_FAILED: c_int = 1;
/// A bad argument (NULL pointer, malformed value, policy violation).
pub const TPMVSC_ERR_ARGUMENT: c_int = 2;
/// Wrong PIN, PUK or administrator response (the try was counted).
pub const TPMVSC_ERR_WRONG_SECRET: c_int = 3;
/// The PIN or PUK is blocked, or the TPM is in dictionary-attack lockout.
pub const TPMVSC_ERR_BLOCKED: c_int = 4;
/// An output buffer is too small; the needed size was written where the API says.
pub const TPMVSC_ERR_BUFFER_TOO_SMALL: c_int = 5;
/// A Rust panic was caught (a bug); the process is still intact.
pub const TPMVSC_ERR_INTERNAL: c_int = 6;

/// An opaque context: the card store and the last error message.
#[derive(Debug)]
pub struct TpmvscContext {
    store: Store,
    last_error: CString,
}

enum Failure {
    Code(c_int, String),
}

type Outcome = Result<(), Failure>;

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e.class() {
            ErrorClass::Usage => TPMVSC_ERR_ARGUMENT,
            ErrorClass::WrongSecret => TPMVSC_ERR_WRONG_SECRET,
            ErrorClass::Blocked => TPMVSC_ERR_BLOCKED,
            ErrorClass::Failed => TPMVSC_ERR_FAILED,
        };
        Failure::Code(code, e.to_string())
    }
}

fn arg(msg: &str) -> Failure {
    Failure::Code(TPMVSC_ERR_ARGUMENT, msg.to_string())
}

/// Runs `f` with the context, catching panics and recording the error message.
///
/// # Safety
/// `ctx` is NULL or a live context from `tpmvsc_context_new`, used by no other thread.
unsafe fn with_ctx(
    ctx: *mut TpmvscContext,
    f: impl FnOnce(&mut TpmvscContext) -> Outcome,
) -> c_int {
    if ctx.is_null() {
        return TPMVSC_ERR_ARGUMENT;
    }
    // SAFETY: a non-NULL context pointer comes from tpmvsc_context_new and is not freed
    // while the caller uses it (the header's contract); we hold the only reference.
    let ctx = unsafe { &mut *ctx };
    let outcome = catch_unwind(AssertUnwindSafe(|| f(ctx)));
    let (code, message) = match outcome {
        Ok(Ok(())) => (TPMVSC_OK, String::new()),
        Ok(Err(Failure::Code(c, m))) => (c, m),
        Err(_) => (
            TPMVSC_ERR_INTERNAL,
            "internal error (a bug in tpmvsc); nothing was changed".into(),
        ),
    };
    ctx.last_error = CString::new(message.replace('\0', " ")).unwrap_or_default();
    code
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid for `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(arg(&format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string that stays valid for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| arg(&format!("{what} is not UTF-8")))
}

/// An optional NUL-terminated secret; NULL gives `None`.
///
/// # Safety
/// As for [`text`].
unsafe fn secret_opt(p: *const c_char) -> Option<Zeroizing<Vec<u8>>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: as for `text`.
    let s = unsafe { CStr::from_ptr(p) };
    Some(Zeroizing::new(s.to_bytes().to_vec()))
}

/// A NUL-terminated secret that must be given.
///
/// # Safety
/// As for [`text`].
unsafe fn secret(p: *const c_char, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    // SAFETY: the caller's promise, passed on.
    unsafe { secret_opt(p) }.ok_or_else(|| arg(&format!("{what} is NULL")))
}

/// Copies `value` and a NUL into `out[..cap]`, or reports the size needed.
///
/// # Safety
/// `out` is NULL or valid for writing `cap` bytes.
unsafe fn write_text(value: &str, out: *mut c_char, cap: usize) -> Outcome {
    let needed = value.len() + 1;
    if out.is_null() {
        return Err(arg("output buffer is NULL"));
    }
    if cap < needed {
        return Err(Failure::Code(
            TPMVSC_ERR_BUFFER_TOO_SMALL,
            format!("output buffer holds {cap} bytes, {needed} needed"),
        ));
    }
    // SAFETY: `out` is valid for `cap >= needed` bytes (the caller's contract) and does
    // not overlap `value`, which is our own string.
    unsafe {
        ptr::copy_nonoverlapping(value.as_ptr(), out.cast::<u8>(), value.len());
        *out.add(value.len()) = 0;
    }
    Ok(())
}

/// Creates a context on the store of `TPMVSC_STORE` (or the default store). The TPM is
/// the one `TPMVSC_TCTI` names. Returns TPMVSC_OK and writes `*out`, or an error code.
///
/// # Safety
/// `out` must be NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_context_new(out: *mut *mut TpmvscContext) -> c_int {
    if out.is_null() {
        return TPMVSC_ERR_ARGUMENT;
    }
    let made = catch_unwind(Store::open);
    match made {
        Ok(Ok(store)) => {
            let ctx = Box::new(TpmvscContext {
                store,
                last_error: CString::default(),
            });
            // SAFETY: `out` is non-NULL and valid for one pointer write (contract above).
            unsafe { *out = Box::into_raw(ctx) };
            TPMVSC_OK
        }
        Ok(Err(_)) => TPMVSC_ERR_FAILED,
        Err(_) => TPMVSC_ERR_INTERNAL,
    }
}

/// Frees a context (NULL is ignored).
///
/// # Safety
/// `ctx` must be NULL or a pointer from `tpmvsc_context_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_context_free(ctx: *mut TpmvscContext) {
    if !ctx.is_null() {
        // SAFETY: the pointer came from Box::into_raw in tpmvsc_context_new (contract).
        drop(unsafe { Box::from_raw(ctx) });
    }
}

/// The message of the last failed call on `ctx` ("" after a success). Valid until the
/// next call on `ctx`.
///
/// # Safety
/// `ctx` must be NULL or a live context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_error_message(ctx: *const TpmvscContext) -> *const c_char {
    if ctx.is_null() {
        return c"no context".as_ptr();
    }
    // SAFETY: a live context (contract); we only read it.
    unsafe { (*ctx).last_error.as_ptr() }
}

/// Creates a card. `pin` NULL = the default PIN 12345678; `puk` NULL = no PUK;
/// `admin_key_hex` NULL = no admin key (unmanaged), else 48 hex digits; `format` non-zero
/// formats now. On success writes the card ID (37 bytes with NUL) and the instance ID
/// (27 bytes with NUL) into the given buffers.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; output buffers are valid for their sizes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_card_create(
    ctx: *mut TpmvscContext,
    name: *const c_char,
    pin: *const c_char,
    puk: *const c_char,
    admin_key_hex: *const c_char,
    format: c_int,
    card_id_out: *mut c_char,
    card_id_size: usize,
    instance_id_out: *mut c_char,
    instance_id_size: usize,
) -> c_int {
    // SAFETY: the caller's promise above; NULL is no PIN policy.
    unsafe {
        create_card(
            ctx,
            name,
            pin,
            puk,
            admin_key_hex,
            ptr::null(),
            format,
            (card_id_out, card_id_size),
            (instance_id_out, instance_id_size),
        )
    }
}

/// Creates a card like [`tpmvsc_card_create`] with a PIN policy (the `tpmvsc create
/// --pin-policy` spelling, e.g. `minlen=6,digits=required`; NULL = the default policy)
/// that the PIN must meet now and every new PIN later.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; output buffers are valid for their sizes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_card_create_with_policy(
    ctx: *mut TpmvscContext,
    name: *const c_char,
    pin: *const c_char,
    puk: *const c_char,
    admin_key_hex: *const c_char,
    pin_policy: *const c_char,
    format: c_int,
    card_id_out: *mut c_char,
    card_id_size: usize,
    instance_id_out: *mut c_char,
    instance_id_size: usize,
) -> c_int {
    // SAFETY: the caller's promise above.
    unsafe {
        create_card(
            ctx,
            name,
            pin,
            puk,
            admin_key_hex,
            pin_policy,
            format,
            (card_id_out, card_id_size),
            (instance_id_out, instance_id_size),
        )
    }
}

/// Both create calls: the card, then its card ID and instance ID in the buffers.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; output buffers are valid for their sizes.
#[allow(clippy::too_many_arguments)] // the C signature's arguments, passed on
unsafe fn create_card(
    ctx: *mut TpmvscContext,
    name: *const c_char,
    pin: *const c_char,
    puk: *const c_char,
    admin_key_hex: *const c_char,
    pin_policy: *const c_char,
    format: c_int,
    (card_id_out, card_id_size): (*mut c_char, usize),
    (instance_id_out, instance_id_size): (*mut c_char, usize),
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            let name = text(name, "name")?;
            let mut req = CreateRequest::new(name);
            if !pin_policy.is_null() {
                req.pin_policy = PinPolicy::parse(text(pin_policy, "PIN policy")?)?;
            }
            if let Some(p) = secret_opt(pin) {
                req.pin = p;
            } else if !pin_policy.is_null() {
                return Err(arg(
                    "a PIN policy applies to a PIN you choose: pass the PIN",
                ));
            }
            req.puk = secret_opt(puk);
            if !admin_key_hex.is_null() {
                let hex = text(admin_key_hex, "admin key")?;
                req.admin = AdminKeySpec::Key(AdminKey::parse_hex(hex)?);
            }
            req.format = format != 0;
            if card_id_out.is_null() || instance_id_out.is_null() {
                return Err(arg("output buffer is NULL"));
            }
            if card_id_size < 37 || instance_id_size < 27 {
                return Err(Failure::Code(
                    TPMVSC_ERR_BUFFER_TOO_SMALL,
                    "card ID needs 37 bytes, instance ID 27".into(),
                ));
            }
            let s = provision::create(&ctx.store, req, &mut |_| {})?;
            write_text(&s.card_id, card_id_out, card_id_size)?;
            write_text(&s.instance_id, instance_id_out, instance_id_size)
        })
    }
}

/// Formats a card with its PUK: every key and object is erased, old copies of the card
/// are revoked, `new_pin` is set; the card ID stays.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_card_format_puk(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    puk: *const c_char,
    new_pin: *const c_char,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            let card = text(card, "card")?;
            let (puk, new) = (secret(puk, "PUK")?, secret(new_pin, "new PIN")?);
            format::format(&ctx.store, card, format::FormatAuth::Puk(&puk), &new)?;
            Ok(())
        })
    }
}

/// Formats a card with the administrator's response to its current challenge; a card
/// with a PUK gets `new_puk` (required then, NULL otherwise).
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_card_format_admin(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    response_hex: *const c_char,
    new_puk: *const c_char,
    new_pin: *const c_char,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            let card = text(card, "card")?;
            let response = admin::parse_response(text(response_hex, "response")?)?;
            let puk = secret_opt(new_puk);
            let new = secret(new_pin, "new PIN")?;
            let auth = format::FormatAuth::Admin(&response, puk.as_deref().map(|p| p.as_slice()));
            format::format(&ctx.store, card, auth, &new)?;
            Ok(())
        })
    }
}

/// Replaces the card's admin key with `new_admin_key_hex` (48 hex digits), authorized by
/// the response to the current challenge under the old key; a new batch of challenges.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_admin_key_change(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    response_hex: *const c_char,
    new_admin_key_hex: *const c_char,
) -> c_int {
    // SAFETY: the caller's promise above.
    unsafe {
        respond_with_key(
            ctx,
            card,
            response_hex,
            new_admin_key_hex,
            "new admin key",
            |k| admin::AdminAction::ChangeKey { new_key: k },
        )
    }
}

/// A new batch of challenges under the same admin key, authorized by the response to the
/// current challenge (the reserve challenge serves when nothing else is left).
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_admin_refill(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    response_hex: *const c_char,
    admin_key_hex: *const c_char,
) -> c_int {
    // SAFETY: the caller's promise above.
    unsafe {
        respond_with_key(ctx, card, response_hex, admin_key_hex, "admin key", |k| {
            admin::AdminAction::Refill { key: k }
        })
    }
}

/// An admin action that carries a key, authorized by the response to the current
/// challenge (key change and refill).
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
unsafe fn respond_with_key(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    response_hex: *const c_char,
    key_hex: *const c_char,
    key_what: &str,
    action: impl for<'k> FnOnce(&'k AdminKey) -> admin::AdminAction<'k>,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            let card = text(card, "card")?;
            let response = admin::parse_response(text(response_hex, "response")?)?;
            let key = AdminKey::parse_hex(text(key_hex, key_what)?)?;
            admin::respond(&ctx.store, card, &response, action(&key))?;
            Ok(())
        })
    }
}

/// Destroys a card named by name, card ID or instance ID.
///
/// # Safety
/// `card` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_card_destroy(
    ctx: *mut TpmvscContext,
    card: *const c_char,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            provision::destroy(&ctx.store, text(card, "card")?)?;
            Ok(())
        })
    }
}

/// Lists the cards as a JSON array (the keys of `tpmvsc list --json`). Two-call
/// convention: `*size` is the buffer size in; on success or TPMVSC_ERR_BUFFER_TOO_SMALL
/// it is set to the bytes needed (with the NUL). `out` may be NULL to ask the size.
///
/// # Safety
/// `size` valid; `out` NULL or valid for `*size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_card_list(
    ctx: *mut TpmvscContext,
    out: *mut c_char,
    size: *mut usize,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            if size.is_null() {
                return Err(arg("size is NULL"));
            }
            let cards = provision::list(&ctx.store)?;
            let json = serde_json::to_string(&cards)
                .map_err(|e| Failure::Code(TPMVSC_ERR_FAILED, e.to_string()))?;
            // `size` is non-NULL here and valid (the contract).
            let cap = *size;
            *size = json.len() + 1;
            if out.is_null() {
                return Ok(());
            }
            write_text(&json, out, cap)
        })
    }
}

/// Runs `f` on the store with a card reference and two secrets that must be given.
///
/// # Safety
/// As for [`with_ctx`] and [`text`].
unsafe fn with_card_secrets(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    secrets: [(*const c_char, &str); 2],
    f: impl FnOnce(&Store, &str, [Zeroizing<Vec<u8>>; 2]) -> crate::Result<()>,
) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_ctx(ctx, |ctx| {
            let card = text(card, "card")?;
            let [(a, a_what), (b, b_what)] = secrets;
            let values = [secret(a, a_what)?, secret(b, b_what)?];
            f(&ctx.store, card, values)?;
            Ok(())
        })
    }
}

/// Changes the PIN knowing the current one.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_pin_change(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    current_pin: *const c_char,
    new_pin: *const c_char,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_card_secrets(
            ctx,
            card,
            [(current_pin, "current PIN"), (new_pin, "new PIN")],
            |store, card, [old, new]| provision::change_pin(store, card, &old, &new),
        )
    }
}

/// Sets a new PIN with the PUK and unblocks the card.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_puk_unblock(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    puk: *const c_char,
    new_pin: *const c_char,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_card_secrets(
            ctx,
            card,
            [(puk, "PUK"), (new_pin, "new PIN")],
            |store, card, [puk, new]| provision::unblock_with_puk(store, card, &puk, &new),
        )
    }
}

/// Writes the card's next administrator challenge (16 hex digits + NUL, 17 bytes) and,
/// when `left` is not NULL, how many challenges remain. Spends nothing.
///
/// # Safety
/// `card` NUL-terminated; `out` valid for `size` bytes; `left` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_challenge_get(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    out: *mut c_char,
    size: usize,
    left: *mut usize,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            let (challenge, n) = admin::challenge(&ctx.store, text(card, "card")?)?;
            write_text(&challenge, out, size)?;
            if !left.is_null() {
                // A non-NULL `left` is valid for one write (the contract).
                *left = n;
            }
            Ok(())
        })
    }
}

/// Sets a new PIN with the administrator's response (16 hex digits) to the current
/// challenge. The challenge is spent whatever the outcome.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_admin_unblock(
    ctx: *mut TpmvscContext,
    card: *const c_char,
    response_hex: *const c_char,
    new_pin: *const c_char,
) -> c_int {
    // SAFETY: every pointer is as the caller promised above.
    unsafe {
        with_ctx(ctx, |ctx| {
            let card = text(card, "card")?;
            let response = admin::parse_response(text(response_hex, "response")?)?;
            let new = secret(new_pin, "new PIN")?;
            admin::respond(
                &ctx.store,
                card,
                &response,
                admin::AdminAction::Unblock { new_pin: &new },
            )?;
            Ok(())
        })
    }
}

/// Computes the response to a challenge with an admin key (the help desk's side):
/// writes 16 hex digits + NUL (17 bytes).
///
/// # Safety
/// String arguments are NUL-terminated; `out` valid for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tpmvsc_admin_response(
    admin_key_hex: *const c_char,
    challenge_hex: *const c_char,
    out: *mut c_char,
    size: usize,
) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(|| -> Outcome {
        // SAFETY: every pointer is as the caller promised above.
        unsafe {
            let key = AdminKey::parse_hex(text(admin_key_hex, "admin key")?)?;
            let c = admin::parse_challenge(text(challenge_hex, "challenge")?)?;
            write_text(&hex::encode_upper(key.response(&c)), out, size)
        }
    }));
    match r {
        Ok(Ok(())) => TPMVSC_OK,
        Ok(Err(Failure::Code(c, _))) => c,
        Err(_) => TPMVSC_ERR_INTERNAL,
    }
}
