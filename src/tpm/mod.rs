//! The TPM: one ESYS connection, opened on demand, and the operations cards need.
//!
//! This module knows blobs, auth values and policies, not cards (CONVENTIONS.md §1). It is
//! the only place that talks to libtss2 (`esys.rs`). Rules kept here (DESIGN.md §2):
//! every session that carries a nonempty authValue is an HMAC session salted to the SRK
//! this TPM just proved to be its own (`srk.rs`); secrets sent to the TPM ride in that
//! session with parameter encryption; an object read from the store is checked against
//! the template it must have been made from before a secret is sent to it.
//!
//! Files: `srk.rs` (the proved storage root key and the salted session), `card_keys.rs`
//! (a card's counter, guard key and storage key; PIN, PUK and admin objects; user keys),
//! `hierarchy.rs` (lockout hierarchy and dictionary attack), `cache.rs` (loaded objects),
//! `esys.rs` (the C boundary).

pub mod cache;
mod card_keys;
mod esys;
mod hierarchy;
pub mod lock;
pub mod policy;
mod srk;
pub mod templates;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tss_esapi::structures::Public;
use tss_esapi::traits::UnMarshall;
use zeroize::Zeroizing;

pub use crate::error::TpmError;
use crate::error::tpm::classify;
use cache::{Entry, ObjectCache, ObjectId, Residence};
pub(crate) use card_keys::counter_index;
pub use card_keys::{CskRef, Guard, NvCounter};
pub(crate) use esys::quiet_tss_logging_for_cli;
use esys::{Esys, PW, SESSION_CONTINUE, SESSION_DECRYPT, SESSION_ENCRYPT, Sessions, Tr};
pub(crate) use lock::TpmLock;
pub use lock::lock_dir;

/// Environment variable naming the TCTI.
pub(crate) use crate::config::TCTI_ENV;
/// The well-known persistent handle of the storage root key.
pub const SRK_PERSISTENT: u32 = 0x8100_0001;

/// How many user objects may stay loaded at once (the SRK is kept aside). swtpm holds 3
/// transient objects; the SRK may be one of them when it is not persistent.
const DEFAULT_CACHE_SLOTS: usize = 2;
const BUSY_RETRIES: u32 = 8;
/// Shortest time a process keeps a shared TPM once it has it, when another waits.
const MIN_TURN: Duration = Duration::from_millis(20);

/// A TPM-wrapped object as it is kept on disk: the marshalled public area and the
/// private blob (encrypted by its parent; useless outside this TPM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    #[serde(with = "hex")]
    pub public: Vec<u8>,
    #[serde(with = "hex")]
    pub private: Vec<u8>,
}

impl Blob {
    /// The TPM Name of the object: nameAlg (SHA-256) ‖ SHA-256(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        name_of(&self.public)
    }
}

/// Who authorizes a change of the card storage key's authValue.
#[derive(Debug, Clone, Copy)]
pub enum Authorizer<'a> {
    /// The current PIN-derived authValue (PIN branch).
    Pin(&'a [u8]),
    /// A sealed secret object and its authValue (PUK branch or admin branch).
    Secret {
        object: &'a Blob,
        auth: &'a [u8],
        is_puk: bool,
    },
}

/// What a card records about the SRK it was made under (DESIGN.md §2). Only used to tell
/// "this TPM was cleared" apart: the salt key is always the one the TPM proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrkRecord {
    /// Marshalled TPMT_PUBLIC of the standard SRK template.
    #[serde(with = "hex")]
    pub template: Vec<u8>,
    /// The SRK's Name when the card was made; a different proved Name means the TPM was
    /// cleared (or the record altered).
    #[serde(with = "hex")]
    pub name: Vec<u8>,
}

/// Dictionary-attack parameters (TPM2_DictionaryAttackParameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DaParameters {
    /// Failures before the TPM locks out.
    pub max_tries: u32,
    /// Seconds after which one failure is forgotten.
    pub recovery_secs: u32,
    /// Seconds the lockout hierarchy waits after a wrong lockout authorization.
    pub lockout_recovery_secs: u32,
}

