//! Bit-matrix helpers shared by the encoder and the binary layer, and the packing of 0/1 rows into `u64` words.

use crate::error::{Error, Result};

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

/// Packs rows of `row_len` 0/1 bytes into rows of `ceil(row_len / 64)` words (bit `j` of a row is bit `j % 64` of
/// word `j / 64`).
pub(crate) fn pack_bits(bits: &[u8], row_len: usize, what: &str) -> Result<Vec<u64>> {
    if !bits.len().is_multiple_of(row_len) {
        return Err(Error::Network(format!(
            "{what}: {} values is not a multiple of the row length {row_len}",
            bits.len()
        )));
    }
    let words = row_len.div_ceil(64);
    let mut packed = vec![0u64; bits.len() / row_len * words];
    for (row, dst) in bits.chunks_exact(row_len).zip(packed.chunks_exact_mut(words)) {
        for (j, &bit) in row.iter().enumerate() {
            if bit > 1 {
                return Err(Error::Network(format!("{what}: value {bit}, expected 0 or 1")));
            }
            dst[j / 64] |= (bit as u64) << (j % 64);
        }
    }
    Ok(packed)
}

/// The inverse of [`pack_bits`].
pub(crate) fn unpack_bits(words: &[u64], row_len: usize) -> Vec<u8> {
    let per_row = row_len.div_ceil(64);
    words
        .chunks_exact(per_row)
        .flat_map(|row| (0..row_len).map(move |j| ((row[j / 64] >> (j % 64)) & 1) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

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
