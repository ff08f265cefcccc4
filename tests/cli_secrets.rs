//! No secret on the command line (issue 12 item 4): every user of the machine can read a
//! process's arguments in /proc/PID/cmdline. A PIN, PUK, admin key, master key or admin
//! response given as an argument is refused with exit 2 and one line naming what to use
//! instead, before anything else happens; the same secrets work from a file, standard
//! input, a pipe and an inherited descriptor (/dev/fd/3).

mod common;

use common::*;
use tpmvsc::provision::admin::{AdminKey, parse_challenge, parse_master_key};

/// The admin key of card "a" (no PUK, so the admin key unblocks it).
const KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
/// A fleet master key (16 bytes).
const MASTER: &str = "000102030405060708090a0b0c0d0e0f";
const CHALLENGE: &str = "1122334455667788";

/// One command line with a secret in it, and what the refusal must say.
struct Refusal {
    bin: &'static str,
    args: Vec<String>,
    /// The secret that must not be echoed back.
    secret: &'static str,
    /// Words the one-line message must contain: the flag and its replacement.
    says: &'static [&'static str],
}

fn refusal(
    bin: &'static str,
    args: &[&str],
    secret: &'static str,
    says: &'static [&'static str],
) -> Refusal {
    Refusal {
        bin,
        args: args.iter().map(|s| s.to_string()).collect(),
        secret,
        says,
    }
}

/// A card "a" managed with [`KEY`] and no PUK, on a fresh TPM.
fn world() -> (Swtpm, TestStore, Cli) {
    let CliWorld { swtpm, store, cli } = CliWorld::new();
    cli.tpmvsc_stdin(
        &["create", "--name", "a", "--admin-key", "prompt", "--stdin"],
        &format!("{KEY}\n"),
    )
    .ok("create a card with an admin key");
    (swtpm, store, cli)
}

fn response(key: &AdminKey, challenge: &str) -> String {
    hex::encode_upper(key.response(&parse_challenge(challenge).expect("a challenge")))
}

/// The response the refusal rows use: well-formed, so only its place is wrong.
const RESPONSE: &str = "0123456789ABCDEF";

/// The table: one command line per place a secret used to go, or might be typed.
#[rustfmt::skip]
fn refusals(card_id: &str) -> Vec<Refusal> {
    let r = RESPONSE;
    let admin_key_file = &["`--admin-key`", "--admin-key-file FILE", "--stdin", "prompt"];
    let response_file = &["`--response`", "--response-file FILE", "--stdin", "prompt"];
    let pin_file = &["`--pin`", "--pin-file FILE", "--stdin", "prompt"];
    vec![
        // The help desk's side: the old spellings are recognised and refused.
        refusal("tpmvsc", &["admin", "response", "--admin-key", KEY, "--challenge", CHALLENGE], KEY, admin_key_file),
        refusal("tpmvsc", &["admin", "response", &format!("--admin-key={KEY}"), "--challenge", CHALLENGE], KEY, admin_key_file),
        refusal("tpmvsc", &["admin", "response", "--master-key", MASTER, "--card-id", card_id, "--challenge", CHALLENGE], MASTER,
            &["`--master-key`", "--master-key-file FILE", "--stdin", "prompt"]),
        // The response, everywhere it was taken.
        refusal("tpmvsc", &["unblock", "a", "--admin", "--response", r, "--stdin"], r, response_file),
        refusal("tpmvsc", &["unblock", "a", "--admin", &format!("--response={r}")], r, response_file),
        refusal("tpmvsc", &["format", "a", "--admin", "--response", r, "--yes", "--stdin"], r, response_file),
        refusal("tpmvsc", &["admin", "verify", "a", "--response", r], r, response_file),
        refusal("tpmvsc", &["admin", "change-key", "a", "--response", r, "--stdin"], r, response_file),
        refusal("tpmvsc", &["admin", "refill", "a", "--response", r, "--stdin"], r, response_file),
        // create takes only default/prompt(/random), never the secret itself.
        refusal("tpmvsc", &["create", "--name", "x", "--pin", "Secret-pin-1"], "Secret-pin-1", &["`--pin`", "--pin-file FILE", "--stdin"]),
        refusal("tpmvsc", &["create", "--name", "x", "--puk", "Secret-puk-1"], "Secret-puk-1", &["`--puk`", "--puk-file FILE", "--stdin"]),
        refusal("tpmvsc", &["create", "--name", "x", "--admin-key", KEY], KEY, &["`--admin-key`", "--admin-key-file FILE", "--stdin"]),
        // The PIN, where people guess a --pin option.
        refusal("tpmvsc", &["check-pin", "a", "--pin", "12345678"], "12345678", pin_file),
        refusal("tpmvsc", &["keygen", "a", "--type", "ec-p256", "--label", "k", "--pin", "12345678"], "12345678", pin_file),
        refusal("tpmvsc", &["csr", "a", "--key", "k", "--subject", "CN=x", "--out", "-", "--pin", "12345678"], "12345678", pin_file),
        // A value after a switch that takes none.
        refusal("tpmvsc", &["unblock", "a", "--puk", "Secret-puk-1"], "Secret-puk-1", &["`--puk`", "--stdin", "prompt"]),
        refusal("tpmvsc", &["unblock", "a", "--admin", r], r, &["`--admin`", "--response-file FILE"]),
        // tpmvscmgr: /AdminKey, /PIN and /PUK take keywords only.
        refusal("tpmvscmgr", &["create", "/name", "x", "/AdminKey", KEY], KEY,
            &["/AdminKey takes DEFAULT, PROMPT or RANDOM", "never given on the command line", "PROMPT"]),
        refusal("tpmvscmgr", &["create", "/name", "x", "/AdminKey", "RANDOM", "/PIN", "1234"], "1234",
            &["/PIN takes DEFAULT or PROMPT", "never given on the command line", "standard input"]),
        refusal("tpmvscmgr", &["create", "/name", "x", "/AdminKey", "RANDOM", "/PUK", "Secret-puk-1"], "Secret-puk-1",
            &["/PUK takes DEFAULT or PROMPT", "never given on the command line"]),
    ]
}

