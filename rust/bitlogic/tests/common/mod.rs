//! Test support shared by the integration tests:
//!
//! - [`RefNet`], a plain description of a network (every wire, op code, table entry and weight as its own value),
//!   with a naive per-sample evaluator written from docs/FORMAT.md alone. It knows nothing of bit slicing, packing
//!   into words or the engine's kernels.
//! - [`Batch`], an owned input batch that can be viewed in C order, F order or with padded strides.
//! - An independent writer of network files ([`RefNet::file_parts`], [`write_container`]) that assembles the
//!   safetensors container byte by byte, so the engine's reader is checked against files it did not write.
//! - proptest strategies for random valid networks and a small deterministic generator for input data.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bitlogic::{BinaryLayer, BitOrder, Encoder, GateLayer, Input, Layer, LutLayer, Matrix, Network, ThresholdEncoder};
use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------------------------
// Plain networks
// ---------------------------------------------------------------------------------------------------------------

/// The input encoder, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub enum RefEncoder {
    /// Inputs are bits; group 0 has this width.
    Bits(usize),
    /// `thresholds[f][t]`, every row of the same length.
    Thresholds { order: BitOrder, thresholds: Vec<Vec<f32>> },
}

impl RefEncoder {
    /// Width of group 0.
    pub fn width(&self) -> usize {
        match self {
            RefEncoder::Bits(n) => *n,
            RefEncoder::Thresholds { thresholds, .. } => thresholds.len() * thresholds[0].len(),
        }
    }

    /// Values per sample for a feature (or u8 bit) input.
    pub fn num_inputs(&self) -> usize {
        match self {
            RefEncoder::Bits(n) => *n,
            RefEncoder::Thresholds { thresholds, .. } => thresholds.len(),
        }
    }
}

/// One two-input gate: inputs `a`, `b` and op code.
#[derive(Clone, Debug, PartialEq)]
pub struct RefGate {
    pub a: usize,
    pub b: usize,
    pub op: u8,
}

/// One lookup table: its wires (input `j` is address bit `j`) and its `2^n` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct RefLut {
    pub wires: Vec<usize>,
    pub entries: Vec<bool>,
}

/// One binary neuron: a weight per input (`true` = +1) and a threshold on the number of matches.
#[derive(Clone, Debug, PartialEq)]
pub struct RefNeuron {
    pub weights: Vec<bool>,
    pub threshold: i32,
}

/// One layer, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub enum RefLayer {
    Gates(Vec<RefGate>),
    Luts { arity: usize, luts: Vec<RefLut> },
    Binary { inputs: usize, neurons: Vec<RefNeuron> },
}

impl RefLayer {
    pub fn width(&self) -> usize {
        match self {
            RefLayer::Gates(g) => g.len(),
            RefLayer::Luts { luts, .. } => luts.len(),
            RefLayer::Binary { neurons, .. } => neurons.len(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            RefLayer::Gates(_) => "gates",
            RefLayer::Luts { .. } => "luts",
            RefLayer::Binary { .. } => "binary",
        }
    }
}

/// A whole network, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub struct RefNet {
    pub encoder: RefEncoder,
    pub layers: Vec<RefLayer>,
    pub num_classes: usize,
    pub tau: f64,
    pub info: BTreeMap<String, String>,
    /// Build LUT and binary layers from words packed here (`new`) rather than from unpacked bytes
    /// (`from_unpacked`), so both constructors are exercised.
    pub pack_here: bool,
}

/// Packs rows of bits into `u64` words the way the constructors document it: bit `j` of a row is bit `j % 64` of
/// word `j / 64`, rows padded to whole words with zeros.
fn pack_words(rows: &[&[bool]]) -> Vec<u64> {
    let mut out = Vec::new();
    for row in rows {
        let words = row.len().div_ceil(64);
        let mut packed = vec![0u64; words];
        for (j, &bit) in row.iter().enumerate() {
            if bit {
                packed[j / 64] |= 1u64 << (j % 64);
            }
        }
        out.extend(packed);
    }
    out
}

