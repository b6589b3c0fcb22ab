//! Caller memory during one PI submission: what the kernel has proven
//! readable in this call, and kernel-checked access to the rest.
//!
//! The PI slow path must read caller memory the kernel has not read for
//! it (the iocbs after a refused one, their iovec arrays, a write's
//! tuples and data).  Each kernel-checked access is a system call that
//! pins pages (`process_vm_readv`, ~1.2 µs here) or walks page tables
//! (`MADV_POPULATE_READ`), so we remember, for the length of one
//! `io_submit`, which pages the kernel has shown to be readable:
//!
//! * the pages of the iocb pointer slot and of the iocb the kernel itself
//!   read before refusing it (see `submit::try_emulate`);
//! * the pages of every range a kernel-checked copy or probe succeeded on.
//!
//! Protection is per page (4096 bytes or more on every Linux target), so
//! any byte of such a page was readable when the kernel touched it.  The
//! caller may not unmap or protect memory it is passing to `io_submit`
//! while that call runs (the kernel reads it too), so within this call a
//! proven page stays readable and is read directly.  Nothing is kept
//! across calls: memory can be unmapped between them.

use crate::sys;
use crate::vma::{self, Access, Vmas};

use crate::sys::PAGE;

/// Caller memory for the length of one library call (never stored).
pub struct CallerMem {
    /// Proven-readable page ranges `[start, end)`, page-aligned.  A handful
    /// at most (one run of at most 64 iocbs), so a vector is the right set.
    pages: Vec<(usize, usize)>,
    /// For kernel-checked transfers (created at the first one: it costs a
    /// `getpid()`).
    vm: Option<sys::SelfMem>,
    /// The kernel's mapping table, asked first by the proofs that would
    /// otherwise cost a system call a page (see [`crate::vma`]).
    vmas: Vmas,
    /// How many ranges [`CallerMem::prove_writable`] has been asked about.
    writable_asked: usize,
}

/// `[addr, addr + len)` widened to whole pages, or `None` if it wraps or
/// cannot be user memory.
fn page_span(addr: usize, len: usize) -> Option<(usize, usize)> {
    if !sys::plausible_user_range(addr, len) {
        return None;
    }
    let start = addr & !(PAGE - 1);
    let end = (addr + len).checked_add(PAGE - 1)? & !(PAGE - 1);
    Some((start, end))
}

impl CallerMem {
    /// Nothing proven yet.
    pub fn new() -> CallerMem {
        CallerMem {
            pages: Vec::new(),
            vm: None,
            vmas: Vmas::new(),
            writable_asked: 0,
        }
    }

    /// Record that the kernel has just read `[addr, addr + len)` in this
    /// call (so its pages are readable).
    pub fn proven(&mut self, addr: usize, len: usize) {
        if len == 0 {
            return;
        }
        if let Some((s, e)) = page_span(addr, len) {
            // Merge with an overlapping or adjacent range if there is one
            // (keeps the list short for buffers probed piecewise).
            if let Some(r) = self.pages.iter_mut().find(|r| s <= r.1 && r.0 <= e) {
                r.0 = r.0.min(s);
                r.1 = r.1.max(e);
            } else {
                self.pages.push((s, e));
            }
        }
    }

    /// [`CallerMem::proven`] for each of `ranges`.
    fn proven_ranges(&mut self, ranges: &[libc::iovec]) {
        for v in ranges {
            self.proven(v.iov_base as usize, v.iov_len);
        }
    }

    /// Whether every byte of `[addr, addr + len)` lies in proven pages.
    /// (A range spanning two separately proven, adjacent ranges that were
    /// not merged answers `false`: it is then simply checked again.)
    pub fn covers(&self, addr: usize, len: usize) -> bool {
        if len == 0 {
            return true;
        }
        match page_span(addr, len) {
            Some((s, e)) => self.pages.iter().any(|r| r.0 <= s && e <= r.1),
            None => false,
        }
    }

    fn vm(&mut self) -> &sys::SelfMem {
        self.vm.get_or_insert_with(sys::SelfMem::new)
    }

