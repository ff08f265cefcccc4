//! Microsoft's `tpmvscmgr` syntax through the `tpmvscmgr` binary on a real swtpm.

mod common;

use common::*;

const ID0: &str = "ROOT\\SMARTCARDREADER\\0000";

struct World {
    swtpm: Swtpm,
    store: TestStore,
    cli: Cli,
}

fn world() -> World {
    let CliWorld { swtpm, store, cli } = CliWorld::on(Swtpm::start_with_persistent_srk());
    World { swtpm, store, cli }
}

/// The instance ID and card ID lines of a successful non-quiet `create`.
fn created_ids(out: &Output) -> (String, String) {
    let instance = out
        .stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Smart Card Reader Device Instance ID = ")
        })
        .unwrap_or_else(|| panic!("no instance ID line: {out:#?}"))
        .trim()
        .to_string();
    let card_id = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Card ID = "))
        .unwrap_or_else(|| panic!("no card ID line: {out:#?}"))
        .trim()
        .to_string();
    (instance, card_id)
}

#[test]
fn create_list_destroy_round_trip_leaves_nothing_on_disk() {
    let w = world();
    let out = w
        .cli
        .tpmvscmgr(&["create", "/name", "Win", "/AdminKey", "RANDOM", "/generate"])
        .ok("create");
    let (instance, card_id) = created_ids(&out);
    assert_eq!(instance, ID0);
    let cards = list_json(&w.cli);
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0]["name"], "Win");
    assert_eq!(cards[0]["card_id"], card_id.as_str());
    assert_eq!(cards[0]["formatted"], true);
    assert_eq!(cards[0]["admin"], "random");
    assert_eq!(cards[0]["has_puk"], false);
    let path = std::path::PathBuf::from(cards[0]["path"].as_str().expect("path"));
    check_pin(&w.store, &w.swtpm.tcti(), "Win", DEFAULT_PIN).expect("default PIN");

    let out = w
        .cli
        .tpmvscmgr(&["destroy", "/instance", "root\\smartcardreader\\0000"])
        .ok("destroy");
    assert!(
        !out.stdout.is_empty() || !out.stderr.is_empty(),
        "destroy says something without /quiet"
    );
    assert!(list_json(&w.cli).is_empty());
    assert!(!path.exists(), "{path:?} gone from disk");
}

#[test]
fn quiet_create_prints_only_the_instance_id_and_quiet_destroy_prints_nothing() {
    let w = world();
    let out = w
        .cli
        .tpmvscmgr(&["create", "/quiet", "/name", "q", "/adminkey", "random"])
        .ok("create /quiet");
    assert_eq!(out.stdout.trim(), ID0, "{out:#?}");
    assert_eq!(out.stdout.lines().count(), 1);
    let out = w
        .cli
        .tpmvscmgr(&["destroy", "/quiet", "/instance", ID0])
        .ok("destroy /quiet");
    assert_eq!(out.stdout, "", "{out:#?}");
    assert!(list_json(&w.cli).is_empty());
}

#[test]
fn generate_formats_the_card_and_its_absence_leaves_it_unformatted() {
    let w = world();
    w.cli
        .tpmvscmgr(&["create", "/name", "plain", "/AdminKey", "RANDOM"])
        .ok("create without /generate");
    let info = info_json(&w.cli, "plain");
    assert_eq!(info["formatted"], false);
    assert_eq!(info["state"], "unformatted");
    // Unique prefix and mixed case.
    w.cli
        .tpmvscmgr(&["CREATE", "/NAME", "gen", "/adminKEY", "Random", "/g"])
        .ok("create /g");
    assert_eq!(info_json(&w.cli, "gen")["formatted"], true);
}

