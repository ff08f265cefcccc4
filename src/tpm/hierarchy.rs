//! The lockout hierarchy and the dictionary-attack commands (DESIGN.md §2, hardening).
//! Every command here is authorized with the lockout authorization in a session salted
//! to the proved SRK, so a bus sniffer learns nothing to test guesses against.

use super::esys::{Esys, LOCKOUT, NONE, Sessions};
use super::{Tpm, TpmError, salted_only};

impl Tpm {
    /// Runs one lockout-authorized command with `auth` in a one-use salted session.
    fn with_lockout<T>(
        &mut self,
        auth: &[u8],
        mut command: impl FnMut(&mut Esys, Sessions) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        self.esys.set_auth(LOCKOUT, auth)?;
        let session = self.salted_auth_only()?;
        let result = self.retry(|e| command(e, salted_only(session)));
        if result.is_err() {
            // A failed command leaves the session loaded.
            self.flush_quietly(session);
        }
        let _ = self.esys.set_auth(LOCKOUT, &[]);
        result
    }

    /// TPM2_DictionaryAttackParameters with the lockout authorization (empty on a fresh
    /// TPM): failures until lockout, seconds per forgotten failure, and the lockout
    /// hierarchy's own recovery time after a wrong lockout authorization.
    pub fn set_da_parameters(
        &mut self,
        lockout_auth: &[u8],
        max_tries: u32,
        recovery_time: u32,
        lockout_recovery: u32,
    ) -> Result<(), TpmError> {
        self.with_lockout(lockout_auth, |e, s| {
            e.da_parameters(s, max_tries, recovery_time, lockout_recovery)
        })
    }

    /// Resets the dictionary-attack counter and lockout (TPM2_DictionaryAttackLockReset).
    pub fn reset_lockout(&mut self, lockout_auth: &[u8]) -> Result<(), TpmError> {
        self.with_lockout(lockout_auth, |e, s| e.da_lock_reset(s))
    }

    /// TPM2_ClearControl: with `disable`, TPM2_Clear then needs the platform
    /// authorization, which the firmware keeps. Also the harmless command `tpm harden`
    /// uses to prove it holds the lockout authorization.
    pub fn clear_control(&mut self, lockout_auth: &[u8], disable: bool) -> Result<(), TpmError> {
        self.with_lockout(lockout_auth, |e, s| e.clear_control(s, disable))
    }

    /// Sets the lockout hierarchy's authorization. The new value is a command parameter,
    /// encrypted by the continued salted session (whose key involves the current value,
    /// which the caller knows).
    pub(crate) fn set_lockout_auth(
        &mut self,
        current: &[u8],
        new_auth: &[u8],
    ) -> Result<(), TpmError> {
        self.esys.set_auth(LOCKOUT, current)?;
        let session = self.salted_session()?;
        let r = self.retry(|e| e.hierarchy_change_auth(LOCKOUT, [session, NONE, NONE], new_auth));
        let _ = self.esys.set_auth(LOCKOUT, &[]);
        r
    }

    /// TPM2_Clear through the lockout hierarchy (tests of hardening: refused once
    /// ClearControl disabled it). A cleared TPM has a new owner seed: the SRK, the
    /// session and every loaded object are gone.
    pub fn clear(&mut self, lockout_auth: &[u8]) -> Result<(), TpmError> {
        let r = self.with_lockout(lockout_auth, |e, s| e.clear(s));
        if r.is_ok() {
            for e in self.cache.drain() {
                drop(e);
            }
            for (_, tr) in std::mem::take(&mut self.nv) {
                self.esys.close(tr);
            }
            if let Some(s) = self.salted.take() {
                self.esys.close(s);
            }
            if let Some(srk) = self.srk.take() {
                self.esys.close(srk.tr());
            }
        }
        r
    }
}
