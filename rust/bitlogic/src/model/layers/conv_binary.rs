//! XNOR-popcount convolutions (larq's QuantConv2D, LCE's BConv2D): output channel `o` at a position is 1 when the
//! dot product of the receptive field (bits read as +1/-1) with the channel's +1/-1 weights reaches its threshold.
//!
//! Tensors: `layers.{i}.weights` (u8 `[O, ceil(C*kh*kw / 8)]`, weight `k = (c*kh + dy)*kw + dx` of a row being bit
//! `k % 8` of byte `k / 8`, 1 for +1) and `layers.{i}.thresholds` (i32 `[O]`, on the dot product, not on a count of
//! matches as the dense `binary` kind's). A padded input adds `pad_value * weight` to the dot product.

use safetensors::tensor::Dtype;

use super::conv::{self, Geometry};
use crate::bits::{pack_bits, unpack_bits};
use crate::error::{Error, Result};
use crate::ir::{Graph, Signal, FALSE, TRUE};
use crate::model::stats::Stats;
use crate::tensors::{
    le_values, pack_rows, row_with_padding_bits, unpack_rows, LayerEntry, LayerKeys, TensorBuffers, Tensors,
};

/// A convolution of XNOR-popcount neurons over the receptive field.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvBinaryLayer {
    geometry: Geometry,
    /// Row-major `[O, ceil(C*kh*kw / 64)]`, bit `k` of a row being the weight of field input `k` (1 = +1).
    weights: Vec<u64>,
    thresholds: Vec<i32>,
    pad_value: u8,
}

impl ConvBinaryLayer {
    /// The name of the kind in the file format.
    pub(crate) const KIND: &'static str = "conv_binary";

