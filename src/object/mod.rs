//! PKCS#11 objects of a card (DESIGN.md §5): key pairs whose private half is a TPM blob,
//! X.509 certificates, data objects and the PKCS#11 3.0 profile objects; their
//! attributes in PKCS#11 encoding, who may read what, and how token objects are kept
//! in the card's directory. No TPM calls and no raw pointers here.

use std::collections::BTreeMap;

use cryptoki_sys::*;
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};

use crate::error::{CallError, Error, Result};
use crate::mechanism::ec::{Curve, point_to_der};
use crate::tpm::{Blob, PublicKey};

/// Attributes in their PKCS#11 byte encoding (CK_ULONG native-endian, CK_BBOOL one byte).
pub(crate) type Attrs = BTreeMap<CK_ATTRIBUTE_TYPE, Vec<u8>>;

/// Most private keys a card holds (Windows: 30 keys).
pub(crate) const MAX_KEYS: usize = 30;
/// Most certificates a card holds (Windows: 90).
pub(crate) const MAX_CERTS: usize = 90;

/// CK_ULONG attribute value.
pub(crate) fn ulong(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// CK_BBOOL attribute value.
pub(crate) fn boolean(v: bool) -> Vec<u8> {
    vec![u8::from(v)]
}

/// Reads a CK_ULONG attribute (None when absent or of the wrong size).
pub(crate) fn get_ulong(a: &Attrs, t: CK_ATTRIBUTE_TYPE) -> Option<CK_ULONG> {
    let v = a.get(&t)?;
    let arr: [u8; 8] = v.as_slice().try_into().ok()?;
    Some(CK_ULONG::from_ne_bytes(arr))
}

/// Reads a CK_BBOOL attribute.
pub(crate) fn get_bool(a: &Attrs, t: CK_ATTRIBUTE_TYPE) -> Option<bool> {
    match a.get(&t)?.as_slice() {
        [b] => Some(*b != 0),
        _ => None,
    }
}

/// A template's CK_BBOOL, refusing a value of the wrong size.
pub(crate) fn template_bool(t: &Attrs, a: CK_ATTRIBUTE_TYPE) -> Result<Option<bool>> {
    match t.get(&a) {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v[0] != 0)),
        Some(_) => Err(Error::from(CallError::AttributeValueInvalid(
            "a CK_BBOOL attribute is one byte",
        ))),
    }
}

/// A template's CK_ULONG, refusing a value of the wrong size.
pub(crate) fn template_ulong(t: &Attrs, a: CK_ATTRIBUTE_TYPE) -> Result<Option<CK_ULONG>> {
    match t.get(&a) {
        None => Ok(None),
        Some(v) => v
            .as_slice()
            .try_into()
            .map(|b: [u8; 8]| Some(CK_ULONG::from_ne_bytes(b)))
            .map_err(|_| {
                Error::from(CallError::AttributeValueInvalid(
                    "a CK_ULONG attribute is 8 bytes",
                ))
            }),
    }
}

/// Refuses a template whose CK_BBOOL or CK_ULONG attributes have the wrong size
/// (CKR_ATTRIBUTE_VALUE_INVALID), before anything is created or changed.
pub(crate) fn check_template(t: &Attrs) -> Result<()> {
    const BOOLS: &[CK_ATTRIBUTE_TYPE] = &[
        CKA_TOKEN,
        CKA_PRIVATE,
        CKA_MODIFIABLE,
        CKA_COPYABLE,
        CKA_DESTROYABLE,
        CKA_SENSITIVE,
        CKA_EXTRACTABLE,
        CKA_SIGN,
        CKA_VERIFY,
        CKA_DECRYPT,
        CKA_ENCRYPT,
        CKA_DERIVE,
        CKA_WRAP,
        CKA_UNWRAP,
        CKA_SIGN_RECOVER,
        CKA_VERIFY_RECOVER,
        CKA_ALWAYS_AUTHENTICATE,
        CKA_TRUSTED,
        CKA_WRAP_WITH_TRUSTED,
        CKA_LOCAL,
        CKA_ALWAYS_SENSITIVE,
        CKA_NEVER_EXTRACTABLE,
    ];
    const ULONGS: &[CK_ATTRIBUTE_TYPE] = &[
        CKA_CLASS,
        CKA_KEY_TYPE,
        CKA_CERTIFICATE_TYPE,
        CKA_MODULUS_BITS,
        CKA_VALUE_LEN,
        CKA_CERTIFICATE_CATEGORY,
        CKA_KEY_GEN_MECHANISM,
    ];
    for (a, v) in t {
        if BOOLS.contains(a) && v.len() != 1 {
            return Err(Error::from(CallError::AttributeValueInvalid(
                "a CK_BBOOL attribute is one byte",
            )));
        }
        if ULONGS.contains(a) && v.len() != std::mem::size_of::<CK_ULONG>() {
            return Err(Error::from(CallError::AttributeValueInvalid(
                "a CK_ULONG attribute is 8 bytes",
            )));
        }
    }
    Ok(())
}

