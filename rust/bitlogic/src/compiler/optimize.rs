//! The optimizing passes, each exact: the optimized graph computes the same class scores for every input.
//!
//! 1. [`simplify`] (run three times): constant propagation, inverter absorption, duplicate and unused table inputs,
//!    pass-through detection and structural hashing, all in one forward sweep that puts every function in a
//!    canonical form (inputs ascending and read uninverted, output 0 for the all-zeros address).
//! 2. [`lower_luts`]: tables of more than three inputs become three-input leaf tables under a multiplexer tree, on
//!    the three inputs that leave the fewest distinct operations.
//! 3. [`crate::compiler::cuts::map`]: the graph is covered with cones of at most three inputs, each one instruction; a node
//!    is folded into its readers' cones (computed again in each) wherever that saves operations.
//! 4. [`remove_dead`]: nodes and binary rows no class output depends on.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::compiler::report::PassReport;
use crate::ir::{
    complement, depends_on, entry, flip_input, from_fn, is_inverted, merge_inputs, node_of, permute, restrict, signal,
    Graph, Group, Kind, Node, Signal, Table, FALSE, TRUE,
};
use crate::limits::MAX_ARITY;

/// FxHash: a fast, non-cryptographic hash for the structural-hashing table (keys are not adversarial).
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The new signal of old signal `s`, when `map` holds the new signal of every old node: the inversion carries over.
#[inline]
fn resolve(map: &[Signal], s: Signal) -> Signal {
    map[node_of(s)] ^ (s & 1)
}

type Strash = HashMap<(u8, [Signal; MAX_ARITY], Table), u32, BuildHasherDefault<FxHasher>>;

/// One forward sweep that rebuilds the graph with every function in canonical form; see the module docs.
pub(crate) fn simplify(old: &Graph, report: &mut PassReport) -> Graph {
    let mut new = old.empty_like();
    new.nodes.reserve(old.nodes.len());
    let mut map: Vec<Signal> = Vec::with_capacity(old.nodes.len());
    // Sized for every node up front: growing it step by step rehashes a million-entry table several times.
    let mut strash = Strash::with_capacity_and_hasher(old.nodes.len(), Default::default());
    for (id, node) in old.nodes.iter().enumerate() {
        let mapped = match node.kind {
            Kind::Const => FALSE,
            Kind::Input => signal(id as u32, false),
            Kind::Func => {
                let mut ins = [FALSE; MAX_ARITY];
                for (slot, &s) in ins.iter_mut().zip(node.ins()) {
                    *slot = resolve(&map, s);
                }
                canonical(&mut new, &mut strash, ins, node.ins().len(), node.table, report)
            }
            Kind::Binary { group, row } => {
                if row == 0 {
                    let g = &old.groups[group as usize];
                    let ins: Vec<Signal> = g.inputs.iter().map(|&s| resolve(&map, s)).collect();
                    let rows = simplify_group(&mut new, g, &ins, report);
                    // All rows of the group get their signal now; later rows of this group are looked up.
                    map.extend(rows);
                    continue;
                }
                // Rows past 0 were mapped together with row 0.
                debug_assert!(map.len() > id);
                continue;
            }
        };
        map.push(mapped);
    }
    new.outputs = old.outputs.iter().map(|&s| resolve(&map, s)).collect();
    new
}

