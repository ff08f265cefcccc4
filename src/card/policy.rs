//! PIN policy: the rules a new PIN or PUK must meet (length and character classes), their
//! two spellings (`tpmvsc --pin-policy minlen=8,digits=required` and `tpmvscmgr /pinpolicy
//! minlen 8 digits REQUIRED`), and the check of a secret against them (DESIGN.md §4).
//!
//! Every refusal names the rule it broke, so a user knows what to change. Messages never
//! contain the secret's characters. Pure logic: no I/O, no TPM, no store here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Quoted, Result};

/// What a policy says about one class of characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CharRule {
    /// The class may appear (the default).
    Allowed,
    /// The class must not appear.
    Disallowed,
    /// At least one character of the class must appear.
    Required,
}

/// The rules for a card's PIN (and PUK): a length range and a rule per character class.
///
/// Secrets are printable ASCII (0x20–0x7E) whatever the policy says. "Special characters"
/// are the printable ASCII characters that are neither letters nor digits, space included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinPolicy {
    /// Fewest characters, at least [`PinPolicy::LOWEST_MIN_LEN`].
    pub min_len: usize,
    /// Most characters, at most [`PinPolicy::HIGHEST_MAX_LEN`].
    pub max_len: usize,
    /// `A`–`Z`.
    pub uppercase: CharRule,
    /// `a`–`z`.
    pub lowercase: CharRule,
    /// `0`–`9`.
    pub digits: CharRule,
    /// Printable ASCII that is not a letter or digit, space included.
    pub special: CharRule,
}

impl Default for PinPolicy {
    /// Windows' defaults: 8 to 127 characters, every class allowed.
    fn default() -> Self {
        PinPolicy {
            min_len: Self::DEFAULT_MIN_LEN,
            max_len: Self::HIGHEST_MAX_LEN,
            uppercase: CharRule::Allowed,
            lowercase: CharRule::Allowed,
            digits: CharRule::Allowed,
            special: CharRule::Allowed,
        }
    }
}

impl PinPolicy {
    /// The smallest `minlen` a policy may set.
    pub const LOWEST_MIN_LEN: usize = 4;
    /// The largest `maxlen` a policy may set (and the default `maxlen`).
    pub const HIGHEST_MAX_LEN: usize = 127;
    /// `minlen` when a policy does not set it.
    pub const DEFAULT_MIN_LEN: usize = 8;

