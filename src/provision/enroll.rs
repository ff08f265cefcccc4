//! Enrollment from the sidecar (the Windows walkthrough): a key generated on the card,
//! a PKCS#10 request signed inside the TPM, the CA's certificate installed on the card
//! next to its key. The objects are written in the same format the PKCS#11 module reads,
//! so every client sees them.

use cryptoki_sys::*;
use der::asn1::{BitString, Ia5String, SetOfVec};
use der::{Decode, Encode, EncodePem};
use serde::Serialize;
use std::str::FromStr;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::card::Counter;
use crate::error::{CallError, Error, Quoted, Result};
use crate::mechanism::{self, HashAlg, Mech, PrivateResult, PrivateStep};
use crate::object::{self, KeyPairRequest, Object, ObjectRecord};
use crate::provision::access::OwnTpm;
use crate::provision::pin::{OpenCard, open_card};
use crate::store::Store;
use crate::tpm::{Blob, PublicKey, templates::UserKeyKind};

/// A key found on the card.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub label: String,
    pub id: String,
    pub kind: String,
}

/// A certificate on the card.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub label: String,
    pub id: String,
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    pub has_key: bool,
}

/// Generates a key pair in the TPM under the card's storage key (the PIN is checked and
/// counted by the TPM) and stores both halves as token objects. Returns its CKA_ID (hex).
pub fn keygen(
    store: &Store,
    card_ref: &str,
    pin: &[u8],
    kind: UserKeyKind,
    label: &str,
) -> Result<KeyInfo> {
    let card = open_card(store, card_ref)?;
    if !card.record.formatted {
        return Err(Error::CardUnusable {
            name: card.record.name.clone(),
            reason: "it is not formatted yet: run `tpmvsc format` first".into(),
        });
    }
    new_label_ok(&card, label)?;
    let keys = records(&card)?
        .iter()
        .filter(|(_, o)| o.class() == CKO_PRIVATE_KEY)
        .count();
    if keys >= object::MAX_KEYS {
        return Err(Error::from(CallError::CardFull(
            "the card holds 30 keys, the most it can",
        )));
    }
    let keys = card.keys()?;
    let auth = card.pin_auth(pin);
    let (blob, key) = card.attempt(Counter::Pin, &OwnTpm::new(), |t| {
        t.create_user_key(keys.csk_ref(), &auth, kind)
    })?;
    let mech = match kind {
        UserKeyKind::Rsa2048 | UserKeyKind::Rsa3072 => CKM_RSA_PKCS_KEY_PAIR_GEN,
        UserKeyKind::EccP256 | UserKeyKind::EccP384 => CKM_EC_KEY_PAIR_GEN,
    };
    let req = KeyPairRequest {
        label: Some(label.as_bytes().to_vec()),
        token: true,
        ..Default::default()
    };
    let (public, private) = object::key_pair_objects(&key, mech, &req);
    let id = hex::encode(public.get(&CKA_ID).cloned().unwrap_or_default());
    write_object(
        &card,
        Object {
            attrs: public,
            blob: None,
            file: None,
            read_only: false,
        },
    )?;
    write_object(
        &card,
        Object {
            attrs: private,
            blob: Some(blob),
            file: None,
            read_only: false,
        },
    )?;
    Ok(KeyInfo {
        label: label.to_string(),
        id,
        kind: format!("{kind:?}"),
    })
}

/// Checks that `label` can name a new key on the card: not empty, not taken. `keygen`
/// checks it too; front ends call this first so that a bad label costs no PIN prompt.
pub(crate) fn check_new_label(store: &Store, card_ref: &str, label: &str) -> Result<()> {
    if label.is_empty() {
        return Err(empty_label());
    }
    new_label_ok(&open_card(store, card_ref)?, label)
}

/// Checks that the card has the key `wanted` (a label, or a CKA_ID in hex) that `csr`
/// would use; front ends call this first so that a missing key costs no PIN prompt.
pub(crate) fn check_key(store: &Store, card_ref: &str, wanted: &str) -> Result<()> {
    find_private_key(&open_card(store, card_ref)?, wanted).map(|_| ())
}

