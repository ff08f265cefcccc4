//! Lock files (`flock`) in a [`CheckedDir`]: opened without following a link, an existing
//! one without `O_CREAT` (Debian's `protected_regular` refuses creating opens of another
//! user's file in sticky directories, DESIGN.md §6), a new one with `O_CREAT|O_EXCL`. A
//! wait for a lock is bounded (the caller says how long: the configured lock timeout) and
//! then fails
//! naming the lock file and the process that holds it, read from `/proc/locks`.
//!
//! `flock` has no timeout, so a wait is a `LOCK_NB` poll, from 1 ms doubling up to 5 ms:
//! a released lock is seen within 5 ms (the TPM handoff between processes, DESIGN.md §6,
//! stays quick), at about 200 cheap system calls per second of waiting.

use std::fs::{File, TryLockError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{CheckedDir, check_name, type_name};
use crate::error::{Error, LockBusy, LockHolder, Result};

/// Longest pause between two tries of a busy lock.
const MAX_PAUSE: Duration = Duration::from_millis(5);

/// An open lock file; the lock (if taken) is released when this is dropped or when the
/// process ends.
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    path: PathBuf,
}

impl LockFile {
    /// Takes the exclusive lock, waiting at most `timeout`.
    pub(crate) fn lock(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        self.lock_until(started, started + timeout)
    }

    /// Takes the exclusive lock, waiting until `deadline`; the error counts the wait from
    /// `started`.
    pub(crate) fn lock_until(&self, started: Instant, deadline: Instant) -> Result<()> {
        let mut pause = Duration::from_millis(1);
        loop {
            if self.try_lock()? {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.busy(now - started));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Takes the exclusive lock if it is free.
    pub(crate) fn try_lock(&self) -> Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(Error::io(&self.path, e)),
        }
    }

    /// True when someone holds the lock exclusively (checked with a shared lock that is
    /// released at once). Only meaningful on a file this process does not lock itself.
    pub(crate) fn held_by_others(&self) -> bool {
        match self.file.try_lock_shared() {
            Ok(()) => {
                let _ = self.file.unlock();
                false
            }
            Err(_) => true,
        }
    }

    /// Releases the lock (dropping the file does too).
    pub(crate) fn unlock(&self) {
        let _ = self.file.unlock();
    }

    /// The lock file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The error for a wait that ended after `waited`, naming who holds the lock.
    pub(crate) fn busy(&self, waited: Duration) -> Error {
        Error::LockBusy(LockBusy {
            path: self.path.clone(),
            waited,
            holders: holders_of(&self.file),
        })
    }
}

/// Opens (or creates) the lock file `name` in `dir`.
pub(super) fn open(dir: &CheckedDir, name: &str) -> Result<LockFile> {
    let path = dir.join(name);
    check_name(name, &path)?;
    let existing = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let new = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // A file created between our two opens makes the O_EXCL open fail: open it again.
    for _ in 0..8 {
        // Read-write where allowed (NFS emulates flock with POSIX locks, whose exclusive
        // kind needs a writable descriptor), read-only where not (root's lock file seen by
        // a user, a read-only file system).
        let opened =
            match rustix::fs::openat(&*dir.fd, name, existing | OFlags::RDWR, Mode::empty()) {
                Err(Errno::ACCESS | Errno::PERM | Errno::ROFS) => {
                    rustix::fs::openat(&*dir.fd, name, existing | OFlags::RDONLY, Mode::empty())
                }
                r => r,
            };
        match opened {
            Ok(fd) => return checked(File::from(fd), path),
            Err(Errno::NOENT) => {}
            Err(Errno::LOOP) => return Err(refused(&path, "a symbolic link")),
            Err(e) => return Err(Error::io(&path, e.into())),
        }
        dir.check_writable()?;
        match rustix::fs::openat(&*dir.fd, name, new, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => {
                return Ok(LockFile {
                    file: File::from(fd),
                    path,
                });
            }
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(dir.write_error(&path, e)),
        }
    }
    Err(Error::io(
        &path,
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it keeps appearing and disappearing; someone is tampering with the lock directory",
        ),
    ))
}

