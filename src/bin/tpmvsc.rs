//! `tpmvsc`: create, list, inspect and destroy TPM virtual smart cards, and run the
//! simulator TPM. A thin front end over `tpmvsc::provision`; exit codes per DESIGN.md §4
//! (0 ok, 1 failed, 2 usage, 3 wrong PIN/PUK/response, 4 blocked or TPM lockout).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tpmvsc::card::{DEFAULT_PIN, DEFAULT_TRIES, PinPolicy};
use tpmvsc::error::{Error, Quoted, Result};
use tpmvsc::prompt::{
    MAX_CERT_BYTES, SecretReader, check_current_secret, read_input_file, read_input_stdin,
    read_secret_file,
};
use tpmvsc::provision::admin::{AdminKey, DEFAULT_ADMIN_KEY_HEX};
use tpmvsc::provision::{
    self, AdminKeySpec, CardSummary, CreateRequest, Secret, admin, enroll, format, hardening,
};
use tpmvsc::store::Store;
use tpmvsc::tpm::templates::UserKeyKind;
use tpmvsc::{simulator, tpm};
use zeroize::Zeroizing;

// Standard output through `print_out`: a closed pipe ends the command quietly instead of
// panicking (these shadow the standard macros of the same names in this file).
macro_rules! println {
    () => {
        tpmvsc::prompt::print_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        tpmvsc::prompt::print_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

macro_rules! print {
    ($($arg:tt)*) => {
        tpmvsc::prompt::print_out(format_args!($($arg)*))
    };
}

#[derive(Parser, Debug)]
#[command(
    name = "tpmvsc",
    version,
    about = "TPM 2.0 virtual smart cards: keys made and used inside the TPM, unlocked by a PIN",
    long_about = "TPM 2.0 virtual smart cards for Linux.\n\n\
        A card's keys are generated and used inside the TPM and unlocked by its PIN; the TPM's \
        dictionary-attack logic counts wrong PINs. Programs use the cards through the PKCS#11 \
        module libtpmvsc.so.\n\n\
        The TPM is named by TPMVSC_TCTI (default device:/dev/tpmrm0). Without a TPM, run \
        `tpmvsc simulator start` and `eval \"$(tpmvsc simulator env)\"`. Cards live in \
        TPMVSC_STORE (default: /var/lib/tpmvsc for root, ~/.local/share/tpmvsc otherwise).\n\n\
        Exit codes: 0 ok, 1 failed, 2 usage, 3 wrong PIN/PUK/response, 4 blocked or TPM lockout.",
    after_help = "Examples:\n  \
        tpmvsc simulator start && eval \"$(tpmvsc simulator env)\"\n  \
        tpmvsc create --name work --pin prompt --puk prompt\n  \
        tpmvsc list\n  \
        tpmvsc info work --json\n  \
        tpmvsc destroy work"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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
        /// Authorize with the PUK.
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        puk: bool,
        /// Authorize with the administrator's response to the card's challenge.
        #[arg(long)]
        admin: bool,
        /// Read the administrator's response (16 hex digits) from the first line of FILE
        /// (or /dev/fd/N) instead of prompting.
        #[arg(long, requires = "admin", value_name = "FILE")]
        response_file: Option<PathBuf>,
        #[command(flatten)]
        argv: ResponseNotInArgv,
        /// Read the secrets from standard input, one per line.
        #[arg(long)]
        stdin: bool,
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
        /// Authorize with the PUK.
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        puk: bool,
        /// Authorize with the administrator's response.
        #[arg(long)]
        admin: bool,
        /// Read the administrator's response (16 hex digits) from the first line of FILE
        /// (or /dev/fd/N) instead of prompting.
        #[arg(long, requires = "admin", value_name = "FILE")]
        response_file: Option<PathBuf>,
        #[command(flatten)]
        argv: ResponseNotInArgv,
        /// Read the secrets from standard input, one per line.
        #[arg(long)]
        stdin: bool,
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
    Simulator {
        #[arg(value_enum)]
        action: SimAction,
        /// Machine-readable output (status).
        #[arg(long)]
        json: bool,
    },
}

/// Where the PIN comes from: prompt (default), --pin-file, or --stdin; never an argument.
#[derive(clap::Args, Debug)]
struct PinSource {
    /// Read the PIN from the first line of FILE (or an inherited descriptor, /dev/fd/N).
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
    /// Read the PIN from standard input.
    #[arg(long, conflicts_with = "pin_file")]
    stdin: bool,
    /// Never used: a PIN given here is refused (other users can read the command line).
    #[arg(long = "pin", hide = true, num_args = 0..=1, value_name = "NEVER")]
    pin_in_argv: Option<Option<String>>,
}

impl PinSource {
    fn refuse_argv(&self) -> Result<()> {
        refuse_value(
            "--pin",
            &self.pin_in_argv,
            "--pin-file FILE, --stdin, or answer the prompt",
        )
    }

    /// The PIN; an empty one is refused before any TPM try.
    fn read(&self) -> Result<Secret> {
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
struct ResponseNotInArgv {
    /// Never used: a response given here is refused (other users can read it).
    #[arg(long = "response", hide = true, num_args = 0..=1, value_name = "NEVER")]
    response: Option<Option<String>>,
}

impl ResponseNotInArgv {
    fn refuse(&self) -> Result<()> {
        refuse_value(
            "--response",
            &self.response,
            "--response-file FILE, --stdin, or answer the prompt",
        )
    }
}

/// Refuses a secret given as a command-line argument: other users can read it in
/// /proc/PID/cmdline. The flag alone (no value) is harmless and ignored.
fn refuse_value(flag: &str, given: &Option<Option<String>>, instead: &str) -> Result<()> {
    match given {
        Some(Some(_)) => Err(Error::Usage(format!(
            "`{flag}` takes no value on the command line (other users can read it): use {instead}"
        ))),
        Some(None) | None => Ok(()),
    }
}

#[derive(Subcommand, Debug)]
enum AdminCmd {
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
    Response {
        /// The challenge the user reads out (16 hex digits; not secret).
        #[arg(long)]
        challenge: String,
        /// Read the 48-hex-digit admin key from the first line of FILE (or /dev/fd/N).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["master_key_file", "card_id", "stdin"])]
        admin_key_file: Option<PathBuf>,
        /// Read a fleet master key (hex, 16 to 63 bytes) from the first line of FILE (or
        /// /dev/fd/N); needs --card-id.
        #[arg(
            long,
            value_name = "FILE",
            requires = "card_id",
            conflicts_with = "stdin"
        )]
        master_key_file: Option<PathBuf>,
        /// The card ID (GUID) whose per-card key to derive: the key read is then the
        /// fleet master key.
        #[arg(long)]
        card_id: Option<String>,
        /// Read the key (or, with --card-id, the master key) from standard input.
        #[arg(long)]
        stdin: bool,
        /// Never used: a key given here is refused (other users can read it).
        #[arg(long, hide = true, num_args = 0..=1, value_name = "NEVER")]
        admin_key: Option<Option<String>>,
        /// Never used: a master key given here is refused (other users can read it).
        #[arg(long, hide = true, num_args = 0..=1, value_name = "NEVER")]
        master_key: Option<Option<String>>,
    },
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
#[derive(clap::Args, Debug)]
struct ResponseSource {
    /// Read the response (16 hex digits) from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE")]
    response_file: Option<PathBuf>,
    /// Read the secrets from standard input, one per line.
    #[arg(long)]
    stdin: bool,
    #[command(flatten)]
    argv: ResponseNotInArgv,
}

#[derive(Subcommand, Debug)]
enum TpmCmd {
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
struct CreateArgs {
    /// Card name, 1-32 bytes (the PKCS#11 token label); a friendly name, as on Windows:
    /// it may repeat, and a name that means several cards is refused with their
    /// instance IDs.
    #[arg(long)]
    name: String,
    /// `default` = 12345678 (left out: default), `prompt` = ask. Never the PIN itself:
    /// use --pin-file.
    #[arg(long, value_name = "default|prompt")]
    pin: Option<String>,
    /// Read the PIN from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    pin_file: Option<PathBuf>,
    /// `default` = 12345678, `prompt` = ask. Left out: the card has no PUK. Never the PUK
    /// itself: use --puk-file.
    #[arg(long, value_name = "default|prompt")]
    puk: Option<String>,
    /// Read the PUK from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE", conflicts_with = "puk")]
    puk_file: Option<PathBuf>,
    /// `default` = the well-known Windows key (anyone who can read the card's files can
    /// then reset its PIN), `prompt` = ask for 48 hex digits, `random` = no admin key
    /// (an unmanaged card; the default). Never the key itself: use --admin-key-file.
    #[arg(long, value_name = "default|prompt|random")]
    admin_key: Option<String>,
    /// Read the 48-hex-digit admin key from the first line of FILE (or /dev/fd/N).
    #[arg(long, value_name = "FILE", conflicts_with = "admin_key")]
    admin_key_file: Option<PathBuf>,
    /// Derive this card's admin key from the fleet master key in the first line of FILE
    /// (hex, 16 to 63 bytes): K = KDF(master, card ID), see `tpmvsc admin response --help`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["admin_key", "admin_key_file"])]
    admin_key_master_file: Option<PathBuf>,
    /// PIN rules, e.g. minlen=6,maxlen=12,uppercase=required,digits=allowed,
    /// specialchars=disallowed (lowercase too). Defaults: 8-127, all allowed.
    #[arg(long)]
    pin_policy: Option<String>,
    /// Wrong PINs before the card blocks, 1 to 255.
    #[arg(
        long,
        default_value_t = DEFAULT_TRIES,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=255)
    )]
    pin_tries: u32,
    /// Wrong PUKs (and administrator responses) before they block, 1 to 255.
    #[arg(
        long,
        default_value_t = DEFAULT_TRIES,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=255)
    )]
    puk_tries: u32,
    /// Use this card ID (a GUID) instead of a random one.
    #[arg(long)]
    card_id: Option<String>,
    /// Leave the card unformatted (like tpmvscmgr without /generate).
    #[arg(long)]
    no_format: bool,
    /// Read prompted secrets from standard input, one per line.
    #[arg(long)]
    stdin: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `create --pin` and `--puk`: which secret, never the secret itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecretChoice {
    Default,
    Prompt,
}

