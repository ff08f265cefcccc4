//! The TPM: one tss-esapi `Context`, opened on demand, and the few operations cards need.
//!
//! This module knows blobs, auth values and policies, not cards (CONVENTIONS.md §1). It is
//! the only place that uses `tss_esapi` (with `raw.rs` for the calls tss-esapi lacks).
//! Rules kept here (DESIGN.md §2): every session that carries a nonempty authValue is an
//! HMAC session salted to the SRK, after the SRK's Name was checked against the card's
//! record; secrets sent to the TPM ride in that session with parameter encryption.

pub mod cache;
pub mod error;
pub mod lock;
pub mod policy;
pub mod raw;
pub mod templates;

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tss_esapi::Context;
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::{CapabilityType, CommandCode, PropertyTag, SessionType};
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, CapabilityData, Digest, DigestList, Nonce, Private, Public, SensitiveData,
    SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use zeroize::Zeroizing;

use cache::{Entry, ObjectCache, ObjectId, Residence};
pub use error::TpmError;
use error::classify;
pub use lock::{TpmLock, lock_dir};

/// Environment variable naming the TCTI.
pub const TCTI_ENV: &str = "TPMVSC_TCTI";
/// TCTI used when `TPMVSC_TCTI` is not set: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
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
    #[serde(with = "hex_bytes")]
    pub public: Vec<u8>,
    #[serde(with = "hex_bytes")]
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

/// What a card records about the SRK it was made under (DESIGN.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrkRecord {
    /// Marshalled TPMT_PUBLIC the primary is (re)created from.
    #[serde(with = "hex_bytes")]
    pub template: Vec<u8>,
    /// Its Name; a different Name means the TPM was cleared.
    #[serde(with = "hex_bytes")]
    pub name: Vec<u8>,
}

/// A secret destined for a TPM authValue; zeroized when dropped.
pub type AuthValue = Zeroizing<Vec<u8>>;

/// Objects context-saved from a connection that was given up (see [`Tpm::save_objects`]).
#[derive(Debug, Default)]
pub struct SavedObjects(Vec<cache::Entry>);

/// The public half of a user key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Modulus and public exponent, big-endian.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// Curve (256 or 384 bits) and the affine coordinates, each padded to the field size.
    Ecc { bits: u16, x: Vec<u8>, y: Vec<u8> },
}

/// The public key in a marshalled TPMT_PUBLIC.
pub fn public_key_of(public: &[u8]) -> Result<PublicKey, TpmError> {
    public_key(&Public::unmarshall(public).map_err(classify)?)
}