/// Puts the function `table` of `ins[..k]` in canonical form and returns the signal computing it: a constant, an input
/// read through, an identical existing node, or a new node.
fn canonical(
    graph: &mut Graph,
    strash: &mut Strash,
    mut ins: [Signal; MAX_ARITY],
    mut k: usize,
    mut table: Table,
    r: &mut PassReport,
) -> Signal {
    // `ins[..k]` in a fixed array, not a Vec: this runs once per node of a million-node graph, three times.
    fn remove(ins: &mut [Signal; MAX_ARITY], k: &mut usize, i: usize) {
        ins.copy_within(i + 1..*k, i);
        *k -= 1;
    }
    // Constants and inverted reads, highest position first so that removals keep lower positions valid.
    for i in (0..k).rev() {
        let s = ins[i];
        if node_of(s) == 0 {
            table = restrict(&table, k, i, is_inverted(s));
            remove(&mut ins, &mut k, i);
            r.inputs_removed += 1;
        } else if is_inverted(s) {
            table = flip_input(&table, k, i);
            ins[i] = s & !1;
            r.inverters_absorbed += 1;
        }
    }
    // The same signal read twice.
    let mut j = 1;
    while j < k {
        match ins[..j].iter().position(|&s| s == ins[j]) {
            Some(i) => {
                table = merge_inputs(&table, k, i, j);
                remove(&mut ins, &mut k, j);
                r.inputs_removed += 1;
            }
            None => j += 1,
        }
    }
    // Inputs the function ignores.
    for i in (0..k).rev() {
        if !depends_on(&table, k, i) {
            table = restrict(&table, k, i, false);
            remove(&mut ins, &mut k, i);
            r.inputs_removed += 1;
        }
    }
    if k == 0 {
        r.constants += 1;
        return if entry(&table, 0) { TRUE } else { FALSE };
    }
    if k == 1 {
        // It depends on its input, so it is the input or its inverse.
        r.wires += 1;
        return ins[0] ^ entry(&table, 0) as u32;
    }
    // Inputs ascending.
    let mut order: [usize; MAX_ARITY] = std::array::from_fn(|p| p);
    let order = &mut order[..k];
    order.sort_unstable_by_key(|&p| ins[p]);
    if order.iter().enumerate().any(|(p, &o)| p != o) {
        table = permute(&table, k, order);
        let old = ins;
        for (slot, &o) in ins.iter_mut().zip(order.iter()) {
            *slot = old[o];
        }
    }
    // Output 0 at the all-zeros address; the inversion travels with the signal.
    let inverted = entry(&table, 0);
    if inverted {
        table = complement(&table, k);
    }
    let node = Node::func(&ins[..k], table);
    let key = (k as u8, node.inputs, table);
    if let Some(&existing) = strash.get(&key) {
        r.merged += 1;
        return signal(existing, inverted);
    }
    let s = graph.push(node);
    strash.insert(key, node_of(s) as u32);
    s ^ inverted as u32
}

/// Rebuilds a binary group: constant inputs fold into the thresholds, inverted inputs flip their weight column,
/// rows that cannot miss or cannot reach their threshold become constants. Returns every row's signal.
fn simplify_group(graph: &mut Graph, g: &Group, ins: &[Signal], r: &mut PassReport) -> Vec<Signal> {
    let rows = g.rows();
    let mut thresholds = g.thresholds.clone();
    let mut kept: Vec<(usize, bool)> = Vec::with_capacity(ins.len()); // (old column, flip)
    let mut inputs = Vec::with_capacity(ins.len());
    for (j, &s) in ins.iter().enumerate() {
        if node_of(s) == 0 {
            let value = is_inverted(s);
            for (row, t) in thresholds.iter_mut().enumerate() {
                if g.weight(row, j) == value {
                    *t = t.saturating_sub(1);
                }
            }
            r.binary_inputs_folded += 1;
        } else {
            if is_inverted(s) {
                r.inverters_absorbed += 1;
            }
            kept.push((j, is_inverted(s)));
            inputs.push(s & !1);
        }
    }
    let n = inputs.len() as i64;
    let words = inputs.len().div_ceil(64);
    let mut weights = Vec::new();
    let mut live_thresholds = Vec::new();
    let mut signals = vec![FALSE; rows];
    let mut live_rows = Vec::new();
    for (row, &t) in thresholds.iter().enumerate() {
        if t <= 0 {
            signals[row] = TRUE;
            r.binary_rows_constant += 1;
        } else if t as i64 > n {
            signals[row] = FALSE;
            r.binary_rows_constant += 1;
        } else {
            let mut packed = vec![0u64; words];
            for (new_j, &(j, flip)) in kept.iter().enumerate() {
                packed[new_j / 64] |= ((g.weight(row, j) ^ flip) as u64) << (new_j % 64);
            }
            weights.extend(packed);
            live_thresholds.push(t);
            live_rows.push(row);
        }
    }
    if !live_rows.is_empty() {
        let out = graph.push_group(inputs, weights, live_thresholds);
        for (&row, s) in live_rows.iter().zip(out) {
            signals[row] = s;
        }
    }
    signals
}

