//! The Windows `tpmvscmgr` command line: Microsoft's documented `create` and `destroy`
//! synopsis (DESIGN.md §4) parsed into typed values, and the help text.
//!
//! Parsing only: what a value means (prompting, ssh to `/machine`, matching `/instance`,
//! attestation) is the caller's job. No I/O, no prompts, no TPM or store here.

use std::fmt;

use crate::card::policy::PinPolicy;
use crate::error::{Error, Quoted, Result};

/// What a `tpmvscmgr` command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WinCommand {
    /// `tpmvscmgr create ...`
    Create(WinCreate),
    /// `tpmvscmgr destroy ...`
    Destroy(WinDestroy),
    /// `/?` (or `-h`, `--help`) anywhere: show [`usage`] for the verb, if one was given.
    Help(Option<WinVerb>),
    /// No arguments: the usage, as an error (exit 2) — the same rule as `tpmvsc`.
    NoCommand,
    /// `--version` or `-V`.
    Version,
}

/// The two verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinVerb {
    /// `create`
    Create,
    /// `destroy`
    Destroy,
}

/// `/PIN` and `/PUK` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinSecret {
    /// The well-known default, `12345678`.
    Default,
    /// Ask the user.
    Prompt,
}

/// `/AdminKey` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinAdminKey {
    /// The well-known default key (anyone who can read the card's files can reset its PIN).
    Default,
    /// Ask the user for a 48-hex-digit key.
    Prompt,
    /// A key nobody learns: no administrator unblock (DESIGN.md §3).
    Random,
}

/// `/attestation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinAttestation {
    /// `AIK_AND_CERT`
    AikAndCert,
    /// `AIK_ONLY`
    AikOnly,
}

/// A parsed `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinCreate {
    /// `/quiet`
    pub quiet: bool,
    /// `/name`: 1–32 bytes, no control characters, not ending in a space.
    pub name: String,
    /// `/AdminKey` (DEFAULT when left out).
    pub admin_key: WinAdminKey,
    /// `/PIN`; left out = [`WinSecret::Default`].
    pub pin: WinSecret,
    /// `/PUK`; left out = no PUK.
    pub puk: Option<WinSecret>,
    /// `/generate`: format the card now.
    pub generate: bool,
    /// `/machine`, as given (not empty, no blanks, not starting with `-`).
    pub machine: Option<String>,
    /// `/pinpolicy`; only with `/PIN PROMPT`.
    pub pin_policy: Option<PinPolicy>,
    /// `/attestation`
    pub attestation: Option<WinAttestation>,
}

/// A parsed `destroy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinDestroy {
    /// `/quiet`
    pub quiet: bool,
    /// `/instance` (required), as given; matching it to a card is the caller's job.
    pub instance: String,
    /// `/machine`, as given (not empty, no blanks, not starting with `-`).
    pub machine: Option<String>,
}

/// Parses a `tpmvscmgr` command line; `args` excludes the program name.
///
/// Verbs, parameter names and keyword values ignore case; a parameter name may be
/// shortened to any unique beginning (`/g` = `/generate`), and a full name always wins
/// (`/pin` is `/PIN`, not `/pinpolicy`). A malformed command line is [`Error::Usage`]; a
/// card name that breaks the naming rules is [`Error::PolicyViolation`]. Besides `/?`,
/// `-?`, `-h` and `--help` also ask for help.
pub fn parse(args: &[String]) -> Result<WinCommand> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(WinCommand::NoCommand);
    };
    if args.len() == 1 && matches!(first.as_str(), "--version" | "-V") {
        return Ok(WinCommand::Version);
    }
    let verb = WinVerb::from_word(first);
    if args.iter().any(|a| is_help(a)) {
        return Ok(WinCommand::Help(verb));
    }
    match verb {
        Some(WinVerb::Create) => parse_create(rest).map(WinCommand::Create),
        Some(WinVerb::Destroy) => parse_destroy(rest).map(WinCommand::Destroy),
        None if first.starts_with('/') => Err(usage_error(format!(
            "the command starts with a verb, create or destroy, before {first} \
             (tpmvscmgr /? shows the syntax)"
        ))),
        None => Err(usage_error(format!(
            "unknown command {}; the commands are create and destroy \
             (tpmvscmgr /? shows the syntax)",
            Quoted(first)
        ))),
    }
}

/// Help text: the overview and both verbs for `None`, else that verb's parameters.
pub fn usage(verb: Option<WinVerb>) -> &'static str {
    match verb {
        None => HELP_ALL,
        Some(WinVerb::Create) => HELP_CREATE,
        Some(WinVerb::Destroy) => HELP_DESTROY,
    }
}

