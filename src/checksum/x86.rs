//! PCLMULQDQ folding kernels (x86_64, 128-bit SSE registers), and the
//! dispatch to the AVX-512 VPCLMULQDQ kernels in `x86/avx512.rs`.
//!
//! Every `#[target_feature]` function here is private and reachable only
//! through the safe entry points at the bottom, which check the CPU with
//! `is_x86_feature_detected!` first and return `None` otherwise.
//!
//! A kernel folds whole 16-byte blocks into one 128-bit accumulator (see
//! `consts.rs` for the algebra) and reduces it to the CRC register; the
//! caller finishes any tail of fewer than 16 bytes with the table code.
//!
//! Two shapes:
//! * one buffer: eight accumulators 16 bytes apart walk the buffer in
//!   128-byte steps (eight independent multiply chains), then are folded
//!   into one;
//! * many buffers (protection intervals): `LANES` intervals are walked in
//!   lockstep with one accumulator each, so the chains of different
//!   intervals overlap and the final reductions of all lanes run in
//!   parallel too.

// The arithmetic intrinsics are safe to call inside `#[target_feature]`
// functions since Rust 1.87; the kernels keep explicit `unsafe` blocks (with
// their SAFETY notes) around the loads, and rustc reports the rest as unused.
#![allow(unused_unsafe)]

use super::consts::FoldConsts;
use core::arch::x86_64::*;

// The AVX-512 and VPCLMULQDQ target features are stable since Rust 1.89
// (the crate's `rust-version`).
mod avx512;

pub(super) use avx512::available as wide_available;

/// Intervals walked in lockstep by the multi-buffer kernel. Eight chains
/// cover the carry-less multiply latency with margin and, with constants
/// and temporaries, still fit in the 16 SSE registers.
const LANES: usize = 8;

/// Whether the CPU has everything the kernels use.
#[inline]
pub(super) fn available() -> bool {
    is_x86_feature_detected!("pclmulqdq")
        && is_x86_feature_detected!("ssse3")
        && is_x86_feature_detected!("sse4.1")
}

/// `k` as a register, `k[0]` in the low 64-bit lane.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
fn pair(k: [u64; 2]) -> __m128i {
    // SAFETY: plain register construction, SSE2 is enabled on this fn.
    unsafe { _mm_set_epi64x(k[1] as i64, k[0] as i64) }
}

/// Loads the 16 bytes at `p` as one block: byte-swapped into normal bit
/// order for a non-reflected CRC, as-is (little-endian) for a reflected one.
///
/// # Safety
/// `p..p + 16` must be readable.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn load<const REFLECTED: bool>(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes; loadu has no
    // alignment requirement.
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    if REFLECTED {
        v
    } else {
        // SAFETY: register-only shuffle, SSSE3 is enabled on this fn.
        unsafe {
            let reverse = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            _mm_shuffle_epi8(v, reverse)
        }
    }
}

/// `a + b` over GF(2).
#[inline]
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
fn xor(a: __m128i, b: __m128i) -> __m128i {
    // SAFETY: register-only arithmetic, SSE2 is enabled on this fn.
    unsafe { _mm_xor_si128(a, b) }
}

/// Moves `acc` forward by the distance `k` was built for (two products,
/// one per 64-bit lane).
#[inline]
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
fn fold(acc: __m128i, k: __m128i) -> __m128i {
    // SAFETY: register-only arithmetic, PCLMULQDQ is enabled on this fn.
    unsafe {
        _mm_xor_si128(
            _mm_clmulepi64_si128(acc, k, 0x00),
            _mm_clmulepi64_si128(acc, k, 0x11),
        )
    }
}