/// Bit `j` of a row of words laid out as [`pack_words`] does.
fn word_bit(row: &[u64], j: usize) -> bool {
    (row[j / 64] >> (j % 64)) & 1 == 1
}

impl RefNet {
    /// Width of the group GroupSum reads.
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(self.encoder.width(), RefLayer::width)
    }

    /// Builds the engine's network through the public constructors.
    pub fn build(&self) -> Network {
        let encoder = match &self.encoder {
            RefEncoder::Bits(n) => Encoder::bits(*n).expect("valid bits encoder"),
            RefEncoder::Thresholds { order, thresholds } => {
                let flat: Vec<f32> = thresholds.iter().flatten().copied().collect();
                Encoder::Thresholds(
                    ThresholdEncoder::new(thresholds.len(), thresholds[0].len(), *order, flat)
                        .expect("valid threshold encoder"),
                )
            }
        };
        let layers = self
            .layers
            .iter()
            .map(|layer| match layer {
                RefLayer::Gates(gates) => Layer::Gates(
                    GateLayer::new(
                        gates.iter().map(|g| [g.a as u32, g.b as u32]).collect(),
                        gates.iter().map(|g| g.op).collect(),
                    )
                    .expect("valid gate layer"),
                ),
                RefLayer::Luts { arity, luts } => {
                    let wires: Vec<u32> = luts.iter().flat_map(|l| l.wires.iter().map(|&w| w as u32)).collect();
                    let lut = if self.pack_here {
                        let rows: Vec<&[bool]> = luts.iter().map(|l| l.entries.as_slice()).collect();
                        LutLayer::new(*arity, wires, pack_words(&rows))
                    } else {
                        let entries: Vec<u8> = luts.iter().flat_map(|l| l.entries.iter().map(|&e| e as u8)).collect();
                        LutLayer::from_unpacked(*arity, wires, &entries)
                    };
                    Layer::Luts(lut.expect("valid LUT layer"))
                }
                RefLayer::Binary { inputs, neurons } => {
                    let thresholds = neurons.iter().map(|n| n.threshold).collect();
                    let binary = if self.pack_here {
                        let rows: Vec<&[bool]> = neurons.iter().map(|n| n.weights.as_slice()).collect();
                        BinaryLayer::new(*inputs, pack_words(&rows), thresholds)
                    } else {
                        let weights: Vec<u8> =
                            neurons.iter().flat_map(|n| n.weights.iter().map(|&w| w as u8)).collect();
                        BinaryLayer::from_unpacked(*inputs, &weights, thresholds)
                    };
                    Layer::Binary(binary.expect("valid binary layer"))
                }
            })
            .collect();
        Network::new(encoder, layers, self.num_classes, self.tau).expect("valid network").with_info(self.info.clone())
    }

    /// Reads a network back through the public accessors (unpacking words here, not with the engine's helpers).
    pub fn from_network(net: &Network) -> RefNet {
        let encoder = match net.encoder() {
            Encoder::Bits { num_inputs } => RefEncoder::Bits(*num_inputs),
            Encoder::Thresholds(t) => RefEncoder::Thresholds {
                order: t.bit_order(),
                thresholds: t.thresholds().chunks(t.per_feature()).map(<[f32]>::to_vec).collect(),
            },
        };
        let layers = net
            .layers()
            .iter()
            .map(|layer| match layer {
                Layer::Gates(l) => RefLayer::Gates(
                    l.inputs()
                        .iter()
                        .zip(l.ops())
                        .map(|(&[a, b], &op)| RefGate { a: a as usize, b: b as usize, op })
                        .collect(),
                ),
                Layer::Luts(l) => {
                    let n = l.arity();
                    let entries = 1usize << n;
                    let words = entries.div_ceil(64);
                    let luts = l
                        .inputs()
                        .chunks(n)
                        .zip(l.tables().chunks(words))
                        .map(|(wires, table)| RefLut {
                            wires: wires.iter().map(|&w| w as usize).collect(),
                            entries: (0..entries).map(|a| word_bit(table, a)).collect(),
                        })
                        .collect();
                    RefLayer::Luts { arity: n, luts }
                }
                Layer::Binary(l) => {
                    let inputs = l.num_inputs();
                    let words = inputs.div_ceil(64);
                    let neurons = l
                        .weights()
                        .chunks(words)
                        .zip(l.thresholds())
                        .map(|(row, &threshold)| RefNeuron {
                            weights: (0..inputs).map(|j| word_bit(row, j)).collect(),
                            threshold,
                        })
                        .collect();
                    RefLayer::Binary { inputs, neurons }
                }
            })
            .collect();
        RefNet {
            encoder,
            layers,
            num_classes: net.num_classes(),
            tau: net.tau(),
            info: net.info().clone(),
            pack_here: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The reference evaluator
// ---------------------------------------------------------------------------------------------------------------

/// One input value of a sample, as the caller handed it over.
#[derive(Clone, Copy, Debug)]
pub enum Scalar {
    Bit(u8),
    U8(u8),
    F32(f32),
    F64(f64),
}

/// `x > threshold` under the comparison rule of FORMAT.md 3.2; `None` for NaN.
fn greater(x: Scalar, threshold: f32) -> Option<bool> {
    match x {
        Scalar::F32(v) => (!v.is_nan()).then_some(v > threshold),
        Scalar::F64(v) => (!v.is_nan()).then_some(v > f64::from(threshold)),
        Scalar::U8(v) | Scalar::Bit(v) => Some(f32::from(v) > threshold),
    }
}

impl RefNet {
    /// Group 0 of one sample, or why the sample is not a valid input.
    pub fn encode(&self, sample: &[Scalar]) -> Result<Vec<bool>, String> {
        let as_bit = |v: &Scalar| match *v {
            Scalar::Bit(b) | Scalar::U8(b) if b <= 1 => Ok(b == 1),
            other => Err(format!("{other:?} is not a bit")),
        };
        let bits_given = matches!(sample.first(), Some(Scalar::Bit(_)));
        match &self.encoder {
            _ if bits_given => sample.iter().map(as_bit).collect(),
            RefEncoder::Bits(_) => match sample.first() {
                Some(Scalar::F32(_) | Scalar::F64(_)) => Err("float features for a bits encoder".into()),
                _ => sample.iter().map(as_bit).collect(),
            },
            RefEncoder::Thresholds { order, thresholds } => {
                let features = thresholds.len();
                let per = thresholds[0].len();
                let mut bits = vec![false; features * per];
                for (f, row) in thresholds.iter().enumerate() {
                    for (t, &threshold) in row.iter().enumerate() {
                        let index = match order {
                            BitOrder::FeatureMajor => f * per + t,
                            BitOrder::ThresholdMajor => t * features + f,
                        };
                        bits[index] = greater(sample[f], threshold).ok_or_else(|| format!("feature {f} is NaN"))?;
                    }
                }
                Ok(bits)
            }
        }
    }

    /// The number of values a sample must have.
    pub fn expected_cols(&self, bits_given: bool) -> usize {
        if bits_given {
            self.encoder.width()
        } else {
            self.encoder.num_inputs()
        }
    }

    /// Runs every layer on group 0 and returns the last group.
    pub fn forward(&self, group0: Vec<bool>) -> Vec<bool> {
        let mut x = group0;
        for layer in &self.layers {
            x = match layer {
                RefLayer::Gates(gates) => gates
                    .iter()
                    .map(|g| {
                        let (a, b) = (x[g.a] as u8, x[g.b] as u8);
                        (g.op >> (3 - (2 * a + b))) & 1 == 1
                    })
                    .collect(),
                RefLayer::Luts { luts, .. } => luts
                    .iter()
                    .map(|l| {
                        let address: usize = l.wires.iter().enumerate().map(|(j, &w)| (x[w] as usize) << j).sum();
                        l.entries[address]
                    })
                    .collect(),
                RefLayer::Binary { inputs, neurons } => {
                    assert_eq!(x.len(), *inputs);
                    neurons
                        .iter()
                        .map(|n| {
                            let matches = x.iter().zip(&n.weights).filter(|(a, b)| a == b).count() as i64;
                            matches >= i64::from(n.threshold)
                        })
                        .collect()
                }
            };
        }
        x
    }

    /// GroupSum of the last group.
    pub fn group_sum(&self, last: &[bool]) -> Vec<i32> {
        let g = last.len() / self.num_classes;
        (0..self.num_classes).map(|c| last[c * g..(c + 1) * g].iter().filter(|&&b| b).count() as i32).collect()
    }

    /// Class scores of one sample.
    pub fn sample_scores(&self, sample: &[Scalar]) -> Result<Vec<i32>, String> {
        Ok(self.group_sum(&self.forward(self.encode(sample)?)))
    }

    /// Scores of a batch, sample-major, or why the batch is not a valid input.
    pub fn scores(&self, batch: &Batch) -> Result<Vec<i32>, String> {
        let expected = self.expected_cols(batch.is_bits());
        if batch.cols != expected {
            return Err(format!("{} columns, expected {expected}", batch.cols));
        }
        let mut out = Vec::with_capacity(batch.rows * self.num_classes);
        for r in 0..batch.rows {
            out.extend(self.sample_scores(&batch.row(r))?);
        }
        Ok(out)
    }
}

/// Index of the largest score, the lowest index on ties.
pub fn argmax(scores: &[i32]) -> usize {
    let best = *scores.iter().max().expect("at least one class");
    scores.iter().position(|&s| s == best).expect("the maximum is present")
}

/// Predictions from sample-major scores.
pub fn predictions(scores: &[i32], num_classes: usize) -> Vec<i64> {
    scores.chunks(num_classes).map(|row| argmax(row) as i64).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Input batches
// ---------------------------------------------------------------------------------------------------------------

/// Values of a batch, C-ordered.
#[derive(Clone, Debug)]
pub enum Values {
    Bits(Vec<u8>),
    U8(Vec<u8>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// An owned batch of `rows` samples of `cols` values.
#[derive(Clone, Debug)]
pub struct Batch {
    pub rows: usize,
    pub cols: usize,
    pub values: Values,
}

/// A memory layout for a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major, contiguous.
    C,
    /// Column-major: row stride 1, column stride `rows`.
    F,
    /// Row-major with gaps: column stride 2, row stride `2 * cols + 3`.
    Padded,
}

/// A batch's values re-laid out, with the strides to view them.
pub struct Laid<T> {
    data: Vec<T>,
    row_stride: usize,
    col_stride: usize,
}

fn lay_out<T: Copy>(values: &[T], rows: usize, cols: usize, layout: Layout, fill: T) -> Laid<T> {
    match layout {
        Layout::C => Laid { data: values.to_vec(), row_stride: cols, col_stride: 1 },
        Layout::F => {
            let mut data = vec![fill; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    data[c * rows + r] = values[r * cols + c];
                }
            }
            Laid { data, row_stride: 1, col_stride: rows }
        }
        Layout::Padded => {
            let row_stride = 2 * cols + 3;
            let mut data = vec![fill; rows * row_stride];
            for r in 0..rows {
                for c in 0..cols {
                    data[r * row_stride + 2 * c] = values[r * cols + c];
                }
            }
            Laid { data, row_stride, col_stride: 2 }
        }
    }
}

/// Owned storage of a batch in some layout; [`LaidBatch::input`] borrows it as an engine input.
pub enum LaidBatch {
    Bits(Laid<u8>, usize, usize),
    U8(Laid<u8>, usize, usize),
    F32(Laid<f32>, usize, usize),
    F64(Laid<f64>, usize, usize),
}

fn view<T: Copy>(laid: &Laid<T>, rows: usize, cols: usize) -> Matrix<'_, T> {
    Matrix::new(&laid.data, rows, cols, laid.row_stride, laid.col_stride).expect("the view fits its data")
}

impl LaidBatch {
    pub fn input(&self) -> Input<'_> {
        match self {
            LaidBatch::Bits(l, r, c) => Input::Bits(view(l, *r, *c)),
            LaidBatch::U8(l, r, c) => Input::U8(view(l, *r, *c)),
            LaidBatch::F32(l, r, c) => Input::F32(view(l, *r, *c)),
            LaidBatch::F64(l, r, c) => Input::F64(view(l, *r, *c)),
        }
    }
}

impl Batch {
    pub fn is_bits(&self) -> bool {
        matches!(self.values, Values::Bits(_))
    }

    /// Sample `r`.
    pub fn row(&self, r: usize) -> Vec<Scalar> {
        let range = r * self.cols..(r + 1) * self.cols;
        match &self.values {
            Values::Bits(v) => v[range].iter().map(|&x| Scalar::Bit(x)).collect(),
            Values::U8(v) => v[range].iter().map(|&x| Scalar::U8(x)).collect(),
            Values::F32(v) => v[range].iter().map(|&x| Scalar::F32(x)).collect(),
            Values::F64(v) => v[range].iter().map(|&x| Scalar::F64(x)).collect(),
        }
    }

    /// A C-ordered view of the first `rows` samples.
    pub fn prefix(&self, rows: usize) -> Input<'_> {
        let n = rows * self.cols;
        match &self.values {
            Values::Bits(v) => Input::Bits(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
            Values::U8(v) => Input::U8(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
            Values::F32(v) => Input::F32(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
            Values::F64(v) => Input::F64(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
        }
    }

    /// The whole batch, C-ordered.
    pub fn input(&self) -> Input<'_> {
        self.prefix(self.rows)
    }

    /// The batch copied into `layout`.
    pub fn laid_out(&self, layout: Layout) -> LaidBatch {
        let (r, c) = (self.rows, self.cols);
        match &self.values {
            Values::Bits(v) => LaidBatch::Bits(lay_out(v, r, c, layout, 7), r, c),
            Values::U8(v) => LaidBatch::U8(lay_out(v, r, c, layout, 7), r, c),
            Values::F32(v) => LaidBatch::F32(lay_out(v, r, c, layout, f32::NAN), r, c),
            Values::F64(v) => LaidBatch::F64(lay_out(v, r, c, layout, f64::NAN), r, c),
        }
    }
}

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

// ---------------------------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------------------------

/// A threshold: mostly from a small set (so duplicates are common, and values that u8 inputs hit), sometimes an
/// infinity, signed zero or a random value.
pub fn threshold_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => prop::sample::select(vec![0.0f32, 0.5, 1.0, 1.5, -1.0, 2.0, 127.0, 127.5, 254.5, 255.0]),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(-0.0f32),
        3 => -4.0f32..4.0,
    ]
}

/// An encoder: bits, or thresholds in either bit order. Widths past 64 reach the encoder's last, partial window of
/// 64 columns (read overlapping the chunk before), and for bits also the padded short rows below 64.
pub fn encoder_strategy() -> impl Strategy<Value = RefEncoder> {
    let features = prop_oneof![4 => 1usize..=10, 1 => 63usize..=140];
    prop_oneof![
        (1usize..=80).prop_map(RefEncoder::Bits),
        (features, 1usize..=5, any::<bool>()).prop_flat_map(|(features, per, major)| {
            let order = if major { BitOrder::FeatureMajor } else { BitOrder::ThresholdMajor };
            prop::collection::vec(prop::collection::vec(threshold_value(), per), features)
                .prop_map(move |thresholds| RefEncoder::Thresholds { order, thresholds })
        }),
    ]
}

/// The kind of a layer to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gates,
    Luts(usize),
    Binary,
}

