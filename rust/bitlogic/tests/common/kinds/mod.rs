//! The layer kinds of the format, one file each ([`gates`], [`luts`], [`binary`]). A kind's file holds all the
//! test support knows of it: its unpacked layer, its evaluation from FORMAT.md, its tensors as the independent
//! writer lays them out, its conversion to and from the engine's layer, and its proptest strategy. This file holds
//! what joins them: [`RefLayer`] with its one match per direction ([`RefLayer::model`], [`RefLayer::from_engine`]),
//! and [`Kind`], which names a kind to generate.
//!
//! A new kind is a new file here, a variant of [`RefLayer`] and of [`Kind`], and an arm in each match below.

pub mod binary;
pub mod gates;
pub mod luts;

pub use binary::*;
pub use gates::*;
pub use luts::*;

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
}

impl RefLayer {
    /// The layer as its kind's model.
    pub fn model(&self) -> &dyn LayerModel {
        match self {
            RefLayer::Gates(l) => l,
            RefLayer::Luts(l) => l,
            RefLayer::Binary(l) => l,
        }
    }

    /// Reads an engine layer back through its public accessors.
    pub fn from_engine(layer: &Layer) -> RefLayer {
        match layer {
            Layer::Gates(l) => RefLayer::Gates(RefGates::from_engine(l)),
            Layer::Luts(l) => RefLayer::Luts(RefLuts::from_engine(l)),
            Layer::Binary(l) => RefLayer::Binary(RefBinary::from_engine(l)),
        }
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
}

impl Kind {
    /// One or more of every kind, covering its parameters' extremes (the loader's mutation test starts from
    /// networks of each).
    pub fn examples() -> Vec<Kind> {
        vec![Kind::Gates, Kind::Luts(2), Kind::Luts(5), Kind::Luts(8), Kind::Binary]
    }
}

pub fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Gates), (1usize..=8).prop_map(Kind::Luts), Just(Kind::Binary)]
}

/// A layer of `kind` with `width` outputs reading `inputs` bits.
pub fn layer_strategy(kind: Kind, inputs: usize, width: usize) -> BoxedStrategy<RefLayer> {
    match kind {
        Kind::Gates => gates_strategy(inputs, width).prop_map(RefLayer::Gates).boxed(),
        Kind::Luts(arity) => luts_strategy(arity, inputs, width).prop_map(RefLayer::Luts).boxed(),
        Kind::Binary => binary_strategy(inputs, width).prop_map(RefLayer::Binary).boxed(),
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
