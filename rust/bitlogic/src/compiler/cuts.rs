//! Cut mapping: cover the graph with three-input cones, duplicating logic where that saves operations.
//!
//! Every operation of the program is one three-input instruction whatever its table, so the cost of a program is
//! its number of operations. Folding a node into its only reader, when the two read at most three signals, saves
//! one; mapping goes further: a node read by several nodes can be folded into each of them (computed again inside
//! each cone) when every cone still reads at most three signals, which removes the node's own operation.
//!
//! The classic area-oriented scheme: enumerate the 3-feasible cuts of every node (sets of at most three nodes that
//! separate it from the inputs), bottom-up by merging the cuts of its fan-ins, keeping the few with the lowest
//! *area flow* (one for the root plus each leaf's area flow shared among its readers); from the outputs down, each
//! node of the cover takes its best cut and adds the cut's leaves to the cover; then rounds of area recovery let
//! every node of the cover switch to the cut that adds the fewest nodes given the rest of the cover. A cone's table
//! is found by simulating its nodes on the eight leaf assignments. Exact by construction: a cone computes its
//! root's function of the leaves.

use crate::compiler::report::PassReport;
use crate::ir::{entry, from_fn, is_inverted, node_of, signal, Graph, Kind, Node, Signal};

/// Cuts kept per node: more finds better covers, at a cost per node of the product of its fan-ins' counts.
const CUTS_PER_NODE: usize = 6;
/// Passes of area recovery over the cover.
const RECOVERY_ROUNDS: usize = 2;

/// At most three leaves, ascending node indices.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cut {
    leaves: [u32; 3],
    len: u8,
    flow: f32,
}

impl Cut {
    fn leaves(&self) -> &[u32] {
        &self.leaves[..self.len as usize]
    }
    fn trivial(node: u32) -> Cut {
        Cut { leaves: [node, 0, 0], len: 1, flow: 0.0 }
    }
}

/// Up to three ascending node indices and how many there are.
type Leaves = ([u32; 3], u8);

/// The union of sorted leaf sets, if it has at most three leaves.
fn union(a: &[u32], b: &[u32]) -> Option<Leaves> {
    let mut out = [0u32; 3];
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!(),
        };
        if n == 3 {
            return None;
        }
        out[n] = next;
        n += 1;
    }
    Some((out, n as u8))
}

/// The signals read from outside the functions: the class outputs and the inputs of binary groups.
fn roots(g: &Graph) -> impl Iterator<Item = &Signal> {
    g.outputs.iter().chain(g.groups.iter().flat_map(|group| group.inputs.iter()))
}

/// Maps `old` onto three-input cones; returns the new graph (to be simplified and cleaned of dead nodes).
pub(crate) fn map(old: &Graph, report: &mut PassReport) -> Graph {
    let refs = reference_counts(old);
    let mut cuts = CutSets::enumerate(old, &refs);
    let is_func: Vec<bool> = old.nodes.iter().map(|node| node.kind == Kind::Func && node.arity <= 3).collect();
    let mut uses = cover_by_area_flow(old, &cuts.best, &is_func);
    recover_area(&mut cuts, &mut uses, &is_func);
    let required: Vec<bool> = uses.iter().map(|&u| u > 0).collect();
    count_removed(old, &is_func, &required, report);
    build_cones(old, &cuts.best, &required)
}

/// References of every node: distinct reading nodes, plus one for every output or binary-group use.
fn reference_counts(old: &Graph) -> Vec<u32> {
    let mut refs = vec![0u32; old.nodes.len()];
    for node in &old.nodes {
        for (i, &s) in node.ins().iter().enumerate() {
            if !node.ins()[..i].iter().any(|&t| node_of(t) == node_of(s)) {
                refs[node_of(s)] += 1;
            }
        }
    }
    for &s in roots(old) {
        refs[node_of(s)] += 1;
    }
    refs
}

/// The cuts kept for every node, and the best of each by area flow. Node `id`'s cuts are
/// `all[start[id]..start[id + 1]]`, its trivial cut last; one flat list keeps enumeration free of per-node
/// allocations.
struct CutSets {
    all: Vec<Cut>,
    start: Vec<u32>,
    best: Vec<Cut>,
}

