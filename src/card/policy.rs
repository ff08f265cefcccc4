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
    /// Fewest characters, at least `PinPolicy::LOWEST_MIN_LEN`.
    pub min_len: usize,
    /// Most characters, at most `PinPolicy::HIGHEST_MAX_LEN`.
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
    pub(crate) const LOWEST_MIN_LEN: usize = 4;
    /// The largest `maxlen` a policy may set (and the default `maxlen`).
    pub(crate) const HIGHEST_MAX_LEN: usize = 127;
    /// `minlen` when a policy does not set it.
    pub(crate) const DEFAULT_MIN_LEN: usize = 8;

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
    pub(crate) fn from_options<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
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
    pub(crate) fn validate(&self) -> Result<()> {
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
    /// disallowed classes, required classes. A failure is [`Error::PinRule`] naming the rule
    /// (a length or a character rule); it never contains the secret's characters.
    pub fn check(&self, what: &str, secret: &[u8]) -> Result<()> {
        let characters = |why: String| Err(Error::PinRule { length: false, why });
        let length = |why: String| Err(Error::PinRule { length: true, why });
        if let Some(i) = secret.iter().position(|b| !(0x20..=0x7e).contains(b)) {
            // Every byte before `i` is ASCII, so byte and character positions agree.
            return characters(format!(
                "{what} has a character at position {} that is not printable ASCII; \
                 use letters, digits, space and the symbols of a US keyboard",
                i + 1
            ));
        }
        if secret.len() < self.min_len {
            return length(format!(
                "{what} is too short: at least {} characters (minlen={})",
                self.min_len, self.min_len
            ));
        }
        if secret.len() > self.max_len {
            return length(format!(
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
                return characters(format!(
                    "{what} must not contain {} ({}=disallowed)",
                    class.plural(),
                    class.option()
                ));
            }
        }
        for class in CharClass::ALL {
            if self.rule(class) == CharRule::Required && !present[class.index()] {
                return characters(format!(
                    "{what} needs at least one {} ({}=required)",
                    class.singular(),
                    class.option()
                ));
            }
        }
        Ok(())
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
mod tests;
