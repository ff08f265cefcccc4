//! DESIGN.md §2: someone with full read/write access to the store and the TPM, but without
//! the PIN, the PUK or the admin key, cannot set a new PIN. Every branch of the card
//! storage key's policy is tried with the library, as such an attacker would, and the
//! store is tampered with to point the CLI at an attacker-made PUK object.

mod common;

use common::*;
use tpmvsc::card::{
    self, ADMIN_FILE, AdminFile, CARD_FILE, CardKeys, CardRecord, ObjectFile, PUK_FILE,
};
use tpmvsc::tpm::{Authorizer, Blob, Tpm, TpmError, policy, templates};

const PIN: &str = "Real-pin-8812";
const PUK: &str = "Real-puk-4471";
const ADMIN_KEY: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928";

/// What an attacker reads from a card directory.
struct Loot {
    record: CardRecord,
    keys: CardKeys,
    puk: Option<Blob>,
    admin: Option<Blob>,
}

fn loot(store: &TestStore, card: &str) -> Loot {
    let s = store.store();
    let (dir, record) = tpmvsc::provision::find(&s, card).expect("finding the card");
    let keys = tpmvsc::provision::pin::read_keys(&dir, &record).expect("the card's keys");
    let puk = dir
        .has(PUK_FILE)
        .then(|| dir.read::<ObjectFile>(PUK_FILE).expect("puk.json").blob);
    let admin = dir
        .has(ADMIN_FILE)
        .then(|| dir.read::<AdminFile>(ADMIN_FILE).expect("admin.json").blob);
    Loot {
        record,
        keys,
        puk,
        admin,
    }
}

fn open(tcti: &str, record: &CardRecord) -> Tpm {
    let mut tpm = Tpm::open_tcti(tcti).expect("opening the TPM");
    tpm.use_srk(&record.srk).expect("using the card's SRK");
    tpm
}

/// The attacker's chosen new authValue for the CSK.
fn attacker_new_auth() -> Vec<u8> {
    vec![0xA5; 32]
}

