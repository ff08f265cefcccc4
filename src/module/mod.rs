//! The PKCS#11 module's process state: cards as slots, sessions, objects, login state,
//! and the one TPM connection (DESIGN.md §5–§6). Everything here is safe Rust; the edge
//! (`ffi/`) turns pointers into these calls. The rooms: `registry` (cards as slots),
//! `token` (login and PIN calls), `sessions` (sessions and their operations), `objects`
//! (handles, attributes, searches), `keys` (key pairs, ECDH, random), `crypto` (sign,
//! verify, decrypt, encrypt, digest), `tpm_link` (the TPM connection) and `tables` (the slot,
//! session and object tables, each answering a missing handle with its own error).
//!
//! Locks follow the crate's one lock order (crate docs, "Lock order"): `state` first and
//! never across TPM work, then `card_turns`, then what `provision` and `tpm_link` take.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use cryptoki_sys::*;
use parking_lot::Mutex;

use crate::error::Result;
use crate::store::Store;
use tables::{Objects, Sessions, Slots};
use tpm_link::TpmLink;

mod crypto;
mod keys;
mod objects;
mod registry;
mod sessions;
mod tables;
mod token;
mod tpm_link;

use crate::tpm::TpmError;
pub(crate) use keys::MAX_RANDOM;
pub(crate) use objects::AttrRead;
pub(crate) use sessions::{OpKind, Part};

#[derive(Debug, Default)]
struct State {
    slots: Slots,
    sessions: Sessions,
    objects: Objects,
    events: VecDeque<CK_SLOT_ID>,
}

/// The module state of one process.
#[derive(Debug)]
pub(crate) struct Module {
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
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Module {
    /// Builds the state from the store alone: no TPM, no output (DESIGN.md §6).
    /// `threads_allowed`: false when the host forbids the library its own threads.
    pub(crate) fn new(threads_allowed: bool) -> Result<Module> {
        // Settings are read again at each initialisation: a changed file counts from now.
        crate::config::reload();
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
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Marks an entry point as running until the returned guard drops.
    pub(crate) fn call_started(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Entry points running now.
    pub(crate) fn calls_in_flight(&self) -> usize {
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
    pub(crate) fn finalize(&self, deadline: Instant) {
        let mut st = self.state.lock();
        for slot in st.slots.values_mut() {
            slot.login = None;
        }
        st.sessions.clear();
        drop(st);
        self.link.shut_down(deadline);
    }
}