    /// Copy the caller's `remote` ranges into `local` (one buffer per range,
    /// same lengths), in order: directly where proven, the rest proven
    /// first (a few ranges: see [`CallerMem::probe`]) or copied with one
    /// kernel-checked copy (many ranges).  Returns how many ranges, from
    /// the first, were copied (all of them, or the ones before the first
    /// the kernel could not read).
    pub fn read(&mut self, local: &mut [&mut [u8]], remote: &[libc::iovec]) -> usize {
        debug_assert_eq!(local.len(), remote.len());
        let unproven: Vec<usize> = (0..remote.len())
            .filter(|&i| !self.covers(remote[i].iov_base as usize, remote[i].iov_len))
            .collect();
        // The first range that could not be copied (remote.len(): none).
        let mut stop = remote.len();
        // Copied by the kernel (not to be copied again below).
        let mut copied: &[usize] = &[];
        if unproven.len() <= PROBE_MAX_RANGES {
            // Measured here: a load proof of one page ~0.14 us hot
            // (`MADV_POPULATE_READ` ~0.6 us), `process_vm_readv` ~1.2 us +
            // ~0.35 us per page (it pins).
            if let Some(k) = unproven
                .iter()
                .position(|&i| !self.probe(&remote[i..i + 1]))
            {
                stop = unproven[k];
            }
        } else {
            let src: Vec<libc::iovec> = unproven.iter().map(|&i| remote[i]).collect();
            let got = {
                let mut dst: Vec<&mut [u8]> = Vec::with_capacity(unproven.len());
                // Reborrow the destinations of the unproven ranges, in order.
                let mut want = unproven.iter().peekable();
                for (i, buf) in local.iter_mut().enumerate() {
                    if want.peek() == Some(&&i) {
                        want.next();
                        dst.push(&mut buf[..]);
                    }
                }
                self.vm().read_ranges(&mut dst, &src)
            };
            self.proven_ranges(&src[..got]);
            if got < unproven.len() {
                stop = unproven[got];
            }
            copied = &unproven;
        }
        for i in 0..stop {
            if copied.binary_search(&i).is_ok() {
                continue;
            }
            let v = remote[i];
            debug_assert_eq!(local[i].len(), v.iov_len);
            if v.iov_len == 0 {
                continue;
            }
            debug_assert!(self.covers(v.iov_base as usize, v.iov_len));
            // SAFETY: every byte of the range lies in pages the kernel
            // read (or probed readable) in this call; the caller may not
            // unmap them during it (module documentation).  `local[i]` is
            // our own buffer of the same length and cannot overlap caller
            // memory we are reading.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    v.iov_base as *const u8,
                    local[i].as_mut_ptr(),
                    v.iov_len,
                )
            };
        }
        stop
    }

    /// Prove every byte of `ranges` readable (without copying): proven
    /// pages are skipped, the rest probed by the kernel (a load of 8 bytes
    /// a page up to [`LOAD_MAX_PAGES`] pages, else or where that cannot
    /// answer `sys::probe_readable`) and then proven.  `true` if all are.
    pub fn probe(&mut self, ranges: &[libc::iovec]) -> bool {
        let todo: Vec<libc::iovec> = ranges
            .iter()
            .filter(|v| !self.covers(v.iov_base as usize, v.iov_len))
            .copied()
            .collect();
        if todo.is_empty() {
            return true;
        }
        // Memory that cannot be user memory (page 0, kernel addresses,
        // wrapping) is never proven, whatever a probe says, so that every
        // proof is recorded in `pages` and `read` copies only from there.
        // A few pages (an iovec array apart from its iocb, say) cost one
        // small system call each ([`sys::page_readable`], ~360 cycles hot,
        // against ~1,560 for a `MADV_POPULATE_READ`); the authoritative
        // probe answers where those cannot.
        if todo
            .iter()
            .any(|v| page_span(v.iov_base as usize, v.iov_len).is_none())
            || !(self.loads_prove(|| todo.iter()) || sys::probe_readable(&todo) == 0)
        {
            return false;
        }
        self.proven_ranges(&todo);
        true
    }

    /// A write's caller memory in one step: copy the caller's `src` into
    /// `dst` (its tuples) and prove every byte of `probe` (its data)
    /// readable.  `true` if both hold.  First choice: the kernel's mapping
    /// table, where it answers ([`CallerMem::vmas_prove`]), and `src` is
    /// then copied directly.  Next: the kernel reads a
    /// few bytes of every unproven page of both, one small system call a
    /// page ([`sys::page_readable`]), and `src` is then copied directly
    /// (~2.1 us for a 64 KiB write and its tuples after the sleep of a QD1
    /// write).  Second: one [`sys::SelfMem::gather`] of `src` whole and a
    /// byte of every unproven page of `probe` (~2.8 us there; ~1.7 hot,
    /// against ~3.2 for a `MADV_POPULATE_READ` per range).  Where both
    /// fail for any reason (an unreadable byte, a seccomp filter, over
    /// `VM_IOV_MAX` pages), and under valgrind (which would check the
    /// caller's bytes as if they were passed to another process), the
    /// answer comes from [`CallerMem::probe`] and [`CallerMem::read`].
    pub fn read_and_probe(
        &mut self,
        dst: &mut [u8],
        src: libc::iovec,
        probe: &[libc::iovec],
    ) -> bool {
        debug_assert_eq!(dst.len(), src.iov_len);
        if self.vmas_prove(core::slice::from_ref(&src), probe) {
            self.proven_write(src, probe, Some(dst));
            return true;
        }
        if !crate::valgrind::running()
            && (self.load_and_probe(dst, src, probe) || self.gather_and_probe(dst, src, probe))
        {
            return true;
        }
        self.probe(probe) && self.read(&mut [dst], core::slice::from_ref(&src)) == 1
    }

    /// Call `f` with the first byte in `ranges` of each of their pages not
    /// proven yet (once per page when consecutive ranges share it), until
    /// it answers `false`.  `false` if it did, or if a range cannot be
    /// user memory.
    fn each_unproven_page<'a>(
        &self,
        ranges: impl Iterator<Item = &'a libc::iovec>,
        mut f: impl FnMut(usize) -> bool,
    ) -> bool {
        let mut last_page = None;
        for v in ranges.filter(|v| v.iov_len > 0) {
            let start = v.iov_base as usize;
            let Some((first, end)) = page_span(start, v.iov_len) else {
                return false;
            };
            let mut page = first;
            while page < end {
                if last_page != Some(page) && !self.covers(page, PAGE) && !f(start.max(page)) {
                    return false;
                }
                last_page = Some(page);
                page += PAGE;
            }
        }
        true
    }

    /// The first path of [`CallerMem::read_and_probe`]; `false` means
    /// "ask the next one", not necessarily "unreadable".
    fn load_and_probe(&mut self, dst: &mut [u8], src: libc::iovec, probe: &[libc::iovec]) -> bool {
        if !self.loads_prove(|| core::iter::once(&src).chain(probe)) {
            return false;
        }
        self.proven_write(src, probe, Some(dst));
        true
    }

    /// Whether the kernel read 8 bytes of every unproven page of
    /// `ranges()`, one small system call a page ([`sys::page_readable`]),
    /// with at most [`LOAD_MAX_PAGES`] of them (nothing is recorded).
    /// `false` means "ask another proof", not necessarily "unreadable".
    fn loads_prove<'a, I: Iterator<Item = &'a libc::iovec>>(&self, ranges: impl Fn() -> I) -> bool {
        // Start every page's address translation (and the fetch of the
        // line the kernel reads) at once, before the system calls walk
        // them one by one; the CRC then finds them translated.  A
        // prefetch never faults.
        let mut pages = 0;
        self.each_unproven_page(ranges(), |a| {
            prefetch(a);
            pages += 1;
            true
        });
        // A call per page costs more than one gather beyond a few dozen
        // pages (~0.12 us a page against ~0.04).
        pages <= LOAD_MAX_PAGES
            && self.each_unproven_page(ranges(), |a| sys::page_readable(a) == Some(true))
    }

    /// After a fast path of [`CallerMem::read_and_probe`] proved `src` and
    /// `probe`: record them as proven and, with `copy_into`, copy `src`
    /// into it directly (our own buffer of the same length).
    fn proven_write(
        &mut self,
        src: libc::iovec,
        probe: &[libc::iovec],
        copy_into: Option<&mut [u8]>,
    ) {
        self.proven(src.iov_base as usize, src.iov_len);
        self.proven_ranges(probe);
        if let Some(dst) = copy_into.filter(|d| !d.is_empty()) {
            debug_assert_eq!(dst.len(), src.iov_len);
            // SAFETY: every page of `src` was read by the kernel in this
            // call (by the caller's proof, or earlier); the caller may not
            // unmap it during the call (module documentation).  `dst` is
            // our own buffer of the same length.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.iov_base as *const u8,
                    dst.as_mut_ptr(),
                    dst.len(),
                )
            };
        }
    }

    /// The second path of [`CallerMem::read_and_probe`]; `false` means
    /// "ask the authoritative path", not necessarily "unreadable".
    fn gather_and_probe(
        &mut self,
        dst: &mut [u8],
        src: libc::iovec,
        probe: &[libc::iovec],
    ) -> bool {
        let copy_src = !self.covers(src.iov_base as usize, src.iov_len);
        let mut from: Vec<libc::iovec> = Vec::with_capacity(24);
        if copy_src {
            if page_span(src.iov_base as usize, src.iov_len).is_none() {
                return false;
            }
            from.push(src);
        }
        // One byte of each page of `probe` not proven yet.
        if !self.each_unproven_page(probe.iter(), |a| {
            from.push(libc::iovec {
                iov_base: a as *mut _,
                iov_len: 1,
            });
            from.len() <= sys::VM_IOV_MAX
        }) {
            return false;
        }
        // Where it fits on the stack (hot and mapped), everything lands in
        // one buffer there (the tuples first, then the probed bytes), so
        // the kernel pins one range, not two.  Else the tuples land in
        // `dst` and the probed bytes (at most `VM_IOV_MAX`, which fit) on
        // the stack: no block as large as the tuples, which could fail out
        // of memory.  (An empty range is a valid iovec for the kernel.)
        let copied = if copy_src { dst.len() } else { 0 };
        let probed = from.len() - usize::from(copy_src);
        let total = copied + probed;
        let mut on_stack = [0u8; LANDING_ON_STACK];
        let whole = total <= LANDING_ON_STACK;
        let iov = |b: &mut [u8]| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        };
        let into = if whole {
            [iov(&mut on_stack[..total]), iov(&mut [])]
        } else {
            [iov(&mut dst[..copied]), iov(&mut on_stack[..probed])]
        };
        if !self.vm().gather(&from, &into) {
            return false;
        }
        if whole && copy_src {
            dst.copy_from_slice(&on_stack[..copied]);
        }
        self.proven_write(src, probe, (!copy_src).then_some(dst));
        true
    }

    /// Write `local` to the caller's `remote` ranges in order (`local.len()`
    /// is their total), always kernel-checked (only readability is ever
    /// proven).  Returns how many ranges were written whole.
    pub fn write(&mut self, local: &[u8], remote: &[libc::iovec]) -> usize {
        self.vm().write_ranges(local, remote)
    }

    /// Prove every byte of the caller's `ranges` readable now, without
    /// copying (a read's data at its completion, before its PI is computed
    /// from it: the caller may have unmapped or protected its buffers
    /// while the read was in flight).  First choice: the kernel's mapping
    /// table, where it answers ([`CallerMem::vmas_prove`]).  Next: every
    /// unproven page prefetched, then the kernel reads 8 bytes of each, one small system
    /// call a page ([`sys::page_readable`]), up to [`LOAD_MAX_PAGES`]
    /// pages.  Beyond that, or where any of those calls cannot answer or
    /// answers "unreadable", the authoritative [`CallerMem::probe`].
    pub fn prove_readable(&mut self, ranges: &[libc::iovec]) -> bool {
        if self.vmas_prove(ranges, &[]) || self.loads_prove(|| ranges.iter()) {
            self.proven_ranges(ranges);
            return true;
        }
        self.probe(ranges)
    }

    /// Whether `a` and `b` are proven readable (nothing is recorded), the
    /// kernel's mapping table (see [`crate::vma`]) answering for most of
    /// them: what it last
    /// described, a query for every range of [`vma::WORTH_PAGES`] or more
    /// unproven pages, and then for the small ranges left, a query too
    /// where they add up to that many pages, else the per-page proofs
    /// (cheaper for a page or two: a write's tuples in another mapping
    /// than its data cost one `rt_sigprocmask`, not a second query).
    /// `false` where all of them add up to fewer pages (the per-page proofs
    /// are cheaper for all) or any answer is "not proven": ask the
    /// per-page proofs for everything.
    fn vmas_prove(&mut self, a: &[libc::iovec], b: &[libc::iovec]) -> bool {
        let access = Access::Read;
        let all = || a.iter().chain(b);
        if all().all(|v| self.vmas.known_one(v, access)) {
            return true;
        }
        // Page counts stop at WORTH_PAGES: only comparisons with it matter.
        // They are counted once: nothing is recorded as proven until the
        // caller is answered.
        const W: usize = vma::WORTH_PAGES;
        let n = a.len() + b.len();
        let range = |i: usize| if i < a.len() { &a[i] } else { &b[i - a.len()] };
        let mut on_stack = [0u8; 16];
        let mut on_heap = Vec::new();
        let counts: &mut [u8] = if n <= on_stack.len() {
            &mut on_stack[..n]
        } else {
            on_heap.resize(n, 0);
            &mut on_heap
        };
        for (i, c) in counts.iter_mut().enumerate() {
            *c = self.unproven_pages(range(i)) as u8;
        }
        let counts = &*counts;
        let pages = |i: usize| usize::from(counts[i]);
        if (0..n).map(pages).sum::<usize>() < W {
            return false;
        }
        for i in 0..n {
            if pages(i) == W && !self.vmas.prove_one(range(i), access) {
                return false;
            }
        }
        // The small ranges that the mappings described so far do not cover:
        // queried one at a time (the mapping of one may cover others)
        // while they add up to W pages or more, then the per-page proofs
        // for the last few.  (Past a few dozen ranges, all queried: a
        // recount per query would cost more than it saves.)  A range is
        // `done` once a query has answered for it: `Vmas` keeps only the
        // mapping it described last, so without this, small ranges in two
        // mappings were queried in turn forever (an independent tester's
        // `r_pingpong.c`: a write of 3 + 3 one-page iovecs in two mappings
        // never returned from `io_submit`).  Each round marks at least the
        // range it queried, so there are at most `n` rounds.
        let mut done_on_stack = [false; 16];
        let mut done_on_heap = Vec::new();
        let done: &mut [bool] = if n <= done_on_stack.len() {
            &mut done_on_stack[..n]
        } else {
            done_on_heap.resize(n, false);
            &mut done_on_heap
        };
        let small = |vmas: &Vmas, done: &[bool], i: usize| {
            pages(i) < W && !done[i] && !vmas.known_one(range(i), access)
        };
        loop {
            // The next to query: the one with the most unproven pages,
            // `b`'s first on a tie (a write's data: its tuples are `a`).
            let mut left = 0;
            let mut next: Option<usize> = None;
            for i in (a.len()..n)
                .chain(0..a.len())
                .filter(|&i| small(&self.vmas, done, i))
            {
                left += pages(i);
                if next.is_none_or(|most| pages(i) > pages(most)) {
                    next = Some(i);
                }
            }
            let Some(next) = next else {
                return true;
            };
            if left < W {
                let (vmas, done) = (&self.vmas, &*done);
                return self.loads_prove(|| (0..n).filter(|&i| small(vmas, done, i)).map(range));
            }
            if n > SMALL_RANGES_RECOUNTED {
                let rest: Vec<libc::iovec> = (0..n)
                    .filter(|&i| small(&self.vmas, done, i))
                    .map(|i| *range(i))
                    .collect();
                return self.vmas.prove(&rest, access);
            }
            if !self.vmas.prove_one(range(next), access) {
                return false;
            }
            for (i, d) in done.iter_mut().enumerate() {
                *d = *d || self.vmas.known_one(range(i), access);
            }
        }
    }

    /// How many pages of `v` are not proven yet, counting up to
    /// [`vma::WORTH_PAGES`] at most.
    fn unproven_pages(&self, v: &libc::iovec) -> usize {
        let mut pages = 0;
        self.each_unproven_page(core::iter::once(v), |_| {
            pages += 1;
            pages < vma::WORTH_PAGES
        });
        pages
    }

    /// Whether the kernel's mapping table proves every byte of `ranges`
    /// writable now (see [`crate::vma`]), with one query at most: for the
    /// first range the mapping last described does not cover.  `false`
    /// means "not proven here".
    pub fn writable_by_table(&mut self, ranges: &[libc::iovec]) -> bool {
        let mut asked = false;
        for v in ranges {
            if self.vmas.known_one(v, Access::Write) {
                continue;
            }
            if asked || !self.vmas.prove_one(v, Access::Write) {
                return false;
            }
            asked = true;
        }
        true
    }

    /// Whether the caller's `v` can be stored into now, by a caller about
    /// to overwrite all of it (a read's tuples at reap): the mapping table
    /// where it answers, else the kernel stores into each page
    /// ([`sys::store_writable`]; the bytes of `v` are then unspecified).
    pub fn prove_writable_now(&mut self, v: &libc::iovec) -> bool {
        self.vmas.known_one(v, Access::Write) || sys::store_writable(v)
    }

    /// Prove the caller's `ranges` writable now, in order, for stores made
    /// later (a read's tuples, at its completion): the mapping last
    /// described; from the second range asked about in this call on (a
    /// run of reads: their tuples usually share one mapping), a query of
    /// the mapping table; else the kernel ORs 0 into a word of each of its
    /// pages ([`sys::touch_writable`]: no byte changes, no pinning;
    /// `MADV_POPULATE_WRITE` beyond two pages), or where that fails for
    /// any reason, the authoritative answer: a kernel-checked write of
    /// zeros.  The content of a proven range is then unspecified (the
    /// caller fills all of it later).  Returns how many ranges, from the
    /// first, are proven.
    pub fn prove_writable(&mut self, ranges: &[libc::iovec]) -> usize {
        ranges
            .iter()
            .take_while(|v| {
                let asked = self.writable_asked;
                self.writable_asked += 1;
                if self.vmas.known_one(v, Access::Write)
                    || (asked > 0 && self.vmas.prove_one(v, Access::Write))
                    || sys::touch_writable(v)
                {
                    return true;
                }
                self.vm().write_zeros(**v)
            })
            .count()
    }
}

