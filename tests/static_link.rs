//! A C program linked statically against `target/release/libaio.a` runs a
//! write/read round trip.
//!
//! The native libraries the static library needs were found once with
//! `cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs`:
//! `-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc`.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const NATIVE_STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

#[test]
fn static_library_round_trip() {
    let archive = lib_a();
    assert!(archive.is_file(), "no {archive:?}");
    let dir = temp_dir("static-link");
    let exe = dir.join("roundtrip");
    let root = repo_root();
    let mut cmd = c_compiler();
    cmd.arg(format!("-I{}", root.join("include").display()))
        .arg(format!("-I{}", root.join("ctests").display()))
        .arg(root.join("ctests/static/roundtrip.c"))
        .arg("-o")
        .arg(&exe)
        .arg(&archive)
        .args(NATIVE_STATIC_LIBS);
    run_ok(&mut cmd, "linking against libaio.a").unwrap_or_else(|e| panic!("{e}"));
    // No libaio shared object is needed at all.
    assert_eq!(loaded_libaio(&exe), None, "{exe:?} still needs libaio.so.1");
    let mut run = Command::new(&exe);
    run.env_remove("LD_LIBRARY_PATH");
    let out = run_with_limit(&mut run, &dir, Duration::from_secs(60));
    assert_eq!(
        out.code(),
        Some(0),
        "static round trip failed:\n{}",
        out.output
    );
}
