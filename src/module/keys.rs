//! Keys in the TPM: key-pair generation under the card storage key, ECDH derivation,
//! random bytes, and running TPM work with a card key loaded.

use cryptoki_sys::*;

use super::Module;
use super::token::Login;
use crate::error::{CallError, Error, Result};
use crate::mechanism::{self, Mech, ec::Curve};
use crate::mechanism::{curve_of, left_pad};
use crate::object::{self, Attrs, KeyPairRequest, Object};
use crate::provision::{self};
use crate::tpm::{self, Blob, Tpm, TpmError, templates::UserKeyKind};

/// The TPM key kind a key-pair template asks for, and the mechanism that made it.
fn key_kind(
    mech: &Mech,
    public_t: &Attrs,
    private_t: &Attrs,
) -> Result<(UserKeyKind, CK_MECHANISM_TYPE)> {
    Ok(match mech {
        Mech::RsaKeyPairGen => {
            let bits = object::template_ulong(public_t, CKA_MODULUS_BITS)?.ok_or_else(|| {
                Error::from(CallError::TemplateIncomplete(
                    "CKA_MODULUS_BITS is required",
                ))
            })?;
            if let Some(e) = public_t.get(&CKA_PUBLIC_EXPONENT) {
                let trimmed: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                if trimmed != [1, 0, 1] {
                    return Err(Error::from(CallError::AttributeValueInvalid(
                        "the TPM makes RSA keys with exponent 65537 only",
                    )));
                }
            }
            match bits {
                2048 => (UserKeyKind::Rsa2048, CKM_RSA_PKCS_KEY_PAIR_GEN),
                3072 => (UserKeyKind::Rsa3072, CKM_RSA_PKCS_KEY_PAIR_GEN),
                _ => {
                    return Err(Error::from(CallError::AttributeValueInvalid(
                        "RSA keys are 2048 or 3072 bits",
                    )));
                }
            }
        }
        Mech::EcKeyPairGen => {
            let params = public_t
                .get(&CKA_EC_PARAMS)
                .or(private_t.get(&CKA_EC_PARAMS))
                .ok_or_else(|| {
                    Error::from(CallError::TemplateIncomplete("CKA_EC_PARAMS is required"))
                })?;
            match Curve::from_params_der(params) {
                Some(Curve::P256) => (UserKeyKind::EccP256, CKM_EC_KEY_PAIR_GEN),
                Some(Curve::P384) => (UserKeyKind::EccP384, CKM_EC_KEY_PAIR_GEN),
                None => {
                    return Err(Error::from(CallError::AttributeValueInvalid(
                        "only the P-256 and P-384 curves",
                    )));
                }
            }
        }
        _ => {
            return Err(Error::from(CallError::WrongMechanism(
                "not a key-pair generation mechanism",
            )));
        }
    })
}

/// The longest ECDH shared secret: the x-coordinate on P-384.
const MAX_SHARED_SECRET: usize = 48;

