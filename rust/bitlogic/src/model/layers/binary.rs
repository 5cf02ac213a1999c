//! Binary (XNOR-popcount) dense layers: data, validation, file tensors, lowering to the IR and statistics.
//!
//! Tensors: `layers.{i}.weights` (u8 `[width, ceil(I / 8)]`, weight `j` of a row being bit `j % 8` of byte `j / 8`,
//! 1 for +1) and `layers.{i}.thresholds` (i32 `[width]`). A binary layer reads its whole input, so `I` is the
//! width of the layer before it.

use safetensors::tensor::Dtype;

use crate::bits::{pack_bits, unpack_bits};
use crate::error::{Error, Result};
use crate::ir::{Graph, Signal};
use crate::limits::checked_product;
use crate::model::stats::Stats;
use crate::tensors::{le_values, pack_rows, unpack_rows, LayerEntry, TensorBuffers, Tensors};

/// An XNOR-popcount dense layer: output `o` is 1 when at least `thresholds[o]` inputs equal their weight bit.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryLayer {
    num_inputs: usize,
    weights: Vec<u64>,
    thresholds: Vec<i32>,
}

impl BinaryLayer {
    /// The name of the kind in the file format.
    pub(crate) const KIND: &'static str = "binary";

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

    /// The layer must read exactly the bits of its input.
    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        if self.num_inputs != input_width {
            return Err(Error::Network(format!(
                "layer {index} (binary): weights for {} inputs, but the layer's input has {input_width} bits",
                self.num_inputs
            )));
        }
        Ok(())
    }

    /// Reads the layer's tensors; the number of inputs is the width of the layer's input.
    pub(crate) fn read(entry: &LayerEntry, tensors: &mut Tensors<'_>) -> Result<Self> {
        entry.check_keys_of(Self::KIND, &[])?;
        let (width, input_width) = (entry.width, entry.input_width);
        let row_bytes = input_width.div_ceil(8);
        let packed = tensors.get(&entry.tensor("weights"), Dtype::U8, &[width, row_bytes])?;
        let thresholds = le_values(tensors.get(&entry.tensor("thresholds"), Dtype::I32, &[width])?, i32::from_le_bytes);
        let weights = unpack_rows(packed, row_bytes, input_width.div_ceil(64));
        BinaryLayer::new(input_width, weights, thresholds)
    }

    /// Appends the layer's tensors; returns its `arity` key (none).
    pub(crate) fn write(&self, index: usize, out: &mut TensorBuffers) -> Option<u32> {
        let name = |suffix: &str| crate::tensors::tensor_name(index, suffix);
        let row_bytes = self.num_inputs.div_ceil(8);
        let weights = pack_rows(&self.weights, self.words_per_row(), row_bytes);
        out.push(name("weights"), Dtype::U8, vec![self.width(), row_bytes], weights);
        let thresholds = self.thresholds.iter().flat_map(|t| t.to_le_bytes()).collect();
        out.push(name("thresholds"), Dtype::I32, vec![self.width()], thresholds);
        None
    }

    /// The wires the layer reads: all of its input.
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        (0..self.num_inputs as u32).collect()
    }

    /// One binary group, its rows one node each.
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        let ins = (0..self.num_inputs as u32).map(wire).collect();
        graph.push_group(ins, self.weights.clone(), self.thresholds.clone())
    }

    /// Adds the weights and their bytes in a file (a bit-packed weight row and an i32 threshold per output).
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        stats.binary_weights += self.width() * self.num_inputs;
        stats.bytes += self.width() * (self.num_inputs.div_ceil(8) + 4);
    }

    /// Compiler nodes before optimization: one per row.
    pub(crate) fn node_bound(&self) -> usize {
        self.width()
    }
}
