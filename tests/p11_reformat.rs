//! CKU_CONTEXT_SPECIFIC for keys marked CKA_ALWAYS_AUTHENTICATE, and C_InitToken as
//! reformat (PUK as SO PIN): objects gone, card ID kept, the user PIN unknown until the SO
//! sets one with C_InitPIN (DESIGN.md §5).

mod common;

use common::*;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};

fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.into())
}

#[test]
fn an_always_authenticate_key_signs_only_after_a_context_specific_login() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256_PARAMS.to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::AlwaysAuthenticate(true),
            ],
        )
        .expect("key pair with CKA_ALWAYS_AUTHENTICATE");
    let h = Sha256::digest(b"always authenticate").to_vec();

    // cryptoki's sign is C_SignInit + C_Sign: without the context login C_Sign refuses,
    // and (as every failed C_Sign) ends the operation.
    assert_eq!(
        p11_rv(s.sign(&Mechanism::Ecdsa, private, &h)),
        RvError::UserNotLoggedIn
    );
    let ctx = |pin_text: &str| s.login(UserType::ContextSpecific, Some(&pin(pin_text)));
    assert_eq!(p11_rv(ctx(P11_PIN)), RvError::OperationNotInitialized);

    // C_SignInit, a wrong then the right context login, then the signature.
    const MSG: &[u8] = b"signed after a context-specific login";
    s.sign_init(&Mechanism::EcdsaSha256, private)
        .expect("C_SignInit");
    assert_eq!(p11_rv(ctx("87654321")), RvError::PinIncorrect);
    ctx(P11_PIN).expect("CKU_CONTEXT_SPECIFIC with the PIN");
    s.sign_update(MSG).expect("C_SignUpdate");
    let sig = s.sign_final().expect("C_SignFinal after the context login");
    assert_eq!(sig.len(), 64);
    s.verify(&Mechanism::EcdsaSha256, public, MSG, &sig)
        .expect("the signature verifies");
}

#[test]
fn init_token_reformats_with_the_puk_and_leaves_the_user_pin_to_the_so() {
    let w = P11World::new(&[]);
    let card_id = w.info()["card_id"].as_str().expect("card_id").to_string();
    let p = p11_load();
    let slot = p11_slot(&p);
    {
        let s = p11_user_session(&p);
        p11_keygen(&s, None, P256_PARAMS, Some(b"k1"), Some("before"));
        assert_eq!(
            s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
                .expect("find")
                .len(),
            1
        );
        // Sessions open: C_InitToken refuses.
        assert_eq!(
            p11_rv(p.init_token(slot, &pin(P11_PUK), "t")),
            RvError::SessionExists
        );
    }
    // A wrong SO PIN (PUK) formats nothing.
    assert_eq!(
        p11_rv(p.init_token(slot, &pin("87654321"), "t")),
        RvError::PinIncorrect
    );
    p.init_token(slot, &pin(P11_PUK), "t")
        .expect("C_InitToken with the PUK");

    let ti = p.get_token_info(slot).expect("token info");
    assert!(
        !ti.user_pin_initialized(),
        "no user PIN until the SO sets one"
    );
    assert!(ti.token_initialized());
    assert_eq!(
        ti.serial_number(),
        &card_id.replace('-', "")[..16],
        "the card ID is kept"
    );
    assert_eq!(w.info()["card_id"].as_str(), Some(card_id.as_str()));

    // The old PIN no longer opens the card; the SO sets a new one.
    let s = p.open_rw_session(slot).expect("session");
    assert_eq!(
        p11_rv(s.login(UserType::User, Some(&pin(P11_PIN)))),
        RvError::PinIncorrect
    );
    s.login(UserType::So, Some(&pin(P11_PUK)))
        .expect("SO login");
    s.init_pin(&pin("Fresh-pin-1")).expect("C_InitPIN");
    s.logout().expect("logout");
    assert!(p.get_token_info(slot).expect("info").user_pin_initialized());
    s.login(UserType::User, Some(&pin("Fresh-pin-1")))
        .expect("the PIN the SO set");
    assert_eq!(
        s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .expect("find")
            .len(),
        0,
        "the reformat destroyed every key"
    );
    // The card works: a new key signs.
    let (_, k) = p11_keygen(&s, None, P256_PARAMS, Some(b"k2"), Some("after"));
    let h = Sha256::digest(b"after reformat").to_vec();
    assert_eq!(s.sign(&Mechanism::Ecdsa, k, &h).expect("sign").len(), 64);
}
