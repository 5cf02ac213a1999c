//! The sizes of a network that [`crate::Network::stats`] reports; each layer kind adds its own share.

use std::collections::BTreeMap;

/// Sizes of a network, as reported by [`crate::Network::stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Values per input sample (features, or bits).
    pub num_inputs: usize,
    /// Width of the encoder's output.
    pub num_input_bits: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Two-input gates.
    pub gates: usize,
    /// Lookup tables, by arity.
    pub luts: BTreeMap<usize, usize>,
    /// Binary weights (inputs times outputs over all binary layers).
    pub binary_weights: usize,
    /// Number of layers.
    pub depth: usize,
    /// Bytes of network data as stored in a file: wires, op codes, tables, weights and thresholds.
    pub bytes: usize,
}
