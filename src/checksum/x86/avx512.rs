// VPCLMULQDQ kernels (AVX-512): four 128-bit blocks per 512-bit register,
// so every multiply instruction does four folds. Included into
// `x86.rs` (module `avx512`) only by Rust >= 1.89, where these target
// features are stable; plain comments because `include!` rejects `//!`.
//
// Shapes, as in the 128-bit kernels:
// * one buffer: four 512-bit accumulators walk it in 256-byte steps;
// * many intervals: `LANES` intervals in lockstep, one 512-bit
//   accumulator (64 bytes) each.
// A 512-bit accumulator holds four consecutive blocks; it is brought down
// to one 128-bit block by folding block j by (3 - j) * 16 bytes, and then
// finished with the 128-bit code (16-byte blocks, reduction).

use super::{fold, load, pair, reduce, xor, LANES};
use crate::checksum::consts::FoldConsts;
use crate::checksum::Fetch;
use core::arch::x86_64::*;

/// Whether the CPU has everything these kernels use.
#[inline]
pub(in crate::checksum) fn available() -> bool {
    super::available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("vpclmulqdq")
}

/// `k` in every 128-bit lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn splat(k: [u64; 2]) -> __m512i {
    // SAFETY: register-only, AVX-512F is enabled on this fn.
    unsafe { _mm512_broadcast_i32x4(pair(k)) }
}

/// `a + b + c` over GF(2) in one instruction.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    // SAFETY: register-only, AVX-512F is enabled on this fn.
    unsafe { _mm512_ternarylogic_epi64(a, b, c, 0x96) }
}

/// `a + b` over GF(2), 512 bits.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn xor4(a: __m512i, b: __m512i) -> __m512i {
    // SAFETY: register-only, AVX-512F is enabled on this fn.
    unsafe { _mm512_xor_si512(a, b) }
}

/// Each lane of `acc` folded forward by its lane's constant, plus `data`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn fold4(acc: __m512i, k: __m512i, data: __m512i) -> __m512i {
    // SAFETY: register-only, VPCLMULQDQ/AVX-512F are enabled on this fn.
    let (lo, hi) = unsafe {
        (
            _mm512_clmulepi64_epi128(acc, k, 0x00),
            _mm512_clmulepi64_epi128(acc, k, 0x11),
        )
    };
    xor3(lo, hi, data)
}

/// Loads 64 bytes as four blocks (byte-swapped per block unless
/// `REFLECTED`, like `load`).
///
/// # Safety
/// `p..p + 64` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn load4<const REFLECTED: bool>(p: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 64 readable bytes; no alignment needed.
    let v = unsafe { _mm512_loadu_si512(p.cast()) };
    if REFLECTED {
        v
    } else {
        // SAFETY: register-only shuffle, AVX-512BW is enabled on this fn.
        unsafe {
            let reverse = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            _mm512_shuffle_epi8(v, _mm512_broadcast_i32x4(reverse))
        }
    }
}

/// Hint the cache to fetch the line at `p` (any address: never faults):
/// into L1 (`PREFETCHT0`), or with `TO_L2` into L2 (`PREFETCHT1`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn prefetch<const TO_L2: bool>(p: *const u8) {
    // SAFETY: PREFETCHT0/T1 are hints; they do not access memory
    // architecturally and never fault, whatever the address.
    unsafe {
        if TO_L2 {
            _mm_prefetch::<_MM_HINT_T1>(p.cast())
        } else {
            _mm_prefetch::<_MM_HINT_T0>(p.cast())
        }
    }
}

/// `c.init` in the first block, zero elsewhere.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn init4(c: &FoldConsts) -> __m512i {
    // SAFETY: register-only, AVX-512F is enabled on this fn.
    unsafe { _mm512_inserti32x4::<0>(_mm512_setzero_si512(), pair(c.init)) }
}

/// The four blocks of `acc`, each moved forward to the last block's place
/// (block j by (3 - j) * 16 bytes; the last block's constant is zero, so
/// its product vanishes and the block itself is kept): their sum is the
/// accumulator as one 128-bit block ([`narrow`] adds them up; [`narrow4`]
/// adds up those of four accumulators at once).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn aligned_blocks(acc: __m512i, c: &FoldConsts) -> __m512i {
    let [k48, k32, k16] = [c.combine[4], c.combine[5], c.combine[6]];
    // SAFETY: register-only, AVX-512F is enabled on this fn.
    unsafe {
        let k = _mm512_set_epi64(
            0,
            0,
            k16[1] as i64,
            k16[0] as i64,
            k32[1] as i64,
            k32[0] as i64,
            k48[1] as i64,
            k48[0] as i64,
        );
        let last = _mm512_maskz_mov_epi64(0xC0, acc);
        fold4(acc, k, last)
    }
}

