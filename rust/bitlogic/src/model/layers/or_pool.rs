//! OR pooling (max pooling on bits): output `(c, y', x')` is the OR of the `kh x kw` window of channel `c` at row
//! `y'*sh` and column `x'*sw`. No padding, no tensors.

use super::conv::{self, Geometry};
use super::gates::gate_table;
use crate::error::Result;
use crate::ir::{Graph, Node, Signal};
use crate::model::stats::Stats;
use crate::tensors::{LayerEntry, LayerKeys, TensorBuffers, Tensors};

/// The op code of `A OR B`.
const OR: u8 = 7;

/// OR pooling over windows of each input channel.
#[derive(Clone, Debug, PartialEq)]
pub struct OrPoolLayer {
    geometry: Geometry,
}

impl OrPoolLayer {
    /// The name of the kind in the file format.
    pub(crate) const KIND: &'static str = "or_pool";

    /// Pooling of `kernel_size` windows every `stride` over an input of `input_shape` `[C, H, W]` (the window no
    /// larger than the input: there is no padding).
    pub fn new(input_shape: [usize; 3], kernel_size: [usize; 2], stride: [usize; 2]) -> Result<Self> {
        Ok(Self { geometry: Geometry::checked("or_pool layer", input_shape, kernel_size, stride, [0, 0])? })
    }
    /// The window over the input (padding 0).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    /// `[C, H, W]` of the input.
    pub fn input_shape(&self) -> [usize; 3] {
        self.geometry.input_shape()
    }
    /// `[kh, kw]`.
    pub fn kernel_size(&self) -> [usize; 2] {
        self.geometry.kernel_size()
    }
    /// `[sh, sw]`.
    pub fn stride(&self) -> [usize; 2] {
        self.geometry.stride()
    }
    /// `[H', W']`.
    pub fn output_size(&self) -> [usize; 2] {
        self.geometry.output_size()
    }
    /// Output bits, `C*H'*W'`.
    pub fn width(&self) -> usize {
        self.geometry.channels() * self.geometry.positions()
    }

    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        self.geometry.check_input_width(Self::KIND, index, input_width)
    }

    /// Reads the layer from its description (it has no tensors).
    pub(crate) fn read(entry: &LayerEntry, _tensors: &mut Tensors<'_>) -> Result<Self> {
        let (geometry, _) = conv::read_geometry(entry, Self::KIND, false, &[])?;
        Ok(Self { geometry })
    }

    /// Appends nothing; returns the layer's description keys.
    pub(crate) fn write(&self, _index: usize, _out: &mut TensorBuffers) -> LayerKeys {
        self.geometry.keys(false)
    }

    /// The input bits some window holds.
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        self.geometry.wires_read(0..self.geometry.field_len())
    }

    /// Every window a balanced tree of `kh*kw - 1` two-input OR nodes (a 1 x 1 window reads its input through).
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        let g = &self.geometry;
        let window = g.window();
        let mut level = Vec::with_capacity(window);
        g.unroll(g.channels(), |p| {
            (0..g.channels())
                .map(|c| {
                    level.clear();
                    level.extend((c * window..(c + 1) * window).map(|k| g.signal(p, k, wire)));
                    while level.len() > 1 {
                        let next: Vec<Signal> = (level.chunks(2))
                            .map(|pair| match *pair {
                                [a, b] => graph.push(Node::func(&[a, b], gate_table(OR))),
                                _ => pair[0],
                            })
                            .collect();
                        level = next;
                    }
                    level[0]
                })
                .collect()
        })
    }

    /// Adds the OR gates of every window (counted as gates); the layer stores no bytes.
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        stats.gates += self.node_bound();
    }

    /// Compiler nodes before optimization: `kh*kw - 1` per window.
    pub(crate) fn node_bound(&self) -> usize {
        self.width().saturating_mul(self.geometry.window() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::conv::testing::{self, layer_outputs};
    use crate::{Error, Layer, SplitMix64};

    fn pool(shape: [usize; 3], kernel: [usize; 2], stride: [usize; 2]) -> Layer {
        Layer::OrPool(OrPoolLayer::new(shape, kernel, stride).unwrap())
    }

    #[test]
    fn windows_or_their_bits_per_channel() {
        // Channel 0 is 0 0 1 / 0 0 0, channel 1 is 1 0 0 / 0 0 0; windows of 1 x 2 every column.
        let input = vec![0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(layer_outputs(pool([2, 2, 3], [1, 2], [1, 1]), &[input]), [[0, 1, 0, 0, 1, 0, 0, 0]]);
        // 1 x 1 windows read their input through.
        let bits = vec![1, 0, 1, 1, 0, 0];
        assert_eq!(layer_outputs(pool([1, 2, 3], [1, 1], [1, 1]), std::slice::from_ref(&bits)), [bits]);
    }

    #[test]
    fn rows_past_the_last_window_are_not_read() {
        // 3 x 3, windows 2 x 2 every 2: one window, of the top-left 2 x 2.
        let layer = OrPoolLayer::new([1, 3, 3], [2, 2], [2, 2]).unwrap();
        assert_eq!((layer.input_shape(), layer.kernel_size(), layer.stride()), ([1, 3, 3], [2, 2], [2, 2]));
        assert_eq!(layer.output_size(), [1, 1]);
        assert_eq!(layer.wires_read(), [0, 1, 3, 4]);
        let inputs = vec![vec![0, 0, 1, 0, 0, 1, 1, 1, 1], vec![0, 0, 0, 0, 1, 0, 0, 0, 0]];
        assert_eq!(layer_outputs(Layer::OrPool(layer), &inputs), [[0], [1]]);
    }

    #[test]
    fn random_pools_match_the_plain_model() {
        let mut rng = SplitMix64::new(51);
        for _ in 0..40 {
            let g = testing::random_geometry(&mut rng, false);
            let inputs = testing::random_bits(&mut rng, 70, g.input_width());
            let layer = pool(g.input_shape(), g.kernel_size(), g.stride());
            let got = layer_outputs(layer, &inputs);
            for (x, out) in inputs.iter().zip(got) {
                let want = testing::reference(&g, x, |field| {
                    field.chunks(g.window()).map(|window| window.contains(&Some(1)) as u8).collect()
                });
                assert_eq!(out, want, "{g:?}");
            }
        }
    }

    #[test]
    fn windows_larger_than_the_input_are_rejected() {
        let e = OrPoolLayer::new([1, 2, 2], [3, 1], [1, 1]).unwrap_err();
        assert!(
            matches!(&e, Error::Network(m) if m.starts_with("or_pool layer: kernel_size [3, 1] does not fit")),
            "{e}"
        );
    }
}