/// `create --admin-key`: which key, never the key itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AdminChoice {
    Default,
    Prompt,
    Random,
}

impl CreateArgs {
    /// The `--pin`, `--puk` and `--admin-key` choices. Any other value is refused without
    /// being echoed: it may be the secret itself, which other users can read in the
    /// command line.
    fn choices(
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
enum SimAction {
    Start,
    Stop,
    Status,
    Env,
}

fn main() -> ExitCode {
    tpm::quiet_tss_logging_for_cli();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::from(
                    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        2
                    } else {
                        0
                    },
                );
            }
            if let Some(m) = secret_after_switch(&e) {
                eprintln!("tpmvsc: {m}");
                return ExitCode::from(2);
            }
            let text = e.to_string();
            // One line: clap's first paragraph (it lists missing arguments on lines of
            // their own), joined.
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.trim_start_matches("error: ");
            let first = if first.is_empty() {
                "invalid arguments"
            } else {
                first
            };
            eprintln!("tpmvsc: {first} (see `tpmvsc --help`)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tpmvsc: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

/// A word after a switch that takes no value, where someone may have typed a secret
/// (`unblock work --puk 12345678`): clap would echo it as an unexpected argument. The
/// message names the switch and what to use instead, never the word.
fn secret_after_switch(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(word)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let at = args.iter().position(|a| a == word)?;
    let instead = match args.get(at.checked_sub(1)?)?.as_str() {
        "--puk" => "give the PUK on --stdin or answer the prompt",
        "--admin" => "use --response-file FILE, --stdin, or answer the prompt",
        "--stdin" => "put the secrets on standard input, one per line",
        _ => return None,
    };
    let flag = &args[at - 1];
    Some(format!(
        "`{flag}` takes no value on the command line (other users can read it): {instead}"
    ))
}

/// Refuses, before anything else runs, a secret given as an argument: other users can
/// read the command line in /proc/PID/cmdline. One arm per command, so a new command
/// has to say whether it takes a secret.
fn refuse_secrets_in_argv(cmd: &Cmd) -> Result<()> {
    match cmd {
        Cmd::Create(a) => a.choices().map(|_| ()),
        Cmd::CheckPin { pin, .. } | Cmd::Keygen { pin, .. } | Cmd::Csr { pin, .. } => {
            pin.refuse_argv()
        }
        Cmd::Unblock { argv, .. } | Cmd::Format { argv, .. } => argv.refuse(),
        Cmd::Admin { action } => match action {
            AdminCmd::Response {
                admin_key,
                master_key,
                ..
            } => {
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

fn run(cli: Cli) -> Result<()> {
    refuse_secrets_in_argv(&cli.command)?;
    let store = Store::open()?;
    let uses_cards = !matches!(
        cli.command,
        Cmd::Simulator { .. }
            | Cmd::Install { .. }
            | Cmd::Admin {
                action: AdminCmd::Response { .. }
            }
    );
    if uses_cards && let Err(e) = provision::recover::recover(&store) {
        eprintln!("tpmvsc: warning: an interrupted operation could not be finished yet: {e}");
    }
    match cli.command {
        Cmd::Create(a) => create(&store, a),
        Cmd::Destroy { card, yes } => {
            let (_, record) = match provision::find(&store, &card) {
                Ok(found) => (Some(found.0), Some(found.1)),
                Err(Error::CardUnusable { .. }) => (None, None),
                Err(e) => return Err(e),
            };
            if !yes {
                let what = record.map_or(card.clone(), |r| {
                    format!("{} ({})", Quoted(&r.name), r.card_id)
                });
                let reader = SecretReader::new(false);
                if !reader.confirm(&format!(
                    "Destroy card {what} and every key on it? This cannot be undone."
                ))? {
                    return Err(Error::Usage(
                        "not destroyed: confirm on a terminal, or pass --yes".into(),
                    ));
                }
            }
            let label = provision::destroy(&store, &card)?;
            println!("Destroyed card {label}.");
            Ok(())
        }
        Cmd::List { json } => {
            let mut cards = provision::list(&store)?;
            let view = provision::TpmView::read();
            if let Some(v) = &view {
                cards.iter_mut().for_each(|c| v.annotate(c));
            }
            if json {
                print_json(&cards);
            } else if cards.is_empty() {
                println!(
                    "No cards in {}. Create one with `tpmvsc create --name NAME`.",
                    store.root().display()
                );
            } else {
                print_table(&cards);
            }
            if !json && let Some(state) = view.as_ref().and_then(|v| v.lockout_state) {
                match state.warning() {
                    None => println!("TPM: {}", state.describe()),
                    Some(w) => println!("TPM: {}. Warning: {w}", state.describe()),
                }
            }
            Ok(())
        }
        Cmd::Info { card, json } => {
            let mut c = provision::info(&store, &card)?;
            if let Some(v) = provision::TpmView::read() {
                v.annotate(&mut c);
            }
            if json {
                print_json(&c);
            } else {
                print_info(&c);
            }
            Ok(())
        }
        Cmd::Simulator { action, json } => simulator_cmd(&store, action, json),
        Cmd::CheckPin { card, pin } => {
            provision::find(&store, &card)?;
            let pin = pin.read()?;
            provision::verify_pin(&store, &card, &pin)?;
            println!("PIN correct.");
            Ok(())
        }
        Cmd::ChangePin { card, stdin } => {
            let mut r = SecretReader::new(stdin);
            let policy = provision::find(&store, &card)?.1.pin_policy;
            let current = r.current_pin("current PIN")?;
            let new = r.new_secret_with("PIN", &|s: &[u8]| policy.check("new PIN", s), true)?;
            r.finish("current PIN, new PIN, new PIN")?;
            provision::change_pin(&store, &card, &current, &new)?;
            println!("PIN changed.");
            Ok(())
        }
        Cmd::ChangePuk { card, stdin } => {
            let mut r = SecretReader::new(stdin);
            provision::find(&store, &card)?;
            let current = r.current_pin("current PUK")?;
            let policy = PinPolicy::default();
            let new = r.new_secret_with("PUK", &|s: &[u8]| policy.check("new PUK", s), true)?;
            r.finish("current PUK, new PUK, new PUK")?;
            provision::change_puk(&store, &card, &current, &new)?;
            println!("PUK changed.");
            Ok(())
        }
        Cmd::Unblock {
            card,
            puk,
            admin: _,
            response_file,
            argv: _,
            stdin,
        } => {
            let mut r = SecretReader::new(stdin);
            let record = provision::find(&store, &card)?.1;
            let policy = record.pin_policy.clone();
            let check = |s: &[u8]| policy.check("new PIN", s);
            if puk {
                if !record.has_puk {
                    return Err(Error::NoPuk(record.name));
                }
                let p = r.current_pin("PUK")?;
                let new = r.new_secret_with("PIN", &check, true)?;
                r.finish("PUK, new PIN, new PIN")?;
                provision::unblock_with_puk(&store, &card, &p, &new)?;
            } else {
                if record.has_puk {
                    // The Windows rule, checked before any challenge is spent.
                    return Err(Error::NotManaged(format!(
                        "card {} has a PUK: unblock it with `tpmvsc unblock {} --puk`",
                        Quoted(&record.name),
                        record.name
                    )));
                }
                let resp = admin_response(&store, &card, response_file.as_deref(), &mut r)?;
                let new = r.new_secret_with("PIN", &check, true)?;
                r.finish("response, new PIN, new PIN")?;
                admin::respond(
                    &store,
                    &card,
                    &resp,
                    admin::AdminAction::Unblock { new_pin: &new },
                )?;
            }
            println!("New PIN set; the card is unblocked.");
            Ok(())
        }
        Cmd::Format {
            card,
            puk,
            admin: _,
            response_file,
            argv: _,
            stdin,
            yes,
        } => {
            let mut r = SecretReader::new(stdin);
            let record = provision::find(&store, &card)?.1;
            if !yes && !r.uses_stdin() {
                let q = format!(
                    "Erase every key and certificate on card {}?",
                    Quoted(&record.name)
                );
                if !r.confirm(&q)? {
                    return Err(Error::Usage(
                        "not formatted: confirm on a terminal, or pass --yes".into(),
                    ));
                }
            }
            let policy = record.pin_policy.clone();
            let check = |s: &[u8]| policy.check("new PIN", s);
            let summary = if puk {
                let p = r.current_pin("PUK")?;
                let new = r.new_secret_with("PIN", &check, true)?;
                r.finish("PUK, new PIN, new PIN")?;
                format::format(&store, &card, format::FormatAuth::Puk(&p), &new)?
            } else {
                let resp = admin_response(&store, &card, response_file.as_deref(), &mut r)?;
                let new = r.new_secret_with("PIN", &check, true)?;
                // A card with a PUK gets a new PUK object, with a PUK the admin chooses.
                let new_puk = if record.has_puk {
                    let puk_policy = PinPolicy::default();
                    Some(r.new_secret_with(
                        "PUK",
                        &|s: &[u8]| puk_policy.check("new PUK", s),
                        true,
                    )?)
                } else {
                    None
                };
                r.finish("response, new PIN, new PIN (then new PUK twice on a card with a PUK)")?;
                format::format(
                    &store,
                    &card,
                    format::FormatAuth::Admin(&resp, new_puk.as_deref().map(|v| v.as_slice())),
                    &new,
                )?
            };
            println!(
                "Card {} formatted; card ID {}.",
                Quoted(&summary.name),
                summary.card_id
            );
            Ok(())
        }
        Cmd::Admin { action } => admin_cmd(&store, action),
        Cmd::Install {
            lib_dir,
            modules_dir,
            uninstall,
        } => install(&lib_dir, &modules_dir, uninstall),
        Cmd::Keygen {
            card,
            kind,
            label,
            pin,
            json,
        } => {
            let kind = match kind.as_str() {
                "ec-p256" => UserKeyKind::EccP256,
                "ec-p384" => UserKeyKind::EccP384,
                "rsa2048" => UserKeyKind::Rsa2048,
                _ => UserKeyKind::Rsa3072,
            };
            // A label the card cannot take is refused before the PIN is asked for.
            enroll::check_new_label(&store, &card, &label)?;
            let p = pin.read()?;
            if !json {
                eprintln!("... generating the key in the TPM (RSA can take seconds)");
            }
            let k = enroll::keygen(&store, &card, &p, kind, &label)?;
            if json {
                print_json(&k);
            } else {
                println!("Key {} generated; ID {}.", Quoted(&k.label), k.id);
            }
            Ok(())
        }
        Cmd::Keys { card, json } => {
            let keys = enroll::keys(&store, &card)?;
            if json {
                print_json(&keys);
            } else {
                for k in keys {
                    println!("{:<24} {:<10} {}", k.label, k.kind, k.id);
                }
            }
            Ok(())
        }
        Cmd::Csr {
            card,
            key,
            subject,
            san,
            out,
            pin,
        } => {
            // What can be checked without the PIN is checked before it is asked for.
            let to_stdout = out.as_os_str() == "-";
            if !to_stdout {
                check_output_file(&out)?;
            }
            enroll::check_request(&subject, &san)?;
            enroll::check_key(&store, &card, &key)?;
            let p = pin.read()?;
            let pem = enroll::csr(&store, &card, &p, &key, &subject, &san)?;
            if to_stdout {
                print!("{pem}");
            } else {
                tpmvsc::store::atomic::write_atomic(&out, pem.as_bytes(), true)?;
                eprintln!("Certificate request written to {}.", out.display());
            }
            Ok(())
        }
        Cmd::ImportCert { card, file, json } => {
            let data = if file.as_os_str() == "-" {
                read_input_stdin("certificate on standard input", MAX_CERT_BYTES)?
            } else {
                read_input_file(&file, "certificate file", MAX_CERT_BYTES)?
            };
            let c = enroll::import_cert(&store, &card, &data)?;
            if json {
                print_json(&c);
            } else {
                println!(
                    "Certificate for {} installed next to key {}.",
                    c.subject,
                    Quoted(&c.label)
                );
            }
            Ok(())
        }
        Cmd::Certs { card, json } => {
            let list = enroll::certs(&store, &card)?;
            if json {
                print_json(&list);
            } else if list.is_empty() {
                println!("No certificates on this card.");
            } else {
                for c in list {
                    println!(
                        "{}\n  issuer:  {}\n  expires: {}\n  key:     {}{}",
                        c.subject,
                        c.issuer,
                        c.not_after,
                        c.label,
                        if c.has_key {
                            ""
                        } else {
                            " (no key on the card)"
                        }
                    );
                }
            }
            Ok(())
        }
        Cmd::Tpm { action } => tpm_cmd(action),
    }
}

fn create(store: &Store, a: CreateArgs) -> Result<()> {
    let (pin_choice, puk_choice, admin_choice) = a.choices()?;
    let mut reader = SecretReader::new(a.stdin);
    let policy = match &a.pin_policy {
        Some(spec) => PinPolicy::parse(spec)?,
        None => PinPolicy::default(),
    };
    let mut req = CreateRequest::new(&a.name);
    tpmvsc::card::check_name(&a.name)?;
    let pin_chosen = pin_choice == Some(SecretChoice::Prompt) || a.pin_file.is_some();
    if a.pin_policy.is_some() && !pin_chosen {
        return Err(Error::Usage(
            "a PIN policy applies to a PIN you choose: add --pin prompt or --pin-file".into(),
        ));
    }
    let check_pin = |s: &[u8]| policy.check("PIN", s);
    req.pin = match (&a.pin_file, pin_choice) {
        (Some(f), _) => {
            let p = read_secret_file(f, "PIN")?;
            check_pin(&p)?;
            p
        }
        (None, Some(SecretChoice::Prompt)) => reader.new_secret("PIN", &check_pin)?,
        _ => Zeroizing::new(DEFAULT_PIN.as_bytes().to_vec()),
    };
    let puk_policy = PinPolicy::default();
    let check_puk = |s: &[u8]| puk_policy.check("PUK", s);
    req.puk = match (&a.puk_file, puk_choice) {
        (Some(f), _) => {
            let p = read_secret_file(f, "PUK")?;
            check_puk(&p)?;
            Some(p)
        }
        (None, Some(SecretChoice::Prompt)) => Some(reader.new_secret("PUK", &check_puk)?),
        (None, Some(SecretChoice::Default)) => {
            Some(Zeroizing::new(DEFAULT_PIN.as_bytes().to_vec()))
        }
        (None, None) => None,
    };
    let check_key = |s: &[u8]| AdminKey::parse_hex(&String::from_utf8_lossy(s)).map(|_| ());
    let card_id = match &a.card_id {
        Some(id) => id.clone(),
        None => uuid::Uuid::new_v4().hyphenated().to_string(),
    };
    req.admin = match (&a.admin_key_file, admin_choice) {
        _ if a.admin_key_master_file.is_some() => {
            let f = a
                .admin_key_master_file
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            let master = admin::parse_master_key(&String::from_utf8_lossy(&read_secret_file(
                f,
                "master key",
            )?))?;
            AdminKeySpec::Key(AdminKey::derive(&master, &card_id)?)
        }
        (Some(f), _) => AdminKeySpec::Key(AdminKey::parse_hex(&String::from_utf8_lossy(
            &read_secret_file(f, "admin key")?,
        ))?),
        (None, Some(AdminChoice::Prompt)) => {
            let k = reader.new_secret("admin key (48 hex digits)", &check_key)?;
            AdminKeySpec::Key(AdminKey::parse_hex(&String::from_utf8_lossy(&k))?)
        }
        (None, Some(AdminChoice::Default)) => {
            AdminKeySpec::Key(AdminKey::parse_hex(DEFAULT_ADMIN_KEY_HEX)?)
        }
        (None, Some(AdminChoice::Random)) | (None, None) => AdminKeySpec::Random,
    };
    reader.finish("PIN, PUK, admin key: one line for each set to prompt, once")?;
    if matches!(&req.admin, AdminKeySpec::Key(k) if k.is_default()) {
        eprintln!(
            "warning: the default admin key is public: anyone who can read this card's files can \
             reset its PIN{}",
            if req.puk.is_none() {
                " (the card has no PUK)"
            } else {
                ""
            }
        );
    }
    req.pin_policy = policy.clone();
    req.pin_tries = a.pin_tries;
    req.puk_tries = a.puk_tries;
    req.card_id = Some(card_id);
    req.format = !a.no_format;
    let quiet = a.json;
    let summary = provision::create(store, req, &mut |step| {
        if step.starts_with("warning:") {
            eprintln!("{step}");
        } else if !quiet {
            eprintln!("... {step}");
        }
    })?;
    if a.json {
        print_json(&summary);
    } else {
        println!(
            "Created card {}{}{}.",
            Quoted(&summary.name),
            if summary.simulated {
                " (simulated TPM: a software token)"
            } else {
                ""
            },
            if summary.formatted {
                ""
            } else {
                ", unformatted"
            }
        );
        println!("Card ID:     {}", summary.card_id);
        println!("Instance ID: {}", summary.instance_id);
    }
    Ok(())
}

/// Shows the challenge (to stderr, so scripts can still read stdout) and reads the
/// response, unless it comes from `file`.
fn admin_response(
    store: &Store,
    card: &str,
    file: Option<&std::path::Path>,
    r: &mut SecretReader,
) -> Result<[u8; 8]> {
    let (challenge, left) = admin::challenge(store, card)?;
    if let Some(f) = file {
        let text = read_secret_file(f, "response")?;
        return admin::parse_response(&String::from_utf8_lossy(&text));
    }
    eprintln!(
        "Challenge: {challenge}  ({} left)",
        counted(left, "challenge", "challenges")
    );
    eprintln!("Read it to your administrator and type the response they give you.");
    if left <= 4 {
        eprintln!(
            "warning: few challenges left; ask the administrator to run `tpmvsc admin refill`."
        );
    }
    let text = r.current("response")?;
    admin::parse_response(&String::from_utf8_lossy(&text))
}

fn admin_cmd(store: &Store, action: AdminCmd) -> Result<()> {
    match action {
        AdminCmd::Challenge { card, json } => {
            let (challenge, left) = admin::challenge(store, &card)?;
            if json {
                print_json(&serde_json::json!({ "challenge": challenge, "challenges_left": left }));
            } else {
                println!("{challenge}");
                eprintln!("({} left)", counted(left, "challenge", "challenges"));
            }
        }
        AdminCmd::Response {
            challenge,
            admin_key_file,
            master_key_file,
            card_id,
            stdin,
            admin_key,
            master_key,
        } => {
            // The challenge first: a typo in it costs no key entry.
            let c = admin::parse_challenge(&challenge)?;
            let text = |s: &Secret| String::from_utf8_lossy(s).into_owned();
            let key = match (card_id, admin_key_file, master_key_file) {
                (Some(_), _, _) if admin_key.is_some() => {
                    return Err(Error::Usage(
                        "--card-id derives the card's key from a master key; --admin-key is the \
                         card's own key: give one of them"
                            .into(),
                    ));
                }
                (None, None, _) if master_key.is_some() => {
                    return Err(Error::Usage(
                        "a master key needs --card-id GUID, the card whose key to derive".into(),
                    ));
                }
                (None, Some(f), None) => {
                    AdminKey::parse_hex(&Zeroizing::new(text(&read_secret_file(&f, "admin key")?)))?
                }
                (None, None, None) => {
                    let mut r = SecretReader::new(stdin);
                    let k = r.current("admin key (48 hex digits)")?;
                    r.finish("admin key")?;
                    AdminKey::parse_hex(&Zeroizing::new(text(&k)))?
                }
                (Some(id), None, master_file) => {
                    let m = match master_file {
                        Some(f) => read_secret_file(&f, "master key")?,
                        None => {
                            let mut r = SecretReader::new(stdin);
                            let m = r.current("master key (hex)")?;
                            r.finish("master key")?;
                            m
                        }
                    };
                    AdminKey::derive(&admin::parse_master_key(&Zeroizing::new(text(&m)))?, &id)?
                }
                (_, Some(_), Some(_)) | (Some(_), Some(_), None) | (None, None, Some(_)) => {
                    return Err(Error::Usage(
                        "give --admin-key-file, or --master-key-file with --card-id".into(),
                    ));
                }
            };
            println!("{}", hex::encode_upper(key.response(&c)));
        }
        AdminCmd::Verify { card, response } => {
            let mut r = SecretReader::new(response.stdin);
            let resp = admin_response(store, &card, response.response_file.as_deref(), &mut r)?;
            r.finish("response")?;
            admin::respond(store, &card, &resp, admin::AdminAction::Verify)?;
            println!("The response is correct.");
        }
        AdminCmd::ChangeKey { card, response } => {
            let mut r = SecretReader::new(response.stdin);
            let resp = admin_response(store, &card, response.response_file.as_deref(), &mut r)?;
            let check = |s: &[u8]| AdminKey::parse_hex(&String::from_utf8_lossy(s)).map(|_| ());
            let k = r.new_secret_with("admin key (48 hex digits)", &check, true)?;
            let key = AdminKey::parse_hex(&String::from_utf8_lossy(&k))?;
            r.finish("response, new admin key, new admin key")?;
            admin::respond(
                store,
                &card,
                &resp,
                admin::AdminAction::ChangeKey { new_key: &key },
            )?;
            println!(
                "Admin key changed; {} new challenges.",
                admin::TICKETS_PER_BATCH
            );
        }
        AdminCmd::Refill { card, response } => {
            let mut r = SecretReader::new(response.stdin);
            let resp = admin_response(store, &card, response.response_file.as_deref(), &mut r)?;
            let k = r.current("admin key (48 hex digits)")?;
            let key = AdminKey::parse_hex(&String::from_utf8_lossy(&k))?;
            r.finish("response, admin key")?;
            admin::respond(
                store,
                &card,
                &resp,
                admin::AdminAction::Refill { key: &key },
            )?;
            println!("{} new challenges.", admin::TICKETS_PER_BATCH);
        }
    }
    Ok(())
}

fn tpm_cmd(action: TpmCmd) -> Result<()> {
    match action {
        TpmCmd::Status { json } => {
            let mut t = tpm::Tpm::open()?;
            let info = t.info()?;
            let da = t.da_status()?;
            let lockout = hardening::lockout_state(&mut t)?;
            let srk = t.srk_status()?;
            if json {
                let mut v = serde_json::to_value(&da).unwrap_or_default();
                if let (serde_json::Value::Object(m), Ok(serde_json::Value::Object(i))) =
                    (&mut v, serde_json::to_value(&info))
                {
                    m.extend(i);
                    m.insert("tcti".into(), t.tcti().into());
                    m.insert(
                        "lockout_state".into(),
                        serde_json::to_value(lockout).unwrap_or_default(),
                    );
                    m.insert("srk".into(), serde_json::to_value(&srk).unwrap_or_default());
                }
                print_json(&v);
            } else {
                println!(
                    "TPM:              {} {} (firmware {}){}",
                    info.manufacturer,
                    info.vendor,
                    info.firmware,
                    if info.simulated { ", SIMULATED" } else { "" }
                );
                println!("TCTI:             {}", t.tcti());
                println!(
                    "Failed tries:     {} of {} (one forgotten every {} s)",
                    da.counter, da.max_tries, da.recovery_time
                );
                println!(
                    "Lockout:          {}",
                    if da.in_lockout {
                        "YES: DA-protected authorizations are refused"
                    } else {
                        "no"
                    }
                );
                println!(
                    "Lockout recovery: {} s after a wrong lockout authorization",
                    da.lockout_recovery
                );
                match lockout.warning() {
                    None => println!("Lockout auth:     {}", lockout.describe()),
                    Some(w) => println!(
                        "Lockout auth:     {}\n                  {w}",
                        lockout.describe()
                    ),
                }
                println!(
                    "Storage root key: {}{}",
                    if srk.persistent {
                        "persistent at 0x81000001, proved"
                    } else {
                        "made from the standard template per process (`tpmvsc simulator` or \
                         `tpm2_evictcontrol` can persist it)"
                    },
                    if srk.foreign_persistent {
                        "; 0x81000001 holds another key, which tpmvsc never uses"
                    } else {
                        ""
                    }
                );
            }
        }
        TpmCmd::Harden {
            lockout_auth_file,
            print_lockout_auth,
        } => match hardening::harden(lockout_auth_file.as_deref(), print_lockout_auth)? {
            hardening::HardenOutcome::AlreadyHardened { verified } => println!(
                "The TPM is hardened by tpmvsc already{}; nothing changed.",
                if verified {
                    " (its lockout authorization proved itself again)"
                } else {
                    " (not re-verified: its lockout authorization is not in that file)"
                }
            ),
            hardening::HardenOutcome::Hardened {
                escrow,
                printed,
                adopted,
            } => {
                if adopted {
                    println!(
                        "The lockout authorization given was the TPM's; it is replaced now, so \
                             whoever set it no longer holds it."
                    );
                }
                match (&escrow, printed) {
                    (_, Some(value)) => println!(
                        "New lockout authorization (shown once, kept nowhere on this machine: \
                             store it safely): {}",
                        String::from_utf8_lossy(&value)
                    ),
                    (hardening::Escrow::File(f), None) => println!(
                        "Lockout authorization in {} (root only). Root can read it and so lift \
                             the retry limit: keep a copy off this machine.",
                        f.display()
                    ),
                    (hardening::Escrow::Print, None) => {}
                }
                println!(
                    "TPM hardened: lockout after {} failures with one forgotten every {} s; \
                         TPM2_Clear needs the platform authorization.",
                    simulator::DA_MAX_TRIES,
                    simulator::DA_RECOVERY_SECS
                );
            }
        },
        TpmCmd::ClearLockout { lockout_auth_file } => {
            hardening::clear_lockout(lockout_auth_file.as_deref(), || {
                let mut r = SecretReader::new(false);
                let a = r.current("Lockout authorization (empty if never set)")?;
                r.finish("lockout authorization")?;
                Ok(a)
            })?;
            println!("The TPM's dictionary-attack counter and lockout are cleared.");
        }
    }
    Ok(())
}

fn install(
    lib_dir: &std::path::Path,
    modules_dir: &std::path::Path,
    uninstall: bool,
) -> Result<()> {
    for (flag, dir) in [("--lib-dir", lib_dir), ("--modules-dir", modules_dir)] {
        if dir.as_os_str().is_empty() {
            return Err(Error::Usage(format!(
                "{flag} is empty; give a directory (or leave the option out for the default)"
            )));
        }
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{flag} {} is not a directory",
                dir.display()
            )));
        }
    }
    let lib = lib_dir.join("libtpmvsc.so");
    let reg = modules_dir.join("tpmvsc.module");
    if uninstall {
        for p in [&lib, &reg] {
            match std::fs::remove_file(p) {
                Ok(()) => println!("Removed {}.", p.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("current executable", e))?;
    let built = exe
        .parent()
        .map(|d| d.join("libtpmvsc.so"))
        .unwrap_or_default();
    if !built.is_file() {
        return Err(Error::Usage(format!(
            "{} not found: build it with `cargo build --release` and run target/release/tpmvsc install",
            built.display()
        )));
    }
    for d in [lib_dir, modules_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let bytes = std::fs::read(&built).map_err(|e| Error::io(&built, e))?;
    tpmvsc::store::atomic::write_atomic(&lib, &bytes, true)?;
    std::fs::set_permissions(&lib, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io(&lib, e))?;
    let text = format!(
        "# tpmvsc: TPM virtual smart cards (installed by `tpmvsc install`)\nmodule: {}\ncritical: no\n",
        lib.display()
    );
    tpmvsc::store::atomic::write_atomic(&reg, text.as_bytes(), true)?;
    std::fs::set_permissions(&reg, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io(&reg, e))?;
    println!(
        "Installed {} and registered it in {}.",
        lib.display(),
        reg.display()
    );
    println!("Programs loading it should run with TSS2_LOG=all+NONE set (see README).");
    Ok(())
}

fn simulator_cmd(store: &Store, action: SimAction, json: bool) -> Result<()> {
    match action {
        SimAction::Start => {
            let st = simulator::start(store)?;
            eprintln!(
                "Simulated TPM running (pid {}, state in {}). Cards made on it are software tokens.",
                st.pid.unwrap_or(0),
                st.state_dir.display()
            );
            println!("export {}={}", tpm::TCTI_ENV, st.tcti.unwrap_or_default());
        }
        SimAction::Stop => {
            let was = simulator::status(store)?;
            if !was.running {
                println!(
                    "No simulated TPM was running for the store {} (nothing stopped).",
                    store.root().display()
                );
                return Ok(());
            }
            let st = simulator::stop(store)?;
            if st.running {
                return Err(Error::Simulator(format!(
                    "the simulated TPM (pid {}) is still running; stop it with `kill {}`",
                    st.pid.unwrap_or(0),
                    st.pid.unwrap_or(0)
                )));
            }
            println!(
                "Simulated TPM stopped (pid {}, store {}).",
                was.pid.unwrap_or(0),
                store.root().display()
            );
        }
        SimAction::Status => {
            let st = simulator::status(store)?;
            if json {
                print_json(&st);
            } else if st.running {
                println!(
                    "Simulated TPM running: pid {}, TCTI {}, state {}",
                    st.pid.unwrap_or(0),
                    st.tcti.unwrap_or_default(),
                    st.state_dir.display()
                );
            } else {
                println!("Simulated TPM not running (start it with `tpmvsc simulator start`).");
            }
        }
        SimAction::Env => {
            let st = simulator::status(store)?;
            match (st.running, st.tcti) {
                (true, Some(t)) => println!("export {}={t}", tpm::TCTI_ENV),
                _ => {
                    return Err(Error::Simulator(
                        "not running; start it with `tpmvsc simulator start`".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// An output path must name a regular file, new or existing: the file is replaced by a
/// rename, which would put a regular file in place of a device (`/dev/null`, as root) or
/// fail late on a directory.
fn check_output_file(path: &std::path::Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::Usage(
            "--out is empty; give a file name, or - for standard output".into(),
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::Usage(format!(
            "{} is not a regular file; --out writes a file (or - for standard output)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("tpmvsc: cannot format JSON: {e}"),
    }
}

fn admin_text(c: &CardSummary) -> String {
    match (c.admin.as_str(), c.default_admin_key, c.admin_blocked) {
        ("managed", _, true) => "BLOCKED".into(),
        ("managed", true, false) => "DEFAULT KEY".into(),
        ("managed", false, false) => "managed".into(),
        (other, _, _) => other.into(),
    }
}

/// "1 try", "3 tries".
fn tries(n: u32) -> String {
    counted(n as usize, "try", "tries")
}

/// "1 challenge", "3 challenges": a count and its noun.
fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn print_table(cards: &[CardSummary]) {
    // Columns as wide as their widest entry, so long names and states stay aligned.
    let width = |head: &str, f: &dyn Fn(&CardSummary) -> String| {
        cards
            .iter()
            .map(|c| f(c).chars().count())
            .chain(std::iter::once(head.len()))
            .max()
            .unwrap_or(head.len())
    };
    let shown = |c: &CardSummary| !c.state.starts_with("damaged");
    let name_w = width("NAME", &|c| c.name.clone());
    let state_w = width("STATE", &|c| {
        if shown(c) {
            c.state.clone()
        } else {
            String::new()
        }
    });
    println!(
        "{:<5} {:<name_w$} {:<36} {:<27} {:<state_w$} {:<6} {:<4} ADMIN",
        "SLOT", "NAME", "CARD ID", "INSTANCE ID", "STATE", "PIN", "PUK"
    );
    for c in cards {
        if !shown(c) {
            println!("{:<5} {:<name_w$} {:<36} {}", "-", "?", c.card_id, c.state);
            continue;
        }
        println!(
            "{:<5} {:<name_w$} {:<36} {:<27} {:<state_w$} {:<6} {:<4} {}{}",
            c.slot_id,
            c.name,
            c.card_id,
            c.instance_id,
            c.state,
            format!("{}/{}", c.pin_tries_left, c.pin_tries),
            if c.has_puk { "yes" } else { "no" },
            admin_text(c),
            if c.simulated { "  (simulated)" } else { "" }
        );
    }
    if cards.iter().any(|c| c.default_admin_key) {
        println!(
            "DEFAULT KEY: the card uses the well-known admin key; anyone who can read its files can reset its PIN."
        );
    }
    if cards.iter().any(|c| c.admin_blocked) {
        println!(
            "BLOCKED: too many wrong administrator responses; the admin key no longer works on that card (for good: only destroying and recreating the card clears it)."
        );
    }
    if cards.iter().any(|c| c.tpm_cleared) {
        println!(
            "TPM cleared: the TPM was cleared since that card was made; its keys are gone for good. Destroy it and create a new one."
        );
    }
}

fn print_info(c: &CardSummary) {
    println!("Name:          {}", c.name);
    println!("Card ID:       {}", c.card_id);
    println!("Instance ID:   {}", c.instance_id);
    println!("Slot:          {}", c.slot_id);
    println!(
        "TPM:           {}",
        if c.simulated {
            "simulated (software token)"
        } else {
            "hardware"
        }
    );
    println!("State:         {}", c.state);
    println!(
        "PIN tries:     {} of {} left",
        c.pin_tries_left, c.pin_tries
    );
    if let Some(m) = c.tpm_lockout_minutes {
        println!(
            "TPM:           in dictionary-attack lockout for about {m} min more (TPM-wide; \
             unblocking the PIN does not clear it; `tpmvsc tpm clear-lockout` does)"
        );
    }
    println!("PIN policy:    {}", c.pin_policy);
    println!(
        "PUK:           {}",
        if c.has_puk {
            format!("yes ({} left)", tries(c.puk_tries_left))
        } else {
            "none".into()
        }
    );
    // The last challenge is kept for `admin refill` and `admin change-key`.
    let usable = c.admin_challenges_left.saturating_sub(1);
    match (c.admin.as_str(), c.default_admin_key) {
        ("managed", _) if c.admin_blocked => println!(
            "Admin key:     BLOCKED after too many wrong responses: it no longer works on this \
             card, for good (only destroying and recreating the card clears it)"
        ),
        ("managed", true) => println!(
            "Admin key:     the well-known DEFAULT key ({} left): anyone who can read the card's files can reset its PIN",
            counted(c.admin_challenges_left, "challenge", "challenges")
        ),
        ("managed", false) => println!(
            "Admin key:     managed ({} left){}",
            counted(c.admin_challenges_left, "challenge", "challenges"),
            if usable <= 5 {
                format!(
                    "; {usable} usable before only the reserve is left: run `tpmvsc admin refill \
                     {}` soon",
                    c.name
                )
            } else {
                String::new()
            }
        ),
        _ => println!(
            "Admin key:     none (random: no administrator can unblock or reformat this card)"
        ),
    }
    println!("Files:         {}", c.path);
}
