//! What a card is on disk: its record, retry counters and TPM objects, and how its
//! secrets become TPM authValues. No TPM calls here.

pub mod policy;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::tpm::{Blob, CskRef, Guard, NvCounter, SrkRecord};
pub use policy::PinPolicy;

/// File names inside a card directory.
pub const CARD_FILE: &str = "card.json";
pub(crate) const COUNTERS_FILE: &str = "counters.json";
pub const CSK_FILE: &str = "csk.json";
pub const PUK_FILE: &str = "puk.json";
pub const ADMIN_FILE: &str = "admin.json";
/// The guard key between the SRK and the CSK (revocation, DESIGN.md §2).
pub const GUARD_FILE: &str = "guard.json";

/// The default PIN and PUK of Windows virtual smart cards.
pub const DEFAULT_PIN: &str = "12345678";
/// Most cards one store holds (Windows: 10 per computer).
pub(crate) const MAX_CARDS: usize = 10;
/// Longest card name: the PKCS#11 token label holds 32 bytes.
pub(crate) const MAX_NAME_LEN: usize = 32;
/// Default PIN and PUK retry counts (DESIGN.md §2).
pub(crate) const DEFAULT_TRIES: u32 = 5;

/// Whether and how an administrator can manage the card (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminMode {
    /// An admin key exists; challenges are answered with it.
    Managed,
    /// No admin object at all: `/adminkey random`, unmanageable by an administrator.
    Random,
}

/// `card.json`: everything about a card that is not secret and rarely changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardRecord {
    pub name: String,
    pub card_id: String,
    /// n of `ROOT\SMARTCARDREADER\000n`; also the PKCS#11 slot ID.
    pub instance: u32,
    pub created_unix: u64,
    /// False until formatted (`--no-format`, `tpmvscmgr` without `/generate`).
    pub formatted: bool,
    /// Made on a simulator TPM: a software token, labelled so everywhere.
    pub simulated: bool,
    pub pin_policy: PinPolicy,
    pub pin_tries: u32,
    pub puk_tries: u32,
    pub has_puk: bool,
    pub admin: AdminMode,
    /// The admin key is the well-known Windows default (flagged by list and info).
    pub default_admin_key: bool,
    #[serde(with = "hex")]
    pub pin_salt: Vec<u8>,
    #[serde(with = "hex")]
    pub puk_salt: Vec<u8>,
    pub srk: SrkRecord,
    /// False after C_InitToken until the SO sets a user PIN with C_InitPIN.
    #[serde(default = "yes")]
    pub pin_initialized: bool,
    /// Names of the PUK and admin objects as fixed in the CSK's policy, in OR order.
    #[serde(default, with = "hex_opt")]
    pub puk_name: Option<Vec<u8>>,
    #[serde(default, with = "hex_opt")]
    pub admin_name: Option<Vec<u8>>,
    /// The card's counter in the TPM and the value its guard key was made for. `None`
    /// for a card made before revocation existed: its CSK sits directly under the SRK
    /// and old copies of its files cannot be revoked (`format` adds a counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<NvCounter>,
}

impl CardRecord {
    /// Maximum of one counter.
    pub fn max_tries(&self, which: Counter) -> u32 {
        match which {
            Counter::Pin => self.pin_tries,
            Counter::Puk | Counter::Admin => self.puk_tries,
        }
    }

    /// The CSK policy branches, in the order they were OR-ed at creation.
    pub fn branches(&self) -> Vec<crate::tpm::policy::Branch> {
        crate::tpm::policy::branches(self.puk_name.as_deref(), self.admin_name.as_deref())
    }

    /// The CSK's authPolicy (the branches OR-ed, DESIGN.md §2).
    pub fn csk_policy(&self) -> [u8; 32] {
        crate::tpm::policy::auth_policy(&self.branches())
    }

    /// `ROOT\SMARTCARDREADER\000n`, the Windows device instance ID.
    pub fn instance_id(&self) -> String {
        instance_id(self.instance)
    }
}

