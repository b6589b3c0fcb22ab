//! Symbol versions, and the old `LIBAIO_0.1` entry points.
//!
//! libaio 0.3.113 exports (see `objdump -T libaio.so.1`):
//!
//! | version       | symbols |
//! |---------------|---------|
//! | `LIBAIO_0.1`  | `io_queue_init`, `io_queue_run`, `io_queue_release`, `io_submit` (defaults); `io_getevents`, `io_cancel`, `io_queue_wait` (old ABI) |
//! | `LIBAIO_0.4`  | `io_setup`, `io_destroy`, `io_cancel`, `io_getevents`, `io_queue_wait` (defaults) |
//! | `LIBAIO_0.5`  | `io_pgetevents` |
//!
//! Functions libaio does not export (its `static inline` helpers, and the
//! PI preparation helpers) go in the node `LIBAIO_RS_1.0`, so a program built against
//! them fails to load against the old libaio with a clear "version
//! `LIBAIO_RS_1.0' not found" instead of crashing later.
//!
//! `build.rs` passes a version script that only declares the nodes; the
//! `.symver` directives below bind each symbol to its node.  The old-ABI
//! entry points are small assembly trampolines (`__libaio_rs_compat_*`) that
//! jump to the Rust functions below; the version script makes those
//! trampoline names local, so no internal name is exported.

use crate::abi::{io_context_t, io_event, iocb, timespec};
use crate::{ffi, reap, submit};
use core::ffi::{c_int, c_long};

/// `io_getevents@LIBAIO_0.1(ctx, nr, events, timeout)`: the old ABI had no
/// `min_nr`; it waited for at least one event.
///
/// # Safety
/// As `io_getevents`: any values (the kernel validates the pointers before
/// the library touches them).
unsafe extern "C" fn getevents_0_1(
    ctx: io_context_t,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
) -> c_int {
    ffi::guard(|| reap::getevents(ctx as usize, 1, nr, events, timeout))
}

/// `io_cancel@LIBAIO_0.1(ctx, iocb)`: the old ABI had no result argument;
/// the event of a cancelled request is taken into a scratch buffer.
///
/// # Safety
/// As `io_cancel`: any values (the kernel validates `iocb`).
unsafe extern "C" fn cancel_0_1(ctx: io_context_t, iocb: *mut iocb) -> c_int {
    ffi::guard(|| {
        let mut scratch = io_event::zeroed();
        submit::cancel(ctx as usize, iocb, &mut scratch)
    })
}

/// `io_queue_wait@LIBAIO_0.1(ctx, timeout)`: `io_getevents(ctx, 0, 0, NULL, timeout)`.
///
/// # Safety
/// As `io_queue_wait`: any values (the kernel validates `timeout`).
unsafe extern "C" fn queue_wait_0_1(ctx: io_context_t, timeout: *mut timespec) -> c_int {
    ffi::guard(|| reap::getevents(ctx as usize, 0, 0, core::ptr::null_mut(), timeout))
}

