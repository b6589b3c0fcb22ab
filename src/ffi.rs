//! The exported C functions, and nothing else.
//!
//! Each export is a thin `unsafe extern "C"` shim: it converts the C
//! arguments and calls the safe core (`setup`, `submit`, `reap`, `queue`,
//! `prep`).  Pointers the kernel checks are passed through as addresses; the
//! only caller memory dereferenced here is the `struct iocb` of the
//! `io_prep_*` helpers, which libaio's inline versions write as well.
//!
//! NULL policy: a NULL `iocb` given to an `io_prep_*`/`io_set_*` helper is
//! ignored (libaio would crash); a NULL pointer given to a system-call
//! wrapper goes to the kernel, which answers `-EFAULT` or `-EINVAL`.
//!
//! Panic policy: the library is built with `panic = "abort"`; in addition,
//! every export runs inside [`guard`], so even a build with unwinding (Rust
//! test harnesses) can never unwind into C.

use crate::abi::{
    io_callback_t, io_context_t, io_event, io_iocb_cmd, iocb, iovec, sigset_t, timespec,
};
use crate::{prep, queue, reap, setup, submit};
use core::ffi::{c_int, c_long, c_longlong, c_void};

/// Run an export's body; a panic aborts the process instead of unwinding.
#[inline(always)]
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(panic = "unwind")]
    {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(_) => std::process::abort(),
        }
    }
    #[cfg(not(panic = "unwind"))]
    {
        f()
    }
}

/// Create an AIO context able to hold `maxevents` events and store its handle in `*ctxp`.
///
/// Returns 0, or `-EINVAL` (bad `maxevents`, `*ctxp` not 0), `-EFAULT`
/// (bad `ctxp`), `-EAGAIN` (`aio-max-nr` exceeded), `-ENOMEM`, `-ENOSYS`.
///
/// # Safety
/// `ctxp` is passed to the kernel, which validates it; any value is safe.
#[no_mangle]
pub unsafe extern "C" fn io_setup(maxevents: c_int, ctxp: *mut io_context_t) -> c_int {
    guard(|| setup::setup(maxevents, ctxp))
}

/// Destroy a context; waits for its outstanding requests.
///
/// # Safety
/// Any value is safe; unknown contexts get `-EINVAL` from the kernel.  No
/// other thread may be using `ctx` (as with libaio).
#[no_mangle]
pub unsafe extern "C" fn io_destroy(ctx: io_context_t) -> c_int {
    guard(|| setup::destroy(ctx as usize))
}

/// Submit `nr` iocbs.  Returns the number accepted, or a negative errno if
/// the first one was refused.
///
/// # Safety
/// `ios` and the iocbs it points to are read by the kernel, which validates
/// them (`-EFAULT`).  Buffers named by the iocbs must stay valid until their
/// completion is reaped.
#[no_mangle]
pub unsafe extern "C" fn io_submit(ctx: io_context_t, nr: c_long, ios: *mut *mut iocb) -> c_int {
    guard(|| submit::submit(ctx as usize, nr, ios))
}

/// Attempt to cancel an outstanding iocb; on success its event goes to `*evt`.
///
/// # Safety
/// All pointers are validated by the kernel.
#[no_mangle]
pub unsafe extern "C" fn io_cancel(
    ctx: io_context_t,
    iocb: *mut iocb,
    evt: *mut io_event,
) -> c_int {
    guard(|| submit::cancel(ctx as usize, iocb, evt))
}

/// Reap between `min_nr` and `nr` events, waiting at most `*timeout`
/// (forever if `timeout` is NULL).
///
/// # Safety
/// `events` must have room for `nr` events or be rejected by the kernel;
/// `timeout` is NULL or points to a `struct timespec`.
#[no_mangle]
pub unsafe extern "C" fn io_getevents(
    ctx: io_context_t,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
) -> c_int {
    guard(|| reap::getevents(ctx as usize, min_nr, nr, events, timeout))
}

/// `io_getevents` with `*sigmask` installed for the duration of the wait.
///
/// # Safety
/// As for [`io_getevents`]; `sigmask` is NULL or a `sigset_t` (checked by the kernel).
#[no_mangle]
pub unsafe extern "C" fn io_pgetevents(
    ctx: io_context_t,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
    sigmask: *mut sigset_t,
) -> c_int {
    guard(|| reap::pgetevents(ctx as usize, min_nr, nr, events, timeout, sigmask))
}

/// `maxevents <= 0` → `-EINVAL`; otherwise `*ctxp = NULL` and `io_setup`.
///
/// # Safety
/// `ctxp` is checked by the kernel before anything is stored through it.
#[no_mangle]
pub unsafe extern "C" fn io_queue_init(maxevents: c_int, ctxp: *mut io_context_t) -> c_int {
    guard(|| queue::init(maxevents, ctxp))
}

/// Same as [`io_destroy`].
///
/// # Safety
/// As for [`io_destroy`].
#[no_mangle]
pub unsafe extern "C" fn io_queue_release(ctx: io_context_t) -> c_int {
    guard(|| queue::release(ctx as usize))
}

