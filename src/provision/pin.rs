//! PIN and PUK after creation (DESIGN.md §2): check, change, unblock. The TPM decides
//! every time: a wrong secret is a TPM authorization failure; the card's retry counters
//! only give PKCS#11 its PIN flags and block the card in software.

use crate::card::{
    self, COUNTERS_FILE, CSK_FILE, CardKeys, CardRecord, Counter, Counters, GUARD_FILE, ObjectFile,
    PUK_FILE, PinPolicy,
};
use crate::error::{Error, Result};
use crate::provision::access::{OwnTpm, TpmAccess};
use crate::store::{CardDir, LockGuard, Store};
use crate::tpm::{Authorizer, Guard, Tpm, TpmError};

/// A card opened for an update: directory checked private, its lock held.
#[derive(Debug)]
pub(crate) struct OpenCard {
    pub dir: CardDir,
    pub record: CardRecord,
    _lock: LockGuard,
}

/// Finds a card, refuses a directory others can touch, and takes the card's lock.
pub(crate) fn open_card(store: &Store, card_ref: &str) -> Result<OpenCard> {
    let (dir, record) = super::find(store, card_ref)?;
    dir.check_private()?;
    let lock = store.lock_card(&dir)?;
    // Re-read under the lock: another process may have changed the card meanwhile.
    let record = dir.read(card::CARD_FILE).unwrap_or(record);
    Ok(OpenCard {
        dir,
        record,
        _lock: lock,
    })
}

impl OpenCard {
    /// Runs one TPM attempt that spends a try of `which`: the counter is decremented and
    /// saved before the TPM sees the secret, reset on success, kept on an authorization
    /// failure, and restored on any other answer (lockout, TPM gone, bug). The TPM comes
    /// from `tpm`, taken while the card's lock is held.
    pub(crate) fn attempt<T>(
        &self,
        which: Counter,
        tpm: &impl TpmAccess,
        f: impl FnOnce(&mut Tpm) -> std::result::Result<T, TpmError>,
    ) -> Result<T> {
        let mut counters: Counters = self.dir.read(COUNTERS_FILE)?;
        if counters.left(which) == 0 {
            return Err(blocked(which));
        }
        let before = counters;
        counters.set(which, before.left(which) - 1);
        self.dir.write(COUNTERS_FILE, &counters, false)?;
        let outcome = tpm.run(|t| {
            t.use_srk(&self.record.srk)?;
            f(t)
        });
        match outcome {
            Ok(v) => {
                let mut reset = counters;
                reset.set(which, self.record.max_tries(which));
                if reset != counters {
                    self.dir.write(COUNTERS_FILE, &reset, false)?;
                }
                Ok(v)
            }
            Err(TpmError::AuthFail) => Err(wrong(which, counters.left(which))),
            Err(other) => {
                self.dir.write(COUNTERS_FILE, &before, false)?;
                Err(card_error(&self.record.name, &self.dir, other))
            }
        }
    }

    /// Spends one try of `which` without asking the TPM (a response that fails its check
    /// value).
    pub(crate) fn spend_try(&self, which: Counter) -> Result<Error> {
        let mut counters: Counters = self.dir.read(COUNTERS_FILE)?;
        let left = counters.left(which).saturating_sub(1);
        counters.set(which, left);
        self.dir.write(COUNTERS_FILE, &counters, false)?;
        Ok(wrong(which, left))
    }

    /// Refills one counter (after an unblock).
    pub(crate) fn reset_counter(&self, which: Counter) -> Result<()> {
        let mut counters: Counters = self.dir.read(COUNTERS_FILE)?;
        let full = self.record.max_tries(which);
        if counters.left(which) != full {
            counters.set(which, full);
            self.dir.write(COUNTERS_FILE, &counters, false)?;
        }
        Ok(())
    }

    /// Fails when `which` is used up.
    pub(crate) fn ensure_not_blocked(&self, which: Counter) -> Result<()> {
        let counters: Counters = self.dir.read(COUNTERS_FILE)?;
        if counters.left(which) == 0 {
            Err(blocked(which))
        } else {
            Ok(())
        }
    }

    /// The card's keys as its files hold them (guard, CSK, expected CSK policy).
    pub(crate) fn keys(&self) -> Result<CardKeys> {
        read_keys(&self.dir, &self.record)
    }

    /// Writes a new CSK blob (durably: the old blob must not survive a PIN change).
    pub(crate) fn replace_csk(&self, blob: crate::tpm::Blob) -> Result<()> {
        self.dir.write(CSK_FILE, &ObjectFile { blob }, true)
    }