impl WinVerb {
    fn from_word(word: &str) -> Option<WinVerb> {
        if word.eq_ignore_ascii_case("create") {
            Some(WinVerb::Create)
        } else if word.eq_ignore_ascii_case("destroy") {
            Some(WinVerb::Destroy)
        } else {
            None
        }
    }

    fn word(self) -> &'static str {
        match self {
            WinVerb::Create => "create",
            WinVerb::Destroy => "destroy",
        }
    }

    fn params(self) -> &'static [Param] {
        match self {
            WinVerb::Create => &[
                Param::Quiet,
                Param::Name,
                Param::AdminKey,
                Param::Pin,
                Param::Puk,
                Param::Generate,
                Param::Machine,
                Param::PinPolicy,
                Param::Attestation,
            ],
            WinVerb::Destroy => &[Param::Quiet, Param::Instance, Param::Machine],
        }
    }
}

/// The longest card name: the PKCS#11 token label is 32 bytes.
const MAX_NAME_BYTES: usize = 32;

const ADMIN_KEY_CHOICES: &[(&str, WinAdminKey)] = &[
    ("DEFAULT", WinAdminKey::Default),
    ("PROMPT", WinAdminKey::Prompt),
    ("RANDOM", WinAdminKey::Random),
];
const SECRET_CHOICES: &[(&str, WinSecret)] = &[
    ("DEFAULT", WinSecret::Default),
    ("PROMPT", WinSecret::Prompt),
];
const ATTESTATION_CHOICES: &[(&str, WinAttestation)] = &[
    ("AIK_AND_CERT", WinAttestation::AikAndCert),
    ("AIK_ONLY", WinAttestation::AikOnly),
];

/// Every parameter of either verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Quiet,
    Name,
    AdminKey,
    Pin,
    Puk,
    Generate,
    Machine,
    PinPolicy,
    Attestation,
    Instance,
}

impl Param {
    /// The name as Microsoft's synopsis spells it, without the slash.
    fn name(self) -> &'static str {
        match self {
            Param::Quiet => "quiet",
            Param::Name => "name",
            Param::AdminKey => "AdminKey",
            Param::Pin => "PIN",
            Param::Puk => "PUK",
            Param::Generate => "generate",
            Param::Machine => "machine",
            Param::PinPolicy => "pinpolicy",
            Param::Attestation => "attestation",
            Param::Instance => "instance",
        }
    }

    fn takes_value(self) -> bool {
        !matches!(self, Param::Quiet | Param::Generate)
    }

    /// What follows the parameter, for messages.
    fn expects(self) -> &'static str {
        match self {
            Param::Quiet | Param::Generate => "nothing: it is a switch",
            Param::Name => "the card's name, 1 to 32 bytes",
            Param::AdminKey => "DEFAULT, PROMPT or RANDOM",
            Param::Pin | Param::Puk => "DEFAULT or PROMPT",
            Param::Machine => "a host name",
            Param::PinPolicy => {
                "option and value pairs: minlen N, maxlen N, and uppercase, lowercase, digits or \
                 specialchars followed by ALLOWED, DISALLOWED or REQUIRED"
            }
            Param::Attestation => "AIK_AND_CERT or AIK_ONLY",
            Param::Instance => "the card's instance ID, such as ROOT\\SMARTCARDREADER\\0000",
        }
    }

    /// Resolves `/word` among `verb`'s parameters: the exact name, else a unique prefix.
    fn resolve(verb: WinVerb, word: &str) -> Result<Param> {
        let typed = word.strip_prefix('/').unwrap_or(word);
        let listed = || {
            let names: Vec<String> = verb.params().iter().map(|p| p.to_string()).collect();
            names.join(" ")
        };
        if typed.is_empty() {
            return Err(usage_error(format!(
                "a lone / is not a parameter; {} takes {}",
                verb.word(),
                listed()
            )));
        }
        let params = verb.params();
        if let Some(&exact) = params.iter().find(|p| p.name().eq_ignore_ascii_case(typed)) {
            return Ok(exact);
        }
        let matches: Vec<Param> = params
            .iter()
            .copied()
            .filter(|p| {
                let name = p.name().as_bytes();
                typed.len() <= name.len()
                    && name[..typed.len()].eq_ignore_ascii_case(typed.as_bytes())
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => {
                let other = match verb {
                    WinVerb::Create => WinVerb::Destroy,
                    WinVerb::Destroy => WinVerb::Create,
                };
                let elsewhere = other
                    .params()
                    .iter()
                    .find(|p| p.name().eq_ignore_ascii_case(typed));
                match elsewhere {
                    Some(p) => Err(usage_error(format!(
                        "{p} belongs to {}, not {}; {} takes {}",
                        other.word(),
                        verb.word(),
                        verb.word(),
                        listed()
                    ))),
                    None => Err(usage_error(format!(
                        "unknown parameter {word}; {} takes {}",
                        verb.word(),
                        listed()
                    ))),
                }
            }
            several => {
                let names: Vec<String> = several.iter().map(|p| p.to_string()).collect();
                Err(usage_error(format!(
                    "{word} is ambiguous: it could be {}; type more of the name",
                    join_or(&names)
                )))
            }
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.name())
    }
}

