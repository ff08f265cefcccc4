//! The benchmark of the performance issue: this module, the raw TPM floor and tpm2-pkcs11
//! side by side on one swtpm, in one run.
//!
//!     cargo build --release && cargo run --release --example bench [-- --quick] [-- --json FILE]
//!
//! It starts its own swtpm (state in a temp dir, SRK persistent as the simulator makes it),
//! provisions a card, measures the module through `cryptoki` (as a client would), then the
//! floor with tss-esapi in-process (the key loaded, the cheapest session DESIGN.md §2
//! allows: a password session for signing, the continued salted session with parameter
//! encryption for decryption and login), then — when Debian's libtpm2-pkcs11-1 and
//! tpm2_ptool are installed — tpm2-pkcs11 on the same TPM with a token made by its own
//! tool. Prints a Markdown table (median, p95, ops/s, ratios) and writes JSON.

// The module is configured by environment: set once in `main` before any thread starts.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::Serialize;
use sha2::{Digest, Sha256};

const PIN: &str = "12345678";
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

#[derive(Debug, Default, Clone, Serialize)]
struct Figure {
    median_ms: f64,
    p95_ms: f64,
    ops_per_s: f64,
    n: usize,
}

#[derive(Debug, Default, Serialize)]
struct Row {
    ours: Option<Figure>,
    floor: Option<Figure>,
    tpm2_pkcs11: Option<Figure>,
    note: String,
}

type Table = BTreeMap<String, Row>;

fn figure(mut s: Vec<Duration>) -> Figure {
    s.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = s.len().max(1);
    let total: f64 = s.iter().map(|d| d.as_secs_f64()).sum();
    Figure {
        median_ms: ms(s[n / 2]),
        p95_ms: ms(s[((n * 95) / 100).min(n - 1)]),
        ops_per_s: if total > 0.0 {
            s.len() as f64 / total
        } else {
            0.0
        },
        n: s.len(),
    }
}

