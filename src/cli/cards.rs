//! `create`, `destroy`, `list` and `info`.

use zeroize::Zeroizing;

use super::args::{AdminChoice, CreateArgs, SecretChoice};
use super::output::{print_info, print_json, print_settings, print_table, settings_json};
use super::prompt::{SecretReader, read_secret_file};
use crate::card::{DEFAULT_PIN, PinPolicy};
use crate::error::{Error, Quoted, Result};
use crate::provision::admin::{self, AdminKey, DEFAULT_ADMIN_KEY_HEX};
use crate::provision::{self, AdminKeySpec, CreateRequest, Secret};
use crate::store::Store;

/// `tpmvsc create`: secrets from files, the prompt or standard input, in one order.
pub(super) fn create(store: &Store, a: CreateArgs) -> Result<()> {
    let (pin_choice, puk_choice, admin_choice) = a.choices()?;
    let mut reader = SecretReader::new(a.stdin);
    let policy = match &a.pin_policy {
        Some(spec) => PinPolicy::parse(spec)?,
        None => PinPolicy::default(),
    };
    let mut req = CreateRequest::new(&a.name);
    crate::card::check_name(&a.name)?;
    let pin_chosen = pin_choice == Some(SecretChoice::Prompt) || a.pin_file.is_some();
    if a.pin_policy.is_some() && !pin_chosen {
        return Err(Error::Usage(
            "a PIN policy applies to a PIN you choose: add --pin prompt or --pin-file".into(),
        ));
    }
    req.pin = pin_for(&a, pin_choice, &policy, &mut reader)?;
    req.puk = puk_for(&a, puk_choice, &mut reader)?;
    let card_id = match &a.card_id {
        Some(id) => id.clone(),
        None => uuid::Uuid::new_v4().hyphenated().to_string(),
    };
    req.admin = admin_key_for(&a, admin_choice, &card_id, &mut reader)?;
    reader.finish("PIN, PUK, admin key: one line for each set to prompt, once")?;
    if matches!(&req.admin, AdminKeySpec::Key(k) if k.is_default()) {
        eprintln!(
            "warning: the default admin key is public: anyone who can read this card's files can \
             reset its PIN{}",
            if req.puk.is_none() {
                " (the card has no PUK)"
            } else {
                ""
            }
        );
    }
    req.pin_policy = policy.clone();
    req.pin_tries = a.pin_tries;
    req.puk_tries = a.puk_tries;
    req.card_id = Some(card_id);
    req.format = !a.no_format;
    let quiet = a.json;
    let summary = provision::create(store, req, &mut |step| {
        if step.starts_with("warning:") {
            eprintln!("{step}");
        } else if !quiet {
            eprintln!("... {step}");
        }
    })?;
    if a.json {
        print_json(&summary);
    } else {
        print_created(&summary);
    }
    Ok(())
}

/// The new card's PIN: from --pin-file, the prompt, or the Windows default.
fn pin_for(
    a: &CreateArgs,
    choice: Option<SecretChoice>,
    policy: &PinPolicy,
    reader: &mut SecretReader,
) -> Result<Secret> {
    let check_pin = |s: &[u8]| policy.check("PIN", s);
    Ok(match (&a.pin_file, choice) {
        (Some(f), _) => {
            let p = read_secret_file(f, "PIN")?;
            check_pin(&p)?;
            p
        }
        (None, Some(SecretChoice::Prompt)) => reader.new_secret("PIN", &check_pin)?,
        _ => Zeroizing::new(DEFAULT_PIN.as_bytes().to_vec()),
    })
}

/// The new card's PUK, if it has one: from --puk-file, the prompt, or the default.
fn puk_for(
    a: &CreateArgs,
    choice: Option<SecretChoice>,
    reader: &mut SecretReader,
) -> Result<Option<Secret>> {
    let puk_policy = PinPolicy::default();
    let check_puk = |s: &[u8]| puk_policy.check("PUK", s);
    Ok(match (&a.puk_file, choice) {
        (Some(f), _) => {
            let p = read_secret_file(f, "PUK")?;
            check_puk(&p)?;
            Some(p)
        }
        (None, Some(SecretChoice::Prompt)) => Some(reader.new_secret("PUK", &check_puk)?),
        (None, Some(SecretChoice::Default)) => {
            Some(Zeroizing::new(DEFAULT_PIN.as_bytes().to_vec()))
        }
        (None, None) => None,
    })
}

