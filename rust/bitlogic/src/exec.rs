//! Runs a [`Program`] on one block of `64 * W` samples, and counts the class outputs.
//!
//! A slot is one `[u64; W]` bit plane: sample `64 * w + s` is bit `s` of word `w`. Every function is
//! `#[inline(always)]` and generic over `W`, so each instruction-set entry point of the engine (compiled with AVX2
//! or AVX-512 enabled) gets its own vectorized copy; with AVX-512 a three-input operation on eight words becomes a
//! single `vpternlogq`.

use std::any::Any;
use std::cell::RefCell;

use crate::bits::{transpose64, transpose64_lanes};
use crate::compiler::program::{BinaryStep, ClassSum, Program, Step};
use crate::input::Block;

/// Working memory of one evaluating thread.
pub(crate) struct Scratch<const W: usize> {
    pub(crate) slots: Vec<[u64; W]>,
    /// Sample-major rows for binary steps: 64 rows of `ceil(inputs / 64)` words.
    rows: Vec<u64>,
    /// Bit-sliced class counts: `planes` planes per class.
    counts: Vec<[u64; W]>,
    planes: usize,
    /// The encoder's transposition blocks.
    pub(crate) blocks: Vec<Block<W>>,
}

impl<const W: usize> Scratch<W> {
    fn empty() -> Self {
        Self { slots: Vec::new(), rows: Vec::new(), counts: Vec::new(), planes: 0, blocks: Vec::new() }
    }

    /// Sizes the buffers for `program` (keeping their memory when it suffices) and writes the constant slots, the
    /// only slots read before a block writes them.
    fn fit(&mut self, program: &Program, encoder_blocks: usize) {
        self.slots.resize(program.num_slots, [0; W]);
        self.slots[program.num_inputs] = [0; W];
        self.slots[program.num_inputs + 1] = [!0; W];
        let max_words =
            program.steps.iter().map(|s| if let Step::Binary(b) = s { b.words() } else { 0 }).max().unwrap_or(0);
        self.planes = program.classes.iter().map(ClassSum::planes).max().unwrap_or(0).max(1);
        self.rows.resize(64 * max_words, 0);
        self.counts.resize(self.planes * program.classes.len(), [0; W]);
        self.blocks.resize(encoder_blocks, [[0; W]; 65]);
    }
}

thread_local! {
    /// The scratch of this thread's last evaluation, one per block width, kept for the next: a block's working set
    /// can be a megabyte, and allocating (and faulting in) that much per call would dominate small batches.
    static CACHE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A thread's scratch, taken from the thread's cache and put back when dropped.
pub(crate) struct CachedScratch<const W: usize>(Option<Box<Scratch<W>>>);

impl<const W: usize> CachedScratch<W> {
    pub(crate) fn take(program: &Program, encoder_blocks: usize) -> Self {
        let cached = CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let at = cache.iter().position(|b| b.is::<Scratch<W>>())?;
            cache.swap_remove(at).downcast::<Scratch<W>>().ok()
        });
        let mut scratch = cached.unwrap_or_else(|| Box::new(Scratch::empty()));
        scratch.fit(program, encoder_blocks);
        Self(Some(scratch))
    }
}

impl<const W: usize> std::ops::Deref for CachedScratch<W> {
    type Target = Scratch<W>;
    fn deref(&self) -> &Scratch<W> {
        self.0.as_deref().expect("present until dropped")
    }
}

impl<const W: usize> std::ops::DerefMut for CachedScratch<W> {
    fn deref_mut(&mut self) -> &mut Scratch<W> {
        self.0.as_deref_mut().expect("present until dropped")
    }
}

impl<const W: usize> Drop for CachedScratch<W> {
    fn drop(&mut self) {
        if let Some(scratch) = self.0.take() {
            // `try_with`: during thread exit the cache may already be gone; the scratch is then simply freed.
            let _ = CACHE.try_with(|cache| {
                if let Ok(mut cache) = cache.try_borrow_mut() {
                    if !cache.iter().any(|b| b.is::<Scratch<W>>()) {
                        cache.push(scratch);
                    }
                }
            });
        }
    }
}

