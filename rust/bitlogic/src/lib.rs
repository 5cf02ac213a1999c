//! # bitlogic
//!
//! Evaluates boolean networks — layers of two-input logic gates, n-input lookup tables and binary XNOR-popcount
//! layers, topped by a GroupSum head — bit-sliced: one bit per sample, 64 samples per machine word, hundreds per
//! block, on every core.
//!
//! ```
//! use bitlogic::{random_network, EvalOptions, Input, LayerKind, Matrix};
//!
//! let net = random_network(16, &[64, 64, 40], 10, LayerKind::Gates, 0).unwrap();
//! let bits = vec![1u8; 3 * 16]; // three samples of 16 input bits
//! let input = Input::Bits(Matrix::c_order(&bits, 3, 16).unwrap());
//! let labels = net.predict(input, &EvalOptions::default()).unwrap();
//! assert_eq!(labels.len(), 3);
//! ```
//!
//! Networks are read from and written to network files (`docs/FORMAT.md`) with [`Network::load`] and
//! [`Network::save`]; reading never panics on a malformed file.

#![warn(missing_docs)]

mod bits;
mod cuts;
mod engine;
mod error;
mod exec;
mod format;
mod input;
mod ir;
mod network;
pub mod ops;
mod optimize;
mod program;
mod random;
mod simd;
pub mod train;

pub use engine::{EvalOptions, Isa};
pub use error::{Error, Result};
pub use format::{write_atomic, FORMAT_NAME, FORMAT_VERSION};
pub use input::{Input, Matrix, Packed};
pub use network::{
    BinaryLayer, BitOrder, Encoder, GateLayer, Layer, LutLayer, Network, Optimization, Stats, ThresholdEncoder,
    MAX_ARITY, MAX_NODES,
};
pub use optimize::PassReport;
pub use program::ProgramStats;
pub use random::{random_network, LayerKind, SplitMix64};
pub use train::{gate_backward, gate_backward_coef, gate_forward};
