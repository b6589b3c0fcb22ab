//! The reap side of PI emulation: recognise shadow completions among the
//! events just reaped, compute read PI, and give each event back the
//! caller's `obj` and `data`; free the records of a destroyed context.

use crate::abi::io_event;
use crate::pi::caller::CallerMem;
use crate::pi::format::{Format, MAX_INTERVAL};
use crate::pi::record::{live, shadow_tag, Kind, Record, RecordPtr, IN_FLIGHT, RECORD_SEQ};
use crate::sys;
use core::ffi::{c_long, c_void};
use core::mem::MaybeUninit;
use core::sync::atomic::Ordering;
use std::collections::btree_map::Entry;

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
    // The record map's lock (a futex wait when contended) and the
    // allocations below may set errno; the reap must not.
    let _errno = sys::ErrnoGuard::save();
    // (A signal handler that interrupted this thread while it held the
    // record map never gets here: `reap` answers it before taking any
    // event.)
    // The kernel (or the ring reader) has just stored `n` events there, so
    // the range is the caller's writable event array; read and written
    // unaligned (C does not promise `events` is aligned).
    let event = |i: usize| events.wrapping_add(i);
    // The events are taken a batch at a time, into an array on the stack:
    // no block whose size depends on how many were reaped (out of memory,
    // the allocator's reserve must still serve these reaps).
    // Left uninitialized: a reap of one event uses one slot, and zeroing
    // all 1 KiB on every reap was most of the PI stream's `memset` samples
    // in a `perf` profile at QD1 on the disk (the reap runs right after the
    // device's wait, with this stack cold).
    const BATCH: usize = 64;
    let mut mine = [const { MaybeUninit::<(usize, *mut Record)>::uninit() }; BATCH];
    let mut next = 0;
    // One set of proofs for the whole reap: the reads reaped together
    // usually have their buffers in one mapping, which one query proves.
    let mut mem = CallerMem::new();
    while next < n {
        let mut taken = 0;
        {
            let mut map = live();
            if map.is_empty() {
                return;
            }
            while next < n && taken < BATCH {
                // SAFETY: event `next` < n of that array (above).
                let ev = unsafe { core::ptr::read_unaligned(event(next)) };
                if let Entry::Occupied(e) = map.entry(ev.obj as usize) {
                    // SAFETY: records in the map are owned by the map,
                    // whose lock we hold.
                    if shadow_tag(unsafe { (*e.get().0).seq }) == ev.data as usize {
                        mine[taken].write((next, e.remove().0));
                        taken += 1;
                    }
                }
                next += 1;
            }
        }
        // The PI computation runs outside the lock: the records are ours.
        for slot in &mine[..taken] {
            // SAFETY: slots below `taken` were written just above.
            let (i, p) = unsafe { slot.assume_init() };
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: removed from the map by us: we own the record.
            let rec = unsafe { Box::from_raw(p) };
            // SAFETY: event i < n of the caller's array (above), unaligned.
            let mut ev = unsafe { core::ptr::read_unaligned(event(i)) };
            translate(&mut ev, &rec, &mut mem);
            // SAFETY: as above.
            unsafe { core::ptr::write_unaligned(event(i), ev) };
        }
    }
}

/// Rewrite a shadow's event into the caller's.
fn translate(ev: &mut io_event, rec: &Record, mem: &mut CallerMem) {
    ev.obj = rec.user_iocb;
    ev.data = rec.user_data;
    match &rec.kind {
        Kind::Failed { errno, .. } => {
            ev.res = (*errno as c_long) as _;
            ev.res2 = 0;
        }
        Kind::Write { .. } => {}
        Kind::Read {
            data,
            pi_addr,
            pi_len,
            format,
            seed,
        } => {
            let res = ev.res as c_long;
            let read = res.max(0) as usize;
            if !store_read_pi(mem, data, read, *pi_addr, *pi_len, format, *seed) {
                ev.res = (-(libc::EFAULT as c_long)) as _;
                ev.res2 = 0;
            }
        }
    }
}

