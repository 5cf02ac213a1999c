//! Borrowed input arrays and their encoding into bit planes.
//!
//! An input is a strided 2-D view (`rows` samples by `cols` values), so C-ordered, F-ordered and sliced arrays are
//! all read in place. Encoding turns 64 samples at a time into one `u64` per input bit ("bit planes", sample `s` at
//! bit `s`): each sample's comparisons are packed into 64-bit masks by SIMD compares, then a 64 x 64 bit transpose
//! turns rows into planes.

use crate::bits::transpose64_lanes;
use crate::error::{Error, Result};
use crate::model::encoder::{Encoder, ThresholdEncoder};
use crate::simd::{mask, Simd};

/// One 64 x 64 bit matrix per lane, and a row of padding: blocks of 64 rows would be a multiple of 4 KiB apart, and
/// the encoder's stores to the same row of consecutive blocks would then compete for one set of the L1 cache (and
/// alias with the input's loads), which measured about twice slower.
pub(crate) type Block<const W: usize> = [[u64; W]; 65];

/// A read-only 2-D strided view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T: Copy> Matrix<'a, T> {
    /// A strided view; fails unless every element lies inside `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(row_stride)
                .and_then(|r| (cols - 1).checked_mul(col_stride).and_then(|c| r.checked_add(c)));
            if last.is_none_or(|last| last >= data.len()) {
                return Err(Error::Input(format!(
                    "a {rows} x {cols} view with strides ({row_stride}, {col_stride}) does not fit in {} elements",
                    data.len()
                )));
            }
        }
        Ok(Self { data, rows, cols, row_stride, col_stride })
    }

    /// A C-ordered (row-major) view of `rows * cols` elements.
    pub fn c_order(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::Input(format!(
                "expected {rows} x {cols} = {} elements, got {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        Self::new(data, rows, cols, cols, 1)
    }

    /// Number of samples.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Values per sample.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The elements in row-major order, when they are laid out that way with no gaps.
    pub fn contiguous(&self) -> Option<&'a [T]> {
        let dense = self.col_stride == 1 && (self.row_stride == self.cols || self.rows <= 1);
        dense.then(|| &self.data[..self.rows * self.cols])
    }
    #[inline(always)]
    fn get(&self, r: usize, c: usize) -> T {
        self.data[r * self.row_stride + c * self.col_stride]
    }
    /// The contiguous row `r`, when columns are adjacent in memory.
    #[inline(always)]
    fn row(&self, r: usize) -> Option<&'a [T]> {
        (self.col_stride == 1).then(|| &self.data[r * self.row_stride..][..self.cols])
    }
}

/// Bits already packed as planes: plane `i` (encoder output bit `i`) is `words_per_plane` consecutive `u64`, sample
/// `s` at bit `s % 64` of word `s / 64`. The engine reads the words in place: no comparison, no transposition.
#[derive(Clone, Copy, Debug)]
pub struct Packed<'a> {
    data: &'a [u64],
    num_bits: usize,
    num_samples: usize,
}

impl<'a> Packed<'a> {
    /// `data` holds `num_bits` planes of `ceil(num_samples / 64)` words; bits past `num_samples` are ignored.
    pub fn new(data: &'a [u64], num_bits: usize, num_samples: usize) -> Result<Self> {
        let words = num_samples.div_ceil(64);
        if num_bits.checked_mul(words) != Some(data.len()) {
            return Err(Error::Input(format!(
                "packed bits: {num_bits} planes of {num_samples} samples need {num_bits} x {words} words, got {}",
                data.len()
            )));
        }
        Ok(Self { data, num_bits, num_samples })
    }
    /// Words per plane.
    pub fn words_per_plane(&self) -> usize {
        self.num_samples.div_ceil(64)
    }
}

