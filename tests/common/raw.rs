//! Raw access to the module's C_* functions through `libloading` + `cryptoki-sys`, for the
//! checks `cryptoki` hides (two-call convention, exact CK_RVs). Opening the same `.so`
//! path that `cryptoki` loaded gives the same module instance: its session handles work
//! here.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr;

use cryptoki_sys::*;

use super::{DEFAULT_PIN, P11World, Swtpm, TestStore};

/// C_GetInterface's signature (PKCS#11 3.0 §5.4).
pub type GetInterface = unsafe extern "C" fn(
    *mut CK_UTF8CHAR,
    *mut CK_VERSION,
    *mut *mut CK_INTERFACE,
    CK_FLAGS,
) -> CK_RV;
/// C_GetInterfaceList's signature.
pub type GetInterfaceList = unsafe extern "C" fn(*mut CK_INTERFACE, *mut CK_ULONG) -> CK_RV;
/// C_GetFunctionList's signature.
pub type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;

#[derive(Debug)]
pub struct RawModule {
    _lib: libloading::Library,
    list: *const CK_FUNCTION_LIST,
}

impl RawModule {
    /// dlopen + C_GetFunctionList (2.40 table).
    pub fn open() -> RawModule {
        // SAFETY: loading our own module, whose initializers are Rust statics.
        let lib =
            unsafe { libloading::Library::new(super::module_path()) }.expect("dlopen libtpmvsc.so");
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: C_GetFunctionList has the signature of CK_C_GetFunctionList.
        let rv = unsafe {
            let f: libloading::Symbol<
                '_,
                unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV,
            > = lib
                .get(b"C_GetFunctionList\0")
                .expect("C_GetFunctionList symbol");
            f(&mut list)
        };
        assert_eq!(rv, CKR_OK, "C_GetFunctionList");
        assert!(!list.is_null(), "C_GetFunctionList gave NULL");
        RawModule { _lib: lib, list }
    }

    /// The library handle (for C_GetInterface and friends).
    pub fn lib(&self) -> &libloading::Library {
        &self._lib
    }

    pub fn list(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: the module's static table, valid while the library is loaded.
        unsafe { &*self.list }
    }

    /// C_GetAttributeValue on `types`, each with a buffer of `cap` bytes (None: NULL
    /// buffer). Returns the CK_RV and each (ulValueLen, bytes read).
    pub fn get_attributes(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
        cap: Option<usize>,
    ) -> (CK_RV, Vec<(CK_ULONG, Vec<u8>)>) {
        let mut bufs: Vec<Vec<u8>> = types.iter().map(|_| vec![0u8; cap.unwrap_or(0)]).collect();
        let mut tmpl: Vec<CK_ATTRIBUTE> = types
            .iter()
            .zip(bufs.iter_mut())
            .map(|(t, b)| CK_ATTRIBUTE {
                type_: *t,
                pValue: if cap.is_some() {
                    b.as_mut_ptr().cast()
                } else {
                    std::ptr::null_mut()
                },
                ulValueLen: b.len() as CK_ULONG,
            })
            .collect();
        let f = self
            .list()
            .C_GetAttributeValue
            .expect("C_GetAttributeValue");
        // SAFETY: the template points into `bufs`, alive for the call.
        let rv = unsafe { f(session, object, tmpl.as_mut_ptr(), tmpl.len() as CK_ULONG) };
        let out = tmpl
            .iter()
            .zip(bufs)
            .map(|(a, b)| {
                let n = a.ulValueLen;
                let len = usize::try_from(n).unwrap_or(usize::MAX);
                let bytes = if n != CK_UNAVAILABLE_INFORMATION && len <= b.len() {
                    b[..len].to_vec()
                } else {
                    Vec::new()
                };
                (n, bytes)
            })
            .collect();
        (rv, out)
    }
}

/// Calls a function of a function list. The arguments are NULL or point at live buffers
/// of the stated sizes; what is "bad" about them is for the module to find out.
/// (Visible to a test file that declares `#[macro_use] mod common;`.)
macro_rules! p11 {
    ($list:expr, $f:ident ( $($a:expr),* $(,)? )) => {{
        let func = $list.$f.expect(concat!(stringify!($f), " is in the function list"));
        // SAFETY: every pointer passed is NULL or valid for the size passed with it (the
        // module is required to check NULLs and sizes; these tests never pass a dangling
        // pointer), and the library stays loaded for the whole process.
        unsafe { func($($a),*) }
    }};
}

/// One test's world for raw calls: its own swtpm, a store with one card ("t", PUK
/// default), the environment set for the module, and the module loaded (not yet
/// initialized) for the rest of the process.
pub struct RawWorld {
    pub f: &'static CK_FUNCTION_LIST,
    pub get_interface_list: GetInterfaceList,
    pub get_interface: GetInterface,
    pub module: &'static RawModule,
    // Dropped last: the TPM and the store outlive every call.
    pub store: TestStore,
    pub swtpm: Swtpm,
}

