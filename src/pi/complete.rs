//! The reap side of PI emulation: recognise shadow completions among the
//! events just reaped, compute read PI, and give each event back the
//! caller's `obj` and `data`; free the records of a destroyed context.

use crate::abi::io_event;
use crate::pi::format::Format;
use crate::pi::record::{live, Kind, Record, RecordPtr, IN_FLIGHT};
use core::ffi::c_long;
use core::sync::atomic::Ordering;

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
            pi_len,
            format,
            seed,
        } => {
            let res = ev.res as c_long;
            store_read_pi(data, res.max(0) as usize, *pi_addr, *pi_len, format, *seed);
        }
    }
}

/// Fill the caller's PI buffer (`pi_len` bytes: the tuples of the whole
/// data): tuples for the intervals actually read (the first
/// `res / interval`), zeros for the rest (none read, a short read, or an
/// error: `res` = 0).
fn store_read_pi(
    data: &[libc::iovec],
    res: usize,
    pi_addr: usize,
    pi_len: usize,
    format: &Format,
    seed: u64,
) {
    // SAFETY: `prepare_run` proved these `pi_len` bytes writable at submit
    // (the kernel faulted them in for writing, or wrote them); like the
    // buffers of any in-flight I/O they stay the caller's to keep mapped
    // until the completion is delivered (a DIX kernel pins them).
    let out = unsafe { core::slice::from_raw_parts_mut(pi_addr as *mut u8, pi_len) };
    // `res` never exceeds the data length, whose tuples fill `pi_len`; the
    // `min` only keeps a kernel surprise in bounds.
    let n = (res / format.interval).min(pi_len / format.tuple_size());
    let (tuples, rest) = out.split_at_mut(n * format.tuple_size());
    rest.fill(0);
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
    format.generate_segments(&segs, seed, tuples);
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
