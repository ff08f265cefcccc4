//! One documented standard-input order per command, the same in both front ends
//! (fidelity issue): every command that reads secrets is piped its order, and each line
//! must land where the order says (the effect is checked afterwards); one line more is
//! refused before anything is done (exit 2, "more lines"), the card unchanged.

mod common;

use common::*;

const ADMIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
const ADMIN2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210";

/// Runs `args` with `input`, first with one line too many (refused, nothing done), then
/// as documented (works).
fn both_ways(cli: &Cli, args: &[&str], input: &str, what: &str) -> Output {
    let out = cli.tpmvsc_stdin(args, &format!("{input}one-line-too-many\n"));
    assert_eq!(out.code, 2, "{what} with an extra line: {out:#?}");
    assert!(out.stderr.contains("more lines"), "{what}: {out:#?}");
    cli.tpmvsc_stdin(args, input).ok(what)
}

#[test]
fn every_command_reads_standard_input_in_its_documented_order() {
    let swtpm = Swtpm::start_with_persistent_srk();
    swtpm.set_da(1000, 1, 1);
    let store = TestStore::new();
    let cli = Cli::new(&store, &swtpm.tcti());

    // create: PIN, PUK, admin key — one line each, for those set to prompt.
    both_ways(
        &cli,
        &[
            "create", "--name", "p", "--pin", "prompt", "--puk", "prompt", "--stdin",
        ],
        "Order-pin-0001\nOrder-puk-0001\n",
        "create p: PIN, PUK",
    );
    both_ways(
        &cli,
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
        &format!("Order-pin-0002\n{ADMIN}\n"),
        "create a: PIN, admin key",
    );
    let out = cli.tpmvscmgr_stdin(
        &[
            "create",
            "/name",
            "w",
            "/PIN",
            "PROMPT",
            "/PUK",
            "PROMPT",
            "/AdminKey",
            "RANDOM",
        ],
        "Order-pin-0003\nOrder-puk-0003\nextra\n",
    );
    assert_eq!(out.code, 2, "tpmvscmgr create with an extra line: {out:#?}");
    cli.tpmvscmgr_stdin(
        &[
            "create",
            "/name",
            "w",
            "/PIN",
            "PROMPT",
            "/PUK",
            "PROMPT",
            "/AdminKey",
            "RANDOM",
        ],
        "Order-pin-0003\nOrder-puk-0003\n",
    )
    .ok("tpmvscmgr create: PIN, PUK");
    cli.check_pin("w", "Order-pin-0003")
        .ok("tpmvscmgr's first line is the PIN");

    // check-pin, keygen, csr: the PIN.
    both_ways(
        &cli,
        &["check-pin", "p", "--stdin"],
        "Order-pin-0001\n",
        "check-pin: PIN",
    );
    both_ways(
        &cli,
        &[
            "keygen", "p", "--type", "ec-p256", "--label", "k", "--stdin",
        ],
        "Order-pin-0001\n",
        "keygen: PIN",
    );
    both_ways(
        &cli,
        &[
            "csr",
            "p",
            "--key",
            "k",
            "--subject",
            "CN=order",
            "--out",
            "-",
            "--stdin",
        ],
        "Order-pin-0001\n",
        "csr: PIN",
    );

    // change-pin, change-puk: current, new, new.
    both_ways(
        &cli,
        &["change-pin", "p", "--stdin"],
        "Order-pin-0001\nOrder-pin-0011\nOrder-pin-0011\n",
        "change-pin: current, new, new",
    );
    cli.check_pin("p", "Order-pin-0011").ok("the new PIN");
    both_ways(
        &cli,
        &["change-puk", "p", "--stdin"],
        "Order-puk-0001\nOrder-puk-0011\nOrder-puk-0011\n",
        "change-puk: current, new, new",
    );
    // unblock --puk and format --puk: PUK, new PIN, new PIN.
    both_ways(
        &cli,
        &["unblock", "p", "--puk", "--stdin"],
        "Order-puk-0011\nOrder-pin-0021\nOrder-pin-0021\n",
        "unblock --puk: PUK, new, new",
    );
    cli.check_pin("p", "Order-pin-0021")
        .ok("the PIN the PUK set");
    both_ways(
        &cli,
        &["format", "p", "--puk", "--stdin", "--yes"],
        "Order-puk-0011\nOrder-pin-0031\nOrder-pin-0031\n",
        "format --puk: PUK, new, new",
    );
    cli.check_pin("p", "Order-pin-0031")
        .ok("the PIN format set");

    // The admin side: each needs the response to the card's next challenge.
    let response = |key: &str| {
        let (c, _) = admin_challenge(&cli, "a");
        admin_response(&cli, key, &c)
    };
    // admin response --stdin: the admin key.
    let (c, _) = admin_challenge(&cli, "a");
    let out = cli.tpmvsc_stdin(
        &["admin", "response", "--challenge", &c, "--stdin"],
        &format!("{ADMIN}\nextra\n"),
    );
    assert_eq!(out.code, 2, "admin response with an extra line: {out:#?}");
    // admin verify: the response. The refused extra-line run spends nothing.
    let r = response(ADMIN);
    both_ways(
        &cli,
        &["admin", "verify", "a", "--stdin"],
        &format!("{r}\n"),
        "admin verify: response",
    );
    // unblock --admin: response, new PIN, new PIN.
    let r = response(ADMIN);
    both_ways(
        &cli,
        &["unblock", "a", "--admin", "--stdin"],
        &format!("{r}\nOrder-pin-0042\nOrder-pin-0042\n"),
        "unblock --admin: response, new, new",
    );
    cli.check_pin("a", "Order-pin-0042")
        .ok("the PIN the admin set");
    // format --admin: response, new PIN, new PIN.
    let r = response(ADMIN);
    both_ways(
        &cli,
        &["format", "a", "--admin", "--stdin", "--yes"],
        &format!("{r}\nOrder-pin-0052\nOrder-pin-0052\n"),
        "format --admin: response, new, new",
    );
    cli.check_pin("a", "Order-pin-0052")
        .ok("the PIN the admin format set");
    // admin refill: response, key.
    let r = response(ADMIN);
    both_ways(
        &cli,
        &["admin", "refill", "a", "--stdin"],
        &format!("{r}\n{ADMIN}\n"),
        "admin refill: response, key",
    );
    // admin change-key: response, new key, new key.
    let r = response(ADMIN);
    both_ways(
        &cli,
        &["admin", "change-key", "a", "--stdin"],
        &format!("{r}\n{ADMIN2}\n{ADMIN2}\n"),
        "admin change-key: response, new, new",
    );
    let r = response(ADMIN2);
    cli.tpmvsc_stdin(&["admin", "verify", "a", "--stdin"], &format!("{r}\n"))
        .ok("the new admin key answers");

    // tpm clear-lockout: the lockout authorization (empty on this TPM).
    let out = cli.tpmvsc_stdin(&["tpm", "clear-lockout"], "\nextra\n");
    assert_eq!(out.code, 2, "clear-lockout with an extra line: {out:#?}");
    cli.tpmvsc_stdin(&["tpm", "clear-lockout"], "\n")
        .ok("clear-lockout: the lockout authorization");
}
