//! Test support shared by the integration tests:
//!
//! - [`refnet`]: [`RefNet`], a plain description of a network (every wire, op code, table entry and weight as its
//!   own value), built into an engine network and read back through the public API only.
//! - [`kinds`]: one file per layer kind, holding everything the support knows of that kind (its unpacked layer,
//!   evaluation, strategy, tensors and engine conversion), and [`RefLayer`], the enum that joins them.
//! - [`evaluate`]: a naive per-sample evaluator of a [`RefNet`] written from docs/FORMAT.md alone. It knows nothing
//!   of bit slicing, packing into words or the engine's kernels.
//! - [`batch`]: [`Batch`], an owned input batch that can be viewed in C order, F order or with padded strides.
//! - [`inputs`]: a small deterministic generator of input batches that hit thresholds and special values.
//! - [`strategies`]: proptest strategies for random valid networks.
//! - [`writer`]: an independent writer of network files ([`RefNet::file_parts`], [`write_container`]) that
//!   assembles the safetensors container byte by byte, so the engine's reader is checked against files it did not
//!   write.

// Each test binary uses a part of this support code.
#![allow(dead_code, unused_imports)]

pub mod batch;
pub mod evaluate;
pub mod inputs;
pub mod kinds;
pub mod refnet;
pub mod strategies;
pub mod writer;

pub use batch::*;
pub use evaluate::*;
pub use inputs::*;
pub use kinds::*;
pub use refnet::*;
pub use strategies::*;
pub use writer::*;
