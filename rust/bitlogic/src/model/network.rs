//! The in-memory network: encoder, layers and GroupSum head, validated on construction.
//!
//! A [`Network`] can only be built through [`Network::new`], which checks every wire, op code, table and width, so
//! the evaluator can index without re-checking. Tables and binary weights are held bit-packed in `u64` words (bit `j`
//! of a row is bit `j % 64` of word `j / 64`), the layout the kernels read.
//!
//! The compiled program is kept with the network (compiling a large network takes longer than evaluating a batch),
//! but the model does not know the compiler: the compiler reads the model, so the model must not depend on it. A
//! network holds two [`CompiledSlot`]s, type-erased once-cells, that the compiler (`compiler::Network::compiled`)
//! fills on first use and reads back by downcasting to its own program type.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::limits::check_width;
use crate::model::encoder::Encoder;
use crate::model::layers::Layer;
use crate::model::stats::Stats;

/// A complete, validated network.
///
/// The evaluator runs a compiled form of the network, built on first use (or by [`Network::prepare`]) and kept:
/// the optimized program, and for comparison the program with optimization off.
#[derive(Clone, Debug)]
pub struct Network {
    encoder: Encoder,
    layers: Vec<Layer>,
    num_classes: usize,
    tau: f64,
    info: BTreeMap<String, String>,
    optimized: CompiledSlot,
    plain: CompiledSlot,
}

impl PartialEq for Network {
    /// Networks are equal when they hold the same encoder, layers and head (compiled forms are derived from those).
    fn eq(&self, other: &Self) -> bool {
        self.encoder == other.encoder
            && self.layers == other.layers
            && self.num_classes == other.num_classes
            && self.tau == other.tau
            && self.info == other.info
    }
}

impl Network {
    /// Builds a network, checking that every layer's wires fit the layer before it, that the last width divides into
    /// `num_classes` groups, and that `tau` is finite and positive.
    pub fn new(encoder: Encoder, layers: Vec<Layer>, num_classes: usize, tau: f64) -> Result<Self> {
        let mut width = encoder.num_bits();
        for (i, layer) in layers.iter().enumerate() {
            layer.check_inputs(i, width)?;
            width = layer.width();
            if width == 0 {
                return Err(Error::Network(format!("layer {i} ({}): expected at least one output", layer.kind())));
            }
            check_width(width, &format!("layer {i}"))?;
        }
        if num_classes == 0 {
            return Err(Error::Network("head: expected at least one class".into()));
        }
        if !width.is_multiple_of(num_classes) {
            return Err(Error::Network(format!(
                "head: the last width {width} does not divide into {num_classes} equal class groups"
            )));
        }
        if !(tau.is_finite() && tau > 0.0) {
            return Err(Error::Network(format!("head: tau must be finite and > 0, got {tau}")));
        }
        Ok(Self {
            encoder,
            layers,
            num_classes,
            tau,
            info: BTreeMap::new(),
            optimized: CompiledSlot::default(),
            plain: CompiledSlot::default(),
        })
    }

    /// Attaches free-form annotations (stored under `info` in the file, never interpreted).
    pub fn with_info(mut self, info: BTreeMap<String, String>) -> Self {
        self.info = info;
        self
    }

    /// The input encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
    /// The layers, first to last.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// Number of classes `k`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// The GroupSum temperature: scores divided by `tau` are the trained model's logits.
    pub fn tau(&self) -> f64 {
        self.tau
    }
    /// Free-form annotations.
    pub fn info(&self) -> &BTreeMap<String, String> {
        &self.info
    }
    /// Values per input sample.
    pub fn num_inputs(&self) -> usize {
        self.encoder.num_inputs()
    }
    /// Width of the encoder's output.
    pub fn num_input_bits(&self) -> usize {
        self.encoder.num_bits()
    }
    /// Width of the last bit group, the one GroupSum reads.
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(self.encoder.num_bits(), Layer::width)
    }
    /// Largest bit group (encoder output or layer), which sizes the evaluator's buffers.
    pub fn max_width(&self) -> usize {
        self.layers.iter().map(Layer::width).fold(self.encoder.num_bits(), usize::max)
    }

    /// An upper bound on the compiler's nodes for this network before optimization: the constant, every encoder
    /// bit, and each layer's bound (see [`Layer::node_bound`]).
    pub(crate) fn node_bound(&self) -> usize {
        let mut nodes = 1 + self.num_input_bits();
        for layer in &self.layers {
            nodes = nodes.saturating_add(layer.node_bound());
        }
        nodes
    }

    /// The slot the compiler keeps the optimized (or the unoptimized) program in.
    pub(crate) fn compiled_slot(&self, optimize: bool) -> &CompiledSlot {
        if optimize {
            &self.optimized
        } else {
            &self.plain
        }
    }

    /// Counts of gates, tables and weights, depth and data size.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            num_inputs: self.num_inputs(),
            num_input_bits: self.num_input_bits(),
            num_classes: self.num_classes,
            gates: 0,
            luts: BTreeMap::new(),
            binary_weights: 0,
            depth: self.layers.len(),
            bytes: 0,
        };
        if let Encoder::Thresholds(t) = &self.encoder {
            stats.bytes += 4 * t.thresholds().len();
        }
        for layer in &self.layers {
            layer.add_stats(&mut stats);
        }
        stats
    }
}

/// A once-cell for a compiled form of the network, of a type only its filler knows. Clones of a network share the
/// compiled form.
#[derive(Clone, Default)]
pub(crate) struct CompiledSlot(OnceLock<Arc<dyn Any + Send + Sync>>);

impl CompiledSlot {
    /// The value in the slot, built by `build` on first use. Every caller of one slot must ask for the same `T`.
    pub(crate) fn get_or_init<T: Any + Send + Sync>(&self, build: impl FnOnce() -> T) -> &T {
        let value: &(dyn Any + Send + Sync) = &**self.0.get_or_init(|| Arc::new(build()));
        value.downcast_ref().expect("a compiled slot holds one type")
    }
}

impl fmt::Debug for CompiledSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() { "CompiledSlot(built)" } else { "CompiledSlot(empty)" })
    }
}
