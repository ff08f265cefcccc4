//! The C API of include/tpmvsc.h: the C example compiles against the header and runs
//! against the built libtpmvsc.so on a real swtpm; NULL and short buffers get error codes.

#![allow(unsafe_code)] // Calls the exported C functions directly with bad pointers.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Swtpm, TestStore, require_tool};

fn lib_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tpmvsc"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

#[test]
fn the_c_example_compiles_against_the_header_and_provisions_a_card() {
    if !require_tool("cc") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tpm = Swtpm::start();
    let store = TestStore::new();
    let exe = store.scratch("provision");
    let lib = lib_dir();
    assert!(
        lib.join("libtpmvsc.so").exists(),
        "libtpmvsc.so not built in {}",
        lib.display()
    );
    let cc = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-std=c99", "-I"])
        .arg(root.join("include"))
        .arg(root.join("examples/c/provision.c"))
        .arg("-L")
        .arg(&lib)
        .arg("-ltpmvsc")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("running cc");
    assert!(
        cc.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe)
        .arg("from-c")
        .env("TPMVSC_STORE", store.path())
        .env("TPMVSC_TCTI", tpm.tcti())
        .env("TPMVSC_LOCK_DIR", tpmvsc::tpm::lock_dir())
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("running the C example");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "C example failed: {out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("instance ROOT\\SMARTCARDREADER\\0000"),
        "{out}"
    );
    assert!(out.contains("old PIN refused: yes (3:"), "{out}");
    assert!(out.contains("PIN without a digit refused: yes"), "{out}");
    assert!(
        out.contains("admin key changed, challenges refilled, card formatted"),
        "{out}"
    );
    assert!(out.contains("\"default_admin_key\":false"), "{out}");
    assert!(
        out.contains("PUK card unblocked and formatted with its PUK"),
        "{out}"
    );
    assert!(
        out.contains("\"admin_challenges_left\":31"),
        "one challenge spent: {out}"
    );
    assert!(out.contains("destroyed from-c"), "{out}");
    assert!(tpmvsc::provision::list(&store.store()).unwrap().is_empty());
}

#[test]
fn null_pointers_and_short_buffers_get_error_codes_not_crashes() {
    use std::ptr::{null, null_mut};
    use tpmvsc::ffi::capi::*;
    // SAFETY: each call passes NULL or valid pointers with their true sizes.
    unsafe {
        assert_eq!(tpmvsc_context_new(null_mut()), TPMVSC_ERR_ARGUMENT);
        assert_eq!(
            tpmvsc_card_destroy(null_mut(), c"x".as_ptr()),
            TPMVSC_ERR_ARGUMENT
        );
        assert!(!tpmvsc_error_message(null()).is_null());
        let mut out = [0 as std::ffi::c_char; 17];
        let key = c"010203040506070801020304050607080102030405060708";
        assert_eq!(
            tpmvsc_admin_response(
                key.as_ptr(),
                c"0000000000000000".as_ptr(),
                out.as_mut_ptr(),
                17
            ),
            TPMVSC_OK
        );
        let text = std::ffi::CStr::from_ptr(out.as_ptr()).to_str().unwrap();
        assert_eq!(text, "B073DC3FB209536D");
        assert_eq!(
            tpmvsc_admin_response(
                key.as_ptr(),
                c"0000000000000000".as_ptr(),
                out.as_mut_ptr(),
                16
            ),
            TPMVSC_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(
            tpmvsc_admin_response(null(), c"00".as_ptr(), out.as_mut_ptr(), 17),
            TPMVSC_ERR_ARGUMENT
        );
        assert_eq!(
            tpmvsc_admin_response(key.as_ptr(), c"zz".as_ptr(), out.as_mut_ptr(), 17),
            TPMVSC_ERR_ARGUMENT
        );

        // This process has no TPMVSC_STORE (tests never set_var), so the context names the
        // default store; every call below fails its argument checks before reading it.
        let mut ctx: *mut TpmvscContext = null_mut();
        assert_eq!(tpmvsc_context_new(&mut ctx), TPMVSC_OK);
        assert_eq!(tpmvsc_card_destroy(ctx, null()), TPMVSC_ERR_ARGUMENT);
        let msg = std::ffi::CStr::from_ptr(tpmvsc_error_message(ctx))
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("NULL"), "{msg}");
        assert_eq!(
            tpmvsc_card_list(ctx, null_mut(), null_mut()),
            TPMVSC_ERR_ARGUMENT
        );
        assert_eq!(
            tpmvsc_pin_change(ctx, c"x".as_ptr(), null(), c"y".as_ptr()),
            TPMVSC_ERR_ARGUMENT
        );
        assert_eq!(
            tpmvsc_puk_unblock(ctx, null(), c"x".as_ptr(), c"y".as_ptr()),
            TPMVSC_ERR_ARGUMENT
        );
        assert_eq!(
            tpmvsc_admin_unblock(ctx, c"x".as_ptr(), c"nothex".as_ptr(), c"y".as_ptr()),
            TPMVSC_ERR_ARGUMENT
        );
        let mut id = [0 as std::ffi::c_char; 10];
        let mut inst = [0 as std::ffi::c_char; 27];
        assert_eq!(
            tpmvsc_card_create(
                ctx,
                c"n".as_ptr(),
                null(),
                null(),
                null(),
                1,
                id.as_mut_ptr(),
                10,
                inst.as_mut_ptr(),
                27
            ),
            TPMVSC_ERR_BUFFER_TOO_SMALL
        );
        tpmvsc_context_free(ctx);
        tpmvsc_context_free(null_mut());
    }
}
