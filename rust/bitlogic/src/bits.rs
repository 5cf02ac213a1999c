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

/// Packs eight bytes that are each 0 or 1 (little-endian in `v`) into the low 8 bits, byte `i` becoming bit `i`.
///
/// The multiplier moves byte `i`'s bit (at position `8i`) to position `56 + i`; no two partial products land on the
/// same bit, so there are no carries.
#[inline(always)]
pub fn pack_byte_bits(v: u64) -> u64 {
    v.wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Mask of the bits that must be 0 in eight bytes that are each 0 or 1.
pub const NOT_BITS: u64 = 0xfefe_fefe_fefe_fefe;

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
    fn pack_byte_bits_matches_naive() {
        for pattern in 0u64..256 {
            let v = (0..8).fold(0u64, |acc, i| acc | (((pattern >> i) & 1) << (8 * i)));
            assert_eq!(pack_byte_bits(v), pattern);
            assert_eq!(v & NOT_BITS, 0);
        }
    }
}
