//! The data model: a network's encoder, layers and head, validated on construction, and everything that belongs to
//! one layer kind ([`layers`]: one file per kind and the enum that delegates to them).
//!
//! The model depends only on the leaf modules (`error`, `limits`, `ops`, `bits`, `tensors`, `ir`); the file format,
//! the compiler and the evaluator depend on it.

pub(crate) mod encoder;
pub(crate) mod layers;
pub(crate) mod network;
pub(crate) mod stats;

pub use encoder::{BitOrder, Encoder, ThresholdEncoder};
// Every layer kind and the `Layer` enum, whole: a new kind is exported by its `pub use` in `layers` alone.
pub use layers::*;
pub use network::Network;
pub use stats::Stats;
