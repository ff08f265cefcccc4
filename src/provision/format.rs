//! Format / reformat (DESIGN.md §2–§3): a new card storage key with a new PIN, so every
//! key and object under the old one is gone, and the card's counter moves on so that the
//! TPM refuses every old copy of the card's files. Authorized with the PUK or an
//! administrator's response; the card ID stays. Crash order: the new card is written into
//! a hidden directory (its guard bound to the counter's next value), then the counter is
//! incremented, then the directories are exchanged in one rename; `recover` finishes or
//! rolls back an interrupted format by the counter's value.

use zeroize::Zeroizing;

use crate::card::{
    self, ADMIN_FILE, AdminFile, CARD_FILE, COUNTERS_FILE, CSK_FILE, CardRecord, Counters,
    GUARD_FILE, ObjectFile, PUK_FILE, PinPolicy,
};
use crate::error::{Error, Result};
use crate::provision::access::{OwnTpm, TpmAccess};
use crate::provision::pin::{OpenCard, card_error, open_card, verify_puk_on};
use crate::provision::{CardSummary, admin, random_bytes, recover, summarize, uuid_bytes};
use crate::store::{NewCard, Store};
use crate::tpm::{NvCounter, Tpm, TpmError, templates};

/// What authorizes a format.
#[derive(Debug, Clone, Copy)]
pub enum FormatAuth<'a> {
    /// The card's PUK.
    Puk(&'a [u8]),
    /// An administrator's response to the card's next challenge, and — for a card with
    /// a PUK — the new PUK: the PUK object is made anew too (DESIGN.md §2), and the
    /// administrator does not know the old PUK.
    Admin(&'a [u8; 8], Option<&'a [u8]>),
}

/// Formats (or reformats) a card: new CSK and PIN, a new PUK object when the PUK is at
/// hand, a new admin object when the admin's unblock secret is (its remaining challenges
/// stay valid); objects whose secret is not at hand are kept.
pub fn format(
    store: &Store,
    card_ref: &str,
    auth: FormatAuth<'_>,
    new_pin: &[u8],
) -> Result<CardSummary> {
    format_with(store, card_ref, auth, new_pin, true, &OwnTpm::new())
}

/// [`format()`] with the choice to leave the user PIN unknown (C_InitToken: the PIN set is
/// random until the SO sets one with C_InitPIN; the token shows no user PIN till then).
pub(crate) fn format_with(
    store: &Store,
    card_ref: &str,
    auth: FormatAuth<'_>,
    new_pin: &[u8],
    pin_known: bool,
    tpm: &impl TpmAccess,
) -> Result<CardSummary> {
    let store_lock = store.lock()?;
    // An earlier interrupted format of this card may hold its only working copy.
    recover::recover_locked(store, &store_lock, tpm)?;
    let card = open_card(store, card_ref)?;
    if pin_known {
        card.record.pin_policy.check("new PIN", new_pin)?;
    }
    let mut record = card.record.clone();

    let mut puk_secret: Option<Zeroizing<Vec<u8>>> = None;
    let mut admin_secret = None;
    match auth {
        FormatAuth::Puk(puk) => {
            verify_puk_on(&card, puk, tpm)?;
            puk_secret = Some(Zeroizing::new(puk.to_vec()));
        }
        FormatAuth::Admin(response, new_puk) => {
            if record.has_puk {
                let p = new_puk.ok_or_else(|| {
                    Error::Usage(
                        "this card has a PUK: a format with the admin key sets a new PUK too"
                            .into(),
                    )
                })?;
                PinPolicy::default().check("new PUK", p)?;
                puk_secret = Some(Zeroizing::new(p.to_vec()));
            }
            admin_secret = Some(admin::take_secret(&card, response, tpm)?);
        }
    }

    let new = tpm.run(|tpm| -> Result<NewCard> {
        tpm.use_srk(&record.srk)
            .map_err(|e| card_error(&record.name, &card.dir, e))?;
        // The counter the new card is bound to: one past the counter's value, so that the
        // increment below revokes the old card; a card made without a counter gets one.
        let (counter, increment) = match record.counter {
            Some(c) => {
                let value = tpm
                    .counter_read(c.index)
                    .map_err(|e| card_error(&record.name, &card.dir, e))?;
                if value > c.bound {
                    return Err(card_error(&record.name, &card.dir, TpmError::Revoked));
                }
                (
                    NvCounter {
                        index: c.index,
                        bound: value + 1,
                    },
                    true,
                )
            }
            None => match tpm.counter_define(&uuid_bytes(&record.card_id)) {
                Ok(c) => (c, false),
                // The index this card ID gives is defined: the record lost its counter (it
                // was altered), so copies of the card may still use it. Bind the new card
                // past it and increment it, as for any format.
                Err(TpmError::CounterTaken(index)) => {
                    let value = tpm.counter_read(index)?;
                    (
                        NvCounter {
                            index,
                            bound: value + 1,
                        },
                        true,
                    )
                }
                Err(e) => return Err(e.into()),
            },
        };
        let new = store.begin_replacement(&store_lock, &card.dir)?;
        let written = write_new_card(
            tpm,
            &card,
            &new,
            &mut record,
            counter,
            puk_secret.as_ref().map(|p| p.as_slice()),
            admin_secret.as_ref().map(|x| x.as_slice()),
            new_pin,
            pin_known,
        );
        if let Err(e) = written {
            if !increment {
                let _ = tpm.counter_undefine(counter.index);
            }
            let _ = store.discard(&store_lock, new.as_card_dir().entry_name());
            return Err(e);
        }
        // From here the new card works and, once the counter moves, the old one does not: a
        // crash in between leaves the old card working; after it, the next command swaps the
        // new one in (`recover`).
        if increment {
            tpm.counter_increment(counter.index)?;
        }
        Ok(new)
    })?;
    let dir = new.commit_replacing()?;
    drop(card);
    drop(store_lock);
    summarize(&dir, &record)
}