pub fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Gates), (1usize..=8).prop_map(Kind::Luts), Just(Kind::Binary)]
}

/// A binary threshold around the interesting range `-2 ..= inputs + 2`, biased towards the middle.
fn binary_threshold(inputs: usize) -> BoxedStrategy<i32> {
    let n = inputs as i32;
    prop_oneof![
        3 => (n / 2 - 3)..=(n / 2 + 3),
        1 => -2..=(n + 2),
        1 => prop::sample::select(vec![i32::MIN, 0, n, n + 1, i32::MAX]),
    ]
    .boxed()
}

/// A layer of `kind` with `width` outputs reading `inputs` bits.
pub fn layer_strategy(kind: Kind, inputs: usize, width: usize) -> BoxedStrategy<RefLayer> {
    match kind {
        Kind::Gates => {
            prop::collection::vec((0..inputs, 0..inputs, 0u8..16).prop_map(|(a, b, op)| RefGate { a, b, op }), width)
                .prop_map(RefLayer::Gates)
                .boxed()
        }
        Kind::Luts(arity) => prop::collection::vec(
            (prop::collection::vec(0..inputs, arity), prop::collection::vec(any::<bool>(), 1 << arity))
                .prop_map(|(wires, entries)| RefLut { wires, entries }),
            width,
        )
        .prop_map(move |luts| RefLayer::Luts { arity, luts })
        .boxed(),
        Kind::Binary => prop::collection::vec(
            (prop::collection::vec(any::<bool>(), inputs), binary_threshold(inputs))
                .prop_map(|(weights, threshold)| RefNeuron { weights, threshold }),
            width,
        )
        .prop_map(move |neurons| RefLayer::Binary { inputs, neurons })
        .boxed(),
    }
}

