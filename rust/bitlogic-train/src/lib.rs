//! # bitlogic-train
//!
//! Fused training kernels of a layer of differentiable two-input logic gates (difflogic), used by bitlogic's
//! PyTorch layers through the Python bindings. A crate of its own so that the `bitlogic` crate, which a program
//! embeds for inference, holds no training code.
//!
//! Gate `n` reads the wires `ia[n]` and `ib[n]` of the previous layer (values `a`, `b` in [0, 1]) and outputs the
//! bilinear polynomial `c0 + c1*a + c2*b + c3*a*b`, `c = coef[n]` — the relaxation of any mixture of the 16
//! two-input boolean functions. [`gate_forward`] and [`gate_backward`] compute a layer's output and its gradients in
//! one pass each, instead of the ~18 elementwise passes of the same arithmetic written with tensor operations.
//!
//! Activations are feature-major: a `features x batch` matrix of `f32`, row `f` holding feature `f` of every
//! sample contiguously, so that every inner loop runs over the batch with unit stride. Rows read at random (the wires
//! of a gate) are prefetched a few gates ahead. The forward pass runs in parallel over blocks of gates (when the layer
//! is large enough to pay for the threads). The backward pass needs, for every input wire, the sum over the gates
//! that read it; it builds the reverse index of the wiring (for every input, the gates reading it and on which side:
//! a counting sort, O(gates + inputs)) and runs in parallel over blocks of inputs, so that every thread owns the rows
//! of the input gradient it writes: no atomics and no per-thread copies. The same pass produces the coefficient
//! gradient of each gate when it visits the gate's `a` side, so every gradient row is read twice (once per side) and
//! every activation row about three times, and nothing is written but the results. (A variant that reads the
//! gradient once, writing both sides' terms to a scratch buffer and summing them per input afterwards, measured no
//! faster and needs a scratch buffer twice the size of the gradient.)
//!
//! The kernels split their work into tasks and run them with [`run_tasks`] (module `threads`): on the calling thread
//! and helper threads that never spin while idle, so that they do not compete with torch's own threads for the cores
//! between two calls; [`with_threads`] bounds how many. New kernels split their work into tasks the same way.
//!
//! Like the evaluator, every kernel runs the same generic code compiled for the best instruction set of the CPU
//! (see [`bitlogic::Isa`]); the arithmetic is the same on every path, so every path gives the same bits.

#![warn(missing_docs)]

use bitlogic::{Error, Isa, Result};

mod threads;
pub use threads::{current_threads, run_tasks, with_threads, Threads};

/// Below this many `f32` results (rows x batch) a kernel runs on the calling thread: waking threads costs more.
pub const PARALLEL_MIN: usize = 1 << 16;
/// About this many `f32` results per task.
const TASK_ELEMENTS: usize = 1 << 14;
/// Accumulator lanes of the batch sums: 16 `f32` are one AVX-512 or two AVX2 registers, and independent chains.
const LANES: usize = 16;

