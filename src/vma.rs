//! What the kernel's table of this process's mappings (its VMAs) says
//! about caller memory: one `PROCMAP_QUERY` ioctl (Linux 6.11+) on a
//! `/proc/self/maps` descriptor answers for a whole mapping, where the
//! per-page proofs of [`crate::sys`] (`page_readable`, `store_writable`,
//! `touch_writable`) cost one system call a page.  A 64 KiB PI read or
//! write has 16 data pages and a page of tuples: measured here (TSC, hot)
//! one query ~1,430 cycles (with the mapping's name; less without, which
//! is how it is asked) against ~6,200 for 16 `rt_sigprocmask` loads.
//!
//! A range counts as proven only where no access to it can raise a signal
//! that the per-page proofs would have turned into `-EFAULT`:
//!
//! * one mapping covers all of it, with the permission asked for
//!   (readable; writable too for stores);
//! * the mapping is plain writable memory: private, anonymous (no file,
//!   no device) and writable (the heap, a stack, `mmap(MAP_PRIVATE |
//!   MAP_ANONYMOUS)` with `PROT_WRITE`).  File and shared mappings can
//!   raise `SIGBUS` past the end of their file, and the kernel's special
//!   mappings (`[vvar]`, `[vdso]`, `[uprobes]`: no file either) have
//!   pages that fault; none of those is ever writable, so "writable" is
//!   what tells them apart, without asking for the mapping's name (which
//!   costs the kernel an allocation and a formatted string per query).
//!   A read-only anonymous buffer keeps the per-page proofs, as do the
//!   others;
//! * no protection keys can be in force: on x86_64 only, and only where
//!   the kernel has not enabled them (CPUID `OSPKE` clear), since a key
//!   can forbid access that the mapping's permissions allow.  Other
//!   architectures (arm64 POE, powerpc keys) keep the per-page proofs;
//! * not under valgrind, which does not know this ioctl.
//!
//! The one kind of fault it cannot see is a guard region installed inside
//! an anonymous mapping with `MADV_GUARD_INSTALL` (Linux 6.13+): a write
//! whose data the caller never touched and that covers such a region
//! faults in the library instead of answering `-EFAULT` (the README says
//! so).  A read's data was pinned by the kernel for the transfer, so it
//! had no guard pages then.
//!
//! **The descriptor.** Opened at the first query, `O_CLOEXEC`, and kept in
//! a page of ours marked `MADV_WIPEONFORK`: a child created by `fork` (or
//! any `clone` without `CLONE_VM`) sees that page zeroed, so it opens its
//! own instead of asking about its parent's mappings through the inherited
//! one (which it leaves alone: the child may already have reused that
//! number).  A `vfork` child shares the parent's memory and mappings, so the
//! parent's descriptor answers for it.  If the query ever fails in a way
//! that says the descriptor is no longer ours (`EBADF`, `ENOTTY`, ...: the
//! program closed it, and perhaps opened something else under its
//! number), the process stops using it and keeps the per-page proofs.
//! Another process's maps file opened under the same number after the
//! program closed ours is the one case that would answer wrongly; the
//! README documents the descriptor.

use crate::sys;
use core::ffi::c_long;
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};

/// `_IOWR('f', 17, struct procmap_query)` (104 bytes), `linux/fs.h`.
const PROCMAP_QUERY: usize = 0xC068_6611;
/// Answer flags of [`ProcmapQuery::vma_flags`].
const VMA_READABLE: u64 = 0x01;
const VMA_WRITABLE: u64 = 0x02;
const VMA_SHARED: u64 = 0x08;

/// `struct procmap_query` of `linux/fs.h` (Linux 6.11).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}
const _: () = assert!(core::mem::size_of::<ProcmapQuery>() == 104);

/// Ranges touching fewer pages than this are proven by the per-page
/// system calls instead of a query (unless the mapping last described
/// covers them): a query costs about what four of those do (~1,430
/// cycles against ~360 each, hot).
pub const WORTH_PAGES: usize = 4;

/// The access a proof is asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Loads.
    Read,
    /// Loads and stores.
    Write,
}

/// One mapping as the kernel described it: `[start, end)` and its flags.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    start: usize,
    end: usize,
    /// Plain writable memory (see the module documentation).
    plain_anon: bool,
    flags: u64,
}

impl Mapping {
    /// No mapping: proves nothing.
    const NOTHING: Mapping = Mapping {
        start: 0,
        end: 0,
        plain_anon: false,
        flags: 0,
    };

    fn proves(&self, addr: usize, end: usize, access: Access) -> bool {
        let want = match access {
            Access::Read => VMA_READABLE,
            Access::Write => VMA_READABLE | VMA_WRITABLE,
        };
        self.plain_anon && self.flags & want == want && self.start <= addr && end <= self.end
    }
}

