//! Convolutional gate trees (`conv_gates`, format 1.2): per output channel, a complete binary tree of two-input
//! gates over the receptive field, shared by every position (FORMAT.md 3.3).

use bitlogic::{ConvGateLayer, Layer};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::super::{le_u32, RawTensor};
use super::{apply_op, geometry_strategy, LayerModel, RefGeometry};

/// One output channel's tree: `2^d` leaves, each `[c, dy, dx]` of the receptive field, and `2^d - 1` op codes.
#[derive(Clone, Debug, PartialEq)]
pub struct RefTree {
    pub leaves: Vec<[usize; 3]>,
    pub ops: Vec<u8>,
}

/// A `conv_gates` layer: one tree of depth `depth` per output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct RefConvGates {
    pub geometry: RefGeometry,
    pub depth: usize,
    pub trees: Vec<RefTree>,
}

/// The receptive-field reads `[c, dy, dx]` as `u32`s, row-major.
pub(crate) fn leaves_u32(leaves: &[[usize; 3]]) -> Vec<[u32; 3]> {
    leaves.iter().map(|l| l.map(|v| v as u32)).collect()
}

/// The receptive-field reads as `usize`s.
pub(crate) fn leaves_usize(leaves: &[[u32; 3]]) -> Vec<[usize; 3]> {
    leaves.iter().map(|l| l.map(|v| v as usize)).collect()
}

/// The bit leaf `[c, dy, dx]` reads at output position `at`: the input there, 0 for padding.
pub(crate) fn leaf_bit(geometry: &RefGeometry, x: &[bool], at: [usize; 2], [c, dy, dx]: [usize; 3]) -> bool {
    geometry.read(x, c, at, [dy, dx]).unwrap_or(false)
}

/// The `layers.{i}.leaves` tensor, `U32 [O, per_channel, 3]`.
pub(crate) fn leaves_tensor(prefix: &str, channels: &[&[[usize; 3]]]) -> RawTensor {
    let per_channel = channels.first().map_or(0, |l| l.len());
    let data = le_u32(channels.iter().flat_map(|l| l.iter().flatten().copied()));
    RawTensor::new(format!("{prefix}.leaves"), "U32", vec![channels.len(), per_channel, 3], data)
}

/// A receptive-field read `[c, dy, dx]` of `geometry`.
pub(crate) fn leaf_strategy(geometry: &RefGeometry) -> impl Strategy<Value = [usize; 3]> {
    let ([c, _, _], [kh, kw]) = (geometry.input_shape, geometry.kernel_size);
    [0..c, 0..kh, 0..kw]
}

impl RefConvGates {
    pub fn from_engine(layer: &ConvGateLayer) -> RefConvGates {
        let depth = layer.depth();
        let trees = layer
            .leaves()
            .chunks(1 << depth)
            .zip(layer.ops().chunks((1 << depth) - 1))
            .map(|(leaves, ops)| RefTree { leaves: leaves_usize(leaves), ops: ops.to_vec() })
            .collect();
        RefConvGates { geometry: RefGeometry::from_engine(layer.geometry()), depth, trees }
    }

    /// Channel `o`'s tree at one position: the leaves are nodes `0 .. 2^d`, gate `g` reads nodes `2g` and `2g + 1`
    /// and is node `2^d + g`; the root, the last node, is the output.
    fn tree_at(&self, tree: &RefTree, x: &[bool], at: [usize; 2]) -> bool {
        let mut nodes: Vec<bool> = tree.leaves.iter().map(|&leaf| leaf_bit(&self.geometry, x, at, leaf)).collect();
        for (g, &op) in tree.ops.iter().enumerate() {
            nodes.push(apply_op(op, nodes[2 * g], nodes[2 * g + 1]));
        }
        *nodes.last().expect("a tree has a root")
    }
}

impl LayerModel for RefConvGates {
    fn kind(&self) -> &'static str {
        "conv_gates"
    }

    fn width(&self) -> usize {
        self.trees.len() * self.geometry.positions()
    }

    /// Output `(o, y', x')` is bit `o*H'*W' + y'*W' + x'`.
    fn forward(&self, x: &[bool]) -> Vec<bool> {
        assert_eq!(x.len(), self.geometry.inputs());
        let mut out = vec![false; self.width()];
        let positions = self.geometry.positions();
        for (o, tree) in self.trees.iter().enumerate() {
            for (at, offset) in self.geometry.output_positions() {
                out[o * positions + offset] = self.tree_at(tree, x, at);
            }
        }
        out
    }

    fn build(&self, _pack_here: bool) -> Layer {
        let leaves = self.trees.iter().flat_map(|t| leaves_u32(&t.leaves)).collect();
        let ops = self.trees.iter().flat_map(|t| t.ops.iter().copied()).collect();
        let layer = ConvGateLayer::new(self.geometry.engine(), self.depth, leaves, ops);
        Layer::ConvGates(layer.expect("valid conv_gates layer"))
    }

    fn write(&self, prefix: &str, tensors: &mut Vec<RawTensor>) -> Map<String, Value> {
        let leaves: Vec<&[[usize; 3]]> = self.trees.iter().map(|t| t.leaves.as_slice()).collect();
        tensors.push(leaves_tensor(prefix, &leaves));
        let ops = self.trees.iter().flat_map(|t| t.ops.iter().copied()).collect();
        let gates = (1 << self.depth) - 1;
        tensors.push(RawTensor::new(format!("{prefix}.ops"), "U8", vec![self.trees.len(), gates], ops));
        let mut keys = self.geometry.keys(true);
        keys.insert("out_channels".into(), json!(self.trees.len()));
        keys.insert("depth".into(), json!(self.depth));
        keys
    }
}

/// A `conv_gates` layer over `input_shape`: random geometry, 1..=4 output channels, trees of depth `depth`.
pub fn conv_gates_strategy(input_shape: [usize; 3], depth: usize) -> impl Strategy<Value = RefConvGates> {
    geometry_strategy(input_shape, 2).prop_flat_map(move |geometry| {
        let tree = (
            prop::collection::vec(leaf_strategy(&geometry), 1 << depth),
            prop::collection::vec(0u8..16, (1 << depth) - 1),
        )
            .prop_map(|(leaves, ops)| RefTree { leaves, ops });
        prop::collection::vec(tree, 1..=4).prop_map(move |trees| RefConvGates { geometry, depth, trees })
    })
}
