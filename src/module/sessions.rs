//! Sessions and their active operations: open, close, the session's state for
//! CK_SESSION_INFO, and starting and taking the one operation a session may have.

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::Module;
use super::token::Login;
use crate::error::{CallError, Error, Result};
use crate::mechanism::{Hasher, Mech};

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
    Digest(Hasher),
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
    /// Whether C_SignUpdate was used (then C_Sign is refused, and vice versa).
    pub multipart: bool,
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
            multipart: false,
            needs_context_login,
        }
    }

    /// Takes more data (multi-part).
    pub(super) fn update(&mut self, data: &[u8]) -> Result<()> {
        self.multipart = true;
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
pub struct SessionFacts {
    pub slot: CK_SLOT_ID,
    pub state: CK_STATE,
    pub flags: CK_FLAGS,
}

impl Module {
    pub fn open_session(&self, slot: CK_SLOT_ID, rw: bool) -> Result<CK_SESSION_HANDLE> {
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

    pub fn close_session(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.remove(&h).ok_or_else(invalid_session)?;
        st.objects.retain(|_, (_, owner, _)| *owner != Some(h));
        if !st.sessions.values().any(|x| x.slot == s.slot)
            && let Some(slot) = st.slots.get_mut(&s.slot)
        {
            // The last session of a slot closed: everybody is logged out.
            slot.login = None;
        }
        Ok(())
    }

    pub fn close_all_sessions(&self, slot: CK_SLOT_ID) -> Result<()> {
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

    pub fn session_facts(&self, h: CK_SESSION_HANDLE) -> Result<SessionFacts> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
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
    pub fn cancel(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.get_mut(&h).ok_or_else(invalid_session)?;
        s.op = None;
        s.find = None;
        Ok(())
    }

    /// The session's slot, its R/W flag, and whether a user (or the SO) is logged in.
    pub(super) fn session_view(
        &self,
        h: CK_SESSION_HANDLE,
    ) -> Result<(CK_SLOT_ID, bool, Option<CK_USER_TYPE>)> {
        let st = self.state.lock();
        let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
        let who = match st.slots.get(&s.slot).and_then(|x| x.login.as_ref()) {
            Some(Login::User { .. }) => Some(CKU_USER),
            Some(Login::So { .. }) => Some(CKU_SO),
            None => None,
        };
        Ok((s.slot, s.rw, who))
    }

    pub(super) fn start_op(&self, h: CK_SESSION_HANDLE, op: Operation) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.get_mut(&h).ok_or_else(invalid_session)?;
        if s.op.is_some() {
            return Err(Error::from(CallError::OperationActive(
                "an operation is active",
            )));
        }
        s.op = Some(op);
        Ok(())
    }

    /// Takes the session's active operation out when `pick` accepts it (the operation ends
    /// there, whatever follows); otherwise leaves it in place and answers
    /// CKR_OPERATION_NOT_INITIALIZED for a `what` operation.
    pub(super) fn take_op<T>(
        &self,
        h: CK_SESSION_HANDLE,
        what: &'static str,
        pick: impl FnOnce(Operation) -> std::result::Result<T, Box<Operation>>,
    ) -> Result<T> {
        let mut st = self.state.lock();
        let s = st.sessions.get_mut(&h).ok_or_else(invalid_session)?;
        let refused = match s.op.take() {
            Some(op) => match pick(op) {
                Ok(t) => return Ok(t),
                Err(op) => Some(*op),
            },
            None => None,
        };
        s.op = refused;
        Err(CallError::NoOperation(what).into())
    }

    /// Ends the active operation (after an error the edge decides it ends).
    pub fn end_op(&self, h: CK_SESSION_HANDLE) {
        if let Some(s) = self.state.lock().sessions.get_mut(&h) {
            s.op = None;
        }
    }
}

pub(super) fn invalid_session() -> Error {
    Error::from(CallError::SessionNotFound)
}
