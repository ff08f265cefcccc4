//! Sessions and their active operations: open, close, the session's state for
//! CK_SESSION_INFO, and starting and taking the one operation a session may have.

use super::tables::Table;
use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::Module;
use super::token::Login;
use crate::error::{CallError, Error, Result};
use crate::mechanism::{Hasher, Mech};

/// The kinds of operation, one per PKCS#11 function family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    Digest,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::Sign => "sign",
            OpKind::Verify => "verify",
            OpKind::Encrypt => "encrypt",
            OpKind::Decrypt => "decrypt",
            OpKind::Digest => "digest",
        }
    }
}

/// How an operation is being fed: by its one-shot call (C_Sign, a length query
/// included), or by C_XUpdate … C_XFinal. The first call decides; mixing them is
/// CKR_OPERATION_ACTIVE (PKCS#11 2.40 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Single,
    Multi,
}

/// An operation in progress in a session.
#[derive(Debug)]
pub(crate) enum Operation {
    Sign(SignOp),
    Verify(SignOp),
    Decrypt {
        key: CK_OBJECT_HANDLE,
        mech: Mech,
        held: Option<Zeroizing<Vec<u8>>>,
    },
    Encrypt {
        key: CK_OBJECT_HANDLE,
        mech: Mech,
    },
    Digest(DigestOp),
}

impl Operation {
    pub(super) fn kind(&self) -> OpKind {
        match self {
            Operation::Sign(_) => OpKind::Sign,
            Operation::Verify(_) => OpKind::Verify,
            Operation::Decrypt { .. } => OpKind::Decrypt,
            Operation::Encrypt { .. } => OpKind::Encrypt,
            Operation::Digest(_) => OpKind::Digest,
        }
    }

    /// Notes how the operation is fed; refuses a mix of one-shot and multi-part calls.
    /// Encryption and decryption are single-part only (their multi-part functions are not
    /// offered), so they never mix.
    fn feed(&mut self, part: Part) -> Result<()> {
        let seen = match self {
            Operation::Sign(op) | Operation::Verify(op) => &mut op.part,
            Operation::Digest(op) => &mut op.part,
            Operation::Decrypt { .. } | Operation::Encrypt { .. } => return Ok(()),
        };
        match seen {
            Some(p) if *p != part => Err(CallError::OperationActive(
                "one-shot and multi-part calls of one operation do not mix",
            )
            .into()),
            _ => {
                *seen = Some(part);
                Ok(())
            }
        }
    }
}

/// A digest: the hash so far and how it is fed.
#[derive(Debug)]
pub(crate) struct DigestOp {
    pub hasher: Hasher,
    pub part: Option<Part>,
}

/// Sign or verify: the key, the mechanism and what the data became so far.
#[derive(Debug)]
pub(crate) struct SignOp {
    pub key: CK_OBJECT_HANDLE,
    pub mech: Mech,
    /// Hash-and-sign mechanisms hash multi-part data as it comes.
    pub hasher: Option<Hasher>,
    /// Raw mechanisms collect multi-part data.
    pub buffer: Vec<u8>,
    /// One-shot or multi-part, once the first call told.
    pub part: Option<Part>,
    /// CKA_ALWAYS_AUTHENTICATE key: a C_Login(CKU_CONTEXT_SPECIFIC) is due first.
    pub needs_context_login: bool,
}

impl SignOp {
    pub(super) fn new(key: CK_OBJECT_HANDLE, mech: Mech, needs_context_login: bool) -> SignOp {
        let hasher = mech.data_hash().map(Hasher::new);
        SignOp {
            key,
            mech,
            hasher,
            buffer: Vec::new(),
            part: None,
            needs_context_login,
        }
    }

    /// Takes more data (multi-part).
    pub(super) fn update(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.hasher {
            Some(h) => h.update(data),
            None => {
                if self.buffer.len() + data.len() > 1 << 16 {
                    return Err(Error::DataLenRange("too much data for a raw mechanism"));
                }
                self.buffer.extend_from_slice(data)
            }
        }
        Ok(())
    }

    /// What goes into the private or public operation: the hash for hash-and-sign
    /// mechanisms, the collected data otherwise.
    pub(super) fn finish_input(&mut self, last: Option<&[u8]>) -> Vec<u8> {
        match self.hasher.take() {
            Some(mut h) => {
                if let Some(d) = last {
                    h.update(d);
                }
                h.finalize()
            }
            None => {
                let mut v = std::mem::take(&mut self.buffer);
                if let Some(d) = last {
                    v.extend_from_slice(d);
                }
                v
            }
        }
    }
}

/// One open session.
#[derive(Debug)]
pub(crate) struct Session {
    pub slot: CK_SLOT_ID,
    pub rw: bool,
    pub op: Option<Operation>,
    /// Handles found by C_FindObjectsInit, and how many were returned.
    pub find: Option<(Vec<CK_OBJECT_HANDLE>, usize)>,
}

impl Session {
    pub(super) fn new(slot: CK_SLOT_ID, rw: bool) -> Session {
        Session {
            slot,
            rw,
            op: None,
            find: None,
        }
    }
}

/// Session facts for CK_SESSION_INFO.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionFacts {
    pub slot: CK_SLOT_ID,
    pub state: CK_STATE,
    pub flags: CK_FLAGS,
}