#[test]
fn secrets_given_as_arguments_are_refused_naming_the_replacement() {
    let (swtpm, store, cli) = world();
    let card_id = info_json(&cli, "a")["card_id"]
        .as_str()
        .expect("card_id")
        .to_string();
    let r = RESPONSE;
    let table = refusals(&card_id);

    let (challenge, left) = admin_challenge(&cli, "a");
    let before = tries_and_da(&cli, "a");
    for row in &table {
        let args: Vec<&str> = row.args.iter().map(String::as_str).collect();
        // Standard input carries valid answers: the refusal must come before any is read.
        let stdin = format!("{r}\nNew-pin-123\nNew-pin-123\n");
        let out = if row.bin == "tpmvsc" {
            cli.tpmvsc_stdin(&args, &stdin)
        } else {
            cli.tpmvscmgr_stdin(&args, &stdin)
        };
        let what = format!("{} {args:?}", row.bin);
        assert_eq!(out.code, 2, "{what}: {out:#?}");
        let mut lines = out.stderr_lines();
        if row.bin == "tpmvscmgr" {
            // tpmvscmgr follows every usage error with a pointer to its help.
            assert_eq!(
                lines.pop(),
                Some("Run `tpmvscmgr /?` for the syntax."),
                "{what}"
            );
        }
        assert_eq!(lines.len(), 1, "{what}: one line: {out:#?}");
        for word in row.says {
            assert!(
                lines[0].contains(word),
                "{what}: {word:?} not in {:?}",
                lines[0]
            );
        }
        assert!(
            !out.stderr.contains(row.secret) && !out.stdout.contains(row.secret),
            "{what}: the secret is echoed: {out:#?}"
        );
        assert!(out.stdout.is_empty(), "{what}: nothing computed: {out:#?}");
    }
    // Nothing was spent, tried or made.
    assert_eq!(admin_challenge(&cli, "a"), (challenge, left));
    assert_eq!(tries_and_da(&cli, "a"), before);
    let names: Vec<_> = list_json(&cli).iter().map(|c| c["name"].clone()).collect();
    assert_eq!(names, ["a"], "no card was created");
    check_pin_in_tpm(&store, &swtpm, "a", DEFAULT_PIN);
}