fn time_n(n: usize, mut f: impl FnMut()) -> Figure {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    figure(v)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child modes (run by the parent as separate processes).
    if args.get(1).map(String::as_str) == Some("--child-login") {
        child_login(&args[2], args.get(3).map_or("bench", String::as_str));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--child-floor-login") {
        child_floor_login(&args[2], &args[3]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("--child-sign") {
        child_sign(&args[2], args[3].parse().unwrap_or(100), &args[4]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench.json"));
    let scale = |n: usize| if quick { (n / 5).max(3) } else { n };

    let module = module_path();
    if !module.exists() {
        eprintln!(
            "{} not found: run `cargo build --release` first",
            module.display()
        );
        std::process::exit(2);
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let state = tmp.path().join("swtpm");
    std::fs::create_dir_all(&state).expect("state dir");
    let mut sw = tpmvsc::simulator::launch(&state, false).expect("starting swtpm");
    let tcti = sw.tcti();
    tpmvsc::simulator::provision(&tcti, 100_000, 1, 1).expect("provisioning swtpm");
    let store = tmp.path().join("store");
    // SAFETY: single-threaded here; the module and the library read these later.
    unsafe {
        std::env::set_var("TPMVSC_STORE", &store);
        std::env::set_var("TPMVSC_TCTI", &tcti);
        std::env::set_var("TPMVSC_LOCK_DIR", tmp.path().join("locks"));
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    let st = tpmvsc::store::Store::at(&store);
    let mut req = tpmvsc::provision::CreateRequest::new("bench");
    req.puk = Some(zeroize::Zeroizing::new(PIN.as_bytes().to_vec()));
    tpmvsc::provision::create(&st, req, &mut |_| {}).expect("creating the card");

    if args.iter().any(|a| a == "--throughput") {
        // Only the multi-thread throughput, three rounds (for tuning).
        let p = load(&module);
        let s = login(&p, None);
        let (_, _ec) = ec_pair(&s, "bench-ec", true);
        let h = Sha256::digest(b"benchmark").to_vec();
        for round in 1..=3 {
            let mut extra = BTreeMap::new();
            throughput(&p, &s, &h, 1.5, &mut extra);
            for (k, v) in extra {
                println!("round {round}: {k}: {v}");
            }
        }
        return;
    }
    let mut table = Table::new();
    eprintln!("== tpmvsc module ({})", module.display());
    let extra = measure_module(&module, &mut table, &scale);
    eprintln!("== raw TPM floor (tss-esapi in-process)");
    measure_floor(&st, &tcti, &mut table, &scale);
    eprintln!("== tpm2-pkcs11");
    let tpm2 = measure_tpm2_pkcs11(tmp.path(), &tcti, &mut table, &scale);

    print_table(&table, &extra, tpm2.as_deref());
    let json = serde_json::json!({ "rows": table, "extra": extra, "tpm2_pkcs11": tpm2.as_deref().unwrap_or("measured") });
    if let Some(dir) = json_out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&json_out, serde_json::to_vec_pretty(&json).expect("json"))
        .expect("writing JSON");
    eprintln!("JSON written to {}", json_out.display());

    if let Ok(mut t) = tpmvsc::tpm::Tpm::open_tcti(&tcti) {
        let _ = t.shutdown();
    }
    if let Some(mut c) = sw.child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    // target/release/examples/bench → target/release/libtpmvsc.so
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("libtpmvsc.so"))
        .expect("module path")
}

fn load(path: &Path) -> Pkcs11 {
    let p = Pkcs11::new(path).expect("loading the module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    p
}

fn login(p: &Pkcs11, label: Option<&str>) -> Session {
    let slots = p.get_slots_with_token().expect("slots");
    let slot = match label {
        None => slots[0],
        Some(l) => *slots
            .iter()
            .find(|s| {
                p.get_token_info(**s)
                    .map(|i| i.label().trim() == l)
                    .unwrap_or(false)
            })
            .expect("token"),
    };
    let s = p.open_rw_session(slot).expect("session");
    s.login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .expect("login");
    s
}

fn ec_pair(s: &Session, label: &str, token: bool) -> (ObjectHandle, ObjectHandle) {
    let public = [
        Attribute::Token(token),
        Attribute::EcParams(P256.to_vec()),
        Attribute::Label(label.into()),
    ];
    let private = [
        Attribute::Token(token),
        Attribute::Sign(true),
        Attribute::Label(label.into()),
    ];
    s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .expect("EC key pair")
}

fn rsa_pair(s: &Session, token: bool) -> (ObjectHandle, ObjectHandle) {
    let public = [
        Attribute::Token(token),
        Attribute::ModulusBits(2048.into()),
        Attribute::Verify(true),
        Attribute::Encrypt(true),
    ];
    let private = [
        Attribute::Token(token),
        Attribute::Sign(true),
        Attribute::Decrypt(true),
    ];
    s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        .expect("RSA key pair")
}

/// Logout then login, timed `n` times.
fn warm_logins(s: &Session, n: usize) -> Figure {
    time_n(n, || {
        s.logout().expect("logout");
        s.login(UserType::User, Some(&AuthPin::new(PIN.into())))
            .expect("login");
    })
}

/// The private key with this label.
fn private_key(s: &Session, label: &str) -> ObjectHandle {
    s.find_objects(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(label.into()),
    ])
    .expect("find")[0]
}

/// EMSA-PKCS1-v1_5 of `t` for a `k`-byte modulus (what the module does on the host).
fn pkcs1_sign_pad(t: &[u8], k: usize) -> Vec<u8> {
    let mut em = vec![0xff; k];
    em[0] = 0;
    em[1] = 1;
    em[k - t.len() - 1] = 0;
    em[k - t.len()..].copy_from_slice(t);
    em
}

fn rsa_public(n: &[u8], e: &[u8]) -> rsa::RsaPublicKey {
    rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(n),
        rsa::BigUint::from_bytes_be(e),
    )
    .expect("an RSA public key")
}

/// The system's random numbers for the `rsa` crate's padding.
struct SysRng;

impl rsa::rand_core::RngCore for SysRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("system randomness");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for SysRng {}

fn digest_info(hash: &[u8]) -> Vec<u8> {
    let mut v = hex::decode("3031300d060960864801650304020105000420").expect("prefix");
    v.extend_from_slice(hash);
    v
}

fn oaep() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ))
}

fn pss() -> Mechanism<'static> {
    Mechanism::RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn set(t: &mut Table, name: &str, f: impl FnOnce(&mut Row)) {
    f(t.entry(name.to_string()).or_default());
}