/// Runs every step; the encoder has filled the input slots.
#[inline(always)]
pub(crate) fn run<const W: usize>(program: &Program, scratch: &mut Scratch<W>) {
    assert_eq!(scratch.slots.len(), program.num_slots, "scratch made for another program");
    for step in &program.steps {
        match step {
            Step::Tern { imm, start, end } => {
                let ops = &program.ops[*start as usize..*end as usize];
                // SAFETY: `Program::check` verified every slot of every op is below `num_slots`, the length of
                // `slots` asserted above.
                unsafe { tern_run::<W>(*imm, ops, &mut scratch.slots) }
            }
            Step::Binary(b) => binary(b, &mut scratch.slots, &mut scratch.rows),
        }
    }
}

/// The two-input function `op` of `(a, b)`: bit `a + 2b` of `op` is the output for inputs `(a, b)`. Each arm is
/// the cheapest form; `op` is a constant wherever this is inlined, so only one arm survives.
#[inline(always)]
fn op2(op: u8, a: u64, b: u64) -> u64 {
    match op & 15 {
        0 => 0,
        1 => !(a | b),
        2 => a & !b,
        3 => !b,
        4 => !a & b,
        5 => !a,
        6 => a ^ b,
        7 => !(a & b),
        8 => a & b,
        9 => !(a ^ b),
        10 => a,
        11 => a | !b,
        12 => b,
        13 => !a | b,
        14 => a | b,
        _ => !0,
    }
}

/// The three-input function `IMM` (bit `a + 2b + 4c` is the output for `(a, b, c)`), as the multiplexer of its two
/// halves on `c`; compilers fold it into one `vpternlogq` where AVX-512 is enabled.
#[inline(always)]
fn tern<const IMM: u8>(a: u64, b: u64, c: u64) -> u64 {
    let (lo, hi) = (IMM & 15, IMM >> 4);
    if lo == hi {
        op2(lo, a, b)
    } else {
        let (x, y) = (op2(lo, a, b), op2(hi, a, b));
        x ^ ((x ^ y) & c)
    }
}

/// # Safety
/// Every slot index in `ops` is below `slots.len()`.
#[inline(always)]
unsafe fn run_imm<const IMM: u8, const W: usize>(ops: &[[u32; 4]], slots: &mut [[u64; W]]) {
    let base = slots.as_mut_ptr();
    for &[a, b, c, o] in ops {
        // Inputs are copied out before the output is written: an operation may reuse an input's slot.
        let (x, y, z) = (*base.add(a as usize), *base.add(b as usize), *base.add(c as usize));
        let mut r = [0u64; W];
        for w in 0..W {
            r[w] = tern::<IMM>(x[w], y[w], z[w]);
        }
        *base.add(o as usize) = r;
    }
}

macro_rules! dispatch_imm {
    ($imm:expr, $ops:expr, $slots:expr; $($n:literal)*) => {
        match $imm {
            $($n => run_imm::<$n, W>($ops, $slots),)*
        }
    };
}

/// # Safety
/// Every slot index in `ops` is below `slots.len()`.
#[inline(always)]
unsafe fn tern_run<const W: usize>(imm: u8, ops: &[[u32; 4]], slots: &mut [[u64; W]]) {
    dispatch_imm!(imm, ops, slots; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127 128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159 160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191 192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223 224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255)
}

