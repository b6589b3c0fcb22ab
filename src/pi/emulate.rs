//! Emulation of `IO_CMD_PREADVM`/`IO_CMD_PWRITEVM` on kernels without DIX
//! passthrough, through the kernel's own AIO ring.
//!
//! # How an emulated iocb travels
//!
//! 1. `submit::submit` issues the plain `io_submit(2)`.  Only if the kernel
//!    accepted fewer than `nr` does [`submit_rest`] run.  A kernel that
//!    accepted opcodes 9/10 (DIX passthrough) never gets here for them.
//! 2. [`submit_rest`] learns the error of the first refused iocb; if it is
//!    `-EINVAL` and the iocb is a PI iocb, it validates it (the patch's
//!    rules), builds a `Record` and submits a *shadow* iocb in its place:
//!    `PREADV` into the caller's data buffers, `PWRITEV` from a verified
//!    bounce copy, or — for a write whose PI does not verify — a `POLL` on a
//!    fresh, readable eventfd, which completes at once and becomes
//!    `res = -EILSEQ`.  The PI iocbs that directly follow it in the batch
//!    are read (kernel-checked), validated and submitted with it, as one
//!    batch of shadows.  Then it goes on with the rest of the batch.
//! 3. Every batch of reaped events passes through [`complete`], which
//!    recognises shadow events by their `obj` (the address of a shadow iocb
//!    in a live record), computes read PI into the caller's PI buffer, and
//!    rewrites the event to `obj` = caller's iocb, `data` = caller's data.
//!
//! Ordering, blocking, threads and exactly-once delivery are the kernel's:
//! each shadow completion is handed to exactly one reaper, which alone
//! removes its record and translates it.
//!
//! # Caller memory
//!
//! * The refused iocb and its slot in the array: read directly (the kernel
//!   has just read them); the iocbs looked at after it, the iovec arrays,
//!   a write's data and PI: kernel-checked copies (`-EFAULT`).
//! * A write is verified and written from a private bounce copy, so what
//!   is written is exactly what was verified.
//! * A read's data lands in the caller's buffers (checked by the kernel);
//!   its PI buffer is proven writable at submit (a kernel-checked write of
//!   zeros) and filled directly when the completion is reaped.
//!
//! The default format and the others are in [`crate::pi::format`]; the
//! format is chosen per context (`io_set_pi_format`) and fixed for an iocb
//! when it is submitted.
//!
//! # Shared state and its synchronisation
//!
//! * `LIVE`: a mutex-protected map from shadow-iocb address to its
//!   record (owned, as a raw `Box` pointer).  Inserted before the shadow is
//!   submitted, removed by the one reaper that got its event (or by
//!   `io_destroy`'s clean-up, or on a failed submission).  A record is only
//!   dereferenced by whoever removed it from the map, or under the lock.
//! * `IN_FLIGHT`: number of records in `LIVE`.  The reap hook's only
//!   cost for plain users is one `Relaxed` load of it.  `Relaxed` suffices:
//!   the increment precedes (in program order) the `io_submit` of the
//!   shadow, and a reaper can only obtain the shadow's event after the
//!   kernel posted it, which is ordered after that submission by the
//!   kernel's own locking; so by coherence a reaper holding a shadow event
//!   reads a value that includes its record's increment (the matching
//!   decrement is done by that same reaper, later).

use crate::abi::{io_event, io_iocb_cmd, iocb};
use crate::context::{self, Context};
use crate::pi::format::Format;
use crate::pi::format_of;
use crate::sys;
use core::ffi::{c_long, c_void};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The kernel's `UIO_MAXIOV`.
const UIO_MAXIOV: u64 = 1024;
/// The kernel's `MAX_RW_COUNT` (`INT_MAX & PAGE_MASK`); larger PI I/O is
/// refused rather than bounced.
const MAX_RW_COUNT: usize = 0x7FFF_F000;
/// Alignment of write bounce buffers (satisfies any `O_DIRECT` rule).
const BOUNCE_ALIGN: usize = 4096;

/// Number of live records (see the module documentation).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Live records by shadow-iocb address.
static LIVE: Mutex<BTreeMap<usize, RecordPtr>> = Mutex::new(BTreeMap::new());

