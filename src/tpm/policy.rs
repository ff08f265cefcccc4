//! The card storage key's authorization policy and its guard's revocation check
//! (DESIGN.md §2), computed in software.
//!
//! A trial session's PolicySecret would check the secret and count failures against the
//! TPM's dictionary-attack counter, so every digest here is computed with `sha2` from the
//! formulas of TPM 2.0 Part 3 (the TPM checks them when a branch is used).

use sha2::{Digest as _, Sha256};

/// TPM_CC values used in policy digests.
const CC_POLICY_SECRET: u32 = 0x0000_0151;
const CC_POLICY_AUTH_VALUE: u32 = 0x0000_016B;
const CC_POLICY_COMMAND_CODE: u32 = 0x0000_016C;
const CC_POLICY_OR: u32 = 0x0000_0171;
const CC_POLICY_NV: u32 = 0x0000_0149;
/// TPM_EO_UNSIGNED_LE: the NV contents, unsigned, are at most the operand.
pub(crate) const EO_UNSIGNED_LE: u16 = 0x0009;

/// TPMA_NV of a card's counter: TPM_NT_COUNTER (bits 4–7 = 1), written by the owner
/// hierarchy (OWNERWRITE), read with the index's own empty authValue (AUTHREAD, so
/// PolicyNV needs no owner authorization), and NO_DA (nothing secret guards it).
pub(crate) const COUNTER_ATTRIBUTES: u32 = 0x0000_0002 | 0x0000_0010 | 0x0004_0000 | 0x0200_0000;
/// TPMA_NV_WRITTEN: set by the first increment; part of the index's Name.
pub(crate) const NV_WRITTEN: u32 = 0x2000_0000;
/// Size of a counter's value.
pub(crate) const COUNTER_SIZE: u16 = 8;
/// The only command any branch authorizes.
pub(crate) const CC_OBJECT_CHANGE_AUTH: u32 = 0x0000_0150;

/// One way to authorize `ObjectChangeAuth` on a card storage key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Branch {
    /// The current PIN (PolicyAuthValue): change PIN.
    Pin,
    /// PolicySecret on the PUK object, identified by its TPM Name.
    Puk { name: Vec<u8> },
    /// PolicySecret on the admin object, identified by its TPM Name.
    Admin { name: Vec<u8> },
}

impl Branch {
    /// Digest of this branch alone, starting from the zero digest.
    pub fn digest(&self) -> [u8; 32] {
        let start = [0u8; 32];
        let first = match self {
            Branch::Pin => extend(&start, CC_POLICY_AUTH_VALUE, &[]),
            Branch::Puk { name } | Branch::Admin { name } => policy_secret(&start, name),
        };
        extend(
            &first,
            CC_POLICY_COMMAND_CODE,
            &CC_OBJECT_CHANGE_AUTH.to_be_bytes(),
        )
    }
}

/// The CSK's branches in the order they are OR-ed: PIN first, then PUK, then admin.
/// The Windows rule of DESIGN.md §3 is made here: a card with a PUK gets no admin branch.
pub fn branches(puk_name: Option<&[u8]>, admin_name: Option<&[u8]>) -> Vec<Branch> {
    let mut out = vec![Branch::Pin];
    match (puk_name, admin_name) {
        (Some(p), _) => out.push(Branch::Puk { name: p.to_vec() }),
        (None, Some(a)) => out.push(Branch::Admin { name: a.to_vec() }),
        (None, None) => {}
    }
    out
}

/// The authPolicy for a CSK with these branches: the branch's own digest when there is
/// one, PolicyOR of them (in this order) otherwise.
pub fn auth_policy(branches: &[Branch]) -> [u8; 32] {
    match branches {
        [one] => one.digest(),
        many => policy_or(&many.iter().map(Branch::digest).collect::<Vec<_>>()),
    }
}

/// PolicyOR over the given digests: H(0…0 ‖ TPM_CC_PolicyOR ‖ d1 ‖ d2 …).
pub(crate) fn policy_or(digests: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(CC_POLICY_OR.to_be_bytes());
    for d in digests {
        h.update(d);
    }
    h.finalize().into()
}