#[test]
fn puk_default_gives_the_card_a_puk() {
    let w = world();
    w.cli
        .tpmvscmgr(&[
            "create",
            "/name",
            "p",
            "/AdminKey",
            "RANDOM",
            "/PUK",
            "DEFAULT",
        ])
        .ok("create /PUK DEFAULT");
    assert_eq!(info_json(&w.cli, "p")["has_puk"], true);
    w.cli
        .tpmvscmgr(&["create", "/name", "nopuk", "/AdminKey", "RANDOM"])
        .ok("create without /PUK");
    assert_eq!(info_json(&w.cli, "nopuk")["has_puk"], false);
}

#[test]
fn admin_key_default_is_managed_and_warned_about() {
    let w = world();
    let out = w
        .cli
        .tpmvscmgr(&["create", "/name", "d", "/AdminKey", "DEFAULT"])
        .ok("create /AdminKey DEFAULT");
    assert!(
        out.stderr.to_lowercase().contains("warning"),
        "stderr warns: {:?}",
        out.stderr
    );
    let info = info_json(&w.cli, "d");
    assert_eq!(info["admin"], "managed");
    assert_eq!(info["default_admin_key"], true);
}

#[test]
fn admin_key_prompt_reads_a_key_from_stdin() {
    let w = world();
    let key = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a09080";
    w.cli
        .tpmvscmgr_stdin(
            &["create", "/name", "k", "/AdminKey", "PROMPT"],
            &format!("{key}\n"),
        )
        .ok("create /AdminKey PROMPT");
    let info = info_json(&w.cli, "k");
    assert_eq!(info["admin"], "managed");
    assert_eq!(info["default_admin_key"], false);
    let out = w.cli.tpmvscmgr_stdin(
        &["create", "/name", "k2", "/AdminKey", "PROMPT"],
        "not-hex\n",
    );
    assert_ne!(out.code, 0, "a malformed admin key is refused: {out:#?}");
    assert_eq!(list_json(&w.cli).len(), 1);
}

#[test]
fn prompted_secrets_come_from_stdin_in_the_order_pin_puk_admin_key() {
    let w = world();
    let key = "00112233445566778899aabbccddeeff0011223344556677";
    w.cli
        .tpmvscmgr_stdin(
            &[
                "create",
                "/name",
                "all",
                "/AdminKey",
                "PROMPT",
                "/PIN",
                "PROMPT",
                "/PUK",
                "PROMPT",
            ],
            &format!("Chosen-PIN-1\nChosen-PUK-2\n{key}\n"),
        )
        .ok("create with everything prompted");
    let info = info_json(&w.cli, "all");
    assert_eq!(info["has_puk"], true);
    assert_eq!(info["admin"], "managed");
    check_pin(&w.store, &w.swtpm.tcti(), "all", "Chosen-PIN-1").expect("prompted PIN");
    assert!(check_pin(&w.store, &w.swtpm.tcti(), "all", DEFAULT_PIN).is_err());
}

#[test]
fn pin_policy_applies_to_a_prompted_pin() {
    let w = world();
    w.cli
        .tpmvscmgr_stdin(
            &[
                "create",
                "/name",
                "pol",
                "/AdminKey",
                "RANDOM",
                "/PIN",
                "PROMPT",
                "/pinpolicy",
                "minlen",
                "4",
                "maxlen",
                "8",
                "uppercase",
                "REQUIRED",
            ],
            "Ab12\n",
        )
        .ok("a PIN meeting the policy");
    let info = info_json(&w.cli, "pol");
    assert_eq!(info["min_pin_len"], 4);
    assert_eq!(info["max_pin_len"], 8);
    check_pin(&w.store, &w.swtpm.tcti(), "pol", "Ab12").expect("prompted PIN");
    let out = w.cli.tpmvscmgr_stdin(
        &[
            "create",
            "/name",
            "pol2",
            "/AdminKey",
            "RANDOM",
            "/PIN",
            "PROMPT",
            "/pinpolicy",
            "minlen",
            "4",
            "uppercase",
            "REQUIRED",
        ],
        "abcd\n",
    );
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("uppercase"), "{:?}", out.stderr);
    assert_eq!(list_json(&w.cli).len(), 1);
}

