//! The layer kinds: one file each ([`gates`], [`luts`], [`binary`], and the spatial [`conv_gates`], [`conv_luts`],
//! [`conv_binary`], [`or_pool`], which share [`conv`]) holding its struct, validation, file tensors, lowering to the
//! IR and statistics, and the [`Layer`] enum here, one variant per kind, whose every operation is a match that hands
//! over to the kind's file. The matches are exhaustive, so a new kind is a compile error at each of them until it is
//! handled: this file and the kind's own are all the model needs for a new kind.

pub(crate) mod binary;
pub(crate) mod conv;
pub(crate) mod conv_binary;
pub(crate) mod conv_gates;
pub(crate) mod conv_luts;
pub(crate) mod gates;
pub(crate) mod luts;
pub(crate) mod or_pool;

pub use binary::BinaryLayer;
pub use conv::Geometry;
pub use conv_binary::ConvBinaryLayer;
pub use conv_gates::ConvGateLayer;
pub use conv_luts::ConvLutLayer;
pub use gates::GateLayer;
pub use luts::LutLayer;
pub use or_pool::OrPoolLayer;

use crate::error::Result;
use crate::ir::{Graph, Signal};
use crate::model::stats::Stats;
use crate::tensors::{LayerEntry, LayerKeys, TensorBuffers, Tensors};

/// One layer; each reads the bits of the layer before it (or of the encoder). The spatial kinds read them as a
/// `[C, H, W]` image and write a `[O, H', W']` one (C order).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// Two-input gates.
    Gates(GateLayer),
    /// n-input lookup tables.
    Luts(LutLayer),
    /// XNOR-popcount dense layer.
    Binary(BinaryLayer),
    /// Tree convolution of two-input gates.
    ConvGates(ConvGateLayer),
    /// Lookup-table convolution.
    ConvLuts(ConvLutLayer),
    /// XNOR-popcount convolution.
    ConvBinary(ConvBinaryLayer),
    /// OR pooling.
    OrPool(OrPoolLayer),
}

impl Layer {
    /// The names of the layer kinds in the file format.
    pub(crate) const KINDS: [&'static str; 7] = [
        GateLayer::KIND,
        LutLayer::KIND,
        BinaryLayer::KIND,
        ConvGateLayer::KIND,
        ConvLutLayer::KIND,
        ConvBinaryLayer::KIND,
        OrPoolLayer::KIND,
    ];

    /// Number of output bits.
    pub fn width(&self) -> usize {
        match self {
            Layer::Gates(l) => l.width(),
            Layer::Luts(l) => l.width(),
            Layer::Binary(l) => l.width(),
            Layer::ConvGates(l) => l.width(),
            Layer::ConvLuts(l) => l.width(),
            Layer::ConvBinary(l) => l.width(),
            Layer::OrPool(l) => l.width(),
        }
    }

