//! The storage root key every secret is salted to, proved by the TPM (DESIGN.md §2).
//!
//! The salt key is never taken from the store: `TPM2_CreatePrimary` with the standard
//! template gives this TPM's SRK and its Name, and the persistent key at 0x81000001 is
//! used only when it has exactly that Name. The proved Name is cached for the current
//! boot in the private runtime directory (`/run/tpmvsc` for root, the user's
//! `$XDG_RUNTIME_DIR/tpmvsc`) only when that directory is in memory (tmpfs): there an
//! offline attacker cannot write and a reboot clears it, so later processes skip the
//! CreatePrimary. A cache on disk could be planted by whoever has the disk, so none is
//! kept there. A card's recorded SRK Name only tells "this TPM was cleared" apart.

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tss_esapi::traits::Marshall;

use super::esys::{self, OWNER, PW, SESSION_CONTINUE, SESSION_DECRYPT, SESSION_ENCRYPT, Tr};
use super::{SRK_PERSISTENT, SrkRecord, Tpm, TpmError, name_of, templates};
use crate::error::tpm::classify;

/// The SRK this connection salts to.
#[derive(Debug)]
pub(crate) struct Srk {
    tr: Tr,
    name: Vec<u8>,
    /// Created here (flush it) rather than found persistent (just close the handle).
    transient: bool,
}

impl Srk {
    pub(super) fn tr(&self) -> Tr {
        self.tr
    }
}

/// What `tpm status` says about the storage root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SrkStatus {
    /// The proved Name of this TPM's standard SRK (hex).
    pub name: String,
    /// 0x81000001 holds exactly that key (no process pays for CreatePrimary).
    pub persistent: bool,
    /// 0x81000001 holds another key, which tpmvsc never salts to.
    pub foreign_persistent: bool,
}

impl Tpm {
    /// Makes this TPM's SRK current: proved by CreatePrimary, or by the Name cached for
    /// this boot; the persistent key at 0x81000001 serves only when its Name is that one.
    fn prove_srk(&mut self) -> Result<(), TpmError> {
        if self.srk.is_some() {
            return Ok(());
        }
        let cached = proof_cache::read(&self.tcti);
        let persistent = self.read_persistent_srk()?;
        if let (Some(c), Some((tr, name))) = (&cached, &persistent)
            && c == name
        {
            self.srk = Some(Srk {
                tr: *tr,
                name: name.clone(),
                transient: false,
            });
            return Ok(());
        }
        let template = standard_template()?;
        let (tr, public) = self.retry_with_room(&[], |e| e.create_primary(OWNER, PW, &template))?;
        let name = name_of(&public);
        proof_cache::write(&self.tcti, &name);
        match persistent {
            Some((ptr, pname)) if pname == name => {
                self.flush_quietly(tr);
                self.srk = Some(Srk {
                    tr: ptr,
                    name,
                    transient: false,
                });
            }
            other => {
                if let Some((ptr, _)) = other {
                    self.esys.close(ptr);
                }
                self.srk = Some(Srk {
                    tr,
                    name,
                    transient: true,
                });
            }
        }
        Ok(())
    }