/// Proofs for the length of one library call: the last mapping the kernel
/// described is kept, so ranges in the same mapping (a read's data and its
/// tuples on the heap) cost one query.  Never kept across calls: the
/// caller may change its mappings between them.
pub struct Vmas {
    /// The mapping last described ([`Mapping::NOTHING`] before the first):
    /// not an `Option`, whose `None` leaves the fields undefined (valgrind
    /// then reports the comparisons the optimiser makes of them before it
    /// looks at the discriminant).
    last: Mapping,
}

impl Default for Vmas {
    fn default() -> Self {
        Self::new()
    }
}

impl Vmas {
    /// A fresh set (nothing known).
    pub fn new() -> Vmas {
        Vmas {
            last: Mapping::NOTHING,
        }
    }

    /// Whether the kernel's mapping table proves every byte of `ranges`
    /// usable for `access` (see the module documentation), asking it where
    /// the mapping last described does not answer.  `false` means "not
    /// proven here": ask the per-page proofs, which answer for certain.
    /// Empty ranges are proven.
    pub fn prove(&mut self, ranges: &[libc::iovec], access: Access) -> bool {
        ranges.iter().all(|v| self.prove_one(v, access))
    }

    /// [`Vmas::prove_one`] from the mapping last described only (no
    /// system call): for ranges of a page or two, which a per-page proof
    /// answers for less than a query (see [`WORTH_PAGES`]).
    pub fn known_one(&self, v: &libc::iovec, access: Access) -> bool {
        match span(v) {
            Some((addr, end)) => v.iov_len == 0 || self.last.proves(addr, end, access),
            None => false,
        }
    }

    /// [`Vmas::prove`] for one range.
    pub fn prove_one(&mut self, v: &libc::iovec, access: Access) -> bool {
        if self.known_one(v, access) {
            return true;
        }
        let Some((addr, end)) = span(v) else {
            return false;
        };
        let Some(m) = query(addr) else {
            return false;
        };
        self.last = m;
        m.proves(addr, end, access)
    }
}

/// `[start, end)` of `v` where it can be user memory (an empty range
/// anywhere is proven by whoever asks).
fn span(v: &libc::iovec) -> Option<(usize, usize)> {
    let addr = v.iov_base as usize;
    if v.iov_len == 0 {
        return Some((addr, addr));
    }
    addr.checked_add(v.iov_len)
        .filter(|_| sys::plausible_user_range(addr, v.iov_len))
        .map(|end| (addr, end))
}

/// The page of [`state`]: 0 not made yet, [`NO_PAGE`] none to be had,
/// otherwise its address.  Made without a lock: a `fork()` while another
/// thread made it under a `OnceLock` left the child's first `io_setup`
/// waiting for ever on the lock's "running" state (`fork_first_setup.c`, 1
/// hang in 150 in a fresh-clone CI run).  Threads that race each map a
/// page; one compare-and-swap publishes its page (`Release`, with the
/// kernel's zero fill; readers `Acquire`), the others unmap theirs.
static STATE_PAGE: AtomicUsize = AtomicUsize::new(0);
/// [`STATE_PAGE`]: no page could be had (never a page's address).
const NO_PAGE: usize = 1;

/// The state of this process's descriptor, kept in a wipe-on-fork page
/// (see the module documentation): 0 not opened in this process, -1
/// unusable, otherwise the descriptor + 1.  Relaxed: threads racing to
/// open both succeed and one closes its own (see [`descriptor`]); the value
/// only ever goes from 0 to a descriptor or -1, and from a descriptor to
/// -1, never back.  `None` where the page cannot be had (no wipe-on-fork:
/// without it a child could use its parent's descriptor).
fn state() -> Option<&'static AtomicI32> {
    let mut page = STATE_PAGE.load(Ordering::Acquire);
    if page == 0 {
        let mine = sys::wipe_on_fork_page().unwrap_or(NO_PAGE);
        page = match STATE_PAGE.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => mine,
            Err(theirs) => {
                if mine != NO_PAGE {
                    // SAFETY: our own new page, never published.
                    unsafe { libc::munmap(mine as *mut libc::c_void, sys::PAGE) };
                }
                theirs
            }
        };
    }
    published(page)
}

/// The state in the page [`STATE_PAGE`] held (`None` for 0 and
/// [`NO_PAGE`]).
fn published(page: usize) -> Option<&'static AtomicI32> {
    // SAFETY: a published page is ours, readable, writable, zero-filled
    // (a valid AtomicI32 0), aligned, and mapped for the life of the
    // process (never unmapped); a forked child gets its own zeroed copy.
    (page != 0 && page != NO_PAGE).then(|| unsafe { &*(page as *const AtomicI32) })
}

