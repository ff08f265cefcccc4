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
pub(crate) enum WinCommand {
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
pub(crate) enum WinVerb {
    /// `create`
    Create,
    /// `destroy`
    Destroy,
}

/// `/PIN` and `/PUK` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WinSecret {
    /// The well-known default, `12345678`.
    Default,
    /// Ask the user.
    Prompt,
}

/// `/AdminKey` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WinAdminKey {
    /// The well-known default key (anyone who can read the card's files can reset its PIN).
    Default,
    /// Ask the user for a 48-hex-digit key.
    Prompt,
    /// A key nobody learns: no administrator unblock (DESIGN.md §3).
    Random,
}

/// `/attestation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WinAttestation {
    /// `AIK_AND_CERT`
    AikAndCert,
    /// `AIK_ONLY`
    AikOnly,
}

/// A parsed `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WinCreate {
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
pub(crate) struct WinDestroy {
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
pub(crate) fn parse(args: &[String]) -> Result<WinCommand> {
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
pub(crate) fn usage(verb: Option<WinVerb>) -> &'static str {
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
mod tests;