    /// `weights` is row-major `[O, ceil(C*kh*kw / 64)]` words (padding bits 0), one row per threshold.
    pub(crate) fn new(geometry: Geometry, weights: Vec<u64>, thresholds: Vec<i32>, pad_value: u8) -> Result<Self> {
        if pad_value > 1 {
            return Err(Error::Network(format!("conv_binary layer: pad_value {pad_value}, expected 0 or 1")));
        }
        let channels = thresholds.len();
        if channels == 0 {
            return Err(Error::Network("conv_binary layer: expected at least one output channel".into()));
        }
        conv::bounded_product(&[channels, geometry.positions()], "conv_binary layer: the output width (O*H'*W')")?;
        let n = geometry.field_len();
        if weights.len() != channels * n.div_ceil(64) {
            return Err(Error::Network(format!(
                "conv_binary layer: {channels} channels of {n} weights need {} words, got {}",
                channels * n.div_ceil(64),
                weights.len()
            )));
        }
        if let Some(o) = row_with_padding_bits(&weights, n) {
            return Err(Error::Network(format!(
                "conv_binary layer: the weight row of channel {o} has bits set beyond its {n} weights"
            )));
        }
        Ok(Self { geometry, weights, thresholds, pad_value })
    }
    /// Builds a layer from unpacked weights: `weights` is row-major `[O, C*kh*kw]` of 0/1 values (1 for +1, torch's
    /// `weight[o, c, dy, dx]` flattened), `thresholds[o]` the dot product channel `o` must reach, and `pad_value`
    /// (0 or 1) the value a padded input has in the dot product.
    pub fn from_unpacked(geometry: Geometry, weights: &[u8], thresholds: Vec<i32>, pad_value: u8) -> Result<Self> {
        let n = geometry.field_len();
        let expected = conv::bounded_product(&[thresholds.len(), n], "conv_binary layer: the weights")?;
        if weights.len() != expected {
            return Err(Error::Network(format!(
                "conv_binary layer: {} channels of {n} weights need {expected} weights, got {}",
                thresholds.len(),
                weights.len()
            )));
        }
        Self::new(geometry, pack_bits(weights, n, "conv_binary layer weights")?, thresholds, pad_value)
    }
    /// The window over the input.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    /// `O`, the number of output channels.
    pub fn out_channels(&self) -> usize {
        self.thresholds.len()
    }
    /// The weights unpacked, row-major `[O, C*kh*kw]` of 0/1 values.
    pub fn unpacked_weights(&self) -> Vec<u8> {
        unpack_bits(&self.weights, self.geometry.field_len())
    }
    /// The dot product each output channel must reach.
    pub fn thresholds(&self) -> &[i32] {
        &self.thresholds
    }
    /// The value of a padded input in the dot product: 0 or 1.
    pub fn pad_value(&self) -> u8 {
        self.pad_value
    }
    /// Output bits, `O*H'*W'`.
    pub fn width(&self) -> usize {
        self.out_channels() * self.geometry.positions()
    }
    fn words_per_row(&self) -> usize {
        self.geometry.field_len().div_ceil(64)
    }
    /// Weight `k` of channel `o`: true for +1.
    fn weight(&self, o: usize, k: usize) -> bool {
        (self.weights[o * self.words_per_row() + k / 64] >> (k % 64)) & 1 == 1
    }

    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        self.geometry.check_input_width(Self::KIND, index, input_width)
    }

    /// Reads the layer's tensors; the description gives the geometry, `out_channels` and `pad_value`.
    pub(crate) fn read(entry: &LayerEntry, tensors: &mut Tensors<'_>) -> Result<Self> {
        let (geometry, channels) = conv::read_geometry(entry, Self::KIND, true, &["pad_value"])?;
        let pad_value = entry.keys.pad_value.unwrap_or(0);
        if pad_value > 1 {
            return Err(entry.bad_key("pad_value", pad_value, "0 or 1"));
        }
        let n = geometry.field_len();
        let row_bytes = n.div_ceil(8);
        let packed = tensors.get(&entry.tensor("weights"), Dtype::U8, &[channels, row_bytes])?;
        let thresholds =
            le_values(tensors.get(&entry.tensor("thresholds"), Dtype::I32, &[channels])?, i32::from_le_bytes);
        Self::new(geometry, unpack_rows(packed, row_bytes, n.div_ceil(64)), thresholds, pad_value as u8)
    }

    /// Appends the layer's tensors; returns its description keys.
    pub(crate) fn write(&self, index: usize, out: &mut TensorBuffers) -> LayerKeys {
        let name = |suffix: &str| crate::tensors::tensor_name(index, suffix);
        let row_bytes = self.geometry.field_len().div_ceil(8);
        let weights = pack_rows(&self.weights, self.words_per_row(), row_bytes);
        out.push(name("weights"), Dtype::U8, vec![self.out_channels(), row_bytes], weights);
        let thresholds = self.thresholds.iter().flat_map(|t| t.to_le_bytes()).collect();
        out.push(name("thresholds"), Dtype::I32, vec![self.out_channels()], thresholds);
        LayerKeys {
            out_channels: Some(self.out_channels() as u32),
            pad_value: Some(self.pad_value as u32),
            ..self.geometry.keys(true)
        }
    }

    /// The input bits some receptive field holds.
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        self.geometry.wires_read(0..self.geometry.field_len())
    }

    /// One binary group per position over its in-bounds inputs; the padded inputs, whose contribution to the dot
    /// product is known, fold into each row's threshold on the count of matches ([`match_threshold`]). A position
    /// with no input in bounds is a constant per channel.
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        let g = &self.geometry;
        let n = g.field_len();
        g.unroll(self.out_channels(), |p| {
            let (valid, padded): (Vec<usize>, Vec<usize>) = (0..n).partition(|&k| g.wire(p, k).is_some());
            let pad_sums = (0..self.out_channels()).map(|o| {
                let sum: i64 = padded.iter().map(|&k| if self.weight(o, k) { 1 } else { -1 }).sum();
                sum * self.pad_value as i64
            });
            if valid.is_empty() {
                let constant = |(sum, &t): (i64, &i32)| if sum >= t as i64 { TRUE } else { FALSE };
                return pad_sums.zip(&self.thresholds).map(constant).collect();
            }
            let thresholds =
                pad_sums.zip(&self.thresholds).map(|(sum, &t)| match_threshold(t, sum, valid.len())).collect();
            let words = valid.len().div_ceil(64);
            let mut weights = vec![0u64; self.out_channels() * words];
            for (o, row) in weights.chunks_exact_mut(words).enumerate() {
                for (j, &k) in valid.iter().enumerate() {
                    row[j / 64] |= (self.weight(o, k) as u64) << (j % 64);
                }
            }
            let ins = valid.iter().map(|&k| g.signal(p, k, wire)).collect();
            graph.push_group(ins, weights, thresholds)
        })
    }

    /// Adds the weights of every position and the bytes in a file (a packed weight row and an i32 threshold per
    /// channel).
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        stats.binary_weights += self.width() * self.geometry.field_len();
        stats.bytes += self.out_channels() * (self.geometry.field_len().div_ceil(8) + 4);
    }

    /// Compiler nodes before optimization: a row per channel and position, counted once per 64 weights, since
    /// every position's group holds its own copy of the weights.
    pub(crate) fn node_bound(&self) -> usize {
        self.width().saturating_mul(self.words_per_row())
    }
}