/// The new card's admin key: derived from a master key, from a file, the prompt, the
/// Windows default, or random.
fn admin_key_for(
    a: &CreateArgs,
    choice: Option<AdminChoice>,
    card_id: &str,
    reader: &mut SecretReader,
) -> Result<AdminKeySpec> {
    let check_key = |s: &[u8]| AdminKey::parse_hex(&String::from_utf8_lossy(s)).map(|_| ());
    if let Some(f) = &a.admin_key_master_file {
        let master = admin::parse_master_key(&String::from_utf8_lossy(&read_secret_file(
            f,
            "master key",
        )?))?;
        return Ok(AdminKeySpec::Key(AdminKey::derive(&master, card_id)?));
    }
    Ok(match (&a.admin_key_file, choice) {
        (Some(f), _) => AdminKeySpec::Key(AdminKey::parse_hex(&String::from_utf8_lossy(
            &read_secret_file(f, "admin key")?,
        ))?),
        (None, Some(AdminChoice::Prompt)) => {
            let k = reader.new_secret("admin key (48 hex digits)", &check_key)?;
            AdminKeySpec::Key(AdminKey::parse_hex(&String::from_utf8_lossy(&k))?)
        }
        (None, Some(AdminChoice::Default)) => {
            AdminKeySpec::Key(AdminKey::parse_hex(DEFAULT_ADMIN_KEY_HEX)?)
        }
        (None, Some(AdminChoice::Random)) | (None, None) => AdminKeySpec::Random,
    })
}

fn print_created(summary: &provision::CardSummary) {
    println!(
        "Created card {}{}{}.",
        Quoted(&summary.name),
        if summary.simulated {
            " (simulated TPM: a software token)"
        } else {
            ""
        },
        if summary.formatted {
            ""
        } else {
            ", unformatted"
        }
    );
    println!("Card ID:     {}", summary.card_id);
    println!("Instance ID: {}", summary.instance_id);
}

/// `tpmvsc destroy`: asks first unless --yes.
pub(super) fn destroy(store: &Store, card: String, yes: bool) -> Result<()> {
    let (_, record) = match provision::find(store, &card) {
        Ok(found) => (Some(found.0), Some(found.1)),
        Err(Error::CardUnusable { .. }) => (None, None),
        Err(e) => return Err(e),
    };
    if !yes {
        let what = record.map_or(card.clone(), |r| {
            format!("{} ({})", Quoted(&r.name), r.card_id)
        });
        let reader = SecretReader::new(false);
        if !reader.confirm(&format!(
            "Destroy card {what} and every key on it? This cannot be undone."
        ))? {
            return Err(Error::Usage(
                "not destroyed: confirm on a terminal, or pass --yes".into(),
            ));
        }
    }
    let label = provision::destroy(store, &card)?;
    println!("Destroyed card {label}.");
    Ok(())
}

/// `tpmvsc list`: the table (or JSON) with the TPM's state.
pub(super) fn list(store: &Store, json: bool) -> Result<()> {
    let mut cards = provision::list(store)?;
    let view = provision::TpmView::read();
    if let Some(v) = &view {
        cards.iter_mut().for_each(|c| v.annotate(c));
    }
    if json {
        print_json(&cards);
    } else if cards.is_empty() {
        println!(
            "No cards in {}. Create one with `tpmvsc create --name NAME`.",
            store.root().display()
        );
    } else {
        print_table(&cards);
    }
    if !json && let Some(state) = view.as_ref().and_then(|v| v.lockout_state) {
        match state.warning() {
            None => println!("TPM: {}", state.describe()),
            Some(w) => println!("TPM: {}. Warning: {w}", state.describe()),
        }
    }
    Ok(())
}

/// `tpmvsc info`.
pub(super) fn info(store: &Store, card: String, json: bool) -> Result<()> {
    let mut c = provision::info(store, &card)?;
    if let Some(v) = provision::TpmView::read() {
        v.annotate(&mut c);
    }
    if json {
        let mut v = serde_json::to_value(&c).unwrap_or_default();
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("settings".into(), settings_json(store)?);
        }
        print_json(&v);
    } else {
        print_info(&c);
        print_settings(store)?;
    }
    Ok(())
}
