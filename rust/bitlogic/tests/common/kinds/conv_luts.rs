//! Convolutional lookup tables (`conv_luts`, format 1.2): per output channel, one n-input table over the receptive
//! field, shared by every position (FORMAT.md 3.3).

use bitlogic::{ConvLutLayer, Layer};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::super::{pack_bytes, RawTensor};
use super::{
    geometry_strategy, leaf_bit, leaf_strategy, leaves_tensor, leaves_u32, leaves_usize, look_up, table_strategy,
    LayerModel, RefGeometry,
};

/// One output channel's table: input `j` (address bit `j`) reads `leaves[j] = [c, dy, dx]`; `2^n` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct RefConvTable {
    pub leaves: Vec<[usize; 3]>,
    pub entries: Vec<bool>,
}

/// A `conv_luts` layer: one table of `arity` inputs per output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct RefConvLuts {
    pub geometry: RefGeometry,
    pub arity: usize,
    pub tables: Vec<RefConvTable>,
}

impl RefConvLuts {
    pub fn from_engine(layer: &ConvLutLayer) -> RefConvLuts {
        let n = layer.arity();
        let entries = layer.unpacked_tables();
        let tables = layer
            .leaves()
            .chunks(n)
            .zip(entries.chunks(1 << n))
            .map(|(leaves, entries)| RefConvTable {
                leaves: leaves_usize(leaves),
                entries: entries.iter().map(|&e| e == 1).collect(),
            })
            .collect();
        RefConvLuts { geometry: RefGeometry::from_engine(layer.geometry()), arity: n, tables }
    }
}

impl LayerModel for RefConvLuts {
    fn kind(&self) -> &'static str {
        "conv_luts"
    }

    fn width(&self) -> usize {
        self.tables.len() * self.geometry.positions()
    }

    /// Output `(o, y', x')`, bit `o*H'*W' + y'*W' + x'`, is channel `o`'s entry at the address of its leaves there
    /// (padded leaves read 0).
    fn forward(&self, x: &[bool]) -> Vec<bool> {
        assert_eq!(x.len(), self.geometry.inputs());
        let mut out = vec![false; self.width()];
        let positions = self.geometry.positions();
        for (o, table) in self.tables.iter().enumerate() {
            for (at, offset) in self.geometry.output_positions() {
                let inputs = table.leaves.iter().map(|&leaf| leaf_bit(&self.geometry, x, at, leaf));
                out[o * positions + offset] = look_up(&table.entries, inputs);
            }
        }
        out
    }

    fn build(&self, _pack_here: bool) -> Layer {
        let leaves = self.tables.iter().flat_map(|t| leaves_u32(&t.leaves)).collect();
        let entries: Vec<u8> = self.tables.iter().flat_map(|t| t.entries.iter().map(|&e| e as u8)).collect();
        let layer = ConvLutLayer::from_unpacked(self.geometry.engine(), self.arity, leaves, &entries);
        Layer::ConvLuts(layer.expect("valid conv_luts layer"))
    }

    fn write(&self, prefix: &str, tensors: &mut Vec<RawTensor>) -> Map<String, Value> {
        let leaves: Vec<&[[usize; 3]]> = self.tables.iter().map(|t| t.leaves.as_slice()).collect();
        tensors.push(leaves_tensor(prefix, &leaves));
        let row = (1usize << self.arity).div_ceil(8);
        let tables = self.tables.iter().flat_map(|t| pack_bytes(&t.entries)).collect();
        tensors.push(RawTensor::new(format!("{prefix}.tables"), "U8", vec![self.tables.len(), row], tables));
        let mut keys = self.geometry.keys(true);
        keys.insert("out_channels".into(), json!(self.tables.len()));
        keys.insert("arity".into(), json!(self.arity));
        keys
    }
}

/// A `conv_luts` layer over `input_shape`: random geometry, 1..=4 output channels, tables of `arity` inputs.
pub fn conv_luts_strategy(input_shape: [usize; 3], arity: usize) -> impl Strategy<Value = RefConvLuts> {
    geometry_strategy(input_shape, 2).prop_flat_map(move |geometry| {
        let table = (prop::collection::vec(leaf_strategy(&geometry), arity), table_strategy(arity))
            .prop_map(|(leaves, entries)| RefConvTable { leaves, entries });
        prop::collection::vec(table, 1..=4).prop_map(move |tables| RefConvLuts { geometry, arity, tables })
    })
}
