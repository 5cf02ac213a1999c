//! The compiler's intermediate form: one node per gate, table or binary neuron, wired by signals.
//!
//! A [`Signal`] names a node and says whether it is read inverted (`node << 1 | inverted`), so inverters cost
//! nothing until the end, where they are absorbed into the reading node's truth table. Node 0 is the constant FALSE
//! (signal 0 is FALSE, signal 1 TRUE); nodes `1..=num_inputs` are the encoder's bits. Nodes are stored in
//! topological order: a node only reads nodes before it.
//!
//! Gates and lookup tables are both [`Kind::Func`] nodes: up to eight inputs and a truth table whose entry `a` is
//! the output when input `i` has the value of bit `i` of `a`. A two-input gate is just a four-entry table. Binary
//! (XNOR-popcount) layers stay grouped ([`Group`]): every row reads the whole group input vector.

use crate::limits::MAX_ARITY;

/// A node index shifted left by one, with the low bit set when the node is read inverted.
pub(crate) type Signal = u32;
/// The constant FALSE.
pub(crate) const FALSE: Signal = 0;
/// The constant TRUE.
pub(crate) const TRUE: Signal = 1;

#[inline]
pub(crate) fn signal(node: u32, inverted: bool) -> Signal {
    node << 1 | inverted as u32
}
#[inline]
pub(crate) fn node_of(s: Signal) -> usize {
    (s >> 1) as usize
}
#[inline]
pub(crate) fn is_inverted(s: Signal) -> bool {
    s & 1 == 1
}

/// A truth table of up to 256 entries: entry `a` is bit `a % 64` of word `a / 64`.
pub(crate) type Table = [u64; 4];

/// What a node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// The constant FALSE (node 0 only).
    Const,
    /// Encoder output bit `node - 1`.
    Input,
    /// A boolean function of `arity` inputs given by its table.
    Func,
    /// Row `row` of binary group `group`.
    Binary { group: u32, row: u32 },
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) arity: u8,
    pub(crate) inputs: [Signal; MAX_ARITY],
    pub(crate) table: Table,
}

impl Node {
    pub(crate) fn func(inputs: &[Signal], table: Table) -> Self {
        let mut node = Node { kind: Kind::Func, arity: inputs.len() as u8, inputs: [FALSE; MAX_ARITY], table };
        node.inputs[..inputs.len()].copy_from_slice(inputs);
        node
    }
    fn plain(kind: Kind) -> Self {
        Node { kind, arity: 0, inputs: [FALSE; MAX_ARITY], table: [0; 4] }
    }
    /// The signals this node reads (empty except for functions).
    pub(crate) fn ins(&self) -> &[Signal] {
        &self.inputs[..self.arity as usize]
    }
}

/// A binary layer: every row compares the group's inputs with its weights.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) inputs: Vec<Signal>,
    /// Row-major `[rows, words]`, bit `j` of a row being the weight of input `j` (1 = +1).
    pub(crate) weights: Vec<u64>,
    /// A row is 1 when at least `threshold` inputs equal their weight.
    pub(crate) thresholds: Vec<i32>,
    /// Node index of row 0; rows are consecutive nodes.
    pub(crate) first: u32,
}

impl Group {
    pub(crate) fn words(&self) -> usize {
        self.inputs.len().div_ceil(64)
    }
    pub(crate) fn rows(&self) -> usize {
        self.thresholds.len()
    }
    #[inline]
    pub(crate) fn weight(&self, row: usize, j: usize) -> bool {
        (self.weights[row * self.words() + j / 64] >> (j % 64)) & 1 == 1
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) groups: Vec<Group>,
    /// The bits GroupSum counts, in order: `outputs.len() / num_classes` per class.
    pub(crate) outputs: Vec<Signal>,
    /// Input nodes, one per encoder bit the first layer reads (not one per encoder bit: a network may declare far
    /// more bits than it reads).
    pub(crate) num_inputs: usize,
    /// The encoder bit of each input node.
    pub(crate) input_bits: Vec<u32>,
    pub(crate) num_classes: usize,
}

impl Graph {
    /// A graph holding only the constant and the input nodes of `input_bits`.
    pub(crate) fn with_inputs(input_bits: Vec<u32>, num_classes: usize) -> Self {
        let num_inputs = input_bits.len();
        let mut nodes = Vec::with_capacity(1 + num_inputs);
        nodes.push(Node::plain(Kind::Const));
        nodes.extend((0..num_inputs).map(|_| Node::plain(Kind::Input)));
        Graph { nodes, groups: Vec::new(), outputs: Vec::new(), num_inputs, input_bits, num_classes }
    }

    /// An empty graph with the same inputs and classes.
    pub(crate) fn empty_like(&self) -> Self {
        Graph::with_inputs(self.input_bits.clone(), self.num_classes)
    }

    /// The signal of encoder bit `i`.
    pub(crate) fn input(i: usize) -> Signal {
        signal(1 + i as u32, false)
    }