/// A binary layer: transposes each word's 64 samples into 64 input words per sample, stored word-major (word `c` of
/// every sample side by side), then for each weight row XORs each column of 64 samples with the row's word and adds
/// the popcounts sample-wise: a loop over 64 independent lanes, which compilers turn into vector XOR and popcount
/// (`vpopcntq` with AVX-512).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `w` is the lane of many different slots, read and written
fn binary<const W: usize>(step: &BinaryStep, slots: &mut [[u64; W]], rows: &mut [u64]) {
    let n = step.inputs.len();
    let words = step.words();
    let rows = &mut rows[..64 * words];
    for w in 0..W {
        let mut block = [0u64; 64];
        for (c, column) in rows.chunks_exact_mut(64).enumerate() {
            let inputs = &step.inputs[64 * c..n.min(64 * c + 64)];
            for (j, row) in block.iter_mut().enumerate() {
                *row = inputs.get(j).map_or(0, |&slot| slots[slot as usize][w]);
            }
            transpose64(&mut block);
            column.copy_from_slice(&block);
        }
        for ((&out, weights), &threshold) in
            step.outputs.iter().zip(step.weights.chunks_exact(words)).zip(&step.thresholds)
        {
            // At least `threshold` of the `n` inputs match: at most `n - threshold` mismatches. Padding bits are 0
            // in both the rows and the weights, so they never count as mismatches.
            let limit = n as i64 - threshold as i64;
            let mut mismatches = [0u64; 64];
            for (column, &weight) in rows.chunks_exact(64).zip(weights) {
                for (m, &x) in mismatches.iter_mut().zip(column) {
                    *m += (x ^ weight).count_ones() as u64;
                }
            }
            let mut bits = 0u64;
            for (s, &m) in mismatches.iter().enumerate() {
                bits |= ((m as i64 <= limit) as u64) << s;
            }
            // Outputs never share a slot with this step's inputs (see `Program::new`).
            slots[out as usize][w] = bits;
        }
    }
}

/// Carry-save adder on planes: `(majority(a, b, c), a ^ b ^ c)`, the carry and the sum of three bits. Each half is
/// one `vpternlogq` where AVX-512 is enabled.
#[inline(always)]
fn csa<const W: usize>(a: &[u64; W], b: &[u64; W], c: &[u64; W]) -> ([u64; W], [u64; W]) {
    let mut carry = [0; W];
    let mut sum = [0; W];
    for w in 0..W {
        carry[w] = (a[w] & b[w]) | (c[w] & (a[w] ^ b[w]));
        sum[w] = a[w] ^ b[w] ^ c[w];
    }
    (carry, sum)
}

/// Adds the plane `x`, of weight `2^k`, to the bit-sliced counter `out` (plane `p` of weight `2^p`), rippling the
/// carry up. The counter never overflows: every addition is part of a class count below `2^out.len()`.
#[inline(always)]
fn add_plane<const W: usize>(out: &mut [[u64; W]], mut x: [u64; W], k: usize) {
    for plane in &mut out[k..] {
        for w in 0..W {
            let carry = plane[w] & x[w];
            plane[w] ^= x[w];
            x[w] = carry;
        }
    }
}

/// Counts a class's bits into `out` (bit-sliced, plane `p` of weight `2^p`) with the Harley-Seal carry-save tree:
/// sixteen bits at a time are reduced by fifteen carry-save adders into running planes of weight 1, 2, 4 and 8
/// (held in registers) and one plane of weight 16, which alone ripples into the counter: about two instructions a
/// bit instead of a full count per bit. The plain slots go first, then the inverted ones through the same planes.
#[inline(always)]
fn count_class<const W: usize>(slots: &[[u64; W]], class: &ClassSum, out: &mut [[u64; W]]) {
    out.fill([0; W]);
    let mut planes = [[0u64; W]; 4];
    count_members::<W, false>(slots, &class.slots, &mut planes, out);
    count_members::<W, true>(slots, &class.inverted, &mut planes, out);
    for (k, plane) in planes.into_iter().enumerate() {
        if k < out.len() {
            add_plane(out, plane, k);
        }
    }
    for k in 0..32 {
        if (class.ones >> k) & 1 == 1 {
            add_plane(out, [!0; W], k);
        }
    }
}

