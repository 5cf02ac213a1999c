//! Bit-sliced layer kernels over one block of `64 * W` samples.
//!
//! A group of bits is stored as one `[u64; W]` per bit ("plane"): sample `64 * w + s` is bit `s` of word `w`. Every
//! kernel is `#[inline(always)]` and generic over `W`, so the engine's per-ISA entry points (compiled with AVX2 or
//! AVX-512 enabled) get their own vectorized copy of each loop.

use crate::bits::transpose64;
use crate::network::{BinaryLayer, GateLayer, Layer, LutLayer};
use crate::ops::ANF;

/// Working memory of one evaluating thread.
pub(crate) struct Scratch<const W: usize> {
    pub(crate) front: Vec<[u64; W]>,
    pub(crate) back: Vec<[u64; W]>,
    /// Sample-major rows for binary layers: 64 rows of `ceil(I / 64)` words.
    rows: Vec<u64>,
    /// Class scores of the block, sample-major.
    pub(crate) scores: Vec<i32>,
}

impl<const W: usize> Scratch<W> {
    pub(crate) fn new(max_width: usize, max_binary_inputs: usize, num_classes: usize) -> Self {
        Self {
            front: vec![[0; W]; max_width],
            back: vec![[0; W]; max_width],
            rows: vec![0; 64 * max_binary_inputs.div_ceil(64)],
            scores: vec![0; 64 * W * num_classes],
        }
    }
}

/// Evaluates `layer` on `input` planes into `output` planes.
#[inline(always)]
pub(crate) fn layer<const W: usize>(layer: &Layer, input: &[[u64; W]], output: &mut [[u64; W]], rows: &mut [u64]) {
    match layer {
        Layer::Gates(l) => gates(l, input, output),
        Layer::Luts(l) => luts(l, input, output),
        Layer::Binary(l) => binary(l, input, output, rows),
    }
}

/// Runs every layer, leaving the last group's planes in `scratch.front`. The encoder has filled `scratch.front`.
#[inline(always)]
pub(crate) fn layers<const W: usize>(all: &[Layer], input_width: usize, scratch: &mut Scratch<W>) -> usize {
    let mut width = input_width;
    for l in all {
        layer(l, &scratch.front[..width], &mut scratch.back[..l.width()], &mut scratch.rows);
        std::mem::swap(&mut scratch.front, &mut scratch.back);
        width = l.width();
    }
    width
}

#[inline(always)]
fn gates<const W: usize>(layer: &GateLayer, input: &[[u64; W]], output: &mut [[u64; W]]) {
    for ((out, &[a, b]), &op) in output.iter_mut().zip(layer.inputs()).zip(layer.ops()) {
        let [c0, c1, c2, c3] = ANF[op as usize];
        let (a, b) = (&input[a as usize], &input[b as usize]);
        for w in 0..W {
            out[w] = c0 ^ (c1 & a[w]) ^ (c2 & b[w]) ^ (c3 & a[w] & b[w]);
        }
    }
}

#[inline(always)]
fn luts<const W: usize>(layer: &LutLayer, input: &[[u64; W]], output: &mut [[u64; W]]) {
    let n = layer.arity();
    let words = LutLayer::words_per_table(n);
    let entries = 1usize << n;
    let mut v = [[0u64; W]; 1 << crate::network::MAX_ARITY];
    for ((out, wires), table) in
        output.iter_mut().zip(layer.inputs().chunks_exact(n)).zip(layer.tables().chunks_exact(words))
    {
        for (a, entry) in v[..entries].iter_mut().enumerate() {
            *entry = [0u64.wrapping_sub((table[a / 64] >> (a % 64)) & 1); W];
        }
        // A multiplexer tree: input j selects between entries that differ in address bit j, so after the first
        // input entry `a` holds the table restricted to address bits 1.., and so on until one entry is left.
        let mut len = entries;
        for &wire in wires {
            let x = &input[wire as usize];
            len /= 2;
            for a in 0..len {
                let (lo, hi) = (v[2 * a], v[2 * a + 1]);
                for w in 0..W {
                    v[a][w] = lo[w] ^ (x[w] & (lo[w] ^ hi[w]));
                }
            }
        }
        *out = v[0];
    }
}