/// [`narrow`] of four accumulators at once: block j of the result is
/// accumulator j as one 128-bit block.  A transpose by block shuffles
/// (six) and three additions, where narrowing them one at a time takes
/// twelve extractions and twelve additions.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn narrow4(acc: [__m512i; 4], c: &FoldConsts) -> __m512i {
    let t = acc.map(|a| aligned_blocks(a, c));
    // `_mm512_shuffle_i64x2::<M>(a, b)` takes blocks M[1:0], M[3:2] of `a`
    // and M[5:4], M[7:6] of `b`.
    // SAFETY: register-only, AVX-512F is enabled on this fn.
    unsafe {
        // [t0b0 + t0b2, t0b1 + t0b3, t1b0 + t1b2, t1b1 + t1b3], and t2, t3.
        let s01 = xor4(
            _mm512_shuffle_i64x2::<0b01_00_01_00>(t[0], t[1]),
            _mm512_shuffle_i64x2::<0b11_10_11_10>(t[0], t[1]),
        );
        let s23 = xor4(
            _mm512_shuffle_i64x2::<0b01_00_01_00>(t[2], t[3]),
            _mm512_shuffle_i64x2::<0b11_10_11_10>(t[2], t[3]),
        );
        // Block j: the two partial sums of accumulator j.
        xor4(
            _mm512_shuffle_i64x2::<0b10_00_10_00>(s01, s23),
            _mm512_shuffle_i64x2::<0b11_01_11_01>(s01, s23),
        )
    }
}

/// [`reduce`] of the four 128-bit blocks of `x` at once
/// (the same steps, each 128-bit lane on its own): the CRC registers of
/// the four accumulators [`narrow4`] brought down.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn reduce4<const REFLECTED: bool>(x: __m512i, c: &FoldConsts) -> [u64; 4] {
    let r = splat(c.reduce);
    let g = splat([c.poly, 0]);
    let mut lanes = [0u64; 8];
    // SAFETY: register-only arithmetic (AVX-512F/BW, VPCLMULQDQ enabled on
    // this fn), then a store into our own 64-byte array.
    unsafe {
        if REFLECTED {
            let w = xor4(
                _mm512_clmulepi64_epi128(x, r, 0x00),
                _mm512_bsrli_epi128::<8>(x),
            );
            let t1 = _mm512_clmulepi64_epi128(w, r, 0x10);
            let t2 = _mm512_clmulepi64_epi128(t1, g, 0x00);
            let t = xor3(t2, _mm512_bslli_epi128::<8>(t1), w);
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), t);
            [lanes[1], lanes[3], lanes[5], lanes[7]]
        } else {
            let y = xor4(
                _mm512_clmulepi64_epi128(x, r, 0x01),
                _mm512_bslli_epi128::<2>(_mm512_maskz_mov_epi64(0x55, x)),
            );
            let y_hi = _mm512_bsrli_epi128::<2>(y);
            let q = xor4(
                _mm512_bsrli_epi128::<8>(_mm512_clmulepi64_epi128(y_hi, r, 0x10)),
                y_hi,
            );
            let rem = xor4(_mm512_clmulepi64_epi128(q, g, 0x00), y);
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), rem);
            [lanes[0], lanes[2], lanes[4], lanes[6]].map(|v| v & 0xFFFF)
        }
    }
}

/// Folds the four blocks of `acc` into one 128-bit block (the sum of
/// [`aligned_blocks`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
fn narrow(acc: __m512i, c: &FoldConsts) -> __m128i {
    let t = aligned_blocks(acc, c);
    // SAFETY: register-only, AVX-512F is enabled on this fn.
    unsafe {
        xor(
            xor(
                _mm512_extracti32x4_epi32::<0>(t),
                _mm512_extracti32x4_epi32::<1>(t),
            ),
            xor(
                _mm512_extracti32x4_epi32::<2>(t),
                _mm512_extracti32x4_epi32::<3>(t),
            ),
        )
    }
}