/// The threshold on the number of matches among `n_valid` in-bounds inputs equivalent to `dot >= threshold`, when
/// the padded inputs add `pad_sum` to the dot product: with `m` matches the in-bounds inputs add `2m - n_valid`, so
/// the row is 1 when `m >= ceil((threshold - pad_sum + n_valid) / 2)`. Clamped to `0..=n_valid + 1` (always and
/// never); a compilable network has fewer than 2^30 input bits per layer ([`crate::MAX_NODES`]), so it fits `i32`.
fn match_threshold(threshold: i32, pad_sum: i64, n_valid: usize) -> i32 {
    let twice = threshold as i64 - pad_sum + n_valid as i64;
    let ceil_half = (twice + 1).div_euclid(2);
    ceil_half.clamp(0, n_valid as i64 + 1) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::conv::testing::{self, layer_outputs};
    use crate::{Layer, SplitMix64};

    fn layer(g: Geometry, weights: &[u8], thresholds: Vec<i32>, pad_value: u8) -> Layer {
        Layer::ConvBinary(ConvBinaryLayer::from_unpacked(g, weights, thresholds, pad_value).unwrap())
    }

    #[test]
    fn padding_adds_pad_value_times_the_weight() {
        // Row 1 0 1 (+1 -1 +1), windows of three columns, one column of padding each side. Channel 0 has weights
        // + + + and threshold 1; channel 1 has - + - and threshold -1. With pad_value 1 the dots are 1 1 1 and
        // 1 -3 1; with pad_value 0 they are 0 1 0 and 2 -3 2.
        let g = Geometry::new([1, 1, 3], [1, 3], [1, 1], [0, 1]).unwrap();
        let weights = [1, 1, 1, 0, 1, 0];
        assert_eq!(layer_outputs(layer(g, &weights, vec![1, -1], 1), &[vec![1, 0, 1]]), [[1, 1, 1, 1, 0, 1]]);
        assert_eq!(layer_outputs(layer(g, &weights, vec![1, -1], 0), &[vec![1, 0, 1]]), [[0, 1, 0, 1, 0, 1]]);
    }

    #[test]
    fn positions_of_padding_only_are_constants() {
        // One pixel, a 1 x 1 kernel and padding 1: eight of the nine positions read only padding.
        let g = Geometry::new([1, 1, 1], [1, 1], [1, 1], [1, 1]).unwrap();
        let ring = |centre: u8| [1, 1, 1, 1, centre, 1, 1, 1, 1];
        assert_eq!(layer_outputs(layer(g, &[1], vec![1], 1), &[vec![0], vec![1]]), [ring(0), ring(1)]);
        assert_eq!(layer_outputs(layer(g, &[1], vec![0], 0), &[vec![0], vec![1]]), [ring(0), ring(1)]);
        // Threshold 1 with zero padding: the padded positions' dot 0 misses it.
        let alone = |centre: u8| [0, 0, 0, 0, centre, 0, 0, 0, 0];
        assert_eq!(layer_outputs(layer(g, &[1], vec![1], 0), &[vec![0], vec![1]]), [alone(0), alone(1)]);
    }

    #[test]
    fn random_layers_match_the_plain_model() {
        let mut rng = SplitMix64::new(41);
        for round in 0..40 {
            let g = testing::random_geometry(&mut rng, true);
            let (channels, n, pad_value) = (1 + (rng.next_u64() % 3) as usize, g.field_len(), (round % 2) as u8);
            let weights: Vec<u8> = (0..channels * n).map(|_| (rng.next_u64() & 1) as u8).collect();
            let span = 2 * n as u64 + 3;
            let thresholds: Vec<i32> = (0..channels).map(|_| (rng.next_u64() % span) as i32 - n as i32 - 1).collect();
            let l = ConvBinaryLayer::from_unpacked(g, &weights, thresholds.clone(), pad_value).unwrap();
            assert_eq!(
                (l.out_channels(), l.unpacked_weights(), l.thresholds()),
                (channels, weights.clone(), &thresholds[..])
            );
            assert_eq!(l.pad_value(), pad_value);
            let inputs = testing::random_bits(&mut rng, 70, g.input_width());
            let got = layer_outputs(Layer::ConvBinary(l), &inputs);
            for (x, out) in inputs.iter().zip(got) {
                let want = testing::reference(&g, x, |field| {
                    (0..channels)
                        .map(|o| {
                            let dot: i32 = (field.iter().zip(&weights[o * n..(o + 1) * n]))
                                .map(|(s, &w)| {
                                    let s = match s {
                                        Some(bit) => 2 * *bit as i32 - 1,
                                        None => pad_value as i32,
                                    };
                                    s * (2 * w as i32 - 1)
                                })
                                .sum();
                            (dot >= thresholds[o]) as u8
                        })
                        .collect()
                });
                assert_eq!(out, want, "{g:?}, pad_value {pad_value}");
            }
        }
    }

    #[test]
    fn match_thresholds_fold_the_padding() {
        // dot = 2m - n + pad_sum >= t  <=>  m >= ceil((t - pad_sum + n) / 2).
        for n in 1..6usize {
            for pad_sum in -3..=3i64 {
                for t in -12..=12i32 {
                    let folded = match_threshold(t, pad_sum, n);
                    for m in 0..=n as i64 {
                        assert_eq!(m >= folded as i64, 2 * m - n as i64 + pad_sum >= t as i64, "{n} {pad_sum} {t} {m}");
                    }
                }
            }
        }
        assert_eq!(match_threshold(i32::MIN, 0, 3), 0);
        assert_eq!(match_threshold(i32::MAX, 0, 3), 4);
    }

    #[test]
    fn bad_weights_are_rejected() {
        let g = Geometry::new([1, 2, 2], [2, 1], [1, 1], [0, 0]).unwrap();
        let message = |weights: &[u8], thresholds: Vec<i32>, pad_value| match ConvBinaryLayer::from_unpacked(
            g, weights, thresholds, pad_value,
        ) {
            Err(Error::Network(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(message(&[1, 0], vec![0], 2).contains("pad_value 2, expected 0 or 1"));
        assert!(message(&[], vec![], 1).contains("expected at least one output channel"));
        assert!(message(&[1, 0, 1], vec![0], 1).contains("1 channels of 2 weights need 2 weights, got 3"));
        assert!(message(&[1, 3], vec![0], 1).contains("value 3, expected 0 or 1"));
        let e = ConvBinaryLayer::new(g, vec![0b100], vec![0], 1).unwrap_err();
        assert!(e.to_string().contains("bits set beyond its 2 weights"), "{e}");
    }
}