/// Windows device instance ID for instance number `n`.
pub fn instance_id(n: u32) -> String {
    format!("ROOT\\SMARTCARDREADER\\{n:04}")
}

/// `counters.json`: tries left; written before every TPM attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub pin_tries_left: u32,
    pub puk_tries_left: u32,
    /// Wrong administrator responses left (limit: the PUK tries).
    #[serde(default = "default_tries")]
    pub admin_tries_left: u32,
}

fn yes() -> bool {
    true
}

fn default_tries() -> u32 {
    DEFAULT_TRIES
}

/// Which retry counter an attempt spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Pin,
    Puk,
    Admin,
}

impl Counters {
    /// Tries left on one counter.
    pub(crate) fn left(&self, which: Counter) -> u32 {
        match which {
            Counter::Pin => self.pin_tries_left,
            Counter::Puk => self.puk_tries_left,
            Counter::Admin => self.admin_tries_left,
        }
    }

    /// Sets one counter.
    pub(crate) fn set(&mut self, which: Counter, value: u32) {
        match which {
            Counter::Pin => self.pin_tries_left = value,
            Counter::Puk => self.puk_tries_left = value,
            Counter::Admin => self.admin_tries_left = value,
        }
    }

    /// Full counters for a card record.
    pub(crate) fn full(record: &CardRecord) -> Counters {
        Counters {
            pin_tries_left: record.pin_tries,
            puk_tries_left: record.puk_tries,
            admin_tries_left: record.puk_tries,
        }
    }
}

/// A card's keys in the TPM as its files hold them: the guard (with the counter it
/// checks), the CSK, and the CSK's expected policy.
#[derive(Debug, Clone)]
pub struct CardKeys {
    pub guard: Option<Guard>,
    pub csk: Blob,
    pub policy: [u8; 32],
}

impl CardKeys {
    /// What the TPM layer needs to load the CSK.
    pub fn csk_ref(&self) -> CskRef<'_> {
        CskRef {
            guard: self.guard.as_ref(),
            csk: &self.csk,
            policy: self.policy,
        }
    }
}

/// `csk.json`, `puk.json`, `guard.json`: one TPM-wrapped object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectFile {
    pub blob: Blob,
}

/// One precomputed admin challenge (DESIGN.md §3): the challenge, the unblock secret
/// masked with a hash of challenge and response, and a 16-bit check value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    #[serde(with = "hex")]
    pub challenge: Vec<u8>,
    #[serde(with = "hex")]
    pub masked: Vec<u8>,
    pub check: u16,
}

/// `admin.json`: the admin object and the unused challenges.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminFile {
    pub blob: Blob,
    pub tickets: Vec<Ticket>,
}

/// The TPM authValue of a PIN: SHA-256(card salt ‖ PIN) — 32 bytes for any PIN length.
pub fn pin_auth(salt: &[u8], pin: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(pin);
    Zeroizing::new(h.finalize().to_vec())
}

