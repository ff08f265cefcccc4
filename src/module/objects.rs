//! Objects as handles: the card's token objects loaded from its files, session objects,
//! who may see or change which, attributes, and searches.

use super::tables::Table;
use cryptoki_sys::*;

use super::Module;
use crate::error::{CallError, Error, Result};
use crate::object::{self, Attrs, Object, ObjectRecord};
use crate::provision::{self};

/// The result of one attribute read (C_GetAttributeValue processes all of them).
#[derive(Debug)]
pub(crate) enum AttrRead {
    Value(Vec<u8>),
    Sensitive,
    Invalid,
}

impl Module {
    /// Loads the card's token objects into the handle table (once per file).
    pub(super) fn sync_objects(&self, slot: CK_SLOT_ID) -> Result<()> {
        let card_id = self.card_id(slot)?;
        let (dir, _) = provision::find(&self.store, &card_id)?;
        let names = dir.list("obj-")?;
        let mut st = self.state.lock();
        let known: Vec<String> = match st.slots.get(&slot) {
            Some(s) => s.files.keys().cloned().collect(),
            None => return Err(Error::from(CallError::SlotNotFound)),
        };
        // Files other processes removed.
        let gone: Vec<String> = known
            .iter()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        for g in gone {
            if let Some(h) = st.slots.get_mut(&slot).and_then(|s| s.files.remove(&g)) {
                st.objects.remove(&h);
            }
        }
        let profiles_missing = st.slots.get(&slot).is_some_and(|s| s.profiles.is_empty());
        if profiles_missing {
            for attrs in object::profile_objects() {
                let h = self.handle();
                st.objects.insert(
                    h,
                    (
                        slot,
                        None,
                        Object {
                            attrs,
                            blob: None,
                            file: None,
                            read_only: true,
                        },
                    ),
                );
                if let Some(s) = st.slots.get_mut(&slot) {
                    s.profiles.push(h);
                }
            }
        }
        for name in names {
            if known.contains(&name) {
                continue;
            }
            let rec: ObjectRecord = match dir.read(&name) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let attrs = rec.to_attrs()?;
            let h = self.handle();
            st.objects.insert(
                h,
                (
                    slot,
                    None,
                    Object {
                        attrs,
                        blob: rec.blob,
                        file: Some(name.clone()),
                        read_only: false,
                    },
                ),
            );
            if let Some(s) = st.slots.get_mut(&slot) {
                s.files.insert(name, h);
            }
        }
        Ok(())
    }

    pub(super) fn can_see(&self, obj: &Object, logged_in: bool) -> bool {
        !obj.is_private() || logged_in
    }

    /// Writes a token object's file (new or changed).
    pub(super) fn persist(&self, slot: CK_SLOT_ID, obj: &Object) -> Result<()> {
        let Some(name) = &obj.file else { return Ok(()) };
        let card_id = self.card_id(slot)?;
        let (dir, _) = provision::find(&self.store, &card_id)?;
        dir.write(name, &ObjectRecord::from_object(obj), true)
    }

    /// Adds an object (token objects are written to disk first).
    pub(super) fn add_object(
        &self,
        slot: CK_SLOT_ID,
        session: CK_SESSION_HANDLE,
        mut obj: Object,
    ) -> Result<CK_OBJECT_HANDLE> {
        if obj.is_token() {
            let name = format!("obj-{}.json", uuid::Uuid::new_v4().simple());
            obj.file = Some(name.clone());
            self.persist(slot, &obj)?;
            let h = self.handle();
            let mut st = self.state.lock();
            if let Some(s) = st.slots.get_mut(&slot) {
                s.files.insert(name, h);
            }
            st.objects.insert(h, (slot, None, obj));
            Ok(h)
        } else {
            let h = self.handle();
            self.state
                .lock()
                .objects
                .insert(h, (slot, Some(session), obj));
            Ok(h)
        }
    }

    /// Checks the session may create or change an object with these visibility flags.
    pub(super) fn check_write_access(
        &self,
        h: CK_SESSION_HANDLE,
        token: bool,
        private: bool,
    ) -> Result<CK_SLOT_ID> {
        let (slot, rw, who) = self.session_view(h)?;
        if token && !rw {
            return Err(Error::from(CallError::ReadOnlySession(
                "token objects need a R/W session",
            )));
        }
        if (token || private) && who != Some(CKU_USER) {
            return Err(Error::from(CallError::NotLoggedIn("log in first")));
        }
        Ok(slot)
    }

    pub(super) fn count_class(&self, slot: CK_SLOT_ID, class: CK_OBJECT_CLASS) -> usize {
        self.state
            .lock()
            .objects
            .values()
            .filter(|(s, owner, o)| *s == slot && owner.is_none() && o.class() == class)
            .count()
    }