    /// Parses the `tpmvsc` spelling:
    /// `minlen=8,maxlen=127,uppercase=allowed,lowercase=allowed,digits=allowed,specialchars=allowed`.
    ///
    /// Any subset of the options in any order; what is left out keeps its default, so an
    /// empty (or all-blank) spec is the default policy. Keys and values are
    /// case-insensitive and may have blanks around them. A malformed or impossible policy
    /// is [`Error::Usage`].
    pub fn parse(spec: &str) -> Result<Self> {
        if spec.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut pairs = Vec::new();
        for item in spec.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(Error::Usage(
                    "the PIN policy has an empty entry (two commas in a row?); \
                     write it as minlen=8,digits=required,..."
                        .to_owned(),
                ));
            }
            // An entry without `=` goes through with an empty value, so an unknown option
            // is reported as unknown rather than as missing its value.
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            pairs.push((key.trim(), value.trim()));
        }
        Self::from_options(pairs)
    }

    /// Builds a policy from `tpmvscmgr /pinpolicy` options already split into
    /// (option, value) pairs, e.g. `("minlen", "4")`, `("uppercase", "REQUIRED")`.
    ///
    /// Options: `minlen`, `maxlen`, `uppercase`, `lowercase`, `digits`, `specialchars`;
    /// each at most once, names and values case-insensitive. An empty list gives the
    /// default policy. A malformed or impossible policy is [`Error::Usage`].
    pub fn from_options<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut min_len = None;
        let mut max_len = None;
        let mut rules: [Option<CharRule>; 4] = [None; 4];
        for (key, value) in pairs {
            let option = PolicyOption::from_name(key)?;
            if value.is_empty() {
                return Err(Error::Usage(format!(
                    "PIN policy option {} needs a value: {}",
                    option.name(),
                    option.expects()
                )));
            }
            let fresh = match option {
                PolicyOption::MinLen => min_len.replace(parse_len(option, value)?).is_none(),
                PolicyOption::MaxLen => max_len.replace(parse_len(option, value)?).is_none(),
                PolicyOption::Class(class) => rules[class.index()]
                    .replace(parse_rule(option, value)?)
                    .is_none(),
            };
            if !fresh {
                return Err(Error::Usage(format!(
                    "PIN policy option {} is given twice; give each option once",
                    option.name()
                )));
            }
        }
        let defaults = Self::default();
        let rule = |class: CharClass| rules[class.index()].unwrap_or(defaults.rule(class));
        let policy = PinPolicy {
            min_len: min_len.unwrap_or(defaults.min_len),
            max_len: max_len.unwrap_or(defaults.max_len),
            uppercase: rule(CharClass::Upper),
            lowercase: rule(CharClass::Lower),
            digits: rule(CharClass::Digit),
            special: rule(CharClass::Special),
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks that the policy itself is possible: lengths within 4–127 and in order, at
    /// least one class not disallowed, no more required classes than `maxlen`. [`parse`]
    /// and [`from_options`] call it; call it after deserializing a stored policy.
    ///
    /// [`parse`]: PinPolicy::parse
    /// [`from_options`]: PinPolicy::from_options
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = (Self::LOWEST_MIN_LEN, Self::HIGHEST_MAX_LEN);
        let usage = |m: String| Err(Error::Usage(m));
        // First, so that the message names the real conflict when a stored policy has a
        // maxlen below 4 and requires more classes than that.
        let required = CharClass::ALL
            .iter()
            .filter(|&&c| self.rule(c) == CharRule::Required)
            .count();
        if required > self.max_len {
            return usage(format!(
                "the PIN policy requires {required} character classes but maxlen is {}; \
                 raise maxlen or require fewer classes",
                self.max_len
            ));
        }
        for (name, len) in [("minlen", self.min_len), ("maxlen", self.max_len)] {
            if len < lo {
                return usage(format!("{name} must be at least {lo} (it is {len})"));
            }
            if len > hi {
                return usage(format!("{name} must be at most {hi} (it is {len})"));
            }
        }
        if self.min_len > self.max_len {
            return usage(format!(
                "minlen ({}) is larger than maxlen ({}); minlen must not exceed maxlen",
                self.min_len, self.max_len
            ));
        }
        if CharClass::ALL
            .iter()
            .all(|&c| self.rule(c) == CharRule::Disallowed)
        {
            return usage(
                "the PIN policy disallows every character class; allow or require at least \
                 one of uppercase, lowercase, digits, specialchars"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// Checks a new PIN or PUK against the policy. `what` ("PIN" or "PUK") starts the
    /// message. Rules are checked in this order: printable ASCII, minlen, maxlen,
    /// disallowed classes, required classes. A failure is [`Error::PolicyViolation`] naming
    /// the rule; it never contains the secret's characters.
    pub fn check(&self, what: &str, secret: &[u8]) -> Result<()> {
        let violation = |m: String| Err(Error::PolicyViolation(m));
        if let Some(i) = secret.iter().position(|b| !(0x20..=0x7e).contains(b)) {
            // Every byte before `i` is ASCII, so byte and character positions agree.
            return violation(format!(
                "{what} has a character at position {} that is not printable ASCII; \
                 use letters, digits, space and the symbols of a US keyboard",
                i + 1
            ));
        }
        if secret.len() < self.min_len {
            return violation(format!(
                "{what} is too short: at least {} characters (minlen={})",
                self.min_len, self.min_len
            ));
        }
        if secret.len() > self.max_len {
            return violation(format!(
                "{what} is too long: at most {} characters (maxlen={})",
                self.max_len, self.max_len
            ));
        }
        let mut present = [false; 4];
        for &b in secret {
            present[CharClass::of(b).index()] = true;
        }
        for class in CharClass::ALL {
            if self.rule(class) == CharRule::Disallowed && present[class.index()] {
                return violation(format!(
                    "{what} must not contain {} ({}=disallowed)",
                    class.plural(),
                    class.option()
                ));
            }
        }
        for class in CharClass::ALL {
            if self.rule(class) == CharRule::Required && !present[class.index()] {
                return violation(format!(
                    "{what} needs at least one {} ({}=required)",
                    class.singular(),
                    class.option()
                ));
            }
        }
        Ok(())
    }

    /// True when this is Windows' default policy (8–127 characters, every class allowed).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// One line for people, e.g. `8-127 characters; uppercase required; digits not allowed`.
    pub fn describe(&self) -> String {
        let mut text = if self.min_len == self.max_len {
            format!("{} characters", self.min_len)
        } else {
            format!("{}-{} characters", self.min_len, self.max_len)
        };
        for class in CharClass::ALL {
            match self.rule(class) {
                CharRule::Allowed => {}
                CharRule::Required => text.push_str(&format!("; {} required", class.short())),
                CharRule::Disallowed => text.push_str(&format!("; {} not allowed", class.short())),
            }
        }
        text
    }

    fn rule(&self, class: CharClass) -> CharRule {
        match class {
            CharClass::Upper => self.uppercase,
            CharClass::Lower => self.lowercase,
            CharClass::Digit => self.digits,
            CharClass::Special => self.special,
        }
    }
}

/// The four character classes, in the order rules are checked and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Upper,
    Lower,
    Digit,
    Special,
}

impl CharClass {
    const ALL: [CharClass; 4] = [
        CharClass::Upper,
        CharClass::Lower,
        CharClass::Digit,
        CharClass::Special,
    ];

    /// The class of a printable ASCII byte.
    fn of(b: u8) -> CharClass {
        if b.is_ascii_uppercase() {
            CharClass::Upper
        } else if b.is_ascii_lowercase() {
            CharClass::Lower
        } else if b.is_ascii_digit() {
            CharClass::Digit
        } else {
            CharClass::Special
        }
    }

    fn index(self) -> usize {
        match self {
            CharClass::Upper => 0,
            CharClass::Lower => 1,
            CharClass::Digit => 2,
            CharClass::Special => 3,
        }
    }

    /// The policy option's name.
    fn option(self) -> &'static str {
        match self {
            CharClass::Upper => "uppercase",
            CharClass::Lower => "lowercase",
            CharClass::Digit => "digits",
            CharClass::Special => "specialchars",
        }
    }

    /// For [`PinPolicy::describe`].
    fn short(self) -> &'static str {
        match self {
            CharClass::Upper => "uppercase",
            CharClass::Lower => "lowercase",
            CharClass::Digit => "digits",
            CharClass::Special => "special characters",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            CharClass::Upper => "uppercase letters",
            CharClass::Lower => "lowercase letters",
            CharClass::Digit => "digits",
            CharClass::Special => {
                "special characters: anything but letters and digits, space included"
            }
        }
    }

    fn singular(self) -> &'static str {
        match self {
            CharClass::Upper => "uppercase letter",
            CharClass::Lower => "lowercase letter",
            CharClass::Digit => "digit",
            CharClass::Special => {
                "special character: anything but a letter or digit, space included"
            }
        }
    }
}

