//! `io_submit` and `io_cancel`.
//!
//! The plain path is exactly one `io_submit(2)`: no lock, no allocation, no
//! per-iocb work, and the caller's array is never read by us before the
//! kernel has validated it.

use crate::abi::{io_event, iocb};
use crate::sys;
use core::ffi::c_long;

/// `io_submit(ctx, nr, iocbpp)`.
#[inline]
pub fn submit(ctx: usize, nr: c_long, iocbpp: *mut *mut iocb) -> i32 {
    sys::to_int(sys::io_submit(ctx, nr, iocbpp as usize))
}

/// `io_cancel(ctx, iocb, result)`.
pub fn cancel(ctx: usize, iocb: *mut iocb, result: *mut io_event) -> i32 {
    sys::to_int(sys::io_cancel(ctx, iocb as usize, result as usize))
}
