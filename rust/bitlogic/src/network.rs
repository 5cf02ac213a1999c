//! The in-memory network: encoder, layers and GroupSum head, validated on construction.
//!
//! A [`Network`] can only be built through [`Network::new`], which checks every wire, op code, table and width, so
//! the evaluator can index without re-checking. Tables and binary weights are held bit-packed in `u64` words (bit `j`
//! of a row is bit `j % 64` of word `j / 64`), the layout the kernels read.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::ops::NUM_OPS;
use crate::optimize::{self, PassReport};
use crate::program::{Program, ProgramStats};

/// Largest LUT arity supported (tables of 256 entries).
pub const MAX_ARITY: usize = 8;

/// Order of the encoder's output bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOrder {
    /// Bit `(f, t)` has index `f * T + t`: all thresholds of a feature are adjacent.
    FeatureMajor,
    /// Bit `(f, t)` has index `t * F + f`: the first threshold of every feature comes first.
    ThresholdMajor,
}

impl BitOrder {
    /// The name used in the file format.
    pub fn name(self) -> &'static str {
        match self {
            BitOrder::FeatureMajor => "feature_major",
            BitOrder::ThresholdMajor => "threshold_major",
        }
    }
}

/// Per-feature thresholds: bit `(f, t)` is `x[f] > thresholds[f][t]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdEncoder {
    num_features: usize,
    per_feature: usize,
    bit_order: BitOrder,
    thresholds: Vec<f32>,
}

impl ThresholdEncoder {
    /// `thresholds` is row-major `[num_features, per_feature]`; no value may be NaN.
    pub fn new(num_features: usize, per_feature: usize, bit_order: BitOrder, thresholds: Vec<f32>) -> Result<Self> {
        if num_features == 0 || per_feature == 0 {
            return Err(Error::Network(format!(
                "encoder: expected at least one feature and one threshold per feature, got {num_features} x {per_feature}"
            )));
        }
        let expected = checked_product(num_features, per_feature, "encoder thresholds")?;
        if thresholds.len() != expected {
            return Err(Error::Network(format!(
                "encoder thresholds: expected {num_features} x {per_feature} = {expected} values, got {}",
                thresholds.len()
            )));
        }
        if let Some(i) = thresholds.iter().position(|t| t.is_nan()) {
            return Err(Error::Network(format!(
                "encoder thresholds: value [{}, {}] is NaN",
                i / per_feature,
                i % per_feature
            )));
        }
        check_width(expected, "encoder output")?;
        Ok(Self { num_features, per_feature, bit_order, thresholds })
    }

    /// Number of input features `F`.
    pub fn num_features(&self) -> usize {
        self.num_features
    }
    /// Thresholds per feature `T`.
    pub fn per_feature(&self) -> usize {
        self.per_feature
    }
    /// Order of the output bits.
    pub fn bit_order(&self) -> BitOrder {
        self.bit_order
    }
    /// Row-major `[F, T]` thresholds.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }
    /// Index of bit `(f, t)` in the encoder's output.
    #[inline]
    pub fn bit_index(&self, feature: usize, threshold: usize) -> usize {
        match self.bit_order {
            BitOrder::FeatureMajor => feature * self.per_feature + threshold,
            BitOrder::ThresholdMajor => threshold * self.num_features + feature,
        }
    }
}

/// How raw inputs become the network's first bits.
#[derive(Clone, Debug, PartialEq)]
pub enum Encoder {
    /// The inputs are already bits.
    Bits {
        /// Number of input bits.
        num_inputs: usize,
    },
    /// Features compared against thresholds.
    Thresholds(ThresholdEncoder),
}

impl Encoder {
    /// Input bits for `num_inputs` already-binarized inputs.
    pub fn bits(num_inputs: usize) -> Result<Self> {
        if num_inputs == 0 {
            return Err(Error::Network("encoder: expected at least one input bit".into()));
        }
        check_width(num_inputs, "encoder output")?;
        Ok(Encoder::Bits { num_inputs })
    }

    /// Number of values per sample a feature array must have (features, or bits for [`Encoder::Bits`]).
    pub fn num_inputs(&self) -> usize {
        match self {
            Encoder::Bits { num_inputs } => *num_inputs,
            Encoder::Thresholds(t) => t.num_features,
        }
    }

    /// Width of the encoder's output, the network's first bits.
    pub fn num_bits(&self) -> usize {
        match self {
            Encoder::Bits { num_inputs } => *num_inputs,
            Encoder::Thresholds(t) => t.thresholds.len(),
        }
    }
}

