//! `io_getevents` and `io_pgetevents`: collecting completions.
//!
//! # Fast path
//!
//! For a context this library created in this process (see `context`), the
//! events that are already in the kernel's mapped ring (see `ring`) are
//! copied out in user space, with no system call.  A system call is made only
//! when the caller must wait for more events than are ready, or when the
//! fast path is not safe; then the kernel's answer is returned unchanged.
//!
//! The kernel path is taken for: contexts not registered here (other
//! libraries' contexts, contexts of the parent after `fork()`, the new
//! address of a ring moved with `mremap`); a ring header that is not what it
//! was at `io_setup` (magic, `incompat_features`, `head`/`tail` in range);
//! `min_nr < 0`, `min_nr > nr`, `nr < 0`; `events` not a plausible user range
//! for `nr` events; a timeout pointer that is neither NULL nor plausible;
//! `io_pgetevents` with a signal mask (below); another thread inside a
//! reaping system call on the context (see `context::ReapState`: the kernel
//! moves `head` under its own lock, which we cannot take); and when
//! `LIBAIO_RS_NO_USER_REAP=1` is set (below).
//!
//! Splitting: if `k < min_nr` events were taken in user space and the timeout
//! is not zero, the system call asks for the rest
//! (`min_nr - k, nr - k, events + k`, same timeout).  If it fails after
//! `k > 0` were taken (`-EINTR`, ...), `k` is returned, as the kernel does
//! when it has events and then fails.  With a zero timeout no system call is
//! made at all: the kernel would return what is in the ring.
//!
//! Signal masks: with a non-NULL `sigmask`, the kernel installs the mask for
//! the call and delivers a pending, newly unblocked signal even when events
//! are ready, returning the events.  We cannot reproduce that in user space,
//! so `io_pgetevents` with a mask always makes the system call, except for
//! libaio's own peek (zero timeout, empty ring → 0), which libaio does too.
//!
//! Switch: `LIBAIO_RS_NO_USER_REAP=1` in the environment (read once, with
//! `secure_getenv`, so ignored in setuid/setgid programs) turns the fast path
//! off; libaio's zero-timeout empty-ring peek stays, as in libaio.  Use it to
//! debug, or in programs that read the ring themselves from several threads.
//!
//! Every batch of events returned to a caller passes through [`delivered`].

use crate::abi::{io_event, io_sigset, timespec};
use crate::context::{self, Context};
use crate::ring::Ring;
use crate::sys;
use core::ffi::c_long;
use core::sync::atomic::{AtomicU8, Ordering};

/// The kernel's sigset size for `io_pgetevents` (`_NSIG / 8`).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_SIZE: usize = 16;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_SIZE: usize = 8;

/// The one place through which every batch of events reaped for a caller
/// passes (user-space copies and system-call results alike), just before it
/// is returned: `events[..n]` are the caller's events, `ctx` the context if
/// it is registered here.  Hooks that post-process completions (T10-PI
/// emulation) go here, gated on state in `Context` so plain users pay nothing.
#[inline(always)]
fn delivered(ctx: Option<&Context>, events: *mut io_event, n: usize) {
    let _ = (ctx, events, n);
}

extern "C" {
    /// glibc's `secure_getenv(3)` (not bound by the `libc` crate): `getenv`,
    /// but NULL in setuid/setgid programs.
    fn secure_getenv(name: *const core::ffi::c_char) -> *mut core::ffi::c_char;
}

/// `LIBAIO_RS_NO_USER_REAP`: 0 = not read yet, 1 = fast path on, 2 = off.
static USER_REAP: AtomicU8 = AtomicU8::new(0);

/// Whether the user-space fast path is enabled (environment read once; a
/// race between first callers just reads it twice).
#[inline(always)]
fn user_reap_enabled() -> bool {
    match USER_REAP.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: a NUL-terminated name; secure_getenv returns NULL in
            // setuid/setgid programs, so they always get the fast path.
            let v = unsafe { secure_getenv(c"LIBAIO_RS_NO_USER_REAP".as_ptr()) };
            // SAFETY: non-NULL: a NUL-terminated string owned by the environment.
            let off = !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"1";
            USER_REAP.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
    }
}

/// Whether the kernel could accept `timeout` as a pointer (NULL or a
/// plausible user address); we never read an implausible one.
#[inline(always)]
fn timeout_plausible(timeout: *const timespec) -> bool {
    timeout.is_null()
        || sys::plausible_user_range(timeout as usize, core::mem::size_of::<libc::timespec>())
}

/// Whether `timeout` points at `{0, 0}`.  Reads it only if it can be user
/// memory, and only where libaio reads it too.
#[inline(always)]
fn is_zero_timeout(timeout: *const timespec) -> bool {
    if timeout.is_null() || !timeout_plausible(timeout) {
        return false;
    }
    // SAFETY: a plausible user-space pointer that the caller passed as a
    // `struct timespec *`; libaio dereferences it the same way.  Read
    // unaligned: C does not promise alignment of a caller's pointer here.
    let t = unsafe { core::ptr::read_unaligned(timeout as *const libc::timespec) };
    t.tv_sec == 0 && t.tv_nsec == 0
}