/// An owned `Box<Record>` kept as a raw pointer, so that the kernel may
/// write to the shadow iocb inside it (its `aio_key`) without aliasing a
/// Rust reference.
struct RecordPtr(*mut Record);
// SAFETY: a record is owned by exactly one party at a time (the map under
// its lock, or whoever removed it), so moving it between threads is fine.
unsafe impl Send for RecordPtr {}

fn live() -> MutexGuard<'static, BTreeMap<usize, RecordPtr>> {
    // The library aborts on panic, so the lock cannot really be poisoned.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do with a shadow's completion.
enum Kind {
    /// Compute PI over the data read into the caller's buffers.
    Read {
        /// The caller's data iovecs (our copy; the shadow points at it).
        data: Vec<libc::iovec>,
        /// The caller's PI buffer (validated writable at submit).
        pi_addr: usize,
        format: Format,
        /// Interval number of the first interval.
        seed: u64,
    },
    /// Data was verified and written from `bounce`.
    Write { _bounce: Bounce },
    /// The PI did not verify: report `-EILSEQ`.
    Rejected,
}

/// One emulated iocb.
struct Record {
    /// The iocb the kernel knows; its address is the event's `obj`.
    shadow: iocb,
    /// The iovec of a write's shadow (the bounce buffer).
    one_iov: libc::iovec,
    /// The context it was submitted to (for `io_destroy`'s clean-up).
    ctx: usize,
    /// The caller's iocb and `aio_data`, restored into the event.
    user_iocb: *mut iocb,
    user_data: *mut c_void,
    kind: Kind,
}

/// An aligned heap allocation (4 KiB aligned, power-of-two size).
struct RawBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain bytes with a single owner.
unsafe impl Send for RawBuf {}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `Bounce::new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Recycled bounce allocations: a stream of PI writes reuses warm,
/// already-faulted buffers instead of allocating and zeroing each time.
/// At most [`POOL_MAX`] buffers of at most [`POOL_BUF_MAX`] bytes are kept.
/// The mutex is taken once per emulated write (never on plain paths).
static POOL: Mutex<Vec<RawBuf>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 32;
const POOL_BUF_MAX: usize = 4 << 20;

/// An aligned buffer for `O_DIRECT` writes; its allocation goes back to
/// [`POOL`] when dropped.
struct Bounce {
    raw: Option<RawBuf>,
    len: usize,
}

impl Bounce {
    fn new(len: usize) -> Option<Bounce> {
        let size = len.max(BOUNCE_ALIGN).checked_next_power_of_two()?;
        if size <= POOL_BUF_MAX {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = pool.iter().position(|b| b.layout.size() == size) {
                let raw = pool.swap_remove(i);
                return Some(Bounce {
                    raw: Some(raw),
                    len,
                });
            }
        }
        let layout = Layout::from_size_align(size, BOUNCE_ALIGN).ok()?;
        // SAFETY: `layout` has a non-zero size.  Zeroed so that it is
        // initialised memory before we form a slice over it (recycled
        // buffers hold earlier data, which is initialised too).
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(Bounce {
            raw: Some(RawBuf { ptr, layout }),
            len,
        })
    }

    fn as_ptr(&self) -> *mut u8 {
        self.raw.as_ref().expect("live bounce").ptr.as_ptr()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len <= layout.size()` initialised bytes we own.
        unsafe { core::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            if raw.layout.size() <= POOL_BUF_MAX {
                let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < POOL_MAX {
                    pool.push(raw);
                }
                // Otherwise `raw` is freed here, after the guard... order
                // does not matter: dealloc takes no lock of ours.
            }
        }
    }
}

/// What became of the first refused iocb.
enum Outcome {
    /// Not a PI iocb: the kernel's `-EINVAL` stands.
    NotPi,
    /// A PI iocb refused with this error.
    Refused(i32),
    /// This many caller iocbs (a run of PI iocbs starting with the refused
    /// one) are accepted, their shadows in flight; `stop`: the kernel
    /// refused a shadow after them, so the batch ends here.
    Submitted { count: usize, stop: bool },
}

/// A validated PI iocb whose shadow is not submitted yet.
struct Pending {
    rec: Box<Record>,
    user_iocb: *mut iocb,
    io: iocb,
}

