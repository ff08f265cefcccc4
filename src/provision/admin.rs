//! The administrator key (DESIGN.md §3): the Windows 3DES challenge-response, and the
//! one-time tickets that let a correct response recover the unblock secret X without
//! the key being stored anywhere.

use des::TdesEde3;
use des::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::card::{ADMIN_FILE, AdminFile, AdminMode, Counter, Ticket};
use crate::error::{Error, Quoted, Result};
use crate::provision::access::{OwnTpm, TpmAccess};
use crate::provision::pin::{OpenCard, open_card};
use crate::store::Store;
use crate::tpm::Authorizer;

/// The well-known default admin key of Windows virtual smart cards.
pub(crate) const DEFAULT_ADMIN_KEY_HEX: &str = "010203040506070801020304050607080102030405060708";
/// Challenges precomputed per batch.
pub(crate) const TICKETS_PER_BATCH: usize = 32;
const MASK_DOMAIN: &[u8] = b"tpmvsc admin ticket mask v1";
const CHECK_DOMAIN: &[u8] = b"tpmvsc admin ticket check v1";

/// A 24-byte three-key 3DES admin key; zeroized when dropped.
#[derive(Clone)]
pub struct AdminKey(Zeroizing<[u8; 24]>);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(..)")
    }
}

impl AdminKey {
    /// Parses 48 hex digits (spaces and colons allowed between them).
    pub fn parse_hex(text: &str) -> Result<AdminKey> {
        let digits: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !matches!(c, ' ' | ':' | '-'))
                .collect(),
        );
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::PolicyViolation(
                "an admin key is 48 hexadecimal digits (0-9, a-f; 24 bytes, three-key 3DES); \
                 this one has other characters"
                    .into(),
            ));
        }
        if digits.len() != 48 {
            return Err(Error::PolicyViolation(format!(
                "an admin key is 48 hexadecimal digits (24 bytes, three-key 3DES); got {} digits",
                digits.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; 24]);
        hex::decode_to_slice(digits.as_bytes(), key.as_mut_slice())
            .map_err(|_| Error::PolicyViolation("the admin key is not hexadecimal".into()))?;
        Ok(AdminKey(key))
    }

    /// The Windows default key.
    pub(crate) fn default_key() -> AdminKey {
        // 01 02 … 08, three times.
        let mut key = Zeroizing::new([0u8; 24]);
        for chunk in key.chunks_mut(8) {
            chunk.copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        }
        AdminKey(key)
    }

    /// True for the well-known default key.
    pub(crate) fn is_default(&self) -> bool {
        *self.0 == *AdminKey::default_key().0
    }

    /// The response to a challenge: 3DES-EDE encryption of the 8-byte challenge (one
    /// block, so CBC with a zero IV and ECB agree), as Windows computes it.
    pub fn response(&self, challenge: &[u8; 8]) -> [u8; 8] {
        let cipher = TdesEde3::new(GenericArray::from_slice(self.0.as_slice()));
        let mut block = GenericArray::clone_from_slice(challenge);
        cipher.encrypt_block(&mut block);
        block.into()
    }
}

/// Domain of the per-card admin key derivation.
const CARD_KEY_DOMAIN: &[u8] = b"tpmvsc per-card admin key v1";

impl AdminKey {
    /// The per-card admin key of a fleet: K = the first 24 bytes of
    /// HMAC-SHA-256(master key, "tpmvsc per-card admin key v1" ‖ 0x00 ‖ card ID), the
    /// card ID as its lowercase hyphenated GUID text. A help desk holding the master key
    /// answers any card's challenge from its card ID; one card's files reveal nothing
    /// about another card's key.
    pub fn derive(master: &[u8], card_id: &str) -> Result<AdminKey> {
        use hmac::{Hmac, Mac};
        if master.len() < 16 {
            return Err(Error::PolicyViolation(
                "a master key is at least 16 bytes (32 hex digits)".into(),
            ));
        }
        let id = uuid::Uuid::parse_str(card_id.trim())
            .map_err(|_| Error::Usage(format!("{} is not a card ID (a GUID)", Quoted(card_id))))?
            .hyphenated()
            .to_string();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master)
            .map_err(|_| Error::PolicyViolation("unusable master key".into()))?;
        mac.update(CARD_KEY_DOMAIN);
        mac.update(&[0]);
        mac.update(id.as_bytes());
        let out = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        let mut key = Zeroizing::new([0u8; 24]);
        key.copy_from_slice(&out[..24]);
        Ok(AdminKey(key))
    }
}