impl CutSets {
    /// Bottom-up: the best cuts of every node, by area flow.
    fn enumerate(old: &Graph, refs: &[u32]) -> CutSets {
        let n = old.nodes.len();
        let mut sets = CutSets { all: Vec::with_capacity(n * 3), start: Vec::with_capacity(n + 1), best: Vec::new() };
        sets.best.reserve(n);
        let mut flow = vec![0f32; n];
        // Buffers reused from node to node.
        let (mut partial, mut next): (Vec<Leaves>, Vec<Leaves>) = (Vec::new(), Vec::new());
        let mut found: Vec<Cut> = Vec::new();
        for (id, node) in old.nodes.iter().enumerate() {
            let id32 = id as u32;
            sets.start.push(sets.all.len() as u32);
            if node.kind != Kind::Func || node.arity > 3 {
                sets.all.push(Cut::trivial(id32));
                sets.best.push(Cut::trivial(id32));
                continue;
            }
            sets.merge_fanin_cuts(node, &mut partial, &mut next);
            found.clear();
            for &(leaves, len) in &partial {
                let share: f32 =
                    leaves[..len as usize].iter().map(|&l| flow[l as usize] / refs[l as usize].max(1) as f32).sum();
                found.push(Cut { leaves, len, flow: 1.0 + share });
            }
            // Lowest area flow first; among equals, fewer leaves (fewer operand loads).
            found.sort_by(|a, b| a.flow.total_cmp(&b.flow).then(a.len.cmp(&b.len)));
            found.truncate(CUTS_PER_NODE);
            flow[id] = found[0].flow;
            sets.best.push(found[0]);
            sets.all.extend_from_slice(&found);
            sets.all.push(Cut::trivial(id32));
        }
        sets.start.push(sets.all.len() as u32);
        sets
    }

    /// Every leaf set of at most three nodes made of one cut per fan-in of `node`, into `partial` (`next` is a
    /// buffer). The fan-ins come before the node, so their cuts are complete.
    fn merge_fanin_cuts(&self, node: &Node, partial: &mut Vec<Leaves>, next: &mut Vec<Leaves>) {
        partial.clear();
        partial.push(([0; 3], 0));
        for &s in node.ins() {
            next.clear();
            for &(leaves, len) in partial.iter() {
                for c in self.of(node_of(s)) {
                    if let Some(merged) = union(&leaves[..len as usize], c.leaves()) {
                        if !next.contains(&merged) {
                            next.push(merged);
                        }
                    }
                }
            }
            std::mem::swap(partial, next);
        }
    }

    /// The cuts of node `id`, its trivial cut last.
    fn of(&self, id: usize) -> &[Cut] {
        &self.all[self.start[id] as usize..self.start[id + 1] as usize]
    }
}

/// Top-down: the cover by area flow, as reference counts: how many chosen cuts (and outputs) read each node.
fn cover_by_area_flow(old: &Graph, best: &[Cut], is_func: &[bool]) -> Vec<u32> {
    let mut uses = vec![0u32; old.nodes.len()];
    for &s in roots(old) {
        uses[node_of(s)] += 1;
    }
    for id in (0..old.nodes.len()).rev() {
        if uses[id] > 0 && is_func[id] {
            for &l in best[id].leaves() {
                uses[l as usize] += 1;
            }
        }
    }
    uses
}

/// Area recovery: each node of the cover, in topological order, takes the cut that adds the fewest nodes to the
/// cover given the rest of it (its exact local area). Area flow only estimates how logic is shared, and it
/// undervalues duplication: a node disappears only when every reader absorbs it.
fn recover_area(cuts: &mut CutSets, uses: &mut [u32], is_func: &[bool]) {
    let CutSets { all, start, best } = cuts;
    let mut stack = Vec::new();
    for _ in 0..RECOVERY_ROUNDS {
        for id in 0..uses.len() {
            if uses[id] == 0 || !is_func[id] {
                continue;
            }
            deref(id, best, uses, is_func, &mut stack);
            let mut chosen = best[id];
            let mut least = usize::MAX;
            // Every cut but the trivial one (the last).
            for &cut in &all[start[id] as usize..start[id + 1] as usize - 1] {
                best[id] = cut;
                let area = reference(id, best, uses, is_func, &mut stack);
                deref(id, best, uses, is_func, &mut stack);
                if area < least {
                    least = area;
                    chosen = cut;
                }
            }
            best[id] = chosen;
            reference(id, best, uses, is_func, &mut stack);
        }
    }
}

