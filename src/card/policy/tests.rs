//! Unit tests of `policy`.

use super::*;

fn usage_of(r: Result<PinPolicy>) -> String {
    match r {
        Err(Error::Usage(m)) => m,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

fn violation_of(r: Result<()>) -> String {
    match r {
        Err(Error::PinRule { why: m, .. }) => m,
        other => panic!("expected a policy violation, got {other:?}"),
    }
}

fn policy(spec: &str) -> PinPolicy {
    PinPolicy::parse(spec).unwrap()
}

// --- defaults ---

#[test]
fn default_is_windows_8_to_127_all_allowed() {
    let p = PinPolicy::default();
    assert_eq!((p.min_len, p.max_len), (8, 127));
    for class in CharClass::ALL {
        assert_eq!(p.rule(class), CharRule::Allowed);
    }
    assert_eq!(p, PinPolicy::default());
    assert_eq!(p.describe(), "8-127 characters");
}

#[test]
fn default_pin_passes_the_default_policy() {
    PinPolicy::default().check("PIN", b"12345678").unwrap();
}

#[test]
fn empty_spec_and_empty_options_are_the_default() {
    assert_eq!(policy(""), PinPolicy::default());
    assert_eq!(policy("  "), PinPolicy::default());
    assert_eq!(PinPolicy::from_options([]).unwrap(), PinPolicy::default());
}

#[test]
fn a_changed_policy_is_not_default() {
    assert_ne!(policy("minlen=9"), PinPolicy::default());
    assert_ne!(policy("digits=required"), PinPolicy::default());
    assert_eq!(
        policy("minlen=8,maxlen=127,digits=allowed"),
        PinPolicy::default()
    );
}

// --- tpmvsc syntax ---

#[test]
fn full_tpmvsc_spec_parses() {
    let p = policy(
        "minlen=6,maxlen=20,uppercase=required,lowercase=allowed,digits=disallowed,specialchars=required",
    );
    assert_eq!(
        p,
        PinPolicy {
            min_len: 6,
            max_len: 20,
            uppercase: CharRule::Required,
            lowercase: CharRule::Allowed,
            digits: CharRule::Disallowed,
            special: CharRule::Required,
        }
    );
}

#[test]
fn tpmvsc_spec_takes_any_order_and_subset() {
    let p = policy("digits=required,maxlen=10");
    assert_eq!(
        (p.min_len, p.max_len, p.digits),
        (8, 10, CharRule::Required)
    );
    assert_eq!(p.uppercase, CharRule::Allowed);
}

#[test]
fn tpmvsc_spec_is_case_insensitive_and_trims_blanks() {
    let p = policy(" MinLen = 5 , UPPERCASE=Required,specialChars=DISALLOWED ");
    assert_eq!(p.min_len, 5);
    assert_eq!(p.uppercase, CharRule::Required);
    assert_eq!(p.special, CharRule::Disallowed);
}

#[test]
fn tpmvsc_spec_rejects_unknown_option() {
    let m = usage_of(PinPolicy::parse("minlen=8,colour=blue"));
    assert!(m.contains("unknown PIN policy option \"colour\""), "{m}");
    assert!(m.contains("specialchars"), "{m}");
    let m = usage_of(PinPolicy::parse("special=required"));
    assert!(m.contains("unknown"), "{m}");
}

#[test]
fn tpmvsc_spec_rejects_missing_value() {
    let m = usage_of(PinPolicy::parse("minlen"));
    assert!(m.contains("minlen needs a value"), "{m}");
    let m = usage_of(PinPolicy::parse("digits="));
    assert!(
        m.contains("digits needs a value") && m.contains("REQUIRED"),
        "{m}"
    );
}

#[test]
fn tpmvsc_spec_rejects_empty_entry() {
    let m = usage_of(PinPolicy::parse("minlen=8,,maxlen=9"));
    assert!(m.contains("empty entry"), "{m}");
    usage_of(PinPolicy::parse("minlen=8,"));
}

#[test]
fn tpmvsc_spec_rejects_duplicate_option() {
    let m = usage_of(PinPolicy::parse("minlen=8,MINLEN=9"));
    assert!(m.contains("minlen is given twice"), "{m}");
    let m = usage_of(PinPolicy::parse("digits=allowed,digits=allowed"));
    assert!(m.contains("digits is given twice"), "{m}");
}

#[test]
fn tpmvsc_spec_rejects_bad_rule_value() {
    let m = usage_of(PinPolicy::parse("uppercase=yes"));
    assert!(
        m.contains("uppercase must be ALLOWED, DISALLOWED or REQUIRED"),
        "{m}"
    );
}

#[test]
fn non_number_length_is_refused() {
    for spec in [
        "minlen=eight",
        "maxlen=1O",
        "minlen=-5",
        "minlen=+5",
        "maxlen=5.0",
        "minlen=99999999999999999999999",
    ] {
        let m = usage_of(PinPolicy::parse(spec));
        assert!(
            m.contains("must be a whole number from 4 to 127"),
            "{spec}: {m}"
        );
    }
}

// --- tpmvscmgr syntax ---

#[test]
fn tpmvscmgr_options_parse() {
    let p = PinPolicy::from_options([
        ("minlen", "4"),
        ("maxlen", "8"),
        ("uppercase", "REQUIRED"),
        ("lowercase", "ALLOWED"),
        ("digits", "DISALLOWED"),
        ("specialchars", "DISALLOWED"),
    ])
    .unwrap();
    assert_eq!(
        p,
        PinPolicy {
            min_len: 4,
            max_len: 8,
            uppercase: CharRule::Required,
            lowercase: CharRule::Allowed,
            digits: CharRule::Disallowed,
            special: CharRule::Disallowed,
        }
    );
    assert_eq!(
        p.describe(),
        "4-8 characters; uppercase required; digits not allowed; special characters not allowed"
    );
}

#[test]
fn tpmvscmgr_options_are_case_insensitive() {
    let p = PinPolicy::from_options([("MinLen", "6"), ("DIGITS", "required")]).unwrap();
    assert_eq!((p.min_len, p.digits), (6, CharRule::Required));
}

#[test]
fn tpmvscmgr_options_reject_unknown_duplicate_missing_and_bad() {
    assert!(usage_of(PinPolicy::from_options([("minimum", "4")])).contains("unknown"));
    assert!(
        usage_of(PinPolicy::from_options([("maxlen", "9"), ("maxlen", "10")]))
            .contains("given twice")
    );
    assert!(usage_of(PinPolicy::from_options([("lowercase", "")])).contains("needs a value"));
    assert!(
        usage_of(PinPolicy::from_options([("lowercase", "maybe")])).contains("lowercase must be")
    );
    assert!(usage_of(PinPolicy::from_options([("minlen", "four")])).contains("whole number"));
}

// --- policy definition rules ---

#[test]
fn minlen_must_be_at_least_4() {
    assert_eq!(policy("minlen=4").min_len, 4);
    let m = usage_of(PinPolicy::parse("minlen=3"));
    assert!(m.contains("minlen must be at least 4"), "{m}");
    usage_of(PinPolicy::parse("minlen=0"));
}

#[test]
fn maxlen_must_be_at_most_127() {
    assert_eq!(policy("maxlen=127").max_len, 127);
    let m = usage_of(PinPolicy::parse("maxlen=128"));
    assert!(m.contains("maxlen must be at most 127"), "{m}");
}

#[test]
fn minlen_above_127_and_maxlen_below_4_are_refused() {
    assert!(usage_of(PinPolicy::parse("minlen=200")).contains("minlen must be at most 127"));
    assert!(usage_of(PinPolicy::parse("minlen=4,maxlen=3")).contains("maxlen must be at least 4"));
}

#[test]
fn minlen_must_not_exceed_maxlen() {
    assert_eq!(policy("minlen=10,maxlen=10").describe(), "10 characters");
    let m = usage_of(PinPolicy::parse("minlen=10,maxlen=9"));
    assert!(m.contains("minlen (10) is larger than maxlen (9)"), "{m}");
    // maxlen alone below the default minlen conflicts with that default.
    usage_of(PinPolicy::parse("maxlen=6"));
    assert_eq!(policy("maxlen=6,minlen=4").max_len, 6);
}

#[test]
fn all_classes_disallowed_is_refused() {
    let m = usage_of(PinPolicy::parse(
        "uppercase=disallowed,lowercase=disallowed,digits=disallowed,specialchars=disallowed",
    ));
    assert!(m.contains("disallows every character class"), "{m}");
    policy("uppercase=disallowed,lowercase=disallowed,digits=disallowed");
}

#[test]
fn all_four_classes_required_fit_in_the_shortest_maxlen() {
    let p = policy(
        "minlen=4,maxlen=4,uppercase=required,lowercase=required,digits=required,specialchars=required",
    );
    p.check("PIN", b"aB3!").unwrap();
}

#[test]
fn validate_refuses_more_required_classes_than_maxlen() {
    // Through parse the length bounds (maxlen >= 4, four classes) already prevent this,
    // but a stored policy can say anything and validate() checks the rule itself.
    let all_required = PinPolicy {
        min_len: 4,
        max_len: 4,
        uppercase: CharRule::Required,
        lowercase: CharRule::Required,
        digits: CharRule::Required,
        special: CharRule::Required,
    };
    all_required.validate().unwrap();
    let m = match (PinPolicy {
        min_len: 3,
        max_len: 3,
        ..all_required.clone()
    })
    .validate()
    {
        Err(Error::Usage(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        m.contains("requires 4 character classes but maxlen is 3"),
        "{m}"
    );
    let m = match (PinPolicy {
        min_len: 3,
        max_len: 3,
        ..PinPolicy::default()
    })
    .validate()
    {
        Err(Error::Usage(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(m.contains("minlen must be at least 4"), "{m}");
}

#[test]
fn validate_checks_a_deserialized_policy() {
    let p: PinPolicy = serde_json::from_str(
        r#"{"min_len":1,"max_len":127,"uppercase":"allowed","lowercase":"allowed","digits":"allowed","special":"allowed"}"#,
    )
    .unwrap();
    assert!(p.validate().is_err());
}

#[test]
fn serde_round_trips_with_lowercase_rules() {
    let p = policy("uppercase=required,digits=disallowed");
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains(r#""uppercase":"required""#), "{json}");
    assert!(json.contains(r#""digits":"disallowed""#), "{json}");
    assert_eq!(serde_json::from_str::<PinPolicy>(&json).unwrap(), p);
}

// --- checking secrets ---

#[test]
fn only_printable_ascii_is_accepted() {
    let p = PinPolicy::default();
    p.check("PIN", b" !~ azAZ09").unwrap();
    let m = violation_of(p.check("PIN", b"abc\tdefgh"));
    assert!(
        m.contains("position 4") && m.contains("not printable ASCII"),
        "{m}"
    );
    let m = violation_of(p.check("PUK", "abcdefgé".as_bytes()));
    assert!(m.starts_with("PUK") && m.contains("position 8"), "{m}");
    violation_of(p.check("PIN", b"abcdefg\x7f"));
    violation_of(p.check("PIN", b"\0abcdefgh"));
}

#[test]
fn printable_check_comes_before_length() {
    let m = violation_of(PinPolicy::default().check("PIN", b"a\n"));
    assert!(m.contains("printable"), "{m}");
}

#[test]
fn too_short_names_minlen() {
    let p = PinPolicy::default();
    p.check("PIN", b"abcdefgh").unwrap();
    let m = violation_of(p.check("PIN", b"abcdefg"));
    assert_eq!(m, "PIN is too short: at least 8 characters (minlen=8)");
    violation_of(p.check("PIN", b""));
}

#[test]
fn too_long_names_maxlen() {
    let p = policy("minlen=4,maxlen=8");
    p.check("PIN", b"abcd").unwrap();
    p.check("PIN", b"abcdefgh").unwrap();
    let m = violation_of(p.check("PUK", b"abcdefghi"));
    assert_eq!(m, "PUK is too long: at most 8 characters (maxlen=8)");
    PinPolicy::default().check("PIN", &[b'x'; 127]).unwrap();
    violation_of(PinPolicy::default().check("PIN", &[b'x'; 128]));
}

#[test]
fn disallowed_class_is_refused_and_named() {
    let cases = [
        (
            "uppercase=disallowed",
            &b"abcdEfgh"[..],
            "PIN must not contain uppercase letters (uppercase=disallowed)",
        ),
        (
            "lowercase=disallowed",
            b"ABCDeFGH",
            "PIN must not contain lowercase letters (lowercase=disallowed)",
        ),
        (
            "digits=disallowed",
            b"abcd1fgh",
            "PIN must not contain digits (digits=disallowed)",
        ),
        (
            "specialchars=disallowed",
            b"abcd fgh",
            "specialchars=disallowed",
        ),
    ];
    for (spec, bad, want) in cases {
        let p = policy(spec);
        let m = violation_of(p.check("PIN", bad));
        assert!(m.contains(want), "{spec}: {m}");
    }
    policy("uppercase=disallowed")
        .check("PIN", b"abcd1234")
        .unwrap();
    policy("lowercase=disallowed")
        .check("PIN", b"ABCD1234")
        .unwrap();
    policy("digits=disallowed")
        .check("PIN", b"abcdEFG!")
        .unwrap();
    policy("specialchars=disallowed")
        .check("PIN", b"abcD1234")
        .unwrap();
}

#[test]
fn space_and_punctuation_are_special() {
    let p = policy("specialchars=required");
    p.check("PIN", b"abcd efg").unwrap();
    p.check("PIN", b"abcd_efg").unwrap();
    p.check("PIN", b"abcd~efg").unwrap();
    let m = violation_of(p.check("PIN", b"abcdEfg1"));
    assert!(
        m.contains("at least one special character") && m.contains("specialchars=required"),
        "{m}"
    );
}

#[test]
fn required_class_missing_is_refused_and_named() {
    let cases = [
        (
            "uppercase=required",
            &b"abcd1234"[..],
            "PIN needs at least one uppercase letter (uppercase=required)",
        ),
        (
            "lowercase=required",
            b"ABCD1234",
            "PIN needs at least one lowercase letter (lowercase=required)",
        ),
        (
            "digits=required",
            b"abcdefgh",
            "PIN needs at least one digit (digits=required)",
        ),
        (
            "specialchars=required",
            b"abcd1234",
            "specialchars=required",
        ),
    ];
    for (spec, bad, want) in cases {
        let m = violation_of(policy(spec).check("PIN", bad));
        assert!(m.contains(want), "{spec}: {m}");
    }
    policy("uppercase=required")
        .check("PIN", b"abcD1234")
        .unwrap();
    policy("lowercase=required")
        .check("PIN", b"ABCd1234")
        .unwrap();
    policy("digits=required").check("PIN", b"abcdefg7").unwrap();
}

#[test]
fn disallowed_is_checked_before_required() {
    let p = policy("digits=disallowed,uppercase=required");
    let m = violation_of(p.check("PIN", b"abcdefg1"));
    assert!(m.contains("digits=disallowed"), "{m}");
}

#[test]
fn length_is_checked_before_classes() {
    let p = policy("digits=required");
    let m = violation_of(p.check("PIN", b"abc"));
    assert!(m.contains("minlen"), "{m}");
}

#[test]
fn messages_never_contain_the_secret() {
    let p = policy("minlen=4,maxlen=10,uppercase=required,digits=disallowed");
    for secret in [
        &b"QzQzQzQzQzQzQz"[..],
        b"Qz",
        b"qzqzq9",
        b"qzqzqz",
        b"qzq\x01zqz",
    ] {
        let m = violation_of(p.check("PIN", secret));
        assert!(!m.contains("Qz") && !m.contains("qz"), "{m}");
    }
}

#[test]
fn describe_lists_every_non_default_rule() {
    assert_eq!(
        policy("uppercase=required,digits=disallowed").describe(),
        "8-127 characters; uppercase required; digits not allowed"
    );
    assert_eq!(
        policy("minlen=6,maxlen=6,lowercase=disallowed,specialchars=required").describe(),
        "6 characters; lowercase not allowed; special characters required"
    );
}