/// Emit a global trampoline `name` that tail-jumps to `target`.
#[cfg(target_arch = "x86_64")]
macro_rules! trampoline {
    ($name:literal) => {
        concat!(
            ".globl ",
            $name,
            "\n",
            ".type ",
            $name,
            ",@function\n",
            ".p2align 4\n",
            $name,
            ":\n",
        )
    };
}
#[cfg(target_arch = "x86_64")]
macro_rules! jump {
    () => {
        "jmp {}\n"
    };
}
#[cfg(target_arch = "aarch64")]
macro_rules! trampoline {
    ($name:literal) => {
        concat!(
            ".globl ",
            $name,
            "\n",
            ".type ",
            $name,
            ",%function\n",
            ".p2align 2\n",
            $name,
            ":\n"
        )
    };
}
#[cfg(target_arch = "aarch64")]
macro_rules! jump {
    () => {
        "b {}\n"
    };
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
core::arch::global_asm!(
    ".text",
    trampoline!("__libaio_rs_compat_io_getevents_0_1"),
    jump!(),
    ".size __libaio_rs_compat_io_getevents_0_1, .-__libaio_rs_compat_io_getevents_0_1",
    trampoline!("__libaio_rs_compat_io_cancel_0_1"),
    jump!(),
    ".size __libaio_rs_compat_io_cancel_0_1, .-__libaio_rs_compat_io_cancel_0_1",
    trampoline!("__libaio_rs_compat_io_queue_wait_0_1"),
    jump!(),
    ".size __libaio_rs_compat_io_queue_wait_0_1, .-__libaio_rs_compat_io_queue_wait_0_1",
    ".symver __libaio_rs_compat_io_getevents_0_1, io_getevents@LIBAIO_0.1",
    ".symver __libaio_rs_compat_io_cancel_0_1, io_cancel@LIBAIO_0.1",
    ".symver __libaio_rs_compat_io_queue_wait_0_1, io_queue_wait@LIBAIO_0.1",
    sym getevents_0_1,
    sym cancel_0_1,
    sym queue_wait_0_1,
);

// Default versions of libaio's own symbols.
//
// `@@@` (not `@@`): the assembler *renames* `io_x` to `io_x@@NODE` instead
// of keeping both names.  With `@@`, libaio.a holds `io_x` and `io_x@@NODE`
// side by side, and GNU ld, linking a program statically against it, reports
// every one as a "multiple definition" (the shared library is the same either
// way; `.ci/install-test.sh` links a program to libaio.a to keep it so).
core::arch::global_asm!(
    ".symver io_queue_init, io_queue_init@@@LIBAIO_0.1",
    ".symver io_queue_run, io_queue_run@@@LIBAIO_0.1",
    ".symver io_queue_release, io_queue_release@@@LIBAIO_0.1",
    ".symver io_submit, io_submit@@@LIBAIO_0.1",
    ".symver io_setup, io_setup@@@LIBAIO_0.4",
    ".symver io_destroy, io_destroy@@@LIBAIO_0.4",
    ".symver io_cancel, io_cancel@@@LIBAIO_0.4",
    ".symver io_getevents, io_getevents@@@LIBAIO_0.4",
    ".symver io_queue_wait, io_queue_wait@@@LIBAIO_0.4",
    ".symver io_pgetevents, io_pgetevents@@@LIBAIO_0.5",
);

// Functions that are new in the exported ABI (libaio has them only as
// `static inline`, or not at all).  `@@@` as above.
core::arch::global_asm!(
    ".symver io_prep_pread, io_prep_pread@@@LIBAIO_RS_1.0",
    ".symver io_prep_pwrite, io_prep_pwrite@@@LIBAIO_RS_1.0",
    ".symver io_prep_preadv, io_prep_preadv@@@LIBAIO_RS_1.0",
    ".symver io_prep_pwritev, io_prep_pwritev@@@LIBAIO_RS_1.0",
    ".symver io_prep_preadv2, io_prep_preadv2@@@LIBAIO_RS_1.0",
    ".symver io_prep_pwritev2, io_prep_pwritev2@@@LIBAIO_RS_1.0",
    ".symver io_prep_preadvm, io_prep_preadvm@@@LIBAIO_RS_1.0",
    ".symver io_prep_pwritevm, io_prep_pwritevm@@@LIBAIO_RS_1.0",
    ".symver io_prep_fsync, io_prep_fsync@@@LIBAIO_RS_1.0",
    ".symver io_set_pi_format, io_set_pi_format@@@LIBAIO_RS_1.0",
    ".symver io_prep_fdsync, io_prep_fdsync@@@LIBAIO_RS_1.0",
    ".symver io_prep_poll, io_prep_poll@@@LIBAIO_RS_1.0",
    ".symver io_set_callback, io_set_callback@@@LIBAIO_RS_1.0",
    ".symver io_set_eventfd, io_set_eventfd@@@LIBAIO_RS_1.0",
    ".symver io_poll, io_poll@@@LIBAIO_RS_1.0",
    ".symver io_fsync, io_fsync@@@LIBAIO_RS_1.0",
    ".symver io_fdsync, io_fdsync@@@LIBAIO_RS_1.0",
);
