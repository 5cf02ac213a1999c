//! The layer kinds of the format, one file each ([`gates`], [`luts`], [`binary`], and the spatial kinds of format
//! 1.2, [`conv_gates`], [`conv_luts`], [`conv_binary`], [`or_pool`], over the [`geometry`] they share). A kind's file
//! holds all the
//! test support knows of it: its unpacked layer, its evaluation from FORMAT.md, its tensors as the independent
//! writer lays them out, its conversion to and from the engine's layer, and its proptest strategy. This file holds
//! what joins them: [`RefLayer`] with its one match per direction ([`RefLayer::model`], [`RefLayer::from_engine`]),
//! and [`Kind`], which names a kind to generate.
//!
//! A new kind is a new file here, a variant of [`RefLayer`] and of [`Kind`], and an arm in each match below.

pub mod binary;
pub mod conv_binary;
pub mod conv_gates;
pub mod conv_luts;
pub mod gates;
pub mod geometry;
pub mod luts;
pub mod or_pool;

pub use binary::*;
pub use conv_binary::*;
pub use conv_gates::*;
pub use conv_luts::*;
pub use gates::*;
pub use geometry::*;
pub use luts::*;
pub use or_pool::*;

use bitlogic::Layer;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::RawTensor;

/// What every kind's unpacked layer can do; [`RefLayer`] hands each call to its kind.
pub trait LayerModel {
    /// The `kind` string of the layer's description (FORMAT.md 3.3).
    fn kind(&self) -> &'static str;

    /// The number of outputs.
    fn width(&self) -> usize;

    /// The outputs for the previous group `x`, evaluated one wire at a time from FORMAT.md.
    fn forward(&self, x: &[bool]) -> Vec<bool>;

    /// The engine's layer, built through its public constructor; with `pack_here`, from words packed here rather
    /// than from unpacked bytes, so both constructors are exercised.
    fn build(&self, pack_here: bool) -> Layer;

    /// Appends the layer's tensors, named `{prefix}.{tensor}`, and returns the description keys of its own (those
    /// past `kind`, `width` and `sources`).
    fn write(&self, prefix: &str, tensors: &mut Vec<RawTensor>) -> Map<String, Value>;
}

/// One layer, unpacked.
#[derive(Clone, Debug, PartialEq)]
pub enum RefLayer {
    Gates(RefGates),
    Luts(RefLuts),
    Binary(RefBinary),
    ConvGates(RefConvGates),
    ConvLuts(RefConvLuts),
    ConvBinary(RefConvBinary),
    OrPool(RefOrPool),
}

impl RefLayer {
    /// The layer as its kind's model.
    pub fn model(&self) -> &dyn LayerModel {
        match self {
            RefLayer::Gates(l) => l,
            RefLayer::Luts(l) => l,
            RefLayer::Binary(l) => l,
            RefLayer::ConvGates(l) => l,
            RefLayer::ConvLuts(l) => l,
            RefLayer::ConvBinary(l) => l,
            RefLayer::OrPool(l) => l,
        }
    }

    /// Reads an engine layer back through its public accessors.
    pub fn from_engine(layer: &Layer) -> RefLayer {
        match layer {
            Layer::Gates(l) => RefLayer::Gates(RefGates::from_engine(l)),
            Layer::Luts(l) => RefLayer::Luts(RefLuts::from_engine(l)),
            Layer::Binary(l) => RefLayer::Binary(RefBinary::from_engine(l)),
            Layer::ConvGates(l) => RefLayer::ConvGates(RefConvGates::from_engine(l)),
            Layer::ConvLuts(l) => RefLayer::ConvLuts(RefConvLuts::from_engine(l)),
            Layer::ConvBinary(l) => RefLayer::ConvBinary(RefConvBinary::from_engine(l)),
            Layer::OrPool(l) => RefLayer::OrPool(RefOrPool::from_engine(l)),
        }
    }

    /// The `[channels, H', W']` of a spatial layer's output, which the next spatial layer reads as its input shape.
    pub fn output_shape(&self) -> Option<[usize; 3]> {
        let (channels, geometry) = match self {
            RefLayer::Gates(_) | RefLayer::Luts(_) | RefLayer::Binary(_) => return None,
            RefLayer::ConvGates(l) => (l.trees.len(), &l.geometry),
            RefLayer::ConvLuts(l) => (l.tables.len(), &l.geometry),
            RefLayer::ConvBinary(l) => (l.filters.len(), &l.geometry),
            RefLayer::OrPool(l) => (l.geometry.input_shape[0], &l.geometry),
        };
        let [h, w] = geometry.output_size();
        Some([channels, h, w])
    }

