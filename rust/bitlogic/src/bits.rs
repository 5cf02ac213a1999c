//! Bit-matrix helpers shared by the encoder and the binary layer.

/// Transposes a 64 x 64 bit matrix in place: afterwards bit `i` of `m[j]` is what bit `j` of `m[i]` was.
///
/// Six rounds of block swaps (32 x 32 blocks, then 16 x 16, ...), the classic recursive scheme, with bit 0 as the
/// least significant bit of each word.
#[inline(always)]
pub fn transpose64(m: &mut [u64; 64]) {
    let mut width = 32;
    let mut mask: u64 = 0x0000_0000_ffff_ffff;
    while width != 0 {
        let mut k = 0;
        while k < 64 {
            // Swap the high `width` bits of row k (within each 2·width block) with the low bits of row k + width.
            let t = ((m[k] >> width) ^ m[k + width]) & mask;
            m[k] ^= t << width;
            m[k + width] ^= t;
            k = (k + width + 1) & !width;
        }
        width >>= 1;
        mask ^= mask << width;
    }
}

/// [`transpose64`] on `W` independent matrices at once: lane `w` of every row is matrix `w`. The lanes vectorize.
#[inline(always)]
pub fn transpose64_lanes<const W: usize>(m: &mut [[u64; W]; 64]) {
    let mut width = 32;
    let mut mask: u64 = 0x0000_0000_ffff_ffff;
    while width != 0 {
        let mut k = 0;
        while k < 64 {
            let (lo, hi) = m.split_at_mut(k + width);
            let (a, b) = (&mut lo[k], &mut hi[0]);
            for w in 0..W {
                let t = ((a[w] >> width) ^ b[w]) & mask;
                a[w] ^= t << width;
                b[w] ^= t;
            }
            k = (k + width + 1) & !width;
        }
        width >>= 1;
        mask ^= mask << width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;

    #[test]
    fn transpose_matches_naive() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..20 {
            let original: [u64; 64] = std::array::from_fn(|_| rng.next_u64());
            let mut m = original;
            transpose64(&mut m);
            for (i, row) in original.iter().enumerate() {
                for (j, column) in m.iter().enumerate() {
                    assert_eq!((column >> i) & 1, (row >> j) & 1, "bit ({i}, {j})");
                }
            }
            transpose64(&mut m);
            assert_eq!(m, original);
        }
    }

    #[test]
    fn lanes_transpose_like_single_matrices() {
        let mut rng = SplitMix64::new(9);
        let original: [[u64; 3]; 64] = std::array::from_fn(|_| std::array::from_fn(|_| rng.next_u64()));
        let mut m = original;
        transpose64_lanes(&mut m);
        for w in 0..3 {
            let mut single: [u64; 64] = std::array::from_fn(|r| original[r][w]);
            transpose64(&mut single);
            assert!((0..64).all(|r| m[r][w] == single[r]), "lane {w}");
        }
    }
}
