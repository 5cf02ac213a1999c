//! The few operations the encoder needs that compilers do not vectorize well on their own: turning 64 comparisons
//! into a 64-bit mask. Each instruction set has an implementation; the engine picks one at run time.

#[cfg(target_arch = "aarch64")]
use std::arch::aarch64::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Comparisons of 64 values at once, bit `i` of the result being the comparison of element `i`.
///
/// # Safety
/// The methods of an implementation may only be called on a CPU that supports its instruction set (the engine
/// checks with [`crate::isa::Isa::is_supported`] before choosing one).
pub(crate) trait Simd {
    /// `emit(t, mask of x[i] >= cuts[t][i])` for each `t`: `x` is loaded once for all of its thresholds.
    unsafe fn ge_u8_each(x: &[u8; 64], cuts: &[[u8; 64]], emit: impl FnMut(usize, u64));
    /// Input bits: the mask of `x[i] & 1 != 0`, and whether any byte is not a valid bit (`x[i] > 1`). One load of
    /// each byte serves both; bit 0 of a byte is one shift away from the sign bit that byte masks gather. The check
    /// is one test of all 64 bytes OR-ed together, not a mask: which byte is wrong is looked up only on failure.
    unsafe fn bits_u8(x: &[u8; 64]) -> (u64, bool);
    /// `x[i] > t[i]`, false when either is NaN.
    unsafe fn gt_f32(x: &[f32; 64], t: &[f32; 64]) -> u64;
    /// `x[i]` is NaN.
    unsafe fn nan_f32(x: &[f32; 64]) -> u64;
}

/// The baseline of the target: SSE2 on x86-64 (which every x86-64 CPU has), plain Rust elsewhere (on aarch64 the
/// compiler's own vectorization of [`mask`]; `Neon` is the hand-written path).
pub(crate) struct Portable;

