//! Helpers shared by the integration tests that compile and run C programs.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The system libaio the differential tests compare against.
pub const SYSTEM_LIBAIO: &str = "/usr/lib/x86_64-linux-gnu/libaio.so.1";
/// The system libaio header.
pub const SYSTEM_HEADER: &str = "/usr/include/libaio.h";

/// The target triple the C programs are built for: the one these tests run on.
pub const TARGET: &str = if cfg!(target_arch = "x86_64") {
    "x86_64-unknown-linux-gnu"
} else if cfg!(target_arch = "aarch64") {
    "aarch64-unknown-linux-gnu"
} else {
    panic!("unsupported test architecture")
};

/// The repository root (the package directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// `target/release`, where `cargo build --release` puts libaio.so / libaio.a.
pub fn release_dir() -> PathBuf {
    target_dir().join("release")
}

/// Build the release library once per test process (cheap when up to date)
/// and return `target/release`.
pub fn ensure_lib_built() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let out = Command::new(cargo)
            .args(["build", "--release", "--lib"])
            .current_dir(repo_root())
            .env("CARGO_TARGET_DIR", target_dir())
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build --release --lib failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let dir = release_dir();
    assert!(dir.join("libaio.so").is_file(), "no libaio.so in {dir:?}");
    dir
}

/// A directory `target/ctest-lib` holding `libaio.so` and `libaio.so.1`,
/// both symlinks to `target/release/libaio.so`, for `-L`/`-rpath`.
///
/// Needed because programs linked with `-laio` record the SONAME
/// `libaio.so.1`, which `target/release` does not contain: with an rpath to
/// `target/release` alone the dynamic loader would silently fall back to
/// the system libaio.
pub fn link_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let so = ensure_lib_built().join("libaio.so");
        let dir = target_dir().join("ctest-lib");
        fs::create_dir_all(&dir).expect("create ctest-lib");
        for name in ["libaio.so", "libaio.so.1"] {
            let link = dir.join(name);
            let _ = fs::remove_file(&link);
            // Several test binaries may race here; the loser sees EEXIST.
            if let Err(e) = std::os::unix::fs::symlink(&so, &link) {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists,
                    "symlink {link:?}: {e}"
                );
            }
        }
        dir
    })
    .clone()
}

/// The libaio.so.1 that `exe` loads, according to the dynamic loader
/// (`LD_TRACE_LOADED_OBJECTS=1`, what ldd does).
pub fn loaded_libaio(exe: &Path) -> Option<PathBuf> {
    let out = Command::new(exe)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.trim_start().starts_with("libaio.so.1 =>"))
        .and_then(|l| l.split("=>").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(PathBuf::from)
}

/// target/release/libaio.so (built).
pub fn lib_so() -> PathBuf {
    ensure_lib_built().join("libaio.so")
}

/// target/release/libaio.a (built).
pub fn lib_a() -> PathBuf {
    ensure_lib_built().join("libaio.a")
}

/// A C (or C++) compiler command from the `cc` crate, with its default
/// flags for the host (-O2, -fPIC, ...).
pub fn compiler(cpp: bool) -> Command {
    cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .opt_level(2)
        .target(TARGET)
        .host(TARGET)
        .cpp(cpp)
        .get_compiler()
        .to_command()
}

/// The flags every C test program is built with (see ctests/README.md).
pub const C_FLAGS: [&str; 7] = [
    "-std=gnu11",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-D_GNU_SOURCE",
];

/// A C compiler command with [`C_FLAGS`].
pub fn c_compiler() -> Command {
    let mut cmd = compiler(false);
    cmd.args(C_FLAGS);
    cmd
}

/// A fresh, empty directory `target/ctest-tmp/<name>`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = target_dir().join("ctest-tmp").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// `program arg arg ...` of a command (its `Debug` form lists the whole
/// environment when the cc crate set it up).
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run a command and return `Err(message with its output)` if it fails.
pub fn run_ok(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {}: {e}", show(cmd)))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{what} failed ({}): {}\n{text}",
            out.status,
            show(cmd)
        ))
    }
}

/// The outcome of running a program with a time limit.
pub struct Outcome {
    /// None when it was killed at the time limit.
    pub status: Option<ExitStatus>,
    /// stdout and stderr, interleaved.
    pub output: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Run `cmd` in `dir` with its stdout+stderr going to `dir/output.txt`,
/// killing it after `limit`.
pub fn run_with_limit(cmd: &mut Command, dir: &Path, limit: Duration) -> Outcome {
    let log_path = dir.join("output.txt");
    let log = File::create(&log_path).expect("create output file");
    let log2 = log.try_clone().expect("dup output file");
    let start = Instant::now();
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", show(cmd)));
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let output = String::from_utf8_lossy(&fs::read(&log_path).unwrap_or_default()).into_owned();
    Outcome {
        status,
        output,
        elapsed,
    }
}
