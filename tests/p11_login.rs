//! PKCS#11 login through the built module on a real swtpm: wrong PINs counted and
//! blocking, the token flags along the way, who sees which objects, login shared between
//! sessions, SO (PUK) login, C_InitPIN and C_SetPIN.

mod common;

use common::*;
use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::types::AuthPin;

fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.into())
}

fn find_class(s: &Session, class: ObjectClass) -> usize {
    s.find_objects(&[Attribute::Class(class)])
        .expect("C_FindObjects")
        .len()
}

#[test]
fn a_wrong_pin_is_incorrect_and_the_next_correct_login_works() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin("87654321")))),
        RvError::PinIncorrect
    );
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(
        ti.user_pin_count_low(),
        "one wrong PIN: CKF_USER_PIN_COUNT_LOW"
    );
    assert!(!ti.user_pin_final_try() && !ti.user_pin_locked());
    s.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("the correct PIN after one wrong one");
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(
        !ti.user_pin_count_low(),
        "a correct PIN resets the count: flags {ti:?}"
    );
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::UserAlreadyLoggedIn
    );
}

#[test]
fn wrong_pins_block_the_card_with_the_flags_on_the_way() {
    let _w = P11World::new(&["--pin-tries", "3"]);
    let p = p11_load();
    let slot = p11_slot(&p);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(!ti.user_pin_count_low() && !ti.user_pin_final_try() && !ti.user_pin_locked());

    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin("00000001")))),
        RvError::PinIncorrect
    );
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(ti.user_pin_count_low(), "2 of 3 left: count low");
    assert!(!ti.user_pin_final_try() && !ti.user_pin_locked());

    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin("00000002")))),
        RvError::PinIncorrect
    );
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(ti.user_pin_final_try(), "1 left: final try");
    assert!(!ti.user_pin_locked());

    // PKCS#11 allows either code for the attempt that blocks.
    let third = p11_rv(s.login(UserType::User, Some(&pin("00000003"))));
    assert!(
        matches!(third, RvError::PinIncorrect | RvError::PinLocked),
        "third wrong PIN: {third:?}"
    );
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(ti.user_pin_locked(), "blocked: CKF_USER_PIN_LOCKED");

    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::PinLocked,
        "even the right PIN is refused once blocked"
    );
    // The SO unblocks with the PUK and sets a new PIN.
    s.login(UserType::So, Some(&pin(P11_PUK)))
        .expect("SO login with the PUK");
    s.init_pin(&pin("abcdefgh")).expect("C_InitPIN");
    s.logout().expect("C_Logout (SO)");
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(!ti.user_pin_locked() && !ti.user_pin_count_low(), "{ti:?}");
    s.login(UserType::User, Some(&pin("abcdefgh")))
        .expect("the new PIN after unblocking");
}

/// Logs in, makes an EC token key pair, logs out; returns the private key handle.
fn key_pair_then_logout(p: &Pkcs11) -> (Session, cryptoki::object::ObjectHandle) {
    let s = p11_user_session(p);
    let (_, private) = p11_keygen(&s, None, P256_PARAMS, Some(b"k1"), Some("k1"));
    s.logout().expect("C_Logout");
    (s, private)
}

#[test]
fn private_keys_are_visible_only_while_logged_in() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let (s, private) = key_pair_then_logout(&p);

    // A fresh module instance: nothing cached from the login.
    drop(s);
    p.finalize().expect("C_Finalize");
    let p = p11_load();
    let slot = p11_slot(&p);
    let ro = p.open_ro_session(slot).expect("C_OpenSession RO");
    assert_eq!(
        find_class(&ro, ObjectClass::PUBLIC_KEY),
        1,
        "public key before login"
    );
    assert_eq!(
        find_class(&ro, ObjectClass::PRIVATE_KEY),
        0,
        "no private key before login"
    );
    let private_before = ro
        .find_objects(&[Attribute::Id(b"k1".to_vec())])
        .expect("find by CKA_ID");
    assert_eq!(
        private_before.len(),
        1,
        "only the public half by ID before login"
    );

    let rw = p.open_rw_session(slot).expect("C_OpenSession RW");
    rw.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("C_Login");
    assert_eq!(
        find_class(&ro, ObjectClass::PRIVATE_KEY),
        1,
        "the other session sees it too"
    );
    assert_eq!(find_class(&rw, ObjectClass::PRIVATE_KEY), 1);
    let key = rw
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .expect("find")[0];
    rw.sign(&Mechanism::Ecdsa, key, &[7u8; 32])
        .expect("sign while logged in");

    ro.logout().expect("C_Logout from the other session");
    assert_eq!(
        find_class(&rw, ObjectClass::PRIVATE_KEY),
        0,
        "logout hides private objects"
    );
    assert_eq!(find_class(&rw, ObjectClass::PUBLIC_KEY), 1);
    assert_eq!(
        p11_rv(rw.sign(&Mechanism::Ecdsa, key, &[7u8; 32])),
        RvError::UserNotLoggedIn,
        "sign without login"
    );
    assert_eq!(
        p11_rv(rw.logout()),
        RvError::UserNotLoggedIn,
        "logout twice"
    );
    let _ = private;
}

