//! Layers of two-input gates: data, validation, file tensors, lowering to the IR and statistics.
//!
//! Tensors: `layers.{i}.inputs` (u32 `[width, 2]`, the A and B wires) and `layers.{i}.ops` (u8 `[width]`, op codes
//! in the convention of [`crate::ops`]).

use safetensors::tensor::Dtype;

use crate::error::{Error, Result};
use crate::ir::{from_fn, Graph, Node, Signal, Table};
use crate::model::stats::Stats;
use crate::ops::{self, NUM_OPS};
use crate::tensors::{le_values, LayerEntry, TensorBuffers, Tensors};

/// A layer of two-input gates.
#[derive(Clone, Debug, PartialEq)]
pub struct GateLayer {
    inputs: Vec<[u32; 2]>,
    ops: Vec<u8>,
}

impl GateLayer {
    /// The name of the kind in the file format.
    pub(crate) const KIND: &'static str = "gates";

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

    /// Every wire must name a bit of the layer's input.
    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        for (g, pair) in self.inputs.iter().enumerate() {
            if let Some(&w) = pair.iter().find(|&&w| w as usize >= input_width) {
                return Err(Error::Network(format!(
                    "layer {index} (gates): gate {g} reads wire {w}, but the layer's input has only {input_width} bits"
                )));
            }
        }
        Ok(())
    }

    /// Reads the layer's tensors.
    pub(crate) fn read(entry: &LayerEntry, tensors: &mut Tensors<'_>) -> Result<Self> {
        entry.check_keys_of(Self::KIND, &[])?;
        let width = entry.width;
        let wires = le_values(tensors.get(&entry.tensor("inputs"), Dtype::U32, &[width, 2])?, u32::from_le_bytes);
        let ops = tensors.get(&entry.tensor("ops"), Dtype::U8, &[width])?.to_vec();
        let pairs = wires.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
        GateLayer::new(pairs, ops)
    }

    /// Appends the layer's tensors; returns its `arity` key (none).
    pub(crate) fn write(&self, index: usize, out: &mut TensorBuffers) -> Option<u32> {
        let name = |suffix: &str| crate::tensors::tensor_name(index, suffix);
        let wires = self.inputs.iter().flatten().flat_map(|w| w.to_le_bytes()).collect();
        out.push(name("inputs"), Dtype::U32, vec![self.width(), 2], wires);
        out.push(name("ops"), Dtype::U8, vec![self.width()], self.ops.clone());
        None
    }

    /// The wires the layer reads, in order (with repeats).
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        self.inputs.iter().flatten().copied().collect()
    }

    /// One function node per gate: its op code as a four-entry truth table.
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        self.inputs
            .iter()
            .zip(&self.ops)
            .map(|(&[a, b], &op)| graph.push(Node::func(&[wire(a), wire(b)], gate_table(op))))
            .collect()
    }

    /// Adds the gates and their bytes in a file (two u32 wires and an op code each).
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        stats.gates += self.width();
        stats.bytes += 9 * self.width();
    }

    /// Compiler nodes before optimization: one per gate.
    pub(crate) fn node_bound(&self) -> usize {
        self.width()
    }
}

/// Op code `op` as the truth table of a two-input function node (input 0 is `A`).
pub(crate) fn gate_table(op: u8) -> Table {
    from_fn(2, |addr| ops::apply(op, addr & 1 == 1, addr & 2 == 2))
}
