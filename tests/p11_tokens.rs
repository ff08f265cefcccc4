//! PKCS#11 slots and tokens of the built module (`libtpmvsc.so`) on a real swtpm: the card
//! is a slot, its token info says what it is, cards made or destroyed by the CLI while the
//! module is loaded appear and go, and the PKCS#11 3.0 interfaces are offered.

// Raw C_GetInterfaceList / C_GetInterface calls through libloading + cryptoki-sys.
#![allow(unsafe_code)]

mod common;

use common::*;
use cryptoki::slot::Slot;
use cryptoki_sys::*;

#[test]
fn the_card_is_a_slot_whose_token_info_names_it() {
    let w = P11World::new(&[]);
    let card_id = w.info()["card_id"].as_str().expect("card_id").to_string();
    let p = p11_load();

    let all = p.get_all_slots().expect("C_GetSlotList(all)");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].id(), 0, "the first card is slot 0 (instance 0000)");
    assert_eq!(p11_slot(&p), all[0]);

    let si = p.get_slot_info(all[0]).expect("C_GetSlotInfo");
    assert!(si.token_present(), "the token is always present");
    assert!(!si.removable_device(), "the token is not removable");

    let ti = p.get_token_info(all[0]).expect("C_GetTokenInfo");
    assert_eq!(ti.label(), "t", "token label = card name");
    assert_eq!(ti.model(), "TPM VSC");
    let hex: String = card_id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    assert_eq!(
        ti.serial_number().to_ascii_lowercase(),
        hex[..16].to_ascii_lowercase(),
        "serial = first 16 hex digits of card ID {card_id}"
    );
    assert_eq!(ti.serial_number().len(), 16);
    assert!(ti.login_required(), "CKF_LOGIN_REQUIRED");
    assert!(ti.rng(), "CKF_RNG");
    assert!(ti.token_initialized(), "CKF_TOKEN_INITIALIZED");
    assert!(ti.user_pin_initialized(), "CKF_USER_PIN_INITIALIZED");
    assert!(!ti.user_pin_locked() && !ti.user_pin_count_low() && !ti.user_pin_final_try());
    assert!(!ti.so_pin_locked(), "the card has a PUK");
    assert_eq!(ti.min_pin_length(), 8);
    assert_eq!(ti.max_pin_length(), 127);

    // C_GenerateRandom comes from the TPM and works without login.
    let s = p.open_ro_session(all[0]).expect("C_OpenSession (RO)");
    let a = s.generate_random_vec(32).expect("C_GenerateRandom");
    let b = s.generate_random_vec(32).expect("C_GenerateRandom");
    assert_eq!(a.len(), 32);
    assert_ne!(a, b, "two random draws differ");
}

#[test]
fn cards_made_or_destroyed_while_the_module_is_loaded_appear_and_go() {
    let w = P11World::new(&[]);
    let p = p11_load();
    // Drain the events of the cards present at C_Initialize.
    for _ in 0..10 {
        if p.get_slot_event()
            .expect("C_WaitForSlotEvent(DONT_BLOCK)")
            .is_none()
        {
            break;
        }
    }
    assert_eq!(p.get_all_slots().expect("C_GetSlotList").len(), 1);

    create_card(&w.cli, "second");
    assert_eq!(
        p.get_slot_event().expect("C_WaitForSlotEvent(DONT_BLOCK)"),
        Some(Slot::try_from(1u64).expect("slot id")),
        "the new card (instance 0001) is reported as a slot event"
    );
    let slots = p.get_all_slots().expect("C_GetSlotList after create");
    assert_eq!(slots.iter().map(|s| s.id()).collect::<Vec<_>>(), vec![0, 1]);
    let mut labels: Vec<String> = slots
        .iter()
        .map(|s| {
            p.get_token_info(*s)
                .expect("C_GetTokenInfo")
                .label()
                .to_string()
        })
        .collect();
    labels.sort();
    assert_eq!(labels, vec!["second", "t"]);

    w.cli.tpmvsc(&["destroy", "t", "--yes"]).ok("destroy t");
    let slots = p.get_all_slots().expect("C_GetSlotList after destroy");
    assert_eq!(
        slots.iter().map(|s| s.id()).collect::<Vec<_>>(),
        vec![1],
        "slot 0 is gone"
    );
    assert_eq!(
        p.get_token_info(slots[0]).expect("C_GetTokenInfo").label(),
        "second"
    );
    let gone = Slot::try_from(0u64).expect("slot id");
    assert_eq!(
        p11_rv(p.get_token_info(gone)),
        cryptoki::error::RvError::SlotIdInvalid,
        "the destroyed card's slot is invalid"
    );
}