/// Fill the caller's PI buffer (`pi_len` bytes: the tuples of the whole
/// data): tuples for the intervals actually read (see [`fill_read_pi`]),
/// zeros for the rest (none read, a short read, or an error: `res` = 0).
/// `false` if the caller unmapped or protected its buffers while the read
/// was in flight: a PI buffer no longer writable (nothing stored), or data
/// no longer readable (zeros stored).  A DIX kernel pins the pages at
/// submit and fills them anyway; we cannot pin, so such an event reports
/// `-EFAULT` instead of the library faulting in the reaping thread.
fn store_read_pi(
    mem: &mut CallerMem,
    data: &[libc::iovec],
    res: usize,
    pi_addr: usize,
    pi_len: usize,
    format: &Format,
    seed: u64,
) -> bool {
    if pi_len == 0 {
        return true;
    }
    let range = libc::iovec {
        iov_base: pi_addr as *mut c_void,
        iov_len: pi_len,
    };
    // How many intervals were read (`res` never exceeds the data length,
    // whose tuples fill the PI buffer; the `min` only keeps a kernel
    // surprise in bounds), and the data ranges holding them.
    let n = res
        .div_ceil(format.interval)
        .min(pi_len / format.tuple_size());
    let read = data_read(data, res.min(n * format.interval));
    // The kernel has just written the data, but the caller may have
    // unmapped or protected it while the read was in flight (its mistake;
    // a plain read's data would simply be lost with the pages).  Reading
    // it without asking would crash the reaping thread instead of
    // reporting -EFAULT.  The mapping table answers for all of it with one
    // query where it lies in plain anonymous memory (and then, as a rule,
    // for the tuples too); else one small system call a page
    // (`CallerMem::prove_readable`).
    let readable = mem.prove_readable(&read);
    // The tuples were proven writable at submit, but the caller could have
    // unmapped or protected them since: ask again (the mapping table, or
    // the kernel stores into each page: we overwrite the range next).
    // Where that is refused (the pages really gone, or a call the
    // environment forbids), the tuples go through a kernel-checked copy,
    // which answers for certain.
    if mem.prove_writable_now(&range) {
        // SAFETY: the kernel has just shown every page of these `pi_len`
        // bytes mapped and writable.  Only a thread of the caller
        // unmapping them at this very moment, while reaping the I/O they
        // belong to, could undo that.
        let out = unsafe { core::slice::from_raw_parts_mut(pi_addr as *mut u8, pi_len) };
        return fill_read_pi(&read, readable, n, out, format, seed);
    }
    store_read_pi_by_copy(&read, readable, n, range, format, seed)
}

/// [`fill_read_pi`] into the caller's PI buffer `range` through
/// kernel-checked copies (where its pages could not be proven writable),
/// a piece at a time from the stack: no block as large as the tuples (32
/// MiB for the largest read), which out of memory could not be had.
/// `false` if a copy failed or the data is no longer readable.
fn store_read_pi_by_copy(
    read: &[libc::iovec],
    readable: bool,
    n: usize,
    range: libc::iovec,
    format: &Format,
    seed: u64,
) -> bool {
    let vm = sys::SelfMem::new();
    let ts = format.tuple_size();
    let at = |first: usize, len: usize| libc::iovec {
        iov_base: (range.iov_base as usize + first * ts) as *mut c_void,
        iov_len: len,
    };
    if n == 0 || !readable {
        return vm.write_zeros(range) && (n == 0 || readable);
    }
    let mut piece = [0u8; 4096];
    let stored = with_read_segments(read, n, format, |segs| {
        format.generate_segments_in_pieces(segs, seed, &mut piece, |first, tuples| {
            vm.write_ranges(tuples, &[at(first, tuples.len())]) == 1
        })
    });
    stored && vm.write_zeros(at(n, range.iov_len - n * ts))
}

/// `f` of the data `read` as slices, followed by the zeros that pad a last
/// interval read only in part (see [`fill_read_pi`]), `n` intervals in all.
fn with_read_segments<R>(
    read: &[libc::iovec],
    n: usize,
    format: &Format,
    f: impl FnOnce(&[&[u8]]) -> R,
) -> R {
    static ZEROS: [u8; MAX_INTERVAL] = [0; MAX_INTERVAL];
    // Zeros after a last interval read only in part (less than one
    // interval: `read` holds `res` bytes, at most the data's length).
    let pad = (n * format.interval)
        .saturating_sub(read.iter().map(|v| v.iov_len).sum::<usize>())
        .min(ZEROS.len());
    let mut segs: Vec<&[u8]> = Vec::with_capacity(read.len() + 1);
    for v in read {
        // SAFETY: the kernel has just read every page of these ranges
        // (`store_read_pi`), and they are the caller's buffers of the I/O
        // being reaped.  Only a thread of the caller unmapping them at
        // this very moment, while reaping that I/O, could undo that.
        segs.push(unsafe { core::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) });
    }
    segs.push(&ZEROS[..pad]);
    f(&segs)
}