/// The attributes of the secret key C_DeriveKey makes from the shared secret `z`, as the
/// template asks: a session object of class CKO_SECRET_KEY, CKK_GENERIC_SECRET (any
/// CKA_VALUE_LEN up to `z`'s length, `z` itself by default) or CKK_AES (16, 24 or 32
/// bytes), the leading bytes of `z` as its value, and the usage flags the template sets
/// (the module has no secret-key mechanism: the key is for its holder to read, when it is
/// extractable and not sensitive). Anything else is refused.
fn derived_key_attrs(template: &Attrs, z: &[u8]) -> Result<Attrs> {
    let refuse = |why| Err(Error::from(CallError::TemplateInconsistent(why)));
    if object::template_bool(template, CKA_TOKEN)? == Some(true) {
        return refuse("derived keys are session objects");
    }
    if object::template_ulong(template, CKA_CLASS)?.is_some_and(|c| c != CKO_SECRET_KEY) {
        return refuse("a derived key is a secret key (CKO_SECRET_KEY)");
    }
    let key_type = object::template_ulong(template, CKA_KEY_TYPE)?.unwrap_or(CKK_GENERIC_SECRET);
    let asked = object::template_ulong(template, CKA_VALUE_LEN)?
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let len = match (key_type, asked) {
        (CKK_GENERIC_SECRET, None) => z.len(),
        (CKK_GENERIC_SECRET, Some(l)) if (1..=z.len()).contains(&l) => l,
        (CKK_AES, Some(l)) if [16, 24, 32].contains(&l) && l <= z.len() => l,
        (CKK_AES, None) => {
            return Err(Error::from(CallError::TemplateIncomplete(
                "an AES key needs CKA_VALUE_LEN (16, 24 or 32)",
            )));
        }
        (CKK_GENERIC_SECRET | CKK_AES, Some(_)) => {
            return Err(Error::from(CallError::AttributeValueInvalid(
                "CKA_VALUE_LEN: 1 to the shared secret's length (AES: 16, 24 or 32)",
            )));
        }
        _ => return refuse("derived keys are CKK_GENERIC_SECRET or CKK_AES"),
    };
    let mut a = Attrs::new();
    a.insert(CKA_CLASS, object::ulong(CKO_SECRET_KEY));
    a.insert(CKA_KEY_TYPE, object::ulong(key_type));
    a.insert(CKA_TOKEN, object::boolean(false));
    a.insert(CKA_PRIVATE, object::boolean(true));
    a.insert(CKA_SENSITIVE, object::boolean(false));
    a.insert(CKA_EXTRACTABLE, object::boolean(true));
    a.insert(CKA_LOCAL, object::boolean(false));
    a.insert(CKA_LABEL, Vec::new());
    a.insert(CKA_ID, Vec::new());
    for t in [
        CKA_ENCRYPT,
        CKA_DECRYPT,
        CKA_SIGN,
        CKA_VERIFY,
        CKA_WRAP,
        CKA_UNWRAP,
        CKA_DERIVE,
    ] {
        a.insert(t, object::boolean(false));
    }
    for t in [
        CKA_LABEL,
        CKA_ID,
        CKA_SENSITIVE,
        CKA_EXTRACTABLE,
        CKA_PRIVATE,
        CKA_ENCRYPT,
        CKA_DECRYPT,
        CKA_SIGN,
        CKA_VERIFY,
        CKA_WRAP,
        CKA_UNWRAP,
        CKA_DERIVE,
    ] {
        if let Some(v) = template.get(&t) {
            a.insert(t, v.clone());
        }
    }
    a.insert(CKA_VALUE_LEN, object::ulong(len as CK_ULONG));
    a.insert(CKA_VALUE, z[..len].to_vec());
    Ok(a)
}

/// What a key-pair template asks of the two new objects (the TPM made the key).
fn key_pair_request(public_t: &Attrs, private_t: &Attrs, token: bool) -> KeyPairRequest {
    let pick = |t: &Attrs, list: &[CK_ATTRIBUTE_TYPE]| -> Attrs {
        list.iter()
            .filter_map(|a| t.get(a).map(|v| (*a, v.clone())))
            .collect()
    };
    let either = |a: CK_ATTRIBUTE_TYPE| private_t.get(&a).or(public_t.get(&a)).cloned();
    KeyPairRequest {
        id: either(CKA_ID),
        label: either(CKA_LABEL),
        token,
        private_usage: pick(
            private_t,
            &[
                CKA_SIGN,
                CKA_DECRYPT,
                CKA_DERIVE,
                CKA_ALWAYS_AUTHENTICATE,
                CKA_MODIFIABLE,
            ],
        ),
        public_usage: pick(
            public_t,
            &[CKA_VERIFY, CKA_ENCRYPT, CKA_MODIFIABLE, CKA_PRIVATE],
        ),
        subject: either(CKA_SUBJECT),
    }
}

impl Module {
    pub(crate) fn generate_key_pair(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &Mech,
        public_t: &Attrs,
        private_t: &Attrs,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        object::check_template(public_t)?;
        object::check_template(private_t)?;
        let token = object::template_bool(private_t, CKA_TOKEN)?
            .or(object::template_bool(public_t, CKA_TOKEN)?)
            .unwrap_or(false);
        let slot = self.check_write_access(h, token, true)?;
        for (t, forbidden) in [(CKA_SENSITIVE, false), (CKA_EXTRACTABLE, true)] {
            if object::template_bool(private_t, t)? == Some(forbidden) {
                return Err(Error::from(CallError::TemplateInconsistent(
                    "TPM keys are sensitive and never extractable",
                )));
            }
        }
        if object::template_bool(private_t, CKA_PRIVATE)? == Some(false) {
            return Err(Error::from(CallError::TemplateInconsistent(
                "private keys are private objects",
            )));
        }
        let (kind, mech_type) = key_kind(mech, public_t, private_t)?;
        if token {
            self.sync_objects(slot)?;
            if self.count_class(slot, CKO_PRIVATE_KEY) >= object::MAX_KEYS {
                return Err(Error::from(CallError::CardFull(
                    "the card holds 30 keys, the most it can",
                )));
            }
        }
        let (card_id, csk_auth) = self.user_auth(slot)?;
        let card = provision::find(&self.store, &card_id)?;
        if !card.1.formatted {
            return Err(Error::CardUnusable {
                name: card.1.name.clone(),
                reason: "it is not formatted yet (`tpmvsc format`)".into(),
            });
        }
        let keys = provision::pin::read_keys(&card.0, &card.1)?;
        let srk = card.1.srk.clone();
        let (blob, key) = self.tpm_do(|t| {
            t.use_srk(&srk)?;
            t.create_user_key(keys.csk_ref(), &csk_auth, kind)
        })?;
        let req = key_pair_request(public_t, private_t, token);
        let (mut pub_attrs, mut priv_attrs) = object::key_pair_objects(&key, mech_type, &req);
        if let Some(l) = public_t.get(&CKA_LABEL) {
            pub_attrs.insert(CKA_LABEL, l.clone());
        }
        if let Some(l) = private_t.get(&CKA_LABEL) {
            priv_attrs.insert(CKA_LABEL, l.clone());
        }
        let ph = self.add_object(
            slot,
            h,
            Object {
                attrs: pub_attrs,
                blob: None,
                file: None,
                read_only: false,
            },
        )?;
        let kh = self.add_object(
            slot,
            h,
            Object {
                attrs: priv_attrs,
                blob: Some(blob),
                file: None,
                read_only: false,
            },
        )?;
        Ok((ph, kh))
    }

