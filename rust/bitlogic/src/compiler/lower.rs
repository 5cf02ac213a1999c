//! Lowering: the network as an IR graph, one node per gate, table and binary row, nothing simplified. Each layer
//! kind adds its own nodes ([`crate::model::Layer::lower`]); this driver makes the input nodes and threads the
//! wires from layer to layer.

use crate::ir::{Graph, Signal};
use crate::model::network::Network;

/// The network as a graph.
pub(crate) fn lower(net: &Network) -> Graph {
    // Input nodes for the encoder bits the first layer reads, in bit order (a network may declare far more bits
    // than it reads).
    let mut bits: Vec<u32> = match net.layers().first() {
        Some(layer) => layer.wires_read(),
        None => (0..net.num_input_bits() as u32).collect(),
    };
    bits.sort_unstable();
    bits.dedup();
    let mut graph = Graph::with_inputs(bits.clone(), net.num_classes());
    let first_wire = |w: u32| Graph::input(bits.binary_search(&w).expect("a read bit"));
    let mut wires: Vec<Signal> = Vec::new();
    for (index, layer) in net.layers().iter().enumerate() {
        // Wires of the first layer are encoder bits, resolved through the compact input nodes.
        let wire = |w: u32| if index == 0 { first_wire(w) } else { wires[w as usize] };
        wires = layer.lower(&mut graph, &wire);
    }
    if net.layers().is_empty() {
        wires = (0..graph.num_inputs).map(Graph::input).collect();
    }
    graph.outputs = wires;
    graph
}