/// Output of a layer of `N = ia.len()` gates: `out[n * batch + s] = c0 + c1*a + c2*b + c3*a*b` with
/// `a = x[ia[n] * batch + s]`, `b = x[ib[n] * batch + s]` and `[c0, c1, c2, c3] = coef[n]`.
///
/// `x` is the `in_dim x batch` input and `out` the `N x batch` output, both feature-major. Returns
/// [`Error::Input`] when a length does not match or a wire is not below `in_dim`.
pub fn gate_forward(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    ia: &[u32],
    ib: &[u32],
    coef: &[[f32; 4]],
    out: &mut [f32],
) -> Result<()> {
    let n = check_layer(x, in_dim, batch, ia, ib)?;
    check_len("coef", coef.len(), n, "one [c0, c1, c2, c3] per gate")?;
    check_len("out", out.len(), rows_times_batch(n, batch)?, "N x batch values")?;
    if batch == 0 || n == 0 {
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    forward_with(isa, x, batch, ia, ib, coef, out);
    Ok(())
}

/// Gradients of [`gate_forward`] given `grad_out` (`N x batch`, the gradient of the loss with respect to `out`).
///
/// Writes (overwrites, does not accumulate):
/// - `grad_x` (`in_dim x batch`): row `i` is the sum, over the gates reading wire `i` as `a`, of
///   `g * (c1 + c3*b)` plus the sum, over the gates reading it as `b`, of `g * (c2 + c3*a)` (a gate reading wire
///   `i` on both sides contributes both terms; an input read by no gate gets zeros);
/// - `grad_coef` (`N`): `[sum g, sum g*a, sum g*b, sum g*a*b]` over the batch, for every gate.
///
/// Returns [`Error::Input`] when a length does not match or a wire is not below `in_dim`.
#[allow(clippy::too_many_arguments)]
pub fn gate_backward(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    ia: &[u32],
    ib: &[u32],
    coef: &[[f32; 4]],
    grad_out: &[f32],
    grad_x: &mut [f32],
    grad_coef: &mut [[f32; 4]],
) -> Result<()> {
    let n = check_layer(x, in_dim, batch, ia, ib)?;
    check_len("coef", coef.len(), n, "one [c0, c1, c2, c3] per gate")?;
    check_len("grad_out", grad_out.len(), rows_times_batch(n, batch)?, "N x batch values")?;
    check_len("grad_x", grad_x.len(), x.len(), "in_dim x batch values, the shape of x")?;
    check_len("grad_coef", grad_coef.len(), n, "one [4] row per gate")?;
    if n > (u32::MAX >> 1) as usize {
        return Err(Error::Input(format!("ia: expected at most {} gates, got {n}", u32::MAX >> 1)));
    }
    if batch == 0 {
        grad_coef.fill([0.0; 4]);
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    backward_with(isa, x, in_dim, batch, ia, ib, coef, grad_out, grad_x, grad_coef);
    Ok(())
}

/// The coefficient half of [`gate_backward`] alone, for a layer whose input needs no gradient (the first layer of a
/// model fed by data): `grad_coef[n] = [sum g, sum g*a, sum g*b, sum g*a*b]` over the batch, overwritten. The
/// coefficients themselves do not enter it.
pub fn gate_backward_coef(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    ia: &[u32],
    ib: &[u32],
    grad_out: &[f32],
    grad_coef: &mut [[f32; 4]],
) -> Result<()> {
    let n = check_layer(x, in_dim, batch, ia, ib)?;
    check_len("grad_out", grad_out.len(), rows_times_batch(n, batch)?, "N x batch values")?;
    check_len("grad_coef", grad_coef.len(), n, "one [4] row per gate")?;
    if batch == 0 {
        grad_coef.fill([0.0; 4]);
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    coef_grad_with(isa, x, batch, ia, ib, grad_out, grad_coef);
    Ok(())
}

/// Checks the wiring against `x` and returns the number of gates.
fn check_layer(x: &[f32], in_dim: usize, batch: usize, ia: &[u32], ib: &[u32]) -> Result<usize> {
    let n = ia.len();
    if ib.len() != n {
        return Err(Error::Input(format!("ib: expected {n} wires, one per gate like ia, got {}", ib.len())));
    }
    let x_len = rows_times_batch(in_dim, batch)?;
    if x.len() != x_len {
        return Err(Error::Input(format!(
            "x: expected in_dim x batch = {in_dim} x {batch} = {x_len} values, got {}",
            x.len()
        )));
    }
    for (name, wires) in [("ia", ia), ("ib", ib)] {
        if let Some((gate, &wire)) = wires.iter().enumerate().find(|(_, &w)| w as usize >= in_dim) {
            return Err(Error::Input(format!(
                "{name}[{gate}] = {wire}: expected a wire below in_dim = {in_dim} (the rows of x)"
            )));
        }
    }
    Ok(n)
}

fn rows_times_batch(rows: usize, batch: usize) -> Result<usize> {
    rows.checked_mul(batch)
        .ok_or_else(|| Error::Input(format!("{rows} rows x batch {batch} overflows the address space")))
}

fn check_len(name: &str, got: usize, expected: usize, what: &str) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Input(format!("{name}: expected {expected} ({what}), got {got}")))
    }
}

/// Row `r` of a feature-major matrix.
#[inline(always)]
fn row(m: &[f32], r: usize, batch: usize) -> &[f32] {
    &m[r * batch..(r + 1) * batch]
}

/// How many rows ahead the kernels prefetch the rows they will read at random (activations saved by the forward pass
/// have usually left the caches by the time the backward pass reads them): about 4 KiB ahead, which hides most of the
/// latency (measured: the backward pass of 8000 gates x batch 100 on cold activations takes ~25% less).
#[inline(always)]
fn prefetch_distance(batch: usize) -> usize {
    (4096 / (4 * batch)).clamp(1, 16)
}

/// Asks for (up to the first 1 KiB of) row `r` in the cache; the hardware prefetcher follows longer rows.
#[inline(always)]
fn prefetch_row(m: &[f32], r: usize, batch: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let row = row(m, r, batch);
        for line in row.iter().step_by(16).take(16).chain(row.last()) {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never faults (the address is in the row).
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(line).cast::<i8>())
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (m, r, batch);
}

