//! Reading secrets for the command-line front ends: no-echo prompts on the terminal
//! (new secrets asked twice), one line per secret from standard input for scripts, or
//! the first line of a file. Nothing here prints a secret.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provision::Secret;

/// Where secrets come from.
#[derive(Debug)]
pub struct SecretReader {
    from_stdin: bool,
}

impl SecretReader {
    /// Reads from standard input when `stdin` is set or standard input is not a terminal;
    /// otherwise prompts on the terminal without echo.
    pub fn new(stdin: bool) -> SecretReader {
        SecretReader {
            from_stdin: stdin || !std::io::stdin().is_terminal(),
        }
    }

    /// True when secrets are read as lines from standard input.
    pub fn uses_stdin(&self) -> bool {
        self.from_stdin
    }

    /// One existing secret (a current PIN, PUK, admin response).
    pub fn current(&mut self, what: &str) -> Result<Secret> {
        if self.from_stdin {
            return read_stdin_line(what);
        }
        prompt(&format!("{what}: "))
    }

    /// A new secret: asked twice on a terminal (they must match), once from standard input;
    /// `check` runs before the second prompt so a policy error shows at once.
    pub fn new_secret(
        &mut self,
        what: &str,
        check: &dyn Fn(&[u8]) -> Result<()>,
    ) -> Result<Secret> {
        self.new_secret_with(what, check, false)
    }

    /// [`SecretReader::new_secret`], reading the secret twice from standard input when
    /// `twice_on_stdin` (the change and unblock commands: "current, new, new").
    pub fn new_secret_with(
        &mut self,
        what: &str,
        check: &dyn Fn(&[u8]) -> Result<()>,
        twice_on_stdin: bool,
    ) -> Result<Secret> {
        if self.from_stdin {
            let s = read_stdin_line(what)?;
            check(&s)?;
            if twice_on_stdin && *read_stdin_line(what)? != *s {
                return Err(Error::Usage(format!("the two new {what} lines differ")));
            }
            return Ok(s);
        }
        for attempt in 1..=3 {
            let first = prompt(&format!("New {what}: "))?;
            if let Err(e) = check(&first) {
                eprintln!("{e}");
                if attempt == 3 {
                    return Err(e);
                }
                continue;
            }
            let again = prompt(&format!("Repeat the new {what}: "))?;
            if *first == *again {
                return Ok(first);
            }
            eprintln!("The two entries differ; try again.");
        }
        Err(Error::Usage(format!(
            "the new {what} was not entered the same way twice"
        )))
    }

    /// Asks a yes/no question on the terminal; false without a terminal.
    pub fn confirm(&self, question: &str) -> Result<bool> {
        if !std::io::stdin().is_terminal() {
            return Ok(false);
        }
        eprint!("{question} [y/N] ");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("<stdin>", e))?;
        Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

/// The first line of a file, without its line ending.
pub fn read_secret_file(path: &Path) -> Result<Secret> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(Zeroizing::new(line.to_vec()))
}

fn read_stdin_line(what: &str) -> Result<Secret> {
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("<stdin>", e))?;
    if n == 0 {
        return Err(Error::Usage(format!(
            "expected the {what} on a line of standard input, found the end of input"
        )));
    }
    let s = line.trim_end_matches(['\n', '\r']);
    Ok(Zeroizing::new(s.as_bytes().to_vec()))
}

fn prompt(text: &str) -> Result<Secret> {
    rpassword::prompt_password(text)
        .map(|s| Zeroizing::new(s.into_bytes()))
        .map_err(|e| {
            Error::Usage(format!(
                "cannot prompt on the terminal ({e}); use --stdin or a --*-file option"
            ))
        })
}
