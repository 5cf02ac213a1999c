//! A public, read-only view of a compiled program, for back ends other than the CPU evaluator (a GPU runs the same
//! program, so that it gets the same optimizations and the same bits).

use crate::compiler::program::{Program, ProgramStats, Step};

/// A compiled program as the evaluator runs it: [`crate::Network::program`].
///
/// # Slots
///
/// A program works on numbered bit-plane *slots* (one bit per sample), `0..num_slots()`:
///
/// - slots `0..num_inputs()` hold the encoder bits the program reads: slot `i` is bit [`input_bits()`]`[i]` of the
///   encoder's output (the bits the network's first layer reads, ascending; after optimization some may be read by
///   no step);
/// - slot [`false_slot()`] (`num_inputs()`) holds FALSE (all zeros) and slot [`true_slot()`] (`num_inputs() + 1`)
///   TRUE (all ones), for the whole run;
/// - every other slot is working memory: a step writes it, later steps read it, and it is **reused** by a later step
///   once its last reader has run, so a slot holds different values over a run and the steps must run in order.
///   Slots a class reads keep their value to the end. No step reads a working slot before some step wrote it.
///
/// # Steps
///
/// [`steps()`] lists the steps in the order they must run: runs of three-input operations, each run computing one
/// truth table, and binary (XNOR-popcount) layers. An operation `[a, b, c, out]` writes to slot `out` the bit
/// `x + 2y + 4z` of its truth table `imm`, where `x`, `y`, `z` are the bits in slots `a`, `b`, `c`; its output slot
/// may be one of its input slots (the inputs are read first).
///
/// # Scores
///
/// After the last step, the score of class `k` is, for each sample, the number of ones among the slots of
/// [`classes()`]`[k].slots`, plus the number of zeros among `inverted`, plus `ones`.
///
/// [`input_bits()`]: ProgramView::input_bits
/// [`false_slot()`]: ProgramView::false_slot
/// [`true_slot()`]: ProgramView::true_slot
/// [`steps()`]: ProgramView::steps
/// [`classes()`]: ProgramView::classes
#[derive(Clone, Copy, Debug)]
pub struct ProgramView<'a> {
    program: &'a Program,
}

/// One step of a [`ProgramView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramStep<'a> {
    /// Operations `start..end` of [`ProgramView::ops`] (given as `ops`), all computing the truth table `imm`.
    Ops {
        /// The three-input truth table: bit `x + 2y + 4z` is the output for inputs `(x, y, z)`.
        imm: u8,
        /// Index of the first operation in [`ProgramView::ops`].
        start: usize,
        /// One past the last.
        end: usize,
        /// `[a, b, c, out]` slots of each operation.
        ops: &'a [[u32; 4]],
    },
    /// A binary layer.
    Binary(BinaryStepView<'a>),
}

/// A binary (XNOR-popcount) step: output `r` (slot `outputs[r]`) is 1 when at least `thresholds[r]` of the input
/// slots hold the value of their weight bit. Inputs read inverted are already absorbed into the weights. The output
/// slots are never among the input slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryStepView<'a> {
    /// The input slots, in weight order.
    pub inputs: &'a [u32],
    /// Row-major `[outputs.len(), words_per_row()]`: weight `j` of row `r` is bit `j % 64` of word `j / 64` of the
    /// row (padding bits 0).
    pub weights: &'a [u64],
    /// Per-output thresholds on the number of matching inputs (any `i32`: below 1 the output is always 1).
    pub thresholds: &'a [i32],
    /// The output slot of each row.
    pub outputs: &'a [u32],
}

impl BinaryStepView<'_> {
    /// `u64` words per weight row: `ceil(inputs.len() / 64)`.
    pub fn words_per_row(&self) -> usize {
        self.inputs.len().div_ceil(64)
    }
}

/// The bits one class counts; see [`ProgramView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassSumView<'a> {
    /// Slots counted when 1.
    pub slots: &'a [u32],
    /// Slots counted when 0.
    pub inverted: &'a [u32],
    /// Bits known to be 1, added to every sample's count.
    pub ones: u32,
}

impl<'a> ProgramView<'a> {
    pub(crate) fn new(program: &'a Program) -> Self {
        ProgramView { program }
    }

    /// The encoder bit each input slot holds: slot `i` holds bit `input_bits()[i]`.
    pub fn input_bits(&self) -> &'a [u32] {
        &self.program.input_bits
    }
    /// Number of input slots.
    pub fn num_inputs(&self) -> usize {
        self.program.num_inputs
    }
    /// The slot holding FALSE: `num_inputs()`.
    pub fn false_slot(&self) -> usize {
        self.program.num_inputs
    }
    /// The slot holding TRUE: `num_inputs() + 1`.
    pub fn true_slot(&self) -> usize {
        self.program.num_inputs + 1
    }
    /// Number of slots: every slot index of the program is below it.
    pub fn num_slots(&self) -> usize {
        self.program.num_slots
    }
    /// Every three-input operation, `[a, b, c, out]` slots, in the order they run.
    pub fn ops(&self) -> &'a [[u32; 4]] {
        &self.program.ops
    }
    /// The steps in the order they run.
    pub fn steps(&self) -> impl ExactSizeIterator<Item = ProgramStep<'a>> + 'a {
        let ops = &self.program.ops;
        self.program.steps.iter().map(move |step| match step {
            Step::Tern { imm, start, end } => {
                let (start, end) = (*start as usize, *end as usize);
                ProgramStep::Ops { imm: *imm, start, end, ops: &ops[start..end] }
            }
            Step::Binary(b) => ProgramStep::Binary(BinaryStepView {
                inputs: &b.inputs,
                weights: &b.weights,
                thresholds: &b.thresholds,
                outputs: &b.outputs,
            }),
        })
    }
    /// What each class counts, class 0 first.
    pub fn classes(&self) -> impl ExactSizeIterator<Item = ClassSumView<'a>> + 'a {
        self.program.classes.iter().map(|c| ClassSumView { slots: &c.slots, inverted: &c.inverted, ones: c.ones })
    }
    /// The program's sizes.
    pub fn stats(&self) -> &'a ProgramStats {
        &self.program.stats
    }
}
