//! A card's objects in the TPM (DESIGN.md §2): its NV counter, the guard key whose policy
//! checks the counter, the card storage key (CSK) under the guard, the sealed PUK and
//! admin objects under the SRK, and the user keys under the CSK.
//!
//! Revocation: the CSK can only be loaded through its guard, and the guard only
//! authorizes anything while the card's counter is at most the value it was made for
//! (PolicyNV). Format and destroy increment the counter, so every copy of the old files
//! — guard, CSK and the keys under it — is refused by the TPM itself. A counter that is
//! undefined and defined again starts above every value any counter on the TPM has held
//! (TPM-FEASIBILITY.md §6), so an old value never comes back.

use super::cache::ObjectCache;
use super::esys::{NONE, OWNER, PW, Tr};
use super::policy::{self, Branch, COUNTER_ATTRIBUTES, COUNTER_SIZE, EO_UNSIGNED_LE};
use super::templates::{self, UserKeyKind};
use super::{Authorizer, Blob, KeyRef, PublicKey, Tpm, TpmError, public_key_of, salted_only};

/// Base of the NV indices of card counters (in TCG's owner range 0x01000000–0x013FFFFF);
/// the first two bytes of the card ID pick the index in the next 64 Ki. The index is a
/// function of the card ID alone, so destroy and format find the counter to increment
/// even when the card's record is damaged or altered; two cards on one TPM never share
/// one (create draws another card ID when its index is taken).
const COUNTER_BASE: u32 = 0x0130_0000;

/// The NV index of the counter of the card whose ID (as 16 bytes) is `card_id`.
pub(crate) fn counter_index(card_id: &[u8; 16]) -> u32 {
    COUNTER_BASE + u32::from(u16::from_be_bytes([card_id[0], card_id[1]]))
}

/// A card's counter and the value its guard was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NvCounter {
    /// The NV index handle.
    pub index: u32,
    /// The guard works while the counter is at most this value.
    pub bound: u64,
}

/// A card's guard key: its blob and the counter its policy checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub blob: Blob,
    pub counter: NvCounter,
}

/// Everything loading a card storage key needs, as read from the card's files.
#[derive(Debug, Clone, Copy)]
pub struct CskRef<'a> {
    /// The guard, or `None` for a card made before revocation existed (its CSK sits
    /// directly under the SRK).
    pub guard: Option<&'a Guard>,
    pub csk: &'a Blob,
    /// The CSK's expected authPolicy (the card's PIN/PUK/admin branches).
    pub policy: [u8; 32],
}

impl Tpm {
    // ----- the counter -----

    /// Defines the counter of the card `card_id` at its index ([`counter_index`]),
    /// increments it once so it has a value, and returns it with that value as the bound.
    /// [`TpmError::CounterTaken`] when the index exists already.
    pub(crate) fn counter_define(&mut self, card_id: &[u8; 16]) -> Result<NvCounter, TpmError> {
        let index = counter_index(card_id);
        let tr = match self.retry(|e| e.nv_define(PW, index, COUNTER_ATTRIBUTES, COUNTER_SIZE)) {
            Ok(tr) => tr,
            Err(e) if e.is_nv_defined() => return Err(TpmError::CounterTaken(index)),
            Err(e) if e.is_nv_space() => return Err(TpmError::NvFull),
            Err(e) => return Err(e),
        };
        self.nv.push((index, tr));
        let bound = self.counter_increment(index)?;
        let (_, _, name) = self.retry(|e| e.nv_read_public(tr))?;
        if name != policy::counter_name(index) {
            return Err(TpmError::Other {
                code: 0,
                what: format!(
                    "the TPM gave counter {index:#x} another Name than the one tpmvsc \
                     computes; not using it"
                ),
            });
        }
        Ok(NvCounter { index, bound })
    }

    /// The counter's current value.
    pub(crate) fn counter_read(&mut self, index: u32) -> Result<u64, TpmError> {
        let nv = self.counter_handle(index)?;
        let bytes = self.retry(|e| e.nv_read(nv, nv, PW, COUNTER_SIZE, 0))?;
        let arr: [u8; 8] = bytes.try_into().map_err(|_| TpmError::Other {
            code: 0,
            what: format!("counter {index:#x} did not read as 8 bytes"),
        })?;
        Ok(u64::from_be_bytes(arr))
    }

