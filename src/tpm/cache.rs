//! A small cache of loaded TPM objects. TPMs hold only a few transient objects (3 on
//! swtpm): the least recently used object is context-saved and flushed to make room, and
//! loaded again from its saved context (or its blob) when it is needed. Saved contexts
//! stay in memory, never on disk.

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::Blob;
use super::esys::{SavedContext, Tr};

/// Identity of a cached object: the hash of its blob.
pub(crate) type ObjectId = [u8; 32];

/// Where a cached object is now.
#[derive(Debug)]
pub(crate) enum Residence {
    /// In the TPM under this handle.
    Loaded(Tr),
    /// Saved out of the TPM; `ContextLoad` brings it back.
    Saved(SavedContext),
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: ObjectId,
    pub(crate) residence: Residence,
    /// The object's authValue, set again after a `ContextLoad` (ESYS drops it).
    pub(crate) auth: Option<Zeroizing<Vec<u8>>>,
    last_use: u64,
}

/// The bookkeeping half of the cache; `Tpm` does the TPM commands it asks for.
#[derive(Debug)]
pub(crate) struct ObjectCache {
    entries: Vec<Entry>,
    capacity: usize,
    clock: u64,
}

impl ObjectCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ObjectCache {
            entries: Vec::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    pub(crate) fn id_of(blob: &Blob) -> ObjectId {
        let mut h = Sha256::new();
        h.update((blob.public.len() as u64).to_be_bytes());
        h.update(&blob.public);
        h.update(&blob.private);
        h.finalize().into()
    }

    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// The entry for `id`, marked as just used.
    pub(crate) fn touch(&mut self, id: &ObjectId) -> Option<&mut Entry> {
        self.clock += 1;
        let now = self.clock;
        let e = self.entries.iter_mut().find(|e| &e.id == id)?;
        e.last_use = now;
        Some(e)
    }

    pub(crate) fn insert(&mut self, id: ObjectId, handle: Tr, auth: Option<Zeroizing<Vec<u8>>>) {
        self.clock += 1;
        self.entries.retain(|e| e.id != id);
        self.entries.push(Entry {
            id,
            residence: Residence::Loaded(handle),
            auth,
            last_use: self.clock,
        });
    }

    /// Takes over an entry (saved by another connection of this process).
    pub(crate) fn insert_entry(&mut self, mut e: Entry) {
        self.clock += 1;
        e.last_use = self.clock;
        self.entries.retain(|x| x.id != e.id);
        self.entries.push(e);
    }

    pub(crate) fn remove(&mut self, id: &ObjectId) -> Option<Entry> {
        let pos = self.entries.iter().position(|e| &e.id == id)?;
        Some(self.entries.swap_remove(pos))
    }

    pub(crate) fn loaded_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.residence, Residence::Loaded(_)))
            .count()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.loaded_count() >= self.capacity
    }

    /// The least recently used loaded object other than those in `keep`.
    pub(crate) fn victim(&self, keep: &[ObjectId]) -> Option<(ObjectId, Tr)> {
        self.entries
            .iter()
            .filter(|e| !keep.contains(&e.id))
            .filter_map(|e| match e.residence {
                Residence::Loaded(h) => Some((e.last_use, e.id, h)),
                Residence::Saved(_) => None,
            })
            .min_by_key(|(t, _, _)| *t)
            .map(|(_, id, h)| (id, h))
    }

    pub(crate) fn mark_saved(&mut self, id: &ObjectId, ctx: SavedContext) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.id == id) {
            e.residence = Residence::Saved(ctx);
        }
    }

    pub(crate) fn mark_loaded(&mut self, id: &ObjectId, handle: Tr) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.id == id) {
            e.residence = Residence::Loaded(handle);
        }
    }

    /// Every entry, emptying the cache (for flush on logout, finalize, drop).
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }
}