    pub(crate) fn create_object(
        &self,
        h: CK_SESSION_HANDLE,
        template: &Attrs,
    ) -> Result<CK_OBJECT_HANDLE> {
        object::check_template(template)?;
        let class = object::template_ulong(template, CKA_CLASS)?
            .ok_or_else(|| Error::from(CallError::TemplateIncomplete("CKA_CLASS is required")))?;
        let attrs = match class {
            CKO_CERTIFICATE => object::certificate_attrs(template)?,
            CKO_DATA => object::data_attrs(template)?,
            CKO_PUBLIC_KEY => object::public_key_attrs(template)?,
            CKO_PRIVATE_KEY | CKO_SECRET_KEY => {
                return Err(Error::from(CallError::TemplateInconsistent(
                    "keys are generated in the TPM; importing private or secret keys is not offered",
                )));
            }
            _ => {
                return Err(Error::from(CallError::AttributeValueInvalid(
                    "object class not supported",
                )));
            }
        };
        let obj = Object {
            attrs,
            blob: None,
            file: None,
            read_only: false,
        };
        if class == CKO_DATA && obj.is_private() && obj.is_token() {
            return Err(Error::from(CallError::AttributeValueInvalid(
                "private token data objects are not offered yet (they would need encryption on disk)",
            )));
        }
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        if obj.is_token() {
            self.sync_objects(slot)?;
            if class == CKO_CERTIFICATE
                && self.count_class(slot, CKO_CERTIFICATE) >= object::MAX_CERTS
            {
                return Err(Error::from(CallError::CardFull(
                    "the card holds 90 certificates, the most it can",
                )));
            }
        }
        self.add_object(slot, h, obj)
    }

    pub(crate) fn destroy_object(&self, h: CK_SESSION_HANDLE, oh: CK_OBJECT_HANDLE) -> Result<()> {
        let obj = self.object_for(h, oh)?;
        if obj.read_only || !object::get_bool(&obj.attrs, CKA_DESTROYABLE).unwrap_or(true) {
            return Err(Error::from(CallError::ActionProhibited(
                "this object cannot be destroyed",
            )));
        }
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        if let Some(name) = &obj.file {
            let card_id = self.card_id(slot)?;
            let (dir, _) = provision::find(&self.store, &card_id)?;
            dir.remove(name)?;
        }
        let mut st = self.state.lock();
        st.objects.remove(&oh);
        if let (Some(name), Some(s)) = (&obj.file, st.slots.get_mut(&slot)) {
            s.files.remove(name);
        }
        if let Some(b) = &obj.blob {
            drop(st);
            self.link.forget(b);
        }
        Ok(())
    }

    /// The key of an active operation: gone (destroyed meanwhile) is
    /// CKR_KEY_HANDLE_INVALID, as PKCS#11 asks of operations.
    pub(super) fn operation_key(
        &self,
        h: CK_SESSION_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<Object> {
        self.object_for(h, key).map_err(|e| match e {
            Error::Call(CallError::ObjectNotFound) => {
                Error::from(CallError::KeyHandleInvalid("the operation's key is gone"))
            }
            other => other,
        })
    }

    /// An object the session may see.
    pub(crate) fn object_for(&self, h: CK_SESSION_HANDLE, oh: CK_OBJECT_HANDLE) -> Result<Object> {
        let (slot, _, who) = self.session_view(h)?;
        let st = self.state.lock();
        match st.objects.get(&oh) {
            Some((s, _, o)) if *s == slot && self.can_see(o, who == Some(CKU_USER)) => {
                Ok(o.clone())
            }
            _ => Err(Error::from(CallError::ObjectNotFound)),
        }
    }

    pub(crate) fn read_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        oh: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrRead>> {
        let obj = self.object_for(h, oh)?;
        Ok(types
            .iter()
            .map(|t| {
                let secret_value = *t == CKA_VALUE
                    && obj.class() == CKO_SECRET_KEY
                    && object::get_bool(&obj.attrs, CKA_SENSITIVE).unwrap_or(false);
                if obj.is_sensitive(*t) || secret_value {
                    AttrRead::Sensitive
                } else {
                    obj.attrs
                        .get(t)
                        .map_or(AttrRead::Invalid, |v| AttrRead::Value(v.clone()))
                }
            })
            .collect())
    }

    pub(crate) fn object_size(&self, h: CK_SESSION_HANDLE, oh: CK_OBJECT_HANDLE) -> Result<usize> {
        let obj = self.object_for(h, oh)?;
        Ok(obj.attrs.values().map(|v| v.len() + 16).sum())
    }

    pub(crate) fn set_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        oh: CK_OBJECT_HANDLE,
        template: &Attrs,
    ) -> Result<()> {
        object::check_template(template)?;
        let mut obj = self.object_for(h, oh)?;
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        if obj.read_only || !object::get_bool(&obj.attrs, CKA_MODIFIABLE).unwrap_or(true) {
            return Err(Error::from(CallError::ActionProhibited(
                "this object cannot be changed",
            )));
        }
        for (t, v) in template {
            match *t {
                CKA_LABEL | CKA_ID | CKA_SUBJECT | CKA_APPLICATION | CKA_START_DATE
                | CKA_END_DATE => {
                    obj.attrs.insert(*t, v.clone());
                }
                CKA_SIGN | CKA_DECRYPT | CKA_VERIFY | CKA_ENCRYPT | CKA_DERIVE => {
                    object::template_bool(template, *t)?;
                    obj.attrs.insert(*t, v.clone());
                }
                CKA_CLASS | CKA_KEY_TYPE | CKA_TOKEN | CKA_PRIVATE | CKA_MODULUS | CKA_EC_POINT
                | CKA_EC_PARAMS | CKA_VALUE | CKA_SENSITIVE | CKA_EXTRACTABLE | CKA_LOCAL => {
                    return Err(Error::from(CallError::AttributeReadOnly(
                        "attribute cannot be changed",
                    )));
                }
                _ => {
                    return Err(Error::from(CallError::AttributeTypeInvalid(
                        "attribute not supported",
                    )));
                }
            }
        }
        self.persist(slot, &obj)?;
        if let Some(entry) = self.state.lock().objects.get_mut(&oh) {
            entry.2 = obj;
        }
        Ok(())
    }