    /// The PIN-derived authValue for this card.
    pub(crate) fn pin_auth(&self, pin: &[u8]) -> crate::tpm::AuthValue {
        card::pin_auth(&self.record.pin_salt, pin)
    }

    /// The PUK-derived authValue for this card.
    pub(crate) fn puk_auth(&self, puk: &[u8]) -> crate::tpm::AuthValue {
        card::pin_auth(&self.record.puk_salt, puk)
    }
}

/// The card's keys as the files in `dir` hold them.
pub fn read_keys(dir: &CardDir, record: &CardRecord) -> Result<CardKeys> {
    let csk: ObjectFile = dir.read(CSK_FILE)?;
    let guard = match record.counter {
        Some(counter) => {
            let derived = super::counter_index_of(&record.card_id);
            if Some(counter.index) != derived {
                return Err(Error::CardUnusable {
                    name: record.name.clone(),
                    reason: format!(
                        "its record names counter {:#x}, not the one its card ID gives: {} \
                         was altered",
                        counter.index,
                        dir.path().join(crate::card::CARD_FILE).display()
                    ),
                });
            }
            let g: ObjectFile = dir.read(GUARD_FILE)?;
            Some(Guard {
                blob: g.blob,
                counter,
            })
        }
        None => None,
    };
    Ok(CardKeys {
        guard,
        csk: csk.blob,
        policy: record.csk_policy(),
    })
}

/// What a TPM failure means for the card `name`: the TPM refusing the card as a whole
/// (cleared, revoked, altered files, substituted salt key) makes the card unusable.
pub(crate) fn card_error(name: &str, dir: &CardDir, e: TpmError) -> Error {
    match e {
        TpmError::Cleared
        | TpmError::SaltKeySubstituted
        | TpmError::Revoked
        | TpmError::CounterGone => Error::CardUnusable {
            name: name.to_string(),
            reason: e.to_string(),
        },
        // Which file: the card's directory, where the object files live (the message
        // names the file itself when the TPM layer knows it).
        TpmError::UnexpectedObject(_) | TpmError::BadBlob(_) | TpmError::BadObjectFile { .. } => {
            Error::CardUnusable {
                name: name.to_string(),
                reason: format!("{e} (in {})", dir.path().display()),
            }
        }
        other => other.into(),
    }
}

/// Refuses a current PIN or PUK that cannot be this card's before the TPM sees it —
/// trying it would spend a try for nothing: a length outside the bounds it was set under
/// (`rule`: the card's PIN policy, or the PUK rule), or a character that is not
/// printable ASCII. Every PIN and PUK a card takes passed that rule when it was set.
pub(crate) fn check_can_be_right(
    what: &'static str,
    secret: &[u8],
    rule: &PinPolicy,
) -> Result<()> {
    if secret.is_empty() || secret.len() < rule.min_len || secret.len() > rule.max_len {
        return Err(Error::SecretLength {
            what,
            len: secret.len(),
            min: rule.min_len,
            max: rule.max_len,
        });
    }
    if !secret.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(Error::SecretCharacters { what });
    }
    Ok(())
}

/// Checks a PIN with the TPM: the card storage key, loaded through its guard, authorizes
/// a command with the PIN-derived authValue in a salted session.
pub fn verify_pin(store: &Store, card_ref: &str, pin: &[u8]) -> Result<()> {
    let card = open_card(store, card_ref)?;
    verify_pin_on(&card, pin, &OwnTpm::new()).map(|_| ())
}

/// [`verify_pin`] on an open card; returns the card's keys the PIN opened.
pub(crate) fn verify_pin_on(card: &OpenCard, pin: &[u8], tpm: &impl TpmAccess) -> Result<CardKeys> {
    check_can_be_right("PIN", pin, &card.record.pin_policy)?;
    let keys = card.keys()?;
    let auth = card.pin_auth(pin);
    card.attempt(Counter::Pin, tpm, |t| t.check_pin(keys.csk_ref(), &auth))?;
    Ok(keys)
}

/// Checks the PUK with the TPM (PolicySecret on the PUK object in a salted session).
pub(crate) fn verify_puk_on(card: &OpenCard, puk: &[u8], tpm: &impl TpmAccess) -> Result<()> {
    if !card.record.has_puk {
        return Err(Error::NoPuk(card.record.name.clone()));
    }
    check_can_be_right("PUK", puk, &PinPolicy::default())?;
    let obj: ObjectFile = card.dir.read(PUK_FILE)?;
    let a = card.puk_auth(puk);
    card.attempt(Counter::Puk, tpm, |t| t.check_auth(&obj.blob, &a))
}