/// The first `len` bytes of the data buffers `data` (what the kernel
/// read), as ranges.
fn data_read(data: &[libc::iovec], mut left: usize) -> Vec<libc::iovec> {
    let mut read: Vec<libc::iovec> = Vec::with_capacity(data.len());
    for v in data {
        if left == 0 {
            break;
        }
        let k = v.iov_len.min(left);
        if k > 0 {
            read.push(libc::iovec {
                iov_base: v.iov_base,
                iov_len: k,
            });
            left -= k;
        }
    }
    read
}

/// The PI of a read into `out` (see [`store_read_pi`]): a tuple for each
/// of the `n` intervals read (the data `read`, proven `readable` or not),
/// zeros after them.  A last interval read only in part (a read that ends
/// at an end of file which is not a multiple of the interval) gets the
/// tuple of its bytes padded with zeros: what a device with PI holds for
/// that sector, whose tail past the end of file the filesystem keeps
/// zeroed; the caller's buffer past `res` is not read.  `false`, with
/// `out` all zeros, if the data read is no longer readable.
fn fill_read_pi(
    read: &[libc::iovec],
    readable: bool,
    n: usize,
    out: &mut [u8],
    format: &Format,
    seed: u64,
) -> bool {
    let (tuples, rest) = out.split_at_mut(n * format.tuple_size());
    rest.fill(0);
    if n == 0 {
        return true;
    }
    if !readable {
        tuples.fill(0);
        return false;
    }
    with_read_segments(read, n, format, |segs| {
        format.generate_segments(segs, seed, tuples)
    });
    true
}

/// `RECORD_SEQ` now: call before the `io_destroy(2)` system call and pass
/// to [`forget_context`].
pub fn records_so_far() -> u64 {
    RECORD_SEQ.load(Ordering::Relaxed)
}

