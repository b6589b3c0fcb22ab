//! Raw Linux system calls.
//!
//! libaio's contract is "return `-errno`, leave `errno` alone".  On x86_64 and
//! aarch64 we issue the `syscall`/`svc` instruction directly, which never
//! touches `errno` and costs nothing beyond the kernel entry.  Elsewhere we go
//! through `libc::syscall` and restore `errno` afterwards, as libaio does.
//!
//! These functions pass raw addresses to the kernel and never dereference them
//! in user space: the kernel validates them and answers `-EFAULT` where they
//! are bad, so they are safe to call with any argument values.

// `libc::SYS_* as i64` is a no-op on 64-bit targets and a widening on
// 32-bit ones (where they are `c_long` = `i32`): keep the casts.
#![allow(clippy::unnecessary_cast)]

use core::ffi::{c_int, c_long};
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const IO_SETUP: i64 = 206;
    pub const IO_DESTROY: i64 = 207;
    pub const IO_GETEVENTS: i64 = 208;
    pub const IO_SUBMIT: i64 = 209;
    pub const IO_CANCEL: i64 = 210;
    pub const IO_PGETEVENTS: i64 = 333;
    pub const FCNTL: i64 = 72;
}

#[cfg(not(target_arch = "x86_64"))]
mod nr {
    pub const IO_SETUP: i64 = libc::SYS_io_setup as i64;
    pub const IO_DESTROY: i64 = libc::SYS_io_destroy as i64;
    pub const IO_GETEVENTS: i64 = libc::SYS_io_getevents as i64;
    pub const IO_SUBMIT: i64 = libc::SYS_io_submit as i64;
    pub const IO_CANCEL: i64 = libc::SYS_io_cancel as i64;
    pub const IO_PGETEVENTS: i64 = libc::SYS_io_pgetevents as i64;
    pub const FCNTL: i64 = libc::SYS_fcntl as i64;
}