/// Changes the PIN knowing the current one: one `ObjectChangeAuth` on the CSK through the
/// PIN branch. The new PIN is checked against the card's policy before the current PIN
/// is tried, so a typo in the new PIN costs no try.
pub fn change_pin(store: &Store, card_ref: &str, current: &[u8], new: &[u8]) -> Result<()> {
    let card = open_card(store, card_ref)?;
    change_pin_on(&card, current, new, &OwnTpm::new())
}

/// [`change_pin`] on an open card.
pub(crate) fn change_pin_on(
    card: &OpenCard,
    current: &[u8],
    new: &[u8],
    tpm: &impl TpmAccess,
) -> Result<()> {
    card.record.pin_policy.check("new PIN", new)?;
    check_can_be_right("PIN", current, &card.record.pin_policy)?;
    let keys = card.keys()?;
    let (old, fresh) = (card.pin_auth(current), card.pin_auth(new));
    let branches = card.record.branches();
    let blob = card.attempt(Counter::Pin, tpm, |t| {
        t.change_csk_auth(keys.csk_ref(), &branches, Authorizer::Pin(&old), &fresh)
    })?;
    card.replace_csk(blob)
}

/// Sets a new PIN with the PUK (the PUK branch of the CSK policy) and unblocks the card.
pub(crate) fn unblock_with_puk(
    store: &Store,
    card_ref: &str,
    puk: &[u8],
    new_pin: &[u8],
) -> Result<()> {
    let card = open_card(store, card_ref)?;
    unblock_with_puk_on(&card, puk, new_pin, &OwnTpm::new())
}

/// [`unblock_with_puk`] on an open card.
pub(crate) fn unblock_with_puk_on(
    card: &OpenCard,
    puk: &[u8],
    new_pin: &[u8],
    tpm: &impl TpmAccess,
) -> Result<()> {
    if !card.record.has_puk {
        return Err(Error::NoPuk(card.record.name.clone()));
    }
    card.record.pin_policy.check("new PIN", new_pin)?;
    check_can_be_right("PUK", puk, &PinPolicy::default())?;
    let keys = card.keys()?;
    let puk_obj: ObjectFile = card.dir.read(PUK_FILE)?;
    let (puk_auth, fresh) = (card.puk_auth(puk), card.pin_auth(new_pin));
    let branches = card.record.branches();
    let blob = card.attempt(Counter::Puk, tpm, |t| {
        let how = Authorizer::Secret {
            object: &puk_obj.blob,
            auth: &puk_auth,
            is_puk: true,
        };
        t.change_csk_auth(keys.csk_ref(), &branches, how, &fresh)
    })?;
    card.replace_csk(blob)?;
    if !card.record.pin_initialized {
        let mut record = card.record.clone();
        record.pin_initialized = true;
        card.dir.write(card::CARD_FILE, &record, true)?;
    }
    card.reset_counter(Counter::Pin)
}

/// Changes the PUK knowing the current one (`ObjectChangeAuth` on the PUK object, whose
/// Name in the CSK policy stays the same).
pub(crate) fn change_puk(store: &Store, card_ref: &str, current: &[u8], new: &[u8]) -> Result<()> {
    let card = open_card(store, card_ref)?;
    change_puk_on(&card, current, new, &OwnTpm::new())
}

/// [`change_puk`] on an open card.
pub(crate) fn change_puk_on(
    card: &OpenCard,
    current: &[u8],
    new: &[u8],
    tpm: &impl TpmAccess,
) -> Result<()> {
    if !card.record.has_puk {
        return Err(Error::NoPuk(card.record.name.clone()));
    }
    PinPolicy::default().check("new PUK", new)?;
    check_can_be_right("PUK", current, &PinPolicy::default())?;
    let puk_obj: ObjectFile = card.dir.read(PUK_FILE)?;
    let (old, fresh) = (card.puk_auth(current), card.puk_auth(new));
    let blob = card.attempt(Counter::Puk, tpm, |t| {
        t.change_object_auth(&puk_obj.blob, &old, &fresh)
    })?;
    card.dir.write(PUK_FILE, &ObjectFile { blob }, true)
}

fn blocked(which: Counter) -> Error {
    match which {
        Counter::Pin => Error::PinLocked,
        Counter::Puk => Error::PukLocked,
        Counter::Admin => Error::AdminLocked,
    }
}

fn wrong(which: Counter, tries_left: u32) -> Error {
    if tries_left == 0 {
        return blocked(which);
    }
    match which {
        Counter::Pin => Error::PinIncorrect { tries_left },
        Counter::Puk => Error::PukIncorrect { tries_left },
        Counter::Admin => Error::ResponseIncorrect { tries_left },
    }
}