/// Which system call answers when the ring cannot.
#[derive(Clone, Copy)]
enum Call {
    GetEvents,
    /// `io_pgetevents` with this mask (NULL = none).
    PGetEvents(*const libc::sigset_t),
}

/// The system call itself, uncounted.
fn syscall(
    call: Call,
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *const timespec,
) -> c_long {
    let sigmask = match call {
        Call::GetEvents => {
            return sys::io_getevents(ctx, min_nr, nr, events as usize, timeout as usize)
        }
        Call::PGetEvents(m) => m,
    };
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
        return sys::io_pgetevents(
            ctx,
            min_nr,
            nr,
            events as usize,
            timeout as usize,
            &compat as *const _ as usize,
        );
    }
    r
}

/// The kernel's path, counted as a kernel reaper on a registered context.
fn kernel(
    c: Option<&Context>,
    call: Call,
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *const timespec,
) -> c_long {
    let _counted = c.map(Context::enter_kernel_reap);
    syscall(call, ctx, min_nr, nr, events, timeout)
}

/// What a user-space attempt achieved.
enum Attempt {
    /// `k` events were copied to the caller (maybe 0).
    Took(usize),
    /// The ring could not be read safely: the kernel answers everything.
    Kernel,
}

/// Take up to `nr` ready events in user space (`nr` may be 0: then this
/// only proves the context can be reaped here).
#[inline(always)]
fn try_user_space(c: &Context, ctx: usize, events: *mut io_event, nr: usize) -> Attempt {
    let Some(reaper) = c.try_user_reap(ctx) else {
        return Attempt::Kernel;
    };
    let (addr, slots) = reaper.ring();
    // SAFETY: `reaper` proves the context is registered under `addr`, live
    // (io_destroy waits for us before unmapping the ring) and ours alone to
    // reap; its ring has `slots` slots (read at registration).
    let ring = unsafe { Ring::at(addr, slots) };
    // SAFETY: exclusive reaper (above); `events` was checked to be a
    // plausible user range for `nr` events, which libaio's contract says the
    // caller provides.
    match unsafe { ring.take(events, nr) } {
        Ok(k) => Attempt::Took(k),
        Err(_) => Attempt::Kernel,
    }
}

/// libaio's peek: zero timeout and an empty ring → 0, without a system call.
fn empty_ring_peek(c: &Context, ctx: usize, timeout: *const timespec) -> bool {
    if !is_zero_timeout(timeout) {
        return false;
    }
    let Some(reaper) = c.try_user_reap(ctx) else {
        return false;
    };
    let (addr, slots) = reaper.ring();
    // SAFETY: as in `try_user_space`.
    let ring = unsafe { Ring::at(addr, slots) };
    ring.ready() == Ok(0)
}

/// The common body of `io_getevents` and `io_pgetevents`.
#[inline(always)]
fn reap(
    call: Call,
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *const timespec,
) -> i32 {
    let Some(c) = context::lookup(ctx) else {
        let r = syscall(call, ctx, min_nr, nr, events, timeout);
        if r > 0 {
            delivered(None, events, r as usize);
        }
        return sys::to_int(r);
    };
    let fast = match call {
        Call::GetEvents => true,
        Call::PGetEvents(mask) => mask.is_null(),
    } && user_reap_enabled();
    let args_ok = 0 <= min_nr
        && min_nr <= nr
        && (nr == 0
            || sys::plausible_user_range(
                events as usize,
                (nr as usize).saturating_mul(core::mem::size_of::<io_event>()),
            ));
    if !(fast && args_ok && timeout_plausible(timeout)) {
        if args_ok && empty_ring_peek(c, ctx, timeout) {
            return 0;
        }
        return finish(
            c,
            kernel(Some(c), call, ctx, min_nr, nr, events, timeout),
            events,
        );
    }
    let k = match try_user_space(c, ctx, events, nr as usize) {
        Attempt::Took(k) => k,
        Attempt::Kernel => {
            return finish(
                c,
                kernel(Some(c), call, ctx, min_nr, nr, events, timeout),
                events,
            )
        }
    };
    if k >= min_nr as usize || is_zero_timeout(timeout) {
        delivered(Some(c), events, k);
        return k as i32;
    }
    // Wait in the kernel for the rest.
    let kk = k as c_long;
    // SAFETY: k <= nr, inside the range checked above.
    let rest_at = unsafe { events.add(k) };
    let r = kernel(Some(c), call, ctx, min_nr - kk, nr - kk, rest_at, timeout);
    let n = if r >= 0 {
        r + kk
    } else if k > 0 {
        kk
    } else {
        r
    };
    finish(c, n, events)
}

/// Pass a kernel result through [`delivered`] and convert it.
#[inline(always)]
fn finish(c: &Context, r: c_long, events: *mut io_event) -> i32 {
    if r > 0 {
        delivered(Some(c), events, r as usize);
    }
    sys::to_int(r)
}

/// `io_getevents(ctx, min_nr, nr, events, timeout)`.
pub fn getevents(
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *mut timespec,
) -> i32 {
    reap(Call::GetEvents, ctx, min_nr, nr, events, timeout)
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
    reap(Call::PGetEvents(sigmask), ctx, min_nr, nr, events, timeout)
}