/// Reduces a 128-bit accumulator to the CRC register.
///
/// Non-reflected (width 16): `Y = X_hi * (x^80 mod G) + X_lo * x^16` is an
/// 80-bit value congruent to `X * x^16`; with `Y = Y_hi * x^16 + Y_lo`,
/// Barrett gives the quotient `q = Y_hi + floor(Y_hi * mu_lo / x^64)`
/// (`mu = floor(x^80 / G) = x^64 + mu_lo`) and the CRC is
/// `(q * P mod x^16) + Y_lo`.
///
/// Reflected (width 64), everything bit-reversed: `w = rev128(Y)` with
/// `Y = X_hi * (x^128 mod G) + X_lo * x^64`; the quotient of `Y_hi * x^64`
/// is the high half of `Y_hi * mu' * x` (`mu' = floor(x^127 / G)`, exact
/// because Y_hi has < 64 bits), which reversed is just the low lane of
/// `clmul(rev(Y_hi), rev(mu'))`; the remainder is the low half of `q * G`,
/// reversed: `q_r + high(clmul(q_r, rev((G - 1) / x)))`; add `Y_lo`.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
fn reduce<const REFLECTED: bool>(acc: __m128i, c: &FoldConsts) -> u64 {
    let r = pair(c.reduce);
    let g = pair([c.poly, 0]);
    // SAFETY: register-only arithmetic; PCLMULQDQ/SSE4.1 enabled on this fn.
    unsafe {
        if REFLECTED {
            // w = rev(X_hi) * C1 + (rev(X_lo) in the low lane)
            let w = _mm_xor_si128(_mm_clmulepi64_si128(acc, r, 0x00), _mm_srli_si128(acc, 8));
            // low lane of t1 = rev(q)
            let t1 = _mm_clmulepi64_si128(w, r, 0x10);
            let t2 = _mm_clmulepi64_si128(t1, g, 0x00);
            // high lane: high(q_r * G1) + q_r + rev(Y_lo)
            let t = _mm_xor_si128(_mm_xor_si128(t2, _mm_slli_si128(t1, 8)), w);
            _mm_extract_epi64(t, 1) as u64
        } else {
            // Y = X_hi * K + (X_lo << 16), below x^80.
            let y = _mm_xor_si128(
                _mm_clmulepi64_si128(acc, r, 0x01),
                _mm_slli_si128(_mm_move_epi64(acc), 2),
            );
            let y_hi = _mm_srli_si128(y, 2);
            let q = _mm_xor_si128(_mm_srli_si128(_mm_clmulepi64_si128(y_hi, r, 0x10), 8), y_hi);
            let rem = _mm_xor_si128(_mm_clmulepi64_si128(q, g, 0x00), y);
            (_mm_cvtsi128_si32(rem) as u32 & 0xFFFF) as u64
        }
    }
}

/// Folds `data` (a non-empty multiple of 16 bytes) into one accumulator.
///
/// # Safety
/// The CPU must support the enabled features.
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn fold_buffer<const REFLECTED: bool>(data: &[u8], c: &FoldConsts) -> __m128i {
    debug_assert!(!data.is_empty() && data.len().is_multiple_of(16));
    let n = data.len();
    let p = data.as_ptr();
    let init = pair(c.init);
    let k16 = pair(c.k16);
    let mut off;
    let mut acc;
    if n >= 128 {
        let k128 = pair(c.k128);
        let mut a = [init; 8];
        for (i, ai) in a.iter_mut().enumerate() {
            // SAFETY: 16 * i + 16 <= 128 <= n: inside `data`.
            *ai = unsafe { load::<REFLECTED>(p.add(16 * i)) };
        }
        a[0] = xor(a[0], init);
        off = 128;
        while off + 128 <= n {
            for (i, ai) in a.iter_mut().enumerate() {
                // SAFETY: off + 16 * i + 16 <= off + 128 <= n.
                let b = unsafe { load::<REFLECTED>(p.add(off + 16 * i)) };
                *ai = xor(fold(*ai, k128), b);
            }
            off += 128;
        }
        acc = a[7];
        for (ai, k) in a.iter().zip(c.combine) {
            acc = xor(acc, fold(*ai, pair(k)));
        }
    } else {
        // SAFETY: n >= 16: reads p .. p + 16, inside `data`.
        acc = xor(unsafe { load::<REFLECTED>(p) }, init);
        off = 16;
    }
    while off < n {
        // SAFETY: n is a multiple of 16 and off < n, so off + 16 <= n.
        let b = unsafe { load::<REFLECTED>(p.add(off)) };
        acc = xor(fold(acc, k16), b);
        off += 16;
    }
    acc
}

/// Reduced register of `data` (a non-empty multiple of 16 bytes).
///
/// # Safety
/// The CPU must support the enabled features.
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn crc_blocks<const REFLECTED: bool>(data: &[u8], c: &FoldConsts) -> u64 {
    // SAFETY: same features; `data` meets fold_buffer's length rule.
    let acc = unsafe { fold_buffer::<REFLECTED>(data, c) };
    reduce::<REFLECTED>(acc, c)
}

