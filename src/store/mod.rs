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

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
pub use lock::LockGuard;

/// Environment variable that replaces the system and user stores with one directory.
pub const STORE_ENV: &str = "TPMVSC_STORE";
const NEW_PREFIX: &str = ".new-";
const DEL_PREFIX: &str = ".del-";

/// A store root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A complete card's directory.
#[derive(Debug, Clone)]
pub struct CardDir {
    path: PathBuf,
    id: String,
}

/// A card under construction: files go into a hidden directory that becomes the card in
/// one rename ([`NewCard::commit`]).
#[derive(Debug)]
pub struct NewCard {
    tmp: PathBuf,
    final_path: PathBuf,
    id: String,
}

impl Store {
    /// The store for this process: `TPMVSC_STORE`, else the system store for root and the
    /// user's store otherwise.
    pub fn open() -> Result<Store> {
        Ok(Store {
            root: default_root()?,
        })
    }

    /// A store at an explicit directory.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cards_dir(&self) -> PathBuf {
        self.root.join("cards")
    }

    fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// A private (0700) directory under the root, created when missing.
    pub fn private_dir(&self, name: &str) -> Result<PathBuf> {
        let p = self.root.join(name);
        make_private_dir(&self.root)?;
        make_private_dir(&p)?;
        Ok(p)
    }

    /// Takes the store-wide lock (creation, destruction, instance numbers).
    pub fn lock(&self) -> Result<LockGuard> {
        make_private_dir(&self.root)?;
        make_private_dir(&self.locks_dir())?;
        LockGuard::exclusive(&self.locks_dir().join("store.lock"))
    }

    /// Every complete card directory, in no particular order. A missing store has none.
    pub fn cards(&self) -> Result<Vec<CardDir>> {
        let dir = self.cards_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            out.push(CardDir {
                path: entry.path(),
                id: name,
            });
        }
        Ok(out)
    }

    /// The complete card with this ID, without scanning the store.
    pub fn card(&self, id: &str) -> Option<CardDir> {
        let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        let path = self.cards_dir().join(id);
        (valid && path.is_dir()).then(|| CardDir {
            path,
            id: id.to_string(),
        })
    }

    /// Leftovers of interrupted creations, formats and destructions (hidden
    /// directories), each with what it was. Deciding what to do with one needs the TPM
    /// (the card's counter), so that is the provisioning layer's job.
    pub fn leftovers(&self) -> Result<Vec<Leftover>> {
        let dir = self.cards_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (id, new) = if let Some(id) = name.strip_prefix(NEW_PREFIX) {
                (id.to_string(), true)
            } else if let Some(id) = name.strip_prefix(DEL_PREFIX) {
                (id.to_string(), false)
            } else {
                continue;
            };
            let hidden = CardDir {
                path: entry.path(),
                id: id.clone(),
            };
            out.push(match (new, self.card(&id)) {
                (true, Some(live)) => Leftover::Replacement { hidden, live },
                (true, None) => Leftover::Creation(hidden),
                (false, _) => Leftover::Destruction(hidden),
            });
        }
        Ok(out)
    }

    /// Deletes a leftover directory. Needs the store lock.
    pub fn discard(&self, _lock: &LockGuard, hidden: &CardDir) -> Result<()> {
        fs::remove_dir_all(&hidden.path).map_err(|e| Error::io(&hidden.path, e))?;
        atomic::sync_dir(&self.cards_dir())
    }

    /// Finishes an interrupted replacement: the hidden new card is swapped in for the
    /// live one in one exchange, then the old files are deleted. Needs the store lock.
    pub fn swap_in(&self, _lock: &LockGuard, hidden: &CardDir, live: &CardDir) -> Result<()> {
        exchange(&hidden.path, &live.path)?;
        atomic::sync_dir(&self.cards_dir())?;
        fs::remove_dir_all(&hidden.path).map_err(|e| Error::io(&hidden.path, e))
    }

    /// Starts a new card directory (hidden until committed). Needs the store lock.
    pub fn begin_card(&self, _lock: &LockGuard, id: &str) -> Result<NewCard> {
        let cards = self.cards_dir();
        make_private_dir(&self.root)?;
        make_private_dir(&cards)?;
        let final_path = cards.join(id);
        if final_path.exists() {
            return Err(Error::Usage(format!("a card with ID {id} exists already")));
        }
        let tmp = cards.join(format!("{NEW_PREFIX}{id}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        make_private_dir(&tmp)?;
        Ok(NewCard {
            tmp,
            final_path,
            id: id.to_string(),
        })
    }

    /// Starts a replacement of a card's whole directory (format): the new files go into a
    /// hidden directory that [`NewCard::commit_replacing`] swaps in with one atomic
    /// exchange. Needs the store lock. An earlier interrupted replacement must have been
    /// resolved first (it may hold the only working copy of the card).
    pub fn begin_replacement(&self, lock: &LockGuard, card: &CardDir) -> Result<NewCard> {
        let tmp = self.cards_dir().join(format!("{NEW_PREFIX}{}", card.id));
        if tmp.exists() {
            return Err(Error::corrupt(
                &tmp,
                "an interrupted format of this card is still unresolved; run the command again",
            ));
        }
        let _ = lock;
        make_private_dir(&tmp)?;
        Ok(NewCard {
            tmp,
            final_path: card.path.clone(),
            id: card.id.clone(),
        })
    }

    /// Hides a card being destroyed: one rename makes it disappear from every listing;
    /// its files stay readable under the returned directory until [`Store::discard`].
    /// Needs the store lock.
    pub fn hide_card(&self, _lock: &LockGuard, card: &CardDir) -> Result<CardDir> {
        let doomed = self.cards_dir().join(format!("{DEL_PREFIX}{}", card.id));
        fs::rename(&card.path, &doomed).map_err(|e| Error::io(&card.path, e))?;
        atomic::sync_dir(&self.cards_dir())?;
        let lock = self.locks_dir().join(format!("{}.lock", card.id));
        let _ = fs::remove_file(lock);
        Ok(CardDir {
            path: doomed,
            id: card.id.clone(),
        })
    }

    /// Takes the lock of one card (for updates of its files).
    pub fn lock_card(&self, card: &CardDir) -> Result<LockGuard> {
        make_private_dir(&self.locks_dir())?;
        LockGuard::exclusive(&self.locks_dir().join(format!("{}.lock", card.id)))
    }
}

impl CardDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The card ID (the directory's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Path of one file of the card.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Names of the card's files that start with `prefix` and end in `.json`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// True when the card has this file.
    pub fn has(&self, name: &str) -> bool {
        self.path.join(name).exists()
    }

    /// Reads a versioned record of the card.
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        read_record(&self.path.join(name))
    }

    /// Writes a record atomically; `durable` adds the fsyncs (everything but counters).
    pub fn write<T: Serialize>(&self, name: &str, value: &T, durable: bool) -> Result<()> {
        atomic::write_record(&self.path.join(name), value, durable)
    }

    /// Refuses a card directory others can read or write, or that another user owns
    /// (DESIGN.md §2).
    pub fn check_private(&self) -> Result<()> {
        check_private_dir(&self.path)
    }
}