#[cfg(target_arch = "x86_64")]
impl Simd for Portable {
    #[inline(always)]
    unsafe fn ge_u8_each(x: &[u8; 64], cuts: &[[u8; 64]], mut emit: impl FnMut(usize, u64)) {
        let a: [__m128i; 4] = std::array::from_fn(|k| load128(&x[16 * k..]));
        for (t, cut) in cuts.iter().enumerate() {
            let mut bits = 0u64;
            for (k, &a) in a.iter().enumerate() {
                // x >= cut exactly when max(x, cut) == x (unsigned).
                let ge = _mm_cmpeq_epi8(_mm_max_epu8(a, load128(&cut[16 * k..])), a);
                bits |= (_mm_movemask_epi8(ge) as u32 as u64) << (16 * k);
            }
            emit(t, bits);
        }
    }
    #[inline(always)]
    unsafe fn bits_u8(x: &[u8; 64]) -> (u64, bool) {
        let (mut bits, mut any) = (0u64, _mm_setzero_si128());
        for k in (0..64).step_by(16) {
            let a = load128(&x[k..]);
            // A 16-bit shift by 7 moves each byte's bit 0 to its own bit 7, which `movemask` gathers.
            bits |= (_mm_movemask_epi8(_mm_slli_epi16::<7>(a)) as u32 as u64) << k;
            any = _mm_or_si128(any, a);
        }
        // A saturating add of 126 sets the sign bit of exactly the bytes above 1.
        (bits, _mm_movemask_epi8(_mm_adds_epu8(any, _mm_set1_epi8(126))) != 0)
    }
    #[inline(always)]
    unsafe fn gt_f32(x: &[f32; 64], t: &[f32; 64]) -> u64 {
        let mut bits = 0u64;
        for k in 0..16 {
            let (a, b) = (_mm_loadu_ps(x[4 * k..].as_ptr()), _mm_loadu_ps(t[4 * k..].as_ptr()));
            bits |= (_mm_movemask_ps(_mm_cmpgt_ps(a, b)) as u32 as u64) << (4 * k);
        }
        bits
    }
    #[inline(always)]
    unsafe fn nan_f32(x: &[f32; 64]) -> u64 {
        let mut bits = 0u64;
        for k in 0..16 {
            let a = _mm_loadu_ps(x[4 * k..].as_ptr());
            bits |= (_mm_movemask_ps(_mm_cmpunord_ps(a, a)) as u32 as u64) << (4 * k);
        }
        bits
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load128(bytes: &[u8]) -> __m128i {
    debug_assert!(bytes.len() >= 16);
    _mm_loadu_si128(bytes.as_ptr() as *const __m128i)
}

#[cfg(not(target_arch = "x86_64"))]
impl Simd for Portable {
    #[inline(always)]
    unsafe fn ge_u8_each(x: &[u8; 64], cuts: &[[u8; 64]], mut emit: impl FnMut(usize, u64)) {
        for (t, cut) in cuts.iter().enumerate() {
            emit(t, mask(|i| x[i] >= cut[i]));
        }
    }
    #[inline(always)]
    unsafe fn bits_u8(x: &[u8; 64]) -> (u64, bool) {
        (mask(|i| x[i] & 1 != 0), x.iter().fold(0, |any, &b| any | b) > 1)
    }
    #[inline(always)]
    unsafe fn gt_f32(x: &[f32; 64], t: &[f32; 64]) -> u64 {
        mask(|i| x[i] > t[i])
    }
    #[inline(always)]
    unsafe fn nan_f32(x: &[f32; 64]) -> u64 {
        mask(|i| x[i].is_nan())
    }
}

/// Bit `i` is `f(i)`: the definition every implementation is tested against, and the float64 comparisons.
#[inline(always)]
pub(crate) fn mask(f: impl Fn(usize) -> bool) -> u64 {
    let mut bits = 0u64;
    for i in 0..64 {
        bits |= (f(i) as u64) << i;
    }
    bits
}

/// AVX2: 32 bytes or 8 floats per comparison, gathered into a mask by `movemask`.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    #[inline(always)]
    unsafe fn ge_u8_each(x: &[u8; 64], cuts: &[[u8; 64]], mut emit: impl FnMut(usize, u64)) {
        let (lo, hi) = (load256(&x[..32]), load256(&x[32..]));
        for (t, cut) in cuts.iter().enumerate() {
            // x >= cut exactly when max(x, cut) == x (unsigned).
            let ge = |a, c| _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(a, c), a)) as u32 as u64;
            emit(t, ge(lo, load256(&cut[..32])) | ge(hi, load256(&cut[32..])) << 32);
        }
    }
    #[inline(always)]
    unsafe fn bits_u8(x: &[u8; 64]) -> (u64, bool) {
        let (lo, hi) = (load256(&x[..32]), load256(&x[32..]));
        // As in the SSE2 version: bit 0 of each byte shifted to its bit 7.
        let bits = |a| _mm256_movemask_epi8(_mm256_slli_epi16::<7>(a)) as u32 as u64;
        (bits(lo) | bits(hi) << 32, _mm256_testz_si256(_mm256_or_si256(lo, hi), _mm256_set1_epi8(-2)) == 0)
    }
    #[inline(always)]
    unsafe fn gt_f32(x: &[f32; 64], t: &[f32; 64]) -> u64 {
        let mut bits = 0u64;
        for k in 0..8 {
            let a = _mm256_loadu_ps(x[8 * k..].as_ptr());
            let b = _mm256_loadu_ps(t[8 * k..].as_ptr());
            bits |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(a, b)) as u32 as u64) << (8 * k);
        }
        bits
    }
    #[inline(always)]
    unsafe fn nan_f32(x: &[f32; 64]) -> u64 {
        let mut bits = 0u64;
        for k in 0..8 {
            let a = _mm256_loadu_ps(x[8 * k..].as_ptr());
            bits |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(a, a)) as u32 as u64) << (8 * k);
        }
        bits
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load256(bytes: &[u8]) -> __m256i {
    debug_assert!(bytes.len() >= 32);
    _mm256_loadu_si256(bytes.as_ptr() as *const __m256i)
}

