//! Cards as slots: the registry of the process's view of the store (re-read when a
//! client asks for the slot list), token facts for CK_TOKEN_INFO, and slot events.

use super::tables::Table;
use std::collections::HashMap;

use cryptoki_sys::*;

use super::token::Login;
use super::{Module, State};
use crate::card::{self, CardRecord};
use crate::error::Result;
use crate::provision::{self};

/// One card as a slot.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) card_id: String,
    pub(super) record: CardRecord,
    pub(super) login: Option<Login>,
    /// Token objects by file name → handle (stable for the process).
    pub(super) files: HashMap<String, CK_OBJECT_HANDLE>,
    pub(super) profiles: Vec<CK_OBJECT_HANDLE>,
}

/// Token facts the edge copies into CK_TOKEN_INFO.
#[derive(Debug, Clone)]
pub(crate) struct TokenFacts {
    pub label: String,
    pub serial: String,
    pub flags: CK_FLAGS,
    pub min_pin: CK_ULONG,
    pub max_pin: CK_ULONG,
    pub sessions: CK_ULONG,
    pub rw_sessions: CK_ULONG,
    pub simulated: bool,
}

impl Module {
    /// Re-reads the store: cards made or destroyed by other processes appear or go.
    pub(crate) fn refresh_slots(&self) {
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

    pub(crate) fn slot_ids(&self) -> Vec<CK_SLOT_ID> {
        self.state.lock().slots.keys().copied().collect()
    }

    pub(crate) fn slot_description(&self, slot: CK_SLOT_ID) -> Result<(String, bool)> {
        let st = self.state.lock();
        let s = st.slots.find(&slot)?;
        Ok((
            format!("TPM virtual smart card {}", s.record.instance_id()),
            s.record.simulated,
        ))
    }

    pub(crate) fn token_facts(&self, slot: CK_SLOT_ID) -> Result<TokenFacts> {
        let st = self.state.lock();
        let s = st.slots.find(&slot)?;
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
        let sessions = st.sessions.on(slot).count() as CK_ULONG;
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
    pub(crate) fn next_event(&self) -> Option<CK_SLOT_ID> {
        self.refresh_slots();
        self.state.lock().events.pop_front()
    }

    pub(super) fn card_id(&self, slot: CK_SLOT_ID) -> Result<String> {
        let st = self.state.lock();
        st.slots.find(&slot).map(|s| s.card_id.clone())
    }
}

pub(super) fn drop_slot_objects(st: &mut State, slot: CK_SLOT_ID) {
    st.objects.retain(|_, (s, _, _)| *s != slot);
    if let Some(s) = st.slots.get_mut(&slot) {
        s.files.clear();
        s.profiles.clear();
    }
}