/// What Windows sets and what `tpm harden` and the simulator set: lockout after 32
/// failures, one forgotten every 10 minutes, 10 minutes after a wrong lockout
/// authorization.
pub(crate) const WINDOWS_DA: DaParameters = DaParameters {
    max_tries: 32,
    recovery_secs: 600,
    lockout_recovery_secs: 600,
};

/// A secret destined for a TPM authValue; zeroized when dropped.
pub(crate) type AuthValue = Zeroizing<Vec<u8>>;

/// Objects context-saved from a connection that was given up (see [`Tpm::save_objects`]).
#[derive(Debug, Default)]
pub(crate) struct SavedObjects(Vec<cache::Entry>);

/// A loaded user key, valid on the connection that loaded it until the next cache change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef(Tr);

/// The public half of a user key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and public exponent, big-endian.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// Curve (256 or 384 bits) and the affine coordinates, each padded to the field size.
    Ecc { bits: u16, x: Vec<u8>, y: Vec<u8> },
}

/// The public key in a marshalled TPMT_PUBLIC.
pub(crate) fn public_key_of(public: &[u8]) -> Result<PublicKey, TpmError> {
    let public = Public::unmarshall(public).map_err(classify)?;
    match &public {
        Public::Rsa {
            parameters, unique, ..
        } => {
            let e = match parameters.exponent().value() {
                0 => 65537u32,
                v => v,
            };
            let exponent: Vec<u8> = e
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            Ok(PublicKey::Rsa {
                modulus: unique.value().to_vec(),
                exponent,
            })
        }
        Public::Ecc {
            parameters, unique, ..
        } => {
            let (bits, len) = match parameters.ecc_curve() {
                tss_esapi::interface_types::ecc::EccCurve::NistP256 => (256u16, 32usize),
                tss_esapi::interface_types::ecc::EccCurve::NistP384 => (384, 48),
                _ => {
                    return Err(TpmError::Other {
                        code: 0,
                        what: "unsupported curve".into(),
                    });
                }
            };
            let pad = |v: &[u8]| {
                let mut out = vec![0u8; len.saturating_sub(v.len())];
                out.extend_from_slice(v);
                out
            };
            Ok(PublicKey::Ecc {
                bits,
                x: pad(unique.x().value()),
                y: pad(unique.y().value()),
            })
        }
        _ => Err(TpmError::Other {
            code: 0,
            what: "not an RSA or ECC key".into(),
        }),
    }
}

/// Dictionary-attack state of the TPM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaStatus {
    /// Failed authorizations counted now.
    pub counter: u32,
    /// Failures that put the TPM in lockout.
    pub max_tries: u32,
    /// Seconds after which one failure is forgotten.
    pub recovery_time: u32,
    /// Seconds the lockout hierarchy stays blocked after a wrong lockout authorization.
    pub lockout_recovery: u32,
    /// The TPM refuses DA-protected authorizations now.
    pub in_lockout: bool,
    /// lockoutAuth is set (without it anyone with TPM access can reset the counter).
    pub lockout_auth_set: bool,
}

/// Who made the TPM, and whether it is a simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TpmInfo {
    pub manufacturer: String,
    pub vendor: String,
    pub firmware: String,
    pub simulated: bool,
}

/// TPM_PT values read in one GetCapability each.
const PT_MANUFACTURER: u32 = 0x105;
const PT_VENDOR_STRING_1: u32 = 0x106;
const PT_FIRMWARE_VERSION_1: u32 = 0x10B;
const PT_FIRMWARE_VERSION_2: u32 = 0x10C;
const PT_PERMANENT: u32 = 0x200;
const PT_LOCKOUT_COUNTER: u32 = 0x20E;
const PT_MAX_AUTH_FAIL: u32 = 0x20F;
const PT_LOCKOUT_INTERVAL: u32 = 0x210;
const PT_LOCKOUT_RECOVERY: u32 = 0x211;