/// One object in the module.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    pub attrs: Attrs,
    /// The TPM blob of a private key.
    pub blob: Option<Blob>,
    /// File name in the card directory for token objects.
    pub file: Option<String>,
    /// Virtual objects (profiles) cannot be changed or destroyed.
    pub read_only: bool,
}

impl Object {
    pub(crate) fn class(&self) -> CK_OBJECT_CLASS {
        get_ulong(&self.attrs, CKA_CLASS).unwrap_or(CK_UNAVAILABLE_INFORMATION)
    }

    pub(crate) fn is_token(&self) -> bool {
        get_bool(&self.attrs, CKA_TOKEN).unwrap_or(false)
    }

    pub(crate) fn is_private(&self) -> bool {
        get_bool(&self.attrs, CKA_PRIVATE).unwrap_or(false)
    }

    pub(crate) fn key_type(&self) -> Option<CK_KEY_TYPE> {
        get_ulong(&self.attrs, CKA_KEY_TYPE)
    }

    /// True when every attribute of the template has the same value here.
    pub(crate) fn matches(&self, template: &Attrs) -> bool {
        template.iter().all(|(t, v)| self.attrs.get(t) == Some(v))
    }

    /// A usage flag (CKA_SIGN, CKA_DECRYPT, ...), false when absent.
    pub(crate) fn allows(&self, usage: CK_ATTRIBUTE_TYPE) -> bool {
        get_bool(&self.attrs, usage).unwrap_or(false)
    }

    /// Whether reading `t` must be refused (CKR_ATTRIBUTE_SENSITIVE).
    pub(crate) fn is_sensitive(&self, t: CK_ATTRIBUTE_TYPE) -> bool {
        self.class() == CKO_PRIVATE_KEY
            && matches!(
                t,
                CKA_VALUE
                    | CKA_PRIVATE_EXPONENT
                    | CKA_PRIME_1
                    | CKA_PRIME_2
                    | CKA_EXPONENT_1
                    | CKA_EXPONENT_2
                    | CKA_COEFFICIENT
            )
    }

    /// The public key of a key object, from its attributes.
    pub(crate) fn public_key(&self) -> Result<PublicKey> {
        match self.key_type() {
            Some(CKK_RSA) => Ok(PublicKey::Rsa {
                modulus: self.attrs.get(&CKA_MODULUS).cloned().unwrap_or_default(),
                exponent: self
                    .attrs
                    .get(&CKA_PUBLIC_EXPONENT)
                    .cloned()
                    .unwrap_or_default(),
            }),
            Some(CKK_EC) => {
                let params = self.attrs.get(&CKA_EC_PARAMS).cloned().unwrap_or_default();
                let curve = Curve::from_params_der(&params).ok_or(Error::KeyTypeInconsistent)?;
                let der = self.attrs.get(&CKA_EC_POINT).cloned().unwrap_or_default();
                let point = crate::mechanism::ec::point_from_der_or_raw(curve, &der)?;
                let n = curve.field_len();
                let bits = if curve == Curve::P256 { 256 } else { 384 };
                Ok(PublicKey::Ecc {
                    bits,
                    x: point[1..1 + n].to_vec(),
                    y: point[1 + n..].to_vec(),
                })
            }
            _ => Err(Error::KeyTypeInconsistent),
        }
    }
}

/// Attributes a client may set on a new key pair, beyond the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyPairRequest {
    pub id: Option<Vec<u8>>,
    pub label: Option<Vec<u8>>,
    pub token: bool,
    pub private_usage: Attrs,
    pub public_usage: Attrs,
    pub subject: Option<Vec<u8>>,
}

