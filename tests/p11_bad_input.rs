//! Bad input at the PKCS#11 edge: the built libtpmvsc.so is opened with `libloading` and
//! its raw `C_*` functions are called through the `CK_FUNCTION_LIST` with NULL pointers,
//! short buffers, stale and random handles, wrong mechanisms and wrong states. Every
//! call must come back with the exact CK_RV PKCS#11 2.40 (3.0 for the interface
//! functions) gives for that case, and never crash the host process.
//!
//! The module is a per-process singleton configured by environment: each test sets
//! TPMVSC_STORE / TPMVSC_TCTI / TPMVSC_LOCK_DIR before loading it, which is sound only
//! with one process per test (`cargo nextest run`, as the README's test command says).

// Raw calls into the module with NULL pointers and bad handles are the point of this file;
// the `cryptoki` crate would refuse to make them.
#![allow(unsafe_code)]

#[macro_use]
mod common;

use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::*;
use common::{Cli, DEFAULT_PIN};
use cryptoki_sys::*;

#[test]
fn every_function_but_the_list_getters_needs_c_initialize_first() {
    let w = RawWorld::new();
    let f = w.f;
    let mut c = Checks::default();
    let nin = CKR_CRYPTOKI_NOT_INITIALIZED;
    let mut info: CK_INFO = unsafe_zeroed();
    c.rv(p11!(f, C_GetInfo(&mut info)), nin, "C_GetInfo");
    let mut n: CK_ULONG = 0;
    c.rv(
        p11!(f, C_GetSlotList(CK_FALSE, ptr::null_mut(), &mut n)),
        nin,
        "C_GetSlotList",
    );
    let mut si: CK_SLOT_INFO = unsafe_zeroed();
    c.rv(p11!(f, C_GetSlotInfo(0, &mut si)), nin, "C_GetSlotInfo");
    let mut ti: CK_TOKEN_INFO = unsafe_zeroed();
    c.rv(p11!(f, C_GetTokenInfo(0, &mut ti)), nin, "C_GetTokenInfo");
    c.rv(
        p11!(f, C_GetMechanismList(0, ptr::null_mut(), &mut n)),
        nin,
        "C_GetMechanismList",
    );
    let mut h: CK_SESSION_HANDLE = 0;
    c.rv(
        p11!(
            f,
            C_OpenSession(0, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut h)
        ),
        nin,
        "C_OpenSession",
    );
    c.rv(p11!(f, C_CloseSession(1)), nin, "C_CloseSession");
    c.rv(p11!(f, C_CloseAllSessions(0)), nin, "C_CloseAllSessions");
    let mut sinfo: CK_SESSION_INFO = unsafe_zeroed();
    c.rv(
        p11!(f, C_GetSessionInfo(1, &mut sinfo)),
        nin,
        "C_GetSessionInfo",
    );
    let mut pin = DEFAULT_PIN.as_bytes().to_vec();
    c.rv(
        p11!(f, C_Login(1, CKU_USER, pin.as_mut_ptr(), ulong(pin.len()))),
        nin,
        "C_Login",
    );
    let mut m = mech(CKM_SHA256);
    c.rv(p11!(f, C_DigestInit(1, &mut m)), nin, "C_DigestInit");
    let mut buf = [0u8; 8];
    c.rv(
        p11!(f, C_GenerateRandom(1, buf.as_mut_ptr(), 8)),
        nin,
        "C_GenerateRandom",
    );
    c.rv(
        p11!(
            f,
            C_EncryptUpdate(1, ptr::null_mut(), 0, ptr::null_mut(), ptr::null_mut())
        ),
        nin,
        "C_EncryptUpdate (not offered, but not initialized comes first)",
    );
    let mut slot: CK_SLOT_ID = 0;
    c.rv(
        p11!(
            f,
            C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, ptr::null_mut())
        ),
        nin,
        "C_WaitForSlotEvent",
    );
    c.rv(
        p11!(f, C_Finalize(ptr::null_mut())),
        nin,
        "C_Finalize before C_Initialize",
    );

    // The list getters work without C_Initialize.
    let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
    c.rv(
        p11!(f, C_GetFunctionList(&mut list)),
        CKR_OK,
        "C_GetFunctionList",
    );
    c.that(
        ptr::eq(list as *const CK_FUNCTION_LIST, f),
        "C_GetFunctionList gives the same table twice",
    );
    c.that(
        f.version.major == 2 && f.version.minor == 40,
        "the 2.40 function list says 2.40",
    );
    let mut count: CK_ULONG = 0;
    // SAFETY: NULL list and a valid count pointer.
    let rv = unsafe { (w.get_interface_list)(ptr::null_mut(), &mut count) };
    c.rv(
        rv,
        CKR_OK,
        "C_GetInterfaceList(NULL, &count) before C_Initialize",
    );

    // After C_Initialize and C_Finalize the module is uninitialized again.
    w.init();
    c.rv(
        p11!(f, C_GetInfo(&mut info)),
        CKR_OK,
        "C_GetInfo after C_Initialize",
    );
    w.finalize();
    c.rv(
        p11!(f, C_GetInfo(&mut info)),
        nin,
        "C_GetInfo after C_Finalize",
    );
    c.rv(
        p11!(f, C_Finalize(ptr::null_mut())),
        nin,
        "C_Finalize twice",
    );
    c.done();
}

#[test]
fn c_initialize_and_c_finalize_check_their_arguments() {
    let w = RawWorld::new();
    let f = w.f;
    let mut c = Checks::default();
    let mut info: CK_INFO = unsafe_zeroed();

    let mut reserved = 0u8;
    let mut a = init_args();
    a.pReserved = &mut reserved as *mut u8 as *mut c_void;
    c.rv(
        p11!(
            f,
            C_Initialize(&mut a as *mut CK_C_INITIALIZE_ARGS as *mut c_void)
        ),
        CKR_ARGUMENTS_BAD,
        "C_Initialize with pReserved non-NULL",
    );
    let mut a = init_args();
    a.CreateMutex = Some(create_mutex);
    a.DestroyMutex = Some(destroy_mutex);
    a.LockMutex = Some(lock_mutex);
    a.UnlockMutex = Some(unlock_mutex);
    c.rv(
        p11!(
            f,
            C_Initialize(&mut a as *mut CK_C_INITIALIZE_ARGS as *mut c_void)
        ),
        CKR_CANT_LOCK,
        "C_Initialize with mutex callbacks and no CKF_OS_LOCKING_OK",
    );
    for given in 1..4 {
        let mut a = init_args();
        a.flags = CKF_OS_LOCKING_OK;
        a.CreateMutex = Some(create_mutex);
        if given >= 2 {
            a.DestroyMutex = Some(destroy_mutex);
        }
        if given >= 3 {
            a.LockMutex = Some(lock_mutex);
        }
        c.rv(
            p11!(
                f,
                C_Initialize(&mut a as *mut CK_C_INITIALIZE_ARGS as *mut c_void)
            ),
            CKR_ARGUMENTS_BAD,
            &format!("C_Initialize with {given} of the 4 mutex callbacks"),
        );
    }
    c.rv(
        p11!(f, C_GetInfo(&mut info)),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "a refused C_Initialize initializes nothing",
    );

    // All four callbacks with CKF_OS_LOCKING_OK: the module may use the OS's locks.
    let mut a = init_args();
    a.flags = CKF_OS_LOCKING_OK;
    a.CreateMutex = Some(create_mutex);
    a.DestroyMutex = Some(destroy_mutex);
    a.LockMutex = Some(lock_mutex);
    a.UnlockMutex = Some(unlock_mutex);
    c.rv(
        p11!(
            f,
            C_Initialize(&mut a as *mut CK_C_INITIALIZE_ARGS as *mut c_void)
        ),
        CKR_OK,
        "C_Initialize with 4 callbacks and CKF_OS_LOCKING_OK",
    );
    c.rv(
        p11!(f, C_Initialize(ptr::null_mut())),
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
        "C_Initialize twice",
    );
    c.rv(
        p11!(f, C_Finalize(&mut reserved as *mut u8 as *mut c_void)),
        CKR_ARGUMENTS_BAD,
        "C_Finalize(non-NULL)",
    );
    c.rv(
        p11!(f, C_GetInfo(&mut info)),
        CKR_OK,
        "a refused C_Finalize leaves the module initialized",
    );
    c.rv(
        p11!(f, C_Finalize(ptr::null_mut())),
        CKR_OK,
        "C_Finalize(NULL)",
    );

    // Arguments without callbacks and without flags: fine.
    let mut a = init_args();
    c.rv(
        p11!(
            f,
            C_Initialize(&mut a as *mut CK_C_INITIALIZE_ARGS as *mut c_void)
        ),
        CKR_OK,
        "C_Initialize with empty CK_C_INITIALIZE_ARGS",
    );
    c.rv(p11!(f, C_GetInfo(&mut info)), CKR_OK, "C_GetInfo");
    c.that(
        info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40,
        "C_GetInfo says 2.40",
    );
    c.rv(
        p11!(f, C_Finalize(ptr::null_mut())),
        CKR_OK,
        "C_Finalize(NULL)",
    );
    c.done();
}