/// Reap every ready event without blocking and call its callback
/// (`iocb->data`, set by `io_set_callback`).  Returns 0 or a negative errno.
///
/// # Safety
/// Every iocb submitted on `ctx` must carry an `io_callback_t` (or NULL) in `data`.
#[no_mangle]
pub unsafe extern "C" fn io_queue_run(ctx: io_context_t) -> c_int {
    guard(|| queue::run(ctx as usize))
}

/// `io_getevents(ctx, 0, 0, NULL, timeout)`.
///
/// # Safety
/// `timeout` is NULL or points to a `struct timespec`.
#[no_mangle]
pub unsafe extern "C" fn io_queue_wait(ctx: io_context_t, timeout: *mut timespec) -> c_int {
    guard(|| queue::wait(ctx as usize, timeout))
}

/// Run `f` on `*io` if `io` is not NULL.
///
/// # Safety
/// `io` is NULL or points to a writable `struct iocb` not otherwise borrowed.
#[inline(always)]
unsafe fn with_iocb(io: *mut iocb, f: impl FnOnce(&mut iocb)) {
    // SAFETY: guaranteed by the caller (see above).
    let Some(io) = (unsafe { io.as_mut() }) else {
        return;
    };
    guard(|| f(io))
}

/// Prepare a read of `count` bytes at `offset` into `buf`.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_pread(
    iocb: *mut iocb,
    fd: c_int,
    buf: *mut c_void,
    count: usize,
    offset: c_longlong,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rw(io, io_iocb_cmd::IO_CMD_PREAD, fd, buf, count as _, offset)
        })
    }
}

/// Prepare a write of `count` bytes at `offset` from `buf`.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_pwrite(
    iocb: *mut iocb,
    fd: c_int,
    buf: *mut c_void,
    count: usize,
    offset: c_longlong,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rw(io, io_iocb_cmd::IO_CMD_PWRITE, fd, buf, count as _, offset)
        })
    }
}

/// Prepare a vectored read.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_preadv(
    iocb: *mut iocb,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: c_longlong,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rwv(io, io_iocb_cmd::IO_CMD_PREADV, fd, iov, iovcnt, offset, 0)
        })
    }
}

/// Prepare a vectored write.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_pwritev(
    iocb: *mut iocb,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: c_longlong,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rwv(io, io_iocb_cmd::IO_CMD_PWRITEV, fd, iov, iovcnt, offset, 0)
        })
    }
}

/// Prepare a vectored read with `RWF_*` flags.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_preadv2(
    iocb: *mut iocb,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: c_longlong,
    flags: c_int,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rwv(
                io,
                io_iocb_cmd::IO_CMD_PREADV,
                fd,
                iov,
                iovcnt,
                offset,
                flags,
            )
        })
    }
}

/// Prepare a vectored write with `RWF_*` flags.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_pwritev2(
    iocb: *mut iocb,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: c_longlong,
    flags: c_int,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rwv(
                io,
                io_iocb_cmd::IO_CMD_PWRITEV,
                fd,
                iov,
                iovcnt,
                offset,
                flags,
            )
        })
    }
}

/// Prepare a vectored read whose last iovec receives T10 protection
/// information for the data read (`IO_CMD_PREADVM`).
///
/// `iov[0 .. iovcnt-1)` is the data, `iov[iovcnt-1]` the PI buffer.  At
/// `io_submit`: `fd` must be open with `O_DIRECT`, `iovcnt >= 2`, the PI
/// buffer must hold one tuple per protection interval, and the data length
/// and `offset` must be multiples of the interval (else `-EINVAL`).  When
/// the completion is delivered, the PI buffer holds a tuple (app tag 0) for
/// every interval read; `res` = bytes read.  See `io_set_pi_format`.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_preadvm(
    iocb: *mut iocb,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: c_longlong,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rwv(io, io_iocb_cmd::IO_CMD_PREADVM, fd, iov, iovcnt, offset, 0)
        })
    }
}

/// Prepare a vectored write whose last iovec carries T10 protection
/// information, verified before any byte is written (`IO_CMD_PWRITEVM`).
///
/// Same layout and rules as `io_prep_preadvm`.  Every tuple's guard and
/// (Type 1) reference tag is checked, except escaped intervals: Type 1,
/// app tag 0xFFFF; Type 3, app tag 0xFFFF and every reference tag bit set
/// (0xFFFFFFFF for T10, all 48 bits for NVMe).  On a mismatch the iocb
/// completes with `res = -EILSEQ` and nothing is written, otherwise `res`
/// = bytes written.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_pwritevm(
    iocb: *mut iocb,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: c_longlong,
) {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_iocb(iocb, |io| {
            prep::rwv(io, io_iocb_cmd::IO_CMD_PWRITEVM, fd, iov, iovcnt, offset, 0)
        })
    }
}

