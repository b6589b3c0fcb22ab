//! libaio-rs: a memory-safe, ABI-exact replacement for Linux's libaio.
//!
//! Module map (one concern each; only `ffi` and `compat` export symbols):
//!
//! * [`abi`]: the `repr(C)` types of `libaio.h`, with layout asserts;
//! * [`sys`]: raw system calls (negative errno, `errno` untouched);
//! * [`context`]: which contexts this process created (and may read);
//! * [`ring`]: the kernel's mapped completion ring;
//! * [`proven`]: caller memory the kernel has proven usable (per thread);
//! * [`vma`]: caller memory proven usable by the kernel's mapping table;
//! * [`reserve`]: the allocator, with a reserve for when memory runs out;
//! * [`setup`], [`submit`], [`reap`], [`queue`]: the library's semantics;
//! * [`prep`]: the `io_prep_*` helpers;
//! * [`pi`]: T10 protection information (`IO_CMD_P*VM`), kernel or emulated;
//! * [`compat`]: symbol versions and the `LIBAIO_0.1` entry points;
//! * [`ffi`]: the exported functions, thin shims over the above.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
// The crate docs are for the library's developers: module docs name the
// private items that carry their design (`cargo doc --document-private-items`).
#![allow(rustdoc::private_intra_doc_links)]

#[allow(missing_docs)]
pub mod abi;
pub mod checksum;
pub mod compat;
pub mod context;
#[allow(missing_docs)]
pub mod ffi;
pub mod pi;
pub mod prep;
pub mod proven;
pub mod queue;
pub mod reap;
pub mod reserve;
pub mod ring;
pub mod setup;
pub mod submit;
#[allow(missing_docs)]
pub mod sys;
pub mod valgrind;
pub mod vma;

/// The system allocator, with a small reserve for when it fails (see
/// [`reserve`]).
#[global_allocator]
static ALLOCATOR: reserve::WithReserve = reserve::WithReserve::new();

/// Run by the dynamic loader when the library is loaded: the one-time
/// set-up that no `fork()` may catch half done (see
/// [`context::ensure_atfork`]).
extern "C" fn at_load() {
    context::ensure_atfork();
}

/// The loader's list of functions to run at load.
#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = at_load;

/// Run by the dynamic loader when the library is unloaded (`dlclose`) and
/// at exit: give back what the library holds per load that the program
/// would otherwise keep: the mapping-table descriptor (see
/// [`vma::close_descriptor`]).  The PI record map holds no memory while
/// idle (see `pi::record::Live`'s drop).
extern "C" fn at_unload() {
    vma::close_descriptor();
}

/// The loader's list of functions to run at unload.
#[used]
#[link_section = ".fini_array"]
static AT_UNLOAD: extern "C" fn() = at_unload;
