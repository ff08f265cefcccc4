//! Every export of libtpmvsc.so, called raw: each `C_*` symbol is the function the
//! tables hand out (so every one goes through the module's one entry helper), each one
//! refuses before C_Initialize, none crashes on NULL pointers and zero handles after it,
//! and none with a live session and NULL pointers everywhere else.
//!
//! The call list is every field of cryptoki-sys' `CK_FUNCTION_LIST_3_0` (92 functions),
//! each called with its exact C signature: `z()` is a NULL pointer, a zero CK_ULONG, a
//! false CK_BBOOL or no callback, whichever the parameter is.

// Raw calls with NULL pointers are the point of this file.
#![allow(unsafe_code)]

mod common;

use std::ptr;

use common::raw::{GetFunctionList, GetInterface, GetInterfaceList, RawModule, rv_name};
use common::{DEFAULT_PIN, P11World};
use cryptoki_sys::*;

/// A zero of any parameter type the PKCS#11 functions take.
trait Zero {
    fn zero() -> Self;
}

impl<T> Zero for *mut T {
    fn zero() -> Self {
        ptr::null_mut()
    }
}

impl Zero for CK_ULONG {
    fn zero() -> Self {
        0
    }
}

impl Zero for CK_BBOOL {
    fn zero() -> Self {
        0
    }
}

impl<T> Zero for Option<T> {
    fn zero() -> Self {
        None
    }
}

fn z<T: Zero>() -> T {
    T::zero()
}

/// The library, loaded once for the process (the tables point into it).
fn library() -> &'static libloading::Library {
    let module: &'static RawModule = Box::leak(Box::new(RawModule::open()));
    module.lib()
}

/// (name, address) of each named function in a function list.
macro_rules! addresses {
    ($f:expr; $($name:ident),* $(,)?) => {
        vec![$((stringify!($name), $f.$name.map(|p| p as usize))),*]
    };
}

/// The address of an exported symbol.
fn symbol(lib: &libloading::Library, name: &str) -> usize {
    let c = format!("{name}\0");
    // SAFETY: only the address is taken; nothing is called through this type.
    let s = unsafe { lib.get::<unsafe extern "C" fn()>(c.as_bytes()) }
        .unwrap_or_else(|e| panic!("{name} is not exported: {e}"));
    *s as usize
}

/// The 2.40 table (C_GetFunctionList) and the 3.0 table (C_GetInterface "PKCS 11" 3.0).
fn tables(lib: &libloading::Library) -> (&'static CK_FUNCTION_LIST, &'static CK_FUNCTION_LIST_3_0) {
    // SAFETY: the symbols have these exact signatures (PKCS#11 3.0 §5.2, §5.4).
    let (gfl, gi) = unsafe {
        (
            *lib.get::<GetFunctionList>(b"C_GetFunctionList\0")
                .expect("C_GetFunctionList"),
            *lib.get::<GetInterface>(b"C_GetInterface\0")
                .expect("C_GetInterface"),
        )
    };
    let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { gfl(&mut list) }, CKR_OK, "C_GetFunctionList");
    let mut name = *b"PKCS 11\0";
    let mut version = CK_VERSION { major: 3, minor: 0 };
    let mut interface: *mut CK_INTERFACE = ptr::null_mut();
    // SAFETY: a NUL-terminated name, a version and an out-pointer, all live.
    let rv = unsafe { gi(name.as_mut_ptr(), &mut version, &mut interface, 0) };
    assert_eq!(rv, CKR_OK, "C_GetInterface(PKCS 11, 3.0)");
    assert!(!list.is_null() && !interface.is_null());
    // SAFETY: both point at statics of the library, which stays loaded.
    unsafe {
        let f3 = (*interface).pFunctionList as *const CK_FUNCTION_LIST_3_0;
        (&*list, &*f3)
    }
}