    /// Increments the counter (owner authorization, empty on most machines) and returns
    /// its new value. Every guard made for a lower value stops working.
    pub(crate) fn counter_increment(&mut self, index: u32) -> Result<u64, TpmError> {
        let nv = self.counter_handle(index)?;
        self.retry(|e| e.nv_increment(OWNER, nv, PW))?;
        self.counter_read(index)
    }

    /// Frees a card's counter. Refuses an index that is not a tpmvsc counter, so a
    /// tampered record cannot make this undefine someone else's NV data.
    pub(crate) fn counter_undefine(&mut self, index: u32) -> Result<(), TpmError> {
        let nv = self.counter_handle(index)?;
        self.retry(|e| e.nv_undefine(nv, PW))?;
        self.forget_nv(index);
        Ok(())
    }

    /// True when the counter still exists.
    pub fn counter_exists(&mut self, index: u32) -> Result<bool, TpmError> {
        match self.counter_handle(index) {
            Ok(_) => Ok(true),
            Err(TpmError::CounterGone) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The ESYS handle of a tpmvsc counter, checked to be one (attributes and size).
    fn counter_handle(&mut self, index: u32) -> Result<Tr, TpmError> {
        if !(COUNTER_BASE..COUNTER_BASE + 0x1_0000).contains(&index) {
            return Err(TpmError::Other {
                code: 0,
                what: format!("{index:#x} is not a tpmvsc counter index"),
            });
        }
        let known = self.nv.iter().any(|(i, _)| *i == index);
        let tr = match self.nv_handle(index) {
            Ok(tr) => tr,
            Err(e) if e.is_missing_handle() => return Err(TpmError::CounterGone),
            Err(e) => return Err(e),
        };
        if !known {
            let (attrs, size, _) = self.retry(|e| e.nv_read_public(tr))?;
            if attrs & !policy::NV_WRITTEN != COUNTER_ATTRIBUTES || size != COUNTER_SIZE {
                self.forget_nv(index);
                return Err(TpmError::Other {
                    code: 0,
                    what: format!(
                        "NV index {index:#x} is not a tpmvsc counter (attributes {attrs:#x}); \
                         the card's files name an index they do not own"
                    ),
                });
            }
        }
        Ok(tr)
    }

    // ----- guard and card storage key -----

    /// Creates a card's guard key for `counter` under the SRK.
    pub(crate) fn create_guard(&mut self, counter: NvCounter) -> Result<Guard, TpmError> {
        let policy = policy::guard_policy(counter.index, counter.bound);
        let blob = self.create_under_srk(templates::card_guard(&policy)?, &[], None)?;
        Ok(Guard { blob, counter })
    }

    /// Creates a card storage key with authPolicy `policy` and the PIN-derived `auth`,
    /// under `guard` (or under the SRK for `None`). The auth value travels encrypted by
    /// the salted session.
    pub fn create_csk(
        &mut self,
        guard: Option<&Guard>,
        policy: &[u8; 32],
        auth: &[u8],
    ) -> Result<Blob, TpmError> {
        let template = templates::card_storage_key(policy)?;
        let Some(g) = guard else {
            return self.create_under_srk(template, auth, None);
        };
        let public = marshall(&template)?;
        let gtr = self.load_guard(g, &[])?;
        let result = (|| {
            let ps = self.guard_session(g)?;
            let salted = self.salted_session()?;
            let r = self.retry_with_room(&[], |e| {
                e.create(gtr, [ps, salted, NONE], &public, auth, None)
            });
            if r.is_err() {
                self.flush_quietly(ps);
            }
            r
        })();
        self.flush_quietly(gtr);
        let (private, public) = result?;
        Ok(Blob { public, private })
    }

    /// Checks the PIN with the TPM: the CSK is loaded (through its guard) and a small
    /// sealed object is created under it, authorized by the PIN-derived `auth` in the
    /// salted session. One command beyond the load; a wrong PIN is an authorization
    /// failure the TPM's dictionary-attack logic counts. Nothing is kept.
    pub fn check_pin(&mut self, csk: CskRef<'_>, auth: &[u8]) -> Result<(), TpmError> {
        let parent = self.load_csk(csk, auth)?;
        let salted = self.salted_session()?;
        let probe = marshall(&templates::sealed_secret()?)?;
        self.retry_with_room(&[], |e| {
            e.create(parent, salted_only(salted), &probe, &[], Some(&[0]))
        })
        .map(|_| ())
    }

    /// Changes the card storage key's authValue (a new PIN) through its policy: the
    /// branch `how` names must be one of `branches` (in creation order). Returns the new
    /// private blob; the old blob still opens with the old value, so the caller must
    /// replace it on disk (DESIGN.md §2).
    ///
    /// PIN branch: PolicyAuthValue in a policy session salted to the SRK with parameter
    /// encryption (the caller knows the current value). PUK/admin branch: PolicySecret on
    /// the secret object, whose authValue rides in the salted HMAC session; the new value
    /// is encrypted by that salted session as a second, non-authorizing session, because
    /// the policy session's encryption key would involve the CSK's current authValue,
    /// which the PUK or admin holder does not know (TPM-FEASIBILITY.md, constraint 2).
    pub fn change_csk_auth(
        &mut self,
        csk: CskRef<'_>,
        branches: &[Branch],
        how: Authorizer<'_>,
        new_auth: &[u8],
    ) -> Result<Blob, TpmError> {
        self.check_csk(csk)?;
        let csk_id = ObjectCache::id_of(csk.csk);
        // The authorizing secret first: its object may then make room for the guard (a
        // TPM with three object slots holds the SRK, the guard and the CSK at the end).
        let (policy, extra, branch) = match how {
            Authorizer::Pin(_) => (self.start_policy_session(true)?, NONE, Branch::Pin),
            Authorizer::Secret {
                object,
                auth,
                is_puk,
            } => {
                let obj = self.load_secret(object, auth, &[csk_id])?;
                let salted = self.salted_session()?;
                let ps = self.start_policy_session(false)?;
                if let Err(e) = self.retry(|e| e.policy_secret(obj, ps, salted_only(salted))) {
                    self.flush_quietly(ps);
                    return Err(e);
                }
                let name = object.name();
                let branch = if is_puk {
                    Branch::Puk { name }
                } else {
                    Branch::Admin { name }
                };
                (ps, salted, branch)
            }
        };
        // ObjectChangeAuth re-wraps the CSK under its parent, which must be loaded.
        let guard = match csk.guard {
            Some(g) => match self.load_guard(g, &[csk_id]) {
                Ok(tr) => Some(tr),
                Err(e) => {
                    self.flush_quietly(policy);
                    return Err(e);
                }
            },
            None => None,
        };
        let result = (|| {
            let pin_auth = match how {
                Authorizer::Pin(a) => Some(a),
                Authorizer::Secret { .. } => None,
            };
            let csk_tr = self.load_csk_under(csk, guard, pin_auth)?;
            let parent = match guard {
                Some(g) => g,
                None => self.srk_handle()?,
            };
            if !branches.contains(&branch) {
                return Err(TpmError::Policy(0));
            }
            if branch == Branch::Pin {
                self.retry(|e| e.policy_auth_value(policy))?;
            }
            self.retry(|e| e.policy_command_code(policy, policy::CC_OBJECT_CHANGE_AUTH))?;
            if branches.len() > 1 {
                let digests: Vec<[u8; 32]> = branches.iter().map(Branch::digest).collect();
                self.retry(|e| e.policy_or(policy, &digests))?;
            }
            self.retry(|e| e.object_change_auth(csk_tr, parent, [policy, extra, NONE], new_auth))
        })();
        self.flush_quietly(policy);
        if let Some(g) = guard {
            self.flush_quietly(g);
        }
        let private = result?;
        self.forget(csk.csk);
        Ok(Blob {
            public: csk.csk.public.clone(),
            private,
        })
    }

    /// Creates a user key under the card storage key (loaded with its PIN-derived
    /// authValue, in the salted session). Returns the blob and its public key.
    pub fn create_user_key(
        &mut self,
        csk: CskRef<'_>,
        csk_auth: &[u8],
        kind: UserKeyKind,
    ) -> Result<(Blob, PublicKey), TpmError> {
        let parent = self.load_csk(csk, csk_auth)?;
        let session = self.salted_session()?;
        let template = marshall(&templates::user_key(kind)?)?;
        let keep = [ObjectCache::id_of(csk.csk)];
        let (private, public) = self.retry_with_room(&keep, |e| {
            e.create(parent, salted_only(session), &template, &[], None)
        })?;
        let key = public_key_of(&public)?;
        Ok((Blob { public, private }, key))
    }

    /// Loads a user key under its card storage key (through the cache; the CSK is loaded
    /// with its authValue when it is not).
    pub fn load_user_key(
        &mut self,
        csk: CskRef<'_>,
        csk_auth: &[u8],
        key: &Blob,
    ) -> Result<KeyRef, TpmError> {
        let id = ObjectCache::id_of(key);
        if let Some(e) = self.cache.touch(&id)
            && let super::cache::Residence::Loaded(h) = e.residence
        {
            return Ok(KeyRef(h));
        }
        let parent = self.load_csk(csk, csk_auth)?;
        let session = self.salted_session()?;
        let keep = [ObjectCache::id_of(csk.csk)];
        let h = self.cached_load(id, &keep, |t| {
            t.retry_with_room(&keep, |e| {
                e.load(parent, salted_only(session), &key.private, &key.public)
            })
        })?;
        Ok(KeyRef(h))
    }

    /// The CSK loaded (through the cache) with `auth` set for its children.
    fn load_csk(&mut self, csk: CskRef<'_>, auth: &[u8]) -> Result<Tr, TpmError> {
        self.check_csk(csk)?;
        let id = ObjectCache::id_of(csk.csk);
        let h = self.cached_load(id, &[], |t| {
            let guard = match csk.guard {
                Some(g) => Some(t.load_guard(g, &[])?),
                None => None,
            };
            let r = t.load_csk_with(csk, guard);
            if let Some(g) = guard {
                t.flush_quietly(g);
            }
            r
        })?;
        self.set_cached_auth(&id, h, auth)?;
        Ok(h)
    }

    /// Loads the CSK through the cache under its already loaded guard (or the SRK for a
    /// card without one), optionally setting its authValue.
    fn load_csk_under(
        &mut self,
        csk: CskRef<'_>,
        guard: Option<Tr>,
        auth: Option<&[u8]>,
    ) -> Result<Tr, TpmError> {
        let id = ObjectCache::id_of(csk.csk);
        let h = self.cached_load(id, &[], |t| t.load_csk_with(csk, guard))?;
        if let Some(a) = auth {
            self.set_cached_auth(&id, h, a)?;
        }
        Ok(h)
    }

    /// TPM2_Load of the CSK (no cache): under the loaded guard through the guard's policy,
    /// or under the SRK for a card without a guard.
    fn load_csk_with(&mut self, csk: CskRef<'_>, guard: Option<Tr>) -> Result<Tr, TpmError> {
        match (csk.guard, guard) {
            (Some(g), Some(p)) => {
                let ps = self.guard_session(g)?;
                let r = self
                    .retry_with_room(&[], |e| {
                        e.load(p, [ps, NONE, NONE], &csk.csk.private, &csk.csk.public)
                    })
                    .map_err(|e| e.in_file("csk.json"));
                if r.is_err() {
                    self.flush_quietly(ps);
                }
                r
            }
            (None, _) => {
                let srk = self.srk_handle()?;
                self.retry_with_room(&[], |e| e.load(srk, PW, &csk.csk.private, &csk.csk.public))
            }
            (Some(_), None) => Err(TpmError::Other {
                code: 0,
                what: "internal: the guard is not loaded".into(),
            }),
        }
    }

    /// A one-use policy session that satisfies the guard's policy: PolicyNV on the card's
    /// counter (counter ≤ bound). A counter past the bound means this copy of the card
    /// was revoked (formatted or destroyed since).
    fn guard_session(&mut self, g: &Guard) -> Result<Tr, TpmError> {
        let nv = self.counter_handle(g.counter.index)?;
        let ps = self.start_policy_session(false)?;
        let bound = g.counter.bound.to_be_bytes();
        let r = self.retry(|e| e.policy_nv(nv, nv, ps, PW, &bound, EO_UNSIGNED_LE));
        match r {
            Ok(()) => {
                self.use_once(ps)?;
                Ok(ps)
            }
            Err(e) => {
                self.flush_quietly(ps);
                Err(match e {
                    TpmError::Policy(_) => TpmError::Revoked,
                    other => other,
                })
            }
        }
    }

    /// Loads a guard under the SRK (not cached: it is only needed to load its CSK),
    /// making room without evicting the objects in `keep`.
    fn load_guard(&mut self, g: &Guard, keep: &[super::cache::ObjectId]) -> Result<Tr, TpmError> {
        let policy = policy::guard_policy(g.counter.index, g.counter.bound);
        if !templates::made_from(&g.blob.public, &templates::card_guard(&policy)?) {
            return Err(TpmError::UnexpectedObject("guard key (guard.json)"));
        }
        let srk = self.srk_handle()?;
        self.retry_with_room(keep, |e| e.load(srk, PW, &g.blob.private, &g.blob.public))
            .map_err(|e| e.in_file("guard.json"))
    }

    /// Refuses a CSK (or guard) whose public area is not what the card expects, before
    /// any secret is sent to it.
    fn check_csk(&mut self, csk: CskRef<'_>) -> Result<(), TpmError> {
        if !templates::made_from(&csk.csk.public, &templates::card_storage_key(&csk.policy)?) {
            return Err(TpmError::UnexpectedObject("card storage key (csk.json)"));
        }
        Ok(())
    }

    fn set_cached_auth(
        &mut self,
        id: &super::cache::ObjectId,
        h: Tr,
        auth: &[u8],
    ) -> Result<(), TpmError> {
        self.esys.set_auth(h, auth)?;
        if let Some(e) = self.cache.touch(id) {
            e.auth = Some(zeroize::Zeroizing::new(auth.to_vec()));
        }
        Ok(())
    }

    // ----- sealed secrets (PUK, admin object) under the SRK -----

    /// Creates an object under the SRK with the given authValue and sealed data. The
    /// secret travels encrypted in the salted session.
    pub fn create_under_srk(
        &mut self,
        template: tss_esapi::structures::Public,
        auth: &[u8],
        data: Option<&[u8]>,
    ) -> Result<Blob, TpmError> {
        let srk = self.srk_handle()?;
        let session = self.salted_session()?;
        let public = marshall(&template)?;
        let (private, public) = self.retry_with_room(&[], |e| {
            e.create(srk, salted_only(session), &public, auth, data)
        })?;
        Ok(Blob { public, private })
    }

    /// Proves knowledge of `auth` for a sealed secret object (PUK, admin object) to the
    /// TPM: PolicySecret in a throw-away policy session, the object authorized through
    /// the salted HMAC session. A wrong value is an authorization failure the TPM's
    /// dictionary-attack logic counts; nothing is trusted from the host.
    pub fn check_auth(&mut self, blob: &Blob, auth: &[u8]) -> Result<(), TpmError> {
        let handle = self.load_secret(blob, auth, &[])?;
        let salted = self.salted_session()?;
        let policy = self.start_policy_session(false)?;
        let result = self.retry(|e| e.policy_secret(handle, policy, salted_only(salted)));
        self.flush_quietly(policy);
        result
    }

    /// Changes the authValue of a sealed secret object (PUK, admin object) knowing the
    /// current one; its Name, fixed in the CSK policy, stays the same.
    pub(crate) fn change_object_auth(
        &mut self,
        object: &Blob,
        auth: &[u8],
        new_auth: &[u8],
    ) -> Result<Blob, TpmError> {
        let handle = self.load_secret(object, auth, &[])?;
        let srk = self.srk_handle()?;
        let salted = self.salted_session()?;
        let private =
            self.retry(|e| e.object_change_auth(handle, srk, salted_only(salted), new_auth))?;
        self.forget(object);
        Ok(Blob {
            public: object.public.clone(),
            private,
        })
    }

    /// Loads a sealed secret object under the SRK through the cache, with its authValue,
    /// after checking it is one.
    fn load_secret(
        &mut self,
        blob: &Blob,
        auth: &[u8],
        keep: &[super::cache::ObjectId],
    ) -> Result<Tr, TpmError> {
        if !templates::made_from(&blob.public, &templates::sealed_secret()?) {
            return Err(TpmError::UnexpectedObject("PUK or admin object"));
        }
        let srk = self.srk_handle()?;
        let id = ObjectCache::id_of(blob);
        let h = self.cached_load(id, keep, |t| {
            t.retry_with_room(keep, |e| e.load(srk, PW, &blob.private, &blob.public))
        })?;
        self.set_cached_auth(&id, h, auth)?;
        Ok(h)
    }
}

fn marshall(p: &tss_esapi::structures::Public) -> Result<Vec<u8>, TpmError> {
    use tss_esapi::traits::Marshall;
    p.marshall().map_err(crate::error::tpm::classify)
}