/// How many iocbs after a refused PI iocb are examined at once, so that a
/// run of PI iocbs is submitted as one batch of shadows (one system call,
/// one block-layer plug) instead of one refusal and one submission each.
const LOOKAHEAD: usize = 64;

/// The ring's `nr` (= the kernel's `ctx->nr_events`, to which it clamps a
/// submission's `nr`).
fn ring_nr(c: &Context) -> Option<u32> {
    crate::ring::Ring::of(c)?;
    let addr = c.ring_addr() + core::mem::offset_of!(crate::abi::AioRingHeader, nr);
    // SAFETY: `c` is a registered, live context, so its ring header (32
    // naturally aligned bytes) is mapped; the kernel may write it, so it is
    // read as an atomic.
    Some(unsafe { &*(addr as *const core::sync::atomic::AtomicU32) }.load(Ordering::Relaxed))
}

/// The slow path of `io_submit`: the kernel accepted `first` (< `nr`) of
/// the batch, or refused its first iocb with `first < 0`.  Emulates PI
/// iocbs the kernel refused with `-EINVAL` and submits the rest of the
/// batch; returns what the caller sees: the number accepted, or the error
/// of the first iocb if none was.
#[cold]
pub fn submit_rest(ctx: usize, nr: c_long, iocbpp: *mut *mut iocb, first: c_long) -> c_long {
    let Some(c) = context::lookup(ctx) else {
        return first;
    };
    let clamp = ring_nr(c).map_or(c_long::MAX, |n| n as c_long);
    let mut accepted: c_long = 0;
    let mut asked = nr;
    let mut r = first;
    loop {
        if r > 0 {
            accepted += r;
            // Done, or the kernel clamped the batch to the ring size (it
            // does not report an error then): stop as it would.
            if accepted >= nr || (r < asked && r == asked.min(clamp)) {
                return accepted;
            }
        } else if r == -(libc::EINVAL as c_long) {
            let at = iocbpp as usize + accepted as usize * core::mem::size_of::<usize>();
            match try_emulate(c, ctx, at, (nr - accepted) as usize) {
                Outcome::Submitted { count, stop } => {
                    accepted += count as c_long;
                    if accepted >= nr || stop {
                        return accepted;
                    }
                }
                Outcome::NotPi => return if accepted > 0 { accepted } else { r },
                Outcome::Refused(e) => {
                    return if accepted > 0 { accepted } else { e as c_long };
                }
            }
        } else {
            // Another error (or 0, which the kernel returns only for nr 0).
            return if accepted > 0 { accepted } else { r };
        }
        // Submit what is left: either the rest after an emulated iocb, or,
        // after a partial batch, to learn the refused iocb's error (the
        // kernel reports only the count).  If it is now accepted after all
        // (a transient -EAGAIN), it simply counts as accepted.
        asked = nr - accepted;
        // Address arithmetic only; the kernel validates the array.
        let rest = iocbpp.wrapping_add(accepted as usize);
        r = sys::io_submit(ctx, asked, rest as usize);
    }
}

/// Validate the PI iocb at `*slot` (refused by the kernel) and the PI
/// iocbs right after it (`remaining` slots from `slot` on belong to the
/// batch), and submit their shadows.
fn try_emulate(c: &Context, ctx: usize, slot: usize, remaining: usize) -> Outcome {
    // The kernel has just read both (get_user of the pointer, then
    // copy_from_user of the iocb, then put_user of its aio_key all precede
    // the opcode check that produced -EINVAL; a bad address would have
    // been -EFAULT), so they are mapped caller memory.
    // (A caller racing io_destroy on the same context could make the
    // kernel answer -EINVAL without reading them: we still refuse
    // addresses that cannot be user memory.)
    if !sys::plausible_user_range(slot, core::mem::size_of::<usize>()) {
        return Outcome::NotPi;
    }
    // SAFETY: see above; an unaligned-tolerant copy.
    let user_iocb = unsafe { core::ptr::read_unaligned(slot as *const *mut iocb) };
    if !sys::plausible_user_range(user_iocb as usize, core::mem::size_of::<iocb>()) {
        return Outcome::NotPi;
    }
    // SAFETY: see above.
    let io = unsafe { core::ptr::read_unaligned(user_iocb as *const iocb) };
    let Some(is_read) = pi_direction(&io) else {
        return Outcome::NotPi;
    };
    let rec = match prepare(c, &io, is_read) {
        Ok(rec) => rec,
        Err(e) => return Outcome::Refused(e),
    };
    let mut run = vec![Pending { rec, user_iocb, io }];
    if remaining > 1 {
        look_ahead(
            c,
            slot + core::mem::size_of::<usize>(),
            (remaining - 1).min(LOOKAHEAD),
            &mut run,
        );
    }
    submit_shadows(ctx, run)
}