#[test]
fn null_pointers_are_refused_with_arguments_bad_and_empty_inputs_are_fine() {
    let w = RawWorld::new();
    let f = w.f;
    w.init();
    let mut c = Checks::default();
    let bad = CKR_ARGUMENTS_BAD;
    let slot = w.slot();
    let h = w.open(slot, true);

    c.rv(p11!(f, C_GetInfo(ptr::null_mut())), bad, "C_GetInfo(NULL)");
    c.rv(
        p11!(f, C_GetSlotList(CK_FALSE, ptr::null_mut(), ptr::null_mut())),
        bad,
        "C_GetSlotList(NULL list, NULL count)",
    );
    let mut ids = [0; 4];
    c.rv(
        p11!(
            f,
            C_GetSlotList(CK_FALSE, ids.as_mut_ptr(), ptr::null_mut())
        ),
        bad,
        "C_GetSlotList(list, NULL count)",
    );
    c.rv(
        p11!(f, C_GetSlotInfo(slot, ptr::null_mut())),
        bad,
        "C_GetSlotInfo(NULL)",
    );
    c.rv(
        p11!(f, C_GetTokenInfo(slot, ptr::null_mut())),
        bad,
        "C_GetTokenInfo(NULL)",
    );
    c.rv(
        p11!(
            f,
            C_GetMechanismList(slot, ptr::null_mut(), ptr::null_mut())
        ),
        bad,
        "C_GetMechanismList(NULL count)",
    );
    c.rv(
        p11!(f, C_GetMechanismInfo(slot, CKM_SHA256, ptr::null_mut())),
        bad,
        "C_GetMechanismInfo(NULL)",
    );
    c.rv(
        p11!(
            f,
            C_OpenSession(
                slot,
                CKF_SERIAL_SESSION,
                ptr::null_mut(),
                None,
                ptr::null_mut()
            )
        ),
        bad,
        "C_OpenSession(NULL out)",
    );
    c.rv(
        p11!(f, C_GetSessionInfo(h, ptr::null_mut())),
        bad,
        "C_GetSessionInfo(NULL)",
    );
    c.rv(
        p11!(f, C_Login(h, CKU_USER, ptr::null_mut(), 8)),
        bad,
        "C_Login(NULL pin, 8)",
    );
    c.rv(
        p11!(
            f,
            C_WaitForSlotEvent(CKF_DONT_BLOCK, ptr::null_mut(), ptr::null_mut())
        ),
        bad,
        "C_WaitForSlotEvent(NULL slot)",
    );
    let mut s: CK_SLOT_ID = 0;
    let mut junk = 0u8;
    c.rv(
        p11!(
            f,
            C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut s, &mut junk as *mut u8 as *mut c_void)
        ),
        bad,
        "C_WaitForSlotEvent(reserved non-NULL)",
    );
    let mut new_pin = b"87654321".to_vec();
    c.rv(
        p11!(f, C_SetPIN(h, ptr::null_mut(), 8, new_pin.as_mut_ptr(), 8)),
        bad,
        "C_SetPIN(NULL old, 8)",
    );

    // Objects and searches.
    let mut out: CK_OBJECT_HANDLE = 0;
    c.rv(
        p11!(f, C_CreateObject(h, ptr::null_mut(), 2, &mut out)),
        bad,
        "C_CreateObject(NULL template, 2)",
    );
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_DATA);
    t.bool(CKA_TOKEN, false);
    c.rv(
        p11!(f, C_CreateObject(h, t.ptr(), t.len(), ptr::null_mut())),
        bad,
        "C_CreateObject(NULL out)",
    );
    let mut tn = Template::new();
    tn.ulong(CKA_CLASS, CKO_DATA);
    tn.attrs.push(CK_ATTRIBUTE {
        type_: CKA_LABEL,
        pValue: ptr::null_mut(),
        ulValueLen: 5,
    });
    c.rv(
        p11!(f, C_CreateObject(h, tn.ptr(), tn.len(), &mut out)),
        bad,
        "C_CreateObject with an attribute pValue NULL, ulValueLen 5",
    );
    let mut data = Template::new();
    data.ulong(CKA_CLASS, CKO_DATA);
    data.bool(CKA_TOKEN, false);
    data.bytes(CKA_LABEL, b"d");
    let mut obj: CK_OBJECT_HANDLE = 0;
    c.rv(
        p11!(f, C_CreateObject(h, data.ptr(), data.len(), &mut obj)),
        CKR_OK,
        "C_CreateObject(session data object)",
    );
    c.rv(
        p11!(f, C_GetAttributeValue(h, obj, ptr::null_mut(), 1)),
        bad,
        "C_GetAttributeValue(NULL template, 1)",
    );
    c.rv(
        p11!(f, C_SetAttributeValue(h, obj, ptr::null_mut(), 1)),
        bad,
        "C_SetAttributeValue(NULL template, 1)",
    );
    c.rv(
        p11!(f, C_GetObjectSize(h, obj, ptr::null_mut())),
        bad,
        "C_GetObjectSize(NULL)",
    );
    c.rv(
        p11!(f, C_FindObjectsInit(h, ptr::null_mut(), 1)),
        bad,
        "C_FindObjectsInit(NULL template, 1)",
    );
    c.rv(
        p11!(f, C_FindObjectsInit(h, ptr::null_mut(), 0)),
        CKR_OK,
        "C_FindObjectsInit(NULL, 0) matches everything",
    );
    let mut found = [0; 8];
    c.rv(
        p11!(f, C_FindObjects(h, found.as_mut_ptr(), 8, ptr::null_mut())),
        bad,
        "C_FindObjects(NULL count)",
    );
    let mut n: CK_ULONG = 99;
    c.rv(
        p11!(f, C_FindObjects(h, ptr::null_mut(), 4, &mut n)),
        bad,
        "C_FindObjects(NULL out, max 4)",
    );
    c.rv(
        p11!(f, C_FindObjects(h, ptr::null_mut(), 0, &mut n)),
        CKR_OK,
        "C_FindObjects(NULL out, max 0)",
    );
    c.that(n == 0, "C_FindObjects with max 0 finds 0");
    c.rv(p11!(f, C_FindObjectsFinal(h)), CKR_OK, "C_FindObjectsFinal");

    // Random.
    c.rv(
        p11!(f, C_GenerateRandom(h, ptr::null_mut(), 16)),
        bad,
        "C_GenerateRandom(NULL, 16)",
    );
    c.rv(
        p11!(f, C_GenerateRandom(h, ptr::null_mut(), 0)),
        CKR_OK,
        "C_GenerateRandom(NULL, 0)",
    );

    // Digest.
    c.rv(
        p11!(f, C_DigestInit(h, ptr::null_mut())),
        bad,
        "C_DigestInit(NULL mechanism)",
    );
    let mut m = mech(CKM_SHA256);
    c.rv(
        p11!(f, C_DigestInit(h, &mut m)),
        CKR_OK,
        "C_DigestInit(SHA256)",
    );
    c.rv(
        p11!(f, C_DigestUpdate(h, ptr::null_mut(), 0)),
        CKR_OK,
        "C_DigestUpdate(NULL, 0)",
    );
    let mut dig = [0u8; 32];
    let mut dl: CK_ULONG = 32;
    c.rv(
        p11!(f, C_DigestFinal(h, dig.as_mut_ptr(), &mut dl)),
        CKR_OK,
        "C_DigestFinal after an empty update",
    );
    c.that(hex(&dig) == SHA256_EMPTY, "SHA-256 of nothing");
    c.rv(
        p11!(f, C_DigestInit(h, &mut m)),
        CKR_OK,
        "C_DigestInit(SHA256)",
    );
    c.rv(
        p11!(
            f,
            C_Digest(h, ptr::null_mut(), 0, dig.as_mut_ptr(), ptr::null_mut())
        ),
        bad,
        "C_Digest(NULL length pointer)",
    );
    // Whether that error ended the operation is the module's call; start afresh.
    let _ = p11!(f, C_DigestInit(h, &mut m));
    dl = 32;
    let mut abc = *b"abc";
    let _ = p11!(
        f,
        C_Digest(h, abc.as_mut_ptr(), 3, dig.as_mut_ptr(), &mut dl)
    );
    c.rv(
        p11!(f, C_DigestInit(h, &mut m)),
        CKR_OK,
        "C_DigestInit(SHA256) again",
    );
    dl = 32;
    c.rv(
        p11!(
            f,
            C_Digest(h, ptr::null_mut(), 0, dig.as_mut_ptr(), &mut dl)
        ),
        CKR_OK,
        "C_Digest(NULL, 0)",
    );
    c.that(
        hex(&dig) == SHA256_EMPTY,
        "C_Digest(NULL, 0) is the hash of nothing",
    );
    c.rv(
        p11!(f, C_DigestInit(h, &mut m)),
        CKR_OK,
        "C_DigestInit(SHA256)",
    );
    c.rv(
        p11!(f, C_DigestUpdate(h, ptr::null_mut(), 4)),
        bad,
        "C_DigestUpdate(NULL, 4)",
    );
    let _ = p11!(f, C_DigestFinal(h, dig.as_mut_ptr(), &mut dl));

    // Keys and signing (needs the user).
    w.login(h);
    let mut pt = Template::new();
    pt.bytes(CKA_EC_PARAMS, &P256_OID);
    let mut kt = Template::new();
    kt.bool(CKA_SIGN, true);
    let mut keygen = mech(CKM_EC_KEY_PAIR_GEN);
    let (mut p, mut k) = (0, 0);
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.ptr(),
                pt.len(),
                kt.ptr(),
                kt.len(),
                ptr::null_mut(),
                &mut k
            )
        ),
        bad,
        "C_GenerateKeyPair(NULL public out)",
    );
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.ptr(),
                pt.len(),
                kt.ptr(),
                kt.len(),
                &mut p,
                ptr::null_mut()
            )
        ),
        bad,
        "C_GenerateKeyPair(NULL private out)",
    );
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                ptr::null_mut(),
                pt.ptr(),
                pt.len(),
                kt.ptr(),
                kt.len(),
                &mut p,
                &mut k
            )
        ),
        bad,
        "C_GenerateKeyPair(NULL mechanism)",
    );
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                &mut keygen,
                ptr::null_mut(),
                1,
                kt.ptr(),
                kt.len(),
                &mut p,
                &mut k
            )
        ),
        bad,
        "C_GenerateKeyPair(NULL public template, 1)",
    );
    let (_public, private) = w.ec_key_pair(h);
    c.rv(
        p11!(f, C_SignInit(h, ptr::null_mut(), private)),
        bad,
        "C_SignInit(NULL mechanism)",
    );
    let mut ecdsa = mech(CKM_ECDSA);
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa, private)),
        CKR_OK,
        "C_SignInit(ECDSA)",
    );
    let mut digest = [7u8; 32];
    let mut sig = [0u8; 64];
    c.rv(
        p11!(
            f,
            C_Sign(
                h,
                digest.as_mut_ptr(),
                32,
                sig.as_mut_ptr(),
                ptr::null_mut()
            )
        ),
        bad,
        "C_Sign(NULL signature length pointer)",
    );
    w.cancel(h);
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa, private)),
        CKR_OK,
        "C_SignInit(ECDSA) again",
    );
    c.rv(
        p11!(f, C_Sign(h, ptr::null_mut(), 32, sig.as_mut_ptr(), &mut dl)),
        bad,
        "C_Sign(NULL data, 32)",
    );
    c.done();
}