impl RawWorld {
    pub fn new() -> RawWorld {
        RawWorld::with(&[])
    }

    /// Like [`RawWorld::new`], card "t" made with `extra` added to its `create` arguments.
    pub fn with(extra: &[&str]) -> RawWorld {
        let w = P11World::new(extra);
        // The library stays loaded for the rest of the process (the function list and the
        // threads of the concurrency tests point into it); unloading a Rust cdylib with
        // thread-local destructors is not worth the risk.
        let module: &'static RawModule = Box::leak(Box::new(RawModule::open()));
        // SAFETY: the symbols are the spec's entry points with these exact signatures.
        let (get_interface_list, get_interface) = unsafe {
            (
                *module
                    .lib()
                    .get::<GetInterfaceList>(b"C_GetInterfaceList\0")
                    .expect("C_GetInterfaceList exported"),
                *module
                    .lib()
                    .get::<GetInterface>(b"C_GetInterface\0")
                    .expect("C_GetInterface exported"),
            )
        };
        RawWorld {
            f: module.list(),
            get_interface_list,
            get_interface,
            module,
            store: w.store,
            swtpm: w.swtpm,
        }
    }

    /// C_Initialize(NULL) → CKR_OK.
    pub fn init(&self) {
        assert_rv(
            p11!(self.f, C_Initialize(ptr::null_mut())),
            CKR_OK,
            "C_Initialize(NULL)",
        );
    }

    pub fn finalize(&self) {
        assert_rv(
            p11!(self.f, C_Finalize(ptr::null_mut())),
            CKR_OK,
            "C_Finalize(NULL)",
        );
    }

    /// The only slot (the card "t").
    pub fn slot(&self) -> CK_SLOT_ID {
        let mut ids = [CK_SLOT_ID::MAX; 4];
        let mut n: CK_ULONG = 4;
        assert_rv(
            p11!(self.f, C_GetSlotList(CK_TRUE, ids.as_mut_ptr(), &mut n)),
            CKR_OK,
            "C_GetSlotList",
        );
        assert_eq!(n, 1, "one card, one slot");
        ids[0]
    }

    pub fn open(&self, slot: CK_SLOT_ID, rw: bool) -> CK_SESSION_HANDLE {
        let mut h: CK_SESSION_HANDLE = 0;
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        assert_rv(
            p11!(
                self.f,
                C_OpenSession(slot, flags, ptr::null_mut(), None, &mut h)
            ),
            CKR_OK,
            "C_OpenSession",
        );
        h
    }

    pub fn login(&self, h: CK_SESSION_HANDLE) {
        let mut pin = DEFAULT_PIN.as_bytes().to_vec();
        assert_rv(
            p11!(
                self.f,
                C_Login(h, CKU_USER, pin.as_mut_ptr(), ulong(pin.len()))
            ),
            CKR_OK,
            "C_Login(CKU_USER, default PIN)",
        );
    }

    /// A P-256 session key pair (public, private), generated in the TPM.
    pub fn ec_key_pair(&self, h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
        let mut t = Template::new();
        t.bytes(CKA_EC_PARAMS, &P256_OID);
        t.bool(CKA_VERIFY, true);
        t.bool(CKA_TOKEN, false);
        let mut k = Template::new();
        k.bool(CKA_SIGN, true);
        k.bool(CKA_TOKEN, false);
        let mut mech = mech(CKM_EC_KEY_PAIR_GEN);
        let (mut p, mut s) = (0, 0);
        assert_rv(
            p11!(
                self.f,
                C_GenerateKeyPair(
                    h,
                    &mut mech,
                    t.ptr(),
                    t.len(),
                    k.ptr(),
                    k.len(),
                    &mut p,
                    &mut s
                )
            ),
            CKR_OK,
            "C_GenerateKeyPair(P-256)",
        );
        (p, s)
    }

    /// Ends whatever operation an error may have left active (C_SessionCancel, 3.0), so
    /// that the next check starts from a known state.
    pub fn cancel(&self, h: CK_SESSION_HANDLE) {
        let f3 = self.list_3_0();
        let _ = p11!(
            f3,
            C_SessionCancel(h, CKF_SIGN | CKF_DIGEST | CKF_FIND_OBJECTS)
        );
    }

    /// The 3.0 function list from C_GetInterface("PKCS 11", 3.0).
    pub fn list_3_0(&self) -> &'static CK_FUNCTION_LIST_3_0 {
        let mut name = *b"PKCS 11\0";
        let mut v = CK_VERSION { major: 3, minor: 0 };
        let mut i: *mut CK_INTERFACE = ptr::null_mut();
        // SAFETY: a NUL-terminated name and valid in/out pointers.
        let rv = unsafe { (self.get_interface)(name.as_mut_ptr(), &mut v, &mut i, 0) };
        assert_rv(rv, CKR_OK, "C_GetInterface(\"PKCS 11\", 3.0)");
        assert!(!i.is_null());
        // SAFETY: the interface and its function list are statics of the loaded library.
        let fl = unsafe { (*i).pFunctionList } as *const CK_FUNCTION_LIST_3_0;
        assert!(!fl.is_null());
        // SAFETY: as above; the 3.0 interface points at a CK_FUNCTION_LIST_3_0.
        unsafe { &*fl }
    }
}