/// Replaces every table of more than three inputs by three-input leaf tables under a tree of multiplexers. With
/// `choose`, the three leaf inputs are the ones that leave the fewest distinct, non-trivial operations; otherwise
/// they are the first three.
pub(crate) fn lower_luts(old: &Graph, choose: bool, report: &mut PassReport) -> Graph {
    let mut new = old.empty_like();
    let mut map: Vec<Signal> = Vec::with_capacity(old.nodes.len());
    for (id, node) in old.nodes.iter().enumerate() {
        let mapped = match node.kind {
            Kind::Const => FALSE,
            Kind::Input => signal(id as u32, false),
            Kind::Func => {
                let ins: Vec<Signal> = node.ins().iter().map(|&s| resolve(&map, s)).collect();
                if ins.len() <= 3 {
                    new.push(Node::func(&ins, node.table))
                } else {
                    report.luts_split += 1;
                    let leaves = if choose { best_leaf_inputs(&node.table, ins.len()) } else { [0, 1, 2] };
                    split_lut(&mut new, &ins, &node.table, leaves)
                }
            }
            Kind::Binary { group, row } => {
                if row == 0 {
                    let g = &old.groups[group as usize];
                    let ins = g.inputs.iter().map(|&s| resolve(&map, s)).collect();
                    map.extend(new.push_group(ins, g.weights.clone(), g.thresholds.clone()));
                }
                continue;
            }
        };
        map.push(mapped);
    }
    new.outputs = old.outputs.iter().map(|&s| resolve(&map, s)).collect();
    new
}

/// The multiplexer `sel ? hi : lo` as a table of `(lo, hi, sel)`.
pub(crate) const MUX: Table = [0xCA, 0, 0, 0];

/// Emits the leaf tables over inputs `leaves` and the multiplexer tree over the others; returns the root.
fn split_lut(graph: &mut Graph, ins: &[Signal], table: &Table, leaves: [usize; 3]) -> Signal {
    let k = ins.len();
    let rest: Vec<usize> = (0..k).filter(|i| !leaves.contains(i)).collect();
    let leaf_ins = [ins[leaves[0]], ins[leaves[1]], ins[leaves[2]]];
    let mut level: Vec<Signal> = (0..1usize << rest.len())
        .map(|m| graph.push(Node::func(&leaf_ins, leaf_table(table, &leaves, &rest, m))))
        .collect();
    for &var in &rest {
        level = level.chunks_exact(2).map(|pair| graph.push(Node::func(&[pair[0], pair[1], ins[var]], MUX))).collect();
    }
    level[0]
}

/// The three-input table of `table` on inputs `leaves` when the inputs `rest` hold the bits of `m`.
fn leaf_table(table: &Table, leaves: &[usize; 3], rest: &[usize], m: usize) -> Table {
    let fixed = rest.iter().enumerate().fold(0, |acc, (q, &var)| acc | ((m >> q) & 1) << var);
    from_fn(3, |b| {
        let address = leaves.iter().enumerate().fold(fixed, |acc, (p, &var)| acc | ((b >> p) & 1) << var);
        entry(table, address)
    })
}