#[test]
fn variable_length_outputs_follow_the_two_call_convention() {
    let w = RawWorld::new();
    let f = w.f;
    w.init();
    let mut c = Checks::default();

    // Slot list.
    let mut n: CK_ULONG = 0;
    c.rv(
        p11!(f, C_GetSlotList(CK_TRUE, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_GetSlotList(NULL list) gives the count",
    );
    c.that(n == 1, &format!("one slot, count {n}"));
    let mut ids = [CK_SLOT_ID::MAX; 2];
    n = 0;
    c.rv(
        p11!(f, C_GetSlotList(CK_TRUE, ids.as_mut_ptr(), &mut n)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetSlotList with count 0",
    );
    c.that(
        n == 1,
        &format!("C_GetSlotList writes the needed count, got {n}"),
    );
    c.that(
        ids == [CK_SLOT_ID::MAX; 2],
        "nothing written to a too-small slot list",
    );
    n = 2;
    c.rv(
        p11!(f, C_GetSlotList(CK_TRUE, ids.as_mut_ptr(), &mut n)),
        CKR_OK,
        "C_GetSlotList with room",
    );
    c.that(n == 1, "C_GetSlotList writes the real count");
    let slot = ids[0];

    // Mechanism list.
    let mut mn: CK_ULONG = 0;
    c.rv(
        p11!(f, C_GetMechanismList(slot, ptr::null_mut(), &mut mn)),
        CKR_OK,
        "C_GetMechanismList(NULL list)",
    );
    c.that(mn > 10, &format!("mechanism count {mn}"));
    let want = mn;
    let mut mechs = vec![CK_MECHANISM_TYPE::MAX; usize::try_from(want).expect("count")];
    let mut short = want - 1;
    c.rv(
        p11!(f, C_GetMechanismList(slot, mechs.as_mut_ptr(), &mut short)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetMechanismList one entry short",
    );
    c.that(short == want, "C_GetMechanismList writes the needed count");
    mn = 0;
    c.rv(
        p11!(f, C_GetMechanismList(slot, mechs.as_mut_ptr(), &mut mn)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetMechanismList with count 0",
    );
    c.that(mn == want, "C_GetMechanismList writes the needed count");
    c.rv(
        p11!(f, C_GetMechanismList(slot, mechs.as_mut_ptr(), &mut mn)),
        CKR_OK,
        "C_GetMechanismList with room",
    );
    c.that(mechs.contains(&CKM_ECDSA), "CKM_ECDSA is listed");

    let h = w.open(slot, true);

    // Digest: size query, short buffer, then the real call on the same operation.
    let mut m = mech(CKM_SHA256);
    c.rv(p11!(f, C_DigestInit(h, &mut m)), CKR_OK, "C_DigestInit");
    let mut abc = *b"abc";
    let mut dl: CK_ULONG = 0;
    c.rv(
        p11!(
            f,
            C_Digest(h, abc.as_mut_ptr(), 3, ptr::null_mut(), &mut dl)
        ),
        CKR_OK,
        "C_Digest(NULL out) size query",
    );
    c.that(dl == 32, &format!("SHA-256 size query gives 32, got {dl}"));
    let mut dig = [0u8; 32];
    dl = 16;
    c.rv(
        p11!(
            f,
            C_Digest(h, abc.as_mut_ptr(), 3, dig.as_mut_ptr(), &mut dl)
        ),
        CKR_BUFFER_TOO_SMALL,
        "C_Digest with a 16-byte buffer",
    );
    c.that(
        dl == 32,
        &format!("C_Digest short buffer reports 32, got {dl}"),
    );
    c.rv(
        p11!(
            f,
            C_Digest(h, abc.as_mut_ptr(), 3, dig.as_mut_ptr(), &mut dl)
        ),
        CKR_OK,
        "C_Digest after a size query and a short buffer (operation still active)",
    );
    c.that(hex(&dig) == SHA256_ABC, "SHA-256(abc)");
    c.rv(
        p11!(
            f,
            C_Digest(h, abc.as_mut_ptr(), 3, dig.as_mut_ptr(), &mut dl)
        ),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_Digest after the digest finished",
    );
    // DigestFinal likewise.
    c.rv(p11!(f, C_DigestInit(h, &mut m)), CKR_OK, "C_DigestInit");
    c.rv(
        p11!(f, C_DigestUpdate(h, abc.as_mut_ptr(), 3)),
        CKR_OK,
        "C_DigestUpdate",
    );
    dl = 0;
    c.rv(
        p11!(f, C_DigestFinal(h, ptr::null_mut(), &mut dl)),
        CKR_OK,
        "C_DigestFinal(NULL out)",
    );
    c.that(dl == 32, "C_DigestFinal size query gives 32");
    dl = 31;
    c.rv(
        p11!(f, C_DigestFinal(h, dig.as_mut_ptr(), &mut dl)),
        CKR_BUFFER_TOO_SMALL,
        "C_DigestFinal with 31 bytes",
    );
    c.that(dl == 32, "C_DigestFinal short buffer reports 32");
    dig = [0; 32];
    c.rv(
        p11!(f, C_DigestFinal(h, dig.as_mut_ptr(), &mut dl)),
        CKR_OK,
        "C_DigestFinal after a short buffer",
    );
    c.that(hex(&dig) == SHA256_ABC, "SHA-256(abc) multi-part");

    // Sign: size query runs no TPM command and keeps the operation.
    w.login(h);
    let (public, private) = w.ec_key_pair(h);
    let mut ecdsa = mech(CKM_ECDSA);
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa, private)),
        CKR_OK,
        "C_SignInit(ECDSA)",
    );
    let mut digest = [0x5au8; 32];
    let mut sl: CK_ULONG = 0;
    c.rv(
        p11!(
            f,
            C_Sign(h, digest.as_mut_ptr(), 32, ptr::null_mut(), &mut sl)
        ),
        CKR_OK,
        "C_Sign(NULL out) size query",
    );
    c.that(sl == 64, &format!("P-256 signature size 64, got {sl}"));
    let mut sig = [0u8; 64];
    sl = 10;
    c.rv(
        p11!(
            f,
            C_Sign(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut sl)
        ),
        CKR_BUFFER_TOO_SMALL,
        "C_Sign with a 10-byte buffer",
    );
    c.that(
        sl == 64,
        &format!("C_Sign short buffer reports 64, got {sl}"),
    );
    c.rv(
        p11!(
            f,
            C_Sign(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut sl)
        ),
        CKR_OK,
        "C_Sign after a size query and a short buffer (operation still active)",
    );
    c.that(sl == 64, "C_Sign writes the signature length");
    c.rv(
        p11!(
            f,
            C_Sign(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut sl)
        ),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_Sign after the signature was made",
    );
    c.rv(
        p11!(f, C_VerifyInit(h, &mut ecdsa, public)),
        CKR_OK,
        "C_VerifyInit(ECDSA)",
    );
    c.rv(
        p11!(
            f,
            C_Verify(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), 64)
        ),
        CKR_OK,
        "the signature made after the size queries verifies",
    );

    // Attribute values: NULL pValue gives the length; too small gives
    // CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL.
    let mut a = [CK_ATTRIBUTE {
        type_: CKA_EC_PARAMS,
        pValue: ptr::null_mut(),
        ulValueLen: 0,
    }];
    c.rv(
        p11!(f, C_GetAttributeValue(h, public, a.as_mut_ptr(), 1)),
        CKR_OK,
        "C_GetAttributeValue(pValue NULL)",
    );
    c.that(a[0].ulValueLen == 10, "CKA_EC_PARAMS of P-256 is 10 bytes");
    let mut small = [0u8; 4];
    a[0].pValue = small.as_mut_ptr() as *mut c_void;
    a[0].ulValueLen = 4;
    c.rv(
        p11!(f, C_GetAttributeValue(h, public, a.as_mut_ptr(), 1)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetAttributeValue with 4 bytes for 10",
    );
    c.that(
        a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION,
        "a too-small attribute gets CK_UNAVAILABLE_INFORMATION",
    );

    // Interface list.
    let mut count: CK_ULONG = 0;
    // SAFETY: NULL list, valid count.
    let rv = unsafe { (w.get_interface_list)(ptr::null_mut(), &mut count) };
    c.rv(rv, CKR_OK, "C_GetInterfaceList(NULL list)");
    c.that(count == 2, &format!("two interfaces, got {count}"));
    let mut list = [CK_INTERFACE {
        pInterfaceName: ptr::null_mut(),
        pFunctionList: ptr::null_mut(),
        flags: 0,
    }; 2];
    let mut zero: CK_ULONG = 0;
    // SAFETY: a 2-entry list whose stated size is 0.
    let rv = unsafe { (w.get_interface_list)(list.as_mut_ptr(), &mut zero) };
    c.rv(rv, CKR_BUFFER_TOO_SMALL, "C_GetInterfaceList with count 0");
    c.that(zero == 2, "C_GetInterfaceList writes the needed count");
    w.finalize();
    c.done();
}

#[test]
fn invalid_and_stale_handles_get_their_own_codes() {
    let w = RawWorld::new();
    let f = w.f;
    w.init();
    let mut c = Checks::default();
    let slot = w.slot();
    let h = w.open(slot, true);
    let closed = w.open(slot, true);
    c.rv(p11!(f, C_CloseSession(closed)), CKR_OK, "C_CloseSession");
    let inv = CKR_SESSION_HANDLE_INVALID;
    for (bad, what) in [
        (0, "session 0"),
        (RANDOM_HANDLE, "session 999999"),
        (closed, "a closed session"),
    ] {
        let mut si: CK_SESSION_INFO = unsafe_zeroed();
        c.rv(
            p11!(f, C_GetSessionInfo(bad, &mut si)),
            inv,
            &format!("C_GetSessionInfo({what})"),
        );
        c.rv(
            p11!(f, C_CloseSession(bad)),
            inv,
            &format!("C_CloseSession({what})"),
        );
        let mut pin = DEFAULT_PIN.as_bytes().to_vec();
        c.rv(
            p11!(f, C_Login(bad, CKU_USER, pin.as_mut_ptr(), 8)),
            inv,
            &format!("C_Login({what})"),
        );
        c.rv(p11!(f, C_Logout(bad)), inv, &format!("C_Logout({what})"));
        let mut m = mech(CKM_SHA256);
        c.rv(
            p11!(f, C_DigestInit(bad, &mut m)),
            inv,
            &format!("C_DigestInit({what})"),
        );
        let mut e = mech(CKM_ECDSA);
        c.rv(
            p11!(f, C_SignInit(bad, &mut e, 1)),
            inv,
            &format!("C_SignInit({what})"),
        );
        let mut data = [1u8; 32];
        let mut sl: CK_ULONG = 64;
        let mut sig = [0u8; 64];
        c.rv(
            p11!(
                f,
                C_Sign(bad, data.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut sl)
            ),
            inv,
            &format!("C_Sign({what})"),
        );
        c.rv(
            p11!(f, C_FindObjectsInit(bad, ptr::null_mut(), 0)),
            inv,
            &format!("C_FindObjectsInit({what})"),
        );
        let mut buf = [0u8; 8];
        c.rv(
            p11!(f, C_GenerateRandom(bad, buf.as_mut_ptr(), 8)),
            inv,
            &format!("C_GenerateRandom({what})"),
        );
        let mut t = Template::new();
        t.ulong(CKA_CLASS, CKO_DATA);
        let mut o = 0;
        c.rv(
            p11!(f, C_CreateObject(bad, t.ptr(), t.len(), &mut o)),
            inv,
            &format!("C_CreateObject({what})"),
        );
        let mut a = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        }];
        c.rv(
            p11!(f, C_GetAttributeValue(bad, 1, a.as_mut_ptr(), 1)),
            inv,
            &format!("C_GetAttributeValue({what})"),
        );
        c.rv(
            p11!(f, C_SeedRandom(bad, buf.as_mut_ptr(), 8)),
            inv,
            &format!("C_SeedRandom({what})"),
        );
    }

    // Slots.
    let bad_slot: CK_SLOT_ID = 999;
    let sinv = CKR_SLOT_ID_INVALID;
    let mut si: CK_SLOT_INFO = unsafe_zeroed();
    c.rv(
        p11!(f, C_GetSlotInfo(bad_slot, &mut si)),
        sinv,
        "C_GetSlotInfo(999)",
    );
    let mut ti: CK_TOKEN_INFO = unsafe_zeroed();
    c.rv(
        p11!(f, C_GetTokenInfo(bad_slot, &mut ti)),
        sinv,
        "C_GetTokenInfo(999)",
    );
    let mut n: CK_ULONG = 0;
    c.rv(
        p11!(f, C_GetMechanismList(bad_slot, ptr::null_mut(), &mut n)),
        sinv,
        "C_GetMechanismList(999)",
    );
    let mut mi: CK_MECHANISM_INFO = unsafe_zeroed();
    c.rv(
        p11!(f, C_GetMechanismInfo(bad_slot, CKM_SHA256, &mut mi)),
        sinv,
        "C_GetMechanismInfo(999)",
    );
    let mut s = 0;
    c.rv(
        p11!(
            f,
            C_OpenSession(bad_slot, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut s)
        ),
        sinv,
        "C_OpenSession(999)",
    );
    c.rv(
        p11!(f, C_CloseAllSessions(bad_slot)),
        sinv,
        "C_CloseAllSessions(999)",
    );
    let mut label = [b' '; 32];
    let mut puk = b"12345678".to_vec();
    c.rv(
        p11!(
            f,
            C_InitToken(bad_slot, puk.as_mut_ptr(), 8, label.as_mut_ptr())
        ),
        sinv,
        "C_InitToken(999)",
    );
    c.rv(
        p11!(f, C_GetMechanismInfo(slot, CKM_AES_CBC, &mut mi)),
        CKR_MECHANISM_INVALID,
        "C_GetMechanismInfo(CKM_AES_CBC)",
    );

    // Objects: a random handle and a destroyed one.
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_DATA);
    t.bool(CKA_TOKEN, false);
    t.bytes(CKA_LABEL, b"gone soon");
    let mut obj = 0;
    c.rv(
        p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut obj)),
        CKR_OK,
        "C_CreateObject(data)",
    );
    c.rv(p11!(f, C_DestroyObject(h, obj)), CKR_OK, "C_DestroyObject");
    let oinv = CKR_OBJECT_HANDLE_INVALID;
    for (bad, what) in [
        (RANDOM_HANDLE, "object 999999"),
        (obj, "a destroyed object"),
        (0, "object 0"),
    ] {
        let mut a = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        }];
        c.rv(
            p11!(f, C_GetAttributeValue(h, bad, a.as_mut_ptr(), 1)),
            oinv,
            &format!("C_GetAttributeValue({what})"),
        );
        let mut size: CK_ULONG = 0;
        c.rv(
            p11!(f, C_GetObjectSize(h, bad, &mut size)),
            oinv,
            &format!("C_GetObjectSize({what})"),
        );
        c.rv(
            p11!(f, C_DestroyObject(h, bad)),
            oinv,
            &format!("C_DestroyObject({what})"),
        );
        let mut st = Template::new();
        st.bytes(CKA_LABEL, b"x");
        c.rv(
            p11!(f, C_SetAttributeValue(h, bad, st.ptr(), st.len())),
            oinv,
            &format!("C_SetAttributeValue({what})"),
        );
        let mut copy = 0;
        c.rv(
            p11!(f, C_CopyObject(h, bad, ptr::null_mut(), 0, &mut copy)),
            oinv,
            &format!("C_CopyObject({what})"),
        );
    }
    // A session object dies with its session.
    let other = w.open(slot, false);
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_DATA);
    t.bool(CKA_TOKEN, false);
    let mut sobj = 0;
    c.rv(
        p11!(f, C_CreateObject(other, t.ptr(), t.len(), &mut sobj)),
        CKR_OK,
        "C_CreateObject",
    );
    c.rv(p11!(f, C_CloseSession(other)), CKR_OK, "C_CloseSession");
    let mut size: CK_ULONG = 0;
    c.rv(
        p11!(f, C_GetObjectSize(h, sobj, &mut size)),
        oinv,
        "C_GetObjectSize of a session object whose session closed",
    );

    // Keys.
    w.login(h);
    let (public, private) = w.ec_key_pair(h);
    let mut e = mech(CKM_ECDSA);
    c.rv(
        p11!(f, C_SignInit(h, &mut e, RANDOM_HANDLE)),
        CKR_KEY_HANDLE_INVALID,
        "C_SignInit with a nonexistent key",
    );
    c.rv(
        p11!(f, C_SignInit(h, &mut e, obj)),
        CKR_KEY_HANDLE_INVALID,
        "C_SignInit with a destroyed object",
    );
    c.rv(
        p11!(f, C_SignInit(h, &mut e, public)),
        CKR_KEY_TYPE_INCONSISTENT,
        "C_SignInit with the public key",
    );
    let mut rsa = mech(CKM_SHA256_RSA_PKCS);
    c.rv(
        p11!(f, C_SignInit(h, &mut rsa, private)),
        CKR_KEY_TYPE_INCONSISTENT,
        "C_SignInit(SHA256_RSA_PKCS) with an EC key",
    );
    c.rv(
        p11!(f, C_VerifyInit(h, &mut e, private)),
        CKR_KEY_TYPE_INCONSISTENT,
        "C_VerifyInit with the private key",
    );
    c.rv(
        p11!(f, C_VerifyInit(h, &mut e, RANDOM_HANDLE)),
        CKR_KEY_HANDLE_INVALID,
        "C_VerifyInit with a nonexistent key",
    );
    w.finalize();
    c.done();
}