/// AVX-512: one comparison of 64 bytes straight into a mask register.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Simd for Avx512 {
    #[inline(always)]
    unsafe fn ge_u8_each(x: &[u8; 64], cuts: &[[u8; 64]], mut emit: impl FnMut(usize, u64)) {
        let a = load512(x);
        for (t, cut) in cuts.iter().enumerate() {
            emit(t, _mm512_cmpge_epu8_mask(a, load512(cut)));
        }
    }
    #[inline(always)]
    unsafe fn bits_u8(x: &[u8; 64]) -> (u64, bool) {
        let a = load512(x);
        (_mm512_test_epi8_mask(a, _mm512_set1_epi8(1)), _mm512_test_epi8_mask(a, _mm512_set1_epi8(-2)) != 0)
    }
    #[inline(always)]
    unsafe fn gt_f32(x: &[f32; 64], t: &[f32; 64]) -> u64 {
        let mut bits = 0u64;
        for k in 0..4 {
            let a = _mm512_loadu_ps(x[16 * k..].as_ptr());
            let b = _mm512_loadu_ps(t[16 * k..].as_ptr());
            bits |= (_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) as u64) << (16 * k);
        }
        bits
    }
    #[inline(always)]
    unsafe fn nan_f32(x: &[f32; 64]) -> u64 {
        let mut bits = 0u64;
        for k in 0..4 {
            let a = _mm512_loadu_ps(x[16 * k..].as_ptr());
            bits |= (_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a) as u64) << (16 * k);
        }
        bits
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load512(bytes: &[u8; 64]) -> __m512i {
    _mm512_loadu_epi8(bytes.as_ptr() as *const i8)
}

/// NEON (every aarch64 CPU has it): 16 bytes or 4 floats per comparison. NEON has no `movemask`; [`movemask64`]
/// folds 64 comparison bytes into a mask with three rounds of pairwise additions.
#[cfg(target_arch = "aarch64")]
pub(crate) struct Neon;

#[cfg(target_arch = "aarch64")]
impl Simd for Neon {
    #[inline(always)]
    unsafe fn ge_u8_each(x: &[u8; 64], cuts: &[[u8; 64]], mut emit: impl FnMut(usize, u64)) {
        let a: [uint8x16_t; 4] = std::array::from_fn(|k| vld1q_u8(x[16 * k..].as_ptr()));
        for (t, cut) in cuts.iter().enumerate() {
            emit(t, movemask64(std::array::from_fn(|k| vcgeq_u8(a[k], vld1q_u8(cut[16 * k..].as_ptr())))));
        }
    }
    #[inline(always)]
    unsafe fn bits_u8(x: &[u8; 64]) -> (u64, bool) {
        let [a, b, c, d]: [uint8x16_t; 4] = std::array::from_fn(|k| vld1q_u8(x[16 * k..].as_ptr()));
        let any = vorrq_u8(vorrq_u8(a, b), vorrq_u8(c, d));
        (movemask64([a, b, c, d].map(|v| vtstq_u8(v, vdupq_n_u8(1)))), vmaxvq_u8(any) > 1)
    }
    #[inline(always)]
    unsafe fn gt_f32(x: &[f32; 64], t: &[f32; 64]) -> u64 {
        // `vcgtq_f32` is false when either side is NaN, as the definition asks.
        f32_mask(|i| vcgtq_f32(vld1q_f32(x[i..].as_ptr()), vld1q_f32(t[i..].as_ptr())))
    }
    #[inline(always)]
    unsafe fn nan_f32(x: &[f32; 64]) -> u64 {
        f32_mask(|i| {
            let a = vld1q_f32(x[i..].as_ptr());
            vmvnq_u32(vceqq_f32(a, a)) // only NaN differs from itself
        })
    }
}

/// The mask of 64 float comparisons, `compare(i)` giving the 32-bit masks of elements `i .. i + 4`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn f32_mask(compare: impl Fn(usize) -> uint32x4_t) -> u64 {
    movemask64(std::array::from_fn(|k| narrow_f32_masks(std::array::from_fn(|j| compare(16 * k + 4 * j)))))
}

/// Bit `i` of the result is set when byte `i % 16` of `m[i / 16]` is (every byte 0 or 0xFF). Each byte keeps only
/// the bit of its position within its group of eight; pairwise additions then sum each group of eight bytes into
/// one, so the first eight bytes after three rounds are the mask's bytes in order.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn movemask64(m: [uint8x16_t; 4]) -> u64 {
    const WEIGHTS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let weights = vld1q_u8(WEIGHTS.as_ptr());
    let [a, b, c, d] = m.map(|v| vandq_u8(v, weights));
    let quads = vpaddq_u8(vpaddq_u8(a, b), vpaddq_u8(c, d));
    vgetq_lane_u64::<0>(vreinterpretq_u64_u8(vpaddq_u8(quads, quads)))
}