    /// The name of the layer kind in the file format.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Gates(_) => GateLayer::KIND,
            Layer::Luts(_) => LutLayer::KIND,
            Layer::Binary(_) => BinaryLayer::KIND,
            Layer::ConvGates(_) => ConvGateLayer::KIND,
            Layer::ConvLuts(_) => ConvLutLayer::KIND,
            Layer::ConvBinary(_) => ConvBinaryLayer::KIND,
            Layer::OrPool(_) => OrPoolLayer::KIND,
        }
    }

    /// Checks that the layer's wires fit an input of `input_width` bits.
    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        match self {
            Layer::Gates(l) => l.check_inputs(index, input_width),
            Layer::Luts(l) => l.check_inputs(index, input_width),
            Layer::Binary(l) => l.check_inputs(index, input_width),
            Layer::ConvGates(l) => l.check_inputs(index, input_width),
            Layer::ConvLuts(l) => l.check_inputs(index, input_width),
            Layer::ConvBinary(l) => l.check_inputs(index, input_width),
            Layer::OrPool(l) => l.check_inputs(index, input_width),
        }
    }

    /// Reads a layer of kind `kind` from its tensors; `None` when `kind` is not one of [`Layer::KINDS`].
    pub(crate) fn read(kind: &str, entry: &LayerEntry, tensors: &mut Tensors<'_>) -> Option<Result<Layer>> {
        Some(match kind {
            GateLayer::KIND => GateLayer::read(entry, tensors).map(Layer::Gates),
            LutLayer::KIND => LutLayer::read(entry, tensors).map(Layer::Luts),
            BinaryLayer::KIND => BinaryLayer::read(entry, tensors).map(Layer::Binary),
            ConvGateLayer::KIND => ConvGateLayer::read(entry, tensors).map(Layer::ConvGates),
            ConvLutLayer::KIND => ConvLutLayer::read(entry, tensors).map(Layer::ConvLuts),
            ConvBinaryLayer::KIND => ConvBinaryLayer::read(entry, tensors).map(Layer::ConvBinary),
            OrPoolLayer::KIND => OrPoolLayer::read(entry, tensors).map(Layer::OrPool),
            _ => return None,
        })
    }

    /// Appends the tensors of layer `index`; returns the description's keys beyond `kind`, `width` and `sources`.
    pub(crate) fn write(&self, index: usize, out: &mut TensorBuffers) -> LayerKeys {
        let arity = |arity| LayerKeys { arity, ..LayerKeys::default() };
        match self {
            Layer::Gates(l) => arity(l.write(index, out)),
            Layer::Luts(l) => arity(l.write(index, out)),
            Layer::Binary(l) => arity(l.write(index, out)),
            Layer::ConvGates(l) => l.write(index, out),
            Layer::ConvLuts(l) => l.write(index, out),
            Layer::ConvBinary(l) => l.write(index, out),
            Layer::OrPool(l) => l.write(index, out),
        }
    }

    /// The wires of its input the layer reads, in order (with repeats).
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        match self {
            Layer::Gates(l) => l.wires_read(),
            Layer::Luts(l) => l.wires_read(),
            Layer::Binary(l) => l.wires_read(),
            Layer::ConvGates(l) => l.wires_read(),
            Layer::ConvLuts(l) => l.wires_read(),
            Layer::ConvBinary(l) => l.wires_read(),
            Layer::OrPool(l) => l.wires_read(),
        }
    }

    /// Adds the layer's nodes to `graph`, input wire `w` being the signal `wire(w)`; returns its output signals.
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        match self {
            Layer::Gates(l) => l.lower(graph, wire),
            Layer::Luts(l) => l.lower(graph, wire),
            Layer::Binary(l) => l.lower(graph, wire),
            Layer::ConvGates(l) => l.lower(graph, wire),
            Layer::ConvLuts(l) => l.lower(graph, wire),
            Layer::ConvBinary(l) => l.lower(graph, wire),
            Layer::OrPool(l) => l.lower(graph, wire),
        }
    }

    /// Adds the layer's counts and bytes to `stats`.
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        match self {
            Layer::Gates(l) => l.add_stats(stats),
            Layer::Luts(l) => l.add_stats(stats),
            Layer::Binary(l) => l.add_stats(stats),
            Layer::ConvGates(l) => l.add_stats(stats),
            Layer::ConvLuts(l) => l.add_stats(stats),
            Layer::ConvBinary(l) => l.add_stats(stats),
            Layer::OrPool(l) => l.add_stats(stats),
        }
    }

    /// An upper bound on the compiler nodes of the layer before optimization.
    pub(crate) fn node_bound(&self) -> usize {
        match self {
            Layer::Gates(l) => l.node_bound(),
            Layer::Luts(l) => l.node_bound(),
            Layer::Binary(l) => l.node_bound(),
            Layer::ConvGates(l) => l.node_bound(),
            Layer::ConvLuts(l) => l.node_bound(),
            Layer::ConvBinary(l) => l.node_bound(),
            Layer::OrPool(l) => l.node_bound(),
        }
    }
}
