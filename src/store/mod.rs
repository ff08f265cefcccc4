//! The card store (DESIGN.md §6): one directory per card, versioned JSON files written
//! atomically, a store-wide lock for creation and destruction and a per-card lock for
//! updates. The store knows files, not the TPM.
//!
//! Layout under the root (`TPMVSC_STORE`, else `/var/lib/tpmvsc` for root and
//! `$XDG_DATA_HOME/tpmvsc` for a user):
//!
//! ```text
//! cards/<card-id>/        one complete card (0700)
//! cards/.new-<card-id>/   a card being created or formatted; never shown
//! cards/.del-<card-id>/   a card being destroyed; never shown
//!                         (both resolved by the next command: `provision::recover`)
//! locks/                  store.lock and <card-id>.lock
//! simulator/              the simulator's TPM state (tpmvsc simulator)
//! ```

pub mod atomic;
pub mod lock;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checked_dir::{CheckedDir, DirRule, EntryKind, human_size};
use crate::error::{Error, Result};
pub use lock::LockGuard;

/// Most bytes a card record file may have: `card.json`, `counters.json`, `csk.json`,
/// `puk.json`, `admin.json`. Measured on a card with PUK and admin key: `admin.json` (the
/// admin object and a batch of 32 challenges) 5.5 KiB, `card.json` 1.1 KiB, `csk.json`
/// 0.6 KiB, `counters.json` 90 bytes. 64 KiB is ten times the largest, and stops a
/// replaced file (a link to `/dev/zero` is refused anyway) from being read whole.
pub(crate) const RECORD_LIMIT: u64 = 64 * 1024;

/// Most bytes an object file (`obj-*.json`: a token object's attributes in hex) may have.
/// Certificates are the large ones (a few KiB, rarely above 16 KiB, 32 KiB in hex); 1 MiB
/// keeps a data object or a certificate chain of up to 500 KiB. Writes beyond it are
/// refused, so the store never holds a file it would refuse to read.
pub(crate) const OBJECT_LIMIT: u64 = 1 << 20;

/// Most bytes of the small files of the store's private directories (the simulator's
/// pid and port files: a number each).
pub(crate) const SMALL_LIMIT: u64 = 4096;

const NEW_PREFIX: &str = ".new-";
const DEL_PREFIX: &str = ".del-";
const CARDS: &str = "cards";
const LOCKS: &str = "locks";
const STORE_WHAT: &str = "card store";
const CARDS_WHAT: &str = "directory of card directories";
const CARD_WHAT: &str = "card directory";

/// A store root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A complete card's directory, open and checked (every file of the card is reached
/// through it, never through a path).
#[derive(Debug, Clone)]
pub struct CardDir {
    dir: CheckedDir,
    /// The entry's name in the cards directory (the card ID, or a hidden name).
    name: String,
    id: String,
}

/// One entry of the store's card list: a card directory, or why it cannot be used (a
/// link, a directory open to others, another owner), so that a damaged card is listed as
/// such and never hides the others.
#[derive(Debug)]
pub(crate) struct CardEntry {
    /// The card ID (the entry's name).
    pub id: String,
    /// Where it is.
    pub path: PathBuf,
    /// The open card directory, or why it was refused.
    pub dir: Result<CardDir>,
}

/// A card under construction: files go into a hidden directory that becomes the card in
/// one rename ([`NewCard::commit`]).
#[derive(Debug)]
pub(crate) struct NewCard {
    cards: CheckedDir,
    tmp: CheckedDir,
    tmp_name: String,
    id: String,
}

impl Store {
    /// The store for this process: `TPMVSC_STORE`, else the system store for root and the
    /// user's store otherwise. Touches no file.
    pub fn open() -> Result<Store> {
        Ok(Store {
            root: default_root()?,
        })
    }

    /// A store at an explicit directory. Touches no file.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A private directory (0700, the caller's) under the root, created when missing with
    /// the root and its missing parents.
    pub(crate) fn private_dir(&self, name: &str) -> Result<CheckedDir> {
        self.create_root()?
            .create_dir(name, "private directory", DirRule::Private)
    }

    /// [`Store::private_dir`] when it exists; creates nothing.
    pub(crate) fn existing_private_dir(&self, name: &str) -> Result<Option<CheckedDir>> {
        match self.open_root()? {
            Some(root) => root.open_dir(name, "private directory", DirRule::Private),
            None => Ok(None),
        }
    }

    /// Takes the store-wide lock (creation, destruction, instance numbers). Creates the
    /// store (0700, with its missing parents) on first use; refuses a store this process
    /// may not change before it waits for anything.
    pub fn lock(&self) -> Result<LockGuard> {
        let root = self.create_root()?;
        root.check_writable()?;
        let locks = root.create_dir(LOCKS, "lock directory", DirRule::Lock)?;
        LockGuard::exclusive(&locks, "store.lock")
    }