/// The two objects of a key pair made in the TPM. CKA_ID defaults to the SHA-1 of the
/// modulus or of the uncompressed EC point, what NSS computes to pair a certificate with
/// its key (DESIGN.md §5).
pub(crate) fn key_pair_objects(
    key: &PublicKey,
    mechanism: CK_MECHANISM_TYPE,
    req: &KeyPairRequest,
) -> (Attrs, Attrs) {
    let mut common = Attrs::new();
    let (key_type, id_source) = match key {
        PublicKey::Rsa { modulus, exponent } => {
            common.insert(CKA_MODULUS, modulus.clone());
            common.insert(CKA_PUBLIC_EXPONENT, exponent.clone());
            (CKK_RSA, modulus.clone())
        }
        PublicKey::Ecc { bits, x, y } => {
            let curve = if *bits == 256 {
                Curve::P256
            } else {
                Curve::P384
            };
            let mut point = vec![0x04];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            common.insert(CKA_EC_PARAMS, curve.params_der());
            common.insert(CKA_EC_POINT, point_to_der(&point));
            (CKK_EC, point)
        }
    };
    let id = req
        .id
        .clone()
        .unwrap_or_else(|| Sha1::digest(&id_source).to_vec());
    common.insert(CKA_KEY_TYPE, ulong(key_type));
    common.insert(CKA_ID, id);
    common.insert(CKA_LABEL, req.label.clone().unwrap_or_default());
    common.insert(CKA_TOKEN, boolean(req.token));
    common.insert(CKA_MODIFIABLE, boolean(true));
    common.insert(CKA_COPYABLE, boolean(false));
    common.insert(CKA_DESTROYABLE, boolean(true));
    common.insert(CKA_LOCAL, boolean(true));
    common.insert(CKA_KEY_GEN_MECHANISM, ulong(mechanism));
    common.insert(CKA_START_DATE, Vec::new());
    common.insert(CKA_END_DATE, Vec::new());
    common.insert(CKA_SUBJECT, req.subject.clone().unwrap_or_default());
    if let PublicKey::Rsa { modulus, .. } = key {
        common.insert(CKA_MODULUS_BITS, ulong((modulus.len() * 8) as CK_ULONG));
    }
    let is_ec = key_type == CKK_EC;

    let mut public = common.clone();
    public.insert(CKA_CLASS, ulong(CKO_PUBLIC_KEY));
    public.insert(CKA_PRIVATE, boolean(false));
    public.insert(CKA_VERIFY, boolean(true));
    public.insert(CKA_ENCRYPT, boolean(!is_ec));
    public.insert(CKA_VERIFY_RECOVER, boolean(false));
    public.insert(CKA_WRAP, boolean(false));
    public.insert(CKA_DERIVE, boolean(false));
    public.insert(CKA_TRUSTED, boolean(false));
    for (t, v) in &req.public_usage {
        public.insert(*t, v.clone());
    }

    let mut private = common;
    private.insert(CKA_CLASS, ulong(CKO_PRIVATE_KEY));
    private.insert(CKA_PRIVATE, boolean(true));
    private.insert(CKA_SENSITIVE, boolean(true));
    private.insert(CKA_ALWAYS_SENSITIVE, boolean(true));
    private.insert(CKA_EXTRACTABLE, boolean(false));
    private.insert(CKA_NEVER_EXTRACTABLE, boolean(true));
    private.insert(CKA_SIGN, boolean(true));
    private.insert(CKA_DECRYPT, boolean(!is_ec));
    private.insert(CKA_DERIVE, boolean(is_ec));
    private.insert(CKA_SIGN_RECOVER, boolean(false));
    private.insert(CKA_UNWRAP, boolean(false));
    private.insert(CKA_ALWAYS_AUTHENTICATE, boolean(false));
    private.insert(CKA_WRAP_WITH_TRUSTED, boolean(false));
    for (t, v) in &req.private_usage {
        private.insert(*t, v.clone());
    }
    (public, private)
}

