//! Resolving what interrupted commands left behind (DESIGN.md §6: a crash leaves the old
//! or the new card, never none, and no key blobs linger).
//!
//! - An interrupted create (`.new-<id>`, no live card) holds a counter that no card uses:
//!   the counter is freed and the directory deleted.
//! - An interrupted destroy (`.del-<id>`) was revoked already (its counter incremented):
//!   the counter is freed and the directory deleted.
//! - An interrupted format (`.new-<id>` beside `<id>`) holds two cards bound to the same
//!   counter; the counter's value says which one the TPM accepts. The live one stays when
//!   it still works, else the new one is swapped in; the one that works is never deleted.
//!
//! Runs under the store lock (and the card's lock for a format), at the start of the
//! commands that change cards.

use crate::card::{CARD_FILE, CardRecord};
use crate::error::Result;
use crate::provision::access::{OwnTpm, TpmAccess};
use crate::provision::counter_index_of;
use crate::store::{CardDir, Leftover, LockGuard, Store};
use crate::tpm::{NvCounter, TpmError};

/// A counter defined for a card that is not written yet (create), so that an interrupted
/// create can free it.
pub(crate) const PENDING_COUNTER_FILE: &str = "counter.json";

/// Resolves every leftover of the store; returns how many were resolved. Leftovers that
/// need the TPM while it cannot be reached stay for a later command.
pub(crate) fn recover(store: &Store) -> Result<usize> {
    if store.leftovers()?.is_empty() {
        return Ok(0);
    }
    let lock = store.lock()?;
    recover_locked(store, &lock, &OwnTpm::new())
}

/// [`recover`] with the store lock held; the TPM is used only when a leftover needs it.
pub(crate) fn recover_locked(
    store: &Store,
    lock: &LockGuard,
    tpm: &impl TpmAccess,
) -> Result<usize> {
    let mut done = 0;
    for leftover in store.leftovers()? {
        let resolved = match &leftover {
            Leftover::Creation(hidden) => free_orphan(store, lock, hidden, false, tpm)?,
            Leftover::Destruction(hidden) => free_orphan(store, lock, hidden, true, tpm)?,
            Leftover::Replacement { hidden, live } => {
                finish_format(store, lock, hidden, live, tpm)?
            }
            Leftover::Junk(name) => {
                store.discard(lock, name)?;
                true
            }
        };
        done += usize::from(resolved);
    }
    Ok(done)
}

/// The counter a hidden card directory names (its record, or the pending counter of a
/// create that did not get that far) — only when it is at the index the card's ID gives,
/// so that planted leftovers cannot make recovery free another card's counter.
fn counter_of(dir: &CardDir) -> Option<NvCounter> {
    let derived = counter_index_of(dir.id())?;
    dir.read::<CardRecord>(CARD_FILE)
        .ok()
        .and_then(|r| r.counter)
        .or_else(|| dir.read::<NvCounter>(PENDING_COUNTER_FILE).ok())
        .filter(|c| c.index == derived)
}

/// An interrupted create or destroy (`destroyed`): free the counter (unless a live card
/// uses it — the files may have been copied), then delete the files.
fn free_orphan(
    store: &Store,
    lock: &LockGuard,
    hidden: &CardDir,
    destroyed: bool,
    tpm: &impl TpmAccess,
) -> Result<bool> {
    // A destroy incremented the index its card ID gives, whatever the record says.
    let counter = if destroyed {
        counter_index_of(hidden.id())
    } else {
        counter_of(hidden).map(|c| c.index)
    };
    if let Some(index) = counter
        && !counter_in_use(store, index)
    {
        match tpm.run(|t| t.counter_undefine(index)) {
            Ok(()) | Err(TpmError::CounterGone) => {}
            Err(_) => return Ok(false),
        }
    }
    store.discard(lock, hidden.entry_name())?;
    Ok(true)
}

/// An interrupted format: keep whichever half the TPM accepts.
fn finish_format(
    store: &Store,
    lock: &LockGuard,
    hidden: &CardDir,
    live: &CardDir,
    tpm: &impl TpmAccess,
) -> Result<bool> {
    let _card_lock = store.lock_card(live)?;
    let live_counter = live
        .read::<CardRecord>(CARD_FILE)
        .ok()
        .and_then(|r| r.counter);
    let new_counter = counter_of(hidden);
    match (live_counter, new_counter) {
        (Some(l), Some(n)) if l.index == n.index => {
            let value = match tpm.run(|t| t.counter_read(l.index)) {
                Ok(v) => v,
                Err(TpmError::CounterGone) => {
                    // Neither half can work any more; the live card shows why.
                    store.discard(lock, hidden.entry_name())?;
                    return Ok(true);
                }
                Err(_) => return Ok(false),
            };
            if value > l.bound && value <= n.bound {
                store.swap_in(lock, hidden, live)?;
            } else {
                store.discard(lock, hidden.entry_name())?;
            }
            Ok(true)
        }
        // A format that gave a card made without a counter its first one: until the swap
        // the new counter is used by nobody.
        (None, Some(_)) => free_orphan(store, lock, hidden, false, tpm),
        // After the swap the hidden half is the old card, or it is unreadable.
        _ => {
            store.discard(lock, hidden.entry_name())?;
            Ok(true)
        }
    }
}

/// True when a card of the store names this counter.
fn counter_in_use(store: &Store, index: u32) -> bool {
    store.cards().is_ok_and(|cards| {
        cards.iter().any(|e| {
            e.dir.as_ref().is_ok_and(|d| {
                d.read::<CardRecord>(CARD_FILE)
                    .is_ok_and(|r| r.counter.is_some_and(|c| c.index == index))
            })
        })
    })
}
