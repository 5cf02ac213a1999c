//! Deterministic random input batches that hit thresholds, their neighbours and the special values.

use super::{Batch, RefEncoder, RefNet, Values};

/// xorshift64*: a tiny deterministic generator for input data.
#[derive(Clone, Debug)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        Xorshift(seed ^ 0x5851_f42d_4c95_7f2d | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform below `n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// Uniform in [-range, range).
    pub fn uniform(&mut self, range: f64) -> f64 {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * range
    }
}

/// The kind of input batch to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Bits,
    U8,
    F32,
    F64,
}

/// Input kinds valid for an encoder.
pub fn input_kinds(encoder: &RefEncoder) -> &'static [InputKind] {
    match encoder {
        RefEncoder::Bits(_) => &[InputKind::Bits, InputKind::U8],
        RefEncoder::Thresholds { .. } => &[InputKind::Bits, InputKind::U8, InputKind::F32, InputKind::F64],
    }
}

/// Thresholds of a feature (empty for a bits encoder).
fn feature_thresholds(encoder: &RefEncoder, f: usize) -> &[f32] {
    match encoder {
        RefEncoder::Bits(_) => &[],
        RefEncoder::Thresholds { thresholds, .. } => &thresholds[f],
    }
}

/// The smallest `f32` above `x` (`x` itself at +infinity). Written out because `f32::next_up` is newer than the
/// crate's minimum Rust version.
pub fn f32_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        x
    } else if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

/// The largest `f32` below `x`.
pub fn f32_down(x: f32) -> f32 {
    -f32_up(-x)
}

/// The smallest `f64` above `x`.
pub fn f64_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        x
    } else if x == 0.0 {
        f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else {
        f64::from_bits(x.to_bits() - 1)
    }
}

/// The largest `f64` below `x`.
pub fn f64_down(x: f64) -> f64 {
    -f64_up(-x)
}

/// A random valid batch for `net`: features are drawn to hit thresholds exactly, their neighbours, the infinities,
/// signed zeros and (for f64) values between two adjacent f32 numbers.
pub fn random_batch(net: &RefNet, kind: InputKind, rows: usize, seed: u64) -> Batch {
    let mut rng = Xorshift::new(seed);
    let bits_cols = net.encoder.width();
    let features = net.encoder.num_inputs();
    match kind {
        InputKind::Bits => {
            // A per-column bias makes some bits nearly constant, which moves layer outputs off one half.
            let bias: Vec<usize> = (0..bits_cols).map(|_| rng.below(5)).collect();
            let values = (0..rows * bits_cols).map(|i| (rng.below(4) < bias[i % bits_cols]) as u8).collect();
            Batch { rows, cols: bits_cols, values: Values::Bits(values) }
        }
        InputKind::U8 => {
            let values = match net.encoder {
                RefEncoder::Bits(_) => (0..rows * features).map(|_| rng.coin() as u8).collect(),
                RefEncoder::Thresholds { .. } => (0..rows * features)
                    .map(|i| {
                        let ts = feature_thresholds(&net.encoder, i % features);
                        let t = ts[rng.below(ts.len())];
                        match rng.below(4) {
                            0 if t.is_finite() && (0.0..=255.0).contains(&t) => t as u8,
                            1 if t.is_finite() && (-1.0..=254.0).contains(&t) => (t + 1.0) as u8,
                            2 => [0, 255][rng.below(2)],
                            _ => rng.below(256) as u8,
                        }
                    })
                    .collect(),
            };
            Batch { rows, cols: features, values: Values::U8(values) }
        }
        InputKind::F32 => {
            let values = (0..rows * features)
                .map(|i| {
                    let ts = feature_thresholds(&net.encoder, i % features);
                    let t = ts[rng.below(ts.len())];
                    match rng.below(8) {
                        0 | 1 => t,
                        2 => [f32_down(t), f32_up(t)][rng.below(2)],
                        3 => [f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, f32::MAX, f32::MIN][rng.below(6)],
                        4 => rng.below(256) as f32,
                        _ => rng.uniform(4.0) as f32,
                    }
                })
                .collect();
            Batch { rows, cols: features, values: Values::F32(values) }
        }
        InputKind::F64 => {
            let values = (0..rows * features)
                .map(|i| {
                    let ts = feature_thresholds(&net.encoder, i % features);
                    let t = f64::from(ts[rng.below(ts.len())]);
                    match rng.below(9) {
                        0 | 1 => t,
                        // Strictly between t and its f32 neighbours: rounding to f32 would give t itself.
                        2 if t.is_finite() => f64_up(t),
                        3 if t.is_finite() => f64_down(t),
                        4 => [f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e300, -1e300][rng.below(6)],
                        5 => rng.below(256) as f64,
                        _ => rng.uniform(4.0),
                    }
                })
                .collect();
            Batch { rows, cols: features, values: Values::F64(values) }
        }
    }
}