/// Folds `data` (at least 256 bytes, a multiple of 16) into one block.
///
/// # Safety
/// The CPU must support the enabled features.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn fold_buffer<const REFLECTED: bool>(data: &[u8], c: &FoldConsts) -> __m128i {
    let n = data.len();
    debug_assert!(n >= 256 && n.is_multiple_of(16));
    let p = data.as_ptr();
    let k256 = splat(c.k256);
    let mut a = [init4(c); 4];
    for (i, ai) in a.iter_mut().enumerate() {
        // SAFETY: 64 * i + 64 <= 256 <= n: inside `data`.
        *ai = unsafe { load4::<REFLECTED>(p.add(64 * i)) };
    }
    a[0] = xor4(a[0], init4(c));
    let mut off = 256;
    while off + 256 <= n {
        for (i, ai) in a.iter_mut().enumerate() {
            // SAFETY: off + 64 * i + 64 <= off + 256 <= n.
            let d = unsafe { load4::<REFLECTED>(p.add(off + 64 * i)) };
            *ai = fold4(*ai, k256, d);
        }
        off += 256;
    }
    let t = fold4(a[0], splat(c.k192), a[3]);
    let t = fold4(a[1], splat(c.k128), t);
    let mut acc = fold4(a[2], splat(c.k64), t);
    let k64 = splat(c.k64);
    while off + 64 <= n {
        // SAFETY: off + 64 <= n.
        let d = unsafe { load4::<REFLECTED>(p.add(off)) };
        acc = fold4(acc, k64, d);
        off += 64;
    }
    let mut x = narrow(acc, c);
    let k16 = pair(c.k16);
    while off < n {
        // SAFETY: n is a multiple of 16 and off < n, so off + 16 <= n.
        let d = unsafe { load::<REFLECTED>(p.add(off)) };
        x = xor(fold(x, k16), d);
        off += 16;
    }
    x
}

/// Reduced registers of the first `interval & !15` bytes of each of
/// `LANES` consecutive intervals at `base`; `interval >= 64`.  The next
/// group is prefetched into L1; with `FAR` the group after next into L2
/// as well (see [`Fetch`]).
///
/// # Safety
/// The CPU must support the enabled features, and
/// `base .. base + LANES * interval` must be readable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,vpclmulqdq,pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn crc_lanes<const REFLECTED: bool, const FAR: bool>(
    base: *const u8,
    interval: usize,
    c: &FoldConsts,
) -> [u64; LANES] {
    let wide = interval & !63;
    let blocks = interval & !15;
    let init = init4(c);
    let k64 = splat(c.k64);
    let mut a = [init; LANES];
    for (i, ai) in a.iter_mut().enumerate() {
        // SAFETY: 64 <= wide <= interval: inside interval i.
        let d = unsafe { load4::<REFLECTED>(base.add(i * interval)) };
        *ai = xor4(d, init);
    }
    // Software prefetch of the next group of intervals, in address order,
    // `LANES` lines per step: by the end of this group, all of the next
    // one.  `LANES` interleaved streams `interval` bytes apart defeat the
    // hardware prefetcher on data not in cache (a read just DMA'd in):
    // measured in the PI read path of `ctests/bench/pi_bench.c` (QD 8, 64
    // KiB reads, 3 alternating runs): 5.4/6.4/5.6 us per read instead of
    // 9.0/8.0/10.3.  A prefetch never faults, so running past the end of
    // the data is harmless (wrapping address arithmetic, no access).
    // With `FAR`, the group after next, into L2 (see [`Fetch::Far`]).
    let ahead = if FAR { 2 } else { 1 };
    let mut next = base.wrapping_add(ahead * LANES * interval);
    for _ in 0..LANES {
        prefetch::<FAR>(next);
        next = next.wrapping_add(64);
    }
    let mut off = 64;
    while off < wide {
        for (i, ai) in a.iter_mut().enumerate() {
            prefetch::<FAR>(next);
            if FAR {
                // And the next group into L1, as without `FAR`: data in
                // L2 or L3 then costs about the same both ways.
                prefetch::<false>(next.wrapping_sub(LANES * interval));
            }
            next = next.wrapping_add(64);
            // SAFETY: off + 64 <= wide <= interval: inside interval i.
            let d = unsafe { load4::<REFLECTED>(base.add(i * interval + off)) };
            *ai = fold4(*ai, k64, d);
        }
        off += 64;
    }
    if off == blocks {
        // No 16-byte tail (intervals a multiple of 64 bytes, as 512 and
        // 4096 are): the lanes are finished four at a time.
        let mut regs = [0u64; LANES];
        for (four, acc) in regs.chunks_exact_mut(4).zip(a.chunks_exact(4)) {
            let x = narrow4([acc[0], acc[1], acc[2], acc[3]], c);
            four.copy_from_slice(&reduce4::<REFLECTED>(x, c));
        }
        return regs;
    }
    let mut x = [pair([0, 0]); LANES];
    for (xi, ai) in x.iter_mut().zip(a) {
        *xi = narrow(ai, c);
    }
    let k16 = pair(c.k16);
    while off < blocks {
        for (i, xi) in x.iter_mut().enumerate() {
            // SAFETY: off + 16 <= blocks <= interval: inside interval i.
            let d = unsafe { load::<REFLECTED>(base.add(i * interval + off)) };
            *xi = xor(fold(*xi, k16), d);
        }
        off += 16;
    }
    let mut regs = [0u64; LANES];
    for (r, xi) in regs.iter_mut().zip(x) {
        *r = reduce::<REFLECTED>(xi, c);
    }
    regs
}