/// The words after the verb, read left to right.
struct Words<'a> {
    words: &'a [String],
    next: usize,
}

impl<'a> Words<'a> {
    fn new(words: &'a [String]) -> Self {
        Words { words, next: 0 }
    }

    /// The next parameter, or `None` at the end. A bare word here is a usage error;
    /// `after` is the parameter just handled, to say where the stray word sits.
    fn param(&mut self, verb: WinVerb, after: Option<Param>) -> Result<Option<Param>> {
        let Some(word) = self.words.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        if !word.starts_with('/') {
            let place = match after {
                Some(p) if !p.takes_value() => format!(" after {p}"),
                Some(p) => format!(" after {p} and its value"),
                None => String::new(),
            };
            let hint = if after == Some(Param::Name) {
                "; quote a name that contains spaces"
            } else {
                ""
            };
            return Err(usage_error(format!(
                "unexpected word {}{place}: parameters start with / (tpmvscmgr {} /? lists them){hint}",
                Quoted(word),
                verb.word()
            )));
        }
        Param::resolve(verb, word).map(Some)
    }

    /// The value after `param`: the next word, unless it is missing or is a parameter.
    fn value(&mut self, param: Param) -> Result<&'a str> {
        match self.words.get(self.next) {
            Some(word) if !word.starts_with('/') => {
                self.next += 1;
                Ok(word)
            }
            _ => Err(usage_error(format!(
                "{param} needs a value: {}",
                param.expects()
            ))),
        }
    }

    /// A keyword value after `param`, case-insensitive. A wrong value is not echoed:
    /// someone may have typed a PIN or key where the keyword belongs.
    fn keyword<T: Copy>(&mut self, param: Param, choices: &[(&str, T)]) -> Result<T> {
        let value = self.value(param)?;
        choices
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(value))
            .map(|&(_, v)| v)
            .ok_or_else(|| {
                let secret_note = match param {
                    Param::Pin | Param::Puk | Param::AdminKey => {
                        "; a secret is never given on the command line (other users can read \
                         it): PROMPT asks for it on the terminal, or reads it from standard \
                         input"
                    }
                    _ => "",
                };
                usage_error(format!("{param} takes {}{secret_note}", param.expects()))
            })
    }

    /// The words up to the next parameter (for `/pinpolicy`).
    fn run(&mut self) -> &'a [String] {
        let start = self.next;
        while self
            .words
            .get(self.next)
            .is_some_and(|w| !w.starts_with('/'))
        {
            self.next += 1;
        }
        &self.words[start..self.next]
    }
}

fn parse_create(args: &[String]) -> Result<WinCreate> {
    let verb = WinVerb::Create;
    let mut words = Words::new(args);
    let mut seen = Vec::new();
    let mut quiet = false;
    let mut name = None;
    let mut admin_key = None;
    let mut pin = None;
    let mut puk = None;
    let mut generate = false;
    let mut machine = None;
    let mut pin_policy = None;
    let mut attestation = None;
    let mut last = None;
    while let Some(param) = words.param(verb, last)? {
        once(&mut seen, param)?;
        match param {
            Param::Quiet => quiet = true,
            Param::Generate => generate = true,
            Param::Name => name = Some(words.value(param)?),
            Param::AdminKey => admin_key = Some(words.keyword(param, ADMIN_KEY_CHOICES)?),
            Param::Pin => pin = Some(words.keyword(param, SECRET_CHOICES)?),
            Param::Puk => puk = Some(words.keyword(param, SECRET_CHOICES)?),
            Param::Machine => machine = Some(machine_value(words.value(param)?)?),
            Param::Attestation => attestation = Some(words.keyword(param, ATTESTATION_CHOICES)?),
            Param::PinPolicy => pin_policy = Some(policy_value(words.run())?),
            Param::Instance => return Err(usage_error(format!("{param} belongs to destroy"))),
        }
        last = Some(param);
    }
    let Some(name) = name else {
        return Err(usage_error(format!(
            "create needs /name followed by {}",
            Param::Name.expects()
        )));
    };
    check_name(name)?;
    // Left out means DEFAULT, as Microsoft's last example ("the default value for the
    // administrator key") shows; create warns about it.
    let admin_key = admin_key.unwrap_or(WinAdminKey::Default);
    let pin = pin.unwrap_or(WinSecret::Default);
    if pin_policy.is_some() && pin == WinSecret::Default {
        return Err(usage_error(
            "a PIN policy applies to a PIN you choose: use /PIN PROMPT with /pinpolicy".to_owned(),
        ));
    }
    Ok(WinCreate {
        quiet,
        name: name.to_owned(),
        admin_key,
        pin,
        puk,
        generate,
        machine,
        pin_policy,
        attestation,
    })
}

