//! Unit tests of `winsyntax`.

use super::*;

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

fn run(line: &str) -> Result<WinCommand> {
    parse(&args(line))
}

fn create(line: &str) -> WinCreate {
    match run(line) {
        Ok(WinCommand::Create(c)) => c,
        other => panic!("{line}: expected create, got {other:?}"),
    }
}

fn destroy(line: &str) -> WinDestroy {
    match run(line) {
        Ok(WinCommand::Destroy(d)) => d,
        other => panic!("{line}: expected destroy, got {other:?}"),
    }
}

fn usage_err(line: &str) -> String {
    match run(line) {
        Err(Error::Usage(m)) => m,
        other => panic!("{line}: expected a usage error, got {other:?}"),
    }
}

fn violation(line: &str) -> String {
    match run(line) {
        Err(Error::PolicyViolation(m) | Error::PinRule { why: m, .. }) => m,
        other => panic!("{line}: expected a policy violation, got {other:?}"),
    }
}

// --- Microsoft's documented examples ---

#[test]
fn microsoft_example_default_pin_random_admin_key() {
    let c = create("create /name tpmvsc /pin default /adminkey random /generate");
    assert_eq!(
        c,
        WinCreate {
            quiet: false,
            name: "tpmvsc".to_owned(),
            admin_key: WinAdminKey::Random,
            pin: WinSecret::Default,
            puk: None,
            generate: true,
            machine: None,
            pin_policy: None,
            attestation: None,
        }
    );
}

#[test]
fn microsoft_example_prompted_pin() {
    // The shell has removed the quotes around the name.
    let c = create("create /name VirtualSmartCardForCorpAccess /AdminKey DEFAULT /PIN PROMPT");
    assert_eq!(c.name, "VirtualSmartCardForCorpAccess");
    assert_eq!(c.admin_key, WinAdminKey::Default);
    assert_eq!(c.pin, WinSecret::Prompt);
    assert!(!c.generate);
}

#[test]
fn microsoft_example_pin_policy() {
    let c = create(
        "create /name VirtualSmartCardForCorpAccess /AdminKey PROMPT /PIN PROMPT /pinpolicy \
         minlen 4 maxlen 8 uppercase REQUIRED lowercase ALLOWED digits DISALLOWED specialchars DISALLOWED",
    );
    assert_eq!(c.admin_key, WinAdminKey::Prompt);
    let p = c.pin_policy.unwrap();
    assert_eq!((p.min_len, p.max_len), (4, 8));
    assert_eq!(
        p.describe(),
        "4-8 characters; uppercase required; digits not allowed; special characters not allowed"
    );
    p.check("PIN", b"Abcd").unwrap();
}

#[test]
fn microsoft_example_destroy() {
    let d = destroy(r"destroy /instance ROOT\SMARTCARDREADER\0000");
    assert_eq!(
        d,
        WinDestroy {
            quiet: false,
            instance: r"ROOT\SMARTCARDREADER\0000".to_owned(),
            machine: None
        }
    );
}

#[test]
fn microsoft_example_with_g_prefix() {
    assert!(create("create /name x /AdminKey RANDOM /g").generate);
}

#[test]
fn microsoft_last_example_without_admin_key_uses_the_default_key() {
    let c = create("create /name VirtualSmartCardForCorpAccess /PIN PROMPT /pinpolicy minlen 4");
    assert_eq!(c.admin_key, WinAdminKey::Default);
}

// --- verbs and help ---

#[test]
fn no_arguments_is_help() {
    assert_eq!(parse(&[]).unwrap(), WinCommand::NoCommand);
    assert_eq!(run("--version").unwrap(), WinCommand::Version);
}

#[test]
fn question_mark_anywhere_is_help_for_the_verb() {
    assert_eq!(run("/?").unwrap(), WinCommand::Help(None));
    assert_eq!(
        run("create /?").unwrap(),
        WinCommand::Help(Some(WinVerb::Create))
    );
    assert_eq!(
        run("DESTROY /quiet /?").unwrap(),
        WinCommand::Help(Some(WinVerb::Destroy))
    );
    // Even after errors that would otherwise be reported.
    assert_eq!(
        run("create /bogus x /?").unwrap(),
        WinCommand::Help(Some(WinVerb::Create))
    );
    assert_eq!(run("frobnicate /?").unwrap(), WinCommand::Help(None));
    assert_eq!(
        run("create --help").unwrap(),
        WinCommand::Help(Some(WinVerb::Create))
    );
    assert_eq!(run("-h").unwrap(), WinCommand::Help(None));
}