/// Register after the leading `len & !15` bytes of `data`, or `None` if
/// the CPU lacks AVX-512/VPCLMULQDQ or `data` is shorter than 256 bytes.
pub(super) fn register(data: &[u8], c: &FoldConsts, reflected: bool) -> Option<u64> {
    if data.len() < 256 || !available() {
        return None;
    }
    let blocks = &data[..data.len() & !15];
    // SAFETY: the CPU features were detected just above; `blocks` is at
    // least 256 bytes and a multiple of 16.
    Some(unsafe {
        if reflected {
            reduce::<true>(fold_buffer::<true>(blocks, c), c)
        } else {
            reduce::<false>(fold_buffer::<false>(blocks, c), c)
        }
    })
}

/// `emit(i, register)` for the leading `interval & !15` bytes of each
/// interval, or `false` (doing nothing) if the CPU lacks AVX-512/VPCLMULQDQ
/// or `interval < 64`. `data.len()` must be a multiple of `interval`.
pub(super) fn registers_of_intervals(
    data: &[u8],
    interval: usize,
    c: &FoldConsts,
    reflected: bool,
    fetch: Fetch,
    mut emit: impl FnMut(usize, u64),
) -> bool {
    if interval < 64 || !available() {
        return false;
    }
    assert!(data.len().is_multiple_of(interval));
    let count = data.len() / interval;
    let mut i = 0;
    if fetch == Fetch::Far {
        // The first group is read at once; the second is fetched now
        // (each group then fetches the one after next).
        let second =
            &data[(LANES * interval).min(data.len())..(2 * LANES * interval).min(data.len())];
        for line in second.chunks(64) {
            // SAFETY: features detected above; a prefetch only hints.
            unsafe { prefetch::<true>(line.as_ptr()) };
        }
    }
    // Lockstep also for long intervals: at 4096 bytes it measured 5-8%
    // faster than one interval at a time with four accumulators
    // (alternating A/B pass of benches/crc.rs).
    while i + LANES <= count {
        let group = &data[i * interval..(i + LANES) * interval];
        // SAFETY: features detected above; `group` holds LANES intervals.
        let regs = unsafe {
            match (reflected, fetch) {
                (true, Fetch::Near) => crc_lanes::<true, false>(group.as_ptr(), interval, c),
                (false, Fetch::Near) => crc_lanes::<false, false>(group.as_ptr(), interval, c),
                (true, Fetch::Far) => crc_lanes::<true, true>(group.as_ptr(), interval, c),
                (false, Fetch::Far) => crc_lanes::<false, true>(group.as_ptr(), interval, c),
            }
        };
        for (j, r) in regs.into_iter().enumerate() {
            emit(i + j, r);
        }
        i += LANES;
    }
    // The last few intervals one at a time.
    while i < count {
        let one = &data[i * interval..(i + 1) * interval];
        let reg = register(one, c, reflected)
            .or_else(|| super::register(one, c, reflected, false))
            .expect("PCLMULQDQ is implied by the features detected above");
        emit(i, reg);
        i += 1;
    }
    true
}
