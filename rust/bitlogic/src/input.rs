//! Borrowed input arrays and their encoding into bit planes.
//!
//! An input is a strided 2-D view (`rows` samples by `cols` values), so C-ordered, F-ordered and sliced arrays are
//! all read in place. Encoding turns 64 samples at a time into one `u64` per input bit ("bit planes", sample `s` at
//! bit `s`): each sample's bits are packed into words, then a 64 x 64 bit transpose turns rows into planes.

use crate::bits::{pack_byte_bits, transpose64, NOT_BITS};
use crate::error::{Error, Result};
use crate::network::{Encoder, ThresholdEncoder};

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
}

impl Input<'_> {
    /// Number of samples.
    pub fn rows(&self) -> usize {
        match self {
            Input::F32(m) => m.rows,
            Input::F64(m) => m.rows,
            Input::U8(m) | Input::Bits(m) => m.rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Input::F32(m) => m.cols,
            Input::F64(m) => m.cols,
            Input::U8(m) | Input::Bits(m) => m.cols,
        }
    }
}

/// One encoder output bit of a threshold encoder: the feature it reads and the threshold it compares with.
#[derive(Clone, Copy)]
struct Probe {
    feature: u32,
    threshold: f32,
}

/// An input checked against a network's encoder, ready to be encoded block by block.
pub(crate) struct Encoding<'a> {
    source: Source<'a>,
    rows: usize,
    num_bits: usize,
}