fn measure_module(
    path: &Path,
    t: &mut Table,
    scale: &dyn Fn(usize) -> usize,
) -> BTreeMap<String, String> {
    let mut extra = BTreeMap::new();
    let exe = std::env::current_exe().expect("exe");
    // Cold process start → C_Login, measured inside fresh processes.
    let cold = child_logins(&exe, path, "bench", scale(15));
    set(t, "cold init → C_Login", |r| {
        r.ours = cold;
        r.note = "in a new process: dlopen + C_Initialize + C_OpenSession + C_Login".into();
    });

    let p = load(path);
    let s = login(&p, None);
    let warm = warm_logins(&s, scale(50));
    set(t, "C_Login (warm)", |r| r.ours = Some(warm));

    let mut rsa_keys = Vec::new();
    let g = time_n(scale(5), || rsa_keys.push(rsa_pair(&s, false)));
    set(t, "C_GenerateKeyPair RSA-2048", |r| r.ours = Some(g));
    let g = time_n(scale(30), || {
        ec_pair(&s, "tmp", false);
    });
    set(t, "C_GenerateKeyPair EC P-256", |r| r.ours = Some(g));
    let (_, ec) = ec_pair(&s, "bench-ec", true);
    let (rsa_pub, rsa) = rsa_keys[0];
    let h = Sha256::digest(b"benchmark").to_vec();

    let f = time_n(scale(300), || {
        s.sign(&Mechanism::Ecdsa, ec, &h).expect("ECDSA");
    });
    set(t, "C_Sign ECDSA P-256", |r| r.ours = Some(f));
    let di = digest_info(&h);
    let f = time_n(scale(100), || {
        s.sign(&Mechanism::RsaPkcs, rsa, &di).expect("RSA PKCS#1");
    });
    set(t, "C_Sign RSA-2048 PKCS#1", |r| r.ours = Some(f));
    let f = time_n(scale(100), || {
        s.sign(&pss(), rsa, &h).expect("PSS");
    });
    set(t, "C_Sign RSA-2048 PSS", |r| r.ours = Some(f));

    let c_oaep = s
        .encrypt(&oaep(), rsa_pub, b"secret message")
        .expect("encrypt OAEP");
    let c_pkcs = s
        .encrypt(&Mechanism::RsaPkcs, rsa_pub, b"secret message")
        .expect("encrypt PKCS#1");
    let f = time_n(scale(100), || {
        s.decrypt(&oaep(), rsa, &c_oaep).expect("OAEP decrypt");
    });
    set(t, "C_Decrypt RSA-2048 OAEP", |r| r.ours = Some(f));
    let f = time_n(scale(100), || {
        s.decrypt(&Mechanism::RsaPkcs, rsa, &c_pkcs)
            .expect("PKCS#1 decrypt");
    });
    set(t, "C_Decrypt RSA-2048 PKCS#1", |r| r.ours = Some(f));

    let find = |s: &Session| {
        s.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label("bench-ec".into()),
        ])
        .expect("find")
    };
    let f = time_n(scale(100), || assert_eq!(find(&s).len(), 1));
    set(t, "C_FindObjects (2 objects on the card)", |r| {
        r.ours = Some(f)
    });
    for i in 0u8..58 {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Label(format!("data{i}").into()),
            Attribute::Value(vec![i; 32]),
        ])
        .expect("data object");
    }
    let f = time_n(scale(100), || assert_eq!(find(&s).len(), 1));
    set(t, "C_FindObjects (60 objects on the card)", |r| {
        r.ours = Some(f)
    });
    let f = time_n(scale(200), || {
        s.generate_random_vec(32).expect("random");
    });
    set(t, "C_GenerateRandom 32 bytes", |r| r.ours = Some(f));

    throughput(
        &p,
        &s,
        &h,
        if scale(10) < 10 { 0.5 } else { 1.5 },
        &mut extra,
    );

    // Memory: resident growth over 10,000 signatures.
    let before = rss_kib();
    for _ in 0..scale(10_000) {
        s.sign(&Mechanism::Ecdsa, ec, &h).expect("sign");
    }
    let after = rss_kib();
    extra.insert(
        format!("RSS growth over {} signatures", scale(10_000)),
        format!(
            "{} KiB ({before} → {after} KiB)",
            after as i64 - before as i64
        ),
    );

    // Two processes signing at once.
    drop(s);
    let _ = p.finalize();
    let mut ok = 0;
    let mut rates = Vec::new();
    // Run them truly at once.
    let started: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .arg("--child-sign")
                .arg(path)
                .arg(scale(200).to_string())
                .arg("bench-ec")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("child")
        })
        .collect();
    for c in started {
        let out = c.wait_with_output().expect("child");
        if out.status.success() {
            ok += 1;
            rates.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
    }
    extra.insert(
        "two processes signing at once".into(),
        format!("{ok} of 2 succeeded ({} sig/s each)", rates.join(", ")),
    );

    // Store size of a card with 30 keys and 90 certificates.
    extra.insert(
        "store size, 30 keys + 90 certificates".into(),
        store_size(path),
    );
    extra
}