pub const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// SHA-256 of the empty string.
pub const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// SHA-256 of "abc".
pub const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// A handle no module hands out in a test's lifetime (handles count up from 1).
pub const RANDOM_HANDLE: CK_ULONG = 999_999;

pub fn ulong(n: usize) -> CK_ULONG {
    CK_ULONG::try_from(n).expect("fits a CK_ULONG")
}

pub fn mech(m: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: m,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    }
}

/// A template whose attribute values it owns.
pub struct Template {
    values: Vec<Vec<u8>>,
    pub attrs: Vec<CK_ATTRIBUTE>,
}

impl Template {
    pub fn new() -> Template {
        Template {
            values: Vec::new(),
            attrs: Vec::new(),
        }
    }
    pub fn bytes(&mut self, t: CK_ATTRIBUTE_TYPE, v: &[u8]) {
        self.values.push(v.to_vec());
        let last = self.values.last_mut().expect("just pushed");
        // A Vec's heap buffer does not move when the outer Vec grows.
        self.attrs.push(CK_ATTRIBUTE {
            type_: t,
            pValue: if last.is_empty() {
                ptr::null_mut()
            } else {
                last.as_mut_ptr() as *mut c_void
            },
            ulValueLen: ulong(last.len()),
        });
    }
    pub fn bool(&mut self, t: CK_ATTRIBUTE_TYPE, v: bool) {
        self.bytes(t, &[u8::from(v)]);
    }
    pub fn ulong(&mut self, t: CK_ATTRIBUTE_TYPE, v: CK_ULONG) {
        self.bytes(t, &v.to_ne_bytes());
    }
    pub fn ptr(&mut self) -> *mut CK_ATTRIBUTE {
        self.attrs.as_mut_ptr()
    }
    pub fn len(&self) -> CK_ULONG {
        ulong(self.attrs.len())
    }
}

/// A CK_RV by cryptoki's name for it, with its value.
pub fn rv_name(rv: CK_RV) -> String {
    match cryptoki::error::Rv::from(rv) {
        cryptoki::error::Rv::Ok => "CKR_OK".into(),
        cryptoki::error::Rv::Error(e) => format!("{e:?} ({rv:#x})"),
    }
}

#[track_caller]
pub fn assert_rv(got: CK_RV, want: CK_RV, what: &str) {
    assert!(
        got == want,
        "{what}: expected {}, got {}",
        rv_name(want),
        rv_name(got)
    );
}

/// Collects every deviation of one test, so that one run reports all of them.
#[derive(Default)]
pub struct Checks(pub Vec<String>);

impl Checks {
    #[track_caller]
    pub fn rv(&mut self, got: CK_RV, want: CK_RV, what: &str) {
        if got != want {
            let at = std::panic::Location::caller();
            self.0.push(format!(
                "line {}: {what}: expected {}, got {}",
                at.line(),
                rv_name(want),
                rv_name(got)
            ));
        }
    }
    #[track_caller]
    pub fn that(&mut self, ok: bool, what: &str) {
        if !ok {
            let at = std::panic::Location::caller();
            self.0.push(format!("line {}: {what}", at.line()));
        }
    }
    pub fn done(self) {
        assert!(
            self.0.is_empty(),
            "{} deviation(s):\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

/// Plain C structs for which all-zero bytes are a valid value.
pub trait Plain: Sized {}
impl Plain for CK_INFO {}
impl Plain for CK_SLOT_INFO {}
impl Plain for CK_TOKEN_INFO {}
impl Plain for CK_SESSION_INFO {}
impl Plain for CK_MECHANISM_INFO {}
impl Plain for CK_RSA_PKCS_PSS_PARAMS {}

pub fn unsafe_zeroed<T: Plain>() -> T {
    // SAFETY: `Plain` is implemented only for C structs of integers, byte arrays and
    // versions, for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// Never-called mutex callbacks for C_Initialize's argument checks.
pub unsafe extern "C" fn create_mutex(_m: *mut *mut c_void) -> CK_RV {
    CKR_GENERAL_ERROR
}
pub unsafe extern "C" fn destroy_mutex(_m: *mut c_void) -> CK_RV {
    CKR_GENERAL_ERROR
}
pub unsafe extern "C" fn lock_mutex(_m: *mut c_void) -> CK_RV {
    CKR_GENERAL_ERROR
}
pub unsafe extern "C" fn unlock_mutex(_m: *mut c_void) -> CK_RV {
    CKR_GENERAL_ERROR
}

pub fn init_args() -> CK_C_INITIALIZE_ARGS {
    CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: 0,
        pReserved: ptr::null_mut(),
    }
}