/// The three leaf inputs that leave the fewest operations: distinct leaf tables that are not constants or a
/// single input, plus multiplexers whose two sides differ.
fn best_leaf_inputs(table: &Table, k: usize) -> [usize; 3] {
    let mut best = ([0, 1, 2], usize::MAX);
    for a in 0..k {
        for b in a + 1..k {
            for c in b + 1..k {
                let leaves = [a, b, c];
                let rest: Vec<usize> = (0..k).filter(|i| !leaves.contains(i)).collect();
                let cost = split_cost(table, &leaves, &rest);
                if cost < best.1 {
                    best = (leaves, cost);
                }
            }
        }
    }
    best.0
}

fn split_cost(table: &Table, leaves: &[usize; 3], rest: &[usize]) -> usize {
    // Operations are numbered as they are found; equal ones share a number, as structural hashing will merge them.
    let mut found: Vec<(u64, u64)> = Vec::new();
    let mut id = |key: (u64, u64)| match found.iter().position(|&k| k == key) {
        Some(i) => (i as u64, false),
        None => {
            found.push(key);
            ((found.len() - 1) as u64, true)
        }
    };
    const TRIVIAL: [u64; 8] = [0x00, 0xFF, 0xAA, 0x55, 0xCC, 0x33, 0xF0, 0x0F];
    let mut cost = 0;
    let mut level: Vec<u64> = (0..1usize << rest.len())
        .map(|m| {
            let t = leaf_table(table, leaves, rest, m)[0];
            let (i, new) = id((0, t));
            cost += (new && !TRIVIAL.contains(&t)) as usize;
            i
        })
        .collect();
    for _ in rest {
        level = level
            .chunks_exact(2)
            .map(|pair| {
                if pair[0] == pair[1] {
                    pair[0]
                } else {
                    let (i, new) = id((1 + pair[0], pair[1]));
                    cost += new as usize;
                    i
                }
            })
            .collect();
    }
    cost
}

/// Drops nodes and binary rows that no class output depends on.
pub(crate) fn remove_dead(old: &Graph, report: &mut PassReport) -> Graph {
    let mut live = vec![false; old.nodes.len()];
    let mut group_live = vec![false; old.groups.len()];
    for &s in &old.outputs {
        live[node_of(s)] = true;
    }
    // Group inputs are nodes before all of the group's rows, so one backward sweep sees them after the rows.
    for id in (0..old.nodes.len()).rev() {
        if !live[id] {
            continue;
        }
        let node = &old.nodes[id];
        for &s in node.ins() {
            live[node_of(s)] = true;
        }
        if let Kind::Binary { group, .. } = node.kind {
            if !group_live[group as usize] {
                group_live[group as usize] = true;
                for &s in &old.groups[group as usize].inputs {
                    live[node_of(s)] = true;
                }
            }
        }
    }
    let mut new = old.empty_like();
    let mut map: Vec<Signal> = vec![FALSE; old.nodes.len()];
    for (id, node) in old.nodes.iter().enumerate() {
        match node.kind {
            Kind::Const => {}
            Kind::Input => map[id] = signal(id as u32, false),
            Kind::Func => {
                if live[id] {
                    let ins: Vec<Signal> = node.ins().iter().map(|&s| resolve(&map, s)).collect();
                    map[id] = new.push(Node::func(&ins, node.table));
                } else {
                    report.dead += 1;
                }
            }
            Kind::Binary { group, row } => {
                if row != 0 {
                    continue;
                }
                let g = &old.groups[group as usize];
                let rows: Vec<usize> = (0..g.rows()).filter(|&r| live[g.first as usize + r]).collect();
                report.dead += g.rows() - rows.len();
                if rows.is_empty() {
                    continue;
                }
                let words = g.words();
                let weights = rows.iter().flat_map(|&r| g.weights[r * words..][..words].iter().copied()).collect();
                let thresholds = rows.iter().map(|&r| g.thresholds[r]).collect();
                let ins = g.inputs.iter().map(|&s| resolve(&map, s)).collect();
                for (&r, s) in rows.iter().zip(new.push_group(ins, weights, thresholds)) {
                    map[g.first as usize + r] = s;
                }
            }
        }
    }
    new.outputs = old.outputs.iter().map(|&s| resolve(&map, s)).collect();
    new
}
