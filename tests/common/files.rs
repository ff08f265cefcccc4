//! Files: walking a store, searching bytes in it, writing and locking files.

use std::path::{Path, PathBuf};

/// Every file under `root`, recursively.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// True when `needle` occurs in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The files under `root` whose bytes contain `needle`.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| contains_bytes(&b, needle)))
        .collect()
}

/// Writes `text` to a new file at `path` (for lockout auth files and the like).
pub fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
}

/// Takes an exclusive `flock` on the existing file `path` in this process and keeps it
/// while the returned file lives.
pub fn hold_lock(path: &Path) -> std::fs::File {
    let f = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("opening the lock file {}: {e}", path.display()));
    f.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    f
}

/// A lock on what the whole machine shares — the installed package, p11-kit's module
/// list: the test that installs the Debian package holds it exclusively, every test that
/// runs p11-kit clients holds it shared, so no client meets a module registered in the
/// middle of its run.
pub fn machine_lock(exclusive: bool) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open("/tmp/tpmvsc-tests-machine.lock")
        .expect("the machine lock file");
    let r = if exclusive { f.lock() } else { f.lock_shared() };
    r.expect("flock on the machine lock");
    f
}
