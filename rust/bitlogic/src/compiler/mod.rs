//! The compiler: a network lowered to the IR ([`lower`]), through the optimizing passes ([`optimize`], [`cuts`]),
//! into the evaluator's [`program`], with a [`report`] of what the passes changed; [`view`] shows a program to
//! other back ends.
//!
//! It depends on the model and the IR and is depended on by the evaluator. The programs it builds are kept in the
//! network's [`CompiledSlot`](crate::model::network::CompiledSlot)s: the model owns the storage, the compiler alone
//! knows what is stored there, so neither depends on the other's internals and the model does not depend on the
//! compiler at all.

pub(crate) mod cuts;
pub(crate) mod lower;
pub(crate) mod optimize;
pub(crate) mod program;
pub(crate) mod report;
pub(crate) mod view;

use crate::compiler::optimize::{lower_luts, remove_dead, simplify};
use crate::compiler::program::{Program, ProgramStats};
use crate::compiler::report::PassReport;
use crate::compiler::view::ProgramView;
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::limits::MAX_NODES;
use crate::model::network::Network;

/// What optimization did to a network: see [`Network::optimization`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Optimization {
    /// What each pass removed or changed.
    pub passes: PassReport,
    /// The program with optimization off: every gate one operation, every table split into three-input ones.
    pub before: ProgramStats,
    /// The optimized program.
    pub after: ProgramStats,
}

/// The network through every pass.
fn optimized(net: &Network) -> (Graph, PassReport) {
    let mut report = PassReport::default();
    let graph = simplify(&lower::lower(net), &mut report);
    let graph = simplify(&lower_luts(&graph, true, &mut report), &mut report);
    let graph = cuts::map(&graph, &mut report);
    let graph = simplify(&graph, &mut report);
    let graph = remove_dead(&graph, &mut report);
    (graph, report)
}

/// The network with no optimization: only what evaluation needs (tables split into three-input operations).
fn unoptimized(net: &Network) -> Graph {
    lower_luts(&lower::lower(net), false, &mut PassReport::default())
}

impl Network {
    /// Builds the optimized program now rather than at the first evaluation, so that the time the passes take is
    /// spent (and can be measured) here. Fails only for a network beyond [`MAX_NODES`].
    pub fn prepare(&self) -> Result<()> {
        self.compiled(true).map(|_| ())
    }

    /// The program evaluation runs: optimized, or every gate and table as written. Built on first use and kept in
    /// the network.
    pub(crate) fn compiled(&self, optimize: bool) -> Result<&Program> {
        Ok(&self.compiled_with_report(optimize)?.0)
    }

    /// The compiled program, for back ends that run it themselves (a GPU, an interpreter): optimized, or every gate
    /// and table as written. Built on first use and kept, like the program evaluation runs; see [`ProgramView`] for
    /// what its slots and steps mean.
    pub fn program(&self, optimize: bool) -> Result<ProgramView<'_>> {
        Ok(ProgramView::new(self.compiled(optimize)?))
    }

    /// [`Network::compiled`] with the report of the passes (empty when `optimize` is off).
    fn compiled_with_report(&self, optimize: bool) -> Result<&(Program, PassReport)> {
        self.check_compilable()?;
        Ok(self.compiled_slot(optimize).get_or_init(|| {
            if optimize {
                let (graph, report) = optimized(self);
                (Program::new(&graph), report)
            } else {
                (Program::new(&unoptimized(self)), PassReport::default())
            }
        }))
    }

    /// What the optimizing passes removed, and the size of the program before and after.
    pub fn optimization(&self) -> Result<Optimization> {
        let (after, passes) = self.compiled_with_report(true)?;
        Ok(Optimization {
            passes: passes.clone(),
            before: self.compiled(false)?.stats.clone(),
            after: after.stats.clone(),
        })
    }

    /// The compiler's nodes are addressed by 31-bit indices (a signal is `node << 1 | inverted`); a network whose
    /// unoptimized form would need more is refused before anything is allocated. The count is an upper bound: every
    /// encoder bit, gate, binary row, and every table with the multiplexer tree it is split into.
    fn check_compilable(&self) -> Result<()> {
        let nodes = self.node_bound();
        if nodes > MAX_NODES {
            return Err(Error::Network(format!(
                "too large to evaluate: its compiled form would have up to {nodes} nodes (encoder bits, gates, \
                 binary rows and table parts); the engine supports {MAX_NODES}"
            )));
        }
        Ok(())
    }
}
