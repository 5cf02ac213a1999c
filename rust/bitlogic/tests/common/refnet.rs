//! Plain networks: every wire, op code, table entry and weight as its own value, built into the engine's
//! [`Network`] through the public constructors and read back through the public accessors.

use std::collections::BTreeMap;

use bitlogic::{BinaryLayer, BitOrder, Encoder, GateLayer, Layer, LutLayer, Network, ThresholdEncoder};

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

/// One two-input gate: inputs `a`, `b` and op code.
#[derive(Clone, Debug, PartialEq)]
pub struct RefGate {
    pub a: usize,
    pub b: usize,
    pub op: u8,
}

/// One lookup table: its wires (input `j` is address bit `j`) and its `2^n` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct RefLut {
    pub wires: Vec<usize>,
    pub entries: Vec<bool>,
}

/// One binary neuron: a weight per input (`true` = +1) and a threshold on the number of matches.
#[derive(Clone, Debug, PartialEq)]
pub struct RefNeuron {
    pub weights: Vec<bool>,
    pub threshold: i32,
}

/// One layer, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub enum RefLayer {
    Gates(Vec<RefGate>),
    Luts { arity: usize, luts: Vec<RefLut> },
    Binary { inputs: usize, neurons: Vec<RefNeuron> },
}

impl RefLayer {
    pub fn width(&self) -> usize {
        match self {
            RefLayer::Gates(g) => g.len(),
            RefLayer::Luts { luts, .. } => luts.len(),
            RefLayer::Binary { neurons, .. } => neurons.len(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            RefLayer::Gates(_) => "gates",
            RefLayer::Luts { .. } => "luts",
            RefLayer::Binary { .. } => "binary",
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
    /// Build LUT and binary layers from words packed here (`new`) rather than from unpacked bytes
    /// (`from_unpacked`), so both constructors are exercised.
    pub pack_here: bool,
}

/// Packs rows of bits into `u64` words the way the constructors document it: bit `j` of a row is bit `j % 64` of
/// word `j / 64`, rows padded to whole words with zeros.
fn pack_words(rows: &[&[bool]]) -> Vec<u64> {
    let mut out = Vec::new();
    for row in rows {
        let words = row.len().div_ceil(64);
        let mut packed = vec![0u64; words];
        for (j, &bit) in row.iter().enumerate() {
            if bit {
                packed[j / 64] |= 1u64 << (j % 64);
            }
        }
        out.extend(packed);
    }
    out
}

/// Bit `j` of a row of words laid out as [`pack_words`] does.
fn word_bit(row: &[u64], j: usize) -> bool {
    (row[j / 64] >> (j % 64)) & 1 == 1
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
        let layers = self
            .layers
            .iter()
            .map(|layer| match layer {
                RefLayer::Gates(gates) => Layer::Gates(
                    GateLayer::new(
                        gates.iter().map(|g| [g.a as u32, g.b as u32]).collect(),
                        gates.iter().map(|g| g.op).collect(),
                    )
                    .expect("valid gate layer"),
                ),
                RefLayer::Luts { arity, luts } => {
                    let wires: Vec<u32> = luts.iter().flat_map(|l| l.wires.iter().map(|&w| w as u32)).collect();
                    let lut = if self.pack_here {
                        let rows: Vec<&[bool]> = luts.iter().map(|l| l.entries.as_slice()).collect();
                        LutLayer::new(*arity, wires, pack_words(&rows))
                    } else {
                        let entries: Vec<u8> = luts.iter().flat_map(|l| l.entries.iter().map(|&e| e as u8)).collect();
                        LutLayer::from_unpacked(*arity, wires, &entries)
                    };
                    Layer::Luts(lut.expect("valid LUT layer"))
                }
                RefLayer::Binary { inputs, neurons } => {
                    let thresholds = neurons.iter().map(|n| n.threshold).collect();
                    let binary = if self.pack_here {
                        let rows: Vec<&[bool]> = neurons.iter().map(|n| n.weights.as_slice()).collect();
                        BinaryLayer::new(*inputs, pack_words(&rows), thresholds)
                    } else {
                        let weights: Vec<u8> =
                            neurons.iter().flat_map(|n| n.weights.iter().map(|&w| w as u8)).collect();
                        BinaryLayer::from_unpacked(*inputs, &weights, thresholds)
                    };
                    Layer::Binary(binary.expect("valid binary layer"))
                }
            })
            .collect();
        Network::new(encoder, layers, self.num_classes, self.tau).expect("valid network").with_info(self.info.clone())
    }

    /// Reads a network back through the public accessors (unpacking words here, not with the engine's helpers).
    pub fn from_network(net: &Network) -> RefNet {
        let encoder = match net.encoder() {
            Encoder::Bits { num_inputs } => RefEncoder::Bits(*num_inputs),
            Encoder::Thresholds(t) => RefEncoder::Thresholds {
                order: t.bit_order(),
                thresholds: t.thresholds().chunks(t.per_feature()).map(<[f32]>::to_vec).collect(),
            },
        };
        let layers = net
            .layers()
            .iter()
            .map(|layer| match layer {
                Layer::Gates(l) => RefLayer::Gates(
                    l.inputs()
                        .iter()
                        .zip(l.ops())
                        .map(|(&[a, b], &op)| RefGate { a: a as usize, b: b as usize, op })
                        .collect(),
                ),
                Layer::Luts(l) => {
                    let n = l.arity();
                    let entries = 1usize << n;
                    let words = entries.div_ceil(64);
                    let luts = l
                        .inputs()
                        .chunks(n)
                        .zip(l.tables().chunks(words))
                        .map(|(wires, table)| RefLut {
                            wires: wires.iter().map(|&w| w as usize).collect(),
                            entries: (0..entries).map(|a| word_bit(table, a)).collect(),
                        })
                        .collect();
                    RefLayer::Luts { arity: n, luts }
                }
                Layer::Binary(l) => {
                    let inputs = l.num_inputs();
                    let words = inputs.div_ceil(64);
                    let neurons = l
                        .weights()
                        .chunks(words)
                        .zip(l.thresholds())
                        .map(|(row, &threshold)| RefNeuron {
                            weights: (0..inputs).map(|j| word_bit(row, j)).collect(),
                            threshold,
                        })
                        .collect();
                    RefLayer::Binary { inputs, neurons }
                }
            })
            .collect();
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
