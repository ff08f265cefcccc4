//! `tpmvscmgr`: Microsoft's `tpmvscmgr.exe` command line on Linux, so an administrator's
//! existing `create` and `destroy` commands work unchanged (DESIGN.md §4). Parsing is in
//! `super::winsyntax`; this file maps the result onto the same provisioning calls
//! `tpmvsc` uses.

use std::process::ExitCode;

use super::prompt::SecretReader;
use super::winsyntax::{self, WinAdminKey, WinCommand, WinCreate, WinDestroy, WinSecret};
use crate::card::{DEFAULT_PIN, PinPolicy};
use crate::error::{Error, Quoted, Result};
use crate::provision::admin::AdminKey;
use crate::provision::{self, AdminKeySpec, CreateRequest};
use crate::store::Store;
use zeroize::Zeroizing;

/// The `tpmvscmgr` program.
pub fn main() -> ExitCode {
    crate::tpm::quiet_tss_logging_for_cli();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = winsyntax::parse(&args).and_then(|cmd| match cmd {
        WinCommand::Help(verb) => {
            println!("{}", winsyntax::usage(verb));
            Ok(())
        }
        WinCommand::Version => {
            println!("tpmvscmgr {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        WinCommand::NoCommand => {
            eprintln!("{}", winsyntax::usage(None));
            Err(Error::Usage("no command given: create or destroy".into()))
        }
        WinCommand::Create(c) => create(c),
        WinCommand::Destroy(d) => destroy(d),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tpmvscmgr: {e}");
            if matches!(
                e,
                Error::Usage(_) | Error::PolicyViolation(_) | Error::PinRule { .. }
            ) {
                eprintln!("Run `tpmvscmgr /?` for the syntax.");
            }
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn create(c: WinCreate) -> Result<()> {
    if c.machine.is_some() {
        return Err(unsupported(
            "/machine is not supported yet: run tpmvscmgr on that machine itself (for example over ssh)",
        ));
    }
    if c.attestation.is_some() {
        return Err(unsupported(
            "/attestation is not supported yet: create the card without it (attestation of card keys is planned)",
        ));
    }
    let store = Store::open()?;
    let mut reader = SecretReader::new(false);
    let policy = c.pin_policy.clone().unwrap_or_default();
    let mut req = CreateRequest::new(&c.name);
    req.pin = match c.pin {
        WinSecret::Default => Zeroizing::new(DEFAULT_PIN.as_bytes().to_vec()),
        WinSecret::Prompt => reader.new_secret("PIN", &|s: &[u8]| policy.check("PIN", s))?,
    };
    let puk_policy = PinPolicy::default();
    req.puk = match c.puk {
        None => None,
        Some(WinSecret::Default) => Some(Zeroizing::new(DEFAULT_PIN.as_bytes().to_vec())),
        Some(WinSecret::Prompt) => {
            Some(reader.new_secret("PUK", &|s: &[u8]| puk_policy.check("PUK", s))?)
        }
    };
    req.admin = match c.admin_key {
        WinAdminKey::Random => AdminKeySpec::Random,
        WinAdminKey::Default => {
            eprintln!(
                "Warning: the DEFAULT admin key is public: anyone who can read this card's files can reset its PIN."
            );
            AdminKeySpec::Key(AdminKey::default_key())
        }
        WinAdminKey::Prompt => {
            let check = |s: &[u8]| AdminKey::parse_hex(&String::from_utf8_lossy(s)).map(|_| ());
            let k = reader.new_secret("admin key (48 hex digits)", &check)?;
            AdminKeySpec::Key(AdminKey::parse_hex(&String::from_utf8_lossy(&k))?)
        }
    };
    reader.finish("PIN, PUK, admin key: one line for each set to PROMPT, once")?;
    req.pin_policy = policy;
    req.format = c.generate;
    if !c.quiet {
        println!("Creating TPM Smart Card...");
    }
    let summary = provision::create(&store, req, &mut |step| {
        if step.starts_with("warning:") {
            eprintln!("{step}");
        }
    })?;
    if c.quiet {
        println!("{}", summary.instance_id);
    } else {
        println!(
            "TPM Smart Card created{}.",
            if summary.simulated {
                " (on a simulated TPM)"
            } else {
                ""
            }
        );
        println!(
            "Smart Card Reader Device Instance ID = {}",
            summary.instance_id
        );
        println!("Card ID = {}", summary.card_id);
    }
    Ok(())
}

fn destroy(d: WinDestroy) -> Result<()> {
    if d.machine.is_some() {
        return Err(unsupported(
            "/machine is not supported yet: run tpmvscmgr on that machine itself (for example over ssh)",
        ));
    }
    let store = Store::open()?;
    let wanted = d.instance.trim();
    if crate::card::looks_like_instance_id(wanted) && !wanted.contains('\\') {
        return Err(Error::Usage(format!(
            "{} looks like an instance ID whose backslashes the shell removed: quote it, \
             e.g. tpmvscmgr destroy /instance 'ROOT\\SMARTCARDREADER\\0000'",
            Quoted(wanted)
        )));
    }
    // Windows destroys by device instance ID only.
    let card = provision::list(&store)?
        .into_iter()
        .find(|c| c.instance_id.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| Error::CardNotFound(wanted.to_string()))?;
    if !d.quiet {
        println!("Destroying TPM Smart Card...");
    }
    provision::destroy(&store, &card.card_id)?;
    if !d.quiet {
        println!("TPM Smart Card destroyed.");
    }
    Ok(())
}

fn unsupported(msg: &str) -> Error {
    Error::Unsupported(msg.to_string())
}
