//! The two valgrind client requests we need.
//!
//! Valgrind learns about the ring that `io_setup` maps from its own model of
//! the system call, which sizes the ring from the *requested* event count;
//! the kernel's ring is larger (it at least doubles the count and rounds up
//! to pages).  Memcheck then reports our user-space reads of the slots past
//! its idea of the end as invalid.  At registration we tell memcheck that the
//! whole ring is defined memory.
//!
//! Valgrind's model of `io_submit` also reads every iovec array it is given
//! itself, so a system call that relies on the *kernel* refusing a bad
//! array would crash valgrind: the PI error path asks [`running`] first
//! (`pi::submit::first_error`).  The PI memory proofs ask it too
//! (`sys::store_writable`, `sys::touch_writable`, `sys::page_readable`,
//! `pi::caller::CallerMem::read_and_probe`, `vma`), since
//! valgrind emulates the calls they rely on (and does not know the
//! `PROCMAP_QUERY` ioctl).
//!
//! Outside valgrind a request is a sequence of no-op instructions
//! (rotations by a total of 128 bits, then `xchg rbx,rbx`/`orr
//! x10,x10,x10`) that leaves the default answer (0) in place.

/// `VG_USERREQ_TOOL_BASE('M','C') + 2`: memcheck's `MAKE_MEM_DEFINED`.
const MAKE_MEM_DEFINED: u64 = (((b'M' as u64) & 0xff) << 24) | (((b'C' as u64) & 0xff) << 16) | 2;

/// `VG_USERREQ__RUNNING_ON_VALGRIND`: answers how many valgrinds deep we
/// run (0 natively).
const RUNNING_ON_VALGRIND: u64 = 0x1001;

/// Tell memcheck (if we run under it) that `[addr, addr + len)` is
/// addressable, defined memory.
pub fn declare_defined(addr: usize, len: usize) {
    let args: [u64; 6] = [MAKE_MEM_DEFINED, addr as u64, len as u64, 0, 0, 0];
    client_request(&args);
}

/// Whether this program runs under valgrind (any tool).  A few
/// instructions; asked on PI paths only (never by plain I/O).
pub fn running() -> bool {
    client_request(&[RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
}

#[cfg(target_arch = "x86_64")]
fn client_request(args: &[u64; 6]) -> u64 {
    let result: u64;
    // SAFETY: valgrind's documented "special instruction preamble": four
    // rotations of rdi by 3+13+61+51 = 128 bits (identity) and `xchg
    // rbx,rbx` (no-op) natively; under valgrind it reads the six words at
    // rax and may write its answer to rdx.  No other state is touched.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") 0u64 => result,
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

#[cfg(target_arch = "aarch64")]
fn client_request(args: &[u64; 6]) -> u64 {
    let result: u64;
    // SAFETY: valgrind's preamble for arm64: rotations of x12 by a total of
    // 128 bits and `orr x10, x10, x10` (no-ops natively); under valgrind it
    // reads the six words at x4 and may write its answer to x3.
    unsafe {
        core::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            in("x4") args.as_ptr(),
            inout("x3") 0u64 => result,
            inout("x12") 0u64 => _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn client_request(_args: &[u64; 6]) -> u64 {
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_request_is_harmless_outside_valgrind() {
        let mut page = [0u8; 64];
        super::declare_defined(page.as_mut_ptr() as usize, page.len());
        assert_eq!(page, [0u8; 64]);
        // `cargo test` does not run under valgrind (ctests/valgrind_*.c
        // check the other answer).
        assert!(!super::running());
    }
}
