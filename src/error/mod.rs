//! The one error type of the crate, what each error means for a user, and how it maps to
//! the CLI's exit codes (DESIGN.md §4). No I/O or TPM calls here.

use std::fmt;
use std::path::PathBuf;

use crate::checked_dir::LockBusy;
use crate::tpm::TpmError;

mod call;
pub use call::CallError;

/// Everything that can go wrong, in our words. `Display` says what happened and, where
/// there is one, what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A command-line or API argument is malformed (exit code 2).
    Usage(String),
    /// A value breaks a rule (an admin key's format, a Windows parameter); the text names
    /// the rule (exit code 2).
    PolicyViolation(String),
    /// A new PIN or PUK breaks the card's PIN policy: its length bounds (`length`,
    /// CKR_PIN_LEN_RANGE) or a character rule (CKR_PIN_INVALID); the text names the rule
    /// (exit code 2).
    PinRule { length: bool, why: String },
    /// A current PIN or PUK of a length this card's cannot have (its policy's bounds):
    /// refused before the TPM sees it, so no try is spent (exit code 2, CKR_PIN_LEN_RANGE).
    SecretLength {
        what: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    /// A current PIN or PUK with a character no PIN or PUK has (not printable ASCII):
    /// refused before the TPM sees it (exit code 2, CKR_PIN_INVALID).
    SecretCharacters { what: &'static str },
    /// The PIN was wrong; the TPM counted it.
    PinIncorrect { tries_left: u32 },
    /// The card's PIN retry counter is used up: unblock with the PUK or the admin key.
    PinLocked,
    /// The PUK was wrong; the TPM counted it.
    PukIncorrect { tries_left: u32 },
    /// The PUK retry counter is used up.
    PukLocked,
    /// The administrator's response was wrong (its challenge is spent).
    ResponseIncorrect { tries_left: u32 },
    /// Too many wrong administrator responses.
    AdminLocked,
    /// The card has no PUK.
    NoPuk(String),
    /// The card has no admin key (`random`), or the operation needs the PUK instead.
    NotManaged(String),
    /// The TPM's dictionary-attack protection is in lockout (TPM-wide, not this card).
    TpmLockout,
    /// No card matches the given name, card ID or instance ID.
    CardNotFound(String),
    /// No readable card matches, and some cards could not be read (their files named).
    CardNotFoundDamaged {
        wanted: String,
        damaged: Vec<String>,
    },
    /// The reference names more than one card (friendly names may repeat).
    AmbiguousCard {
        wanted: String,
        candidates: Vec<String>,
    },
    /// A card with this name exists already.
    CardExists(String),
    /// The store holds the maximum number of cards.
    TooManyCards { max: usize },
    /// The card exists but cannot be used; `reason` says why and what to do.
    CardUnusable { name: String, reason: String },
    /// A store file is unreadable or malformed.
    StoreCorrupt { path: PathBuf, why: String },
    /// A store file or directory has unsafe permissions.
    StorePermissions { path: PathBuf, why: String },
    /// A directory that the command must change is read-only for this process (a
    /// read-only file system, or another owner); `path` is the directory.
    ReadOnly { path: PathBuf, why: String },
    /// A lock (store, card or TPM) stayed held by another process for the whole wait.
    LockBusy(LockBusy),
    /// Reading or writing the store failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The simulator could not be started, stopped or reached.
    Simulator(String),
    /// A TPM command failed.
    Tpm(TpmError),
    /// A user declined a confirmation or closed the prompt.
    Cancelled,
    /// A feature that is not offered (yet); the text says what to do instead.
    Unsupported(String),
    /// The TPM's lockout authorization is set and tpmvsc cannot prove it holds it; the
    /// text says what to do.
    LockoutHeldElsewhere(String),
    /// Input data has the wrong length for the mechanism (CKR_DATA_LEN_RANGE).
    DataLenRange(&'static str),
    /// Input data is not valid for the mechanism (CKR_DATA_INVALID).
    DataInvalid(&'static str),
    /// Ciphertext of the wrong length (CKR_ENCRYPTED_DATA_LEN_RANGE).
    EncryptedDataLenRange,
    /// Ciphertext that does not decrypt to valid padding (CKR_ENCRYPTED_DATA_INVALID).
    EncryptedDataInvalid,
    /// A signature of the wrong length (CKR_SIGNATURE_LEN_RANGE).
    SignatureLenRange,
    /// A signature that does not verify (CKR_SIGNATURE_INVALID).
    SignatureInvalid,
    /// The mechanism is not offered (CKR_MECHANISM_INVALID).
    MechanismInvalid(u64),
    /// The mechanism's parameters are wrong (CKR_MECHANISM_PARAM_INVALID).
    MechanismParamInvalid(&'static str),
    /// The key does not fit the mechanism (CKR_KEY_TYPE_INCONSISTENT).
    KeyTypeInconsistent,
    /// The key may not be used this way (CKR_KEY_FUNCTION_NOT_PERMITTED).
    KeyFunctionNotPermitted,
    /// The key size is not supported (CKR_KEY_SIZE_RANGE).
    KeySizeRange,
    /// A PKCS#11 call refused for what it asked.
    Call(CallError),
    /// An input (a certificate file, standard input) is larger than the most we read.
    InputTooLarge { what: String, limit: usize },
    /// The data given as a certificate is not one; the text says what was found.
    NotACertificate(String),
    /// No key on the card matches (a label, an ID, a certificate's public key).
    KeyNotFound(String),
    /// The card holds such an object already (a key label, the same certificate).
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
            | Error::CardExists(_)
            | Error::TooManyCards { .. }
            | Error::CardUnusable { .. }
            | Error::StoreCorrupt { .. }
            | Error::StorePermissions { .. }
            | Error::ReadOnly { .. }
            | Error::LockBusy(_)
            | Error::Io { .. }
            | Error::Simulator(_)
            | Error::Tpm(_)
            | Error::Cancelled
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
            Error::CardExists(_) | Error::TooManyCards { .. } => CKR_FUNCTION_FAILED,
            Error::CardUnusable { .. } => CKR_TOKEN_NOT_RECOGNIZED,
            Error::StoreCorrupt { .. }
            | Error::StorePermissions { .. }
            | Error::ReadOnly { .. }
            | Error::Io { .. } => CKR_DEVICE_ERROR,
            Error::LockBusy(_) => CKR_FUNCTION_FAILED,
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
            Error::Cancelled => CKR_FUNCTION_CANCELED,
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::PolicyViolation(m) => write!(f, "{m}"),
            Error::PinRule { why, .. } => write!(f, "{why}"),
            Error::SecretLength { what, len: 0, .. } => write!(
                f,
                "the {what} is empty; no card has an empty {what}, so it was not tried"
            ),
            Error::SecretLength {
                what,
                len,
                min,
                max,
            } => write!(
                f,
                "the {what} is {len} characters long, but this card's {what} has {min} to {max}; \
                 nothing was tried"
            ),
            Error::SecretCharacters { what } => write!(
                f,
                "the {what} has a character no {what} can have (PINs and PUKs are printable \
                 ASCII); nothing was tried"
            ),
            Error::PinIncorrect { tries_left } => {
                write!(
                    f,
                    "wrong PIN; {} left before the card is blocked",
                    plural(*tries_left, "try", "tries")
                )
            }
            Error::PinLocked => write!(
                f,
                "the card's PIN is blocked; unblock it with the PUK or the administrator's response"
            ),
            Error::PukIncorrect { tries_left } => {
                write!(
                    f,
                    "wrong PUK; {} left before the PUK is blocked",
                    plural(*tries_left, "try", "tries")
                )
            }
            Error::PukLocked => write!(
                f,
                "the PUK is blocked after too many wrong tries; the card can only be reformatted \
                 by its administrator or destroyed"
            ),
            Error::ResponseIncorrect { tries_left } => write!(
                f,
                "wrong administrator response; that challenge is used up, the next attempt shows \
                 a new one ({} left)",
                plural(*tries_left, "attempt", "attempts")
            ),
            Error::AdminLocked => {
                write!(
                    f,
                    "too many wrong administrator responses; the admin key is blocked for this card, \
                     for good (only destroying and recreating the card clears it)"
                )
            }
            Error::NoPuk(name) => write!(f, "card {} was created without a PUK", Quoted(name)),
            Error::NotManaged(why) => write!(f, "{why}"),
            Error::TpmLockout | Error::Tpm(TpmError::Lockout) => write!(
                f,
                "the TPM is in dictionary-attack lockout (TPM-wide, caused by wrong \
                 authorizations); unblocking the PIN does not clear it: wait for the TPM's \
                 recovery time or run `tpmvsc tpm clear-lockout`"
            ),
            Error::CardNotFound(c) => {
                write!(
                    f,
                    "no card named {} (name, card ID or instance ID); see `tpmvsc list`",
                    Quoted(c)
                )
            }
            Error::CardNotFoundDamaged { wanted, damaged } => write!(
                f,
                "no readable card named {}; these card files could not be read: {}",
                Quoted(wanted),
                damaged.join("; ")
            ),
            Error::AmbiguousCard { wanted, candidates } => write!(
                f,
                "{} names more than one card: {}; name one by its instance ID or card ID",
                Quoted(wanted),
                candidates.join(", ")
            ),
            Error::CardExists(n) => {
                write!(
                    f,
                    "a card named {} exists already; choose another name",
                    Quoted(n)
                )
            }
            Error::TooManyCards { max } => write!(
                f,
                "this store holds {max} cards, the limit; destroy one first (`tpmvsc destroy \
                 CARD`, or `tpmvscmgr destroy /instance ID`)"
            ),
            Error::CardUnusable { name, reason } => {
                write!(f, "card {} cannot be used: {reason}", Quoted(name))
            }
            Error::StoreCorrupt { path, why } => {
                write!(f, "store file {} is damaged: {why}", path.display())
            }
            Error::StorePermissions { path, why } => write!(f, "{}: {why}", path.display()),
            Error::ReadOnly { path, why } => write!(
                f,
                "{} is read-only: {why}. Run the command as the directory's owner, remount it \
                 read-write, or point tpmvsc at a directory you can write (TPMVSC_STORE for \
                 the card store, TPMVSC_LOCK_DIR for lock files)",
                path.display()
            ),
            Error::LockBusy(b) => write!(f, "{b}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Simulator(m) => write!(f, "simulator: {m}"),
            Error::Tpm(e) => write!(f, "{e}"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::Unsupported(m) => write!(f, "{m}"),
            Error::LockoutHeldElsewhere(m) => write!(f, "{m}"),
            Error::DataLenRange(w) => write!(f, "input of the wrong length: {w}"),
            Error::DataInvalid(w) => write!(f, "invalid input: {w}"),
            Error::EncryptedDataLenRange => write!(f, "ciphertext of the wrong length"),
            Error::EncryptedDataInvalid => {
                write!(f, "the ciphertext does not decrypt to valid padding")
            }
            Error::SignatureLenRange => write!(f, "signature of the wrong length"),
            Error::SignatureInvalid => write!(f, "the signature does not verify"),
            Error::MechanismInvalid(m) => write!(f, "mechanism {m:#x} is not offered"),
            Error::MechanismParamInvalid(w) => write!(f, "bad mechanism parameters: {w}"),
            Error::KeyTypeInconsistent => write!(f, "the key does not fit the mechanism"),
            Error::KeyFunctionNotPermitted => write!(f, "the key may not be used for this"),
            Error::KeySizeRange => write!(f, "key size not supported"),
            Error::Call(c) => write!(f, "{c}"),
            Error::InputTooLarge { what, limit } => write!(
                f,
                "the {what} is larger than {}, the most tpmvsc reads",
                byte_size(*limit)
            ),
            Error::NotACertificate(why) => write!(f, "{why}"),
            Error::KeyNotFound(why) => write!(f, "{why}"),
            Error::ObjectExists(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {}

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