#[test]
fn verbs_are_case_insensitive() {
    create("CREATE /name x /adminkey random");
    create("Create /name x /adminkey random");
    destroy("DeStRoY /instance y");
}

#[test]
fn unknown_verb_is_refused_naming_the_verbs() {
    let m = usage_err("make /name x");
    assert!(
        m.contains("\"make\"") && m.contains("create") && m.contains("destroy"),
        "{m}"
    );
}

#[test]
fn parameters_before_a_verb_are_refused() {
    let m = usage_err("/name x /adminkey random");
    assert!(m.contains("verb") && m.contains("create or destroy"), "{m}");
}

// --- parameter names: case and prefixes ---

#[test]
fn parameter_names_and_keywords_are_case_insensitive() {
    let c = create("create /NAME x /ADMINKEY Default /Pin pRoMpT /puk DEFAULT /GENERATE /QUIET");
    assert_eq!(c.admin_key, WinAdminKey::Default);
    assert_eq!(c.pin, WinSecret::Prompt);
    assert_eq!(c.puk, Some(WinSecret::Default));
    assert!(c.generate && c.quiet);
}

#[test]
fn unique_prefixes_are_accepted() {
    let c = create(
        "create /n x /ad random /q /g /m host /at aik_only /pu prompt /pinp minlen 9 /pin prompt",
    );
    assert_eq!(c.name, "x");
    assert_eq!(c.admin_key, WinAdminKey::Random);
    assert!(c.quiet && c.generate);
    assert_eq!(c.machine.as_deref(), Some("host"));
    assert_eq!(c.attestation, Some(WinAttestation::AikOnly));
    assert_eq!(c.puk, Some(WinSecret::Prompt));
    assert_eq!(c.pin_policy.map(|p| p.min_len), Some(9));
    let d = destroy("destroy /i id /q /m host");
    assert!(d.quiet);
    assert_eq!(d.machine.as_deref(), Some("host"));
}

#[test]
fn ambiguous_prefix_names_every_candidate() {
    let m = usage_err("create /name x /a default");
    assert!(
        m.contains("/a is ambiguous") && m.contains("/AdminKey or /attestation"),
        "{m}"
    );
    let m = usage_err("create /name x /adminkey random /p prompt");
    assert!(m.contains("/PIN, /PUK or /pinpolicy"), "{m}");
    let m = usage_err("create /name x /adminkey random /pi prompt");
    assert!(m.contains("/PIN or /pinpolicy"), "{m}");
}

#[test]
fn exact_name_wins_over_a_longer_parameter() {
    let c = create("create /name x /adminkey random /pin prompt");
    assert_eq!(c.pin, WinSecret::Prompt);
    assert!(c.pin_policy.is_none());
}

#[test]
fn unknown_parameter_is_refused_listing_the_verbs_parameters() {
    let m = usage_err("create /name x /adminkey random /colour blue");
    assert!(
        m.contains("unknown parameter /colour") && m.contains("/pinpolicy"),
        "{m}"
    );
    let m = usage_err("create /name x /adminkey random /generated");
    assert!(m.contains("unknown parameter /generated"), "{m}");
    let m = usage_err("create /name x /adminkey random /");
    assert!(m.contains("lone /"), "{m}");
}

#[test]
fn the_other_verbs_parameter_is_named_as_such() {
    let m = usage_err("create /name x /adminkey random /instance y");
    assert!(m.contains("/instance belongs to destroy"), "{m}");
    let m = usage_err("destroy /instance y /name x");
    assert!(
        m.contains("/name belongs to create") && m.contains("/instance"),
        "{m}"
    );
    // A prefix is resolved among the verb's own parameters only.
    let m = usage_err("destroy /instance y /g");
    assert!(m.contains("unknown parameter /g"), "{m}");
}

#[test]
fn a_parameter_given_twice_is_refused() {
    let m = usage_err("create /name x /name y /adminkey random");
    assert!(m.contains("/name is given twice"), "{m}");
    let m = usage_err("create /name x /adminkey random /g /generate");
    assert!(m.contains("/generate is given twice"), "{m}");
    let m = usage_err("destroy /instance a /i b");
    assert!(m.contains("/instance is given twice"), "{m}");
}

