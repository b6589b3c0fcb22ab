//! Runs every C test program `ctests/*.c` (the "C test convention" of the
//! project):
//!
//! * built with the `cc` crate's compiler, `-std=gnu11 -O2 -g -Wall -Wextra
//!   -Werror -D_GNU_SOURCE -I include -I ctests`, linked against
//!   `target/release/libaio.so` and `-lpthread`, plus the flags of a
//!   `// ctest-ldflags: ...` line.  `-L`/`-rpath` name `target/ctest-lib`,
//!   which holds `libaio.so` and `libaio.so.1` symlinks to it (the SONAME
//!   is `libaio.so.1`; with `target/release` alone the loader would quietly
//!   use the system libaio), and the runner checks which file is loaded;
//! * built and run a second time with `-fsanitize=address,undefined` unless
//!   the file contains `// ctest-no-sanitize`;
//! * run in a fresh directory under `target/ctest-tmp/`, 120 s limit;
//!   exit 0 = pass, 77 = skip (a failure too when `CI=true`), anything
//!   else = fail.
//!
//! One `#[test]` runs them all (in parallel) and reports every failure with
//! the program's full output.  `CTEST_FILTER=substring` runs a subset.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const TIME_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Variant {
    Plain,
    Sanitized,
}

struct CTest {
    source: PathBuf,
    name: String,
    ldflags: Vec<String>,
    sanitize: bool,
}

fn discover() -> Vec<CTest> {
    let dir = repo_root().join("ctests");
    let filter = std::env::var("CTEST_FILTER").unwrap_or_default();
    let mut tests: Vec<CTest> = std::fs::read_dir(&dir)
        .expect("read ctests/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c") && p.is_file())
        .filter(|p| p.to_string_lossy().contains(&filter))
        .map(|source| {
            let text = std::fs::read_to_string(&source).expect("read C test");
            let ldflags = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("// ctest-ldflags:"))
                .flat_map(|f| f.split_whitespace().map(String::from))
                .collect();
            let sanitize = !text.lines().any(|l| l.trim() == "// ctest-no-sanitize");
            let name = source.file_stem().unwrap().to_string_lossy().into_owned();
            CTest {
                source,
                name,
                ldflags,
                sanitize,
            }
        })
        .collect();
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    tests
}

/// Compile `t` into `dir/<name>`.
fn build(t: &CTest, variant: Variant, dir: &Path, lib: &Path) -> Result<PathBuf, String> {
    let root = repo_root();
    let exe = dir.join(&t.name);
    let mut cmd = c_compiler();
    cmd.arg(format!("-I{}", root.join("include").display()))
        .arg(format!("-I{}", root.join("ctests").display()));
    if variant == Variant::Sanitized {
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer",
        ]);
    }
    cmd.arg(&t.source)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg("-laio")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lpthread")
        .args(&t.ldflags);
    run_ok(&mut cmd, &format!("compiling {} ({variant:?})", t.name))?;
    let loaded = loaded_libaio(&exe);
    let ours = lib.join("libaio.so.1");
    // Compare the files, not the names: cargo puts target/release on
    // LD_LIBRARY_PATH for tests, and `make` links target/release/libaio.so.1
    // to the same library, so the loader may reach ours by either name.
    let same_file = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    if loaded.as_deref().and_then(same_file) != same_file(&ours) || same_file(&ours).is_none() {
        return Err(format!(
            "{} would load libaio.so.1 from {loaded:?}, not {ours:?}",
            t.name
        ));
    }
    Ok(exe)
}

/// Build and run one variant; Ok(Some(note)) for a skip.
fn run_one(t: &CTest, variant: Variant, lib: &Path) -> Result<Option<String>, String> {
    let tag = match variant {
        Variant::Plain => "",
        Variant::Sanitized => "-asan",
    };
    let dir = temp_dir(&format!("{}{tag}", t.name));
    let exe = build(t, variant, &dir, lib)?;
    let mut cmd = Command::new(&exe);
    // Leak checking stays on: the library must not leak in these programs.
    cmd.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:abort_on_error=0:exitcode=86",
    )
    .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    let out = run_with_limit(&mut cmd, &dir, TIME_LIMIT);
    let what = format!("{} ({variant:?}, {:.2?})", t.name, out.elapsed);
    match out.code() {
        Some(0) => Ok(None),
        Some(77) => Ok(Some(format!("{what} skipped:\n{}", out.output))),
        _ => Err(format!(
            "{what} FAILED: {}\n{}",
            match out.status {
                None => "killed at the time limit".to_string(),
                Some(s) => s.to_string(),
            },
            out.output
        )),
    }
}

#[test]
fn c_tests() {
    let lib = link_dir();
    let tests = discover();
    assert!(!tests.is_empty(), "no ctests/*.c found");
    let mut jobs: Vec<(&CTest, Variant)> = Vec::new();
    for t in &tests {
        jobs.push((t, Variant::Plain));
        if t.sanitize {
            jobs.push((t, Variant::Sanitized));
        }
    }
    let queue = Mutex::new(jobs.into_iter());
    let failures = Mutex::new(Vec::new());
    let notes = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((t, v)) = queue.lock().unwrap().next() else {
                    break;
                };
                match run_one(t, v, &lib) {
                    Ok(None) => eprintln!("ctest {} ({v:?}): ok", t.name),
                    Ok(Some(n)) => notes.lock().unwrap().push(n),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            });
        }
    });
    let notes = notes.into_inner().unwrap();
    for n in &notes {
        eprintln!("{n}");
    }
    let mut failures = failures.into_inner().unwrap();
    // In CI (`CI=true`, as for `.ci/programs.sh`) the machine is known to
    // have everything (O_DIRECT, ptrace, valgrind): a skip there hides a
    // program that did not run, so it fails the test.
    if std::env::var("CI").as_deref() == Ok("true") {
        failures.extend(notes.iter().map(|n| format!("under CI=true, {n}")));
    }
    assert!(
        failures.is_empty(),
        "{} C test run(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n----------------------------------------\n")
    );
}

/// The benchmark programs (`ctests/bench/*.c`, run by hand or by
/// `.ci/bench.sh`, not here) still compile warning-free against the
/// committed header, so they cannot rot between measurements.
#[test]
fn bench_programs_compile() {
    let root = repo_root();
    let lib = link_dir();
    let dir = temp_dir("bench-compile");
    let mut n = 0;
    for e in std::fs::read_dir(root.join("ctests/bench")).expect("ctests/bench") {
        let src = e.expect("dir entry").path();
        if src.extension().and_then(|x| x.to_str()) != Some("c") {
            continue;
        }
        let exe = dir.join(src.file_stem().expect("file name"));
        let mut cmd = c_compiler();
        cmd.arg(format!("-I{}", root.join("include").display()))
            .arg(format!("-I{}", root.join("ctests").display()))
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .arg(format!("-L{}", lib.display()))
            .arg("-laio")
            .args(["-ldl", "-lpthread"]);
        if let Err(e) = run_ok(&mut cmd, &format!("compiling {}", src.display())) {
            panic!("{e}");
        }
        n += 1;
    }
    assert!(
        n >= 2,
        "expected the benchmark programs in ctests/bench, found {n}"
    );
}
