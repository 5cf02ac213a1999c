//! Gate layers: two-input gates, each an op code over its two wires (FORMAT.md 3.3 and 5).

use bitlogic::{GateLayer, Layer};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::super::{le_u32, RawTensor};
use super::LayerModel;

/// One two-input gate: inputs `a`, `b` and op code.
#[derive(Clone, Debug, PartialEq)]
pub struct RefGate {
    pub a: usize,
    pub b: usize,
    pub op: u8,
}

/// A gate layer, one gate per output.
#[derive(Clone, Debug, PartialEq)]
pub struct RefGates {
    pub gates: Vec<RefGate>,
}

impl RefGates {
    pub fn from_engine(layer: &GateLayer) -> RefGates {
        let gates =
            layer.inputs().iter().zip(layer.ops()).map(|(&[a, b], &op)| RefGate { a: a as usize, b: b as usize, op });
        RefGates { gates: gates.collect() }
    }
}

impl LayerModel for RefGates {
    fn kind(&self) -> &'static str {
        "gates"
    }

    fn width(&self) -> usize {
        self.gates.len()
    }

    fn forward(&self, x: &[bool]) -> Vec<bool> {
        self.gates.iter().map(|g| apply_op(g.op, x[g.a], x[g.b])).collect()
    }

    fn build(&self, _pack_here: bool) -> Layer {
        let inputs = self.gates.iter().map(|g| [g.a as u32, g.b as u32]).collect();
        let ops = self.gates.iter().map(|g| g.op).collect();
        Layer::Gates(GateLayer::new(inputs, ops).expect("valid gate layer"))
    }

    fn write(&self, prefix: &str, tensors: &mut Vec<RawTensor>) -> Map<String, Value> {
        let w = self.gates.len();
        let wires = le_u32(self.gates.iter().flat_map(|g| [g.a, g.b]));
        tensors.push(RawTensor::new(format!("{prefix}.inputs"), "U32", vec![w, 2], wires));
        let ops = self.gates.iter().map(|g| g.op).collect();
        tensors.push(RawTensor::new(format!("{prefix}.ops"), "U8", vec![w], ops));
        Map::new()
    }
}

/// Op code `op` on inputs `a` and `b`: bit `3 - (2a + b)` of the code, the truth table read from the top.
pub fn apply_op(op: u8, a: bool, b: bool) -> bool {
    (op >> (3 - (2 * a as u8 + b as u8))) & 1 == 1
}

/// `width` gates of any op code reading `inputs` bits.
pub fn gates_strategy(inputs: usize, width: usize) -> impl Strategy<Value = RefGates> {
    prop::collection::vec((0..inputs, 0..inputs, 0u8..16).prop_map(|(a, b, op)| RefGate { a, b, op }), width)
        .prop_map(|gates| RefGates { gates })
}