/// The Name of a card's counter index once written: nameAlg ‖ SHA-256(TPMS_NV_PUBLIC), with
/// an empty authPolicy.
pub(crate) fn counter_name(index: u32) -> Vec<u8> {
    let mut public = Vec::with_capacity(14);
    public.extend_from_slice(&index.to_be_bytes());
    public.extend_from_slice(&0x000Bu16.to_be_bytes());
    public.extend_from_slice(&(COUNTER_ATTRIBUTES | NV_WRITTEN).to_be_bytes());
    public.extend_from_slice(&0u16.to_be_bytes());
    public.extend_from_slice(&COUNTER_SIZE.to_be_bytes());
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&Sha256::digest(&public));
    name
}

/// The authPolicy of a card's guard key: PolicyNV(counter ≤ `bound`, unsigned). Every load
/// of the card storage key passes it, so once the counter moves past `bound` (format,
/// destroy) every copy of this guard — and of the CSK under it — is refused by the TPM.
/// "At most" rather than "equal" lets format make the new card before it increments the
/// counter: a crash in between leaves the old card working (DESIGN.md §2).
pub fn guard_policy(index: u32, bound: u64) -> [u8; 32] {
    let mut args = Sha256::new();
    args.update(bound.to_be_bytes());
    args.update(0u16.to_be_bytes());
    args.update(EO_UNSIGNED_LE.to_be_bytes());
    let args: [u8; 32] = args.finalize().into();
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(CC_POLICY_NV.to_be_bytes());
    h.update(args);
    h.update(counter_name(index));
    h.finalize().into()
}

fn policy_secret(old: &[u8; 32], name: &[u8]) -> [u8; 32] {
    let inner = extend(old, CC_POLICY_SECRET, name);
    // The policyRef (empty here) is hashed in a second step.
    Sha256::digest(inner).into()
}

fn extend(old: &[u8; 32], cc: u32, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(old);
    h.update(cc.to_be_bytes());
    h.update(data);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    #[test]
    fn pin_branch_matches_tpm2_tools_trial_digest() {
        // tpm2_policyauthvalue + tpm2_policycommandcode TPM2_CC_ObjectChangeAuth printed
        // 98cbaba6…1aef1b3a (TPM-FEASIBILITY.md §1); check the ends we have.
        let d = hex::encode(Branch::Pin.digest());
        assert!(d.starts_with("98cbaba6"), "{d}");
        assert!(d.ends_with("1aef1b3a"), "{d}");
    }

    #[test]
    fn policy_auth_value_alone_is_the_well_known_digest() {
        // PolicyAuthValue from the zero digest (widely published value).
        let d = extend(&[0u8; 32], CC_POLICY_AUTH_VALUE, &[]);
        assert_eq!(
            d,
            hex32("8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e")
        );
    }

    #[test]
    fn one_branch_is_not_or_ed_and_two_are() {
        let pin = branches(None, None);
        assert_eq!(auth_policy(&pin), Branch::Pin.digest());
        let two = branches(Some(b"puk-name"), Some(b"admin-name"));
        assert_eq!(two.len(), 2, "a card with a PUK has no admin branch");
        assert_eq!(
            two[1],
            Branch::Puk {
                name: b"puk-name".to_vec()
            }
        );
        assert_eq!(
            auth_policy(&two),
            policy_or(&[Branch::Pin.digest(), two[1].digest()])
        );
        let admin = branches(None, Some(b"admin-name"));
        assert_eq!(
            admin[1],
            Branch::Admin {
                name: b"admin-name".to_vec()
            }
        );
    }

    #[test]
    fn or_order_matters() {
        let a = Branch::Pin.digest();
        let b = Branch::Puk {
            name: vec![1, 2, 3],
        }
        .digest();
        assert_ne!(policy_or(&[a, b]), policy_or(&[b, a]));
    }
}