/// Defines `$name(isa, args..)`, which runs `$generic(args..)` compiled for `isa`: every path runs the same source
/// with the same operation order (no fused multiply-add is ever formed), so they agree bit for bit.
macro_rules! per_isa {
    ($name:ident => $generic:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        #[allow(clippy::too_many_arguments)]
        fn $name(isa: Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) {
                $generic($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) {
                $generic($($arg),*)
            }
            match isa {
                // SAFETY: `Isa::default_for_machine` (and the tests) only hand out paths the CPU supports.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => $generic($($arg),*),
            }
        }
    };
}

per_isa!(forward_gates_isa => forward_gates(
    x: &[f32], batch: usize, ia: &[u32], ib: &[u32], coef: &[[f32; 4]], out: &mut [f32],
));
per_isa!(coef_grad_gates_isa => coef_grad_gates(
    x: &[f32], batch: usize, ia: &[u32], ib: &[u32], g: &[f32], grad_coef: &mut [[f32; 4]],
));
per_isa!(input_grad_isa => input_grad(task: InputTask<'_>, ctx: &BackwardCtx<'_>));

// After `per_isa!`, which the module uses (a macro is in scope below its definition only).
mod candidates;
pub use candidates::{candidate_backward, candidate_forward, learned_gate_backward, learned_gate_forward};
mod tree_conv;
pub use tree_conv::{tree_conv_backward, tree_conv_forward, ConvShape, MAX_TREE_DEPTH};

/// The output rows of a run of gates, sequentially.
#[inline(always)]
fn forward_gates(x: &[f32], batch: usize, ia: &[u32], ib: &[u32], coef: &[[f32; 4]], out: &mut [f32]) {
    let ahead = prefetch_distance(batch);
    for (n, (((o, &i), &j), &[c0, c1, c2, c3])) in out.chunks_exact_mut(batch).zip(ia).zip(ib).zip(coef).enumerate() {
        if let (Some(&i), Some(&j)) = (ia.get(n + ahead), ib.get(n + ahead)) {
            prefetch_row(x, i as usize, batch);
            prefetch_row(x, j as usize, batch);
        }
        let (a, b) = (row(x, i as usize, batch), row(x, j as usize, batch));
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = c0 + c1 * a + (c2 + c3 * a) * b;
        }
    }
}

/// Gates per task.
fn gates_per_task(batch: usize) -> usize {
    (TASK_ELEMENTS / batch).max(1)
}

fn forward_with(isa: Isa, x: &[f32], batch: usize, ia: &[u32], ib: &[u32], coef: &[[f32; 4]], out: &mut [f32]) {
    if out.len() <= PARALLEL_MIN {
        forward_gates_isa(isa, x, batch, ia, ib, coef, out);
        return;
    }
    let per = gates_per_task(batch);
    let tasks = out.chunks_mut(per * batch).zip(ia.chunks(per)).zip(ib.chunks(per)).zip(coef.chunks(per)).collect();
    run_tasks(tasks, |(((out, ia), ib), coef)| forward_gates_isa(isa, x, batch, ia, ib, coef, out));
}

