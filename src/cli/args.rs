//! The `tpmvsc` command line as clap sees it: commands, options and their help, and the
//! refusal of a secret given as an argument (other users read `/proc/PID/cmdline`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::prompt::{SecretReader, check_current_secret, read_secret_file};
use crate::card::DEFAULT_TRIES;
use crate::error::{Error, Result};
use crate::provision::Secret;

#[derive(Parser, Debug)]
#[command(
    name = "tpmvsc",
    version,
    about = "TPM 2.0 virtual smart cards: keys made and used inside the TPM, unlocked by a PIN",
    long_about = "TPM 2.0 virtual smart cards for Linux.\n\n\
        A card's keys are generated and used inside the TPM and unlocked by its PIN; the TPM's \
        dictionary-attack logic counts wrong PINs. Programs use the cards through the PKCS#11 \
        module libtpmvsc.so.\n\n\
        The TPM is named by TPMVSC_TCTI or `tcti` in /etc/tpmvsc/tpmvsc.conf (default \
        device:/dev/tpmrm0); `tpmvsc tpm status` shows every setting and where it came from. \
        Without a TPM, run `tpmvsc simulator start` and `eval \"$(tpmvsc simulator env)\"`. \
        Cards live in TPMVSC_STORE or `store` (default: /var/lib/tpmvsc for root, \
        ~/.local/share/tpmvsc otherwise).\n\n\
        Exit codes: 0 ok, 1 failed, 2 usage, 3 wrong PIN/PUK/response, 4 blocked or TPM lockout.",
    after_help = "Examples:\n  \
        tpmvsc simulator start && eval \"$(tpmvsc simulator env)\"\n  \
        tpmvsc create --name work --pin prompt --puk prompt\n  \
        tpmvsc list\n  \
        tpmvsc info work --json\n  \
        tpmvsc destroy work"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Create a card: a card storage key in the TPM guarded by the PIN, and optionally a
    /// PUK and an administrator key to unblock it.
    #[command(
        after_help = "Secrets: `prompt` asks on the terminal without echo (new secrets twice); \
        with --stdin, or when standard input is not a terminal, one line each is read from \
        standard input in the order PIN, PUK, admin key (only those set to prompt). A secret \
        is never an argument (other users can read the command line): the --*-file options \
        read the first line of a file or of an inherited descriptor, e.g. --pin-file \
        /dev/fd/3 3<pin.txt.\n\n\
        Examples:\n  tpmvsc create --name work                      # PIN 12345678, no PUK, no admin key\n  \
        tpmvsc create --name work --pin prompt --puk prompt --pin-policy minlen=6,digits=required\n  \
        echo 'my pin 1' | tpmvsc create --name ci --pin prompt --stdin"
    )]
    Create(CreateArgs),
    /// Destroy a card and every key on it. Cannot be undone.
    Destroy {
        /// Card name, card ID or instance ID (ROOT\SMARTCARDREADER\000n).
        card: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List the cards of this store.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one card.
    Info {
        /// Card name, card ID or instance ID.
        card: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check a PIN with the TPM (a wrong one counts, as on a real card).
    CheckPin {
        /// Card name, card ID or instance ID.
        card: String,
        #[command(flatten)]
        pin: PinSource,
    },
    /// Change the PIN, knowing the current one (stdin: current, new, new).
    ChangePin {
        /// Card name, card ID or instance ID.
        card: String,
        /// Read the secrets from standard input, one per line.
        #[arg(long)]
        stdin: bool,
    },
    /// Change the PUK, knowing the current one (stdin: current, new, new).
    ChangePuk {
        /// Card name, card ID or instance ID.
        card: String,
        /// Read the secrets from standard input, one per line.
        #[arg(long)]
        stdin: bool,
    },
    /// Set a new PIN with the PUK or the administrator's response, and unblock the card.
    #[command(after_help = "With --puk: stdin PUK, new PIN, new PIN.\n\
        With --admin: the card shows a challenge; read it to your administrator, who runs \
        `tpmvsc admin response --challenge CHALLENGE` (the key from a prompt, --stdin or \
        --admin-key-file); type the response (or give --response-file), then the new PIN \
        twice; with --stdin and no --response-file, standard input holds the response, new \
        PIN, new PIN. A wrong response uses up the challenge: the next attempt shows a new \
        one. Cards with a PUK are unblocked with the PUK only (the Windows rule).\n\n\
        Secrets never go on the command line (other users can read it): a FILE may be an \
        inherited descriptor, e.g. --response-file /dev/fd/3 3<response.txt.")]
    Unblock {
        /// Card name, card ID or instance ID.
        card: String,
        #[command(flatten)]
        auth: CardAuth,
    },
    /// Erase every key and object of the card and set a new PIN (keeps the card ID).
    #[command(
        after_help = "Needs the PUK (--puk) or an administrator's response (--admin). \
        stdin: PUK or response (unless --response-file), then the new PIN twice (and, with \
        --admin on a card with a PUK, the new PUK twice). Secrets never go on the command \
        line: --response-file takes a file or an inherited descriptor such as /dev/fd/3."
    )]
    Format {
        /// Card name, card ID or instance ID.
        card: String,
        #[command(flatten)]
        auth: CardAuth,
        /// Skip the confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Generate a key pair inside the TPM on the card (asks for the PIN).
    Keygen {
        /// Card name, card ID or instance ID.
        card: String,
        /// ec-p256, ec-p384, rsa2048 or rsa3072.
        #[arg(long = "type", value_parser = ["ec-p256", "ec-p384", "rsa2048", "rsa3072"])]
        kind: String,
        /// The key's label (CKA_LABEL), not empty; certificates imported for it get the
        /// same.
        #[arg(long)]
        label: String,
        #[command(flatten)]
        pin: PinSource,
        #[arg(long)]
        json: bool,
    },
    /// List the card's keys.
    Keys {
        card: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a PKCS#10 certificate request for a card key, signed inside the TPM.
    #[command(
        after_help = "Example:\n  tpmvsc csr work --key mykey --subject \"CN=Alice,O=Example\" \
        --san dns:alice.example.org,email:alice@example.org --out alice.csr"
    )]
    Csr {
        card: String,
        /// The key's label (or its CKA_ID in hex).
        #[arg(long)]
        key: String,
        /// Subject distinguished name, e.g. "CN=Alice,O=Example".
        #[arg(long)]
        subject: String,
        /// Subject alternative names: dns:NAME or email:ADDRESS, comma-separated.
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
        /// Where to write the PEM request: a regular file ("-" = standard output).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        pin: PinSource,
    },
    /// Install a certificate (PEM or DER) on the card next to its key.
    ImportCert {
        /// Card name, card ID or instance ID.
        card: String,
        /// A regular file of at most 1 MiB holding the certificate ("-" = standard input).
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List the card's certificates with subject, issuer and expiry.
    Certs {
        card: String,
        #[arg(long)]
        json: bool,
    },
    /// Install the PKCS#11 module system-wide and register it with p11-kit (root).
    #[command(
        after_help = "Copies libtpmvsc.so (found next to this program) into the system \
        PKCS#11 directory and writes a p11-kit registration, so programs that use p11-kit \
        (GnuTLS tools, Firefox via p11-kit-proxy, pkcs11-provider) find the cards. \
        --uninstall removes both."
    )]
    Install {
        /// Directory for the module (default: Debian's PKCS#11 directory).
        #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu/pkcs11")]
        lib_dir: PathBuf,
        /// p11-kit registration directory.
        #[arg(long, default_value = "/etc/pkcs11/modules")]
        modules_dir: PathBuf,
        /// Remove the module and its registration.
        #[arg(long)]
        uninstall: bool,
    },
    /// Administrator key: challenges, responses, key change and refill.
    Admin {
        #[command(subcommand)]
        action: AdminCmd,
    },
    /// The TPM: status, dictionary-attack lockout.
    Tpm {
        #[command(subcommand)]
        action: TpmCmd,
    },
    /// Run a simulated TPM (swtpm) for machines without one. Cards made on it are
    /// software tokens: its state file holds every key.
    #[command(after_help = "start prints the line to export for your shell \
        (`eval \"$(tpmvsc simulator start)\"`). It listens on a unix socket in a directory \
        only you can enter.\n\n\
        --system (root): one simulator for the whole machine. Its sockets are in \
        /run/tpmvsc/simulator, open to the tss group, and /etc/tpmvsc/tpmvsc.conf names it, so \
        every process uses it without any variable (daemons included); `stop --system` removes \
        that file. Members of tss can read its whole state: it is a software token.")]
    Simulator {
        #[arg(value_enum)]
        action: SimAction,
        /// The machine's simulator (root), named in /etc/tpmvsc/tpmvsc.conf.
        #[arg(long)]
        system: bool,
        /// Machine-readable output (status).
        #[arg(long)]
        json: bool,
    },
}

