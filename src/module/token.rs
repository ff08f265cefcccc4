//! Login state of a card and the PIN calls: C_Login (user, SO = PUK, context-specific),
//! C_Logout, C_InitPIN, C_SetPIN and C_InitToken. Every secret is checked by the TPM
//! through `provision`, in the card's turn of this process.

use super::tables::Table;
use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::Module;
use super::registry::drop_slot_objects;
use super::sessions::Operation;
use super::tpm_link::Lent;
use crate::card::{self};
use crate::error::{CallError, Error, Result};
use crate::provision::{self, pin::open_card};
use crate::tpm::{self};

/// Who is logged in to a card, with what the TPM needs to use its keys.
#[derive(Debug)]
pub(super) enum Login {
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

impl Module {
    pub(crate) fn login(&self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
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
                if st.sessions.on(slot).any(|s| !s.rw) {
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
    pub(super) fn check_pin(&self, card_id: &str, pin: &[u8]) -> Result<Login> {
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

    pub(super) fn context_login(
        &self,
        h: CK_SESSION_HANDLE,
        slot: CK_SLOT_ID,
        pin: &[u8],
    ) -> Result<()> {
        {
            let st = self.state.lock();
            let s = st.sessions.find(&h)?;
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
    pub(super) fn user_login(&self, card_id: &str, csk_auth: tpm::AuthValue) -> Result<Login> {
        let (dir, record) = provision::find(&self.store, card_id)?;
        let keys = provision::pin::read_keys(&dir, &record)?;
        Ok(Login::User {
            csk_auth,
            keys,
            srk: record.srk,
        })
    }

    pub(super) fn set_login(&self, slot: CK_SLOT_ID, login: Login) {
        if let Some(s) = self.state.lock().slots.get_mut(&slot) {
            s.login = Some(login);
        }
    }

    pub(crate) fn logout(&self, h: CK_SESSION_HANDLE) -> Result<()> {
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
    pub(crate) fn init_pin(&self, h: CK_SESSION_HANDLE, new_pin: &[u8]) -> Result<()> {
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
    pub(crate) fn set_pin(&self, h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
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
    pub(crate) fn init_token(&self, slot: CK_SLOT_ID, so_pin: &[u8], label: &str) -> Result<()> {
        let card_id = {
            let st = self.state.lock();
            let s = st.slots.find(&slot)?;
            if st.sessions.on(slot).next().is_some() {
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

    pub(super) fn remove_token_objects_from_disk(&self, card_id: &str) -> Result<()> {
        let (dir, _) = provision::find(&self.store, card_id)?;
        for name in dir.list("obj-")? {
            let _ = dir.remove(&name);
        }
        Ok(())
    }

    /// Card ID and CSK authValue of a slot whose user is logged in.
    pub(super) fn user_auth(&self, slot: CK_SLOT_ID) -> Result<(String, tpm::AuthValue)> {
        let st = self.state.lock();
        let s = st.slots.find(&slot)?;
        match &s.login {
            Some(Login::User { csk_auth, .. }) => Ok((s.card_id.clone(), csk_auth.clone())),
            _ => Err(Error::from(CallError::NotLoggedIn("log in first"))),
        }
    }
}
