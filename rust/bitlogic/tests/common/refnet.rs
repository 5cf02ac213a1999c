//! Plain networks: every wire, op code, table entry and weight as its own value, built into the engine's
//! [`Network`] through the public constructors and read back through the public accessors.

use std::collections::BTreeMap;

use bitlogic::{BitOrder, Encoder, Network, ThresholdEncoder};

use super::RefLayer;

/// The input encoder, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub enum RefEncoder {
    /// Inputs are bits; group 0 has this width.
    Bits(usize),
    /// `thresholds[f][t]`, every row of the same length.
    Thresholds { order: BitOrder, thresholds: Vec<Vec<f32>> },
}

impl RefEncoder {
    /// Width of group 0.
    pub fn width(&self) -> usize {
        match self {
            RefEncoder::Bits(n) => *n,
            RefEncoder::Thresholds { thresholds, .. } => thresholds.len() * thresholds[0].len(),
        }
    }

    /// Values per sample for a feature (or u8 bit) input.
    pub fn num_inputs(&self) -> usize {
        match self {
            RefEncoder::Bits(n) => *n,
            RefEncoder::Thresholds { thresholds, .. } => thresholds.len(),
        }
    }
}

/// A whole network, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub struct RefNet {
    pub encoder: RefEncoder,
    pub layers: Vec<RefLayer>,
    pub num_classes: usize,
    pub tau: f64,
    pub info: BTreeMap<String, String>,
    /// Build layers from words packed here (`new`) rather than from unpacked bytes (`from_unpacked`), so both
    /// constructors are exercised (see [`LayerModel::build`](super::LayerModel::build)).
    pub pack_here: bool,
}

impl RefNet {
    /// Width of the group GroupSum reads.
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(self.encoder.width(), RefLayer::width)
    }

    /// Builds the engine's network through the public constructors.
    pub fn build(&self) -> Network {
        let encoder = match &self.encoder {
            RefEncoder::Bits(n) => Encoder::bits(*n).expect("valid bits encoder"),
            RefEncoder::Thresholds { order, thresholds } => {
                let flat: Vec<f32> = thresholds.iter().flatten().copied().collect();
                Encoder::Thresholds(
                    ThresholdEncoder::new(thresholds.len(), thresholds[0].len(), *order, flat)
                        .expect("valid threshold encoder"),
                )
            }
        };
        let layers = self.layers.iter().map(|layer| layer.model().build(self.pack_here)).collect();
        Network::new(encoder, layers, self.num_classes, self.tau).expect("valid network").with_info(self.info.clone())
    }

    /// Reads a network back through the public accessors (each kind unpacks its words itself, not with the
    /// engine's helpers).
    pub fn from_network(net: &Network) -> RefNet {
        let encoder = match net.encoder() {
            Encoder::Bits { num_inputs } => RefEncoder::Bits(*num_inputs),
            Encoder::Thresholds(t) => RefEncoder::Thresholds {
                order: t.bit_order(),
                thresholds: t.thresholds().chunks(t.per_feature()).map(<[f32]>::to_vec).collect(),
            },
        };
        let layers = net.layers().iter().map(RefLayer::from_engine).collect();
        RefNet {
            encoder,
            layers,
            num_classes: net.num_classes(),
            tau: net.tau(),
            info: net.info().clone(),
            pack_here: false,
        }
    }
}