/// Four vectors of four 32-bit masks narrowed to one vector of sixteen byte masks, in order.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn narrow_f32_masks([a, b, c, d]: [uint32x4_t; 4]) -> uint8x16_t {
    let low = vcombine_u16(vmovn_u32(a), vmovn_u32(b));
    let high = vcombine_u16(vmovn_u32(c), vmovn_u32(d));
    vcombine_u8(vmovn_u16(low), vmovn_u16(high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Every implementation this CPU can run agrees with the definitions.
    #[test]
    fn implementations_agree() {
        let mut rng = SplitMix64::new(11);
        for _ in 0..400 {
            // Half the rows are valid bits but for at most one byte, which may be any value: the validity check
            // sees single bad bytes in every position.
            let x: [u8; 64] = if rng.next_u64().is_multiple_of(2) {
                let mut x: [u8; 64] = std::array::from_fn(|_| (rng.next_u64() % 2) as u8);
                if rng.next_u64().is_multiple_of(2) {
                    x[(rng.next_u64() % 64) as usize] = (rng.next_u64() % 256) as u8;
                }
                x
            } else {
                std::array::from_fn(|_| match rng.next_u64() % 4 {
                    0 => (rng.next_u64() % 3) as u8, // 0, 1 and the smallest non-bit
                    _ => (rng.next_u64() % 256) as u8,
                })
            };
            let cuts: Vec<[u8; 64]> =
                (0..rng.next_u64() % 4).map(|_| std::array::from_fn(|_| (rng.next_u64() % 256) as u8)).collect();
            let f: [f32; 64] = std::array::from_fn(|i| match rng.next_u64() % 7 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                _ => (rng.next_u64() % 100) as f32 - 50.0 + i as f32 * 0.25,
            });
            let t: [f32; 64] = std::array::from_fn(|_| (rng.next_u64() % 100) as f32 - 50.0);
            // SAFETY: the portable implementation runs anywhere; the others only where supported.
            unsafe {
                let expected = (
                    cuts.iter().map(|cut| mask(|i| x[i] >= cut[i])).collect::<Vec<_>>(),
                    (mask(|i| x[i] & 1 != 0), x.iter().any(|&b| b > 1)),
                    mask(|i| f[i] > t[i]),
                    mask(|i| f[i].is_nan()),
                );
                let got = (
                    ge_each::<Portable>(&x, &cuts),
                    Portable::bits_u8(&x),
                    Portable::gt_f32(&f, &t),
                    Portable::nan_f32(&f),
                );
                assert_eq!(got, expected);
                #[cfg(target_arch = "aarch64")]
                {
                    let got = (ge_each::<Neon>(&x, &cuts), Neon::bits_u8(&x), Neon::gt_f32(&f, &t), Neon::nan_f32(&f));
                    assert_eq!(got, expected);
                }
                #[cfg(target_arch = "x86_64")]
                {
                    if crate::isa::Isa::Avx2.is_supported() {
                        let got =
                            (ge_each::<Avx2>(&x, &cuts), Avx2::bits_u8(&x), Avx2::gt_f32(&f, &t), Avx2::nan_f32(&f));
                        assert_eq!(got, expected);
                    }
                    if crate::isa::Isa::Avx512.is_supported() {
                        let got = (
                            ge_each::<Avx512>(&x, &cuts),
                            Avx512::bits_u8(&x),
                            Avx512::gt_f32(&f, &t),
                            Avx512::nan_f32(&f),
                        );
                        assert_eq!(got, expected);
                    }
                }
            }
        }
    }

    /// `ge_u8_each`'s masks in order, checking that each threshold is emitted once, in order.
    unsafe fn ge_each<S: Simd>(x: &[u8; 64], cuts: &[[u8; 64]]) -> Vec<u64> {
        let mut masks = Vec::new();
        S::ge_u8_each(x, cuts, |t, bits| {
            assert_eq!(t, masks.len(), "thresholds in order");
            masks.push(bits);
        });
        masks
    }
}