/// The card's keys.
pub fn keys(store: &Store, card_ref: &str) -> Result<Vec<KeyInfo>> {
    let (dir, _) = super::find(store, card_ref)?;
    dir.check_private()?;
    let mut out = Vec::new();
    for name in dir.list("obj-")? {
        let o = load(&dir, &name)?;
        if o.class() == CKO_PRIVATE_KEY {
            let kind = match o.public_key()? {
                PublicKey::Rsa { modulus, .. } => format!("rsa{}", modulus.len() * 8),
                PublicKey::Ecc { bits, .. } => format!("ec-p{bits}"),
            };
            out.push(KeyInfo {
                label: label_of(&o),
                id: hex::encode(o.attrs.get(&CKA_ID).cloned().unwrap_or_default()),
                kind,
            });
        }
    }
    Ok(out)
}

/// A PKCS#10 certificate request for the key labelled `key_label` (or with that CKA_ID
/// in hex), signed inside the TPM: PEM text.
pub fn csr(
    store: &Store,
    card_ref: &str,
    pin: &[u8],
    key_label: &str,
    subject: &str,
    sans: &[String],
) -> Result<String> {
    check_request(subject, sans)?;
    let card = open_card(store, card_ref)?;
    let key = find_private_key(&card, key_label)?;
    let public = key.public_key()?;
    let subject = Name::from_str(subject).map_err(|e| {
        Error::Usage(format!(
            "the subject {} is not a distinguished name like \"CN=name,O=org\": {e}",
            Quoted(subject)
        ))
    })?;
    let mut attributes = SetOfVec::new();
    if !sans.is_empty() {
        use x509_cert::ext::AsExtension;
        let names = sans
            .iter()
            .map(|s| general_name(s))
            .collect::<Result<Vec<_>>>()?;
        let ext = SubjectAltName(names)
            .to_extension(&subject, &[])
            .map_err(der_err)?;
        let attr =
            x509_cert::attr::Attribute::try_from(ExtensionReq(vec![ext])).map_err(der_err)?;
        attributes.insert(attr).map_err(der_err)?;
    }
    let info = CertReqInfo {
        version: x509_cert::request::Version::V1,
        subject,
        public_key: spki(&public)?,
        attributes,
    };
    let tbs = info.to_der().map_err(der_err)?;
    let (algorithm, signature) = sign_inside(&card, pin, &key, &public, &tbs)?;
    let req = CertReq {
        info,
        algorithm,
        signature: BitString::from_bytes(&signature).map_err(der_err)?,
    };
    req.to_pem(der::pem::LineEnding::LF).map_err(der_err)
}

/// Installs a certificate (PEM or DER) on the card next to the key whose public key it
/// carries: same CKA_ID and label. A certificate for no key on the card is refused.
pub(crate) fn import_cert(store: &Store, card_ref: &str, data: &[u8]) -> Result<CertInfo> {
    let der = cert_der(data)?;
    let card = open_card(store, card_ref)?;
    let cert = x509_cert::Certificate::from_der(&der).map_err(|_| {
        Error::NotACertificate("the file holds no X.509 certificate (PEM or DER)".into())
    })?;
    let cert_spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(der_err)?;
    let all = records(&card)?;
    let key = all
        .iter()
        .filter(|(_, o)| o.class() == CKO_PRIVATE_KEY)
        .find(|(_, o)| {
            o.public_key()
                .and_then(|k| spki(&k))
                .and_then(|s| s.to_der().map_err(der_err))
                .is_ok_and(|s| s == cert_spki)
        })
        .map(|(_, o)| o.clone())
        .ok_or_else(|| {
            Error::KeyNotFound(
                "the certificate's public key belongs to no key on this card (see `tpmvsc keys`)"
                    .into(),
            )
        })?;
    if all
        .iter()
        .any(|(_, o)| o.class() == CKO_CERTIFICATE && o.attrs.get(&CKA_VALUE) == Some(&der))
    {
        return Err(Error::ObjectExists(
            "this certificate is on the card already".into(),
        ));
    }
    let mut template = object::Attrs::new();
    template.insert(CKA_VALUE, der.clone());
    template.insert(CKA_TOKEN, object::boolean(true));
    template.insert(CKA_ID, key.attrs.get(&CKA_ID).cloned().unwrap_or_default());
    template.insert(
        CKA_LABEL,
        key.attrs.get(&CKA_LABEL).cloned().unwrap_or_default(),
    );
    let attrs = object::certificate_attrs(&template)?;
    let certs = all
        .iter()
        .filter(|(_, o)| o.class() == CKO_CERTIFICATE)
        .count();
    if certs >= object::MAX_CERTS {
        return Err(Error::from(CallError::CardFull(
            "the card holds 90 certificates, the most it can",
        )));
    }
    let obj = Object {
        attrs,
        blob: None,
        file: None,
        read_only: false,
    };
    let info = cert_info(&obj, true)?;
    write_object(&card, obj)?;
    Ok(info)
}