    /// Every card directory, in no particular order, with the ones that cannot be used
    /// (and why). A missing store has none.
    pub(crate) fn cards(&self) -> Result<Vec<CardEntry>> {
        let Some(cards) = self.open_cards()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in cards.entries()? {
            if entry.name.starts_with('.') || entry.kind == EntryKind::File {
                continue;
            }
            let dir = match cards.open_dir(&entry.name, CARD_WHAT, DirRule::Store) {
                Ok(Some(dir)) => Ok(CardDir {
                    dir,
                    name: entry.name.clone(),
                    id: entry.name.clone(),
                }),
                // Removed since the listing.
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            out.push(CardEntry {
                path: cards.join(&entry.name),
                id: entry.name,
                dir,
            });
        }
        Ok(out)
    }

    /// The complete, usable card with this ID, without scanning the store. `None` when
    /// there is none or it cannot be used (`Store::cards` says why).
    pub fn card(&self, id: &str) -> Option<CardDir> {
        let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !valid {
            return None;
        }
        let cards = self.open_cards().ok()??;
        let dir = cards.open_dir(id, CARD_WHAT, DirRule::Store).ok()??;
        Some(CardDir {
            dir,
            name: id.to_string(),
            id: id.to_string(),
        })
    }

    /// Leftovers of interrupted creations, formats and destructions (hidden
    /// directories), each with what it was. Deciding what to do with one needs the TPM
    /// (the card's counter), so that is the provisioning layer's job.
    pub fn leftovers(&self) -> Result<Vec<Leftover>> {
        let Some(cards) = self.open_cards()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for name in leftover_names(&cards)? {
            let (id, new) = match name.strip_prefix(NEW_PREFIX) {
                Some(id) => (id.to_string(), true),
                None => (name[DEL_PREFIX.len()..].to_string(), false),
            };
            let hidden = match cards.open_dir(&name, CARD_WHAT, DirRule::Store) {
                Ok(Some(dir)) => CardDir {
                    dir,
                    name: name.clone(),
                    id: id.clone(),
                },
                Ok(None) => continue,
                // A link or a directory that is not ours: never used, only removed.
                Err(_) => {
                    out.push(Leftover::Junk(name));
                    continue;
                }
            };
            out.push(match (new, self.card(&id)) {
                (true, Some(live)) => Leftover::Replacement { hidden, live },
                (true, None) => Leftover::Creation(hidden),
                (false, _) => Leftover::Destruction(hidden),
            });
        }
        Ok(out)
    }

    /// Deletes a leftover (or any entry of the cards directory, by name), links removed
    /// and never followed. Needs the store lock.
    pub(crate) fn discard(&self, _lock: &LockGuard, name: &str) -> Result<()> {
        let cards = self.existing_cards()?;
        cards.remove_tree(name)?;
        cards.sync()
    }

    /// Finishes an interrupted replacement: the hidden new card is swapped in for the
    /// live one in one exchange, then the old files are deleted. Needs the store lock.
    pub(crate) fn swap_in(
        &self,
        _lock: &LockGuard,
        hidden: &CardDir,
        live: &CardDir,
    ) -> Result<()> {
        let cards = self.existing_cards()?;
        cards.exchange(&hidden.name, &live.name)?;
        cards.sync()?;
        cards.remove_tree(&hidden.name)
    }

    /// Hides a card being destroyed: one rename makes it disappear from every listing; its
    /// files stay readable in the returned directory until [`Store::discard`]. Needs the
    /// store lock.
    pub(crate) fn hide_card(&self, _lock: &LockGuard, id: &str) -> Result<String> {
        let cards = self.existing_cards()?;
        let doomed = format!("{DEL_PREFIX}{id}");
        cards.remove_tree(&doomed)?;
        cards.rename_new(id, &doomed)?;
        cards.sync()?;
        let locks = self
            .open_root()?
            .map(|r| r.open_dir(LOCKS, "lock directory", DirRule::Lock));
        if let Some(Ok(Some(locks))) = locks {
            let _ = locks.remove_file(&format!("{id}.lock"));
        }
        Ok(doomed)
    }

    /// Starts a new card directory (hidden until committed). Needs the store lock.
    pub(crate) fn begin_card(&self, _lock: &LockGuard, id: &str) -> Result<NewCard> {
        let cards = self
            .create_root()?
            .create_dir(CARDS, CARDS_WHAT, DirRule::Store)?;
        if cards.exists(id)? {
            return Err(Error::Usage(format!("a card with ID {id} exists already")));
        }
        NewCard::start(cards, id)
    }

    /// Starts a replacement of a card's whole directory (format): the new files go into a
    /// hidden directory that [`NewCard::commit_replacing`] swaps in with one atomic
    /// exchange. Needs the store lock. An earlier interrupted replacement must have been
    /// resolved first (it may hold the only working copy of the card).
    pub(crate) fn begin_replacement(&self, _lock: &LockGuard, card: &CardDir) -> Result<NewCard> {
        let cards = self.existing_cards()?;
        let tmp = format!("{NEW_PREFIX}{}", card.id);
        if cards.exists(&tmp)? {
            return Err(Error::corrupt(
                cards.join(&tmp),
                "an interrupted format of this card is still unresolved; run the command again",
            ));
        }
        NewCard::start(cards, &card.id)
    }

    /// Takes the lock of one card (for updates of its files). Refuses a card this process
    /// may not change before it waits for anything.
    pub(crate) fn lock_card(&self, card: &CardDir) -> Result<LockGuard> {
        card.dir.check_writable()?;
        let root = self.create_root()?;
        let locks = root.create_dir(LOCKS, "lock directory", DirRule::Lock)?;
        LockGuard::exclusive(&locks, &format!("{}.lock", card.id))
    }

    // ----- helpers -----

    fn open_root(&self) -> Result<Option<CheckedDir>> {
        CheckedDir::open(&self.root, STORE_WHAT, DirRule::Store)
    }

    fn create_root(&self) -> Result<CheckedDir> {
        CheckedDir::create(&self.root, STORE_WHAT, DirRule::Store)
    }

    fn open_cards(&self) -> Result<Option<CheckedDir>> {
        match self.open_root()? {
            Some(root) => root.open_dir(CARDS, CARDS_WHAT, DirRule::Store),
            None => Ok(None),
        }
    }

    fn existing_cards(&self) -> Result<CheckedDir> {
        self.open_cards()?.ok_or_else(|| {
            Error::io(
                self.root.join(CARDS),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }
}

impl CardDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The card ID (the directory's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Path of one file of the card (for messages: files are reached through the open
    /// directory).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Names of the card's files that start with `prefix` and end in `.json`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .dir
            .entries()?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// True when the card has this file (anything by that name; reading it says what is
    /// wrong with it).
    pub fn has(&self, name: &str) -> bool {
        self.dir.exists(name).unwrap_or(true)
    }

    /// Reads a versioned record of the card: a regular file, not through a link, at most
    /// `RECORD_LIMIT` bytes (`OBJECT_LIMIT` for `obj-*` files).
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let bytes = self.dir.read(name, limit_for(name))?;
        atomic::decode_record(&self.file(name), &bytes)
    }

    /// Writes a record atomically; `durable` adds the fsyncs (everything but counters).
    pub fn write<T: Serialize>(&self, name: &str, value: &T, durable: bool) -> Result<()> {
        let bytes = encode_within_limit(&self.file(name), name, value)?;
        self.dir.write_atomic(name, &bytes, durable)
    }

    /// Removes one file of the card.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.dir.remove_file(name)
    }

    /// Refuses a card directory others can read or write, or that another user owns
    /// (DESIGN.md §2).
    pub(crate) fn check_private(&self) -> Result<()> {
        self.dir.check_private()
    }

    /// The entry's name in the cards directory (the card ID, or a hidden name).
    pub(crate) fn entry_name(&self) -> &str {
        &self.name
    }
}

impl NewCard {
    /// Empties and makes the hidden directory for card `id` in `cards`.
    fn start(cards: CheckedDir, id: &str) -> Result<NewCard> {
        let tmp_name = format!("{NEW_PREFIX}{id}");
        cards.remove_tree(&tmp_name)?;
        let tmp = cards.create_dir(&tmp_name, CARD_WHAT, DirRule::Store)?;
        Ok(NewCard {
            cards,
            tmp,
            tmp_name,
            id: id.to_string(),
        })
    }

    /// Writes one record into the new card (durably).
    pub(crate) fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let bytes = encode_within_limit(&self.tmp.join(name), name, value)?;
        self.tmp.write_atomic(name, &bytes, true)
    }

    /// Removes a file from the new card (one that only mattered while it was built).
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        self.tmp.remove_file(name)
    }

