//! The evaluator's program: a graph lowered to three-input operations on numbered bit-plane slots.
//!
//! Slots `0..num_inputs` hold the encoder bits the network reads, the next two the constants FALSE and TRUE; every other slot is
//! reused as soon as its last reader has run, so the working set of a block is the widest cut through the network
//! rather than the whole network. Operations are ordered by depth, and within a depth by truth table, so the
//! evaluator dispatches once per run of equal operations instead of once per operation.

use crate::ir::{entry, flip_input, from_fn, is_inverted, node_of, permute, Graph, Group, Kind, Node, Signal, Table};

/// One step of a program.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// `ops[start..end]`, all computing the three-input function `imm`.
    Tern { imm: u8, start: u32, end: u32 },
    /// A binary (XNOR-popcount) layer.
    Binary(BinaryStep),
}

#[derive(Clone, Debug)]
pub(crate) struct BinaryStep {
    pub(crate) inputs: Vec<u32>,
    /// Row-major `[rows, ceil(inputs / 64)]`.
    pub(crate) weights: Vec<u64>,
    pub(crate) thresholds: Vec<i32>,
    pub(crate) outputs: Vec<u32>,
}

impl BinaryStep {
    pub(crate) fn words(&self) -> usize {
        self.inputs.len().div_ceil(64)
    }
}

/// The bits one class counts: the slots, the complements of the `inverted` slots, plus bits known to be 1. A class
/// output read inverted costs the counter one XOR instead of an inverter operation (a load and a store) before it.
#[derive(Clone, Debug)]
pub(crate) struct ClassSum {
    pub(crate) slots: Vec<u32>,
    pub(crate) inverted: Vec<u32>,
    pub(crate) ones: u32,
}

impl ClassSum {
    /// Bit planes needed for the largest count.
    pub(crate) fn planes(&self) -> usize {
        (usize::BITS - (self.slots.len() + self.inverted.len() + self.ones as usize).leading_zeros()) as usize
    }
}

/// Sizes of a program, as reported by [`crate::Network::optimization`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Three-input operations by how many inputs they really read (index 1: one, 2: two, 3: three).
    pub ops: [usize; 4],
    /// Binary rows (XNOR-popcount neurons).
    pub binary_rows: usize,
    /// Binary weights.
    pub binary_weights: usize,
    /// Encoder bits some operation or class output reads.
    pub inputs_read: usize,
    /// Bit-plane slots: the working memory of a block is this many planes.
    pub slots: usize,
    /// Longest chain of operations.
    pub depth: usize,
}