/// The card's certificates.
pub fn certs(store: &Store, card_ref: &str) -> Result<Vec<CertInfo>> {
    let (dir, _) = super::find(store, card_ref)?;
    dir.check_private()?;
    let objects: Vec<Object> = dir
        .list("obj-")?
        .iter()
        .map(|n| load(&dir, n))
        .collect::<Result<_>>()?;
    let key_ids: Vec<Vec<u8>> = objects
        .iter()
        .filter(|o| o.class() == CKO_PRIVATE_KEY)
        .filter_map(|o| o.attrs.get(&CKA_ID).cloned())
        .collect();
    objects
        .iter()
        .filter(|o| o.class() == CKO_CERTIFICATE)
        .map(|o| {
            cert_info(
                o,
                o.attrs.get(&CKA_ID).is_some_and(|id| key_ids.contains(id)),
            )
        })
        .collect()
}

// ----- helpers -----

fn der_err(e: der::Error) -> Error {
    Error::Usage(format!("encoding: {e}"))
}

fn label_of(o: &Object) -> String {
    String::from_utf8_lossy(
        o.attrs
            .get(&CKA_LABEL)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )
    .into_owned()
}

fn load(dir: &crate::store::CardDir, name: &str) -> Result<Object> {
    let rec: ObjectRecord = dir.read(name)?;
    Ok(Object {
        attrs: rec.to_attrs()?,
        blob: rec.blob,
        file: Some(name.to_string()),
        read_only: false,
    })
}

fn records(card: &OpenCard) -> Result<Vec<(String, Object)>> {
    card.dir
        .list("obj-")?
        .into_iter()
        .map(|n| load(&card.dir, &n).map(|o| (n, o)))
        .collect()
}

fn write_object(card: &OpenCard, mut obj: Object) -> Result<()> {
    let name = format!("obj-{}.json", uuid::Uuid::new_v4().simple());
    obj.file = Some(name.clone());
    card.dir
        .write(&name, &ObjectRecord::from_object(&obj), true)
}

fn find_private_key(card: &OpenCard, wanted: &str) -> Result<Object> {
    records(card)?
        .into_iter()
        .map(|(_, o)| o)
        .filter(|o| o.class() == CKO_PRIVATE_KEY)
        .find(|o| {
            label_of(o) == wanted
                || o.attrs
                    .get(&CKA_ID)
                    .is_some_and(|id| hex::encode(id) == wanted.to_lowercase())
        })
        .ok_or_else(|| {
            Error::KeyNotFound(format!(
                "no key labelled {} on this card (see `tpmvsc keys`)",
                Quoted(wanted)
            ))
        })
}

/// Longest key label `keygen` gives (labels are shown in lists and dialogs; clients'
/// own labels through PKCS#11 are kept as they come).
const MAX_LABEL: usize = 128;