/// Hint the CPU to fetch the line at `addr` into L1: any address (a
/// prefetch never faults, and on an unmapped page does nothing).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it does not access memory
    // architecturally and never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// The most unproven pages [`CallerMem::load_and_probe`] proves one
/// system call each (a 64 KiB write, its tuples and a spare page); more go
/// to [`CallerMem::gather_and_probe`].
const LOAD_MAX_PAGES: usize = 20;

/// Bytes of [`CallerMem::gather_and_probe`]'s landing buffer kept on the
/// stack (a 64 KiB write's 1 KiB of tuples and 16 probed bytes fit).
const LANDING_ON_STACK: usize = 2048;
// The probed bytes alone (one a page, at most `VM_IOV_MAX`) always fit.
const _: () = assert!(sys::VM_IOV_MAX <= LANDING_ON_STACK);

/// Unproven ranges up to this many are proven one by one with
/// `MADV_POPULATE_READ` before being copied directly; more take one
/// `process_vm_readv` (see [`CallerMem::read`]).
const PROBE_MAX_RANGES: usize = 3;

/// Up to this many ranges, [`CallerMem::vmas_prove`] counts the pages left
/// after each query (to stop querying where per-page proofs are cheaper).
const SMALL_RANGES_RECOUNTED: usize = 32;