    /// The hidden directory as a card directory (to read back or discard).
    pub(crate) fn as_card_dir(&self) -> CardDir {
        CardDir {
            dir: self.tmp.clone(),
            name: self.tmp_name.clone(),
            id: self.id.clone(),
        }
    }

    /// Makes the card visible in one rename. Until then nothing lists it.
    pub(crate) fn commit(self) -> Result<CardDir> {
        self.tmp.sync()?;
        self.cards.rename_new(&self.tmp_name, &self.id)?;
        self.cards.sync()?;
        self.reopen()
    }

    /// Swaps the new directory in for an existing card in one `renameat2(RENAME_EXCHANGE)`
    /// (a crash leaves the old or the new card, whole), then deletes the old files.
    pub(crate) fn commit_replacing(self) -> Result<CardDir> {
        self.tmp.sync()?;
        self.cards.exchange(&self.tmp_name, &self.id)?;
        self.cards.sync()?;
        // The old card now sits at the hidden name.
        self.cards.remove_tree(&self.tmp_name)?;
        self.reopen()
    }

    fn reopen(&self) -> Result<CardDir> {
        let dir = self
            .cards
            .open_dir(&self.id, CARD_WHAT, DirRule::Store)?
            .ok_or_else(|| {
                Error::io(
                    self.cards.join(&self.id),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })?;
        Ok(CardDir {
            dir,
            name: self.id.clone(),
            id: self.id.clone(),
        })
    }
}

/// A hidden directory left by an interrupted operation.
#[derive(Debug)]
pub enum Leftover {
    /// `.new-<id>` beside the live card `<id>`: an interrupted format — either half may be
    /// the one that works (the card's counter in the TPM tells).
    Replacement { hidden: CardDir, live: CardDir },
    /// `.new-<id>` with no live card: an interrupted create.
    Creation(CardDir),
    /// `.del-<id>`: an interrupted destroy.
    Destruction(CardDir),
    /// A hidden entry that is not a usable directory (a link, another owner's): removed
    /// unread.
    Junk(String),
}

/// The read limit of a card file, by its name.
fn limit_for(name: &str) -> u64 {
    if name.starts_with("obj-") {
        OBJECT_LIMIT
    } else {
        RECORD_LIMIT
    }
}

/// `value` as a record, refused when larger than what the store reads back.
fn encode_within_limit<T: Serialize>(path: &Path, name: &str, value: &T) -> Result<Vec<u8>> {
    let bytes = atomic::encode_record(path, value)?;
    let limit = limit_for(name);
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(Error::Usage(format!(
            "{}: {} bytes is more than the {} the store keeps in one file of this kind; \
             store less (a smaller certificate or data object)",
            path.display(),
            bytes.len(),
            human_size(limit)
        )));
    }
    Ok(bytes)
}

