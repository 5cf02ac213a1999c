//! Binary layers: XNOR-popcount neurons, each a weight per input and a threshold (FORMAT.md 3.3 and 5).

use bitlogic::{BinaryLayer, Layer};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::super::{pack_bytes, RawTensor};
use super::{pack_words, word_bit, LayerModel};

/// One binary neuron: a weight per input (`true` = +1) and a threshold on the number of matches.
#[derive(Clone, Debug, PartialEq)]
pub struct RefNeuron {
    pub weights: Vec<bool>,
    pub threshold: i32,
}

/// A binary layer: `inputs` weights per neuron, one neuron per output.
#[derive(Clone, Debug, PartialEq)]
pub struct RefBinary {
    pub inputs: usize,
    pub neurons: Vec<RefNeuron>,
}

impl RefBinary {
    /// Unpacks the weight words here, not with the engine's helpers.
    pub fn from_engine(layer: &BinaryLayer) -> RefBinary {
        let inputs = layer.num_inputs();
        let words = inputs.div_ceil(64);
        let neurons = layer
            .weights()
            .chunks(words)
            .zip(layer.thresholds())
            .map(|(row, &threshold)| RefNeuron { weights: (0..inputs).map(|j| word_bit(row, j)).collect(), threshold })
            .collect();
        RefBinary { inputs, neurons }
    }
}

impl LayerModel for RefBinary {
    fn kind(&self) -> &'static str {
        "binary"
    }

    fn width(&self) -> usize {
        self.neurons.len()
    }

    /// True where the number of inputs equal to their weight reaches the threshold.
    fn forward(&self, x: &[bool]) -> Vec<bool> {
        assert_eq!(x.len(), self.inputs);
        self.neurons
            .iter()
            .map(|n| {
                let matches = x.iter().zip(&n.weights).filter(|(a, b)| a == b).count() as i64;
                matches >= i64::from(n.threshold)
            })
            .collect()
    }

    fn build(&self, pack_here: bool) -> Layer {
        let thresholds = self.neurons.iter().map(|n| n.threshold).collect();
        let binary = if pack_here {
            let rows: Vec<&[bool]> = self.neurons.iter().map(|n| n.weights.as_slice()).collect();
            BinaryLayer::new(self.inputs, pack_words(&rows), thresholds)
        } else {
            let weights: Vec<u8> = self.neurons.iter().flat_map(|n| n.weights.iter().map(|&w| w as u8)).collect();
            BinaryLayer::from_unpacked(self.inputs, &weights, thresholds)
        };
        Layer::Binary(binary.expect("valid binary layer"))
    }

    fn write(&self, prefix: &str, tensors: &mut Vec<RawTensor>) -> Map<String, Value> {
        let w = self.neurons.len();
        let weights = self.neurons.iter().flat_map(|n| pack_bytes(&n.weights)).collect();
        let row = self.inputs.div_ceil(8);
        tensors.push(RawTensor::new(format!("{prefix}.weights"), "U8", vec![w, row], weights));
        let thresholds = self.neurons.iter().flat_map(|n| n.threshold.to_le_bytes()).collect();
        tensors.push(RawTensor::new(format!("{prefix}.thresholds"), "I32", vec![w], thresholds));
        Map::new()
    }
}

/// A binary threshold around the interesting range `-2 ..= inputs + 2`, biased towards the middle.
fn binary_threshold(inputs: usize) -> BoxedStrategy<i32> {
    let n = inputs as i32;
    prop_oneof![
        3 => (n / 2 - 3)..=(n / 2 + 3),
        1 => -2..=(n + 2),
        1 => prop::sample::select(vec![i32::MIN, 0, n, n + 1, i32::MAX]),
    ]
    .boxed()
}

/// `width` neurons of random weights over `inputs` bits.
pub fn binary_strategy(inputs: usize, width: usize) -> impl Strategy<Value = RefBinary> {
    prop::collection::vec(
        (prop::collection::vec(any::<bool>(), inputs), binary_threshold(inputs))
            .prop_map(|(weights, threshold)| RefNeuron { weights, threshold }),
        width,
    )
    .prop_map(move |neurons| RefBinary { inputs, neurons })
}
