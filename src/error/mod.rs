//! The one error type of the crate, what each error means for a user, and how it maps to
//! the CLI's exit codes (DESIGN.md §4). No I/O or TPM calls here.

use std::fmt;
use std::path::PathBuf;

mod call;
mod lock;
pub(crate) mod tpm;

pub use call::CallError;
pub(crate) use lock::LOCK_TIMEOUT_ENV;
pub use lock::{LockBusy, LockHolder};
pub use tpm::TpmError;

/// Everything that can go wrong, in our words. `Display` says what happened and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command-line or API argument is malformed (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A value breaks a rule (an admin key's format, a Windows parameter); the text names
    /// the rule (exit code 2).
    #[error("{0}")]
    PolicyViolation(String),
    /// A new PIN or PUK breaks the card's PIN policy: its length bounds (`length`,
    /// CKR_PIN_LEN_RANGE) or a character rule (CKR_PIN_INVALID); the text names the rule
    /// (exit code 2).
    #[error("{why}")]
    PinRule { length: bool, why: String },
    /// A current PIN or PUK of a length this card's cannot have (its policy's bounds):
    /// refused before the TPM sees it, so no try is spent (exit code 2, CKR_PIN_LEN_RANGE).
    #[error("{}", secret_length(.what, *.len, *.min, *.max))]
    SecretLength {
        what: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    /// A current PIN or PUK with a character no PIN or PUK has (not printable ASCII):
    /// refused before the TPM sees it (exit code 2, CKR_PIN_INVALID).
    #[error(
        "the {what} has a character no {what} can have (PINs and PUKs are printable ASCII); \
         nothing was tried"
    )]
    SecretCharacters { what: &'static str },
    /// The PIN was wrong; the TPM counted it.
    #[error("wrong PIN; {} left before the card is blocked", plural(*.tries_left, "try", "tries"))]
    PinIncorrect { tries_left: u32 },
    /// The card's PIN retry counter is used up: unblock with the PUK or the admin key.
    #[error("the card's PIN is blocked; unblock it with the PUK or the administrator's response")]
    PinLocked,
    /// The PUK was wrong; the TPM counted it.
    #[error("wrong PUK; {} left before the PUK is blocked", plural(*.tries_left, "try", "tries"))]
    PukIncorrect { tries_left: u32 },
    /// The PUK retry counter is used up.
    #[error(
        "the PUK is blocked after too many wrong tries; the card can only be reformatted by its \
         administrator or destroyed"
    )]
    PukLocked,
    /// The administrator's response was wrong (its challenge is spent).
    #[error(
        "wrong administrator response; that challenge is used up, the next attempt shows a new \
         one ({} left)",
        plural(*.tries_left, "attempt", "attempts")
    )]
    ResponseIncorrect { tries_left: u32 },
    /// Too many wrong administrator responses.
    #[error(
        "too many wrong administrator responses; the admin key is blocked for this card, for \
         good (only destroying and recreating the card clears it)"
    )]
    AdminLocked,
    /// The card has no PUK.
    #[error("card {} was created without a PUK", Quoted(.0))]
    NoPuk(String),
    /// The card has no admin key (`random`), or the operation needs the PUK instead.
    #[error("{0}")]
    NotManaged(String),
    /// The TPM's dictionary-attack protection is in lockout (TPM-wide, not this card).
    #[error("{LOCKOUT_MESSAGE}")]
    TpmLockout,
    /// No card matches the given name, card ID or instance ID.
    #[error("no card named {} (name, card ID or instance ID); see `tpmvsc list`", Quoted(.0))]
    CardNotFound(String),
    /// No readable card matches, and some cards could not be read (their files named).
    #[error(
        "no readable card named {}; these card files could not be read: {}",
        Quoted(.wanted),
        .damaged.join("; ")
    )]
    CardNotFoundDamaged {
        wanted: String,
        damaged: Vec<String>,
    },
    /// The reference names more than one card (friendly names may repeat).
    #[error(
        "{} names more than one card: {}; name one by its instance ID or card ID",
        Quoted(.wanted),
        .candidates.join(", ")
    )]
    AmbiguousCard {
        wanted: String,
        candidates: Vec<String>,
    },
    /// The store holds the maximum number of cards.
    #[error(
        "this store holds {max} cards, the limit; destroy one first (`tpmvsc destroy CARD`, \
         or `tpmvscmgr destroy /instance ID`)"
    )]
    TooManyCards { max: usize },
    /// The card exists but cannot be used; `reason` says why and what to do.
    #[error("card {} cannot be used: {reason}", Quoted(.name))]
    CardUnusable { name: String, reason: String },
    /// A store file is unreadable or malformed.
    #[error("store file {} is damaged: {why}", .path.display())]
    StoreCorrupt { path: PathBuf, why: String },
    /// A configuration file is malformed; `why` says what is wrong in it.
    #[error("configuration file {}: {why}", .path.display())]
    Config { path: PathBuf, why: String },
    /// A store file or directory has unsafe permissions.
    #[error("{}: {why}", .path.display())]
    StorePermissions { path: PathBuf, why: String },
    /// A directory that the command must change is read-only for this process (a
    /// read-only file system, or another owner); `path` is the directory.
    #[error(
        "{} is read-only: {why}. Run the command as the directory's owner, remount it \
         read-write, or point tpmvsc at a directory you can write (TPMVSC_STORE for the card \
         store, TPMVSC_LOCK_DIR for lock files)",
        .path.display()
    )]
    ReadOnly { path: PathBuf, why: String },
    /// A lock (store, card or TPM) stayed held by another process for the whole wait.
    #[error("{0}")]
    LockBusy(LockBusy),
    /// Reading or writing the store failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The simulator could not be started, stopped or reached.
    #[error("simulator: {0}")]
    Simulator(String),
    /// A TPM command failed.
    #[error("{}", tpm_message(.0))]
    Tpm(TpmError),
    /// A feature that is not offered (yet); the text says what to do instead.
    #[error("{0}")]
    Unsupported(String),
    /// The TPM's lockout authorization is set and tpmvsc cannot prove it holds it; the
    /// text says what to do.
    #[error("{0}")]
    LockoutHeldElsewhere(String),
    /// Input data has the wrong length for the mechanism (CKR_DATA_LEN_RANGE).
    #[error("input of the wrong length: {0}")]
    DataLenRange(&'static str),
    /// Input data is not valid for the mechanism (CKR_DATA_INVALID).
    #[error("invalid input: {0}")]
    DataInvalid(&'static str),
    /// Ciphertext of the wrong length (CKR_ENCRYPTED_DATA_LEN_RANGE).
    #[error("ciphertext of the wrong length")]
    EncryptedDataLenRange,
    /// Ciphertext that does not decrypt to valid padding (CKR_ENCRYPTED_DATA_INVALID).
    #[error("the ciphertext does not decrypt to valid padding")]
    EncryptedDataInvalid,
    /// A signature of the wrong length (CKR_SIGNATURE_LEN_RANGE).
    #[error("signature of the wrong length")]
    SignatureLenRange,
    /// A signature that does not verify (CKR_SIGNATURE_INVALID).
    #[error("the signature does not verify")]
    SignatureInvalid,
    /// The mechanism is not offered (CKR_MECHANISM_INVALID).
    #[error("mechanism {0:#x} is not offered")]
    MechanismInvalid(u64),
    /// The mechanism's parameters are wrong (CKR_MECHANISM_PARAM_INVALID).
    #[error("bad mechanism parameters: {0}")]
    MechanismParamInvalid(&'static str),
    /// The key does not fit the mechanism (CKR_KEY_TYPE_INCONSISTENT).
    #[error("the key does not fit the mechanism")]
    KeyTypeInconsistent,
    /// The key may not be used this way (CKR_KEY_FUNCTION_NOT_PERMITTED).
    #[error("the key may not be used for this")]
    KeyFunctionNotPermitted,
    /// The key size is not supported (CKR_KEY_SIZE_RANGE).
    #[error("key size not supported")]
    KeySizeRange,
    /// A PKCS#11 call refused for what it asked.
    #[error("{0}")]
    Call(CallError),
    /// An input (a certificate file, standard input) is larger than the most we read.
    #[error("the {what} is larger than {}, the most tpmvsc reads", byte_size(*.limit))]
    InputTooLarge { what: String, limit: usize },
    /// The data given as a certificate is not one; the text says what was found.
    #[error("{0}")]
    NotACertificate(String),
    /// No key on the card matches (a label, an ID, a certificate's public key).
    #[error("{0}")]
    KeyNotFound(String),
    /// The card holds such an object already (a key label, the same certificate).
    #[error("{0}")]
    ObjectExists(String),
}

impl Error {
    /// What kind of failure this is, for the CLI's exit code and the C API's result.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            Error::Usage(_)
            | Error::PolicyViolation(_)
            | Error::PinRule { .. }
            | Error::SecretLength { .. }
            | Error::SecretCharacters { .. }
            | Error::Call(CallError::BadArgument(_)) => ErrorClass::Usage,
            Error::PinIncorrect { .. }
            | Error::PukIncorrect { .. }
            | Error::ResponseIncorrect { .. }
            | Error::Tpm(TpmError::AuthFail) => ErrorClass::WrongSecret,
            Error::PukLocked
            | Error::AdminLocked
            | Error::PinLocked
            | Error::TpmLockout
            | Error::Tpm(TpmError::Lockout) => ErrorClass::Blocked,
            Error::NoPuk(_)
            | Error::NotManaged(_)
            | Error::CardNotFound(_)
            | Error::CardNotFoundDamaged { .. }
            | Error::AmbiguousCard { .. }
            | Error::TooManyCards { .. }
            | Error::CardUnusable { .. }
            | Error::StoreCorrupt { .. }
            | Error::Config { .. }
            | Error::StorePermissions { .. }
            | Error::ReadOnly { .. }
            | Error::LockBusy(_)
            | Error::Io { .. }
            | Error::Simulator(_)
            | Error::Tpm(_)
            | Error::Unsupported(_)
            | Error::LockoutHeldElsewhere(_)
            | Error::DataLenRange(_)
            | Error::DataInvalid(_)
            | Error::EncryptedDataLenRange
            | Error::EncryptedDataInvalid
            | Error::SignatureLenRange
            | Error::SignatureInvalid
            | Error::MechanismInvalid(_)
            | Error::MechanismParamInvalid(_)
            | Error::KeyTypeInconsistent
            | Error::KeyFunctionNotPermitted
            | Error::KeySizeRange
            | Error::Call(_)
            | Error::InputTooLarge { .. }
            | Error::NotACertificate(_)
            | Error::KeyNotFound(_)
            | Error::ObjectExists(_) => ErrorClass::Failed,
        }
    }

    /// Exit code for the CLI: 0 ok, 1 failed, 2 usage, 3 wrong secret, 4 blocked or lockout.
    pub fn exit_code(&self) -> i32 {
        match self.class() {
            ErrorClass::Failed => 1,
            ErrorClass::Usage => 2,
            ErrorClass::WrongSecret => 3,
            ErrorClass::Blocked => 4,
        }
    }

    /// The PKCS#11 return value for this error: one exhaustive match, so a new variant
    /// forces a decision (CONVENTIONS.md §2).
    pub(crate) fn ck_rv(&self) -> cryptoki_sys::CK_RV {
        use cryptoki_sys::*;
        match self {
            Error::Usage(_) => CKR_ARGUMENTS_BAD,
            Error::PolicyViolation(_) => CKR_PIN_INVALID,
            Error::PinRule { length: true, .. } => CKR_PIN_LEN_RANGE,
            Error::PinRule { length: false, .. } => CKR_PIN_INVALID,
            Error::SecretLength { .. } => CKR_PIN_LEN_RANGE,
            Error::SecretCharacters { .. } => CKR_PIN_INVALID,
            Error::PinIncorrect { .. }
            | Error::PukIncorrect { .. }
            | Error::ResponseIncorrect { .. } => CKR_PIN_INCORRECT,
            Error::PinLocked | Error::PukLocked | Error::AdminLocked | Error::TpmLockout => {
                CKR_PIN_LOCKED
            }
            Error::CardNotFound(_) | Error::CardNotFoundDamaged { .. } => CKR_SLOT_ID_INVALID,
            Error::AmbiguousCard { .. } => CKR_ARGUMENTS_BAD,
            Error::TooManyCards { .. } => CKR_FUNCTION_FAILED,
            Error::CardUnusable { .. } => CKR_TOKEN_NOT_RECOGNIZED,
            Error::StoreCorrupt { .. }
            | Error::StorePermissions { .. }
            | Error::ReadOnly { .. }
            | Error::Io { .. } => CKR_DEVICE_ERROR,
            Error::LockBusy(_) | Error::Config { .. } => CKR_FUNCTION_FAILED,
            Error::Simulator(_) => CKR_DEVICE_ERROR,
            Error::Tpm(e) => match e {
                TpmError::AuthFail => CKR_PIN_INCORRECT,
                TpmError::Lockout => CKR_PIN_LOCKED,
                TpmError::Memory(_) => CKR_DEVICE_MEMORY,
                TpmError::Cleared
                | TpmError::SaltKeySubstituted
                | TpmError::Revoked
                | TpmError::CounterGone
                | TpmError::UnexpectedObject(_) => CKR_TOKEN_NOT_RECOGNIZED,
                TpmError::NvFull => CKR_DEVICE_MEMORY,
                TpmError::CounterTaken(_) => CKR_FUNCTION_FAILED,
                TpmError::NoTpm { .. }
                | TpmError::Gone(_)
                | TpmError::Unresponsive { .. }
                | TpmError::Policy(_)
                | TpmError::Busy(_)
                | TpmError::BadBlob(_)
                | TpmError::BadObjectFile { .. }
                | TpmError::Other { .. } => CKR_DEVICE_ERROR,
            },
            Error::NoPuk(_) => CKR_PIN_INCORRECT,
            Error::NotManaged(_) => CKR_FUNCTION_NOT_SUPPORTED,
            Error::Unsupported(_) => CKR_FUNCTION_NOT_SUPPORTED,
            Error::LockoutHeldElsewhere(_) => CKR_FUNCTION_FAILED,
            Error::DataLenRange(_) => CKR_DATA_LEN_RANGE,
            Error::DataInvalid(_) => CKR_DATA_INVALID,
            Error::EncryptedDataLenRange => CKR_ENCRYPTED_DATA_LEN_RANGE,
            Error::EncryptedDataInvalid => CKR_ENCRYPTED_DATA_INVALID,
            Error::SignatureLenRange => CKR_SIGNATURE_LEN_RANGE,
            Error::SignatureInvalid => CKR_SIGNATURE_INVALID,
            Error::MechanismInvalid(_) => CKR_MECHANISM_INVALID,
            Error::MechanismParamInvalid(_) => CKR_MECHANISM_PARAM_INVALID,
            Error::KeyTypeInconsistent => CKR_KEY_TYPE_INCONSISTENT,
            Error::KeyFunctionNotPermitted => CKR_KEY_FUNCTION_NOT_PERMITTED,
            Error::KeySizeRange => CKR_KEY_SIZE_RANGE,
            Error::Call(c) => c.ck_rv(),
            Error::InputTooLarge { .. } => CKR_DATA_LEN_RANGE,
            Error::NotACertificate(_) => CKR_ATTRIBUTE_VALUE_INVALID,
            Error::KeyNotFound(_) => CKR_KEY_HANDLE_INVALID,
            Error::ObjectExists(_) => CKR_TEMPLATE_INCONSISTENT,
        }
    }

    /// Helper for I/O errors on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Helper for a corrupt store file.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        Error::StoreCorrupt {
            path: path.into(),
            why: why.into(),
        }
    }
}