/// `[sum g, sum g*a, sum g*b, sum g*a*b]`, accumulated in `LANES` independent `f32` lanes and then reduced; when
/// `acc` is given, also adds `g * (c1 + c3*b)` to it (the `a`-side input gradient of the gate).
#[inline(always)]
fn batch_sums(g: &[f32], a: &[f32], b: &[f32], acc: Option<(&mut [f32], f32, f32)>) -> [f32; 4] {
    let mut lanes = [[0.0f32; LANES]; 4];
    let whole = g.len() / LANES * LANES;
    let (g_body, g_tail) = g.split_at(whole);
    let (a_body, a_tail) = a.split_at(whole);
    let (b_body, b_tail) = b.split_at(whole);
    let mut tail = [0.0f32; 4];
    let chunks = g_body.chunks_exact(LANES).zip(a_body.chunks_exact(LANES)).zip(b_body.chunks_exact(LANES));
    match acc {
        Some((acc, c1, c3)) => {
            let (acc_body, acc_tail) = acc.split_at_mut(whole);
            for (((g, a), b), acc) in chunks.zip(acc_body.chunks_exact_mut(LANES)) {
                let (g, a, b): (&[f32; LANES], &[f32; LANES], &[f32; LANES]) =
                    (g.try_into().unwrap(), a.try_into().unwrap(), b.try_into().unwrap());
                let acc: &mut [f32; LANES] = acc.try_into().unwrap();
                for l in 0..LANES {
                    let ga = g[l] * a[l];
                    lanes[0][l] += g[l];
                    lanes[1][l] += ga;
                    lanes[2][l] += g[l] * b[l];
                    lanes[3][l] += ga * b[l];
                    acc[l] += g[l] * (c1 + c3 * b[l]);
                }
            }
            for (((&g, &a), &b), acc) in g_tail.iter().zip(a_tail).zip(b_tail).zip(acc_tail) {
                let ga = g * a;
                tail[0] += g;
                tail[1] += ga;
                tail[2] += g * b;
                tail[3] += ga * b;
                *acc += g * (c1 + c3 * b);
            }
        }
        None => {
            for ((g, a), b) in chunks {
                let (g, a, b): (&[f32; LANES], &[f32; LANES], &[f32; LANES]) =
                    (g.try_into().unwrap(), a.try_into().unwrap(), b.try_into().unwrap());
                for l in 0..LANES {
                    let ga = g[l] * a[l];
                    lanes[0][l] += g[l];
                    lanes[1][l] += ga;
                    lanes[2][l] += g[l] * b[l];
                    lanes[3][l] += ga * b[l];
                }
            }
            for ((&g, &a), &b) in g_tail.iter().zip(a_tail).zip(b_tail) {
                let ga = g * a;
                tail[0] += g;
                tail[1] += ga;
                tail[2] += g * b;
                tail[3] += ga * b;
            }
        }
    }
    let mut out = [0.0f32; 4];
    for (o, (lanes, tail)) in out.iter_mut().zip(lanes.iter().zip(tail)) {
        *o = reduce(lanes) + tail;
    }
    out
}

/// Sum of the lanes in a fixed pairwise order.
#[inline(always)]
fn reduce(lanes: &[f32; LANES]) -> f32 {
    let mut v = *lanes;
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            v[l] += v[l + width];
        }
        width /= 2;
    }
    v[0]
}

/// Coefficient gradients of a run of gates, sequentially.
#[inline(always)]
fn coef_grad_gates(x: &[f32], batch: usize, ia: &[u32], ib: &[u32], g: &[f32], grad_coef: &mut [[f32; 4]]) {
    let ahead = prefetch_distance(batch);
    for (n, (((g, &i), &j), out)) in g.chunks_exact(batch).zip(ia).zip(ib).zip(grad_coef).enumerate() {
        if let (Some(&i), Some(&j)) = (ia.get(n + ahead), ib.get(n + ahead)) {
            prefetch_row(x, i as usize, batch);
            prefetch_row(x, j as usize, batch);
        }
        *out = batch_sums(g, row(x, i as usize, batch), row(x, j as usize, batch), None);
    }
}

fn coef_grad_with(isa: Isa, x: &[f32], batch: usize, ia: &[u32], ib: &[u32], g: &[f32], grad_coef: &mut [[f32; 4]]) {
    if g.len() <= PARALLEL_MIN {
        coef_grad_gates_isa(isa, x, batch, ia, ib, g, grad_coef);
        return;
    }
    let per = gates_per_task(batch);
    let tasks = grad_coef.chunks_mut(per).zip(g.chunks(per * batch)).zip(ia.chunks(per)).zip(ib.chunks(per)).collect();
    run_tasks(tasks, |(((grad_coef, g), ia), ib)| coef_grad_gates_isa(isa, x, batch, ia, ib, g, grad_coef));
}

/// Everything the input-side pass reads.
struct BackwardCtx<'a> {
    x: &'a [f32],
    batch: usize,
    ia: &'a [u32],
    ib: &'a [u32],
    coef: &'a [[f32; 4]],
    g: &'a [f32],
    /// Reverse index: the readers of input `i` are `readers[starts[i]..starts[i + 1]]`, each `gate << 1 | side`
    /// (side 0: the gate reads the input as `a`, 1: as `b`), in increasing gate order.
    starts: &'a [usize],
    readers: &'a [u32],
}

/// A run of inputs `first..first + grad_x.len() / batch` and the slots, one per reader, where the pass leaves the
/// coefficient gradient of every gate it visits on the `a` side.
struct InputTask<'a> {
    first: usize,
    grad_x: &'a mut [f32],
    coef_slots: &'a mut [[f32; 4]],
}

