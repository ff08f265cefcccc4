//! What a PKCS#11 call asked that the module refuses, in the module's words: handles that
//! name nothing, a call in the wrong state, a template it cannot take. The one place that
//! turns these into CK_RVs is [`CallError::ck_rv`]; no I/O here.

use std::fmt;

use cryptoki_sys::*;

/// A PKCS#11 call refused for what it asked (not for what the card or TPM did).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The module is not initialized in this process (C_Initialize first; a forked child
    /// must call it too).
    NotInitialized,
    /// C_Initialize was called twice.
    AlreadyInitialized,
    /// A pointer or length the call cannot use (NULL where a value is needed, a length
    /// beyond any buffer).
    BadArgument(&'static str),
    /// The host wants its own mutexes and does not allow the operating system's.
    CantLock,
    /// No card (slot) with this ID.
    SlotNotFound,
    /// No open session with this handle.
    SessionNotFound,
    /// No object with this handle that the session may see.
    ObjectNotFound,
    /// The key named for an operation is no usable key (gone, or never a key).
    KeyHandleInvalid(&'static str),
    /// The call needs a login: the user's, or the SO's where it says so.
    NotLoggedIn(&'static str),
    /// That user is logged in already.
    AlreadyLoggedIn,
    /// The other user (user or SO) is logged in.
    AnotherUserLoggedIn,
    /// A user type the card does not have.
    UserTypeInvalid(&'static str),
    /// The call changes something and the session is read-only.
    ReadOnlySession(&'static str),
    /// SO login needs every session of the token to be read-write.
    ReadOnlySessionExists,
    /// While the SO is logged in only read-write sessions open.
    SoSessionOnlyReadWrite,
    /// Reformatting needs the token's sessions closed.
    SessionsOpen,
    /// Only serial sessions exist (CKF_SERIAL_SESSION is required).
    ParallelSession,
    /// The legacy parallel-function calls.
    NotParallel,
    /// Another operation of this kind is active in the session, or the call mixes one-shot
    /// and multi-part calls of one operation.
    OperationActive(&'static str),
    /// No such operation is active in the session.
    NoOperation(&'static str),
    /// C_WaitForSlotEvent with CKF_DONT_BLOCK: nothing happened.
    NoEvent,
    /// The template lacks an attribute the object needs.
    TemplateIncomplete(&'static str),
    /// The template asks for something this card does not make (the text says what).
    TemplateInconsistent(&'static str),
    /// An attribute value the module cannot take.
    AttributeValueInvalid(&'static str),
    /// An attribute that cannot be changed (or set on a copy).
    AttributeReadOnly(&'static str),
    /// An attribute the object does not have or the call does not take.
    AttributeTypeInvalid(&'static str),
    /// C_GetAttributeValue asked for a sensitive attribute.
    AttributeSensitive,
    /// An object that cannot be destroyed, changed or copied.
    ActionProhibited(&'static str),
    /// The card holds as many keys or certificates as it can.
    CardFull(&'static str),
    /// The caller's output buffer holds fewer than `needed` bytes (or entries).
    BufferTooSmall { needed: usize },
    /// The mechanism exists but not for this call (a digest for signing, say).
    WrongMechanism(&'static str),
    /// Clients cannot seed the TPM's random number generator.
    RandomSeedNotSupported,
    /// Keys never leave the TPM, so they cannot be digested.
    KeyIndigestible,
    /// A token object file of this process's table does not parse.
    DamagedObject(&'static str),
    /// The system's random number generator failed.
    Randomness(String),
}

impl CallError {
    /// The PKCS#11 return value: one exhaustive match, so a new variant forces a decision.
    pub(crate) fn ck_rv(&self) -> CK_RV {
        match self {
            CallError::NotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
            CallError::AlreadyInitialized => CKR_CRYPTOKI_ALREADY_INITIALIZED,
            CallError::BadArgument(_) => CKR_ARGUMENTS_BAD,
            CallError::CantLock => CKR_CANT_LOCK,
            CallError::SlotNotFound => CKR_SLOT_ID_INVALID,
            CallError::SessionNotFound => CKR_SESSION_HANDLE_INVALID,
            CallError::ObjectNotFound => CKR_OBJECT_HANDLE_INVALID,
            CallError::KeyHandleInvalid(_) => CKR_KEY_HANDLE_INVALID,
            CallError::NotLoggedIn(_) => CKR_USER_NOT_LOGGED_IN,
            CallError::AlreadyLoggedIn => CKR_USER_ALREADY_LOGGED_IN,
            CallError::AnotherUserLoggedIn => CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            CallError::UserTypeInvalid(_) => CKR_USER_TYPE_INVALID,
            CallError::ReadOnlySession(_) => CKR_SESSION_READ_ONLY,
            CallError::ReadOnlySessionExists => CKR_SESSION_READ_ONLY_EXISTS,
            CallError::SoSessionOnlyReadWrite => CKR_SESSION_READ_WRITE_SO_EXISTS,
            CallError::SessionsOpen => CKR_SESSION_EXISTS,
            CallError::ParallelSession => CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            CallError::NotParallel => CKR_FUNCTION_NOT_PARALLEL,
            CallError::OperationActive(_) => CKR_OPERATION_ACTIVE,
            CallError::NoOperation(_) => CKR_OPERATION_NOT_INITIALIZED,
            CallError::NoEvent => CKR_NO_EVENT,
            CallError::TemplateIncomplete(_) => CKR_TEMPLATE_INCOMPLETE,
            CallError::TemplateInconsistent(_) => CKR_TEMPLATE_INCONSISTENT,
            CallError::AttributeValueInvalid(_) => CKR_ATTRIBUTE_VALUE_INVALID,
            CallError::AttributeReadOnly(_) => CKR_ATTRIBUTE_READ_ONLY,
            CallError::AttributeTypeInvalid(_) => CKR_ATTRIBUTE_TYPE_INVALID,
            CallError::AttributeSensitive => CKR_ATTRIBUTE_SENSITIVE,
            CallError::ActionProhibited(_) => CKR_ACTION_PROHIBITED,
            CallError::CardFull(_) => CKR_DEVICE_MEMORY,
            CallError::BufferTooSmall { .. } => CKR_BUFFER_TOO_SMALL,
            CallError::WrongMechanism(_) => CKR_MECHANISM_INVALID,
            CallError::RandomSeedNotSupported => CKR_RANDOM_SEED_NOT_SUPPORTED,
            CallError::KeyIndigestible => CKR_KEY_INDIGESTIBLE,
            CallError::DamagedObject(_) => CKR_GENERAL_ERROR,
            CallError::Randomness(_) => CKR_FUNCTION_FAILED,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NotInitialized => write!(f, "C_Initialize first"),
            CallError::AlreadyInitialized => write!(f, "the module is initialized already"),
            CallError::BadArgument(w) => write!(f, "bad argument: {w}"),
            CallError::CantLock => write!(f, "only the operating system's locks are used"),
            CallError::SlotNotFound => write!(f, "no such slot"),
            CallError::SessionNotFound => write!(f, "no such session"),
            CallError::ObjectNotFound => write!(f, "no such object"),
            CallError::KeyHandleInvalid(w) => write!(f, "not a usable key: {w}"),
            CallError::NotLoggedIn(w) => write!(f, "log in first: {w}"),
            CallError::AlreadyLoggedIn => write!(f, "already logged in"),
            CallError::AnotherUserLoggedIn => write!(f, "another user is logged in"),
            CallError::UserTypeInvalid(w) => write!(f, "user type: {w}"),
            CallError::ReadOnlySession(w) => write!(f, "a read-write session is needed: {w}"),
            CallError::ReadOnlySessionExists => {
                write!(f, "the SO logs in only when every session is read-write")
            }
            CallError::SoSessionOnlyReadWrite => {
                write!(f, "the SO is logged in: only read-write sessions open")
            }
            CallError::SessionsOpen => write!(f, "close the sessions of this token first"),
            CallError::ParallelSession => write!(f, "CKF_SERIAL_SESSION is required"),
            CallError::NotParallel => write!(f, "no parallel functions (legacy)"),
            CallError::OperationActive(w) => write!(f, "an operation is active: {w}"),
            CallError::NoOperation(w) => write!(f, "no {w} operation is active"),
            CallError::NoEvent => write!(f, "no slot event"),
            CallError::TemplateIncomplete(w) => write!(f, "the template lacks {w}"),
            CallError::TemplateInconsistent(w) => write!(f, "{w}"),
            CallError::AttributeValueInvalid(w) => write!(f, "attribute value: {w}"),
            CallError::AttributeReadOnly(w) => write!(f, "read-only attribute: {w}"),
            CallError::AttributeTypeInvalid(w) => write!(f, "attribute: {w}"),
            CallError::AttributeSensitive => write!(f, "a sensitive attribute"),
            CallError::ActionProhibited(w) => write!(f, "{w}"),
            CallError::CardFull(w) => write!(f, "{w}"),
            CallError::BufferTooSmall { needed } => {
                write!(f, "the output buffer is too small: {needed} needed")
            }
            CallError::WrongMechanism(w) => write!(f, "{w}"),
            CallError::RandomSeedNotSupported => write!(f, "the TPM's generator is not seeded"),
            CallError::KeyIndigestible => write!(f, "TPM keys cannot be digested"),
            CallError::DamagedObject(w) => write!(f, "object file damaged: {w}"),
            CallError::Randomness(w) => {
                write!(f, "the system random number generator failed: {w}")
            }
        }
    }
}