/// A network with up to `max_layers` hidden layers whose kinds come from `kinds`; the last layer's width is a
/// multiple of the class count. With no layers, the class count divides the encoder width.
pub fn network_strategy(kinds: BoxedStrategy<Kind>, max_layers: usize) -> impl Strategy<Value = RefNet> {
    let specs = prop::collection::vec((kinds, 1usize..=48), 0..=max_layers);
    let groups = prop_oneof![4 => 1usize..=6, 1 => 7usize..=40];
    (encoder_strategy(), specs, 1usize..=6, groups, any::<bool>(), 0.25f64..20.0, any::<bool>()).prop_flat_map(
        |(encoder, mut specs, classes, group, pack_here, tau, with_info)| {
            let classes_strategy = match specs.last_mut() {
                Some(last) => {
                    last.1 = classes * group;
                    Just(classes).boxed()
                }
                None => {
                    let w = encoder.width();
                    prop::sample::select((1..=w).filter(|k| w % k == 0).collect::<Vec<_>>()).boxed()
                }
            };
            let mut inputs = encoder.width();
            let layers: Vec<BoxedStrategy<RefLayer>> = specs
                .iter()
                .map(|&(kind, width)| {
                    let s = layer_strategy(kind, inputs, width);
                    inputs = width;
                    s
                })
                .collect();
            let info = if with_info {
                BTreeMap::from([("producer".to_string(), "tests".to_string()), ("ü".to_string(), "\"x\"".to_string())])
            } else {
                BTreeMap::new()
            };
            (Just(encoder), layers, classes_strategy).prop_map(move |(encoder, layers, num_classes)| RefNet {
                encoder,
                layers,
                num_classes,
                tau,
                info: info.clone(),
                pack_here,
            })
        },
    )
}