#[test]
fn help_offers_files_stdin_and_prompts_for_secrets_never_values() {
    let (_swtpm, _store, cli) = world();
    for (args, wanted) in [
        (
            vec!["admin", "response", "--help"],
            vec![
                "--admin-key-file",
                "--master-key-file",
                "--stdin",
                "/dev/fd/3",
            ],
        ),
        (
            vec!["unblock", "--help"],
            vec!["--response-file", "--stdin", "/dev/fd/3"],
        ),
        (vec!["format", "--help"], vec!["--response-file", "--stdin"]),
        (
            vec!["admin", "verify", "--help"],
            vec!["--response-file", "--stdin"],
        ),
        (
            vec!["admin", "change-key", "--help"],
            vec!["--response-file", "--stdin"],
        ),
        (
            vec!["admin", "refill", "--help"],
            vec!["--response-file", "--stdin"],
        ),
        (vec!["check-pin", "--help"], vec!["--pin-file", "--stdin"]),
        (vec!["keygen", "--help"], vec!["--pin-file", "--stdin"]),
        (
            vec!["create", "--help"],
            vec![
                "--pin-file",
                "--puk-file",
                "--admin-key-file",
                "Never the PIN itself",
                "/dev/fd/3",
            ],
        ),
    ] {
        let out = cli.tpmvsc(&args).ok("--help");
        for w in wanted {
            assert!(
                out.stdout.contains(w),
                "{args:?}: {w:?} not in\n{}",
                out.stdout
            );
        }
        for value_flag in [
            "--admin-key <ADMIN_KEY>",
            "--master-key <MASTER_KEY>",
            "--response <RESPONSE>",
            "--pin <PIN>",
            "--puk <PUK>",
        ] {
            assert!(
                !out.stdout.contains(value_flag),
                "{args:?} offers {value_flag:?}:\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn admin_response_reads_the_key_from_a_file_stdin_a_pipe_or_an_inherited_descriptor() {
    let (_swtpm, store, cli) = world();
    let card_id = info_json(&cli, "a")["card_id"]
        .as_str()
        .expect("card_id")
        .to_string();
    let key = AdminKey::parse_hex(KEY).expect("key");
    let want = response(&key, CHALLENGE);
    let per_card = AdminKey::derive(&parse_master_key(MASTER).expect("master"), &card_id)
        .expect("per-card key");
    let want_per_card = response(&per_card, CHALLENGE);
    assert_ne!(want, want_per_card);

    let key_file = store.scratch("admin-key");
    std::fs::write(&key_file, format!("{KEY}\r\n")).expect("writing the key file");
    let master_file = store.scratch("master-key");
    std::fs::write(&master_file, format!("{MASTER}\n")).expect("writing the master file");
    let kf = key_file.to_str().expect("utf-8");
    let mf = master_file.to_str().expect("utf-8");
    let base = ["admin", "response", "--challenge", CHALLENGE];
    fn joined<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }

    let runs = [
        (
            "--admin-key-file FILE",
            cli.tpmvsc(&joined(&base, &["--admin-key-file", kf])),
            &want,
        ),
        (
            "--stdin",
            cli.tpmvsc_stdin(&joined(&base, &["--stdin"]), &format!("{KEY}\n")),
            &want,
        ),
        (
            "stdin that is no terminal",
            cli.tpmvsc_stdin(&base, KEY),
            &want,
        ),
        (
            "--admin-key-file /dev/fd/3 on a file",
            cli.tpmvsc_fd3(
                &joined(&base, &["--admin-key-file", "/dev/fd/3"]),
                Fd3::File(&key_file),
                "",
            ),
            &want,
        ),
        (
            "--admin-key-file /dev/fd/3 on a pipe",
            cli.tpmvsc_fd3(
                &joined(&base, &["--admin-key-file", "/dev/fd/3"]),
                Fd3::Pipe(&format!("{KEY}\n")),
                "",
            ),
            &want,
        ),
        (
            "--master-key-file FILE --card-id",
            cli.tpmvsc(&joined(
                &base,
                &["--master-key-file", mf, "--card-id", &card_id],
            )),
            &want_per_card,
        ),
        (
            "--master-key-file /dev/fd/3 --card-id",
            cli.tpmvsc_fd3(
                &joined(
                    &base,
                    &["--master-key-file", "/dev/fd/3", "--card-id", &card_id],
                ),
                Fd3::Pipe(MASTER),
                "",
            ),
            &want_per_card,
        ),
        (
            "--card-id with the master key on --stdin",
            cli.tpmvsc_stdin(
                &joined(&base, &["--card-id", &card_id, "--stdin"]),
                &format!("{MASTER}\n"),
            ),
            &want_per_card,
        ),
    ];
    for (how, out, want) in runs {
        let out = out.ok(how);
        assert_eq!(out.stdout.trim(), want.as_str(), "{how}");
    }

    // The per-card key is the one the card holds when created from the master key.
    cli.tpmvsc(&[
        "create",
        "--name",
        "m",
        "--admin-key-master-file",
        mf,
        "--card-id",
        "6f9619ff-8b86-d011-b42d-00c04fc964ff",
    ])
    .ok("create --admin-key-master-file");
    let (c, _) = admin_challenge(&cli, "m");
    let r = cli
        .tpmvsc_fd3(
            &[
                "admin",
                "response",
                "--challenge",
                &c,
                "--card-id",
                "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                "--master-key-file",
                "/dev/fd/3",
            ],
            Fd3::File(&master_file),
            "",
        )
        .ok("admin response for card m")
        .stdout
        .trim()
        .to_string();
    cli.tpmvsc_fd3(
        &["admin", "verify", "m", "--response-file", "/dev/fd/3"],
        Fd3::Pipe(&r),
        "",
    )
    .ok("admin verify with the response on a pipe");
}

#[test]
fn responses_and_pins_work_from_files_pipes_and_inherited_descriptors() {
    let (swtpm, store, cli) = world();
    let key = AdminKey::parse_hex(KEY).expect("key");

    // unblock --admin: the response on /dev/fd/3 (a file), the new PIN twice on stdin.
    let (c1, left) = admin_challenge(&cli, "a");
    let r_file = store.scratch("response");
    std::fs::write(&r_file, format!("{}\n", response(&key, &c1))).expect("writing the response");
    cli.tpmvsc_fd3(
        &[
            "unblock",
            "a",
            "--admin",
            "--response-file",
            "/dev/fd/3",
            "--stdin",
        ],
        Fd3::File(&r_file),
        "Fd3-pin-one\nFd3-pin-one\n",
    )
    .ok("unblock --admin --response-file /dev/fd/3");
    assert_eq!(
        admin_challenge(&cli, "a").1,
        left - 1,
        "one challenge spent"
    );

    // check-pin and keygen read the PIN from an inherited pipe and from a file.
    cli.tpmvsc_fd3(
        &["check-pin", "a", "--pin-file", "/dev/fd/3"],
        Fd3::Pipe("Fd3-pin-one\n"),
        "",
    )
    .ok("check-pin --pin-file /dev/fd/3 (a pipe)");
    let pin_file = store.scratch("pin");
    std::fs::write(&pin_file, "Fd3-pin-one\n").expect("writing the PIN file");
    let pf = pin_file.to_str().expect("utf-8");
    cli.tpmvsc(&["check-pin", "a", "--pin-file", pf])
        .ok("check-pin --pin-file FILE");
    cli.tpmvsc_fd3(
        &[
            "keygen",
            "a",
            "--type",
            "ec-p256",
            "--label",
            "k",
            "--pin-file",
            "/dev/fd/3",
        ],
        Fd3::File(&pin_file),
        "",
    )
    .ok("keygen --pin-file /dev/fd/3");

    // admin verify, change-key and refill with --response-file; format --admin too.
    let (c2, _) = admin_challenge(&cli, "a");
    std::fs::write(&r_file, response(&key, &c2)).expect("writing the response");
    let rf = r_file.to_str().expect("utf-8");
    cli.tpmvsc(&["admin", "verify", "a", "--response-file", rf])
        .ok("admin verify --response-file");
    let (c3, _) = admin_challenge(&cli, "a");
    cli.tpmvsc_fd3(
        &[
            "admin",
            "refill",
            "a",
            "--response-file",
            "/dev/fd/3",
            "--stdin",
        ],
        Fd3::Pipe(&response(&key, &c3)),
        &format!("{KEY}\n"),
    )
    .ok("admin refill --response-file /dev/fd/3");
    assert_eq!(admin_challenge(&cli, "a").1, 32, "refilled");
    let (c4, _) = admin_challenge(&cli, "a");
    std::fs::write(&r_file, response(&key, &c4)).expect("writing the response");
    let new_key = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
    cli.tpmvsc_stdin(
        &["admin", "change-key", "a", "--response-file", rf, "--stdin"],
        &format!("{new_key}\n{new_key}\n"),
    )
    .ok("admin change-key --response-file");
    let key = AdminKey::parse_hex(new_key).expect("new key");
    let (c5, _) = admin_challenge(&cli, "a");
    std::fs::write(&r_file, response(&key, &c5)).expect("writing the response");
    cli.tpmvsc_stdin(
        &[
            "format",
            "a",
            "--admin",
            "--response-file",
            rf,
            "--yes",
            "--stdin",
        ],
        "Formatted-pin\nFormatted-pin\n",
    )
    .ok("format --admin --response-file");
    check_pin_in_tpm(&store, &swtpm, "a", "Formatted-pin");

    // create reads its secrets from inherited descriptors too.
    cli.tpmvsc_fd3(
        &[
            "create",
            "--name",
            "b",
            "--pin-file",
            "/dev/fd/3",
            "--puk",
            "prompt",
            "--stdin",
        ],
        Fd3::Pipe("Created-pin-1\n"),
        "Created-puk-1\n",
    )
    .ok("create --pin-file /dev/fd/3");
    check_pin_in_tpm(&store, &swtpm, "b", "Created-pin-1");
    cli.tpmvsc_stdin(
        &["unblock", "b", "--puk", "--stdin"],
        "Created-puk-1\nUnblocked-pin\nUnblocked-pin\n",
    )
    .ok("unblock --puk with the PUK create read");
}

fn check_pin_in_tpm(store: &TestStore, swtpm: &Swtpm, card: &str, pin: &str) {
    common::check_pin(store, &swtpm.tcti(), card, pin)
        .unwrap_or_else(|e| panic!("the PIN of {card} is {pin:?}: {e:?}"));
}
