//! The engine's size limits, shared by the model's validation, the file format and the compiler.

use crate::error::{Error, Result};

/// Largest LUT arity supported (tables of 256 entries).
pub const MAX_ARITY: usize = 8;

/// Largest number of nodes (encoder bits, gates, binary rows, table parts) the engine compiles; see
/// [`crate::Network::prepare`].
pub const MAX_NODES: usize = 1 << 30;

/// Largest width of a bit group: wires are `u32` and class scores `i32`, so widths stay below 2^31.
pub const MAX_WIDTH: usize = i32::MAX as usize;

/// Fails when `width` exceeds [`MAX_WIDTH`].
pub(crate) fn check_width(width: usize, what: &str) -> Result<()> {
    if width > MAX_WIDTH {
        return Err(Error::Network(format!("{what}: width {width} exceeds the maximum {MAX_WIDTH}")));
    }
    Ok(())
}

/// `a * b`, or an error naming `what` when it overflows.
pub(crate) fn checked_product(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::Network(format!("{what}: {a} x {b} overflows")))
}
