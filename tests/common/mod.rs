//! Shared test harness, one file per concern: `tpm` (a real swtpm per test, tpm2-abrmd on a
//! private session bus), `cli` (temporary stores and the built binaries), `files`, `wire`
//! (a recording relay and TPM command parsers), `p11` (the module through `cryptoki`),
//! `raw` (the module's C functions called directly), `clients` (real client programs) and
//! `other_user`. No mocked TPM anywhere. Child processes get what they need in their own
//! environment; only the PKCS#11 tests set this process's environment, before the module
//! is loaded and before any thread starts (one process per test).

#![allow(dead_code, unreachable_pub)]

/// The Windows default PIN every card gets unless told otherwise.
pub const DEFAULT_PIN: &str = "12345678";

mod cli;
mod clients;
mod files;
mod other_user;
mod p11;
#[macro_use]
pub mod raw;
mod tpm;
mod wire;

// Each test uses some of these; the rest would warn in every test crate.
#[allow(unused_imports)]
pub use cli::*;
#[allow(unused_imports)]
pub use clients::*;
#[allow(unused_imports)]
pub use files::*;
#[allow(unused_imports)]
pub use other_user::*;
#[allow(unused_imports)]
pub use p11::*;
#[allow(unused_imports)]
pub use tpm::*;
#[allow(unused_imports)]
pub use wire::*;

/// True when `name` is on PATH. Missing: false (the test skips) unless `CI` is set, then
/// it panics.
pub fn require_tool(name: &str) -> bool {
    // System daemons (tpm2-abrmd, sshd) live in sbin directories a user's PATH lacks.
    let found = tpmvsc::simulator::find_program(name).is_some();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required on CI but not installed");
        }
        eprintln!("skipping: {name} is not installed");
    }
    found
}

/// The well-known default admin key of Windows virtual smart cards.
pub const DEFAULT_ADMIN_KEY: &str = "010203040506070801020304050607080102030405060708";