/// `Some(true)` for `IO_CMD_PREADVM`, `Some(false)` for `IO_CMD_PWRITEVM`.
fn pi_direction(io: &iocb) -> Option<bool> {
    match io.aio_lio_opcode {
        op if op == io_iocb_cmd::IO_CMD_PREADVM as i16 => Some(true),
        op if op == io_iocb_cmd::IO_CMD_PWRITEVM as i16 => Some(false),
        _ => None,
    }
}

/// Append to `run` the valid PI iocbs that directly follow, among the `n`
/// slots at `slots`.  The kernel has not seen these: pointers and iocbs
/// are read with two kernel-checked copies.  Anything unexpected (a bad
/// address, a plain iocb, an invalid PI iocb) ends the run; the main loop
/// then hands that iocb to the kernel, which gives its own answer.
fn look_ahead(c: &Context, slots: usize, n: usize, run: &mut Vec<Pending>) {
    let mut ptrs = vec![0usize; n];
    {
        // SAFETY: viewing our own array of integers as bytes.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                ptrs.as_mut_ptr() as *mut u8,
                n * core::mem::size_of::<usize>(),
            )
        };
        if sys::copy_from_user(bytes, slots) != 0 {
            return;
        }
    }
    let src: Vec<libc::iovec> = ptrs
        .iter()
        .map(|&p| libc::iovec {
            iov_base: p as *mut c_void,
            iov_len: core::mem::size_of::<iocb>(),
        })
        .collect();
    let mut ios = vec![iocb::zeroed(); n];
    {
        let mut dst: Vec<&mut [u8]> = ios
            .iter_mut()
            .map(|io| {
                // SAFETY: viewing our own iocb (integers, pointers and a
                // union of those: any bit pattern is valid) as bytes.
                unsafe {
                    core::slice::from_raw_parts_mut(
                        io as *mut iocb as *mut u8,
                        core::mem::size_of::<iocb>(),
                    )
                }
            })
            .collect();
        if sys::copy_from_user_iov(&mut dst, &src) != 0 {
            return;
        }
    }
    for (p, io) in ptrs.into_iter().zip(ios) {
        let Some(is_read) = pi_direction(&io) else {
            return;
        };
        match prepare(c, &io, is_read) {
            Ok(rec) => run.push(Pending {
                rec,
                user_iocb: p as *mut iocb,
                io,
            }),
            Err(_) => return,
        }
    }
}