/// Parses a master key: an even number of hex digits, at least 32.
pub fn parse_master_key(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let digits: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect(),
    );
    let bytes = hex::decode(digits.as_bytes())
        .map_err(|_| Error::PolicyViolation("a master key is hexadecimal digits".into()))?;
    if bytes.len() < 16 {
        return Err(Error::PolicyViolation(
            "a master key is at least 16 bytes (32 hex digits)".into(),
        ));
    }
    Ok(Zeroizing::new(bytes))
}

/// A batch of one-time tickets for the unblock secret `x` under `key`.
pub(crate) fn make_tickets(key: &AdminKey, x: &[u8; 32], count: usize) -> Result<Vec<Ticket>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut challenge = [0u8; 8];
        getrandom::fill(&mut challenge)
            .map_err(|e| Error::Usage(format!("no randomness from the OS: {e}")))?;
        let response = Zeroizing::new(key.response(&challenge));
        let mask = ticket_mask(&challenge, response.as_slice());
        let masked: Vec<u8> = x.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect();
        out.push(Ticket {
            challenge: challenge.to_vec(),
            masked,
            check: ticket_check(&challenge, response.as_slice()),
        });
    }
    Ok(out)
}

/// Recovers X from a ticket and a response, or `None` when the check value says the
/// response is wrong (no TPM try spent).
pub fn open_ticket(ticket: &Ticket, response: &[u8; 8]) -> Option<Zeroizing<[u8; 32]>> {
    if ticket_check(&ticket.challenge, response) != ticket.check || ticket.masked.len() != 32 {
        return None;
    }
    let mask = ticket_mask(&ticket.challenge, response);
    let mut x = Zeroizing::new([0u8; 32]);
    for (i, b) in x.iter_mut().enumerate() {
        *b = ticket.masked[i] ^ mask[i];
    }
    Some(x)
}

fn ticket_mask(challenge: &[u8], response: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(MASK_DOMAIN);
    h.update(challenge);
    h.update(response);
    Zeroizing::new(h.finalize().into())
}

fn ticket_check(challenge: &[u8], response: &[u8]) -> u16 {
    let mut h = Sha256::new();
    h.update(CHECK_DOMAIN);
    h.update(challenge);
    h.update(response);
    let d = h.finalize();
    u16::from_be_bytes([d[0], d[1]])
}

/// Parses a 16-hex-digit response (spaces allowed).
pub fn parse_response(text: &str) -> Result<[u8; 8]> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = [0u8; 8];
    if digits.len() != 16 || hex::decode_to_slice(&digits, &mut out).is_err() {
        return Err(Error::Usage("a response is 16 hexadecimal digits".into()));
    }
    Ok(out)
}

/// Parses a 16-hex-digit challenge.
pub fn parse_challenge(text: &str) -> Result<[u8; 8]> {
    parse_response(text).map_err(|_| Error::Usage("a challenge is 16 hexadecimal digits".into()))
}

/// The next challenge of a card and how many remain. Spends nothing.
pub fn challenge(store: &Store, card_ref: &str) -> Result<(String, usize)> {
    let card = open_card(store, card_ref)?;
    let file = managed(&card)?;
    let t = file.tickets.first().ok_or_else(no_challenges)?;
    Ok((hex::encode_upper(&t.challenge), file.tickets.len()))
}

