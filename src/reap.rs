//! `io_getevents` and `io_pgetevents`: collecting completions.
//!
//! The kernel's answer is the reference.  The only thing done without a
//! system call is what libaio also does: a zero timeout on an empty ring
//! returns 0.  We do it only for rings we created (see `context`) and only
//! when the arguments are ones the kernel would accept, so a bad call still
//! gets the kernel's `-EINVAL`/`-EFAULT`.

use crate::abi::{io_event, io_sigset, timespec};
use crate::context;
use crate::ring::Ring;
use crate::sys;
use core::ffi::c_long;

/// The kernel's sigset size for `io_pgetevents` (`_NSIG / 8`).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_SIZE: usize = 16;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_SIZE: usize = 8;

/// Whether `timeout` points at `{0, 0}`.  Reads it only if it can be user
/// memory (libaio reads it unconditionally).
#[inline(always)]
fn is_zero_timeout(timeout: *const timespec) -> bool {
    if !sys::plausible_user_range(timeout as usize, core::mem::size_of::<libc::timespec>()) {
        return false;
    }
    // SAFETY: a non-NULL user-space pointer that the caller passed as a
    // `struct timespec *`; libaio dereferences it the same way.  Read
    // unaligned: C does not promise alignment of a caller's pointer here.
    let ts = unsafe { core::ptr::read_unaligned(timeout as *const libc::timespec) };
    ts.tv_sec == 0 && ts.tv_nsec == 0
}

/// libaio's peek: a non-blocking call on an empty ring of ours returns 0.
#[inline(always)]
fn empty_and_nonblocking(ctx: usize, min_nr: c_long, nr: c_long, timeout: *const timespec) -> bool {
    if min_nr < 0 || min_nr > nr || timeout.is_null() {
        return false;
    }
    let Some(c) = context::lookup(ctx) else {
        return false;
    };
    let Some(ring) = Ring::of(c) else {
        return false;
    };
    ring.is_empty() && is_zero_timeout(timeout)
}

/// `io_getevents(ctx, min_nr, nr, events, timeout)`.
pub fn getevents(
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
) -> i32 {
    if empty_and_nonblocking(ctx, min_nr, nr, timeout) {
        return 0;
    }
    let n = sys::to_int(sys::io_getevents(
        ctx,
        min_nr,
        nr,
        events as usize,
        timeout as usize,
    ));
    crate::pi::complete(ctx, events, n); // PI hook: translate emulated PI events.
    n
}

/// `io_pgetevents(ctx, min_nr, nr, events, timeout, sigmask)`: the mask is
/// installed only for the duration of the wait, by the kernel.
pub fn pgetevents(
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
    sigmask: *const libc::sigset_t,
) -> i32 {
    if empty_and_nonblocking(ctx, min_nr, nr, timeout) {
        return 0;
    }
    let usig = io_sigset {
        ss: sigmask as usize as _,
        ss_len: KERNEL_SIGSET_SIZE as _,
    };
    let r = sys::io_pgetevents(
        ctx,
        min_nr,
        nr,
        events as usize,
        timeout as usize,
        &usig as *const _ as usize,
    );
    #[cfg(target_pointer_width = "32")]
    if r == -(libc::EINVAL as c_long) {
        // Old 64-bit kernels read a 32-bit caller's sigset with 64-bit
        // pointer layout; libaio retries with the compat layout.
        let compat = crate::abi::io_sigset_compat {
            __ss_pad: 0,
            ss: sigmask as usize as _,
            ss_len: KERNEL_SIGSET_SIZE as _,
        };
        let n = sys::to_int(sys::io_pgetevents(
            ctx,
            min_nr,
            nr,
            events as usize,
            timeout as usize,
            &compat as *const _ as usize,
        ));
        crate::pi::complete(ctx, events, n); // PI hook: translate emulated PI events.
        return n;
    }
    let n = sys::to_int(r);
    crate::pi::complete(ctx, events, n); // PI hook: translate emulated PI events.
    n
}
