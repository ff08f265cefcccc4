//! TPM response codes → what they mean for a card. The only place that reads TSS2 return
//! codes; everything above sees a [`TpmError`].

use std::fmt;

use bitfield::BitRange;
use tss_esapi::Error as TssError;
use tss_esapi::constants::response_code::Tss2ResponseCode;

/// A TPM or TSS failure, classified by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TpmError {
    /// No TPM could be reached through the configured TCTI.
    NoTpm { tcti: String, why: String },
    /// The connection to the TPM broke during a command.
    Gone(String),
    /// Another thread's TPM command has not come back for `secs` seconds (a frozen TPM):
    /// this call gave up waiting for the connection.
    Unresponsive { secs: u64 },
    /// A secret (PIN, PUK, admin response) was wrong: the TPM counted it (0x98E).
    AuthFail,
    /// The TPM is in dictionary-attack lockout (0x921).
    Lockout,
    /// A policy did not match: a bug or a tampered store, never a wrong PIN (0x99D, 0x9A4).
    Policy(u32),
    /// The SRK the card was made under is gone: the TPM was cleared.
    Cleared,
    /// The card's record names the key at 0x81000001, which is not this TPM's storage
    /// root key: someone put a salt key of their own there (DESIGN.md §2).
    SaltKeySubstituted,
    /// The card's counter has moved past its guard's bound: this copy of the card was
    /// formatted or destroyed since.
    Revoked,
    /// The card's counter NV index is gone (the card was destroyed, or someone with the
    /// owner authorization undefined it).
    CounterGone,
    /// The TPM has no NV space left for a card's counter (TPM_RC_NV_SPACE).
    NvFull,
    /// The NV index a card ID gives its counter exists already (another card's counter,
    /// or this card's when its record lost it).
    CounterTaken(u32),
    /// An object read from the store is not what tpmvsc made (attributes, policy).
    UnexpectedObject(&'static str),
    /// The TPM is busy; the command may be retried (RETRY, YIELDED, TESTING).
    Busy(u32),
    /// The TPM ran out of object or session slots.
    Memory(u32),
    /// The blob does not belong to this TPM or parent (INTEGRITY, ...).
    BadBlob(u32),
    /// [`TpmError::BadBlob`] of a blob from a known card file (`guard.json`, ...).
    BadObjectFile { code: u32, file: &'static str },
    /// Any other response code.
    Other { code: u32, what: String },
}

impl TpmError {
    /// Raw TSS2_RC of the failure, when there is one.
    pub fn code(&self) -> Option<u32> {
        match self {
            TpmError::Policy(c)
            | TpmError::Busy(c)
            | TpmError::Memory(c)
            | TpmError::BadBlob(c)
            | TpmError::BadObjectFile { code: c, .. } => Some(*c),
            TpmError::Other { code, .. } => Some(*code),
            TpmError::AuthFail => Some(0x98E),
            TpmError::Lockout => Some(0x921),
            _ => None,
        }
    }
}

impl TpmError {
    /// Names the card file whose blob the TPM refused, if this is such a refusal.
    pub(crate) fn in_file(self, file: &'static str) -> TpmError {
        match self {
            TpmError::BadBlob(code) => TpmError::BadObjectFile { code, file },
            other => other,
        }
    }

    /// TPM_RC_HANDLE: the persistent object or NV index does not exist.
    pub(crate) fn is_missing_handle(&self) -> bool {
        matches!(self, TpmError::Other { code, .. } if code & 0x80 != 0 && code & 0x3f == 0x0B)
    }

    /// TPM_RC_NV_DEFINED: the NV index exists already.
    pub(crate) fn is_nv_defined(&self) -> bool {
        matches!(self, TpmError::Other { code, .. } if code & 0xfff == 0x14C)
    }

    /// TPM_RC_NV_SPACE: no room for another NV index.
    pub(crate) fn is_nv_space(&self) -> bool {
        matches!(self, TpmError::Other { code, .. } if code & 0xfff == 0x14B)
    }
}

/// TSS2_RC layer of the TPM itself; other layers are the software stack's own errors.
const TPM_LAYER: u32 = 0;
const TCTI_LAYER: u32 = 10;

/// Classifies an error of a tss-esapi call.
pub(crate) fn classify(e: TssError) -> TpmError {
    match e {
        TssError::WrapperError(kind) => TpmError::Other {
            code: 0,
            what: format!("tss-esapi: {kind}"),
        },
        TssError::Tss2Error(rc) => classify_code(raw_code(rc)),
    }
}

fn raw_code(rc: Tss2ResponseCode) -> u32 {
    match rc {
        Tss2ResponseCode::Success => 0,
        Tss2ResponseCode::FormatZero(z) => z.bit_range(31, 0),
        Tss2ResponseCode::FormatOne(o) => o.bit_range(31, 0),
    }
}

/// Classifies a raw TSS2_RC (TPM 2.0 Part 2, §6.6: format-one codes carry a parameter,
/// handle or session number in bits 8–11, which is dropped here).
pub(crate) fn classify_code(code: u32) -> TpmError {
    let layer = (code >> 16) & 0xff;
    if layer == TCTI_LAYER {
        return TpmError::Gone(format!("TPM connection failed (TSS2_RC {code:#x})"));
    }
    if layer != TPM_LAYER {
        return TpmError::Other {
            code,
            what: format!("TPM software stack error {code:#x}"),
        };
    }
    let base = if code & 0x80 != 0 {
        0x80 | (code & 0x3f)
    } else {
        code & 0xfff
    };
    match base {
        0x08E | 0x0A2 => TpmError::AuthFail,
        0x921 => TpmError::Lockout,
        0x09D | 0x0A4 | 0x126 => TpmError::Policy(code),
        0x908 | 0x90A | 0x922 => TpmError::Busy(code),
        0x902..=0x906 => TpmError::Memory(code),
        0x09F => TpmError::BadBlob(code),
        _ => TpmError::Other {
            code,
            what: format!("TPM error {code:#x}"),
        },
    }
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmError::NoTpm { tcti, why } => write!(
                f,
                "no TPM at {tcti:?} ({why}). Set TPMVSC_TCTI, or `tcti` in \
                 /etc/tpmvsc/tpmvsc.conf, to your TPM (e.g. device:/dev/tpmrm0), or start the \
                 simulator: `tpmvsc simulator start` then `eval \"$(tpmvsc simulator env)\"`"
            ),
            TpmError::Gone(w) => write!(f, "the TPM went away during the operation: {w}"),
            TpmError::Unresponsive { secs } => write!(
                f,
                "the TPM has not answered a command for {secs} s; try again later (a stuck \
                 connection is replaced once the limit has passed)"
            ),
            TpmError::AuthFail => write!(f, "the TPM rejected the secret (authorization failure)"),
            TpmError::Lockout => write!(f, "the TPM is in dictionary-attack lockout"),
            TpmError::Policy(c) => write!(
                f,
                "the TPM refused the card's policy ({c:#x}); the card's files may have been \
                 altered"
            ),
            TpmError::Cleared => write!(
                f,
                "the TPM was cleared since this card was made (its storage root key is gone); \
                 the card cannot be used any more: destroy it and create a new one"
            ),
            TpmError::SaltKeySubstituted => write!(
                f,
                "the key at 0x81000001 is not this TPM's storage root key, and the card's record \
                 names it: someone substituted the key secrets are encrypted to (to read the PIN \
                 off the TPM bus). Nothing secret was sent. Remove that key (`tpm2_evictcontrol \
                 -C o -c 0x81000001`) and restore the card's files from a trusted copy"
            ),
            TpmError::Revoked => write!(
                f,
                "this copy of the card was revoked: the card was formatted or destroyed since \
                 these files were written, and the TPM refuses its keys"
            ),
            TpmError::CounterGone => write!(
                f,
                "the card's counter in the TPM is gone (the card was destroyed, or someone with \
                 the owner authorization removed it); the card cannot be used any more"
            ),
            TpmError::NvFull => write!(
                f,
                "the TPM has no NV memory left for the card's counter; destroy an unused card \
                 (or remove unused NV indices) and try again"
            ),
            TpmError::CounterTaken(index) => write!(
                f,
                "NV index {index:#x}, where this card ID's counter belongs, is taken by another \
                 card on this TPM; choose another card ID"
            ),
            TpmError::UnexpectedObject(what) => write!(
                f,
                "the card's {what} is not an object tpmvsc made for this card (its attributes or \
                 policy differ): the card's files were altered; nothing secret was sent"
            ),
            TpmError::Busy(c) => write!(f, "the TPM stayed busy ({c:#x}); try again"),
            TpmError::Memory(c) => write!(f, "the TPM is out of object or session memory ({c:#x})"),
            TpmError::BadBlob(c) => write!(
                f,
                "the TPM refused a stored key blob ({c:#x}): it was made by another TPM or altered"
            ),
            TpmError::BadObjectFile { code, file } => write!(
                f,
                "the TPM refused the key blob in {file} ({code:#x}): the file was made by another \
                 TPM or altered; restore it from a copy or format the card"
            ),
            TpmError::Other { what, .. } => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for TpmError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_the_feasibility_notes_classify_as_documented() {
        assert_eq!(classify_code(0x98E), TpmError::AuthFail);
        assert_eq!(classify_code(0x921), TpmError::Lockout);
        assert_eq!(classify_code(0x99D), TpmError::Policy(0x99D));
        assert_eq!(classify_code(0x9A4), TpmError::Policy(0x9A4));
        assert_eq!(classify_code(0x902), TpmError::Memory(0x902));
        assert_eq!(classify_code(0x922), TpmError::Busy(0x922));
        assert!(matches!(classify_code(0x000A_000A), TpmError::Gone(_)));
        assert!(matches!(
            classify_code(0x14B),
            TpmError::Other { code: 0x14B, .. }
        ));
    }
}
