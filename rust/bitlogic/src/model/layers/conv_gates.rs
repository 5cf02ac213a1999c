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
        self.geometry.wires_of_leaves(&self.leaves)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::conv::testing::{self, layer_outputs};
    use crate::{ops, Layer, SplitMix64};

    fn layer(g: Geometry, depth: usize, leaves: Vec<[u32; 3]>, ops: Vec<u8>) -> Layer {
        Layer::ConvGates(ConvGateLayer::new(g, depth, leaves, ops).unwrap())
    }

    #[test]
    fn two_channels_over_a_three_by_three_image() {
        // 1 0 1 / 0 1 1 / 1 1 0, 2 x 2 windows: channel 0 ANDs the diagonal, channel 1 ORs the anti-diagonal.
        let g = Geometry::new([1, 3, 3], [2, 2], [1, 1], [0, 0]).unwrap();
        let leaves = vec![[0, 0, 0], [0, 1, 1], [0, 0, 1], [0, 1, 0]];
        let net = layer(g, 1, leaves, vec![1, 7]);
        assert_eq!(layer_outputs(net, &[vec![1, 0, 1, 0, 1, 1, 1, 1, 0]]), [[1, 0, 0, 0, 0, 1, 1, 1]]);
    }

    #[test]
    fn gates_read_their_nodes_in_pairs_up_to_the_root() {
        // 1 x 1 windows over four channels: (x0 AND NOT x1) XOR (NOT x2 AND x3).
        let g = Geometry::new([4, 1, 1], [1, 1], [1, 1], [0, 0]).unwrap();
        let leaves = vec![[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]];
        let inputs: Vec<Vec<u8>> = (0..16).map(|a| (0..4).map(|i| (a >> i) & 1).collect()).collect();
        let got = layer_outputs(layer(g, 2, leaves, vec![2, 4, 6]), &inputs);
        for (x, out) in inputs.iter().zip(got) {
            let want = (x[0] == 1 && x[1] == 0) ^ (x[2] == 0 && x[3] == 1);
            assert_eq!(out, [want as u8], "{x:?}");
        }
    }

    #[test]
    fn padded_leaves_read_zero() {
        // A 2 x 2 image of ones, a 3 x 3 kernel with padding 1 and stride 2: one position, whose leaf [0, 0, 0] is
        // padding and leaf [0, 1, 1] is pixel (0, 0). Channels: A, NOT A, B, A OR B.
        let g = Geometry::new([1, 2, 2], [3, 3], [2, 2], [1, 1]).unwrap();
        assert_eq!(g.output_size(), [1, 1]);
        let leaves = [[0, 0, 0], [0, 1, 1]].repeat(4);
        assert_eq!(layer_outputs(layer(g, 1, leaves, vec![3, 12, 5, 7]), &[vec![1; 4]]), [[0, 1, 1, 1]]);
    }

    #[test]
    fn random_layers_match_the_plain_model() {
        let mut rng = SplitMix64::new(21);
        for _ in 0..40 {
            let g = testing::random_geometry(&mut rng, true);
            let depth = 1 + (rng.next_u64() % 3) as usize;
            let channels = 1 + (rng.next_u64() % 3) as usize;
            let leaves = testing::random_leaves(&mut rng, &g, channels << depth);
            let ops: Vec<u8> = (0..channels * ((1 << depth) - 1)).map(|_| (rng.next_u64() % 16) as u8).collect();
            let inputs = testing::random_bits(&mut rng, 70, g.input_width());
            let l = ConvGateLayer::new(g, depth, leaves.clone(), ops.clone()).unwrap();
            assert_eq!((l.depth(), l.out_channels(), l.leaves(), l.ops()), (depth, channels, &leaves[..], &ops[..]));
            let got = layer_outputs(Layer::ConvGates(l), &inputs);
            for (x, out) in inputs.iter().zip(got) {
                let want = testing::reference(&g, x, |field| {
                    (0..channels)
                        .map(|o| {
                            let mut nodes: Vec<bool> = (leaves[o << depth..(o + 1) << depth].iter())
                                .map(|&[c, dy, dx]| {
                                    let k = (c as usize * g.kernel_size()[0] + dy as usize) * g.kernel_size()[1];
                                    field[k + dx as usize] == Some(1)
                                })
                                .collect();
                            for (i, &op) in ops[o * ((1 << depth) - 1)..][..(1 << depth) - 1].iter().enumerate() {
                                nodes.push(ops::apply(op, nodes[2 * i], nodes[2 * i + 1]));
                            }
                            *nodes.last().unwrap() as u8
                        })
                        .collect()
                });
                assert_eq!(out, want, "{g:?}");
            }
        }
    }

    #[test]
    fn bad_trees_are_rejected() {
        let g = Geometry::new([2, 3, 3], [2, 2], [1, 1], [0, 0]).unwrap();
        let message = |depth, leaves: Vec<[u32; 3]>, ops: Vec<u8>| match ConvGateLayer::new(g, depth, leaves, ops) {
            Err(Error::Network(m)) => m,
            other => panic!("{other:?}"),
        };
        let leaves = vec![[0, 0, 0], [1, 1, 1]];
        assert!(message(0, leaves.clone(), vec![]).contains("depth 0, expected 1..=8"));
        assert!(message(9, leaves.clone(), vec![1]).contains("depth 9"));
        assert!(message(1, vec![], vec![]).contains("0 leaves, expected a positive multiple of 2"));
        assert!(message(2, leaves.clone(), vec![1]).contains("multiple of 4"));
        assert!(message(1, leaves.clone(), vec![1, 1]).contains("need 1 op codes, got 2"));
        assert!(message(1, leaves.clone(), vec![16]).contains("op code 16, expected 0..=15"));
        let m = message(1, vec![[0, 0, 0], [2, 0, 0]], vec![1]);
        assert!(m.contains("leaf 1 of channel 0 is [2, 0, 0], expected [c, dy, dx] with c < 2, dy < 2, dx < 2"), "{m}");
        assert!(message(1, vec![[0, 0, 2], [0, 0, 0]], vec![1]).contains("leaf 0 of channel 0 is [0, 0, 2]"));
        // The layer must read exactly its input's bits.
        let l = Layer::ConvGates(ConvGateLayer::new(g, 1, leaves, vec![1]).unwrap());
        let e = crate::Network::new(crate::Encoder::bits(17).unwrap(), vec![l], 1, 1.0).unwrap_err();
        assert!(e.to_string().contains("layer 0 (conv_gates): input_shape [2, 3, 3] holds 18 bits"), "{e}");
    }
}
