//! The PKCS#11 module's process state: cards as slots, sessions, objects, login state,
//! and the one TPM connection (DESIGN.md §5–§6). Everything here is safe Rust; the edge
//! (`ffi/pkcs11.rs`) turns pointers into these calls.
//!
//! Lock order (never take one to the left while holding one to the right):
//! `state` → the card's turn in this process (`card_turns`) → the store lock and the
//! card's lock file (inside `provision`) → the TPM connection (`tpm_link`, then its
//! cross-process lock file inside `Tpm::open`). TPM work runs without holding `state`, so
//! a slow RSA key generation never blocks `C_GetSlotList`; a thread waiting for a card
//! another thread of this process is using (stuck on a frozen TPM, say) waits at most the
//! TPM wait limit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use cryptoki_sys::*;
use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::card::{self, CardRecord};
use crate::error::{CallError, Error, Result};
use crate::mechanism::{self, HashAlg, ec::Curve};
use crate::object::{self, Attrs, KeyPairRequest, Object, ObjectRecord};
use crate::provision::{self, pin::open_card};
use crate::session::{Mech, Operation, Session, SignOp};
use crate::store::Store;
use tpm_link::{Lent, TpmLink};

mod tpm_link;
use crate::tpm::{self, Blob, PublicKey, Tpm, TpmError, templates::UserKeyKind};
pub use tpm_link::WAIT_ENV;

/// Who is logged in to a card, with what the TPM needs to use its keys.
#[derive(Debug)]
enum Login {
    /// The PIN-derived authValue of the card storage key, with the card's keys (guard,
    /// CSK) and the SRK record read at login (keys load without touching the disk).
    User {
        csk_auth: tpm::AuthValue,
        keys: card::CardKeys,
        srk: tpm::SrkRecord,
    },
    /// The PUK (security officer).
    So { puk: Zeroizing<Vec<u8>> },
}

/// One card as a slot.
#[derive(Debug)]
struct Slot {
    card_id: String,
    record: CardRecord,
    login: Option<Login>,
    /// Token objects by file name → handle (stable for the process).
    files: HashMap<String, CK_OBJECT_HANDLE>,
    profiles: Vec<CK_OBJECT_HANDLE>,
}

#[derive(Debug, Default)]
struct State {
    slots: BTreeMap<CK_SLOT_ID, Slot>,
    sessions: HashMap<CK_SESSION_HANDLE, Session>,
    /// Objects with the slot they belong to and, for session objects, their session.
    objects: HashMap<CK_OBJECT_HANDLE, (CK_SLOT_ID, Option<CK_SESSION_HANDLE>, Object)>,
    events: VecDeque<CK_SLOT_ID>,
}

/// Token facts the edge copies into CK_TOKEN_INFO.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    pub label: String,
    pub serial: String,
    pub flags: CK_FLAGS,
    pub min_pin: CK_ULONG,
    pub max_pin: CK_ULONG,
    pub sessions: CK_ULONG,
    pub rw_sessions: CK_ULONG,
    pub simulated: bool,
}

/// Session facts for CK_SESSION_INFO.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts {
    pub slot: CK_SLOT_ID,
    pub state: CK_STATE,
    pub flags: CK_FLAGS,
}

/// The result of one attribute read (C_GetAttributeValue processes all of them).
#[derive(Debug)]
pub enum AttrRead {
    Value(Vec<u8>),
    Sensitive,
    Invalid,
}

/// The module state of one process.
#[derive(Debug)]
pub struct Module {
    pid: u32,
    store: Store,
    state: Mutex<State>,
    link: Arc<TpmLink>,
    next_handle: AtomicU64,
    /// Entry points running now (C_Finalize waits for them, a bounded time).
    in_flight: Arc<AtomicUsize>,
    /// Each card's turn for operations that take its lock file (login, PIN changes,
    /// reformat), so that threads of this process queue here, with a bounded wait.
    card_turns: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// One entry point in flight; dropping it ends the call.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Module {
    /// Builds the state from the store alone: no TPM, no output (DESIGN.md §6).
    /// `threads_allowed`: false when the host forbids the library its own threads.
    pub fn new(threads_allowed: bool) -> Result<Module> {
        let m = Module {
            pid: std::process::id(),
            store: Store::open()?,
            state: Mutex::new(State::default()),
            link: TpmLink::new(threads_allowed),
            next_handle: AtomicU64::new(1),
            in_flight: Arc::new(AtomicUsize::new(0)),
            card_turns: Mutex::new(HashMap::new()),
        };
        m.refresh_slots();
        Ok(m)
    }