#[test]
fn wrong_mechanisms_states_and_templates_get_their_own_codes() {
    let w = RawWorld::new();
    let f = w.f;
    w.init();
    let mut c = Checks::default();
    let slot = w.slot();

    // Slot events: the initial one, then none.
    let mut ev: CK_SLOT_ID = CK_SLOT_ID::MAX;
    c.rv(
        p11!(
            f,
            C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut ev, ptr::null_mut())
        ),
        CKR_OK,
        "C_WaitForSlotEvent(CKF_DONT_BLOCK) first: the card's initial event",
    );
    c.that(
        ev == slot,
        &format!("the event names slot {slot}, got {ev}"),
    );
    c.rv(
        p11!(
            f,
            C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut ev, ptr::null_mut())
        ),
        CKR_NO_EVENT,
        "C_WaitForSlotEvent(CKF_DONT_BLOCK) second",
    );

    // Sessions.
    let mut s = 0;
    c.rv(
        p11!(
            f,
            C_OpenSession(slot, CKF_RW_SESSION, ptr::null_mut(), None, &mut s)
        ),
        CKR_SESSION_PARALLEL_NOT_SUPPORTED,
        "C_OpenSession without CKF_SERIAL_SESSION",
    );
    let ro = w.open(slot, false);
    let h = w.open(slot, true);
    let mut pin = DEFAULT_PIN.as_bytes().to_vec();
    c.rv(
        p11!(f, C_Login(h, 7, pin.as_mut_ptr(), 8)),
        CKR_USER_TYPE_INVALID,
        "C_Login with user type 7",
    );
    c.rv(
        p11!(f, C_Logout(h)),
        CKR_USER_NOT_LOGGED_IN,
        "C_Logout without login",
    );

    // Operations not started.
    let mut data = [1u8; 32];
    let mut out = [0u8; 64];
    let mut ol: CK_ULONG = 64;
    let ni = CKR_OPERATION_NOT_INITIALIZED;
    c.rv(
        p11!(
            f,
            C_Sign(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut ol)
        ),
        ni,
        "C_Sign without C_SignInit",
    );
    c.rv(
        p11!(f, C_SignUpdate(h, data.as_mut_ptr(), 32)),
        ni,
        "C_SignUpdate without C_SignInit",
    );
    c.rv(
        p11!(f, C_SignFinal(h, out.as_mut_ptr(), &mut ol)),
        ni,
        "C_SignFinal without C_SignInit",
    );
    c.rv(
        p11!(f, C_Verify(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), 64)),
        ni,
        "C_Verify without C_VerifyInit",
    );
    c.rv(
        p11!(
            f,
            C_Digest(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut ol)
        ),
        ni,
        "C_Digest without C_DigestInit",
    );
    c.rv(
        p11!(f, C_DigestUpdate(h, data.as_mut_ptr(), 32)),
        ni,
        "C_DigestUpdate without init",
    );
    c.rv(
        p11!(f, C_DigestFinal(h, out.as_mut_ptr(), &mut ol)),
        ni,
        "C_DigestFinal without init",
    );
    c.rv(
        p11!(
            f,
            C_Decrypt(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut ol)
        ),
        ni,
        "C_Decrypt without C_DecryptInit",
    );
    c.rv(
        p11!(
            f,
            C_Encrypt(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut ol)
        ),
        ni,
        "C_Encrypt without C_EncryptInit",
    );
    let mut found = [0; 4];
    let mut n: CK_ULONG = 0;
    c.rv(
        p11!(f, C_FindObjects(h, found.as_mut_ptr(), 4, &mut n)),
        ni,
        "C_FindObjects without C_FindObjectsInit",
    );
    c.rv(
        p11!(f, C_FindObjectsFinal(h)),
        ni,
        "C_FindObjectsFinal without C_FindObjectsInit",
    );
    c.rv(
        p11!(f, C_FindObjectsInit(h, ptr::null_mut(), 0)),
        CKR_OK,
        "C_FindObjectsInit",
    );
    c.rv(
        p11!(f, C_FindObjectsInit(h, ptr::null_mut(), 0)),
        CKR_OPERATION_ACTIVE,
        "C_FindObjectsInit twice",
    );
    c.rv(p11!(f, C_FindObjectsFinal(h)), CKR_OK, "C_FindObjectsFinal");
    let mut sha = mech(CKM_SHA256);
    c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
    c.rv(
        p11!(f, C_DigestInit(h, &mut sha)),
        CKR_OPERATION_ACTIVE,
        "C_DigestInit twice",
    );
    w.cancel(h);
    let mut ecdsa_m = mech(CKM_ECDSA);
    c.rv(
        p11!(f, C_DigestInit(h, &mut ecdsa_m)),
        CKR_MECHANISM_INVALID,
        "C_DigestInit(CKM_ECDSA)",
    );
    let mut md5 = mech(CKM_MD5);
    c.rv(
        p11!(f, C_DigestInit(h, &mut md5)),
        CKR_MECHANISM_INVALID,
        "C_DigestInit(CKM_MD5)",
    );

    // Objects.
    let mut o = 0;
    let mut k = Template::new();
    k.ulong(CKA_CLASS, CKO_PRIVATE_KEY);
    k.ulong(CKA_KEY_TYPE, CKK_EC);
    k.bool(CKA_TOKEN, false);
    k.bytes(CKA_EC_PARAMS, &P256_OID);
    k.bytes(CKA_VALUE, &[1u8; 32]);
    c.rv(
        p11!(f, C_CreateObject(h, k.ptr(), k.len(), &mut o)),
        CKR_TEMPLATE_INCONSISTENT,
        "C_CreateObject(CKO_PRIVATE_KEY)",
    );
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_DATA);
    t.bytes(CKA_TOKEN, &[0, 0, 0, 0]);
    c.rv(
        p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject(CKO_DATA) with a 4-byte CK_BBOOL CKA_TOKEN",
    );
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_DATA);
    t.bool(CKA_TOKEN, false);
    t.bytes(CKA_PRIVATE, &[1, 0, 0, 0]);
    c.rv(
        p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject(CKO_DATA) with a 4-byte CK_BBOOL CKA_PRIVATE",
    );
    let mut t = Template::new();
    t.bytes(CKA_CLASS, &[0, 0, 0, 0]);
    c.rv(
        p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject with a 4-byte CKA_CLASS",
    );
    let mut t = Template::new();
    t.ulong(CKA_CLASS, CKO_DATA);
    t.bool(CKA_TOKEN, true);
    t.bool(CKA_PRIVATE, false);
    c.rv(
        p11!(f, C_CreateObject(ro, t.ptr(), t.len(), &mut o)),
        CKR_SESSION_READ_ONLY,
        "C_CreateObject(token object) in a R/O session",
    );
    let mut t = Template::new();
    t.bool(CKA_TOKEN, false);
    c.rv(
        p11!(f, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
        CKR_TEMPLATE_INCOMPLETE,
        "C_CreateObject without CKA_CLASS",
    );

    // Key generation.
    let mut pt = Template::new();
    pt.bytes(CKA_EC_PARAMS, &P256_OID);
    let mut kt = Template::new();
    kt.bool(CKA_SIGN, true);
    let mut keygen = mech(CKM_EC_KEY_PAIR_GEN);
    let (mut p, mut pk) = (0, 0);
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                &mut keygen,
                pt.ptr(),
                pt.len(),
                kt.ptr(),
                kt.len(),
                &mut p,
                &mut pk
            )
        ),
        CKR_USER_NOT_LOGGED_IN,
        "C_GenerateKeyPair without login",
    );
    w.login(h);
    c.rv(
        p11!(f, C_Login(h, CKU_USER, pin.as_mut_ptr(), 8)),
        CKR_USER_ALREADY_LOGGED_IN,
        "C_Login twice",
    );
    let mut rt = Template::new();
    rt.ulong(CKA_MODULUS_BITS, 1024);
    let mut rgen = mech(CKM_RSA_PKCS_KEY_PAIR_GEN);
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                &mut rgen,
                rt.ptr(),
                rt.len(),
                kt.ptr(),
                kt.len(),
                &mut p,
                &mut pk
            )
        ),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_GenerateKeyPair(RSA, CKA_MODULUS_BITS 1024)",
    );
    let mut aes = mech(CKM_AES_KEY_GEN);
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                &mut aes,
                pt.ptr(),
                pt.len(),
                kt.ptr(),
                kt.len(),
                &mut p,
                &mut pk
            )
        ),
        CKR_MECHANISM_INVALID,
        "C_GenerateKeyPair(CKM_AES_KEY_GEN)",
    );
    let mut ec4 = Template::new();
    ec4.bytes(CKA_EC_PARAMS, &P256_OID);
    let mut k4 = Template::new();
    k4.bytes(CKA_SIGN, &[1, 0, 0, 0]);
    c.rv(
        p11!(
            f,
            C_GenerateKeyPair(
                h,
                &mut keygen,
                ec4.ptr(),
                ec4.len(),
                k4.ptr(),
                k4.len(),
                &mut p,
                &mut pk
            )
        ),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_GenerateKeyPair with a 4-byte CK_BBOOL CKA_SIGN",
    );

    // Sign mechanisms.
    let (_public, private) = w.ec_key_pair(h);
    for (m, name) in [
        (CKM_MD5_RSA_PKCS, "CKM_MD5_RSA_PKCS"),
        (CKM_AES_CBC, "CKM_AES_CBC"),
        (CKM_SHA256, "CKM_SHA256 (a digest)"),
        (CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
        (0x8000_1234, "a vendor-defined number"),
    ] {
        let mut mm = mech(m);
        c.rv(
            p11!(f, C_SignInit(h, &mut mm, private)),
            CKR_MECHANISM_INVALID,
            &format!("C_SignInit({name})"),
        );
    }
    let mut prm: CK_RSA_PKCS_PSS_PARAMS = unsafe_zeroed();
    prm.hashAlg = CKM_SHA256;
    prm.mgf = CKG_MGF1_SHA256;
    prm.sLen = 32;
    let mut pss = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_PSS,
        pParameter: &mut prm as *mut CK_RSA_PKCS_PSS_PARAMS as *mut c_void,
        ulParameterLen: ulong(std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() - 1),
    };
    c.rv(
        p11!(f, C_SignInit(h, &mut pss, private)),
        CKR_MECHANISM_PARAM_INVALID,
        "C_SignInit(CKM_RSA_PKCS_PSS) with a parameter one byte short",
    );
    pss.pParameter = ptr::null_mut();
    pss.ulParameterLen = 0;
    c.rv(
        p11!(f, C_SignInit(h, &mut pss, private)),
        CKR_MECHANISM_PARAM_INVALID,
        "C_SignInit(CKM_RSA_PKCS_PSS) without a parameter",
    );
    let mut ecdsa = mech(CKM_ECDSA);
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa, private)),
        CKR_OK,
        "C_SignInit(ECDSA)",
    );
    c.rv(
        p11!(f, C_SignInit(h, &mut ecdsa, private)),
        CKR_OPERATION_ACTIVE,
        "C_SignInit twice",
    );
    c.rv(
        p11!(f, C_SignUpdate(h, data.as_mut_ptr(), 32)),
        CKR_FUNCTION_NOT_SUPPORTED,
        "C_SignUpdate with single-part CKM_ECDSA",
    );
    w.cancel(h);

    // Functions the module does not offer.
    let fns = CKR_FUNCTION_NOT_SUPPORTED;
    c.rv(
        p11!(
            f,
            C_EncryptUpdate(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut ol)
        ),
        fns,
        "C_EncryptUpdate",
    );
    c.rv(
        p11!(
            f,
            C_DecryptUpdate(h, data.as_mut_ptr(), 32, out.as_mut_ptr(), &mut ol)
        ),
        fns,
        "C_DecryptUpdate",
    );
    let mut wrap = mech(CKM_RSA_PKCS);
    c.rv(
        p11!(
            f,
            C_WrapKey(h, &mut wrap, private, private, out.as_mut_ptr(), &mut ol)
        ),
        fns,
        "C_WrapKey",
    );
    let mut unwrapped = 0;
    c.rv(
        p11!(
            f,
            C_UnwrapKey(
                h,
                &mut wrap,
                private,
                data.as_mut_ptr(),
                32,
                ptr::null_mut(),
                0,
                &mut unwrapped
            )
        ),
        fns,
        "C_UnwrapKey",
    );
    c.rv(
        p11!(
            f,
            C_GenerateKey(h, &mut aes, ptr::null_mut(), 0, &mut unwrapped)
        ),
        fns,
        "C_GenerateKey",
    );
    c.rv(
        p11!(f, C_SignRecoverInit(h, &mut ecdsa, private)),
        fns,
        "C_SignRecoverInit",
    );
    let mut st_len: CK_ULONG = 0;
    c.rv(
        p11!(f, C_GetOperationState(h, ptr::null_mut(), &mut st_len)),
        fns,
        "C_GetOperationState",
    );
    c.rv(
        p11!(f, C_DigestKey(h, private)),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_DigestKey without C_DigestInit",
    );
    let mut sha = mech(CKM_SHA256);
    c.rv(p11!(f, C_DigestInit(h, &mut sha)), CKR_OK, "C_DigestInit");
    c.rv(
        p11!(f, C_DigestKey(h, 0xdead_beef)),
        CKR_KEY_HANDLE_INVALID,
        "C_DigestKey(no such key)",
    );
    c.rv(
        p11!(f, C_DigestInit(h, &mut sha)),
        CKR_OK,
        "C_DigestInit again (the error ended it)",
    );
    c.rv(
        p11!(f, C_DigestKey(h, private)),
        CKR_KEY_INDIGESTIBLE,
        "C_DigestKey(TPM key)",
    );
    let mut out_len: CK_ULONG = 64;
    let mut out = [0u8; 64];
    c.rv(
        p11!(f, C_DigestFinal(h, out.as_mut_ptr(), &mut out_len)),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_DigestFinal after C_DigestKey failed (the error ended the digest)",
    );
    let f3 = w.list_3_0();
    c.rv(
        p11!(f3, C_MessageSignInit(h, &mut ecdsa, private)),
        fns,
        "C_MessageSignInit",
    );
    c.rv(
        p11!(
            f3,
            C_SignMessage(
                h,
                ptr::null_mut(),
                0,
                data.as_mut_ptr(),
                32,
                out.as_mut_ptr(),
                &mut ol
            )
        ),
        fns,
        "C_SignMessage",
    );
    c.rv(
        p11!(f3, C_MessageEncryptInit(h, &mut wrap, private)),
        fns,
        "C_MessageEncryptInit",
    );
    c.rv(
        p11!(f3, C_MessageDecryptInit(h, &mut wrap, private)),
        fns,
        "C_MessageDecryptInit",
    );
    c.rv(
        p11!(f3, C_MessageVerifyInit(h, &mut ecdsa, private)),
        fns,
        "C_MessageVerifyInit",
    );
    c.rv(p11!(f3, C_MessageSignFinal(h)), fns, "C_MessageSignFinal");
    c.rv(
        p11!(f3, C_MessageVerifyFinal(h)),
        fns,
        "C_MessageVerifyFinal",
    );
    c.rv(
        p11!(f3, C_MessageEncryptFinal(h)),
        fns,
        "C_MessageEncryptFinal",
    );
    c.rv(
        p11!(f3, C_MessageDecryptFinal(h)),
        fns,
        "C_MessageDecryptFinal",
    );
    w.finalize();
    c.done();
}

