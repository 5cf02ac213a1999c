//! Random networks for tests and benchmarks, reproducible from a seed on every platform.

use crate::error::{Error, Result};
use crate::limits::MAX_ARITY;
use crate::model::{BinaryLayer, Encoder, GateLayer, Layer, LutLayer, Network};
use crate::rng::SplitMix64;

/// The layer family of a random network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Two-input gates with uniformly random wires and op codes.
    Gates,
    /// n-input lookup tables with random wires and random tables.
    Luts {
        /// Inputs per table.
        arity: usize,
    },
    /// Binary XNOR layers with random weights and thresholds near half the inputs.
    Binary,
}

/// A random network over `num_inputs` input bits with one layer of `kind` per entry of `widths`.
pub fn random_network(
    num_inputs: usize,
    widths: &[usize],
    num_classes: usize,
    kind: LayerKind,
    seed: u64,
) -> Result<Network> {
    if let LayerKind::Luts { arity } = kind {
        if !(1..=MAX_ARITY).contains(&arity) {
            return Err(Error::Network(format!("LUT arity {arity}, expected 1..={MAX_ARITY}")));
        }
    }
    let encoder = Encoder::bits(num_inputs)?;
    let mut rng = SplitMix64::new(seed);
    let mut layers = Vec::with_capacity(widths.len());
    let mut previous = num_inputs;
    for &width in widths {
        if width == 0 {
            return Err(Error::Network("layer widths must be at least 1".into()));
        }
        let wire = |rng: &mut SplitMix64| rng.below(previous as u64) as u32;
        let layer = match kind {
            LayerKind::Gates => {
                let inputs = (0..width).map(|_| [wire(&mut rng), wire(&mut rng)]).collect();
                let ops = (0..width).map(|_| rng.below(16) as u8).collect();
                Layer::Gates(GateLayer::new(inputs, ops)?)
            }
            LayerKind::Luts { arity } => {
                let inputs = (0..width * arity).map(|_| wire(&mut rng)).collect();
                let words = LutLayer::words_per_table(arity);
                let entries = 1usize << arity;
                let tables = (0..width * words)
                    .map(|_| {
                        let t = rng.next_u64();
                        if entries < 64 {
                            t & ((1u64 << entries) - 1)
                        } else {
                            t
                        }
                    })
                    .collect();
                Layer::Luts(LutLayer::new(arity, inputs, tables)?)
            }
            LayerKind::Binary => {
                let words = previous.div_ceil(64);
                let tail = if previous.is_multiple_of(64) { u64::MAX } else { (1u64 << (previous % 64)) - 1 };
                let weights = (0..width * words)
                    .map(|i| if i % words == words - 1 { rng.next_u64() & tail } else { rng.next_u64() })
                    .collect();
                // Matches of random bits are Binomial(I, 1/2): thresholds within a few deviations of I/2 keep
                // outputs from being constant.
                let spread = ((previous as f64).sqrt() as u64).max(1);
                let thresholds = (0..width)
                    .map(|_| (previous as u64 / 2 + rng.below(2 * spread + 1)).saturating_sub(spread) as i32)
                    .collect();
                Layer::Binary(BinaryLayer::new(previous, weights, thresholds)?)
            }
        };
        layers.push(layer);
        previous = width;
    }
    Network::new(encoder, layers, num_classes, 1.0)
}