#[test]
fn pin_policy_with_the_default_pin_is_a_usage_error() {
    let w = world();
    w.cli
        .tpmvscmgr(&[
            "create",
            "/name",
            "x",
            "/AdminKey",
            "RANDOM",
            "/pinpolicy",
            "minlen",
            "4",
        ])
        .expect_code(2, "/pinpolicy without /PIN PROMPT");
    w.cli
        .tpmvscmgr(&[
            "create",
            "/name",
            "x",
            "/AdminKey",
            "RANDOM",
            "/PIN",
            "DEFAULT",
            "/pinpolicy",
            "minlen",
            "4",
        ])
        .expect_code(2, "/pinpolicy with /PIN DEFAULT");
    assert!(list_json(&w.cli).is_empty());
}

#[test]
fn microsofts_examples_run_one_after_another() {
    let w = world();
    // The reference's examples, in order; the last one leaves /AdminKey out ("the default
    // value for the administrator key").
    w.cli
        .tpmvscmgr_stdin(
            &[
                "create",
                "/name",
                "VirtualSmartCardForCorpAccess",
                "/AdminKey",
                "DEFAULT",
                "/PIN",
                "PROMPT",
            ],
            "my-pin-2026\n",
        )
        .expect_code(0, "example 1");
    let out = w.cli.tpmvscmgr_stdin(
        &[
            "create",
            "/name",
            "VirtualSmartCardForCorpAccess",
            "/PIN",
            "PROMPT",
            "/pinpolicy",
            "minlen",
            "4",
        ],
        "1234\n",
    );
    assert_eq!(out.code, 0, "the example without /AdminKey: {out:#?}");
    assert!(
        out.stderr.contains("DEFAULT admin key"),
        "it warns about the default key: {out:#?}"
    );
    let cards = list_json(&w.cli);
    assert_eq!(cards.len(), 2, "a repeated friendly name: {cards:#?}");
    assert!(cards.iter().all(|c| c["default_admin_key"] == true));
}