/// The lockout message, for `TpmLockout` and the TPM's own lockout code alike.
const LOCKOUT_MESSAGE: &str = "the TPM is in dictionary-attack lockout (TPM-wide, caused by wrong \
     authorizations); unblocking the PIN does not clear it: wait for the TPM's recovery time or \
     run `tpmvsc tpm clear-lockout`";

/// A TPM error in user words; its lockout is told as [`Error::TpmLockout`] is.
fn tpm_message(e: &TpmError) -> String {
    match e {
        TpmError::Lockout => LOCKOUT_MESSAGE.to_string(),
        other => other.to_string(),
    }
}

/// A current PIN or PUK of a length the card's cannot have.
fn secret_length(what: &str, len: usize, min: usize, max: usize) -> String {
    if len == 0 {
        format!("the {what} is empty; no card has an empty {what}, so it was not tried")
    } else {
        format!(
            "the {what} is {len} characters long, but this card's {what} has {min} to {max}; \
             nothing was tried"
        )
    }
}

/// "1 MiB", "4 KiB" or "100 bytes".
fn byte_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Kinds of failure, as the CLI's exit codes and the C API's results tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// Failed (exit code 1).
    Failed,
    /// A malformed argument or a rule broken (exit code 2).
    Usage,
    /// A wrong PIN, PUK or administrator response, counted (exit code 3).
    WrongSecret,
    /// Blocked, or the TPM in dictionary-attack lockout (exit code 4).
    Blocked,
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        Error::Call(e)
    }
}

impl From<TpmError> for Error {
    fn from(e: TpmError) -> Self {
        match e {
            TpmError::Lockout => Error::TpmLockout,
            other => Error::Tpm(other),
        }
    }
}

/// Text in double quotes for messages: backslashes as they are (instance IDs), control
/// characters escaped so that a message never carries raw ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        f.write_str("\"")
    }
}

/// "1 try", "2 tries".
fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Result with the crate's error.
pub type Result<T> = std::result::Result<T, Error>;
