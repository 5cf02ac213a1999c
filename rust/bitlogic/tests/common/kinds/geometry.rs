//! The geometry the spatial kinds share (FORMAT.md 3.3, format 1.2): the input's `[C, H, W]`, the kernel, stride
//! and padding, the output size, and the receptive field of an output position, read one input at a time.

use bitlogic::Geometry;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// The shape of a spatial layer's input and the window it slides over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefGeometry {
    /// `[C, H, W]`: input bit `(c, y, x)` is bit `(c*H + y)*W + x`.
    pub input_shape: [usize; 3],
    /// `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[ph, pw]`; always zero for `or_pool`.
    pub padding: [usize; 2],
}

impl RefGeometry {
    /// The number of input bits, `C*H*W`.
    pub fn inputs(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// `[H', W']`: `floor((H + 2p - k) / s) + 1` along each axis.
    pub fn output_size(&self) -> [usize; 2] {
        let [_, h, w] = self.input_shape;
        let along =
            |n: usize, axis: usize| (n + 2 * self.padding[axis] - self.kernel_size[axis]) / self.stride[axis] + 1;
        [along(h, 0), along(w, 1)]
    }

    /// The number of output positions, `H'*W'`.
    pub fn positions(&self) -> usize {
        let [h, w] = self.output_size();
        h * w
    }

    /// Input bit `(c, y, x)` of the receptive field of output position `(oy, ox)` at kernel offset `(dy, dx)`:
    /// `y = oy*sh - ph + dy`, `x = ox*sw - pw + dx`, or `None` where that is outside the image (padding).
    pub fn read(&self, x: &[bool], c: usize, [oy, ox]: [usize; 2], [dy, dx]: [usize; 2]) -> Option<bool> {
        let [_, h, w] = self.input_shape;
        let row = (oy * self.stride[0] + dy).checked_sub(self.padding[0]).filter(|&y| y < h)?;
        let col = (ox * self.stride[1] + dx).checked_sub(self.padding[1]).filter(|&x| x < w)?;
        Some(x[(c * h + row) * w + col])
    }

    /// Every output position `(oy, ox)` with its output bit's offset within a channel, `oy*W' + ox`, row by row.
    pub fn output_positions(&self) -> impl Iterator<Item = ([usize; 2], usize)> {
        let [h, w] = self.output_size();
        (0..h).flat_map(move |oy| (0..w).map(move |ox| ([oy, ox], oy * w + ox)))
    }

    /// Every kernel offset `(dy, dx)`, row by row.
    pub fn offsets(&self) -> impl Iterator<Item = [usize; 2]> {
        let [kh, kw] = self.kernel_size;
        (0..kh).flat_map(move |dy| (0..kw).map(move |dx| [dy, dx]))
    }

    /// The description keys of the geometry; `padding` only for the conv kinds.
    pub fn keys(&self, with_padding: bool) -> Map<String, Value> {
        let mut keys = Map::new();
        keys.insert("input_shape".into(), json!(self.input_shape));
        keys.insert("kernel_size".into(), json!(self.kernel_size));
        keys.insert("stride".into(), json!(self.stride));
        if with_padding {
            keys.insert("padding".into(), json!(self.padding));
        }
        keys
    }

    /// The engine's geometry, through its public constructor.
    pub fn engine(&self) -> Geometry {
        Geometry::new(self.input_shape, self.kernel_size, self.stride, self.padding).expect("valid geometry")
    }

    pub fn from_engine(geometry: &Geometry) -> RefGeometry {
        RefGeometry {
            input_shape: geometry.input_shape(),
            kernel_size: geometry.kernel_size(),
            stride: geometry.stride(),
            padding: geometry.padding(),
        }
    }
}

/// One axis of a window over `n` inputs: `(kernel, stride, padding)` with padding up to `max_padding` and the
/// kernel within the padded extent (`k <= n + 2p`, so the output has at least one position).
fn axis_strategy(n: usize, max_padding: usize) -> impl Strategy<Value = (usize, usize, usize)> {
    (0..=max_padding).prop_flat_map(move |p| (1..=(n + 2 * p).min(4), 1usize..=3, Just(p)))
}

/// A window over `input_shape`: kernel 1..=4, stride 1..=3, padding 0..=2 (none for pools, `max_padding` 0).
pub fn geometry_strategy(input_shape: [usize; 3], max_padding: usize) -> impl Strategy<Value = RefGeometry> {
    let [_, h, w] = input_shape;
    (axis_strategy(h, max_padding), axis_strategy(w, max_padding)).prop_map(move |((kh, sh, ph), (kw, sw, pw))| {
        RefGeometry { input_shape, kernel_size: [kh, kw], stride: [sh, sw], padding: [ph, pw] }
    })
}

/// A shape `[C, H, W]` of exactly `inputs` bits: `C` a divisor up to 4, `H` any divisor of the rest.
pub fn shape_of_width(inputs: usize) -> impl Strategy<Value = [usize; 3]> {
    let divisors = |n: usize, max: usize| (1..=n.min(max)).filter(|d| n.is_multiple_of(*d)).collect::<Vec<_>>();
    prop::sample::select(divisors(inputs, 4)).prop_flat_map(move |c| {
        let rest = inputs / c;
        prop::sample::select(divisors(rest, rest)).prop_map(move |h| [c, h, rest / h])
    })
}

/// An image shape: 1..=4 channels of 1..=9 x 1..=9 pixels.
pub fn image_shape() -> impl Strategy<Value = [usize; 3]> {
    [1usize..=4, 1usize..=9, 1usize..=9]
}