/// Aggregate ECDSA throughput with 1, 2 and 4 threads, each with its own session.
fn throughput(p: &Pkcs11, s: &Session, h: &[u8], secs: f64, extra: &mut BTreeMap<String, String>) {
    let mut one = 0.0;
    for threads in [1usize, 2, 4] {
        let slot = s.get_session_info().expect("info").slot_id();
        let total: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let p = &p;
                    let h = &h;
                    sc.spawn(move || {
                        let ts = p.open_ro_session(slot).expect("session");
                        let key = private_key(&ts, "bench-ec");
                        let end = Instant::now() + Duration::from_secs_f64(secs);
                        let mut n = 0;
                        while Instant::now() < end {
                            ts.sign(&Mechanism::Ecdsa, key, h).expect("sign");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        let rate = total as f64 / secs;
        if threads == 1 {
            one = rate;
        }
        extra.insert(
            format!("ECDSA throughput, {threads} thread(s)"),
            format!("{rate:.0} sig/s ({:.2}× one thread)", rate / one),
        );
    }
}

fn store_size(path: &Path) -> String {
    let st = tpmvsc::store::Store::open().expect("store");
    let mut req = tpmvsc::provision::CreateRequest::new("full");
    req.puk = None;
    if tpmvsc::provision::create(&st, req, &mut |_| {}).is_err() {
        return "could not create the card".into();
    }
    let cert = match Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=bench",
            "-keyout",
            "/dev/null",
            "-outform",
            "DER",
        ])
        .output()
    {
        Ok(o) if o.status.success() => o.stdout,
        _ => return "openssl missing: not measured".into(),
    };
    let p = load(path);
    let s = login(&p, Some("full"));
    for i in 0..30 {
        ec_pair(&s, &format!("k{i}"), true);
    }
    for i in 0..90 {
        s.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(format!("c{i}").into()),
            Attribute::Value(cert.clone()),
        ])
        .expect("certificate");
    }
    drop(s);
    let _ = p.finalize();
    let (dir, _) = tpmvsc::provision::find(&st, "full").expect("card");
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    format!(
        "{} KiB in {} files",
        bytes / 1024,
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0)
    )
}

fn child_login(path: &str, label: &str) {
    let t = Instant::now();
    let p = Pkcs11::new(Path::new(path)).expect("loading the module");
    let t_load = t.elapsed();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let t_init = t.elapsed();
    let s = login(&p, Some(label));
    let us = t.elapsed().as_micros();
    if std::env::var_os("BENCH_PHASES").is_some() {
        eprintln!(
            "load {t_load:?} init {t_init:?} login-done {:?}",
            t.elapsed()
        );
    }
    drop(s);
    let _ = p.finalize();
    println!("{us}");
}

/// The cold floor: a fresh process opens the TPM with tss-esapi, makes the SRK current,
/// starts the salted session and runs PolicySecret on the card storage key — what a cold
/// login must do, without any PKCS#11 around it.
fn child_floor_login(tcti: &str, store: &str) {
    let st = tpmvsc::store::Store::at(store);
    let t = Instant::now();
    let (dir, record) = tpmvsc::provision::find(&st, "bench").expect("card");
    let keys = tpmvsc::provision::pin::read_keys(&dir, &record).expect("card keys");
    let auth = tpmvsc::card::pin_auth(&record.pin_salt, PIN.as_bytes());
    let mut tpm = tpmvsc::tpm::Tpm::open_tcti(tcti).expect("TPM");
    tpm.use_srk(&record.srk).expect("SRK");
    tpm.check_pin(keys.csk_ref(), &auth).expect("login");
    println!("{}", t.elapsed().as_micros());
}

fn child_sign(path: &str, n: usize, label: &str) {
    let p = load(Path::new(path));
    let s = login(&p, Some("bench"));
    let key = private_key(&s, label);
    let h = Sha256::digest(b"two processes").to_vec();
    let t = Instant::now();
    for _ in 0..n {
        s.sign(&Mechanism::Ecdsa, key, &h).expect("sign");
    }
    println!("{:.0}", n as f64 / t.elapsed().as_secs_f64());
    let _ = p.finalize();
}