/// One policy option of either spelling.
#[derive(Debug, Clone, Copy)]
enum PolicyOption {
    MinLen,
    MaxLen,
    Class(CharClass),
}

impl PolicyOption {
    fn from_name(name: &str) -> Result<Self> {
        let all = [
            PolicyOption::MinLen,
            PolicyOption::MaxLen,
            PolicyOption::Class(CharClass::Upper),
            PolicyOption::Class(CharClass::Lower),
            PolicyOption::Class(CharClass::Digit),
            PolicyOption::Class(CharClass::Special),
        ];
        all.into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown PIN policy option {}; the options are minlen, maxlen, \
                 uppercase, lowercase, digits and specialchars",
                    Quoted(name)
                ))
            })
    }

    fn name(self) -> &'static str {
        match self {
            PolicyOption::MinLen => "minlen",
            PolicyOption::MaxLen => "maxlen",
            PolicyOption::Class(class) => class.option(),
        }
    }

    /// What a value of this option looks like, for messages.
    fn expects(self) -> &'static str {
        match self {
            PolicyOption::MinLen | PolicyOption::MaxLen => "a whole number from 4 to 127",
            PolicyOption::Class(_) => "ALLOWED, DISALLOWED or REQUIRED",
        }
    }
}

/// A length value: plain decimal digits (no sign, no blanks).
fn parse_len(option: PolicyOption, value: &str) -> Result<usize> {
    let number = if value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse().ok()
    } else {
        None
    };
    number.ok_or_else(|| {
        Error::Usage(format!(
            "PIN policy option {} must be {}",
            option.name(),
            option.expects()
        ))
    })
}

fn parse_rule(option: PolicyOption, value: &str) -> Result<CharRule> {
    [
        ("allowed", CharRule::Allowed),
        ("disallowed", CharRule::Disallowed),
        ("required", CharRule::Required),
    ]
    .into_iter()
    .find(|(word, _)| word.eq_ignore_ascii_case(value))
    .map(|(_, rule)| rule)
    .ok_or_else(|| {
        Error::Usage(format!(
            "PIN policy option {} must be {}",
            option.name(),
            option.expects()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_of(r: Result<PinPolicy>) -> String {
        match r {
            Err(Error::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    fn violation_of(r: Result<()>) -> String {
        match r {
            Err(Error::PolicyViolation(m)) => m,
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
        assert!(p.is_default());
        assert_eq!(p.describe(), "8-127 characters");
    }

    #[test]
    fn default_pin_passes_the_default_policy() {
        PinPolicy::default().check("PIN", b"12345678").unwrap();
    }

    #[test]
    fn empty_spec_and_empty_options_are_the_default() {
        assert!(policy("").is_default());
        assert!(policy("  ").is_default());
        assert!(PinPolicy::from_options([]).unwrap().is_default());
    }

    #[test]
    fn a_changed_policy_is_not_default() {
        assert!(!policy("minlen=9").is_default());
        assert!(!policy("digits=required").is_default());
        assert!(policy("minlen=8,maxlen=127,digits=allowed").is_default());
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
            usage_of(PinPolicy::from_options([("lowercase", "maybe")]))
                .contains("lowercase must be")
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
        assert!(
            usage_of(PinPolicy::parse("minlen=4,maxlen=3")).contains("maxlen must be at least 4")
        );
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
}