/// Check a PI iocb as the DIX patch does, and build its record.
// `c_ulong` is `u64` only on 64-bit targets.
#[allow(clippy::useless_conversion)]
fn prepare(c: &Context, io: &iocb, is_read: bool) -> Result<Box<Record>, i32> {
    const EINVAL: i32 = -libc::EINVAL;
    // SAFETY: reading the integer fields of the union: any bit pattern is
    // valid for them.
    let (iov_addr, iovcnt, offset, reserved2) = unsafe {
        (
            io.u.c.buf as usize,
            u64::from(io.u.c.nbytes),
            io.u.c.offset,
            io.u.c.__pad3,
        )
    };
    if reserved2 != 0 {
        return Err(EINVAL);
    }
    // The fd: open (the kernel checked), for the right direction, O_DIRECT.
    let fl = sys::fcntl_getfl(io.aio_fildes);
    if fl < 0 {
        return Err(fl as i32);
    }
    let fl = fl as i32;
    let mode = fl & libc::O_ACCMODE;
    let can = if is_read {
        mode == libc::O_RDONLY || mode == libc::O_RDWR
    } else {
        mode == libc::O_WRONLY || mode == libc::O_RDWR
    };
    if !can {
        return Err(-libc::EBADF);
    }
    if fl & libc::O_DIRECT == 0 {
        return Err(EINVAL);
    }
    if !(2..=UIO_MAXIOV).contains(&iovcnt) {
        return Err(EINVAL);
    }
    // The caller's iovec array has not been seen by the kernel: copy it.
    let mut iovs = vec![
        libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0
        };
        iovcnt as usize
    ];
    {
        // SAFETY: viewing our own iovec array as bytes to fill it; iovecs
        // are a pointer and a length, valid for any bit pattern.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                iovs.as_mut_ptr() as *mut u8,
                iovs.len() * core::mem::size_of::<libc::iovec>(),
            )
        };
        if sys::copy_from_user(bytes, iov_addr) != 0 {
            return Err(-libc::EFAULT);
        }
    }
    let pi = iovs.pop().expect("iovcnt >= 2");
    let total = iovs
        .iter()
        .try_fold(0usize, |acc, v| acc.checked_add(v.iov_len))
        .filter(|t| *t <= MAX_RW_COUNT)
        .ok_or(EINVAL)?;
    let format = format_of(c);
    let iv = format.interval;
    if pi.iov_len == 0 || offset < 0 || offset as u64 % iv as u64 != 0 || total % iv != 0 {
        return Err(EINVAL);
    }
    let need = total / iv * format.tuple_size();
    if pi.iov_len < need {
        return Err(EINVAL);
    }
    let seed = offset as u64 / iv as u64;
    let pi_addr = pi.iov_base as usize;

    if is_read {
        // Prove now that the tuples can be stored later (zeroing them).
        static ZEROS: [u8; 4096] = [0; 4096];
        let mut done = 0;
        while done < need {
            let k = (need - done).min(ZEROS.len());
            if sys::copy_to_user(pi_addr + done, &ZEROS[..k]) != 0 {
                return Err(-libc::EFAULT);
            }
            done += k;
        }
        return Ok(Box::new(Record {
            shadow: iocb::zeroed(),
            one_iov: libc::iovec {
                iov_base: core::ptr::null_mut(),
                iov_len: 0,
            },
            ctx: 0,
            user_iocb: core::ptr::null_mut(),
            user_data: core::ptr::null_mut(),
            kind: Kind::Read {
                data: iovs,
                pi_addr,
                format,
                seed,
            },
        }));
    }

    // Write: copy exactly the bytes that will be written, then verify them.
    let mut bounce = Bounce::new(total).ok_or(-libc::ENOMEM)?;
    let mut tuples = vec![0u8; need];
    // Data and PI in one kernel-checked copy: the caller's data iovecs,
    // then the first `need` bytes of its PI buffer.
    iovs.push(libc::iovec {
        iov_base: pi.iov_base,
        iov_len: need,
    });
    if sys::copy_from_user_iov(&mut [bounce.as_mut_slice(), &mut tuples], &iovs) != 0 {
        return Err(-libc::EFAULT);
    }
    let ok = format.verify(bounce.as_mut_slice(), seed, &tuples).is_ok();
    let one_iov = libc::iovec {
        iov_base: bounce.as_ptr().cast(),
        iov_len: total,
    };
    Ok(Box::new(Record {
        shadow: iocb::zeroed(),
        one_iov,
        ctx: 0,
        user_iocb: core::ptr::null_mut(),
        user_data: core::ptr::null_mut(),
        kind: if ok {
            Kind::Write { _bounce: bounce }
        } else {
            Kind::Rejected
        },
    }))
}

