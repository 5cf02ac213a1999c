//! LUT layers: lookup tables of one arity, each addressed by its wires (FORMAT.md 3.3 and 5).

use bitlogic::{Layer, LutLayer};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::super::{le_u32, pack_bytes, RawTensor};
use super::{pack_words, word_bit, LayerModel};

/// One lookup table: its wires (input `j` is address bit `j`) and its `2^n` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct RefLut {
    pub wires: Vec<usize>,
    pub entries: Vec<bool>,
}

/// A LUT layer: `arity` wires per table, one table per output.
#[derive(Clone, Debug, PartialEq)]
pub struct RefLuts {
    pub arity: usize,
    pub luts: Vec<RefLut>,
}

impl RefLuts {
    /// Unpacks the tables' words here, not with the engine's helpers.
    pub fn from_engine(layer: &LutLayer) -> RefLuts {
        let n = layer.arity();
        let entries = 1usize << n;
        let words = entries.div_ceil(64);
        let luts = layer
            .inputs()
            .chunks(n)
            .zip(layer.tables().chunks(words))
            .map(|(wires, table)| RefLut {
                wires: wires.iter().map(|&w| w as usize).collect(),
                entries: (0..entries).map(|a| word_bit(table, a)).collect(),
            })
            .collect();
        RefLuts { arity: n, luts }
    }
}

impl LayerModel for RefLuts {
    fn kind(&self) -> &'static str {
        "luts"
    }

    fn width(&self) -> usize {
        self.luts.len()
    }

    fn forward(&self, x: &[bool]) -> Vec<bool> {
        self.luts.iter().map(|l| look_up(&l.entries, l.wires.iter().map(|&w| x[w]))).collect()
    }

    fn build(&self, pack_here: bool) -> Layer {
        let wires: Vec<u32> = self.luts.iter().flat_map(|l| l.wires.iter().map(|&w| w as u32)).collect();
        let lut = if pack_here {
            let rows: Vec<&[bool]> = self.luts.iter().map(|l| l.entries.as_slice()).collect();
            LutLayer::new(self.arity, wires, pack_words(&rows))
        } else {
            let entries: Vec<u8> = self.luts.iter().flat_map(|l| l.entries.iter().map(|&e| e as u8)).collect();
            LutLayer::from_unpacked(self.arity, wires, &entries)
        };
        Layer::Luts(lut.expect("valid LUT layer"))
    }

    fn write(&self, prefix: &str, tensors: &mut Vec<RawTensor>) -> Map<String, Value> {
        let (w, arity) = (self.luts.len(), self.arity);
        let wires = le_u32(self.luts.iter().flat_map(|l| l.wires.iter().copied()));
        tensors.push(RawTensor::new(format!("{prefix}.inputs"), "U32", vec![w, arity], wires));
        let row = (1usize << arity).div_ceil(8);
        let tables = self.luts.iter().flat_map(|l| pack_bytes(&l.entries)).collect();
        tensors.push(RawTensor::new(format!("{prefix}.tables"), "U8", vec![w, row], tables));
        Map::from_iter([("arity".to_string(), json!(arity))])
    }
}

/// The entry of `entries` at the address whose bit `j` is the `j`-th of `inputs`.
pub fn look_up(entries: &[bool], inputs: impl Iterator<Item = bool>) -> bool {
    entries[inputs.enumerate().map(|(j, bit)| (bit as usize) << j).sum::<usize>()]
}

/// The `2^arity` entries of a table: mostly random, sometimes constant (which the optimizer folds away).
pub fn table_strategy(arity: usize) -> impl Strategy<Value = Vec<bool>> {
    let entries = 1 << arity;
    prop_oneof![
        8 => prop::collection::vec(any::<bool>(), entries),
        1 => Just(vec![false; entries]),
        1 => Just(vec![true; entries]),
    ]
}

/// `width` tables of `arity` wires reading `inputs` bits, every entry random.
pub fn luts_strategy(arity: usize, inputs: usize, width: usize) -> impl Strategy<Value = RefLuts> {
    prop::collection::vec(
        (prop::collection::vec(0..inputs, arity), table_strategy(arity))
            .prop_map(|(wires, entries)| RefLut { wires, entries }),
        width,
    )
    .prop_map(move |luts| RefLuts { arity, luts })
}