/// An open TPM connection with its proved SRK, salted session and object cache.
#[derive(Debug)]
pub struct Tpm {
    esys: Esys,
    tcti: String,
    /// Held while this connection is open when no resource manager isolates processes.
    lock: Option<Arc<TpmLock>>,
    /// When the connection (and the lock) was taken.
    opened: Instant,
    srk: Option<srk::Srk>,
    salted: Option<Tr>,
    /// ESYS handles of NV indices (card counters) read on this connection.
    nv: Vec<(u32, Tr)>,
    /// Manufacturer and firmware facts: fixed for the TPM, read once per connection.
    info: Option<TpmInfo>,
    cache: ObjectCache,
}

impl Tpm {
    /// Opens the configured TPM (`TPMVSC_TCTI`, else `tcti` in a configuration file, else
    /// `device:/dev/tpmrm0`).
    pub fn open() -> Result<Tpm, TpmError> {
        Tpm::open_tcti(&configured_tcti()?)
    }

    /// Opens the TPM behind `tcti`. Without a resource manager (swtpm, mssim, /dev/tpm0) a
    /// cross-process lock file is taken first and objects a killed process left loaded are
    /// flushed (DESIGN.md §6).
    pub fn open_tcti(tcti: &str) -> Result<Tpm, TpmError> {
        Tpm::open_tcti_sharing(tcti, None)
    }

    /// [`Tpm::open`], taking over `held`, the cross-process lock another connection of
    /// this process holds (one abandoned to a command that never came back), instead of
    /// waiting for it.
    pub(crate) fn open_sharing(held: Option<Arc<TpmLock>>) -> Result<Tpm, TpmError> {
        Tpm::open_tcti_sharing(&configured_tcti()?, held)
    }

    fn open_tcti_sharing(tcti: &str, held: Option<Arc<TpmLock>>) -> Result<Tpm, TpmError> {
        if let Some(why) = unreachable_because(tcti) {
            return Err(TpmError::NoTpm {
                tcti: tcti.to_string(),
                why,
            });
        }
        let shared = !has_resource_manager(tcti);
        let lock = match (shared, held) {
            (false, _) => None,
            (true, Some(l)) => Some(l),
            (true, None) => Some(Arc::new(TpmLock::take(tcti)?)),
        };
        let esys = Esys::open(tcti)?;
        let mut tpm = Tpm {
            esys,
            tcti: tcti.to_string(),
            lock,
            opened: Instant::now(),
            srk: None,
            salted: None,
            nv: Vec::new(),
            info: None,
            cache: ObjectCache::new(DEFAULT_CACHE_SLOTS),
        };
        if shared {
            tpm.flush_stale()?;
        }
        Ok(tpm)
    }

    /// Flushes transient objects and sessions a killed process — or anyone else — left in
    /// a TPM without a resource manager. Runs with the cross-process lock held, so none
    /// belongs to a live tpmvsc process; on this connection, so no second connection
    /// (swtpm admits one) is needed. Saved sessions go too (tpmvsc never saves one): a
    /// policy session whose PolicyNV check passed before a format or destroy would
    /// otherwise keep authorizing the revoked card's guard (DESIGN.md §2).
    fn flush_stale(&mut self) -> Result<(), TpmError> {
        // Transient objects, then loaded sessions (TPM_HT_LOADED_SESSION), then saved ones
        // (TPM_HT_SAVED_SESSION); both session lists hold HMAC (0x02) and policy (0x03)
        // session handles.
        for first in [0x8000_0000u32, 0x0200_0000, 0x0300_0000] {
            let list = self.retry(|e| e.handles(first, 64))?;
            for raw in list {
                let kind = raw >> 24;
                let wanted = match first >> 24 {
                    0x80 => kind == 0x80,
                    _ => kind == 0x02 || kind == 0x03,
                };
                if !wanted {
                    continue;
                }
                if let Ok(tr) = self.esys.tr_for(raw) {
                    let _ = self.esys.flush(tr);
                }
            }
        }
        Ok(())
    }