fn leftover_names(cards: &CheckedDir) -> Result<Vec<String>> {
    Ok(cards
        .entries()?
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.starts_with(NEW_PREFIX) || n.starts_with(DEL_PREFIX))
        .collect())
}

fn default_root() -> Result<PathBuf> {
    if let Some(s) = &crate::config::current()?.store {
        return Ok(s.value.clone());
    }
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/tpmvsc"));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(d).join("tpmvsc"));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/tpmvsc")),
        None => Err(Error::Usage(
            "cannot find a place for the card store: set TPMVSC_STORE or HOME".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_card_is_invisible_until_committed_and_leftovers_are_named() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::at(d.path().join("s"));
        let lock = store.lock().unwrap();
        let new = store.begin_card(&lock, "abc").unwrap();
        new.write("card.json", &serde_json::json!({"x": 1}))
            .unwrap();
        assert!(store.cards().unwrap().is_empty());
        assert!(matches!(
            store.leftovers().unwrap().as_slice(),
            [Leftover::Creation(_)]
        ));
        let card = new.commit().unwrap();
        assert_eq!(store.cards().unwrap().len(), 1);
        card.check_private().unwrap();
        let other = store.begin_card(&lock, "def").unwrap().as_card_dir();
        store.discard(&lock, other.entry_name()).unwrap();
        let replacement = store.begin_replacement(&lock, &card).unwrap();
        assert!(matches!(
            store.leftovers().unwrap().as_slice(),
            [Leftover::Replacement { .. }]
        ));
        assert!(
            store.begin_replacement(&lock, &card).is_err(),
            "an unresolved replacement is never deleted blindly"
        );
        store
            .discard(&lock, replacement.as_card_dir().entry_name())
            .unwrap();
        let hidden = store.hide_card(&lock, card.id()).unwrap();
        assert!(store.cards().unwrap().is_empty());
        assert!(matches!(
            store.leftovers().unwrap().as_slice(),
            [Leftover::Destruction(_)]
        ));
        store.discard(&lock, &hidden).unwrap();
        assert!(store.leftovers().unwrap().is_empty());
    }

    #[test]
    fn a_card_directory_open_to_others_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::at(d.path());
        let lock = store.lock().unwrap();
        let card = store.begin_card(&lock, "c1").unwrap().commit().unwrap();
        fs::set_permissions(card.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let e = card.check_private().unwrap_err().to_string();
        assert!(e.contains("c1") && e.contains("755"), "{e}");
    }
}