#[test]
fn get_interface_gives_the_3_0_list_and_refuses_bad_arguments() {
    let w = RawWorld::new();
    let mut c = Checks::default();
    // SAFETY: NULL list and NULL count: the module must refuse them.
    let rv = unsafe { (w.get_interface_list)(ptr::null_mut(), ptr::null_mut()) };
    c.rv(
        rv,
        CKR_ARGUMENTS_BAD,
        "C_GetInterfaceList(NULL, NULL count)",
    );
    let mut list = [CK_INTERFACE {
        pInterfaceName: ptr::null_mut(),
        pFunctionList: ptr::null_mut(),
        flags: 0,
    }; 4];
    // SAFETY: a 4-entry list and a NULL count.
    let rv = unsafe { (w.get_interface_list)(list.as_mut_ptr(), ptr::null_mut()) };
    c.rv(
        rv,
        CKR_ARGUMENTS_BAD,
        "C_GetInterfaceList(list, NULL count)",
    );
    let mut n: CK_ULONG = 4;
    // SAFETY: a 4-entry list, count 4.
    let rv = unsafe { (w.get_interface_list)(list.as_mut_ptr(), &mut n) };
    c.rv(rv, CKR_OK, "C_GetInterfaceList with room");
    c.that(n == 2, "two interfaces");
    let mut versions = Vec::new();
    for i in list.iter().take(2) {
        c.that(
            !i.pInterfaceName.is_null() && !i.pFunctionList.is_null(),
            "interface filled in",
        );
        if i.pInterfaceName.is_null() || i.pFunctionList.is_null() {
            continue;
        }
        // SAFETY: the name is a NUL-terminated static of the module.
        let name = unsafe { std::ffi::CStr::from_ptr(i.pInterfaceName as *const std::ffi::c_char) };
        c.that(
            name.to_bytes() == b"PKCS 11",
            &format!("interface name {name:?}"),
        );
        // SAFETY: every function list starts with its CK_VERSION.
        versions.push(unsafe { *(i.pFunctionList as *const CK_VERSION) });
    }
    c.that(
        versions.iter().any(|v| v.major == 3 && v.minor == 0)
            && versions.iter().any(|v| v.major == 2 && v.minor == 40),
        &format!(
            "a 3.0 and a 2.40 list: {:?}",
            versions
                .iter()
                .map(|v| (v.major, v.minor))
                .collect::<Vec<_>>()
        ),
    );

    let mut out: *mut CK_INTERFACE = ptr::null_mut();
    let mut name = *b"PKCS 11\0";
    let mut v30 = CK_VERSION { major: 3, minor: 0 };
    // SAFETY: valid name, version and out pointer.
    let rv = unsafe { (w.get_interface)(name.as_mut_ptr(), &mut v30, &mut out, 0) };
    c.rv(rv, CKR_OK, "C_GetInterface(\"PKCS 11\", 3.0)");
    if !out.is_null() {
        // SAFETY: the interface is a static of the module; its list starts with CK_VERSION.
        let v = unsafe { *((*out).pFunctionList as *const CK_VERSION) };
        c.that(
            v.major == 3 && v.minor == 0,
            &format!("version {}.{}", v.major, v.minor),
        );
    }
    let mut v240 = CK_VERSION {
        major: 2,
        minor: 40,
    };
    // SAFETY: as above.
    let rv = unsafe { (w.get_interface)(name.as_mut_ptr(), &mut v240, &mut out, 0) };
    c.rv(rv, CKR_OK, "C_GetInterface(\"PKCS 11\", 2.40)");
    if !out.is_null() {
        // SAFETY: as above.
        let v = unsafe { *((*out).pFunctionList as *const CK_VERSION) };
        c.that(
            v.major == 2 && v.minor == 40,
            &format!("version {}.{}", v.major, v.minor),
        );
    }
    // SAFETY: NULL name and version mean "the default"; out is valid.
    let rv = unsafe { (w.get_interface)(ptr::null_mut(), ptr::null_mut(), &mut out, 0) };
    c.rv(rv, CKR_OK, "C_GetInterface(NULL, NULL)");
    // SAFETY: NULL out pointer: must be refused.
    let rv = unsafe { (w.get_interface)(name.as_mut_ptr(), &mut v30, ptr::null_mut(), 0) };
    c.rv(rv, CKR_ARGUMENTS_BAD, "C_GetInterface(NULL out)");
    let mut other = *b"Vendor thing\0";
    // SAFETY: a NUL-terminated name and valid out pointer.
    let rv = unsafe { (w.get_interface)(other.as_mut_ptr(), ptr::null_mut(), &mut out, 0) };
    c.rv(rv, CKR_ARGUMENTS_BAD, "C_GetInterface(unknown name)");
    let mut v99 = CK_VERSION { major: 9, minor: 9 };
    // SAFETY: as above.
    let rv = unsafe { (w.get_interface)(name.as_mut_ptr(), &mut v99, &mut out, 0) };
    c.rv(rv, CKR_ARGUMENTS_BAD, "C_GetInterface(\"PKCS 11\", 9.9)");

    // The 3.0 list works like the 2.40 one.
    let f3 = w.list_3_0();
    c.that(
        f3.version.major == 3 && f3.version.minor == 0,
        "3.0 list version",
    );
    let mut info: CK_INFO = unsafe_zeroed();
    c.rv(
        p11!(f3, C_GetInfo(&mut info)),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "3.0 C_GetInfo before C_Initialize",
    );
    c.rv(
        p11!(f3, C_Initialize(ptr::null_mut())),
        CKR_OK,
        "3.0 C_Initialize",
    );
    c.rv(
        p11!(f3, C_SessionCancel(RANDOM_HANDLE, 0)),
        CKR_SESSION_HANDLE_INVALID,
        "C_SessionCancel(999999)",
    );
    let mut pin = DEFAULT_PIN.as_bytes().to_vec();
    c.rv(
        p11!(
            f3,
            C_LoginUser(
                RANDOM_HANDLE,
                CKU_USER,
                pin.as_mut_ptr(),
                8,
                ptr::null_mut(),
                0
            )
        ),
        CKR_SESSION_HANDLE_INVALID,
        "C_LoginUser(999999)",
    );
    let slot = w.slot();
    let h = w.open(slot, false);
    c.rv(
        p11!(
            f3,
            C_LoginUser(h, CKU_USER, ptr::null_mut(), 8, ptr::null_mut(), 0)
        ),
        CKR_ARGUMENTS_BAD,
        "C_LoginUser(NULL pin, 8)",
    );
    c.rv(
        p11!(
            f3,
            C_LoginUser(h, CKU_USER, pin.as_mut_ptr(), 8, ptr::null_mut(), 3)
        ),
        CKR_ARGUMENTS_BAD,
        "C_LoginUser(NULL user name, 3)",
    );
    c.rv(
        p11!(f3, C_Finalize(ptr::null_mut())),
        CKR_OK,
        "3.0 C_Finalize",
    );
    c.done();
}