#[test]
fn unsupported_features_are_refused_with_exit_1() {
    let w = world();
    let out = w.cli.tpmvscmgr(&[
        "create",
        "/name",
        "a",
        "/AdminKey",
        "RANDOM",
        "/attestation",
        "AIK_ONLY",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("not supported"), "{:?}", out.stderr);
    let out = w.cli.tpmvscmgr(&[
        "create",
        "/name",
        "m",
        "/AdminKey",
        "RANDOM",
        "/machine",
        "host",
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("not supported"), "{:?}", out.stderr);
    assert!(list_json(&w.cli).is_empty());
}

#[test]
fn help_goes_to_stdout_with_exit_0() {
    let w = world();
    let out = w.cli.tpmvscmgr(&["/?"]).ok("/?");
    assert!(
        out.stdout.contains("create") && out.stdout.contains("destroy"),
        "{out:#?}"
    );
    let out = w.cli.tpmvscmgr(&["create", "/?"]).ok("create /?");
    assert!(out.stdout.contains("/AdminKey"), "{out:#?}");
}

#[test]
fn bad_parameters_and_values_are_usage_errors() {
    let w = world();
    for args in [
        vec!["create", "/name", "x", "/AdminKey", "RANDOM", "/frobnicate"],
        vec!["create", "/name", "x", "/AdminKey", "SOMETIMES"],
        vec!["create", "/name", "x", "/AdminKey"],
        vec!["create", "/AdminKey", "RANDOM"],
        vec![
            "create",
            "/name",
            "x",
            "/AdminKey",
            "RANDOM",
            "/PIN",
            "MAYBE",
        ],
        vec![
            "create",
            "/name",
            "x",
            "/AdminKey",
            "RANDOM",
            "/PUK",
            "MAYBE",
        ],
        vec![
            "create",
            "/name",
            "x",
            "/AdminKey",
            "RANDOM",
            "/PIN",
            "PROMPT",
            "/pinpolicy",
            "minlen",
            "3",
        ],
        vec![
            "create",
            "/name",
            "x",
            "/AdminKey",
            "RANDOM",
            "/PIN",
            "PROMPT",
            "/pinpolicy",
            "digits",
            "SOMETIMES",
        ],
        vec![
            "create",
            "/name",
            "x",
            "/AdminKey",
            "RANDOM",
            "/attestation",
            "EVERYTHING",
        ],
        vec!["explode"],
    ] {
        let out = w.cli.tpmvscmgr_stdin(&args, "Abcdefgh1\n");
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(!out.stderr.trim().is_empty(), "{args:?}: says why");
    }
    assert!(list_json(&w.cli).is_empty());
}

#[test]
fn destroy_of_an_unknown_instance_fails_and_keeps_other_cards() {
    let w = world();
    w.cli
        .tpmvscmgr(&["create", "/name", "keep", "/AdminKey", "RANDOM"])
        .ok("create");
    let out = w
        .cli
        .tpmvscmgr(&["destroy", "/instance", "ROOT\\SMARTCARDREADER\\0007"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(list_json(&w.cli).len(), 1);
}

#[test]
fn each_stdin_order_is_documented_and_extra_lines_are_refused() {
    let w = world();
    // tpmvscmgr and tpmvsc read the same order: PIN, PUK, admin key, once each.
    let out = w.cli.tpmvscmgr_stdin(
        &[
            "create",
            "/name",
            "o",
            "/PIN",
            "PROMPT",
            "/AdminKey",
            "PROMPT",
        ],
        &format!("Order-pin-1\n{DEFAULT_ADMIN_KEY}\n"),
    );
    assert_eq!(out.code, 0, "{out:#?}");
    w.cli
        .tpmvsc_stdin(&["check-pin", "o", "--stdin"], "Order-pin-1\n")
        .ok("the PIN is the first line");
    // The admin key piped twice (as if asked twice): refused before anything is made.
    let out = w.cli.tpmvscmgr_stdin(
        &[
            "create",
            "/name",
            "p",
            "/PIN",
            "PROMPT",
            "/AdminKey",
            "PROMPT",
        ],
        &format!("Order-pin-2\n{DEFAULT_ADMIN_KEY}\n{DEFAULT_ADMIN_KEY}\n"),
    );
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("more lines"), "{out:#?}");
    let out = w.cli.tpmvsc_stdin(
        &["create", "--name", "p", "--pin", "prompt", "--stdin"],
        "Order-pin-2\nOrder-pin-2\n",
    );
    assert_eq!(
        out.code, 2,
        "create reads the new PIN once on stdin: {out:#?}"
    );
    assert_eq!(list_json(&w.cli).len(), 1, "nothing made");
    // change-pin: current, new, new.
    w.cli
        .tpmvsc_stdin(
            &["change-pin", "o", "--stdin"],
            "Order-pin-1\nOrder-pin-3\nOrder-pin-3\n",
        )
        .ok("change-pin with its order");
    let help = w.cli.tpmvscmgr(&["create", "/?"]).ok("help");
    assert!(
        help.stdout.contains("in the order PIN, PUK, key"),
        "{help:#?}"
    );
}

#[test]
fn both_front_ends_follow_one_rule_for_no_arguments_help_and_version() {
    let w = world();
    for (out, what) in [
        (w.cli.tpmvscmgr(&[]), "tpmvscmgr alone"),
        (w.cli.tpmvsc(&[]), "tpmvsc alone"),
    ] {
        assert_eq!(out.code, 2, "{what}: {out:#?}");
    }
    for args in [["--version"], ["--help"]] {
        w.cli.tpmvscmgr(&args).ok("tpmvscmgr");
        w.cli.tpmvsc(&args).ok("tpmvsc");
    }
    w.cli.tpmvscmgr(&["/?"]).ok("/?");
    let help = w.cli.tpmvscmgr(&["/?"]).stdout;
    assert!(
        help.contains("/machine HOST   Run the command on HOST. Refused for now")
            && help.contains("Refused for now: the card is not"),
        "help says what runs: {help}"
    );
}
