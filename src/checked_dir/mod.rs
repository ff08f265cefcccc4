//! Directories tpmvsc keeps files in — the card store, its card directories, the lock and
//! runtime directories — opened once, checked, and used only through that open directory
//! (DESIGN.md §2, §6). Files only: no TPM and no card knowledge here.
//!
//! The threat: someone who can write such a directory (or its parent) plants a symbolic
//! link at a name tpmvsc is about to write (a temporary file, a lock file) and so makes
//! root or the directory's owner overwrite or create a file of their choosing; or a device
//! or FIFO at a name tpmvsc reads (`/dev/zero` as a card file) so that every reader hangs;
//! or a directory of their own where tpmvsc expects its own. So:
//!
//! - a directory is opened with `O_DIRECTORY|O_NOFOLLOW`, `fstat`ed, and refused unless
//!   its owner and mode pass its [`DirRule`]; every later operation is relative to that
//!   descriptor (`openat`, `renameat`, `unlinkat`), so a directory swapped afterwards is
//!   never used;
//! - every file is opened with `O_NOFOLLOW`; reads take regular files only, and at most a
//!   limit the format never exceeds;
//! - new files are created with `O_CREAT|O_EXCL` under an unpredictable name, then renamed
//!   into place; existing lock files are opened without `O_CREAT` ([`lock_file`]);
//! - nothing is written into a directory the caller does not own, root included
//!   ([`CheckedDir::check_writable`]).

pub(crate) mod lock_file;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
pub(crate) use lock_file::LockFile;

/// Who may own a directory tpmvsc uses, and which permission bits it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirRule {
    /// The card store and its directories: owned by the caller or by root, not writable
    /// by group or others. Root may read a directory of any owner (the system store holds
    /// users' cards; `tpmvsc list` as root shows them) but never writes into one it does
    /// not own ([`CheckedDir::check_writable`]).
    Store,
    /// Lock and runtime directories, where every use may create files: owned by the
    /// caller or by root, not writable by group or others — for root that means its own.
    Lock,
    /// A directory only the caller may use (the `/tmp/tpmvsc-UID` fallback, the
    /// simulator's state): owned by the caller, no permission bits for group or others.
    Private,
    /// A configuration directory: owned by the caller or by root, not writable by group
    /// or others (what it says decides which TPM and which store every process uses).
    Config,
}

/// An open, checked directory. Cloning shares the descriptor.
#[derive(Debug, Clone)]
pub(crate) struct CheckedDir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    what: &'static str,
}

/// What a directory entry is, as `lstat` sees it (links are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File,
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// One entry of a [`CheckedDir`] (never `.` or `..`; names that are not UTF-8 are left
/// out: tpmvsc makes none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub kind: EntryKind,
}

impl CheckedDir {
    /// Opens the existing directory `path` (`what` names it in messages, e.g. "card
    /// store") and checks it against `rule`. The last component must not be a symbolic
    /// link; the components above it are the caller's configuration and are resolved.
    /// `Ok(None)` when it does not exist.
    pub(crate) fn open(
        path: &Path,
        what: &'static str,
        rule: DirRule,
    ) -> Result<Option<CheckedDir>> {
        match rustix::fs::openat(rustix::fs::CWD, path, dir_flags(), Mode::empty()) {
            Ok(fd) => CheckedDir::checked(fd, path.to_path_buf(), what, rule).map(Some),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(open_dir_error(rustix::fs::CWD, path, path, what, e)),
        }
    }

