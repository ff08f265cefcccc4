//! The two command-line front ends over the provisioning engine (`crate::provision`):
//! `tpmvsc` (this module's [`tpmvsc_main`], a command per file below) and `tpmvscmgr`
//! (Microsoft's syntax, [`tpmvscmgr::main`]). Reading secrets (never from argv), parsing
//! the Windows syntax and printing live here; the engine prints nothing.
//!
//! Exit codes per DESIGN.md §4: 0 ok, 1 failed, 2 usage, 3 wrong PIN/PUK/response, 4
//! blocked or TPM lockout.

use std::process::ExitCode;

use clap::Parser;

use crate::store::Store;
use args::{AdminCmd, Cli, Cmd};

// Standard output through `output::print_out`: a closed pipe ends the command quietly
// instead of panicking (these shadow the standard macros of the same names in the CLI).
macro_rules! println {
    () => {
        $crate::cli::output::print_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::print_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

macro_rules! print {
    ($($arg:tt)*) => {
        $crate::cli::output::print_out(format_args!($($arg)*))
    };
}

mod admin;
mod args;
mod cards;
mod enroll;
mod output;
pub mod prompt;
mod secrets;
mod system;
pub mod tpmvscmgr;
pub(crate) mod winsyntax;

/// The `tpmvsc` command line as clap describes it (for man pages and shell completions).
pub fn tpmvsc_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// A description of `tpmvscmgr` for its man page: the Windows syntax is parsed by hand,
/// so the page carries its help text.
pub fn tpmvscmgr_command() -> clap::Command {
    clap::Command::new("tpmvscmgr")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Create and destroy TPM virtual smart cards with the Windows tpmvscmgr syntax")
        .long_about(
            "tpmvscmgr takes the command line of Windows' tpmvscmgr.exe (create /name ... \
             /pin prompt, destroy /instance ...) and does what tpmvsc does with it; see \
             tpmvsc(1) for everything else.",
        )
        .after_long_help(winsyntax::usage(None))
        .disable_help_flag(true)
        .disable_version_flag(true)
}

/// The `tpmvsc` program.
pub fn tpmvsc_main() -> ExitCode {
    crate::tpm::quiet_tss_logging_for_cli();
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

/// Runs one parsed command: what interrupted commands left is resolved first (for the
/// commands that use cards), then one function per command.
fn run(cli: Cli) -> crate::Result<()> {
    args::refuse_secrets_in_argv(&cli.command)?;
    let store = Store::open()?;
    let uses_cards = !matches!(
        cli.command,
        Cmd::Simulator { .. }
            | Cmd::Install { .. }
            | Cmd::Admin {
                action: AdminCmd::Response { .. }
            }
    );
    if uses_cards && let Err(e) = crate::provision::recover::recover(&store) {
        eprintln!("tpmvsc: warning: an interrupted operation could not be finished yet: {e}");
    }
    let s = &store;
    match cli.command {
        Cmd::Create(a) => cards::create(s, a),
        Cmd::Destroy { card, yes } => cards::destroy(s, card, yes),
        Cmd::List { json } => cards::list(s, json),
        Cmd::Info { card, json } => cards::info(s, card, json),
        Cmd::CheckPin { card, pin } => secrets::check_pin(s, card, pin),
        Cmd::ChangePin { card, stdin } => secrets::change_pin(s, card, stdin),
        Cmd::ChangePuk { card, stdin } => secrets::change_puk(s, card, stdin),
        Cmd::Unblock { card, auth } => {
            secrets::unblock(s, card, auth.puk, auth.response_file, auth.stdin)
        }
        Cmd::Format { card, auth, yes } => {
            secrets::format(s, card, auth.puk, auth.response_file, auth.stdin, yes)
        }
        Cmd::Keygen {
            card,
            kind,
            label,
            pin,
            json,
        } => enroll::keygen(s, card, kind, label, pin, json),
        Cmd::Keys { card, json } => enroll::keys(s, card, json),
        Cmd::Csr {
            card,
            key,
            subject,
            san,
            out,
            pin,
        } => enroll::csr(s, card, key, subject, san, out, pin),
        Cmd::ImportCert { card, file, json } => enroll::import_cert(s, card, file, json),
        Cmd::Certs { card, json } => enroll::certs(s, card, json),
        Cmd::Admin { action } => admin::run(s, action),
        Cmd::Tpm { action } => system::tpm(s, action),
        Cmd::Install {
            lib_dir,
            modules_dir,
            uninstall,
        } => system::install(&lib_dir, &modules_dir, uninstall),
        Cmd::Simulator {
            action,
            system,
            json,
        } => system::simulator(s, action, system, json),
    }
}