impl Default for CallerMem {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::iov as r;

    #[test]
    fn proofs_cover_whole_pages_only() {
        let mut m = CallerMem::new();
        let base = 0x7000_0000_0000usize;
        assert!(!m.covers(base, 1));
        m.proven(base + 100, 8);
        assert!(m.covers(base, PAGE));
        assert!(!m.covers(base, PAGE + 1));
        assert!(!m.covers(base - 1, 2));
        // An adjacent proof merges, so a range across both is covered.
        m.proven(base + PAGE + 5, 1);
        assert!(m.covers(base + PAGE - 8, 16));
        assert!(m.covers(base, 0));
        // Addresses that cannot be user memory are never covered.
        m.proven(usize::MAX - 10, 8);
        assert!(!m.covers(usize::MAX - 10, 8));
        assert!(!m.covers(0, 8));
    }

    #[test]
    fn reads_stop_at_the_first_unreadable_range_and_prove_what_they_read() {
        let _layout = sys::layout_lock();
        const PG: usize = 4096;
        // Three pages; the middle one is made inaccessible; unmapped at
        // the end.
        let b = sys::anon_map(3 * PG, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: our own fresh mapping of 3 pages.
        unsafe {
            core::ptr::write_bytes(b as *mut u8, 0xAB, 3 * PG);
            assert_eq!(libc::mprotect((b + PG) as *mut _, PG, libc::PROT_NONE), 0);
        }
        let mut m = CallerMem::new();
        let (mut x, mut y, mut z) = ([0u8; 16], [0u8; 16], [0u8; 16]);
        let remote = [r(b, 16), r(b + PG + 8, 16), r(b + 2 * PG, 16)];
        assert_eq!(m.read(&mut [&mut x, &mut y, &mut z], &remote), 1);
        assert_eq!(x, [0xAB; 16]);
        assert!(m.covers(b, PG) && !m.covers(b + PG, 1));
        // Proven now: read directly (and the third still needs the kernel).
        x = [0; 16];
        let remote = [r(b + 32, 16), r(b + 2 * PG, 16)];
        assert_eq!(m.read(&mut [&mut x, &mut z], &remote), 2);
        assert_eq!((x, z), ([0xAB; 16], [0xAB; 16]));
        assert!(m.probe(&[r(b, 10), r(b + 2 * PG, PG)]));
        assert!(!m.probe(&[r(b + PG - 1, 2)]));
        // A page or two (an iovec array apart from its iocb) is proven by
        // a load per page, without the authoritative probe where the loads
        // answer; an unreadable page still gets it (and is refused).
        let probes = sys::probes();
        assert!(CallerMem::new().probe(&[r(b + 2 * PG + 8, 32)]));
        if sys::page_readable(b).is_some() {
            assert_eq!(sys::probes(), probes);
        }
        assert!(!CallerMem::new().probe(&[r(b + PG + 8, 32)]));
        // Never a proof for what cannot be user memory.
        assert!(!m.probe(&[r(0, 8)]) && !m.probe(&[r(usize::MAX - 7, 8)]));
        let mut w = [0u8; 8];
        assert_eq!(m.read(&mut [&mut w], &[r(0, 8)]), 0);
        assert_eq!(m.read(&mut [&mut w], &[r(b + PG, 8)]), 0);
        assert_eq!(m.read(&mut [&mut w], &[r(b + 2 * PG + 8, 8)]), 1);
        assert_eq!(w, [0xAB; 8]);
        // Writes are always kernel-checked.
        assert_eq!(m.write(&[1, 2], &[r(b, 1), r(b + PG, 1)]), 1);
        // Writable proofs stop at the first range that is not writable.
        assert_eq!(m.prove_writable(&[r(b, 8), r(b + 2 * PG, 8)]), 2);
        assert_eq!(m.prove_writable(&[r(b + 8, 8), r(b + PG, 8), r(b, 8)]), 1);
        // SAFETY: our own mapping; the last page made read-only.
        let r3 = unsafe { libc::mprotect((b + 2 * PG) as *mut _, PG, libc::PROT_READ) };
        assert_eq!(r3, 0);
        assert!(!sys::populate_write(&r(b + 2 * PG, 8)));
        assert_eq!(m.prove_writable(&[r(b + 2 * PG, 8)]), 0);
        assert_eq!(m.prove_writable(&[r(usize::MAX - 4, 8)]), 0);
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(b as *mut _, 3 * PG) };
    }

