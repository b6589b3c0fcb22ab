//! Folding constants for the carry-less-multiply CRC kernels, derived from
//! the generator polynomial at compile time.
//!
//! Notation: a CRC of width `n` has generator `G(x) = x^n + P(x)`; `P` is
//! the catalogue's `poly` value (bit `i` = coefficient of `x^i`, "normal"
//! form). Polynomials over GF(2) are stored as integers with bit `i` = the
//! coefficient of `x^i`, so XOR is addition and carry-less multiplication
//! (PCLMULQDQ) is polynomial multiplication.
//!
//! Why these constants: the message is processed as 128-bit blocks. If `A`
//! is a block and the rest of the message is `d` bits long, then `A` is
//! worth `A(x) * x^d` and, writing `A = A_hi * x^64 + A_lo`,
//!
//! ```text
//! A * x^d  ≡  A_hi * (x^(d+64) mod G)  +  A_lo * (x^d mod G)     (mod G)
//! ```
//!
//! Both products have fewer than 128 bits, so one block can be moved ("folded")
//! `d` bits forward with two carry-less multiplications by the constants
//! `x^(d+64) mod G` and `x^d mod G`, and added (XOR) to the block there. The
//! final 128-bit remainder is reduced to `n` bits with Barrett reduction,
//! which needs the quotient `floor(x^k / G)`.
//!
//! For reflected CRCs (CRC-64/NVME) the data and the constants are
//! bit-reversed. Multiplying two bit-reversed 64-bit values gives the
//! bit-reversed 127-bit product shifted right by one, i.e.
//! `clmul(rev64(a), rev64(b)) = rev128(a * b * x)`, so every reflected
//! constant uses one power of `x` less (`x^(d-1)` instead of `x^d`); see
//! `x86.rs` for where each one is used.

// Only the x86_64 kernels use the constants so far (an aarch64 PMULL kernel
// would use the same ones); elsewhere they are still built and tested.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

/// `x^k mod G` for `G = x^n + poly`, `1 <= n <= 64`.
pub(crate) const fn xpow_mod(k: u32, poly: u64, n: u32) -> u64 {
    let top = 1u64 << (n - 1);
    let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    // x^0 mod G = 1 (n >= 1), then multiply by x k times.
    let mut r: u64 = 1;
    let mut i = 0;
    while i < k {
        let carry = r & top != 0;
        r = (r << 1) & mask;
        if carry {
            r ^= poly & mask;
        }
        i += 1;
    }
    r
}

/// `floor(x^k / G)` for `G = x^n + poly`, `1 <= n <= 64`, `k - n < 128`
/// (schoolbook long division, one dividend bit at a time).
pub(crate) const fn xpow_div(k: u32, poly: u64, n: u32) -> u128 {
    let top = 1u64 << (n - 1);
    let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut rem: u64 = 0;
    let mut quot: u128 = 0;
    // Feed the k+1 coefficients of x^k, highest first: a 1, then k zeros.
    let mut i = 0;
    while i <= k {
        let bit = (i == 0) as u64;
        let out = rem & top != 0; // coefficient leaving the n-bit window
        rem = ((rem << 1) | bit) & mask;
        if out {
            rem ^= poly & mask;
        }
        quot = (quot << 1) | out as u128;
        i += 1;
    }
    quot
}

/// Constants for one CRC, as laid out for the 128-bit kernels: in every
/// pair, element 0 multiplies the low 64-bit lane of an accumulator and
/// element 1 the high lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FoldConsts {
    /// Fold forward by 16 bytes (one block).
    pub k16: [u64; 2],
    /// Fold forward by 128 bytes (eight parallel accumulators).
    pub k128: [u64; 2],
    /// Fold forward by 64 bytes (one 512-bit register of four blocks).
    pub k64: [u64; 2],
    /// Fold forward by 192 bytes (combining four 512-bit accumulators).
    pub k192: [u64; 2],
    /// Fold forward by 256 bytes (four 512-bit accumulators).
    pub k256: [u64; 2],
    /// Fold accumulator `i` of eight onto the last: `16 * (7 - i)` bytes.
    pub combine: [[u64; 2]; 7],
    /// Final reduction: `[fold constant, Barrett quotient]`.
    pub reduce: [u64; 2],
    /// Final reduction: the polynomial part used after the quotient.
    pub poly: u64,
    /// XORed into the first block (the initial register value).
    pub init: [u64; 2],
}