/// Where the PIN comes from: prompt (default), --pin-file, or --stdin; never an argument.
#[derive(clap::Args, Debug)]
pub(crate) struct PinSource {
    /// Read the PIN from the first line of FILE (or an inherited descriptor, /dev/fd/N).
    #[arg(long, value_name = "FILE")]
    pub(crate) pin_file: Option<PathBuf>,
    /// Read the PIN from standard input.
    #[arg(long, conflicts_with = "pin_file")]
    pub(crate) stdin: bool,
    /// Never used: a PIN given here is refused (other users can read the command line).
    #[arg(long = "pin", hide = true, num_args = 0..=1, value_name = "NEVER")]
    pub(crate) pin_in_argv: Option<Option<String>>,
}

impl PinSource {
    pub(crate) fn refuse_argv(&self) -> Result<()> {
        refuse_value(
            "--pin",
            &self.pin_in_argv,
            "--pin-file FILE, --stdin, or answer the prompt",
        )
    }

    /// The PIN; an empty one is refused before any TPM try.
    pub(crate) fn read(&self) -> Result<Secret> {
        match &self.pin_file {
            Some(f) => {
                let p = read_secret_file(f, "PIN")?;
                check_current_secret("PIN", &p)?;
                Ok(p)
            }
            None => {
                let mut r = SecretReader::new(self.stdin);
                let p = r.current_pin("PIN")?;
                r.finish("PIN")?;
                Ok(p)
            }
        }
    }
}