    /// CKM_ECDH1_DERIVE: the TPM computes the shared point; its x coordinate becomes a
    /// generic secret session object.
    pub(crate) fn derive(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &Mech,
        base: CK_OBJECT_HANDLE,
        template: &Attrs,
    ) -> Result<CK_OBJECT_HANDLE> {
        object::check_template(template)?;
        // The user is logged in: the entry point's access rule (ffi) says so.
        let (slot, _, _) = self.session_view(h)?;
        // The template first: a refused one costs no TPM command.
        derived_key_attrs(template, &[0; MAX_SHARED_SECRET])?;
        let Mech::Ecdh { public } = mech else {
            return Err(Error::from(CallError::WrongMechanism("only ECDH1 derive")));
        };
        let obj = self.key_for(h, base, mech, CKA_DERIVE)?;
        let curve = curve_of(&obj.public_key()?)?;
        let point = mechanism::ec::point_from_der_or_raw(curve, public)
            .map_err(|_| Error::MechanismParamInvalid("the peer's public point"))?;
        let n = curve.field_len();
        let blob = obj
            .blob
            .clone()
            .ok_or_else(|| Error::from(CallError::KeyHandleInvalid("not a TPM key")))?;
        let z = self.with_key(slot, &blob, |t, k| {
            t.ecdh(k, &point[1..1 + n], &point[1 + n..])
        })?;
        let z = left_pad(&z, n);
        let a = derived_key_attrs(template, &z)?;
        self.add_object(
            slot,
            h,
            Object {
                attrs: a,
                blob: None,
                file: None,
                read_only: false,
            },
        )
    }

    /// Fills `out` with random bytes from the TPM, a chunk per turn on the connection so
    /// that other threads' commands get in between.
    pub(crate) fn random(&self, h: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
        self.session_view(h)?;
        for chunk in out.chunks_mut(RANDOM_CHUNK) {
            let r = self.tpm_do(|t| t.random(chunk.len()))?;
            chunk.copy_from_slice(&r);
        }
        Ok(())
    }

    /// Runs `f` with the user key loaded (the CSK with the logged-in PIN's authValue).
    pub(super) fn with_key<T>(
        &self,
        slot: CK_SLOT_ID,
        blob: &Blob,
        f: impl FnOnce(&mut Tpm, tpm::KeyRef) -> std::result::Result<T, TpmError>,
    ) -> Result<T> {
        let (csk_auth, keys, srk) = {
            let st = self.state.lock();
            match st.slots.get(&slot).and_then(|s| s.login.as_ref()) {
                Some(Login::User {
                    csk_auth,
                    keys,
                    srk,
                }) => (csk_auth.clone(), keys.clone(), srk.clone()),
                _ => return Err(Error::from(CallError::NotLoggedIn("log in first"))),
            }
        };
        self.tpm_do(|t| {
            t.use_srk(&srk)?;
            let k = t.load_user_key(keys.csk_ref(), &csk_auth, blob)?;
            f(t, k)
        })
    }

    /// Runs TPM work on the process's connection (module/tpm_link.rs: opened on first
    /// need, kept during bursts, waited for at most a bounded time).
    pub(super) fn tpm_do<T>(
        &self,
        f: impl FnOnce(&mut Tpm) -> std::result::Result<T, TpmError>,
    ) -> Result<T> {
        self.link.run(f).map_err(Error::from)
    }
}

/// Random bytes fetched per turn on the TPM connection.
const RANDOM_CHUNK: usize = 1024;

/// Most random bytes one C_GenerateRandom returns (about 5 s on swtpm).
pub(crate) const MAX_RANDOM: usize = 1 << 20;
