//! PIN policy through `tpmvsc create --pin-file F --pin-policy SPEC`: each rule accepts a
//! PIN that meets it and refuses one that breaks it with exit 2 and one stderr line
//! naming the rule.

mod common;

use common::*;

struct Env {
    _swtpm: Swtpm,
    store: TestStore,
    cli: Cli,
    n: usize,
}

impl Env {
    fn new() -> Env {
        let CliWorld { swtpm, store, cli } = CliWorld::on(Swtpm::start_with_persistent_srk());
        Env {
            _swtpm: swtpm,
            store,
            cli,
            n: 0,
        }
    }

    fn create(&mut self, policy: &str, pin: &[u8]) -> Output {
        self.n += 1;
        let f = self.store.scratch(&format!("pin{}", self.n));
        let mut content = pin.to_vec();
        content.push(b'\n');
        std::fs::write(&f, content).expect("writing the PIN file");
        let name = format!("p{}", self.n);
        self.cli.tpmvsc(&[
            "create",
            "--name",
            &name,
            "--pin-file",
            f.to_str().expect("utf-8 path"),
            "--pin-policy",
            policy,
        ])
    }

    fn accepts(&mut self, policy: &str, pin: &str) {
        let out = self.create(policy, pin.as_bytes());
        assert_eq!(
            out.code, 0,
            "policy {policy:?} should accept {pin:?}: {out:#?}"
        );
        // Keep the store under the 10-card limit.
        let name = format!("p{}", self.n);
        self.cli.tpmvsc(&["destroy", &name, "--yes"]).ok("destroy");
    }

    fn refuses(&mut self, policy: &str, pin: &[u8], rule: &str) {
        let out = self.create(policy, pin);
        assert_eq!(
            out.code, 2,
            "policy {policy:?} should refuse {pin:?}: {out:#?}"
        );
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "one stderr line: {:?}", out.stderr);
        assert!(
            lines[0].contains(rule),
            "stderr names {rule:?}: {:?}",
            lines[0]
        );
    }
}

#[test]
fn each_pin_policy_rule_accepts_and_refuses() {
    let mut e = Env::new();
    e.accepts("minlen=10", "abcdefghij");
    e.refuses("minlen=10", b"abcdefghi", "minlen");
    e.accepts("minlen=4,maxlen=6", "abcdef");
    e.refuses("minlen=4,maxlen=6", b"abcdefg", "maxlen");
    e.accepts("uppercase=required", "abcdefgH");
    e.refuses("uppercase=required", b"abcdefgh", "uppercase");
    e.accepts("uppercase=disallowed", "abcdefgh");
    e.refuses("uppercase=disallowed", b"abcdefgH", "uppercase");
    e.accepts("lowercase=required", "ABCDEFGh");
    e.refuses("lowercase=required", b"ABCDEFGH", "lowercase");
    e.accepts("lowercase=disallowed", "ABCDEFGH");
    e.refuses("lowercase=disallowed", b"ABCDEFGh", "lowercase");
    e.accepts("digits=required", "abcdefg1");
    e.refuses("digits=required", b"abcdefgh", "digits");
    e.accepts("digits=disallowed", "abcdefgh");
    e.refuses("digits=disallowed", b"abcdefg1", "digits");
    e.accepts("specialchars=required", "abcdefg!");
    e.refuses("specialchars=required", b"abcdefgh", "specialchars");
    e.accepts("specialchars=disallowed", "abcdefgh");
    e.refuses("specialchars=disallowed", b"abcdefg!", "specialchars");
    e.accepts("minlen=4", "a b~");
    e.refuses("minlen=4", b"abc\x01defg", "printable");
}

#[test]
fn impossible_policies_are_refused_by_name() {
    let mut e = Env::new();
    e.accepts("minlen=4", "abcd");
    e.refuses("minlen=3", b"abcdefgh", "minlen");
    e.accepts("maxlen=127", &"a".repeat(127));
    e.refuses("maxlen=128", b"abcdefgh", "maxlen");
    e.refuses("colour=blue", b"abcdefgh", "colour");
}

#[test]
fn a_pin_policy_with_the_default_pin_is_a_usage_error() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    let out = cli
        .tpmvsc(&["create", "--name", "x", "--pin-policy", "minlen=8"])
        .expect_code(2, "policy with default PIN");
    assert_eq!(out.stderr_lines().len(), 1, "{:?}", out.stderr);
    assert!(list_json(&cli).is_empty());
}

#[test]
fn bad_arguments_exit_2_with_one_stderr_line() {
    let CliWorld {
        swtpm: _swtpm,
        store: _store,
        cli,
    } = CliWorld::new();
    for args in [
        vec!["create", "--name", "x", "--frobnicate"],
        vec!["create"],
        vec!["create", "--name", "x", "--pin", "sometimes"],
        vec!["explode"],
    ] {
        let out = cli.tpmvsc(&args);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert_eq!(
            out.stderr_lines().len(),
            1,
            "{args:?}: one stderr line: {:?}",
            out.stderr
        );
    }
    assert!(list_json(&cli).is_empty());
}