/// Issue system call `n` with up to six integer arguments; returns the raw
/// kernel result (`-errno` on failure).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn raw6(n: i64, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> c_long {
    let ret: i64;
    // SAFETY: the `syscall` instruction only transfers control to the kernel;
    // the arguments are plain integers (any pointers among them are checked by
    // the kernel, never by us), and rcx/r11 are declared clobbered as the ABI
    // requires.  No Rust memory is borrowed across the call.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n => ret,
            in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e, in("r9") f,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret as c_long
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn raw6(n: i64, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> c_long {
    let ret: i64;
    // SAFETY: `svc 0` enters the kernel with the number in x8 and arguments in
    // x0-x5; the kernel validates any addresses.  x0 carries the result.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a => ret,
            in("x1") b, in("x2") c, in("x3") d, in("x4") e, in("x5") f,
            options(nostack),
        );
    }
    ret as c_long
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
pub(crate) fn raw6(n: i64, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> c_long {
    // SAFETY: libc's `syscall` passes integers to the kernel; `errno` is read
    // and restored through libc's own thread-local accessor.
    unsafe {
        let errp = libc::__errno_location();
        let saved = *errp;
        let r = libc::syscall(n as c_long, a, b, c, d, e, f);
        if r < 0 {
            let e = *errp;
            *errp = saved;
            -(e as c_long)
        } else {
            r
        }
    }
}

/// Keeps the calling thread's `errno` across a scope: read by `save`,
/// written back when dropped.  For the library's slow paths that run std or
/// libc code which may set `errno` (a contended `std::sync::Mutex` or
/// `Once` waits with `futex(2)` through libc, whose EAGAIN/EINTR lands in
/// `errno`; `malloc`), so that every export keeps libaio's contract of
/// leaving `errno` alone.  Not on the plain submit/reap paths, which make
/// only raw system calls.
pub struct ErrnoGuard(c_int);

impl ErrnoGuard {
    #[inline]
    pub fn save() -> ErrnoGuard {
        // SAFETY: `__errno_location` returns this thread's `errno`, always
        // valid to read.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Drop for ErrnoGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as in `save`, for a write of this thread's own `errno`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Syscall results are `long`; libaio's API returns `int`.  The kernel never
/// returns a value outside `int` for these calls (counts are bounded by `nr`,
/// which the kernel clamps to the ring size).
#[inline(always)]
pub fn to_int(r: c_long) -> i32 {
    r as i32
}

/// `io_setup(nr_events, ctxp)`: `nr_events` is `unsigned` in the kernel;
/// libaio passes the `int` sign-extended, and so do we.
pub fn io_setup(nr_events: i32, ctxp: usize) -> c_long {
    raw6(nr::IO_SETUP, nr_events as c_long as usize, ctxp, 0, 0, 0, 0)
}

pub fn io_destroy(ctx: usize) -> c_long {
    raw6(nr::IO_DESTROY, ctx, 0, 0, 0, 0, 0)
}

#[inline(always)]
pub fn io_submit(ctx: usize, nr: c_long, iocbpp: usize) -> c_long {
    raw6(nr::IO_SUBMIT, ctx, nr as usize, iocbpp, 0, 0, 0)
}

pub fn io_cancel(ctx: usize, iocb: usize, result: usize) -> c_long {
    raw6(nr::IO_CANCEL, ctx, iocb, result, 0, 0, 0)
}

#[inline(always)]
pub fn io_getevents(
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: usize,
    timeout: usize,
) -> c_long {
    raw6(
        nr::IO_GETEVENTS,
        ctx,
        min_nr as usize,
        nr as usize,
        events,
        timeout,
        0,
    )
}

/// Whether `ctx` is a live AIO context of this process, as the kernel
/// sees it: `io_submit(ctx, 0, NULL)` returns 0 for one (it submits
/// nothing and reads nothing) and `-EINVAL` otherwise.  Not
/// `io_getevents(ctx, 0, 0, ...)`: that answers `-EINTR` whenever a signal
/// is pending, which would make a live context look dead (measured: 212 ns
/// here, against 353 ns for that call).
pub fn context_is_live(ctx: usize) -> bool {
    io_submit(ctx, 0, 0) == 0
}

pub fn io_pgetevents(
    ctx: usize,
    min_nr: c_long,
    nr: c_long,
    events: usize,
    timeout: usize,
    usig: usize,
) -> c_long {
    raw6(
        nr::IO_PGETEVENTS,
        ctx,
        min_nr as usize,
        nr as usize,
        events,
        timeout,
        usig,
    )
}

/// `fcntl(fd, F_GETFL)`: the file status flags, or `-errno`.
pub fn fcntl_getfl(fd: i32) -> c_long {
    raw6(
        nr::FCNTL,
        fd as c_long as usize,
        libc::F_GETFL as usize,
        0,
        0,
        0,
        0,
    )
}

/// `process_vm_readv`/`process_vm_writev` on process `pid` (always our
/// own): the one way to copy to or from caller memory that the kernel
/// validates (`-EFAULT` instead of a crash).  Our `local` buffers against
/// the caller's `remote` ranges, in order; the kernel's result (bytes
/// transferred, or `-errno`).  Used only off the hot path.
fn process_vm(pid: usize, write: bool, local: &[libc::iovec], remote: &[libc::iovec]) -> c_long {
    let n = if write {
        libc::SYS_process_vm_writev
    } else {
        libc::SYS_process_vm_readv
    };
    raw6(
        n as i64,
        pid,
        local.as_ptr() as usize,
        local.len(),
        remote.as_ptr() as usize,
        remote.len(),
        0,
    )
}

/// [`process_vm`] of one range of `len` (> 0) bytes, for this process (its
/// pid read now: see [`SelfMem`]).  Returns 0 if all of it was copied,
/// `-EFAULT` if not, or another `-errno` where the kernel forbids the call
/// (e.g. a seccomp filter).
fn copy_one(write: bool, local: *mut u8, remote: usize, len: usize) -> c_long {
    let liov = libc::iovec {
        iov_base: local.cast(),
        iov_len: len,
    };
    let riov = libc::iovec {
        iov_base: remote as *mut _,
        iov_len: len,
    };
    match process_vm(SelfMem::new().pid, write, &[liov], &[riov]) {
        r if r == len as c_long => 0,
        r if r >= 0 => -(libc::EFAULT as c_long),
        r => r,
    }
}

/// Copy `dst.len()` bytes from caller address `src` into `dst`, with the
/// kernel checking `src`.  Returns 0 or `-EFAULT` (or another `-errno` where
/// the kernel forbids the call, e.g. a seccomp filter).
pub fn copy_from_user(dst: &mut [u8], src: usize) -> c_long {
    if dst.is_empty() {
        return 0;
    }
    copy_one(false, dst.as_mut_ptr(), src, dst.len())
}

/// The page granularity assumed for proofs: the smallest page size of any
/// Linux target, so a proof never covers more than the kernel touched, and
/// probing one byte every this many bytes touches every page at least
/// once, whatever the real page size.
pub(crate) const PAGE: usize = 4096;

/// Remote iovecs per `process_vm_readv` of [`probe_readable`] (`IOV_MAX`).
const PROBE_BATCH: usize = 1024;

/// `madvise(MADV_POPULATE_READ)` (Linux 5.14), the same on every
/// architecture: fault in page tables readable, as if each page were read,
/// without reading them.
const MADV_POPULATE_READ: usize = 22;

/// At most this many ranges are tried with `MADV_POPULATE_READ` (one
/// system call each) before falling back to one `process_vm_readv` probe.
const POPULATE_MAX_RANGES: usize = 4;

/// `madvise(MADV_POPULATE_WRITE)` (Linux 5.14): fault in page tables
/// writable, as if each page were written, without writing.
const MADV_POPULATE_WRITE: usize = 23;

/// Whether `MADV_POPULATE_READ` succeeds on the pages of `v`: then every
/// byte of it is mapped readable (its pages were faulted in as for a read).
/// Any failure (unreadable, unmapped, a kernel without it, a page size
/// other than 4 KiB...) answers `false`, and the caller asks the
/// authoritative probe.
fn populate_read(v: &libc::iovec) -> bool {
    populate(v, MADV_POPULATE_READ)
}

/// Whether `MADV_POPULATE_WRITE` succeeds on the pages of `v`: then every
/// byte of it is mapped writable (faulted in as for a write: a private
/// mapping's pages are copied, as a real write would).  `false` for any
/// failure, as for `populate_read`.
pub fn populate_write(v: &libc::iovec) -> bool {
    populate(v, MADV_POPULATE_WRITE)
}

/// Size of the kernel's `sigset_t`, which `rt_sigprocmask(2)` stores
/// whole: the width of each store of [`store_writable`].
const SIGSET_BYTES: usize = 8;

/// Ranges over this many 4 KiB pages are proven by `MADV_POPULATE_WRITE`
/// in [`store_writable`] (one call for all pages) rather than by a store
/// per page.
const STORE_MAX_PAGES: usize = 2;

/// Whether the kernel can store into every page of `v`, for a caller that
/// is about to overwrite all of `v` anyway (a read's PI buffer at reap):
/// `rt_sigprocmask(2)` stores this thread's signal mask (8 bytes, kept
/// inside `v`) on each 4 KiB page `v` touches, and answers `-EFAULT` where
/// it cannot, exactly where a store of ours would fault (unmapped, not
/// writable, a protection key, a file hole past EOF).  Page protections
/// are per page, so one store proves the page.  Measured: ~0.22 us for a
/// page against ~0.62 us for `MADV_POPULATE_WRITE`, which walks the page
/// tables for a write fault; a QD1 stream of 64 KiB PI reads on an
/// `O_DIRECT` tmpfs file spent ~0.7 us less per read (4.19 against 4.90
/// us over plain, medians of five alternating pairs).
/// `v`'s bytes are unspecified afterwards.  Ranges shorter than one store
/// or over [`STORE_MAX_PAGES`] pages, and every range under valgrind
/// (which emulates the call and would write the mask itself, unchecked),
/// take `MADV_POPULATE_WRITE` ([`populate_write`]) instead.
pub fn store_writable(v: &libc::iovec) -> bool {
    let Some((start, end)) =
        few_pages(v).filter(|_| v.iov_len >= SIGSET_BYTES && !crate::valgrind::running())
    else {
        return populate_write(v);
    };
    // One store per page, each inside `v`: on the first page at `start`,
    // on each later page at its first byte, or, where fewer than 8 bytes
    // of `v` are left from there, at `end - 8` (still on that page, since
    // `end` is past its start, and still inside `v`, at least 8 long).
    pages_of(start, end).all(|page| {
        let at = start.max(page).min(end - SIGSET_BYTES);
        // how = 0 with a NULL new set: nothing changes, the current mask
        // is stored at `at`.
        raw6(
            libc::SYS_rt_sigprocmask as i64,
            0,
            0,
            at,
            SIGSET_BYTES,
            0,
            0,
        ) == 0
    })
}

/// `[start, end)` of `v` where one system call a page proves it: at most
/// [`STORE_MAX_PAGES`] 4 KiB pages.  `None` for more, and for a range
/// that wraps the address space; both go to [`populate_write`], which
/// answers `false` for the latter without a system call.
fn few_pages(v: &libc::iovec) -> Option<(usize, usize)> {
    let start = v.iov_base as usize;
    let end = start.checked_add(v.iov_len)?;
    (end - (start & !(PAGE - 1)) <= STORE_MAX_PAGES * PAGE).then_some((start, end))
}

/// The start of each 4 KiB page `[start, end)` touches (`start < end`).
fn pages_of(start: usize, end: usize) -> impl Iterator<Item = usize> {
    ((start & !(PAGE - 1))..end).step_by(PAGE)
}

/// `rt_sigprocmask(2)` with an invalid `how` (-1) and the new set at `at`:
/// the kernel copies the 8-byte set in (fault-checked) before it looks at
/// `how`, then changes nothing.  `-EINVAL` if it could read `[at, at + 8)`,
/// `-EFAULT` if not.
fn load_8(at: usize) -> c_long {
    raw6(
        libc::SYS_rt_sigprocmask as i64,
        usize::MAX,
        at,
        0,
        SIGSET_BYTES,
        0,
        0,
    )
}

/// The answer of `ask` (whether a proof's system call answers as
/// documented on this kernel), asked once and kept in `cell` (0: not asked
/// yet, 1: yes, 2: no), and `false` under valgrind (which emulates these
/// calls).  Relaxed: threads racing to ask get the same answer and store
/// the same value.
pub(crate) fn answers_once(cell: &AtomicU8, ask: fn() -> bool) -> bool {
    if crate::valgrind::running() {
        return false;
    }
    match cell.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = ask();
            cell.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}

/// Whether [`load_8`] answers as documented: a kernel address must give
/// `-EFAULT`, a word of ours `-EINVAL` (a kernel that looked at `how`
/// first, or a seccomp filter, would fail that).
fn loads_answer() -> bool {
    static ANSWER: AtomicU8 = AtomicU8::new(0);
    answers_once(&ANSWER, || {
        let word = 0u64;
        load_8(usize::MAX & !(PAGE - 1)) == -(libc::EFAULT as c_long)
            && load_8(core::ptr::addr_of!(word) as usize) == -(libc::EINVAL as c_long)
    })
}

/// Whether the kernel can read the 4 KiB page of `at`, proven without
/// copying: it reads 8 bytes of that page from `at` on (or the page's
/// last 8 bytes, if fewer are left), with a system call that changes
/// nothing ([`load_8`]).  Protection is per page, so that proves the page.
/// `None` where the call cannot answer (see [`loads_answer`], and any
/// answer but the two expected): ask the authoritative probes then.
/// Measured after the sleep of a QD1 O_DIRECT I/O (TSC medians, a 64 KiB
/// write's 16 data pages and its tuples' page, one call each): ~5,400
/// cycles against ~7,200 for one `process_vm_writev` of a byte per page
/// and the tuples (both after prefetching the pages).
pub fn page_readable(at: usize) -> Option<bool> {
    if !loads_answer() {
        return None;
    }
    // The page's last 8 bytes start here (no overflow at the top page).
    let last = (at | (PAGE - 1)) - (SIGSET_BYTES - 1);
    match load_8(at.min(last)) {
        e if e == -(libc::EINVAL as c_long) => Some(true),
        e if e == -(libc::EFAULT as c_long) => Some(false),
        _ => None,
    }
}

/// `FUTEX_WAKE_OP` of [`touch_writable`] on the aligned word at `word`:
/// `-ENOSYS` once the kernel has ORed 0 into it, `-EFAULT` if it could not.
fn or_zero(word: usize) -> c_long {
    /// FUTEX_OP(FUTEX_OP_OR, 0, cmp = 15 (no such comparison), 0).
    const OR_ZERO_THEN_ENOSYS: usize = (2 << 28) | (15 << 24);
    futex_wake_op(word, OR_ZERO_THEN_ENOSYS)
}

/// `FUTEX_WAKE_OP` with operation `op` on the caller's word at `word`.
fn futex_wake_op(word: usize, op: usize) -> c_long {
    /// A word of ours no thread waits on: the operation's first address
    /// (it wakes up to one waiter there, of which there are none).
    static NO_WAITERS: AtomicU32 = AtomicU32::new(0);
    raw6(
        libc::SYS_futex as i64,
        NO_WAITERS.as_ptr() as usize,
        (libc::FUTEX_WAKE_OP | libc::FUTEX_PRIVATE_FLAG) as usize,
        0,
        0,
        word,
        op,
    )
}

/// Store 0 into the caller's aligned 32-bit word at `word` through the
/// kernel, as its own `put_user(0, &iocb->aio_key)` does for each iocb it
/// takes: `FUTEX_WAKE_OP` with `FUTEX_OP_SET` 0 and the same invalid
/// comparison as [`or_zero`] (the kernel stores with a fault-checked
/// atomic, then answers `-ENOSYS` and wakes nobody).  `Some(true)` if it
/// stored, `Some(false)` if the word cannot be stored into (`-EFAULT`),
/// `None` where the call does not answer as documented ([`stores_answer`],
/// valgrind, a misaligned word, a seccomp filter): ask a kernel-checked
/// copy.  One small system call and no pinning, against a
/// `process_vm_writev` (and the `getpid` it needs) for a run's keys.
pub fn store_zero_u32(word: usize) -> Option<bool> {
    /// FUTEX_OP(FUTEX_OP_SET, 0, cmp = 15 (no such comparison), 0).
    const SET_ZERO_THEN_ENOSYS: usize = 15 << 24;
    if !word.is_multiple_of(4) || !stores_answer() {
        return None;
    }
    match futex_wake_op(word, SET_ZERO_THEN_ENOSYS) {
        e if e == -(libc::ENOSYS as c_long) => Some(true),
        e if e == -(libc::EFAULT as c_long) => Some(false),
        _ => None,
    }
}

/// Whether [`or_zero`] answers as documented: a word of ours `-ENOSYS`
/// (done), a word in read-only memory `-EFAULT` (a kernel that looked at
/// the comparison before the operation would answer `-ENOSYS` there).
fn stores_answer() -> bool {
    static ANSWER: AtomicU8 = AtomicU8::new(0);
    /// Immutable, so in a read-only mapping.
    static READ_ONLY: u32 = 0;
    answers_once(&ANSWER, || {
        let word = AtomicU32::new(0);
        or_zero(word.as_ptr() as usize) == -(libc::ENOSYS as c_long)
            && or_zero(core::ptr::addr_of!(READ_ONLY) as usize) == -(libc::EFAULT as c_long)
    })
}

/// Whether every page of `v` is writable, proven without changing a byte:
/// for each 4 KiB page, `FUTEX_WAKE_OP` has the kernel atomically OR 0
/// into the aligned word holding `v`'s first byte on that page (the
/// same page: pages are word-aligned), as a store would, faulting it in
/// for writing (a private mapping's page is copied, as a real store
/// would).  The comparison code is invalid on purpose: the kernel does the
/// operation, then answers `-ENOSYS` and wakes nobody (a valid one could
/// wake a waiter on the caller's word); a page it cannot store into gives
/// `-EFAULT`.  Measured on the QD1 PI read stream's submit (one page, TSC,
/// median after the sleep of the previous read): ~1,560 cycles against
/// ~2,960 for `MADV_POPULATE_WRITE`.  Ranges over [`STORE_MAX_PAGES`]
/// pages, every range where the call does not answer as documented (see
/// [`stores_answer`]) and under valgrind take `MADV_POPULATE_WRITE`; so
/// does anything but `-ENOSYS` or `-EFAULT` (a seccomp filter).
pub fn touch_writable(v: &libc::iovec) -> bool {
    if v.iov_len == 0 {
        return true;
    }
    let Some((start, end)) = few_pages(v).filter(|_| stores_answer()) else {
        return populate_write(v);
    };
    for page in pages_of(start, end) {
        match or_zero(start.max(page) & !3) {
            e if e == -(libc::ENOSYS as c_long) => {}
            e if e == -(libc::EFAULT as c_long) => return false,
            _ => return populate_write(v),
        }
    }
    true
}

fn populate(v: &libc::iovec, advice: usize) -> bool {
    let start = v.iov_base as usize & !(PAGE - 1);
    let Some(end) = (v.iov_base as usize).checked_add(v.iov_len) else {
        return false;
    };
    v.iov_len == 0
        || raw6(
            libc::SYS_madvise as i64,
            start,
            end - start,
            advice,
            0,
            0,
            0,
        ) == 0
}

/// Prove that every byte of the caller's ranges `ranges` is readable now,
/// without copying them.  A few ranges: `MADV_POPULATE_READ` on each (one
/// page-table walk, no copy, no pinning).  Otherwise, or if that fails for
/// any reason, the answer is the kernel's reading of one byte of every page
/// they touch (the first byte of each range, then each following page
/// boundary) into a small scratch buffer.  Returns 0 or `-EFAULT` (also for
/// a range that wraps the address space; or another `-errno` where the
/// kernel forbids the call).
pub fn probe_readable(ranges: &[libc::iovec]) -> c_long {
    #[cfg(test)]
    PROBES.with(|n| n.set(n.get() + 1));
    // Fast path (measured: cheaper than pinning one page per iovec below).
    if ranges.len() <= POPULATE_MAX_RANGES && ranges.iter().all(populate_read) {
        return 0;
    }
    probe_by_reading(ranges)
}

#[cfg(test)]
thread_local! {
    /// Tests: how many times this thread called [`probe_readable`].
    static PROBES: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Tests: how many times this thread has called [`probe_readable`].
#[cfg(test)]
pub(crate) fn probes() -> usize {
    PROBES.with(|n| n.get())
}

/// The authoritative probe of [`probe_readable`]: the kernel reads one byte
/// of every page, `PROBE_BATCH` pages per `process_vm_readv`.
fn probe_by_reading(ranges: &[libc::iovec]) -> c_long {
    let mut scratch = [0u8; PROBE_BATCH];
    let mut remote: Vec<libc::iovec> = Vec::with_capacity(PROBE_BATCH);
    let mem = SelfMem::new();
    let mut flush = |remote: &mut Vec<libc::iovec>| -> c_long {
        let local = [libc::iovec {
            iov_base: scratch.as_mut_ptr().cast(),
            iov_len: remote.len(),
        }];
        let all = mem.transfer(false, &local, remote) == remote.len();
        remote.clear();
        if all {
            0
        } else {
            -(libc::EFAULT as c_long)
        }
    };
    for v in ranges.iter().filter(|v| v.iov_len > 0) {
        let start = v.iov_base as usize;
        let Some(end) = start.checked_add(v.iov_len) else {
            return -(libc::EFAULT as c_long);
        };
        let mut at = start;
        while at < end {
            remote.push(libc::iovec {
                iov_base: at as *mut _,
                iov_len: 1,
            });
            if remote.len() == PROBE_BATCH {
                let r = flush(&mut remote);
                if r != 0 {
                    return r;
                }
            }
            // The next page boundary (checked: `at` may be in the last page).
            match (at & !(PAGE - 1)).checked_add(PAGE) {
                Some(next) => at = next,
                None => break,
            }
        }
    }
    flush(&mut remote)
}

/// Copy `src` to caller address `dst`, with the kernel checking `dst`.
pub fn copy_to_user(dst: usize, src: &[u8]) -> c_long {
    if src.is_empty() {
        return 0;
    }
    copy_one(true, src.as_ptr() as *mut u8, dst, src.len())
}

/// Our own process as seen by `process_vm_readv`/`process_vm_writev`, for a
/// run of kernel-checked transfers that each cover many caller ranges at
/// once (the PI slow path validates a whole batch of iocbs this way).
///
/// The pid is read once per value: glibc no longer caches `getpid()`, so
/// each call is a system call, and a process-wide cache would go stale in a
/// child forked by any means that skips `pthread_atfork` (a stale pid would
/// name another process).  Keep a `SelfMem` for one library call only.
pub struct SelfMem {
    pid: usize,
}

/// `IOV_MAX`: the most iovecs on either side of one `process_vm_*` call.
pub(crate) const VM_IOV_MAX: usize = 1024;

impl SelfMem {
    pub fn new() -> SelfMem {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        SelfMem { pid: pid as usize }
    }

    /// One `process_vm_*` call: our `local` buffers (in order) against the
    /// caller's `remote` ranges (in order), equal total lengths.  Returns how
    /// many of the `remote` ranges were transferred completely: all of them,
    /// or the ones before the first byte the kernel could not transfer
    /// (unmapped, not readable/writable).  A call the kernel refuses
    /// outright (`-EFAULT` on the first byte, a seccomp filter...) counts as
    /// none.
    fn transfer(&self, write: bool, local: &[libc::iovec], remote: &[libc::iovec]) -> usize {
        let want: usize = remote.iter().map(|v| v.iov_len).sum();
        if want != local.iter().map(|v| v.iov_len).sum::<usize>() {
            return 0;
        }
        if want == 0 {
            return remote.len();
        }
        if local.len() > VM_IOV_MAX || remote.len() > VM_IOV_MAX {
            // Not needed by our callers (at most `VM_IOV_MAX` ranges each);
            // refuse rather than split.
            return 0;
        }
        let r = process_vm(self.pid, write, local, remote);
        if r < 0 {
            return 0;
        }
        // The kernel transfers the ranges in order and stops at the first
        // failure: the complete ones are the prefix that fits in `r`.
        let mut left = r as usize;
        remote
            .iter()
            .take_while(|v| {
                let done = v.iov_len <= left;
                if done {
                    left -= v.iov_len;
                }
                done
            })
            .count()
    }

    /// Copy the caller's `from` ranges, in order, into our `into` buffers,
    /// in order (equal totals, at most `VM_IOV_MAX` of each), with
    /// `process_vm_writev(2)` on our own process: the kernel reads `from`
    /// in this process with its fault-checked user copy (an unreadable
    /// byte is `-EFAULT`, never a fault of ours) and pins only `into`.
    /// `process_vm_readv` pins the caller's pages instead, and
    /// `MADV_POPULATE_READ` walks them for a fault: for caller memory over
    /// many pages this direction is the cheap one.  Measured here, hot: one
    /// byte of each of 16 pages ~1.6 us (~1.1 us for the call, ~0.03 per
    /// page), against ~2.5 us for `MADV_POPULATE_READ` of the 16 pages
    /// (~0.5 us + ~0.12 per page).  Whether every byte was copied; `false`
    /// for anything else (a partial copy, a seccomp filter refusing the
    /// call, mismatched lengths).
    pub fn gather(&self, from: &[libc::iovec], into: &[libc::iovec]) -> bool {
        let want: usize = from.iter().map(|v| v.iov_len).sum();
        if want != into.iter().map(|v| v.iov_len).sum::<usize>()
            || from.len() > VM_IOV_MAX
            || into.len() > VM_IOV_MAX
        {
            return false;
        }
        want == 0 || process_vm(self.pid, true, from, into) == want as c_long
    }

    /// Copy the caller's `remote` ranges into our `local` buffers (see
    /// `SelfMem::transfer`); returns how many ranges were copied whole.
    pub fn read_ranges(&self, local: &mut [&mut [u8]], remote: &[libc::iovec]) -> usize {
        let l: Vec<libc::iovec> = local
            .iter_mut()
            .filter(|b| !b.is_empty())
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        self.transfer(false, &l, remote)
    }

    /// Copy our `local` bytes to the caller's `remote` ranges, in order
    /// (`local.len()` = their total); returns how many ranges were written
    /// whole (the kernel checks each).
    pub fn write_ranges(&self, local: &[u8], remote: &[libc::iovec]) -> usize {
        let l = [libc::iovec {
            iov_base: local.as_ptr() as *mut _,
            iov_len: local.len(),
        }];
        self.transfer(true, &l, remote)
    }

    /// Write zeros over all of the caller's `remote` (kernel-checked), up
    /// to 256 KiB a system call from one static page of zeros: no block of
    /// its size.  Whether all of it was written (a range that fails part
    /// way keeps the zeros written before).
    pub fn write_zeros(&self, remote: libc::iovec) -> bool {
        static ZERO_PAGE: [u8; PAGE] = [0; PAGE];
        const PAGES: usize = 64;
        let page = libc::iovec {
            iov_base: ZERO_PAGE.as_ptr() as *mut _,
            iov_len: PAGE,
        };
        let mut local = [page; PAGES];
        let mut done = 0;
        while done < remote.iov_len {
            let len = (remote.iov_len - done).min(PAGES * PAGE);
            let pages = len.div_ceil(PAGE);
            local[pages - 1].iov_len = len - (pages - 1) * PAGE;
            let piece = libc::iovec {
                iov_base: (remote.iov_base as usize + done) as *mut _,
                iov_len: len,
            };
            let whole = self.transfer(true, &local[..pages], &[piece]) == 1;
            local[pages - 1].iov_len = PAGE;
            if !whole {
                return false;
            }
            done += len;
        }
        true
    }
}

impl Default for SelfMem {
    fn default() -> Self {
        Self::new()
    }
}

/// Lowest address we accept as user memory without asking the kernel:
/// Linux never maps below `vm.mmap_min_addr` (64 KiB by default, and 4 KiB
/// at the very least) for unprivileged programs.
const USER_MIN: usize = 4096;

/// Highest user-space address + 1 (the kernel's `TASK_SIZE`, with room for
/// 5-level paging on x86_64 and 52-bit VAs on aarch64).
#[cfg(target_pointer_width = "64")]
const USER_END: usize = 1 << 56;
#[cfg(target_pointer_width = "32")]
const USER_END: usize = 0xC000_0000;

/// Whether `[addr, addr + len)` can be user memory at all.  This is the
/// kernel's `access_ok()`, plus "not in the never-mapped first page": it
/// rejects NULL, small integers and kernel addresses without a system call.
/// It cannot know whether the range is mapped; callers only dereference
/// ranges that passed this check where libaio itself dereferences them.
#[inline(always)]
pub fn plausible_user_range(addr: usize, len: usize) -> bool {
    (USER_MIN..USER_END).contains(&addr) && len <= USER_END - addr
}

/// The kernel's own checks of one iovec of an array it imports
/// (`copy_iovec_from_user` and `__import_iovec`, for every vectored read
/// and write), without a system call: 0, `-EINVAL` for a length negative
/// as `ssize_t`, `-EFAULT` for a range the running kernel's `access_ok()`
/// refuses ([`kernel_user_end`]).  Unlike
/// [`plausible_user_range`], no lower bound: the kernel imports `{NULL, 0}`
/// (an empty iovec as often written) and an iovec in the first page, and
/// fails only their use.  Nothing is read or written.
pub fn iovec_import_error(v: &libc::iovec) -> i32 {
    if (v.iov_len as isize) < 0 {
        -libc::EINVAL
    } else if (v.iov_base as usize)
        .checked_add(v.iov_len)
        .is_some_and(|end| end <= kernel_user_end())
    {
        0
    } else {
        -libc::EFAULT
    }
}

/// Where the running kernel's user space ends for `access_ok()`: a range
/// `[p, e)` passes it iff `e <= kernel_user_end()` (x86_64: 2^47 - 4096
/// with 4-level page tables, 2^56 - 4096 with 5-level; arm64: 2^48 or
/// 2^52).  Asked of the kernel once per process: [`USER_END`] (the
/// largest of them) was too generous on most machines, accepting a PI
/// iovec the kernel answers `-EFAULT` for.  Where the kernel cannot be
/// asked, [`USER_END`].
pub fn kernel_user_end() -> usize {
    /// 0 = not asked yet; a race between first callers asks twice.
    static END: AtomicUsize = AtomicUsize::new(0);
    match END.load(Ordering::Relaxed) {
        0 => {
            let end = ask_user_end().unwrap_or(USER_END);
            END.store(end, Ordering::Relaxed);
            end
        }
        end => end,
    }
}

/// The first address `access_ok(p, 1)` refuses, by bisection (~45
/// system calls, once): `process_vm_readv` of this process with the local
/// iovec `{p, 1}` and a remote one of 0 bytes checks the local range with
/// `access_ok()` (`-EFAULT`) and then copies nothing.  `None` where it
/// cannot answer (a seccomp filter, valgrind, which would report the
/// probes as bad buffers) or answers out of bounds.
fn ask_user_end() -> Option<usize> {
    if crate::valgrind::running() {
        return None;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as usize;
    let remote = libc::iovec {
        iov_base: core::ptr::null_mut(),
        iov_len: 0,
    };
    let passes = |p: usize| {
        let local = libc::iovec {
            iov_base: p as *mut core::ffi::c_void,
            iov_len: 1,
        };
        match process_vm(
            pid,
            false,
            core::slice::from_ref(&local),
            core::slice::from_ref(&remote),
        ) {
            0 => Some(true),
            r if r == -(libc::EFAULT as c_long) => Some(false),
            _ => None,
        }
    };
    // Invariant: `lo` passes, `hi` does not.
    let (mut lo, mut hi) = (USER_MIN, USER_END);
    if !passes(lo)? || passes(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if passes(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// Store `val` at caller address `dst`, with the kernel checking `dst`
/// (`-EFAULT` rather than a crash).  Where the kernel refuses
/// `process_vm_writev` itself (a seccomp filter), fall back to a plain store
/// if `dst` can be user memory, which is what libaio does unconditionally.
// The fallback store trusts the caller exactly as libaio's `io_queue_init`
// does (`*ctxp = NULL`); it is reached only where the kernel refuses to check.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn write_user<T: Copy>(dst: *mut T, val: T) -> Result<(), i32> {
    let size = core::mem::size_of::<T>();
    // SAFETY: viewing a `Copy` value's bytes.
    let bytes = unsafe { core::slice::from_raw_parts(&val as *const T as *const u8, size) };
    match copy_to_user(dst as usize, bytes) {
        0 => Ok(()),
        r if r == -(libc::EFAULT as c_long) => Err(-libc::EFAULT),
        _ if plausible_user_range(dst as usize, size) => {
            // SAFETY: a user-space address the caller handed us to write a
            // `T` to; the kernel could not check it for us.
            unsafe { core::ptr::write_unaligned(dst, val) };
            Ok(())
        }
        _ => Err(-libc::EFAULT),
    }
}

/// Tests that unmap pages to make holes, or map memory that could fill
/// another test's hole, hold this while they run (unit tests run on
/// parallel threads of one process): a hole filled by another thread's
/// `mmap` would read as mapped.
#[cfg(test)]
pub(crate) fn layout_lock() -> std::sync::MutexGuard<'static, ()> {
    static LAYOUT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LAYOUT.lock().unwrap_or_else(|e| e.into_inner());
    // The library's own lazily made mapping (the page of `vma`'s state)
    // must exist before a test makes a hole, or it would fill it.
    crate::vma::prepare();
    guard
}

/// Tests: the range of `len` bytes at `addr`.
#[cfg(test)]
pub(crate) fn iov(addr: usize, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: addr as *mut _,
        iov_len: len,
    }
}

/// A fresh anonymous mapping of `len` bytes chosen by the kernel, with
/// protection `prot` and `MAP_ANONYMOUS` plus `flags` (`MAP_PRIVATE` or
/// `MAP_SHARED`), as an address; `None` if the kernel refuses.
pub(crate) fn map_anon(len: usize, prot: i32, flags: i32) -> Option<usize> {
    // SAFETY: a new mapping chosen by the kernel; no existing memory is
    // touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            prot,
            flags | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// A new private, readable and writable page marked `MADV_WIPEONFORK`
/// (Linux 4.14+): zero-filled, and zero again in every child created
/// without `CLONE_VM`, however it was made.  Never unmapped by its users,
/// so any reference into it lives for the process.  `None` where the
/// kernel cannot give one (then a child could not be told apart by it).
pub(crate) fn wipe_on_fork_page() -> Option<usize> {
    /// `MADV_WIPEONFORK`.
    const MADV_WIPEONFORK: usize = 18;
    let p = map_anon(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE)?;
    if raw6(libc::SYS_madvise, p, PAGE, MADV_WIPEONFORK, 0, 0, 0) != 0 {
        // SAFETY: our own new mapping, never published.
        unsafe { libc::munmap(p as *mut libc::c_void, PAGE) };
        return None;
    }
    Some(p)
}

/// Tests: a fresh private anonymous mapping of `len` bytes with protection
/// `prot`, as an address (the caller unmaps it, or leaves it to the end of
/// the test process).
#[cfg(test)]
pub(crate) fn anon_map(len: usize, prot: i32) -> usize {
    map_anon(len, prot, libc::MAP_PRIVATE).expect("mmap of a private anonymous mapping")
}

/// Tests: [`anon_map`], shared (`MAP_SHARED | MAP_ANONYMOUS`).
#[cfg(test)]
pub(crate) fn shared_anon_map(len: usize, prot: i32) -> usize {
    map_anon(len, prot, libc::MAP_SHARED).expect("mmap of a shared anonymous mapping")
}

/// Tests: [`anon_map`] between two `PROT_NONE` pages of its own, so that
/// the kernel cannot merge it with a neighbouring mapping (another test's,
/// or an allocator's) that has the same protection: a test that checks
/// where a mapping ends sees its own end.  Unmap with [`fenced_unmap`].
#[cfg(test)]
pub(crate) fn fenced_map(len: usize, prot: i32) -> usize {
    let outer = anon_map(len + 2 * FENCE, libc::PROT_NONE);
    // SAFETY: the inside of our own fresh mapping.
    let r = unsafe { libc::mprotect((outer + FENCE) as *mut _, len, prot) };
    assert_eq!(r, 0, "mprotect of a fenced mapping");
    outer + FENCE
}

/// The size of each `PROT_NONE` fence of a [`fenced_map`]: one page.
#[cfg(test)]
const FENCE: usize = 4096;

/// Tests: unmap a [`fenced_map`] of `len` bytes at `addr`, fences too.
#[cfg(test)]
pub(crate) fn fenced_unmap(addr: usize, len: usize) {
    // SAFETY: a fenced mapping of ours, as made by `fenced_map`.
    unsafe { libc::munmap((addr - FENCE) as *mut _, len + 2 * FENCE) };
}

#[cfg(test)]
mod tests {
    use super::iov as r;
    use super::*;

    /// `write_zeros` zeroes all of a range over several system calls (256
    /// KiB each) and nothing past it; a range running into an unmapped
    /// page is `false`, with the pieces before the failing one zeroed.
    #[test]
    fn write_zeros_zeroes_in_pieces_and_stops_at_a_hole() {
        let _layout = layout_lock();
        const PG: usize = 4096;
        let len = 70 * PG;
        let m = fenced_map(len, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: our own fresh mapping.
        let bytes = unsafe { core::slice::from_raw_parts_mut(m as *mut u8, len) };
        bytes.fill(0xEE);
        let mem = SelfMem::new();
        // 65 pages and 100 bytes from an unaligned start: two calls.
        let (from, n) = (m + 10, 65 * PG + 100);
        assert!(mem.write_zeros(r(from, n)));
        assert!(bytes[10..10 + n].iter().all(|&b| b == 0));
        assert!(bytes[..10]
            .iter()
            .chain(&bytes[10 + n..])
            .all(|&b| b == 0xEE));
        assert!(mem.write_zeros(r(m, 0)), "nothing to write");
        // Into the fence after the mapping: the first piece (64 pages)
        // is written, the second fails where the mapping ends (the kernel
        // has written the bytes before).
        bytes.fill(0xEE);
        assert!(!mem.write_zeros(r(m + 2 * PG, len)));
        assert!(bytes[..2 * PG].iter().all(|&b| b == 0xEE));
        assert!(bytes[2 * PG..].iter().all(|&b| b == 0));
        fenced_unmap(m, len);
    }

    /// The kernel's `access_ok()` limit as asked: a range ending there
    /// passes the kernel's own import of a `preadv` iovec and one byte more
    /// fails it (the PI iovec's check must answer as the kernel does for
    /// the data iovecs).
    #[test]
    fn user_end_is_where_the_kernel_says() {
        let end = kernel_user_end();
        assert!(end > USER_MIN && end <= USER_END, "{end:#x}");
        #[cfg(target_arch = "x86_64")]
        assert!(
            end == (1 << 47) - 4096 || end == (1 << 56) - 4096,
            "{end:#x}"
        );
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let mut byte = [0u8; 1];
        let first = byte.as_mut_ptr();
        // A read of the file's last byte into `byte`, with a second iovec
        // of one page ending at `len_to`: the kernel checks both with
        // `access_ok()` when it imports them, and the second is never
        // reached (the one byte fills the first).
        let at = |len_to: usize| {
            let iov = [
                libc::iovec {
                    iov_base: first.cast(),
                    iov_len: 1,
                },
                libc::iovec {
                    iov_base: (len_to - 4096) as *mut _,
                    iov_len: 4096,
                },
            ];
            let size = f.metadata().unwrap().len() as i64;
            // SAFETY: the kernel checks both ranges; at offset (size - 1)
            // it writes only the one byte of `byte`.
            unsafe { libc::preadv(fd, iov.as_ptr(), 2, size - 1) }
        };
        assert_eq!(at(end), 1, "a range ending at {end:#x}");
        assert_eq!(at(end + 1), -1, "a range ending past {end:#x}");
        let bad = libc::iovec {
            iov_base: (end - 4096) as *mut _,
            iov_len: 4097,
        };
        assert_eq!(iovec_import_error(&bad), -libc::EFAULT);
        let good = libc::iovec {
            iov_base: (end - 4096) as *mut _,
            iov_len: 4096,
        };
        assert_eq!(iovec_import_error(&good), 0);
    }

    #[test]
    fn errors_come_back_negative_and_errno_is_untouched() {
        // SAFETY: writing our own thread's errno.
        unsafe { *libc::__errno_location() = 1234 };
        assert_eq!(io_destroy(0), -(libc::EINVAL as c_long));
        assert_eq!(io_submit(usize::MAX, 1, 0), -(libc::EINVAL as c_long));
        // SAFETY: reading our own thread's errno.
        assert_eq!(unsafe { *libc::__errno_location() }, 1234);
    }

    #[test]
    fn probing_finds_unreadable_pages_without_copying() {
        let _layout = layout_lock();
        const PG: usize = 4096;
        // Five pages; the middle one made PROT_NONE, the last unmapped.
        let b = anon_map(5 * PG, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: our own mapping's pages 2 and 4.
        unsafe {
            assert_eq!(
                libc::mprotect((b + 2 * PG) as *mut _, PG, libc::PROT_NONE),
                0
            );
            assert_eq!(libc::munmap((b + 4 * PG) as *mut _, PG), 0);
        }
        let efault = -(libc::EFAULT as c_long);
        // Both probes, and the dispatcher, must give the same answers.
        for probe in [probe_readable, probe_by_reading] {
            probe_pages(probe, b);
        }
        // The fast path works here (else every probe would silently take
        // the slow one) and refuses what it cannot vouch for.
        assert!(populate_read(&r(b + 100, 2 * PG - 100)));
        assert!(!populate_read(&r(b + PG, PG + 1)));
        assert!(!populate_read(&r(b + 4 * PG, 1)));
        // A shared file mapping past the end of its file (a read there is
        // SIGBUS): refused by both probes.
        let path = std::env::temp_dir().join(format!("probe-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(PG as u64).unwrap();
        // SAFETY: a fresh shared mapping of our own file, unmapped below.
        let fm = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                2 * PG,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        assert_ne!(fm, libc::MAP_FAILED);
        let fm = fm as usize;
        for probe in [probe_readable, probe_by_reading] {
            assert_eq!(probe(&[r(fm, PG)]), 0, "inside the file");
            assert_eq!(probe(&[r(fm, PG + 1)]), efault, "past its end");
        }
        // SAFETY: our own mapping.
        unsafe { libc::munmap(fm as *mut _, 2 * PG) };
        drop(f);
        std::fs::remove_file(&path).unwrap();
        // Five ranges: past the fast path's limit.
        let five = [r(b, 1), r(b + 1, 1), r(b + 2, 1), r(b + 3, 1), r(b + 4, 1)];
        assert_eq!(probe_readable(&five), 0);
        let five_bad = [
            r(b, 1),
            r(b + 1, 1),
            r(b + 2, 1),
            r(b + 3, 1),
            r(b + 2 * PG, 1),
        ];
        assert_eq!(probe_readable(&five_bad), efault);
        big_probe(probe_readable);
        big_probe(probe_by_reading);
        // SAFETY: unmapping our own mapping (page 4 is gone already).
        unsafe { libc::munmap(b as *mut _, 4 * PG) };
    }

    #[test]
    fn store_proofs_stay_inside_the_range_and_stop_where_a_store_would_fault() {
        let _layout = layout_lock();
        const PG: usize = 4096;
        // Pages 0-2 writable, 3 read-only, 4 PROT_NONE, 5 unmapped.
        let b = anon_map(6 * PG, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: our own mapping: filled, then pages 3-5 changed.
        unsafe {
            core::ptr::write_bytes(b as *mut u8, 0xAB, 4 * PG);
            assert_eq!(
                libc::mprotect((b + 3 * PG) as *mut _, PG, libc::PROT_READ),
                0
            );
            assert_eq!(
                libc::mprotect((b + 4 * PG) as *mut _, PG, libc::PROT_NONE),
                0
            );
            assert_eq!(libc::munmap((b + 5 * PG) as *mut _, PG), 0);
        }
        // Writable: inside a page, across a boundary with 1, 3 and 7 bytes
        // on one side, two whole pages, and more pages (MADV_POPULATE_WRITE).
        let good = [
            r(b + 100, 8),
            r(b + 1000, 1024),
            r(b + PG - 1, 8),
            r(b + PG - 3, 11),
            r(b + 2 * PG - 7, 8),
            r(b, 2 * PG),
            r(b + 8, 3 * PG - 8),
            r(b + 10, 3),
        ];
        for v in &good {
            // SAFETY: our own mapping's writable pages.
            unsafe { core::ptr::write_bytes(b as *mut u8, 0xAB, 3 * PG) };
            assert!(store_writable(v), "{v:?}");
            // Only bytes inside the range may have changed (the kernel
            // stores this thread's signal mask, whatever its value).
            let (lo, hi) = (v.iov_base as usize, v.iov_base as usize + v.iov_len);
            for a in (b..b + 4 * PG).filter(|a| !(lo..hi).contains(a)) {
                // SAFETY: our own mapping, readable.
                let byte = unsafe { *(a as *const u8) };
                assert_eq!(byte, 0xAB, "{v:?}: byte {:#x} outside it", a - b);
            }
        }
        // Not writable: ending in the read-only page by one byte or by
        // more, inside it, in PROT_NONE, unmapped, wrapping; the same for
        // a range of three pages or more.
        let bad = [
            r(b + 3 * PG - 7, 8),
            r(b + 3 * PG - 100, 200),
            r(b + 3 * PG + 8, 8),
            r(b + 4 * PG, 8),
            r(b + 5 * PG, 16),
            r(b, 4 * PG),
            r(usize::MAX - 7, 16),
        ];
        for v in &bad {
            assert!(!store_writable(v), "{v:?}");
            assert!(!touch_writable(v), "{v:?}");
        }
        // touch_writable proves the same ranges without changing a byte,
        // inside them or out.
        // SAFETY: our own mapping's writable pages.
        unsafe { core::ptr::write_bytes(b as *mut u8, 0xAB, 3 * PG) };
        for v in good.iter().chain([&r(b + 3, 0), &r(b + 2 * PG + 1, 4095)]) {
            assert!(touch_writable(v), "{v:?}");
            for a in b..b + 4 * PG {
                // SAFETY: our own mapping, readable.
                let byte = unsafe { *(a as *const u8) };
                assert_eq!(byte, 0xAB, "{v:?}: byte {:#x} changed", a - b);
            }
        }
        // page_readable: the kernel reads 8 bytes of the page from the
        // address on (or the page's last 8); readable pages (the
        // read-only one too), not PROT_NONE, unmapped or kernel ones.
        // Asserting Some(..) also shows the call answers on this kernel.
        // (b + 3 * PG + 4095: the page after it is PROT_NONE, so the clamp
        // to the page is what makes this one pass.)
        for a in [b, b + 7, b + PG - 1, b + 2 * PG + 4095, b + 3 * PG + 4095] {
            assert_eq!(page_readable(a), Some(true), "{:#x}", a - b);
        }
        for a in [b + 4 * PG, b + 4 * PG + 4095, b + 5 * PG + 8] {
            assert_eq!(page_readable(a), Some(false), "{:#x}", a - b);
        }
        assert_eq!(page_readable(usize::MAX - 7), Some(false));
        // Both one-call-a-page proofs answer as documented on this kernel
        // (their self-checks pass), so the paths above are theirs.
        assert!(loads_answer() && stores_answer());
        // Its one-word proof itself (not its MADV_POPULATE_WRITE
        // fallback) answers on this kernel: the operation done on a
        // writable page, refused on the others.
        let (enosys, efault) = (-(libc::ENOSYS as c_long), -(libc::EFAULT as c_long));
        assert_eq!(or_zero(b + 2 * PG + 4), enosys);
        assert_eq!(or_zero(b + 3 * PG), efault, "read-only");
        assert_eq!(or_zero(b + 4 * PG + 8), efault, "PROT_NONE");
        assert_eq!(or_zero(b + 5 * PG), efault, "unmapped");
        // A private page not written yet is copied, as a store copies it.
        let fresh = anon_map(PG, libc::PROT_READ | libc::PROT_WRITE);
        assert_eq!(or_zero(fresh), enosys);
        // SAFETY: our own mapping.
        assert_eq!(unsafe { *(fresh as *const u32) }, 0);
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(fresh as *mut _, PG) };
        // SAFETY: unmapping our own mapping (page 5 is gone already).
        unsafe { libc::munmap(b as *mut _, 5 * PG) };
    }

    /// Pages of `b`: 0, 1, 3 readable, 2 PROT_NONE, 4 unmapped.
    fn probe_pages(probe: fn(&[libc::iovec]) -> c_long, b: usize) {
        const PG: usize = 4096;
        let efault = -(libc::EFAULT as c_long);
        let probe_readable = probe;
        assert_eq!(probe_readable(&[]), 0);
        assert_eq!(probe_readable(&[r(b, 2 * PG)]), 0, "pages 0-1");
        assert_eq!(probe_readable(&[r(b + 100, 2 * PG - 100)]), 0, "unaligned");
        assert_eq!(probe_readable(&[r(b + 3 * PG, PG), r(b, 10)]), 0);
        assert_eq!(probe_readable(&[r(b + 2 * PG, 0)]), 0, "empty range");
        // Ending one byte into the PROT_NONE page, starting in it, across it.
        assert_eq!(probe_readable(&[r(b + PG, PG + 1)]), efault);
        assert_eq!(probe_readable(&[r(b + 2 * PG + 5, 1)]), efault);
        assert_eq!(
            probe_readable(&[r(b, 4 * PG)]),
            efault,
            "hole in the middle"
        );
        assert_eq!(probe_readable(&[r(b, 10), r(b + 2 * PG, 10)]), efault);
        // Unmapped page, and a range wrapping the address space.
        assert_eq!(probe_readable(&[r(b + 3 * PG, 2 * PG)]), efault);
        assert_eq!(probe_readable(&[r(b + 4 * PG, 1)]), efault);
        assert_eq!(probe_readable(&[r(usize::MAX - 10, 100)]), efault);
    }

    /// More pages than one batch of the reading probe: a hole only in the
    /// second batch.
    fn big_probe(probe_readable: fn(&[libc::iovec]) -> c_long) {
        const PG: usize = 4096;
        let efault = -(libc::EFAULT as c_long);
        let big = 1500 * PG;
        let m = anon_map(big, libc::PROT_READ);
        assert_eq!(probe_readable(&[r(m, big)]), 0);
        // SAFETY: page 1400 of our own mapping.
        let r1400 = unsafe { libc::mprotect((m + 1400 * PG) as *mut _, PG, libc::PROT_NONE) };
        assert_eq!(r1400, 0);
        assert_eq!(probe_readable(&[r(m, big)]), efault);
        assert_eq!(probe_readable(&[r(m, 1400 * PG)]), 0);
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(m as *mut _, big) };
    }

    #[test]
    fn zero_stores_go_where_a_store_would_and_nowhere_else() {
        let _layout = layout_lock();
        if !stores_answer() {
            eprintln!("SKIP: FUTEX_WAKE_OP does not answer as documented here");
            return;
        }
        let words = [AtomicU32::new(7), AtomicU32::new(9), AtomicU32::new(11)];
        assert_eq!(store_zero_u32(words[1].as_ptr() as usize), Some(true));
        let now: Vec<u32> = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        assert_eq!(now, [7, 0, 11]);
        // Misaligned: not asked (the futex call would refuse it).
        assert_eq!(store_zero_u32(words[0].as_ptr() as usize + 1), None);
        static READ_ONLY: u32 = 5;
        assert_eq!(
            store_zero_u32(core::ptr::addr_of!(READ_ONLY) as usize),
            Some(false)
        );
        assert_eq!(READ_ONLY, 5);
        const PG: usize = 4096;
        let ro = anon_map(PG, libc::PROT_READ);
        assert_eq!(store_zero_u32(ro + 8), Some(false));
        // SAFETY: our own mapping.
        unsafe { libc::munmap(ro as *mut _, PG) };
        assert_eq!(store_zero_u32(ro + 8), Some(false));
    }

    #[test]
    fn user_copies_are_checked_by_the_kernel() {
        let _layout = layout_lock();
        let src = [7u8; 16];
        let mut dst = [0u8; 16];
        assert_eq!(copy_from_user(&mut dst, src.as_ptr() as usize), 0);
        assert_eq!(dst, src);
        assert_eq!(copy_from_user(&mut dst, 8), -(libc::EFAULT as c_long));
        assert_eq!(
            copy_to_user(usize::MAX - 64, &src),
            -(libc::EFAULT as c_long)
        );
        let mut out = [0u8; 4];
        assert_eq!(copy_to_user(out.as_mut_ptr() as usize, &[1, 2, 3, 4]), 0);
        assert_eq!(out, [1, 2, 3, 4]);
        // Scattered: 16 + 4 caller bytes into 12 + 8 of ours.
        let mut a = [0u8; 12];
        let mut b = [0u8; 8];
        let src_iov = [
            libc::iovec {
                iov_base: src.as_ptr() as *mut _,
                iov_len: 16,
            },
            libc::iovec {
                iov_base: out.as_ptr() as *mut _,
                iov_len: 4,
            },
        ];
        let mem = SelfMem::new();
        assert_eq!(mem.read_ranges(&mut [&mut a, &mut b], &src_iov), 2);
        assert_eq!(a, [7u8; 12]);
        assert_eq!(b, [7, 7, 7, 7, 1, 2, 3, 4]);
        let bad_iov = [
            libc::iovec {
                iov_base: src.as_ptr() as *mut _,
                iov_len: 16,
            },
            libc::iovec {
                iov_base: 8 as *mut _,
                iov_len: 4,
            },
        ];
        assert_eq!(mem.read_ranges(&mut [&mut a, &mut b], &bad_iov), 1);
        // Totals that differ: nothing is copied.
        assert_eq!(mem.read_ranges(&mut [&mut a], &bad_iov), 0);
        // Gathered (the caller's side read by the kernel's user copy):
        // 16 + 4 caller bytes into 12 + 8 of ours, in order.
        let (mut a, mut b) = ([0u8; 12], [0u8; 8]);
        let into = [
            r(a.as_mut_ptr() as usize, 12),
            r(b.as_mut_ptr() as usize, 8),
        ];
        assert!(mem.gather(&src_iov, &into));
        assert_eq!((a, b), ([7u8; 12], [7, 7, 7, 7, 1, 2, 3, 4]));
        // An unreadable caller range, totals that differ, too many iovecs.
        assert!(!mem.gather(&bad_iov, &into));
        assert!(!mem.gather(&src_iov[..1], &into));
        let many = vec![r(src.as_ptr() as usize, 0); VM_IOV_MAX + 1];
        assert!(!mem.gather(&many, &[]));
        assert!(mem.gather(&many[..VM_IOV_MAX], &[]));
    }
}
