//! Token objects through the built module on a real swtpm: X.509 certificates (made by
//! openssl), data objects, the PKCS#11 3.0 profile objects, searches, and the 30-key limit.

// Raw C_FindObjects* with a vendor class through libloading + cryptoki-sys.
#![allow(unsafe_code)]

mod common;

use common::*;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use cryptoki_sys::*;
use der::{Decode, Encode};

fn find(s: &Session, t: &[Attribute]) -> Vec<ObjectHandle> {
    s.find_objects(t).expect("C_FindObjects")
}

fn reload(p: cryptoki::context::Pkcs11) -> cryptoki::context::Pkcs11 {
    p.finalize().expect("C_Finalize");
    p11_load()
}

#[test]
fn a_certificate_is_imported_found_renamed_and_destroyed() {
    let w = P11World::new(&[]);
    if !require_tool("openssl") {
        return;
    }
    let der = openssl_certificate(&w.store);
    let parsed = x509_cert::Certificate::from_der(&der).expect("x509-cert parses openssl's DER");
    let subject = parsed
        .tbs_certificate
        .subject
        .to_der()
        .expect("subject DER");
    let serial = parsed
        .tbs_certificate
        .serial_number
        .to_der()
        .expect("serial DER");

    let p = p11_load();
    let slot = p11_slot(&p);
    {
        let ro = p.open_ro_session(slot).expect("RO session");
        let cert = [
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(b"cert-1".to_vec()),
            Attribute::Label(b"my cert".to_vec()),
            Attribute::Value(der.clone()),
        ];
        assert_eq!(
            p11_rv(ro.create_object(&cert)),
            RvError::SessionReadOnly,
            "a token object in a RO session"
        );
        let rw = p.open_rw_session(slot).expect("RW session");
        assert_eq!(
            p11_rv(rw.create_object(&cert)),
            RvError::UserNotLoggedIn,
            "a token object without login"
        );
        rw.login(UserType::User, Some(&AuthPin::new(P11_PIN.into())))
            .expect("login");
        let h = rw.create_object(&cert).expect("C_CreateObject certificate");
        let subj = p11_attr(&rw, h, AttributeType::Subject);
        assert_eq!(subj, subject, "CKA_SUBJECT = the certificate's subject DER");
        assert!(
            contains_bytes(&der, &subj),
            "the subject bytes are inside the certificate"
        );
        assert!(contains_bytes(&subj, b"test"), "CN=test");
        assert_eq!(
            p11_attr(&rw, h, AttributeType::Issuer),
            subject,
            "self-signed: issuer = subject"
        );
        let sn = p11_attr(&rw, h, AttributeType::SerialNumber);
        assert_eq!(sn[0], 0x02, "CKA_SERIAL_NUMBER is a DER INTEGER");
        assert_eq!(sn, serial);
        assert_eq!(p11_attr(&rw, h, AttributeType::Value), der);
        assert_eq!(p11_attr(&rw, h, AttributeType::Id), b"cert-1");
    }

    // A new instance, no login: the certificate is public.
    let p = reload(p);
    let ro = p.open_ro_session(slot).expect("RO session");
    let by_class = find(&ro, &[Attribute::Class(ObjectClass::CERTIFICATE)]);
    assert_eq!(by_class.len(), 1, "visible without login");
    let h = by_class[0];
    for t in [
        vec![Attribute::Id(b"cert-1".to_vec())],
        vec![Attribute::Label(b"my cert".to_vec())],
        vec![Attribute::Value(der.clone())],
        vec![Attribute::Subject(subject.clone()), Attribute::Token(true)],
        vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
        ],
    ] {
        assert_eq!(find(&ro, &t), vec![h], "found by {t:?}");
    }
    assert!(find(&ro, &[Attribute::Id(b"cert-2".to_vec())]).is_empty());
    assert!(
        find(
            &ro,
            &[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Label(b"other".to_vec())
            ]
        )
        .is_empty()
    );

    // Rename (logged in, R/W), and the new label persists across instances.
    let rw = p.open_rw_session(slot).expect("RW session");
    rw.login(UserType::User, Some(&AuthPin::new(P11_PIN.into())))
        .expect("login");
    rw.update_attributes(h, &[Attribute::Label(b"renamed".to_vec())])
        .expect("C_SetAttributeValue CKA_LABEL");
    drop((ro, rw));
    let p = reload(p);
    let ro = p.open_ro_session(slot).expect("RO session");
    assert!(
        find(&ro, &[Attribute::Label(b"my cert".to_vec())]).is_empty(),
        "old label gone"
    );
    let h = find(&ro, &[Attribute::Label(b"renamed".to_vec())]);
    assert_eq!(h.len(), 1, "the new label persisted");
    assert_eq!(
        p11_attr(&ro, h[0], AttributeType::Id),
        b"cert-1",
        "CKA_ID kept"
    );

    let rw = p.open_rw_session(slot).expect("RW session");
    assert_eq!(
        p11_rv(rw.destroy_object(h[0])),
        RvError::UserNotLoggedIn,
        "destroy without login"
    );
    rw.login(UserType::User, Some(&AuthPin::new(P11_PIN.into())))
        .expect("login");
    rw.destroy_object(h[0]).expect("C_DestroyObject");
    assert!(find(&rw, &[Attribute::Class(ObjectClass::CERTIFICATE)]).is_empty());
    drop((ro, rw));
    let p = reload(p);
    let ro = p.open_ro_session(slot).expect("RO session");
    assert!(
        find(&ro, &[Attribute::Class(ObjectClass::CERTIFICATE)]).is_empty(),
        "destroyed for good"
    );
}

