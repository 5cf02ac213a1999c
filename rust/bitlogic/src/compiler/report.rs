//! What the optimizing passes changed: a leaf of the compiler, so that every pass (`optimize`, `cuts`) can add to
//! it without depending on another pass.

/// What the optimizing passes changed, summed over all passes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Gates and tables found to be constant.
    pub constants: usize,
    /// Gates and tables that only pass one input through, possibly inverted (e.g. the A, NOT B gates).
    pub wires: usize,
    /// Inverted reads absorbed into the reader's truth table or binary weights.
    pub inverters_absorbed: usize,
    /// Nodes merged into an identical earlier node (same function of the same signals).
    pub merged: usize,
    /// Table inputs removed because the function ignores them, reads the same signal twice, or reads a constant.
    pub inputs_removed: usize,
    /// Tables of more than three inputs split into three-input operations.
    pub luts_split: usize,
    /// Functions folded into the three-input cones of their readers (computed inside them), so that they are no
    /// longer operations of their own.
    pub fused: usize,
    /// Gates, tables and binary rows no class output depends on.
    pub dead: usize,
    /// Constant inputs of binary layers folded into the thresholds.
    pub binary_inputs_folded: usize,
    /// Binary rows found to be constant.
    pub binary_rows_constant: usize,
}