impl ProgramStats {
    /// All three-input operations.
    pub fn total_ops(&self) -> usize {
        self.ops.iter().sum()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Program {
    /// Slots `0..num_inputs` hold these encoder bits.
    pub(crate) input_bits: Vec<u32>,
    pub(crate) num_inputs: usize,
    pub(crate) num_slots: usize,
    /// `[a, b, c, out]` slots of every three-input operation.
    pub(crate) ops: Vec<[u32; 4]>,
    pub(crate) steps: Vec<Step>,
    pub(crate) classes: Vec<ClassSum>,
    pub(crate) stats: ProgramStats,
}

/// An item to schedule: a function node (with the order its three operands are read in, and a copy of its
/// inputs: items are visited in schedule order, and reading each node there would miss the cache once per
/// operation on large networks) or a binary group.
#[derive(Clone, Copy)]
enum Item {
    Func { id: usize, order: [usize; 3], ins: [Signal; 3], len: usize },
    Group(usize),
}

/// Readers of a node that keep its slot to the end of the program: class outputs.
const PINNED: u32 = u32::MAX;

impl Program {
    /// Lowers a graph whose functions have at most three inputs.
    pub(crate) fn new(graph: &Graph) -> Self {
        let (depth, group_depth) = depths(graph);
        let max_depth = depth.iter().copied().max().unwrap_or(0);
        let items = schedule(graph, &depth, &group_depth);
        let uses = reader_counts(graph);
        // An encoder bit is read when an operation, a binary layer or a class output reads it (input counts are
        // never released below).
        let inputs_read = (1..=graph.num_inputs).filter(|&n| uses[n] > 0).count();

        let mut lowering = Lowering::new(graph, uses);
        for &(_, _, imm, _, item) in &items {
            match item {
                Item::Func { id, order, ins, len } => lowering.func(id, imm, order, &ins[..len]),
                Item::Group(g) => lowering.group(&graph.groups[g]),
            }
        }
        let classes = lowering.class_sums(graph);
        let Lowering { ops, steps, mut stats, allocator, .. } = lowering;
        stats.depth = max_depth;
        stats.inputs_read = inputs_read;
        stats.slots = allocator.next as usize;
        let program = Program {
            input_bits: graph.input_bits.clone(),
            num_inputs: graph.num_inputs,
            num_slots: stats.slots,
            ops,
            steps,
            classes,
            stats,
        };
        program.check();
        program
    }

    /// Every slot index is in range: the evaluator relies on it to index without checks.
    fn check(&self) {
        let n = self.num_slots as u32;
        assert!(self.ops.iter().all(|op| op.iter().all(|&s| s < n)), "program slot out of range");
        for step in &self.steps {
            match step {
                Step::Tern { start, end, .. } => assert!(start <= end && *end as usize <= self.ops.len()),
                Step::Binary(b) => {
                    assert!(b.inputs.iter().chain(&b.outputs).all(|&s| s < n), "program slot out of range");
                    assert_eq!(b.weights.len(), b.outputs.len() * b.words());
                    assert_eq!(b.thresholds.len(), b.outputs.len());
                }
            }
        }
        assert!(
            self.classes.iter().all(|c| c.slots.iter().chain(&c.inverted).all(|&s| s < n)),
            "program slot out of range"
        );
    }
}

/// Depth of every node, and of every binary group; a group's rows share the depth of the group.
fn depths(graph: &Graph) -> (Vec<usize>, Vec<usize>) {
    let nodes = &graph.nodes;
    let mut depth = vec![0usize; nodes.len()];
    let mut group_depth = vec![0usize; graph.groups.len()];
    for id in 0..nodes.len() {
        depth[id] = match nodes[id].kind {
            Kind::Func => 1 + nodes[id].ins().iter().map(|&s| depth[node_of(s)]).max().unwrap_or(0),
            Kind::Binary { group, row } => {
                if row == 0 {
                    let d = graph.groups[group as usize].inputs.iter().map(|&s| depth[node_of(s)]).max();
                    group_depth[group as usize] = 1 + d.unwrap_or(0);
                }
                group_depth[group as usize]
            }
            _ => 0,
        };
    }
    (depth, group_depth)
}

/// The three-input truth table of a function node as evaluated: inverted inputs absorbed.
fn evaluated_imm(node: &Node) -> u8 {
    let k = node.ins().len();
    let mut table: Table = node.table;
    for (i, &s) in node.ins().iter().enumerate() {
        if is_inverted(s) {
            table = flip_input(&table, k, i);
        }
    }
    from_fn(3, |a| entry(&table, a & ((1 << k) - 1)))[0] as u8
}

/// Every function and group as `(depth, order, imm, first input, item)`, in the order the program runs them: by
/// depth, groups before functions, then by truth table (long runs of one table) and first input (locality).
fn schedule(graph: &Graph, depth: &[usize], group_depth: &[usize]) -> Vec<(usize, u8, u8, usize, Item)> {
    let mut items = Vec::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if node.kind == Kind::Func {
            let first = node.ins().first().map_or(0, |&s| node_of(s));
            let (imm, order) = canonical_order(evaluated_imm(node));
            let mut ins = [0; 3];
            ins[..node.ins().len()].copy_from_slice(node.ins());
            items.push((depth[id], 1, imm, first, Item::Func { id, order, ins, len: node.ins().len() }));
        }
    }
    for (g, _) in graph.groups.iter().enumerate() {
        items.push((group_depth[g], 0, 0, 0, Item::Group(g)));
    }
    items.sort_unstable_by_key(|&(d, order, imm, first, _)| (d, order, imm, first));
    items
}

/// Readers of every node, counted once per reading item; class outputs are [`PINNED`].
fn reader_counts(graph: &Graph) -> Vec<u32> {
    let mut uses = vec![0u32; graph.nodes.len()];
    for node in graph.nodes.iter().filter(|n| n.kind == Kind::Func) {
        distinct_nodes(node.ins(), |n| uses[n] = uses[n].saturating_add(1));
    }
    for group in &graph.groups {
        distinct_nodes(&group.inputs, |n| uses[n] = uses[n].saturating_add(1));
    }
    for &s in &graph.outputs {
        uses[node_of(s)] = PINNED;
    }
    uses
}

/// The state of lowering scheduled items to steps: the slot of every node computed so far, the readers each node
/// still has (its slot is freed after the last), and the program built so far.
struct Lowering {
    num_inputs: usize,
    slot: Vec<u32>,
    uses: Vec<u32>,
    allocator: Slots,
    ops: Vec<[u32; 4]>,
    steps: Vec<Step>,
    stats: ProgramStats,
}

impl Lowering {
    /// Slots `0..num_inputs` hold the encoder bits, the next two FALSE and TRUE.
    fn new(graph: &Graph, uses: Vec<u32>) -> Self {
        let false_slot = graph.num_inputs as u32;
        let true_slot = false_slot + 1;
        let mut slot = vec![u32::MAX; graph.nodes.len()];
        slot[0] = false_slot;
        for i in 0..graph.num_inputs {
            slot[1 + i] = i as u32;
        }
        Lowering {
            num_inputs: graph.num_inputs,
            slot,
            uses,
            allocator: Slots { next: true_slot + 1, free: Vec::new() },
            ops: Vec::new(),
            steps: Vec::new(),
            stats: ProgramStats::default(),
        }
    }

    /// The slot holding the node of signal `s`. Its readers absorb the inversion (into the truth table or the
    /// weights), so TRUE, the inverted constant, reads the FALSE slot: the TRUE slot would invert it twice.
    fn slot_of(&self, s: Signal) -> u32 {
        self.slot[node_of(s)]
    }

