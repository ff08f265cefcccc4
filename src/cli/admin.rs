//! `admin challenge | response | verify | change-key | refill`: the administrator key's
//! challenge-response (DESIGN.md §3).

use zeroize::Zeroizing;

use super::args::{AdminCmd, ResponseArgs};
use super::output::{counted, print_json};
use super::prompt::{SecretReader, read_secret_file};
use crate::error::{Error, Result};
use crate::provision::Secret;
use crate::provision::admin::{self, AdminKey};
use crate::store::Store;

/// Shows the challenge (to stderr, so scripts can still read stdout) and reads the
/// response, unless it comes from `file`.
pub(super) fn admin_response(
    store: &Store,
    card: &str,
    file: Option<&std::path::Path>,
    r: &mut SecretReader,
) -> Result<[u8; 8]> {
    let (challenge, left) = admin::challenge(store, card)?;
    if let Some(f) = file {
        let text = read_secret_file(f, "response")?;
        return admin::parse_response(&String::from_utf8_lossy(&text));
    }
    eprintln!(
        "Challenge: {challenge}  ({} left)",
        counted(left, "challenge", "challenges")
    );
    eprintln!("Read it to your administrator and type the response they give you.");
    if left <= 4 {
        eprintln!(
            "warning: few challenges left; ask the administrator to run `tpmvsc admin refill`."
        );
    }
    let text = r.current("response")?;
    admin::parse_response(&String::from_utf8_lossy(&text))
}

/// `tpmvsc admin …`.
pub(super) fn run(store: &Store, action: AdminCmd) -> Result<()> {
    match action {
        AdminCmd::Challenge { card, json } => {
            let (challenge, left) = admin::challenge(store, &card)?;
            if json {
                print_json(&serde_json::json!({ "challenge": challenge, "challenges_left": left }));
            } else {
                println!("{challenge}");
                eprintln!("({} left)", counted(left, "challenge", "challenges"));
            }
        }
        AdminCmd::Response(args) => offline_response(args)?,
        AdminCmd::Verify { card, response } => {
            let mut r = SecretReader::new(response.stdin);
            let resp = admin_response(store, &card, response.response_file.as_deref(), &mut r)?;
            r.finish("response")?;
            admin::respond(store, &card, &resp, admin::AdminAction::Verify)?;
            println!("The response is correct.");
        }
        AdminCmd::ChangeKey { card, response } => {
            let mut r = SecretReader::new(response.stdin);
            let resp = admin_response(store, &card, response.response_file.as_deref(), &mut r)?;
            let check = |s: &[u8]| AdminKey::parse_hex(&String::from_utf8_lossy(s)).map(|_| ());
            let k = r.new_secret_with("admin key (48 hex digits)", &check, true)?;
            let key = AdminKey::parse_hex(&String::from_utf8_lossy(&k))?;
            r.finish("response, new admin key, new admin key")?;
            admin::respond(
                store,
                &card,
                &resp,
                admin::AdminAction::ChangeKey { new_key: &key },
            )?;
            println!(
                "Admin key changed; {} new challenges.",
                admin::TICKETS_PER_BATCH
            );
        }
        AdminCmd::Refill { card, response } => {
            let mut r = SecretReader::new(response.stdin);
            let resp = admin_response(store, &card, response.response_file.as_deref(), &mut r)?;
            let k = r.current("admin key (48 hex digits)")?;
            let key = AdminKey::parse_hex(&String::from_utf8_lossy(&k))?;
            r.finish("response, admin key")?;
            admin::respond(
                store,
                &card,
                &resp,
                admin::AdminAction::Refill { key: &key },
            )?;
            println!("{} new challenges.", admin::TICKETS_PER_BATCH);
        }
    }
    Ok(())
}

/// `tpmvsc admin response`: the administrator's side, no card and no TPM involved.
fn offline_response(args: ResponseArgs) -> Result<()> {
    let ResponseArgs {
        challenge,
        admin_key_file,
        master_key_file,
        card_id,
        stdin,
        admin_key,
        master_key,
    } = args;
    // The challenge first: a typo in it costs no key entry.
    let c = admin::parse_challenge(&challenge)?;
    let text = |s: &Secret| String::from_utf8_lossy(s).into_owned();
    let key = match (card_id, admin_key_file, master_key_file) {
        (Some(_), _, _) if admin_key.is_some() => {
            return Err(Error::Usage(
                "--card-id derives the card's key from a master key; --admin-key is the \
                 card's own key: give one of them"
                    .into(),
            ));
        }
        (None, None, _) if master_key.is_some() => {
            return Err(Error::Usage(
                "a master key needs --card-id GUID, the card whose key to derive".into(),
            ));
        }
        (None, Some(f), None) => {
            AdminKey::parse_hex(&Zeroizing::new(text(&read_secret_file(&f, "admin key")?)))?
        }
        (None, None, None) => {
            let mut r = SecretReader::new(stdin);
            let k = r.current("admin key (48 hex digits)")?;
            r.finish("admin key")?;
            AdminKey::parse_hex(&Zeroizing::new(text(&k)))?
        }
        (Some(id), None, master_file) => {
            let m = match master_file {
                Some(f) => read_secret_file(&f, "master key")?,
                None => {
                    let mut r = SecretReader::new(stdin);
                    let m = r.current("master key (hex)")?;
                    r.finish("master key")?;
                    m
                }
            };
            AdminKey::derive(&admin::parse_master_key(&Zeroizing::new(text(&m)))?, &id)?
        }
        (_, Some(_), Some(_)) | (Some(_), Some(_), None) | (None, None, Some(_)) => {
            return Err(Error::Usage(
                "give --admin-key-file, or --master-key-file with --card-id".into(),
            ));
        }
    };
    println!("{}", hex::encode_upper(key.response(&c)));
    Ok(())
}
