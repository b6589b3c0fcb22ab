//! The submit side of PI emulation: after the kernel refused a PI iocb,
//! validate it (and the PI iocbs right after it) as the DIX patch does,
//! build records and submit shadow iocbs in their place.

use crate::abi::{io_iocb_cmd, iocb};
use crate::context;
use crate::pi::caller::CallerMem;
use crate::pi::format::Format;
use crate::pi::format_of;
use crate::pi::record::{self, live, shadow_tag, Kind, Record, RecordPtr, IN_FLIGHT, RECORD_SEQ};
use crate::sys;
use core::ffi::{c_long, c_void};
use core::sync::atomic::Ordering;

/// The kernel's `UIO_MAXIOV`.
const UIO_MAXIOV: u64 = 1024;
/// The kernel's `MAX_RW_COUNT` (`INT_MAX & PAGE_MASK`): it cuts the data
/// of a larger read or write to this, as the shadow's import does (see
/// [`cut_to_max_rw`]).  A multiple of every protection interval.
const MAX_RW_COUNT: usize = 0x7FFF_F000;

/// What became of the first refused iocb.
enum Outcome {
    /// Not a PI iocb: the kernel's `-EINVAL` stands.
    NotPi,
    /// A PI iocb refused with this error.
    Refused(i32),
    /// This many caller iocbs (a run of PI iocbs starting with the refused
    /// one) are accepted, their shadows in flight; `stop`: the iocb after
    /// them failed (the kernel refused its shadow, or its memory failed a
    /// check), so the batch ends here.
    Submitted { count: usize, stop: bool },
}

/// What the kernel took of a run of shadows (or of a group of it): the
/// first `count` (> 0) are in flight, and `stop` says the run ends after
/// them (the kernel refused the next shadow, or the next iocb failed a
/// memory check).  A run of which nothing was taken is `Err(errno)`.
struct Sent {
    count: usize,
    stop: bool,
}

/// A validated PI iocb whose shadow is not submitted yet.
struct Pending {
    rec: Box<Record>,
    user_iocb: *mut iocb,
    io: iocb,
}

/// How many iocbs after a refused PI iocb are examined at once, so that a
/// run of PI iocbs is checked together and its shadows go out in a few
/// system calls (about `log2(writes) + 1`, see `submit_run`) instead of
/// one refusal and one submission each.
const LOOKAHEAD: usize = 64;

/// The PI format of `ctx`'s emulated iocbs and the most iocbs one
/// `io_submit` on it takes (the ring's `nr` = the kernel's
/// `ctx->nr_events`, to which it clamps a submission's `nr`; `MAX` if not
/// known).  A context this library did not create in this process (a raw
/// `io_setup(2)`, a ring moved with `mremap`) has the default format.
/// `None` unless the context is live: when the kernel refused the first
/// iocb (`first < 0`), the kernel is asked, because only for a live context
/// does its `-EINVAL` mean it read the batch's first iocb; for a dead one
/// (even a registered one: a raw `io_destroy(2)`, the old address of a
/// moved ring) it read nothing, and neither may we.  When it accepted some
/// (`first > 0`) the context is live.
fn format_and_clamp(ctx: usize, first: c_long) -> Option<(Format, c_long)> {
    if first < 0 && !sys::context_is_live(ctx) {
        return None;
    }
    Some(match context::lookup(ctx) {
        Some(c) => (
            format_of(c),
            c.ring_slots().map_or(c_long::MAX, c_long::from),
        ),
        None => (Format::DEFAULT, c_long::MAX),
    })
}

