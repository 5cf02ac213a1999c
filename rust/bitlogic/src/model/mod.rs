//! The data model: a network's encoder, layers and head, validated on construction, and everything that belongs to
//! one layer kind.
//!
//! Each layer kind has one file holding its struct, its validation, the reading and writing of its file tensors,
//! its lowering to the compiler's IR and its statistics: [`gates`], [`luts`], [`binary`]. [`Layer`]'s matches hand
//! each operation to the kind's file. The model depends only on the leaf modules (`error`, `limits`, `ops`,
//! `bits`, `tensors`, `ir`); the file format, the compiler and the evaluator depend on it.

pub(crate) mod binary;
pub(crate) mod encoder;
pub(crate) mod gates;
pub(crate) mod layer;
pub(crate) mod luts;
pub(crate) mod network;
pub(crate) mod stats;

pub use binary::BinaryLayer;
pub use encoder::{BitOrder, Encoder, ThresholdEncoder};
pub use gates::GateLayer;
pub use layer::Layer;
pub use luts::LutLayer;
pub use network::Network;
pub use stats::Stats;