/// Attributes of an X.509 certificate object from its DER and the client's template:
/// subject, issuer and serial number are parsed from the certificate.
pub(crate) fn certificate_attrs(template: &Attrs) -> Result<Attrs> {
    use der::{Decode, Encode};
    let cert_type = template_ulong(template, CKA_CERTIFICATE_TYPE)?.unwrap_or(CKC_X_509);
    if cert_type != CKC_X_509 {
        return Err(Error::from(CallError::AttributeValueInvalid(
            "only X.509 certificates are kept",
        )));
    }
    let value = template.get(&CKA_VALUE).ok_or_else(|| {
        Error::from(CallError::TemplateIncomplete(
            "a certificate needs CKA_VALUE (its DER)",
        ))
    })?;
    let cert = x509_cert::Certificate::from_der(value).map_err(|_| {
        Error::from(CallError::AttributeValueInvalid(
            "CKA_VALUE is not a DER X.509 certificate",
        ))
    })?;
    let tbs = &cert.tbs_certificate;
    let enc = |r: der::Result<Vec<u8>>| {
        r.map_err(|_| Error::from(CallError::AttributeValueInvalid("certificate field")))
    };
    let mut a = Attrs::new();
    a.insert(CKA_CLASS, ulong(CKO_CERTIFICATE));
    a.insert(CKA_CERTIFICATE_TYPE, ulong(CKC_X_509));
    a.insert(CKA_TOKEN, boolean(false));
    a.insert(CKA_PRIVATE, boolean(false));
    a.insert(CKA_MODIFIABLE, boolean(true));
    a.insert(CKA_COPYABLE, boolean(true));
    a.insert(CKA_DESTROYABLE, boolean(true));
    a.insert(CKA_TRUSTED, boolean(false));
    a.insert(CKA_CERTIFICATE_CATEGORY, ulong(0));
    a.insert(CKA_LABEL, Vec::new());
    a.insert(CKA_ID, Vec::new());
    a.insert(CKA_SUBJECT, enc(tbs.subject.to_der())?);
    a.insert(CKA_ISSUER, enc(tbs.issuer.to_der())?);
    a.insert(CKA_SERIAL_NUMBER, enc(tbs.serial_number.to_der())?);
    a.insert(CKA_VALUE, value.clone());
    a.insert(CKA_START_DATE, Vec::new());
    a.insert(CKA_END_DATE, Vec::new());
    a.insert(CKA_URL, Vec::new());
    a.insert(CKA_HASH_OF_SUBJECT_PUBLIC_KEY, Vec::new());
    a.insert(CKA_HASH_OF_ISSUER_PUBLIC_KEY, Vec::new());
    a.insert(CKA_CHECK_VALUE, Sha1::digest(value)[..3].to_vec());
    a.insert(CKA_JAVA_MIDP_SECURITY_DOMAIN, ulong(0));
    a.insert(CKA_NAME_HASH_ALGORITHM, ulong(CKM_SHA_1));
    a.insert(
        CKA_PUBLIC_KEY_INFO,
        enc(tbs.subject_public_key_info.to_der())?,
    );
    for (t, v) in template {
        if CERT_DERIVED.contains(t) {
            if a.get(t) != Some(v) {
                return Err(Error::from(CallError::TemplateInconsistent(
                    "CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_CHECK_VALUE and \
                     CKA_PUBLIC_KEY_INFO must be those of the certificate in CKA_VALUE",
                )));
            }
        } else if CERT_SETTABLE.contains(t) {
            check_certificate_attr(*t, v)?;
            a.insert(*t, v.clone());
        } else if *t >= CKA_VENDOR_DEFINED {
            // A vendor's attribute (NSS has some): kept as given, this module reads none.
            a.insert(*t, v.clone());
        } else {
            return Err(Error::from(CallError::AttributeTypeInvalid(
                "not an attribute of an X.509 certificate",
            )));
        }
    }
    Ok(a)
}

/// Certificate attributes that follow from CKA_VALUE: a template may repeat them, not
/// contradict them.
const CERT_DERIVED: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_CERTIFICATE_TYPE,
    CKA_VALUE,
    CKA_SUBJECT,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_CHECK_VALUE,
    CKA_PUBLIC_KEY_INFO,
];

/// Certificate attributes a template sets (PKCS#11 3.0 §4.4, §4.6.3).
const CERT_SETTABLE: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_LABEL,
    CKA_ID,
    CKA_TRUSTED,
    CKA_CERTIFICATE_CATEGORY,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_URL,
    CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY,
    CKA_JAVA_MIDP_SECURITY_DOMAIN,
    CKA_NAME_HASH_ALGORITHM,
];