/// Fold pair for a non-reflected CRC of width `n`, distance `d` bits.
const fn msb_fold(d: u32, poly: u64, n: u32) -> [u64; 2] {
    // Normal bit order: the low lane is A_lo, the high lane A_hi.
    [xpow_mod(d, poly, n), xpow_mod(d + 64, poly, n)]
}

/// Constants for a non-reflected CRC of width `n` (`n` = 16 here; the
/// reduction in `x86.rs` shifts by `n / 8` bytes).
pub(crate) const fn msb_consts(poly: u64, n: u32, init: u64) -> FoldConsts {
    let mut combine = [[0u64; 2]; 7];
    let mut i = 0;
    while i < 7 {
        combine[i] = msb_fold(128 * (7 - i as u32), poly, n);
        i += 1;
    }
    FoldConsts {
        k16: msb_fold(128, poly, n),
        k128: msb_fold(1024, poly, n),
        k64: msb_fold(512, poly, n),
        k192: msb_fold(1536, poly, n),
        k256: msb_fold(2048, poly, n),
        combine,
        // Y = X_hi * (x^(64+n) mod G) + X_lo * x^n  ≡  X * x^n, then
        // Barrett with mu = floor(x^(64+n) / G) = x^64 + low 64 bits.
        reduce: [xpow_mod(64 + n, poly, n), xpow_div(64 + n, poly, n) as u64],
        poly,
        // The initial register is XORed into the first n message bits,
        // which are the top bits of the first (byte-swapped) block.
        init: [0, init << (64 - n)],
    }
}

/// Fold pair for a reflected 64-bit CRC, distance `d` bits.
const fn lsb_fold(d: u32, poly: u64) -> [u64; 2] {
    // Reflected order: the low lane holds rev64(A_hi), the high lane
    // rev64(A_lo); one power of x less because of the reflected product.
    [
        xpow_mod(d + 63, poly, 64).reverse_bits(),
        xpow_mod(d - 1, poly, 64).reverse_bits(),
    ]
}

/// Constants for a reflected CRC of width 64.
pub(crate) const fn lsb64_consts(poly: u64, init: u64) -> FoldConsts {
    let mut combine = [[0u64; 2]; 7];
    let mut i = 0;
    while i < 7 {
        combine[i] = lsb_fold(128 * (7 - i as u32), poly);
        i += 1;
    }
    FoldConsts {
        k16: lsb_fold(128, poly),
        k128: lsb_fold(1024, poly),
        k64: lsb_fold(512, poly),
        k192: lsb_fold(1536, poly),
        k256: lsb_fold(2048, poly),
        combine,
        // Y = X_hi * (x^128 mod G) + X_lo * x^64 ≡ X * x^64 (reflected:
        // x^127), then Barrett with the 64-bit mu' = floor(x^127 / G),
        // whose reflected product with rev64(Y_hi) is exactly
        // rev128(Y_hi * mu' * x); see x86.rs.
        reduce: [
            xpow_mod(127, poly, 64).reverse_bits(),
            (xpow_div(127, poly, 64) as u64).reverse_bits(),
        ],
        // (G - 1) / x = x^63 + (poly >> 1) (poly has its x^0 term set),
        // reflected.
        poly: ((poly >> 1) | (1 << 63)).reverse_bits(),
        // A reflected register lines up with the first 8 bytes read
        // little-endian: the low lane of the first block.
        init: [init, 0],
    }
}

/// CRC-16/T10-DIF generator (without the x^16 term).
pub(crate) const T10DIF_POLY: u64 = 0x8BB7;
/// CRC-64/NVME generator (without the x^64 term).
pub(crate) const NVME_POLY: u64 = 0xAD93_D235_94C9_3659;

pub(crate) const T10DIF: FoldConsts = msb_consts(T10DIF_POLY, 16, 0);
pub(crate) const NVME: FoldConsts = lsb64_consts(NVME_POLY, u64::MAX);

#[cfg(test)]
mod tests {
    use super::*;
    use crc::{Algorithm, Crc, CRC_16_T10_DIF};

    /// Carry-less product of two 64-bit polynomials.
    fn clmul(a: u64, b: u64) -> u128 {
        (0..64)
            .filter(|i| b >> i & 1 == 1)
            .fold(0u128, |acc, i| acc ^ ((a as u128) << i))
    }

