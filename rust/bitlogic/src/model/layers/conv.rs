//! What the spatial layer kinds (`conv_gates`, `conv_luts`, `conv_binary`, `or_pool`) share: the [`Geometry`] of a
//! sliding window over a `[C, H, W]` input, the receptive field of each output position, the description keys that
//! name it, the leaves of the convolutions' trees and tables, and the unrolling of a layer position by position.
//!
//! Input bit `(c, y, x)` has index `(c*H + y)*W + x`; output bit `(o, y', x')` has index `(o*H' + y')*W' + x'`.
//! Output position `p = y'*W' + x'` reads input row `y'*sh - ph + dy` and column `x'*sw - pw + dx` for `dy < kh`,
//! `dx < kw`; a row or column outside the input is padding. Field index `k = (c*kh + dy)*kw + dx` numbers the
//! `C*kh*kw` inputs of one position (torch's `weight[o, c, dy, dx]` order).

use safetensors::tensor::Dtype;

use crate::error::{Error, Result};
use crate::ir::{Signal, FALSE};
use crate::limits::MAX_WIDTH;
use crate::tensors::{le_values, LayerEntry, LayerKeys, TensorBuffers, Tensors};

/// The window of a spatial layer: input shape, kernel size, stride and padding, and the output size they give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    input_shape: [usize; 3],
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    output_size: [usize; 2],
}

/// The product of `factors`, or an error naming `what` when it exceeds [`MAX_WIDTH`] (every count of the format is
/// bounded by it, FORMAT.md section 3).
pub(crate) fn bounded_product(factors: &[usize], what: &str) -> Result<usize> {
    let product = factors.iter().try_fold(1usize, |n, &f| n.checked_mul(f)).filter(|&n| n <= MAX_WIDTH);
    product.ok_or_else(|| Error::Network(format!("{what}: the product of {factors:?} exceeds the maximum {MAX_WIDTH}")))
}

