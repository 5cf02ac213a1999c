//! Random networks for tests and benchmarks, reproducible from a seed on every platform.

use crate::error::{Error, Result};
use crate::network::{BinaryLayer, Encoder, GateLayer, Layer, LutLayer, Network, MAX_ARITY};

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

/// SplitMix64: tiny, fast, and the same sequence everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A uniform integer below `n` (`n > 0`), by Lemire's multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
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