/// A layer of two-input gates.
#[derive(Clone, Debug, PartialEq)]
pub struct GateLayer {
    inputs: Vec<[u32; 2]>,
    ops: Vec<u8>,
}

impl GateLayer {
    /// `inputs[g]` are the A and B wires of gate `g`; `ops[g]` its op code (0..=15).
    pub fn new(inputs: Vec<[u32; 2]>, ops: Vec<u8>) -> Result<Self> {
        if inputs.len() != ops.len() {
            return Err(Error::Network(format!("gate layer: {} input pairs but {} op codes", inputs.len(), ops.len())));
        }
        if let Some(g) = ops.iter().position(|&op| op >= NUM_OPS) {
            return Err(Error::Network(format!("gate layer: gate {g} has op code {}, expected 0..=15", ops[g])));
        }
        Ok(Self { inputs, ops })
    }
    /// Number of gates.
    pub fn width(&self) -> usize {
        self.ops.len()
    }
    /// The A and B wires of every gate.
    pub fn inputs(&self) -> &[[u32; 2]] {
        &self.inputs
    }
    /// The op code of every gate.
    pub fn ops(&self) -> &[u8] {
        &self.ops
    }
}

/// A layer of n-input lookup tables.
#[derive(Clone, Debug, PartialEq)]
pub struct LutLayer {
    arity: usize,
    inputs: Vec<u32>,
    tables: Vec<u64>,
}

impl LutLayer {
    /// `inputs` is row-major `[L, arity]`; `tables` row-major `[L, words]` with `words = ceil(2^arity / 64)`, entry
    /// `a` of a table being bit `a % 64` of word `a / 64` (unused high bits 0).
    pub fn new(arity: usize, inputs: Vec<u32>, tables: Vec<u64>) -> Result<Self> {
        if !(1..=MAX_ARITY).contains(&arity) {
            return Err(Error::Network(format!("LUT layer: arity {arity}, expected 1..={MAX_ARITY}")));
        }
        if !inputs.len().is_multiple_of(arity) {
            return Err(Error::Network(format!(
                "LUT layer: {} input wires is not a multiple of the arity {arity}",
                inputs.len()
            )));
        }
        let width = inputs.len() / arity;
        let words = Self::words_per_table(arity);
        if tables.len() != width * words {
            return Err(Error::Network(format!(
                "LUT layer: {width} tables of {} entries need {} words, got {}",
                1usize << arity,
                width * words,
                tables.len()
            )));
        }
        let entries = 1usize << arity;
        if entries < 64 {
            let unused = !0u64 << entries;
            if let Some(l) = tables.iter().position(|&t| t & unused != 0) {
                return Err(Error::Network(format!("LUT layer: table {l} has bits set beyond its {entries} entries")));
            }
        }
        Ok(Self { arity, inputs, tables })
    }
    /// Builds a layer from unpacked tables: `entries` is row-major `[L, 2^arity]`, each value 0 or 1.
    pub fn from_unpacked(arity: usize, inputs: Vec<u32>, entries: &[u8]) -> Result<Self> {
        if !(1..=MAX_ARITY).contains(&arity) {
            return Err(Error::Network(format!("LUT layer: arity {arity}, expected 1..={MAX_ARITY}")));
        }
        let tables = pack_bits(entries, 1 << arity, "LUT layer tables")?;
        Self::new(arity, inputs, tables)
    }
    /// The tables unpacked, row-major `[L, 2^arity]` of 0/1 values.
    pub fn unpacked_tables(&self) -> Vec<u8> {
        unpack_bits(&self.tables, 1 << self.arity)
    }
    /// `u64` words per table.
    pub fn words_per_table(arity: usize) -> usize {
        (1usize << arity).div_ceil(64)
    }
    /// Inputs per table.
    pub fn arity(&self) -> usize {
        self.arity
    }
    /// Number of tables.
    pub fn width(&self) -> usize {
        self.inputs.len() / self.arity
    }
    /// Row-major `[L, arity]` input wires.
    pub fn inputs(&self) -> &[u32] {
        &self.inputs
    }
    /// Row-major packed truth tables.
    pub fn tables(&self) -> &[u64] {
        &self.tables
    }
    /// Entry `address` of table `l`.
    #[inline]
    pub fn entry(&self, l: usize, address: usize) -> bool {
        let words = Self::words_per_table(self.arity);
        (self.tables[l * words + address / 64] >> (address % 64)) & 1 == 1
    }
}