/// Every function but C_Initialize and C_Finalize, with `h` as the session handle of
/// those that take one and zeros everywhere else; the ones that end a session or its
/// login come last.
fn call_all(f: &CK_FUNCTION_LIST_3_0, h: CK_SESSION_HANDLE) -> Vec<(&'static str, CK_RV)> {
    // SAFETY: every call has the exact signature from the table; every pointer is NULL,
    // which the module must check, and the library stays loaded.
    unsafe {
        vec![
            (
                "C_GetInfo",
                (f.C_GetInfo.expect("C_GetInfo in the table"))(z()),
            ),
            (
                "C_GetFunctionList",
                (f.C_GetFunctionList.expect("C_GetFunctionList in the table"))(z()),
            ),
            (
                "C_GetSlotList",
                (f.C_GetSlotList.expect("C_GetSlotList in the table"))(z(), z(), z()),
            ),
            (
                "C_GetSlotInfo",
                (f.C_GetSlotInfo.expect("C_GetSlotInfo in the table"))(z(), z()),
            ),
            (
                "C_GetTokenInfo",
                (f.C_GetTokenInfo.expect("C_GetTokenInfo in the table"))(z(), z()),
            ),
            (
                "C_GetMechanismList",
                (f.C_GetMechanismList
                    .expect("C_GetMechanismList in the table"))(z(), z(), z()),
            ),
            (
                "C_GetMechanismInfo",
                (f.C_GetMechanismInfo
                    .expect("C_GetMechanismInfo in the table"))(z(), z(), z()),
            ),
            (
                "C_InitToken",
                (f.C_InitToken.expect("C_InitToken in the table"))(z(), z(), z(), z()),
            ),
            (
                "C_InitPIN",
                (f.C_InitPIN.expect("C_InitPIN in the table"))(h, z(), z()),
            ),
            (
                "C_SetPIN",
                (f.C_SetPIN.expect("C_SetPIN in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_OpenSession",
                (f.C_OpenSession.expect("C_OpenSession in the table"))(z(), z(), z(), z(), z()),
            ),
            (
                "C_GetSessionInfo",
                (f.C_GetSessionInfo.expect("C_GetSessionInfo in the table"))(h, z()),
            ),
            (
                "C_GetOperationState",
                (f.C_GetOperationState
                    .expect("C_GetOperationState in the table"))(h, z(), z()),
            ),
            (
                "C_SetOperationState",
                (f.C_SetOperationState
                    .expect("C_SetOperationState in the table"))(
                    h, z(), z(), z(), z()
                ),
            ),
            (
                "C_Login",
                (f.C_Login.expect("C_Login in the table"))(h, z(), z(), z()),
            ),
            (
                "C_CreateObject",
                (f.C_CreateObject.expect("C_CreateObject in the table"))(h, z(), z(), z()),
            ),
            (
                "C_CopyObject",
                (f.C_CopyObject.expect("C_CopyObject in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_DestroyObject",
                (f.C_DestroyObject.expect("C_DestroyObject in the table"))(h, z()),
            ),
            (
                "C_GetObjectSize",
                (f.C_GetObjectSize.expect("C_GetObjectSize in the table"))(h, z(), z()),
            ),
            (
                "C_GetAttributeValue",
                (f.C_GetAttributeValue
                    .expect("C_GetAttributeValue in the table"))(h, z(), z(), z()),
            ),
            (
                "C_SetAttributeValue",
                (f.C_SetAttributeValue
                    .expect("C_SetAttributeValue in the table"))(h, z(), z(), z()),
            ),
            (
                "C_FindObjectsInit",
                (f.C_FindObjectsInit.expect("C_FindObjectsInit in the table"))(h, z(), z()),
            ),
            (
                "C_FindObjects",
                (f.C_FindObjects.expect("C_FindObjects in the table"))(h, z(), z(), z()),
            ),
            (
                "C_FindObjectsFinal",
                (f.C_FindObjectsFinal
                    .expect("C_FindObjectsFinal in the table"))(h),
            ),
            (
                "C_EncryptInit",
                (f.C_EncryptInit.expect("C_EncryptInit in the table"))(h, z(), z()),
            ),
            (
                "C_Encrypt",
                (f.C_Encrypt.expect("C_Encrypt in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_EncryptUpdate",
                (f.C_EncryptUpdate.expect("C_EncryptUpdate in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_EncryptFinal",
                (f.C_EncryptFinal.expect("C_EncryptFinal in the table"))(h, z(), z()),
            ),
            (
                "C_DecryptInit",
                (f.C_DecryptInit.expect("C_DecryptInit in the table"))(h, z(), z()),
            ),
            (
                "C_Decrypt",
                (f.C_Decrypt.expect("C_Decrypt in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_DecryptUpdate",
                (f.C_DecryptUpdate.expect("C_DecryptUpdate in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_DecryptFinal",
                (f.C_DecryptFinal.expect("C_DecryptFinal in the table"))(h, z(), z()),
            ),
            (
                "C_DigestInit",
                (f.C_DigestInit.expect("C_DigestInit in the table"))(h, z()),
            ),
            (
                "C_Digest",
                (f.C_Digest.expect("C_Digest in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_DigestUpdate",
                (f.C_DigestUpdate.expect("C_DigestUpdate in the table"))(h, z(), z()),
            ),
            (
                "C_DigestKey",
                (f.C_DigestKey.expect("C_DigestKey in the table"))(h, z()),
            ),
            (
                "C_DigestFinal",
                (f.C_DigestFinal.expect("C_DigestFinal in the table"))(h, z(), z()),
            ),
            (
                "C_SignInit",
                (f.C_SignInit.expect("C_SignInit in the table"))(h, z(), z()),
            ),
            (
                "C_Sign",
                (f.C_Sign.expect("C_Sign in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_SignUpdate",
                (f.C_SignUpdate.expect("C_SignUpdate in the table"))(h, z(), z()),
            ),
            (
                "C_SignFinal",
                (f.C_SignFinal.expect("C_SignFinal in the table"))(h, z(), z()),
            ),
            (
                "C_SignRecoverInit",
                (f.C_SignRecoverInit.expect("C_SignRecoverInit in the table"))(h, z(), z()),
            ),
            (
                "C_SignRecover",
                (f.C_SignRecover.expect("C_SignRecover in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_VerifyInit",
                (f.C_VerifyInit.expect("C_VerifyInit in the table"))(h, z(), z()),
            ),
            (
                "C_Verify",
                (f.C_Verify.expect("C_Verify in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_VerifyUpdate",
                (f.C_VerifyUpdate.expect("C_VerifyUpdate in the table"))(h, z(), z()),
            ),
            (
                "C_VerifyFinal",
                (f.C_VerifyFinal.expect("C_VerifyFinal in the table"))(h, z(), z()),
            ),
            (
                "C_VerifyRecoverInit",
                (f.C_VerifyRecoverInit
                    .expect("C_VerifyRecoverInit in the table"))(h, z(), z()),
            ),
            (
                "C_VerifyRecover",
                (f.C_VerifyRecover.expect("C_VerifyRecover in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_DigestEncryptUpdate",
                (f.C_DigestEncryptUpdate
                    .expect("C_DigestEncryptUpdate in the table"))(
                    h, z(), z(), z(), z()
                ),
            ),
            (
                "C_DecryptDigestUpdate",
                (f.C_DecryptDigestUpdate
                    .expect("C_DecryptDigestUpdate in the table"))(
                    h, z(), z(), z(), z()
                ),
            ),
            (
                "C_SignEncryptUpdate",
                (f.C_SignEncryptUpdate
                    .expect("C_SignEncryptUpdate in the table"))(
                    h, z(), z(), z(), z()
                ),
            ),
            (
                "C_DecryptVerifyUpdate",
                (f.C_DecryptVerifyUpdate
                    .expect("C_DecryptVerifyUpdate in the table"))(
                    h, z(), z(), z(), z()
                ),
            ),
            (
                "C_GenerateKey",
                (f.C_GenerateKey.expect("C_GenerateKey in the table"))(h, z(), z(), z(), z()),
            ),
            (
                "C_GenerateKeyPair",
                (f.C_GenerateKeyPair.expect("C_GenerateKeyPair in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_WrapKey",
                (f.C_WrapKey.expect("C_WrapKey in the table"))(h, z(), z(), z(), z(), z()),
            ),
            (
                "C_UnwrapKey",
                (f.C_UnwrapKey.expect("C_UnwrapKey in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_DeriveKey",
                (f.C_DeriveKey.expect("C_DeriveKey in the table"))(h, z(), z(), z(), z(), z()),
            ),
            (
                "C_SeedRandom",
                (f.C_SeedRandom.expect("C_SeedRandom in the table"))(h, z(), z()),
            ),
            (
                "C_GenerateRandom",
                (f.C_GenerateRandom.expect("C_GenerateRandom in the table"))(h, z(), z()),
            ),
            (
                "C_GetFunctionStatus",
                (f.C_GetFunctionStatus
                    .expect("C_GetFunctionStatus in the table"))(h),
            ),
            (
                "C_CancelFunction",
                (f.C_CancelFunction.expect("C_CancelFunction in the table"))(h),
            ),
            (
                "C_WaitForSlotEvent",
                (f.C_WaitForSlotEvent
                    .expect("C_WaitForSlotEvent in the table"))(z(), z(), z()),
            ),
            (
                "C_GetInterfaceList",
                (f.C_GetInterfaceList
                    .expect("C_GetInterfaceList in the table"))(z(), z()),
            ),
            (
                "C_GetInterface",
                (f.C_GetInterface.expect("C_GetInterface in the table"))(z(), z(), z(), z()),
            ),
            (
                "C_LoginUser",
                (f.C_LoginUser.expect("C_LoginUser in the table"))(h, z(), z(), z(), z(), z()),
            ),
            (
                "C_SessionCancel",
                (f.C_SessionCancel.expect("C_SessionCancel in the table"))(h, z()),
            ),
            (
                "C_MessageEncryptInit",
                (f.C_MessageEncryptInit
                    .expect("C_MessageEncryptInit in the table"))(h, z(), z()),
            ),
            (
                "C_EncryptMessage",
                (f.C_EncryptMessage.expect("C_EncryptMessage in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_EncryptMessageBegin",
                (f.C_EncryptMessageBegin
                    .expect("C_EncryptMessageBegin in the table"))(
                    h, z(), z(), z(), z()
                ),
            ),
            (
                "C_EncryptMessageNext",
                (f.C_EncryptMessageNext
                    .expect("C_EncryptMessageNext in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_MessageEncryptFinal",
                (f.C_MessageEncryptFinal
                    .expect("C_MessageEncryptFinal in the table"))(h),
            ),
            (
                "C_MessageDecryptInit",
                (f.C_MessageDecryptInit
                    .expect("C_MessageDecryptInit in the table"))(h, z(), z()),
            ),
            (
                "C_DecryptMessage",
                (f.C_DecryptMessage.expect("C_DecryptMessage in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_DecryptMessageBegin",
                (f.C_DecryptMessageBegin
                    .expect("C_DecryptMessageBegin in the table"))(
                    h, z(), z(), z(), z()
                ),
            ),
            (
                "C_DecryptMessageNext",
                (f.C_DecryptMessageNext
                    .expect("C_DecryptMessageNext in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_MessageDecryptFinal",
                (f.C_MessageDecryptFinal
                    .expect("C_MessageDecryptFinal in the table"))(h),
            ),
            (
                "C_MessageSignInit",
                (f.C_MessageSignInit.expect("C_MessageSignInit in the table"))(h, z(), z()),
            ),
            (
                "C_SignMessage",
                (f.C_SignMessage.expect("C_SignMessage in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_SignMessageBegin",
                (f.C_SignMessageBegin
                    .expect("C_SignMessageBegin in the table"))(h, z(), z()),
            ),
            (
                "C_SignMessageNext",
                (f.C_SignMessageNext.expect("C_SignMessageNext in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_MessageSignFinal",
                (f.C_MessageSignFinal
                    .expect("C_MessageSignFinal in the table"))(h),
            ),
            (
                "C_MessageVerifyInit",
                (f.C_MessageVerifyInit
                    .expect("C_MessageVerifyInit in the table"))(h, z(), z()),
            ),
            (
                "C_VerifyMessage",
                (f.C_VerifyMessage.expect("C_VerifyMessage in the table"))(
                    h,
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                    z(),
                ),
            ),
            (
                "C_VerifyMessageBegin",
                (f.C_VerifyMessageBegin
                    .expect("C_VerifyMessageBegin in the table"))(h, z(), z()),
            ),
            (
                "C_VerifyMessageNext",
                (f.C_VerifyMessageNext
                    .expect("C_VerifyMessageNext in the table"))(
                    h, z(), z(), z(), z(), z(), z()
                ),
            ),
            (
                "C_MessageVerifyFinal",
                (f.C_MessageVerifyFinal
                    .expect("C_MessageVerifyFinal in the table"))(h),
            ),
            // Last: they end the session (or its login).
            (
                "C_CloseSession",
                (f.C_CloseSession.expect("C_CloseSession in the table"))(h),
            ),
            (
                "C_CloseAllSessions",
                (f.C_CloseAllSessions
                    .expect("C_CloseAllSessions in the table"))(z()),
            ),
            ("C_Logout", (f.C_Logout.expect("C_Logout in the table"))(h)),
        ]
    }
}

#[test]
fn every_export_is_the_tables_entry_and_refuses_until_c_initialize() {
    let lib = library();
    let mut failures = Vec::new();

    // A NULL function-list pointer, and NULL everywhere for the interface getters.
    // SAFETY: the exact signatures; NULL is what is being tested.
    let (gfl_null, gil_null, gi_null) = unsafe {
        (
            (*lib.get::<GetFunctionList>(b"C_GetFunctionList\0").unwrap())(ptr::null_mut()),
            (*lib
                .get::<GetInterfaceList>(b"C_GetInterfaceList\0")
                .unwrap())(ptr::null_mut(), ptr::null_mut()),
            (*lib.get::<GetInterface>(b"C_GetInterface\0").unwrap())(
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                0,
            ),
        )
    };
    for (what, rv) in [
        ("C_GetFunctionList(NULL)", gfl_null),
        ("C_GetInterfaceList(NULL, NULL)", gil_null),
        ("C_GetInterface(NULL, NULL, NULL, 0)", gi_null),
    ] {
        if rv != CKR_ARGUMENTS_BAD {
            failures.push(format!(
                "{what}: {} (expected CKR_ARGUMENTS_BAD)",
                rv_name(rv)
            ));
        }
    }

    let (f2, f3) = tables(lib);
    // Every exported C_* symbol is the one both tables hand out.
    let from_3 = addresses!(f3;
        C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList, C_GetSlotList,
        C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList, C_GetMechanismInfo, C_InitToken,
        C_InitPIN, C_SetPIN, C_OpenSession, C_CloseSession, C_CloseAllSessions,
        C_GetSessionInfo, C_GetOperationState, C_SetOperationState, C_Login, C_Logout,
        C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize,
        C_GetAttributeValue, C_SetAttributeValue, C_FindObjectsInit, C_FindObjects,
        C_FindObjectsFinal, C_EncryptInit, C_Encrypt, C_EncryptUpdate, C_EncryptFinal,
        C_DecryptInit, C_Decrypt, C_DecryptUpdate, C_DecryptFinal, C_DigestInit, C_Digest,
        C_DigestUpdate, C_DigestKey, C_DigestFinal, C_SignInit, C_Sign, C_SignUpdate,
        C_SignFinal, C_SignRecoverInit, C_SignRecover, C_VerifyInit, C_Verify,
        C_VerifyUpdate, C_VerifyFinal, C_VerifyRecoverInit, C_VerifyRecover,
        C_DigestEncryptUpdate, C_DecryptDigestUpdate, C_SignEncryptUpdate,
        C_DecryptVerifyUpdate, C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey,
        C_DeriveKey, C_SeedRandom, C_GenerateRandom, C_GetFunctionStatus, C_CancelFunction,
        C_WaitForSlotEvent, C_GetInterfaceList, C_GetInterface, C_LoginUser,
        C_SessionCancel, C_MessageEncryptInit, C_EncryptMessage, C_EncryptMessageBegin,
        C_EncryptMessageNext, C_MessageEncryptFinal, C_MessageDecryptInit,
        C_DecryptMessage, C_DecryptMessageBegin, C_DecryptMessageNext,
        C_MessageDecryptFinal, C_MessageSignInit, C_SignMessage, C_SignMessageBegin,
        C_SignMessageNext, C_MessageSignFinal, C_MessageVerifyInit, C_VerifyMessage,
        C_VerifyMessageBegin, C_VerifyMessageNext, C_MessageVerifyFinal
    );
    let from_240 = addresses!(f2;
        C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList, C_GetSlotList,
        C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList, C_GetMechanismInfo, C_InitToken,
        C_InitPIN, C_SetPIN, C_OpenSession, C_CloseSession, C_CloseAllSessions,
        C_GetSessionInfo, C_GetOperationState, C_SetOperationState, C_Login, C_Logout,
        C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize,
        C_GetAttributeValue, C_SetAttributeValue, C_FindObjectsInit, C_FindObjects,
        C_FindObjectsFinal, C_EncryptInit, C_Encrypt, C_EncryptUpdate, C_EncryptFinal,
        C_DecryptInit, C_Decrypt, C_DecryptUpdate, C_DecryptFinal, C_DigestInit, C_Digest,
        C_DigestUpdate, C_DigestKey, C_DigestFinal, C_SignInit, C_Sign, C_SignUpdate,
        C_SignFinal, C_SignRecoverInit, C_SignRecover, C_VerifyInit, C_Verify,
        C_VerifyUpdate, C_VerifyFinal, C_VerifyRecoverInit, C_VerifyRecover,
        C_DigestEncryptUpdate, C_DecryptDigestUpdate, C_SignEncryptUpdate,
        C_DecryptVerifyUpdate, C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey,
        C_DeriveKey, C_SeedRandom, C_GenerateRandom, C_GetFunctionStatus, C_CancelFunction,
        C_WaitForSlotEvent
    );
    assert_eq!(from_3.len(), 92, "the 3.0 table has 92 functions");
    assert_eq!(from_240.len(), 68, "the 2.40 table has 68 functions");
    for (name, addr) in &from_3 {
        let exported = symbol(lib, name);
        if *addr != Some(exported) {
            failures.push(format!(
                "{name}: the 3.0 table holds {addr:x?}, the export is {exported:#x}"
            ));
        }
    }
    for (name, addr) in &from_240 {
        if *addr != Some(symbol(lib, name)) {
            failures.push(format!("{name}: the 2.40 table differs from the export"));
        }
    }

    // Before C_Initialize: CKR_CRYPTOKI_NOT_INITIALIZED from everything but the list
    // getters, whatever the arguments; then the same again after C_Initialize+C_Finalize.
    let list_getters = ["C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface"];
    let check_uninitialized = |failures: &mut Vec<String>, when: &str| {
        let results = call_all(f3, 0);
        assert_eq!(
            results.len(),
            90,
            "every function but C_Initialize and C_Finalize"
        );
        for (name, rv) in results {
            let expected = if list_getters.contains(&name) {
                CKR_ARGUMENTS_BAD
            } else {
                CKR_CRYPTOKI_NOT_INITIALIZED
            };
            if rv != expected {
                failures.push(format!(
                    "{when}: {name}: {} (expected {})",
                    rv_name(rv),
                    rv_name(expected)
                ));
            }
        }
        // SAFETY: NULL is C_Finalize's only valid argument.
        let rv = unsafe { (f3.C_Finalize.unwrap())(ptr::null_mut()) };
        if rv != CKR_CRYPTOKI_NOT_INITIALIZED {
            failures.push(format!("{when}: C_Finalize: {}", rv_name(rv)));
        }
    };
    check_uninitialized(&mut failures, "before C_Initialize");

    let _world = P11World::new(&[]);
    // SAFETY: NULL asks for the defaults.
    let rv = unsafe { (f3.C_Initialize.unwrap())(ptr::null_mut()) };
    assert_eq!(rv, CKR_OK);
    // SAFETY: as above.
    assert_eq!(unsafe { (f3.C_Finalize.unwrap())(ptr::null_mut()) }, CKR_OK);
    check_uninitialized(&mut failures, "after C_Finalize");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The functions whose first argument is a session handle: with handle 0 (never a
/// session) each answers CKR_SESSION_HANDLE_INVALID before it looks at anything else.
const SESSION_FUNCTIONS: [&str; 77] = [
    "C_InitPIN",
    "C_SetPIN",
    "C_CloseSession",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_GetObjectSize",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_SignInit",
    "C_Sign",
    "C_SignUpdate",
    "C_SignFinal",
    "C_SignRecoverInit",
    "C_SignRecover",
    "C_VerifyInit",
    "C_Verify",
    "C_VerifyUpdate",
    "C_VerifyFinal",
    "C_VerifyRecoverInit",
    "C_VerifyRecover",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_GenerateKey",
    "C_GenerateKeyPair",
    "C_WrapKey",
    "C_UnwrapKey",
    "C_DeriveKey",
    "C_SeedRandom",
    "C_GenerateRandom",
    "C_GetFunctionStatus",
    "C_CancelFunction",
    "C_LoginUser",
    "C_SessionCancel",
    "C_MessageEncryptInit",
    "C_EncryptMessage",
    "C_EncryptMessageBegin",
    "C_EncryptMessageNext",
    "C_MessageEncryptFinal",
    "C_MessageDecryptInit",
    "C_DecryptMessage",
    "C_DecryptMessageBegin",
    "C_DecryptMessageNext",
    "C_MessageDecryptFinal",
    "C_MessageSignInit",
    "C_SignMessage",
    "C_SignMessageBegin",
    "C_SignMessageNext",
    "C_MessageSignFinal",
    "C_MessageVerifyInit",
    "C_VerifyMessage",
    "C_VerifyMessageBegin",
    "C_VerifyMessageNext",
    "C_MessageVerifyFinal",
];

/// What may succeed with NULL pointers and zeros: closing every session of slot 0 (the
/// card, which has none) reads and writes nothing.
const MAY_SUCCEED_ON_ZEROS: [&str; 1] = ["C_CloseAllSessions"];
/// What may succeed with a live session and NULL pointers: the calls that take nothing
/// but the handle (or slot 0), and those for which NULL with a length of zero is valid —
/// an empty template finds every object, zero random bytes are zero bytes, and
/// C_SessionCancel with no flags cancels nothing.
const MAY_SUCCEED_IN_A_SESSION: [&str; 7] = [
    "C_FindObjectsInit",
    "C_FindObjectsFinal",
    "C_GenerateRandom",
    "C_SessionCancel",
    "C_Logout",
    "C_CloseSession",
    "C_CloseAllSessions",
];

#[test]
fn no_function_crashes_on_null_pointers_zero_handles_or_a_live_session() {
    let lib = library();
    let (_, f3) = tables(lib);
    let _world = P11World::new(&[]);
    // SAFETY: NULL asks for the defaults.
    let rv = unsafe { (f3.C_Initialize.unwrap())(ptr::null_mut()) };
    assert_eq!(rv, CKR_OK);
    let mut failures = Vec::new();
    for (name, rv) in call_all(f3, 0) {
        if SESSION_FUNCTIONS.contains(&name) && rv != CKR_SESSION_HANDLE_INVALID {
            failures.push(format!(
                "zeros: {name}: {} before the session check",
                rv_name(rv)
            ));
        }
        if rv == CKR_OK && !MAY_SUCCEED_ON_ZEROS.contains(&name) {
            failures.push(format!("zeros: {name} succeeded"));
        }
        if rv == CKR_GENERAL_ERROR || rv == CKR_CRYPTOKI_NOT_INITIALIZED {
            failures.push(format!("zeros: {name}: {}", rv_name(rv)));
        }
    }
    // A logged-in R/W session, and NULL for every other argument.
    let mut h: CK_SESSION_HANDLE = 0;
    // SAFETY: a valid out-pointer; no callback.
    let rv = unsafe {
        (f3.C_OpenSession.unwrap())(
            0,
            CKF_SERIAL_SESSION | CKF_RW_SESSION,
            ptr::null_mut(),
            None,
            &mut h,
        )
    };
    assert_eq!(rv, CKR_OK, "C_OpenSession");
    let mut pin = DEFAULT_PIN.as_bytes().to_vec();
    // SAFETY: the PIN buffer holds the length given.
    let rv = unsafe { (f3.C_Login.unwrap())(h, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG) };
    assert_eq!(rv, CKR_OK, "C_Login");
    for (name, rv) in call_all(f3, h) {
        if rv == CKR_OK && !MAY_SUCCEED_IN_A_SESSION.contains(&name) {
            failures.push(format!("session: {name} succeeded"));
        }
        if rv == CKR_GENERAL_ERROR {
            failures.push(format!("session: {name}: {}", rv_name(rv)));
        }
    }
    // SAFETY: NULL is C_Finalize's only valid argument.
    assert_eq!(unsafe { (f3.C_Finalize.unwrap())(ptr::null_mut()) }, CKR_OK);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