/// Map the state page now (at `io_setup`), not in the middle of the first
/// `io_submit` whose memory a query proves: a page mapped there can land
/// where the caller has just unmapped a buffer it still passes (a
/// dangling pointer), and the proof would then find the library's page in
/// its place (an independent tester's `repro_hole.c`: a write whose data
/// lay in such a hole was verified against our zeroed page instead of
/// refused with `-EFAULT`, and the batch went on).  `io_setup` maps the
/// kernel's ring too, so nothing new is risked there.  (A context from a
/// raw `io_setup(2)` still maps it at its first query.)
pub fn prime() {
    if allowed() {
        let _ = state();
    }
}

/// Whether the environment allows these proofs at all (asked once).
/// (Asked without a lock, like [`STATE_PAGE`] is made: `io_setup` asks it,
/// and a fork must not catch a thread inside a lock the child needs.)
fn allowed() -> bool {
    static ALLOWED: AtomicU8 = AtomicU8::new(0);
    sys::answers_once(&ALLOWED, || !protection_keys_possible())
}

/// Whether a protection key could forbid an access the mapping allows.
#[cfg(target_arch = "x86_64")]
fn protection_keys_possible() -> bool {
    // CPUID.(EAX=7,ECX=0):ECX bit 4 is OSPKE: the OS has set CR4.PKE.
    // Leaf 7 exists where the maximum leaf (leaf 0's EAX) is at least 7.
    let max = core::arch::x86_64::__cpuid(0).eax;
    max >= 7 && core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 4) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn protection_keys_possible() -> bool {
    true
}

/// This process's `/proc/self/maps` descriptor, opened at the first call
/// (see [`state`]), or `None`.
fn descriptor() -> Option<i32> {
    if !allowed() {
        return None;
    }
    let st = state()?;
    match st.load(Ordering::Relaxed) {
        -1 => return None,
        0 => {}
        n => return Some(n - 1),
    }
    let path = b"/proc/self/maps\0";
    let fd = sys::raw6(
        libc::SYS_openat,
        libc::AT_FDCWD as c_long as usize,
        path.as_ptr() as usize,
        (libc::O_RDONLY | libc::O_CLOEXEC) as usize,
        0,
        0,
        0,
    );
    if fd < 0 {
        // Out of descriptors (or memory) for now: ask again next time.
        // Anything else (no /proc, a seccomp filter) stays so.
        let e = -fd as i32;
        if e != libc::EMFILE && e != libc::ENFILE && e != libc::ENOMEM && e != libc::EINTR {
            st.store(-1, Ordering::Relaxed);
        }
        return None;
    }
    let fd = fd as i32;
    // The descriptor must answer for this process as documented: our own
    // state page is private anonymous, readable and writable.
    let page = st as *const AtomicI32 as usize;
    let works = matches!(ask(fd, page), Ok(m) if m.proves(page, page + 4, Access::Write));
    match st.compare_exchange(
        0,
        if works { fd + 1 } else { -1 },
        Ordering::Relaxed,
        Ordering::Relaxed,
    ) {
        Ok(_) if works => Some(fd),
        Ok(_) => {
            close(fd);
            None
        }
        // Another thread settled it first: use its answer.
        Err(n) => {
            close(fd);
            (n > 0).then(|| n - 1)
        }
    }
}

/// When the library is unloaded (`dlclose`, and at exit): close the
/// descriptor, so that a program that loads and unloads the library keeps
/// none (an independent tester's `t7b_fdleak.c`: one more
/// `/proc/<pid>/maps` descriptor per `dlopen`/PI/`dlclose` cycle).  The
/// state becomes -1 (unusable) first, so a thread still in a query at exit
/// gets `EBADF` at worst, and stops using it.  The page stays mapped:
/// another thread may still read it while the process exits.  Run from
/// `.fini_array` ([`crate::at_unload`]); makes nothing that does not exist.
pub fn close_descriptor() {
    if let Some(st) = published(STATE_PAGE.load(Ordering::Acquire)) {
        let n = st.swap(-1, Ordering::Relaxed);
        if n > 0 {
            close(n - 1);
        }
    }
}

/// Tests: make the state page and the descriptor now (see
/// `sys::layout_lock`).
#[cfg(test)]
pub(crate) fn prepare() {
    let _ = descriptor();
}

fn close(fd: i32) {
    sys::raw6(libc::SYS_close, fd as usize, 0, 0, 0, 0, 0);
}

/// The mapping holding `addr`, as this process's descriptor describes it;
/// `None` if there is none, or no answer.
fn query(addr: usize) -> Option<Mapping> {
    let fd = descriptor()?;
    match ask(fd, addr) {
        Ok(m) => Some(m),
        // No mapping there, or interrupted: not proven this time.
        Err(e) if e == libc::ENOENT || e == libc::EINTR || e == libc::EAGAIN => None,
        // The descriptor is not (or no longer) a maps file of ours.
        Err(_) => {
            if let Some(st) = state() {
                st.store(-1, Ordering::Relaxed);
            }
            None
        }
    }
}