fn parse_destroy(args: &[String]) -> Result<WinDestroy> {
    let verb = WinVerb::Destroy;
    let mut words = Words::new(args);
    let mut seen = Vec::new();
    let mut quiet = false;
    let mut instance = None;
    let mut machine = None;
    let mut last = None;
    while let Some(param) = words.param(verb, last)? {
        once(&mut seen, param)?;
        match param {
            Param::Quiet => quiet = true,
            Param::Instance => instance = Some(words.value(param)?),
            Param::Machine => machine = Some(machine_value(words.value(param)?)?),
            other => return Err(usage_error(format!("{other} belongs to create"))),
        }
        last = Some(param);
    }
    let instance = match instance {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        Some(_) => {
            return Err(usage_error(
                "/instance is empty; give the card's instance ID".to_owned(),
            ));
        }
        None => {
            return Err(usage_error(format!(
                "destroy needs /instance followed by {}; `tpmvsc list` shows them",
                Param::Instance.expects()
            )));
        }
    };
    Ok(WinDestroy {
        quiet,
        instance,
        machine,
    })
}

fn usage_error(message: String) -> Error {
    Error::Usage(message)
}

fn is_help(word: &str) -> bool {
    matches!(word, "/?" | "-?" | "-h" | "--help")
}

/// Refuses a parameter seen before (after prefix resolution: `/g /generate` is twice).
fn once(seen: &mut Vec<Param>, param: Param) -> Result<()> {
    if seen.contains(&param) {
        return Err(usage_error(format!("{param} is given twice; give it once")));
    }
    seen.push(param);
    Ok(())
}