    /// Like [`CheckedDir::open`], creating the directory (mode 0700) and its missing
    /// parents (0700 too, the XDG base-directory rule) first. A parent is created only
    /// inside a directory that belongs to the caller or root (for root: to root).
    pub(crate) fn create(path: &Path, what: &'static str, rule: DirRule) -> Result<CheckedDir> {
        create_missing(path, what)?;
        CheckedDir::open(path, what, rule)?.ok_or_else(|| {
            Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("the {what} disappeared right after it was created"),
                ),
            )
        })
    }

    /// Opens the subdirectory `name` (not following a link) and checks it.
    /// `Ok(None)` when it does not exist.
    pub(crate) fn open_dir(
        &self,
        name: &str,
        what: &'static str,
        rule: DirRule,
    ) -> Result<Option<CheckedDir>> {
        let path = self.join(name);
        check_name(name, &path)?;
        match rustix::fs::openat(&*self.fd, name, dir_flags(), Mode::empty()) {
            Ok(fd) => CheckedDir::checked(fd, path, what, rule).map(Some),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(open_dir_error(&*self.fd, Path::new(name), &path, what, e)),
        }
    }

    /// Opens the subdirectory `name`, creating it with mode 0700 when missing.
    pub(crate) fn create_dir(
        &self,
        name: &str,
        what: &'static str,
        rule: DirRule,
    ) -> Result<CheckedDir> {
        if let Some(d) = self.open_dir(name, what, rule)? {
            return Ok(d);
        }
        self.check_writable()?;
        match rustix::fs::mkdirat(&*self.fd, name, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(self.write_error(&self.join(name), e)),
        }
        self.open_dir(name, what, rule)?.ok_or_else(|| {
            Error::io(
                self.join(name),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the directory disappeared right after it was created",
                ),
            )
        })
    }

    /// The directory's path (for messages; operations use the open descriptor).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory (for messages).
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// True when the directory lives in memory (tmpfs or ramfs): what it holds was
    /// written since the last boot, by someone who could reach it while the machine ran,
    /// never by an offline attacker with the disk.
    pub(crate) fn is_volatile(&self) -> bool {
        /// `TMPFS_MAGIC` and `RAMFS_MAGIC` of statfs(2).
        const IN_MEMORY: [i64; 2] = [0x0102_1994, 0x8584_58f6];
        // f_type is i64 here, i32 or u32 on other targets.
        #[allow(clippy::useless_conversion)]
        rustix::fs::fstatfs(&*self.fd).is_ok_and(|s| IN_MEMORY.contains(&i64::from(s.f_type)))
    }

    /// Refuses a directory that group or others may read or write, or that another user
    /// owns (root aside): for directories holding secrets, such as a card's blobs and
    /// salts (DESIGN.md §2).
    pub(crate) fn check_private(&self) -> Result<()> {
        let (uid, mode) = self.owner_and_mode()?;
        if mode & 0o077 != 0 {
            return Err(Error::StorePermissions {
                path: self.path.clone(),
                why: format!(
                    "{} is open to other users (mode {mode:o}); refusing to use it. \
                     If nobody else could have changed it, run `chmod 700 {}`",
                    self.what,
                    self.path.display()
                ),
            });
        }
        let me = rustix::process::geteuid();
        if uid != me.as_raw() && !me.is_root() {
            return Err(Error::StorePermissions {
                path: self.path.clone(),
                why: format!("{} belongs to uid {uid}, not to you", self.what),
            });
        }
        Ok(())
    }

    /// Refuses to write into a directory the caller does not own — root included: root
    /// following a link planted in a user's directory would overwrite any file on the
    /// system — or one on a read-only file system (so the error names this directory, not
    /// some file in it). Every change below calls this first.
    pub(crate) fn check_writable(&self) -> Result<()> {
        let me = rustix::process::geteuid().as_raw();
        let (uid, mode) = self.owner_and_mode()?;
        if may_write(uid, me) {
            let vfs = rustix::fs::fstatvfs(&*self.fd).map_err(|e| self.io(&self.path, e))?;
            if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
                return Err(self.write_error(&self.path, Errno::ROFS));
            }
            return Ok(());
        }
        if me == 0 {
            return Err(Error::StorePermissions {
                path: self.path.clone(),
                why: format!(
                    "refusing to write into this {} as root: it belongs to uid {uid} (mode {mode:04o}). \
                     Root writes only into directories it owns, so that links or files \
                     another user planted cannot redirect its writes; run the command as \
                     uid {uid} instead",
                    self.what
                ),
            });
        }
        Err(Error::ReadOnly {
            path: self.path.clone(),
            why: format!(
                "the {} belongs to uid {uid} (mode {mode:04o}), not to you (uid {me}): only \
                 its owner can change it",
                self.what
            ),
        })
    }

    /// The entries of the directory (not `.` and `..`), in no particular order.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>> {
        let dir = rustix::fs::Dir::read_from(&*self.fd).map_err(|e| self.io(&self.path, e))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| self.io(&self.path, e))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let Some(name) = OsStr::from_bytes(raw).to_str().map(str::to_string) else {
                continue;
            };
            let kind = match entry.file_type() {
                FileType::Unknown => match self.kind_of(&name)? {
                    Some(k) => k,
                    None => continue,
                },
                t => kind_of_type(t),
            };
            out.push(Entry { name, kind });
        }
        Ok(out)
    }

    /// What `name` is (a link is not followed); `None` when it does not exist.
    pub(crate) fn kind_of(&self, name: &str) -> Result<Option<EntryKind>> {
        let path = self.join(name);
        check_name(name, &path)?;
        match rustix::fs::statat(&*self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(kind_of_type(FileType::from_raw_mode(st.st_mode)))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    /// True when `name` exists (as anything, a dangling link included).
    pub(crate) fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.kind_of(name)?.is_some())
    }

    /// Reads the regular file `name`, at most `limit` bytes. A link, device, FIFO or
    /// socket, or a longer file, is an error naming the file; nothing blocks.
    pub(crate) fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        self.read_if_exists(name, limit)?.ok_or_else(|| {
            Error::io(
                self.join(name),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }

    /// [`CheckedDir::read`], with `Ok(None)` when the file does not exist.
    pub(crate) fn read_if_exists(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.join(name);
        check_name(name, &path)?;
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&*self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(not_a_file(&path, "a symbolic link")),
            Err(e) => return Err(self.io(&path, e)),
        };
        read_regular(File::from(fd), &path, limit).map(Some)
    }

    /// Reads the regular file `name` if it exists, at most `limit` bytes, when it is as
    /// trustworthy as its directory: owned by the caller or by root and not writable by
    /// group or others (a configuration file). Anything else is refused by name.
    pub(crate) fn read_trusted(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.join(name);
        check_name(name, &path)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = match rustix::fs::openat(&*self.fd, name, flags, Mode::empty()) {
            Ok(f) => File::from(f),
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(not_a_file(&path, "a symbolic link")),
            Err(e) => return Err(self.io(&path, e)),
        };
        let st = rustix::fs::fstat(&file).map_err(|e| self.io(&path, e))?;
        let me = rustix::process::geteuid().as_raw();
        let (uid, mode) = (st.st_uid, st.st_mode & 0o7777);
        if (uid != me && uid != 0) || mode & 0o022 != 0 {
            return Err(Error::StorePermissions {
                path,
                why: format!(
                    "refusing to read it: it belongs to uid {uid} with mode {mode:04o}; a \
                     configuration file must belong to you (uid {me}) or root and be \
                     writable by nobody else, since it decides which TPM and which cards \
                     are used"
                ),
            });
        }
        read_regular(file, &path, limit).map(Some)
    }

    /// Sets the directory's owner and mode (root's directories for every user: the
    /// system simulator's).
    pub(crate) fn set_owner_and_mode(&self, uid: u32, gid: u32, mode: u32) -> Result<()> {
        rustix::fs::fchown(
            &*self.fd,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
        )
        .and_then(|()| rustix::fs::fchmod(&*self.fd, Mode::from_raw_mode(mode)))
        .map_err(|e| self.io(&self.path, e))
    }

    /// Makes the empty regular file `name` readable by everyone (mode 0644), when missing:
    /// a lock file every user opens read-only to `flock` it.
    pub(crate) fn make_shared_file(&self, name: &str) -> Result<()> {
        let path = self.join(name);
        check_name(name, &path)?;
        let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*self.fd, name, flags, Mode::from_raw_mode(0o644)).map_err(
            |e| match e {
                Errno::LOOP => not_a_file(&path, "a symbolic link"),
                e => self.io(&path, e),
            },
        )?;
        let file = File::from(fd);
        let st = rustix::fs::fstat(&file).map_err(|e| self.io(&path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(not_a_file(
                &path,
                type_name(FileType::from_raw_mode(st.st_mode)),
            ));
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o644)).map_err(|e| self.io(&path, e))
    }

    /// [`CheckedDir::write_atomic`] (durable) for a file every user reads: mode 0644.
    pub(crate) fn write_shared_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.write_atomic(name, bytes, true)?;
        let path = self.join(name);
        let fd = rustix::fs::openat(
            &*self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io(&path, e))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644)).map_err(|e| self.io(&path, e))
    }

    /// Replaces (or creates) `name` with `bytes`, atomically (mode 0600): see
    /// [`write_atomic_in`].
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8], durable: bool) -> Result<()> {
        self.check_writable()?;
        write_atomic_in(self.fd.as_fd(), &self.path, name, bytes, durable)
            .map_err(|e| self.relabel_write_error(e))
    }

    /// Removes the file (or link) `name`; the error names it, a missing one included.
    pub(crate) fn remove_file(&self, name: &str) -> Result<()> {
        let path = self.join(name);
        check_name(name, &path)?;
        self.check_writable()?;
        rustix::fs::unlinkat(&*self.fd, name, AtFlags::empty())
            .map_err(|e| self.write_error(&path, e))
    }

    /// Removes `name` and, when it is a directory, everything under it. Links are
    /// removed, never followed. A missing `name` is not an error.
    pub(crate) fn remove_tree(&self, name: &str) -> Result<()> {
        let path = self.join(name);
        check_name(name, &path)?;
        self.check_writable()?;
        remove_tree_at(self.fd.as_fd(), name, &path).map_err(|e| self.relabel_write_error(e))
    }

    /// Renames `from` to `to` in this directory; refuses to replace an existing `to`.
    pub(crate) fn rename_new(&self, from: &str, to: &str) -> Result<()> {
        self.rename_with(from, to, RenameFlags::NOREPLACE)
    }

    /// Swaps `a` and `b` in one `renameat2(RENAME_EXCHANGE)`: a crash leaves either.
    pub(crate) fn exchange(&self, a: &str, b: &str) -> Result<()> {
        self.rename_with(a, b, RenameFlags::EXCHANGE)
    }

    /// Fsyncs the directory, so renames and creations in it survive a crash.
    pub(crate) fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&*self.fd).map_err(|e| self.io(&self.path, e))
    }

    /// Opens the lock file `name`, creating it when missing: see [`lock_file`].
    pub(crate) fn lock_file(&self, name: &str) -> Result<LockFile> {
        lock_file::open(self, name)
    }

    // ----- helpers -----

    fn checked(fd: OwnedFd, path: PathBuf, what: &'static str, rule: DirRule) -> Result<Self> {
        let dir = CheckedDir {
            fd: Arc::new(fd),
            path,
            what,
        };
        dir.check_rule(rule, rustix::process::geteuid().as_raw())?;
        Ok(dir)
    }

    /// The owner and permission bits, as they are now.
    fn owner_and_mode(&self) -> Result<(u32, u32)> {
        let st = rustix::fs::fstat(&*self.fd).map_err(|e| self.io(&self.path, e))?;
        Ok((st.st_uid, st.st_mode & 0o7777))
    }

    fn check_rule(&self, rule: DirRule, me: u32) -> Result<()> {
        let (uid, mode) = self.owner_and_mode()?;
        let what = self.what;
        let owner_ok = match rule {
            DirRule::Store => uid == me || uid == 0 || me == 0,
            DirRule::Lock | DirRule::Config => uid == me || uid == 0,
            DirRule::Private => uid == me,
        };
        let bits = match rule {
            DirRule::Store | DirRule::Lock | DirRule::Config => 0o022,
            DirRule::Private => 0o077,
        };
        let refuse = |why: String| {
            Err(Error::StorePermissions {
                path: self.path.clone(),
                why: format!("refusing to use this {what}: {why}"),
            })
        };
        if !owner_ok {
            let whose = if rule == DirRule::Private {
                format!("you (uid {me})")
            } else {
                format!("you (uid {me}) or root")
            };
            return refuse(format!(
                "it belongs to uid {uid} (mode {mode:04o}), not to {whose}. Someone else's \
                 directory is never trusted: it could hold files they planted. Move it away \
                 and run the command again, or point tpmvsc at a directory of your own"
            ));
        }
        if mode & bits != 0 {
            let who = if rule == DirRule::Private {
                "group or others have access to it"
            } else {
                "group or others can write it"
            };
            return refuse(format!(
                "{who} (mode {mode:04o}, owner uid {uid}). If nobody else could have changed \
                 its content, run `chmod go-rwx {}`; otherwise move it away and run the \
                 command again",
                self.path.display()
            ));
        }
        Ok(())
    }

    fn rename_with(&self, from: &str, to: &str, flags: RenameFlags) -> Result<()> {
        let (pf, pt) = (self.join(from), self.join(to));
        check_name(from, &pf)?;
        check_name(to, &pt)?;
        self.check_writable()?;
        rustix::fs::renameat_with(&*self.fd, from, &*self.fd, to, flags)
            .map_err(|e| self.write_error(&pt, e))
    }

    fn io(&self, path: &Path, e: Errno) -> Error {
        Error::io(path, e.into())
    }

    /// A failed change: a read-only file system or a refused permission is reported as
    /// this directory being read-only, naming it, rather than as the file's error.
    fn write_error(&self, path: &Path, e: Errno) -> Error {
        match e {
            Errno::ROFS => {
                self.read_only(format!("the {} is on a read-only file system", self.what))
            }
            Errno::ACCESS | Errno::PERM => {
                let (uid, mode) = self.owner_and_mode().unwrap_or((u32::MAX, 0));
                self.read_only(format!(
                    "you (uid {}) may not write the {} (owner uid {uid}, mode {mode:04o})",
                    rustix::process::geteuid().as_raw(),
                    self.what,
                ))
            }
            e => self.io(path, e),
        }
    }

    fn relabel_write_error(&self, e: Error) -> Error {
        match e {
            Error::Io { path, source } => match source.raw_os_error().map(Errno::from_raw_os_error)
            {
                Some(errno @ (Errno::ROFS | Errno::ACCESS | Errno::PERM)) => {
                    self.write_error(&path, errno)
                }
                _ => Error::Io { path, source },
            },
            other => other,
        }
    }

    fn read_only(&self, why: String) -> Error {
        Error::ReadOnly {
            path: self.path.clone(),
            why,
        }
    }
}

