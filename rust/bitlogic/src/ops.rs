//! The sixteen two-input gates, in difflogic's op-code order.
//!
//! Op code `op` computes, for inputs `(a, b)`, bit `3 - (2a + b)` of `op`: its four bits, most significant first, are
//! the outputs for (0,0), (0,1), (1,0), (1,1). The engine evaluates every gate in algebraic normal form,
//! `c0 ^ c1·a ^ c2·b ^ c3·a·b` over GF(2), which needs no branch on the op code.

/// Number of distinct two-input gates.
pub const NUM_OPS: u8 = 16;

/// Human-readable names, indexed by op code.
pub const OP_NAMES: [&str; 16] = [
    "FALSE",
    "A AND B",
    "A AND NOT B",
    "A",
    "NOT A AND B",
    "B",
    "A XOR B",
    "A OR B",
    "NOR",
    "XNOR",
    "NOT B",
    "A OR NOT B",
    "NOT A",
    "NOT A OR B",
    "NAND",
    "TRUE",
];

/// Output of gate `op` for the input bits `a` and `b`.
#[inline]
pub fn apply(op: u8, a: bool, b: bool) -> bool {
    (op >> (3 - (2 * a as u8 + b as u8))) & 1 == 1
}

/// The truth table of gate `op`: entry `2a + b` (0 or 1) is the output for the inputs `(a, b)`, that is the outputs
/// for (0,0), (0,1), (1,0), (1,1) in turn, the op code's bits from the most significant down.
pub const fn truth_table(op: u8) -> [u8; 4] {
    [(op >> 3) & 1, (op >> 2) & 1, (op >> 1) & 1, op & 1]
}

/// [`truth_table`] of every op code: `OP_TABLES[op][2a + b]` is the output of gate `op` for `(a, b)`. The bindings
/// export it, so that every implementation reads the convention from here.
pub const OP_TABLES: [[u8; 4]; NUM_OPS as usize] = {
    let mut tables = [[0u8; 4]; NUM_OPS as usize];
    let mut op = 0;
    while op < NUM_OPS as usize {
        tables[op] = truth_table(op as u8);
        op += 1;
    }
    tables
};

/// Algebraic-normal-form masks `[c0, c1, c2, c3]` of op `op`, each all-zeros or all-ones, such that the gate on
/// bit-sliced words is `c0 ^ (c1 & a) ^ (c2 & b) ^ (c3 & a & b)`.
pub const fn anf_masks(op: u8) -> [u64; 4] {
    // Outputs for (0,0), (0,1), (1,0), (1,1) are op bits 3, 2, 1, 0.
    let (f00, f01, f10, f11) = ((op >> 3) & 1, (op >> 2) & 1, (op >> 1) & 1, op & 1);
    let coefficients = [f00, f10 ^ f00, f01 ^ f00, f11 ^ f10 ^ f01 ^ f00];
    let mut masks = [0u64; 4];
    let mut i = 0;
    while i < 4 {
        masks[i] = 0u64.wrapping_sub(coefficients[i] as u64);
        i += 1;
    }
    masks
}

/// [`anf_masks`] for every op code.
pub const ANF: [[u64; 4]; 16] = {
    let mut table = [[0u64; 4]; 16];
    let mut op = 0;
    while op < 16 {
        table[op] = anf_masks(op as u8);
        op += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ops_match_their_truth_tables() {
        let named: [fn(bool, bool) -> bool; 16] = [
            |_, _| false,
            |a, b| a && b,
            |a, b| a && !b,
            |a, _| a,
            |a, b| !a && b,
            |_, b| b,
            |a, b| a ^ b,
            |a, b| a || b,
            |a, b| !(a || b),
            |a, b| !(a ^ b),
            |_, b| !b,
            |a, b| a || !b,
            |a, _| !a,
            |a, b| !a || b,
            |a, b| !(a && b),
            |_, _| true,
        ];
        for (op, f) in named.iter().enumerate() {
            for (a, b) in [(false, false), (false, true), (true, false), (true, true)] {
                assert_eq!(apply(op as u8, a, b), f(a, b), "op {op} ({}) at ({a}, {b})", OP_NAMES[op]);
                assert_eq!(OP_TABLES[op][2 * a as usize + b as usize] == 1, f(a, b), "table of op {op}");
                let [c0, c1, c2, c3] = ANF[op];
                let (wa, wb) = (if a { u64::MAX } else { 0 }, if b { u64::MAX } else { 0 });
                let word = c0 ^ (c1 & wa) ^ (c2 & wb) ^ (c3 & wa & wb);
                assert_eq!(word == u64::MAX, f(a, b), "ANF of op {op}");
                assert!(word == 0 || word == u64::MAX);
            }
        }
    }
}