/// Choose the protection-information format that PI iocbs
/// (`io_prep_preadvm`/`io_prep_pwritevm`) submitted to `ctx` from now on use
/// when the library emulates them: `format` is one of `IO_PI_*`, `interval`
/// the bytes of data per tuple (512 or 4096).  The default is
/// `IO_PI_T10_DIF_TYPE1_CRC` with 512.  A kernel with DIX passthrough uses
/// the device's own format instead.
///
/// Returns 0, or `-EINVAL` for an unknown format or interval, or a context
/// not created by this library in this process, or beyond the 1024 it keeps
/// track of at a time (PI iocbs on such a context, from a raw `io_setup(2)`
/// say, use the default format).
///
/// # Safety
/// Any argument values are safe: `ctx` is only looked up, never dereferenced
/// unless this library created it.
#[no_mangle]
pub unsafe extern "C" fn io_set_pi_format(
    ctx: io_context_t,
    format: c_int,
    interval: core::ffi::c_uint,
) -> c_int {
    guard(|| crate::pi::set_format(ctx as usize, format, interval))
}

/// Prepare an `fsync`.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_fsync(iocb: *mut iocb, fd: c_int) {
    // SAFETY: forwarded caller guarantee.
    unsafe { with_iocb(iocb, |io| prep::sync(io, io_iocb_cmd::IO_CMD_FSYNC, fd)) }
}

/// Prepare an `fdatasync`.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_fdsync(iocb: *mut iocb, fd: c_int) {
    // SAFETY: forwarded caller guarantee.
    unsafe { with_iocb(iocb, |io| prep::sync(io, io_iocb_cmd::IO_CMD_FDSYNC, fd)) }
}

/// Prepare a one-shot poll for `events` (`POLLIN`, ...) on `fd`.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_prep_poll(iocb: *mut iocb, fd: c_int, events: c_int) {
    // SAFETY: forwarded caller guarantee.
    unsafe { with_iocb(iocb, |io| prep::poll(io, fd, events)) }
}

/// Store `cb` in `iocb->data`, for `io_queue_run`.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_set_callback(iocb: *mut iocb, cb: io_callback_t) {
    // SAFETY: forwarded caller guarantee.
    unsafe { with_iocb(iocb, |io| prep::set_callback(io, cb)) }
}

/// Ask the kernel to signal `eventfd` when `iocb` completes.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb`.
#[no_mangle]
pub unsafe extern "C" fn io_set_eventfd(iocb: *mut iocb, eventfd: c_int) {
    // SAFETY: forwarded caller guarantee.
    unsafe { with_iocb(iocb, |io| prep::set_eventfd(io, eventfd)) }
}

/// Prepare, set the callback of and submit one iocb; returns `io_submit`'s result.
///
/// # Safety
/// `io` is NULL or points to a writable `struct iocb` (the exports'
/// contract), which stays valid until reaped.
unsafe fn prep_and_submit(
    ctx: io_context_t,
    io: *mut iocb,
    cb: io_callback_t,
    prep: impl FnOnce(&mut iocb),
) -> c_int {
    // SAFETY: `io` is NULL or a writable iocb (this function's contract).
    let Some(r) = (unsafe { io.as_mut() }) else {
        // libaio would crash in the prep; the kernel's answer to a NULL iocb is -EFAULT.
        return -libc::EFAULT;
    };
    prep(r);
    prep::set_callback(r, cb);
    let mut one = io;
    submit::submit(ctx as usize, 1, &mut one)
}

/// `io_prep_poll` + `io_set_callback` + `io_submit` of that one iocb.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb` that stays valid until reaped.
#[no_mangle]
pub unsafe extern "C" fn io_poll(
    ctx: io_context_t,
    iocb: *mut iocb,
    cb: io_callback_t,
    fd: c_int,
    events: c_int,
) -> c_int {
    // SAFETY: forwarded caller guarantee.
    guard(|| unsafe { prep_and_submit(ctx, iocb, cb, |io| prep::poll(io, fd, events)) })
}

/// `io_prep_fsync` + `io_set_callback` + `io_submit` of that one iocb.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb` that stays valid until reaped.
#[no_mangle]
pub unsafe extern "C" fn io_fsync(
    ctx: io_context_t,
    iocb: *mut iocb,
    cb: io_callback_t,
    fd: c_int,
) -> c_int {
    // SAFETY: forwarded caller guarantee.
    guard(|| unsafe {
        prep_and_submit(ctx, iocb, cb, |io| {
            prep::sync(io, io_iocb_cmd::IO_CMD_FSYNC, fd)
        })
    })
}

/// `io_prep_fdsync` + `io_set_callback` + `io_submit` of that one iocb.
///
/// # Safety
/// `iocb` is NULL or points to a writable `struct iocb` that stays valid until reaped.
#[no_mangle]
pub unsafe extern "C" fn io_fdsync(
    ctx: io_context_t,
    iocb: *mut iocb,
    cb: io_callback_t,
    fd: c_int,
) -> c_int {
    // SAFETY: forwarded caller guarantee.
    guard(|| unsafe {
        prep_and_submit(ctx, iocb, cb, |io| {
            prep::sync(io, io_iocb_cmd::IO_CMD_FDSYNC, fd)
        })
    })
}