/// An XNOR-popcount dense layer: output `o` is 1 when at least `thresholds[o]` inputs equal their weight bit.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryLayer {
    num_inputs: usize,
    weights: Vec<u64>,
    thresholds: Vec<i32>,
}

impl BinaryLayer {
    /// `weights` is row-major `[O, ceil(num_inputs / 64)]`, bit `j` of a row being weight `j` (1 = +1), padding 0.
    pub fn new(num_inputs: usize, weights: Vec<u64>, thresholds: Vec<i32>) -> Result<Self> {
        if num_inputs == 0 {
            return Err(Error::Network("binary layer: expected at least one input".into()));
        }
        let words = num_inputs.div_ceil(64);
        let expected = checked_product(thresholds.len(), words, "binary layer weights")?;
        if weights.len() != expected {
            return Err(Error::Network(format!(
                "binary layer: {} outputs of {num_inputs} inputs need {expected} weight words, got {}",
                thresholds.len(),
                weights.len()
            )));
        }
        if !num_inputs.is_multiple_of(64) {
            let unused = !0u64 << (num_inputs % 64);
            if let Some(o) = weights.chunks_exact(words).position(|row| row[words - 1] & unused != 0) {
                return Err(Error::Network(format!(
                    "binary layer: weight row {o} has bits set beyond its {num_inputs} inputs"
                )));
            }
        }
        Ok(Self { num_inputs, weights, thresholds })
    }
    /// Builds a layer from unpacked weights: `weights` is row-major `[O, num_inputs]`, 1 for +1 and 0 for -1.
    pub fn from_unpacked(num_inputs: usize, weights: &[u8], thresholds: Vec<i32>) -> Result<Self> {
        if num_inputs == 0 {
            return Err(Error::Network("binary layer: expected at least one input".into()));
        }
        let expected = checked_product(thresholds.len(), num_inputs, "binary layer weights")?;
        if weights.len() != expected {
            return Err(Error::Network(format!(
                "binary layer: {} outputs of {num_inputs} inputs need {expected} weights, got {}",
                thresholds.len(),
                weights.len()
            )));
        }
        Self::new(num_inputs, pack_bits(weights, num_inputs, "binary layer weights")?, thresholds)
    }
    /// The weights unpacked, row-major `[O, I]` of 0/1 values.
    pub fn unpacked_weights(&self) -> Vec<u8> {
        unpack_bits(&self.weights, self.num_inputs)
    }
    /// Number of inputs `I`.
    pub fn num_inputs(&self) -> usize {
        self.num_inputs
    }
    /// Number of outputs.
    pub fn width(&self) -> usize {
        self.thresholds.len()
    }
    /// `u64` words per weight row.
    pub fn words_per_row(&self) -> usize {
        self.num_inputs.div_ceil(64)
    }
    /// Row-major packed weights.
    pub fn weights(&self) -> &[u64] {
        &self.weights
    }
    /// Per-output thresholds on the number of matching bits.
    pub fn thresholds(&self) -> &[i32] {
        &self.thresholds
    }
    /// Weight `(o, j)`: true for +1.
    #[inline]
    pub fn weight(&self, o: usize, j: usize) -> bool {
        (self.weights[o * self.words_per_row() + j / 64] >> (j % 64)) & 1 == 1
    }
}

/// One layer; each reads the bits of the layer before it (or of the encoder).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// Two-input gates.
    Gates(GateLayer),
    /// n-input lookup tables.
    Luts(LutLayer),
    /// XNOR-popcount dense layer.
    Binary(BinaryLayer),
}

impl Layer {
    /// Number of output bits.
    pub fn width(&self) -> usize {
        match self {
            Layer::Gates(l) => l.width(),
            Layer::Luts(l) => l.width(),
            Layer::Binary(l) => l.width(),
        }
    }

