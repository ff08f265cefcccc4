//! Raw access to the module's C_* functions through `libloading` + `cryptoki-sys`, for the
//! checks `cryptoki` hides (two-call convention, exact CK_RVs). Opening the same `.so`
//! path that `cryptoki` loaded gives the same module instance: its session handles work
//! here.

#![allow(unsafe_code)]
use cryptoki_sys::*;

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
