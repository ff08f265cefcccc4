//! Reading secrets and other inputs for the command-line front ends: no-echo prompts on
//! the terminal (new secrets asked twice), one line per secret from standard input for
//! scripts, the first line of a file or of an inherited descriptor (`/dev/fd/N`), and
//! certificate files. Secrets never come from arguments: other users can read
//! `/proc/PID/cmdline`.
//!
//! Every read is bounded. A secret is at most `MAX_SECRET_BYTES` plus its line ending
//! and is read without holding more than that (a longer line is refused, naming the
//! limit); a certificate is at most `MAX_CERT_BYTES`. A secret file that is a device, a
//! socket or a directory is refused by name before it is opened (a FIFO or a pipe such
//! as `/dev/fd/N` is fine); a certificate file must be a regular file. Nothing here prints
//! a secret.

use std::fs::File;
use std::io::{BufRead, ErrorKind, IsTerminal, Read};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::provision::Secret;

/// The longest secret read from a file, standard input or the prompt: PINs and PUKs are
/// at most 127 bytes (the PIN policy's upper bound), and no admin key, master key,
/// response or lockout authorization in hex is longer.
pub(crate) const MAX_SECRET_BYTES: usize = 127;

/// The largest certificate file `import-cert` reads.
pub(crate) const MAX_CERT_BYTES: usize = 1 << 20;

/// A secret line and its line ending (`\r\n`): the most a secret read ever holds.
const LINE_CAP: usize = MAX_SECRET_BYTES + 2;

/// Where secrets come from.
#[derive(Debug)]
pub(crate) struct SecretReader {
    from_stdin: bool,
}

impl SecretReader {
    /// Reads from standard input when `stdin` is set or standard input is not a terminal;
    /// otherwise prompts on the terminal without echo.
    pub(crate) fn new(stdin: bool) -> SecretReader {
        SecretReader {
            from_stdin: stdin || !std::io::stdin().is_terminal(),
        }
    }

    /// After the last secret a command reads: on standard input, refuses more lines than
    /// the command's documented order has (a secret in the wrong place would otherwise
    /// become another secret), before anything is done. Empty lines at the end are fine.
    pub(crate) fn finish(&mut self, order: &str) -> Result<()> {
        if !self.from_stdin {
            return Ok(());
        }
        let mut stdin = std::io::stdin().lock();
        while let Some(line) = read_line_from(&mut stdin, "extra line", "standard input")? {
            if !line.is_empty() {
                return Err(Error::Usage(format!(
                    "standard input has more lines than this command reads ({order}); nothing \
                     was done"
                )));
            }
        }
        Ok(())
    }

    /// True when secrets are read as lines from standard input.
    pub(crate) fn uses_stdin(&self) -> bool {
        self.from_stdin
    }

    /// One existing secret (a current PIN, PUK, admin response, admin key).
    pub(crate) fn current(&mut self, what: &str) -> Result<Secret> {
        if self.from_stdin {
            return read_stdin_line(what);
        }
        prompt(what, &format!("{what}: "))
    }

    /// A current PIN or PUK: [`SecretReader::current`], and one that no card can have
    /// (empty) is refused before any TPM try, see [`check_current_secret`].
    pub(crate) fn current_pin(&mut self, what: &str) -> Result<Secret> {
        let s = self.current(what)?;
        check_current_secret(what, &s)?;
        Ok(s)
    }

    /// A new secret: asked twice on a terminal (they must match), once from standard input;
    /// `check` runs before the second prompt so a policy error shows at once.
    pub(crate) fn new_secret(
        &mut self,
        what: &str,
        check: &dyn Fn(&[u8]) -> Result<()>,
    ) -> Result<Secret> {
        self.new_secret_with(what, check, false)
    }