    /// The name of the layer kind in the file format.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Gates(_) => "gates",
            Layer::Luts(_) => "luts",
            Layer::Binary(_) => "binary",
        }
    }

    fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        let bad_wire = |unit: &str, u: usize, wire: u32| {
            Error::Network(format!(
                "layer {index} ({}): {unit} {u} reads wire {wire}, but the layer's input has only {input_width} bits",
                self.kind()
            ))
        };
        match self {
            Layer::Gates(l) => {
                for (g, pair) in l.inputs.iter().enumerate() {
                    if let Some(&w) = pair.iter().find(|&&w| w as usize >= input_width) {
                        return Err(bad_wire("gate", g, w));
                    }
                }
            }
            Layer::Luts(l) => {
                if let Some(i) = l.inputs.iter().position(|&w| w as usize >= input_width) {
                    return Err(bad_wire("table", i / l.arity, l.inputs[i]));
                }
            }
            Layer::Binary(l) => {
                if l.num_inputs != input_width {
                    return Err(Error::Network(format!(
                        "layer {index} (binary): weights for {} inputs, but the layer's input has {input_width} bits",
                        l.num_inputs
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A complete, validated network.
///
/// The evaluator runs a compiled form of the network, built on first use (or by [`Network::prepare`]) and kept:
/// the optimized program, and for comparison the program with optimization off.
#[derive(Clone, Debug)]
pub struct Network {
    encoder: Encoder,
    layers: Vec<Layer>,
    num_classes: usize,
    tau: f64,
    info: BTreeMap<String, String>,
    optimized: OnceLock<Arc<(Program, PassReport)>>,
    plain: OnceLock<Arc<Program>>,
}

impl PartialEq for Network {
    /// Networks are equal when they hold the same encoder, layers and head (compiled forms are derived from those).
    fn eq(&self, other: &Self) -> bool {
        self.encoder == other.encoder
            && self.layers == other.layers
            && self.num_classes == other.num_classes
            && self.tau == other.tau
            && self.info == other.info
    }
}

/// What optimization did to a network: see [`Network::optimization`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Optimization {
    /// What each pass removed or changed.
    pub passes: PassReport,
    /// The program with optimization off: every gate one operation, every table split into three-input ones.
    pub before: ProgramStats,
    /// The optimized program.
    pub after: ProgramStats,
}

/// Sizes of a network, as reported by [`Network::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Values per input sample (features, or bits).
    pub num_inputs: usize,
    /// Width of the encoder's output.
    pub num_input_bits: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Two-input gates.
    pub gates: usize,
    /// Lookup tables, by arity.
    pub luts: BTreeMap<usize, usize>,
    /// Binary weights (inputs times outputs over all binary layers).
    pub binary_weights: usize,
    /// Number of layers.
    pub depth: usize,
    /// Bytes of network data as stored in a file: wires, op codes, tables, weights and thresholds.
    pub bytes: usize,
}

impl Network {
    /// Builds a network, checking that every layer's wires fit the layer before it, that the last width divides into
    /// `num_classes` groups, and that `tau` is finite and positive.
    pub fn new(encoder: Encoder, layers: Vec<Layer>, num_classes: usize, tau: f64) -> Result<Self> {
        let mut width = encoder.num_bits();
        for (i, layer) in layers.iter().enumerate() {
            layer.check_inputs(i, width)?;
            width = layer.width();
            if width == 0 {
                return Err(Error::Network(format!("layer {i} ({}): expected at least one output", layer.kind())));
            }
            check_width(width, &format!("layer {i}"))?;
        }
        if num_classes == 0 {
            return Err(Error::Network("head: expected at least one class".into()));
        }
        if !width.is_multiple_of(num_classes) {
            return Err(Error::Network(format!(
                "head: the last width {width} does not divide into {num_classes} equal class groups"
            )));
        }
        if !(tau.is_finite() && tau > 0.0) {
            return Err(Error::Network(format!("head: tau must be finite and > 0, got {tau}")));
        }
        Ok(Self {
            encoder,
            layers,
            num_classes,
            tau,
            info: BTreeMap::new(),
            optimized: OnceLock::new(),
            plain: OnceLock::new(),
        })
    }

    /// Attaches free-form annotations (stored under `info` in the file, never interpreted).
    pub fn with_info(mut self, info: BTreeMap<String, String>) -> Self {
        self.info = info;
        self
    }

    /// The input encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
    /// The layers, first to last.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// Number of classes `k`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// The GroupSum temperature: scores divided by `tau` are the trained model's logits.
    pub fn tau(&self) -> f64 {
        self.tau
    }
    /// Free-form annotations.
    pub fn info(&self) -> &BTreeMap<String, String> {
        &self.info
    }
    /// Values per input sample.
    pub fn num_inputs(&self) -> usize {
        self.encoder.num_inputs()
    }
    /// Width of the encoder's output.
    pub fn num_input_bits(&self) -> usize {
        self.encoder.num_bits()
    }
    /// Width of the last bit group, the one GroupSum reads.
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(self.encoder.num_bits(), Layer::width)
    }
    /// Largest bit group (encoder output or layer), which sizes the evaluator's buffers.
    pub fn max_width(&self) -> usize {
        self.layers.iter().map(Layer::width).fold(self.encoder.num_bits(), usize::max)
    }

    /// Builds the optimized program now rather than at the first evaluation, so that the time the passes take is
    /// spent (and can be measured) here. Fails only for a network beyond [`MAX_NODES`].
    pub fn prepare(&self) -> Result<()> {
        self.program(true).map(|_| ())
    }

    /// The program evaluation runs: optimized, or every gate and table as written.
    pub(crate) fn program(&self, optimize: bool) -> Result<&Program> {
        self.check_compilable()?;
        Ok(if optimize {
            &self
                .optimized
                .get_or_init(|| {
                    let (graph, report) = optimize::optimize(self);
                    Arc::new((Program::new(&graph), report))
                })
                .0
        } else {
            self.plain.get_or_init(|| Arc::new(Program::new(&optimize::unoptimized(self))))
        })
    }

    /// What the optimizing passes removed, and the size of the program before and after.
    pub fn optimization(&self) -> Result<Optimization> {
        let after = self.program(true)?.stats.clone();
        let passes = self.optimized.get().expect("built above").1.clone();
        Ok(Optimization { passes, before: self.program(false)?.stats.clone(), after })
    }

    /// The compiler's nodes are addressed by 31-bit indices (a signal is `node << 1 | inverted`); a network whose
    /// unoptimized form would need more is refused before anything is allocated. The count is an upper bound: every
    /// encoder bit, gate, binary row, and every table with the multiplexer tree it is split into.
    fn check_compilable(&self) -> Result<()> {
        let mut nodes = 1 + self.num_input_bits();
        for layer in &self.layers {
            nodes = nodes.saturating_add(match layer {
                Layer::Luts(l) if l.arity > 3 => l.width().saturating_mul((1 << (l.arity - 2)) - 1),
                other => other.width(),
            });
        }
        if nodes > MAX_NODES {
            return Err(Error::Network(format!(
                "too large to evaluate: its compiled form would have up to {nodes} nodes (encoder bits, gates, \
                 binary rows and table parts); the engine supports {MAX_NODES}"
            )));
        }
        Ok(())
    }

    /// Counts of gates, tables and weights, depth and data size.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            num_inputs: self.num_inputs(),
            num_input_bits: self.num_input_bits(),
            num_classes: self.num_classes,
            gates: 0,
            luts: BTreeMap::new(),
            binary_weights: 0,
            depth: self.layers.len(),
            bytes: 0,
        };
        if let Encoder::Thresholds(t) = &self.encoder {
            stats.bytes += 4 * t.thresholds.len();
        }
        for layer in &self.layers {
            match layer {
                Layer::Gates(l) => {
                    stats.gates += l.width();
                    stats.bytes += 9 * l.width();
                }
                Layer::Luts(l) => {
                    *stats.luts.entry(l.arity).or_default() += l.width();
                    stats.bytes += l.width() * (4 * l.arity + (1usize << l.arity).div_ceil(8));
                }
                Layer::Binary(l) => {
                    stats.binary_weights += l.width() * l.num_inputs;
                    stats.bytes += l.width() * (l.num_inputs.div_ceil(8) + 4);
                }
            }
        }
        stats
    }
}

/// Packs rows of `row_len` 0/1 bytes into rows of `ceil(row_len / 64)` words.
fn pack_bits(bits: &[u8], row_len: usize, what: &str) -> Result<Vec<u64>> {
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
fn unpack_bits(words: &[u64], row_len: usize) -> Vec<u8> {
    let per_row = row_len.div_ceil(64);
    words
        .chunks_exact(per_row)
        .flat_map(|row| (0..row_len).map(move |j| ((row[j / 64] >> (j % 64)) & 1) as u8))
        .collect()
}

fn checked_product(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::Network(format!("{what}: {a} x {b} overflows")))
}

/// Largest number of nodes (encoder bits, gates, binary rows, table parts) the engine compiles; see
/// [`Network::prepare`].
pub const MAX_NODES: usize = 1 << 30;

/// Largest width of a bit group: wires are `u32` and class scores `i32`, so widths stay below 2^31.
pub const MAX_WIDTH: usize = i32::MAX as usize;

fn check_width(width: usize, what: &str) -> Result<()> {
    if width > MAX_WIDTH {
        return Err(Error::Network(format!("{what}: width {width} exceeds the maximum {MAX_WIDTH}")));
    }
    Ok(())
}