/// Fill a pending record's shadow iocb.  Returns the record (now a raw
/// pointer: the kernel will write to its shadow) and, for a rejection, the
/// eventfd to close once the shadow is submitted.
fn fill_shadow(ctx: usize, p: Pending) -> Result<(*mut Record, Option<i32>), i32> {
    let Pending {
        mut rec,
        user_iocb,
        io,
    } = p;
    let io = &io;
    rec.ctx = ctx;
    rec.user_iocb = user_iocb;
    rec.user_data = io.data;
    // SAFETY: reading integer union fields.
    let (offset, flags, resfd) = unsafe { (io.u.c.offset, io.u.c.flags, io.u.c.resfd) };
    let mut evfd = None;
    let mut sh = iocb::zeroed();
    match &rec.kind {
        Kind::Rejected => {
            // A poll on a fresh eventfd with count 1 completes at once.  A
            // fresh fd per rejection: a cached one could have been closed
            // (and its number reused) by the program.  The kernel holds its
            // own reference to the file, so we close ours right after.
            let fd = sys::eventfd(1, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            if fd < 0 {
                return Err(fd as i32);
            }
            evfd = Some(fd as i32);
            sh.aio_lio_opcode = io_iocb_cmd::IO_CMD_POLL as i16;
            sh.aio_fildes = fd as i32;
            sh.u.poll.events = libc::POLLIN as i32;
            sh.u.c.flags = flags & crate::abi::IOCB_FLAG_RESFD;
            sh.u.c.resfd = resfd;
        }
        Kind::Read { data, .. } => {
            sh.aio_lio_opcode = io_iocb_cmd::IO_CMD_PREADV as i16;
            sh.aio_fildes = io.aio_fildes;
            sh.aio_rw_flags = io.aio_rw_flags;
            sh.aio_reqprio = io.aio_reqprio;
            sh.u.c.buf = data.as_ptr() as *mut c_void;
            sh.u.c.nbytes = data.len() as _;
            sh.u.c.offset = offset;
            sh.u.c.flags = flags;
            sh.u.c.resfd = resfd;
        }
        Kind::Write { .. } => {
            sh.aio_lio_opcode = io_iocb_cmd::IO_CMD_PWRITEV as i16;
            sh.aio_fildes = io.aio_fildes;
            sh.aio_rw_flags = io.aio_rw_flags;
            sh.aio_reqprio = io.aio_reqprio;
            sh.u.c.buf = &rec.one_iov as *const libc::iovec as *mut c_void;
            sh.u.c.nbytes = 1;
            sh.u.c.offset = offset;
            sh.u.c.flags = flags;
            sh.u.c.resfd = resfd;
        }
    }
    rec.shadow = sh;
    Ok((Box::into_raw(rec), evfd))
}

/// Publish the records of a run and submit their shadows in one call.
fn submit_shadows(ctx: usize, run: Vec<Pending>) -> Outcome {
    let mut raws: Vec<*mut Record> = Vec::with_capacity(run.len());
    let mut evfds = Vec::new();
    let mut first_err = None;
    for p in run {
        match fill_shadow(ctx, p) {
            Ok((raw, evfd)) => {
                raws.push(raw);
                evfds.extend(evfd);
            }
            Err(e) => {
                // Submit the run up to here; the rest is dropped (freed)
                // and left to the main loop.
                first_err = Some(e);
                break;
            }
        }
    }
    if raws.is_empty() {
        return Outcome::Refused(first_err.unwrap_or(-libc::EAGAIN));
    }
    let mut shadows: Vec<*mut iocb> = raws
        .iter()
        // SAFETY: live allocations we own; taking a field's address
        // creates no reference.
        .map(|&raw| unsafe { core::ptr::addr_of_mut!((*raw).shadow) })
        .collect();
    {
        let mut map = live();
        for (&sh, &raw) in shadows.iter().zip(&raws) {
            map.insert(sh as usize, RecordPtr(raw));
        }
    }
    IN_FLIGHT.fetch_add(raws.len(), Ordering::Relaxed);
    let r = sys::io_submit(ctx, shadows.len() as c_long, shadows.as_mut_ptr() as usize);
    for fd in evfds {
        // SAFETY: closing an eventfd we created; the kernel keeps its own
        // reference for a submitted poll.  close() of a valid fd does not
        // fail, so errno is not disturbed.
        unsafe { libc::close(fd) };
    }
    // From here on, submitted records belong to whoever reaps their event:
    // only the unsubmitted tail may be touched.
    let done = if r > 0 { r as usize } else { 0 };
    if done < shadows.len() {
        let mut map = live();
        for sh in &shadows[done..] {
            if let Some(p) = map.remove(&(*sh as usize)) {
                IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: from Box::into_raw, never submitted, just removed
                // from the map: we own it.
                drop(unsafe { Box::from_raw(p.0) });
            }
        }
    }
    if done == 0 {
        return Outcome::Refused(if r < 0 { r as i32 } else { -libc::EAGAIN });
    }
    Outcome::Submitted {
        count: done,
        stop: done < shadows.len() || first_err.is_some(),
    }
}

/// Translate the shadow events among the `n` events just reaped into
/// `events` (see the module documentation).  Plain users pay one load.
#[inline(always)]
pub fn complete(events: *mut io_event, n: i32) {
    if n > 0 && IN_FLIGHT.load(Ordering::Relaxed) != 0 {
        complete_slow(events, n as usize);
    }
}

#[cold]
#[inline(never)]
fn complete_slow(events: *mut io_event, n: usize) {
    // SAFETY: the kernel (or the ring reader) has just stored `n` events
    // there, so the range is the caller's writable event array.
    let evs = unsafe { core::slice::from_raw_parts_mut(events, n) };
    let mut mine: Vec<(usize, RecordPtr)> = Vec::new();
    {
        let mut map = live();
        if map.is_empty() {
            return;
        }
        for (i, ev) in evs.iter().enumerate() {
            if let Some(p) = map.remove(&(ev.obj as usize)) {
                mine.push((i, p));
            }
        }
    }
    // The PI computation runs outside the lock: the records are ours now.
    for (i, p) in mine {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: removed from the map by us: we own the record.
        let rec = unsafe { Box::from_raw(p.0) };
        translate(&mut evs[i], &rec);
    }
}

/// Rewrite a shadow's event into the caller's.
fn translate(ev: &mut io_event, rec: &Record) {
    ev.obj = rec.user_iocb;
    ev.data = rec.user_data;
    match &rec.kind {
        Kind::Rejected => {
            ev.res = (-(libc::EILSEQ as c_long)) as _;
            ev.res2 = 0;
        }
        Kind::Write { .. } => {}
        Kind::Read {
            data,
            pi_addr,
            format,
            seed,
        } => {
            let res = ev.res as c_long;
            if res <= 0 {
                return;
            }
            store_read_pi(data, res as usize, *pi_addr, format, *seed);
        }
    }
}

/// Compute the tuples of the intervals actually read (the first
/// `res / interval` intervals; `res` never exceeds the data length, so at
/// most the tuples validated at submit) into the caller's PI buffer.
fn store_read_pi(data: &[libc::iovec], res: usize, pi_addr: usize, format: &Format, seed: u64) {
    let n = res / format.interval;
    if n == 0 {
        return;
    }
    let mut left = n * format.interval;
    let mut segs: Vec<&[u8]> = Vec::with_capacity(data.len());
    for v in data {
        if left == 0 {
            break;
        }
        let k = v.iov_len.min(left);
        if k == 0 {
            continue;
        }
        // SAFETY: the kernel has just read `res` bytes into these buffers
        // (an I/O into a bad buffer completes with res < 0 instead), so
        // these first `k` bytes are mapped caller memory holding the data.
        segs.push(unsafe { core::slice::from_raw_parts(v.iov_base as *const u8, k) });
        left -= k;
    }
    // SAFETY: `prepare` proved these `n * tuple_size` bytes (at most the
    // `need` it checked) writable with a kernel-checked write at submit;
    // like the buffers of any in-flight I/O they stay the caller's to keep
    // mapped until the completion is delivered (a DIX kernel pins them).
    let out =
        unsafe { core::slice::from_raw_parts_mut(pi_addr as *mut u8, n * format.tuple_size()) };
    format.generate_segments(&segs, seed, out);
}

/// After a successful `io_destroy(ctx)`: the kernel has waited for every
/// in-flight request and discarded their events, so free their records.
pub fn forget_context(ctx: usize) {
    if IN_FLIGHT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut gone = Vec::new();
    {
        let mut map = live();
        map.retain(|_, p| {
            // SAFETY: records in the map are owned by the map, whose lock
            // we hold.
            let mine = unsafe { (*p.0).ctx } == ctx;
            if mine {
                gone.push(RecordPtr(p.0));
            }
            !mine
        });
    }
    for p in gone {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: removed from the map: we own it.
        drop(unsafe { Box::from_raw(p.0) });
    }
}

/// Number of emulated operations in flight (for tests).
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}
