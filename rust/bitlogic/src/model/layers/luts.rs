//! Layers of n-input lookup tables: data, validation, file tensors, lowering to the IR and statistics.
//!
//! Tensors: `layers.{i}.inputs` (u32 `[width, arity]`) and `layers.{i}.tables` (u8 `[width, ceil(2^arity / 8)]`,
//! entry `a` of a table being bit `a % 8` of byte `a / 8`).

use safetensors::tensor::Dtype;

use crate::bits::{pack_bits, unpack_bits};
use crate::error::{Error, Result};
use crate::ir::{Graph, Node, Signal};
use crate::limits::MAX_ARITY;
use crate::model::stats::Stats;
use crate::tensors::{le_values, pack_rows, unpack_rows, LayerEntry, TensorBuffers, Tensors};

/// A layer of n-input lookup tables.
#[derive(Clone, Debug, PartialEq)]
pub struct LutLayer {
    arity: usize,
    inputs: Vec<u32>,
    tables: Vec<u64>,
}

impl LutLayer {
    /// The name of the kind in the file format.
    pub(crate) const KIND: &'static str = "luts";

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

    /// Every wire must name a bit of the layer's input.
    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        if let Some(i) = self.inputs.iter().position(|&w| w as usize >= input_width) {
            return Err(Error::Network(format!(
                "layer {index} (luts): table {} reads wire {}, but the layer's input has only {input_width} bits",
                i / self.arity,
                self.inputs[i]
            )));
        }
        Ok(())
    }

    /// Reads the layer's tensors; the description must give the arity.
    pub(crate) fn read(entry: &LayerEntry, tensors: &mut Tensors<'_>) -> Result<Self> {
        entry.check_keys_of(Self::KIND, &["arity"])?;
        let (i, width) = (entry.index, entry.width);
        let arity = entry.keys.arity.unwrap_or(0) as usize;
        if !(1..=MAX_ARITY).contains(&arity) {
            return Err(Error::Format(format!(
                "network description: `layers[{i}].arity` is {arity}, expected 1..={MAX_ARITY}"
            )));
        }
        let wires = le_values(tensors.get(&entry.tensor("inputs"), Dtype::U32, &[width, arity])?, u32::from_le_bytes);
        let row_bytes = (1usize << arity).div_ceil(8);
        let packed = tensors.get(&entry.tensor("tables"), Dtype::U8, &[width, row_bytes])?;
        let tables = unpack_rows(packed, row_bytes, Self::words_per_table(arity));
        LutLayer::new(arity, wires, tables)
    }

    /// Appends the layer's tensors; returns its `arity` key.
    pub(crate) fn write(&self, index: usize, out: &mut TensorBuffers) -> Option<u32> {
        let name = |suffix: &str| crate::tensors::tensor_name(index, suffix);
        let wires = self.inputs.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.push(name("inputs"), Dtype::U32, vec![self.width(), self.arity], wires);
        let row_bytes = (1usize << self.arity).div_ceil(8);
        let tables = pack_rows(&self.tables, Self::words_per_table(self.arity), row_bytes);
        out.push(name("tables"), Dtype::U8, vec![self.width(), row_bytes], tables);
        Some(self.arity as u32)
    }

    /// The wires the layer reads, in order (with repeats).
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        self.inputs.clone()
    }

    /// One function node per table, of the table's arity (tables of more than three inputs are split later, by the
    /// compiler's `lower_luts`).
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        let n = self.arity;
        let words = Self::words_per_table(n);
        self.inputs
            .chunks_exact(n)
            .zip(self.tables.chunks_exact(words))
            .map(|(ins, packed)| {
                let ins: Vec<Signal> = ins.iter().map(|&w| wire(w)).collect();
                graph.push(table_node(&ins, packed))
            })
            .collect()
    }

    /// Adds the tables by arity and their bytes in a file (u32 wires and a bit-packed table each).
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        *stats.luts.entry(self.arity).or_default() += self.width();
        stats.bytes += self.width() * (4 * self.arity + (1usize << self.arity).div_ceil(8));
    }

    /// Compiler nodes before optimization: [`nodes_per_table`] each.
    pub(crate) fn node_bound(&self) -> usize {
        self.width().saturating_mul(nodes_per_table(self.arity))
    }
}

/// The function node of a table of `ins.len()` inputs whose packed entries are `packed` (one or more words).
pub(crate) fn table_node(ins: &[Signal], packed: &[u64]) -> Node {
    let mut table = [0u64; 4];
    table[..packed.len()].copy_from_slice(packed);
    Node::func(ins, table)
}

/// Compiler nodes of one table before optimization: a table of more than three inputs becomes at most
/// `2^(arity - 2) - 1` nodes (three-input leaves under a multiplexer tree).
pub(crate) fn nodes_per_table(arity: usize) -> usize {
    if arity > 3 {
        (1 << (arity - 2)) - 1
    } else {
        1
    }
}