    /// [`SecretReader::new_secret`], reading the secret twice from standard input when
    /// `twice_on_stdin` (the change and unblock commands: "current, new, new").
    pub(crate) fn new_secret_with(
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
            let first = prompt(what, &format!("New {what}: "))?;
            if let Err(e) = check(&first) {
                eprintln!("{e}");
                if attempt == 3 {
                    return Err(e);
                }
                continue;
            }
            let again = prompt(what, &format!("Repeat the new {what}: "))?;
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
    pub(crate) fn confirm(&self, question: &str) -> Result<bool> {
        if !std::io::stdin().is_terminal() {
            return Ok(false);
        }
        eprint!("{question} [y/N] ");
        let answer = read_line_from(&mut std::io::stdin().lock(), "answer", "the terminal")?
            .unwrap_or_default();
        Ok(matches!(
            String::from_utf8_lossy(&answer).trim(),
            "y" | "Y" | "yes" | "YES" | "Yes"
        ))
    }
}

/// Refuses a current PIN or PUK that no card can have: an empty one, or one longer than
/// [`MAX_SECRET_BYTES`] (the readers here refuse those already). Trying it would spend a
/// retry and a TPM dictionary-attack count for nothing.
pub(crate) fn check_current_secret(what: &str, secret: &[u8]) -> Result<()> {
    if secret.is_empty() {
        return Err(Error::Usage(format!(
            "the {what} is empty; no card has an empty {what}, so it was not tried"
        )));
    }
    if secret.len() > MAX_SECRET_BYTES {
        return Err(Error::Usage(format!(
            "the {what} is longer than {MAX_SECRET_BYTES} bytes, the most a secret can be; \
             nothing was tried"
        )));
    }
    Ok(())
}

/// The first line of a secret file, without its line ending: at most
/// [`MAX_SECRET_BYTES`] (a longer line is refused), and no more than that line and its
/// ending is read. A regular file, a FIFO or a pipe (`/dev/fd/N`, `<(...)`) is read; a
/// device, a socket or a directory is refused by name. `what` names the secret in
/// messages ("PIN", "admin key").
pub(crate) fn read_secret_file(path: &Path, what: &str) -> Result<Secret> {
    let file = open_checked(path, true, || {
        format!("the {what} is read from a regular file, a pipe such as /dev/fd/N, or --stdin")
    })?;
    first_line(Bounded::new(file, path)?, what, path)
}

/// A whole input file of at most `limit` bytes (`what` names it in messages: "certificate
/// file"). Only regular files are read: anything else is refused by name, and a larger
/// file is [`Error::InputTooLarge`].
pub(crate) fn read_input_file(path: &Path, what: &str, limit: usize) -> Result<Vec<u8>> {
    let file = open_checked(path, false, || {
        format!("a {what} must be a regular file (or - for standard input)")
    })?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if usize::try_from(size).map_or(true, |s| s > limit) {
        return Err(too_large(what, limit));
    }
    read_limited(file, what, limit, path)
}

/// All of standard input, at most `limit` bytes (`what` names it in messages).
pub(crate) fn read_input_stdin(what: &str, limit: usize) -> Result<Vec<u8>> {
    read_limited(std::io::stdin().lock(), what, limit, Path::new("<stdin>"))
}

fn read_limited(r: impl Read, what: &str, limit: usize, path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(path, e))?;
    if data.len() > limit {
        return Err(too_large(what, limit));
    }
    Ok(data)
}

/// Opens `path` for reading once its kind is one we read: regular files, and FIFOs and
/// pipes when `pipes_ok`. The kind is checked before opening (opening a device can have
/// effects of its own) and again on what was opened.
fn open_checked(path: &Path, pipes_ok: bool, hint: impl Fn() -> String) -> Result<File> {
    use rustix::fs::{Mode, OFlags};
    let refuse = |kind: &str| {
        Error::Usage(format!(
            "{} is {kind}, not a file: {}",
            path.display(),
            hint()
        ))
    };
    if path.as_os_str().is_empty() {
        return Err(Error::Usage(format!("an empty file name: {}", hint())));
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if let Some(kind) = refused_kind(&meta.file_type(), pipes_ok) {
        return Err(refuse(kind));
    }
    // Non-blocking, so that opening a FIFO nobody writes to returns at once; reads then
    // wait for data a bounded time ([`Bounded`]).
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| Error::io(path, e.into()))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if let Some(kind) = refused_kind(&meta.file_type(), pipes_ok) {
        return Err(refuse(kind));
    }
    Ok(file)
}

