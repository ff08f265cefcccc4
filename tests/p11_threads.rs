//! Reliability issue, items 1–3 and 6–8, for the PKCS#11 module: no deadlock between
//! C_Login and C_SetPIN from two threads, a bounded C_Finalize while calls are in flight,
//! a frozen TPM that blocks one thread but not the others, large random requests that
//! let other threads in, caller lengths that are never allocated, PINs that cannot be
//! right costing nothing, and the spec details (no library thread when the host forbids
//! it; destroyed keys under an active operation). Raw C_* calls through the function
//! list, from several threads, as a host program makes them.

#![allow(unsafe_code)] // Raw C_* calls through the function list, as a host makes them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::raw::RawModule;
use common::*;
use cryptoki_sys::*;

/// The function list, copied (plain function pointers: shareable across threads).
#[derive(Clone, Copy)]
struct Fns(CK_FUNCTION_LIST);

impl Fns {
    fn load(m: &RawModule) -> Fns {
        Fns(*m.list())
    }

    fn initialize(&self, flags: CK_FLAGS) -> CK_RV {
        let mut args = CK_C_INITIALIZE_ARGS {
            flags,
            ..Default::default()
        };
        // SAFETY: a valid CK_C_INITIALIZE_ARGS for the call.
        unsafe {
            self.0.C_Initialize.expect("C_Initialize")(
                (&mut args as *mut CK_C_INITIALIZE_ARGS).cast(),
            )
        }
    }

    fn finalize(&self) -> CK_RV {
        // SAFETY: NULL is the only valid argument.
        unsafe { self.0.C_Finalize.expect("C_Finalize")(std::ptr::null_mut()) }
    }

    fn open(&self, rw: bool) -> CK_SESSION_HANDLE {
        let mut h: CK_SESSION_HANDLE = 0;
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        // SAFETY: valid out-pointer; no notify callback.
        let rv = unsafe {
            self.0.C_OpenSession.expect("C_OpenSession")(
                0,
                flags,
                std::ptr::null_mut(),
                None,
                &mut h,
            )
        };
        assert_eq!(rv, CKR_OK, "C_OpenSession");
        h
    }

    fn login(&self, h: CK_SESSION_HANDLE, pin: &[u8]) -> CK_RV {
        self.login_as(h, CKU_USER, pin)
    }