/// Input gradient rows of one run of inputs, and the coefficient gradients of the gates reading them as `a`.
#[inline(always)]
fn input_grad(task: InputTask<'_>, ctx: &BackwardCtx<'_>) {
    let batch = ctx.batch;
    let base = ctx.starts[task.first];
    let ahead = prefetch_distance(batch);
    for (r, acc) in task.grad_x.chunks_exact_mut(batch).enumerate() {
        let i = task.first + r;
        acc.fill(0.0);
        let xi = row(ctx.x, i, batch);
        for k in ctx.starts[i]..ctx.starts[i + 1] {
            if let Some(&next) = ctx.readers.get(k + ahead) {
                let gate = (next >> 1) as usize;
                let other = if next & 1 == 0 { ctx.ib[gate] } else { ctx.ia[gate] };
                prefetch_row(ctx.g, gate, batch);
                prefetch_row(ctx.x, other as usize, batch);
            }
            let reader = ctx.readers[k];
            let gate = (reader >> 1) as usize;
            let [_, c1, c2, c3] = ctx.coef[gate];
            let g = row(ctx.g, gate, batch);
            if reader & 1 == 0 {
                let b = row(ctx.x, ctx.ib[gate] as usize, batch);
                task.coef_slots[k - base] = batch_sums(g, xi, b, Some((&mut *acc, c1, c3)));
            } else {
                let a = row(ctx.x, ctx.ia[gate] as usize, batch);
                for ((acc, &g), &a) in acc.iter_mut().zip(g).zip(a) {
                    *acc += g * (c2 + c3 * a);
                }
            }
        }
    }
}

/// The reverse index of the wiring (see [`BackwardCtx::starts`]), by a counting sort.
fn reverse_index(in_dim: usize, ia: &[u32], ib: &[u32]) -> (Vec<usize>, Vec<u32>) {
    let mut starts = vec![0usize; in_dim + 1];
    for &w in ia.iter().chain(ib) {
        starts[w as usize + 1] += 1;
    }
    for i in 0..in_dim {
        starts[i + 1] += starts[i];
    }
    let mut next = starts[..in_dim].to_vec();
    let mut readers = vec![0u32; 2 * ia.len()];
    for (gate, (&i, &j)) in ia.iter().zip(ib).enumerate() {
        let gate = gate as u32;
        readers[next[i as usize]] = gate << 1;
        next[i as usize] += 1;
        readers[next[j as usize]] = gate << 1 | 1;
        next[j as usize] += 1;
    }
    (starts, readers)
}