#[test]
fn sign_on_a_handle_kept_from_before_logout_needs_login() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let (s, private) = key_pair_then_logout(&p);
    assert_eq!(
        p11_rv(s.sign(&Mechanism::Ecdsa, private, &[1u8; 32])),
        RvError::UserNotLoggedIn
    );
}

#[test]
fn login_is_shared_by_the_sessions_of_a_token() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let slot = p11_slot(&p);
    let a = p.open_rw_session(slot).expect("session a");
    let b = p.open_ro_session(slot).expect("session b");
    assert_eq!(
        b.get_session_info().expect("info").session_state(),
        SessionState::RoPublic
    );
    a.login(UserType::User, Some(&pin(P11_PIN)))
        .expect("login in a");
    assert_eq!(
        a.get_session_info().expect("info").session_state(),
        SessionState::RwUser
    );
    assert_eq!(
        b.get_session_info().expect("info").session_state(),
        SessionState::RoUser,
        "b is logged in too"
    );
    assert_eq!(
        p11_rv(b.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::UserAlreadyLoggedIn
    );
    // A session opened later starts logged in.
    let c = p.open_rw_session(slot).expect("session c");
    assert_eq!(
        c.get_session_info().expect("info").session_state(),
        SessionState::RwUser
    );
    assert_eq!(
        p11_rv(c.login(UserType::So, Some(&pin(P11_PUK)))),
        RvError::UserAnotherAlreadyLoggedIn
    );
}

#[test]
fn so_login_needs_rw_sessions_and_init_pin_sets_a_new_pin() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let slot = p11_slot(&p);
    let ro = p.open_ro_session(slot).expect("RO session");
    let rw = p.open_rw_session(slot).expect("RW session");
    assert_eq!(
        p11_rv(rw.login(UserType::So, Some(&pin(P11_PUK)))),
        RvError::SessionReadOnlyExists
    );
    drop(ro);
    assert_eq!(
        p11_rv(rw.login(UserType::So, Some(&pin("99999999")))),
        RvError::PinIncorrect,
        "a wrong PUK"
    );
    rw.login(UserType::So, Some(&pin(P11_PUK)))
        .expect("SO login with only R/W sessions");
    assert_eq!(
        rw.get_session_info().expect("info").session_state(),
        SessionState::RwSecurityOfficer
    );
    assert_eq!(
        p11_rv(p.open_ro_session(slot)),
        RvError::SessionReadWriteSoExists,
        "no RO session while the SO is logged in"
    );
    rw.init_pin(&pin("newpin-1")).expect("C_InitPIN as SO");
    rw.logout().expect("SO logout");

    assert_eq!(
        p11_rv(rw.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::PinIncorrect,
        "the old PIN no longer works"
    );
    rw.login(UserType::User, Some(&pin("newpin-1")))
        .expect("the PIN the SO set");
    assert_eq!(
        p11_rv(rw.init_pin(&pin("another1"))),
        RvError::UserNotLoggedIn,
        "C_InitPIN as user"
    );
}

#[test]
fn set_pin_as_user_changes_the_pin() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    let (_, key) = p11_keygen(&s, None, P256_PARAMS, None, None);
    assert_eq!(
        p11_rv(s.set_pin(&pin("11111111"), &pin("22222222"))),
        RvError::PinIncorrect,
        "C_SetPIN with a wrong old PIN"
    );
    assert_eq!(
        p11_rv(s.set_pin(&pin(P11_PIN), &pin("short"))),
        RvError::PinLenRange,
        "a new PIN below the 8-character minimum"
    );
    s.set_pin(&pin(P11_PIN), &pin("changed-pin"))
        .expect("C_SetPIN as user");
    s.sign(&Mechanism::Ecdsa, key, &[3u8; 32])
        .expect("keys still sign after the PIN change in the same login");
    s.logout().expect("logout");
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::PinIncorrect,
        "the old PIN fails"
    );
    s.login(UserType::User, Some(&pin("changed-pin")))
        .expect("the new PIN works");
    s.sign(&Mechanism::Ecdsa, key, &[3u8; 32])
        .expect("sign after login with the new PIN");
}