    /// Carry-less product of a 128-bit and a 65-bit polynomial (low 128 bits
    /// and a 129th-and-up overflow flag are not needed for k <= 127 here).
    fn clmul_wide(a: u128, b: u128) -> (u128, u128) {
        let mut lo = 0u128;
        let mut hi = 0u128;
        for i in 0..128 {
            if b >> i & 1 == 1 {
                lo ^= a << i;
                if i > 0 {
                    hi ^= a >> (128 - i);
                }
            }
        }
        (hi, lo)
    }

    #[test]
    fn xpow_mod_matches_crc16_of_a_single_bit() {
        // Message 0x80 followed by m zero bytes is x^(8m+7); its
        // CRC-16/T10-DIF (init 0, no xorout) is x^(8m+7+16) mod G.
        let crc = Crc::<u16>::new(&CRC_16_T10_DIF);
        for m in 0..200usize {
            let mut msg = vec![0u8; m + 1];
            msg[0] = 0x80;
            let k = 8 * m as u32 + 7 + 16;
            assert_eq!(
                crc.checksum(&msg) as u64,
                xpow_mod(k, T10DIF_POLY, 16),
                "k={k}"
            );
        }
    }

    #[test]
    fn xpow_mod_matches_reflected_crc64_of_a_single_bit() {
        // Raw NVME polynomial without init/xorout: message 0x01 (first
        // bit of a reflected stream) then m zero bytes is x^(8m+7), and
        // the reflected register is rev64(x^(8m+7+64) mod G).
        const RAW: Algorithm<u64> = Algorithm {
            width: 64,
            poly: NVME_POLY,
            init: 0,
            refin: true,
            refout: true,
            xorout: 0,
            check: 0,
            residue: 0,
        };
        let crc = Crc::<u64>::new(&RAW);
        for m in 0..200usize {
            let mut msg = vec![0u8; m + 1];
            msg[0] = 0x01;
            let k = 8 * m as u32 + 7 + 64;
            assert_eq!(
                crc.checksum(&msg),
                xpow_mod(k, NVME_POLY, 64).reverse_bits(),
                "k={k}"
            );
        }
    }

    #[test]
    fn xpow_div_is_the_quotient() {
        // x^k = q * G + r with r = x^k mod G, checked by multiplying back.
        for (poly, n) in [(T10DIF_POLY, 16u32), (NVME_POLY, 64)] {
            let g: u128 = (1u128 << n) | poly as u128;
            for k in n..=(n + 63).min(127) {
                let q = xpow_div(k, poly, n);
                let r = xpow_mod(k, poly, n) as u128;
                let (hi, lo) = clmul_wide(q, g);
                assert_eq!(hi, 0);
                assert_eq!(lo ^ r, 1u128 << k, "poly={poly:#x} k={k}");
            }
        }
        // The 80-bit case used by CRC-16: mu = x^64 + low part.
        let q = xpow_div(80, T10DIF_POLY, 16);
        assert_eq!(q >> 64, 1);
        let (hi, lo) = clmul_wide(q, (1 << 16) | T10DIF_POLY as u128);
        assert_eq!(
            (hi, lo ^ xpow_mod(80, T10DIF_POLY, 16) as u128),
            (0, 1 << 80)
        );
    }

    #[test]
    fn reflected_product_identity() {
        // clmul(rev64(a), rev64(b)) == rev128(a * b * x), the reason every
        // reflected constant is one power of x lower.
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..1000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let a = s;
            let b = s.rotate_left(29) ^ 0x5555;
            let lhs = clmul(a.reverse_bits(), b.reverse_bits());
            let rhs = (clmul(a, b) << 1).reverse_bits();
            assert_eq!(lhs, rhs);
        }
    }

    #[test]
    fn known_constant_values() {
        // Spot values, recomputed independently above; pinned so that an
        // accidental change to the derivation shows up as a diff.
        assert_eq!(
            T10DIF.k16,
            [xpow_mod(128, 0x8BB7, 16), xpow_mod(192, 0x8BB7, 16)]
        );
        assert_eq!(NVME.init, [u64::MAX, 0]);
        assert_eq!(T10DIF.init, [0, 0]);
        // rev64((G - 1) / x) for NVME, as in other published kernels.
        assert_eq!(NVME.poly, 0x34d9_2653_5897_936b);
    }
}