#[allow(clippy::too_many_arguments)]
fn backward_with(
    isa: Isa,
    x: &[f32],
    in_dim: usize,
    batch: usize,
    ia: &[u32],
    ib: &[u32],
    coef: &[[f32; 4]],
    g: &[f32],
    grad_x: &mut [f32],
    grad_coef: &mut [[f32; 4]],
) {
    let (starts, readers) = reverse_index(in_dim, ia, ib);
    let mut slots = vec![[0.0f32; 4]; readers.len()];
    let ctx = BackwardCtx { x, batch, ia, ib, coef, g, starts: &starts, readers: &readers };
    // Runs of inputs of about TASK_ELEMENTS of work each (one row per reader and one for the input itself).
    let mut tasks = Vec::new();
    let (mut rest_x, mut rest_slots) = (grad_x, slots.as_mut_slice());
    let mut first = 0;
    while first < in_dim {
        let mut end = first + 1;
        while end < in_dim && (starts[end] - starts[first] + end - first) * batch < TASK_ELEMENTS {
            end += 1;
        }
        let (task_x, tail_x) = rest_x.split_at_mut((end - first) * batch);
        let (task_slots, tail_slots) = rest_slots.split_at_mut(starts[end] - starts[first]);
        tasks.push(InputTask { first, grad_x: task_x, coef_slots: task_slots });
        (rest_x, rest_slots, first) = (tail_x, tail_slots, end);
    }
    if (readers.len() + in_dim) * batch <= PARALLEL_MIN {
        for task in tasks {
            input_grad_isa(isa, task, &ctx);
        }
    } else {
        run_tasks(tasks, |task| input_grad_isa(isa, task, &ctx));
    }
    for (&reader, slot) in readers.iter().zip(&slots) {
        if reader & 1 == 0 {
            grad_coef[(reader >> 1) as usize] = *slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitlogic::SplitMix64;
    use std::num::NonZeroUsize;

    struct Case {
        in_dim: usize,
        batch: usize,
        ia: Vec<u32>,
        ib: Vec<u32>,
        x: Vec<f32>,
        coef: Vec<[f32; 4]>,
        g: Vec<f32>,
    }

    fn uniform(rng: &mut SplitMix64) -> f32 {
        (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn case(seed: u64, in_dim: usize, n: usize, batch: usize) -> Case {
        let mut rng = SplitMix64::new(seed);
        let wire = |rng: &mut SplitMix64| (rng.next_u64() % in_dim as u64) as u32;
        let ia: Vec<u32> = (0..n).map(|_| wire(&mut rng)).collect();
        let mut ib: Vec<u32> = (0..n).map(|_| wire(&mut rng)).collect();
        if n > 1 {
            ib[1] = ia[1]; // always at least one gate reading one wire twice
        }
        let x = (0..in_dim * batch).map(|_| uniform(&mut rng)).collect();
        let coef = (0..n).map(|_| std::array::from_fn(|_| 2.0 * uniform(&mut rng) - 1.0)).collect();
        let g = (0..n * batch).map(|_| uniform(&mut rng) - 0.5).collect();
        Case { in_dim, batch, ia, ib, x, coef, g }
    }

    /// Naive f64 reference: (out, grad_x, grad_coef) and the matching sums of absolute terms, for tolerances.
    #[allow(clippy::type_complexity)]
    fn reference(c: &Case) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<[f64; 4]>, Vec<[f64; 4]>) {
        let (b, n) = (c.batch, c.ia.len());
        let mut out = vec![0.0; n * b];
        let mut out_abs = vec![0.0; n * b];
        let mut gx = vec![0.0; c.in_dim * b];
        let mut gx_abs = vec![0.0; c.in_dim * b];
        let mut gc = vec![[0.0; 4]; n];
        let mut gc_abs = vec![[0.0; 4]; n];
        for gate in 0..n {
            let [c0, c1, c2, c3] = c.coef[gate].map(f64::from);
            let (i, j) = (c.ia[gate] as usize, c.ib[gate] as usize);
            for s in 0..b {
                let a = f64::from(c.x[i * b + s]);
                let bb = f64::from(c.x[j * b + s]);
                let g = f64::from(c.g[gate * b + s]);
                let terms = [c0, c1 * a, c2 * bb, c3 * a * bb];
                out[gate * b + s] = terms.iter().sum::<f64>();
                out_abs[gate * b + s] = terms.iter().map(|t| t.abs()).sum::<f64>();
                let da = g * (c1 + c3 * bb);
                let db = g * (c2 + c3 * a);
                gx[i * b + s] += da;
                gx[j * b + s] += db;
                gx_abs[i * b + s] += g.abs() * (c1.abs() + (c3 * bb).abs());
                gx_abs[j * b + s] += g.abs() * (c2.abs() + (c3 * a).abs());
                let parts = [g, g * a, g * bb, g * a * bb];
                for k in 0..4 {
                    gc[gate][k] += parts[k];
                    gc_abs[gate][k] += parts[k].abs();
                }
            }
        }
        (out, out_abs, gx, gx_abs, gc, gc_abs)
    }

    fn assert_close(what: &str, got: f32, want: f64, scale: f64) {
        let err = (f64::from(got) - want).abs();
        assert!(err <= 1e-5 * (scale + want.abs()).max(1e-3), "{what}: got {got}, want {want} (scale {scale})");
    }

    fn check_case(c: &Case, isa: Isa) {
        let n = c.ia.len();
        let (out_ref, out_abs, gx_ref, gx_abs, gc_ref, gc_abs) = reference(c);
        let mut out = vec![f32::NAN; n * c.batch];
        forward_with_check(isa, c, &mut out);
        for (k, (&o, (&r, &s))) in out.iter().zip(out_ref.iter().zip(&out_abs)).enumerate() {
            assert_close(&format!("out[{k}]"), o, r, s);
        }
        let mut gx = vec![f32::NAN; c.in_dim * c.batch];
        let mut gc = vec![[f32::NAN; 4]; n];
        if c.batch > 0 {
            backward_with(isa, &c.x, c.in_dim, c.batch, &c.ia, &c.ib, &c.coef, &c.g, &mut gx, &mut gc);
        } else {
            gate_backward(&c.x, c.in_dim, 0, &c.ia, &c.ib, &c.coef, &c.g, &mut gx, &mut gc).unwrap();
        }
        for (k, (&o, (&r, &s))) in gx.iter().zip(gx_ref.iter().zip(&gx_abs)).enumerate() {
            assert_close(&format!("grad_x[{k}]"), o, r, s);
        }
        for (gate, (o, (r, s))) in gc.iter().zip(gc_ref.iter().zip(&gc_abs)).enumerate() {
            for k in 0..4 {
                assert_close(&format!("grad_coef[{gate}][{k}]"), o[k], r[k], s[k]);
            }
        }
        let mut gc_only = vec![[f32::NAN; 4]; n];
        if c.batch > 0 {
            coef_grad_with(isa, &c.x, c.batch, &c.ia, &c.ib, &c.g, &mut gc_only);
        } else {
            gate_backward_coef(&c.x, c.in_dim, 0, &c.ia, &c.ib, &c.g, &mut gc_only).unwrap();
        }
        assert_eq!(gc_only, gc, "gate_backward_coef and gate_backward agree bit for bit");
    }

    fn forward_with_check(isa: Isa, c: &Case, out: &mut [f32]) {
        if c.batch == 0 || c.ia.is_empty() {
            gate_forward(&c.x, c.in_dim, c.batch, &c.ia, &c.ib, &c.coef, out).unwrap();
        } else {
            forward_with(isa, &c.x, c.batch, &c.ia, &c.ib, &c.coef, out);
        }
    }

    #[test]
    fn matches_reference_on_small_shapes() {
        let mut seed = 0;
        for &(in_dim, n) in &[(1, 1), (1, 3), (2, 1), (5, 7), (50, 20), (3, 40)] {
            for batch in [1, 7, 8, 15, 16, 17, 33, 100] {
                seed += 1;
                check_case(&case(seed, in_dim, n, batch), Isa::Portable);
            }
        }
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        let c = case(99, 300, 2000, 37); // large enough to run in parallel
        let mut want = None;
        for isa in Isa::supported() {
            let mut out = vec![0.0; c.ia.len() * c.batch];
            forward_with(isa, &c.x, c.batch, &c.ia, &c.ib, &c.coef, &mut out);
            let mut gx = vec![0.0; c.in_dim * c.batch];
            let mut gc = vec![[0.0; 4]; c.ia.len()];
            backward_with(isa, &c.x, c.in_dim, c.batch, &c.ia, &c.ib, &c.coef, &c.g, &mut gx, &mut gc);
            let got = (out, gx, gc);
            match &want {
                None => want = Some(got),
                Some(w) => assert!(*w == got, "{} differs from the portable path", isa.name()),
            }
        }
        check_case(&c, Isa::default_for_machine().unwrap());
    }

    #[test]
    fn every_thread_setting_gives_the_same_bits() {
        let c = case(7, 500, 3000, 41); // several tasks per kernel
        let settings = [1, 2, 3, 8]
            .map(|n| Threads::AtMost(NonZeroUsize::new(n).unwrap()))
            .into_iter()
            .chain([Threads::RayonPool]);
        let mut want = None;
        for threads in settings {
            let got = with_threads(threads, || {
                assert_eq!(current_threads(), threads);
                let n = c.ia.len();
                let mut out = vec![0.0; n * c.batch];
                gate_forward(&c.x, c.in_dim, c.batch, &c.ia, &c.ib, &c.coef, &mut out).unwrap();
                let (mut gx, mut gc, mut gc_only) =
                    (vec![0.0; c.in_dim * c.batch], vec![[0.0; 4]; n], vec![[0.0; 4]; n]);
                gate_backward(&c.x, c.in_dim, c.batch, &c.ia, &c.ib, &c.coef, &c.g, &mut gx, &mut gc).unwrap();
                gate_backward_coef(&c.x, c.in_dim, c.batch, &c.ia, &c.ib, &c.g, &mut gc_only).unwrap();
                (out, gx, gc, gc_only)
            });
            match &want {
                None => want = Some(got),
                Some(w) => assert!(*w == got, "{threads:?} differs from one thread"),
            }
        }
        assert_eq!(current_threads(), Threads::default(), "with_threads restores the setting");
    }

    #[test]
    fn same_wire_gate_gets_both_terms_and_unused_inputs_get_zero() {
        // Gate 0 reads wire 1 twice; wires 0 and 2 are read by nobody.
        let (in_dim, batch) = (3, 2);
        let x = vec![9.0, 9.0, 0.5, 0.25, 9.0, 9.0];
        let coef = [[0.1, 0.2, 0.3, 0.4]];
        let g = [1.0, 2.0];
        let mut out = [0.0; 2];
        gate_forward(&x, in_dim, batch, &[1], &[1], &coef, &mut out).unwrap();
        let want_out = [0.1 + 0.2 * 0.5 + 0.3 * 0.5 + 0.4 * 0.25, 0.1 + 0.2 * 0.25 + 0.3 * 0.25 + 0.4 * 0.0625];
        for (got, want) in out.iter().zip(want_out) {
            assert!((got - want).abs() < 1e-6, "{out:?} vs {want_out:?}");
        }
        let mut gx = [f32::NAN; 6];
        let mut gc = [[f32::NAN; 4]];
        gate_backward(&x, in_dim, batch, &[1], &[1], &coef, &g, &mut gx, &mut gc).unwrap();
        // d/dv of c0 + (c1 + c2) v + c3 v^2 = c1 + c2 + 2 c3 v.
        let d = |v: f32| 0.2 + 0.3 + 2.0 * 0.4 * v;
        let want = [0.0, 0.0, d(0.5), 2.0 * d(0.25), 0.0, 0.0];
        for (got, want) in gx.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{gx:?} vs {want:?}");
        }
        let want_coef = [3.0, 0.5 + 0.5, 0.5 + 0.5, 0.25 + 2.0 * 0.0625];
        for (got, want) in gc[0].iter().zip(want_coef) {
            assert!((got - want).abs() < 1e-6, "{gc:?} vs {want_coef:?}");
        }
    }

    #[test]
    fn empty_shapes() {
        check_case(&case(1, 4, 3, 0), Isa::Portable);
        let mut gx = vec![f32::NAN; 8];
        gate_backward(&[0.5; 8], 4, 2, &[], &[], &[], &[], &mut gx, &mut []).unwrap();
        assert_eq!(gx, vec![0.0; 8]);
        gate_forward(&[0.5; 8], 4, 2, &[], &[], &[], &mut []).unwrap();
    }

    fn message(result: Result<()>) -> String {
        match result {
            Err(Error::Input(m)) => m,
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let x = [0.5f32; 6]; // in_dim 3, batch 2
        let coef = [[0.0; 4]; 2];
        let mut out = [0.0; 4];
        let m = message(gate_forward(&x, 3, 2, &[0, 1], &[2], &coef, &mut out));
        assert!(m.contains("ib: expected 2 wires"), "{m}");
        let m = message(gate_forward(&x, 3, 2, &[0, 3], &[1, 2], &coef, &mut out));
        assert!(m.contains("ia[1] = 3") && m.contains("below in_dim = 3"), "{m}");
        let m = message(gate_forward(&x, 3, 2, &[0, 1], &[1, 7], &coef, &mut out));
        assert!(m.contains("ib[1] = 7"), "{m}");
        let m = message(gate_forward(&x[..5], 3, 2, &[0, 1], &[1, 2], &coef, &mut out));
        assert!(m.contains("x: expected in_dim x batch = 3 x 2 = 6 values, got 5"), "{m}");
        let m = message(gate_forward(&x, 3, 2, &[0, 1], &[1, 2], &coef[..1], &mut out));
        assert!(m.contains("coef: expected 2"), "{m}");
        let m = message(gate_forward(&x, 3, 2, &[0, 1], &[1, 2], &coef, &mut out[..3]));
        assert!(m.contains("out: expected 4"), "{m}");
        let m = message(gate_forward(&x, usize::MAX, 2, &[0, 1], &[1, 2], &coef, &mut out));
        assert!(m.contains("overflows"), "{m}");

        let g = [0.0; 4];
        let (mut gx, mut gc) = ([0.0; 6], [[0.0; 4]; 2]);
        let m = message(gate_backward(&x, 3, 2, &[0, 1], &[1, 2], &coef, &g[..3], &mut gx, &mut gc));
        assert!(m.contains("grad_out: expected 4"), "{m}");
        let m = message(gate_backward(&x, 3, 2, &[0, 1], &[1, 2], &coef, &g, &mut gx[..4], &mut gc));
        assert!(m.contains("grad_x: expected 6"), "{m}");
        let m = message(gate_backward(&x, 3, 2, &[0, 1], &[1, 2], &coef, &g, &mut gx, &mut gc[..1]));
        assert!(m.contains("grad_coef: expected 2"), "{m}");
        let m = message(gate_backward(&x, 3, 2, &[0, 5], &[1, 2], &coef, &g, &mut gx, &mut gc));
        assert!(m.contains("ia[1] = 5"), "{m}");
        let m = message(gate_backward_coef(&x, 3, 2, &[0, 1], &[1, 2], &g, &mut gc[..1]));
        assert!(m.contains("grad_coef: expected 2"), "{m}");
        let m = message(gate_backward_coef(&x, 0, 2, &[0, 1], &[1, 2], &g, &mut gc));
        assert!(m.contains("x: expected"), "{m}");
    }
}