/// A file opened non-blocking whose reads wait for data at most until a deadline (the
/// lock timeout, `TPMVSC_LOCK_TIMEOUT`): a FIFO nobody writes to, or a writer that never
/// finishes its line, ends in an error naming the file instead of a hang.
struct Bounded<'a> {
    file: File,
    path: &'a Path,
    deadline: std::time::Instant,
}

impl<'a> Bounded<'a> {
    fn new(file: File, path: &'a Path) -> Result<Bounded<'a>> {
        let wait = crate::config::lock_timeout()?;
        Ok(Bounded {
            file,
            path,
            deadline: std::time::Instant::now() + wait,
        })
    }
}

impl Read for Bounded<'_> {
    /// Waits for data first: a FIFO read without a writer gives end-of-input at once,
    /// while poll waits until a writer has written (or come and gone).
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        loop {
            let left = self
                .deadline
                .saturating_duration_since(std::time::Instant::now());
            let timeout = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "nothing was written to {} in time (a FIFO nobody writes to, or a \
                             line that never ended); the wait is TPMVSC_LOCK_TIMEOUT",
                            self.path.display()
                        ),
                    ));
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            match self.file.read(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }
}

/// The kind of file `t` is, when it is one no input is read from.
fn refused_kind(t: &std::fs::FileType, pipes_ok: bool) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_fifo() {
        (!pipes_ok).then_some("a pipe")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// The first line of `f`, read into a fixed buffer of [`LINE_CAP`] bytes (zeroized):
/// reading stops at the first line ending, at the end of input, or when the buffer is
/// full — then the line is too long.
fn first_line(mut f: impl Read, what: &str, path: &Path) -> Result<Secret> {
    let mut buf = Zeroizing::new([0u8; LINE_CAP]);
    let mut filled = 0;
    while filled < LINE_CAP && !buf[..filled].contains(&b'\n') {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let got = &buf[..filled];
    let line = match got.iter().position(|b| *b == b'\n') {
        Some(i) => &got[..i],
        None if filled == LINE_CAP => {
            return Err(too_long(
                what,
                &format!("the first line of {}", path.display()),
            ));
        }
        None => got,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_SECRET_BYTES {
        return Err(too_long(
            what,
            &format!("the first line of {}", path.display()),
        ));
    }
    Ok(Zeroizing::new(line.to_vec()))
}

fn read_stdin_line(what: &str) -> Result<Secret> {
    read_line_from(&mut std::io::stdin().lock(), what, "standard input")?.ok_or_else(|| {
        Error::Usage(format!(
            "expected the {what} on a line of standard input, found the end of input"
        ))
    })
}

/// One line from `r` without its line ending, or `None` at the end of input. Takes no
/// more from `r` than that line (the next secret is on the next line) and never holds
/// more than [`LINE_CAP`] bytes of it: a longer line is refused.
fn read_line_from(r: &mut impl BufRead, what: &str, from: &str) -> Result<Option<Secret>> {
    let mut line = Zeroizing::new(Vec::with_capacity(LINE_CAP));
    let mut ended = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(from, e)),
        };
        if chunk.is_empty() {
            break;
        }
        let window = &chunk[..chunk.len().min(LINE_CAP - line.len())];
        if let Some(i) = window.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&window[..i]);
            r.consume(i + 1);
            ended = true;
            break;
        }
        let n = window.len();
        line.extend_from_slice(window);
        r.consume(n);
        if line.len() == LINE_CAP {
            return Err(too_long(what, from));
        }
    }
    if !ended && line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > MAX_SECRET_BYTES {
        return Err(too_long(what, from));
    }
    Ok(Some(line))
}

