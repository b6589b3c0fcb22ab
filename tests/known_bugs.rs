//! Library bugs found by the tests and not fixed yet.  Each test asserts
//! the correct behaviour and is `#[ignore]`d so the suite stays green;
//! run them with `cargo test --release --test known_bugs -- --ignored`.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Build `ctests/known_bugs/<name>.c` like a ctest and run it.
fn run_known_bug(name: &str) {
    let link = link_dir();
    let root = repo_root();
    let dir = temp_dir(&format!("known-bug-{name}"));
    let exe = dir.join(name);
    let mut cmd = compiler(false);
    cmd.args([
        "-std=gnu11",
        "-O2",
        "-g",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-D_GNU_SOURCE",
    ])
    .arg(format!("-I{}", root.join("include").display()))
    .arg(format!("-I{}", root.join("ctests").display()))
    .arg(root.join(format!("ctests/known_bugs/{name}.c")))
    .arg("-o")
    .arg(&exe)
    .arg(format!("-L{}", link.display()))
    .arg("-laio")
    .arg(format!("-Wl,-rpath,{}", link.display()));
    run_ok(&mut cmd, name).unwrap_or_else(|e| panic!("{e}"));
    let out = run_with_limit(&mut Command::new(&exe), &dir, Duration::from_secs(60));
    assert_eq!(
        out.code(),
        Some(0),
        "{name}: {:?}\n{}",
        out.status,
        out.output
    );
}

#[test]
#[ignore = "known bug: src/reap.rs reads an unvalidated timeout pointer (SIGSEGV instead of -EFAULT)"]
fn unmapped_timeout_is_efault_not_sigsegv() {
    run_known_bug("unmapped_timeout");
}