/// For the report: functions outside the cover that no output depends on are dead; the others were folded into the
/// cones of their readers.
fn count_removed(old: &Graph, is_func: &[bool], required: &[bool], report: &mut PassReport) {
    let n = old.nodes.len();
    let mut live = vec![false; n];
    for &s in roots(old) {
        live[node_of(s)] = true;
    }
    for id in (0..n).rev() {
        if live[id] {
            for &s in old.nodes[id].ins() {
                live[node_of(s)] = true;
            }
        }
    }
    for id in 0..n {
        if is_func[id] && !required[id] {
            if live[id] {
                report.fused += 1;
            } else {
                report.dead += 1;
            }
        }
    }
}

/// The mapped graph: required functions become cones over their cut's leaves.
fn build_cones(old: &Graph, best: &[Cut], required: &[bool]) -> Graph {
    let n = old.nodes.len();
    let mut new = old.empty_like();
    let mut map: Vec<Signal> = vec![0; n];
    let mut values = vec![0u8; n];
    let mut stamp = vec![u32::MAX; n];
    for (id, node) in old.nodes.iter().enumerate() {
        match node.kind {
            Kind::Const => map[id] = signal(0, false),
            Kind::Input => map[id] = signal(id as u32, false),
            Kind::Func if required[id] => {
                let leaves = best[id].leaves();
                let ins: Vec<Signal> = leaves.iter().map(|&l| map[l as usize]).collect();
                let truth = cone_truth(old, id, leaves, &mut values, &mut stamp);
                map[id] = new.push(Node::func(&ins, from_fn(leaves.len(), |a| (truth >> a) & 1 == 1)));
            }
            Kind::Func => {} // inside the cones of its readers only
            Kind::Binary { group, row } => {
                if row == 0 {
                    let g = &old.groups[group as usize];
                    let ins: Vec<Signal> = g.inputs.iter().map(|&s| map[node_of(s)] ^ (s & 1)).collect();
                    let rows = new.push_group(ins, g.weights.clone(), g.thresholds.clone());
                    for (r, s) in rows.into_iter().enumerate() {
                        map[g.first as usize + r] = s;
                    }
                }
            }
        }
    }
    new.outputs = old.outputs.iter().map(|&s| map[node_of(s)] ^ (s & 1)).collect();
    new
}

/// The eight-entry truth table (bit `a` for leaf assignment `a`) of node `root` over `leaves`.
fn cone_truth(g: &Graph, root: usize, leaves: &[u32], values: &mut [u8], stamp: &mut [u32]) -> u8 {
    const PROJECTIONS: [u8; 3] = [0xAA, 0xCC, 0xF0];
    // Stamps say which nodes hold a value for this cone: the root's index is unique to it.
    let mark = root as u32;
    for (i, &l) in leaves.iter().enumerate() {
        values[l as usize] = PROJECTIONS[i];
        stamp[l as usize] = mark;
    }
    // Post-order without recursion: a deep network must not overflow the stack.
    let mut stack = vec![(root, false)];
    while let Some((id, ready)) = stack.pop() {
        if stamp[id] == mark {
            continue;
        }
        let node = &g.nodes[id];
        if !ready {
            stack.push((id, true));
            stack.extend(node.ins().iter().map(|&s| node_of(s)).filter(|&i| stamp[i] != mark).map(|i| (i, false)));
            continue;
        }
        let mut ins = [0u8; 3];
        for (j, &s) in node.ins().iter().enumerate() {
            let v = values[node_of(s)];
            ins[j] = if is_inverted(s) { !v } else { v };
        }
        let mut out = 0u8;
        for a in 0..8 {
            let address = (0..node.ins().len()).fold(0, |acc, j| acc | (((ins[j] >> a) & 1) as usize) << j);
            out |= (entry(&node.table, address) as u8) << a;
        }
        values[id] = out;
        stamp[id] = mark;
    }
    values[root]
}