/// The attributes of an X.509 certificate a template sets (PKCS#11 3.0 §4.6) hold what
/// it says, if it has their form: a CK_DATE is empty or eight ASCII digits (YYYYMMDD), a
/// hash at most 64 bytes, a URL at most 2048 bytes, the security domain and the category
/// 0 to 3, CKA_TRUSTED false.
fn check_certificate_attr(t: CK_ATTRIBUTE_TYPE, v: &[u8]) -> Result<()> {
    let small = |max: CK_ULONG| {
        v.len() == std::mem::size_of::<CK_ULONG>()
            && CK_ULONG::from_ne_bytes(v.try_into().unwrap_or_default()) <= max
    };
    if t == CKA_TRUSTED && v != [CK_FALSE] {
        // PKCS#11 3.0 §4.6.1: only the security officer's token initialization may.
        return Err(Error::from(CallError::AttributeReadOnly(
            "a certificate cannot be created trusted (CKA_TRUSTED is the SO's to set)",
        )));
    }
    let ok = match t {
        CKA_START_DATE | CKA_END_DATE => {
            v.is_empty() || (v.len() == 8 && v.iter().all(u8::is_ascii_digit))
        }
        CKA_HASH_OF_SUBJECT_PUBLIC_KEY | CKA_HASH_OF_ISSUER_PUBLIC_KEY => v.len() <= 64,
        CKA_URL => v.len() <= 2048,
        CKA_JAVA_MIDP_SECURITY_DOMAIN | CKA_CERTIFICATE_CATEGORY => small(3),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::from(CallError::AttributeValueInvalid(
            "a certificate attribute of the wrong form (a date is YYYYMMDD, a hash at most \
             64 bytes, a URL at most 2048, the security domain and the category 0 to 3)",
        )))
    }
}

/// Attributes of a data object from the client's template.
pub(crate) fn data_attrs(template: &Attrs) -> Result<Attrs> {
    let mut a = Attrs::new();
    a.insert(CKA_CLASS, ulong(CKO_DATA));
    a.insert(CKA_TOKEN, boolean(false));
    a.insert(CKA_PRIVATE, boolean(false));
    a.insert(CKA_MODIFIABLE, boolean(true));
    a.insert(CKA_COPYABLE, boolean(true));
    a.insert(CKA_DESTROYABLE, boolean(true));
    a.insert(CKA_LABEL, Vec::new());
    a.insert(CKA_APPLICATION, Vec::new());
    a.insert(CKA_OBJECT_ID, Vec::new());
    a.insert(CKA_VALUE, Vec::new());
    for t in [
        CKA_TOKEN,
        CKA_PRIVATE,
        CKA_LABEL,
        CKA_APPLICATION,
        CKA_OBJECT_ID,
        CKA_VALUE,
        CKA_MODIFIABLE,
    ] {
        if let Some(v) = template.get(&t) {
            a.insert(t, v.clone());
        }
    }
    Ok(a)
}

/// Attributes of a public key object a client brings (C_CreateObject), for verifying
/// and encrypting on the host.
pub(crate) fn public_key_attrs(template: &Attrs) -> Result<Attrs> {
    let key_type = template_ulong(template, CKA_KEY_TYPE)?.ok_or_else(|| {
        Error::from(CallError::TemplateIncomplete(
            "a public key needs CKA_KEY_TYPE",
        ))
    })?;
    let key = match key_type {
        CKK_RSA => PublicKey::Rsa {
            modulus: template
                .get(&CKA_MODULUS)
                .cloned()
                .ok_or_else(|| Error::from(CallError::TemplateIncomplete("CKA_MODULUS")))?,
            exponent: template
                .get(&CKA_PUBLIC_EXPONENT)
                .cloned()
                .ok_or_else(|| Error::from(CallError::TemplateIncomplete("CKA_PUBLIC_EXPONENT")))?,
        },
        CKK_EC => {
            let params = template
                .get(&CKA_EC_PARAMS)
                .ok_or_else(|| Error::from(CallError::TemplateIncomplete("CKA_EC_PARAMS")))?;
            let curve = Curve::from_params_der(params).ok_or_else(|| {
                Error::from(CallError::AttributeValueInvalid(
                    "only P-256 and P-384 are supported",
                ))
            })?;
            let point = template
                .get(&CKA_EC_POINT)
                .ok_or_else(|| Error::from(CallError::TemplateIncomplete("CKA_EC_POINT")))?;
            let p = crate::mechanism::ec::point_from_der_or_raw(curve, point)
                .map_err(|_| Error::from(CallError::AttributeValueInvalid("CKA_EC_POINT")))?;
            let n = curve.field_len();
            PublicKey::Ecc {
                bits: if curve == Curve::P256 { 256 } else { 384 },
                x: p[1..1 + n].to_vec(),
                y: p[1 + n..].to_vec(),
            }
        }
        _ => {
            return Err(Error::from(CallError::AttributeValueInvalid(
                "only RSA and EC public keys",
            )));
        }
    };
    let req = KeyPairRequest {
        id: template.get(&CKA_ID).cloned(),
        label: template.get(&CKA_LABEL).cloned(),
        token: template_bool(template, CKA_TOKEN)?.unwrap_or(false),
        ..Default::default()
    };
    let (mut public, _) = key_pair_objects(&key, CK_UNAVAILABLE_INFORMATION, &req);
    public.insert(CKA_LOCAL, boolean(false));
    for t in [
        CKA_VERIFY,
        CKA_ENCRYPT,
        CKA_PRIVATE,
        CKA_SUBJECT,
        CKA_MODIFIABLE,
    ] {
        if let Some(v) = template.get(&t) {
            public.insert(t, v.clone());
        }
    }
    Ok(public)
}

