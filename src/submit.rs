//! `io_submit` and `io_cancel`.
//!
//! The plain path is exactly one `io_submit(2)`: no lock, no allocation, no
//! per-iocb work, and the caller's array is never read by us before the
//! kernel has validated it.  Only when the kernel accepts fewer iocbs than
//! asked does `pi::submit::submit_rest` look at the refused one.

use crate::abi::{io_event, iocb};
use crate::sys;
use core::ffi::c_long;

/// `io_submit(ctx, nr, iocbpp)`.
#[inline]
pub fn submit(ctx: usize, nr: c_long, iocbpp: *mut *mut iocb) -> i32 {
    let r = sys::io_submit(ctx, nr, iocbpp as usize);
    if r == nr || nr <= 0 {
        return sys::to_int(r);
    }
    // Fewer accepted than asked: possibly a PI iocb (IO_CMD_P*VM) that this
    // kernel refused with -EINVAL and the library emulates.  Plain batches
    // never get here unless the kernel refused one of their iocbs.
    sys::to_int(crate::pi::submit::submit_rest(ctx, nr, iocbpp, r))
}

/// `io_cancel(ctx, iocb, result)`.
pub fn cancel(ctx: usize, iocb: *mut iocb, result: *mut io_event) -> i32 {
    sys::to_int(sys::io_cancel(ctx, iocb as usize, result as usize))
}
