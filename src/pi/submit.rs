//! The submit side of PI emulation: after the kernel refused a PI iocb,
//! validate it (and the PI iocbs right after it) as the DIX patch does,
//! build records and submit shadow iocbs in their place.

use crate::abi::{io_iocb_cmd, iocb};
use crate::context::{self, Context};
use crate::pi::format_of;
use crate::pi::record::{live, Kind, Record, RecordPtr, IN_FLIGHT};
use crate::sys;
use core::ffi::{c_long, c_void};
use core::sync::atomic::Ordering;

/// The kernel's `UIO_MAXIOV`.
const UIO_MAXIOV: u64 = 1024;
/// The kernel's `MAX_RW_COUNT` (`INT_MAX & PAGE_MASK`); larger PI I/O is
/// refused rather than truncated.
const MAX_RW_COUNT: usize = 0x7FFF_F000;

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
    c.ring_slots()
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

    // Write: verify the caller's data in place, then write it from the
    // caller's buffers (no copy).  First prove every data page readable
    // (the kernel reads one byte per page), then take a checked copy of
    // just the tuples (small).
    let mut tuples = vec![0u8; need];
    if sys::probe_readable(&iovs) != 0 || sys::copy_from_user(&mut tuples, pi_addr) != 0 {
        return Err(-libc::EFAULT);
    }
    let segs: Vec<&[u8]> = iovs
        .iter()
        .filter(|v| v.iov_len > 0)
        .map(|v| {
            // SAFETY: probed readable by the kernel just now; the caller
            // must not unmap buffers of an I/O it is submitting (the kernel
            // reads them for the write), nor write them during io_submit.
            // The slices are only read (any byte is a valid `u8`) and are
            // dropped before `prepare` returns.
            unsafe { core::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }
        })
        .collect();
    let ok = format.verify_segments(&segs, seed, &tuples).is_ok();
    drop(segs);
    Ok(Box::new(Record {
        shadow: iocb::zeroed(),
        ctx: 0,
        user_iocb: core::ptr::null_mut(),
        user_data: core::ptr::null_mut(),
        kind: if ok {
            Kind::Write { data: iovs }
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
        Kind::Read { data, .. } | Kind::Write { data } => {
            sh.aio_lio_opcode = if matches!(rec.kind, Kind::Read { .. }) {
                io_iocb_cmd::IO_CMD_PREADV as i16
            } else {
                io_iocb_cmd::IO_CMD_PWRITEV as i16
            };
            sh.aio_fildes = io.aio_fildes;
            sh.aio_rw_flags = io.aio_rw_flags;
            sh.aio_reqprio = io.aio_reqprio;
            sh.u.c.buf = data.as_ptr() as *mut c_void;
            sh.u.c.nbytes = data.len() as _;
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