impl Geometry {
    /// Checks and builds a geometry: every dimension, kernel size and stride at least 1, the kernel no larger than
    /// the padded input, and `C*H*W`, `C*kh*kw` and `H'*W'` at most [`MAX_WIDTH`].
    pub fn new(
        input_shape: [usize; 3],
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Self> {
        Self::checked("spatial layer", input_shape, kernel_size, stride, padding)
    }

    /// [`Geometry::new`] with errors naming `what` (the layer kind).
    pub(crate) fn checked(
        what: &str,
        input_shape: [usize; 3],
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Self> {
        for (key, values) in [("input_shape", &input_shape[..]), ("kernel_size", &kernel_size), ("stride", &stride)] {
            if values.contains(&0) {
                return Err(Error::Network(format!("{what}: {key} {values:?}, expected every value >= 1")));
            }
        }
        let [c, h, w] = input_shape;
        bounded_product(&input_shape, &format!("{what}: input_shape (C*H*W)"))?;
        bounded_product(&[c, kernel_size[0], kernel_size[1]], &format!("{what}: the receptive field (C*kh*kw)"))?;
        let mut output_size = [0; 2];
        for (axis, size) in [h, w].into_iter().enumerate() {
            let padded = padding[axis].checked_mul(2).and_then(|p| p.checked_add(size));
            let Some(room) = padded.and_then(|padded| padded.checked_sub(kernel_size[axis])) else {
                return Err(Error::Network(format!(
                    "{what}: kernel_size {kernel_size:?} does not fit the input {h} x {w} with padding {padding:?} \
                     (expected a kernel no larger than the padded input)"
                )));
            };
            output_size[axis] = room / stride[axis] + 1;
        }
        bounded_product(&output_size, &format!("{what}: the output positions (H'*W')"))?;
        Ok(Self { input_shape, kernel_size, stride, padding, output_size })
    }

    /// `[C, H, W]` of the input.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }
    /// `[kh, kw]`.
    pub fn kernel_size(&self) -> [usize; 2] {
        self.kernel_size
    }
    /// `[sh, sw]`.
    pub fn stride(&self) -> [usize; 2] {
        self.stride
    }
    /// `[ph, pw]`.
    pub fn padding(&self) -> [usize; 2] {
        self.padding
    }
    /// `[H', W']`, the output positions along each axis.
    pub fn output_size(&self) -> [usize; 2] {
        self.output_size
    }

    /// `C*H*W`, the input width.
    pub(crate) fn input_width(&self) -> usize {
        self.input_shape.iter().product()
    }
    /// `C`.
    pub(crate) fn channels(&self) -> usize {
        self.input_shape[0]
    }
    /// `H'*W'`, the output positions.
    pub(crate) fn positions(&self) -> usize {
        self.output_size[0] * self.output_size[1]
    }
    /// `kh*kw`, the window of one channel.
    pub(crate) fn window(&self) -> usize {
        self.kernel_size[0] * self.kernel_size[1]
    }
    /// `C*kh*kw`, the inputs of one position.
    pub(crate) fn field_len(&self) -> usize {
        self.channels() * self.window()
    }
    /// The field index `(c*kh + dy)*kw + dx` of a leaf `[c, dy, dx]`.
    pub(crate) fn field_index(&self, [c, dy, dx]: [u32; 3]) -> usize {
        (c as usize * self.kernel_size[0] + dy as usize) * self.kernel_size[1] + dx as usize
    }

    /// The input bit that field index `k` of output position `p` reads, or `None` for padding.
    pub(crate) fn wire(&self, p: usize, k: usize) -> Option<u32> {
        let ([_, h, w], [kh, kw]) = (self.input_shape, self.kernel_size);
        let (c, dy, dx) = (k / (kh * kw), k / kw % kh, k % kw);
        let (oy, ox) = (p / self.output_size[1], p % self.output_size[1]);
        // y = y'*sh - ph + dy, computed without going below 0 (it stays below H + 2*ph, so it cannot overflow).
        let y = (oy * self.stride[0] + dy).checked_sub(self.padding[0]).filter(|&y| y < h)?;
        let x = (ox * self.stride[1] + dx).checked_sub(self.padding[1]).filter(|&x| x < w)?;
        Some(((c * h + y) * w + x) as u32)
    }

    /// The signal of field index `k` at position `p`: the input wire through `wire`, FALSE for padding.
    pub(crate) fn signal(&self, p: usize, k: usize, wire: &impl Fn(u32) -> Signal) -> Signal {
        self.wire(p, k).map_or(FALSE, wire)
    }

    /// The input bits the field indices `fields` read over all positions, ascending and once each.
    pub(crate) fn wires_read(&self, fields: impl Iterator<Item = usize> + Clone) -> Vec<u32> {
        let mut read = vec![false; self.input_width()];
        for p in 0..self.positions() {
            for w in fields.clone().filter_map(|k| self.wire(p, k)) {
                read[w as usize] = true;
            }
        }
        (0..read.len() as u32).filter(|&w| read[w as usize]).collect()
    }

    /// The input bits that `leaves` read at some position, ascending and once each.
    pub(crate) fn wires_of_leaves(&self, leaves: &[[u32; 3]]) -> Vec<u32> {
        let mut fields: Vec<usize> = leaves.iter().map(|&l| self.field_index(l)).collect();
        fields.sort_unstable();
        fields.dedup();
        self.wires_read(fields.into_iter())
    }

    /// The output of a layer of `channels` output channels, computed position by position: `at(p)` gives the
    /// signals of position `p`, one per channel, and channel `o` of position `p` is output bit `o*H'*W' + p`.
    pub(crate) fn unroll(&self, channels: usize, mut at: impl FnMut(usize) -> Vec<Signal>) -> Vec<Signal> {
        let positions = self.positions();
        let mut out = vec![FALSE; channels * positions];
        for p in 0..positions {
            for (o, s) in at(p).into_iter().enumerate() {
                out[o * positions + p] = s;
            }
        }
        out
    }

    /// The layer must read exactly the `C*H*W` bits of its input.
    pub(crate) fn check_input_width(&self, kind: &str, index: usize, input_width: usize) -> Result<()> {
        if self.input_width() != input_width {
            return Err(Error::Network(format!(
                "layer {index} ({kind}): input_shape {:?} holds {} bits, but the layer's input has {input_width} bits",
                self.input_shape,
                self.input_width()
            )));
        }
        Ok(())
    }

    /// The description keys of the geometry; `padding` only for the convolutions.
    pub(crate) fn keys(&self, with_padding: bool) -> LayerKeys {
        let pair = |v: [usize; 2]| Some(v.map(|x| x as u32));
        LayerKeys {
            input_shape: Some(self.input_shape.map(|x| x as u32)),
            kernel_size: pair(self.kernel_size),
            stride: pair(self.stride),
            padding: if with_padding { pair(self.padding) } else { None },
            ..LayerKeys::default()
        }
    }
}

/// Reads the geometry of a spatial layer of kind `kind` from its description, after checking that exactly the keys
/// of the kind are present (`extra`, besides the geometry's): convolutions (`convolution`) take `padding` and
/// `out_channels`, `or_pool` neither. Returns the geometry and the number of output channels (`C` for `or_pool`),
/// checked against the description's `width` and the width of the layer's input.
pub(crate) fn read_geometry(
    entry: &LayerEntry,
    kind: &str,
    convolution: bool,
    extra: &[&str],
) -> Result<(Geometry, usize)> {
    let mut required = vec!["input_shape", "kernel_size", "stride"];
    if convolution {
        required.extend(["padding", "out_channels"]);
    }
    required.extend(extra);
    entry.check_keys_of(kind, &required)?;
    let keys = &entry.keys;
    let pair = |v: Option<[u32; 2]>| v.unwrap_or_default().map(|x| x as usize);
    let shape = keys.input_shape.unwrap_or_default().map(|x| x as usize);
    let geometry = Geometry::checked(
        &format!("{kind} layer"),
        shape,
        pair(keys.kernel_size),
        pair(keys.stride),
        pair(keys.padding),
    )?;
    geometry.check_input_width(kind, entry.index, entry.input_width)?;
    let channels = if convolution { keys.out_channels.unwrap_or(0) as usize } else { geometry.channels() };
    if channels == 0 {
        return Err(entry.bad_key("out_channels", 0, ">= 1"));
    }
    let width = bounded_product(&[channels, geometry.positions()], &format!("{kind} layer: the output width"))?;
    if width != entry.width {
        return Err(entry.bad_key(
            "width",
            entry.width,
            &format!("{width}: {channels} channels of {:?} positions", geometry.output_size),
        ));
    }
    Ok((geometry, channels))
}

/// Checks the leaves of a convolution of kind `kind`: `leaves` must be `channels` rows of `per_channel` leaves, each
/// `[c, dy, dx]` inside the receptive field. Returns `channels` (the length divided by `per_channel`).
pub(crate) fn check_leaves(kind: &str, geometry: &Geometry, leaves: &[[u32; 3]], per_channel: usize) -> Result<usize> {
    if leaves.is_empty() || !leaves.len().is_multiple_of(per_channel) {
        return Err(Error::Network(format!(
            "{kind} layer: {} leaves, expected a positive multiple of {per_channel} (one row per output channel)",
            leaves.len()
        )));
    }
    let channels = leaves.len() / per_channel;
    bounded_product(&[leaves.len(), 3], &format!("{kind} layer: the leaves tensor"))?;
    bounded_product(&[channels, geometry.positions()], &format!("{kind} layer: the output width (O*H'*W')"))?;
    let [c, ..] = geometry.input_shape;
    let [kh, kw] = geometry.kernel_size;
    let fits = |&[lc, dy, dx]: &[u32; 3]| (lc as usize) < c && (dy as usize) < kh && (dx as usize) < kw;
    if let Some(j) = leaves.iter().position(|leaf| !fits(leaf)) {
        return Err(Error::Network(format!(
            "{kind} layer: leaf {} of channel {} is {:?}, expected [c, dy, dx] with c < {c}, dy < {kh}, dx < {kw}",
            j % per_channel,
            j / per_channel,
            leaves[j]
        )));
    }
    Ok(channels)
}

/// Reads tensor `layers.{i}.leaves` (u32 `[O, per_channel, 3]`).
pub(crate) fn read_leaves(
    entry: &LayerEntry,
    tensors: &mut Tensors<'_>,
    channels: usize,
    per_channel: usize,
) -> Result<Vec<[u32; 3]>> {
    let bytes = tensors.get(&entry.tensor("leaves"), Dtype::U32, &[channels, per_channel, 3])?;
    let values = le_values(bytes, u32::from_le_bytes);
    Ok(values.chunks_exact(3).map(|l| [l[0], l[1], l[2]]).collect())
}

/// Appends tensor `layers.{index}.leaves`.
pub(crate) fn write_leaves(index: usize, leaves: &[[u32; 3]], per_channel: usize, out: &mut TensorBuffers) {
    let bytes = leaves.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let shape = vec![leaves.len() / per_channel, per_channel, 3];
    out.push(crate::tensors::tensor_name(index, "leaves"), Dtype::U32, shape, bytes);
}

/// What the spatial kinds' tests share: evaluation of one layer through [`crate::Network`] on every path, and a plain
/// model of the receptive field written from FORMAT.md 3.7 (signed arithmetic, no code shared with [`Geometry`]).
#[cfg(test)]
pub(crate) mod testing {
    use super::Geometry;
    use crate::{Encoder, EvalOptions, Input, Isa, Layer, Matrix, Network, SplitMix64};

    /// A network of the bits encoder, `layers` and one class per output bit, so that the scores are the output bits.
    pub(crate) fn network(input_width: usize, layers: Vec<Layer>) -> Network {
        let width = layers.last().map_or(input_width, Layer::width);
        Network::new(Encoder::bits(input_width).unwrap(), layers, width, 1.0).unwrap()
    }

    /// The output bits of `net` for every sample of `inputs` (rows of 0/1), the same on every instruction-set path,
    /// optimized or not, and after a round trip through the file's bytes.
    pub(crate) fn outputs(net: &Network, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let cols = net.num_inputs();
        let flat: Vec<u8> = inputs.concat();
        let input = Input::Bits(Matrix::c_order(&flat, inputs.len(), cols).unwrap());
        let again = Network::from_bytes(&net.to_bytes().unwrap()).unwrap();
        assert_eq!(&again, net, "the round trip through the file changes the network");
        let want = net.scores(input, &EvalOptions::default()).unwrap();
        for isa in Isa::supported() {
            for optimize in [true, false] {
                let options = EvalOptions { threads: Some(1), isa: Some(isa), optimize };
                assert_eq!(net.scores(input, &options).unwrap(), want, "{isa:?}, optimize {optimize}");
                assert_eq!(again.scores(input, &options).unwrap(), want, "read back: {isa:?}, optimize {optimize}");
            }
        }
        want.chunks_exact(net.num_classes()).map(|row| row.iter().map(|&s| s as u8).collect()).collect()
    }

    /// The bits of layer `layer` alone for `inputs`.
    pub(crate) fn layer_outputs(layer: Layer, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let width = inputs[0].len();
        outputs(&network(width, vec![layer]), inputs)
    }

    /// The receptive field of output position `(y', x')` over `input` (C order `[C, H, W]`), in field-index order:
    /// `None` for padding.
    pub(crate) fn field(g: &Geometry, input: &[u8], oy: usize, ox: usize) -> Vec<Option<u8>> {
        let ([c, h, w], [kh, kw], [sh, sw], [ph, pw]) = (g.input_shape(), g.kernel_size(), g.stride(), g.padding());
        let mut out = Vec::new();
        for ch in 0..c {
            for dy in 0..kh {
                for dx in 0..kw {
                    let y = (oy * sh) as i64 - ph as i64 + dy as i64;
                    let x = (ox * sw) as i64 - pw as i64 + dx as i64;
                    let inside = (0..h as i64).contains(&y) && (0..w as i64).contains(&x);
                    out.push(inside.then(|| input[(ch * h + y as usize) * w + x as usize]));
                }
            }
        }
        out
    }

    /// A layer's output for one input, `channel(field)` giving the `O` bits of one position, laid out `[O, H', W']`.
    pub(crate) fn reference(g: &Geometry, input: &[u8], channel: impl Fn(&[Option<u8>]) -> Vec<u8>) -> Vec<u8> {
        let [oh, ow] = g.output_size();
        let per_position: Vec<Vec<u8>> = (0..oh * ow).map(|p| channel(&field(g, input, p / ow, p % ow))).collect();
        let channels = per_position[0].len();
        (0..channels).flat_map(|o| per_position.iter().map(move |bits| bits[o])).collect()
    }

    /// `rows` random samples of `width` bits.
    pub(crate) fn random_bits(rng: &mut SplitMix64, rows: usize, width: usize) -> Vec<Vec<u8>> {
        (0..rows).map(|_| (0..width).map(|_| (rng.next_u64() & 1) as u8).collect()).collect()
    }

    /// A small random geometry: odd and even sizes, strides 1 and 2, padding up to 2 (0 without `padded`).
    pub(crate) fn random_geometry(rng: &mut SplitMix64, padded: bool) -> Geometry {
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        loop {
            let shape = [1 + below(3), 1 + below(6), 1 + below(6)];
            let kernel = [1 + below(3), 1 + below(3)];
            let stride = [1 + below(2), 1 + below(2)];
            let padding = if padded { [below(3), below(3)] } else { [0, 0] };
            if let Ok(g) = Geometry::new(shape, kernel, stride, padding) {
                return g;
            }
        }
    }

    /// Random leaves `[c, dy, dx]` inside the receptive field of `g`.
    pub(crate) fn random_leaves(rng: &mut SplitMix64, g: &Geometry, count: usize) -> Vec<[u32; 3]> {
        let ([c, ..], [kh, kw]) = (g.input_shape(), g.kernel_size());
        let mut below = |n: usize| (rng.next_u64() % n as u64) as u32;
        (0..count).map(|_| [below(c), below(kh), below(kw)]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_follows_the_formula() {
        let g = Geometry::new([2, 7, 5], [3, 2], [2, 2], [1, 0]).unwrap();
        // H' = floor((7 + 2 - 3) / 2) + 1 = 4, W' = floor((5 - 2) / 2) + 1 = 2.
        assert_eq!(g.output_size(), [4, 2]);
        assert_eq!((g.input_width(), g.positions(), g.field_len()), (70, 8, 12));
        assert_eq!(g.input_shape(), [2, 7, 5]);
        assert_eq!((g.kernel_size(), g.stride(), g.padding()), ([3, 2], [2, 2], [1, 0]));
        // A kernel as large as the padded input leaves one position.
        assert_eq!(Geometry::new([1, 1, 1], [3, 3], [1, 1], [1, 1]).unwrap().output_size(), [1, 1]);
    }

    #[test]
    fn receptive_fields_match_the_plain_model() {
        let mut rng = crate::SplitMix64::new(11);
        for _ in 0..200 {
            let g = testing::random_geometry(&mut rng, true);
            let input: Vec<u8> = (0..g.input_width()).map(|i| (i % 251) as u8).collect();
            let [_, ow] = g.output_size();
            for p in 0..g.positions() {
                let plain = testing::field(&g, &input, p / ow, p % ow);
                let ours: Vec<Option<u8>> =
                    (0..g.field_len()).map(|k| g.wire(p, k).map(|w| input[w as usize])).collect();
                assert_eq!(ours, plain, "{g:?}, position {p}");
            }
        }
    }

    #[test]
    fn bad_geometries_are_rejected_with_what_was_expected() {
        let message = |r: Result<Geometry>| match r {
            Err(Error::Network(m)) => m,
            other => panic!("{other:?}"),
        };
        let m = message(Geometry::new([1, 0, 3], [1, 1], [1, 1], [0, 0]));
        assert!(m.contains("input_shape [1, 0, 3]") && m.contains(">= 1"), "{m}");
        let m = message(Geometry::new([1, 3, 3], [0, 1], [1, 1], [0, 0]));
        assert!(m.contains("kernel_size"), "{m}");
        let m = message(Geometry::new([1, 3, 3], [1, 1], [1, 0], [0, 0]));
        assert!(m.contains("stride"), "{m}");
        let m = message(Geometry::new([1, 3, 3], [4, 3], [1, 1], [0, 0]));
        assert!(m.contains("kernel_size [4, 3] does not fit"), "{m}");
        let m = message(Geometry::new([1 << 16, 1 << 16, 1], [1, 1], [1, 1], [0, 0]));
        assert!(m.contains("C*H*W") && m.contains("exceeds"), "{m}");
        let m = message(Geometry::new([4, 1, 1], [1 << 16, 1 << 16], [1, 1], [1 << 16, 1 << 16]));
        assert!(m.contains("C*kh*kw"), "{m}");
        let m = message(Geometry::new([1, 1, 1], [1, 1], [1, 1], [1 << 20, 1 << 20]));
        assert!(m.contains("H'*W'"), "{m}");
        let m = message(Geometry::new([1, 1, 1], [1, 1], [1, 1], [usize::MAX, 0]));
        assert!(m.contains("does not fit"), "{m}");
    }
}