#[inline(always)]
fn binary<const W: usize>(layer: &BinaryLayer, input: &[[u64; W]], output: &mut [[u64; W]], rows: &mut [u64]) {
    let n = layer.num_inputs();
    let words = layer.words_per_row();
    let rows = &mut rows[..64 * words];
    for w in 0..W {
        // Transpose the 64 samples of word w into sample-major rows so each output is a popcount per sample.
        let mut block = [0u64; 64];
        for c in 0..words {
            let planes = &input[64 * c..n.min(64 * c + 64)];
            for (j, row) in block.iter_mut().enumerate() {
                *row = planes.get(j).map_or(0, |p| p[w]);
            }
            transpose64(&mut block);
            for (s, &bits) in block.iter().enumerate() {
                rows[s * words + c] = bits;
            }
        }
        for ((out, weights), &threshold) in
            output.iter_mut().zip(layer.weights().chunks_exact(words)).zip(layer.thresholds())
        {
            let mut bits = 0u64;
            for (s, row) in rows.chunks_exact(words).enumerate() {
                // Padding bits are 0 in both rows and weights, so they never count as mismatches.
                let mismatches: u32 = row.iter().zip(weights).map(|(x, y)| (x ^ y).count_ones()).sum();
                let matches = n as i64 - mismatches as i64;
                bits |= ((matches >= threshold as i64) as u64) << s;
            }
            out[w] = bits;
        }
    }
}

/// Adds the planes `x` (one bit per sample) into a bit-sliced counter of `counter.len()` planes.
#[inline(always)]
fn add_into<const W: usize>(counter: &mut [[u64; W]], x: &[u64; W]) {
    let mut carry = *x;
    for plane in counter {
        for w in 0..W {
            let c = plane[w] & carry[w];
            plane[w] ^= carry[w];
            carry[w] = c;
        }
    }
}

/// Adds the bit-sliced number `small` into the bit-sliced number `big` (ripple-carry, one full adder per plane).
#[inline(always)]
fn add_number<const W: usize>(big: &mut [[u64; W]], small: &[[u64; W]]) {
    let mut carry = [0u64; W];
    for (p, plane) in big.iter_mut().enumerate() {
        let addend = small.get(p).copied().unwrap_or([0; W]);
        for w in 0..W {
            let (a, b) = (plane[w], addend[w]);
            plane[w] = a ^ b ^ carry[w];
            carry[w] = (a & b) | (carry[w] & (a ^ b));
        }
    }
}

/// GroupSum: writes the popcount of each class's group of bits for the first `valid` samples, sample-major.
///
/// Counting is bit-sliced in two tiers: bits are added into a 4-plane counter (cheap, at most 15 additions), which
/// is then added into the full-width counter.
#[inline(always)]
pub(crate) fn group_sum<const W: usize>(bits: &[[u64; W]], num_classes: usize, valid: usize, scores: &mut [i32]) {
    let group = bits.len() / num_classes;
    let planes = (usize::BITS - group.leading_zeros()) as usize;
    for (c, members) in bits.chunks_exact(group).enumerate() {
        let mut total = [[0u64; W]; usize::BITS as usize + 1];
        let total = &mut total[..planes];
        for fifteen in members.chunks(15) {
            let mut small = [[0u64; W]; 4];
            for x in fifteen {
                add_into(&mut small, x);
            }
            add_number(total, &small);
        }
        for s in 0..valid {
            let (w, bit) = (s / 64, s % 64);
            let count =
                total.iter().enumerate().fold(0usize, |n, (p, plane)| n | ((((plane[w] >> bit) & 1) as usize) << p));
            scores[s * num_classes + c] = count as i32;
        }
    }
}