#[test]
fn data_objects_round_trip_and_private_token_data_is_refused() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let slot = p11_slot(&p);
    // A public session data object needs no login, even in a RO session.
    let ro = p.open_ro_session(slot).expect("RO session");
    let sess = ro
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Label(b"session data".to_vec()),
            Attribute::Value(b"v0".to_vec()),
        ])
        .expect("a public session data object without login");
    assert_eq!(p11_attr(&ro, sess, AttributeType::Value), b"v0");

    let rw = p11_user_session(&p);
    let value = (0..=255u8).collect::<Vec<u8>>();
    rw.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(b"token data".to_vec()),
        Attribute::Application(b"tests".to_vec()),
        Attribute::ObjectId(vec![0x06, 0x03, 0x2a, 0x03, 0x04]),
        Attribute::Value(value.clone()),
    ])
    .expect("a public token data object");
    assert_eq!(
        p11_rv(rw.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Value(b"secret".to_vec()),
        ])),
        RvError::AttributeValueInvalid,
        "a private token data object"
    );
    drop((ro, rw));

    let p = reload(p);
    let ro = p.open_ro_session(slot).expect("RO session");
    let found = find(&ro, &[Attribute::Class(ObjectClass::DATA)]);
    assert_eq!(
        found.len(),
        1,
        "only the token data object survives the reload"
    );
    let h = found[0];
    assert_eq!(
        find(&ro, &[Attribute::Application(b"tests".to_vec())]),
        vec![h]
    );
    assert_eq!(p11_attr(&ro, h, AttributeType::Value), value);
    assert_eq!(p11_attr(&ro, h, AttributeType::Label), b"token data");
    assert_eq!(
        p11_attr(&ro, h, AttributeType::ObjectId),
        vec![0x06, 0x03, 0x2a, 0x03, 0x04]
    );
}

/// C_FindObjects with one CKA_CLASS value through the raw function list.
fn raw_find_class(
    m: &raw::RawModule,
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
) -> (CK_RV, usize) {
    let f = m.list();
    let mut v: CK_OBJECT_CLASS = class;
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: (&mut v as *mut CK_OBJECT_CLASS).cast(),
        ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
    }];
    let mut out = [0 as CK_OBJECT_HANDLE; 16];
    let mut n: CK_ULONG = 0;
    // SAFETY: the template and output buffers live across the calls.
    unsafe {
        let rv = f.C_FindObjectsInit.expect("C_FindObjectsInit")(h, t.as_mut_ptr(), 1);
        if rv != CKR_OK {
            return (rv, 0);
        }
        let rv = f.C_FindObjects.expect("C_FindObjects")(h, out.as_mut_ptr(), 16, &mut n);
        let rv2 = f.C_FindObjectsFinal.expect("C_FindObjectsFinal")(h);
        assert_eq!(rv2, CKR_OK, "C_FindObjectsFinal");
        (rv, usize::try_from(n).expect("count"))
    }
}

#[test]
fn profile_objects_are_found_and_unknown_classes_give_an_empty_list() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let slot = p11_slot(&p);
    let ro = p.open_ro_session(slot).expect("RO session");
    let profiles = find(&ro, &[Attribute::Class(ObjectClass::PROFILE)]);
    assert_eq!(
        profiles.len(),
        2,
        "two profile objects, visible without login"
    );
    let m = raw::RawModule::open();
    let mut ids = Vec::new();
    for h in &profiles {
        let (rv, out) = m.get_attributes(ro.handle(), h.handle(), &[CKA_PROFILE_ID], Some(8));
        assert_eq!(rv, CKR_OK);
        let b: [u8; 8] = out[0].1.as_slice().try_into().expect("a CK_ULONG");
        ids.push(CK_ULONG::from_ne_bytes(b));
    }
    ids.sort();
    assert_eq!(
        ids,
        vec![CKP_AUTHENTICATION_TOKEN, CKP_PUBLIC_CERTIFICATES_TOKEN]
    );
    assert_eq!(ids, vec![3, 4]);

    // Unknown or unsupported classes: an empty result, not an error (NSS asks for these).
    for class in [
        0xCE53_4353u64, // CKO_NSS_CRL
        0xCE53_4354,    // CKO_NSS_TRUST
        0xCE53_4356,    // CKO_NSS_BUILTIN_ROOT_LIST
        CKO_HW_FEATURE,
        CKO_DOMAIN_PARAMETERS,
        CKO_MECHANISM,
        CKO_SECRET_KEY,
    ] {
        assert_eq!(
            raw_find_class(&m, ro.handle(), class),
            (CKR_OK, 0),
            "class {class:#x}"
        );
    }

    let rw = p11_user_session(&p);
    assert_eq!(
        p11_rv(rw.destroy_object(profiles[0])),
        RvError::ActionProhibited,
        "profiles cannot be destroyed"
    );
}

#[test]
fn the_thirty_first_key_is_refused_for_lack_of_memory() {
    let _w = P11World::new(&[]);
    let p = p11_load();
    let s = p11_user_session(&p);
    for i in 0..30u8 {
        p11_keygen(&s, None, P256_PARAMS, Some(&[i]), None);
    }
    let public = [
        Attribute::Token(true),
        Attribute::EcParams(P256_PARAMS.to_vec()),
    ];
    let private = [Attribute::Token(true), Attribute::Sign(true)];
    assert_eq!(
        p11_rv(s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)),
        RvError::DeviceMemory,
        "the 31st token key"
    );
    assert_eq!(
        find(&s, &[Attribute::Class(ObjectClass::PRIVATE_KEY)]).len(),
        30
    );
    // Destroying one makes room again.
    let one = find(
        &s,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(vec![7]),
        ],
    );
    assert_eq!(one.len(), 1);
    s.destroy_object(one[0]).expect("destroy a key");
    p11_keygen(&s, None, P256_PARAMS, Some(b"again"), None);
}
