//! The loader against malformed files.
//!
//! - [`property`]: a mutation property test. Valid files of several kinds (from the engine's writer and from the
//!   independent writer in `common`) are truncated, bit-flipped, given wrong header lengths, and edited as JSON
//!   (numbers made huge, negative or fractional, keys removed and added, kinds and versions changed), by the
//!   mutations of [`mutation`] applied by [`mutate`]. `from_bytes` must never panic, must stay within a memory budget
//!   proportional to the file ([`alloc`]), and must either fail with a format or version error or return a network
//!   that serializes again and evaluates.
//! - Targeted tests, one module per part of the file: [`container`], [`repeated_keys`], [`metadata`],
//!   [`integrity`] (the digest of the data), [`description`], [`tensors`]. Every defect listed in FORMAT.md section
//!   4 is a format (or version) error whose message names the tensor or key at fault.
//! - [`spatial`]: the spatial kinds of format 1.2: their keys, geometries, leaves and tensors.
//! - [`limits`]: headers claiming enormous sizes fail at once, without allocating for them.

#[path = "../common/mod.rs"]
mod common;

mod alloc;
mod container;
mod description;
mod fixtures;
mod integrity;
mod limits;
mod metadata;
mod mutate;
mod mutation;
mod property;
mod repeated_keys;
mod spatial;
mod tensors;