    pub(crate) fn copy_object(
        &self,
        h: CK_SESSION_HANDLE,
        oh: CK_OBJECT_HANDLE,
        template: &Attrs,
    ) -> Result<CK_OBJECT_HANDLE> {
        object::check_template(template)?;
        let mut obj = self.object_for(h, oh)?;
        if obj.read_only
            || obj.blob.is_some()
            || !object::get_bool(&obj.attrs, CKA_COPYABLE).unwrap_or(false)
        {
            return Err(Error::from(CallError::ActionProhibited(
                "this object cannot be copied",
            )));
        }
        for (t, v) in template {
            match *t {
                CKA_LABEL | CKA_ID | CKA_TOKEN | CKA_PRIVATE | CKA_MODIFIABLE => {
                    obj.attrs.insert(*t, v.clone());
                }
                _ => {
                    return Err(Error::from(CallError::AttributeReadOnly(
                        "attribute cannot be set on a copy",
                    )));
                }
            }
        }
        obj.file = None;
        let slot = self.check_write_access(h, obj.is_token(), obj.is_private())?;
        self.add_object(slot, h, obj)
    }

    pub(crate) fn find_init(&self, h: CK_SESSION_HANDLE, template: &Attrs) -> Result<()> {
        let (slot, _, who) = self.session_view(h)?;
        {
            let st = self.state.lock();
            let s = st.sessions.find(&h)?;
            if s.find.is_some() {
                return Err(Error::from(CallError::OperationActive(
                    "a search is active",
                )));
            }
        }
        self.sync_objects(slot)?;
        let mut st = self.state.lock();
        let logged = who == Some(CKU_USER);
        let mut found: Vec<CK_OBJECT_HANDLE> = st
            .objects
            .iter()
            .filter(|(_, (s, owner, o))| {
                *s == slot
                    && owner.is_none_or(|x| x == h || st.sessions.contains_key(&x))
                    && self.can_see(o, logged)
                    && o.matches(template)
            })
            .map(|(k, _)| *k)
            .collect();
        found.sort_unstable();
        if let Some(s) = st.sessions.get_mut(&h) {
            s.find = Some((found, 0));
        }
        Ok(())
    }

    pub(crate) fn find_next(
        &self,
        h: CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<CK_OBJECT_HANDLE>> {
        let mut st = self.state.lock();
        let s = st.sessions.find_mut(&h)?;
        let (list, pos) = s
            .find
            .as_mut()
            .ok_or_else(|| Error::from(CallError::NoOperation("search")))?;
        let end = pos.saturating_add(max).min(list.len());
        let out = list[*pos..end].to_vec();
        *pos = end;
        Ok(out)
    }

    pub(crate) fn find_final(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let mut st = self.state.lock();
        let s = st.sessions.find_mut(&h)?;
        if s.find.take().is_none() {
            return Err(Error::from(CallError::NoOperation("search")));
        }
        Ok(())
    }
}
