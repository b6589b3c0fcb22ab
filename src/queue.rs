//! The `io_queue_*` helpers of libaio.

use crate::abi::{io_context_t, io_event, iocb, timespec};
use crate::{reap, setup, sys};

/// `io_queue_init(maxevents, ctxp)`: `-EINVAL` for `maxevents <= 0`;
/// otherwise `*ctxp = NULL` and `io_setup`.  libaio stores the NULL without
/// checking `ctxp`; we let the kernel check it, so a bad `ctxp` is `-EFAULT`.
pub fn init(maxevents: i32, ctxp: *mut io_context_t) -> i32 {
    if maxevents <= 0 {
        return -libc::EINVAL;
    }
    if let Err(e) = sys::write_user(ctxp, core::ptr::null_mut()) {
        return e;
    }
    setup::setup(maxevents, ctxp)
}

/// `io_queue_release(ctx)` is `io_destroy(ctx)`.
pub fn release(ctx: usize) -> i32 {
    setup::destroy(ctx)
}

/// `io_queue_wait(ctx, timeout)` is `io_getevents(ctx, 0, 0, NULL, timeout)`.
pub fn wait(ctx: usize, timeout: *mut timespec) -> i32 {
    reap::getevents(ctx, 0, 0, core::ptr::null_mut(), timeout)
}

/// `io_queue_run(ctx)`: reap every completion that is ready, without
/// blocking, and call each one's callback (`iocb->data` as an
/// `io_callback_t`) with `(ctx, iocb, res, res2)`.  Returns 0 once drained,
/// or the error of the reap that failed.  A NULL callback is skipped (libaio
/// would call through NULL).
///
/// The event and the zero timeout are the library's own memory, so a drain
/// of a ready (or empty) ring needs no system call (no proof from the
/// kernel, see `proven`).
pub fn run(ctx: usize) -> i32 {
    loop {
        let mut ev = [io_event::zeroed()];
        let r = reap::getevents_own_memory(ctx, 0, 1, &mut ev, Some(&reap::ZERO_TIMEOUT));
        if r != 1 {
            return r;
        }
        deliver(ctx, &ev[0]);
    }
}

/// Call the callback stored in an event's `data`.
fn deliver(ctx: usize, ev: &io_event) {
    type Cb = unsafe extern "C" fn(io_context_t, *mut iocb, core::ffi::c_long, core::ffi::c_long);
    if ev.data.is_null() {
        return;
    }
    // SAFETY: by libaio's contract (`io_set_callback`), the `data` of an iocb
    // reaped by `io_queue_run` is an `io_callback_t`; the caller stored it.
    let cb: Cb = unsafe { core::mem::transmute::<*mut core::ffi::c_void, Cb>(ev.data) };
    // SAFETY: calling the caller's callback with the arguments libaio passes.
    unsafe {
        cb(
            ctx as io_context_t,
            ev.obj,
            ev.res as core::ffi::c_long,
            ev.res2 as core::ffi::c_long,
        )
    };
}