    /// True when this connection holds the cross-process lock of a TPM without resource
    /// manager, has had it for a short turn at least, and another process is waiting.
    /// The turn keeps two busy processes from paying a reconnect on every command.
    pub(crate) fn others_waiting(&self) -> bool {
        self.opened.elapsed() >= MIN_TURN
            && self.lock.as_deref().is_some_and(TpmLock::others_waiting)
    }

    /// The cross-process lock this connection holds (no resource manager).
    pub(crate) fn cross_process_lock(&self) -> Option<Arc<TpmLock>> {
        self.lock.clone()
    }

    /// True when this connection shares the TPM with other processes only through the
    /// lock file (no resource manager).
    pub(crate) fn is_shared(&self) -> bool {
        self.lock.is_some()
    }

    /// The TCTI this connection uses.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Changes how many user objects stay loaded at once.
    pub fn set_cache_slots(&mut self, slots: usize) {
        self.cache.set_capacity(slots);
    }

    /// Manufacturer, vendor and firmware strings; `simulated` for swtpm/libtpms and the
    /// Microsoft simulator. One GetCapability, once per connection.
    pub fn info(&mut self) -> Result<TpmInfo, TpmError> {
        if let Some(i) = &self.info {
            return Ok(i.clone());
        }
        let props = self.retry(|e| e.properties(PT_MANUFACTURER, 8))?;
        let get = |tag: u32| props.iter().find(|(p, _)| *p == tag).map_or(0, |(_, v)| *v);
        let word = |v: u32| -> String {
            v.to_be_bytes()
                .iter()
                .filter(|b| **b != 0)
                .map(|b| char::from(*b))
                .collect()
        };
        let manufacturer = word(get(PT_MANUFACTURER));
        let vendor: String = (0..4).map(|i| word(get(PT_VENDOR_STRING_1 + i))).collect();
        let fw1 = get(PT_FIRMWARE_VERSION_1);
        let fw2 = get(PT_FIRMWARE_VERSION_2);
        let firmware = format!(
            "{}.{}.{}.{}",
            fw1 >> 16,
            fw1 & 0xffff,
            fw2 >> 16,
            fw2 & 0xffff
        );
        let vendor = vendor.trim().to_string();
        let simulated = is_simulator_tcti(&self.tcti)
            || vendor.replace(' ', "").contains("SWTPM")
            || manufacturer.trim() == "IBM" && vendor.starts_with("SW");
        let info = TpmInfo {
            manufacturer: manufacturer.trim().to_string(),
            vendor,
            firmware,
            simulated,
        };
        self.info = Some(info.clone());
        Ok(info)
    }

    /// The TPM's dictionary-attack state (one GetCapability).
    pub fn da_status(&mut self) -> Result<DaStatus, TpmError> {
        let props = self.retry(|e| e.properties(PT_PERMANENT, 0x12))?;
        let get = |tag: u32| props.iter().find(|(p, _)| *p == tag).map_or(0, |(_, v)| *v);
        let permanent = get(PT_PERMANENT);
        Ok(DaStatus {
            counter: get(PT_LOCKOUT_COUNTER),
            max_tries: get(PT_MAX_AUTH_FAIL),
            recovery_time: get(PT_LOCKOUT_INTERVAL),
            lockout_recovery: get(PT_LOCKOUT_RECOVERY),
            // TPMA_PERMANENT: lockoutAuthSet = bit 2, inLockout = bit 9.
            lockout_auth_set: permanent & (1 << 2) != 0,
            in_lockout: permanent & (1 << 9) != 0,
        })
    }