/// xorshift64*: enough randomness to mix calls, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % ulong(n)).expect("small")
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// What one hammering thread shares with the others: the module and one key pair made
/// in a session that stays open (and logged in) for the whole run.
#[derive(Clone, Copy)]
struct Shared {
    f: &'static CK_FUNCTION_LIST,
    f3: &'static CK_FUNCTION_LIST_3_0,
    slot: CK_SLOT_ID,
    public: CK_OBJECT_HANDLE,
    private: CK_OBJECT_HANDLE,
    /// How many cards (slots) the store holds.
    cards: CK_ULONG,
}

/// Records a deviation unless `got` is in `allowed`.
fn allow(errs: &mut Vec<String>, got: CK_RV, allowed: &[CK_RV], what: &str) {
    if !allowed.contains(&got) {
        errs.push(format!(
            "{what}: got {}, allowed {}",
            rv_name(got),
            allowed
                .iter()
                .map(|r| rv_name(*r))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
}

/// One thread's 200 calls. Random handles are drawn far above anything the module hands
/// out, so that a "random" handle never hits another thread's live session; stale handles
/// are the thread's own closed sessions.
fn hammer(sh: Shared, seed: u64, iterations: usize) -> (Vec<String>, usize) {
    let f = sh.f;
    let mut rng = Rng(seed | 1);
    let mut errs = Vec::new();
    let mut signatures = 0;
    let mut live: Vec<CK_SESSION_HANDLE> = Vec::new();
    let mut stale: Vec<CK_SESSION_HANDLE> = vec![0];
    let mechs = [
        CKM_ECDSA,
        CKM_ECDSA_SHA256,
        CKM_SHA256,
        CKM_MD5_RSA_PKCS,
        CKM_AES_CBC,
        CKM_RSA_PKCS,
        CKM_SHA256_RSA_PKCS,
        0x8000_0000 + 77,
        CKM_RSA_PKCS_PSS,
    ];
    let ok = [CKR_OK];
    for it in 0..iterations {
        let at = |what: &str| format!("seed {seed:#x} iteration {it}: {what}");
        let bad_session = |rng: &mut Rng, stale: &[CK_SESSION_HANDLE]| -> CK_SESSION_HANDLE {
            if rng.below(2) == 0 {
                rng.pick(stale)
            } else {
                (1 << 40) + rng.next() % (1 << 40)
            }
        };
        match rng.below(13) {
            // Good: open a session.
            0 => {
                let mut h = 0;
                let flags = CKF_SERIAL_SESSION | if rng.below(2) == 0 { CKF_RW_SESSION } else { 0 };
                let rv = p11!(
                    f,
                    C_OpenSession(sh.slot, flags, ptr::null_mut(), None, &mut h)
                );
                allow(&mut errs, rv, &ok, &at("C_OpenSession"));
                if rv == CKR_OK {
                    live.push(h);
                }
            }
            // Good: close one of ours; it becomes stale.
            1 => {
                if let Some(h) = live.pop() {
                    allow(
                        &mut errs,
                        p11!(f, C_CloseSession(h)),
                        &ok,
                        &at("C_CloseSession(own)"),
                    );
                    stale.push(h);
                }
            }
            // Good: a whole digest, with a size query first.
            2 => {
                let Some(&h) = live.last() else { continue };
                let mut m = mech(CKM_SHA256);
                allow(
                    &mut errs,
                    p11!(f, C_DigestInit(h, &mut m)),
                    &ok,
                    &at("C_DigestInit"),
                );
                let mut abc = *b"abc";
                let mut out = [0u8; 32];
                let mut l: CK_ULONG = 0;
                allow(
                    &mut errs,
                    p11!(f, C_Digest(h, abc.as_mut_ptr(), 3, ptr::null_mut(), &mut l)),
                    &ok,
                    &at("C_Digest size query"),
                );
                allow(
                    &mut errs,
                    p11!(
                        f,
                        C_Digest(h, abc.as_mut_ptr(), 3, out.as_mut_ptr(), &mut l)
                    ),
                    &ok,
                    &at("C_Digest"),
                );
                if hex(&out) != SHA256_ABC {
                    errs.push(at("C_Digest gave a wrong SHA-256(abc)"));
                }
            }
            // Good: token info and slot list.
            3 => {
                let mut ti: CK_TOKEN_INFO = unsafe_zeroed();
                allow(
                    &mut errs,
                    p11!(f, C_GetTokenInfo(sh.slot, &mut ti)),
                    &ok,
                    &at("C_GetTokenInfo"),
                );
                let mut n: CK_ULONG = 0;
                allow(
                    &mut errs,
                    p11!(f, C_GetSlotList(CK_TRUE, ptr::null_mut(), &mut n)),
                    &ok,
                    &at("C_GetSlotList(NULL)"),
                );
                if n != sh.cards {
                    errs.push(at(&format!("C_GetSlotList count {n}")));
                }
            }
            // Bad: stale or random session handles.
            4 => {
                let h = bad_session(&mut rng, &stale);
                let inv = [CKR_SESSION_HANDLE_INVALID];
                let mut buf = [0u8; 64];
                let mut l: CK_ULONG = 64;
                match rng.below(8) {
                    0 => {
                        let mut si: CK_SESSION_INFO = unsafe_zeroed();
                        allow(
                            &mut errs,
                            p11!(f, C_GetSessionInfo(h, &mut si)),
                            &inv,
                            &at("C_GetSessionInfo(bad)"),
                        );
                    }
                    1 => allow(
                        &mut errs,
                        p11!(f, C_CloseSession(h)),
                        &inv,
                        &at("C_CloseSession(bad)"),
                    ),
                    2 => {
                        let mut pin = DEFAULT_PIN.as_bytes().to_vec();
                        allow(
                            &mut errs,
                            p11!(f, C_Login(h, CKU_USER, pin.as_mut_ptr(), 8)),
                            &inv,
                            &at("C_Login(bad)"),
                        );
                    }
                    3 => {
                        let mut m = mech(CKM_SHA256);
                        allow(
                            &mut errs,
                            p11!(f, C_DigestInit(h, &mut m)),
                            &inv,
                            &at("C_DigestInit(bad)"),
                        );
                    }
                    4 => allow(
                        &mut errs,
                        p11!(f, C_Sign(h, buf.as_mut_ptr(), 32, ptr::null_mut(), &mut l)),
                        &inv,
                        &at("C_Sign(bad)"),
                    ),
                    5 => allow(
                        &mut errs,
                        p11!(f, C_GenerateRandom(h, buf.as_mut_ptr(), 16)),
                        &inv,
                        &at("C_GenerateRandom(bad)"),
                    ),
                    6 => allow(
                        &mut errs,
                        p11!(f, C_FindObjectsInit(h, ptr::null_mut(), 0)),
                        &inv,
                        &at("C_FindObjectsInit(bad)"),
                    ),
                    _ => {
                        // The mechanism may be refused before the session is looked at.
                        let mut m = mech(rng.pick(&mechs));
                        allow(
                            &mut errs,
                            p11!(f, C_SignInit(h, &mut m, sh.private)),
                            &[
                                CKR_SESSION_HANDLE_INVALID,
                                CKR_MECHANISM_INVALID,
                                CKR_MECHANISM_PARAM_INVALID,
                            ],
                            &at("C_SignInit(bad session)"),
                        );
                    }
                }
            }
            // Bad: NULL pointers on a live session.
            5 => {
                let Some(&h) = live.last() else { continue };
                let bad = [CKR_ARGUMENTS_BAD];
                match rng.below(7) {
                    0 => allow(
                        &mut errs,
                        p11!(f, C_GetSessionInfo(h, ptr::null_mut())),
                        &bad,
                        &at("C_GetSessionInfo(NULL)"),
                    ),
                    1 => allow(
                        &mut errs,
                        p11!(f, C_GenerateRandom(h, ptr::null_mut(), 16)),
                        &bad,
                        &at("C_GenerateRandom(NULL, 16)"),
                    ),
                    2 => allow(
                        &mut errs,
                        p11!(f, C_GetAttributeValue(h, sh.public, ptr::null_mut(), 2)),
                        &bad,
                        &at("C_GetAttributeValue(NULL, 2)"),
                    ),
                    3 => allow(
                        &mut errs,
                        p11!(f, C_DigestInit(h, ptr::null_mut())),
                        &bad,
                        &at("C_DigestInit(NULL)"),
                    ),
                    4 => allow(
                        &mut errs,
                        p11!(f, C_SignInit(h, ptr::null_mut(), sh.private)),
                        &bad,
                        &at("C_SignInit(NULL)"),
                    ),
                    5 => allow(
                        &mut errs,
                        p11!(f, C_Login(h, CKU_USER, ptr::null_mut(), 8)),
                        &bad,
                        &at("C_Login(NULL, 8)"),
                    ),
                    _ => {
                        let mut o = [0; 4];
                        allow(
                            &mut errs,
                            p11!(f, C_FindObjects(h, o.as_mut_ptr(), 4, ptr::null_mut())),
                            &bad,
                            &at("C_FindObjects(NULL count)"),
                        );
                    }
                }
            }
            // Random object handles, and the real public key.
            6 => {
                let Some(&h) = live.last() else { continue };
                let o = if rng.below(3) == 0 {
                    sh.public
                } else {
                    (1 << 40) + rng.next() % (1 << 40)
                };
                let mut a = [CK_ATTRIBUTE {
                    type_: CKA_EC_PARAMS,
                    pValue: ptr::null_mut(),
                    ulValueLen: 0,
                }];
                let want: &[CK_RV] = if o == sh.public {
                    &[CKR_OK]
                } else {
                    &[CKR_OBJECT_HANDLE_INVALID]
                };
                allow(
                    &mut errs,
                    p11!(f, C_GetAttributeValue(h, o, a.as_mut_ptr(), 1)),
                    want,
                    &at("C_GetAttributeValue(object)"),
                );
            }
            // Random mechanisms against the real and random keys; a sign that starts is
            // finished (a TPM signature, concurrently with the other threads).
            7 => {
                let Some(&h) = live.last() else { continue };
                let mt = rng.pick(&mechs);
                let key = rng.pick(&[sh.private, sh.public, 1 << 41]);
                let mut m = mech(mt);
                let rv = p11!(f, C_SignInit(h, &mut m, key));
                let allowed: &[CK_RV] = match (mt, key) {
                    (CKM_ECDSA | CKM_ECDSA_SHA256, k) if k == sh.private => &[CKR_OK],
                    (CKM_ECDSA | CKM_ECDSA_SHA256, k) if k == sh.public => {
                        &[CKR_KEY_TYPE_INCONSISTENT]
                    }
                    (CKM_ECDSA | CKM_ECDSA_SHA256 | CKM_RSA_PKCS | CKM_SHA256_RSA_PKCS, _) => {
                        &[CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_HANDLE_INVALID]
                    }
                    (CKM_RSA_PKCS_PSS, _) => &[CKR_MECHANISM_PARAM_INVALID],
                    _ => &[CKR_MECHANISM_INVALID],
                };
                allow(
                    &mut errs,
                    rv,
                    allowed,
                    &at(&format!("C_SignInit(mech {mt:#x}, key {key})")),
                );
                if rv == CKR_OK {
                    let mut data = [0x33u8; 32];
                    let mut sig = [0u8; 64];
                    let mut l: CK_ULONG = 0;
                    allow(
                        &mut errs,
                        p11!(f, C_Sign(h, data.as_mut_ptr(), 32, ptr::null_mut(), &mut l)),
                        &ok,
                        &at("C_Sign size query"),
                    );
                    let rv = p11!(
                        f,
                        C_Sign(h, data.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut l)
                    );
                    allow(&mut errs, rv, &ok, &at("C_Sign"));
                    signatures += usize::from(rv == CKR_OK);
                }
            }
            // Good: random bytes from the TPM.
            8 => {
                let Some(&h) = live.last() else { continue };
                let mut b = [0u8; 32];
                allow(
                    &mut errs,
                    p11!(f, C_GenerateRandom(h, b.as_mut_ptr(), 32)),
                    &ok,
                    &at("C_GenerateRandom"),
                );
            }
            // Good: a whole search.
            9 => {
                let Some(&h) = live.last() else { continue };
                allow(
                    &mut errs,
                    p11!(f, C_FindObjectsInit(h, ptr::null_mut(), 0)),
                    &ok,
                    &at("C_FindObjectsInit"),
                );
                let mut o = [0; 16];
                let mut n: CK_ULONG = 0;
                allow(
                    &mut errs,
                    p11!(f, C_FindObjects(h, o.as_mut_ptr(), 16, &mut n)),
                    &ok,
                    &at("C_FindObjects"),
                );
                allow(
                    &mut errs,
                    p11!(f, C_FindObjectsFinal(h)),
                    &ok,
                    &at("C_FindObjectsFinal"),
                );
            }
            // Bad slots and mechanism queries.
            10 => {
                let bad_slot = 999 + rng.next() % 1000;
                let mut h = 0;
                allow(
                    &mut errs,
                    p11!(
                        f,
                        C_OpenSession(bad_slot, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut h)
                    ),
                    &[CKR_SLOT_ID_INVALID],
                    &at("C_OpenSession(bad slot)"),
                );
                allow(
                    &mut errs,
                    p11!(f, C_CloseAllSessions(bad_slot)),
                    &[CKR_SLOT_ID_INVALID],
                    &at("C_CloseAllSessions(bad slot)"),
                );
                let mt = rng.pick(&mechs);
                let mut mi: CK_MECHANISM_INFO = unsafe_zeroed();
                let want: &[CK_RV] =
                    if matches!(mt, CKM_MD5_RSA_PKCS | CKM_AES_CBC) || mt >= 0x8000_0000 {
                        &[CKR_MECHANISM_INVALID]
                    } else {
                        &[CKR_OK]
                    };
                allow(
                    &mut errs,
                    p11!(f, C_GetMechanismInfo(sh.slot, mt, &mut mi)),
                    want,
                    &at("C_GetMechanismInfo"),
                );
            }
            // Not offered: CKR_FUNCTION_NOT_SUPPORTED on a live session; a bad handle is
            // CKR_SESSION_HANDLE_INVALID first (the session is checked before anything).
            11 => {
                let (h, want) = match live.last().copied() {
                    Some(h) if rng.below(2) == 0 => (h, CKR_FUNCTION_NOT_SUPPORTED),
                    _ => (bad_session(&mut rng, &stale), CKR_SESSION_HANDLE_INVALID),
                };
                let mut b = [0u8; 16];
                let mut l: CK_ULONG = 16;
                allow(
                    &mut errs,
                    p11!(
                        f,
                        C_EncryptUpdate(h, b.as_mut_ptr(), 16, b.as_mut_ptr(), &mut l)
                    ),
                    &[want],
                    &at("C_EncryptUpdate"),
                );
                allow(
                    &mut errs,
                    p11!(sh.f3, C_MessageSignFinal(h)),
                    &[want],
                    &at("C_MessageSignFinal"),
                );
            }
            // Operations in the wrong state on a live session.
            _ => {
                let Some(&h) = live.last() else { continue };
                let mut b = [0u8; 64];
                let mut l: CK_ULONG = 64;
                let ni = [CKR_OPERATION_NOT_INITIALIZED];
                allow(
                    &mut errs,
                    p11!(f, C_Sign(h, b.as_mut_ptr(), 32, b.as_mut_ptr(), &mut l)),
                    &ni,
                    &at("C_Sign without init"),
                );
                let mut n: CK_ULONG = 0;
                allow(
                    &mut errs,
                    p11!(
                        f,
                        C_FindObjects(h, b.as_mut_ptr() as *mut CK_OBJECT_HANDLE, 0, &mut n)
                    ),
                    &ni,
                    &at("C_FindObjects without init"),
                );
                allow(
                    &mut errs,
                    p11!(f, C_DigestUpdate(h, b.as_mut_ptr(), 8)),
                    &ni,
                    &at("C_DigestUpdate without init"),
                );
            }
        }
    }
    for h in live {
        allow(
            &mut errs,
            p11!(f, C_CloseSession(h)),
            &ok,
            &format!("seed {seed:#x}: final C_CloseSession"),
        );
    }
    (errs, signatures)
}

#[test]
fn eight_threads_mixing_bad_and_good_calls_never_crash_and_get_documented_codes() {
    let w = RawWorld::new();
    let f = w.f;
    w.init();
    let slot = w.slot();
    // This session keeps the user logged in for all threads (login is per token).
    let h0 = w.open(slot, true);
    w.login(h0);
    let (public, private) = w.ec_key_pair(h0);
    let sh = Shared {
        f,
        f3: w.list_3_0(),
        slot,
        public,
        private,
        cards: 1,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let base: u64 = now.as_secs() ^ (u64::from(now.subsec_nanos()) << 20);
    eprintln!("hammer base seed {base:#x}");
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let signatures = Arc::new(Mutex::new(0usize));
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let errors = Arc::clone(&errors);
            let signatures = Arc::clone(&signatures);
            let seed = base.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            std::thread::spawn(move || {
                let (e, n) = hammer(sh, seed, 200);
                errors.lock().expect("error list").extend(e);
                *signatures.lock().expect("signature count") += n;
            })
        })
        .collect();
    // A deadlock must fail the test, not hang it.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !threads.iter().all(|t| t.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "threads did not finish in 300 s (deadlock?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in threads {
        t.join().expect("a hammering thread panicked");
    }
    let mut c = Checks::default();
    let mut si: CK_SESSION_INFO = unsafe_zeroed();
    c.rv(
        p11!(f, C_GetSessionInfo(h0, &mut si)),
        CKR_OK,
        "the main session survived",
    );
    c.that(
        si.state == CKS_RW_USER_FUNCTIONS,
        "still logged in after the threads",
    );
    let mut ti: CK_TOKEN_INFO = unsafe_zeroed();
    c.rv(
        p11!(f, C_GetTokenInfo(slot, &mut ti)),
        CKR_OK,
        "C_GetTokenInfo",
    );
    c.that(
        ti.ulSessionCount == 1,
        &format!("only the main session is left, {} open", ti.ulSessionCount),
    );
    let made = *signatures.lock().expect("signature count");
    eprintln!("{made} TPM signatures made concurrently");
    c.that(
        made > 0,
        "the threads made some TPM signatures (the mix exercised the TPM)",
    );
    let errs = errors.lock().expect("error list").clone();
    for e in errs.iter().take(40) {
        c.0.push(e.clone());
    }
    if errs.len() > 40 {
        c.0.push(format!("... and {} more", errs.len() - 40));
    }
    w.finalize();
    c.done();
}

/// One round of a PIN thread: each call's code, the codes allowed, and what it was.
type PinStep = fn(
    &'static CK_FUNCTION_LIST,
    CK_SESSION_HANDLE,
) -> Vec<(CK_RV, &'static [CK_RV], &'static str)>;

/// One of the PIN threads of the long mixed run: `step` makes one round of calls on its
/// own session and returns the codes it got; the thread ends when the module says it is
/// finalized.
fn pin_thread(
    f: &'static CK_FUNCTION_LIST,
    slot: CK_SLOT_ID,
    step: PinStep,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut errs = Vec::new();
        let mut h = 0;
        let rv = p11!(
            f,
            C_OpenSession(
                slot,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                ptr::null_mut(),
                None,
                &mut h
            )
        );
        if rv != CKR_OK {
            errs.push(format!("C_OpenSession on slot {slot}: {}", rv_name(rv)));
            return errs;
        }
        loop {
            for (got, allowed, what) in step(f, h) {
                if got == CKR_CRYPTOKI_NOT_INITIALIZED {
                    return errs;
                }
                allow(&mut errs, got, allowed, what);
            }
        }
    })
}