fn checked(file: File, path: PathBuf) -> Result<LockFile> {
    let st = rustix::fs::fstat(&file).map_err(|e| Error::io(&path, e.into()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(refused(&path, type_name(kind)));
    }
    Ok(LockFile { file, path })
}

fn refused(path: &Path, is: &str) -> Error {
    Error::StorePermissions {
        path: path.to_path_buf(),
        why: format!(
            "refusing to use this lock file: it is {is}, not a regular file (tpmvsc follows \
             no links in its directories). Remove it if you did not make it"
        ),
    }
}

/// The processes `/proc/locks` shows holding a `flock` on `file`.
fn holders_of(file: &File) -> Vec<LockHolder> {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = file.metadata() else {
        return Vec::new();
    };
    let mut text = String::new();
    let read = File::open("/proc/locks")
        .and_then(|f| f.take(4 << 20).read_to_string(&mut text))
        .is_ok();
    if !read {
        return Vec::new();
    }
    let dev = md.dev();
    flock_holders(
        &text,
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        md.ino(),
    )
    .into_iter()
    .map(|pid| LockHolder {
        pid,
        command: proc_comm(pid),
        uid: rustix::fs::stat(format!("/proc/{pid}"))
            .ok()
            .map(|st| st.st_uid),
    })
    .collect()
}

fn proc_comm(pid: u32) -> Option<String> {
    let mut s = String::new();
    File::open(format!("/proc/{pid}/comm"))
        .and_then(|f| f.take(64).read_to_string(&mut s))
        .ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Pids holding a `FLOCK` on the inode `ino` of device `major:minor`, from the text of
/// `/proc/locks` (`N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END`, major and minor
/// in hex; waiters are marked `->` and left out). When no line matches the device too
/// (stacked file systems report another device than the superblock's), lines matching the
/// inode alone are taken.
fn flock_holders(text: &str, major: u32, minor: u32, ino: u64) -> Vec<u32> {
    let mut exact = Vec::new();
    let mut by_inode = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace().skip(1);
        if fields.next() != Some("FLOCK") {
            continue;
        }
        let mut fields = fields.skip(2);
        let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Some(place) = fields.next() else {
            continue;
        };
        let mut parts = place.split(':');
        let (Some(maj), Some(min), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if i.parse::<u64>().ok() != Some(ino) {
            continue;
        }
        let same_dev = u32::from_str_radix(maj, 16).ok() == Some(major)
            && u32::from_str_radix(min, 16).ok() == Some(minor);
        let list = if same_dev { &mut exact } else { &mut by_inode };
        if !list.contains(&pid) {
            list.push(pid);
        }
    }
    if exact.is_empty() { by_inode } else { exact }
}

#[cfg(test)]
mod tests {
    use super::super::DirRule;
    use super::*;
    use std::os::unix::fs::symlink;

    const SAMPLE: &str = "\
1: POSIX  ADVISORY  WRITE 700 00:1a:42 0 EOF
2: FLOCK  ADVISORY  WRITE 1234 fd:01:42 0 EOF
2: -> FLOCK  ADVISORY  WRITE 999 fd:01:42 0 EOF
3: FLOCK  ADVISORY  READ  77 08:02:42 0 EOF
4: FLOCK  ADVISORY  WRITE 55 fd:01:43 0 EOF
";

    #[test]
    fn proc_locks_lines_give_the_holder_not_the_waiters() {
        assert_eq!(flock_holders(SAMPLE, 0xfd, 1, 42), vec![1234]);
        assert_eq!(flock_holders(SAMPLE, 0xfd, 1, 43), vec![55]);
        // Another device number than the superblock's: the inode alone decides.
        assert_eq!(flock_holders(SAMPLE, 0, 40, 42), vec![1234, 77]);
        assert!(flock_holders(SAMPLE, 0xfd, 1, 44).is_empty());
    }

    #[test]
    fn a_busy_lock_fails_after_the_bound_naming_this_process_as_holder() {
        let t = tempfile::tempdir().unwrap();
        let d = CheckedDir::open(t.path(), "lock directory", DirRule::Lock)
            .unwrap()
            .unwrap();
        let held = d.lock_file("x.lock").unwrap();
        held.lock(Duration::from_secs(1)).unwrap();
        // A second open file description conflicts with the first, even in one process.
        let other = d.lock_file("x.lock").unwrap();
        let started = Instant::now();
        let e = other
            .lock_until(started, started + Duration::from_millis(200))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let Error::LockBusy(b) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(b.holders.len(), 1, "{b:?}");
        assert_eq!(b.holders[0].pid, std::process::id());
        let m = e.to_string();
        assert!(
            m.contains("x.lock") && m.contains(&std::process::id().to_string()),
            "{m}"
        );
        assert!(m.contains(crate::error::LOCK_TIMEOUT_ENV), "{m}");
        assert!(other.held_by_others());
        held.unlock();
        assert!(other.try_lock().unwrap());
    }

    #[test]
    fn a_dangling_lock_link_is_refused_and_nothing_is_created_at_its_target() {
        let t = tempfile::tempdir().unwrap();
        let d = CheckedDir::open(t.path(), "lock directory", DirRule::Lock)
            .unwrap()
            .unwrap();
        let target = t.path().join("chosen-by-attacker");
        symlink(&target, t.path().join("c.lock")).unwrap();
        let e = d.lock_file("c.lock").unwrap_err().to_string();
        assert!(e.contains("c.lock") && e.contains("symbolic link"), "{e}");
        assert!(!target.exists());
    }
}