    /// `n` random bytes from the TPM.
    pub fn random(&mut self, n: usize) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        while out.len() < n {
            let want = u16::try_from((n - out.len()).min(32)).unwrap_or(32);
            let d = self.retry(|e| e.get_random(want))?;
            out.extend_from_slice(&d);
        }
        Ok(out)
    }

    // ----- using loaded user keys -----

    /// ECDSA with a loaded user key over an already hashed value; returns (r, s).
    /// The key has an empty authValue and noDA: a password session, nothing secret
    /// crosses the wire (DESIGN.md §2).
    pub fn sign_ecdsa(
        &mut self,
        key: KeyRef,
        digest: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        // TPM_ALG_SHA1/256/384/512: the hash the digest's length names.
        let hash = match digest.len() {
            20 => 0x0004,
            32 => 0x000B,
            48 => 0x000C,
            _ => 0x000D,
        };
        self.retry(|e| e.sign_ecdsa(key.0, PW, digest, hash))
    }

    /// The raw RSA private operation (TPM2_RSA_Decrypt with the NULL scheme) on `input`
    /// of modulus length. `secret_output`: the result is a plaintext, so the response is
    /// encrypted by the salted session; for a signature (public output) a password
    /// session alone is used.
    pub fn rsa_raw(
        &mut self,
        key: KeyRef,
        input: &[u8],
        secret_output: bool,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let sessions = if secret_output {
            [esys::PASSWORD, self.salted_session()?, esys::NONE]
        } else {
            PW
        };
        self.retry(|e| e.rsa_decrypt_raw(key.0, sessions, input))
    }

    /// ECDH: the shared point's x coordinate with the peer's public point (x, y), the
    /// response encrypted by the salted session.
    pub(crate) fn ecdh(
        &mut self,
        key: KeyRef,
        x: &[u8],
        y: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let salted = self.salted_session()?;
        self.retry(|e| e.ecdh_zgen(key.0, [esys::PASSWORD, salted, esys::NONE], x, y))
    }

    // ----- the object cache -----

    /// Removes an object from the TPM and the cache.
    pub(crate) fn forget(&mut self, blob: &Blob) {
        let id = ObjectCache::id_of(blob);
        if let Some(Entry {
            residence: Residence::Loaded(h),
            ..
        }) = self.cache.remove(&id)
        {
            let _ = self.esys.flush(h);
        }
    }

    /// Flushes every cached object (logout): the SRK and the salted session stay, they
    /// hold nothing of a card.
    pub fn flush_objects(&mut self) {
        for e in self.cache.drain() {
            if let Residence::Loaded(h) = e.residence {
                let _ = self.esys.flush(h);
            }
        }
    }

    /// Context-saves every cached object and takes the saved contexts out of this
    /// connection, which is about to be given up: a later connection to the same TPM
    /// loads them back ([`Tpm::restore_objects`]) without the card storage key's auth, so a
    /// logged-in session keeps using its keys through a TPM lockout (DESIGN.md §2). The
    /// contexts stay in memory, never on disk.
    pub(crate) fn save_objects(&mut self) -> SavedObjects {
        let mut out = Vec::new();
        for mut e in self.cache.drain() {
            if let Residence::Loaded(h) = e.residence {
                match self.esys.context_save(h) {
                    Ok(ctx) => e.residence = Residence::Saved(ctx),
                    Err(_) => {
                        let _ = self.esys.flush(h);
                        continue;
                    }
                }
                let _ = self.esys.flush(h);
            }
            out.push(e);
        }
        SavedObjects(out)
    }

    /// Takes over contexts another connection of this process saved.
    pub(crate) fn restore_objects(&mut self, saved: SavedObjects) {
        for e in saved.0 {
            self.cache.insert_entry(e);
        }
    }

    /// Flushes every cached object, the salted session and a transient SRK.
    pub(crate) fn flush_all(&mut self) {
        self.flush_objects();
        if let Some(s) = self.salted.take() {
            let _ = self.esys.flush(s);
        }
        for (_, tr) in std::mem::take(&mut self.nv) {
            self.esys.close(tr);
        }
        self.drop_srk();
    }

    /// Sends TPM2_Shutdown(CLEAR) so the next start is orderly (libtpms counts an
    /// unorderly stop after DA use as one more failed try).
    pub fn shutdown(&mut self) -> Result<(), TpmError> {
        self.flush_all();
        self.retry(Esys::shutdown)
    }

    // ----- helpers -----

    /// Loads through the cache: a loaded entry is returned, a saved one is context-loaded
    /// (its auth set again), a new one is loaded by `load`; room is made first, never by
    /// evicting the objects in `keep` (a parent).
    fn cached_load(
        &mut self,
        id: ObjectId,
        keep: &[ObjectId],
        load: impl FnOnce(&mut Tpm) -> Result<Tr, TpmError>,
    ) -> Result<Tr, TpmError> {
        let saved = match self.cache.touch(&id) {
            Some(e) => match &e.residence {
                Residence::Loaded(h) => return Ok(*h),
                Residence::Saved(ctx) => Some((ctx.clone(), e.auth.clone())),
            },
            None => None,
        };
        let mut protect = keep.to_vec();
        protect.push(id);
        while self.cache.is_full() {
            if !self.evict_one(&protect)? {
                break;
            }
        }
        if let Some((ctx, auth)) = saved {
            match self.retry_with_room(&protect, |e| e.context_load(&ctx)) {
                Ok(h) => {
                    if let Some(a) = &auth {
                        self.esys.set_auth(h, a)?;
                    }
                    self.cache.mark_loaded(&id, h);
                    return Ok(h);
                }
                Err(TpmError::Memory(c)) => return Err(TpmError::Memory(c)),
                // A context from before a TPM restart: load the blob again.
                Err(_) => {
                    self.cache.remove(&id);
                }
            }
        }
        let h = load(self)?;
        self.cache.insert(id, h, None);
        Ok(h)
    }

    /// Context-saves and flushes the least recently used cached object. False when there
    /// is nothing to evict.
    fn evict_one(&mut self, keep: &[ObjectId]) -> Result<bool, TpmError> {
        let Some((id, handle)) = self.cache.victim(keep) else {
            return Ok(false);
        };
        match self.esys.context_save(handle) {
            Ok(saved) => {
                let _ = self.esys.flush(handle);
                self.cache.mark_saved(&id, saved);
            }
            Err(_) => {
                let _ = self.esys.flush(handle);
                self.cache.remove(&id);
            }
        }
        Ok(true)
    }

    /// Runs a command, retrying while the TPM says it is busy.
    fn retry<T>(
        &mut self,
        mut f: impl FnMut(&mut Esys) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let mut attempt = 0;
        loop {
            match f(&mut self.esys) {
                Err(TpmError::Busy(_)) if attempt < BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                }
                other => return other,
            }
        }
    }

    /// Like [`Tpm::retry`], and on OBJECT_MEMORY/SESSION_MEMORY evicts a cached object
    /// (never one in `keep`) and tries again.
    fn retry_with_room<T>(
        &mut self,
        keep: &[ObjectId],
        mut f: impl FnMut(&mut Esys) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        loop {
            match self.retry(&mut f) {
                Err(TpmError::Memory(code)) => {
                    if !self.evict_one(keep)? {
                        return Err(TpmError::Memory(code));
                    }
                }
                other => return other,
            }
        }
    }

    /// Starts a session (making room when the TPM is out of session memory).
    fn start_session(&mut self, kind: esys::SessionKind) -> Result<Tr, TpmError> {
        self.retry_with_room(&[], |e| e.start_session(kind))
    }

    /// A fresh policy session. `salted`: salted to the SRK with parameter encryption, for
    /// a policy that uses the object's authValue (PolicyAuthValue); otherwise unsalted,
    /// because it carries no secret itself.
    fn start_policy_session(&mut self, salted: bool) -> Result<Tr, TpmError> {
        if salted {
            let srk = self.srk_handle()?;
            let s = self.start_session(esys::SessionKind::SaltedPolicy(srk))?;
            self.esys.set_session_attributes(
                s,
                SESSION_CONTINUE | SESSION_DECRYPT | SESSION_ENCRYPT,
                0xff,
            )?;
            Ok(s)
        } else {
            self.start_session(esys::SessionKind::Policy)
        }
    }

    /// Marks a session to be flushed by the TPM after its next successful command.
    fn use_once(&mut self, session: Tr) -> Result<(), TpmError> {
        self.esys
            .set_session_attributes(session, 0, SESSION_CONTINUE)
    }

    fn flush_quietly(&mut self, tr: Tr) {
        let _ = self.esys.flush(tr);
    }

    /// The ESYS handle of an NV index, kept for this connection (one NV_ReadPublic).
    fn nv_handle(&mut self, index: u32) -> Result<Tr, TpmError> {
        if let Some((_, tr)) = self.nv.iter().find(|(i, _)| *i == index) {
            return Ok(*tr);
        }
        let tr = self.retry(|e| e.tr_for(index))?;
        self.nv.push((index, tr));
        Ok(tr)
    }

    /// Forgets the ESYS handle of an NV index (after it was undefined).
    fn forget_nv(&mut self, index: u32) {
        if let Some(pos) = self.nv.iter().position(|(i, _)| *i == index) {
            let (_, tr) = self.nv.swap_remove(pos);
            self.esys.close(tr);
        }
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        self.flush_all();
    }
}

