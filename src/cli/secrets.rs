//! `check-pin`, `change-pin`, `change-puk`, `unblock` and `format`: the commands that take
//! a card's secrets.

use std::path::PathBuf;

use super::admin::admin_response;
use super::args::PinSource;
use super::prompt::SecretReader;
use crate::card::PinPolicy;
use crate::error::{Error, Quoted, Result};
use crate::provision::{self, admin, format};
use crate::store::Store;

/// `tpmvsc check-pin`.
pub(super) fn check_pin(store: &Store, card: String, pin: PinSource) -> Result<()> {
    provision::find(store, &card)?;
    let pin = pin.read()?;
    provision::verify_pin(store, &card, &pin)?;
    println!("PIN correct.");
    Ok(())
}

/// `tpmvsc change-pin`: current, new, new.
pub(super) fn change_pin(store: &Store, card: String, stdin: bool) -> Result<()> {
    let mut r = SecretReader::new(stdin);
    let policy = provision::find(store, &card)?.1.pin_policy;
    let current = r.current_pin("current PIN")?;
    let new = r.new_secret_with("PIN", &|s: &[u8]| policy.check("new PIN", s), true)?;
    r.finish("current PIN, new PIN, new PIN")?;
    provision::change_pin(store, &card, &current, &new)?;
    println!("PIN changed.");
    Ok(())
}

/// `tpmvsc change-puk`: current, new, new.
pub(super) fn change_puk(store: &Store, card: String, stdin: bool) -> Result<()> {
    let mut r = SecretReader::new(stdin);
    provision::find(store, &card)?;
    let current = r.current_pin("current PUK")?;
    let policy = PinPolicy::default();
    let new = r.new_secret_with("PUK", &|s: &[u8]| policy.check("new PUK", s), true)?;
    r.finish("current PUK, new PUK, new PUK")?;
    provision::change_puk(store, &card, &current, &new)?;
    println!("PUK changed.");
    Ok(())
}

/// `tpmvsc unblock --puk | --admin`.
pub(super) fn unblock(
    store: &Store,
    card: String,
    puk: bool,
    response_file: Option<PathBuf>,
    stdin: bool,
) -> Result<()> {
    let mut r = SecretReader::new(stdin);
    let record = provision::find(store, &card)?.1;
    let policy = record.pin_policy.clone();
    let check = |s: &[u8]| policy.check("new PIN", s);
    if puk {
        if !record.has_puk {
            return Err(Error::NoPuk(record.name));
        }
        let p = r.current_pin("PUK")?;
        let new = r.new_secret_with("PIN", &check, true)?;
        r.finish("PUK, new PIN, new PIN")?;
        provision::unblock_with_puk(store, &card, &p, &new)?;
    } else {
        if record.has_puk {
            // The Windows rule, checked before any challenge is spent.
            return Err(Error::NotManaged(format!(
                "card {} has a PUK: unblock it with `tpmvsc unblock {} --puk`",
                Quoted(&record.name),
                record.name
            )));
        }
        let resp = admin_response(store, &card, response_file.as_deref(), &mut r)?;
        let new = r.new_secret_with("PIN", &check, true)?;
        r.finish("response, new PIN, new PIN")?;
        admin::respond(
            store,
            &card,
            &resp,
            admin::AdminAction::Unblock { new_pin: &new },
        )?;
    }
    println!("New PIN set; the card is unblocked.");
    Ok(())
}

/// `tpmvsc format --puk | --admin`.
pub(super) fn format(
    store: &Store,
    card: String,
    puk: bool,
    response_file: Option<PathBuf>,
    stdin: bool,
    yes: bool,
) -> Result<()> {
    let mut r = SecretReader::new(stdin);
    let record = provision::find(store, &card)?.1;
    if !yes && !r.uses_stdin() {
        let q = format!(
            "Erase every key and certificate on card {}?",
            Quoted(&record.name)
        );
        if !r.confirm(&q)? {
            return Err(Error::Usage(
                "not formatted: confirm on a terminal, or pass --yes".into(),
            ));
        }
    }
    let policy = record.pin_policy.clone();
    let check = |s: &[u8]| policy.check("new PIN", s);
    let summary = if puk {
        let p = r.current_pin("PUK")?;
        let new = r.new_secret_with("PIN", &check, true)?;
        r.finish("PUK, new PIN, new PIN")?;
        format::format(store, &card, format::FormatAuth::Puk(&p), &new)?
    } else {
        let resp = admin_response(store, &card, response_file.as_deref(), &mut r)?;
        let new = r.new_secret_with("PIN", &check, true)?;
        // A card with a PUK gets a new PUK object, with a PUK the admin chooses.
        let new_puk = if record.has_puk {
            let puk_policy = PinPolicy::default();
            Some(r.new_secret_with("PUK", &|s: &[u8]| puk_policy.check("new PUK", s), true)?)
        } else {
            None
        };
        r.finish("response, new PIN, new PIN (then new PUK twice on a card with a PUK)")?;
        format::format(
            store,
            &card,
            format::FormatAuth::Admin(&resp, new_puk.as_deref().map(|v| v.as_slice())),
            &new,
        )?
    };
    println!(
        "Card {} formatted; card ID {}.",
        Quoted(&summary.name),
        summary.card_id
    );
    Ok(())
}