/// `--response`, which once took the administrator's response as an argument: kept,
/// hidden, so that old scripts get told what to use instead.
#[derive(clap::Args, Debug)]
pub(crate) struct ResponseNotInArgv {
    /// Never used: a response given here is refused (other users can read it).
    #[arg(long = "response", hide = true, num_args = 0..=1, value_name = "NEVER")]
    pub(crate) response: Option<Option<String>>,
}

impl ResponseNotInArgv {
    pub(crate) fn refuse(&self) -> Result<()> {
        refuse_value(
            "--response",
            &self.response,
            "--response-file FILE, --stdin, or answer the prompt",
        )
    }
}

/// Refuses a secret given as a command-line argument: other users can read it in
/// /proc/PID/cmdline. The flag alone (no value) is harmless and ignored.
pub(crate) fn refuse_value(
    flag: &str,
    given: &Option<Option<String>>,
    instead: &str,
) -> Result<()> {
    match given {
        Some(Some(_)) => Err(Error::Usage(format!(
            "`{flag}` takes no value on the command line (other users can read it): use {instead}"
        ))),
        Some(None) | None => Ok(()),
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum AdminCmd {
    /// Show the card's next challenge (spends nothing).
    Challenge {
        card: String,
        #[arg(long)]
        json: bool,
    },
    /// Help-desk side: compute the response to a challenge with the admin key.
    #[command(
        after_help = "The key is never an argument (other users can read the command line): \
        it comes from --admin-key-file FILE, from standard input (--stdin, or any standard \
        input that is not a terminal; the first line), or from a prompt without echo. FILE \
        may be an inherited descriptor:\n  \
        tpmvsc admin response --challenge C --admin-key-file /dev/fd/3 3<admin-key.txt\n\n\
        Fleets with per-card keys: with --card-id GUID the key read (--master-key-file, \
        --stdin or the prompt) is the fleet master key, and the card's key is \
        K = first 24 bytes of HMAC-SHA-256(master, \"tpmvsc per-card admin key v1\" 0x00 \
        card-id) (the card ID as lowercase GUID text; see `tpmvsc info CARD`)."
    )]
    Response(ResponseArgs),
    /// Check a response against the card (spends the challenge).
    #[command(
        after_help = "The response comes from --response-file FILE (or /dev/fd/N), standard \
        input, or a prompt; never from the command line."
    )]
    Verify {
        /// Card name, card ID or instance ID.
        card: String,
        #[command(flatten)]
        response: ResponseSource,
    },
    /// Replace the admin key (response, then the new key twice).
    #[command(after_help = "stdin: the response (unless --response-file), then the new key twice.")]
    ChangeKey {
        /// Card name, card ID or instance ID.
        card: String,
        #[command(flatten)]
        response: ResponseSource,
    },
    /// New batch of challenges under the same key (response, then the key).
    #[command(after_help = "stdin: the response (unless --response-file), then the key.")]
    Refill {
        /// Card name, card ID or instance ID.
        card: String,
        #[command(flatten)]
        response: ResponseSource,
    },
}

