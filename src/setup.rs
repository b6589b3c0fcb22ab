//! `io_setup` and `io_destroy`: creating and destroying contexts.

use crate::abi::io_context_t;
use crate::context;
use crate::sys;

/// `io_setup(maxevents, ctxp)`.  The kernel checks `ctxp` (`-EFAULT`) and
/// that `*ctxp` is 0 (`-EINVAL`), and writes the new handle there.
pub fn setup(maxevents: i32, ctxp: *mut io_context_t) -> i32 {
    let r = sys::io_setup(maxevents, ctxp as usize);
    if r == 0 {
        // SAFETY: the kernel has just written the new context id to *ctxp
        // with put_user, which proves the location is mapped and writable.
        let ctx = unsafe { core::ptr::read_volatile(ctxp) } as usize;
        context::register(ctx, maxevents as u32);
    }
    sys::to_int(r)
}

/// `io_setup` into a local handle (for callers whose `ctxp` has not been
/// validated by the kernel yet).
pub fn setup_local(maxevents: i32) -> Result<io_context_t, i32> {
    let mut ctx: io_context_t = core::ptr::null_mut();
    match setup(maxevents, &mut ctx) {
        0 => Ok(ctx),
        e => Err(e),
    }
}

/// `io_destroy(ctx)`: the kernel cancels what it can and waits for every
/// outstanding request before it returns.
pub fn destroy(ctx: usize) -> i32 {
    let r = sys::io_destroy(ctx);
    if r == 0 {
        // Every in-flight request has finished: free emulated-PI records.
        crate::pi::context_destroyed(ctx);
        context::unregister(ctx);
    }
    sys::to_int(r)
}
