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
//! Caller memory: events are copied only into the part of `events` that the
//! kernel itself has already written in an earlier system call of this
//! thread, and `*timeout` is read only if the kernel has already read that
//! pointer (see `proven`: a per-thread cache of such proofs).  An `events`
//! buffer the kernel has not proven gets the system call (which proves it
//! for the next call), so a bad buffer gets the kernel's `-EFAULT`, with the
//! events left in the ring, and never a `SIGSEGV`.  The memory of
//! `io_queue_run` (its event and zero timeout) is the library's own and is
//! always trusted ([`getevents_own_memory`]).
//!
//! The kernel path is taken for: contexts not registered here (other
//! libraries' contexts, contexts of the parent after `fork()`, the new
//! address of a ring moved with `mremap`; libaio's zero-timeout peek is
//! made for them too, on a kernel-checked copy of the header, see
//! `foreign_ring_peek`); a ring header that is not what it
//! was at `io_setup` (magic, `incompat_features`, `head`/`tail` in range);
//! `min_nr < 0`, `min_nr > nr`, `nr <= 0`; `events` not a plausible user range
//! for `nr` events, or not proven writable by the kernel, or overlapping the
//! ring; a timeout pointer that is neither NULL nor one the kernel has read
//! (it reads `*timeout` first, so a bad one gets `-EFAULT` even with events
//! ready);
//! `io_pgetevents` with a signal mask (below); another thread inside a
//! reaping system call on the context (see `context::ReapState`: the kernel
//! moves `head` under its own lock, which we cannot take); and when
//! `LIBAIO_RS_NO_USER_REAP=1` is set or valgrind runs the program (below).
//!
//! Splitting: if `k < min_nr` events were taken in user space and the timeout
//! is not zero, the system call asks for the rest
//! (`min_nr - k, nr - k, events + k`, same timeout).  If it fails after
//! `k > 0` were taken (`-EINTR`, `-EFAULT`, ...), `k` is returned, as the
//! kernel does when it has events and then fails.  With a zero timeout (known
//! to be zero: a proven pointer) no system call is made: the kernel would
//! return what is in the ring.  Where only part of `events` is proven and
//! more events are ready than that part holds, none are taken in user
//! space: the kernel answers the call as asked, copying them all (which
//! proves more of the buffer) or, for a buffer shorter than `nr` says,
//! answering `-EFAULT` with all of them left in the ring, as it does for
//! libaio (it copies nothing from a ring read whose copy faults).  Once the
//! proven span covers what the program reaps at a time, this costs nothing
//! more.  Events that arrive after the ring was looked at are the kernel's
//! to copy too (`0, nr - k, events + k`, the library's own zero timeout;
//! if that fails, the `k` taken are returned: the answer of a kernel that
//! looked at the ring when we did).
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
//! Under valgrind the fast path is off too (see `user_reap_enabled`).
//!
//! Every batch of events returned to a caller passes through [`delivered`].

use crate::abi::{io_event, io_sigset, timespec, AioRingHeader, AIO_RING_MAGIC};
use crate::context::{self, Context, KernelReaper, NotCounted, Reentrant, UncountedReaper};
use crate::ring::Ring;
use crate::{proven, sys};
use core::ffi::{c_long, c_void};
use core::sync::atomic::{AtomicU8, Ordering};

/// The kernel's sigset size for `io_pgetevents` (`_NSIG / 8`).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_SIZE: usize = 16;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_SIZE: usize = 8;

/// The one place through which every batch of events reaped for a caller
/// passes (user-space copies and system-call results alike), just before it
/// is returned: `events[..n]` are the caller's events.  Hooks that
/// post-process completions (T10-PI emulation) go here, gated so that plain
/// users pay at most a relaxed load.
#[inline(always)]
fn delivered(events: *mut io_event, n: usize) {
    // T10-PI emulation (src/pi): turn the events of emulated PI iocbs back
    // into the caller's (obj, data, res) and fill read PI.  Costs one relaxed
    // load of the in-flight counter when no PI iocb is in flight.
    crate::pi::complete(events, n as i32);
}

extern "C" {
    /// glibc's `secure_getenv(3)` (not bound by the `libc` crate): `getenv`,
    /// but NULL in setuid/setgid programs.
    fn secure_getenv(name: *const core::ffi::c_char) -> *mut core::ffi::c_char;
}

/// Whether the fast path is on: 0 = not decided yet, 1 = on, 2 = off
/// (`LIBAIO_RS_NO_USER_REAP=1`, or running under valgrind).
static USER_REAP: AtomicU8 = AtomicU8::new(0);

/// Whether the user-space fast path is enabled, decided once (a race
/// between first callers just decides twice, the same way).
///
/// Off under valgrind: memcheck learns that a read's buffer now holds
/// defined data from its model of the `io_getevents(2)` system call, which
/// walks each returned event's iocb.  An event copied from the ring in
/// user space never passes through that model, so the data of a read into
/// fresh heap memory would stay "uninitialised" to memcheck and every use
/// of it would be reported (`ctests/valgrind_reap.c`).  Making the system
/// call there, as libaio always does, keeps memcheck's view exact; speed
/// under valgrind does not matter.
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
            let off = (!v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"1")
                || crate::valgrind::running();
            USER_REAP.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
    }
}

/// Whose memory `events` and `timeout` are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// The program's: trusted only where the kernel proved it (`proven`).
    Caller,
    /// The library's own (`io_queue_run`): always valid.
    Library,
}

/// Whether `timeout` may be read in user space: the library's own, or a
/// pointer the kernel has read before (see `proven`).
#[inline(always)]
fn timeout_known_readable(timeout: *const timespec, memory: Memory) -> bool {
    !timeout.is_null() && (memory == Memory::Library || proven::timeout_readable(timeout))
}

/// Whether `timeout` points at `{0, 0}`.  Reads it only if it is the
/// library's own or the kernel has read that very pointer before (and
/// libaio would read it here too); otherwise "not known to be zero", and
/// the caller makes the system call.
#[inline(always)]
fn is_zero_timeout(timeout: *const timespec, memory: Memory) -> bool {
    if !timeout_known_readable(timeout, memory) {
        return false;
    }
    // SAFETY: the library's own timespec, or a pointer the kernel has read a
    // `struct timespec` from without a fault (a plausible user address, see
    // `proven`).  Read unaligned: C does not promise alignment of a caller's
    // pointer here.
    let t = unsafe { core::ptr::read_unaligned(timeout as *const libc::timespec) };
    t.tv_sec == 0 && t.tv_nsec == 0
}

