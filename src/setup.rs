//! `io_setup` and `io_destroy`: creating and destroying contexts.

use crate::abi::io_context_t;
use crate::context;
use crate::sys;

/// `io_setup(maxevents, ctxp)`.  The kernel checks `ctxp` (`-EFAULT`) and
/// that `*ctxp` is 0 (`-EINVAL`), and writes the new handle there.
// Safe to call with any pointer: `*ctxp` is read only after the kernel has
// written it successfully.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn setup(maxevents: i32, ctxp: *mut io_context_t) -> i32 {
    let r = sys::io_setup(maxevents, ctxp as usize);
    if r == 0 {
        // SAFETY: the kernel has just written the new context id to *ctxp
        // with put_user, which proves the location is mapped and writable.
        // Read as bytes: C does not promise `ctxp` is aligned (the kernel
        // does not care), and a misaligned typed read is undefined.
        let ctx = usize::from_ne_bytes(unsafe {
            core::ptr::read_volatile(ctxp as *const [u8; core::mem::size_of::<usize>()])
        });
        context::register(ctx);
        crate::vma::prime();
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

/// `io_destroy(ctx)`: the kernel cancels what it can, waits for every
/// outstanding request, and unmaps the ring before it returns.
///
/// A registered context first stops user-space reapers and waits for the
/// current one to leave the ring (see `context::ReapState`).  The kernel
/// answers only 0 or `-EINVAL` ("no live context at this address", e.g. it
/// was destroyed already, or its ring was moved away with `mremap`); both
/// mean the address no longer names a ring, so it is forgotten either way.
///
/// `ctx` may also be the new address of a ring moved with `mremap` (then
/// it is not registered, or registered only by a stale entry of a ring that
/// lived there before): the ring's `id` is read (kernel-checked copy) before
/// the call, and on success any entry for the ring's old address is
/// forgotten too (`context::forget_moved`).  `io_destroy` costs an RCU grace
/// period anyway; the extra copy and table scan do not show.
pub fn destroy(ctx: usize) -> i32 {
    let mut id = [0u8; 4];
    let have_id = sys::plausible_user_range(ctx, 32) && sys::copy_from_user(&mut id, ctx) == 0;
    let before = context::registrations_so_far();
    let pi_before = crate::pi::records_so_far();
    // The context and which registration of it this destroy is about: the
    // kernel unmaps the ring first and then waits for in-flight requests,
    // so another thread's io_setup may get the same address (and register
    // it) before we return.
    let registered = context::lookup_settled(ctx).map(|c| (c, c.registration()));
    if let Some((c, _)) = registered {
        if c.begin_destroy().is_err() {
            // A signal handler that interrupted this thread's own
            // user-space reap of this ring: the ring cannot go away under
            // the interrupted copy, and waiting for it would never end.  The
            // call is interrupted, as a reap would be (`reap::REENTRANT`).
            return -libc::EINTR;
        }
    }
    let r = sys::io_destroy(ctx);
    // Programs often free their event buffers with the context: stop
    // trusting every buffer the kernel proved so far (see `proven`).
    crate::proven::forget_all();
    if r == 0 && have_id {
        context::forget_moved(ctx, u32::from_ne_bytes(id), before);
    }
    if r == 0 {
        // Every in-flight request has finished: free emulated-PI records,
        // once no reaper still holds events of them untranslated.
        // (Not if another thread's io_setup got the address meanwhile and
        // registered it again: that context is not the one destroyed.)
        if let Some((c, seq)) = registered {
            if c.registration() == seq {
                c.await_translations();
            }
        }
        crate::pi::context_destroyed(ctx, pi_before);
    }
    if let Some((c, seq)) = registered {
        if r == 0 || r == -(libc::EINVAL as core::ffi::c_long) {
            context::unregister(ctx, seq);
        } else if c.registration() == seq {
            c.abort_destroy();
        }
    }
    sys::to_int(r)
}