#[test]
fn without_pin_puk_or_admin_key_nobody_sets_a_new_pin() {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    // Every try below is a counted authorization failure: no TPM lockout here.
    swtpm.set_da(1000, 1, 1);
    let tcti = swtpm.tcti();
    // "p": PIN and PUK branches (and an admin object the policy leaves out).
    cli.tpmvsc_stdin(
        &[
            "create",
            "--name",
            "p",
            "--pin",
            "prompt",
            "--puk",
            "prompt",
            "--admin-key",
            "prompt",
            "--stdin",
        ],
        &format!("{PIN}\n{PUK}\n{ADMIN_KEY}\n"),
    )
    .ok("create a card with a PUK");
    // "a": PIN and admin branches.
    cli.tpmvsc_stdin(
        &[
            "create",
            "--name",
            "a",
            "--pin",
            "prompt",
            "--admin-key",
            "prompt",
            "--stdin",
        ],
        &format!("{PIN}\n{ADMIN_KEY}\n"),
    )
    .ok("create a card with an admin key and no PUK");

    let p = loot(&store, "p");
    let a = loot(&store, "a");
    let new_auth = attacker_new_auth();
    let guessed = card::pin_auth(&p.record.puk_salt, b"12345678");
    assert_eq!(p.record.branches().len(), 2);
    assert!(matches!(p.record.branches()[1], policy::Branch::Puk { .. }));
    assert!(matches!(
        a.record.branches()[1],
        policy::Branch::Admin { .. }
    ));

    // (a) PIN branch with a guessed PIN.
    {
        let mut tpm = open(&tcti, &p.record);
        let wrong = card::pin_auth(&p.record.pin_salt, b"12345678");
        let r = tpm.change_csk_auth(
            p.keys.csk_ref(),
            &p.record.branches(),
            Authorizer::Pin(&wrong),
            &new_auth,
        );
        assert_eq!(
            r.err(),
            Some(TpmError::AuthFail),
            "(a) PIN branch, guessed PIN"
        );
        let r = tpm.change_csk_auth(
            a.keys.csk_ref(),
            &a.record.branches(),
            Authorizer::Pin(&wrong),
            &new_auth,
        );
        assert_eq!(
            r.err(),
            Some(TpmError::AuthFail),
            "(a) PIN branch of the admin card"
        );
    }

    // (b) PUK branch with the real PUK object and a guessed PUK.
    {
        let mut tpm = open(&tcti, &p.record);
        let how = Authorizer::Secret {
            object: p.puk.as_ref().expect("the card has a PUK object"),
            auth: &guessed,
            is_puk: true,
        };
        let r = tpm.change_csk_auth(p.keys.csk_ref(), &p.record.branches(), how, &new_auth);
        assert_eq!(
            r.err(),
            Some(TpmError::AuthFail),
            "(b) PUK branch, guessed PUK"
        );
    }

    // (c) Admin branch with the real admin object and a guessed unblock secret X.
    {
        let mut tpm = open(&tcti, &a.record);
        let x = [0x5Au8; 32];
        let how = Authorizer::Secret {
            object: a.admin.as_ref().expect("the card has an admin object"),
            auth: &x,
            is_puk: false,
        };
        let r = tpm.change_csk_auth(a.keys.csk_ref(), &a.record.branches(), how, &new_auth);
        assert_eq!(
            r.err(),
            Some(TpmError::AuthFail),
            "(c) admin branch, guessed X"
        );
        // The PUK card's admin object (not in its policy) with a guessed X.
        let how = Authorizer::Secret {
            object: p.admin.as_ref().expect("the PUK card has an admin object"),
            auth: &x,
            is_puk: false,
        };
        let r = tpm.change_csk_auth(p.keys.csk_ref(), &p.record.branches(), how, &new_auth);
        assert_eq!(
            r.err(),
            Some(TpmError::AuthFail),
            "(c) admin object of the PUK card"
        );
    }

    // (d), (e): an attacker-made sealed object whose secret the attacker knows.
    let known = card::pin_auth(&p.record.puk_salt, b"attacker-puk-1");
    let fake = {
        let mut tpm = open(&tcti, &p.record);
        tpm.create_under_srk(
            templates::sealed_secret().expect("template"),
            &known,
            Some(b"x"),
        )
        .expect("the attacker can create objects under the SRK")
    };
    assert_ne!(
        Some(fake.name()),
        p.record.puk_name,
        "a new object has a new Name"
    );
    {
        let mut tpm = open(&tcti, &p.record);
        // (d) with the card's real branches: the attacker's branch is not among them.
        for is_puk in [true, false] {
            let how = Authorizer::Secret {
                object: &fake,
                auth: &known,
                is_puk,
            };
            let r = tpm.change_csk_auth(p.keys.csk_ref(), &p.record.branches(), how, &new_auth);
            assert!(
                r.is_err(),
                "(d) attacker object, real branches (PUK card, is_puk {is_puk}): {r:?}"
            );
            let r = tpm.change_csk_auth(a.keys.csk_ref(), &a.record.branches(), how, &new_auth);
            assert!(
                r.is_err(),
                "(d) attacker object, real branches (admin card, is_puk {is_puk}): {r:?}"
            );
        }
        // (e) branches recomputed as if the attacker's object were the card's PUK (or
        // admin object): the TPM compares the result with the CSK's authPolicy.
        let how = Authorizer::Secret {
            object: &fake,
            auth: &known,
            is_puk: true,
        };
        let forged = policy::branches(Some(&fake.name()), None);
        let r = tpm.change_csk_auth(p.keys.csk_ref(), &forged, how, &new_auth);
        assert!(
            matches!(r, Err(TpmError::Policy(_))),
            "(e) forged PUK branch on the PUK card: {r:?}"
        );
        let r = tpm.change_csk_auth(a.keys.csk_ref(), &forged, how, &new_auth);
        assert!(
            matches!(r, Err(TpmError::Policy(_))),
            "(e) forged PUK branch on the admin card: {r:?}"
        );
        let how = Authorizer::Secret {
            object: &fake,
            auth: &known,
            is_puk: false,
        };
        let forged = policy::branches(None, Some(&fake.name()));
        let r = tpm.change_csk_auth(a.keys.csk_ref(), &forged, how, &new_auth);
        assert!(
            matches!(r, Err(TpmError::Policy(_))),
            "(e) forged admin branch on the admin card: {r:?}"
        );
    }

    // (f) The store rewritten to name the attacker's object as the card's PUK, then the
    // ordinary CLI used with the attacker's PUK.
    let dir = card_dir(&cli, "p");
    let card_json = std::fs::read(dir.join(CARD_FILE)).expect("card.json");
    let puk_json = std::fs::read(dir.join(PUK_FILE)).expect("puk.json");
    {
        let mut record: serde_json::Value =
            serde_json::from_slice(&card_json).expect("card.json is JSON");
        record["puk_name"] = serde_json::Value::String(hex::encode(fake.name()));
        std::fs::write(
            dir.join(CARD_FILE),
            serde_json::to_vec_pretty(&record).expect("JSON"),
        )
        .expect("rewriting card.json");
        // puk.json written with the library's own store code (versioned records).
        let s = store.store();
        let (card_dir_handle, _) = tpmvsc::provision::find(&s, "p").expect("finding card p");
        card_dir_handle
            .write(PUK_FILE, &ObjectFile { blob: fake.clone() }, true)
            .expect("rewriting puk.json");
        assert_eq!(
            loot(&store, "p").record.puk_name,
            Some(fake.name()),
            "the tampered record is the one the CLI reads"
        );
        let out = cli.tpmvsc_stdin(
            &["unblock", "p", "--puk", "--stdin"],
            "attacker-puk-1\nAttacker-pin-1\nAttacker-pin-1\n",
        );
        assert_ne!(
            out.code, 0,
            "(f) unblock through a tampered store: {out:#?}"
        );
        assert!(
            out.stderr.contains("altered"),
            "(f) the refusal says the card's files were altered: {out:#?}"
        );
    }
    // The refused unblock left the card's CSK as it was.
    assert_eq!(
        loot(&store, "p").keys.csk,
        p.keys.csk,
        "(f) card p's CSK blob is unchanged"
    );
    // While card.json names the attacker's object, the CSK no longer matches the policy
    // the record implies: the card is refused as altered before any secret is sent.
    assert_eq!(
        check_pin(&store, &tcti, "p", PIN),
        Err(TpmError::UnexpectedObject("card storage key (csk.json)")),
        "(f) the tampered record is refused"
    );
    {
        let mut tpm = open(&tcti, &p.record);
        assert_eq!(
            tpm.check_pin(
                p.keys.csk_ref(),
                &card::pin_auth(&p.record.pin_salt, b"Attacker-pin-1")
            ),
            Err(TpmError::AuthFail),
            "(f) the card's CSK does not take the attacker's PIN"
        );
    }

    // After all of it: the original PIN still opens both cards' storage keys, and none of
    // the attacker's values does.
    let mut tpm = open(&tcti, &p.record);
    for (name, l) in [("p", &p), ("a", &a)] {
        tpm.check_pin(
            l.keys.csk_ref(),
            &card::pin_auth(&l.record.pin_salt, PIN.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("card {name}: the original PIN no longer opens the CSK: {e}"));
        assert_eq!(
            tpm.check_pin(l.keys.csk_ref(), &new_auth),
            Err(TpmError::AuthFail),
            "card {name}: the attacker's authValue"
        );
        for guess in ["12345678", "Attacker-pin-1", "attacker-puk-1", PUK] {
            assert_eq!(
                tpm.check_pin(
                    l.keys.csk_ref(),
                    &card::pin_auth(&l.record.pin_salt, guess.as_bytes())
                ),
                Err(TpmError::AuthFail),
                "card {name}: PIN guess {guess:?}"
            );
        }
    }
    drop(tpm);
    // The on-disk CSK of the untouched card is the one we checked.
    assert_eq!(
        loot(&store, "a").keys.csk,
        a.keys.csk,
        "card a's CSK blob is unchanged"
    );
    check_pin(&store, &tcti, "a", PIN).expect("card a: the original PIN");

    // Put card p's files back: the real PUK still unblocks it, and the PIN it sets works.
    std::fs::write(dir.join(CARD_FILE), &card_json).expect("restoring card.json");
    std::fs::write(dir.join(PUK_FILE), &puk_json).expect("restoring puk.json");
    check_pin(&store, &tcti, "p", PIN).expect("card p: the original PIN after restoring");
    cli.tpmvsc_stdin(
        &["unblock", "p", "--puk", "--stdin"],
        &format!("{PUK}\nOwner-pin-2\nOwner-pin-2\n"),
    )
    .ok("the owner's PUK still unblocks the card");
    check_pin(&store, &tcti, "p", "Owner-pin-2").expect("the owner's new PIN");
}