/// Tests: whether the mapping table can be asked here; where it cannot,
/// prints the SKIP line the tests that need it share.
#[cfg(test)]
pub(crate) fn usable_or_skip() -> bool {
    let usable = descriptor().is_some();
    if !usable {
        eprintln!("SKIP: no PROCMAP_QUERY here (Linux < 6.11, or protection keys)");
    }
    usable
}

#[cfg(test)]
thread_local! {
    /// Tests: how many queries this thread has made.
    static QUERIES: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// Tests: how many queries this thread has made so far, or `None` where
/// the mapping table cannot be asked here.
#[cfg(test)]
pub(crate) fn queries() -> Option<usize> {
    descriptor().map(|_| QUERIES.with(|q| q.get()))
}

/// One `PROCMAP_QUERY` for the mapping holding `addr` (without its name:
/// see the module documentation); the errno if the kernel refused.
fn ask(fd: i32, addr: usize) -> Result<Mapping, i32> {
    #[cfg(test)]
    QUERIES.with(|q| q.set(q.get() + 1));
    let mut q = ProcmapQuery {
        size: core::mem::size_of::<ProcmapQuery>() as u64,
        query_addr: addr as u64,
        ..Default::default()
    };
    let r = sys::raw6(
        libc::SYS_ioctl,
        fd as usize,
        PROCMAP_QUERY,
        &mut q as *mut ProcmapQuery as usize,
        0,
        0,
        0,
    );
    if r < 0 {
        return Err(-r as i32);
    }
    Ok(Mapping {
        start: q.vma_start as usize,
        end: q.vma_end as usize,
        plain_anon: q.inode == 0
            && q.dev_major == 0
            && q.dev_minor == 0
            && q.vma_flags & (VMA_SHARED | VMA_WRITABLE) == VMA_WRITABLE,
        flags: q.vma_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::iov as r;

    #[test]
    fn mappings_prove_what_they_allow_and_nothing_else() {
        let _layout = sys::layout_lock();
        if !usable_or_skip() {
            return;
        }
        // Fenced: a neighbour merged into it would move its end.
        let rw = sys::fenced_map(4 * 4096, libc::PROT_READ | libc::PROT_WRITE);
        let ro = sys::anon_map(4096, libc::PROT_READ);
        let none = sys::anon_map(4096, libc::PROT_NONE);
        let gone = sys::anon_map(4096, libc::PROT_READ);
        // SAFETY: our own mapping from just above.
        unsafe { libc::munmap(gone as *mut _, 4096) };
        let mut v = Vmas::new();
        assert!(v.prove(&[r(rw, 4 * 4096)], Access::Write));
        assert!(v.prove(&[r(rw + 100, 5000), r(rw + 3 * 4096, 4096)], Access::Read));
        // Read-only anonymous memory is left to the per-page proofs (the
        // kernel's special mappings look the same without their names).
        assert!(!v.prove(&[r(ro, 4096)], Access::Read));
        assert!(!Vmas::new().prove(&[r(ro, 4096)], Access::Write));
        assert!(!Vmas::new().prove(&[r(none, 1)], Access::Read));
        assert!(!Vmas::new().prove(&[r(gone, 1)], Access::Read));
        // Past the end of a mapping, or across two.
        assert!(!Vmas::new().prove(&[r(rw, 4 * 4096 + 1)], Access::Read));
        assert!(!Vmas::new().prove(&[r(usize::MAX - 10, 5)], Access::Read));
        // A shared or file mapping is not plain anonymous memory.
        let shared = sys::shared_anon_map(4096, libc::PROT_READ | libc::PROT_WRITE);
        assert!(!Vmas::new().prove(&[r(shared, 8)], Access::Read));
        let text = mappings_prove_what_they_allow_and_nothing_else as fn() as usize;
        assert!(!Vmas::new().prove(&[r(text, 8)], Access::Read));
        // SAFETY: getauxval reads the auxiliary vector only.
        let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
        if vdso != 0 {
            assert!(!Vmas::new().prove(&[r(vdso, 8)], Access::Read));
        }
        // None of these refusals gave up on the descriptor.
        assert!(Vmas::new().prove(&[r(rw, 8)], Access::Read));
        // The same Vmas, after a mapping changed under its cached answer,
        // is wrong only within one call; a new one asks again.
        // SAFETY: our own mapping.
        unsafe { libc::mprotect(rw as *mut _, 4096, libc::PROT_NONE) };
        assert!(!Vmas::new().prove(&[r(rw, 8)], Access::Read));
        assert!(Vmas::new().prove(&[r(rw + 4096, 8)], Access::Read));
    }
}