    fn login_as(&self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> CK_RV {
        let mut p = pin.to_vec();
        // SAFETY: `p` holds `len` bytes for the call.
        unsafe { self.0.C_Login.expect("C_Login")(h, user, p.as_mut_ptr(), p.len() as CK_ULONG) }
    }

    fn logout(&self, h: CK_SESSION_HANDLE) -> CK_RV {
        // SAFETY: plain handle argument.
        unsafe { self.0.C_Logout.expect("C_Logout")(h) }
    }

    fn set_pin(&self, h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> CK_RV {
        let (mut o, mut n) = (old.to_vec(), new.to_vec());
        // SAFETY: both buffers hold their lengths for the call.
        unsafe {
            self.0.C_SetPIN.expect("C_SetPIN")(
                h,
                o.as_mut_ptr(),
                o.len() as CK_ULONG,
                n.as_mut_ptr(),
                n.len() as CK_ULONG,
            )
        }
    }

    fn random(&self, h: CK_SESSION_HANDLE, buf: &mut [u8]) -> CK_RV {
        // SAFETY: `buf` holds `len` writable bytes.
        unsafe {
            self.0.C_GenerateRandom.expect("C_GenerateRandom")(
                h,
                buf.as_mut_ptr(),
                buf.len() as CK_ULONG,
            )
        }
    }

    /// An EC P-256 token key pair; returns the private key's handle.
    fn keygen(&self, h: CK_SESSION_HANDLE) -> CK_OBJECT_HANDLE {
        let mut params = P256_PARAMS.to_vec();
        let mut yes: CK_BBOOL = CK_TRUE;
        let attr = |t, p: *mut u8, n: usize| CK_ATTRIBUTE {
            type_: t,
            pValue: p.cast(),
            ulValueLen: n as CK_ULONG,
        };
        let mut public = [attr(CKA_EC_PARAMS, params.as_mut_ptr(), params.len())];
        let mut private = [attr(CKA_SIGN, &mut yes as *mut CK_BBOOL, 1)];
        let mut mech = CK_MECHANISM {
            mechanism: CKM_EC_KEY_PAIR_GEN,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        let (mut pubh, mut privh) = (0, 0);
        // SAFETY: templates and out-pointers valid for the call.
        let rv = unsafe {
            self.0.C_GenerateKeyPair.expect("C_GenerateKeyPair")(
                h,
                &mut mech,
                public.as_mut_ptr(),
                1,
                private.as_mut_ptr(),
                1,
                &mut pubh,
                &mut privh,
            )
        };
        assert_eq!(rv, CKR_OK, "C_GenerateKeyPair");
        privh
    }

    fn sign_init(&self, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
        let mut mech = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        // SAFETY: valid mechanism for the call.
        unsafe { self.0.C_SignInit.expect("C_SignInit")(h, &mut mech, key) }
    }

    fn sign(&self, h: CK_SESSION_HANDLE) -> CK_RV {
        let mut digest = [7u8; 32];
        let mut sig = [0u8; 64];
        let mut len: CK_ULONG = 64;
        // SAFETY: buffers hold their stated lengths.
        unsafe {
            self.0.C_Sign.expect("C_Sign")(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut len)
        }
    }

    /// C_SignInit + C_Sign with the ECDSA key.
    fn sign_once(&self, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
        match self.sign_init(h, key) {
            CKR_OK => self.sign(h),
            rv => rv,
        }
    }

    fn destroy(&self, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> CK_RV {
        // SAFETY: plain handle arguments.
        unsafe { self.0.C_DestroyObject.expect("C_DestroyObject")(h, o) }
    }
}

/// Runs `f` on a thread and panics if it does not finish within `limit` (a hang).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}: a hang"))
}

#[test]
fn login_logout_and_set_pin_from_threads_do_not_deadlock() {
    let _w = P11World::new(&[]);
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for kind in 0..3 {
        let stop = Arc::clone(&stop);
        workers.push(std::thread::spawn(move || {
            let h = f.open(true);
            let mut done = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match kind {
                    0 => {
                        let rv = f.login(h, P11_PIN.as_bytes());
                        assert!(
                            rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
                            "C_Login: {rv:#x}"
                        );
                        let rv = f.logout(h);
                        assert!(
                            rv == CKR_OK || rv == CKR_USER_NOT_LOGGED_IN,
                            "C_Logout: {rv:#x}"
                        );
                    }
                    // The PIN is "changed" to itself: the same locks, no wrong PIN ever.
                    _ => {
                        let rv = f.set_pin(h, P11_PIN.as_bytes(), P11_PIN.as_bytes());
                        assert_eq!(rv, CKR_OK, "C_SetPIN");
                    }
                }
                done += 1;
            }
            done
        }));
    }
    let counts = within(
        Duration::from_secs(60),
        "10 s of login/logout and C_SetPIN",
        {
            let stop = Arc::clone(&stop);
            move || {
                std::thread::sleep(Duration::from_secs(10));
                stop.store(true, Ordering::Relaxed);
                workers
                    .into_iter()
                    .map(|w| w.join().expect("a worker panicked"))
                    .collect::<Vec<_>>()
            }
        },
    );
    eprintln!("login/logout rounds, C_SetPIN x2: {counts:?}");
    assert!(
        counts.iter().all(|c| *c > 0),
        "every thread got through: {counts:?}"
    );
    assert_eq!(f.finalize(), CKR_OK);
}

#[test]
fn finalize_with_logins_in_flight_returns_within_a_bound() {
    let _w = P11World::new(&[]);
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(std::thread::spawn(move || {
            let h = f.open(true);
            loop {
                let rv = f.login(h, P11_PIN.as_bytes());
                if rv == CKR_CRYPTOKI_NOT_INITIALIZED {
                    return;
                }
                let _ = f.logout(h);
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let rv = within(Duration::from_secs(20), "C_Finalize", move || f.finalize());
    let took = started.elapsed();
    assert_eq!(rv, CKR_OK, "C_Finalize");
    assert!(took < Duration::from_secs(5), "C_Finalize took {took:?}");
    within(
        Duration::from_secs(20),
        "the logins after C_Finalize",
        move || {
            for w in workers {
                w.join().expect("a worker panicked");
            }
        },
    );
    // The module can be initialized again and used.
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let h = f.open(true);
    assert_eq!(f.login(h, P11_PIN.as_bytes()), CKR_OK);
    assert_eq!(f.finalize(), CKR_OK);
}

#[test]
fn a_frozen_tpm_holds_one_thread_and_the_others_get_device_error() {
    let w = P11World::new(&[]);
    // SAFETY: set before any thread of this test starts and before the module loads.
    unsafe { std::env::set_var("TPMVSC_TPM_WAIT", "2") };
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let a = f.open(true);
    assert_eq!(f.login(a, P11_PIN.as_bytes()), CKR_OK);
    let key = f.keygen(a);
    let b = f.open(true);
    assert_eq!(f.sign_once(b, key), CKR_OK, "a signature before the freeze");

    let pid = w.swtpm.pid();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let stuck = std::thread::spawn(move || f.sign_once(a, key));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let rv = within(
        Duration::from_secs(15),
        "a second thread's C_Sign",
        move || f.sign_once(b, key),
    );
    let waited = started.elapsed();
    signal("-CONT");
    assert_eq!(
        rv, CKR_DEVICE_ERROR,
        "the second thread's C_Sign on a frozen TPM"
    );
    assert!(
        waited < Duration::from_secs(6),
        "the second thread waited {waited:?} (limit 2 s)"
    );
    let first = stuck.join().expect("the stuck thread");
    eprintln!("the thread whose command froze got {first:#x} once the TPM came back");
    // Calls work again once the TPM answers (a new connection if the old one was
    // abandoned).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f.sign_once(b, key) {
            CKR_OK => break,
            rv if Instant::now() < deadline => {
                eprintln!("after the freeze: {rv:#x}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            rv => panic!("C_Sign after the TPM came back: {rv:#x}"),
        }
    }
    assert_eq!(f.finalize(), CKR_OK);
}

#[test]
fn a_large_random_request_lets_other_threads_in_and_huge_lengths_are_refused() {
    let _w = P11World::new(&[]);
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let a = f.open(true);
    assert_eq!(f.login(a, P11_PIN.as_bytes()), CKR_OK);
    let key = f.keygen(a);
    let b = f.open(true);
    let big = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let started = Instant::now();
        let rv = f.random(b, &mut buf);
        (
            rv,
            started.elapsed(),
            buf.iter().filter(|x| **x != 0).count(),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(f.sign_once(a, key), CKR_OK);
    let sign = started.elapsed();
    let (rv, random, nonzero) = big.join().expect("the random thread");
    assert_eq!(rv, CKR_OK, "1 MiB of random bytes");
    assert!(
        nonzero > 1_000_000,
        "the buffer is filled: {nonzero} nonzero bytes"
    );
    eprintln!("1 MiB random: {random:?}; a signature meanwhile: {sign:?}");
    assert!(
        sign < random / 4,
        "the signature waited for the random request ({sign:?} of {random:?})"
    );

    // Lengths far beyond any buffer are refused before anything is allocated or written.
    let mut small = [0u8; 16];
    for len in [1u64 << 40, (1u64 << 63) + 1, u64::MAX] {
        // SAFETY: the module must refuse the length before it touches the buffer.
        let rv = unsafe {
            f.0.C_GenerateRandom.expect("C_GenerateRandom")(a, small.as_mut_ptr(), len as CK_ULONG)
        };
        assert_eq!(rv, CKR_ARGUMENTS_BAD, "C_GenerateRandom of {len} bytes");
    }
    // A search continued with the largest count there is: the count is the caller's
    // buffer size, not something to add to a position.
    let mut found = [0 as CK_OBJECT_HANDLE; 64];
    let mut n: CK_ULONG = 0;
    // SAFETY: an empty template; `found` holds 64 handles and the search has fewer
    // objects than that, so the module writes at most what the list holds.
    unsafe {
        assert_eq!(
            f.0.C_FindObjectsInit.expect("C_FindObjectsInit")(a, std::ptr::null_mut(), 0),
            CKR_OK
        );
        assert_eq!(
            f.0.C_FindObjects.expect("C_FindObjects")(a, found.as_mut_ptr(), 1, &mut n),
            CKR_OK
        );
        assert_eq!(n, 1, "one object of the card");
        assert_eq!(
            f.0.C_FindObjects.expect("C_FindObjects")(a, found.as_mut_ptr(), CK_ULONG::MAX, &mut n),
            CKR_OK,
            "C_FindObjects with the largest count"
        );
        assert!(n < 64, "the rest of the card's objects: {n}");
        assert_eq!(
            f.0.C_FindObjectsFinal.expect("C_FindObjectsFinal")(a),
            CKR_OK
        );
    }
    assert_eq!(f.finalize(), CKR_OK);
}

#[test]
fn a_pin_that_cannot_be_right_costs_no_try_in_c_login() {
    let w = P11World::new(&[]);
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let h = f.open(true);
    let da = da_counter(&w.swtpm.tcti());
    // The card's PINs are 8 to 127 printable ASCII characters (the default policy), and so
    // are its PUKs: nothing else can be right, and nothing else reaches the TPM.
    let long = [b'1'; 128];
    let impossible: [(&str, &[u8], CK_RV); 5] = [
        ("empty", b"", CKR_PIN_LEN_RANGE),
        ("128 bytes", &long, CKR_PIN_LEN_RANGE),
        ("3 bytes", b"123", CKR_PIN_LEN_RANGE),
        ("below the card's minimum", b"1234567", CKR_PIN_LEN_RANGE),
        ("not printable", "1234567\u{e9}".as_bytes(), CKR_PIN_INVALID),
    ];
    for (what, pin, rv) in impossible {
        assert_eq!(f.login(h, pin), rv, "C_Login with a PIN {what}");
        assert_eq!(
            f.login_as(h, CKU_SO, pin),
            rv,
            "SO C_Login with a PUK {what}"
        );
    }
    assert_eq!(f.login(h, P11_PIN.as_bytes()), CKR_OK);
    for (what, pin, rv) in impossible {
        assert_eq!(
            f.set_pin(h, pin, b"New-pin-5521"),
            rv,
            "C_SetPIN with an old PIN {what}"
        );
    }
    assert_eq!(f.logout(h), CKR_OK);
    assert_eq!(
        f.login_as(h, CKU_SO, P11_PUK.as_bytes()),
        CKR_OK,
        "SO login"
    );
    for (what, puk, rv) in impossible {
        assert_eq!(
            f.set_pin(h, puk, b"New-puk-5521"),
            rv,
            "C_SetPIN as SO with an old PUK {what}"
        );
    }
    assert_eq!(f.logout(h), CKR_OK);
    assert_eq!(da_counter(&w.swtpm.tcti()), da, "the TPM saw nothing wrong");
    assert_eq!(w.info()["pin_tries_left"], 5, "no PIN try spent");
    assert_eq!(w.info()["puk_tries_left"], 5, "no PUK try spent");
    assert_eq!(f.login(h, P11_PIN.as_bytes()), CKR_OK);
    assert_eq!(f.finalize(), CKR_OK);
}

/// Threads of this process named `name` (from /proc/self/task/*/comm).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

#[test]
fn without_os_threads_the_module_starts_none_and_still_shares_the_tpm() {
    let w = P11World::new(&[]);
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(
        f.initialize(CKF_OS_LOCKING_OK | CKF_LIBRARY_CANT_CREATE_OS_THREADS),
        CKR_OK
    );
    let h = f.open(true);
    assert_eq!(f.login(h, P11_PIN.as_bytes()), CKR_OK);
    let key = f.keygen(h);
    assert_eq!(f.sign_once(h, key), CKR_OK);
    assert_eq!(threads_named("tpmvsc-idle"), 0, "no library thread");
    // The connection was given up after the call: another process gets the TPM at once.
    let started = Instant::now();
    w.cli
        .check_pin("t", P11_PIN)
        .ok("check-pin from another process");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(f.sign_once(h, key), CKR_OK, "and the module signs again");
    assert_eq!(f.finalize(), CKR_OK);
}

#[test]
fn destroyed_and_invisible_objects_answer_as_pkcs11_says() {
    let _w = P11World::new(&[]);
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let h = f.open(true);
    assert_eq!(f.login(h, P11_PIN.as_bytes()), CKR_OK);
    let key = f.keygen(h);
    // A key destroyed while an operation on it is active.
    assert_eq!(f.sign_init(h, key), CKR_OK);
    assert_eq!(f.destroy(h, key), CKR_OK);
    assert_eq!(
        f.sign(h),
        CKR_KEY_HANDLE_INVALID,
        "C_Sign after the key was destroyed"
    );
    // A private object is not visible without login: destroying it names the handle.
    let other = f.keygen(h);
    assert_eq!(f.logout(h), CKR_OK);
    assert_eq!(
        f.destroy(h, other),
        CKR_OBJECT_HANDLE_INVALID,
        "C_DestroyObject on an invisible private key"
    );
    assert_eq!(f.finalize(), CKR_OK);
}

/// `kill SIG pid`.
fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A TPM answer lost for good (the relay swallows one command and closes its side to
/// swtpm; the TPM itself is fine): the thread that sent it stays stuck, other threads get
/// CKR_DEVICE_ERROR after the wait limit, and then a fresh connection serves them —
/// without a resource manager it takes over the cross-process lock the stuck one holds
/// instead of waiting for it.
#[test]
fn a_lost_answer_abandons_the_connection_and_the_next_call_gets_a_new_one() {
    let swtpm = Swtpm::start();
    let relay = Relay::start(swtpm.port());
    let store = TestStore::new();
    set_module_env(&store, &relay.tcti());
    // SAFETY: set before any thread of this test starts and before the module loads.
    unsafe { std::env::set_var("TPMVSC_TPM_WAIT", "2") };
    let cli = Cli::new(&store, &relay.tcti());
    cli.tpmvsc(&["create", "--name", "t", "--puk", "default"])
        .ok("create");
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let a = f.open(true);
    assert_eq!(f.login(a, P11_PIN.as_bytes()), CKR_OK);
    let key = f.keygen(a);
    let b = f.open(true);
    assert_eq!(f.sign_once(b, key), CKR_OK, "a signature before the loss");

    relay.swallow_next_command();
    let _stuck = std::thread::spawn(move || f.sign_once(a, key));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let first = within(
        Duration::from_secs(15),
        "a second thread's C_Sign",
        move || f.sign_once(b, key),
    );
    assert_eq!(first, CKR_DEVICE_ERROR, "while the answer is missing");
    // The next calls open a new connection and sign again, well before the 30 s the
    // cross-process lock would have made them wait.
    let rv = within(
        Duration::from_secs(20),
        "C_Sign on a new connection",
        move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let rv = f.sign_once(b, key);
                if rv == CKR_OK || Instant::now() > deadline {
                    return rv;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        },
    );
    let took = started.elapsed();
    assert_eq!(rv, CKR_OK, "a fresh connection serves the other threads");
    assert!(took < Duration::from_secs(12), "replaced after {took:?}");
    let rv = within(Duration::from_secs(10), "C_Finalize", move || f.finalize());
    assert_eq!(rv, CKR_OK);
}

/// C_Finalize on a frozen TPM returns within its bound, whether the freeze came right
/// after a login (the connection is idle, its close cannot get through) or once the
/// idle thread was giving the connection up (it is stuck inside the TPM).
#[test]
fn c_finalize_returns_within_a_bound_on_a_frozen_tpm() {
    for pause in [Duration::ZERO, Duration::from_millis(600)] {
        let w = P11World::new(&[]);
        let m = RawModule::open();
        let f = Fns::load(&m);
        assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
        let h = f.open(true);
        assert_eq!(f.login(h, P11_PIN.as_bytes()), CKR_OK);
        let key = f.keygen(h);
        assert_eq!(f.sign_once(h, key), CKR_OK);
        signal(w.swtpm.pid(), "-STOP");
        std::thread::sleep(pause);
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f.finalize());
        });
        let rv = rx.recv_timeout(Duration::from_secs(15));
        let took = started.elapsed();
        signal(w.swtpm.pid(), "-CONT");
        assert_eq!(
            rv,
            Ok(CKR_OK),
            "C_Finalize {pause:?} after the freeze (waited {took:?})"
        );
        assert!(took < Duration::from_secs(8), "C_Finalize took {took:?}");
        drop(m);
    }
}

/// A login stuck on a frozen TPM holds its card; a second thread's login on the same
/// card waits at most the TPM wait limit and gets CKR_DEVICE_ERROR (not the card lock's
/// 30 s and CKR_FUNCTION_FAILED).
#[test]
fn a_login_behind_a_login_stuck_on_a_frozen_tpm_gets_device_error_soon() {
    let w = P11World::new(&[]);
    // SAFETY: set before any thread of this test starts and before the module loads.
    unsafe { std::env::set_var("TPMVSC_TPM_WAIT", "2") };
    let m = RawModule::open();
    let f = Fns::load(&m);
    assert_eq!(f.initialize(CKF_OS_LOCKING_OK), CKR_OK);
    let a = f.open(true);
    let b = f.open(true);
    signal(w.swtpm.pid(), "-STOP");
    let stuck = std::thread::spawn(move || f.login(a, P11_PIN.as_bytes()));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let rv = within(Duration::from_secs(20), "the second login", move || {
        f.login(b, P11_PIN.as_bytes())
    });
    let took = started.elapsed();
    signal(w.swtpm.pid(), "-CONT");
    assert_eq!(rv, CKR_DEVICE_ERROR, "the second login (after {took:?})");
    assert!(took < Duration::from_secs(6), "waited {took:?} (limit 2 s)");
    let first = stuck.join().expect("the stuck login");
    eprintln!("the stuck login got {first:#x} once the TPM came back");
    assert_eq!(f.finalize(), CKR_OK);
}