/// Reduced registers of the first `blocks` bytes (a non-zero multiple of
/// 16) of each of `LANES` consecutive `stride`-byte intervals at `base`.
///
/// # Safety
/// The CPU must support the enabled features, and
/// `base .. base + (LANES - 1) * stride + blocks` must be readable.
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn crc_lanes<const REFLECTED: bool>(
    base: *const u8,
    stride: usize,
    blocks: usize,
    c: &FoldConsts,
) -> [u64; LANES] {
    let init = pair(c.init);
    let k16 = pair(c.k16);
    let mut a = [init; LANES];
    for (i, ai) in a.iter_mut().enumerate() {
        // SAFETY: reads base + i * stride .. + 16, inside lane i's blocks.
        *ai = xor(unsafe { load::<REFLECTED>(base.add(i * stride)) }, init);
    }
    let mut off = 16;
    while off < blocks {
        for (i, ai) in a.iter_mut().enumerate() {
            // SAFETY: off + 16 <= blocks (a multiple of 16): inside lane i.
            let b = unsafe { load::<REFLECTED>(base.add(i * stride + off)) };
            *ai = xor(fold(*ai, k16), b);
        }
        off += 16;
    }
    let mut regs = [0u64; LANES];
    for (r, ai) in regs.iter_mut().zip(a) {
        *r = reduce::<REFLECTED>(ai, c);
    }
    regs
}

/// Reduced register of each interval's leading `interval & !15` bytes into
/// `regs` (the caller finishes the tails); `interval >= 16`.
///
/// # Safety
/// The CPU must support the enabled features.
#[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn crc_intervals<const REFLECTED: bool>(
    data: &[u8],
    interval: usize,
    c: &FoldConsts,
    mut emit: impl FnMut(usize, u64),
) {
    let blocks = interval & !15;
    debug_assert!(blocks >= 16 && data.len().is_multiple_of(interval));
    let count = data.len() / interval;
    let mut i = 0;
    while i + LANES <= count {
        // SAFETY: intervals i .. i + LANES are inside `data`.
        let regs =
            unsafe { crc_lanes::<REFLECTED>(data.as_ptr().add(i * interval), interval, blocks, c) };
        for (j, r) in regs.into_iter().enumerate() {
            emit(i + j, r);
        }
        i += LANES;
    }
    while i < count {
        let chunk = &data[i * interval..i * interval + blocks];
        // SAFETY: same features; chunk is a non-empty multiple of 16.
        emit(i, unsafe { crc_blocks::<REFLECTED>(chunk, c) });
        i += 1;
    }
}

/// Register (before any final XOR) after the leading `len & !15` bytes of
/// `data`, or `None` without PCLMULQDQ. `data.len() >= 16`. `wide` allows
/// the AVX-512 kernel (the tests turn it off to check the 128-bit one).
pub(super) fn register(data: &[u8], c: &FoldConsts, reflected: bool, wide: bool) -> Option<u64> {
    assert!(data.len() >= 16);
    if wide {
        if let Some(reg) = avx512::register(data, c, reflected) {
            return Some(reg);
        }
    }
    if !available() {
        return None;
    }
    let blocks = &data[..data.len() & !15];
    // SAFETY: the required CPU features were detected just above.
    Some(unsafe {
        if reflected {
            crc_blocks::<true>(blocks, c)
        } else {
            crc_blocks::<false>(blocks, c)
        }
    })
}

/// Calls `emit(i, register)` for the leading `interval & !15` bytes of each
/// interval `i`; returns `false` (doing nothing) without PCLMULQDQ.
/// `interval >= 16`, `data.len()` a multiple of `interval`; `wide` as for
/// [`register`]; `fetch` is used by the AVX-512 kernel only.
pub(super) fn registers_of_intervals(
    data: &[u8],
    interval: usize,
    c: &FoldConsts,
    reflected: bool,
    wide: bool,
    fetch: super::Fetch,
    mut emit: impl FnMut(usize, u64),
) -> bool {
    assert!(interval >= 16 && data.len().is_multiple_of(interval));
    if wide && avx512::registers_of_intervals(data, interval, c, reflected, fetch, &mut emit) {
        return true;
    }
    if !available() {
        return false;
    }
    // SAFETY: the required CPU features were detected just above.
    unsafe {
        if reflected {
            crc_intervals::<true>(data, interval, c, emit)
        } else {
            crc_intervals::<false>(data, interval, c, emit)
        }
    }
    true
}