#[test]
fn the_pkcs11_3_0_and_2_40_interfaces_are_offered() {
    let _w = P11World::new(&[]);
    let m = raw::RawModule::open();
    type ListFn = unsafe extern "C" fn(*mut CK_INTERFACE, *mut CK_ULONG) -> CK_RV;
    type GetFn = unsafe extern "C" fn(
        *mut CK_UTF8CHAR,
        *mut CK_VERSION,
        *mut *mut CK_INTERFACE,
        CK_FLAGS,
    ) -> CK_RV;
    // SAFETY: the symbols have the signatures of the PKCS#11 3.0 header.
    let (list_fn, get_fn) = unsafe {
        let l: libloading::Symbol<'_, ListFn> = m
            .lib()
            .get(b"C_GetInterfaceList\0")
            .expect("C_GetInterfaceList is exported");
        let g: libloading::Symbol<'_, GetFn> = m
            .lib()
            .get(b"C_GetInterface\0")
            .expect("C_GetInterface is exported");
        (*l, *g)
    };

    let mut n: CK_ULONG = 0;
    // SAFETY: NULL list asks for the count.
    assert_eq!(unsafe { list_fn(std::ptr::null_mut(), &mut n) }, CKR_OK);
    assert_eq!(n, 2, "two interfaces: 3.0 and 2.40");
    let mut small: CK_ULONG = 1;
    let mut one = [CK_INTERFACE {
        pInterfaceName: std::ptr::null_mut(),
        pFunctionList: std::ptr::null_mut(),
        flags: 0,
    }; 2];
    // SAFETY: `one` holds 2 entries; we claim 1.
    let rv = unsafe { list_fn(one.as_mut_ptr(), &mut small) };
    assert_eq!(rv, CKR_BUFFER_TOO_SMALL);
    assert_eq!(
        small, 2,
        "the needed count comes back with CKR_BUFFER_TOO_SMALL"
    );
    let mut cap: CK_ULONG = 2;
    // SAFETY: `one` holds 2 entries.
    assert_eq!(unsafe { list_fn(one.as_mut_ptr(), &mut cap) }, CKR_OK);
    let mut versions = Vec::new();
    for i in one {
        assert!(!i.pInterfaceName.is_null() && !i.pFunctionList.is_null());
        // SAFETY: a NUL-terminated static name and a function list starting with its version.
        let (name, v) = unsafe {
            (
                std::ffi::CStr::from_ptr(i.pInterfaceName.cast())
                    .to_string_lossy()
                    .into_owned(),
                (*(i.pFunctionList as *const CK_FUNCTION_LIST)).version,
            )
        };
        assert_eq!(name, "PKCS 11");
        versions.push((v.major, v.minor));
    }
    versions.sort();
    assert_eq!(versions, vec![(2, 40), (3, 0)]);

    // Default interface: the newest, 3.0, whose table has C_LoginUser and C_SessionCancel.
    let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
    // SAFETY: NULL name and version = the default interface.
    let rv = unsafe { get_fn(std::ptr::null_mut(), std::ptr::null_mut(), &mut iface, 0) };
    assert_eq!(rv, CKR_OK);
    assert!(!iface.is_null());
    // SAFETY: a 3.0 interface points at a CK_FUNCTION_LIST_3_0.
    let f30 = unsafe { &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0) };
    assert_eq!((f30.version.major, f30.version.minor), (3, 0));
    assert!(f30.C_LoginUser.is_some() && f30.C_SessionCancel.is_some());
    assert!(f30.C_GetInterface.is_some() && f30.C_GetInterfaceList.is_some());

    // Asking for 2.40 by name and version.
    let mut name = *b"PKCS 11\0";
    let mut v240 = CK_VERSION {
        major: 2,
        minor: 40,
    };
    let mut iface2: *mut CK_INTERFACE = std::ptr::null_mut();
    // SAFETY: a NUL-terminated name and a valid version.
    let rv = unsafe { get_fn(name.as_mut_ptr(), &mut v240, &mut iface2, 0) };
    assert_eq!(rv, CKR_OK);
    // SAFETY: as above.
    let v = unsafe { (*((*iface2).pFunctionList as *const CK_FUNCTION_LIST)).version };
    assert_eq!((v.major, v.minor), (2, 40));

    // An unknown interface name is refused cleanly.
    let mut bogus = *b"Vendor X\0";
    let mut iface3: *mut CK_INTERFACE = std::ptr::null_mut();
    // SAFETY: as above.
    let rv = unsafe { get_fn(bogus.as_mut_ptr(), std::ptr::null_mut(), &mut iface3, 0) };
    assert_ne!(rv, CKR_OK, "an unknown interface name is not found");

    // cryptoki picks the 3.0 table: C_LoginUser is there.
    let p = p11_load();
    assert!(p.is_fn_supported(cryptoki::context::Function::LoginUser));
    assert!(p.is_fn_supported(cryptoki::context::Function::SessionCancel));
}