fn prompt(what: &str, text: &str) -> Result<Secret> {
    let s = rpassword::prompt_password(text)
        .map(|s| Zeroizing::new(s.into_bytes()))
        .map_err(|e| {
            Error::Usage(format!(
                "cannot prompt on the terminal ({e}); use --stdin or a --*-file option"
            ))
        })?;
    if s.len() > MAX_SECRET_BYTES {
        return Err(too_long(what, "the terminal"));
    }
    Ok(s)
}

fn too_long(what: &str, from: &str) -> Error {
    Error::Usage(format!(
        "the {what} from {from} is longer than {MAX_SECRET_BYTES} bytes, the most a secret \
         can be; nothing was tried"
    ))
}

fn too_large(what: &str, limit: usize) -> Error {
    Error::InputTooLarge {
        what: what.to_string(),
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(input: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut r = std::io::BufReader::with_capacity(7, input);
        read_line_from(&mut r, "PIN", "test").map(|o| o.map(|s| s.to_vec()))
    }

    fn first(input: &[u8]) -> Result<Vec<u8>> {
        first_line(input, "PIN", Path::new("test")).map(|s| s.to_vec())
    }

    #[test]
    fn a_line_loses_its_ending_and_nothing_after_it_is_taken() {
        let mut r = std::io::BufReader::with_capacity(4, &b"one\r\ntwo\nthree"[..]);
        let mut next = || {
            read_line_from(&mut r, "PIN", "test")
                .unwrap()
                .map(|s| s.to_vec())
        };
        assert_eq!(next(), Some(b"one".to_vec()));
        assert_eq!(next(), Some(b"two".to_vec()));
        assert_eq!(next(), Some(b"three".to_vec()));
        assert_eq!(next(), None);
        assert_eq!(line(b"\n").unwrap(), Some(Vec::new()), "an empty line");
    }

    #[test]
    fn secrets_of_127_bytes_pass_and_longer_ones_are_refused_naming_the_limit() {
        let ok = vec![b'a'; MAX_SECRET_BYTES];
        for ending in [&b""[..], b"\n", b"\r\n", b"\nmore"] {
            let input = [&ok[..], ending].concat();
            assert_eq!(line(&input).unwrap(), Some(ok.clone()), "{ending:?}");
            assert_eq!(first(&input).unwrap(), ok, "{ending:?}");
        }
        for input in [
            vec![b'a'; MAX_SECRET_BYTES + 1],
            [vec![b'a'; MAX_SECRET_BYTES + 1], b"\n".to_vec()].concat(),
            [vec![b'a'; MAX_SECRET_BYTES + 1], b"\r\n".to_vec()].concat(),
            vec![b'a'; 100_000],
        ] {
            for e in [line(&input).unwrap_err(), first(&input).unwrap_err()] {
                assert!(e.to_string().contains("longer than 127 bytes"), "{e}");
                assert_eq!(e.exit_code(), 2);
            }
        }
    }

    #[test]
    fn an_endless_line_is_refused_after_reading_the_limit() {
        // A reader that never ends: reading must stop by itself.
        let mut r = std::io::BufReader::with_capacity(64, std::io::repeat(0));
        let e = read_line_from(&mut r, "PIN", "test").unwrap_err();
        assert!(e.to_string().contains("127"), "{e}");
        let e = first_line(std::io::repeat(b'x'), "PIN", Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("127"), "{e}");
    }

    #[test]
    fn empty_current_secrets_are_refused() {
        assert!(check_current_secret("PIN", b"").is_err());
        assert!(check_current_secret("PIN", &[b'1'; 128]).is_err());
        assert!(check_current_secret("PIN", b"1234").is_ok());
    }

    #[test]
    fn limited_reads_stop_one_byte_past_the_limit() {
        let e =
            read_limited(std::io::repeat(0), "certificate file", 10, Path::new("t")).unwrap_err();
        assert!(matches!(e, Error::InputTooLarge { limit: 10, .. }), "{e:?}");
        assert_eq!(
            read_limited(&b"0123456789"[..], "x", 10, Path::new("t")).unwrap(),
            b"0123456789"
        );
    }
}
