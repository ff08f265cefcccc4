//! A user other than root, for attacks on tpmvsc's files as another local user would
//! make them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::*;

/// A user other than root, for tests that attack tpmvsc's files as another user would:
/// a fresh uid without a passwd entry (tpmvsc looks up no user names, and `useradd` in
/// parallel tests would fight over the lock of /etc/passwd), a base directory others can
/// traverse, a home directory the user owns, and commands run as the user through
/// `setpriv` with a clean environment. Drop removes its files and `/tmp/tpmvsc-UID`,
/// whoever made that.
#[derive(Debug)]
pub struct OtherUser {
    pub uid: u32,
    base: TempDir,
    bin: PathBuf,
    /// Supplementary groups its commands run with (none by default).
    groups: Vec<u32>,
}

impl OtherUser {
    pub fn new() -> OtherUser {
        use std::os::unix::fs::PermissionsExt;
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let taken: Vec<u32> = passwd
            .lines()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect();
        let uid = loop {
            let mut r = [0u8; 4];
            getrandom::fill(&mut r).expect("randomness for a uid");
            let uid = 3_000_000 + u32::from_le_bytes(r) % 1_000_000_000;
            let lock_dir = PathBuf::from(format!("/tmp/tpmvsc-{uid}"));
            if !taken.contains(&uid) && lock_dir.symlink_metadata().is_err() {
                break uid;
            }
        };
        let base = tempfile::tempdir().expect("temp dir for another user");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 755 the other user's base directory");
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_tpmvsc"));
        let bin = if reachable_by_others(&bin) {
            bin
        } else {
            let copy = base.path().join("tpmvsc");
            std::fs::copy(&bin, &copy).expect("copying tpmvsc where others can run it");
            copy
        };
        let u = OtherUser {
            uid,
            base,
            bin,
            groups: Vec::new(),
        };
        u.own_dir("home");
        u
    }

    /// The base directory (root's, mode 0755).
    pub fn base(&self) -> &Path {
        self.base.path()
    }

    /// The user's home directory (theirs, mode 0700, empty at first).
    pub fn home(&self) -> PathBuf {
        self.base().join("home")
    }

    /// A new directory under the base, owned by the user, mode 0700.
    pub fn own_dir(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::DirBuilderExt;
        let p = self.base().join(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&p)
            .expect("creating a directory for the other user");
        self.chown(&p);
        p
    }

    /// Hands `path` and everything under it to the user (links themselves, not their
    /// targets).
    pub fn chown(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.uid)).expect("lchown");
        if path.symlink_metadata().expect("lstat").is_dir() {
            for e in std::fs::read_dir(path).expect("read_dir").flatten() {
                self.chown(&e.path());
            }
        }
    }

    /// Where tpmvsc keeps this user's lock files when XDG_RUNTIME_DIR and TPMVSC_LOCK_DIR
    /// are not set.
    pub fn tmp_lock_dir(&self) -> PathBuf {
        PathBuf::from(format!("/tmp/tpmvsc-{}", self.uid))
    }

    /// The user's commands run with these supplementary groups from now on.
    pub fn set_groups(&mut self, gids: &[u32]) {
        self.groups = gids.to_vec();
    }

    /// `program ARGS` as the user (`setpriv`, no supplementary groups unless
    /// [`OtherUser::set_groups`]) with only PATH, HOME, TSS2_LOG and `env` in its
    /// environment; stdin empty.
    pub fn command(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid));
        if self.groups.is_empty() {
            c.arg("--clear-groups");
        } else {
            let list: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            c.arg(format!("--groups={}", list.join(",")));
        }
        c.arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.home())
            .env("TSS2_LOG", "all+NONE")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// `tpmvsc ARGS` as the user (see [`OtherUser::command`]), bounded by the CLI timeout.
    pub fn tpmvsc(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_output(self.command(&self.bin, args, env), CLI_TIMEOUT)
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        let d = self.tmp_lock_dir();
        match d.symlink_metadata() {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&d);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&d);
            }
            Err(_) => {}
        }
    }
}

/// True when every directory above `path` lets others through and others may run it.
fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    mode(path) & 0o005 == 0o005 && path.ancestors().skip(1).all(|a| mode(a) & 0o001 != 0)
}