/// Networks of every layer kind, mixed.
pub fn any_network() -> impl Strategy<Value = RefNet> {
    network_strategy(kind_strategy().boxed(), 4)
}

// ---------------------------------------------------------------------------------------------------------------
// An independent writer
// ---------------------------------------------------------------------------------------------------------------

/// One tensor of a container: name, dtype name, shape, little-endian data.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn new(name: impl Into<String>, dtype: &'static str, shape: Vec<usize>, data: Vec<u8>) -> Self {
        RawTensor { name: name.into(), dtype, shape, data }
    }
}

/// Packs a row of bits into bytes: bit `j` is bit `j % 8` of byte `j / 8`, padding zero.
pub fn pack_bytes(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (j, &b) in bits.iter().enumerate() {
        if b {
            out[j / 8] |= 1 << (j % 8);
        }
    }
    out
}

fn le_u32(values: impl IntoIterator<Item = usize>) -> Vec<u8> {
    values.into_iter().flat_map(|v| (v as u32).to_le_bytes()).collect()
}

impl RefNet {
    /// The description and tensors of the network file, written from FORMAT.md sections 3 and 5.
    pub fn file_parts(&self) -> (Value, Vec<RawTensor>) {
        let mut tensors = Vec::new();
        let encoder = match &self.encoder {
            RefEncoder::Bits(n) => json!({"kind": "bits", "num_inputs": n}),
            RefEncoder::Thresholds { order, thresholds } => {
                let (f, t) = (thresholds.len(), thresholds[0].len());
                let data = thresholds.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
                tensors.push(RawTensor::new("encoder.thresholds", "F32", vec![f, t], data));
                let order = match order {
                    BitOrder::FeatureMajor => "feature_major",
                    BitOrder::ThresholdMajor => "threshold_major",
                };
                json!({"kind": "thresholds", "num_features": f, "thresholds_per_feature": t, "bit_order": order})
            }
        };
        let mut layers = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let w = layer.width();
            match layer {
                RefLayer::Gates(gates) => {
                    let wires = le_u32(gates.iter().flat_map(|g| [g.a, g.b]));
                    tensors.push(RawTensor::new(format!("layers.{i}.inputs"), "U32", vec![w, 2], wires));
                    let ops = gates.iter().map(|g| g.op).collect();
                    tensors.push(RawTensor::new(format!("layers.{i}.ops"), "U8", vec![w], ops));
                    layers.push(json!({"kind": "gates", "width": w, "sources": [i]}));
                }
                RefLayer::Luts { arity, luts } => {
                    let wires = le_u32(luts.iter().flat_map(|l| l.wires.iter().copied()));
                    tensors.push(RawTensor::new(format!("layers.{i}.inputs"), "U32", vec![w, *arity], wires));
                    let row = (1usize << arity).div_ceil(8);
                    let tables = luts.iter().flat_map(|l| pack_bytes(&l.entries)).collect();
                    tensors.push(RawTensor::new(format!("layers.{i}.tables"), "U8", vec![w, row], tables));
                    layers.push(json!({"kind": "luts", "width": w, "arity": arity, "sources": [i]}));
                }
                RefLayer::Binary { inputs, neurons } => {
                    let weights = neurons.iter().flat_map(|n| pack_bytes(&n.weights)).collect();
                    let row = inputs.div_ceil(8);
                    tensors.push(RawTensor::new(format!("layers.{i}.weights"), "U8", vec![w, row], weights));
                    let thresholds = neurons.iter().flat_map(|n| n.threshold.to_le_bytes()).collect();
                    tensors.push(RawTensor::new(format!("layers.{i}.thresholds"), "I32", vec![w], thresholds));
                    layers.push(json!({"kind": "binary", "width": w, "sources": [i]}));
                }
            }
        }
        let mut description = json!({
            "encoder": encoder,
            "layers": layers,
            "head": {"kind": "group_sum", "num_classes": self.num_classes, "tau": self.tau},
        });
        if !self.info.is_empty() {
            description["info"] = json!(self.info);
        }
        (description, tensors)
    }

    /// The network file, from the independent writer.
    pub fn file_bytes(&self) -> Vec<u8> {
        let (description, tensors) = self.file_parts();
        write_container(&standard_metadata(&description), &tensors)
    }
}

/// The `__metadata__` object of a version 1.0 file holding `description`.
pub fn standard_metadata(description: &Value) -> Value {
    json!({"format": "bitlogic", "format_version": "1.0", "network": description.to_string()})
}

/// A safetensors container with `metadata` (any JSON value, or `Value::Null` to leave `__metadata__` out) and the
/// tensors laid out in the given order.
pub fn write_container(metadata: &Value, tensors: &[RawTensor]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_null() {
        header.insert("__metadata__".into(), metadata.clone());
    }
    let mut offset = 0;
    for t in tensors {
        let end = offset + t.data.len();
        header.insert(t.name.clone(), json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let data: Vec<u8> = tensors.iter().flat_map(|t| t.data.iter().copied()).collect();
    assemble(Value::Object(header).to_string().as_bytes(), &data)
}

/// Length prefix, header and data buffer.
pub fn assemble(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend((header.len() as u64).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// Splits a container into its header text and data buffer (for well-formed input).
pub fn split_container(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).expect("the header is JSON");
    (header, bytes[8 + n..].to_vec())
}