/// The floor: the same TPM commands through tss-esapi in this process, key loaded.
fn measure_floor(
    st: &tpmvsc::store::Store,
    tcti: &str,
    t: &mut Table,
    scale: &dyn Fn(usize) -> usize,
) {
    use tpmvsc::tpm::{Tpm, templates::UserKeyKind};
    std::thread::sleep(Duration::from_millis(300)); // the module's idle release
    let (dir, record) = tpmvsc::provision::find(st, "bench").expect("card");
    let keys = tpmvsc::provision::pin::read_keys(&dir, &record).expect("card keys");
    let csk = keys.csk_ref();
    let auth = tpmvsc::card::pin_auth(&record.pin_salt, PIN.as_bytes());
    // Cold: in a fresh process (OpenSSL and the TCTI library load there too), a new
    // connection, the SRK, a new salted session, the CSK loaded, PolicySecret.
    let exe = std::env::current_exe().expect("exe");
    let mut cold = Vec::new();
    for _ in 0..scale(15) {
        if let Ok(out) = Command::new(&exe)
            .arg("--child-floor-login")
            .arg(tcti)
            .arg(st.root())
            .output()
        {
            let us: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
            if us > 0 {
                cold.push(Duration::from_micros(us));
            }
        }
    }
    if !cold.is_empty() {
        set(t, "cold init → C_Login", |r| r.floor = Some(figure(cold)));
    }
    let mut tpm = Tpm::open_tcti(tcti).expect("TPM");
    tpm.use_srk(&record.srk).expect("SRK");
    // Warm: the continued salted session; the CSK loaded again each time (logout
    // flushes it), PolicySecret.
    let f = time_n(scale(50), || {
        tpm.flush_objects();
        tpm.check_pin(csk, &auth).expect("login")
    });
    set(t, "C_Login (warm)", |r| r.floor = Some(f));
    let mut ec = None;
    let g = time_n(scale(30), || {
        ec = Some(
            tpm.create_user_key(csk, &auth, UserKeyKind::EccP256)
                .expect("EC key"),
        )
    });
    set(t, "C_GenerateKeyPair EC P-256", |r| r.floor = Some(g));
    let mut rsa = None;
    let g = time_n(scale(5), || {
        rsa = Some(
            tpm.create_user_key(csk, &auth, UserKeyKind::Rsa2048)
                .expect("RSA key"),
        )
    });
    set(t, "C_GenerateKeyPair RSA-2048", |r| r.floor = Some(g));
    let (ec_blob, _) = ec.expect("EC key");
    let (rsa_blob, rsa_pub) = rsa.expect("RSA key");
    let h = Sha256::digest(b"benchmark").to_vec();
    let k = tpm.load_user_key(csk, &auth, &ec_blob).expect("load");
    let f = time_n(scale(300), || {
        tpm.sign_ecdsa(k, &h).expect("ECDSA");
    });
    set(t, "C_Sign ECDSA P-256", |r| r.floor = Some(f));
    let k = tpm.load_user_key(csk, &auth, &rsa_blob).expect("load");
    let em = pkcs1_sign_pad(&digest_info(&h), 256);
    let f = time_n(scale(100), || {
        tpm.rsa_raw(k, &em, false).expect("RSA sign");
    });
    set(t, "C_Sign RSA-2048 PKCS#1", |r| r.floor = Some(f.clone()));
    set(t, "C_Sign RSA-2048 PSS", |r| r.floor = Some(f));
    let tpmvsc::tpm::PublicKey::Rsa { modulus, exponent } = rsa_pub else {
        panic!("RSA")
    };
    let c = rsa_public(&modulus, &exponent)
        .encrypt(&mut SysRng, rsa::Pkcs1v15Encrypt, b"secret message")
        .expect("encrypt");
    let f = time_n(scale(100), || {
        tpm.rsa_raw(k, &c, true).expect("decrypt");
    });
    set(t, "C_Decrypt RSA-2048 OAEP", |r| r.floor = Some(f.clone()));
    set(t, "C_Decrypt RSA-2048 PKCS#1", |r| r.floor = Some(f));
    let f = time_n(scale(200), || {
        tpm.random(32).expect("random");
    });
    set(t, "C_GenerateRandom 32 bytes", |r| r.floor = Some(f));
    drop(tpm);
}