    pub fn width(&self) -> usize {
        self.model().width()
    }

    pub fn kind(&self) -> &'static str {
        self.model().kind()
    }
}

/// The kind of a layer to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gates,
    Luts(usize),
    Binary,
    /// Trees of this depth.
    ConvGates(usize),
    /// Tables of this arity.
    ConvLuts(usize),
    ConvBinary,
    OrPool,
}

impl Kind {
    /// One or more of every kind, covering its parameters' extremes (the loader's mutation test starts from
    /// networks of each).
    pub fn examples() -> Vec<Kind> {
        vec![
            Kind::Gates,
            Kind::Luts(2),
            Kind::Luts(5),
            Kind::Luts(8),
            Kind::Binary,
            Kind::ConvGates(1),
            Kind::ConvGates(3),
            Kind::ConvLuts(1),
            Kind::ConvLuts(6),
            Kind::ConvBinary,
            Kind::OrPool,
        ]
    }

    /// Whether the kind reads its input as an image (format 1.2's kinds): its width follows from its geometry.
    pub fn is_spatial(self) -> bool {
        matches!(self, Kind::ConvGates(_) | Kind::ConvLuts(_) | Kind::ConvBinary | Kind::OrPool)
    }
}

/// The dense kinds, LUTs of every arity.
pub fn dense_kind_strategy() -> BoxedStrategy<Kind> {
    prop_oneof![Just(Kind::Gates), (1usize..=8).prop_map(Kind::Luts), Just(Kind::Binary)].boxed()
}

/// The spatial kinds: trees of depth 1..=3, tables of 1..=6 inputs.
pub fn spatial_kind_strategy() -> BoxedStrategy<Kind> {
    prop_oneof![
        (1usize..=3).prop_map(Kind::ConvGates),
        (1usize..=6).prop_map(Kind::ConvLuts),
        Just(Kind::ConvBinary),
        Just(Kind::OrPool),
    ]
    .boxed()
}

/// Every kind, the dense ones three times as often.
pub fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![3 => dense_kind_strategy(), 1 => spatial_kind_strategy()]
}

/// A layer of `kind` reading `inputs` bits: a dense kind with `width` outputs; a spatial kind reads them as a shape
/// `[C, H, W]` factored from `inputs` (and its width follows from its geometry).
pub fn layer_strategy(kind: Kind, inputs: usize, width: usize) -> BoxedStrategy<RefLayer> {
    match kind {
        Kind::Gates => gates_strategy(inputs, width).prop_map(RefLayer::Gates).boxed(),
        Kind::Luts(arity) => luts_strategy(arity, inputs, width).prop_map(RefLayer::Luts).boxed(),
        Kind::Binary => binary_strategy(inputs, width).prop_map(RefLayer::Binary).boxed(),
        _ => shape_of_width(inputs).prop_flat_map(move |shape| spatial_layer_strategy(kind, shape)).boxed(),
    }
}

/// A layer of the spatial `kind` over an input of `input_shape`.
pub fn spatial_layer_strategy(kind: Kind, input_shape: [usize; 3]) -> BoxedStrategy<RefLayer> {
    match kind {
        Kind::ConvGates(depth) => conv_gates_strategy(input_shape, depth).prop_map(RefLayer::ConvGates).boxed(),
        Kind::ConvLuts(arity) => conv_luts_strategy(input_shape, arity).prop_map(RefLayer::ConvLuts).boxed(),
        Kind::ConvBinary => conv_binary_strategy(input_shape).prop_map(RefLayer::ConvBinary).boxed(),
        Kind::OrPool => or_pool_strategy(input_shape).prop_map(RefLayer::OrPool).boxed(),
        dense => panic!("{dense:?} is not a spatial kind"),
    }
}

/// Packs rows of bits into `u64` words the way the engine's constructors document it: bit `j` of a row is bit
/// `j % 64` of word `j / 64`, rows padded to whole words with zeros.
pub(crate) fn pack_words(rows: &[&[bool]]) -> Vec<u64> {
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
pub(crate) fn word_bit(row: &[u64], j: usize) -> bool {
    (row[j / 64] >> (j % 64)) & 1 == 1
}