/// The zero timeout of the calls that only collect what is ready (see
/// "Splitting" above, and `queue::run`): the library's own memory, at one
/// address, so the per-thread proof cache (which records the timeout
/// pointer of each system call) learns it once instead of a new stack
/// address evicting the caller's timeouts.
pub(crate) static ZERO_TIMEOUT: libc::timespec = libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

#[inline(always)]
fn zero_timeout() -> *const timespec {
    &ZERO_TIMEOUT as *const libc::timespec as *const timespec
}

/// Which system call answers when the ring cannot.
#[derive(Clone, Copy)]
enum Call {
    GetEvents,
    /// `io_pgetevents` with this mask (NULL = none).
    PGetEvents(*const libc::sigset_t),
}

/// The system call itself, uncounted; what the kernel wrote (events) and
/// read (the timeout) is remembered as proven (see `proven`).
fn syscall(
    call: Call,
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *const timespec,
) -> c_long {
    let r = raw_syscall(call, ctx, min_nr, nr, events, timeout);
    // Our own zero timeout needs no proof (and would take a cache slot).
    let learned_timeout = if timeout == zero_timeout() {
        core::ptr::null()
    } else {
        timeout
    };
    proven::learn(events, learned_timeout, r);
    r
}

#[cfg(test)]
thread_local! {
    /// Tests: reaping system calls made by this thread (see `tests`).
    static SYSCALLS_FOR_TEST: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// The system call itself.
fn raw_syscall(
    call: Call,
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *const timespec,
) -> c_long {
    #[cfg(test)]
    SYSCALLS_FOR_TEST.with(|n| n.set(n.get() + 1));
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
/// The count is returned: the caller holds it until the events are
/// translated (see [`Context::await_translations`]).  Counted on the slot
/// that names `ctx`: `c` may have been looked up before its context was
/// destroyed and forgotten, and a new context at the same address
/// registered in another slot, whose `io_destroy` waits there and whose
/// user-space reapers a reap must keep off the ring.
fn kernel(
    c: &'static Context,
    call: Call,
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: *mut io_event,
    timeout: *const timespec,
) -> (c_long, Option<KernelReaper<'static>>) {
    let mut slot = c;
    // A slot changes hands only through a destroy and a new io_setup: a
    // few tries settle it; then no registration names `ctx` (a context
    // not ours), or it keeps changing hands: uncounted.
    for _ in 0..4 {
        match slot.enter_kernel_reap(ctx) {
            Ok(counted) => {
                return (
                    syscall(call, ctx, min_nr, nr, events, timeout),
                    Some(counted),
                )
            }
            Err(NotCounted::Reentrant) => return (REENTRANT, None),
            Err(NotCounted::Stale) => match context::lookup_settled(ctx) {
                Some(again) => slot = again,
                None => break,
            },
        }
    }
    // Counted on no slot: user-space reapers keep off meanwhile.
    let _uncounted = UncountedReaper::hold();
    (syscall(call, ctx, min_nr, nr, events, timeout), None)
}

/// What a user-space attempt achieved.
enum Attempt<'a> {
    /// `.0` events were copied to the caller (maybe 0); `.1` more were
    /// ready but did not fit in the `nr` asked for; `.2` the count held
    /// while they are translated (when PI iocbs are in flight).
    Took(usize, usize, Option<KernelReaper<'a>>),
    /// The ring could not be read safely: the kernel answers everything.
    Kernel,
    /// We are a signal handler that interrupted this thread's own reap.
    Reentrant,
}

/// The answer to a reap from a signal handler that interrupted this same
/// thread's user-space reap of the same ring: neither we nor the kernel may
/// touch the ring until the interrupted reap finishes, and waiting for it
/// would never end, so the call is "interrupted" (libaio would have made the
/// system call; this is the one case where we answer differently).
const REENTRANT: c_long = -(libc::EINTR as c_long);

/// Take up to `nr` ready events in user space, into `events`, which must be
/// writable for `nr` events (library memory, or proven by the kernel).
/// With `short`, `nr` is only the proven part of a longer buffer the caller
/// passed: if more events than that are ready, none are taken (the kernel
/// answers, see "Splitting" above).
#[inline(always)]
fn try_user_space(
    c: &Context,
    ctx: usize,
    events: *mut io_event,
    nr: usize,
    short: bool,
) -> Attempt<'_> {
    let reaper = match c.try_user_reap(ctx) {
        Ok(Some(reaper)) => reaper,
        Ok(None) => return Attempt::Kernel,
        Err(Reentrant) => return Attempt::Reentrant,
    };
    let (addr, slots) = reaper.ring();
    // A program may pass (part of) a ring as its event buffer; the kernel
    // copes, a user-space copy from the ring into itself would not.
    let ring_end = addr + (slots as usize + 1) * core::mem::size_of::<io_event>();
    let out = events as usize;
    if out < ring_end && addr < out + nr * core::mem::size_of::<io_event>() {
        return Attempt::Kernel;
    }
    // SAFETY: `reaper` proves the context is registered under `addr`, live
    // (io_destroy waits for us before unmapping the ring) and ours alone to
    // reap; its ring has `slots` slots (read at registration).
    let ring = unsafe { Ring::registered(addr, slots, reaper.ring_id()) };
    // Another reaper (a raw system call, the program itself) moved `head`
    // since we last did: from now on the kernel reaps this context.
    if reaper.moved_by_another(ring.head_now()) {
        return Attempt::Kernel;
    }
    // A buffer proven for fewer events than the caller asks for, with more
    // than that ready: the kernel copies all it takes from one look at the
    // ring, or, where the buffer is shorter than `nr` says, answers
    // -EFAULT and leaves every one of them in the ring.  Taking the proven
    // part here could not give that answer (it gave 1, the events that
    // fit, where libaio gives -EFAULT), so the kernel answers.
    // Otherwise exactly the events seen ready are taken; any that arrive
    // meanwhile are the kernel's to copy (below, "Splitting").
    let max = if short {
        match ring.ready() {
            Ok(ready) if ready as usize <= nr => ready as usize,
            _ => return Attempt::Kernel,
        }
    } else {
        nr
    };
    // SAFETY: exclusive reaper (above); `events` is writable for `nr >=
    // max` events (this function's contract: the kernel wrote there, see
    // `proven`) and does not overlap the ring (checked above).
    let took = unsafe { ring.take(events, max) };
    // Where we leave `head` (moved only by us while we hold the ring).
    reaper.leave_head(ring.head_now());
    match took {
        // Events of PI iocbs among them are translated after the ring is
        // given back: stay counted until then (`io_destroy` waits).  A
        // PI event's record was counted in flight before its shadow was
        // submitted, so a batch holding one sees `pi::in_flight()`.
        Ok((k, left)) if k > 0 && crate::pi::in_flight() => {
            Attempt::Took(k, left, Some(reaper.keep_counted()))
        }
        Ok((k, left)) => Attempt::Took(k, left, None),
        Err(_) => Attempt::Kernel,
    }
}

/// libaio's peek: zero timeout and an empty ring → 0, without a system call
/// (whatever the other arguments: libaio peeks first).  The ring is looked
/// at first, so a timeout is read only when the ring is empty (libaio reads
/// it on every call), and only if it is known readable (see
/// [`is_zero_timeout`]) or the kernel shows it readable first: the first
/// peek with a new timeout pointer costs one small system call, and the
/// pointer is then remembered.
fn empty_ring_peek(c: &Context, ctx: usize, timeout: *const timespec, memory: Memory) -> bool {
    if timeout.is_null() {
        return false;
    }
    let Ok(Some(reaper)) = c.try_user_reap(ctx) else {
        return false;
    };
    let (addr, slots) = reaper.ring();
    // SAFETY: as in `try_user_space`.
    let ring = unsafe { Ring::registered(addr, slots, reaper.ring_id()) };
    let empty = ring.empty_for_libaio();
    drop(reaper);
    // A timeout not proven yet is shown readable by the kernel first (one
    // small system call, where the alternative is the reaping system call).
    empty && timeout_is_zero(timeout, memory)
}

/// Whether every page of `[at, at + len)` (`len > 0`) is shown readable
/// by the kernel now ([`sys::page_readable`], a small system call a page).
fn kernel_shows_readable(at: usize, len: usize) -> bool {
    sys::plausible_user_range(at, len)
        && sys::page_readable(at) == Some(true)
        && (at / sys::PAGE == (at + len - 1) / sys::PAGE
            || sys::page_readable(at + len - 1) == Some(true))
}

/// Whether `timeout` (not NULL) points at `{0, 0}`: read where known
/// readable ([`is_zero_timeout`]), or after the kernel shows its pages
/// readable (then remembered like a timeout the kernel read, see `proven`:
/// the next call with it needs no proof).
fn timeout_is_zero(timeout: *const timespec, memory: Memory) -> bool {
    if timeout_known_readable(timeout, memory) {
        return is_zero_timeout(timeout, memory);
    }
    if !kernel_shows_readable(timeout as usize, core::mem::size_of::<libc::timespec>()) {
        return false;
    }
    proven::learn(core::ptr::null::<io_event>(), timeout, 0);
    // SAFETY: its pages were just shown readable; the caller may not unmap
    // memory it passes to this call meanwhile.  Unaligned: C does not
    // promise alignment.
    let t = unsafe { core::ptr::read_unaligned(timeout as *const libc::timespec) };
    t.tv_sec == 0 && t.tv_nsec == 0
}

/// libaio's peek (`aio_ring_is_empty`) for a context that is not ours: a
/// forked child's copy of its parent's ring, a ring from a raw
/// `io_setup(2)`, a destroyed context's address, any value at all.  libaio
/// reads the ring header at `ctx` and `*timeout` whatever they are, and
/// returns 0 without a system call when the header has the ring's magic,
/// `head == tail`, and the timeout is zero; it faults on memory that cannot
/// be read.  We copy them with one kernel-checked copy (~1.2 us; a NULL
/// timeout is never a peek and costs nothing), and where that fails or the
/// peek says no, the kernel answers.  (An independent tester's
/// differential: the parent's empty ring in a forked child, and ring-like
/// bytes at an address that names no context, gave libaio's 0 and our
/// -EINVAL.)
fn foreign_ring_peek(ctx: usize, timeout: *const timespec, memory: Memory) -> bool {
    const HEADER: usize = core::mem::offset_of!(AioRingHeader, magic) + 4;
    const TS: usize = core::mem::size_of::<libc::timespec>();
    if timeout.is_null() || !sys::plausible_user_range(ctx, HEADER) {
        return false;
    }
    // One kernel-checked copy of the header (and of the timeout, unless it
    // is ours), never a load of ours: the memory at `ctx` can be a ring
    // that another thread's io_destroy unmaps right now (the kernel knows
    // no context there any more, so neither do we: a probe, then a load,
    // faulted in that window, `pi_lifecycle.c`'s destroyed handles).  No
    // allocation and no thread-local either (this may be a raw-fork
    // child's reap of its parent's ring in a `dlopen`ed library).
    let mut header = [0u8; HEADER];
    let mut t = [0u8; TS];
    let ours = memory == Memory::Library;
    let from = [
        libc::iovec {
            iov_base: ctx as *mut c_void,
            iov_len: HEADER,
        },
        libc::iovec {
            iov_base: timeout as *mut c_void,
            iov_len: TS,
        },
    ];
    let into = [
        libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: HEADER,
        },
        libc::iovec {
            iov_base: t.as_mut_ptr().cast(),
            iov_len: TS,
        },
    ];
    let n = if ours { 1 } else { 2 };
    if !sys::SelfMem::new().gather(&from[..n], &into[..n]) {
        return false;
    }
    let word =
        |f: usize| u32::from_ne_bytes([header[f], header[f + 1], header[f + 2], header[f + 3]]);
    let zero = if ours {
        is_zero_timeout(timeout, memory)
    } else {
        t == [0u8; TS]
    };
    word(core::mem::offset_of!(AioRingHeader, magic)) == AIO_RING_MAGIC
        && word(core::mem::offset_of!(AioRingHeader, head))
            == word(core::mem::offset_of!(AioRingHeader, tail))
        && zero
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
    memory: Memory,
) -> i32 {
    // A signal handler that interrupted this thread while it held the PI
    // record map's lock could not translate a PI event it took: it takes
    // none, and the call is interrupted (as `REENTRANT`).
    // Plain users pay three loads here (see `interrupted_pi_code`).
    if crate::pi::interrupted_pi_code() {
        return sys::to_int(REENTRANT);
    }
    // A registration is not missed for a slot held for a moment by an
    // older context's `unregister` (its reaps must be counted, to keep
    // user-space reapers off the ring: see `kernel`); the probe is made
    // again only where it saw such a slot.
    let Some(c) = context::lookup_settled(ctx) else {
        // libaio's peek, on a kernel-checked copy of the header.
        if foreign_ring_peek(ctx, timeout, memory) {
            return 0;
        }
        // Not ours (as a rule): the kernel answers, and user-space
        // reapers keep off every ring meanwhile, since a new context may
        // be registered at this address now (see `UncountedReaper`).
        match UncountedReaper::enter(ctx) {
            Ok(_uncounted) => {
                return finish(syscall(call, ctx, min_nr, nr, events, timeout), events);
            }
            Err(c) => {
                let (r, _counted) = kernel(c, call, ctx, min_nr, nr, events, timeout);
                return finish(r, events);
            }
        }
    };
    let fast = match call {
        Call::GetEvents => true,
        Call::PGetEvents(mask) => mask.is_null(),
    } && user_reap_enabled();
    // A misaligned `events` (C does not forbid it; the kernel copes) is
    // left to the kernel: the user-space copy writes typed events.
    let args_ok = 0 <= min_nr
        && min_nr <= nr
        && (nr == 0
            || (sys::plausible_user_range(
                events as usize,
                (nr as usize).saturating_mul(core::mem::size_of::<io_event>()),
            ) && (events as usize).is_multiple_of(core::mem::align_of::<io_event>())));
    // How many events may be written at `events` in user space: all `nr`
    // in the library's own memory, else what the kernel proved writable.
    // Only with a timeout the kernel has already read (or none): the
    // kernel reads `*timeout` before it looks at the ring, so a pointer it
    // cannot read gets -EFAULT even with events ready (taking them here
    // answered 1 instead: an independent tester's repro_badtimeout.c).  A
    // program that reuses its timeouts pays one system call per new one
    // (`proven` keeps two per thread).
    let timeout_ok = timeout.is_null() || timeout_known_readable(timeout, memory);
    let room = if fast && args_ok && nr > 0 && timeout_ok {
        match memory {
            Memory::Library => nr as usize,
            Memory::Caller => proven::events_room(events, nr as usize),
        }
    } else {
        0
    };
    // room == 0: nr == 0 (io_queue_wait, nothing to copy), no fast path, or
    // a buffer the kernel has not proven yet: the kernel answers (and
    // proves the buffer), except for libaio's zero-timeout peek.
    if room == 0 {
        // libaio peeks before it looks at any other argument: an empty
        // ring and a zero timeout are 0 even with `min_nr > nr`, `nr < 0`
        // or a bad `events` (an independent tester's differential: -EINVAL
        // from the kernel here, 0 from libaio), and `io_pgetevents` then
        // installs no mask (a pending signal it would unblock stays
        // pending).
        if empty_ring_peek(c, ctx, timeout, memory) {
            return 0;
        }
        let (r, _counted) = kernel(c, call, ctx, min_nr, nr, events, timeout);
        return finish(r, events);
    }
    // `_taken`: held until the events are delivered (translated).
    let (k, left, _taken) = match try_user_space(c, ctx, events, room, room < nr as usize) {
        Attempt::Took(k, left, counted) => (k, left, counted),
        Attempt::Kernel => {
            // A ring we do not read from (its header changed) may still be
            // empty to libaio's peek, which comes first there.
            if empty_ring_peek(c, ctx, timeout, memory) {
                return 0;
            }
            let (r, _counted) = kernel(c, call, ctx, min_nr, nr, events, timeout);
            return finish(r, events);
        }
        Attempt::Reentrant => return sys::to_int(REENTRANT),
    };
    if k >= min_nr as usize {
        if left == 0 || k == nr as usize {
            delivered(events, k);
            return k as i32;
        }
        // More are ready than the proven part of `events` holds: the kernel
        // copies them without waiting, proving more of the buffer.
        let kk = k as c_long;
        // SAFETY: k < nr, inside the range checked above.
        let rest_at = unsafe { events.add(k) };
        let (r, _counted) = kernel(c, call, ctx, 0, nr - kk, rest_at, zero_timeout());
        return finish(kk + r.max(0), events);
    }
    if is_zero_timeout(timeout, memory) {
        delivered(events, k);
        return k as i32;
    }
    // Wait in the kernel for the rest.
    let kk = k as c_long;
    // SAFETY: k <= nr, inside the range checked above.
    let rest_at = unsafe { events.add(k) };
    let (r, _counted) = kernel(c, call, ctx, min_nr - kk, nr - kk, rest_at, timeout);
    let n = if r >= 0 {
        r + kk
    } else if k > 0 {
        kk
    } else {
        r
    };
    finish(n, events)
}