/// tpm2-pkcs11 on the same TPM, with a token made by its own tool. It needs a resource
/// manager (its tool leaves transient objects loaded: swtpm's 3 slots run out), so this
/// phase runs through tpm2-abrmd — and measures this module through the same abrmd, so
/// the two columns compare like with like. None when it ran; else why not.
fn measure_tpm2_pkcs11(
    tmp: &Path,
    tcti: &str,
    t: &mut Table,
    scale: &dyn Fn(usize) -> usize,
) -> Option<String> {
    let lib = PathBuf::from("/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so");
    if !lib.exists() || Command::new("tpm2_ptool").arg("--help").output().is_err() {
        return Some(
            "not installed (apt-get install libtpm2-pkcs11-1 libtpm2-pkcs11-tools)".into(),
        );
    }
    std::thread::sleep(Duration::from_millis(300)); // every connection of ours is closed
    let abrmd = match tpmvsc::simulator::Abrmd::start(tcti) {
        Ok(a) => a,
        Err(e) => return Some(format!("tpm2-abrmd could not start: {e}")),
    };
    let rm = abrmd.tcti();
    // SAFETY: single-threaded at this point (the throughput threads have ended).
    unsafe {
        std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &abrmd.address);
        std::env::set_var("TPMVSC_TCTI", &rm);
    }
    let suffix = " — via tpm2-abrmd";
    // This module through abrmd.
    let exe = std::env::current_exe().ok()?;
    let ours = module_path();
    let cold = child_logins(&exe, &ours, "bench", scale(10));
    set(t, &format!("cold init → C_Login{suffix}"), |r| {
        r.ours = cold
    });
    {
        let p = load(&ours);
        let s = login(&p, Some("bench"));
        let warm = warm_logins(&s, scale(30));
        set(t, &format!("C_Login (warm){suffix}"), |r| {
            r.ours = Some(warm)
        });
        let ec = private_key(&s, "bench-ec");
        let h = Sha256::digest(b"benchmark").to_vec();
        let f = time_n(scale(300), || {
            s.sign(&Mechanism::Ecdsa, ec, &h).expect("ECDSA");
        });
        set(t, &format!("C_Sign ECDSA P-256{suffix}"), |r| {
            r.ours = Some(f)
        });
        let (rsa_pub, rsa) = rsa_pair(&s, false);
        let di = digest_info(&h);
        let f = time_n(scale(100), || {
            s.sign(&Mechanism::RsaPkcs, rsa, &di).expect("RSA");
        });
        set(t, &format!("C_Sign RSA-2048 PKCS#1{suffix}"), |r| {
            r.ours = Some(f)
        });
        let c = s.encrypt(&oaep(), rsa_pub, b"secret").expect("encrypt");
        let f = time_n(scale(100), || {
            s.decrypt(&oaep(), rsa, &c).expect("decrypt");
        });
        set(t, &format!("C_Decrypt RSA-2048 OAEP{suffix}"), |r| {
            r.ours = Some(f)
        });
        drop(s);
        let _ = p.finalize();
    }

    let dir = tmp.join("tpm2-pkcs11");
    let _ = std::fs::create_dir_all(&dir);
    let run = |args: &[&str]| {
        Command::new("tpm2_ptool")
            .args(args)
            .env("TPM2TOOLS_TCTI", &rm)
            .env("TPM2_PKCS11_TCTI", &rm)
            .env("TSS2_LOG", "all+NONE")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let path = format!("--path={}", dir.display());
    let ok = run(&["init", &path])
        && run(&[
            "addtoken",
            "--pid=1",
            "--label=tpm2bench",
            "--sopin=12345678",
            &format!("--userpin={PIN}"),
            &path,
        ])
        && run(&[
            "addkey",
            "--algorithm=ecc256",
            "--label=tpm2bench",
            "--key-label=ec",
            &format!("--userpin={PIN}"),
            &path,
        ])
        && run(&[
            "addkey",
            "--algorithm=rsa2048",
            "--label=tpm2bench",
            "--key-label=rsa",
            &format!("--userpin={PIN}"),
            &path,
        ]);
    if !ok {
        return Some("tpm2_ptool could not make a token on this TPM (through tpm2-abrmd)".into());
    }
    // SAFETY: single-threaded at this point.
    unsafe {
        std::env::set_var("TPM2_PKCS11_STORE", &dir);
        std::env::set_var("TPM2_PKCS11_TCTI", &rm);
        std::env::set_var("TPM2_PKCS11_LOG_LEVEL", "0");
    }
    let cold = child_logins(&exe, &lib, "tpm2bench", scale(10));
    set(t, &format!("cold init → C_Login{suffix}"), |r| {
        r.tpm2_pkcs11 = cold
    });
    let p = load(&lib);
    let s = login(&p, Some("tpm2bench"));
    let warm = warm_logins(&s, scale(20));
    set(t, &format!("C_Login (warm){suffix}"), |r| {
        r.tpm2_pkcs11 = Some(warm)
    });
    let find = |label: &str| {
        s.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.into()),
        ])
        .ok()?
        .first()
        .copied()
    };
    let h = Sha256::digest(b"benchmark").to_vec();
    if let Some(ec) = find("ec") {
        let f = time_n(scale(100), || {
            s.sign(&Mechanism::Ecdsa, ec, &h).expect("ECDSA");
        });
        set(t, &format!("C_Sign ECDSA P-256{suffix}"), |r| {
            r.tpm2_pkcs11 = Some(f)
        });
    }
    if let Some(rsa) = find("rsa") {
        let di = digest_info(&h);
        let f = time_n(scale(50), || {
            s.sign(&Mechanism::RsaPkcs, rsa, &di).expect("RSA");
        });
        set(t, &format!("C_Sign RSA-2048 PKCS#1{suffix}"), |r| {
            r.tpm2_pkcs11 = Some(f)
        });
        let pubs = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label("rsa".into()),
            ])
            .unwrap_or_default();
        if let Some(pk) = pubs.first() {
            let attrs = s
                .get_attributes(
                    *pk,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .unwrap_or_default();
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(v) => n = v,
                    Attribute::PublicExponent(v) => e = v,
                    _ => {}
                }
            }
            if let Ok(c) =
                rsa_public(&n, &e).encrypt(&mut SysRng, rsa::Oaep::new::<Sha256>(), b"secret")
            {
                let mut fails = 0;
                let f = time_n(scale(50), || {
                    if s.decrypt(&oaep(), rsa, &c).is_err() {
                        fails += 1;
                    }
                });
                if fails == 0 {
                    set(t, &format!("C_Decrypt RSA-2048 OAEP{suffix}"), |r| {
                        r.tpm2_pkcs11 = Some(f)
                    });
                }
            }
        }
    }
    drop(s);
    let _ = p.finalize();
    drop(abrmd);
    None
}