enum Source<'a> {
    Bits(Matrix<'a, u8>),
    F32(Matrix<'a, f32>, Vec<Probe>),
    F64(Matrix<'a, f64>, Vec<Probe>),
    U8(Matrix<'a, u8>, Vec<U8Probe>),
}

/// One encoder output bit over uint8 features: `x >= cut`, the integer form of `x as f32 > threshold` (see
/// [`u8_cut`]); a cut of 256 is never reached.
#[derive(Clone, Copy)]
struct U8Probe {
    feature: u32,
    cut: u16,
}

impl<'a> Encoding<'a> {
    /// Checks the input's kind and width against the encoder.
    pub(crate) fn new(encoder: &Encoder, input: Input<'a>) -> Result<Self> {
        let num_bits = encoder.num_bits();
        let (source, expected, what) = match (encoder, input) {
            (_, Input::Bits(m)) | (Encoder::Bits { .. }, Input::U8(m)) => (Source::Bits(m), num_bits, "input bits"),
            (Encoder::Bits { .. }, Input::F32(_) | Input::F64(_)) => {
                return Err(Error::Input(format!(
                "this network takes {num_bits} input bits per sample (a bool or 0/1 uint8 array), not float features"
            )))
            }
            (Encoder::Thresholds(t), Input::F32(m)) => (Source::F32(m, probes(t)), t.num_features(), "features"),
            (Encoder::Thresholds(t), Input::F64(m)) => (Source::F64(m, probes(t)), t.num_features(), "features"),
            (Encoder::Thresholds(t), Input::U8(m)) => (Source::U8(m, u8_probes(t)), t.num_features(), "features"),
        };
        if input.cols() != expected {
            return Err(Error::Input(format!(
                "expected {expected} {what} per sample (shape [N, {expected}]), got {} columns",
                input.cols()
            )));
        }
        Ok(Self { source, rows: input.rows(), num_bits })
    }

    /// Number of samples.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the bit planes of samples `start .. start + 64 * W` into `planes[0..num_bits]`; samples past the end
    /// of the input become zeros.
    #[inline(always)]
    pub(crate) fn encode<const W: usize>(&self, start: usize, planes: &mut [[u64; W]]) -> Result<()> {
        let planes = &mut planes[..self.num_bits];
        if let Source::U8(m, probes) = &self.source {
            self.encode_u8(m, probes, start, planes);
            return Ok(());
        }
        let mut block = [0u64; 64];
        for w in 0..W {
            let first = start + 64 * w;
            let count = self.rows.saturating_sub(first).min(64);
            for chunk in 0..self.num_bits.div_ceil(64) {
                let lo = chunk * 64;
                let hi = (lo + 64).min(self.num_bits);
                for (s, row) in block.iter_mut().enumerate() {
                    *row = if s < count { self.pack_row(first + s, lo, hi)? } else { 0 };
                }
                transpose64(&mut block);
                for (plane, &bits) in planes[lo..hi].iter_mut().zip(&block) {
                    plane[w] = bits;
                }
            }
        }
        Ok(())
    }

    /// [`Self::encode`] for uint8 features. Each word's 64 samples are first copied feature-major (64 bytes per
    /// feature, a block that stays in L1/L2), so that every output bit's plane word is one comparison of a feature's
    /// 64 values with an integer cut, which vectorizes, instead of 64 scalar comparisons and a bit transposition.
    #[inline(always)]
    fn encode_u8<const W: usize>(&self, m: &Matrix<'_, u8>, probes: &[U8Probe], start: usize, planes: &mut [[u64; W]]) {
        let features = m.cols();
        let mut columns = vec![0u8; features * 64];
        for w in 0..W {
            let first = start + 64 * w;
            let count = self.rows.saturating_sub(first).min(64);
            for s in 0..count {
                match m.row(first + s) {
                    Some(row) => {
                        for (f, &x) in row.iter().enumerate() {
                            columns[f * 64 + s] = x;
                        }
                    }
                    None => {
                        for f in 0..features {
                            columns[f * 64 + s] = m.get(first + s, f);
                        }
                    }
                }
            }
            // Samples past the end of the input read stale bytes; their bits are masked off.
            let valid = if count == 64 { u64::MAX } else { (1u64 << count) - 1 };
            for (plane, p) in planes.iter_mut().zip(probes) {
                let column: &[u8; 64] = columns[p.feature as usize * 64..][..64].try_into().expect("64 bytes");
                plane[w] = at_least(column, p.cut) & valid;
            }
        }
    }

    /// Encoder output bits `lo..hi` (at most 64) of sample `r`, bit `k - lo` holding output bit `k`.
    #[inline(always)]
    fn pack_row(&self, r: usize, lo: usize, hi: usize) -> Result<u64> {
        match &self.source {
            Source::Bits(m) => pack_bits(m, r, lo, hi),
            Source::F32(m, probes) => compare(&probes[lo..hi], |f| nan_checked(m.get(r, f), r, f)),
            Source::F64(m, probes) => {
                // Widening the threshold to f64 is exact, so this is the comparison torch makes in float64.
                let mut bits = 0u64;
                for (i, p) in probes[lo..hi].iter().enumerate() {
                    let x = nan_checked(m.get(r, p.feature as usize), r, p.feature as usize)?;
                    bits |= ((x > p.threshold as f64) as u64) << i;
                }
                Ok(bits)
            }
            Source::U8(m, probes) => {
                let mut bits = 0u64;
                for (i, p) in probes[lo..hi].iter().enumerate() {
                    bits |= ((m.get(r, p.feature as usize) as u16 >= p.cut) as u64) << i;
                }
                Ok(bits)
            }
        }
    }
}

fn probes(t: &ThresholdEncoder) -> Vec<Probe> {
    let mut probes = vec![Probe { feature: 0, threshold: 0.0 }; t.thresholds().len()];
    for f in 0..t.num_features() {
        for k in 0..t.per_feature() {
            probes[t.bit_index(f, k)] = Probe { feature: f as u32, threshold: t.thresholds()[f * t.per_feature() + k] };
        }
    }
    probes
}

fn u8_probes(t: &ThresholdEncoder) -> Vec<U8Probe> {
    probes(t).into_iter().map(|p| U8Probe { feature: p.feature, cut: u8_cut(p.threshold) }).collect()
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

/// Bit `s` is `column[s] >= cut`.
#[inline(always)]
fn at_least(column: &[u8; 64], cut: u16) -> u64 {
    if cut > 255 {
        return 0;
    }
    let cut = cut as u8;
    let mut bits = 0u64;
    for (s, &x) in column.iter().enumerate() {
        bits |= ((x >= cut) as u64) << s;
    }
    bits
}

#[inline(always)]
fn compare(probes: &[Probe], mut value: impl FnMut(usize) -> Result<f32>) -> Result<u64> {
    let mut bits = 0u64;
    for (i, p) in probes.iter().enumerate() {
        bits |= ((value(p.feature as usize)? > p.threshold) as u64) << i;
    }
    Ok(bits)
}

#[inline(always)]
fn nan_checked<T: Copy + PartialEq>(x: T, r: usize, f: usize) -> Result<T> {
    // NaN is the only value not equal to itself.
    #[allow(clippy::eq_op)]
    if x != x {
        return Err(Error::Input(format!("sample {r}, feature {f} is NaN; expected a number")));
    }
    Ok(x)
}

#[inline(always)]
fn pack_bits(m: &Matrix<'_, u8>, r: usize, lo: usize, hi: usize) -> Result<u64> {
    let bad = |c: usize| Error::Input(format!("sample {r}, input bit {c} is {}; expected 0 or 1", m.get(r, c)));
    let mut bits = 0u64;
    match m.row(r) {
        Some(row) => {
            let row = &row[lo..hi];
            let mut eights = row.chunks_exact(8);
            for (i, eight) in eights.by_ref().enumerate() {
                let v = u64::from_le_bytes(eight.try_into().expect("chunks of 8"));
                if v & NOT_BITS != 0 {
                    let j = eight.iter().position(|&b| b > 1).unwrap_or(0);
                    return Err(bad(lo + 8 * i + j));
                }
                bits |= pack_byte_bits(v) << (8 * i);
            }
            let done = row.len() - eights.remainder().len();
            for (i, &b) in eights.remainder().iter().enumerate() {
                if b > 1 {
                    return Err(bad(lo + done + i));
                }
                bits |= (b as u64) << (done + i);
            }
        }
        None => {
            for c in lo..hi {
                let b = m.get(r, c);
                if b > 1 {
                    return Err(bad(c));
                }
                bits |= (b as u64) << (c - lo);
            }
        }
    }
    Ok(bits)
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
                let mut column = [0u8; 64];
                column[7] = x;
                assert_eq!((at_least(&column, cut) >> 7) & 1 == 1, x as f32 > t, "x {x}, threshold {t}");
            }
        }
    }
}