/// Sessions for a command authorized by the salted session alone.
fn salted_only(s: Tr) -> Sessions {
    [s, esys::NONE, esys::NONE]
}

/// The TCTI this process is configured for (environment, configuration files, default).
pub(crate) fn configured_tcti() -> Result<String, TpmError> {
    crate::config::current()
        .map(|c| c.tcti.value.clone())
        .map_err(|e| TpmError::NoTpm {
            tcti: "the configured TPM".into(),
            why: e.to_string(),
        })
}

/// Why this process cannot reach the TPM behind `tcti`, when that can be told before
/// trying: a device or simulator socket that is missing or that this user may not open
/// (the kernel's `/dev/tpmrm0` is `root:tss 0660`: members of `tss` can use the TPM).
pub(crate) fn unreachable_because(tcti: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let path = tcti
        .strip_prefix("device:")
        .or_else(|| {
            tcti.strip_prefix("swtpm:")
                .and_then(|conf| conf.split(',').find_map(|kv| kv.strip_prefix("path=")))
        })
        .filter(|p| !p.is_empty())?;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("{path} does not exist"));
        }
        Err(e) => return Some(format!("{path}: {e}")),
    };
    let access = rustix::fs::access(
        path,
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    );
    if access.is_ok() {
        return None;
    }
    let group = group_name(meta.gid()).unwrap_or_else(|| format!("gid {}", meta.gid()));
    Some(format!(
        "{path} is owner uid {}, group {group}, mode {:04o}, and this process (uid {}) may not \
         open it: members of the group {group} can. Ask an administrator to add you \
         (`sudo usermod -aG {group} $USER`, then log in again); note that members of that \
         group can use the whole TPM, which is why `tpmvsc tpm harden` matters",
        meta.uid(),
        meta.mode() & 0o7777,
        rustix::process::geteuid().as_raw(),
    ))
}

/// A group's name from /etc/group (no NSS lookup: a small, local fact).
fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

/// True for TCTIs that talk to a simulator.
pub(crate) fn is_simulator_tcti(tcti: &str) -> bool {
    tcti.starts_with("swtpm") || tcti.starts_with("mssim")
}

/// True when the TCTI isolates processes (kernel `tpmrm` or tpm2-abrmd).
pub(crate) fn has_resource_manager(tcti: &str) -> bool {
    tcti.starts_with("tabrmd") || tcti.contains("tpmrm")
}

/// Name of a marshalled TPMT_PUBLIC with SHA-256 nameAlg.
pub fn name_of(public: &[u8]) -> Vec<u8> {
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&Sha256::digest(public));
    name
}