    #[test]
    fn readable_proofs_find_every_unreadable_page_by_either_path() {
        let _layout = sys::layout_lock();
        const PG: usize = 4096;
        // LOAD_MAX_PAGES + 4 pages, all readable (one read-only), then one
        // PROT_NONE and one unmapped page in the middle of a second area.
        let n = LOAD_MAX_PAGES + 4;
        let b = sys::anon_map(n * PG, libc::PROT_READ | libc::PROT_WRITE);
        let h = sys::anon_map(4 * PG, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: our own fresh mappings.
        unsafe {
            assert_eq!(libc::mprotect(b as *mut _, PG, libc::PROT_READ), 0);
            assert_eq!(libc::mprotect((h + PG) as *mut _, PG, libc::PROT_NONE), 0);
            assert_eq!(libc::munmap((h + 2 * PG) as *mut _, PG), 0);
        }
        // Per-page calls (a few pages, split ranges sharing pages)...
        let mut m = CallerMem::new();
        assert!(m.prove_readable(&[r(b + 10, 3 * PG), r(b + 3 * PG + 10, 100), r(b, 0)]));
        assert!(m.covers(b, 4 * PG) && !m.covers(b + 4 * PG, 1));
        // ...and the probe path beyond LOAD_MAX_PAGES unproven pages.
        assert!(CallerMem::new().prove_readable(&[r(b, n * PG)]));
        for bad in [
            r(h + PG + 100, 8),
            r(h + 2 * PG - 1, 2),
            r(h + 2 * PG, PG),
            r(h, 4 * PG),
            r(0, 8),
            r(usize::MAX - 7, 8),
        ] {
            // Alone, behind good ranges, and behind many good pages.
            assert!(!CallerMem::new().prove_readable(&[bad]));
            assert!(!CallerMem::new().prove_readable(&[r(h, 8), r(h + 3 * PG, 8), bad]));
            assert!(!CallerMem::new().prove_readable(&[r(b, n * PG), bad]));
        }
        // Proven pages are not asked again: an unreadable page inside
        // them would not be found, but none is proven that was not read.
        let mut m = CallerMem::new();
        assert!(m.prove_readable(&[r(h, PG)]));
        assert!(!m.prove_readable(&[r(h, PG + 1)]));
        // SAFETY: unmapping our own mappings (the hole is already gone).
        unsafe {
            libc::munmap(b as *mut _, n * PG);
            libc::munmap(h as *mut _, 4 * PG);
        }
    }

    #[test]
    fn the_mapping_table_proves_large_ranges_and_small_ones_cost_no_second_query() {
        let _layout = sys::layout_lock();
        if !vma::usable_or_skip() {
            return;
        }
        const PG: usize = 4096;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // Fenced, so that no two of them (or another test's) merge.
        let data = sys::fenced_map(8 * PG, rw);
        let apart = sys::fenced_map(PG, rw);
        let ro = sys::anon_map(PG, libc::PROT_READ);
        let none = sys::anon_map(PG, libc::PROT_NONE);
        let gone = sys::anon_map(PG, rw);
        let shared = sys::shared_anon_map(8 * PG, rw);
        // A hole, after the last mapping (which would otherwise fill it).
        // SAFETY: our own mapping from just above.
        unsafe { libc::munmap(gone as *mut _, PG) };
        // How many queries `vmas_prove(tuples, data)` makes, and its answer.
        let ask = |tuples: &[libc::iovec], data: &[libc::iovec]| {
            let before = vma::queries().unwrap();
            let ok = CallerMem::new().vmas_prove(tuples, data);
            (ok, vma::queries().unwrap() - before)
        };
        let all = [r(data, 8 * PG)];
        // Tuples in the data's mapping, in another plain mapping, or in
        // read-only memory (a per-page proof, not a query): one query.
        assert_eq!(ask(&[r(data + 8 * PG - 16, 16)], &all), (true, 1));
        assert_eq!(ask(&[r(apart + 8, 16)], &all), (true, 1));
        assert_eq!(ask(&[r(ro + 8, 16)], &all), (true, 1));
        // Tuples that no load can read: refused (the caller then asks the
        // per-page proofs, which answer -EFAULT).
        assert!(!ask(&[r(none, 16)], &all).0);
        assert!(!ask(&[r(gone, 16)], &all).0);
        // Data in page-sized pieces: the first queried, the rest known.
        let pieces: Vec<libc::iovec> = (0..8).map(|i| r(data + i * PG, PG)).collect();
        assert_eq!(ask(&[r(apart, 16)], &pieces), (true, 1));
        // A page of a shared mapping beside them: a per-page proof (the
        // kernel's load answers for any kind of page).
        assert_eq!(ask(&[r(shared, 8)], &all), (true, 1));
        // Past SMALL_RANGES_RECOUNTED small ranges: queried without
        // recounting, still one query per mapping.
        let big = sys::fenced_map(40 * PG, rw);
        let many: Vec<libc::iovec> = (0..40).map(|i| r(big + i * PG + 8, 64)).collect();
        assert!(many.len() > SMALL_RANGES_RECOUNTED);
        assert_eq!(ask(&[r(apart, 16)], &many), (true, 2));
        // SAFETY: our own mapping: one page of it made inaccessible.
        let hidden = unsafe { libc::mprotect((big + 20 * PG) as *mut _, PG, libc::PROT_NONE) };
        assert_eq!(hidden, 0);
        assert!(!ask(&[r(apart, 16)], &many).0);
        // Two plain mappings of four pages or more: one query each.
        let other = sys::fenced_map(4 * PG, rw);
        assert_eq!(ask(&[r(other, 4 * PG)], &all), (true, 2));
        // Fewer pages than a query is worth: no query, not proven here.
        assert_eq!(ask(&[r(apart, 16)], &[r(data, 2 * PG)]), (false, 0));
        // Data in a shared mapping (it could raise SIGBUS if it were a
        // file's): not proven by the table.
        assert!(!ask(&[r(apart, 16)], &[r(shared, 8 * PG)]).0);
        for (m, len) in [(data, 8 * PG), (apart, PG), (other, 4 * PG), (big, 40 * PG)] {
            sys::fenced_unmap(m, len);
        }
        // SAFETY: unmapping our own mappings (`gone` is gone already).
        unsafe {
            for (m, len) in [(ro, PG), (none, PG), (shared, 8 * PG)] {
                libc::munmap(m as *mut _, len);
            }
        }
    }

    #[test]
    fn writable_proofs_ask_the_mapping_table_from_the_second_range_on() {
        let _layout = sys::layout_lock();
        if !vma::usable_or_skip() {
            return;
        }
        const PG: usize = 4096;
        let rw = sys::anon_map(8 * PG, libc::PROT_READ | libc::PROT_WRITE);
        let ro = sys::anon_map(2 * PG, libc::PROT_READ);
        let queries = || vma::queries().unwrap();
        // A run of reads' tuples: the first proven by a store (no query),
        // the second by a query, which also answers for the rest.
        let mut m = CallerMem::new();
        let q = queries();
        assert_eq!(m.prove_writable(&[r(rw, 16)]), 1);
        assert_eq!(queries(), q);
        assert_eq!(m.prove_writable(&[r(rw + PG, 16)]), 1);
        assert_eq!(queries(), q + 1);
        assert_eq!(
            m.prove_writable(&[r(rw + 2 * PG, 16), r(rw + 7 * PG, 16)]),
            2
        );
        assert_eq!(queries(), q + 1);
        // Read-only memory is refused however it is asked about.
        assert_eq!(m.prove_writable(&[r(ro, 16)]), 0);
        // A run's keys: the mapping table alone, one query at most.
        let keys = [r(rw + 8, 4), r(rw + 3 * PG + 8, 4), r(rw + 7 * PG + 8, 4)];
        let q = queries();
        assert!(CallerMem::new().writable_by_table(&keys));
        assert_eq!(queries(), q + 1);
        assert!(CallerMem::new().writable_by_table(&[]));
        assert_eq!(queries(), q + 1);
        assert!(!CallerMem::new().writable_by_table(&[r(rw, 4), r(ro, 4)]));
        assert!(!CallerMem::new().writable_by_table(&[r(ro, 4), r(rw, 4)]));
        assert_eq!(queries(), q + 3);
        assert_eq!(
            CallerMem::new().prove_writable(&[r(rw, 8), r(ro + PG, 8)]),
            1
        );
        // SAFETY: unmapping our own mappings.
        unsafe {
            libc::munmap(rw as *mut _, 8 * PG);
            libc::munmap(ro as *mut _, 2 * PG);
        }
    }

    #[test]
    fn a_write_is_copied_and_probed_in_one_call_or_refused() {
        let _layout = sys::layout_lock();
        /// `pages` fresh pages filled with `byte`.
        fn anon_map_filled(pages: usize, byte: u8) -> usize {
            let m = sys::anon_map(pages * PAGE, libc::PROT_READ | libc::PROT_WRITE);
            // SAFETY: our own fresh writable mapping.
            unsafe { core::ptr::write_bytes(m as *mut u8, byte, pages * PAGE) };
            m
        }
        const PG: usize = 4096;
        // Pages 0-3 readable (filled with their index + 1), 4 PROT_NONE,
        // 5 unmapped.
        let b = sys::anon_map(6 * PG, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: our own fresh mapping: pages filled, then 4-5 changed.
        unsafe {
            for p in 0..4 {
                core::ptr::write_bytes((b + p * PG) as *mut u8, p as u8 + 1, PG);
            }
            assert_eq!(
                libc::mprotect((b + 4 * PG) as *mut _, PG, libc::PROT_NONE),
                0
            );
            assert_eq!(libc::munmap((b + 5 * PG) as *mut _, PG), 0);
        }
        // Each fast path itself (not only the fallback) takes a good
        // write: tuples across a page boundary, data over three pages in
        // two iovecs sharing a page, and proves all of it.
        type Path = fn(&mut CallerMem, &mut [u8], libc::iovec, &[libc::iovec]) -> bool;
        let paths: [(&str, Path); 2] = [
            ("load", CallerMem::load_and_probe),
            ("gather", CallerMem::gather_and_probe),
        ];
        for (name, path) in paths {
            let mut m = CallerMem::new();
            let data = [r(b + 100, PG), r(b + PG + 100, 2 * PG - 200)];
            let mut t16 = [0u8; 16];
            assert!(path(&mut m, &mut t16, r(b + PG - 8, 16), &data), "{name}");
            assert_eq!(t16, [[1u8; 8], [2u8; 8]].concat()[..], "{name}");
            assert!(m.covers(b, 3 * PG) && !m.covers(b + 3 * PG, 1), "{name}");
            // Tuples on proven pages are copied directly.
            let mut m2 = CallerMem::new();
            m2.proven(b + 2 * PG, 1);
            assert!(path(
                &mut m2,
                &mut t16,
                r(b + 2 * PG + 8, 16),
                &[r(b + 3 * PG, 8)]
            ));
            assert_eq!(t16, [3u8; 16], "{name}");
            assert!(m2.covers(b + 3 * PG, PG), "{name}");
            // The last 8 bytes of a page, and a 1-byte range at a page's
            // end (the kernel then reads the page's last 8 bytes).
            let mut m5 = CallerMem::new();
            let mut t8 = [0u8; 8];
            assert!(path(
                &mut m5,
                &mut t8,
                r(b + 4 * PG - 8, 8),
                &[r(b + PG - 1, 1)]
            ));
            assert_eq!(t8, [4u8; 8], "{name}");
            assert!(m5.covers(b, PG) && m5.covers(b + 3 * PG, PG), "{name}");
        }
        // Over LOAD_MAX_PAGES unproven pages: not the load path's (the
        // gather's), whose answer the public entry gives.
        let many = anon_map_filled(LOAD_MAX_PAGES + 1, 7);
        let mut m6 = CallerMem::new();
        let mut t8 = [0u8; 8];
        let all = r(many, (LOAD_MAX_PAGES + 1) * PG);
        assert!(!m6.load_and_probe(&mut t8, r(many, 8), &[all]));
        assert!(m6.read_and_probe(&mut t8, r(many, 8), &[all]));
        assert!(t8 == [7u8; 8] && m6.covers(many, (LOAD_MAX_PAGES + 1) * PG));
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(many as *mut _, (LOAD_MAX_PAGES + 1) * PG) };
        // Refused: data reaching the PROT_NONE or the unmapped page, tuples
        // on either, and what cannot be user memory; by every path.
        // The last of each: the unreadable range, never proven.
        let bad: [(libc::iovec, libc::iovec, libc::iovec); 5] = [
            (r(b, 16), r(b + 3 * PG, PG + 1), r(b + 4 * PG, 1)),
            (r(b, 16), r(b + 5 * PG, 8), r(b + 5 * PG, 8)),
            (r(b + 4 * PG - 8, 16), r(b, PG), r(b + 4 * PG, 1)),
            (r(b + 5 * PG, 16), r(b, PG), r(b + 5 * PG, 1)),
            (r(b, 16), r(usize::MAX - 7, 8), r(usize::MAX - 7, 8)),
        ];
        for (tuples, data, unreadable) in bad {
            let mut t16 = [0u8; 16];
            for (name, path) in paths {
                let mut m = CallerMem::new();
                assert!(!path(&mut m, &mut t16, tuples, &[r(b, 8), data]), "{name}");
                assert!(!m.covers(unreadable.iov_base as usize, unreadable.iov_len));
            }
            let mut m = CallerMem::new();
            assert!(!m.read_and_probe(&mut t16, tuples, &[r(b, 8), data]));
            assert!(!m.covers(unreadable.iov_base as usize, unreadable.iov_len));
        }
        // Good memory through the public entry.
        let mut m3 = CallerMem::new();
        let mut t = [0u8; 32];
        assert!(m3.read_and_probe(&mut t, r(b + 3 * PG, 32), &[r(b, 4 * PG)]));
        assert_eq!(t, [4u8; 32]);
        // Tuples too long for the stack landing buffer.
        let mut m4 = CallerMem::new();
        let mut big = vec![0u8; 3 * PG];
        assert!(m4.gather_and_probe(&mut big, r(b + PG, 3 * PG), &[r(b, 8)]));
        assert!(
            big[..PG] == [2u8; PG] && big[PG..2 * PG] == [3u8; PG] && big[2 * PG..] == [4u8; PG]
        );
        // SAFETY: unmapping our own mapping (page 5 is gone already).
        unsafe { libc::munmap(b as *mut _, 5 * PG) };
    }
}
