//! OpenSSL 3 + pkcs11-provider against the built module on a real swtpm: signing with a
//! `pkcs11:` URI, CSRs, the enrollment flow (card CSR → test CA → certificate whose public
//! key is the card key's → import-cert) and TLS on 127.0.0.1 with the card key on the
//! server side and on the client side. The walkthrough is `examples/openssl-sign-and-tls.sh`,
//! run here as it is, so the example stays tested.

mod common;

use common::*;

/// The provider's shared object (Debian bookworm-backports `pkcs11-provider`).
const PROVIDER: &str = "/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so";

/// openssl and the provider are there; under CI a missing one fails.
fn openssl_with_provider() -> bool {
    if !require_tool("openssl") {
        return false;
    }
    if !std::path::Path::new(PROVIDER).is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "pkcs11-provider ({PROVIDER}) is required on CI but not installed"
        );
        eprintln!("skipping: pkcs11-provider is not installed");
        return false;
    }
    true
}

/// The example against `key` (already on card c): sign + verify, `openssl req`, enrollment,
/// TLS with the card key as server key and as client key.
fn example_runs_end_to_end(w: &ClientWorld, key: &str) {
    let port = free_port_pair().to_string();
    let (out, work) = w.run_example("openssl-sign-and-tls.sh", &[("KEY", key), ("PORT", &port)]);
    assert_success(&out, "examples/openssl-sign-and-tls.sh");
    for needle in [
        "Signature Verified Successfully",
        "Certificate request self-signature verify OK",
        "certificate public key = card public key",
        "server-side card key: handshake ok",
        "client-side card key: handshake ok",
    ] {
        assert_output_has(&out, needle, "openssl example");
    }
    // The certificate the CA issued for the card's CSR carries the card key, and the card
    // now lists it next to that key.
    let cert_pub = std::fs::read(work.join("cert.pub.pem")).expect("cert.pub.pem");
    let card_pub = std::fs::read(work.join("card.pub.pem")).expect("card.pub.pem");
    assert_eq!(cert_pub, card_pub, "certificate key = card key");
    assert!(card_pub.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let certs = w
        .cli
        .tpmvsc(&["certs", "c", "--json"])
        .ok("tpmvsc certs")
        .json();
    let list = certs.as_array().expect("certs --json is an array");
    assert!(
        list.iter().any(|c| c["label"] == key
            && c["has_key"] == true
            && c["subject"] == "CN=c card,O=Example"),
        "the issued certificate is on the card next to its key: {certs}"
    );
    // The client-auth server saw the card's certificate.
    let log = std::fs::read_to_string(work.join("client-auth.log")).expect("client-auth.log");
    assert!(log.contains("CN = c card"), "server log:\n{log}");
}

#[test]
fn ec_card_key_signs_makes_csrs_enrolls_and_does_tls_both_ways() {
    let w = ClientWorld::new();
    if !openssl_with_provider() {
        return;
    }
    w.keygen("ec-p256", "k");
    example_runs_end_to_end(&w, "k");
}

#[test]
fn rsa_card_key_signs_makes_csrs_enrolls_and_does_tls_both_ways() {
    let w = ClientWorld::new();
    if !openssl_with_provider() {
        return;
    }
    w.keygen("rsa2048", "r");
    example_runs_end_to_end(&w, "r");
}

#[test]
fn rsa_pss_and_pkcs1_signatures_from_pkeyutl_verify() {
    let w = ClientWorld::new();
    if !openssl_with_provider() {
        return;
    }
    w.keygen("rsa2048", "r");
    let dir = w.dir("pss");
    let cnf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/openssl-pkcs11-provider.cnf");
    let p11ssl = |args: &[&str]| {
        let mut c = w.command("openssl");
        c.current_dir(&dir)
            .env("OPENSSL_CONF", &cnf)
            .env("TPMVSC_PIN_FILE", &w.pin_file)
            .args(args);
        let out = run_output(c, CLIENT_TIMEOUT);
        assert_success(&out, &format!("openssl {args:?}"));
        out
    };
    std::fs::write(dir.join("digest"), [0x5au8; 32]).expect("digest");
    p11ssl(&[
        "pkey",
        "-pubin",
        "-in",
        "pkcs11:token=c;object=r;type=public",
        "-pubout",
        "-out",
        "r.pub",
    ]);
    for (name, opts) in [
        ("pkcs1", vec!["-pkeyopt", "digest:sha256"]),
        (
            "pss",
            vec![
                "-pkeyopt",
                "digest:sha256",
                "-pkeyopt",
                "rsa_padding_mode:pss",
                "-pkeyopt",
                "rsa_pss_saltlen:digest",
            ],
        ),
    ] {
        let sig = format!("{name}.sig");
        let mut args = vec![
            "pkeyutl",
            "-sign",
            "-inkey",
            "pkcs11:token=c;object=r;type=private",
            "-in",
            "digest",
            "-out",
            &sig,
        ];
        args.extend(opts.iter().copied());
        p11ssl(&args);
        let mut c = w.command("openssl");
        c.current_dir(&dir)
            .args([
                "pkeyutl", "-verify", "-pubin", "-inkey", "r.pub", "-in", "digest", "-sigfile",
                &sig,
            ])
            .args(&opts);
        let out = run_output(c, CLIENT_TIMEOUT);
        assert_output_has(
            &out,
            "Signature Verified Successfully",
            &format!("{name} signature"),
        );
    }
}
