//! Binary convolutions (`conv_binary`, format 1.2): XNOR-popcount over the receptive field, a weight row and a
//! threshold on the dot product per output channel, padded inputs counting `pad_value` (FORMAT.md 3.3).

use bitlogic::{ConvBinaryLayer, Layer};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::super::{pack_bytes, RawTensor};
use super::{geometry_strategy, LayerModel, RefGeometry};

/// One output channel: weight `j = (c*kh + dy)*kw + dx` (`true` = +1, `false` = -1) and a threshold on the dot.
#[derive(Clone, Debug, PartialEq)]
pub struct RefFilter {
    pub weights: Vec<bool>,
    pub threshold: i32,
}

/// A `conv_binary` layer: one filter per output channel; a padded input counts `pad_value` (0 or 1) in the dot.
#[derive(Clone, Debug, PartialEq)]
pub struct RefConvBinary {
    pub geometry: RefGeometry,
    pub pad_value: u8,
    pub filters: Vec<RefFilter>,
}

impl RefConvBinary {
    pub fn from_engine(layer: &ConvBinaryLayer) -> RefConvBinary {
        let geometry = RefGeometry::from_engine(layer.geometry());
        let weights = layer.unpacked_weights();
        let filters = weights
            .chunks(geometry.input_shape[0] * geometry.kernel_size[0] * geometry.kernel_size[1])
            .zip(layer.thresholds())
            .map(|(row, &threshold)| RefFilter { weights: row.iter().map(|&w| w == 1).collect(), threshold })
            .collect();
        RefConvBinary { geometry, pad_value: layer.pad_value(), filters }
    }

    /// The dot product of `filter` with the receptive field at `at`: `+-1` inputs times `+-1` weights, a padded
    /// input being `pad_value` instead.
    fn dot(&self, filter: &RefFilter, x: &[bool], at: [usize; 2]) -> i64 {
        let [c, kh, kw] = [self.geometry.input_shape[0], self.geometry.kernel_size[0], self.geometry.kernel_size[1]];
        let mut dot = 0i64;
        for channel in 0..c {
            for [dy, dx] in self.geometry.offsets() {
                let weight = if filter.weights[(channel * kh + dy) * kw + dx] { 1 } else { -1 };
                let input = match self.geometry.read(x, channel, at, [dy, dx]) {
                    Some(true) => 1,
                    Some(false) => -1,
                    None => i64::from(self.pad_value),
                };
                dot += input * weight;
            }
        }
        dot
    }
}

impl LayerModel for RefConvBinary {
    fn kind(&self) -> &'static str {
        "conv_binary"
    }

    fn width(&self) -> usize {
        self.filters.len() * self.geometry.positions()
    }

    /// Output `(o, y', x')`, bit `o*H'*W' + y'*W' + x'`, is whether the dot there reaches `thresholds[o]`.
    fn forward(&self, x: &[bool]) -> Vec<bool> {
        assert_eq!(x.len(), self.geometry.inputs());
        let mut out = vec![false; self.width()];
        let positions = self.geometry.positions();
        for (o, filter) in self.filters.iter().enumerate() {
            for (at, offset) in self.geometry.output_positions() {
                out[o * positions + offset] = self.dot(filter, x, at) >= i64::from(filter.threshold);
            }
        }
        out
    }

    fn build(&self, _pack_here: bool) -> Layer {
        let weights: Vec<u8> = self.filters.iter().flat_map(|f| f.weights.iter().map(|&w| w as u8)).collect();
        let thresholds = self.filters.iter().map(|f| f.threshold).collect();
        let layer = ConvBinaryLayer::from_unpacked(self.geometry.engine(), &weights, thresholds, self.pad_value);
        Layer::ConvBinary(layer.expect("valid conv_binary layer"))
    }

    fn write(&self, prefix: &str, tensors: &mut Vec<RawTensor>) -> Map<String, Value> {
        let o = self.filters.len();
        let [c, kh, kw] = [self.geometry.input_shape[0], self.geometry.kernel_size[0], self.geometry.kernel_size[1]];
        let weights = self.filters.iter().flat_map(|f| pack_bytes(&f.weights)).collect();
        tensors.push(RawTensor::new(format!("{prefix}.weights"), "U8", vec![o, (c * kh * kw).div_ceil(8)], weights));
        let thresholds = self.filters.iter().flat_map(|f| f.threshold.to_le_bytes()).collect();
        tensors.push(RawTensor::new(format!("{prefix}.thresholds"), "I32", vec![o], thresholds));
        let mut keys = self.geometry.keys(true);
        keys.insert("out_channels".into(), json!(o));
        keys.insert("pad_value".into(), json!(self.pad_value));
        keys
    }
}

/// A threshold on a dot of `n` terms (in `-n ..= n`): mostly near the middle, sometimes just past either end or
/// at the extremes of `i32` (constant 1 below `-n`, constant 0 above `n`).
fn dot_threshold(n: usize) -> BoxedStrategy<i32> {
    let n = n as i32;
    prop_oneof![
        4 => -3..=3i32,
        2 => -(n + 2)..=(n + 2),
        1 => prop::sample::select(vec![i32::MIN, -n - 1, -n, n, n + 1, i32::MAX]),
    ]
    .boxed()
}

/// A `conv_binary` layer over `input_shape`: random geometry, 1..=4 output channels, either padding value.
pub fn conv_binary_strategy(input_shape: [usize; 3]) -> impl Strategy<Value = RefConvBinary> {
    (geometry_strategy(input_shape, 2), 0u8..=1).prop_flat_map(move |(geometry, pad_value)| {
        let n = input_shape[0] * geometry.kernel_size[0] * geometry.kernel_size[1];
        let filter = (prop::collection::vec(any::<bool>(), n), dot_threshold(n))
            .prop_map(|(weights, threshold)| RefFilter { weights, threshold });
        prop::collection::vec(filter, 1..=4).prop_map(move |filters| RefConvBinary { geometry, pad_value, filters })
    })
}