/// Replaces (or creates) `name` in the directory `dir` (shown as `dir_path`) with
/// `bytes`, atomically, mode 0600: a new temporary file is made with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` under an unpredictable name (a new name on `EEXIST`),
/// written, fsynced when `durable`, renamed over `name`, and the directory is fsynced when
/// `durable`. Without `durable` (retry counters, DESIGN.md §6) a crash may lose the write
/// but never leaves a torn file. No ownership checks: [`CheckedDir::write_atomic`] adds
/// them; this is also the way to write a file the user named (an exported certificate).
pub(crate) fn write_atomic_in(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> Result<()> {
    let path = dir_path.join(name);
    check_name(name, &path)?;
    let (tmp, file) = create_temp(dir, dir_path, name, random_suffix)?;
    let tmp_path = dir_path.join(&tmp);
    let result = (|| {
        let mut file = file;
        file.write_all(bytes).map_err(|e| Error::io(&tmp_path, e))?;
        if durable {
            file.sync_all().map_err(|e| Error::io(&tmp_path, e))?;
        }
        drop(file);
        rustix::fs::renameat(dir, tmp.as_str(), dir, name)
            .map_err(|e| Error::io(&path, e.into()))?;
        if durable {
            rustix::fs::fsync(dir).map_err(|e| Error::io(dir_path, e.into()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// Opens the directory `path` (following links: a path the user chose) for
/// [`write_atomic_in`].
pub(crate) fn open_dir_unchecked(path: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::openat(rustix::fs::CWD, path, flags, Mode::empty())
        .map_err(|e| Error::io(path, e.into()))
}

/// Reads the regular file `path` (a path the user or a test chose: the directories above
/// it are resolved, the file itself is not followed if it is a link), at most `limit`
/// bytes; anything else is an error naming it.
pub(crate) fn read_path(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{}: not a file name", path.display())))?;
    let fd = open_dir_unchecked(dir)?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(&fd, name, flags, Mode::empty()) {
        Ok(f) => f,
        Err(Errno::LOOP) => return Err(not_a_file(path, "a symbolic link")),
        Err(e) => return Err(Error::io(path, e.into())),
    };
    read_regular(File::from(file), path, limit)
}

/// Reads a regular file already opened (without following a link), at most `limit`
/// bytes; anything else is an error naming `path`.
pub(crate) fn read_regular(file: File, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let st = rustix::fs::fstat(&file).map_err(|e| Error::io(path, e.into()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(not_a_file(path, type_name(kind)));
    }
    let mut out = Vec::new();
    // One byte more than allowed tells a file that grew past the limit after the fstat.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::io(path, e))?;
    if u64::try_from(out.len()).unwrap_or(u64::MAX) > limit {
        return Err(Error::corrupt(
            path,
            format!(
                "it is larger than the {} a file of this kind can be; it was altered or \
                 replaced: move it away or restore it",
                human_size(limit)
            ),
        ));
    }
    Ok(out)
}

/// "64 KiB", "1 MiB", "100 bytes".
pub(crate) fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The one place that decides whether the caller may write into a directory owned by
/// `owner`: only when it owns it. Root is no exception — a user's directory may hold
/// links that redirect root's writes anywhere.
///
/// Hook for the system store (DESIGN.md §6, not built yet): there root creates card
/// directories under `/var/lib/tpmvsc` and hands them to their owners (`create --owner`).
/// That exception belongs here, keyed on what the directory is (a card directory of the
/// system store, reached from the root-owned store), not on who owns it; until then
/// root writes only into its own directories.
fn may_write(owner: u32, me: u32) -> bool {
    owner == me
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// A name inside one directory: no `/`, not `.` or `..`, not empty.
fn check_name(name: &str, path: &Path) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::Usage(format!(
            "{}: {name:?} is not a file name",
            path.display()
        )));
    }
    Ok(())
}

fn open_dir_error<Fd: AsFd>(at: Fd, rel: &Path, path: &Path, what: &str, e: Errno) -> Error {
    if matches!(e, Errno::LOOP | Errno::NOTDIR) {
        let kind = rustix::fs::statat(at, rel, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| FileType::from_raw_mode(st.st_mode))
            .ok();
        let is = match kind {
            Some(FileType::Symlink) => "a symbolic link".to_string(),
            Some(FileType::Directory) | None => "not a directory".to_string(),
            Some(k) => type_name(k).to_string(),
        };
        return Error::StorePermissions {
            path: path.to_path_buf(),
            why: format!(
                "refusing to use this {what}: it is {is}, and tpmvsc follows no links in the \
                 directories it keeps files in. Replace it with a real directory, or point \
                 tpmvsc at the directory itself"
            ),
        };
    }
    Error::io(path, e.into())
}

fn not_a_file(path: &Path, is: &str) -> Error {
    Error::corrupt(
        path,
        format!(
            "it is {is}, not a regular file; tpmvsc reads no links, devices or pipes in its \
             directories: move it away or restore the file"
        ),
    )
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown kind",
    }
}

fn kind_of_type(t: FileType) -> EntryKind {
    match t {
        FileType::Directory => EntryKind::Dir,
        FileType::RegularFile => EntryKind::File,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// Creates the missing directories of `path`, outermost first, each with mode 0700 and
/// each only inside a parent that belongs to the caller or root (root: to root).
pub(crate) fn create_missing(path: &Path, what: &str) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = path;
    loop {
        match rustix::fs::statat(rustix::fs::CWD, cur, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => break,
            Err(Errno::NOENT) => missing.push(cur),
            Err(e) => return Err(Error::io(cur, e.into())),
        }
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    let me = rustix::process::geteuid().as_raw();
    for dir in missing.into_iter().rev() {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let st = rustix::fs::statat(rustix::fs::CWD, parent, AtFlags::empty())
            .map_err(|e| Error::io(parent, e.into()))?;
        let owner_ok = st.st_uid == me || (st.st_uid == 0 && me != 0);
        if !owner_ok {
            return Err(Error::StorePermissions {
                path: parent.to_path_buf(),
                why: format!(
                    "refusing to create the {what} {} here: this directory belongs to uid {} \
                     (mode {:04o}), not to you (uid {me}){}; create it yourself where you \
                     own the parent, or choose another place",
                    path.display(),
                    st.st_uid,
                    st.st_mode & 0o7777,
                    if me == 0 { "" } else { " or root" }
                ),
            });
        }
        match rustix::fs::mkdirat(rustix::fs::CWD, dir, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e @ (Errno::ROFS | Errno::ACCESS | Errno::PERM)) => {
                return Err(Error::ReadOnly {
                    path: parent.to_path_buf(),
                    why: format!(
                        "cannot create the {what} {} in it: {}",
                        path.display(),
                        std::io::Error::from(e)
                    ),
                });
            }
            Err(e) => return Err(Error::io(dir, e.into())),
        }
    }
    Ok(())
}

/// Creates a new temporary file for `name` in `dir` with `O_CREAT|O_EXCL|O_NOFOLLOW`:
/// whatever already has the name (a planted link included) makes the creation fail, and
/// the next name is tried. `suffix` draws the unpredictable part.
fn create_temp(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &str,
    mut suffix: impl FnMut() -> Result<String>,
) -> Result<(String, File)> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut last = Errno::EXIST;
    for _ in 0..TEMP_TRIES {
        let tmp = format!(".{name}.tmp-{}", suffix()?);
        match rustix::fs::openat(dir, tmp.as_str(), flags, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => return Ok((tmp, File::from(fd))),
            Err(Errno::EXIST) => last = Errno::EXIST,
            Err(e) => return Err(Error::io(dir_path.join(&tmp), e.into())),
        }
    }
    Err(Error::io(
        dir_path.join(name),
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{TEMP_TRIES} temporary names for it were all taken ({}); someone is \
                 planting files in {}",
                std::io::Error::from(last),
                dir_path.display()
            ),
        ),
    ))
}

const TEMP_TRIES: usize = 16;

fn random_suffix() -> Result<String> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| Error::Usage(format!("no randomness from the OS: {e}")))?;
    Ok(hex::encode(b))
}

fn remove_tree_at(dir: BorrowedFd<'_>, name: &str, path: &Path) -> Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io(path, e.into())),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(path, e.into())),
        };
    }
    let sub = match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io(path, e.into())),
    };
    let entries = rustix::fs::Dir::read_from(&sub).map_err(|e| Error::io(path, e.into()))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(path, e.into()))?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        let child = OsStr::from_bytes(raw);
        let child_path = path.join(child);
        match child.to_str() {
            Some(c) => remove_tree_at(sub.as_fd(), c, &child_path)?,
            // Not made by tpmvsc; a directory of that name would stop the removal below.
            None => match rustix::fs::unlinkat(&sub, child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(Error::io(child_path, e.into())),
            },
        }
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

#[cfg(test)]
mod tests;
