//! Unit tests of `config` (the file format; reading real files is tested end to end).

use super::*;

#[test]
fn a_file_with_every_key_parses() {
    let v: FileValues = toml::from_str(
        "tcti = \"swtpm:path=/run/x\"\nstore = \"/srv/cards\"\nlock_dir = \"/run/tpmvsc\"\n\
         tpm_wait = 5\nlock_timeout = 0.5\n",
    )
    .expect("a valid file");
    assert_eq!(v.tcti.as_deref(), Some("swtpm:path=/run/x"));
    assert_eq!(v.store, Some(PathBuf::from("/srv/cards")));
    assert_eq!(v.lock_timeout, Some(0.5));
}

#[test]
fn unknown_keys_and_wrong_types_are_errors() {
    assert!(toml::from_str::<FileValues>("tcit = \"x\"").is_err());
    assert!(toml::from_str::<FileValues>("tpm_wait = \"soon\"").is_err());
    assert!(toml::from_str::<FileValues>("[section]\ntcti = \"x\"").is_err());
    assert!(toml::from_str::<FileValues>("").is_ok());
}

#[test]
fn waits_must_be_positive_and_at_most_a_day() {
    let src = Source::File(PathBuf::from("/etc/tpmvsc/tpmvsc.conf"));
    assert_eq!(duration(0.5, &src).unwrap(), Duration::from_millis(500));
    for bad in [0.0, -1.0, f64::NAN, 86_401.0] {
        assert!(
            matches!(duration(bad, &src), Err(Error::Config { .. })),
            "{bad}"
        );
    }
}