#[test]
fn eight_threads_with_pin_changes_unblocks_and_a_finalize_in_flight_never_hang() {
    let w = RawWorld::new();
    let f = w.f;
    Cli::new(&w.store, &w.swtpm.tcti())
        .tpmvsc(&["create", "--name", "s", "--puk", "default"])
        .ok("a second card for the SO thread");
    w.init();
    let slot: CK_SLOT_ID = 0;
    let h0 = w.open(slot, true);
    w.login(h0);
    let (public, private) = w.ec_key_pair(h0);
    let sh = Shared {
        f,
        f3: w.list_3_0(),
        slot,
        public,
        private,
        cards: 2,
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finalizing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    // Five threads of the bad/good mix on card t, until told to stop — C_Finalize comes
    // while they run. A batch that overlaps it may see any answer (its sessions vanish
    // under it); it must only finish.
    let hammers: Vec<_> = (0..5u64)
        .map(|i| {
            let (stop, errors) = (Arc::clone(&stop), Arc::clone(&errors));
            let finalizing = Arc::clone(&finalizing);
            std::thread::spawn(move || {
                let mut seed = 0x5eed_0000 + i;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (e, _) = hammer(sh, seed, 20);
                    if !finalizing.load(std::sync::atomic::Ordering::SeqCst) {
                        errors.lock().expect("error list").extend(e);
                    }
                    seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
                }
            })
        })
        .collect();
    // C_SetPIN on card t (the PIN "changed" to itself: no wrong PIN ever).
    let set_pin = pin_thread(f, slot, |f, h| {
        let mut pin = DEFAULT_PIN.as_bytes().to_vec();
        let mut same = pin.clone();
        vec![(
            p11!(f, C_SetPIN(h, pin.as_mut_ptr(), 8, same.as_mut_ptr(), 8)),
            &[CKR_OK],
            "C_SetPIN(PIN, PIN)",
        )]
    });
    // SO login, C_InitPIN and logout on card s; a user login on the same card meanwhile.
    let init_pin = pin_thread(f, 1, |f, h| {
        let mut puk = DEFAULT_PIN.as_bytes().to_vec();
        let mut pin = DEFAULT_PIN.as_bytes().to_vec();
        let mut label = [b' '; 32];
        label[0] = b's';
        vec![
            (
                p11!(f, C_Login(h, CKU_SO, puk.as_mut_ptr(), 8)),
                &[CKR_OK, CKR_USER_ANOTHER_ALREADY_LOGGED_IN],
                "C_Login(SO)",
            ),
            (
                p11!(f, C_InitPIN(h, pin.as_mut_ptr(), 8)),
                &[CKR_OK, CKR_USER_NOT_LOGGED_IN],
                "C_InitPIN",
            ),
            // Reformat is refused while sessions are open (this thread's, at least).
            (
                p11!(f, C_InitToken(1, puk.as_mut_ptr(), 8, label.as_mut_ptr())),
                &[CKR_SESSION_EXISTS],
                "C_InitToken with sessions open",
            ),
            (
                p11!(f, C_Logout(h)),
                &[CKR_OK, CKR_USER_NOT_LOGGED_IN],
                "C_Logout(SO)",
            ),
        ]
    });
    let user_on_s = pin_thread(f, 1, |f, h| {
        let mut pin = DEFAULT_PIN.as_bytes().to_vec();
        vec![
            (
                p11!(f, C_Login(h, CKU_USER, pin.as_mut_ptr(), 8)),
                &[
                    CKR_OK,
                    CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
                    CKR_USER_ALREADY_LOGGED_IN,
                ],
                "C_Login(user) on card s",
            ),
            (
                p11!(f, C_Logout(h)),
                &[CKR_OK, CKR_USER_NOT_LOGGED_IN],
                "C_Logout(user) on card s",
            ),
        ]
    });
    std::thread::sleep(Duration::from_secs(60));
    // C_Finalize while all eight threads are in the mix: the PIN threads in C_Login,
    // C_SetPIN, C_InitPIN and C_InitToken, the others anywhere.
    finalizing.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    w.finalize();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "C_Finalize took {took:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !hammers.iter().all(|t| t.is_finished()) {
        assert!(Instant::now() < deadline, "the hammer threads hang");
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in hammers {
        t.join().expect("a hammering thread panicked");
    }
    let mut c = Checks::default();
    for (name, t) in [
        ("C_SetPIN", set_pin),
        ("C_InitPIN", init_pin),
        ("user", user_on_s),
    ] {
        while !t.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the {name} thread hangs after C_Finalize"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for e in t
            .join()
            .expect("a PIN thread panicked")
            .into_iter()
            .take(10)
        {
            c.0.push(format!("{name} thread: {e}"));
        }
    }
    for e in errors.lock().expect("error list").iter().take(40) {
        c.0.push(e.clone());
    }
    c.done();
}