fn new_label_ok(card: &OpenCard, label: &str) -> Result<()> {
    if label.is_empty() {
        return Err(empty_label());
    }
    if label.len() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(Error::Usage(format!(
            "the key label is {} bytes long or has control characters; a label is at most \
             {MAX_LABEL} bytes of text",
            label.len()
        )));
    }
    if find_private_key(card, label).is_ok() {
        return Err(Error::ObjectExists(format!(
            "the card has a key labelled {} already; choose another label",
            Quoted(label)
        )));
    }
    Ok(())
}

fn empty_label() -> Error {
    Error::Usage("the key label is empty; give --label a name".into())
}

/// Longest subject text a request takes (RFC 5280's upper bounds keep real ones far
/// below this).
const MAX_SUBJECT: usize = 1024;
/// Longest subject alternative name: a DNS name has at most 253 characters, an email
/// address 320.
const MAX_SAN: usize = 320;

/// Bounds on what a request says, checked before anything else (the PIN, the card).
pub(crate) fn check_request(subject: &str, sans: &[String]) -> Result<()> {
    if subject.trim().is_empty() {
        return Err(Error::Usage(
            "the subject is empty: give a distinguished name like \"CN=name,O=org\"".into(),
        ));
    }
    if subject.len() > MAX_SUBJECT {
        return Err(Error::Usage(format!(
            "the subject is {} bytes long; at most {MAX_SUBJECT} (a CA accepts far less)",
            subject.len()
        )));
    }
    if let Some(long) = sans.iter().find(|s| s.len() > MAX_SAN + 6) {
        return Err(Error::Usage(format!(
            "a subject alternative name is at most {MAX_SAN} characters; this one is {}",
            long.len()
        )));
    }
    for s in sans {
        general_name(s)?;
    }
    Ok(())
}

fn general_name(s: &str) -> Result<GeneralName> {
    let (kind, value) = s.split_once(':').ok_or_else(|| {
        Error::Usage(format!(
            "a subject alternative name is dns:NAME or email:ADDRESS, not {}",
            Quoted(s)
        ))
    })?;
    let v = Ia5String::new(value)
        .map_err(|_| Error::Usage(format!("{} is not ASCII", Quoted(value))))?;
    match kind {
        "dns" | "DNS" => Ok(GeneralName::DnsName(v)),
        "email" | "EMAIL" => Ok(GeneralName::Rfc822Name(v)),
        _ => Err(Error::Usage(format!(
            "unknown name kind {}: use dns: or email:",
            Quoted(kind)
        ))),
    }
}

/// SubjectPublicKeyInfo of a card key.
fn spki(key: &PublicKey) -> Result<SubjectPublicKeyInfoOwned> {
    use p256::pkcs8::EncodePublicKey as _;
    let der = match key {
        PublicKey::Rsa { modulus, exponent } => {
            let k = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(modulus),
                rsa::BigUint::from_bytes_be(exponent),
            )
            .map_err(|_| Error::KeyTypeInconsistent)?;
            rsa::pkcs8::EncodePublicKey::to_public_key_der(&k)
                .map_err(|_| Error::KeyTypeInconsistent)?
                .into_vec()
        }
        PublicKey::Ecc { bits, x, y } => {
            let point = [&[0x04][..], x, y].concat();
            match bits {
                256 => p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| Error::KeyTypeInconsistent)?
                    .to_public_key_der()
                    .map_err(|_| Error::KeyTypeInconsistent)?
                    .into_vec(),
                _ => p384::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| Error::KeyTypeInconsistent)?
                    .to_public_key_der()
                    .map_err(|_| Error::KeyTypeInconsistent)?
                    .into_vec(),
            }
        }
    };
    SubjectPublicKeyInfoOwned::from_der(&der).map_err(der_err)
}

