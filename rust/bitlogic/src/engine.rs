//! Batch evaluation: splits the samples into blocks, evaluates blocks on rayon threads, and dispatches at run time
//! to the best instruction set the CPU has.
//!
//! Every instruction-set path runs the same generic code (see `exec`), compiled with different target features,
//! so they agree bit for bit; `BITLOGIC_ISA` (or [`EvalOptions::isa`]) forces one for testing and comparison.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::compiler::program::Program;
use crate::error::{Error, Result};
use crate::exec::{self, CachedScratch, Scratch};
use crate::input::{Encoding, Input};
use crate::isa::Isa;
use crate::model::network::Network;
#[cfg(target_arch = "aarch64")]
use crate::simd::Neon;
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};
use crate::simd::{Portable, Simd};

/// How to evaluate a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// Threads to use: `None` uses rayon's global pool (one thread per core); `Some(1)` runs on the calling thread.
    pub threads: Option<usize>,
    /// Instruction-set path: `None` uses [`Isa::default_for_machine`].
    pub isa: Option<Isa>,
    /// Run the optimized program (the default); `false` evaluates every gate and table as written, for comparison.
    pub optimize: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { threads: None, isa: None, optimize: true }
    }
}

/// A block's working set (every slot, `8 * W` bytes each) is kept under this size, about half of a core's L2 cache
/// on current x86-64 and Arm server cores, leaving room for the input rows and the program itself.
const BLOCK_BUDGET: usize = 640 << 10;

/// How results leave a block: class scores (`i32`, one per class) or predicted labels (`i64`, one per sample).
pub(crate) trait Sink: Copy + Send + Sync {
    fn per_sample(num_classes: usize) -> usize;
    fn finish<const W: usize>(program: &Program, scratch: &mut Scratch<W>, valid: usize, out: &mut [Self]);
}

impl Sink for i32 {
    fn per_sample(num_classes: usize) -> usize {
        num_classes
    }
    #[inline(always)]
    fn finish<const W: usize>(program: &Program, scratch: &mut Scratch<W>, valid: usize, out: &mut [Self]) {
        exec::scores(program, scratch, valid, out)
    }
}

impl Sink for i64 {
    fn per_sample(_: usize) -> usize {
        1
    }
    #[inline(always)]
    fn finish<const W: usize>(program: &Program, scratch: &mut Scratch<W>, valid: usize, out: &mut [Self]) {
        exec::labels(program, scratch, valid, out)
    }
}

impl Network {
    /// Class scores (GroupSum popcounts), sample-major: `out[i * num_classes + c]` for sample `i`, class `c`.
    pub fn scores(&self, input: Input<'_>, options: &EvalOptions) -> Result<Vec<i32>> {
        let mut out = vec![0; input.rows() * self.num_classes()];
        self.scores_into(input, &mut out, options)?;
        Ok(out)
    }

    /// [`Network::scores`] into a caller's buffer of `rows * num_classes` values.
    pub fn scores_into(&self, input: Input<'_>, out: &mut [i32], options: &EvalOptions) -> Result<()> {
        self.evaluate(input, out, options)
    }

    /// Predicted classes: the index of the largest score, ties going to the lowest class index.
    pub fn predict(&self, input: Input<'_>, options: &EvalOptions) -> Result<Vec<i64>> {
        let mut out = vec![0; input.rows()];
        self.predict_into(input, &mut out, options)?;
        Ok(out)
    }

    /// [`Network::predict`] into a caller's buffer of `rows` values.
    pub fn predict_into(&self, input: Input<'_>, out: &mut [i64], options: &EvalOptions) -> Result<()> {
        self.evaluate(input, out, options)
    }