#[test]
fn a_stray_word_is_refused() {
    let m = usage_err("create stray /name x /adminkey random");
    assert!(
        m.contains("unexpected word \"stray\"") && m.contains("start with /"),
        "{m}"
    );
    let m = usage_err("create /name My Card /adminkey random");
    assert!(
        m.contains("\"Card\"") && m.contains("after /name") && m.contains("quote"),
        "{m}"
    );
    let m = usage_err("create /name x /generate now /adminkey random");
    assert!(m.contains("after /generate:"), "{m}");
    let m = usage_err("destroy /instance a b");
    assert!(m.contains("\"b\""), "{m}");
}

// --- /name ---

#[test]
fn name_is_required() {
    let m = usage_err("create /adminkey random");
    assert!(m.contains("create needs /name"), "{m}");
}

#[test]
fn name_needs_a_value() {
    let m = usage_err("create /adminkey random /name");
    assert!(m.contains("/name needs a value"), "{m}");
    let m = usage_err("create /name /adminkey random");
    assert!(m.contains("/name needs a value"), "{m}");
}

#[test]
fn name_of_1_to_32_bytes_is_accepted_and_kept_as_given() {
    assert_eq!(create("create /name a /adminkey random").name, "a");
    let name32 = "N".repeat(32);
    assert_eq!(
        create(&format!("create /name {name32} /adminkey random")).name,
        name32
    );
    let spaced: Vec<String> = ["create", "/name", " My Card", "/adminkey", "random"]
        .map(str::to_owned)
        .to_vec();
    match parse(&spaced).unwrap() {
        WinCommand::Create(c) => assert_eq!(c.name, " My Card"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn name_longer_than_32_bytes_is_refused() {
    let m = violation(&format!("create /name {} /adminkey random", "N".repeat(33)));
    assert!(m.contains("33 bytes") && m.contains("at most 32"), "{m}");
    // Bytes, not characters: 11 three-byte characters are 33 bytes.
    let m = violation(&format!("create /name {} /adminkey random", "€".repeat(11)));
    assert!(m.contains("33 bytes"), "{m}");
}

#[test]
fn empty_name_control_characters_and_trailing_space_are_refused() {
    let cmd = |name: &str| -> Vec<String> {
        ["create", "/name", name, "/adminkey", "random"]
            .map(str::to_owned)
            .to_vec()
    };
    let check = |name: &str, want: &str| match parse(&cmd(name)) {
        Err(Error::PolicyViolation(m) | Error::PinRule { why: m, .. }) => {
            assert!(m.contains(want), "{name:?}: {m}")
        }
        other => panic!("{name:?}: {other:?}"),
    };
    check("", "empty");
    check("a\tb", "control character");
    check("a\u{7f}", "control character");
    check("a\u{85}", "control character");
    check("card ", "ends with a space");
}

// --- /AdminKey ---

#[test]
fn admin_key_values() {
    assert_eq!(
        create("create /name x /adminkey default").admin_key,
        WinAdminKey::Default
    );
    assert_eq!(
        create("create /name x /adminkey prompt").admin_key,
        WinAdminKey::Prompt
    );
    assert_eq!(
        create("create /name x /adminkey random").admin_key,
        WinAdminKey::Random
    );
}

#[test]
fn admin_key_left_out_is_default() {
    assert_eq!(
        create("create /name x /pin prompt").admin_key,
        WinAdminKey::Default
    );
}

#[test]
fn admin_key_bad_or_missing_value_is_refused_without_echo() {
    let m = usage_err("create /name x /adminkey 010203040506070801020304050607080102030405060708");
    assert!(
        m.contains("/AdminKey takes DEFAULT, PROMPT or RANDOM"),
        "{m}"
    );
    assert!(!m.contains("0102"), "{m}");
    let m = usage_err("create /name x /adminkey");
    assert!(
        m.contains("/AdminKey needs a value: DEFAULT, PROMPT or RANDOM"),
        "{m}"
    );
}

// --- /PIN and /PUK ---

#[test]
fn pin_defaults_to_default_and_puk_to_none() {
    let c = create("create /name x /adminkey random");
    assert_eq!(c.pin, WinSecret::Default);
    assert_eq!(c.puk, None);
}

#[test]
fn pin_and_puk_values() {
    let c = create("create /name x /adminkey random /pin default /puk prompt");
    assert_eq!(
        (c.pin, c.puk),
        (WinSecret::Default, Some(WinSecret::Prompt))
    );
    let c = create("create /name x /adminkey random /pin prompt /puk default");
    assert_eq!(
        (c.pin, c.puk),
        (WinSecret::Prompt, Some(WinSecret::Default))
    );
}

#[test]
fn pin_and_puk_bad_values_are_refused_without_echo() {
    let m = usage_err("create /name x /adminkey random /pin 12345678");
    assert!(
        m.contains("/PIN takes DEFAULT or PROMPT") && !m.contains("1234"),
        "{m}"
    );
    let m = usage_err("create /name x /adminkey random /puk random");
    assert!(m.contains("/PUK takes DEFAULT or PROMPT"), "{m}");
    let m = usage_err("create /name x /adminkey random /puk");
    assert!(m.contains("/PUK needs a value"), "{m}");
}

// --- /generate, /quiet ---

#[test]
fn flags_default_off() {
    let c = create("create /name x /adminkey random");
    assert!(!c.generate && !c.quiet);
    assert!(create("create /quiet /name x /adminkey random").quiet);
    assert!(create("create /name x /adminkey random /generate").generate);
}

// --- /machine ---

#[test]
fn machine_is_returned() {
    let c = create("create /name x /adminkey random /machine admin@host.example");
    assert_eq!(c.machine.as_deref(), Some("admin@host.example"));
    assert_eq!(create("create /name x /adminkey random").machine, None);
}

#[test]
fn machine_bad_or_missing_value_is_refused() {
    let m = usage_err("create /name x /adminkey random /machine");
    assert!(m.contains("/machine needs a value"), "{m}");
    let m = usage_err("destroy /instance i /machine -oProxyCommand=evil");
    assert!(m.contains("not starting with -"), "{m}");
    let blank: Vec<String> = ["destroy", "/instance", "i", "/machine", "a b"]
        .map(str::to_owned)
        .to_vec();
    assert!(matches!(parse(&blank), Err(Error::Usage(_))));
}

// --- /attestation ---

#[test]
fn attestation_values() {
    let c = create("create /name x /adminkey random /attestation AIK_AND_CERT");
    assert_eq!(c.attestation, Some(WinAttestation::AikAndCert));
    let c = create("create /name x /adminkey random /attestation aik_only");
    assert_eq!(c.attestation, Some(WinAttestation::AikOnly));
    assert_eq!(create("create /name x /adminkey random").attestation, None);
}

#[test]
fn attestation_bad_or_missing_value_is_refused() {
    let m = usage_err("create /name x /adminkey random /attestation aik");
    assert!(
        m.contains("/attestation takes AIK_AND_CERT or AIK_ONLY"),
        "{m}"
    );
    let m = usage_err("create /name x /adminkey random /attestation /generate");
    assert!(m.contains("/attestation needs a value"), "{m}");
}

// --- /pinpolicy ---

#[test]
fn pin_policy_stops_at_the_next_parameter() {
    let c = create(
        "create /name x /pin prompt /pinpolicy digits required minlen 6 /adminkey random /generate",
    );
    let p = c.pin_policy.unwrap();
    assert_eq!(p.min_len, 6);
    assert_eq!(p.digits, crate::card::policy::CharRule::Required);
    assert_eq!(c.admin_key, WinAdminKey::Random);
    assert!(c.generate);
}

#[test]
fn pin_policy_without_options_is_refused() {
    let m = usage_err("create /name x /adminkey random /pin prompt /pinpolicy");
    assert!(
        m.contains("/pinpolicy needs") && m.contains("minlen"),
        "{m}"
    );
    let m = usage_err("create /name x /pinpolicy /adminkey random /pin prompt");
    assert!(m.contains("/pinpolicy needs"), "{m}");
}

#[test]
fn pin_policy_with_the_default_pin_is_refused() {
    let want = "a PIN policy applies to a PIN you choose: use /PIN PROMPT";
    let m = usage_err("create /name x /adminkey random /pinpolicy minlen 4");
    assert!(m.contains(want), "{m}");
    let m = usage_err("create /name x /adminkey random /pin default /pinpolicy minlen 4");
    assert!(m.contains(want), "{m}");
    // Order does not matter.
    let m = usage_err("create /pinpolicy minlen 4 /pin DEFAULT /name x /adminkey random");
    assert!(m.contains(want), "{m}");
}

#[test]
fn pin_policy_option_errors_name_the_option() {
    let base = "create /name x /adminkey random /pin prompt /pinpolicy";
    let m = usage_err(&format!("{base} minlen"));
    assert!(
        m.starts_with("/pinpolicy:") && m.contains("minlen needs a value"),
        "{m}"
    );
    let m = usage_err(&format!("{base} minlen 4 maxlen"));
    assert!(m.contains("maxlen needs a value"), "{m}");
    let m = usage_err(&format!("{base} minlen 3"));
    assert!(m.contains("minlen must be at least 4"), "{m}");
    let m = usage_err(&format!("{base} maxlen 200"));
    assert!(m.contains("maxlen must be at most 127"), "{m}");
    let m = usage_err(&format!("{base} minlen 9 maxlen 8"));
    assert!(m.contains("larger than maxlen"), "{m}");
    let m = usage_err(&format!("{base} length 8"));
    assert!(m.contains("unknown PIN policy option \"length\""), "{m}");
    let m = usage_err(&format!("{base} digits sometimes"));
    assert!(
        m.contains("digits must be ALLOWED, DISALLOWED or REQUIRED"),
        "{m}"
    );
    let m = usage_err(&format!("{base} minlen 6 minlen 7"));
    assert!(m.contains("minlen is given twice"), "{m}");
    let m = usage_err(&format!(
        "{base} uppercase disallowed lowercase disallowed digits disallowed specialchars disallowed"
    ));
    assert!(m.contains("disallows every character class"), "{m}");
}

// --- destroy ---

#[test]
fn destroy_needs_an_instance() {
    let m = usage_err("destroy");
    assert!(m.contains("destroy needs /instance"), "{m}");
    let m = usage_err("destroy /quiet /instance");
    assert!(m.contains("/instance needs a value"), "{m}");
    let empty: Vec<String> = ["destroy", "/instance", ""].map(str::to_owned).to_vec();
    assert!(matches!(parse(&empty), Err(Error::Usage(m)) if m.contains("empty")));
}

#[test]
fn destroy_returns_instance_as_given_with_flags() {
    let d = destroy(r"destroy /QUIET /Instance root\smartcardreader\0003 /machine box");
    assert_eq!(
        d,
        WinDestroy {
            quiet: true,
            instance: r"root\smartcardreader\0003".to_owned(),
            machine: Some("box".to_owned()),
        }
    );
}

// --- help text ---

#[test]
fn help_lists_every_parameter_and_keyword() {
    let create_words = [
        "/quiet",
        "/name",
        "/AdminKey",
        "/PIN",
        "/PUK",
        "/generate",
        "/machine",
        "/pinpolicy",
        "/attestation",
        "/?",
        "DEFAULT",
        "PROMPT",
        "RANDOM",
        "AIK_AND_CERT",
        "AIK_ONLY",
        "minlen",
        "maxlen",
        "uppercase",
        "lowercase",
        "digits",
        "specialchars",
        "ALLOWED",
        "DISALLOWED",
        "REQUIRED",
        "12345678",
        "default 8",
        "default 127",
    ];
    for word in create_words {
        assert!(
            usage(Some(WinVerb::Create)).contains(word),
            "create help lacks {word}"
        );
        assert!(usage(None).contains(word), "overview lacks {word}");
    }
    for word in [
        "/quiet",
        "/instance",
        "/machine",
        "/?",
        r"ROOT\SMARTCARDREADER\0000",
    ] {
        assert!(
            usage(Some(WinVerb::Destroy)).contains(word),
            "destroy help lacks {word}"
        );
        assert!(usage(None).contains(word), "overview lacks {word}");
    }
    assert!(!usage(Some(WinVerb::Destroy)).contains("/AdminKey KEY"));
}

#[test]
fn help_lines_fit_in_80_columns() {
    for line in usage(None).lines() {
        assert!(line.chars().count() <= 80, "too long: {line}");
    }
}
