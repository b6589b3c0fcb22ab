//! The public header `include/libaio.h`:
//! * it is exactly what build.rs generates from the Rust sources;
//! * it compiles warning-free in strict C and C++ modes;
//! * every struct, field and constant has libaio's layout and value
//!   (`ctests/layout/layout.c` built against it and against the system
//!   `/usr/include/libaio.h` prints the same thing).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn committed_header_equals_generated_one() {
    // With it set, build.rs has just overwritten the committed header with
    // the generated one, and the comparison below could not fail.
    assert!(
        std::env::var_os("LIBAIO_RS_UPDATE_HEADER").is_none(),
        "unset LIBAIO_RS_UPDATE_HEADER to check include/libaio.h (build.rs rewrites it when set)"
    );
    let generated = Path::new(env!("OUT_DIR")).join("libaio.h");
    let committed = repo_root().join("include/libaio.h");
    let g = std::fs::read_to_string(&generated).expect("read generated header");
    let c = std::fs::read_to_string(&committed).expect("read committed header");
    if g != c {
        let first = g
            .lines()
            .zip(c.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(g.lines().count().min(c.lines().count()));
        panic!(
            "include/libaio.h differs from the generated {generated:?} (first at line {}).\n\
             Regenerate it with `LIBAIO_RS_UPDATE_HEADER=1 cargo build --release` and commit it.\n\
             generated: {:?}\ncommitted: {:?}",
            first + 1,
            g.lines().nth(first),
            c.lines().nth(first)
        );
    }
}

/// A translation unit that uses every declaration of the header.
const USE_HEADER: &str = r#"
#include <libaio.h>
#include <stddef.h>

static void cb(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
    (void)ctx; (void)iocb; (void)res; (void)res2;
}

int use_everything(void);
int use_everything(void)
{
    io_context_t ctx = NULL;
    struct iocb io;
    struct iocb *list[1];
    struct io_event ev[1];
    struct io_sigset ss;
    struct io_sigset_compat ssc;
    io_iocb_cmd_t cmd = IO_CMD_PWRITEV;
    io_callback_t f = cb;
    char buf[8];
    int r = 0;

    list[0] = &io;
    ss.ss = 0;
    ss.ss_len = 8;
    ssc.ss = 0;
    ssc.ss_len = 8;
    r += io_queue_init(1, &ctx);
    io_prep_pread(&io, 0, buf, sizeof buf, 0);
    io_prep_pwrite(&io, 0, buf, sizeof buf, 0);
    io_prep_preadv(&io, 0, NULL, 0, 0);
    io_prep_pwritev(&io, 0, NULL, 0, 0);
    io_prep_preadv2(&io, 0, NULL, 0, 0, 0);
    io_prep_pwritev2(&io, 0, NULL, 0, 0, 0);
    io_prep_fsync(&io, 0);
    io_prep_fdsync(&io, 0);
    io_prep_poll(&io, 0, 1);
    io_set_callback(&io, f);
    io_set_eventfd(&io, 0);
    r += io_submit(ctx, 1, list);
    r += io_cancel(ctx, &io, ev);
    r += io_getevents(ctx, 0, 1, ev, NULL);
    r += io_pgetevents(ctx, 0, 1, ev, NULL, NULL);
    r += io_poll(ctx, &io, cb, 0, 1);
    r += io_fsync(ctx, &io, cb, 0);
    r += io_fdsync(ctx, &io, cb, 0);
    r += io_queue_run(ctx);
    r += io_queue_release(ctx);
    r += io_setup(1, &ctx);
    r += io_destroy(ctx);
    return r + (int)cmd + (int)io.u.c.nbytes + (int)ev[0].res + (int)ss.ss_len + (int)ssc.ss_len;
}
"#;

#[test]
fn header_compiles_warning_free() {
    let dir = temp_dir("header-compile");
    let src = dir.join("use.c");
    std::fs::write(&src, USE_HEADER).unwrap();
    let include = repo_root().join("include");
    let mut errors = Vec::new();
    // C89 without `-pedantic`, which rejects `long long` (the kernel's
    // `struct iocb` offset): what programs built as C89 see; the system
    // libaio.h does not compile there at all (`static inline`).
    for (cpp, std, pedantic) in [
        (false, "c89", false),
        (false, "gnu89", false),
        (false, "c99", true),
        (false, "c11", true),
        (false, "c17", true),
        (true, "c++11", true),
        (true, "c++17", true),
    ] {
        let mut cmd = compiler(cpp);
        if cpp {
            cmd.args(["-x", "c++"]);
        }
        if pedantic {
            cmd.arg("-pedantic");
        }
        cmd.arg(format!("-std={std}"))
            .args(["-Wall", "-Wextra", "-Werror", "-fsyntax-only"])
            .arg(format!("-I{}", include.display()))
            .arg(&src);
        if let Err(e) = run_ok(&mut cmd, &format!("libaio.h as {std}")) {
            errors.push(e);
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

/// Build `ctests/layout/layout.c` with `include_dir` first on the include
/// path (tag "ours": our header, with its extra opcodes printed) and
/// return its output.
fn layout(include_dir: &Path, tag: &str) -> String {
    let dir = temp_dir(&format!("layout-{tag}"));
    let exe = dir.join("layout");
    let mut cmd = compiler(false);
    cmd.args(["-std=gnu11", "-Wall", "-Wextra", "-Werror"]);
    cmd.arg(format!("-I{}", include_dir.display()));
    if tag == "ours" {
        cmd.arg("-DLIBAIO_RS_OURS");
    }
    cmd.arg(repo_root().join("ctests/layout/layout.c"))
        .arg("-o")
        .arg(&exe);
    run_ok(&mut cmd, &format!("building the layout program ({tag})"))
        .unwrap_or_else(|e| panic!("{e}"));
    run_ok(&mut Command::new(&exe), "running the layout program").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn layout_matches_system_libaio_h() {
    assert!(
        Path::new(SYSTEM_HEADER).is_file(),
        "{SYSTEM_HEADER} is needed (apt-get install libaio-dev)"
    );
    // The system side from its own directory (searched before
    // /usr/local/include, where a `make install` of ours may sit), and
    // proven to be libaio's header, not ours.
    let system_text = std::fs::read_to_string(SYSTEM_HEADER).expect(SYSTEM_HEADER);
    assert!(
        !system_text.contains("LIBAIO_RS"),
        "{SYSTEM_HEADER} is libaio-rs's header, not the system libaio's"
    );
    let system_inc = temp_dir("layout-system-include");
    std::fs::write(system_inc.join("libaio.h"), system_text).expect("copy of the system header");
    let ours = layout(&repo_root().join("include"), "ours");
    let system = layout(&system_inc, "system");
    // Lines only our header can produce: IO_CMD_PREADVM/PWRITEVM.
    let (extra, common): (Vec<&str>, Vec<&str>) =
        ours.lines().partition(|l| l.starts_with("ours: "));
    assert_eq!(
        extra,
        ["ours: IO_CMD_PREADVM 9", "ours: IO_CMD_PWRITEVM 10"],
        "our extra opcodes"
    );
    let system: Vec<&str> = system.lines().collect();
    assert!(
        system.len() > 60,
        "layout output too short:\n{}",
        system.join("\n")
    );
    for (i, (a, b)) in common.iter().zip(system.iter()).enumerate() {
        assert_eq!(a, b, "layout line {} differs (ours vs system)", i + 1);
    }
    assert_eq!(
        common.len(),
        system.len(),
        "layout outputs differ in length"
    );
}
