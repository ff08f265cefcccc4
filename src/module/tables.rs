//! The module's three tables — slots, sessions, objects — as types that answer a missing
//! key with the PKCS#11 error for it, so no caller picks the CK_RV for "no such handle".
//! References go one way: a session names its slot, an object its slot and (for a
//! session object) its session; a slot names neither.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};

use cryptoki_sys::{CK_OBJECT_HANDLE, CK_SESSION_HANDLE, CK_SLOT_ID};

use super::registry::Slot;
use super::sessions::Session;
use crate::error::{CallError, Error, Result};
use crate::object::Object;

/// A map whose lookups fail with the error its values name.
pub(super) trait Table: DerefMut<Target = Self::Map> {
    type Key;
    type Value;
    type Map;
    /// The error for a key that is not in the table.
    fn missing() -> Error;
    fn lookup(&self, key: &Self::Key) -> Option<&Self::Value>;
    fn lookup_mut(&mut self, key: &Self::Key) -> Option<&mut Self::Value>;

    /// The value, or the table's error.
    fn find(&self, key: &Self::Key) -> Result<&Self::Value> {
        self.lookup(key).ok_or_else(Self::missing)
    }

    /// The value for changing, or the table's error.
    fn find_mut(&mut self, key: &Self::Key) -> Result<&mut Self::Value> {
        self.lookup_mut(key).ok_or_else(Self::missing)
    }
}

macro_rules! table {
    ($(#[$doc:meta])* $name:ident, $map:ident<$key:ty, $value:ty>, $missing:expr) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub(super) struct $name($map<$key, $value>);

        impl Deref for $name {
            type Target = $map<$key, $value>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }

        impl Table for $name {
            type Key = $key;
            type Value = $value;
            type Map = $map<$key, $value>;
            fn missing() -> Error {
                $missing.into()
            }
            fn lookup(&self, key: &$key) -> Option<&$value> {
                self.0.get(key)
            }
            fn lookup_mut(&mut self, key: &$key) -> Option<&mut $value> {
                self.0.get_mut(key)
            }
        }
    };
}

table!(
    /// Cards as slots, in slot order (CKR_SLOT_ID_INVALID when missing).
    Slots,
    BTreeMap<CK_SLOT_ID, Slot>,
    CallError::SlotNotFound
);

table!(
    /// Open sessions (CKR_SESSION_HANDLE_INVALID when missing).
    Sessions,
    HashMap<CK_SESSION_HANDLE, Session>,
    CallError::SessionNotFound
);

table!(
    /// Objects (CKR_OBJECT_HANDLE_INVALID when missing).
    Objects,
    HashMap<CK_OBJECT_HANDLE, Held>,
    CallError::ObjectNotFound
);

/// An object with the slot it belongs to and, for a session object, its session.
pub(super) type Held = (CK_SLOT_ID, Option<CK_SESSION_HANDLE>, Object);

impl Sessions {
    /// Takes a session out of the table, or CKR_SESSION_HANDLE_INVALID.
    pub(super) fn take(&mut self, h: CK_SESSION_HANDLE) -> Result<Session> {
        self.0.remove(&h).ok_or_else(Self::missing)
    }

    /// Sessions open on a slot.
    pub(super) fn on(&self, slot: CK_SLOT_ID) -> impl Iterator<Item = &Session> {
        self.0.values().filter(move |s| s.slot == slot)
    }
}
