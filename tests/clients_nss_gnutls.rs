//! NSS (`modutil`, `certutil`), GnuTLS (`p11tool`, `certtool`) and p11-kit against the
//! built module on a real swtpm. The NSS and GnuTLS walkthroughs are
//! `examples/nss-certutil.sh` and `examples/gnutls-p11tool.sh`, run here as they are.

mod common;

use std::path::PathBuf;

use common::*;

#[test]
fn nss_lists_the_card_its_certificate_with_its_key_and_signs_a_csr() {
    let w = ClientWorld::new();
    if !(require_tool("certutil") && require_tool("modutil") && require_tool("openssl")) {
        return;
    }
    w.keygen("ec-p256", "k");
    w.keygen("rsa2048", "r");
    let ca = w.dir("ca");
    w.enroll("k", "CN=nss card,O=Example", &ca);
    let (out, work) = w.run_example("nss-certutil.sh", &[("KEY", "k")]);
    assert_success(&out, "examples/nss-certutil.sh");
    // modutil -list: the module and the card's token (label = card name).
    assert_output_has(
        &out,
        &format!("Library file: {}\n", module_path().display()),
        "modutil -list tpmvsc",
    );
    assert_output_has(&out, "Token Name: c ", "modutil -list shows the token");
    assert_output_has(
        &out,
        "Token Model: TPM VSC",
        "modutil -list shows the token",
    );
    // certutil -L -h c: the certificate, paired with its key by CKA_ID (u,u,u).
    let cert_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("c:k "))
        .unwrap_or_else(|| panic!("certutil -L lists c:k:\n{}", out.stdout));
    assert!(cert_line.trim_end().ends_with("u,u,u"), "{cert_line:?}");
    // certutil -K -h c: both keys.
    let keys = std::fs::read_to_string(work.join("keys.txt")).expect("keys.txt");
    assert!(
        keys.lines()
            .any(|l| l.contains(" ec ") && l.trim_end().ends_with(" k")),
        "{keys}"
    );
    assert!(
        keys.lines()
            .any(|l| l.contains(" rsa ") && l.trim_end().ends_with(" r")),
        "{keys}"
    );
    // certutil -R with the card key: openssl accepts the request's signature.
    assert_output_has(
        &out,
        "Certificate request self-signature verify OK",
        "certutil -R",
    );
    assert_output_has(&out, "CN = c nss request", "certutil -R subject");
}

#[test]
fn nss_certutil_signs_a_csr_with_an_rsa_card_key() {
    let w = ClientWorld::new();
    if !(require_tool("certutil") && require_tool("modutil") && require_tool("openssl")) {
        return;
    }
    w.keygen("rsa2048", "r");
    let (out, _) = w.run_example("nss-certutil.sh", &[("KEY", "r")]);
    assert_success(&out, "examples/nss-certutil.sh (RSA)");
    assert_output_has(
        &out,
        "Certificate request self-signature verify OK",
        "certutil -R",
    );
}

#[test]
fn gnutls_lists_the_card_makes_a_csr_and_writes_and_reads_back_a_certificate() {
    let w = ClientWorld::new();
    if !(require_tool("p11tool") && require_tool("certtool") && require_tool("openssl")) {
        return;
    }
    w.keygen("ec-p256", "k");
    let (out, work) = w.run_example("gnutls-p11tool.sh", &[("KEY", "k")]);
    assert_success(&out, "examples/gnutls-p11tool.sh");
    // --list-tokens: the card, marked virtual.
    assert_output_has(&out, "\tLabel: c\n", "p11tool --list-tokens");
    assert_output_has(&out, "\tModel: TPM VSC\n", "p11tool --list-tokens");
    // --list-all: the public key, readable without login.
    assert_output_has(
        &out,
        "Type: Public key (EC/ECDSA-SECP256R1)",
        "p11tool --list-all",
    );
    // certtool's request signed by the card key verifies.
    assert_output_has(
        &out,
        "Certificate request self-signature verify OK",
        "certtool request",
    );
    assert_output_has(&out, "CN = c certtool request", "certtool request subject");
    // The written certificate comes back identical, with the key's CKA_ID.
    assert_output_has(
        &out,
        "certificate read back from the card: identical",
        "p11tool --export",
    );
    assert_output_has(&out, "Label: k-selfsigned", "p11tool --list-all-certs");
    let keys = w
        .cli
        .tpmvsc(&["keys", "c", "--json"])
        .ok("tpmvsc keys")
        .json();
    let id = keys[0]["id"].as_str().expect("key id").to_string();
    let certs = w
        .cli
        .tpmvsc(&["certs", "c", "--json"])
        .ok("tpmvsc certs")
        .json();
    assert!(
        certs
            .as_array()
            .expect("array")
            .iter()
            .any(|c| c["id"] == id.as_str() && c["has_key"] == true),
        "the certificate p11tool wrote is paired with key {id}: {certs}"
    );
    assert!(work.join("readback.pem").is_file());
}

/// A p11-kit registration in /etc/pkcs11/modules (as root p11-kit reads only there),
/// removed on drop. `enable-in: p11-kit` keeps other programs from loading it meanwhile.
struct Registration {
    file: PathBuf,
    made_dirs: Vec<PathBuf>,
}

impl Registration {
    fn add(module: &std::path::Path) -> Registration {
        let mut made_dirs = Vec::new();
        for d in ["/etc/pkcs11", "/etc/pkcs11/modules"] {
            let d = PathBuf::from(d);
            if !d.exists() {
                std::fs::create_dir(&d).expect("creating the p11-kit modules dir");
                made_dirs.push(d);
            }
        }
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).expect("getrandom");
        let tag: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let file = PathBuf::from(format!("/etc/pkcs11/modules/tpmvsc-test-{tag}.module"));
        std::fs::write(
            &file,
            format!(
                "# tpmvsc client test registration; removed when the test ends\nmodule: {}\ncritical: no\nenable-in: p11-kit\n",
                module.display()
            ),
        )
        .expect("writing the p11-kit registration");
        Registration { file, made_dirs }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        // Only directories this test made, and only when empty (another test may use them).
        for d in self.made_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn p11_kit_lists_the_token_through_a_registration_file() {
    let w = ClientWorld::new();
    if !require_tool("p11-kit") {
        return;
    }
    // p11-kit reads /etc/pkcs11/modules, writable by root only.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        eprintln!("skipping: the p11-kit registration test writes /etc/pkcs11/modules (root)");
        return;
    }
    let reg = Registration::add(&module_path());
    let name = reg
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("registration name")
        .to_string();
    let mut c = w.command("p11-kit");
    c.arg("list-modules");
    let out = run_output(c, CLIENT_TIMEOUT);
    drop(reg);
    assert_success(&out, "p11-kit list-modules");
    let section: String = out
        .stdout
        .split_inclusive('\n')
        .skip_while(|l| !l.starts_with(&format!("{name}:")))
        .take_while({
            let mut first = true;
            move |l| std::mem::take(&mut first) || l.starts_with(' ') || l.starts_with('\t')
        })
        .collect();
    assert!(!section.is_empty(), "p11-kit lists {name}:\n{}", out.stdout);
    assert!(
        section.contains("library-manufacturer: tpmvsc"),
        "{section}"
    );
    assert!(section.contains("    token: c\n"), "{section}");
    assert!(section.contains("model: TPM VSC"), "{section}");
}