    /// The process that initialized this state.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Marks an entry point as running until the returned guard drops.
    pub fn call_started(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Entry points running now.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Runs `f` in the card's turn: after another thread's card operation, waiting for
    /// it at most the TPM wait limit (then CKR_DEVICE_ERROR, as for the TPM itself).
    fn in_card_turn<T>(&self, card_id: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let turn = Arc::clone(
            self.card_turns
                .lock()
                .entry(card_id.to_string())
                .or_default(),
        );
        let wait = self.link.wait();
        let Some(_turn) = turn.try_lock_for(wait) else {
            return Err(TpmError::Unresponsive {
                secs: wait.as_secs(),
            }
            .into());
        };
        f()
    }

    fn handle(&self) -> CK_ULONG {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// Forgets every login and session and closes the TPM connection when it can be had
    /// before `deadline` (C_Finalize).
    pub fn finalize(&self, deadline: Instant) {
        let mut st = self.state.lock();
        for slot in st.slots.values_mut() {
            slot.login = None;
        }
        st.sessions.clear();
        drop(st);
        self.link.shut_down(deadline);
    }

    // ----- slots and tokens -----

    /// Re-reads the store: cards made or destroyed by other processes appear or go.
    pub fn refresh_slots(&self) {
        let cards = provision::list(&self.store).unwrap_or_default();
        let mut st = self.state.lock();
        let mut seen = Vec::new();
        for c in cards.iter().filter(|c| !c.state.starts_with("damaged")) {
            let slot_id = CK_SLOT_ID::from(c.slot_id);
            seen.push(slot_id);
            let record = match provision::find(&self.store, &c.card_id) {
                Ok((_, r)) => r,
                Err(_) => continue,
            };
            match st.slots.get_mut(&slot_id) {
                Some(s) if s.card_id == c.card_id => s.record = record,
                _ => {
                    let slot = Slot {
                        card_id: c.card_id.clone(),
                        record,
                        login: None,
                        files: HashMap::new(),
                        profiles: Vec::new(),
                    };
                    if st.slots.insert(slot_id, slot).is_some() {
                        drop_slot_objects(&mut st, slot_id);
                    }
                    st.events.push_back(slot_id);
                }
            }
        }
        let gone: Vec<CK_SLOT_ID> = st
            .slots
            .keys()
            .copied()
            .filter(|s| !seen.contains(s))
            .collect();
        for s in gone {
            st.slots.remove(&s);
            drop_slot_objects(&mut st, s);
            st.sessions.retain(|_, sess| sess.slot != s);
            st.events.push_back(s);
        }
    }

    pub fn slot_ids(&self) -> Vec<CK_SLOT_ID> {
        self.state.lock().slots.keys().copied().collect()
    }

    pub fn slot_description(&self, slot: CK_SLOT_ID) -> Result<(String, bool)> {
        let st = self.state.lock();
        let s = st
            .slots
            .get(&slot)
            .ok_or_else(|| Error::from(CallError::SlotNotFound))?;
        Ok((
            format!("TPM virtual smart card {}", s.record.instance_id()),
            s.record.simulated,
        ))
    }

    pub fn token_facts(&self, slot: CK_SLOT_ID) -> Result<TokenFacts> {
        let st = self.state.lock();
        let s = st
            .slots
            .get(&slot)
            .ok_or_else(|| Error::from(CallError::SlotNotFound))?;
        // The card's files, not the slot's copy: another process (or C_InitPIN) may have
        // changed the record since the last C_GetSlotList.
        let (dir, record) = provision::find(&self.store, &s.card_id)?;
        let r = &record;
        let counters: card::Counters = dir.read(card::COUNTERS_FILE)?;
        let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED;
        if r.pin_initialized {
            flags |= CKF_USER_PIN_INITIALIZED;
        }
        if r.formatted {
            flags |= CKF_TOKEN_INITIALIZED;
        }
        if !r.has_puk {
            flags |= CKF_SO_PIN_LOCKED;
        }
        let pin_flags = |left: u32, max: u32, low, fin, locked| -> CK_FLAGS {
            match left {
                0 => locked,
                1 => fin | low,
                l if l < max => low,
                _ => 0,
            }
        };
        flags |= pin_flags(
            counters.pin_tries_left,
            r.pin_tries,
            CKF_USER_PIN_COUNT_LOW,
            CKF_USER_PIN_FINAL_TRY,
            CKF_USER_PIN_LOCKED,
        );
        if r.has_puk {
            flags |= pin_flags(
                counters.puk_tries_left,
                r.puk_tries,
                CKF_SO_PIN_COUNT_LOW,
                CKF_SO_PIN_FINAL_TRY,
                CKF_SO_PIN_LOCKED,
            );
        }
        let sessions = st.sessions.values().filter(|x| x.slot == slot).count() as CK_ULONG;
        let rw = st
            .sessions
            .values()
            .filter(|x| x.slot == slot && x.rw)
            .count() as CK_ULONG;
        Ok(TokenFacts {
            label: r.name.clone(),
            serial: r.card_id.replace('-', "").chars().take(16).collect(),
            flags,
            min_pin: r.pin_policy.min_len as CK_ULONG,
            max_pin: r.pin_policy.max_len as CK_ULONG,
            sessions,
            rw_sessions: rw,
            simulated: r.simulated,
        })
    }

    /// Next slot event, if any (C_WaitForSlotEvent with CKF_DONT_BLOCK).
    pub fn next_event(&self) -> Option<CK_SLOT_ID> {
        self.refresh_slots();
        self.state.lock().events.pop_front()
    }

    // ----- sessions -----

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
    fn session_view(
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

    // ----- login -----

    pub fn login(&self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
        let (slot, _, who) = self.session_view(h)?;
        match user {
            CKU_CONTEXT_SPECIFIC => return self.context_login(h, slot, pin),
            CKU_USER | CKU_SO => {}
            _ => return Err(Error::from(CallError::UserTypeInvalid("user type"))),
        }
        if let Some(w) = who {
            return Err(if w == user {
                Error::from(CallError::AlreadyLoggedIn)
            } else {
                Error::from(CallError::AnotherUserLoggedIn)
            });
        }
        let card_id = self.card_id(slot)?;
        if user == CKU_SO {
            {
                let st = self.state.lock();
                if st.sessions.values().any(|s| s.slot == slot && !s.rw) {
                    return Err(Error::from(CallError::ReadOnlySessionExists));
                }
            }
            self.in_card_turn(&card_id, || {
                let card = open_card(&self.store, &card_id)?;
                provision::pin::verify_puk_on(&card, pin, &Lent(&self.link))
            })?;
            self.set_login(
                slot,
                Login::So {
                    puk: Zeroizing::new(pin.to_vec()),
                },
            );
            return Ok(());
        }
        let login = self.check_pin(&card_id, pin)?;
        self.set_login(slot, login);
        Ok(())
    }

    /// Checks a PIN with the TPM (counting it); the login state it opens: the CSK
    /// authValue with the CSK blob and SRK record just read.
    fn check_pin(&self, card_id: &str, pin: &[u8]) -> Result<Login> {
        self.in_card_turn(card_id, || {
            let card = open_card(&self.store, card_id)?;
            let keys = provision::pin::verify_pin_on(&card, pin, &Lent(&self.link))?;
            Ok(Login::User {
                csk_auth: card.pin_auth(pin),
                keys,
                srk: card.record.srk.clone(),
            })
        })
    }

    fn context_login(&self, h: CK_SESSION_HANDLE, slot: CK_SLOT_ID, pin: &[u8]) -> Result<()> {
        {
            let st = self.state.lock();
            let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
            let pending = matches!(&s.op, Some(Operation::Sign(op)) if op.needs_context_login);
            if !pending {
                return Err(Error::from(CallError::NoOperation(
                    "no operation waits for a context login",
                )));
            }
        }
        let card_id = self.card_id(slot)?;
        self.check_pin(&card_id, pin)?;
        let mut st = self.state.lock();
        if let Some(Operation::Sign(op)) = st.sessions.get_mut(&h).and_then(|s| s.op.as_mut()) {
            op.needs_context_login = false;
        }
        Ok(())
    }

    /// The user's login state: the authValue and what loading keys needs from disk.
    fn user_login(&self, card_id: &str, csk_auth: tpm::AuthValue) -> Result<Login> {
        let (dir, record) = provision::find(&self.store, card_id)?;
        let keys = provision::pin::read_keys(&dir, &record)?;
        Ok(Login::User {
            csk_auth,
            keys,
            srk: record.srk,
        })
    }

    fn set_login(&self, slot: CK_SLOT_ID, login: Login) {
        if let Some(s) = self.state.lock().slots.get_mut(&slot) {
            s.login = Some(login);
        }
    }

    pub fn logout(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let (slot, _, who) = self.session_view(h)?;
        if who.is_none() {
            return Err(Error::from(CallError::NotLoggedIn("not logged in")));
        }
        let mut st = self.state.lock();
        if let Some(s) = st.slots.get_mut(&slot) {
            s.login = None;
        }
        for s in st.sessions.values_mut().filter(|s| s.slot == slot) {
            s.op = None;
        }
        drop(st);
        self.link.flush_objects();
        Ok(())
    }

    /// C_InitPIN: the SO (PUK) sets a new user PIN and unblocks the card.
    pub fn init_pin(&self, h: CK_SESSION_HANDLE, new_pin: &[u8]) -> Result<()> {
        let (slot, rw, _) = self.session_view(h)?;
        let puk = match self
            .state
            .lock()
            .slots
            .get(&slot)
            .and_then(|s| s.login.as_ref())
        {
            Some(Login::So { puk }) => puk.clone(),
            _ => {
                return Err(Error::from(CallError::NotLoggedIn(
                    "C_InitPIN needs the SO (PUK) logged in",
                )));
            }
        };
        if !rw {
            return Err(Error::from(CallError::ReadOnlySession(
                "R/W session needed",
            )));
        }
        let card_id = self.card_id(slot)?;
        self.in_card_turn(&card_id, || {
            let card = open_card(&self.store, &card_id)?;
            provision::pin::unblock_with_puk_on(&card, &puk, new_pin, &Lent(&self.link))
        })
    }

    /// C_SetPIN: the user changes the PIN, the SO the PUK; needs a R/W session.
    pub fn set_pin(&self, h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
        let (slot, rw, who) = self.session_view(h)?;
        if !rw {
            return Err(Error::from(CallError::ReadOnlySession(
                "R/W session needed",
            )));
        }
        let card_id = self.card_id(slot)?;
        self.in_card_turn(&card_id, || {
            let card = open_card(&self.store, &card_id)?;
            if who == Some(CKU_SO) {
                provision::pin::change_puk_on(&card, old, new, &Lent(&self.link))
            } else {
                provision::pin::change_pin_on(&card, old, new, &Lent(&self.link))
            }
        })?;
        if who == Some(CKU_USER) {
            // Keys load with the new PIN from now on.
            let rec = provision::find(&self.store, &card_id)?.1;
            let auth = card::pin_auth(&rec.pin_salt, new);
            let login = self.user_login(&card_id, auth)?;
            self.set_login(slot, login);
        }
        Ok(())
    }

    /// C_InitToken: reformat with the PUK as SO PIN; every object goes, the card ID
    /// stays, and until the SO sets a user PIN (C_InitPIN) none is known.
    pub fn init_token(&self, slot: CK_SLOT_ID, so_pin: &[u8], label: &str) -> Result<()> {
        let card_id = {
            let st = self.state.lock();
            let s = st
                .slots
                .get(&slot)
                .ok_or_else(|| Error::from(CallError::SlotNotFound))?;
            if st.sessions.values().any(|x| x.slot == slot) {
                return Err(Error::from(CallError::SessionsOpen));
            }
            if label.trim() != s.record.name {
                return Err(Error::from(CallError::BadArgument(
                    "the label must be the card's name (rename is not offered)",
                )));
            }
            s.card_id.clone()
        };
        let mut unknown = Zeroizing::new([0u8; 24]);
        getrandom::fill(unknown.as_mut_slice())
            .map_err(|e| CallError::Randomness(e.to_string()))?;
        let pin = Zeroizing::new(hex::encode(unknown.as_slice()).into_bytes());
        let max = usize::try_from(self.token_facts(slot)?.max_pin).unwrap_or(usize::MAX);
        let pin = &pin[..pin.len().min(max)];
        let r = self.in_card_turn(&card_id, || {
            provision::format::format_with(
                &self.store,
                &card_id,
                provision::format::FormatAuth::Puk(so_pin),
                pin,
                false,
                &Lent(&self.link),
            )
        });
        // A wrong, blocked or missing PUK answers as the SO PIN would (CKR_PIN_INCORRECT,
        // CKR_PIN_LOCKED), as the errors' own CK_RVs say.
        r?;
        self.remove_token_objects_from_disk(&card_id)?;
        let mut st = self.state.lock();
        drop_slot_objects(&mut st, slot);
        if let Some(s) = st.slots.get_mut(&slot) {
            s.files.clear();
        }
        drop(st);
        self.refresh_slots();
        Ok(())
    }

    fn remove_token_objects_from_disk(&self, card_id: &str) -> Result<()> {
        let (dir, _) = provision::find(&self.store, card_id)?;
        for name in dir.list("obj-")? {
            let _ = dir.remove(&name);
        }
        Ok(())
    }

    // ----- objects -----

    /// Loads the card's token objects into the handle table (once per file).
    fn sync_objects(&self, slot: CK_SLOT_ID) -> Result<()> {
        let card_id = self.card_id(slot)?;
        let (dir, _) = provision::find(&self.store, &card_id)?;
        let names = dir.list("obj-")?;
        let mut st = self.state.lock();
        let known: Vec<String> = match st.slots.get(&slot) {
            Some(s) => s.files.keys().cloned().collect(),
            None => return Err(Error::from(CallError::SlotNotFound)),
        };
        // Files other processes removed.
        let gone: Vec<String> = known
            .iter()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        for g in gone {
            if let Some(h) = st.slots.get_mut(&slot).and_then(|s| s.files.remove(&g)) {
                st.objects.remove(&h);
            }
        }
        let profiles_missing = st.slots.get(&slot).is_some_and(|s| s.profiles.is_empty());
        if profiles_missing {
            for attrs in object::profile_objects() {
                let h = self.handle();
                st.objects.insert(
                    h,
                    (
                        slot,
                        None,
                        Object {
                            attrs,
                            blob: None,
                            file: None,
                            read_only: true,
                        },
                    ),
                );
                if let Some(s) = st.slots.get_mut(&slot) {
                    s.profiles.push(h);
                }
            }
        }
        for name in names {
            if known.contains(&name) {
                continue;
            }
            let rec: ObjectRecord = match dir.read(&name) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let attrs = rec.to_attrs()?;
            let h = self.handle();
            st.objects.insert(
                h,
                (
                    slot,
                    None,
                    Object {
                        attrs,
                        blob: rec.blob,
                        file: Some(name.clone()),
                        read_only: false,
                    },
                ),
            );
            if let Some(s) = st.slots.get_mut(&slot) {
                s.files.insert(name, h);
            }
        }
        Ok(())
    }

    fn can_see(&self, obj: &Object, logged_in: bool) -> bool {
        !obj.is_private() || logged_in
    }

    /// Writes a token object's file (new or changed).
    fn persist(&self, slot: CK_SLOT_ID, obj: &Object) -> Result<()> {
        let Some(name) = &obj.file else { return Ok(()) };
        let card_id = self.card_id(slot)?;
        let (dir, _) = provision::find(&self.store, &card_id)?;
        dir.write(name, &ObjectRecord::from_object(obj), true)
    }

    /// Adds an object (token objects are written to disk first).
    fn add_object(
        &self,
        slot: CK_SLOT_ID,
        session: CK_SESSION_HANDLE,
        mut obj: Object,
    ) -> Result<CK_OBJECT_HANDLE> {
        if obj.is_token() {
            let name = format!("obj-{}.json", uuid::Uuid::new_v4().simple());
            obj.file = Some(name.clone());
            self.persist(slot, &obj)?;
            let h = self.handle();
            let mut st = self.state.lock();
            if let Some(s) = st.slots.get_mut(&slot) {
                s.files.insert(name, h);
            }
            st.objects.insert(h, (slot, None, obj));
            Ok(h)
        } else {
            let h = self.handle();
            self.state
                .lock()
                .objects
                .insert(h, (slot, Some(session), obj));
            Ok(h)
        }
    }

    /// Checks the session may create or change an object with these visibility flags.
    fn check_write_access(
        &self,
        h: CK_SESSION_HANDLE,
        token: bool,
        private: bool,
    ) -> Result<CK_SLOT_ID> {
        let (slot, rw, who) = self.session_view(h)?;
        if token && !rw {
            return Err(Error::from(CallError::ReadOnlySession(
                "token objects need a R/W session",
            )));
        }
        if (token || private) && who != Some(CKU_USER) {
            return Err(Error::from(CallError::NotLoggedIn("log in first")));
        }
        Ok(slot)
    }

    fn count_class(&self, slot: CK_SLOT_ID, class: CK_OBJECT_CLASS) -> usize {
        self.state
            .lock()
            .objects
            .values()
            .filter(|(s, owner, o)| *s == slot && owner.is_none() && o.class() == class)
            .count()
    }

    pub fn create_object(
        &self,
        h: CK_SESSION_HANDLE,
        template: &Attrs,
    ) -> Result<CK_OBJECT_HANDLE> {
        object::check_template(template)?;
        let class = object::template_ulong(template, CKA_CLASS)?
            .ok_or_else(|| Error::from(CallError::TemplateIncomplete("CKA_CLASS is required")))?;
        let attrs = match class {
            CKO_CERTIFICATE => object::certificate_attrs(template)?,
            CKO_DATA => object::data_attrs(template)?,
            CKO_PUBLIC_KEY => object::public_key_attrs(template)?,
            CKO_PRIVATE_KEY | CKO_SECRET_KEY => {
                return Err(Error::from(CallError::TemplateInconsistent(
                    "keys are generated in the TPM; importing private or secret keys is not offered",
                )));
            }
            _ => {
                return Err(Error::from(CallError::AttributeValueInvalid(
                    "object class not supported",
                )));
            }
        };
        let obj = Object {
            attrs,
            blob: None,
            file: None,
            read_only: false,
        };
        if class == CKO_DATA && obj.is_private() && obj.is_token() {
            return Err(Error::from(CallError::AttributeValueInvalid(
                "private token data objects are not offered yet (they would need encryption on disk)",
            )));
        }
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        if obj.is_token() {
            self.sync_objects(slot)?;
            if class == CKO_CERTIFICATE
                && self.count_class(slot, CKO_CERTIFICATE) >= object::MAX_CERTS
            {
                return Err(Error::from(CallError::CardFull(
                    "the card holds 90 certificates, the most it can",
                )));
            }
        }
        self.add_object(slot, h, obj)
    }

    pub fn destroy_object(&self, h: CK_SESSION_HANDLE, oh: CK_OBJECT_HANDLE) -> Result<()> {
        let obj = self.object_for(h, oh)?;
        if obj.read_only || !object::get_bool(&obj.attrs, CKA_DESTROYABLE).unwrap_or(true) {
            return Err(Error::from(CallError::ActionProhibited(
                "this object cannot be destroyed",
            )));
        }
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        if let Some(name) = &obj.file {
            let card_id = self.card_id(slot)?;
            let (dir, _) = provision::find(&self.store, &card_id)?;
            dir.remove(name)?;
        }
        let mut st = self.state.lock();
        st.objects.remove(&oh);
        if let (Some(name), Some(s)) = (&obj.file, st.slots.get_mut(&slot)) {
            s.files.remove(name);
        }
        if let Some(b) = &obj.blob {
            drop(st);
            self.link.forget(b);
        }
        Ok(())
    }

    /// The key of an active operation: gone (destroyed meanwhile) is
    /// CKR_KEY_HANDLE_INVALID, as PKCS#11 asks of operations.
    fn operation_key(&self, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> Result<Object> {
        self.object_for(h, key).map_err(|e| match e {
            Error::Call(CallError::ObjectNotFound) => {
                Error::from(CallError::KeyHandleInvalid("the operation's key is gone"))
            }
            other => other,
        })
    }

    /// An object the session may see.
    fn object_for(&self, h: CK_SESSION_HANDLE, oh: CK_OBJECT_HANDLE) -> Result<Object> {
        let (slot, _, who) = self.session_view(h)?;
        let st = self.state.lock();
        match st.objects.get(&oh) {
            Some((s, _, o)) if *s == slot && self.can_see(o, who == Some(CKU_USER)) => {
                Ok(o.clone())
            }
            _ => Err(Error::from(CallError::ObjectNotFound)),
        }
    }

    pub fn read_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        oh: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrRead>> {
        let obj = self.object_for(h, oh)?;
        Ok(types
            .iter()
            .map(|t| {
                let secret_value = *t == CKA_VALUE
                    && obj.class() == CKO_SECRET_KEY
                    && object::get_bool(&obj.attrs, CKA_SENSITIVE).unwrap_or(false);
                if obj.is_sensitive(*t) || secret_value {
                    AttrRead::Sensitive
                } else {
                    obj.attrs
                        .get(t)
                        .map_or(AttrRead::Invalid, |v| AttrRead::Value(v.clone()))
                }
            })
            .collect())
    }

    pub fn object_size(&self, h: CK_SESSION_HANDLE, oh: CK_OBJECT_HANDLE) -> Result<usize> {
        let obj = self.object_for(h, oh)?;
        Ok(obj.attrs.values().map(|v| v.len() + 16).sum())
    }

    pub fn set_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        oh: CK_OBJECT_HANDLE,
        template: &Attrs,
    ) -> Result<()> {
        object::check_template(template)?;
        let mut obj = self.object_for(h, oh)?;
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        if obj.read_only || !object::get_bool(&obj.attrs, CKA_MODIFIABLE).unwrap_or(true) {
            return Err(Error::from(CallError::ActionProhibited(
                "this object cannot be changed",
            )));
        }
        for (t, v) in template {
            match *t {
                CKA_LABEL | CKA_ID | CKA_SUBJECT | CKA_APPLICATION | CKA_START_DATE
                | CKA_END_DATE => {
                    obj.attrs.insert(*t, v.clone());
                }
                CKA_SIGN | CKA_DECRYPT | CKA_VERIFY | CKA_ENCRYPT | CKA_DERIVE => {
                    object::template_bool(template, *t)?;
                    obj.attrs.insert(*t, v.clone());
                }
                CKA_CLASS | CKA_KEY_TYPE | CKA_TOKEN | CKA_PRIVATE | CKA_MODULUS | CKA_EC_POINT
                | CKA_EC_PARAMS | CKA_VALUE | CKA_SENSITIVE | CKA_EXTRACTABLE | CKA_LOCAL => {
                    return Err(Error::from(CallError::AttributeReadOnly(
                        "attribute cannot be changed",
                    )));
                }
                _ => {
                    return Err(Error::from(CallError::AttributeTypeInvalid(
                        "attribute not supported",
                    )));
                }
            }
        }
        self.persist(slot, &obj)?;
        if let Some(entry) = self.state.lock().objects.get_mut(&oh) {
            entry.2 = obj;
        }
        Ok(())
    }

    pub fn copy_object(
        &self,
        h: CK_SESSION_HANDLE,
        oh: CK_OBJECT_HANDLE,
        template: &Attrs,
    ) -> Result<CK_OBJECT_HANDLE> {
        object::check_template(template)?;
        let mut obj = self.object_for(h, oh)?;
        if obj.read_only
            || obj.blob.is_some()
            || !object::get_bool(&obj.attrs, CKA_COPYABLE).unwrap_or(false)
        {
            return Err(Error::from(CallError::ActionProhibited(
                "this object cannot be copied",
            )));
        }
        for (t, v) in template {
            match *t {
                CKA_LABEL | CKA_ID | CKA_TOKEN | CKA_PRIVATE | CKA_MODIFIABLE => {
                    obj.attrs.insert(*t, v.clone());
                }
                _ => {
                    return Err(Error::from(CallError::AttributeReadOnly(
                        "attribute cannot be set on a copy",
                    )));
                }
            }
        }
        obj.file = None;
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        self.add_object(slot, h, obj)
    }

    pub fn find_init(&self, h: CK_SESSION_HANDLE, template: &Attrs) -> Result<()> {
        let (slot, _, who) = self.session_view(h)?;
        {
            let st = self.state.lock();
            let s = st.sessions.get(&h).ok_or_else(invalid_session)?;
            if s.find.is_some() {
                return Err(Error::from(CallError::OperationActive(
                    "a search is active",
                )));
            }
        }
        self.sync_objects(slot)?;
        let mut st = self.state.lock();
        let logged = who == Some(CKU_USER);
        let mut found: Vec<CK_OBJECT_HANDLE> = st
            .objects
            .iter()
            .filter(|(_, (s, owner, o))| {
                *s == slot
                    && owner.is_none_or(|x| x == h || st.sessions.contains_key(&x))
                    && self.can_see(o, logged)
                    && o.matches(template)
            })
            .map(|(k, _)| *k)
            .collect();
        found.sort_unstable();
        if let Some(s) = st.sessions.get_mut(&h) {
            s.find = Some((found, 0));
        }
        Ok(())
    }

    pub fn find_next(&self, h: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
        let mut st = self.state.lock();
        let s = st.sessions.get_mut(&h).ok_or_else(invalid_session)?;
        let (list, pos) = s
            .find
            .as_mut()
            .ok_or_else(|| Error::from(CallError::NoOperation("no search")))?;
        let end = pos.saturating_add(max).min(list.len());
        let out = list[*pos..end].to_vec();
        *pos = end;
        Ok(out)
    }

    pub fn find_final(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.get_mut(&h).ok_or_else(invalid_session)?;
        if s.find.take().is_none() {
            return Err(Error::from(CallError::NoOperation("no search")));
        }
        Ok(())
    }

    // ----- keys -----

    pub fn generate_key_pair(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &Mech,
        public_t: &Attrs,
        private_t: &Attrs,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        object::check_template(public_t)?;
        object::check_template(private_t)?;
        let token = object::template_bool(private_t, CKA_TOKEN)?
            .or(object::template_bool(public_t, CKA_TOKEN)?)
            .unwrap_or(false);
        let slot = self.check_write_access(h, token, true)?;
        for (t, forbidden) in [(CKA_SENSITIVE, false), (CKA_EXTRACTABLE, true)] {
            if object::template_bool(private_t, t)? == Some(forbidden) {
                return Err(Error::from(CallError::TemplateInconsistent(
                    "TPM keys are sensitive and never extractable",
                )));
            }
        }
        if object::template_bool(private_t, CKA_PRIVATE)? == Some(false) {
            return Err(Error::from(CallError::TemplateInconsistent(
                "private keys are private objects",
            )));
        }
        let (kind, mech_type) = match mech {
            Mech::RsaKeyPairGen => {
                let bits =
                    object::template_ulong(public_t, CKA_MODULUS_BITS)?.ok_or_else(|| {
                        Error::from(CallError::TemplateIncomplete(
                            "CKA_MODULUS_BITS is required",
                        ))
                    })?;
                if let Some(e) = public_t.get(&CKA_PUBLIC_EXPONENT) {
                    let trimmed: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                    if trimmed != [1, 0, 1] {
                        return Err(Error::from(CallError::AttributeValueInvalid(
                            "the TPM makes RSA keys with exponent 65537 only",
                        )));
                    }
                }
                match bits {
                    2048 => (UserKeyKind::Rsa2048, CKM_RSA_PKCS_KEY_PAIR_GEN),
                    3072 => (UserKeyKind::Rsa3072, CKM_RSA_PKCS_KEY_PAIR_GEN),
                    _ => {
                        return Err(Error::from(CallError::AttributeValueInvalid(
                            "RSA keys are 2048 or 3072 bits",
                        )));
                    }
                }
            }
            Mech::EcKeyPairGen => {
                let params = public_t
                    .get(&CKA_EC_PARAMS)
                    .or(private_t.get(&CKA_EC_PARAMS))
                    .ok_or_else(|| {
                        Error::from(CallError::TemplateIncomplete("CKA_EC_PARAMS is required"))
                    })?;
                match Curve::from_params_der(params) {
                    Some(Curve::P256) => (UserKeyKind::EccP256, CKM_EC_KEY_PAIR_GEN),
                    Some(Curve::P384) => (UserKeyKind::EccP384, CKM_EC_KEY_PAIR_GEN),
                    None => {
                        return Err(Error::from(CallError::AttributeValueInvalid(
                            "only the P-256 and P-384 curves",
                        )));
                    }
                }
            }
            _ => {
                return Err(Error::from(CallError::WrongMechanism(
                    "not a key-pair generation mechanism",
                )));
            }
        };
        if token {
            self.sync_objects(slot)?;
            if self.count_class(slot, CKO_PRIVATE_KEY) >= object::MAX_KEYS {
                return Err(Error::from(CallError::CardFull(
                    "the card holds 30 keys, the most it can",
                )));
            }
        }
        let (card_id, csk_auth) = self.user_auth(slot)?;
        let card = provision::find(&self.store, &card_id)?;
        if !card.1.formatted {
            return Err(Error::CardUnusable {
                name: card.1.name.clone(),
                reason: "it is not formatted yet (`tpmvsc format`)".into(),
            });
        }
        let keys = provision::pin::read_keys(&card.0, &card.1)?;
        let srk = card.1.srk.clone();
        let (blob, key) = self.tpm_do(|t| {
            t.use_srk(&srk)?;
            t.create_user_key(keys.csk_ref(), &csk_auth, kind)
        })?;
        let pick = |t: &Attrs, list: &[CK_ATTRIBUTE_TYPE]| -> Attrs {
            list.iter()
                .filter_map(|a| t.get(a).map(|v| (*a, v.clone())))
                .collect()
        };
        let req = KeyPairRequest {
            id: private_t.get(&CKA_ID).or(public_t.get(&CKA_ID)).cloned(),
            label: private_t
                .get(&CKA_LABEL)
                .or(public_t.get(&CKA_LABEL))
                .cloned(),
            token,
            private_usage: pick(
                private_t,
                &[
                    CKA_SIGN,
                    CKA_DECRYPT,
                    CKA_DERIVE,
                    CKA_ALWAYS_AUTHENTICATE,
                    CKA_MODIFIABLE,
                ],
            ),
            public_usage: pick(
                public_t,
                &[CKA_VERIFY, CKA_ENCRYPT, CKA_MODIFIABLE, CKA_PRIVATE],
            ),
            subject: private_t
                .get(&CKA_SUBJECT)
                .or(public_t.get(&CKA_SUBJECT))
                .cloned(),
        };
        let (mut pub_attrs, mut priv_attrs) = object::key_pair_objects(&key, mech_type, &req);
        if let Some(l) = public_t.get(&CKA_LABEL) {
            pub_attrs.insert(CKA_LABEL, l.clone());
        }
        if let Some(l) = private_t.get(&CKA_LABEL) {
            priv_attrs.insert(CKA_LABEL, l.clone());
        }
        let ph = self.add_object(
            slot,
            h,
            Object {
                attrs: pub_attrs,
                blob: None,
                file: None,
                read_only: false,
            },
        )?;
        let kh = self.add_object(
            slot,
            h,
            Object {
                attrs: priv_attrs,
                blob: Some(blob),
                file: None,
                read_only: false,
            },
        )?;
        Ok((ph, kh))
    }

    /// Card ID and CSK authValue of a slot whose user is logged in.
    fn user_auth(&self, slot: CK_SLOT_ID) -> Result<(String, tpm::AuthValue)> {
        let st = self.state.lock();
        let s = st
            .slots
            .get(&slot)
            .ok_or_else(|| Error::from(CallError::SlotNotFound))?;
        match &s.login {
            Some(Login::User { csk_auth, .. }) => Ok((s.card_id.clone(), csk_auth.clone())),
            _ => Err(Error::from(CallError::NotLoggedIn("log in first"))),
        }
    }

    fn card_id(&self, slot: CK_SLOT_ID) -> Result<String> {
        let st = self.state.lock();
        st.slots
            .get(&slot)
            .map(|s| s.card_id.clone())
            .ok_or_else(|| Error::from(CallError::SlotNotFound))
    }

    /// Runs TPM work on the process's connection (module/tpm_link.rs: opened on first
    /// need, kept during bursts, waited for at most a bounded time).
    fn tpm_do<T>(&self, f: impl FnOnce(&mut Tpm) -> std::result::Result<T, TpmError>) -> Result<T> {
        self.link.run(f).map_err(Error::from)
    }

    // ----- crypto operations -----

    fn key_for(
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

    fn start_op(&self, h: CK_SESSION_HANDLE, op: Operation) -> Result<()> {
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

    fn active_sign(&self, h: CK_SESSION_HANDLE) -> Result<(CK_OBJECT_HANDLE, bool)> {
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

    /// Runs `f` with the user key loaded (the CSK with the logged-in PIN's authValue).
    fn with_key<T>(
        &self,
        slot: CK_SLOT_ID,
        blob: &Blob,
        f: impl FnOnce(&mut Tpm, tpm::KeyRef) -> std::result::Result<T, TpmError>,
    ) -> Result<T> {
        let (csk_auth, keys, srk) = {
            let st = self.state.lock();
            match st.slots.get(&slot).and_then(|s| s.login.as_ref()) {
                Some(Login::User {
                    csk_auth,
                    keys,
                    srk,
                }) => (csk_auth.clone(), keys.clone(), srk.clone()),
                _ => return Err(Error::from(CallError::NotLoggedIn("log in first"))),
            }
        };
        self.tpm_do(|t| {
            t.use_srk(&srk)?;
            let k = t.load_user_key(keys.csk_ref(), &csk_auth, blob)?;
            f(t, k)
        })
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

    /// Takes the session's active operation out when `pick` accepts it (the operation ends
    /// there, whatever follows); otherwise leaves it in place and answers
    /// CKR_OPERATION_NOT_INITIALIZED for a `what` operation.
    fn take_op<T>(
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

    /// CKM_ECDH1_DERIVE: the TPM computes the shared point; its x coordinate becomes a
    /// generic secret session object.
    pub fn derive(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &Mech,
        base: CK_OBJECT_HANDLE,
        template: &Attrs,
    ) -> Result<CK_OBJECT_HANDLE> {
        object::check_template(template)?;
        let (slot, _, who) = self.session_view(h)?;
        if who != Some(CKU_USER) {
            return Err(Error::from(CallError::NotLoggedIn("log in first")));
        }
        let Mech::Ecdh { public } = mech else {
            return Err(Error::from(CallError::WrongMechanism("only ECDH1 derive")));
        };
        let obj = self.key_for(h, base, mech, CKA_DERIVE)?;
        let curve = curve_of(&obj.public_key()?)?;
        let point = mechanism::ec::point_from_der_or_raw(curve, public)
            .map_err(|_| Error::MechanismParamInvalid("the peer's public point"))?;
        let n = curve.field_len();
        let blob = obj
            .blob
            .clone()
            .ok_or_else(|| Error::from(CallError::KeyHandleInvalid("not a TPM key")))?;
        let z = self.with_key(slot, &blob, |t, k| {
            t.ecdh(k, &point[1..1 + n], &point[1 + n..])
        })?;
        let z = left_pad(&z, n);
        if object::template_bool(template, CKA_TOKEN)? == Some(true) {
            return Err(Error::from(CallError::TemplateInconsistent(
                "derived keys are session objects",
            )));
        }
        let mut a = Attrs::new();
        a.insert(CKA_CLASS, object::ulong(CKO_SECRET_KEY));
        a.insert(CKA_KEY_TYPE, object::ulong(CKK_GENERIC_SECRET));
        a.insert(CKA_TOKEN, object::boolean(false));
        a.insert(CKA_PRIVATE, object::boolean(true));
        a.insert(CKA_SENSITIVE, object::boolean(false));
        a.insert(CKA_EXTRACTABLE, object::boolean(true));
        a.insert(CKA_LOCAL, object::boolean(false));
        a.insert(CKA_DERIVE, object::boolean(false));
        a.insert(CKA_LABEL, Vec::new());
        a.insert(CKA_ID, Vec::new());
        for t in [CKA_LABEL, CKA_ID, CKA_SENSITIVE, CKA_EXTRACTABLE] {
            if let Some(v) = template.get(&t) {
                a.insert(t, v.clone());
            }
        }
        let len = object::template_ulong(template, CKA_VALUE_LEN)?.map_or(z.len(), |l| {
            usize::try_from(l).unwrap_or(usize::MAX).min(z.len())
        });
        a.insert(CKA_VALUE_LEN, object::ulong(len as CK_ULONG));
        a.insert(CKA_VALUE, z[..len].to_vec());
        self.add_object(
            slot,
            h,
            Object {
                attrs: a,
                blob: None,
                file: None,
                read_only: false,
            },
        )
    }

    /// Fills `out` with random bytes from the TPM, a chunk per turn on the connection so
    /// that other threads' commands get in between.
    pub fn random(&self, h: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
        self.session_view(h)?;
        for chunk in out.chunks_mut(RANDOM_CHUNK) {
            let r = self.tpm_do(|t| t.random(chunk.len()))?;
            chunk.copy_from_slice(&r);
        }
        Ok(())
    }
}

/// Random bytes fetched per turn on the TPM connection.
const RANDOM_CHUNK: usize = 1024;
/// Most random bytes one C_GenerateRandom returns (about 5 s on swtpm).
pub const MAX_RANDOM: usize = 1 << 20;

fn drop_slot_objects(st: &mut State, slot: CK_SLOT_ID) {
    st.objects.retain(|_, (s, _, _)| *s != slot);
    if let Some(s) = st.slots.get_mut(&slot) {
        s.files.clear();
        s.profiles.clear();
    }
}

fn invalid_session() -> Error {
    Error::from(CallError::SessionNotFound)
}

fn check_sign_mech(m: &Mech) -> Result<()> {
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

fn signature_len(k: &PublicKey) -> usize {
    match k {
        PublicKey::Rsa { modulus, .. } => modulus.len(),
        PublicKey::Ecc { x, .. } => 2 * x.len(),
    }
}

fn curve_of(k: &PublicKey) -> Result<Curve> {
    match k {
        PublicKey::Ecc { bits: 256, .. } => Ok(Curve::P256),
        PublicKey::Ecc { bits: 384, .. } => Ok(Curve::P384),
        _ => Err(Error::KeyTypeInconsistent),
    }
}

fn rsa_parts(k: &PublicKey) -> Result<(&[u8], &[u8])> {
    match k {
        PublicKey::Rsa { modulus, exponent } => Ok((modulus, exponent)),
        PublicKey::Ecc { .. } => Err(Error::KeyTypeInconsistent),
    }
}

/// CKM_ECDSA input as the TPM takes it: a digest of a known hash length; other lengths
/// are cut or left-padded to the field size (SEC1 §4.1.3 uses the leftmost bits).
fn ecdsa_input(curve: Curve, data: &[u8]) -> Vec<u8> {
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
fn bit_len(n: &[u8]) -> usize {
    let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
    match n.get(first) {
        Some(b) => (n.len() - first - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

fn left_pad(v: &[u8], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}
