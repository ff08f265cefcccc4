//! `keygen`, `keys`, `csr`, `import-cert` and `certs`: keys and certificates on a card.

use std::path::PathBuf;

use super::args::PinSource;
use super::output::print_json;
use super::prompt::{MAX_CERT_BYTES, read_input_file, read_input_stdin};
use crate::error::{Error, Quoted, Result};
use crate::provision::enroll;
use crate::store::Store;
use crate::tpm::templates::UserKeyKind;

/// `tpmvsc keygen`.
pub(super) fn keygen(
    store: &Store,
    card: String,
    kind: String,
    label: String,
    pin: PinSource,
    json: bool,
) -> Result<()> {
    let kind = match kind.as_str() {
        "ec-p256" => UserKeyKind::EccP256,
        "ec-p384" => UserKeyKind::EccP384,
        "rsa2048" => UserKeyKind::Rsa2048,
        _ => UserKeyKind::Rsa3072,
    };
    // A label the card cannot take is refused before the PIN is asked for.
    enroll::check_new_label(store, &card, &label)?;
    let p = pin.read()?;
    if !json {
        eprintln!("... generating the key in the TPM (RSA can take seconds)");
    }
    let k = enroll::keygen(store, &card, &p, kind, &label)?;
    if json {
        print_json(&k);
    } else {
        println!("Key {} generated; ID {}.", Quoted(&k.label), k.id);
    }
    Ok(())
}

/// `tpmvsc keys`.
pub(super) fn keys(store: &Store, card: String, json: bool) -> Result<()> {
    let keys = enroll::keys(store, &card)?;
    if json {
        print_json(&keys);
    } else {
        for k in keys {
            println!("{:<24} {:<10} {}", k.label, k.kind, k.id);
        }
    }
    Ok(())
}

/// `tpmvsc csr`: what can be checked without the PIN is checked before it is asked for.
pub(super) fn csr(
    store: &Store,
    card: String,
    key: String,
    subject: String,
    san: Vec<String>,
    out: PathBuf,
    pin: PinSource,
) -> Result<()> {
    // What can be checked without the PIN is checked before it is asked for.
    let to_stdout = out.as_os_str() == "-";
    if !to_stdout {
        check_output_file(&out)?;
    }
    enroll::check_request(&subject, &san)?;
    enroll::check_key(store, &card, &key)?;
    let p = pin.read()?;
    let pem = enroll::csr(store, &card, &p, &key, &subject, &san)?;
    if to_stdout {
        print!("{pem}");
    } else {
        crate::store::atomic::write_atomic(&out, pem.as_bytes(), true)?;
        eprintln!("Certificate request written to {}.", out.display());
    }
    Ok(())
}

/// `tpmvsc import-cert`.
pub(super) fn import_cert(store: &Store, card: String, file: PathBuf, json: bool) -> Result<()> {
    let data = if file.as_os_str() == "-" {
        read_input_stdin("certificate on standard input", MAX_CERT_BYTES)?
    } else {
        read_input_file(&file, "certificate file", MAX_CERT_BYTES)?
    };
    let c = enroll::import_cert(store, &card, &data)?;
    if json {
        print_json(&c);
    } else {
        println!(
            "Certificate for {} installed next to key {}.",
            c.subject,
            Quoted(&c.label)
        );
    }
    Ok(())
}

/// `tpmvsc certs`.
pub(super) fn certs(store: &Store, card: String, json: bool) -> Result<()> {
    let list = enroll::certs(store, &card)?;
    if json {
        print_json(&list);
    } else if list.is_empty() {
        println!("No certificates on this card.");
    } else {
        for c in list {
            println!(
                "{}\n  issuer:  {}\n  expires: {}\n  key:     {}{}",
                c.subject,
                c.issuer,
                c.not_after,
                c.label,
                if c.has_key {
                    ""
                } else {
                    " (no key on the card)"
                }
            );
        }
    }
    Ok(())
}

/// An output path must name a regular file, new or existing: the file is replaced by a
/// rename, which would put a regular file in place of a device (`/dev/null`, as root) or
/// fail late on a directory.
fn check_output_file(path: &std::path::Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::Usage(
            "--out is empty; give a file name, or - for standard output".into(),
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::Usage(format!(
            "{} is not a regular file; --out writes a file (or - for standard output)",
            path.display()
        ))),
        _ => Ok(()),
    }
}