/// After a successful `io_destroy(ctx)`: the kernel has waited for every
/// in-flight request and discarded their events, so free their records:
/// those with this context address created before the destroy began
/// (`before`, from [`records_so_far`]).  The kernel unmaps the ring at
/// the start of the destroy and then waits, so another thread's
/// `io_setup` can get the same address meanwhile; the records of that new
/// context are newer (see `record`) and stay.
pub fn forget_context(ctx: usize, before: u64) {
    if IN_FLIGHT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let _errno = sys::ErrnoGuard::save();
    // From a signal handler that interrupted this thread while it held the
    // map, the map cannot be locked: the destroyed context's records stay
    // (leaked; their addresses stay allocated, so no later shadow is taken
    // for one).
    if crate::pi::record::interrupted_pi_code() {
        return;
    }
    let mut gone = Vec::new();
    {
        let mut map = live();
        map.retain(|_, p| {
            // SAFETY: records in the map are owned by the map, whose lock
            // we hold.
            let mine = unsafe { (*p.0).ctx == ctx && (*p.0).seq < before };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::iocb;
    use core::sync::atomic::AtomicUsize;

    /// Publish a record as `submit_shadows` does; returns the event its
    /// shadow's completion would carry (`res` as given).
    fn publish(kind: Kind, user_iocb: usize, user_data: usize, res: i64) -> io_event {
        let seq = RECORD_SEQ.fetch_add(1, Ordering::Relaxed);
        let raw = Box::into_raw(Box::new(Record {
            shadow: iocb::zeroed(),
            ctx: 0x7e57_0000,
            seq,
            user_iocb: user_iocb as *mut iocb,
            user_data: user_data as *mut c_void,
            kind,
        }));
        // SAFETY: a live allocation we own; taking a field's address
        // creates no reference.
        let shadow = unsafe { core::ptr::addr_of_mut!((*raw).shadow) } as usize;
        live().insert(shadow, RecordPtr(raw));
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        let mut ev = io_event::zeroed();
        ev.obj = shadow as _;
        ev.data = shadow_tag(seq) as _;
        ev.res = res as _;
        ev
    }

    /// An events array at an odd address (C allows it; the kernel and the
    /// ring reader fill it byte-wise): the shadow events in it are still
    /// recognised and translated, and a read's PI is filled.  The events
    /// must be read and written unaligned: in the debug build that `make
    /// check` also tests (`cargo test --lib`), a dereference of a
    /// misaligned `io_event` pointer (`*p`, `&*p`, `(*p).res`) aborts on
    /// Rust's alignment check, so this test fails if `complete_slow` ever
    /// makes one (checked by making one).  In a release build it would pass
    /// regardless: x86 tolerates the access, though the compiler need not.
    #[test]
    fn translates_events_at_an_odd_address() {
        let data = vec![0xA5u8; 1024];
        let mut pi = vec![0xEEu8; 16];
        let read = publish(
            Kind::Read {
                data: vec![libc::iovec {
                    iov_base: data.as_ptr() as *mut c_void,
                    iov_len: data.len(),
                }],
                pi_addr: pi.as_mut_ptr() as usize,
                pi_len: pi.len(),
                format: Format::DEFAULT,
                seed: 7,
            },
            0x1000,
            0xD0,
            1024,
        );
        let rejected = publish(
            Kind::Failed {
                errno: -libc::EILSEQ,
                read: false,
            },
            0x2000,
            0xD1,
            0,
        );
        // Two events at offset 4 of an 8-aligned buffer.
        let mut raw = vec![0u64; 2 * core::mem::size_of::<io_event>() / 8 + 1];
        let base = raw.as_mut_ptr() as usize + 4;
        let at = |i: usize| (base + i * core::mem::size_of::<io_event>()) as *mut io_event;
        // SAFETY: both lie inside `raw` (one spare u64 covers the offset).
        unsafe {
            core::ptr::write_unaligned(at(0), read);
            core::ptr::write_unaligned(at(1), rejected);
        }
        complete(at(0), 2);
        // SAFETY: as above.
        let (r, j) = unsafe {
            (
                core::ptr::read_unaligned(at(0)),
                core::ptr::read_unaligned(at(1)),
            )
        };
        assert_eq!(
            (r.obj as usize, r.data as usize, r.res as i64),
            (0x1000, 0xD0, 1024)
        );
        assert_eq!(
            (j.obj as usize, j.data as usize, j.res as i64),
            (0x2000, 0xD1, -(libc::EILSEQ as i64))
        );
        let mut want = [0u8; 16];
        Format::DEFAULT.generate(&data, 7, &mut want);
        assert_eq!(pi, want);
    }

    /// The PI of a read stored through kernel-checked copies a piece at a
    /// time (where the PI buffer could not be proven writable) is what
    /// `fill_read_pi` computes in one buffer: tuples of many pieces (3,000
    /// intervals: 24,000 bytes of tuples, six pieces), a last interval read
    /// in part, zeros after the intervals read, and zeros for data no
    /// longer readable.  A PI buffer running into an unmapped page is
    /// `false`.
    #[test]
    fn read_pi_stored_in_pieces_is_the_pi_computed_whole() {
        let _layout = sys::layout_lock();
        const IV: usize = 512;
        let f = Format::DEFAULT;
        let ts = f.tuple_size();
        // Data in three iovecs; its last interval read in part.
        let data: Vec<u8> = (0..3000 * IV).map(|i| (i * 7 + i / 4099) as u8).collect();
        let res = 3000 * IV - 100;
        let cuts = [0, 1000 * IV + 8, 2000 * IV - 8, data.len()];
        let iovs: Vec<libc::iovec> = cuts
            .windows(2)
            .map(|w| sys::iov(data.as_ptr() as usize + w[0], w[1] - w[0]))
            .collect();
        let read = data_read(&iovs, res);
        let n = res.div_ceil(IV);
        let pi_len = 3100 * ts;
        for readable in [true, false] {
            let mut want = vec![0xEEu8; pi_len];
            assert_eq!(fill_read_pi(&read, readable, n, &mut want, &f, 9), readable);
            let mut got = vec![0xEEu8; pi_len];
            let range = sys::iov(got.as_mut_ptr() as usize, pi_len);
            assert_eq!(
                store_read_pi_by_copy(&read, readable, n, range, &f, 9),
                readable
            );
            assert!(got == want, "readable {readable}");
        }
        // No interval read: all zeros, and true.
        let mut got = vec![0xEEu8; pi_len];
        let range = sys::iov(got.as_mut_ptr() as usize, pi_len);
        assert!(store_read_pi_by_copy(&read, true, 0, range, &f, 9));
        assert!(got.iter().all(|&b| b == 0));
        // A PI buffer whose last page is gone.
        const PG: usize = 4096;
        let m = sys::anon_map(8 * PG, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: the last page of our own mapping.
        assert_eq!(unsafe { libc::munmap((m + 7 * PG) as *mut _, PG) }, 0);
        let range = sys::iov(m + 7 * PG + 8 - pi_len, pi_len);
        assert!(!store_read_pi_by_copy(&read, true, n, range, &f, 9));
        // SAFETY: unmapping the rest of our own mapping.
        unsafe { libc::munmap(m as *mut _, 7 * PG) };
    }

    /// The reads reaped in one call share their proofs: four reads with
    /// their data and tuples in one mapping cost one query of the mapping
    /// table, not one each, and each still gets its own tuples.
    #[test]
    fn reads_reaped_together_share_one_query() {
        let _layout = sys::layout_lock();
        if !crate::vma::usable_or_skip() {
            return;
        }
        const PG: usize = 4096;
        const READS: usize = 4;
        const DATA: usize = 4 * PG;
        let tuples = DATA / 512 * 8;
        // Each read: 4 data pages, then its tuples on a page of their own.
        let m = sys::anon_map(READS * 5 * PG, libc::PROT_READ | libc::PROT_WRITE);
        let data = |i: usize| m + i * 5 * PG;
        let pi = |i: usize| data(i) + DATA;
        let mut events = [io_event::zeroed(); READS];
        for (i, ev) in events.iter_mut().enumerate() {
            // SAFETY: our own fresh mapping.
            unsafe { core::ptr::write_bytes(data(i) as *mut u8, i as u8 + 1, DATA) };
            let kind = Kind::Read {
                data: vec![sys::iov(data(i), DATA)],
                pi_addr: pi(i),
                pi_len: tuples,
                format: Format::DEFAULT,
                seed: 100 * i as u64,
            };
            *ev = publish(kind, 0x1000 + i, 0xD0 + i, DATA as i64);
        }
        let before = crate::vma::queries().unwrap();
        complete(events.as_mut_ptr(), READS as i32);
        assert_eq!(crate::vma::queries().unwrap() - before, 1);
        for (i, ev) in events.iter().enumerate() {
            assert_eq!((ev.obj as usize, ev.res as i64), (0x1000 + i, DATA as i64));
            let mut want = vec![0u8; tuples];
            // SAFETY: our own mapping, filled above.
            let d = unsafe { core::slice::from_raw_parts(data(i) as *const u8, DATA) };
            Format::DEFAULT.generate(d, 100 * i as u64, &mut want);
            // SAFETY: as above.
            let got = unsafe { core::slice::from_raw_parts(pi(i) as *const u8, tuples) };
            assert_eq!(got, &want[..], "read {i}");
        }
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(m as *mut _, READS * 5 * PG) };
    }

    /// Regression: with a PI iocb in flight every reap takes the record
    /// map's lock, and a contended `std::sync::Mutex` waits with `futex(2)`
    /// through libc, which stores EAGAIN in `errno` when the lock changed
    /// before the wait: a C program with 16 threads doing PI reads saw
    /// `errno` changed in 22 of 640,000 library calls.
    #[test]
    fn reaping_with_pi_in_flight_leaves_errno_alone() {
        // Every reap below takes the slow path (the map itself is empty).
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        let changed = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            // One thread holds the lock for a few microseconds at a time,
            // so that the reapers wait in the kernel.
            s.spawn(|| {
                while done.load(Ordering::Relaxed) < 8 {
                    let g = live();
                    let t = std::time::Instant::now();
                    while t.elapsed() < std::time::Duration::from_micros(3) {}
                    drop(g);
                }
            });
            for _ in 0..8 {
                s.spawn(|| {
                    let mut ev = [io_event::zeroed(); 4];
                    for _ in 0..50_000 {
                        // SAFETY: this thread's own errno.
                        unsafe { *libc::__errno_location() = 4242 };
                        complete(ev.as_mut_ptr(), 4);
                        // SAFETY: as above.
                        if unsafe { *libc::__errno_location() } != 4242 {
                            changed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(changed.load(Ordering::Relaxed), 0, "errno changed by reaps");
    }
}