/// Where the administrator's response comes from in the `admin` commands.
/// How `unblock` and `format` are authorized: the PUK or the administrator's response.
#[derive(clap::Args, Debug)]
pub(crate) struct CardAuth {
    /// Authorize with the PUK.
    #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
    pub(crate) puk: bool,
    /// Authorize with the administrator's response to the card's challenge.
    #[arg(long)]
    pub(crate) admin: bool,
    /// Read the administrator's response (16 hex digits) from the first line of FILE
    /// (or /dev/fd/N) instead of prompting.
    #[arg(long, requires = "admin", value_name = "FILE")]
    pub(crate) response_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) argv: ResponseNotInArgv,
    /// Read the secrets from standard input, one per line.
    #[arg(long)]
    pub(crate) stdin: bool,
}

/// The arguments of `tpmvsc admin response`.
#[derive(clap::Args, Debug)]
pub(crate) struct ResponseArgs {
    /// The challenge the user reads out (16 hex digits; not secret).
    #[arg(long)]
    pub(crate) challenge: String,
    /// Read the 48-hex-digit admin key from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["master_key_file", "card_id", "stdin"])]
    pub(crate) admin_key_file: Option<PathBuf>,
    /// Read a fleet master key (hex, 16 to 63 bytes) from the first line of FILE (or
    /// /dev/fd/N); needs --card-id.
    #[arg(
        long,
        value_name = "FILE",
        requires = "card_id",
        conflicts_with = "stdin"
    )]
    pub(crate) master_key_file: Option<PathBuf>,
    /// The card ID (GUID) whose per-card key to derive: the key read is then the
    /// fleet master key.
    #[arg(long)]
    pub(crate) card_id: Option<String>,
    /// Read the key (or, with --card-id, the master key) from standard input.
    #[arg(long)]
    pub(crate) stdin: bool,
    /// Never used: a key given here is refused (other users can read it).
    #[arg(long, hide = true, num_args = 0..=1, value_name = "NEVER")]
    pub(crate) admin_key: Option<Option<String>>,
    /// Never used: a master key given here is refused (other users can read it).
    #[arg(long, hide = true, num_args = 0..=1, value_name = "NEVER")]
    pub(crate) master_key: Option<Option<String>>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ResponseSource {
    /// Read the response (16 hex digits) from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE")]
    pub(crate) response_file: Option<PathBuf>,
    /// Read the secrets from standard input, one per line.
    #[arg(long)]
    pub(crate) stdin: bool,
    #[command(flatten)]
    pub(crate) argv: ResponseNotInArgv,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TpmCmd {
    /// (root) Set a random lockout authorization, the DA parameters (32 tries, 10
    /// minutes) and ClearControl, so that neither the DA counter nor TPM2_Clear is open
    /// to every TPM user.
    #[command(
        after_help = "A TPM whose lockout authorization was set by someone else is refused \
        (\"held by someone else\"): give its current value with --lockout-auth-file, and harden \
        replaces it with a new one only you hold. Root can read the file on this machine, so \
        root can lift the retry limit: keep the value off the machine with \
        --lockout-auth-file on removable media, or --print-lockout-auth."
    )]
    Harden {
        /// The lockout authorization file: the TPM's current value is read from it when the
        /// TPM has one, and the new value is written to a new file there (mode 0600;
        /// default /etc/tpmvsc/lockout-auth-<tag>, one file per TPM; an existing file is
        /// never overwritten). A path on removable media keeps it off this machine.
        #[arg(long)]
        lockout_auth_file: Option<PathBuf>,
        /// Print the new value once instead of keeping it in a file on this machine
        /// (store it somewhere safe: without it the lockout cannot be cleared).
        #[arg(long)]
        print_lockout_auth: bool,
    },
    /// Dictionary-attack counter, limits and lockout, manufacturer, firmware.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Reset the TPM's dictionary-attack counter and lockout (needs the lockout
    /// authorization; one wrong try blocks it for the lockout recovery time).
    ClearLockout {
        /// Read the lockout authorization from the first line of this file or /dev/fd/N
        /// (default: this TPM's /etc/tpmvsc/lockout-auth-<tag> when it exists; prompted
        /// otherwise; empty on a TPM nobody set it on).
        #[arg(long)]
        lockout_auth_file: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct CreateArgs {
    /// Card name, 1-32 bytes (the PKCS#11 token label); a friendly name, as on Windows:
    /// it may repeat, and a name that means several cards is refused with their
    /// instance IDs.
    #[arg(long)]
    pub(crate) name: String,
    /// `default` = 12345678 (left out: default), `prompt` = ask. Never the PIN itself:
    /// use --pin-file.
    #[arg(long, value_name = "default|prompt")]
    pub(crate) pin: Option<String>,
    /// Read the PIN from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    pub(crate) pin_file: Option<PathBuf>,
    /// `default` = 12345678, `prompt` = ask. Left out: the card has no PUK. Never the PUK
    /// itself: use --puk-file.
    #[arg(long, value_name = "default|prompt")]
    pub(crate) puk: Option<String>,
    /// Read the PUK from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE", conflicts_with = "puk")]
    pub(crate) puk_file: Option<PathBuf>,
    /// `default` = the well-known Windows key (anyone who can read the card's files can
    /// then reset its PIN), `prompt` = ask for 48 hex digits, `random` = no admin key
    /// (an unmanaged card; the default). Never the key itself: use --admin-key-file.
    #[arg(long, value_name = "default|prompt|random")]
    pub(crate) admin_key: Option<String>,
    /// Read the 48-hex-digit admin key from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE", conflicts_with = "admin_key")]
    pub(crate) admin_key_file: Option<PathBuf>,
    /// Derive this card's admin key from the fleet master key in the first line of FILE
    /// (hex, 16 to 63 bytes): K = KDF(master, card ID), see `tpmvsc admin response --help`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["admin_key", "admin_key_file"])]
    pub(crate) admin_key_master_file: Option<PathBuf>,
    /// PIN rules, e.g. minlen=6,maxlen=12,uppercase=required,digits=allowed,
    /// specialchars=disallowed (lowercase too). Defaults: 8-127, all allowed.
    #[arg(long)]
    pub(crate) pin_policy: Option<String>,
    /// Wrong PINs before the card blocks, 1 to 255.
    #[arg(
        long,
        default_value_t = DEFAULT_TRIES,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=255)
    )]
    pub(crate) pin_tries: u32,
    /// Wrong PUKs (and administrator responses) before they block, 1 to 255.
    #[arg(
        long,
        default_value_t = DEFAULT_TRIES,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=255)
    )]
    pub(crate) puk_tries: u32,
    /// Use this card ID (a GUID) instead of a random one.
    #[arg(long)]
    pub(crate) card_id: Option<String>,
    /// Leave the card unformatted (like tpmvscmgr without /generate).
    #[arg(long)]
    pub(crate) no_format: bool,
    /// Read prompted secrets from standard input, one per line.
    #[arg(long)]
    pub(crate) stdin: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `create --pin` and `--puk`: which secret, never the secret itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecretChoice {
    Default,
    Prompt,
}