fn public_key(public: &Public) -> Result<PublicKey, TpmError> {
    match public {
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

/// An open TPM connection with its SRK, salted session and object cache.
#[derive(Debug)]
pub struct Tpm {
    ctx: Context,
    tcti: String,
    /// Held while this connection is open when no resource manager isolates processes.
    lock: Option<TpmLock>,
    /// When the connection (and the lock) was taken.
    opened: std::time::Instant,
    srk: Option<(KeyHandle, Vec<u8>)>,
    /// The SRK was created here (flush it) rather than found persistent (just close it).
    srk_transient: bool,
    salted: Option<AuthSession>,
    cache: ObjectCache,
}

impl Tpm {
    /// Opens the TPM named by `TPMVSC_TCTI` (default `device:/dev/tpmrm0`).
    pub fn open() -> Result<Tpm, TpmError> {
        Tpm::open_tcti(&configured_tcti())
    }

    /// Opens the TPM behind `tcti`. Without a resource manager (swtpm, mssim, /dev/tpm0) a
    /// cross-process lock file is taken first and objects a killed process left loaded are
    /// flushed (DESIGN.md §6).
    pub fn open_tcti(tcti: &str) -> Result<Tpm, TpmError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|e| TpmError::NoTpm {
            tcti: tcti.to_string(),
            why: format!("not a TCTI configuration: {e}"),
        })?;
        if let Some(path) = tcti.strip_prefix("device:")
            && !std::path::Path::new(path).exists()
        {
            return Err(TpmError::NoTpm {
                tcti: tcti.to_string(),
                why: format!("{path} does not exist"),
            });
        }
        let shared = !has_resource_manager(tcti);
        let lock = if shared {
            Some(TpmLock::take(tcti)?)
        } else {
            None
        };
        let ctx = Context::new(conf).map_err(|e| TpmError::NoTpm {
            tcti: tcti.to_string(),
            why: format!("cannot connect: {}", classify(e)),
        })?;
        let mut tpm = Tpm {
            ctx,
            tcti: tcti.to_string(),
            lock,
            opened: std::time::Instant::now(),
            srk: None,
            srk_transient: false,
            salted: None,
            cache: ObjectCache::new(DEFAULT_CACHE_SLOTS),
        };
        if shared {
            tpm.flush_stale()?;
        }
        Ok(tpm)
    }

    /// Flushes transient objects and sessions a killed process left in a TPM without a
    /// resource manager. Runs with the cross-process lock held, so none belongs to a live
    /// process; on this connection, so no second connection (swtpm admits one) is needed.
    fn flush_stale(&mut self) -> Result<(), TpmError> {
        // Transient objects, then loaded sessions (sessions are never context-saved here).
        for first in [0x8000_0000u32, 0x0200_0000] {
            let (data, _) =
                self.retry(|ctx| ctx.get_capability(CapabilityType::Handles, first, 64))?;
            let CapabilityData::Handles(list) = data else {
                continue;
            };
            for h in list.into_inner() {
                let raw = u32::from(h);
                // TPM_HT_LOADED_SESSION lists HMAC (0x02) and policy (0x03) sessions.
                let kind = raw >> 24;
                if kind != first >> 24 && !(first >> 24 == 0x02 && kind == 0x03) {
                    continue;
                }
                let Ok(th) = TpmHandle::try_from(raw) else {
                    continue;
                };
                if let Ok(oh) = self
                    .ctx
                    .execute_without_session(|c| c.tr_from_tpm_public(th))
                {
                    let _ = self.ctx.flush_context(oh);
                }
            }
        }
        Ok(())
    }

    /// True when this connection holds the cross-process lock of a TPM without resource
    /// manager, has had it for a short turn at least, and another process is waiting.
    /// The turn keeps two busy processes from paying a reconnect on every command.
    pub fn others_waiting(&self) -> bool {
        self.opened.elapsed() >= MIN_TURN && self.lock.as_ref().is_some_and(TpmLock::others_waiting)
    }

    /// True when this connection shares the TPM with other processes only through the
    /// lock file (no resource manager).
    pub fn is_shared(&self) -> bool {
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
    /// Microsoft simulator.
    pub fn info(&mut self) -> Result<TpmInfo, TpmError> {
        let word = |v: Option<u32>| -> String {
            v.unwrap_or(0)
                .to_be_bytes()
                .iter()
                .filter(|b| **b != 0)
                .map(|b| char::from(*b))
                .collect()
        };
        let manufacturer = word(self.property(PropertyTag::Manufacturer)?);
        let mut vendor = String::new();
        for tag in [
            PropertyTag::VendorString1,
            PropertyTag::VendorString2,
            PropertyTag::VendorString3,
            PropertyTag::VendorString4,
        ] {
            vendor.push_str(&word(self.property(tag)?));
        }
        let fw1 = self.property(PropertyTag::FirmwareVersion1)?.unwrap_or(0);
        let fw2 = self.property(PropertyTag::FirmwareVersion2)?.unwrap_or(0);
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
        Ok(TpmInfo {
            manufacturer: manufacturer.trim().to_string(),
            vendor,
            firmware,
            simulated,
        })
    }

    /// The TPM's dictionary-attack state.
    pub fn da_status(&mut self) -> Result<DaStatus, TpmError> {
        let permanent = self.property(PropertyTag::Permanent)?.unwrap_or(0);
        Ok(DaStatus {
            counter: self.property(PropertyTag::LockoutCounter)?.unwrap_or(0),
            max_tries: self.property(PropertyTag::MaxAuthFail)?.unwrap_or(0),
            recovery_time: self.property(PropertyTag::LockoutInterval)?.unwrap_or(0),
            lockout_recovery: self.property(PropertyTag::LockoutRecovery)?.unwrap_or(0),
            // TPMA_PERMANENT: lockoutAuthSet = bit 2, inLockout = bit 9.
            lockout_auth_set: permanent & (1 << 2) != 0,
            in_lockout: permanent & (1 << 9) != 0,
        })
    }

    /// `n` random bytes from the TPM.
    pub fn random(&mut self, n: usize) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        while out.len() < n {
            let want = (n - out.len()).min(32);
            let d = self.retry(|ctx| ctx.execute_without_session(|c| c.get_random(want)))?;
            out.extend_from_slice(d.value());
        }
        Ok(out)
    }

    /// Picks the SRK for a new card: the standard ECC P-256 primary (TCG template). The
    /// persistent key at 0x81000001 serves when it is that primary (its Name matches);
    /// a primary's public area cannot serve as a template (its `unique` field is an
    /// input to key derivation), so any other key there is left alone.
    pub fn choose_srk(&mut self) -> Result<SrkRecord, TpmError> {
        let template = templates::srk()?.marshall().map_err(classify)?;
        let record = SrkRecord {
            name: self.primary_name(&template)?,
            template,
        };
        self.use_srk(&record)?;
        Ok(record)
    }

    /// Makes the card's SRK current: the persistent one when its Name matches the record,
    /// else the primary re-created from the recorded template. A different Name after
    /// re-creation means the TPM was cleared ([`TpmError::Cleared`]).
    pub fn use_srk(&mut self, record: &SrkRecord) -> Result<(), TpmError> {
        if matches!(&self.srk, Some((_, name)) if *name == record.name) {
            return Ok(());
        }
        self.drop_srk();
        if let Some((handle, name)) = self.read_persistent(SRK_PERSISTENT)?
            && name == record.name
        {
            self.srk = Some((KeyHandle::from(handle), name));
            return Ok(());
        }
        // Never make (and salt to) a key a store file describes: only the standard
        // template is re-created (DESIGN.md §2).
        if record.template != templates::srk()?.marshall().map_err(classify)? {
            return Err(TpmError::Other {
                code: 0,
                what: "the card's record names a storage root key template tpmvsc does not make; \
                       the card's files were altered"
                    .into(),
            });
        }
        let public = Public::unmarshall(&record.template).map_err(classify)?;
        let handle = self.retry_with_room(|ctx| {
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Owner, public.clone(), None, None, None, None)
            })
            .map(|r| r.key_handle)
        })?;
        let (_, name, _) = self.ctx.read_public(handle).map_err(classify)?;
        if name.value() != record.name.as_slice() {
            let _ = self.ctx.flush_context(handle.into());
            return Err(TpmError::Cleared);
        }
        self.srk = Some((handle, name.value().to_vec()));
        self.srk_transient = true;
        Ok(())
    }

    /// Creates an object under the SRK with the given authValue and sealed data. The
    /// secret travels encrypted in the salted session.
    pub fn create_under_srk(
        &mut self,
        public: Public,
        auth: &[u8],
        data: Option<&[u8]>,
    ) -> Result<Blob, TpmError> {
        let srk = self.srk_handle()?;
        let session = self.salted_session()?;
        let auth = Auth::try_from(auth.to_vec()).map_err(classify)?;
        let data = data
            .map(|d| SensitiveData::try_from(d.to_vec()))
            .transpose()
            .map_err(classify)?;
        let created = self.retry_with_room(|ctx| {
            ctx.execute_with_session(Some(session), |c| {
                c.create(
                    srk,
                    public.clone(),
                    Some(auth.clone()),
                    data.clone(),
                    None,
                    None,
                )
            })
        })?;
        Ok(Blob {
            public: created.out_public.marshall().map_err(classify)?,
            private: created.out_private.value().to_vec(),
        })
    }

    /// Proves knowledge of `auth` for the object in `blob` (a child of the SRK) to the
    /// TPM: PolicySecret in a throw-away policy session, the object authorized through
    /// the salted HMAC session. A wrong value is an authorization failure the TPM's
    /// dictionary-attack logic counts; nothing is trusted from the host.
    pub fn check_auth(&mut self, blob: &Blob, auth: &[u8]) -> Result<(), TpmError> {
        let handle = self.load_under_srk(blob, Some(auth))?;
        let salted = self.salted_session()?;
        let policy = self.start_policy_session(false)?;
        let result = self.retry(|ctx| {
            ctx.execute_with_sessions((Some(salted), None, None), |c| {
                c.policy_secret(
                    policy,
                    ObjectHandle::from(handle).into(),
                    Nonce::default(),
                    Digest::default(),
                    Nonce::default(),
                    None,
                )
            })
        });
        self.flush_session(policy.into());
        result.map(|_| ())
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
        csk: &Blob,
        branches: &[policy::Branch],
        how: Authorizer<'_>,
        new_auth: &[u8],
    ) -> Result<Blob, TpmError> {
        let srk = self.srk_handle()?;
        let new_auth = Auth::try_from(new_auth.to_vec()).map_err(classify)?;
        let (policy, extra, wanted) = match how {
            Authorizer::Pin(pin_auth) => {
                let csk_handle = self.load_under_srk(csk, Some(pin_auth))?;
                let ps = self.start_policy_session(true)?;
                let r = self.retry(|ctx| ctx.policy_auth_value(ps));
                (ps, None, (csk_handle, r, policy::Branch::Pin))
            }
            Authorizer::Secret {
                object,
                auth,
                is_puk,
            } => {
                let obj = self.load_under_srk(object, Some(auth))?;
                let salted = self.salted_session()?;
                let ps = self.start_policy_session(false)?;
                let r = self
                    .retry(|ctx| {
                        ctx.execute_with_sessions((Some(salted), None, None), |c| {
                            c.policy_secret(
                                ps,
                                ObjectHandle::from(obj).into(),
                                Nonce::default(),
                                Digest::default(),
                                Nonce::default(),
                                None,
                            )
                        })
                    })
                    .map(|_| ());
                let name = object.name();
                let branch = if is_puk {
                    policy::Branch::Puk { name }
                } else {
                    policy::Branch::Admin { name }
                };
                // Load the CSK after the secret was checked; it needs no auth here.
                let csk_handle = match r {
                    Ok(()) => self.load_under_srk(csk, None),
                    Err(e) => Err(e),
                };
                match csk_handle {
                    Ok(h) => (ps, Some(salted), (h, Ok(()), branch)),
                    Err(e) => (ps, Some(salted), (KeyHandle::Null, Err(e), branch)),
                }
            }
        };
        let (csk_handle, first, branch) = wanted;
        let result = first.and_then(|()| {
            if !branches.contains(&branch) {
                return Err(TpmError::Policy(0));
            }
            self.retry(|ctx| ctx.policy_command_code(policy, CommandCode::ObjectChangeAuth))?;
            if branches.len() > 1 {
                let mut list = DigestList::new();
                for b in branches {
                    list.add(Digest::try_from(b.digest().to_vec()).map_err(classify)?)
                        .map_err(classify)?;
                }
                self.retry(|ctx| ctx.policy_or(policy, list.clone()))?;
            }
            let sessions = (Some(AuthSession::from(policy)), extra, None);
            self.retry(|ctx| {
                ctx.execute_with_sessions(sessions, |c| {
                    c.object_change_auth(csk_handle.into(), srk.into(), new_auth.clone())
                })
            })
        });
        self.flush_session(policy.into());
        let private = result?;
        self.forget(csk);
        Ok(Blob {
            public: csk.public.clone(),
            private: private.value().to_vec(),
        })
    }

    /// Changes the authValue of a sealed secret object (PUK, admin object) knowing the
    /// current one; its Name, fixed in the CSK policy, stays the same.
    pub fn change_object_auth(
        &mut self,
        object: &Blob,
        auth: &[u8],
        new_auth: &[u8],
    ) -> Result<Blob, TpmError> {
        let srk = self.srk_handle()?;
        let handle = self.load_under_srk(object, Some(auth))?;
        let salted = self.salted_session()?;
        let new_auth = Auth::try_from(new_auth.to_vec()).map_err(classify)?;
        let private = self.retry(|ctx| {
            ctx.execute_with_sessions((Some(salted), None, None), |c| {
                c.object_change_auth(handle.into(), srk.into(), new_auth.clone())
            })
        })?;
        self.forget(object);
        Ok(Blob {
            public: object.public.clone(),
            private: private.value().to_vec(),
        })
    }

    /// Creates a user key under the card storage key `csk` (loaded with its PIN-derived
    /// authValue, in the salted session). Returns the blob and its public key.
    pub fn create_user_key(
        &mut self,
        csk: &Blob,
        csk_auth: &[u8],
        kind: templates::UserKeyKind,
    ) -> Result<(Blob, PublicKey), TpmError> {
        let parent = self.load_under_srk(csk, Some(csk_auth))?;
        let session = self.salted_session()?;
        let template = templates::user_key(kind)?;
        let created = self.retry_with_room(|ctx| {
            ctx.execute_with_session(Some(session), |c| {
                c.create(parent, template.clone(), None, None, None, None)
            })
        })?;
        let key = public_key(&created.out_public)?;
        let blob = Blob {
            public: created.out_public.marshall().map_err(classify)?,
            private: created.out_private.value().to_vec(),
        };
        Ok((blob, key))
    }

    /// Loads a user key under its card storage key (through the cache; the CSK is loaded
    /// with its authValue when it is not).
    pub fn load_user_key(
        &mut self,
        csk: &Blob,
        csk_auth: &[u8],
        key: &Blob,
    ) -> Result<KeyHandle, TpmError> {
        let id = ObjectCache::id_of(key);
        if let Some(e) = self.cache.touch(&id)
            && let Residence::Loaded(h) = e.residence
        {
            return Ok(h);
        }
        let parent = self.load_under_srk(csk, Some(csk_auth))?;
        let session = self.salted_session()?;
        let csk_id = ObjectCache::id_of(csk);
        self.cached_load_keep(id, &[csk_id], |ctx| {
            let private = Private::try_from(key.private.clone())?;
            let public = Public::unmarshall(&key.public)?;
            ctx.execute_with_session(Some(session), |c| c.load(parent, private, public))
        })
    }

    /// ECDSA with a loaded user key over an already hashed value; returns (r, s).
    /// The key has an empty authValue and noDA: a password session, nothing secret
    /// crosses the wire (DESIGN.md §2).
    pub fn sign_ecdsa(
        &mut self,
        key: KeyHandle,
        digest: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
        use tss_esapi::structures::{HashScheme, HashcheckTicket, Signature, SignatureScheme};
        use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
        let hash = match digest.len() {
            20 => HashingAlgorithm::Sha1,
            32 => HashingAlgorithm::Sha256,
            48 => HashingAlgorithm::Sha384,
            _ => HashingAlgorithm::Sha512,
        };
        let d = Digest::try_from(digest.to_vec()).map_err(classify)?;
        let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(classify)?;
        let scheme = SignatureScheme::EcDsa {
            hash_scheme: HashScheme::new(hash),
        };
        let sig = self.retry(|ctx| {
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.sign(key, d.clone(), scheme, ticket.clone())
            })
        })?;
        match sig {
            Signature::EcDsa(s) => Ok((
                s.signature_r().value().to_vec(),
                s.signature_s().value().to_vec(),
            )),
            _ => Err(TpmError::Other {
                code: 0,
                what: "TPM returned a non-ECDSA signature".into(),
            }),
        }
    }

    /// The raw RSA private operation (TPM2_RSA_Decrypt with the NULL scheme) on `input`
    /// of modulus length. `secret_output`: the result is a plaintext, so the response is
    /// encrypted by the salted session; for a signature (public output) a password
    /// session alone is used.
    pub fn rsa_raw(
        &mut self,
        key: KeyHandle,
        input: &[u8],
        secret_output: bool,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        use tss_esapi::structures::{Data, PublicKeyRsa, RsaDecryptionScheme};
        let c = PublicKeyRsa::try_from(input.to_vec()).map_err(classify)?;
        let extra = if secret_output {
            Some(self.salted_session()?)
        } else {
            None
        };
        let out = self.retry(|ctx| {
            ctx.execute_with_sessions((Some(AuthSession::Password), extra, None), |x| {
                x.rsa_decrypt(key, c.clone(), RsaDecryptionScheme::Null, Data::default())
            })
        })?;
        Ok(Zeroizing::new(out.value().to_vec()))
    }

    /// ECDH: the shared point's x coordinate with the peer's public point (x, y), the
    /// response encrypted by the salted session.
    pub fn ecdh(
        &mut self,
        key: KeyHandle,
        x: &[u8],
        y: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        use tss_esapi::structures::{EccParameter, EccPoint};
        let p = EccPoint::new(
            EccParameter::try_from(x.to_vec()).map_err(classify)?,
            EccParameter::try_from(y.to_vec()).map_err(classify)?,
        );
        let salted = self.salted_session()?;
        let z = self.retry(|ctx| {
            ctx.execute_with_sessions((Some(AuthSession::Password), Some(salted), None), |c| {
                c.ecdh_z_gen(key, p.clone())
            })
        })?;
        Ok(Zeroizing::new(z.x().value().to_vec()))
    }

    /// Loads a child of the SRK through the cache and sets its authValue.
    pub fn load_under_srk(
        &mut self,
        blob: &Blob,
        auth: Option<&[u8]>,
    ) -> Result<KeyHandle, TpmError> {
        let srk = self.srk_handle()?;
        let id = ObjectCache::id_of(blob);
        let handle = self.cached_load(id, |ctx| {
            let private = Private::try_from(blob.private.clone())?;
            let public = Public::unmarshall(&blob.public)?;
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.load(srk, private, public)
            })
        })?;
        let auth = auth.map(|a| Zeroizing::new(a.to_vec()));
        if let Some(a) = &auth {
            self.set_auth(handle.into(), a)?;
        }
        if let Some(e) = self.cache.touch(&id) {
            e.auth = auth;
        }
        Ok(handle)
    }

    /// Removes an object from the TPM and the cache.
    pub fn forget(&mut self, blob: &Blob) {
        let id = ObjectCache::id_of(blob);
        if let Some(Entry {
            residence: Residence::Loaded(h),
            ..
        }) = self.cache.remove(&id)
        {
            let _ = self.ctx.flush_context(h.into());
        }
    }

    /// Flushes every cached object (logout): the SRK and the salted session stay, they
    /// hold nothing of a card.
    pub fn flush_objects(&mut self) {
        for e in self.cache.drain() {
            if let Residence::Loaded(h) = e.residence {
                let _ = self.ctx.flush_context(h.into());
            }
        }
    }

    /// Context-saves every cached object and takes the saved contexts out of this
    /// connection, which is about to be given up: a later connection to the same TPM
    /// loads them back ([`Tpm::restore_objects`]) without the card storage key's auth, so a
    /// logged-in session keeps using its keys through a TPM lockout (DESIGN.md §2). The
    /// contexts stay in memory, never on disk.
    pub fn save_objects(&mut self) -> SavedObjects {
        let mut out = Vec::new();
        for mut e in self.cache.drain() {
            if let Residence::Loaded(h) = e.residence {
                match self.ctx.context_save(h.into()) {
                    Ok(ctx) => e.residence = Residence::Saved(ctx),
                    Err(_) => {
                        let _ = self.ctx.flush_context(h.into());
                        continue;
                    }
                }
                let _ = self.ctx.flush_context(h.into());
            }
            out.push(e);
        }
        SavedObjects(out)
    }

    /// Takes over contexts another connection of this process saved.
    pub fn restore_objects(&mut self, saved: SavedObjects) {
        for e in saved.0 {
            self.cache.insert_entry(e);
        }
    }

    /// Flushes every cached object, the salted session and a transient SRK.
    pub fn flush_all(&mut self) {
        self.flush_objects();
        if let Some(s) = self.salted.take() {
            self.flush_session(s);
        }
        self.drop_srk();
    }

    /// Makes the SRK described by `record` persistent at 0x81000001 (the simulator does
    /// this so that no process pays for CreatePrimary). Needs the owner authorization,
    /// empty on a fresh TPM.
    pub fn persist_srk(&mut self, record: &SrkRecord) -> Result<(), TpmError> {
        if let Some((_, name)) = self.read_persistent(SRK_PERSISTENT)? {
            if name == record.name {
                return Ok(());
            }
            return Err(TpmError::Other {
                code: 0,
                what: "0x81000001 holds another key; not replacing it".into(),
            });
        }
        self.use_srk(record)?;
        let handle = self.srk_handle()?;
        let persistent =
            Persistent::Persistent(PersistentTpmHandle::new(SRK_PERSISTENT).map_err(classify)?);
        self.retry(|ctx| {
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.evict_control(Provision::Owner, handle.into(), persistent)
            })
        })?;
        Ok(())
    }

    /// Sets the lockout hierarchy's authorization (from empty, on a TPM being hardened).
    /// The new value travels encrypted in the salted session.
    pub fn set_lockout_auth(&mut self, current: &[u8], new_auth: &[u8]) -> Result<(), TpmError> {
        if self.srk.is_none() {
            self.choose_srk()?;
        }
        let session = self.salted_session()?;
        let lockout = ObjectHandle::from(AuthHandle::Lockout);
        self.set_auth(lockout, current)?;
        let new_auth = Auth::try_from(new_auth.to_vec()).map_err(classify)?;
        self.retry(|ctx| {
            ctx.execute_with_session(Some(session), |c| {
                c.hierarchy_change_auth(AuthHandle::Lockout, new_auth.clone())
            })
        })
    }

    /// TPM2_ClearControl: with `disable`, TPM2_Clear then needs the platform
    /// authorization, which the firmware keeps (DESIGN.md §2, hardening).
    pub fn clear_control(&mut self, lockout_auth: &[u8], disable: bool) -> Result<(), TpmError> {
        if self.srk.is_none() {
            self.choose_srk()?;
        }
        let session = self.salted_session()?;
        self.set_auth(ObjectHandle::from(AuthHandle::Lockout), lockout_auth)?;
        self.retry(|ctx| {
            ctx.execute_with_session(Some(session), |c| {
                c.clear_control(AuthHandle::Lockout, disable)
            })
        })
    }

    /// TPM2_Clear through the lockout hierarchy (tests of hardening: refused once
    /// ClearControl disabled it).
    pub fn clear(&mut self, lockout_auth: &[u8]) -> Result<(), TpmError> {
        if self.srk.is_none() {
            self.choose_srk()?;
        }
        let session = self.salted_session()?;
        self.set_auth(ObjectHandle::from(AuthHandle::Lockout), lockout_auth)?;
        let r = self
            .retry(|ctx| ctx.execute_with_session(Some(session), |c| c.clear(AuthHandle::Lockout)));
        // A cleared TPM has a new owner seed: the SRK and the session are gone.
        if r.is_ok() {
            self.salted = None;
            self.srk = None;
            self.cache.drain();
        }
        r
    }

    /// Sends TPM2_Shutdown(CLEAR) so the next start is orderly (libtpms counts an
    /// unorderly stop after DA use as one more failed try).
    pub fn shutdown(&mut self) -> Result<(), TpmError> {
        self.flush_all();
        self.retry(|ctx| ctx.shutdown(tss_esapi::constants::StartupType::Clear))
    }

    // ----- helpers -----

    fn property(&mut self, tag: PropertyTag) -> Result<Option<u32>, TpmError> {
        self.retry(|ctx| ctx.get_tpm_property(tag))
    }

    fn srk_handle(&self) -> Result<KeyHandle, TpmError> {
        self.srk.as_ref().map(|(h, _)| *h).ok_or(TpmError::Other {
            code: 0,
            what: "internal: the SRK was not chosen before use".into(),
        })
    }

    fn drop_srk(&mut self) {
        if let Some(s) = self.salted.take() {
            self.flush_session(s);
        }
        if let Some((h, _)) = self.srk.take() {
            if self.srk_transient {
                let _ = self.ctx.flush_context(h.into());
            } else {
                let mut oh = ObjectHandle::from(h);
                let _ = self.ctx.tr_close(&mut oh);
            }
        }
        self.srk_transient = false;
    }

    /// The continued HMAC session salted to the (checked) SRK, with parameter encryption
    /// both ways. Every nonempty authValue rides in this session.
    fn salted_session(&mut self) -> Result<AuthSession, TpmError> {
        if let Some(s) = self.salted {
            return Ok(s);
        }
        let srk = self.srk_handle()?;
        let session = self.start_session(
            Some(srk),
            SessionType::Hmac,
            SymmetricDefinition::AES_128_CFB,
        )?;
        self.encrypt_both_ways(session)?;
        self.salted = Some(session);
        Ok(session)
    }

    /// Starts an auth session (salted to `key` when given) with SHA-256.
    fn start_session(
        &mut self,
        key: Option<KeyHandle>,
        kind: SessionType,
        symmetric: SymmetricDefinition,
    ) -> Result<AuthSession, TpmError> {
        self.retry_with_room(|ctx| {
            ctx.start_auth_session(key, None, None, kind, symmetric, HashingAlgorithm::Sha256)
        })?
        .ok_or(TpmError::Other {
            code: 0,
            what: "TPM returned no session".into(),
        })
    }

    /// Parameter encryption both ways, session continued.
    fn encrypt_both_ways(&mut self, session: AuthSession) -> Result<(), TpmError> {
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_decrypt(true)
            .with_encrypt(true)
            .with_continue_session(true)
            .build();
        self.ctx
            .tr_sess_set_attributes(session, attrs, mask)
            .map_err(classify)
    }

    /// A fresh policy session. `salted`: salted to the SRK with parameter encryption, for
    /// a policy that uses the object's authValue (PolicyAuthValue); otherwise unsalted,
    /// because it carries no secret itself.
    fn start_policy_session(&mut self, salted: bool) -> Result<PolicySession, TpmError> {
        let (key, sym) = if salted {
            (Some(self.srk_handle()?), SymmetricDefinition::AES_128_CFB)
        } else {
            (None, SymmetricDefinition::Null)
        };
        let s = self.start_session(key, SessionType::Policy, sym)?;
        if salted {
            self.encrypt_both_ways(s)?;
        }
        PolicySession::try_from(s).map_err(classify)
    }

    fn flush_session(&mut self, s: AuthSession) {
        let h = tss_esapi::handles::SessionHandle::from(s);
        let _ = self.ctx.flush_context(ObjectHandle::from(h));
    }

    fn set_auth(&mut self, h: ObjectHandle, auth: &[u8]) -> Result<(), TpmError> {
        let a = Auth::try_from(auth.to_vec()).map_err(classify)?;
        self.ctx.tr_set_auth(h, a).map_err(classify)
    }

    /// Loads through the cache: a loaded entry is returned, a saved one is context-loaded
    /// (its auth set again), a new one is loaded by `load`; room is made first.
    fn cached_load(
        &mut self,
        id: ObjectId,
        load: impl Fn(&mut Context) -> tss_esapi::Result<KeyHandle>,
    ) -> Result<KeyHandle, TpmError> {
        self.cached_load_keep(id, &[], load)
    }

    /// [`Tpm::cached_load`] that never evicts the objects in `keep` (a parent).
    fn cached_load_keep(
        &mut self,
        id: ObjectId,
        keep: &[ObjectId],
        load: impl Fn(&mut Context) -> tss_esapi::Result<KeyHandle>,
    ) -> Result<KeyHandle, TpmError> {
        let saved = match self.cache.touch(&id) {
            Some(e) => match &e.residence {
                Residence::Loaded(h) => return Ok(*h),
                Residence::Saved(ctx) => Some((ctx.clone(), e.auth.clone())),
            },
            None => None,
        };
        while self.cache.is_full() {
            let mut protect = keep.to_vec();
            protect.push(id);
            if !self.evict_one(&protect)? {
                break;
            }
        }
        if let Some((ctx, auth)) = saved {
            match self.retry_with_room_keep(keep, |c| c.context_load(ctx.clone())) {
                Ok(h) => {
                    if let Some(a) = &auth {
                        self.set_auth(h, a)?;
                    }
                    let kh = KeyHandle::from(h);
                    self.cache.mark_loaded(&id, kh);
                    return Ok(kh);
                }
                // A context from before a TPM restart: load the blob again.
                Err(TpmError::Memory(c)) => return Err(TpmError::Memory(c)),
                Err(_) => {
                    self.cache.remove(&id);
                }
            }
        }
        let h = self.retry_with_room_keep(keep, |c| load(c))?;
        self.cache.insert(id, h, None);
        Ok(h)
    }

    /// Context-saves and flushes the least recently used cached object. False when there
    /// is nothing to evict.
    fn evict_one(&mut self, keep: &[ObjectId]) -> Result<bool, TpmError> {
        let Some((id, handle)) = self.cache.victim(keep) else {
            return Ok(false);
        };
        match self.ctx.context_save(handle.into()) {
            Ok(saved) => {
                let _ = self.ctx.flush_context(handle.into());
                self.cache.mark_saved(&id, saved);
            }
            Err(_) => {
                let _ = self.ctx.flush_context(handle.into());
                self.cache.remove(&id);
            }
        }
        Ok(true)
    }

    /// Runs a command, retrying while the TPM says it is busy.
    fn retry<T>(
        &mut self,
        mut f: impl FnMut(&mut Context) -> tss_esapi::Result<T>,
    ) -> Result<T, TpmError> {
        let mut attempt = 0;
        loop {
            match f(&mut self.ctx) {
                Ok(v) => return Ok(v),
                Err(e) => match classify(e) {
                    TpmError::Busy(_) if attempt < BUSY_RETRIES => {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                    }
                    other => return Err(other),
                },
            }
        }
    }

    /// Like [`Tpm::retry`], and on OBJECT_MEMORY/SESSION_MEMORY evicts a cached object and
    /// tries again.
    fn retry_with_room<T>(
        &mut self,
        f: impl FnMut(&mut Context) -> tss_esapi::Result<T>,
    ) -> Result<T, TpmError> {
        self.retry_with_room_keep(&[], f)
    }

    /// [`Tpm::retry_with_room`] that never evicts the objects in `keep`.
    fn retry_with_room_keep<T>(
        &mut self,
        keep: &[ObjectId],
        mut f: impl FnMut(&mut Context) -> tss_esapi::Result<T>,
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

    /// The persistent object at `handle`: its ESYS handle and Name (ESYS read its public
    /// area when it made the handle, so the Name costs no further command).
    fn read_persistent(
        &mut self,
        handle: u32,
    ) -> Result<Option<(ObjectHandle, Vec<u8>)>, TpmError> {
        let (data, _) = self.retry(|ctx| ctx.get_capability(CapabilityType::Handles, handle, 1))?;
        let present = match data {
            CapabilityData::Handles(list) => {
                list.into_inner().iter().any(|h| u32::from(*h) == handle)
            }
            _ => false,
        };
        if !present {
            return Ok(None);
        }
        let tpm_handle = TpmHandle::Persistent(PersistentTpmHandle::new(handle).map_err(classify)?);
        let oh =
            self.retry(|ctx| ctx.execute_without_session(|c| c.tr_from_tpm_public(tpm_handle)))?;
        let name = self.ctx.tr_get_name(oh).map_err(classify)?;
        Ok(Some((oh, name.value().to_vec())))
    }

    /// Name of the primary `template` makes in the owner hierarchy (created and flushed).
    fn primary_name(&mut self, template: &[u8]) -> Result<Vec<u8>, TpmError> {
        let public = Public::unmarshall(template).map_err(classify)?;
        let handle = self.retry_with_room(|ctx| {
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Owner, public.clone(), None, None, None, None)
            })
            .map(|r| r.key_handle)
        })?;
        let name = self
            .ctx
            .read_public(handle)
            .map(|(_, n, _)| n.value().to_vec());
        let _ = self.ctx.flush_context(handle.into());
        name.map_err(classify)
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        self.flush_all();
    }
}

/// The TCTI from the environment, or the default.
pub fn configured_tcti() -> String {
    std::env::var(TCTI_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TCTI.to_string())
}

/// True for TCTIs that talk to a simulator.
pub fn is_simulator_tcti(tcti: &str) -> bool {
    tcti.starts_with("swtpm") || tcti.starts_with("mssim")
}

/// True when the TCTI isolates processes (kernel `tpmrm` or tpm2-abrmd).
pub fn has_resource_manager(tcti: &str) -> bool {
    tcti.starts_with("tabrmd") || tcti.contains("tpmrm")
}

/// Name of a marshalled TPMT_PUBLIC with SHA-256 nameAlg.
pub fn name_of(public: &[u8]) -> Vec<u8> {
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&Sha256::digest(public));
    name
}

/// Serde helper: `Vec<u8>` as a hex string.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