/// The PKCS#11 3.0 profile objects every token carries (public, read-only).
pub(crate) fn profile_objects() -> Vec<Attrs> {
    [CKP_AUTHENTICATION_TOKEN, CKP_PUBLIC_CERTIFICATES_TOKEN]
        .into_iter()
        .map(|p| {
            let mut a = Attrs::new();
            a.insert(CKA_CLASS, ulong(CKO_PROFILE));
            a.insert(CKA_PROFILE_ID, ulong(p));
            a.insert(CKA_TOKEN, boolean(true));
            a.insert(CKA_PRIVATE, boolean(false));
            a.insert(CKA_MODIFIABLE, boolean(false));
            a.insert(CKA_COPYABLE, boolean(false));
            a.insert(CKA_DESTROYABLE, boolean(false));
            a.insert(CKA_LABEL, Vec::new());
            a
        })
        .collect()
}

/// A token object as it is kept in the card's directory (`obj-<uuid>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectRecord {
    /// Attribute type (hex) → value (hex).
    pub attrs: BTreeMap<String, String>,
    #[serde(default)]
    pub blob: Option<Blob>,
}

impl ObjectRecord {
    pub(crate) fn from_object(o: &Object) -> ObjectRecord {
        ObjectRecord {
            attrs: o
                .attrs
                .iter()
                .map(|(t, v)| (format!("{t:x}"), hex::encode(v)))
                .collect(),
            blob: o.blob.clone(),
        }
    }

    pub(crate) fn to_attrs(&self) -> Result<Attrs> {
        let mut a = Attrs::new();
        for (t, v) in &self.attrs {
            let t = CK_ATTRIBUTE_TYPE::from_str_radix(t, 16).map_err(|_| {
                Error::from(CallError::DamagedObject("object file: bad attribute type"))
            })?;
            let v = hex::decode(v).map_err(|_| {
                Error::from(CallError::DamagedObject("object file: bad attribute value"))
            })?;
            a.insert(t, v);
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_key_pairs_carry_der_params_and_an_octet_string_point() {
        let key = PublicKey::Ecc {
            bits: 256,
            x: vec![1; 32],
            y: vec![2; 32],
        };
        let (public, private) =
            key_pair_objects(&key, CKM_EC_KEY_PAIR_GEN, &KeyPairRequest::default());
        let point = public.get(&CKA_EC_POINT).unwrap();
        assert_eq!(&point[..3], &[0x04, 0x41, 0x04]);
        assert_eq!(
            public.get(&CKA_EC_PARAMS).unwrap(),
            &Curve::P256.params_der()
        );
        assert_eq!(
            public.get(&CKA_ID),
            private.get(&CKA_ID),
            "CKA_ID pairs the halves"
        );
        assert_eq!(public.get(&CKA_ID).unwrap().len(), 20, "SHA-1 of the point");
        assert_eq!(get_bool(&private, CKA_SENSITIVE), Some(true));
        assert_eq!(get_bool(&private, CKA_EXTRACTABLE), Some(false));
        assert_eq!(get_bool(&private, CKA_ALWAYS_AUTHENTICATE), Some(false));
        assert_eq!(
            private.get(&CKA_EC_POINT),
            Some(point),
            "NSS reads the point from the private key"
        );
    }

    #[test]
    fn records_round_trip() {
        let o = Object {
            attrs: profile_objects().remove(0),
            blob: None,
            file: None,
            read_only: true,
        };
        let r = ObjectRecord::from_object(&o);
        assert_eq!(r.to_attrs().unwrap(), o.attrs);
    }
}