/// `create --admin-key`: which key, never the key itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminChoice {
    Default,
    Prompt,
    Random,
}

impl CreateArgs {
    /// The `--pin`, `--puk` and `--admin-key` choices. Any other value is refused without
    /// being echoed: it may be the secret itself, which other users can read in the
    /// command line.
    pub(crate) fn choices(
        &self,
    ) -> Result<(
        Option<SecretChoice>,
        Option<SecretChoice>,
        Option<AdminChoice>,
    )> {
        let secret = |flag: &str, value: &Option<String>, what: &str| match value.as_deref() {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("default") => Ok(Some(SecretChoice::Default)),
            Some(v) if v.eq_ignore_ascii_case("prompt") => Ok(Some(SecretChoice::Prompt)),
            Some(_) => Err(Error::Usage(format!(
                "`{flag}` takes default or prompt, never the {what} itself (other users can \
                 read the command line): use {flag}-file FILE, or {flag} prompt with --stdin"
            ))),
        };
        let pin = secret("--pin", &self.pin, "PIN")?;
        let puk = secret("--puk", &self.puk, "PUK")?;
        let admin = match self.admin_key.as_deref() {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("default") => Some(AdminChoice::Default),
            Some(v) if v.eq_ignore_ascii_case("prompt") => Some(AdminChoice::Prompt),
            Some(v) if v.eq_ignore_ascii_case("random") => Some(AdminChoice::Random),
            Some(_) => {
                return Err(Error::Usage(
                    "`--admin-key` takes default, prompt or random, never the key itself (other \
                     users can read the command line): use --admin-key-file FILE, or \
                     --admin-key prompt with --stdin"
                        .into(),
                ));
            }
        };
        Ok((pin, puk, admin))
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SimAction {
    Start,
    Stop,
    Status,
    Env,
}

/// Refuses, before anything else runs, a secret given as an argument: other users can
/// read the command line in /proc/PID/cmdline. One arm per command, so a new command
/// has to say whether it takes a secret.
pub(crate) fn refuse_secrets_in_argv(cmd: &Cmd) -> Result<()> {
    match cmd {
        Cmd::Create(a) => a.choices().map(|_| ()),
        Cmd::CheckPin { pin, .. } | Cmd::Keygen { pin, .. } | Cmd::Csr { pin, .. } => {
            pin.refuse_argv()
        }
        Cmd::Unblock { auth, .. } | Cmd::Format { auth, .. } => auth.argv.refuse(),
        Cmd::Admin { action } => match action {
            AdminCmd::Response(ResponseArgs {
                admin_key,
                master_key,
                ..
            }) => {
                refuse_value(
                    "--admin-key",
                    admin_key,
                    "--admin-key-file FILE, --stdin, or answer the prompt",
                )?;
                refuse_value(
                    "--master-key",
                    master_key,
                    "--master-key-file FILE with --card-id, --stdin with --card-id, or answer \
                     the prompt",
                )
            }
            AdminCmd::Verify { response, .. }
            | AdminCmd::ChangeKey { response, .. }
            | AdminCmd::Refill { response, .. } => response.argv.refuse(),
            AdminCmd::Challenge { .. } => Ok(()),
        },
        Cmd::Destroy { .. }
        | Cmd::List { .. }
        | Cmd::Info { .. }
        | Cmd::ChangePin { .. }
        | Cmd::ChangePuk { .. }
        | Cmd::Keys { .. }
        | Cmd::ImportCert { .. }
        | Cmd::Certs { .. }
        | Cmd::Install { .. }
        | Cmd::Tpm { .. }
        | Cmd::Simulator { .. } => Ok(()),
    }
}