    fn evaluate<T: Sink>(&self, input: Input<'_>, out: &mut [T], options: &EvalOptions) -> Result<()> {
        let mut encoding = Encoding::new(self.encoder(), input)?;
        let rows = encoding.rows();
        let per_sample = T::per_sample(self.num_classes());
        if out.len() != rows * per_sample {
            return Err(Error::Input(format!(
                "output buffer has {} values, expected {rows} x {per_sample}",
                out.len()
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        let isa = match options.isa {
            Some(isa) => isa.check()?,
            None => Isa::default_for_machine()?,
        };
        let pool = match options.threads {
            Some(0) => return Err(Error::Setting("threads must be at least 1".into())),
            Some(1) => None,
            Some(n) => Some(thread_pool(n)?),
            None => Some(Arc::clone(global_pool())),
        };
        let program = self.compiled(options.optimize)?;
        encoding.route(self.encoder(), &program.input_bits);
        let job = Job { program, encoding: &encoding, isa, pool: pool.as_deref() };
        // The widest block whose working set fits the budget, and no wider than the batch needs.
        let fits = |w: usize| program.num_slots * 8 * w <= BLOCK_BUDGET;
        if rows > 64 * 4 && fits(8) {
            job.run::<8, T>(out)
        } else if rows > 64 * 2 && fits(4) {
            job.run::<4, T>(out)
        } else if rows > 64 && fits(2) {
            job.run::<2, T>(out)
        } else {
            job.run::<1, T>(out)
        }
    }
}

struct Job<'a> {
    program: &'a Program,
    encoding: &'a Encoding<'a>,
    isa: Isa,
    pool: Option<&'a rayon::ThreadPool>,
}

impl Job<'_> {
    fn run<const W: usize, T: Sink>(&self, out: &mut [T]) -> Result<()> {
        let block = 64 * W;
        // Never 0: `evaluate` returns before running an empty batch.
        let rows = self.encoding.rows();
        let per_sample = out.len() / rows;
        let new_scratch = || CachedScratch::<W>::take(self.program, self.encoding.blocks_needed());
        let run = |scratch: &mut CachedScratch<W>, (index, out): (usize, &mut [T])| {
            let start = index * block;
            let valid = (rows - start).min(block);
            evaluate_block(self.isa, self.program, self.encoding, start, valid, scratch, out)
        };
        let chunk = block * per_sample;
        match self.pool {
            Some(pool) if rows > block => {
                pool.install(|| out.par_chunks_mut(chunk).enumerate().try_for_each_init(new_scratch, run))
            }
            _ => {
                let mut scratch = new_scratch();
                out.chunks_mut(chunk).enumerate().try_for_each(|item| run(&mut scratch, item))
            }
        }
    }
}

fn evaluate_block<const W: usize, T: Sink>(
    isa: Isa,
    program: &Program,
    encoding: &Encoding<'_>,
    start: usize,
    valid: usize,
    scratch: &mut Scratch<W>,
    out: &mut [T],
) -> Result<()> {
    match isa {
        // SAFETY: `evaluate` only passes an ISA after `Isa::check` confirmed the CPU supports it.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { block_avx512(program, encoding, start, valid, scratch, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { block_avx2(program, encoding, start, valid, scratch, out) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { block_neon(program, encoding, start, valid, scratch, out) },
        _ => block_generic::<W, T, Portable>(program, encoding, start, valid, scratch, out),
    }
}

/// Defines an entry point that runs `block_generic` compiled with extra target features: the same source, so every
/// path computes the same bits, vectorized for a wider instruction set.
macro_rules! isa_entry {
    ($arch:literal, $name:ident, $simd:ty, $features:literal) => {
        #[cfg(target_arch = $arch)]
        #[target_feature(enable = $features)]
        unsafe fn $name<const W: usize, T: Sink>(
            program: &Program,
            encoding: &Encoding<'_>,
            start: usize,
            valid: usize,
            scratch: &mut Scratch<W>,
            out: &mut [T],
        ) -> Result<()> {
            block_generic::<W, T, $simd>(program, encoding, start, valid, scratch, out)
        }
    };
}

isa_entry!("x86_64", block_avx512, Avx512, "avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,bmi2,popcnt");
isa_entry!("x86_64", block_avx2, Avx2, "avx2,bmi2,popcnt");
isa_entry!("aarch64", block_neon, Neon, "neon");

#[inline(always)]
fn block_generic<const W: usize, T: Sink, S: Simd>(
    program: &Program,
    encoding: &Encoding<'_>,
    start: usize,
    valid: usize,
    scratch: &mut Scratch<W>,
    out: &mut [T],
) -> Result<()> {
    encoding.encode::<W, S>(start, &mut scratch.slots[..program.num_inputs], &mut scratch.blocks)?;
    exec::run(program, scratch);
    T::finish(program, scratch, valid, out);
    Ok(())
}

fn global_pool() -> &'static Arc<rayon::ThreadPool> {
    static POOL: OnceLock<Arc<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(build_pool(threads).expect("a thread pool of the machine's core count can be built"))
    })
}

/// Pools for explicit thread counts are built once and kept, so a loop of small calls does not pay for thread start.
fn thread_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = Arc::new(build_pool(threads)?);
    pools.insert(threads, Arc::clone(&pool));
    Ok(pool)
}

fn build_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("bitlogic-{i}"))
        .build()
        .map_err(|e| Error::Setting(format!("cannot start {threads} threads: {e}")))
}