impl NewCard {
    /// Writes one record into the new card (durably).
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        atomic::write_record(&self.tmp.join(name), value, true)
    }

    /// Removes a file from the new card (one that only mattered while it was built).
    pub fn remove(&self, name: &str) -> Result<()> {
        let p = self.tmp.join(name);
        fs::remove_file(&p).map_err(|e| Error::io(&p, e))
    }

    /// Makes the card visible in one rename. Until then nothing lists it.
    pub fn commit(self) -> Result<CardDir> {
        atomic::sync_dir(&self.tmp)?;
        fs::rename(&self.tmp, &self.final_path).map_err(|e| Error::io(&self.final_path, e))?;
        let parent = self.final_path.parent().unwrap_or(Path::new("/"));
        atomic::sync_dir(parent)?;
        Ok(CardDir {
            path: self.final_path.clone(),
            id: self.id.clone(),
        })
    }

    /// Swaps the new directory in for an existing card in one `renameat2(RENAME_EXCHANGE)`
    /// (a crash leaves the old or the new card, whole), then deletes the old files.
    pub fn commit_replacing(self) -> Result<CardDir> {
        atomic::sync_dir(&self.tmp)?;
        exchange(&self.tmp, &self.final_path)?;
        let parent = self.final_path.parent().unwrap_or(Path::new("/"));
        atomic::sync_dir(parent)?;
        // The old card now sits at the hidden path.
        fs::remove_dir_all(&self.tmp).map_err(|e| Error::io(&self.tmp, e))?;
        Ok(CardDir {
            path: self.final_path.clone(),
            id: self.id.clone(),
        })
    }

    /// The hidden directory (for tests of interrupted creation).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The hidden directory as a card directory (to read back what was written).
    pub fn as_card_dir(&self) -> CardDir {
        CardDir {
            path: self.tmp.clone(),
            id: self.id.clone(),
        }
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
}

/// Exchanges two directories in one `renameat2(RENAME_EXCHANGE)`.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(|e| Error::io(b, std::io::Error::from(e)))
}

fn read_record<T: DeserializeOwned>(path: &Path) -> Result<T> {
    atomic::read_record(path)
}

/// Creates `dir` with mode 0700 when missing.
fn make_private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn check_private_dir(dir: &Path) -> Result<()> {
    let md = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::StorePermissions {
            path: dir.to_path_buf(),
            why: format!(
                "card directory is open to other users (mode {mode:o}); refusing to use it. \
                 If nobody else could have changed it, run `chmod 700 {}`",
                dir.display()
            ),
        });
    }
    let me = rustix::process::geteuid();
    if md.uid() != me.as_raw() && !me.is_root() {
        return Err(Error::StorePermissions {
            path: dir.to_path_buf(),
            why: format!("card directory belongs to uid {}, not to you", md.uid()),
        });
    }
    Ok(())
}

fn default_root() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(STORE_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
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

    #[test]
    fn a_card_is_invisible_until_committed_and_leftovers_are_cleaned() {
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
        store.discard(&lock, &other).unwrap();
        let replacement = store.begin_replacement(&lock, &card).unwrap();
        assert!(matches!(
            store.leftovers().unwrap().as_slice(),
            [Leftover::Replacement { .. }]
        ));
        assert!(
            store.begin_replacement(&lock, &card).is_err(),
            "an unresolved replacement is never deleted blindly"
        );
        store.discard(&lock, &replacement.as_card_dir()).unwrap();
        let hidden = store.hide_card(&lock, &card).unwrap();
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