/// Pass a kernel result through [`delivered`] and convert it.
#[inline(always)]
fn finish(r: c_long, events: *mut io_event) -> i32 {
    if r > 0 {
        delivered(events, r as usize);
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
    reap(
        Call::GetEvents,
        ctx,
        min_nr,
        nr,
        events,
        timeout,
        Memory::Caller,
    )
}

/// `io_getevents` into memory the library owns (`io_queue_run`): `events`
/// must be valid for writes of `nr` events, and `timeout` NULL or valid for
/// reads, for the whole call.  No proof from the kernel is needed, so a
/// drain of a ready ring makes no system call.
pub fn getevents_own_memory(
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: &mut [io_event],
    timeout: Option<&libc::timespec>,
) -> i32 {
    let nr = nr.clamp(c_long::MIN, events.len() as c_long);
    let timeout = timeout.map_or(core::ptr::null(), |t| t as *const libc::timespec);
    reap(
        Call::GetEvents,
        ctx,
        min_nr,
        nr,
        events.as_mut_ptr(),
        timeout as *const timespec,
        Memory::Library,
    )
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
    reap(
        Call::PGetEvents(sigmask),
        ctx,
        min_nr,
        nr,
        events,
        timeout,
        Memory::Caller,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{io_iocb_cmd, iocb};
    use crate::{prep, setup, submit};
    use core::ffi::c_void;
    use std::os::fd::AsRawFd;

    const EINVAL: i32 = -libc::EINVAL;
    const EFAULT: i32 = -libc::EFAULT;

    /// A context, and a 64 KiB file whose 512-byte block `i` is filled with
    /// the byte `i`.
    struct Fixture {
        ctx: usize,
        file: std::fs::File,
        bufs: Vec<[u8; 512]>,
        iocbs: Vec<iocb>,
    }

    impl Fixture {
        fn new(maxevents: i32, ios: usize) -> Fixture {
            let dir = std::env::temp_dir().join(format!(
                "libaio-rs-reap-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let data: Vec<u8> = (0..128u32).flat_map(|i| [i as u8; 512]).collect();
            std::fs::write(&dir, &data).unwrap();
            let file = std::fs::File::open(&dir).unwrap();
            std::fs::remove_file(&dir).unwrap();
            let ctx = setup::setup_local(maxevents).unwrap() as usize;
            Fixture {
                ctx,
                file,
                bufs: vec![[0; 512]; ios],
                iocbs: vec![iocb::zeroed(); ios],
            }
        }

        /// Submit reads into slots `first..first + n`; each iocb's `data` is
        /// its slot number and it reads block `slot % 128`.
        fn submit(&mut self, first: usize, n: usize) {
            let mut ptrs = Vec::with_capacity(n);
            for s in first..first + n {
                let buf = self.bufs[s].as_mut_ptr() as *mut c_void;
                let io = &mut self.iocbs[s];
                let fd = self.file.as_raw_fd();
                prep::rw(
                    io,
                    io_iocb_cmd::IO_CMD_PREAD,
                    fd,
                    buf,
                    512,
                    (s % 128) as i64 * 512,
                );
                io.data = s as *mut c_void;
                ptrs.push(io as *mut iocb);
            }
            assert_eq!(
                submit::submit(self.ctx, n as c_long, ptrs.as_mut_ptr()),
                n as i32
            );
        }

        /// Events ready in the ring (read unlocked: tests own the context).
        fn ready(&self) -> u32 {
            let c = context::lookup(self.ctx).unwrap();
            let reaper = c.user_reap_for_test(self.ctx);
            let (addr, nr) = reaper.ring();
            // SAFETY: a live registered ring.
            unsafe { Ring::registered(addr, nr, reaper.ring_id()) }
                .ready()
                .unwrap()
        }

        fn wait_ready(&self, n: u32) {
            for _ in 0..5000 {
                if self.ready() >= n {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            panic!("completions did not arrive");
        }

        /// Check that event `ev` is a good completion and return its slot.
        fn check(&self, ev: &io_event) -> usize {
            let s = ev.data as usize;
            assert_eq!(ev.obj as *const iocb, &self.iocbs[s] as *const iocb);
            assert_eq!(ev.res, 512, "slot {s}");
            assert_eq!(self.bufs[s], [(s % 128) as u8; 512]);
            s
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if self.ctx != 0 {
                assert_eq!(setup::destroy(self.ctx), 0);
            }
        }
    }

    /// A fresh anonymous page with protection `prot`, never unmapped.
    fn page(prot: i32) -> *mut u8 {
        sys::anon_map(4096, prot) as *mut u8
    }

    /// Room for exactly one event: the last 32 bytes of a writable page
    /// whose next page has protection `prot` (never unmapped).
    fn one_slot_before(prot: i32) -> *mut io_event {
        let p = sys::anon_map(8192, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: the second page of our own fresh two-page mapping.
        let r = unsafe { libc::mprotect((p + 4096) as *mut _, 4096, prot) };
        assert_eq!(r, 0);
        (p + 4096 - 32) as *mut io_event
    }

    /// A page no one can read: a timeout pointer the kernel answers -EFAULT
    /// for (even with events ready: it reads the timeout first).
    fn unreadable_page() -> *mut timespec {
        page(libc::PROT_NONE).cast()
    }

    /// Reaping system calls this thread has made so far.
    fn syscalls() -> usize {
        SYSCALLS_FOR_TEST.with(|n| n.get())
    }

    /// `f()`, and how many system calls this thread's reaps made in it.
    fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = syscalls();
        let r = f();
        (r, syscalls() - before)
    }

    /// Reap everything that is ready (with a valid zero timeout).
    fn drain(f: &Fixture) {
        let mut ev = [io_event::zeroed(); 8];
        let mut zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let z = &mut zero as *mut libc::timespec as *mut timespec;
        while getevents(f.ctx, 0, 8, ev.as_mut_ptr(), z) > 0 {}
        assert_eq!(f.ready(), 0);
    }

    /// A page no one can write: an events buffer the kernel answers
    /// -EFAULT for.
    fn read_only_page() -> *mut io_event {
        page(libc::PROT_READ).cast()
    }

    /// A reaper the library does not know (here the raw system call, as
    /// InnoDB makes it) moves `head` behind the library's back; user-space
    /// reaping alongside it would copy events twice whenever the two
    /// overlap (an independent audit: duplicates in 7 of 8 runs of two
    /// threads mixing them).  Once seen, the context is reaped only by the
    /// system call.  Fails without the check: the reap after the raw one
    /// made no system call.
    #[test]
    fn a_reaper_the_library_does_not_know_turns_the_context_to_the_kernel() {
        let mut zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let z = &mut zero as *mut libc::timespec as *mut timespec;
        let mut ev = [io_event::zeroed(); 4];
        let evp = ev.as_mut_ptr();
        // A fresh context each try (a retry after another test's
        // io_destroy starts over).
        // The fixture is returned, so that its io_destroy (which forgets
        // every proof) comes after the check.
        let (_f, control, raw, after, later) = proven::without_forgetting(|| {
            let mut f = Fixture::new(8, 6);
            // The kernel writes 4 events into `evp`: proven for 4.
            f.submit(0, 4);
            f.wait_ready(4);
            assert_eq!(getevents(f.ctx, 4, 4, evp, z), 4);
            f.submit(0, 2);
            f.wait_ready(2);
            let control = counting(|| getevents(f.ctx, 1, 4, evp, z));
            f.submit(2, 3);
            f.wait_ready(3);
            // SAFETY: a raw io_getevents(2) on our own live context into
            // our own array.
            let raw = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    f.ctx,
                    1 as c_long,
                    1 as c_long,
                    evp,
                    core::ptr::null::<libc::timespec>(),
                )
            };
            // SAFETY: the raw call wrote one event there.
            let raw_slot = f.check(unsafe { &*evp });
            let after = counting(|| getevents(f.ctx, 1, 4, evp, z));
            // SAFETY: reading our own array.
            let after_slots = unsafe { [f.check(&*evp), f.check(&*evp.add(1))] };
            // (Not `wait_ready`: its peek is a user-space reaper, refused
            // now.  A NULL timeout needs no proof; with the event ready a
            // user-space reap would make no system call.)
            f.submit(5, 1);
            let later = counting(|| getevents(f.ctx, 1, 4, evp, core::ptr::null_mut()));
            (f, control, (raw, raw_slot), (after, after_slots), later)
        });
        assert_eq!(control, (2, 0), "before: reaped in user space");
        assert_eq!(raw, (1, 2), "the raw call took slot 2");
        assert_eq!(
            after,
            ((2, 1), [3, 4]),
            "head moved behind our back: the system call reaps"
        );
        assert_eq!(later, (1, 1), "and keeps reaping this context");
    }

    #[test]
    fn ready_events_are_taken_without_a_system_call() {
        let mut f = Fixture::new(8, 3);
        let bad = unreadable_page();
        let mut ev = [io_event::zeroed(); 8];
        let evp = ev.as_mut_ptr();
        let mut ts = libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        let ts = &mut ts as *mut libc::timespec as *mut timespec;
        // Steps that need the buffer's proof to survive: retried if a test
        // running in parallel calls io_destroy (which forgets all proofs).
        let (first, again, slots) = proven::without_forgetting(|| {
            drain(&f);
            f.submit(0, 3);
            f.wait_ready(3);
            // A buffer the kernel never wrote: the system call, which reads
            // `bad` and fails; the events stay in the ring.
            let first = getevents(f.ctx, 1, 2, evp, bad);
            let kept = f.ready();
            // The kernel writes 3 events and reads `ts`: now the buffer is
            // proven for 3, and `ts` readable.
            let proving = getevents(f.ctx, 3, 8, evp, ts);
            f.submit(0, 3);
            f.wait_ready(3);
            let before = syscalls();
            let a = getevents(f.ctx, 1, 2, evp, ts);
            // SAFETY: reading our own array.
            let sa = unsafe { [f.check(&*evp), f.check(&*evp.add(1))] };
            let b = getevents(f.ctx, 1, 8, evp, core::ptr::null_mut());
            // SAFETY: as above.
            let sb = f.check(unsafe { &*evp });
            // Empty ring, min_nr 0: the kernel would return 0 at once too.
            let c = getevents(f.ctx, 0, 8, evp, ts);
            let made = syscalls() - before;
            // A timeout the kernel cannot read, with an event ready: the
            // kernel reads it first, so -EFAULT, and the event stays.
            f.submit(0, 1);
            f.wait_ready(1);
            let d = getevents(f.ctx, 1, 8, evp, bad);
            let e = getevents(f.ctx, 1, 8, evp, ts);
            // SAFETY: as above.
            let se = f.check(unsafe { &*evp });
            (
                (first, kept, proving),
                (a, b, c, made, d, e),
                (sa[0], sa[1], sb, se),
            )
        });
        assert_eq!(first, (EFAULT, 3, 3));
        assert_eq!(again, (2, 1, 0, 0, EFAULT, 1));
        assert_eq!(slots, (0, 1, 2, 0));
        // A timeout that cannot be user memory: the kernel answers.
        let kernel_addr = usize::MAX - 4095;
        assert_eq!(
            getevents(f.ctx, 0, 8, ev.as_mut_ptr(), kernel_addr as *mut timespec),
            EFAULT
        );
        // Bad arguments go to the kernel as well.
        f.submit(0, 1);
        f.wait_ready(1);
        let null = core::ptr::null_mut();
        assert_eq!(getevents(f.ctx, 2, 1, ev.as_mut_ptr(), null), EINVAL);
        assert_eq!(getevents(f.ctx, -1, 1, ev.as_mut_ptr(), null), EINVAL);
        assert_eq!(
            getevents(f.ctx, 1, 1, kernel_addr as *mut io_event, null),
            EFAULT
        );
        let mut zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let zero = &mut zero as *mut libc::timespec as *mut timespec;
        assert_eq!(getevents(f.ctx, 1, 1, core::ptr::null_mut(), zero), EFAULT);
        assert_eq!(f.ready(), 1, "a refused call consumed nothing");
        assert_eq!(getevents(f.ctx, 1, 1, ev.as_mut_ptr(), zero), 1);
        assert_eq!(f.check(&ev[0]), 0);
    }

    #[test]
    fn buffers_the_kernel_cannot_write_get_efault_and_the_events_stay() {
        let mut f = Fixture::new(8, 4);
        let ro = read_only_page();
        let mut ts = libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        let ts = &mut ts as *mut libc::timespec as *mut timespec;
        let mut zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let z = &mut zero as *mut libc::timespec as *mut timespec;
        f.submit(0, 2);
        f.wait_ready(2);
        assert_eq!(getevents(f.ctx, 1, 4, ro, ts), EFAULT);
        assert_eq!(getevents(f.ctx, 0, 4, ro, z), EFAULT);
        assert_eq!(pgetevents(f.ctx, 0, 4, ro, z, core::ptr::null()), EFAULT);
        assert_eq!(f.ready(), 2, "nothing consumed");
        // Room for one event before an unwritable page.
        let edge = one_slot_before(libc::PROT_READ);
        // Two ready, room for one: the kernel copies both at once, fails,
        // and keeps both.
        assert_eq!(getevents(f.ctx, 1, 4, edge, ts), EFAULT);
        assert_eq!(f.ready(), 2);
        drain(&f);
        let got = proven::without_forgetting(|| {
            // Asking for one proves the one slot (or, if already proven,
            // takes it in user space).
            f.submit(0, 1);
            f.wait_ready(1);
            let one = getevents(f.ctx, 1, 1, edge, ts);
            // SAFETY: the event we just got, in our mapping.
            let slot = f.check(unsafe { &*edge });
            // Three ready, room for one proven: the kernel answers, as for
            // libaio: -EFAULT, all three kept (before, one was taken in user
            // space and 1 returned).  The kernel's faulting copy has stored
            // what fitted (the first of the three, slot 1, in the proven
            // slot) without consuming it.
            f.submit(1, 3);
            f.wait_ready(3);
            let (r, calls) = counting(|| getevents(f.ctx, 1, 4, edge, ts));
            // SAFETY: as above.
            let kept = f.check(unsafe { &*edge });
            let left = f.ready();
            // With one ready, the proven slot still takes it in user space.
            drain(&f);
            f.submit(2, 1);
            f.wait_ready(1);
            let (again, calls_again) = counting(|| getevents(f.ctx, 1, 4, edge, ts));
            // SAFETY: as above.
            let slot_again = f.check(unsafe { &*edge });
            (
                one,
                slot,
                r,
                calls,
                kept,
                left,
                again,
                calls_again,
                slot_again,
            )
        });
        assert_eq!(got, (1, 0, EFAULT, 1, 1, 3, 1, 0, 2));
    }

    /// A thread that rotates among a few timeout pointers keeps the fast
    /// path (an independent reviewer's `t7_timeouts`: with two remembered,
    /// three in turn made a system call on every reap).
    #[test]
    fn three_timeouts_in_turn_keep_the_fast_path() {
        let mut f = Fixture::new(8, 3);
        let mut ev = [io_event::zeroed(); 8];
        let evp = ev.as_mut_ptr();
        let mut ts = [libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        }; 3];
        let tsp: Vec<*mut timespec> = ts
            .iter_mut()
            .map(|t| t as *mut _ as *mut timespec)
            .collect();
        let made = proven::without_forgetting(|| {
            drain(&f);
            // Each timeout and the buffer go through the kernel once.
            for &t in &tsp {
                f.submit(0, 1);
                assert_eq!(getevents(f.ctx, 1, 8, evp, t), 1);
            }
            counting(|| {
                for round in 0..6 {
                    f.submit(0, 1);
                    f.wait_ready(1);
                    assert_eq!(getevents(f.ctx, 1, 8, evp, tsp[round % 3]), 1);
                }
            })
            .1
        });
        assert_eq!(made, 0);
    }

    #[test]
    fn a_buffer_proven_for_fewer_events_grows_with_what_the_kernel_writes() {
        let mut f = Fixture::new(16, 8);
        let mut ev = [io_event::zeroed(); 8];
        let evp = ev.as_mut_ptr();
        let got = proven::without_forgetting(|| {
            drain(&f);
            f.submit(0, 1);
            f.wait_ready(1);
            let one = getevents(f.ctx, 1, 8, evp, core::ptr::null_mut());
            let room1 = proven::events_room(evp, 8);
            f.submit(0, 5);
            f.wait_ready(5);
            // One taken in user space; the kernel copies the other four with
            // the library's zero timeout (one system call).
            let (five, calls5) = counting(|| getevents(f.ctx, 1, 8, evp, core::ptr::null_mut()));
            // SAFETY: reading our own array.
            let slots: Vec<usize> = (0..5).map(|i| f.check(unsafe { &*evp.add(i) })).collect();
            let room5 = proven::events_room(evp, 8);
            f.submit(0, 5);
            f.wait_ready(5);
            let (again, calls_again) =
                counting(|| getevents(f.ctx, 5, 8, evp, core::ptr::null_mut()));
            (one, room1, five, calls5, slots, room5, again, calls_again)
        });
        assert_eq!(got, (1, 1, 5, 1, vec![0, 1, 2, 3, 4], 5, 5, 0));
    }

    #[test]
    fn unreadable_timeouts_get_efault() {
        let f = Fixture::new(8, 1);
        let bad = unreadable_page();
        let mut ev = [io_event::zeroed(); 1];
        // Empty ring: libaio's peek would read `*bad`; we ask the kernel.
        assert_eq!(getevents(f.ctx, 0, 1, ev.as_mut_ptr(), bad), EFAULT);
        assert_eq!(getevents(f.ctx, 1, 1, ev.as_mut_ptr(), bad), EFAULT);
        assert_eq!(
            pgetevents(f.ctx, 0, 1, ev.as_mut_ptr(), bad, core::ptr::null()),
            EFAULT
        );
        assert_eq!(crate::queue::wait(f.ctx, bad), EFAULT);
        assert!(!proven::timeout_readable(bad));
        // A good zero timeout is read by the kernel once, then trusted.
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let z = &zero as *const libc::timespec as *mut timespec;
        let proven_after = proven::without_forgetting(|| {
            let r = getevents(f.ctx, 0, 1, ev.as_mut_ptr(), z);
            (r, proven::timeout_readable(z))
        });
        assert_eq!(proven_after, (0, true));
        // io_queue_run's own memory needs no proof.
        assert_eq!(crate::queue::run(f.ctx), 0);
    }

    #[test]
    fn the_real_ring_wraps_many_times() {
        let mut f = Fixture::new(1, 64);
        let c = context::lookup(f.ctx).unwrap();
        let nr = c.user_reap_for_test(f.ctx).ring().1 as usize;
        assert!(nr >= 16, "ring of {nr} slots");
        let mut ev = vec![io_event::zeroed(); 64];
        let (mut done, mut wraps, mut last_head) = (0usize, 0usize, 0u32);
        let head = |f: &Fixture| {
            // SAFETY: reading the head word of our live ring.
            unsafe { core::ptr::read_volatile((f.ctx + 8) as *const u32) }
        };
        for round in 0..3000usize {
            let b = 1 + round % 13;
            f.submit(0, b);
            let mut seen = vec![0u32; b];
            let mut got = 0;
            while got < b {
                // Sometimes ask for fewer than are ready, to leave some.
                let want = (b - got).min(1 + round % 5);
                let n = getevents(
                    f.ctx,
                    want as c_long,
                    want as c_long,
                    ev.as_mut_ptr(),
                    core::ptr::null_mut(),
                );
                assert_eq!(n, want as i32);
                for e in &ev[..want] {
                    seen[f.check(e)] += 1;
                }
                got += want;
            }
            assert!(seen.iter().all(|&s| s == 1), "round {round}: {seen:?}");
            done += b;
            let h = head(&f);
            if h < last_head {
                wraps += 1;
            }
            last_head = h;
        }
        assert!(
            wraps >= done / nr - 1,
            "{wraps} wraps, {done} ops, {nr} slots"
        );
        assert!(wraps > 50);
    }

    #[test]
    fn the_kernel_waits_for_what_the_ring_does_not_have() {
        let mut f = Fixture::new(8, 4);
        f.submit(0, 2);
        f.wait_ready(2);
        let mut ev = [io_event::zeroed(); 4];
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        let t = &mut t as *mut libc::timespec as *mut timespec;
        // 2 in the ring, 3 wanted: the kernel waits 20 ms for the third,
        // then the two are returned.
        assert_eq!(getevents(f.ctx, 3, 3, ev.as_mut_ptr(), t), 2);
        assert_eq!((f.check(&ev[0]), f.check(&ev[1])), (0, 1));
        f.submit(0, 1);
        f.wait_ready(1);
        f.submit(1, 1);
        assert_eq!(
            getevents(f.ctx, 2, 4, ev.as_mut_ptr(), core::ptr::null_mut()),
            2
        );
        assert_eq!((f.check(&ev[0]), f.check(&ev[1])), (0, 1));
        // The kernel's error after events were taken: those events.  Room
        // for one event, then an unreadable page; one event in the ring and
        // a poll that completes later: we copy the ready one, the kernel
        // waits for the poll, fails to store it (-EFAULT) and keeps it.
        let one = one_slot_before(libc::PROT_NONE);
        let mut pipe = [0; 2];
        // SAFETY: a two-int array.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        let mut poll = iocb::zeroed();
        prep::poll(&mut poll, pipe[0], libc::POLLIN as i32);
        let mut pp = &mut poll as *mut iocb;
        assert_eq!(submit::submit(f.ctx, 1, &mut pp), 1);
        f.submit(0, 1);
        f.wait_ready(1);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            // SAFETY: writing one byte from a local to our pipe.
            unsafe { libc::write(pipe[1], b"x".as_ptr().cast(), 1) };
        });
        let mut t = libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        let t = &mut t as *mut libc::timespec as *mut timespec;
        assert_eq!(getevents(f.ctx, 2, 2, one, t), 1);
        // SAFETY: the event we just got, in our mapping.
        assert_eq!(f.check(unsafe { &*one }), 0);
        writer.join().unwrap();
        assert_eq!(f.ready(), 1, "the kernel kept the event it could not copy");
        assert_eq!(getevents(f.ctx, 1, 1, ev.as_mut_ptr(), t), 1);
        assert_eq!(ev[0].obj, &mut poll as *mut iocb);
        // SAFETY: closing our pipe.
        let _ = unsafe { libc::close(pipe[0]) + libc::close(pipe[1]) };
    }

    /// What a signal handler sees when it interrupted this thread's own
    /// user-space reap of the same ring: -EINTR, not a wait for itself.
    #[test]
    fn a_reap_reentered_from_a_signal_handler_does_not_wait_for_itself() {
        let mut f = Fixture::new(8, 2);
        f.submit(0, 2);
        f.wait_ready(2);
        let c = context::lookup(f.ctx).unwrap();
        let held = c.user_reap_for_test(f.ctx);
        let mut ev = [io_event::zeroed(); 2];
        let mut zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let z = &mut zero as *mut libc::timespec as *mut timespec;
        assert_eq!(getevents(f.ctx, 0, 2, ev.as_mut_ptr(), z), -libc::EINTR);
        // SAFETY: an all-zero sigset_t is the empty set.
        let mask: libc::sigset_t = unsafe { core::mem::zeroed() };
        assert_eq!(
            pgetevents(f.ctx, 1, 2, ev.as_mut_ptr(), z, &mask),
            -libc::EINTR
        );
        // Another thread just waits for the holder, then gets the events.
        std::thread::scope(|s| {
            let ctx = f.ctx;
            let t = s.spawn(move || {
                let mut ev = [io_event::zeroed(); 2];
                getevents(ctx, 2, 2, ev.as_mut_ptr(), core::ptr::null_mut())
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(held);
            assert_eq!(t.join().unwrap(), 2);
        });
    }

    #[test]
    fn a_forked_child_gets_einval_and_not_the_parents_events() {
        let mut f = Fixture::new(8, 1);
        f.submit(0, 1);
        f.wait_ready(1);
        // SAFETY: the child only makes system calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut ev = io_event::zeroed();
            let mut zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let z = &mut zero as *mut libc::timespec as *mut timespec;
            let a = getevents(f.ctx, 0, 1, &mut ev, z);
            let b = getevents(f.ctx, 1, 1, &mut ev, core::ptr::null_mut());
            let ok = a == EINVAL && b == EINVAL;
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let mut ev = io_event::zeroed();
        assert_eq!(getevents(f.ctx, 1, 1, &mut ev, core::ptr::null_mut()), 1);
        assert_eq!(f.check(&ev), 0);
    }

    /// Runs `a_ring_moved_body` alone in a child process: between the
    /// `mremap` and the mapping that then holds the old address, a test
    /// running in parallel could map its own ring there (seen once in
    /// `make check`), and the body's checks on the old address would meet
    /// that ring.
    #[test]
    fn a_ring_moved_with_mremap_is_never_read_at_its_old_address() {
        run_alone("reap::tests::a_ring_moved_body");
    }

    #[test]
    #[ignore = "run by a_ring_moved_with_mremap_is_never_read_at_its_old_address in its own process"]
    fn a_ring_moved_body() {
        let mut f = Fixture::new(1, 2);
        let old = f.ctx;
        f.submit(0, 1);
        f.wait_ready(1);
        let len = 4096;
        // Reserve an address, then move the ring there (the kernel follows
        // the move: the new address is the context from now on).
        let dst = sys::anon_map(len, libc::PROT_NONE);
        // SAFETY: moving our own ring onto our own reserved mapping.
        let new = unsafe {
            libc::mremap(
                old as *mut c_void,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dst as *mut c_void,
            )
        };
        assert_ne!(new, libc::MAP_FAILED);
        let new = new as usize;
        // Hold the old address, so no ring of a test running in parallel
        // lands there.
        // SAFETY: a fresh mapping at a now-free address.
        let hold = unsafe {
            libc::mmap(
                old as *mut c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(hold as usize, old);
        f.ctx = new;
        let mut ev = io_event::zeroed();
        assert_eq!(getevents(new, 1, 1, &mut ev, core::ptr::null_mut()), 1);
        assert_eq!(f.check(&ev), 0);
        f.submit(1, 1);
        assert_eq!(getevents(new, 1, 1, &mut ev, core::ptr::null_mut()), 1);
        assert_eq!(f.check(&ev), 1);
        assert!(
            context::lookup(old).is_some(),
            "still registered before io_destroy"
        );
        f.ctx = 0;
        assert_eq!(setup::destroy(new), 0);
        assert!(
            context::lookup(old).is_none(),
            "the old address was forgotten"
        );
        assert_eq!(getevents(old, 0, 1, &mut ev, core::ptr::null_mut()), EINVAL);
        assert_eq!(setup::destroy(old), EINVAL);
    }

    /// Runs `destroy_race_body` alone in a child process: once a context is
    /// destroyed its address may be reused at once by another test's ring,
    /// which the stale reapers of this test would then reap from.
    #[test]
    fn destroy_while_other_threads_reap() {
        run_alone("reap::tests::destroy_race_body");
    }

    /// Run the ignored test `name` alone, in a child process of this test
    /// binary, and require that it passed.
    fn run_alone(name: &str) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--ignored", "--test-threads=1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    #[ignore = "run by destroy_while_other_threads_reap in its own process"]
    fn destroy_race_body() {
        for _ in 0..20 {
            let mut f = Fixture::new(32, 32);
            f.submit(0, 32);
            let ctx = f.ctx;
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| {
                        let mut ev = [io_event::zeroed(); 4];
                        let mut zero = libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        };
                        let z = &mut zero as *mut libc::timespec as *mut timespec;
                        loop {
                            let r = getevents(ctx, 0, 4, ev.as_mut_ptr(), z);
                            assert!(r == EINVAL || (0..=4).contains(&r), "{r}");
                            if r == EINVAL || stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    });
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
                assert_eq!(setup::destroy(ctx), 0);
                stop.store(true, Ordering::Relaxed);
            });
            f.ctx = 0;
            std::thread::scope(|_| {});
            assert!(context::lookup(ctx).is_none());
        }
    }
}
