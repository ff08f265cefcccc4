//! Format / reformat (DESIGN.md §2–§3): a new card storage key with a new PIN, so every
//! key and object under the old one is gone and old copies of the store stop working.
//! Authorized with the PUK or an administrator's response; the card ID stays unless a
//! new one is given. Every file is written into a hidden directory that replaces the
//! card's in one atomic exchange.

use zeroize::Zeroizing;

use crate::card::{
    self, ADMIN_FILE, AdminFile, CARD_FILE, COUNTERS_FILE, CSK_FILE, Counter, Counters, ObjectFile,
    PUK_FILE, PinPolicy,
};
use crate::error::{Error, Result};
use crate::provision::pin::open_card;
use crate::provision::{CardSummary, admin, random_bytes, summarize};
use crate::store::Store;
use crate::tpm::{self, Tpm, templates};

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
    format_with(store, card_ref, auth, new_pin, true)
}

/// [`format()`] with the choice to leave the user PIN unknown (C_InitToken: the PIN set is
/// random until the SO sets one with C_InitPIN; the token shows no user PIN till then).
pub fn format_with(
    store: &Store,
    card_ref: &str,
    auth: FormatAuth<'_>,
    new_pin: &[u8],
    pin_known: bool,
) -> Result<CardSummary> {
    let store_lock = store.lock()?;
    let card = open_card(store, card_ref)?;
    if pin_known {
        card.record.pin_policy.check("new PIN", new_pin)?;
    }
    let mut record = card.record.clone();

    let mut puk_secret: Option<Zeroizing<Vec<u8>>> = None;
    let mut admin_secret = None;
    match auth {
        FormatAuth::Puk(puk) => {
            if !record.has_puk {
                return Err(Error::NoPuk(record.name.clone()));
            }
            let obj: ObjectFile = card.dir.read(PUK_FILE)?;
            let a = card.puk_auth(puk);
            card.attempt(Counter::Puk, |t| t.check_auth(&obj.blob, &a))?;
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
            admin_secret = Some(admin::take_secret(&card, response)?);
        }
    }

    let mut tpm = Tpm::open()?;
    tpm.use_srk(&record.srk)?;
    let new = store.begin_replacement(&store_lock, &card.dir)?;
    if let Some(puk) = &puk_secret {
        record.puk_salt = random_bytes(32)?.to_vec();
        let a = card::pin_auth(&record.puk_salt, puk);
        let blob =
            tpm.create_under_srk(templates::sealed_secret()?, &a, Some(&random_bytes(16)?))?;
        record.puk_name = Some(blob.name());
        new.write(PUK_FILE, &ObjectFile { blob })?;
    } else if record.has_puk {
        new.write(PUK_FILE, &card.dir.read::<ObjectFile>(PUK_FILE)?)?;
    }
    if let Some(x) = &admin_secret {
        let old: AdminFile = card.dir.read(ADMIN_FILE)?;
        let blob = tpm.create_under_srk(
            templates::sealed_secret()?,
            x.as_slice(),
            Some(&random_bytes(16)?),
        )?;
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
    let policy = tpm::policy::auth_policy(&record.branches());
    let pin_auth = card::pin_auth(&record.pin_salt, new_pin);
    let csk = tpm.create_under_srk(templates::card_storage_key(&policy)?, &pin_auth, None)?;
    drop(tpm);
    record.formatted = true;
    record.pin_initialized = pin_known;
    new.write(CSK_FILE, &ObjectFile { blob: csk })?;
    let mut counters: Counters = card.dir.read(COUNTERS_FILE)?;
    counters.pin_tries_left = record.pin_tries;
    new.write(COUNTERS_FILE, &counters)?;
    new.write(CARD_FILE, &record)?;
    let dir = new.commit_replacing()?;
    drop(card);
    drop(store_lock);
    summarize(&dir, &record)
}
