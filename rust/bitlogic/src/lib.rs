#![doc = include_str!("../README.md")]
//!
//! ## Layout of the crate
//!
//! The modules form a one-way chain; each depends only on those before it:
//!
//! 1. leaves: `error`, `limits` (size limits), [`ops`] (the op-code convention), `bits`, `rng`, `isa`
//!    (instruction-set detection), `atomic` (the atomic file write), `tensors` (typed tensor access for the file
//!    format) and `ir` (the compiler's graph);
//! 2. `model`: the network data, the encoder, and `model/layers/`: one file per layer kind (`gates.rs`, `luts.rs`,
//!    `binary.rs`, and the spatial `conv_gates.rs`, `conv_luts.rs`, `conv_binary.rs`, `or_pool.rs` sharing the
//!    window geometry of `conv.rs`) holding its validation, file tensors, lowering to the IR and statistics, and the
//!    `Layer` enum that delegates to them;
//! 3. `format` (the network file container) and `compiler` (lowering driver, passes, cut mapping, program);
//! 4. evaluation: `input` (input views and encoding), `simd`, `exec` (kernels), `engine` (batching and dispatch);
//!    and `random` (random networks).

#![warn(missing_docs)]

#[cfg(test)]
mod api_tests;
mod atomic;
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

pub use atomic::write_atomic;
pub use compiler::program::ProgramStats;
pub use compiler::report::PassReport;
pub use compiler::view::{BinaryStepView, ClassSumView, ProgramStep, ProgramView};
pub use compiler::Optimization;
pub use engine::EvalOptions;
pub use error::{Error, Result};
pub use format::{FORMAT_NAME, FORMAT_VERSION};
pub use input::{Input, Matrix, Packed};
pub use isa::Isa;
pub use limits::{MAX_ARITY, MAX_NODES, MAX_WIDTH};
pub use model::layers::*; // every layer kind and the `Layer` enum (a new kind needs no line here)
pub use model::{BitOrder, Encoder, Network, Stats, ThresholdEncoder};
pub use random::{random_network, LayerKind};
pub use rng::SplitMix64;