    pub(crate) fn push(&mut self, node: Node) -> Signal {
        let index = self.nodes.len() as u32;
        self.nodes.push(node);
        signal(index, false)
    }

    /// Adds a binary group; returns the signals of its rows.
    pub(crate) fn push_group(&mut self, inputs: Vec<Signal>, weights: Vec<u64>, thresholds: Vec<i32>) -> Vec<Signal> {
        let g = self.groups.len() as u32;
        let first = self.nodes.len() as u32;
        let rows = thresholds.len();
        self.groups.push(Group { inputs, weights, thresholds, first });
        (0..rows).map(|row| self.push(Node::plain(Kind::Binary { group: g, row: row as u32 }))).collect()
    }
}

// -- truth tables -------------------------------------------------------------------------------------------------

#[inline]
pub(crate) fn entry(t: &Table, a: usize) -> bool {
    (t[a >> 6] >> (a & 63)) & 1 == 1
}

/// The table of arity `k` whose entry `a` is `f(a)`.
#[inline]
pub(crate) fn from_fn(k: usize, f: impl Fn(usize) -> bool) -> Table {
    let mut t = [0u64; 4];
    for a in 0..1usize << k {
        t[a >> 6] |= (f(a) as u64) << (a & 63);
    }
    t
}

/// `a` with a bit of value `v` inserted at position `i` (higher bits move up).
#[inline]
fn insert_bit(a: usize, i: usize, v: bool) -> usize {
    let low = a & ((1 << i) - 1);
    low | (v as usize) << i | (a >> i) << (i + 1)
}

/// The table with input `i` fixed to `v` (arity `k - 1`; inputs above `i` move down).
pub(crate) fn restrict(t: &Table, k: usize, i: usize, v: bool) -> Table {
    from_fn(k - 1, |a| entry(t, insert_bit(a, i, v)))
}

/// The table reading input `i` inverted.
pub(crate) fn flip_input(t: &Table, k: usize, i: usize) -> Table {
    from_fn(k, |a| entry(t, a ^ (1 << i)))
}

/// The table when inputs `i < j` carry the same signal: input `j` is removed (arity `k - 1`).
pub(crate) fn merge_inputs(t: &Table, k: usize, i: usize, j: usize) -> Table {
    from_fn(k - 1, |a| entry(t, insert_bit(a, j, (a >> i) & 1 == 1)))
}

/// Whether the output depends on input `i`.
pub(crate) fn depends_on(t: &Table, k: usize, i: usize) -> bool {
    (0..1usize << k).any(|a| a & (1 << i) == 0 && entry(t, a) != entry(t, a | 1 << i))
}

/// The complemented table.
pub(crate) fn complement(t: &Table, k: usize) -> Table {
    from_fn(k, |a| !entry(t, a))
}

/// The table with inputs reordered: new input `p` is old input `order[p]`.
pub(crate) fn permute(t: &Table, k: usize, order: &[usize]) -> Table {
    from_fn(k, |a| {
        let old = order.iter().enumerate().fold(0, |acc, (p, &o)| acc | ((a >> p) & 1) << o);
        entry(t, old)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random_table(rng: &mut SplitMix64, k: usize) -> Table {
        let words = [rng.next_u64(), rng.next_u64(), rng.next_u64(), rng.next_u64()];
        from_fn(k, |a| entry(&words, a))
    }

    #[test]
    fn table_operations_match_their_definitions() {
        let mut rng = SplitMix64::new(3);
        for k in 1..=MAX_ARITY {
            for _ in 0..20 {
                let t = random_table(&mut rng, k);
                for i in 0..k {
                    let flipped = flip_input(&t, k, i);
                    for a in 0..1usize << k {
                        assert_eq!(entry(&flipped, a), entry(&t, a ^ 1 << i));
                    }
                    for v in [false, true] {
                        let r = restrict(&t, k, i, v);
                        for a in 0..1usize << k {
                            if (a >> i) & 1 == v as usize {
                                let reduced = (a & ((1 << i) - 1)) | (a >> (i + 1)) << i;
                                assert_eq!(entry(&r, reduced), entry(&t, a));
                            }
                        }
                    }
                    for j in i + 1..k {
                        let m = merge_inputs(&t, k, i, j);
                        for a in 0..1usize << (k - 1) {
                            let full = insert_bit(a, j, (a >> i) & 1 == 1);
                            assert_eq!(entry(&m, a), entry(&t, full));
                        }
                    }
                }
                let order: Vec<usize> = (0..k).rev().collect();
                let p = permute(&t, k, &order);
                for a in 0..1usize << k {
                    let old = (0..k).fold(0, |acc, q| acc | ((a >> q) & 1) << (k - 1 - q));
                    assert_eq!(entry(&p, a), entry(&t, old));
                }
            }
        }
    }

    #[test]
    fn dependence_is_detected() {
        // f(a, b) = a: depends on input 0 only.
        let t = from_fn(2, |a| a & 1 == 1);
        assert!(depends_on(&t, 2, 0));
        assert!(!depends_on(&t, 2, 1));
    }
}
