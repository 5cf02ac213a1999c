//! Tree convolutions of two-input gates (LogicTreeNet): one tree of `2^depth` leaves per output channel, shared over
//! the output positions.
//!
//! Tensors: `layers.{i}.leaves` (u32 `[O, 2^d, 3]`, leaf `[c, dy, dx]` of the receptive field) and `layers.{i}.ops`
//! (u8 `[O, 2^d - 1]`). At one position the nodes `0..2^d` are the leaves' bits (0 for padding) and gate `g`
//! computes `ops[g](nodes[2g], nodes[2g + 1])` into node `2^d + g`; the last node is the output.

use safetensors::tensor::Dtype;

use super::conv::{self, Geometry};
use super::gates::gate_table;
use crate::error::{Error, Result};
use crate::ir::{Graph, Node, Signal};
use crate::model::stats::Stats;
use crate::ops::NUM_OPS;
use crate::tensors::{LayerEntry, LayerKeys, TensorBuffers, Tensors};

/// The largest tree depth (trees of 256 leaves).
const MAX_DEPTH: usize = 8;

/// A convolution whose output channel `o` is a tree of two-input gates over the receptive field.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGateLayer {
    geometry: Geometry,
    depth: usize,
    leaves: Vec<[u32; 3]>,
    ops: Vec<u8>,
}

impl ConvGateLayer {
    /// The name of the kind in the file format.
    pub(crate) const KIND: &'static str = "conv_gates";

    /// `leaves` is row-major `[O, 2^depth]` (leaf `[c, dy, dx]`), `ops` row-major `[O, 2^depth - 1]` (op codes
    /// 0..=15, gate `g` of a tree reading its nodes `2g` and `2g + 1`).
    pub fn new(geometry: Geometry, depth: usize, leaves: Vec<[u32; 3]>, ops: Vec<u8>) -> Result<Self> {
        if !(1..=MAX_DEPTH).contains(&depth) {
            return Err(Error::Network(format!("conv_gates layer: depth {depth}, expected 1..={MAX_DEPTH}")));
        }
        let channels = conv::check_leaves("conv_gates", &geometry, &leaves, 1 << depth)?;
        let gates = (1usize << depth) - 1;
        if ops.len() != channels * gates {
            return Err(Error::Network(format!(
                "conv_gates layer: {channels} trees of depth {depth} need {} op codes, got {}",
                channels * gates,
                ops.len()
            )));
        }
        if let Some(i) = ops.iter().position(|&op| op >= NUM_OPS) {
            return Err(Error::Network(format!(
                "conv_gates layer: gate {} of channel {} has op code {}, expected 0..=15",
                i % gates,
                i / gates,
                ops[i]
            )));
        }
        Ok(Self { geometry, depth, leaves, ops })
    }
    /// The window over the input.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    /// Levels of each tree: `2^depth` leaves, `2^depth - 1` gates.
    pub fn depth(&self) -> usize {
        self.depth
    }
    /// `O`, the number of trees.
    pub fn out_channels(&self) -> usize {
        self.ops.len() / self.gates_per_tree()
    }
    /// Row-major `[O, 2^depth]` leaves `[c, dy, dx]`.
    pub fn leaves(&self) -> &[[u32; 3]] {
        &self.leaves
    }
    /// Row-major `[O, 2^depth - 1]` op codes.
    pub fn ops(&self) -> &[u8] {
        &self.ops
    }
    /// Output bits, `O*H'*W'`.
    pub fn width(&self) -> usize {
        self.out_channels() * self.geometry.positions()
    }
    fn gates_per_tree(&self) -> usize {
        (1 << self.depth) - 1
    }

    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        self.geometry.check_input_width(Self::KIND, index, input_width)
    }

    /// Reads the layer's tensors; the description gives the geometry, `out_channels` and `depth`.
    pub(crate) fn read(entry: &LayerEntry, tensors: &mut Tensors<'_>) -> Result<Self> {
        let (geometry, channels) = conv::read_geometry(entry, Self::KIND, true, &["depth"])?;
        let depth = entry.keys.depth.unwrap_or(0) as usize;
        if !(1..=MAX_DEPTH).contains(&depth) {
            return Err(entry.bad_key("depth", depth, &format!("1..={MAX_DEPTH}")));
        }
        let leaves = conv::read_leaves(entry, tensors, channels, 1 << depth)?;
        let ops = tensors.get(&entry.tensor("ops"), Dtype::U8, &[channels, (1 << depth) - 1])?.to_vec();
        Self::new(geometry, depth, leaves, ops)
    }

    /// Appends the layer's tensors; returns its description keys.
    pub(crate) fn write(&self, index: usize, out: &mut TensorBuffers) -> LayerKeys {
        conv::write_leaves(index, &self.leaves, 1 << self.depth, out);
        let shape = vec![self.out_channels(), self.gates_per_tree()];
        out.push(crate::tensors::tensor_name(index, "ops"), Dtype::U8, shape, self.ops.clone());
        LayerKeys {
            depth: Some(self.depth as u32),
            out_channels: Some(self.out_channels() as u32),
            ..self.geometry.keys(true)
        }
    }

    /// The input bits the leaves read at some position.
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        let mut fields: Vec<usize> = self.leaves.iter().map(|&l| self.geometry.field_index(l)).collect();
        fields.sort_unstable();
        fields.dedup();
        self.geometry.wires_read(fields.into_iter())
    }

    /// Every tree at every position: `2^depth - 1` two-input function nodes, padded leaves reading FALSE.
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        let leaves_per_tree = 1 << self.depth;
        let g = &self.geometry;
        let trees = || self.leaves.chunks_exact(leaves_per_tree).zip(self.ops.chunks_exact(self.gates_per_tree()));
        let mut nodes = Vec::with_capacity(2 * leaves_per_tree);
        g.unroll(self.out_channels(), |p| {
            trees()
                .map(|(leaves, ops)| {
                    nodes.clear();
                    nodes.extend(leaves.iter().map(|&leaf| g.signal(p, g.field_index(leaf), wire)));
                    for (gate, &op) in ops.iter().enumerate() {
                        let node = Node::func(&[nodes[2 * gate], nodes[2 * gate + 1]], gate_table(op));
                        nodes.push(graph.push(node));
                    }
                    *nodes.last().expect("a tree has at least one gate")
                })
                .collect()
        })
    }

    /// Adds the gates of every position and the bytes in a file (three u32 per leaf, an op code per gate).
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        stats.gates += self.ops.len() * self.geometry.positions();
        stats.bytes += 12 * self.leaves.len() + self.ops.len();
    }

    /// Compiler nodes before optimization: one per gate and position.
    pub(crate) fn node_bound(&self) -> usize {
        self.ops.len().saturating_mul(self.geometry.positions())
    }
}