    /// The key at 0x81000001 and its Name, if there is one (one ReadPublic).
    fn read_persistent_srk(&mut self) -> Result<Option<(Tr, Vec<u8>)>, TpmError> {
        match self.retry(|e| e.tr_for(SRK_PERSISTENT)) {
            Ok(tr) => {
                let name = self.esys.name(tr)?;
                Ok(Some((tr, name)))
            }
            Err(e) if e.is_missing_handle() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The proved SRK's handle.
    pub(super) fn srk_handle(&mut self) -> Result<Tr, TpmError> {
        self.prove_srk()?;
        self.srk.as_ref().map(|s| s.tr).ok_or(TpmError::Other {
            code: 0,
            what: "internal: no storage root key".into(),
        })
    }

    /// The Name of this TPM's standard SRK, proved by the TPM.
    pub(crate) fn proved_srk_name(&mut self) -> Result<Vec<u8>, TpmError> {
        self.prove_srk()?;
        Ok(self
            .srk
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default())
    }

    /// What a new card records: the standard template and this TPM's proved SRK Name.
    pub fn choose_srk(&mut self) -> Result<SrkRecord, TpmError> {
        Ok(SrkRecord {
            template: standard_template()?,
            name: self.proved_srk_name()?,
        })
    }

    /// Checks that the card's record was made under this TPM's SRK. A different proved
    /// Name means the TPM was cleared — unless the record names the key squatting at
    /// 0x81000001, which means someone put a salt key of their own there and wrote its
    /// Name into the card's files to harvest the PIN ([`TpmError::SaltKeySubstituted`]).
    pub fn use_srk(&mut self, record: &SrkRecord) -> Result<(), TpmError> {
        if record.template != standard_template()? {
            return Err(TpmError::Other {
                code: 0,
                what: "the card's record names a storage root key template tpmvsc does not make; \
                       the card's files were altered"
                    .into(),
            });
        }
        let proved = self.proved_srk_name()?;
        if proved == record.name {
            return Ok(());
        }
        if let Some((tr, name)) = self.read_persistent_srk()? {
            let is_ours = self.srk.as_ref().is_some_and(|s| s.tr == tr);
            if !is_ours {
                self.esys.close(tr);
            }
            if name == record.name {
                return Err(TpmError::SaltKeySubstituted);
            }
        }
        Err(TpmError::Cleared)
    }

    /// The SRK as `tpm status` shows it.
    pub(crate) fn srk_status(&mut self) -> Result<SrkStatus, TpmError> {
        let name = self.proved_srk_name()?;
        let persistent = self.srk.as_ref().is_some_and(|s| !s.transient);
        let foreign_persistent = !persistent
            && self.read_persistent_srk()?.is_some_and(|(tr, _)| {
                self.esys.close(tr);
                true
            });
        Ok(SrkStatus {
            name: hex::encode(name),
            persistent,
            foreign_persistent,
        })
    }

    /// Makes this TPM's standard SRK persistent at 0x81000001 (the simulator and `tpm
    /// setup` do this so that no process pays for CreatePrimary). Needs the owner
    /// authorization, empty on a fresh TPM. Another key there is left alone.
    pub(crate) fn persist_srk(&mut self) -> Result<(), TpmError> {
        self.prove_srk()?;
        let Some(srk) = self.srk.as_ref() else {
            return Ok(());
        };
        if !srk.transient {
            return Ok(());
        }
        let tr = srk.tr;
        if self.read_persistent_srk()?.is_some_and(|(ptr, _)| {
            self.esys.close(ptr);
            true
        }) {
            return Err(TpmError::Other {
                code: 0,
                what: "0x81000001 holds another key; not replacing it".into(),
            });
        }
        let persistent = self.retry(|e| e.evict_control(tr, PW, SRK_PERSISTENT))?;
        self.esys.close(persistent);
        Ok(())
    }

    pub(super) fn drop_srk(&mut self) {
        if let Some(s) = self.salted.take() {
            self.flush_quietly(s);
        }
        if let Some(srk) = self.srk.take() {
            if srk.transient {
                self.flush_quietly(srk.tr);
            } else {
                self.esys.close(srk.tr);
            }
        }
    }

    /// The continued HMAC session salted to the proved SRK, with parameter encryption
    /// both ways. Every nonempty authValue rides in this session.
    pub(super) fn salted_session(&mut self) -> Result<Tr, TpmError> {
        if let Some(s) = self.salted {
            return Ok(s);
        }
        let srk = self.srk_handle()?;
        let session = self.start_session(esys::SessionKind::SaltedHmac(srk))?;
        self.esys.set_session_attributes(
            session,
            SESSION_CONTINUE | SESSION_DECRYPT | SESSION_ENCRYPT,
            0xff,
        )?;
        self.salted = Some(session);
        Ok(session)
    }

    /// A one-command HMAC session salted to the proved SRK without parameter encryption,
    /// for commands whose parameters are not secret but whose authorization is
    /// (lockout hierarchy commands); flushed by the TPM after the command.
    pub(super) fn salted_auth_only(&mut self) -> Result<Tr, TpmError> {
        let srk = self.srk_handle()?;
        let s = self.start_session(esys::SessionKind::SaltedHmac(srk))?;
        self.esys.set_session_attributes(s, 0, 0xff)?;
        Ok(s)
    }
}

/// The standard SRK template, marshalled.
fn standard_template() -> Result<Vec<u8>, TpmError> {
    templates::srk()?.marshall().map_err(classify)
}

/// The per-boot cache of the proved SRK Name: one small file per TCTI in the private
/// runtime directory. Best effort: without a safe directory, or on any doubt about the
/// file, nothing is cached and the next process proves the SRK again.
mod proof_cache {
    use super::*;

    /// Longest file the cache ever writes (hex Name and a newline).
    const MAX_LEN: u64 = 128;

    fn file_name(tcti: &str) -> String {
        let tag = hex::encode(&Sha256::digest(tcti.as_bytes())[..8]);
        format!("srk-{tag}.name")
    }

    /// The cached Name, when the runtime directory and the file pass their checks.
    pub(super) fn read(tcti: &str) -> Option<Vec<u8>> {
        let dir = super::super::lock::runtime_dir()?;
        let bytes = dir.read_if_exists(&file_name(tcti), MAX_LEN).ok()??;
        let name = hex::decode(String::from_utf8(bytes).ok()?.trim()).ok()?;
        (name.len() == 34 && name[..2] == [0x00, 0x0b]).then_some(name)
    }

    /// Records the proved Name (write-temp, rename; never through a link).
    pub(super) fn write(tcti: &str, name: &[u8]) {
        if read(tcti).as_deref() == Some(name) {
            return;
        }
        if let Some(dir) = super::super::lock::runtime_dir() {
            let text = format!("{}\n", hex::encode(name));
            let _ = dir.write_atomic(&file_name(tcti), text.as_bytes(), false);
        }
    }
}