/// What a correct administrator response authorizes.
#[derive(Debug)]
pub enum AdminAction<'a> {
    /// Only check the response (the challenge is spent).
    Verify,
    /// Set a new PIN and unblock the card (cards without a PUK only).
    Unblock { new_pin: &'a [u8] },
    /// Replace the admin key: new unblock secret, new batch of challenges.
    ChangeKey { new_key: &'a AdminKey },
    /// A new batch under the same key, which must match the response.
    Refill { key: &'a AdminKey },
}

/// Uses the next challenge with `response`. The ticket is removed before anything else,
/// so a wrong or replayed response spends its challenge; a response that fails the check
/// value costs no TPM try but counts as a wrong attempt. A response the TPM never judged
/// (a lockout, a refused salt key, a lost TPM) gives its challenge back. The last
/// challenge is the reserve: only `change-key` and `refill` may use it (verify, unblock
/// and format refuse), and it is never removed — a new batch replaces it — so a card
/// never becomes unmanageable by running out, whatever fails.
pub fn respond(
    store: &Store,
    card_ref: &str,
    response: &[u8; 8],
    action: AdminAction<'_>,
) -> Result<()> {
    let card = open_card(store, card_ref)?;
    let mut file = managed(&card)?;
    if let AdminAction::Unblock { new_pin } = &action {
        if card.record.has_puk {
            return Err(Error::NotManaged(format!(
                "card {} has a PUK: its PIN is reset with the PUK (`tpmvsc unblock --puk`), not \
                 with the admin key (the Windows rule)",
                card.record.name
            )));
        }
        card.record.pin_policy.check("new PIN", new_pin)?;
    }
    if matches!(action, AdminAction::Verify | AdminAction::Unblock { .. }) {
        not_the_reserve(&card, &file)?;
    }
    if let AdminAction::Refill { key } = &action {
        let t = file.tickets.first().ok_or_else(no_challenges)?;
        let c: [u8; 8] = t
            .challenge
            .clone()
            .try_into()
            .map_err(|_| bad_ticket(&card))?;
        if key.response(&c) != *response {
            return Err(Error::Usage(
                "the admin key does not give this response to the challenge".into(),
            ));
        }
    }
    card.ensure_not_blocked(Counter::Admin)?;
    let taken = take_ticket(&card, &mut file)?;
    let Some(x) = open_ticket(&taken.ticket, response) else {
        return Err(card.spend_try(Counter::Admin)?);
    };
    match action {
        AdminAction::Verify => card
            .attempt(Counter::Admin, &OwnTpm::new(), |tpm| {
                tpm.check_auth(&file.blob, x.as_slice())
            })
            .map_err(|e| give_back(&card, &mut file, taken, e)),
        AdminAction::Unblock { new_pin } => {
            let keys = card.keys()?;
            let fresh = card.pin_auth(new_pin);
            let branches = card.record.branches();
            let blob = card
                .attempt(Counter::Admin, &OwnTpm::new(), |tpm| {
                    let how = Authorizer::Secret {
                        object: &file.blob,
                        auth: x.as_slice(),
                        is_puk: false,
                    };
                    tpm.change_csk_auth(keys.csk_ref(), &branches, how, &fresh)
                })
                .map_err(|e| give_back(&card, &mut file, taken, e))?;
            card.replace_csk(blob)?;
            card.reset_counter(Counter::Pin)
        }
        AdminAction::ChangeKey { new_key: key } | AdminAction::Refill { key } => {
            let mut x2 = Zeroizing::new([0u8; 32]);
            getrandom::fill(x2.as_mut_slice())
                .map_err(|e| Error::Usage(format!("no randomness: {e}")))?;
            let tickets = make_tickets(key, &x2, TICKETS_PER_BATCH)?;
            let blob = card
                .attempt(Counter::Admin, &OwnTpm::new(), |tpm| {
                    tpm.change_object_auth(&file.blob, x.as_slice(), x2.as_slice())
                })
                .map_err(|e| give_back(&card, &mut file, taken, e))?;
            card.dir
                .write(ADMIN_FILE, &AdminFile { blob, tickets }, true)?;
            if key.is_default() != card.record.default_admin_key {
                let mut record = card.record.clone();
                record.default_admin_key = key.is_default();
                card.dir.write(crate::card::CARD_FILE, &record, true)?;
            }
            Ok(())
        }
    }
}

/// Recovers X from the next ticket with `response` and checks it with the TPM, spending
/// the challenge (for `format --admin`). Returns X.
pub(crate) fn take_secret(
    card: &OpenCard,
    response: &[u8; 8],
    tpm: &impl TpmAccess,
) -> Result<Zeroizing<[u8; 32]>> {
    let mut file = managed(card)?;
    card.ensure_not_blocked(Counter::Admin)?;
    not_the_reserve(card, &file)?;
    let taken = take_ticket(card, &mut file)?;
    let Some(x) = open_ticket(&taken.ticket, response) else {
        return Err(card.spend_try(Counter::Admin)?);
    };
    card.attempt(Counter::Admin, tpm, |t| {
        t.check_auth(&file.blob, x.as_slice())
    })
    .map_err(|e| give_back(card, &mut file, taken, e))?;
    Ok(x)
}

/// The challenge a response is for, taken from the card's file.
#[derive(Debug)]
struct Taken {
    ticket: Ticket,
    /// The reserve stays in the file (only a new batch replaces it).
    reserve: bool,
}

/// Takes the next ticket: spent on disk before it is tried, so that a response is used
/// once even across a crash — except the reserve, which stays.
fn take_ticket(card: &OpenCard, file: &mut AdminFile) -> Result<Taken> {
    match file.tickets.len() {
        0 => Err(no_challenges()),
        1 => Ok(Taken {
            ticket: file.tickets[0].clone(),
            reserve: true,
        }),
        _ => {
            let ticket = file.tickets.remove(0);
            card.dir.write(ADMIN_FILE, &*file, true)?;
            Ok(Taken {
                ticket,
                reserve: false,
            })
        }
    }
}

/// After a failed attempt: a response the TPM judged wrong keeps its challenge spent; one
/// it never judged (lockout, refused salt key, TPM gone) gets its challenge back, first in
/// line. Returns the attempt's error.
fn give_back(card: &OpenCard, file: &mut AdminFile, taken: Taken, e: Error) -> Error {
    let judged = matches!(e, Error::ResponseIncorrect { .. } | Error::AdminLocked);
    if !judged && !taken.reserve {
        file.tickets.insert(0, taken.ticket);
        if let Err(w) = card.dir.write(ADMIN_FILE, &*file, true) {
            return w;
        }
    }
    e
}

fn managed(card: &OpenCard) -> Result<AdminFile> {
    if card.record.admin != AdminMode::Managed || !card.dir.has(ADMIN_FILE) {
        return Err(Error::NotManaged(format!(
            "card {} has no admin key (created with `random`): no administrator can unblock, \
             reformat or manage it",
            card.record.name
        )));
    }
    card.dir.read(ADMIN_FILE)
}

/// Refuses to spend the last challenge, which is kept for `admin refill` and
/// `admin change-key`.
fn not_the_reserve(card: &OpenCard, file: &AdminFile) -> Result<()> {
    if file.tickets.len() <= 1 {
        return Err(Error::NotManaged(format!(
            "only the reserve challenge is left, kept for `tpmvsc admin refill {0}` (or \
             `admin change-key`): ask the administrator to refill the card first",
            card.record.name
        )));
    }
    Ok(())
}

fn no_challenges() -> Error {
    Error::NotManaged("the card has no administrator challenges left".into())
}

fn bad_ticket(card: &OpenCard) -> Error {
    Error::corrupt(card.dir.file(ADMIN_FILE), "a challenge is not 8 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_match_openssl_des_ede3() {
        // printf '\0\0\0\0\0\0\0\0' | openssl enc -des-ede3 -K 0102…08 -nopad | xxd -p
        let k = AdminKey::parse_hex(DEFAULT_ADMIN_KEY_HEX).unwrap();
        assert!(k.is_default());
        assert_eq!(hex::encode(k.response(&[0; 8])), "b073dc3fb209536d");
        assert_eq!(k.response(&[0; 8])[..3], [0xb0, 0x73, 0xdc]);
        let k2 = AdminKey::parse_hex("0123456789abcdef fedcba9876543210 89abcdef01234567").unwrap();
        assert!(!k2.is_default());
        let c = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
        assert_eq!(hex::encode(k2.response(&c)), "971edb3894b28663");
    }

    #[test]
    fn per_card_keys_follow_the_documented_kdf() {
        let master = parse_master_key("000102030405060708090a0b0c0d0e0f").unwrap();
        let id = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        let k = AdminKey::derive(&master, id).unwrap();
        // printf 'tpmvsc per-card admin key v1\0%s' 6f9619ff-8b86-d011-b42d-00c04fc964ff |
        //   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102030405060708090a0b0c0d0e0f
        // (first 48 hex digits)
        assert_eq!(
            hex::encode(k.0.as_slice()),
            "8a0936894095fcc546c93f06cfa1a92e8dbff7704e3a2a66"
        );
        assert_ne!(
            AdminKey::derive(&master, "6f9619ff-8b86-d011-b42d-00c04fc964fe")
                .unwrap()
                .0,
            k.0
        );
        assert!(parse_master_key("0011").is_err());
        assert!(AdminKey::derive(&master, "not-a-guid").is_err());
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(AdminKey::parse_hex("0102").is_err());
        assert!(AdminKey::parse_hex(&"zz".repeat(24)).is_err());
        assert_eq!(
            AdminKey::default_key().response(&[0; 8])[..3],
            [0xb0, 0x73, 0xdc]
        );
    }

    #[test]
    fn a_ticket_opens_with_the_right_response_only() {
        let k = AdminKey::default_key();
        let x = [7u8; 32];
        let tickets = make_tickets(&k, &x, 4).unwrap();
        assert_eq!(tickets.len(), 4);
        for t in &tickets {
            let c: [u8; 8] = t.challenge.clone().try_into().unwrap();
            assert_eq!(*open_ticket(t, &k.response(&c)).unwrap(), x);
            let mut wrong = k.response(&c);
            wrong[0] ^= 1;
            // A wrong response is caught by the 16-bit check (or yields another X).
            assert!(open_ticket(t, &wrong).is_none_or(|y| *y != x));
        }
    }
}