    /// One reader of node `id` has run: its slot is freed after the last (encoder bits and the constant are fixed).
    fn release(&mut self, id: usize) {
        if id > self.num_inputs && self.uses[id] != PINNED {
            self.uses[id] -= 1;
            if self.uses[id] == 0 {
                self.allocator.free.push(self.slot[id]);
            }
        }
    }

    /// A three-input operation computing node `id`; operand `p` reads `ins[order[p]]` (the last input repeated for
    /// nodes of fewer inputs).
    fn func(&mut self, id: usize, imm: u8, order: [usize; 3], ins: &[Signal]) {
        let mut abc = [0u32; 3];
        for (a, &p) in abc.iter_mut().zip(&order) {
            *a = self.slot_of(ins[p.min(ins.len() - 1)]);
        }
        distinct_nodes(ins, |n| self.release(n));
        let out = self.allocator.take();
        self.slot[id] = out;
        self.stats.ops[ins.len()] += 1;
        push_op(&mut self.ops, &mut self.steps, imm, [abc[0], abc[1], abc[2], out]);
    }

    /// A binary step for `group`, with inverted inputs absorbed into the weights.
    fn group(&mut self, group: &Group) {
        let words = group.words();
        let mut weights = group.weights.clone();
        let inputs: Vec<u32> = group.inputs.iter().map(|&s| self.slot_of(s)).collect();
        for (j, &s) in group.inputs.iter().enumerate() {
            if is_inverted(s) {
                for row in weights.chunks_exact_mut(words) {
                    row[j / 64] ^= 1 << (j % 64);
                }
            }
        }
        // Outputs are allocated before the inputs are released: a row never overwrites an input.
        let outputs: Vec<u32> = (0..group.rows())
            .map(|r| {
                let out = self.allocator.take();
                self.slot[group.first as usize + r] = out;
                out
            })
            .collect();
        distinct_nodes(&group.inputs, |n| self.release(n));
        // Rows nothing reads are released at once.
        for r in 0..group.rows() {
            let id = group.first as usize + r;
            if self.uses[id] == 0 {
                self.allocator.free.push(self.slot[id]);
            }
        }
        self.stats.binary_rows += group.rows();
        self.stats.binary_weights += group.rows() * group.inputs.len();
        self.steps.push(Step::Binary(BinaryStep { inputs, weights, thresholds: group.thresholds.clone(), outputs }));
    }

    /// The bits each class counts, once every node has its slot.
    fn class_sums(&self, graph: &Graph) -> Vec<ClassSum> {
        let per_class = graph.outputs.len() / graph.num_classes;
        graph
            .outputs
            .chunks_exact(per_class.max(1))
            .map(|members| {
                let mut sum = ClassSum { slots: Vec::new(), inverted: Vec::new(), ones: 0 };
                for &s in members {
                    if node_of(s) == 0 {
                        sum.ones += is_inverted(s) as u32;
                    } else if is_inverted(s) {
                        sum.inverted.push(self.slot[node_of(s)]);
                    } else {
                        sum.slots.push(self.slot[node_of(s)]);
                    }
                }
                sum
            })
            .collect()
    }
}

/// The smallest truth table among the six orders of reading the three operands, and that order: operand `p` of the
/// operation is operand `order[p]` of `imm`. Operations run in batches of one truth table (one dispatch each), so
/// fewer distinct tables make longer batches; 256 tables fall into 80 classes this way.
fn canonical_order(imm: u8) -> (u8, [usize; 3]) {
    const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    let table = [imm as u64, 0, 0, 0];
    ORDERS.iter().map(|order| (permute(&table, 3, order)[0] as u8, *order)).min().expect("six orders")
}

/// Calls `visit` on each node `signals` read, once each, ascending. Functions have at most three inputs: those
/// are sorted on the stack, as this runs for every operation of networks of a million gates.
fn distinct_nodes(signals: &[Signal], mut visit: impl FnMut(usize)) {
    let mut few = [0usize; 3];
    let mut many = Vec::new();
    let nodes: &mut [usize] = if signals.len() <= few.len() {
        &mut few[..signals.len()]
    } else {
        many.resize(signals.len(), 0);
        &mut many
    };
    for (n, &s) in nodes.iter_mut().zip(signals) {
        *n = node_of(s);
    }
    nodes.sort_unstable();
    for run in nodes.chunk_by(|a, b| a == b) {
        visit(run[0]);
    }
}

fn push_op(ops: &mut Vec<[u32; 4]>, steps: &mut Vec<Step>, imm: u8, op: [u32; 4]) {
    let at = ops.len() as u32;
    ops.push(op);
    if let Some(Step::Tern { imm: last, end, .. }) = steps.last_mut() {
        if *last == imm && *end == at {
            *end = at + 1;
            return;
        }
    }
    steps.push(Step::Tern { imm, start: at, end: at + 1 });
}

/// Slot allocation: the most recently freed slot first, as it is the most likely to still be in cache.
struct Slots {
    next: u32,
    free: Vec<u32>,
}

impl Slots {
    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
}
