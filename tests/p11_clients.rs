//! Real PKCS#11 clients against the built module on a real swtpm: OpenSC's
//! `pkcs11-tool --test`, and two client processes signing at once on one swtpm without a
//! resource manager (the module serializes them through its lock file).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use sha2::{Digest, Sha256};

fn pkcs11_tool(args: &[&str]) -> Output {
    let so = module_path();
    let out = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&so)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running pkcs11-tool");
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn pkcs11_tool_test_passes_with_an_rsa_and_an_ec_key() {
    let _w = P11World::new(&[]);
    if !require_tool("pkcs11-tool") {
        return;
    }
    let login = ["--login", "--pin", P11_PIN];
    pkcs11_tool(
        &[
            &login[..],
            &[
                "--keypairgen",
                "--key-type",
                "rsa:2048",
                "--id",
                "01",
                "--label",
                "rsa",
            ],
        ]
        .concat(),
    );
    pkcs11_tool(
        &[
            &login[..],
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--id",
                "02",
                "--label",
                "ec",
            ],
        ]
        .concat(),
    );
    let listed = pkcs11_tool(&[&login[..], &["--list-objects"]].concat());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("rsa") && text.contains("ec"), "{text}");

    let out = pkcs11_tool(&[&["--test"], &login[..]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("No errors"),
        "pkcs11-tool --test reported errors:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_client_processes_sign_at_once_on_one_swtpm() {
    let w = P11World::new(&[]);
    if !require_tool("pkcs11-tool") {
        return;
    }
    let hash = Sha256::digest(b"signed by two processes at once");
    let hash_file = w.store.scratch("hash.bin");
    std::fs::write(&hash_file, hash).expect("writing the hash");
    let so = module_path();

    let spawn = |who: &str, id: &str| {
        let dir = w.store.scratch(who);
        std::fs::create_dir_all(&dir).expect("output dir");
        let script = format!(
            r#"set -e
t() {{ pkcs11-tool --module "$SO" --login --pin {pin} "$@"; }}
t --keypairgen --key-type EC:prime256v1 --id {id} --label {who} >/dev/null
i=0
while [ $i -lt 20 ]; do
  t --sign --mechanism ECDSA --id {id} --input-file "$HASH" --output-file "$OUT/sig$i" 2>"$OUT/err$i" >/dev/null
  i=$((i+1))
done
"#,
            pin = P11_PIN,
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("SO", &so)
            .env("HASH", &hash_file)
            .env("OUT", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a client loop")
    };
    let mut a = spawn("alice", "0a");
    let mut b = spawn("bob", "0b");
    for (name, child) in [("alice", &mut a), ("bob", &mut b)] {
        let status = wait_with_deadline(child, Duration::from_secs(300))
            .unwrap_or_else(|| panic!("{name}'s client loop hung"));
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        let last = (0..20)
            .rev()
            .find_map(|i| {
                std::fs::read_to_string(w.store.scratch(name).join(format!("err{i}"))).ok()
            })
            .unwrap_or_default();
        assert!(
            status.success(),
            "{name}: {status}\n{err}\nlast pkcs11-tool stderr: {last}"
        );
    }

    // Every signature verifies against the key the card holds for its client.
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let p = p11_load();
    let s = p.open_ro_session(p11_slot(&p)).expect("RO session");
    for (who, id) in [("alice", 0x0au8), ("bob", 0x0b)] {
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(vec![id]),
            ])
            .expect("C_FindObjects");
        assert_eq!(found.len(), 1, "{who}'s public key");
        assert_eq!(p11_attr(&s, found[0], AttributeType::Label), who.as_bytes());
        let vk =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&p11_ec_point(&s, found[0])).expect("point");
        for i in 0..20 {
            let sig = std::fs::read(w.store.scratch(who).join(format!("sig{i}")))
                .unwrap_or_else(|e| panic!("{who} signature {i}: {e}"));
            assert_eq!(sig.len(), 64, "{who} signature {i}");
            vk.verify_prehash(
                &hash,
                &p256::ecdsa::Signature::from_slice(&sig).expect("64 bytes"),
            )
            .unwrap_or_else(|e| panic!("{who} signature {i} does not verify: {e}"));
        }
    }
}