/// Adds the planes of `members` (complemented when `INVERT`) to the running planes of weight 1, 2, 4 and 8 and to
/// the counter `out`.
#[inline(always)]
fn count_members<const W: usize, const INVERT: bool>(
    slots: &[[u64; W]],
    members: &[u32],
    [ones, twos, fours, eights]: &mut [[u64; W]; 4],
    out: &mut [[u64; W]],
) {
    let read = |s: u32| {
        let mut x = slots[s as usize];
        if INVERT {
            x = x.map(|w| !w);
        }
        x
    };
    let mut groups = members.chunks_exact(16);
    for group in groups.by_ref() {
        let x = |i: usize| read(group[i]);
        let (twos_a, o) = csa(ones, &x(0), &x(1));
        let (twos_b, o) = csa(&o, &x(2), &x(3));
        let (fours_a, t) = csa(twos, &twos_a, &twos_b);
        let (twos_a, o) = csa(&o, &x(4), &x(5));
        let (twos_b, o) = csa(&o, &x(6), &x(7));
        let (fours_b, t) = csa(&t, &twos_a, &twos_b);
        let (eights_a, f) = csa(fours, &fours_a, &fours_b);
        let (twos_a, o) = csa(&o, &x(8), &x(9));
        let (twos_b, o) = csa(&o, &x(10), &x(11));
        let (fours_a, t) = csa(&t, &twos_a, &twos_b);
        let (twos_a, o) = csa(&o, &x(12), &x(13));
        let (twos_b, o) = csa(&o, &x(14), &x(15));
        let (fours_b, t) = csa(&t, &twos_a, &twos_b);
        let (eights_b, f) = csa(&f, &fours_a, &fours_b);
        let (sixteens, e) = csa(eights, &eights_a, &eights_b);
        (*ones, *twos, *fours, *eights) = (o, t, f, e);
        add_plane(out, sixteens, 4);
    }
    for &s in groups.remainder() {
        add_plane(out, read(s), 0);
    }
}

/// Counts every class of the block into `scratch.counts`.
#[inline(always)]
fn count_all<const W: usize>(program: &Program, scratch: &mut Scratch<W>) {
    let planes = scratch.planes;
    for (class, out) in program.classes.iter().zip(scratch.counts.chunks_exact_mut(planes)) {
        count_class(&scratch.slots, class, out);
    }
}

/// Class scores of the first `valid` samples, sample-major.
#[inline(always)]
pub(crate) fn scores<const W: usize>(program: &Program, scratch: &mut Scratch<W>, valid: usize, out: &mut [i32]) {
    count_all(program, scratch);
    let k = program.classes.len();
    let planes = scratch.planes;
    for (c, counts) in scratch.counts.chunks_exact(planes).enumerate() {
        // The count planes are the first rows of a 64 x 64 bit matrix per word; transposed, row `s` of lane `w` is
        // the count of sample `64 * w + s` (planes <= 32: a count fits in 32 bits). One vectorized transpose
        // replaces gathering each sample's count bit by bit.
        let mut block = [[0u64; W]; 64];
        block[..planes].copy_from_slice(counts);
        transpose64_lanes(&mut block);
        for (s, score) in out.iter_mut().skip(c).step_by(k).take(valid).enumerate() {
            *score = block[s % 64][s / 64] as i32;
        }
    }
}

/// Predicted classes of the first `valid` samples: the largest count, the lowest class on ties. The comparison runs
/// bit-sliced on all samples at once, so only the winning index is unpacked, not every count.
#[inline(always)]
pub(crate) fn labels<const W: usize>(program: &Program, scratch: &mut Scratch<W>, valid: usize, out: &mut [i64]) {
    count_all(program, scratch);
    let planes = scratch.planes;
    let k = program.classes.len();
    let index_bits = (usize::BITS - (k - 1).leading_zeros()) as usize;
    let mut best: Vec<[u64; W]> = scratch.counts[..planes].to_vec();
    let mut index = [[0u64; W]; 64];
    for (c, counts) in scratch.counts.chunks_exact(planes).enumerate().skip(1) {
        // counts > best, most significant plane first.
        let mut greater = [0u64; W];
        let mut equal = [!0u64; W];
        for p in (0..planes).rev() {
            for w in 0..W {
                greater[w] |= equal[w] & counts[p][w] & !best[p][w];
                equal[w] &= !(counts[p][w] ^ best[p][w]);
            }
        }
        for p in 0..planes {
            for w in 0..W {
                best[p][w] ^= (best[p][w] ^ counts[p][w]) & greater[w];
            }
        }
        for (b, plane) in index[..index_bits].iter_mut().enumerate() {
            let bit = 0u64.wrapping_sub(((c >> b) & 1) as u64);
            for w in 0..W {
                plane[w] ^= (plane[w] ^ bit) & greater[w];
            }
        }
    }
    for (s, label) in out[..valid].iter_mut().enumerate() {
        let (w, bit) = (s / 64, s % 64);
        *label = index[..index_bits]
            .iter()
            .enumerate()
            .fold(0i64, |n, (b, plane)| n | (((plane[w] >> bit) & 1) as i64) << b);
    }
}