/// The slow path of `io_submit`: the kernel accepted `first` (< `nr`) of
/// the batch, or refused its first iocb with `first < 0`.  Emulates PI
/// iocbs the kernel refused with `-EINVAL` and submits the rest of the
/// batch; returns what the caller sees: the number accepted, or the error
/// of the first iocb if none was.
#[cold]
pub fn submit_rest(ctx: usize, nr: c_long, iocbpp: *mut *mut iocb, first: c_long) -> c_long {
    // The record map's lock and allocations below may set errno.
    let _errno = sys::ErrnoGuard::save();
    // Another error for the first iocb (-EBADF, -EAGAIN, ...) stands as
    // the kernel gave it, whatever the context (the loop below would return
    // it too): no need to ask the kernel about an unknown context.
    if first < 0 && first != -(libc::EINVAL as c_long) {
        return first;
    }
    let Some((format, clamp)) = format_and_clamp(ctx, first) else {
        return first;
    };
    // A signal handler that interrupted this thread while it held the
    // record map cannot emulate (that needs the lock): what the kernel
    // accepted stands; a refused first iocb keeps the kernel's -EINVAL
    // unless it is a PI iocb, which is "interrupted" (see
    // `reap::REENTRANT`).  No lock and no allocation on this path.
    if record::interrupted_pi_code() {
        if first > 0 {
            return first;
        }
        return match refused_first(iocbpp as usize) {
            Some(_) => -(libc::EINTR as c_long),
            None => first,
        };
    }
    let mut accepted: c_long = 0;
    let mut asked = nr;
    let mut r = first;
    loop {
        if r > 0 {
            // Address arithmetic only: the array this kernel call read.
            let call_start = iocbpp.wrapping_add(accepted as usize);
            accepted += r;
            // Done, or the kernel clamped the batch to the ring size (it
            // does not report an error then): stop as it would.
            if accepted >= nr || (r < asked && r == asked.min(clamp)) {
                return accepted;
            }
            match refused_is_pi(call_start as usize, r as usize) {
                // A plain iocb was refused: the kernel's count stands.
                Some(false) => return accepted,
                // A PI iocb: emulate it now (as after the kernel's -EINVAL;
                // if it was refused for another reason, say a full ring,
                // its shadow is refused the same way and the count stands).
                Some(true) => {
                    r = -(libc::EINVAL as c_long);
                    continue;
                }
                // Not visible: learn the error from the kernel (below).
                None => {}
            }
        } else if r == -(libc::EINVAL as c_long) {
            let at = iocbpp as usize + accepted as usize * core::mem::size_of::<usize>();
            match try_emulate(&format, ctx, at, (nr - accepted) as usize) {
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

/// After the kernel accepted the first `k > 0` iocbs of the array at
/// `slots` and refused the next one: whether that iocb is a PI iocb, if it
/// can be seen without a system call (`None` if not).  Then a plain batch
/// the kernel accepted in part costs one system call, as with libaio, and a
/// PI iocb after plain ones is emulated at once; before, the rest of the
/// batch was always submitted again only to learn the refused iocb's error.
///
/// The kernel read slots `0..k` and the 64 bytes of each accepted iocb, so
/// their pages were readable (protection is per page, see
/// `sys::PAGE`), and the caller may not unmap memory it is passing to
/// `io_submit` while the call runs.  Slot `k` is read only if it lies in
/// the pages of slots `0..k`, and the refused iocb only if each of its pages
/// is a page of one of the last accepted iocbs (the usual array of iocbs).
/// No allocation, no lock.
fn refused_is_pi(slots: usize, k: usize) -> Option<bool> {
    const IOCB: usize = core::mem::size_of::<iocb>();
    const SLOT: usize = core::mem::size_of::<usize>();
    const PAGE: usize = sys::PAGE;
    const NEIGHBOURS: usize = 64;
    let page = |a: usize| a & !(PAGE - 1);
    // The kernel read the bytes [slots, slot_k) (slots 0..k).  Slot k is
    // readable for sure only if its last byte is on the page of the byte
    // just before it (slot k - 1's last).
    let slot_k = k.checked_mul(SLOT).and_then(|n| slots.checked_add(n))?;
    if k == 0
        || !sys::plausible_user_range(slots, slot_k + SLOT - slots)
        || page(slot_k + SLOT - 1) != page(slot_k - 1)
    {
        return None;
    }
    let read_slot = |i: usize| {
        // SAFETY: slot i <= k lies in pages the kernel has just read in
        // this call (checked above for slot k); unaligned-tolerant.
        unsafe { core::ptr::read_unaligned((slots + i * SLOT) as *const usize) }
    };
    let refused = read_slot(k);
    if !sys::plausible_user_range(refused, IOCB) {
        return None;
    }
    let known = |p: usize| {
        (k.saturating_sub(NEIGHBOURS)..k).any(|i| {
            let q = read_slot(i);
            page(q) == p || page(q.wrapping_add(IOCB - 1)) == p
        })
    };
    // An iocb spans one page, or two (then both must be known).
    let (first, last) = (page(refused), page(refused + IOCB - 1));
    if !known(first) || (last != first && !known(last)) {
        return None;
    }
    // SAFETY: every page of the refused iocb is a page of an iocb the
    // kernel has just copied in full (checked above); unaligned-tolerant.
    let io = unsafe { core::ptr::read_unaligned(refused as *const iocb) };
    Some(pi_direction(&io).is_some())
}

/// The caller's iocb pointer at `slot` and a copy of that iocb, if it is a
/// PI iocb (`None` otherwise).  For a slot whose iocb the kernel refused:
/// no lock, no allocation (also used from a signal handler).
fn refused_first(slot: usize) -> Option<(*mut iocb, iocb)> {
    // Reached in two ways, each showing the slot and the iocb are mapped
    // caller memory: (a) the kernel refused this iocb with -EINVAL on a
    // context it confirmed live (`format_and_clamp`): it had read both
    // (get_user of the pointer, copy_from_user of the iocb, put_user of its
    // aio_key all precede the opcode check that produced -EINVAL; a bad
    // address would have been -EFAULT); (b) `refused_is_pi` found both in
    // pages the kernel read in this call.  (A caller racing io_destroy on
    // the same context could still make the kernel answer -EINVAL without
    // reading them: we refuse at least addresses that cannot be user
    // memory.)
    if !sys::plausible_user_range(slot, core::mem::size_of::<usize>()) {
        return None;
    }
    // SAFETY: see above; an unaligned-tolerant copy.
    let user_iocb = unsafe { core::ptr::read_unaligned(slot as *const *mut iocb) };
    if !sys::plausible_user_range(user_iocb as usize, core::mem::size_of::<iocb>()) {
        return None;
    }
    // SAFETY: see above.
    let io = unsafe { core::ptr::read_unaligned(user_iocb as *const iocb) };
    pi_direction(&io).map(|_| (user_iocb, io))
}

/// Validate the PI iocb at `*slot` (refused by the kernel) and the PI
/// iocbs right after it (`remaining` slots from `slot` on belong to the
/// batch), and submit their shadows.
fn try_emulate(format: &Format, ctx: usize, slot: usize, remaining: usize) -> Outcome {
    let Some((user_iocb, io)) = refused_first(slot) else {
        return Outcome::NotPi;
    };
    // Out of memory (the allocator's reserve in use): refused as the
    // kernel refuses a request it cannot allocate, keeping the reserve
    // for the completions of the PI iocbs in flight (see `reserve`).
    if crate::reserve::memory_short() {
        return Outcome::Refused(-libc::EAGAIN);
    }
    let mut mem = CallerMem::new();
    mem.proven(slot, core::mem::size_of::<usize>());
    mem.proven(user_iocb as usize, core::mem::size_of::<iocb>());
    let mut run = vec![(user_iocb, io)];
    if remaining > 1 {
        look_ahead(
            &mut mem,
            slot + core::mem::size_of::<usize>(),
            (remaining - 1).min(LOOKAHEAD),
            &mut run,
        );
    }
    let is_read = pi_direction(&io) == Some(true);
    match prepare_run(format, &mut mem, run) {
        Ok(checked) => {
            // The keys `prepare_run` stored 0 into, as they were: those of
            // iocbs the run does not end up accepting, which the kernel
            // would not have reached, are put back (a failure leaves them).
            let keyed = keys_after_first(&checked.cands);
            match submit_run(ctx, &mut mem, checked) {
                Ok(Sent { count, stop }) => {
                    write_keys(&mut mem, &keyed[(count.max(1) - 1).min(keyed.len())..]);
                    Outcome::Submitted { count, stop }
                }
                Err(e) => {
                    write_keys(&mut mem, &keyed);
                    Outcome::Refused(first_error(ctx, &io, is_read, e))
                }
            }
        }
        Err(e) => Outcome::Refused(first_error(ctx, &io, is_read, e)),
    }
}

/// `Some(true)` for `IO_CMD_PREADVM`, `Some(false)` for `IO_CMD_PWRITEVM`.
fn pi_direction(io: &iocb) -> Option<bool> {
    match io.aio_lio_opcode {
        op if op == io_iocb_cmd::IO_CMD_PREADVM as i16 => Some(true),
        op if op == io_iocb_cmd::IO_CMD_PWRITEVM as i16 => Some(false),
        _ => None,
    }
}

/// Append to `run` the PI iocbs that directly follow, among the `n` slots
/// at `slots`.  The kernel has not read these for us: pointers and iocbs
/// are read from proven pages or with kernel-checked copies.  A bad
/// address or a plain iocb ends the run; the main loop then hands that
/// iocb to the kernel, which gives its own answer.
fn look_ahead(mem: &mut CallerMem, slots: usize, n: usize, run: &mut Vec<(*mut iocb, iocb)>) {
    let mut ptrs = vec![0usize; n];
    {
        // SAFETY: viewing our own array of integers as bytes.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                ptrs.as_mut_ptr() as *mut u8,
                n * core::mem::size_of::<usize>(),
            )
        };
        let whole = [libc::iovec {
            iov_base: slots as *mut c_void,
            iov_len: bytes.len(),
        }];
        if mem.read(&mut [bytes], &whole) != 1 {
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
    let got = {
        let mut dst: Vec<&mut [u8]> = ios.iter_mut().map(iocb_bytes).collect();
        mem.read(&mut dst, &src)
    };
    for (p, io) in ptrs.into_iter().zip(ios).take(got) {
        if pi_direction(&io).is_none() {
            return;
        }
        run.push((p as *mut iocb, io));
    }
}

/// Our own iocb as bytes (to be filled by a kernel-checked copy).
fn iocb_bytes(io: &mut iocb) -> &mut [u8] {
    // SAFETY: an iocb is integers, pointers and a union of those: any bit
    // pattern is valid, so it may be written as bytes.
    unsafe {
        core::slice::from_raw_parts_mut(io as *mut iocb as *mut u8, core::mem::size_of::<iocb>())
    }
}

/// A PI iocb of the run, as it passes the checks.
struct Candidate {
    user_iocb: *mut iocb,
    io: iocb,
    is_read: bool,
    /// The caller's iovec array (address, count).
    iov_addr: usize,
    iovcnt: usize,
    /// Our copy of it: data iovecs, then the PI iovec.
    iovs: Vec<libc::iovec>,
    /// Bytes of tuples the data needs, and where they are.
    need: usize,
    pi_addr: usize,
}

/// The run after a check: keep `cands[..at]`, where `at` is the first iocb
/// that failed (`err`); if that is the first iocb of all, the check's error
/// is the answer.
fn cut(cands: &mut Vec<Candidate>, at: usize, err: i32) -> Result<(), i32> {
    if at == 0 {
        return Err(err);
    }
    cands.truncate(at);
    Ok(())
}

/// Check a run of PI iocbs as the DIX patch does, in order: their fields,
/// fds, iovec arrays (read from proven pages, or with one kernel-checked
/// copy for the run) and lengths; the longest valid prefix is the run.
/// An iocb failing a check ends the run before it, and if it is the first
/// iocb its error is returned: the first iocb thus gets exactly the error
/// it would get alone; the iocbs after the end of the run are examined
/// again (alone or in the next run) when the main loop reaches them.  The
/// caller memory each iocb points to is checked as its shadow is built
/// ([`check_memory`]).
// `c_ulong` is `u64` only on 64-bit targets.
#[allow(clippy::useless_conversion)]
fn prepare_run(
    format: &Format,
    mem: &mut CallerMem,
    run: Vec<(*mut iocb, iocb)>,
) -> Result<Checked, i32> {
    const EINVAL: i32 = -libc::EINVAL;
    let format = *format;
    let iv = format.interval;

    // 1. The iocb's own fields and the fd: open (the kernel checked), for
    //    the right direction, O_DIRECT.  One fcntl per distinct fd: the
    //    run's iocbs are all checked now, as one io_submit.
    let mut cands: Vec<Candidate> = Vec::with_capacity(run.len());
    let mut flags_of: Vec<(i32, c_long)> = Vec::new();
    for (user_iocb, io) in run {
        let is_read = pi_direction(&io).expect("look_ahead keeps PI iocbs only");
        // SAFETY: reading the integer fields of the union: any bit pattern
        // is valid for them.
        let (iov_addr, nbytes) = unsafe { (io.u.c.buf as usize, u64::from(io.u.c.nbytes)) };
        // Past `refused_before_fd` (below), the kernel imports
        // `(unsigned)aio_nbytes` iovecs (`__import_iovec`'s `nr_segs`): a
        // count of 2^32 + 2 is 2.
        let iovcnt = u64::from(nbytes as u32);
        let fl = match flags_of.iter().find(|(fd, _)| *fd == io.aio_fildes) {
            Some(&(_, fl)) => fl,
            None => {
                let fl = sys::fcntl_getfl(io.aio_fildes);
                flags_of.push((io.aio_fildes, fl));
                fl
            }
        };
        let fl = fl as i32;
        let mode = fl & libc::O_ACCMODE;
        let can = if is_read {
            mode == libc::O_RDONLY || mode == libc::O_RDWR
        } else {
            mode == libc::O_WRONLY || mode == libc::O_RDWR
        };
        let err = if refused_before_fd(&io) {
            EINVAL
        } else if fl < 0 {
            fl
        } else if !can {
            -libc::EBADF
        } else if fl & libc::O_DIRECT == 0 || !(1..=UIO_MAXIOV).contains(&iovcnt) {
            // (No iovec, or more than the kernel imports: refused before
            // the array is read.  One iovec is refused in step 3, after
            // its import, as the DIX patch checks `nr_segs < 2` there.)
            EINVAL
        } else {
            0
        };
        if err != 0 {
            let at = cands.len();
            cut(&mut cands, at, err)?;
            break;
        }
        cands.push(Candidate {
            user_iocb,
            io,
            is_read,
            iov_addr,
            iovcnt: iovcnt as usize,
            iovs: Vec::new(),
            need: 0,
            pi_addr: 0,
        });
    }

    // 2. The iovec arrays, which the kernel has not seen: read from proven
    //    pages, the rest with one checked copy.
    {
        let empty = libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        };
        let remote: Vec<libc::iovec> = cands
            .iter()
            .map(|k| libc::iovec {
                iov_base: k.iov_addr as *mut c_void,
                iov_len: k.iovcnt * core::mem::size_of::<libc::iovec>(),
            })
            .collect();
        for k in &mut cands {
            k.iovs = vec![empty; k.iovcnt];
        }
        let mut local: Vec<&mut [u8]> = cands
            .iter_mut()
            .map(|k| {
                // SAFETY: viewing our own iovec array as bytes to fill it;
                // iovecs are a pointer and a length, valid for any bits.
                unsafe {
                    core::slice::from_raw_parts_mut(
                        k.iovs.as_mut_ptr() as *mut u8,
                        k.iovs.len() * core::mem::size_of::<libc::iovec>(),
                    )
                }
            })
            .collect();
        let got = mem.read(&mut local, &remote);
        drop(local);
        if got < cands.len() {
            cut(&mut cands, got, -libc::EFAULT)?;
        }
    }

    // 3. Lengths: the data a multiple of the interval, the offset too, the
    //    PI iovec long enough for it, and the end of the data the kernel
    //    transfers (at most MAX_RW_COUNT bytes) a valid file position (the
    //    kernel's `rw_verify_area`, which the shadow of a write that fails
    //    its PI check does not reach: it has no data).
    //    First every iovec, the PI one included, gets the checks the
    //    kernel's import makes, in its order ([`import_error`]), then an
    //    array of one iovec is refused, as a kernel with DIX passthrough
    //    would: the import comes before its `nr_segs < 2` check and the
    //    lengths, and the shadow never shows the kernel the PI iovec.
    for i in 0..cands.len() {
        let k = &mut cands[i];
        // SAFETY: an integer field of the union.
        let offset = unsafe { k.io.u.c.offset };
        let imported = import_error(&k.iovs);
        if imported != 0 {
            cut(&mut cands, i, imported)?;
            break;
        }
        if k.iovcnt < 2 {
            cut(&mut cands, i, EINVAL)?;
            break;
        }
        let (data, pi) = k.iovs.split_at(k.iovcnt - 1);
        let pi = pi[0];
        let total = data
            .iter()
            .try_fold(0usize, |acc, v| acc.checked_add(v.iov_len));
        let tuples_of = |bytes: usize| bytes / iv * format.tuple_size();
        match total {
            Some(total)
                if pi.iov_len != 0
                    && offset >= 0
                    && (offset as u64).is_multiple_of(iv as u64)
                    && total % iv == 0
                    && (offset as u64).saturating_add(total.min(MAX_RW_COUNT) as u64)
                        <= i64::MAX as u64
                    && pi.iov_len >= tuples_of(total) =>
            {
                // The tuples of the data transferred (at most 64 MiB):
                // all the library reads, checks or stores of them.
                k.need = tuples_of(total.min(MAX_RW_COUNT));
                k.pi_addr = pi.iov_base as usize;
                if total > MAX_RW_COUNT {
                    let last = k.iovcnt - 1;
                    cut_to_max_rw(&mut k.iovs[..last]);
                }
            }
            _ => {
                cut(&mut cands, i, EINVAL)?;
                break;
            }
        }
    }

    // 4. The aio_key of every iocb after the first.  The kernel stores 0
    //    there (put_user) for each iocb it takes, before it looks at the
    //    opcode, and refuses one it cannot store into with -EFAULT; it did
    //    so for the first (the one it refused).  One kernel-checked write
    //    for the run, never a direct store (another thread could protect
    //    the page meanwhile); `try_emulate` puts back the keys of the iocbs
    //    the run does not end up accepting, which the kernel would not have
    //    reached.
    //    Where every one of those keys is 0 already (`io_prep_*` zero
    //    them, and each submission leaves 0) and the kernel's mapping
    //    table shows them all writable (one query, usually also answering
    //    for the run's buffers), the kernel's stores would change nothing
    //    and could not fault: none is made.  A page write-protected by
    //    another thread meanwhile is as if protected after the kernel's
    //    store.
    //    (A run of one iocb has no such keys: nothing to store.)
    let keyed = keys_after_first(&cands);
    let keys_in_place =
        keyed.iter().all(|&(_, key)| key == 0) && mem.writable_by_table(&key_ranges(&keyed));
    if !keys_in_place {
        // A key across two pages (an unaligned iocb) could be written in
        // part where the kernel's single store writes nothing: first write
        // back the keys as they are (no visible change) to learn how many
        // can be written whole.
        let straddles = |&(io, _): &(usize, core::ffi::c_uint)| {
            let v = key_range(io as *mut iocb);
            let a = v.iov_base as usize;
            a / sys::PAGE != (a + v.iov_len - 1) / sys::PAGE
        };
        let whole = if keyed.iter().any(straddles) {
            write_keys(mem, &keyed)
        } else {
            keyed.len()
        };
        let zeroed: Vec<(usize, core::ffi::c_uint)> =
            keyed[..whole].iter().map(|&(io, _)| (io, 0)).collect();
        let got = write_keys(mem, &zeroed);
        if got < cands.len() - 1 {
            cut(&mut cands, 1 + got, -libc::EFAULT)?;
        }
    }

    Ok(Checked { cands, format })
}

/// The caller's `aio_key` field of the iocb at `user_iocb`.
fn key_range(user_iocb: *mut iocb) -> libc::iovec {
    libc::iovec {
        // Address arithmetic only.
        iov_base: (user_iocb as usize + core::mem::offset_of!(iocb, key)) as *mut c_void,
        iov_len: core::mem::size_of::<core::ffi::c_uint>(),
    }
}

/// The iocbs of a run after its first (the one the kernel refused, which
/// stored its key itself), with their `aio_key` as read at submission:
/// (address of the iocb, key).
fn keys_after_first(cands: &[Candidate]) -> Vec<(usize, core::ffi::c_uint)> {
    cands
        .iter()
        .skip(1)
        .map(|k| (k.user_iocb as usize, k.io.key))
        .collect()
}

/// Store each key of `keyed` (address of an iocb, value) into that iocb's
/// `aio_key`, in order, with one kernel-checked write (never a direct
/// store: another thread could protect the page meanwhile).  Returns how
/// many were written whole.
fn write_keys(mem: &mut CallerMem, keyed: &[(usize, core::ffi::c_uint)]) -> usize {
    if keyed.is_empty() {
        return 0;
    }
    // Zeros (the kernel's own store for each iocb it takes) go one small
    // system call a key where there are few ([`sys::store_zero_u32`]: no
    // pinning, no `getpid`); in QD8 PI reads the copy below was ~4% of the
    // CPU, for runs of two or three iocbs.
    if keyed.len() <= ZERO_KEYS_ONE_BY_ONE && keyed.iter().all(|&(_, k)| k == 0) {
        for (n, &(io, _)) in keyed.iter().enumerate() {
            match sys::store_zero_u32(key_range(io as *mut iocb).iov_base as usize) {
                Some(true) => {}
                Some(false) => return n,
                None => return n + write_keys_copied(mem, &keyed[n..]),
            }
        }
        return keyed.len();
    }
    write_keys_copied(mem, keyed)
}

/// Runs of more keys than this to zero take one kernel-checked copy.
const ZERO_KEYS_ONE_BY_ONE: usize = 8;

/// [`write_keys`] with one kernel-checked copy.
fn write_keys_copied(mem: &mut CallerMem, keyed: &[(usize, core::ffi::c_uint)]) -> usize {
    let bytes: Vec<u8> = keyed.iter().flat_map(|&(_, k)| k.to_ne_bytes()).collect();
    mem.write(&bytes, &key_ranges(keyed))
}

/// The `aio_key` fields of the iocbs of `keyed` ([`key_range`] of each).
fn key_ranges(keyed: &[(usize, core::ffi::c_uint)]) -> Vec<libc::iovec> {
    keyed
        .iter()
        .map(|&(io, _)| key_range(io as *mut iocb))
        .collect()
}

/// The caller's PI iocb as a plain `PREADV`/`PWRITEV`: same fd, offset,
/// `RWF_*` flags, I/O priority, iocb flags and eventfd; no iovec array yet
/// (the caller of this sets `buf` and `nbytes`) and no `aio_data`.
fn plain_twin(io: &iocb, is_read: bool) -> iocb {
    let mut twin = iocb::zeroed();
    twin.aio_lio_opcode = if is_read {
        io_iocb_cmd::IO_CMD_PREADV as i16
    } else {
        io_iocb_cmd::IO_CMD_PWRITEV as i16
    };
    twin.aio_fildes = io.aio_fildes;
    twin.aio_rw_flags = io.aio_rw_flags;
    twin.aio_reqprio = io.aio_reqprio;
    // SAFETY: copying integer fields of the union.
    unsafe {
        twin.u.c.offset = io.u.c.offset;
        twin.u.c.flags = io.u.c.flags;
        twin.u.c.resfd = io.u.c.resfd;
    }
    twin
}

/// The kernel's answer to the checks it makes on a read or write before it
/// reads the iovec array: the fd, the eventfd (`IOCB_FLAG_RESFD`), `RWF_*`
/// flags, I/O priority, the fd's access mode.  They come before every check
/// of the PI rules in a kernel with DIX passthrough, so the first iocb of a
/// run refused with `err` gets the kernel's error instead where these fail.
/// Asked with a twin of the iocb whose iovec array is NULL: the kernel
/// answers `-EFAULT` for the array when all those checks pass, at
/// submission, so the twin never becomes an event.  Only on the error path.
///
/// Under valgrind the array is instead one iovec too many (`UIO_MAXIOV +
/// 1` empty ones, which the kernel refuses with `-EINVAL` before reading
/// them): valgrind's model of `io_submit` reads every iovec array itself
/// and crashed on NULL (a program with a refused PI iocb died under
/// valgrind, where the system libaio's runs on).  `-EINVAL` is then also
/// what an invalid I/O priority or eventfd gets, so under valgrind those
/// two report `err` instead, when `err` is not `-EINVAL` itself.
fn first_error(ctx: usize, io: &iocb, is_read: bool, err: i32) -> i32 {
    /// `UIO_MAXIOV + 1` empty iovecs (pointer, length).
    static TOO_MANY: [[usize; 2]; UIO_MAXIOV as usize + 1] = [[0; 2]; UIO_MAXIOV as usize + 1];
    // Those come before the fd and the eventfd: -EINVAL whatever the twin
    // (which has neither) would be answered.
    if refused_before_fd(io) {
        return -libc::EINVAL;
    }
    let mut probe = plain_twin(io, is_read);
    let passed = if crate::valgrind::running() {
        probe.u.c.buf = TOO_MANY.as_ptr() as *mut c_void;
        probe.u.c.nbytes = TOO_MANY.len() as _;
        -(libc::EINVAL as c_long)
    } else {
        probe.u.c.buf = core::ptr::null_mut();
        probe.u.c.nbytes = 1;
        -(libc::EFAULT as c_long)
    };
    let mut list = [core::ptr::addr_of_mut!(probe)];
    let r = sys::io_submit(ctx, 1, list.as_mut_ptr() as usize);
    match r {
        // Every check before the iovec array passed (or the ring filled up
        // meanwhile): our error stands.
        r if r == passed || r == -(libc::EAGAIN as c_long) => err,
        r if r < 0 => r as i32,
        // Cannot happen (the array is NULL); were it accepted, its event
        // would carry an `obj` no caller knows: say nothing more.
        _ => err,
    }
}

/// A run of PI iocbs that passed the checks of their fields, fds, iovec
/// arrays and lengths.
struct Checked {
    cands: Vec<Candidate>,
    format: Format,
}

/// Whether the kernel's `io_submit_one` refuses `io` with `-EINVAL`
/// before it looks up the fd or the eventfd: a set `aio_reserved2`, or an
/// `aio_nbytes` negative as `ssize_t`.
// `c_ulong` is `u64` only on 64-bit targets.
#[allow(clippy::useless_conversion)]
fn refused_before_fd(io: &iocb) -> bool {
    // SAFETY: integer fields of the union.
    let (reserved2, nbytes) = unsafe { (io.u.c.__pad3, u64::from(io.u.c.nbytes)) };
    reserved2 != 0 || (nbytes as i64) < 0
}

/// The kernel's answer to importing the iovec array `iovs` (its
/// `iovec_from_user` and `__import_iovec`): `-EINVAL` if any length is
/// negative as `ssize_t` (found while the array is copied in, before any
/// address is looked at), else `-EFAULT` for the first range beyond user
/// space, else 0.  Pure arithmetic ([`sys::iovec_import_error`]).
fn import_error(iovs: &[libc::iovec]) -> i32 {
    if iovs.iter().any(|v| (v.iov_len as isize) < 0) {
        return -libc::EINVAL;
    }
    iovs.iter()
        .map(sys::iovec_import_error)
        .find(|&e| e != 0)
        .unwrap_or(0)
}

/// Cut the data iovecs `data` (more than [`MAX_RW_COUNT`] bytes in all) to
/// the first `MAX_RW_COUNT` bytes, as the kernel's `__import_iovec` cuts a
/// plain read or write (after its import checks, made for every iovec by
/// [`import_error`]): the one that crosses the limit is shortened and
/// those after it emptied.  So the shadow transfers
/// what the plain op would, and the tuples the library reads and checks
/// (a write) or stores (a read) are those of the data transferred; the
/// PI iovec must still hold tuples for all of the data.
fn cut_to_max_rw(data: &mut [libc::iovec]) {
    let mut left = MAX_RW_COUNT;
    for v in data {
        v.iov_len = v.iov_len.min(left);
        left -= v.iov_len;
    }
}

/// Check the caller memory of each iocb of the run, verify the writes'
/// tuples and submit the shadows, in order, in groups: a group is
/// submitted before the checks and verification (a CRC over all its data)
/// of the run's 1st, 2nd, 3rd, 5th, 9th, 17th, ... write
/// ([`new_group_before_write`]), so the first I/O never waits for more
/// than one write's CRC, and a run of `w` writes costs about `log2(w) + 1`
/// `io_submit` calls instead of `w`.
///
/// Measured (`ctests/bench/pi_bench.c`, 64 KiB O_DIRECT, PI/plain medians
/// of pairwise round ratios, five alternating runs per variant; the bench
/// then wrote every slot from one shared buffer, proven once per
/// `io_submit`, so absolute write ratios are flattered; the variants were
/// compared under those same conditions and not re-measured since):
///
/// | variant | QD 8 writes | QD 16 writes | QD 8 alternating | QD 16 alternating |
/// |---|---|---|---|---|
/// | one group before the first write, one after (before) | 0.85 | 0.81 | 0.97 / 0.94 | 0.89 / 0.86 |
/// | this | 1.00 | 1.00 | 0.96 / 0.87 | 0.83 / 0.91 |
/// | a group before every write | 1.01 | 0.97 | 0.92 | 0.87 |
/// | one group before the 1st and the 2nd write | 0.97 | 0.87 | 0.92 | 0.91 |
///
/// A stream of writes waited for every write's CRC before its first I/O
/// went out; alternating streams are the same within this disk's noise
/// (two series of five runs each shown).  One group for the whole run was
/// ~5% slower still (measured earlier).
///
/// An iocb whose buffers fail their check is submitted all the same, as a
/// shadow that transfers nothing and fails with `-EFAULT` in its event
/// ([`check_memory`]), as the kernel fails the same plain I/O.  A group the
/// kernel refuses (say, a full ring) ends the run: the groups before it are
/// already submitted, in order, so the accepted iocbs are always a prefix
/// of the run (and its error is the answer if it is the first).  Nothing
/// of an iocb after the end of the run is touched.
fn submit_run(ctx: usize, mem: &mut CallerMem, checked: Checked) -> Result<Sent, i32> {
    let Checked { cands, format } = checked;
    let mut group: Vec<Pending> = Vec::new();
    let mut count = 0;
    let mut writes = 0;
    for k in cands {
        if !k.is_read {
            writes += 1;
            if new_group_before_write(writes - 1) {
                if let Some(end) = flush(ctx, core::mem::take(&mut group), &mut count) {
                    return end;
                }
            }
        }
        // Out of memory for its tuples: refused with -EAGAIN, as the
        // kernel refuses a request it cannot allocate, the iocbs before it
        // accepted (the group built so far goes out first).
        let Some(kind) = check_memory(mem, &k, &format) else {
            if let Some(end) = flush(ctx, core::mem::take(&mut group), &mut count) {
                return end;
            }
            return ended(count, -libc::EAGAIN);
        };
        group.push(Pending {
            rec: Box::new(Record {
                shadow: iocb::zeroed(),
                ctx: 0,
                seq: 0,
                user_iocb: core::ptr::null_mut(),
                user_data: core::ptr::null_mut(),
                kind,
            }),
            user_iocb: k.user_iocb,
            io: k.io,
        });
    }
    match flush(ctx, group, &mut count) {
        Some(end) => end,
        None => Ok(Sent { count, stop: false }),
    }
}

/// Whether the shadows built so far go to the kernel before the run's
/// write number `writes_before + 1` is checked and verified: before the
/// 1st, 2nd, 3rd, 5th, 9th, ... write (see [`submit_run`]).
fn new_group_before_write(writes_before: usize) -> bool {
    writes_before == 0 || writes_before.is_power_of_two()
}

/// Submit `group` (if not empty), adding what the kernel accepted to
/// `count` (the run's so far); `Some(end)` if the run must end here.
fn flush(ctx: usize, group: Vec<Pending>, count: &mut usize) -> Option<Result<Sent, i32>> {
    if group.is_empty() {
        return None;
    }
    match submit_shadows(ctx, group) {
        Ok(Sent { count: n, stop }) => {
            *count += n;
            stop.then_some(Ok(Sent {
                count: *count,
                stop: true,
            }))
        }
        Err(e) => Some(ended(*count, e)),
    }
}

/// A run ended by an iocb refused with `err` after `count` accepted: those
/// are the answer, or `err` if there are none (the kernel's rule).
fn ended(count: usize, err: i32) -> Result<Sent, i32> {
    match count {
        0 => Err(err),
        _ => Ok(Sent { count, stop: true }),
    }
}

/// The caller memory of one checked PI iocb, and what its shadow does:
/// * a read: its PI buffer proven writable now (the kernel faults it in
///   for writing, or writes zeros), so the tuples can be stored at
///   completion;
/// * a write: every page of its data proven readable by the kernel (no
///   copy; pages proven earlier in this call, e.g. a buffer shared by
///   several writes, are not probed again), its tuples copied, and
///   verified against the data in place.
///
/// Where the kernel cannot show that memory usable, the iocb is accepted
/// and fails in its event with `-EFAULT` ([`Kind::Failed`]), as the same
/// plain I/O does: the kernel refuses a plain read or write at submit only
/// for its iocb and iovec array (checked before this), and fails it in the
/// event for its buffers.  (Until an independent tester's
/// `r1_wfault_batch.c`, such an iocb was refused at submit with -EFAULT,
/// cutting the batch there, while a read into bad data completed with
/// -EFAULT.)
///
/// `None`: no memory for a write's copy of its tuples (its size comes
/// from the iocb: 32 MiB for the largest write), the one block here that
/// the allocator's reserve may not hold; the iocb is then refused.
fn check_memory(mem: &mut CallerMem, k: &Candidate, format: &Format) -> Option<Kind> {
    let fault = Kind::Failed {
        errno: -libc::EFAULT,
        read: k.is_read,
    };
    // SAFETY: an integer field of the union.
    let offset = unsafe { k.io.u.c.offset };
    let seed = offset as u64 / format.interval as u64;
    let pi = libc::iovec {
        iov_base: k.pi_addr as *mut c_void,
        iov_len: k.need,
    };
    let data = &k.iovs[..k.iovcnt - 1];
    if k.is_read {
        if mem.prove_writable(core::slice::from_ref(&pi)) != 1 {
            return Some(fault);
        }
        return Some(Kind::Read {
            data: data.to_vec(),
            pi_addr: k.pi_addr,
            pi_len: k.need,
            format: *format,
            seed,
        });
    }
    let mut tuples = Vec::new();
    tuples.try_reserve_exact(k.need).ok()?;
    tuples.resize(k.need, 0u8);
    if !mem.read_and_probe(&mut tuples, pi, data) {
        return Some(fault);
    }
    let segs: Vec<&[u8]> = data
        .iter()
        .filter(|v| v.iov_len > 0)
        .map(|v| {
            // SAFETY: proven readable by the kernel in this call (just
            // above); the caller must not unmap buffers of an I/O it is
            // submitting (the kernel reads them for the write), nor write
            // them during io_submit.  The slices are only read (any byte is
            // a valid `u8`) and are dropped before the record is published.
            unsafe { core::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }
        })
        .collect();
    Some(if format.verify_segments(&segs, seed, &tuples).is_ok() {
        Kind::Write {
            data: data.to_vec(),
        }
    } else {
        Kind::Failed {
            errno: -libc::EILSEQ,
            read: false,
        }
    })
}

/// Fill a pending record's shadow iocb.  Returns the record, now a raw
/// pointer: the kernel will write to its shadow.
fn fill_shadow(ctx: usize, p: Pending) -> *mut Record {
    let Pending {
        mut rec,
        user_iocb,
        io,
    } = p;
    let io = &io;
    rec.ctx = ctx;
    rec.seq = RECORD_SEQ.fetch_add(1, Ordering::Relaxed);
    rec.user_iocb = user_iocb;
    rec.user_data = io.data;
    // Every shadow is the caller's iocb as a plain vectored read or write,
    // so the kernel makes the submit-time checks the plain op gets (RWF_*
    // flags, I/O priority, eventfd, access) and answers them as it would
    // answer that op.
    let is_read = match rec.kind {
        Kind::Read { .. } | Kind::Failed { read: true, .. } => true,
        Kind::Write { .. } | Kind::Failed { read: false, .. } => false,
    };
    let mut sh = plain_twin(io, is_read);
    match &rec.kind {
        Kind::Read { data, .. } | Kind::Write { data } => {
            sh.u.c.buf = data.as_ptr() as *mut c_void;
            sh.u.c.nbytes = data.len() as _;
        }
        // A write whose PI does not verify, or an iocb whose caller memory
        // is bad: a write (or read) of no iovecs, which passes the same
        // checks as the real one, transfers nothing and changes nothing (a
        // write returns before the file's times are touched), and
        // completes at once; its event becomes -EILSEQ or -EFAULT.  (The
        // position check, which needs the real length, was made when the
        // run was checked.)  The kernel reads no iovec for a count of 0;
        // the address is a valid one all the same (an empty iovec's bytes).
        Kind::Failed { .. } => {
            static NO_IOVEC: [usize; 2] = [0; 2];
            sh.u.c.buf = NO_IOVEC.as_ptr() as *mut c_void;
            sh.u.c.nbytes = 0;
        }
    }
    sh.data = shadow_tag(rec.seq) as *mut c_void;
    rec.shadow = sh;
    Box::into_raw(rec)
}

/// Publish the records of a run and submit their shadows in one call.
fn submit_shadows(ctx: usize, run: Vec<Pending>) -> Result<Sent, i32> {
    // A context from a raw io_setup(2) never registered the fork handler
    // that resets the records' map in a child.
    context::ensure_atfork();
    let raws: Vec<*mut Record> = run.into_iter().map(|p| fill_shadow(ctx, p)).collect();
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
        return Err(if r < 0 { r as i32 } else { -libc::EAGAIN });
    }
    Ok(Sent {
        count: done,
        stop: done < shadows.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::{new_group_before_write, refused_is_pi};
    use crate::abi::{io_iocb_cmd, iocb};

    #[test]
    fn a_refused_iocb_is_read_only_from_pages_the_kernel_read() {
        let _layout = crate::sys::layout_lock();
        use crate::sys::PAGE;
        const SLOT: usize = core::mem::size_of::<usize>();
        // Two pages: iocbs at the start of the first, the slot array
        // placed so that a slot can sit right after the page boundary.
        let base = crate::sys::anon_map(2 * PAGE, libc::PROT_READ | libc::PROT_WRITE);
        let ios = base as *mut iocb;
        let set = |at: usize, i: usize, v: usize| {
            // SAFETY: inside our mapping.
            unsafe { ((at + i * SLOT) as *mut usize).write_unaligned(v) }
        };
        for i in 0..3 {
            // SAFETY: three iocbs fit in the first page of our mapping.
            unsafe { ios.add(i).write(iocb::zeroed()) };
            set(base + 1024, i, ios.wrapping_add(i) as usize);
        }
        let op = |i: usize, cmd: io_iocb_cmd| {
            // SAFETY: as above.
            unsafe { (*ios.add(i)).aio_lio_opcode = cmd as i16 }
        };
        op(2, io_iocb_cmd::IO_CMD_PREAD);
        assert_eq!(
            refused_is_pi(base + 1024, 2),
            Some(false),
            "plain, same page"
        );
        op(2, io_iocb_cmd::IO_CMD_PREADVM);
        assert_eq!(refused_is_pi(base + 1024, 2), Some(true), "a PI iocb");
        op(2, io_iocb_cmd::IO_CMD_PWRITEVM);
        assert_eq!(refused_is_pi(base + 1024, 2), Some(true), "a PI iocb");
        assert_eq!(refused_is_pi(base + 1024, 0), None, "nothing accepted");
        // The refused slot on the next page: not read.
        let slots = base + PAGE - 2 * SLOT;
        for i in 0..3 {
            set(slots, i, ios.wrapping_add(i) as usize);
        }
        op(2, io_iocb_cmd::IO_CMD_PREAD);
        assert_eq!(refused_is_pi(slots, 2), None, "slot 2 is on another page");
        assert_eq!(refused_is_pi(slots, 1), Some(false), "slot 1 is not");
        // The refused iocb on a page no accepted iocb touched: not read.
        set(base + 1024, 2, base + PAGE + 64);
        assert_eq!(refused_is_pi(base + 1024, 2), None, "iocb on another page");
        // The refused iocb straddling into a page no accepted iocb touched.
        set(base + 1024, 2, base + PAGE - 32);
        assert_eq!(refused_is_pi(base + 1024, 2), None, "iocb's second page");
        // SAFETY: our mapping, no references into it remain.
        unsafe { libc::munmap(base as *mut libc::c_void, 2 * PAGE) };
    }

    /// The group sizes a run of `w` writes is submitted in.
    fn groups(w: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        for i in 0..w {
            if new_group_before_write(i) && i > 0 {
                sizes.push(i - sizes.iter().sum::<usize>());
            }
        }
        if w > 0 {
            sizes.push(w - sizes.iter().sum::<usize>());
        }
        sizes
    }

    #[test]
    fn writes_go_out_in_doubling_groups() {
        // The first write goes out alone (after only its own CRC), then
        // groups double: about log2(w) + 1 io_submit calls for w writes.
        assert_eq!(groups(1), [1]);
        assert_eq!(groups(2), [1, 1]);
        assert_eq!(groups(3), [1, 1, 1]);
        assert_eq!(groups(8), [1, 1, 2, 4]);
        assert_eq!(groups(9), [1, 1, 2, 4, 1]);
        assert_eq!(groups(64), [1, 1, 2, 4, 8, 16, 32]);
        // Reads before the first write go out before its verification.
        assert!(new_group_before_write(0));
    }
}