/// Signs `tbs` with the card key inside the TPM (PIN counted): the signature algorithm
/// and the signature bytes of an X.509 structure.
fn sign_inside(
    card: &OpenCard,
    pin: &[u8],
    key: &Object,
    public: &PublicKey,
    tbs: &[u8],
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>)> {
    let blob: Blob = key
        .blob
        .clone()
        .ok_or_else(|| Error::from(CallError::KeyHandleInvalid("not a TPM key")))?;
    let keys = card.keys()?;
    let auth = card.pin_auth(pin);
    // The same mechanisms a PKCS#11 client would use: ECDSA with SHA-256 (P-256) or
    // SHA-384 (P-384), RSA PKCS#1 v1.5 with SHA-256.
    let (mech, oid, parameters) = match public {
        PublicKey::Ecc { bits: 256, .. } => (
            Mech::HashEcdsa(HashAlg::Sha256),
            "1.2.840.10045.4.3.2",
            None,
        ),
        PublicKey::Ecc { .. } => (
            Mech::HashEcdsa(HashAlg::Sha384),
            "1.2.840.10045.4.3.3",
            None,
        ),
        PublicKey::Rsa { .. } => (
            Mech::HashRsaPkcs(HashAlg::Sha256),
            "1.2.840.113549.1.1.11",
            Some(der::asn1::Null.into()),
        ),
    };
    let hash = mech.data_hash().unwrap_or(HashAlg::Sha256);
    let digest = mechanism::digest::digest(hash, tbs);
    let sig = mechanism::sign(&mech, public, &digest, |step| {
        card.attempt(Counter::Pin, &OwnTpm::new(), |t| {
            let k = t.load_user_key(keys.csk_ref(), &auth, &blob)?;
            match step {
                PrivateStep::Ecdsa { digest } => t
                    .sign_ecdsa(k, digest)
                    .map(|(r, s)| PrivateResult::Ecdsa { r, s }),
                PrivateStep::RsaRaw { em } => t
                    .rsa_raw(k, em, false)
                    .map(|v| PrivateResult::Rsa(v.to_vec())),
            }
        })
    })?;
    // X.509 carries ECDSA signatures DER-encoded, not as r ‖ s.
    let signature = match public {
        PublicKey::Ecc { bits: 256, .. } => p256::ecdsa::Signature::from_slice(&sig)
            .map_err(|_| Error::SignatureInvalid)?
            .to_der()
            .as_bytes()
            .to_vec(),
        PublicKey::Ecc { .. } => p384::ecdsa::Signature::from_slice(&sig)
            .map_err(|_| Error::SignatureInvalid)?
            .to_der()
            .as_bytes()
            .to_vec(),
        PublicKey::Rsa { .. } => sig,
    };
    let alg = AlgorithmIdentifierOwned {
        oid: der::asn1::ObjectIdentifier::new_unwrap(oid),
        parameters,
    };
    Ok((alg, signature))
}

fn cert_der(data: &[u8]) -> Result<Vec<u8>> {
    if data.is_empty() {
        return Err(Error::NotACertificate(
            "the certificate is empty: the input has no bytes".into(),
        ));
    }
    let text = String::from_utf8_lossy(data);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        use der::DecodePem;
        let c = x509_cert::Certificate::from_pem(text.as_bytes()).map_err(|_| {
            Error::NotACertificate("the PEM file holds no readable certificate".into())
        })?;
        return c.to_der().map_err(der_err);
    }
    Ok(data.to_vec())
}

fn cert_info(o: &Object, has_key: bool) -> Result<CertInfo> {
    let der = o.attrs.get(&CKA_VALUE).cloned().unwrap_or_default();
    let c = x509_cert::Certificate::from_der(&der)
        .map_err(|_| Error::corrupt(o.file.clone().unwrap_or_default(), "certificate"))?;
    Ok(CertInfo {
        label: label_of(o),
        id: hex::encode(o.attrs.get(&CKA_ID).cloned().unwrap_or_default()),
        subject: c.tbs_certificate.subject.to_string(),
        issuer: c.tbs_certificate.issuer.to_string(),
        not_after: c.tbs_certificate.validity.not_after.to_string(),
        has_key,
    })
}