/// Adds the cone of `root` (its chosen cut) to the cover; returns how many nodes the cover gained, `root` included.
/// Iterative, so that a deep network cannot overflow the stack.
fn reference(root: usize, best: &[Cut], uses: &mut [u32], is_func: &[bool], stack: &mut Vec<usize>) -> usize {
    let mut gained = 0;
    stack.clear();
    stack.push(root);
    while let Some(id) = stack.pop() {
        gained += 1;
        for &l in best[id].leaves() {
            let l = l as usize;
            uses[l] += 1;
            if uses[l] == 1 && is_func[l] {
                stack.push(l);
            }
        }
    }
    gained
}

/// Undoes [`reference`]: removes the cone of `root` from the cover.
fn deref(root: usize, best: &[Cut], uses: &mut [u32], is_func: &[bool], stack: &mut Vec<usize>) {
    stack.clear();
    stack.push(root);
    while let Some(id) = stack.pop() {
        for &l in best[id].leaves() {
            let l = l as usize;
            uses[l] -= 1;
            if uses[l] == 0 && is_func[l] {
                stack.push(l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Table;

    /// Every output of `g` on input assignment `x` (bit `i` = input `i`), by direct simulation of the nodes.
    fn outputs(g: &Graph, x: usize) -> Vec<bool> {
        let mut value = vec![false; g.nodes.len()];
        for (id, node) in g.nodes.iter().enumerate() {
            value[id] = match node.kind {
                Kind::Const => false,
                Kind::Input => (x >> (id - 1)) & 1 == 1,
                Kind::Func => {
                    let address = node
                        .ins()
                        .iter()
                        .enumerate()
                        .fold(0, |acc, (j, &s)| acc | ((value[node_of(s)] ^ is_inverted(s)) as usize) << j);
                    entry(&node.table, address)
                }
                Kind::Binary { .. } => unreachable!("no binary layers here"),
            };
        }
        g.outputs.iter().map(|&s| value[node_of(s)] ^ is_inverted(s)).collect()
    }

    fn gate(f: impl Fn(bool, bool) -> bool) -> Table {
        from_fn(2, |a| f(a & 1 == 1, a & 2 == 2))
    }

    #[test]
    fn a_node_with_two_readers_is_computed_inside_both_and_disappears() {
        // n = a AND b feeds r1 = n XOR c and r2 = NOT n OR d: three operations as written, two as cones of three
        // inputs each (n computed in both).
        let mut g = Graph::with_inputs(vec![0, 1, 2, 3], 2);
        let n = g.push(Node::func(&[Graph::input(0), Graph::input(1)], gate(|a, b| a && b)));
        let r1 = g.push(Node::func(&[n, Graph::input(2)], gate(|n, c| n ^ c)));
        let r2 = g.push(Node::func(&[n ^ 1, Graph::input(3)], gate(|n, d| n || d)));
        g.outputs = vec![r1, r2];
        let mut report = PassReport::default();
        let mapped = map(&g, &mut report);
        let functions = mapped.nodes.iter().filter(|node| node.kind == Kind::Func).count();
        assert_eq!(functions, 2);
        assert_eq!((report.fused, report.dead), (1, 0));
        for x in 0..16 {
            assert_eq!(outputs(&mapped, x), outputs(&g, x), "input {x:04b}");
        }
    }

    #[test]
    fn cones_never_read_more_than_three_signals_and_dead_nodes_are_counted() {
        // A chain over five inputs cannot become one cone; an unread node is dead.
        let mut g = Graph::with_inputs(vec![0, 1, 2, 3, 4], 1);
        let mut s = Graph::input(0);
        for i in 1..5 {
            s = g.push(Node::func(&[s, Graph::input(i)], gate(|a, b| a ^ b)));
        }
        g.push(Node::func(&[Graph::input(0), Graph::input(1)], gate(|a, b| a || b)));
        g.outputs = vec![s];
        let mut report = PassReport::default();
        let mapped = map(&g, &mut report);
        assert!(mapped.nodes.iter().all(|node| node.arity <= 3));
        assert_eq!(mapped.nodes.iter().filter(|node| node.kind == Kind::Func).count(), 2);
        assert_eq!(report.dead, 1);
        for x in 0..32 {
            assert_eq!(outputs(&mapped, x), outputs(&g, x), "input {x:05b}");
        }
    }
}