/// A card name is 1–32 bytes of printable text that cannot be mistaken for another card
/// or another way of naming one (DESIGN.md §4): no leading or trailing space, no control
/// or bidi-override characters, no `/`, and not shaped like an instance ID or a GUID.
pub(crate) fn check_name(name: &str) -> crate::error::Result<()> {
    if name.is_empty() {
        return Err(crate::error::Error::Usage("the card name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(crate::error::Error::Usage(format!(
            "the card name is {} bytes long; at most {MAX_NAME_LEN} fit in a PKCS#11 token label",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(crate::error::Error::Usage(
            "the card name contains control characters".into(),
        ));
    }
    let refuse = |why: &str| Err(crate::error::Error::Usage(format!("the card name {why}")));
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return refuse("starts or ends with a space (it would show like another name)");
    }
    if name.chars().any(is_bidi_control) {
        return refuse("contains a bidirectional-text control character (it would show reordered)");
    }
    if name.chars().any(is_invisible) {
        return refuse(
            "contains an invisible character (a zero-width or format character, or a variation \
             selector): it would show like another name",
        );
    }
    if name.chars().any(|c| c.is_whitespace() && c != ' ') {
        return refuse("contains a space other than a plain one (it would show like another name)");
    }
    if name.contains('/') {
        return refuse("contains '/'");
    }
    if looks_like_instance_id(name) {
        return refuse("looks like an instance ID (ROOT\\SMARTCARDREADER\\000n); choose another");
    }
    if uuid::Uuid::parse_str(name).is_ok() {
        return refuse("looks like a card ID (a GUID); choose another");
    }
    Ok(())
}

/// Unicode characters that reorder how text is shown (embeddings, overrides, isolates,
/// marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show as nothing: Unicode's format characters (soft hyphen, zero-width
/// space and joiners, word joiner, invisible operators, the byte-order mark, tags) and the
/// variation selectors.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{08E2}'
        | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{206A}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// `ROOT\SMARTCARDREADER\000n` in any case, also with the backslashes a shell ate.
pub(crate) fn looks_like_instance_id(text: &str) -> bool {
    let t = text.to_ascii_uppercase();
    let rest = t
        .strip_prefix("ROOT\\SMARTCARDREADER\\")
        .or_else(|| t.strip_prefix("ROOTSMARTCARDREADER"));
    rest.is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.chars().all(|c| c.is_ascii_digit()))
}

/// Serde helper: `Option<Vec<u8>>` as a hex string or null, through the hex crate's own.
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct HexRef<'a>(#[serde(with = "hex")] &'a [u8]);

    #[derive(Deserialize)]
    struct Hex(#[serde(with = "hex")] Vec<u8>);

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(HexRef).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Hex>::deserialize(d)?.map(|h| h.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Names {
        #[serde(default, with = "hex_opt")]
        name: Option<Vec<u8>>,
    }

    #[test]
    fn optional_names_are_hex_or_null_and_may_be_absent() {
        let some = Names {
            name: Some(vec![0x00, 0x0b, 0xab]),
        };
        assert_eq!(
            serde_json::to_string(&some).unwrap(),
            r#"{"name":"000bab"}"#
        );
        assert_eq!(
            serde_json::from_str::<Names>(r#"{"name":"000BAB"}"#).unwrap(),
            some
        );
        let none = Names { name: None };
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"name":null}"#);
        assert_eq!(
            serde_json::from_str::<Names>(r#"{"name":null}"#).unwrap(),
            none
        );
        assert_eq!(serde_json::from_str::<Names>("{}").unwrap(), none);
        assert!(serde_json::from_str::<Names>(r#"{"name":"0g"}"#).is_err());
        assert!(serde_json::from_str::<Names>(r#"{"name":"abc"}"#).is_err());
    }

    #[test]
    fn instance_ids_count_from_zero_with_four_digits() {
        assert_eq!(instance_id(0), "ROOT\\SMARTCARDREADER\\0000");
        assert_eq!(instance_id(9), "ROOT\\SMARTCARDREADER\\0009");
    }

    #[test]
    fn names_longer_than_a_token_label_are_refused() {
        assert!(check_name(&"x".repeat(32)).is_ok());
        assert!(
            check_name(&"x".repeat(33))
                .unwrap_err()
                .to_string()
                .contains("32")
        );
        assert!(check_name("").is_err());
        assert!(check_name("a\tb").is_err());
    }

    #[test]
    fn names_that_could_be_mistaken_are_refused() {
        for bad in [
            "r ",
            " r",
            "a/b",
            "ROOT\\SMARTCARDREADER\\0000",
            "root\\smartcardreader\\0001",
            "ROOTSMARTCARDREADER0002",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "6F9619FF8B86D011B42D00C04FC964FF",
            "ab\u{202E}cd",
            "x\u{2066}y",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["r", "work card", "Alice's VSC", "ROOT", "smartcard 7"] {
            check_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
    }

    #[test]
    fn pin_auth_depends_on_salt_and_pin() {
        assert_ne!(*pin_auth(b"s1", b"12345678"), *pin_auth(b"s2", b"12345678"));
        assert_eq!(pin_auth(b"s1", b"x").len(), 32);
    }
}
