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

//! # Layout
//!
//! The modules form a one-way chain; each depends only on those before it:
//!
//! 1. leaves: `error`, `limits` (size limits), [`ops`] (the op-code convention), `bits`, `rng`, `isa`
//!    (instruction-set detection), `tensors` (typed tensor access for the file format) and `ir` (the compiler's
//!    graph);
//! 2. `model`: the network data, the encoder, and one file per layer kind (`model/gates.rs`, `model/luts.rs`,
//!    `model/binary.rs`) holding its validation, file tensors, lowering to the IR and statistics;
//! 3. `format` (the network file container) and `compiler` (lowering driver, passes, cut mapping, program);
//! 4. evaluation: `input` (input views and encoding), `simd`, `exec` (kernels), `engine` (batching and dispatch);
//!    and `random` (random networks).

#![warn(missing_docs)]

mod bits;
mod compiler;
mod engine;
mod error;
mod exec;
mod format;
mod input;
mod ir;
mod isa;
mod limits;
mod model;
pub mod ops;
mod random;
mod rng;
mod simd;
mod tensors;
pub mod train;

pub use compiler::program::ProgramStats;
pub use compiler::report::PassReport;
pub use compiler::Optimization;
pub use engine::EvalOptions;
pub use error::{Error, Result};
pub use format::{write_atomic, FORMAT_NAME, FORMAT_VERSION};
pub use input::{Input, Matrix, Packed};
pub use isa::Isa;
pub use limits::{MAX_ARITY, MAX_NODES, MAX_WIDTH};
pub use model::{BinaryLayer, BitOrder, Encoder, GateLayer, Layer, LutLayer, Network, Stats, ThresholdEncoder};
pub use random::{random_network, LayerKind};
pub use rng::SplitMix64;
pub use train::{gate_backward, gate_backward_coef, gate_forward};