impl Module {
    pub(crate) fn open_session(&self, slot: CK_SLOT_ID, rw: bool) -> Result<CK_SESSION_HANDLE> {
        let mut st = self.state.lock();
        if !st.slots.contains_key(&slot) {
            return Err(Error::from(CallError::SlotNotFound));
        }
        let so_logged = matches!(
            st.slots.get(&slot).and_then(|s| s.login.as_ref()),
            Some(Login::So { .. })
        );
        if so_logged && !rw {
            return Err(Error::from(CallError::SoSessionOnlyReadWrite));
        }
        let h = self.handle();
        st.sessions.insert(h, Session::new(slot, rw));
        Ok(h)
    }

    pub(crate) fn close_session(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.take(h)?;
        st.objects.retain(|_, (_, owner, _)| *owner != Some(h));
        if st.sessions.on(s.slot).next().is_none()
            && let Some(slot) = st.slots.get_mut(&s.slot)
        {
            // The last session of a slot closed: everybody is logged out.
            slot.login = None;
        }
        Ok(())
    }

    pub(crate) fn close_all_sessions(&self, slot: CK_SLOT_ID) -> Result<()> {
        let handles: Vec<CK_SESSION_HANDLE> = {
            let st = self.state.lock();
            if !st.slots.contains_key(&slot) {
                return Err(Error::from(CallError::SlotNotFound));
            }
            st.sessions
                .iter()
                .filter(|(_, s)| s.slot == slot)
                .map(|(h, _)| *h)
                .collect()
        };
        for h in handles {
            let _ = self.close_session(h);
        }
        Ok(())
    }

    pub(crate) fn session_facts(&self, h: CK_SESSION_HANDLE) -> Result<SessionFacts> {
        let st = self.state.lock();
        let s = st.sessions.find(&h)?;
        let login = st.slots.get(&s.slot).and_then(|x| x.login.as_ref());
        let state = match (login, s.rw) {
            (Some(Login::So { .. }), _) => CKS_RW_SO_FUNCTIONS,
            (Some(Login::User { .. }), true) => CKS_RW_USER_FUNCTIONS,
            (Some(Login::User { .. }), false) => CKS_RO_USER_FUNCTIONS,
            (None, true) => CKS_RW_PUBLIC_SESSION,
            (None, false) => CKS_RO_PUBLIC_SESSION,
        };
        let flags = CKF_SERIAL_SESSION | if s.rw { CKF_RW_SESSION } else { 0 };
        Ok(SessionFacts {
            slot: s.slot,
            state,
            flags,
        })
    }

    /// Cancels the session's active operation (C_SessionCancel).
    pub(crate) fn cancel(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.find_mut(&h)?;
        s.op = None;
        s.find = None;
        Ok(())
    }

    /// The session's slot, its R/W flag, and whether a user (or the SO) is logged in.
    pub(crate) fn session_view(
        &self,
        h: CK_SESSION_HANDLE,
    ) -> Result<(CK_SLOT_ID, bool, Option<CK_USER_TYPE>)> {
        let st = self.state.lock();
        let s = st.sessions.find(&h)?;
        let who = match st.slots.get(&s.slot).and_then(|x| x.login.as_ref()) {
            Some(Login::User { .. }) => Some(CKU_USER),
            Some(Login::So { .. }) => Some(CKU_SO),
            None => None,
        };
        Ok((s.slot, s.rw, who))
    }

    pub(super) fn start_op(&self, h: CK_SESSION_HANDLE, op: Operation) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.find_mut(&h)?;
        if s.op.is_some() {
            return Err(Error::from(CallError::OperationActive(
                "an operation is active",
            )));
        }
        s.op = Some(op);
        Ok(())
    }

    /// Runs `f` on the session's active operation of `kind`, fed as `part` when given
    /// (a mix of one-shot and multi-part calls is refused); CKR_OPERATION_NOT_INITIALIZED
    /// when no such operation is active. `f` runs under the state lock: no TPM work.
    pub(super) fn with_op<T>(
        &self,
        h: CK_SESSION_HANDLE,
        kind: OpKind,
        part: Option<Part>,
        f: impl FnOnce(&mut Operation) -> Result<T>,
    ) -> Result<T> {
        let mut st = self.state.lock();
        let s = st.sessions.find_mut(&h)?;
        match s.op.as_mut().filter(|op| op.kind() == kind) {
            Some(op) => {
                if let Some(p) = part {
                    op.feed(p)?;
                }
                f(op)
            }
            None => Err(CallError::NoOperation(kind.name()).into()),
        }
    }

    /// Takes the session's active operation of `kind` out, fed as `part` (the operation
    /// ends there, whatever follows); CKR_OPERATION_NOT_INITIALIZED when there is none.
    pub(super) fn take_op(
        &self,
        h: CK_SESSION_HANDLE,
        kind: OpKind,
        part: Part,
    ) -> Result<Operation> {
        let mut st = self.state.lock();
        let s = st.sessions.find_mut(&h)?;
        match s.op.as_mut().filter(|op| op.kind() == kind) {
            Some(op) => op.feed(part)?,
            None => return Err(CallError::NoOperation(kind.name()).into()),
        }
        s.op.take()
            .ok_or_else(|| CallError::NoOperation(kind.name()).into())
    }

    /// Ends the session's active operation if it is of `kind` (a failed call ends it,
    /// PKCS#11 2.40 §5.2: the edge decides when).
    pub(crate) fn end_op(&self, h: CK_SESSION_HANDLE, kind: OpKind) {
        if let Some(s) = self.state.lock().sessions.get_mut(&h)
            && s.op.as_ref().is_some_and(|op| op.kind() == kind)
        {
            s.op = None;
        }
    }
}