/// Makes the new card's objects (PUK and admin objects when their secrets are at hand,
/// the guard for `counter`, the CSK under it) and writes every file into `new`.
#[allow(clippy::too_many_arguments)]
fn write_new_card(
    tpm: &mut Tpm,
    card: &OpenCard,
    new: &NewCard,
    record: &mut CardRecord,
    counter: NvCounter,
    puk_secret: Option<&[u8]>,
    admin_secret: Option<&[u8]>,
    new_pin: &[u8],
    pin_known: bool,
) -> Result<()> {
    if let Some(puk) = puk_secret {
        record.puk_salt = random_bytes(32)?.to_vec();
        let a = card::pin_auth(&record.puk_salt, puk);
        let blob =
            tpm.create_under_srk(templates::sealed_secret()?, &a, Some(&random_bytes(16)?))?;
        record.puk_name = Some(blob.name());
        new.write(PUK_FILE, &ObjectFile { blob })?;
    } else if record.has_puk {
        new.write(PUK_FILE, &card.dir.read::<ObjectFile>(PUK_FILE)?)?;
    }
    if let Some(x) = admin_secret {
        let old: AdminFile = card.dir.read(ADMIN_FILE)?;
        let blob =
            tpm.create_under_srk(templates::sealed_secret()?, x, Some(&random_bytes(16)?))?;
        record.admin_name = Some(blob.name());
        new.write(
            ADMIN_FILE,
            &AdminFile {
                blob,
                tickets: old.tickets,
            },
        )?;
    } else if card.dir.has(ADMIN_FILE) {
        new.write(ADMIN_FILE, &card.dir.read::<AdminFile>(ADMIN_FILE)?)?;
    }
    record.pin_salt = random_bytes(32)?.to_vec();
    let guard = tpm.create_guard(counter)?;
    let pin_auth = card::pin_auth(&record.pin_salt, new_pin);
    let csk = tpm.create_csk(Some(&guard), &record.csk_policy(), &pin_auth)?;
    record.formatted = true;
    record.pin_initialized = pin_known;
    record.counter = Some(counter);
    new.write(GUARD_FILE, &ObjectFile { blob: guard.blob })?;
    new.write(CSK_FILE, &ObjectFile { blob: csk })?;
    let mut counters: Counters = card.dir.read(COUNTERS_FILE)?;
    counters.pin_tries_left = record.pin_tries;
    new.write(COUNTERS_FILE, &counters)?;
    new.write(CARD_FILE, &*record)
}
