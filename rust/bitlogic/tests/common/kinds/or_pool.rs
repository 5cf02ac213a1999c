//! OR pooling (`or_pool`, format 1.2): max pooling on bits, each output the OR of its window in one channel, no
//! padding (FORMAT.md 3.3).

use bitlogic::{Layer, OrPoolLayer};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::super::RawTensor;
use super::{geometry_strategy, LayerModel, RefGeometry};

/// An `or_pool` layer: its geometry, whose padding is zero.
#[derive(Clone, Debug, PartialEq)]
pub struct RefOrPool {
    pub geometry: RefGeometry,
}

impl RefOrPool {
    pub fn from_engine(layer: &OrPoolLayer) -> RefOrPool {
        let geometry = RefGeometry {
            input_shape: layer.input_shape(),
            kernel_size: layer.kernel_size(),
            stride: layer.stride(),
            padding: [0, 0],
        };
        assert_eq!(layer.output_size(), geometry.output_size(), "the output size of {geometry:?}");
        RefOrPool { geometry }
    }
}

impl LayerModel for RefOrPool {
    fn kind(&self) -> &'static str {
        "or_pool"
    }

    fn width(&self) -> usize {
        self.geometry.input_shape[0] * self.geometry.positions()
    }

    /// Output `(c, y', x')`, bit `c*H'*W' + y'*W' + x'`, is the OR of the window's inputs in channel `c`.
    fn forward(&self, x: &[bool]) -> Vec<bool> {
        assert_eq!(x.len(), self.geometry.inputs());
        let mut out = vec![false; self.width()];
        let positions = self.geometry.positions();
        for c in 0..self.geometry.input_shape[0] {
            for (at, offset) in self.geometry.output_positions() {
                let window = self.geometry.offsets().map(|d| self.geometry.read(x, c, at, d).expect("no padding"));
                out[c * positions + offset] = window.fold(false, |any, bit| any | bit);
            }
        }
        out
    }

    fn build(&self, _pack_here: bool) -> Layer {
        let g = &self.geometry;
        Layer::OrPool(OrPoolLayer::new(g.input_shape, g.kernel_size, g.stride).expect("valid or_pool layer"))
    }

    fn write(&self, _prefix: &str, _tensors: &mut Vec<RawTensor>) -> Map<String, Value> {
        self.geometry.keys(false)
    }
}

/// An `or_pool` layer over `input_shape`: kernel 1..=4 within the image, stride 1..=3.
pub fn or_pool_strategy(input_shape: [usize; 3]) -> impl Strategy<Value = RefOrPool> {
    geometry_strategy(input_shape, 0).prop_map(|geometry| RefOrPool { geometry })
}