/// An input batch for [`crate::Network::scores`].
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// float32 features, through the network's threshold encoder.
    F32(Matrix<'a, f32>),
    /// float64 features, through the network's threshold encoder.
    F64(Matrix<'a, f64>),
    /// uint8 features: through the threshold encoder if the network has one, otherwise 0/1 input bits.
    U8(Matrix<'a, u8>),
    /// Already-encoded bits (each byte 0 or 1), one column per encoder output bit.
    Bits(Matrix<'a, u8>),
    /// Already-encoded bits packed as bit planes.
    Packed(Packed<'a>),
}

impl Input<'_> {
    /// Number of samples.
    pub fn rows(&self) -> usize {
        match self {
            Input::F32(m) => m.rows,
            Input::F64(m) => m.rows,
            Input::U8(m) | Input::Bits(m) => m.rows,
            Input::Packed(p) => p.num_samples,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Input::F32(m) => m.cols,
            Input::F64(m) => m.cols,
            Input::U8(m) | Input::Bits(m) => m.cols,
            Input::Packed(p) => p.num_bits,
        }
    }
}

/// An input checked against a network's encoder, ready to be encoded block by block.
///
/// Features are taken 64 at a time ("chunks"). For each sample of a block, each chunk is compared with each of the
/// encoder's `T` threshold vectors, giving one 64-bit mask per (sample, chunk, threshold); 64 samples' masks form a
/// 64 x 64 bit matrix whose transpose holds the bit planes of 64 encoder bits.
pub(crate) struct Encoding<'a> {
    source: Source<'a>,
    rows: usize,
    /// Comparison vectors per chunk, `T` at a time: `[chunk * T + t]`.
    per_feature: usize,
    /// The slot each (chunk, threshold, lane) bit goes to, `u32::MAX` for bits the program does not read, for
    /// padding and for lanes that repeat the previous chunk's columns (see [`windows`]): `[(chunk * T + t) * 64 + j]`.
    /// Set by [`Encoding::route`].
    dest: Vec<u32>,
    /// Slots of encoder bits that are 0 whatever the input (a uint8 feature against a threshold of 255 or more):
    /// written as zeros rather than compared.
    zero_slots: Vec<u32>,
    /// For packed input: the encoder bit of each slot.
    packed_bits: Vec<u32>,
    /// The window of 64 values read for each chunk: see [`windows`].
    windows: Vec<(usize, u32)>,
    /// Whether any bit of block `chunk * T + t` goes to a slot: the others are not transposed.
    block_read: Vec<bool>,
    /// Whether a chunk of 64 values must be compared: some bit of it is read, or its values must be checked (bits
    /// must be 0 or 1, floats must not be NaN, whether the network reads them or not).
    chunk_needed: Vec<bool>,
}

enum Source<'a> {
    Bits(Matrix<'a, u8>),
    Packed(Packed<'a>),
    /// Cuts (`x >= cut`). A cut of 256, which no byte reaches, is compared as 255: [`Encoding::route`] sends those
    /// bits to `zero_slots` instead of reading them from the comparison.
    U8(Matrix<'a, u8>, Vec<[u8; 64]>),
    /// Thresholds (`x > t`); padding lanes compare with +inf.
    F32(Matrix<'a, f32>, Vec<[f32; 64]>),
    F64(Matrix<'a, f64>, Vec<[f64; 64]>),
}

impl<'a> Encoding<'a> {
    /// Checks the input's kind and width against the encoder.
    pub(crate) fn new(encoder: &Encoder, input: Input<'a>) -> Result<Self> {
        let num_bits = encoder.num_bits();
        let (source, expected, what) = match (encoder, input) {
            (_, Input::Packed(p)) => (Source::Packed(p), num_bits, "input bit planes"),
            (_, Input::Bits(m)) | (Encoder::Bits { .. }, Input::U8(m)) => (Source::Bits(m), num_bits, "input bits"),
            (Encoder::Bits { .. }, Input::F32(_) | Input::F64(_)) => {
                return Err(Error::Input(format!(
                "this network takes {num_bits} input bits per sample (a bool or 0/1 uint8 array), not float features"
            )))
            }
            (Encoder::Thresholds(t), Input::F32(m)) => {
                (Source::F32(m, chunked(t, f32::INFINITY, |x| x)), t.num_features(), "features")
            }
            (Encoder::Thresholds(t), Input::F64(m)) => {
                // Widening the threshold to f64 is exact, so this is the comparison torch makes in float64.
                (Source::F64(m, chunked(t, f64::INFINITY, |x| x as f64)), t.num_features(), "features")
            }
            (Encoder::Thresholds(t), Input::U8(m)) => {
                let cuts = chunked(t, 255, |x| u8_cut(x).min(255) as u8);
                (Source::U8(m, cuts), t.num_features(), "features")
            }
        };
        if input.cols() != expected {
            return Err(Error::Input(format!(
                "expected {expected} {what} per sample (shape [N, {expected}]), got {} columns",
                input.cols()
            )));
        }
        let per_feature = match (encoder, &source) {
            (Encoder::Thresholds(t), Source::U8(..) | Source::F32(..) | Source::F64(..)) => t.per_feature(),
            _ => 1,
        };
        Ok(Self {
            source,
            rows: input.rows(),
            per_feature,
            dest: Vec::new(),
            zero_slots: Vec::new(),
            packed_bits: Vec::new(),
            windows: windows(input.cols()),
            block_read: Vec::new(),
            chunk_needed: Vec::new(),
        })
    }

    /// Sends each encoder bit the program reads to its slot (`input_bits[i]` to slot `i`); other bits are dropped.
    pub(crate) fn route(&mut self, encoder: &Encoder, input_bits: &[u32]) {
        let num_bits = encoder.num_bits();
        let mut slot_of_bit = vec![u32::MAX; num_bits];
        for (slot, &bit) in input_bits.iter().enumerate() {
            slot_of_bit[bit as usize] = slot as u32;
        }
        // Lane `j` of chunk `c` compares column `lo + j` of its window; lanes below `repeated` repeat the previous
        // chunk's columns and are not routed.
        let column = |c: usize, j: usize| {
            let (lo, repeated) = self.windows[c];
            (j >= repeated as usize).then_some(lo + j)
        };
        let chunks = self.windows.len();
        self.zero_slots.clear();
        self.dest = match (encoder, &self.source) {
            (Encoder::Thresholds(t), Source::U8(..) | Source::F32(..) | Source::F64(..)) => {
                let per = t.per_feature();
                // From uint8 features, a bit whose threshold no byte exceeds is 0 for every sample.
                let always_zero = |f: usize, k: usize| {
                    matches!(self.source, Source::U8(..)) && u8_cut(t.thresholds()[f * per + k]) > 255
                };
                let mut dest = vec![u32::MAX; chunks * per * 64];
                for c in 0..chunks {
                    for (j, f) in (0..64).filter_map(|j| Some((j, column(c, j)?))) {
                        if f >= t.num_features() {
                            continue;
                        }
                        for k in 0..per {
                            let slot = slot_of_bit[t.bit_index(f, k)];
                            if slot == u32::MAX || !always_zero(f, k) {
                                dest[(c * per + k) * 64 + j] = slot;
                            } else {
                                self.zero_slots.push(slot);
                            }
                        }
                    }
                }
                dest
            }
            _ => (0..chunks * 64)
                .map(|i| column(i / 64, i % 64).and_then(|b| slot_of_bit.get(b).copied()).unwrap_or(u32::MAX))
                .collect(),
        };
        self.packed_bits = input_bits.to_vec();
        self.block_read = self.dest.chunks_exact(64).map(|d| d.iter().any(|&slot| slot != u32::MAX)).collect();
        let validates = !matches!(self.source, Source::U8(..));
        self.chunk_needed = self.block_read.chunks(self.per_feature).map(|r| validates || r.contains(&true)).collect();
    }

    /// Number of samples.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Transposition blocks the encoder needs: one per chunk of 64 values and threshold.
    pub(crate) fn blocks_needed(&self) -> usize {
        self.block_read.len()
    }

    /// Writes the bit planes of samples `start .. start + 64 * W` into `planes` (the program's input slots);
    /// samples past the end of the input become zeros.
    #[inline(always)]
    pub(crate) fn encode<const W: usize, S: Simd>(
        &self,
        start: usize,
        planes: &mut [[u64; W]],
        blocks: &mut [Block<W>],
    ) -> Result<()> {
        match &self.source {
            Source::Packed(p) => {
                let words = p.words_per_plane();
                let first = start / 64;
                for (plane, &bit) in planes.iter_mut().zip(&self.packed_bits) {
                    let row = &p.data[bit as usize * words..][..words];
                    // Each plane is a separate stretch of memory (a whole batch apart from the next), which the
                    // hardware prefetchers do not follow: ask for the next block's words now, a block ahead.
                    prefetch(&row[(first + W).min(words - 1)..(first + 2 * W).min(words)]);
                    // The batch's last block may be partial: its missing words are zeros.
                    let have = &row[first..(first + W).min(words)];
                    plane[..have.len()].copy_from_slice(have);
                    plane[have.len()..].fill(0);
                }
                Ok(())
            }
            Source::Bits(m) => self.encode_rows::<W, u8>(
                m,
                start,
                planes,
                blocks,
                #[inline(always)]
                |_, x, block, s, w| {
                    // SAFETY: the engine only instantiates `S` for an instruction set the CPU supports.
                    let (bits, bad) = unsafe { S::bits_u8(x) };
                    block[0][s][w] = bits;
                    bad as u64
                },
                |r, row| match row.iter().enumerate().find(|&(_, &v)| v > 1) {
                    Some((j, v)) => Error::Input(format!("sample {r}, input bit {j} is {v}; expected 0 or 1")),
                    None => Error::Input(format!("sample {r}: input bits must be 0 or 1")),
                },
            ),
            Source::U8(m, cuts) => self.encode_rows::<W, u8>(
                m,
                start,
                planes,
                blocks,
                #[inline(always)]
                |c, x, block, s, w| {
                    let per = self.per_feature;
                    // SAFETY: as above.
                    unsafe { S::ge_u8_each(x, &cuts[c * per..][..per], |t, bits| block[t][s][w] = bits) };
                    0 // every byte is a valid feature
                },
                |r, _| Error::Input(format!("sample {r}: invalid features")),
            ),
            Source::F32(m, thresholds) => self.encode_rows::<W, f32>(
                m,
                start,
                planes,
                blocks,
                #[inline(always)]
                |c, x, block, s, w| {
                    for (t, b) in block.iter_mut().enumerate() {
                        // SAFETY: as above.
                        b[s][w] = unsafe { S::gt_f32(x, &thresholds[c * self.per_feature + t]) };
                    }
                    unsafe { S::nan_f32(x) }
                },
                |r, row| nan_error(r, row.iter().position(|v| v.is_nan())),
            ),
            Source::F64(m, thresholds) => self.encode_rows::<W, f64>(
                m,
                start,
                planes,
                blocks,
                #[inline(always)]
                |c, x, block, s, w| {
                    for (t, b) in block.iter_mut().enumerate() {
                        let th = &thresholds[c * self.per_feature + t];
                        b[s][w] = mask(|i| x[i] > th[i]);
                    }
                    mask(|i| x[i].is_nan())
                },
                |r, row| nan_error(r, row.iter().position(|v| v.is_nan())),
            ),
        }
    }

    /// Runs `compare(chunk, values, blocks, s, w)` on every sample of the block and every window of 64 values (see
    /// [`windows`]), which writes row `s`, lane `w` of the chunk's block for each threshold and returns a nonzero
    /// value when some value is invalid; then transposes the blocks into the planes. Samples are visited lane by lane
    /// (sample `s` of each of the `W` words, then `s + 1`), so each 64-byte row of a block is written in one burst
    /// rather than a word at a time, 64 samples apart; a C-ordered input is then read as `W` streams of consecutive
    /// rows, each row from start to end. A row with an invalid value fails with `invalid(sample, row)`.
    #[inline(always)]
    fn encode_rows<const W: usize, X: Copy + Default>(
        &self,
        m: &Matrix<'_, X>,
        start: usize,
        planes: &mut [[u64; W]],
        blocks: &mut [Block<W>],
        mut compare: impl FnMut(usize, &[X; 64], &mut [Block<W>], usize, usize) -> u64,
        invalid: impl Fn(usize, &[X]) -> Error,
    ) -> Result<()> {
        let cols = m.cols();
        let per = self.per_feature;
        let blocks = &mut blocks[..self.windows.len() * per];
        let mut padded = [X::default(); 64];
        let mut gathered: Vec<X> = Vec::new();
        for s in 0..64 {
            for w in 0..W {
                let r = start + 64 * w + s;
                if r >= self.rows {
                    for b in blocks.iter_mut() {
                        b[s][w] = 0;
                    }
                    continue;
                }
                prefetch_row(m, r + PREFETCH_ROWS);
                let row: &[X] = match m.row(r) {
                    Some(row) => row,
                    None => {
                        gathered.clear();
                        gathered.extend((0..cols).map(|j| m.get(r, j)));
                        &gathered
                    }
                };
                let mut bad = 0;
                if cols >= 64 {
                    let windows = self.windows.iter().zip(blocks.chunks_exact_mut(per)).enumerate();
                    for (c, (&(lo, _), chunk_blocks)) in windows {
                        if self.chunk_needed[c] {
                            let x: &[X; 64] = row[lo..lo + 64].try_into().expect("64 values");
                            bad |= compare(c, x, chunk_blocks, s, w);
                        }
                    }
                } else if cols > 0 && self.chunk_needed[0] {
                    padded[..cols].copy_from_slice(row);
                    bad = compare(0, &padded, blocks, s, w);
                }
                if bad != 0 {
                    return Err(invalid(r, row));
                }
            }
        }
        for (i, block) in blocks.iter_mut().enumerate() {
            if !self.block_read[i] {
                continue;
            }
            let block: &mut [[u64; W]; 64] = (&mut block[..64]).try_into().expect("64 rows");
            transpose64_lanes(block);
            for (&d, plane) in self.dest[i * 64..][..64].iter().zip(block.iter()) {
                if d != u32::MAX {
                    planes[d as usize] = *plane;
                }
            }
        }
        for &d in &self.zero_slots {
            planes[d as usize] = [0; W];
        }
        Ok(())
    }
}

fn nan_error(r: usize, feature: Option<usize>) -> Error {
    match feature {
        Some(f) => Error::Input(format!("sample {r}, feature {f} is NaN; expected a number")),
        None => Error::Input(format!("sample {r}: a feature is NaN; expected numbers")),
    }
}

/// The window of 64 values the encoder compares for each chunk of 64 columns, as `(first column, repeated lanes)`:
/// lane `j` of the chunk's masks is column `first + j`. Full chunks are read in place (none repeated). A last, partial
/// chunk is read as the 64 values that end the row, whose first `repeated` lanes repeat columns of the chunk before
/// and are simply not routed to any slot: no copy into a padded buffer (a failed store-to-load forward per sample)
/// and no shift per sample. Rows shorter than 64 are padded instead (window at 0, none repeated).
fn windows(cols: usize) -> Vec<(usize, u32)> {
    (0..cols.div_ceil(64))
        .map(|c| {
            if 64 * c + 64 <= cols {
                (64 * c, 0)
            } else if cols >= 64 {
                (cols - 64, (64 * c + 64 - cols) as u32)
            } else {
                (0, 0)
            }
        })
        .collect()
}

/// How many rows ahead, within the run of consecutive rows a lane reads, the encoder asks for a row: visited `W`
/// samples apart (see `encode_rows`), enough to cover the memory latency of a streamed input.
const PREFETCH_ROWS: usize = 4;

/// Asks the CPU to start loading row `r` into the cache (a hint: nothing happens past the end).
#[inline(always)]
fn prefetch_row<X: Copy>(m: &Matrix<'_, X>, r: usize) {
    if r < m.rows {
        if let Some(row) = m.row(r) {
            prefetch(row);
        }
    }
}

/// Asks the CPU to start loading the cache lines of `data` (a hint; nothing happens off x86-64, where the prefetch
/// intrinsic is not stable).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn prefetch<X>(data: &[X]) {
    #[cfg(target_arch = "x86_64")]
    {
        // From the start of the line holding the first byte, so that every line the slice touches is asked for,
        // however it is aligned.
        let lead = data.as_ptr() as usize % 64;
        let start = (data.as_ptr() as *const i8).wrapping_sub(lead);
        for offset in (0..lead + std::mem::size_of_val(data)).step_by(64) {
            // SAFETY: a prefetch never faults and changes no data.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.wrapping_add(offset))
            };
        }
    }
}

/// The encoder's thresholds, mapped by `convert`, for every window of 64 features (see [`windows`]):
/// `[chunk * T + t][lane]`, lanes past the last feature holding `pad`.
fn chunked<V: Copy>(t: &ThresholdEncoder, pad: V, convert: impl Fn(f32) -> V) -> Vec<[V; 64]> {
    let (features, per) = (t.num_features(), t.per_feature());
    let windows = windows(features);
    let mut out = vec![[pad; 64]; windows.len() * per];
    for (c, &(lo, _)) in windows.iter().enumerate() {
        for (lane, f) in (lo..features.min(lo + 64)).enumerate() {
            for k in 0..per {
                out[c * per + k][lane] = convert(t.thresholds()[f * per + k]);
            }
        }
    }
    out
}

/// The smallest `x` in `0..=256` with `x as f32 > threshold`: for every uint8 `x`, `x as f32 > threshold` exactly
/// when `x >= u8_cut(threshold)` (an integer exceeds a real number exactly when it reaches its floor plus one).
fn u8_cut(threshold: f32) -> u16 {
    if threshold < 0.0 {
        0
    } else if threshold >= 255.0 {
        256
    } else {
        threshold.floor() as u16 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u8_cuts_compare_like_float32() {
        let mut thresholds = vec![
            f32::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            f32::MIN_POSITIVE,
            1e-45,
            0.5,
            1.0,
            127.5,
            254.0,
            254.99998,
            255.0,
            255.5,
            256.0,
            f32::INFINITY,
            f32::MAX,
        ];
        thresholds.extend((0..=2048).map(|i| i as f32 / 8.0 - 1.0));
        for t in thresholds {
            let cut = u8_cut(t);
            for x in 0..=255u8 {
                assert_eq!(x as f32 > t, x as u16 >= cut, "x {x}, threshold {t}, cut {cut}");
            }
        }
    }
}