/// Cold logins in fresh processes (`--child-login`), for the token labelled `label`.
fn child_logins(exe: &Path, module: &Path, label: &str, n: usize) -> Option<Figure> {
    let mut cold = Vec::new();
    for _ in 0..n {
        let out = Command::new(exe)
            .arg("--child-login")
            .arg(module)
            .arg(label)
            .output()
            .ok()?;
        let us: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if us > 0 {
            cold.push(Duration::from_micros(us));
        }
    }
    (!cold.is_empty()).then(|| figure(cold))
}

fn print_table(t: &Table, extra: &BTreeMap<String, String>, tpm2: Option<&str>) {
    let cell = |f: &Option<Figure>| {
        f.as_ref().map_or("—".to_string(), |f| {
            format!("{:.3} / {:.3} / {:.0}", f.median_ms, f.p95_ms, f.ops_per_s)
        })
    };
    println!(
        "| operation | tpmvsc median / p95 ms / ops/s | floor | tpm2-pkcs11 | ours ÷ floor | tpm2-pkcs11 ÷ ours |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, r) in t {
        let ratio = |a: &Option<Figure>, b: &Option<Figure>| match (a, b) {
            (Some(a), Some(b)) if b.median_ms > 0.0 => format!("{:.2}×", a.median_ms / b.median_ms),
            _ => "—".into(),
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            cell(&r.ours),
            cell(&r.floor),
            cell(&r.tpm2_pkcs11),
            ratio(&r.ours, &r.floor),
            ratio(&r.tpm2_pkcs11, &r.ours)
        );
    }
    println!();
    for (k, v) in extra {
        println!("- {k}: {v}");
    }
    if let Some(w) = tpm2 {
        println!("- tpm2-pkcs11: {w}");
    }
}