/// The card-name rules: 1–32 bytes (the PKCS#11 token label), no control characters, no
/// trailing space (labels are padded with spaces, so it would vanish and could make two
/// names look the same).
fn check_name(name: &str) -> Result<()> {
    let violation = |m: String| Err(Error::PolicyViolation(m));
    if name.is_empty() {
        return violation("the card name is empty; give 1 to 32 bytes".to_owned());
    }
    if name.len() > MAX_NAME_BYTES {
        return violation(format!(
            "the card name is {} bytes; at most {MAX_NAME_BYTES} bytes fit in the token label",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return violation(
            "the card name contains a control character; use printable text".to_owned(),
        );
    }
    if name.ends_with(' ') {
        return violation(
            "the card name ends with a space, which the space-padded token label would hide; \
             remove it"
                .to_owned(),
        );
    }
    Ok(())
}

/// A `/machine` value: later handed to ssh, so no leading `-` (it would read as an
/// option), no blanks or control characters.
fn machine_value(host: &str) -> Result<String> {
    if host.is_empty()
        || host.starts_with('-')
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(usage_error(
            "/machine takes a host name (not empty, no spaces, not starting with -)".to_owned(),
        ));
    }
    Ok(host.to_owned())
}

/// `/pinpolicy` words as (option, value) pairs; an odd word out gets an empty value, so
/// the policy reports it as missing its value (or as unknown).
fn policy_value(words: &[String]) -> Result<PinPolicy> {
    if words.is_empty() {
        return Err(usage_error(format!(
            "/pinpolicy needs {}",
            Param::PinPolicy.expects()
        )));
    }
    let pairs = words
        .chunks(2)
        .map(|pair| (pair[0].as_str(), pair.get(1).map_or("", String::as_str)));
    PinPolicy::from_options(pairs).map_err(|e| match e {
        Error::Usage(m) => usage_error(format!("/pinpolicy: {m}")),
        other => other,
    })
}

/// "a", "a or b", "a, b or c".
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

// The help text is assembled from three macro-held literals, since `concat!` takes only
// literals.
macro_rules! help_overview {
    () => {
        r"tpmvscmgr - create and destroy TPM virtual smart cards, in Windows syntax

Usage:
  tpmvscmgr create [/quiet] /name NAME [/AdminKey {DEFAULT|PROMPT|RANDOM}]
                   [/PIN {DEFAULT|PROMPT}] [/PUK {DEFAULT|PROMPT}] [/generate]
                   [/machine HOST] [/pinpolicy OPTION VALUE ...]
                   [/attestation {AIK_AND_CERT|AIK_ONLY}]
  tpmvscmgr destroy [/quiet] /instance ID [/machine HOST]
  tpmvscmgr [create|destroy] /?

Verbs, parameter names and keywords may be written in any case, and a parameter
name may be cut short to any unique beginning (/g for /generate).
"
    };
}

macro_rules! help_create {
    () => {
        r"create: make a new virtual smart card and print its instance ID.

  /name NAME      Required. The card's friendly name, shown as the token label:
                  1 to 32 bytes, no control characters, no leading or trailing
                  space, not shaped like an instance ID. Names may repeat; the
                  instance ID tells cards apart. Quote a name that has spaces.
  /AdminKey KEY   The administrator key (3DES, 48 hex digits) that answers
                  unblock challenges from a help desk (DEFAULT when left out):
                    DEFAULT  the well-known key 0102030405060708 repeated three
                             times; anyone who can read the card's files can
                             then reset its PIN
                    PROMPT   asks for the key
                    RANDOM   a key nobody learns: no administrator can unblock
                             or reformat the card
  /PIN VALUE      DEFAULT (used when /PIN is left out) sets the PIN 12345678;
                  PROMPT asks for the PIN.
  /PUK VALUE      DEFAULT sets the PUK 12345678; PROMPT asks for it. Without
                  /PUK the card has no PUK. A card with a PUK is unblocked with
                  the PUK, not the administrator key.
                  A PIN, PUK or key itself is never given on the command line
                  (other users can read it): PROMPT asks on the terminal (new
                  secrets twice), or reads from standard input one line for
                  each secret set to PROMPT, once, in the order PIN, PUK, key
                  (as `tpmvsc create --stdin`). More lines than that are
                  refused before anything is done.
  /generate       Format the card now so it can hold keys. Without it the card
                  stays unformatted until formatted with tpmvsc.
  /machine HOST   Run the command on HOST. Refused for now: run tpmvscmgr on
                  that machine (e.g. over ssh).
  /pinpolicy OPTION VALUE ...
                  Rules for the PIN chosen with /PIN PROMPT (refused with the
                  default PIN). Options, each at most once:
                    minlen N        fewest characters, 4 to 127 (default 8)
                    maxlen N        most characters, 4 to 127 (default 127)
                    uppercase R     A-Z; R is ALLOWED (default), DISALLOWED or
                                    REQUIRED, here and in the next three
                    lowercase R     a-z
                    digits R        0-9
                    specialchars R  every other printable ASCII character,
                                    space included
  /attestation KIND
                  AIK_AND_CERT or AIK_ONLY. Refused for now: the card is not
                  made.
  /quiet          Print only the result.
  /?              Show this help.
"
    };
}

macro_rules! help_destroy {
    () => {
        r"destroy: delete a virtual smart card with all its keys and certificates.
There is no undo.

  /instance ID    Required. The card's instance ID as create printed it, such as
                  ROOT\SMARTCARDREADER\0000 (any case; quote it in a shell).
  /machine HOST   Refused for now: run tpmvscmgr on that machine.
  /quiet          Print only the result.
  /?              Show this help.
"
    };
}
const HELP_ALL: &str = concat!(
    help_overview!(),
    "\n",
    help_create!(),
    "\n",
    help_destroy!()
);
const HELP_CREATE: &str = concat!(help_overview!(), "\n", help_create!());
const HELP_DESTROY: &str = concat!(help_overview!(), "\n", help_destroy!());

#[cfg(test)]
mod tests {
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
            Err(Error::PolicyViolation(m)) => m,
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
        let c =
            create("create /name VirtualSmartCardForCorpAccess /PIN PROMPT /pinpolicy minlen 4");
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
        let c =
            create("create /NAME x /ADMINKEY Default /Pin pRoMpT /puk DEFAULT /GENERATE /QUIET");
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
            Err(Error::PolicyViolation(m)) => assert!(m.contains(want), "{name:?}: {m}"),
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
        let m =
            usage_err("create /name x /adminkey 010203040506070801020304050607080102030405060708");
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
}
