//! Fused kernels of a learned wiring: every "choice" (an input of a gate or of a table) reads the weighted sum of
//! its `K` candidate wires.
//!
//! Choice `r` has the candidates `pool[r * k..(r + 1) * k]` (rows of the feature-major `in_dim x batch` input `x`)
//! and the weights `w[r * k..(r + 1) * k]`:
//!
//! - forward: `out[r] = sum_k w[r, k] * x[pool[r, k]]`, summed in increasing `k`, terms of weight exactly zero
//!   skipped, so that a one-hot forward (the straight-through estimators) costs one copy of a row;
//! - backward, given `g = dL/dout` and backward weights `v` (the soft weights a straight-through forward stands for;
//!   `v = w` for a plain mixture): `grad_w[r, k] = sum_b g[r, b] * x[pool[r, k], b]` always, and, when asked,
//!   `grad_x[i] = sum over the slots (r, k) reading input i of v[r, k] * g[r]`.
//!
//! Written with tensor operations, both passes go through a `[R * K, batch]` copy of the candidates' values (the
//! gather) — `K` times the size of the output, mostly page faults and memory traffic. These kernels read the input
//! rows in place (the input of a layer fits the caches, its candidates do not) and write nothing but the results.
//! The forward pass and the weight gradient run in parallel over blocks of choices. The input gradient uses the
//! reverse index of the pool (for every input, the slots reading it, by a counting sort like the gate kernels'), so
//! every thread owns the rows it writes: no atomics, and the slots summed in increasing order. The same pass produces
//! the weight gradient of every slot it visits (the dot product of the gradient row and the input row it holds).
//! Weight gradients are taken four dot products at a time (independent chains of additions), with the same bits as
//! one at a time.
//!
//! [`learned_gate_forward`] and [`learned_gate_backward`] fuse the mix with the gate layer that reads it, for a
//! first layer (whose input needs no gradient): each gate mixes its two inputs into buffers of one row and uses them
//! at once, so neither the `2N x batch` mixed inputs nor their gradient are ever in memory; the bits are those of the
//! mix followed by the gate kernels.

use bitlogic::{Error, Isa, Result};

use super::{
    batch_sums, check_len, prefetch_distance, prefetch_row, reduce, row, rows_times_batch, run_tasks, LANES,
    PARALLEL_MIN, TASK_ELEMENTS,
};

/// Output `out` (`R x batch`, feature-major) of the candidate mix: `out[r] = sum_k w[r, k] * x[pool[r, k]]` over
/// the `R = pool.len() / k` choices, skipping the terms whose weight is exactly zero (a row of only zero weights is
/// zero).
///
/// `x` is the `in_dim x batch` input, `pool` the `R x k` candidate wires (each below `in_dim`), `w` their `R x k`
/// weights. Returns [`Error::Input`] when a length does not match, `k` is zero, or a wire is not below `in_dim`.
#[allow(clippy::too_many_arguments)]
pub fn candidate_forward(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    pool: &[u32],
    k: usize,
    w: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let rows = check_pool(x, in_dim, batch, pool, k)?;
    check_len("w", w.len(), pool.len(), "R x K weights, one per candidate")?;
    check_len("out", out.len(), rows_times_batch(rows, batch)?, "R x batch values")?;
    if batch == 0 || rows == 0 {
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    forward_with(isa, x, batch, pool, k, w, out);
    Ok(())
}

/// Gradients of [`candidate_forward`] given `grad_out` (`R x batch`).
///
/// Writes (overwrites) `grad_w` (`R x k`): `grad_w[r, k] = sum_b grad_out[r, b] * x[pool[r, k], b]`; and, when
/// given, `grad_x` (`in_dim x batch`): row `i` is the sum, over the slots `(r, k)` with `pool[r, k] == i` in
/// increasing order, of `v[r, k] * grad_out[r]` (terms with `v` exactly zero skipped; an input no slot reads gets
/// zeros). `v` (`R x k`) is read only for `grad_x`.
///
/// Returns [`Error::Input`] when a length does not match, `k` is zero, or a wire is not below `in_dim`.
#[allow(clippy::too_many_arguments)]
pub fn candidate_backward(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    pool: &[u32],
    k: usize,
    v: &[f32],
    grad_out: &[f32],
    grad_w: &mut [f32],
    grad_x: Option<&mut [f32]>,
) -> Result<()> {
    let rows = check_pool(x, in_dim, batch, pool, k)?;
    check_len("v", v.len(), pool.len(), "R x K backward weights, one per candidate")?;
    check_len("grad_out", grad_out.len(), rows_times_batch(rows, batch)?, "R x batch values")?;
    check_len("grad_w", grad_w.len(), pool.len(), "R x K values, one per candidate")?;
    if let Some(grad_x) = &grad_x {
        check_len("grad_x", grad_x.len(), x.len(), "in_dim x batch values, the shape of x")?;
    }
    if u32::try_from(pool.len()).is_err() {
        return Err(Error::Input(format!("pool: expected at most {} candidates in all, got {}", u32::MAX, pool.len())));
    }
    if batch == 0 {
        grad_w.fill(0.0);
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    match grad_x {
        Some(grad_x) => input_grad_with(isa, x, in_dim, batch, pool, k, v, grad_out, grad_w, grad_x),
        None => weight_grad_with(isa, x, batch, pool, k, grad_out, grad_w),
    }
    Ok(())
}

/// Checks the pool against `x` and returns the number of choices `R`.
fn check_pool(x: &[f32], in_dim: usize, batch: usize, pool: &[u32], k: usize) -> Result<usize> {
    if k == 0 {
        return Err(Error::Input("k: expected at least 1 candidate per choice, got 0".to_string()));
    }
    if !pool.len().is_multiple_of(k) {
        return Err(Error::Input(format!(
            "pool: expected R x K wires with K = {k}, got {} (not a multiple of K)",
            pool.len()
        )));
    }
    let x_len = rows_times_batch(in_dim, batch)?;
    if x.len() != x_len {
        return Err(Error::Input(format!(
            "x: expected in_dim x batch = {in_dim} x {batch} = {x_len} values, got {}",
            x.len()
        )));
    }
    if let Some((slot, &wire)) = pool.iter().enumerate().find(|(_, &w)| w as usize >= in_dim) {
        return Err(Error::Input(format!(
            "pool[{}, {}] = {wire}: expected a wire below in_dim = {in_dim} (the rows of x)",
            slot / k,
            slot % k
        )));
    }
    Ok(pool.len() / k)
}

per_isa!(forward_rows_isa => forward_rows(
    x: &[f32], batch: usize, pool: &[u32], k: usize, w: &[f32], out: &mut [f32],
));
per_isa!(weight_grad_rows_isa => weight_grad_rows(
    x: &[f32], batch: usize, pool: &[u32], k: usize, g: &[f32], grad_w: &mut [f32],
));
per_isa!(input_grad_isa => input_grad(task: InputTask<'_>, ctx: &InputCtx<'_>));

/// Choices per task.
fn rows_per_task(batch: usize) -> usize {
    (TASK_ELEMENTS / batch).max(1)
}

/// Asks for the rows of the candidates of choice `r` with a nonzero weight, if there is such a choice.
#[inline(always)]
fn prefetch_choice(x: &[f32], batch: usize, pool: &[u32], k: usize, w: &[f32], r: usize) {
    let at = r * k;
    if let (Some(wires), Some(weights)) = (pool.get(at..at + k), w.get(at..at + k)) {
        for (&i, &wk) in wires.iter().zip(weights) {
            if wk != 0.0 {
                prefetch_row(x, i as usize, batch);
            }
        }
    }
}

/// `out = sum_k weights[k] * x[wires[k]]`, increasing `k`, zero weights skipped.
#[inline(always)]
fn mix_row(x: &[f32], batch: usize, wires: &[u32], weights: &[f32], out: &mut [f32]) {
    let mut first = true;
    for (&i, &wk) in wires.iter().zip(weights) {
        if wk == 0.0 {
            continue;
        }
        let xi = row(x, i as usize, batch);
        if first {
            for (o, &a) in out.iter_mut().zip(xi) {
                *o = wk * a;
            }
            first = false;
        } else {
            for (o, &a) in out.iter_mut().zip(xi) {
                *o += wk * a;
            }
        }
    }
    if first {
        out.fill(0.0);
    }
}

/// The output rows of a run of choices, sequentially.
#[inline(always)]
fn forward_rows(x: &[f32], batch: usize, pool: &[u32], k: usize, w: &[f32], out: &mut [f32]) {
    let ahead = prefetch_distance(batch);
    for (r, o) in out.chunks_exact_mut(batch).enumerate() {
        prefetch_choice(x, batch, pool, k, w, r + ahead);
        mix_row(x, batch, &pool[r * k..(r + 1) * k], &w[r * k..(r + 1) * k], o);
    }
}

fn forward_with(isa: Isa, x: &[f32], batch: usize, pool: &[u32], k: usize, w: &[f32], out: &mut [f32]) {
    if out.len() <= PARALLEL_MIN {
        forward_rows_isa(isa, x, batch, pool, k, w, out);
        return;
    }
    let per = rows_per_task(batch);
    let tasks = out.chunks_mut(per * batch).zip(pool.chunks(per * k)).zip(w.chunks(per * k)).collect();
    run_tasks(tasks, |((out, pool), w)| forward_rows_isa(isa, x, batch, pool, k, w, out));
}

/// `sum_b g[b] * a[b]` in `LANES` independent lanes reduced in a fixed order. Every weight gradient is this sum
/// (or [`dot4`]'s, the same bits), so the kernels agree bit for bit whether or not the input gradient is asked for.
#[inline(always)]
fn dot(g: &[f32], a: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let whole = g.len() / LANES * LANES;
    let (g_body, g_tail) = g.split_at(whole);
    let (a_body, a_tail) = a.split_at(whole);
    for (g, a) in g_body.chunks_exact(LANES).zip(a_body.chunks_exact(LANES)) {
        let (g, a): (&[f32; LANES], &[f32; LANES]) = (g.try_into().unwrap(), a.try_into().unwrap());
        for l in 0..LANES {
            lanes[l] += g[l] * a[l];
        }
    }
    let mut tail = 0.0f32;
    for (&g, &a) in g_tail.iter().zip(a_tail) {
        tail += g * a;
    }
    reduce(&lanes) + tail
}

/// [`dot`] of `g` with four rows at once, the same bits as four calls: four independent chains of
/// additions hide each other's latency (one product alone waits on its own sums).
#[inline(always)]
fn dot4(g: &[f32], a: [&[f32]; 4]) -> [f32; 4] {
    let n = g.len();
    let [a0, a1, a2, a3] = a.map(|a| &a[..n]);
    let mut lanes = [[0.0f32; LANES]; 4];
    let whole = n / LANES * LANES;
    let mut c = 0;
    while c < whole {
        let g: &[f32; LANES] = g[c..c + LANES].try_into().unwrap();
        let x0: &[f32; LANES] = a0[c..c + LANES].try_into().unwrap();
        let x1: &[f32; LANES] = a1[c..c + LANES].try_into().unwrap();
        let x2: &[f32; LANES] = a2[c..c + LANES].try_into().unwrap();
        let x3: &[f32; LANES] = a3[c..c + LANES].try_into().unwrap();
        for l in 0..LANES {
            lanes[0][l] += g[l] * x0[l];
            lanes[1][l] += g[l] * x1[l];
            lanes[2][l] += g[l] * x2[l];
            lanes[3][l] += g[l] * x3[l];
        }
        c += LANES;
    }
    let mut out = [0.0f32; 4];
    for (j, a) in [a0, a1, a2, a3].into_iter().enumerate() {
        let mut tail = 0.0f32;
        for (&g, &a) in g[whole..].iter().zip(&a[whole..]) {
            tail += g * a;
        }
        out[j] = reduce(&lanes[j]) + tail;
    }
    out
}

/// `out[j] = dot(g, x[wires[j]])` for every wire, four at a time.
#[inline(always)]
fn dots(x: &[f32], batch: usize, g: &[f32], wires: &[u32], out: &mut [f32]) {
    let mut groups = wires.chunks_exact(4).zip(out.chunks_exact_mut(4));
    for (w, o) in &mut groups {
        let r = |j: usize| row(x, w[j] as usize, batch);
        o.copy_from_slice(&dot4(g, [r(0), r(1), r(2), r(3)]));
    }
    let done = wires.len() / 4 * 4;
    for (&i, o) in wires[done..].iter().zip(&mut out[done..]) {
        *o = dot(g, row(x, i as usize, batch));
    }
}

/// Weight gradients of a run of choices, sequentially.
#[inline(always)]
fn weight_grad_rows(x: &[f32], batch: usize, pool: &[u32], k: usize, g: &[f32], grad_w: &mut [f32]) {
    // Choices ahead: about the same distance in rows read as the other kernels'.
    let ahead = prefetch_distance(batch).div_ceil(k);
    for (r, (g, out)) in g.chunks_exact(batch).zip(grad_w.chunks_exact_mut(k)).enumerate() {
        if let Some(later) = pool.get((r + ahead) * k..(r + ahead + 1) * k) {
            for &i in later {
                prefetch_row(x, i as usize, batch);
            }
        }
        dots(x, batch, g, &pool[r * k..(r + 1) * k], out);
    }
}

fn weight_grad_with(isa: Isa, x: &[f32], batch: usize, pool: &[u32], k: usize, g: &[f32], grad_w: &mut [f32]) {
    if pool.len() * batch <= PARALLEL_MIN {
        weight_grad_rows_isa(isa, x, batch, pool, k, g, grad_w);
        return;
    }
    // A task of about TASK_ELEMENTS products: rows x K x batch.
    let per = (TASK_ELEMENTS / (batch * k)).max(1);
    let tasks = grad_w.chunks_mut(per * k).zip(g.chunks(per * batch)).zip(pool.chunks(per * k)).collect();
    run_tasks(tasks, |((grad_w, g), pool)| weight_grad_rows_isa(isa, x, batch, pool, k, g, grad_w));
}

/// Everything the input-side pass reads.
struct InputCtx<'a> {
    x: &'a [f32],
    batch: usize,
    k: usize,
    v: &'a [f32],
    g: &'a [f32],
    /// Reverse index: the slots `r * k + j` reading input `i` are `readers[starts[i]..starts[i + 1]]`, increasing.
    starts: &'a [usize],
    readers: &'a [u32],
}

/// A run of inputs `first..first + grad_x.len() / batch`, and one place per reader for its weight gradient.
struct InputTask<'a> {
    first: usize,
    grad_x: &'a mut [f32],
    slots: &'a mut [f32],
}

/// Input gradient rows of a run of inputs, and the weight gradients of the slots reading them.
#[inline(always)]
fn input_grad(task: InputTask<'_>, ctx: &InputCtx<'_>) {
    let batch = ctx.batch;
    let base = ctx.starts[task.first];
    let ahead = prefetch_distance(batch);
    let g_row = |slot: u32| row(ctx.g, slot as usize / ctx.k, batch);
    for (r, acc) in task.grad_x.chunks_exact_mut(batch).enumerate() {
        let i = task.first + r;
        let (start, end) = (ctx.starts[i], ctx.starts[i + 1]);
        let (readers, slots) = (&ctx.readers[start..end], &mut task.slots[start - base..end - base]);
        let xi = row(ctx.x, i, batch);
        // The weight gradients, four readers at a time ([`dot4`]: the same bits as one at a time, `g * x` being
        // `x * g`), then the input gradient, the readers' rows (now in the cache) added in increasing order.
        for (j, (group, out)) in readers.chunks_exact(4).zip(slots.chunks_exact_mut(4)).enumerate() {
            for &later in ctx.readers.get(start + 4 * j + ahead..).unwrap_or(&[]).iter().take(4) {
                prefetch_row(ctx.g, later as usize / ctx.k, batch);
            }
            out.copy_from_slice(&dot4(xi, [g_row(group[0]), g_row(group[1]), g_row(group[2]), g_row(group[3])]));
        }
        let done = readers.len() / 4 * 4;
        for (&slot, out) in readers[done..].iter().zip(&mut slots[done..]) {
            *out = dot(xi, g_row(slot));
        }
        acc.fill(0.0);
        for &slot in readers {
            let v = ctx.v[slot as usize];
            if v != 0.0 {
                for (acc, &g) in acc.iter_mut().zip(g_row(slot)) {
                    *acc += v * g;
                }
            }
        }
    }
}

/// The reverse index of the pool (see [`InputCtx::starts`]), by a counting sort.
fn reverse_index(in_dim: usize, pool: &[u32]) -> (Vec<usize>, Vec<u32>) {
    let mut starts = vec![0usize; in_dim + 1];
    for &i in pool {
        starts[i as usize + 1] += 1;
    }
    for i in 0..in_dim {
        starts[i + 1] += starts[i];
    }
    let mut next = starts[..in_dim].to_vec();
    let mut readers = vec![0u32; pool.len()];
    for (slot, &i) in pool.iter().enumerate() {
        readers[next[i as usize]] = slot as u32; // fits: checked by candidate_backward
        next[i as usize] += 1;
    }
    (starts, readers)
}

#[allow(clippy::too_many_arguments)]
fn input_grad_with(
    isa: Isa,
    x: &[f32],
    in_dim: usize,
    batch: usize,
    pool: &[u32],
    k: usize,
    v: &[f32],
    g: &[f32],
    grad_w: &mut [f32],
    grad_x: &mut [f32],
) {
    let (starts, readers) = reverse_index(in_dim, pool);
    let mut slots = vec![0.0f32; readers.len()];
    let ctx = InputCtx { x, batch, k, v, g, starts: &starts, readers: &readers };
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
        tasks.push(InputTask { first, grad_x: task_x, slots: task_slots });
        (rest_x, rest_slots, first) = (tail_x, tail_slots, end);
    }
    if (readers.len() + in_dim) * batch <= PARALLEL_MIN {
        for task in tasks {
            input_grad_isa(isa, task, &ctx);
        }
    } else {
        run_tasks(tasks, |task| input_grad_isa(isa, task, &ctx));
    }
    for (&slot, &value) in readers.iter().zip(&slots) {
        grad_w[slot as usize] = value;
    }
}

/// Output of a layer of `N` gates with learned wiring: gate `n` reads `a = sum_k w[n, k] * x[pool[n, k]]` and
/// `b = sum_k w[N + n, k] * x[pool[N + n, k]]` (the rows `0..N` of the `2N x k` pool and weights are the gates'
/// wire A, the rows `N..2N` wire B) and outputs `c0 + c1*a + c2*b + c3*a*b` (`c = coef[n]`), into `out`
/// (`N x batch`).
///
/// The same bits as [`candidate_forward`] followed by [`crate::gate_forward`] on its output (gate `n` reading rows
/// `n` and `N + n`), without the `2N x batch` mixed inputs in memory. Returns [`Error::Input`] as those do.
#[allow(clippy::too_many_arguments)]
pub fn learned_gate_forward(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    pool: &[u32],
    k: usize,
    w: &[f32],
    coef: &[[f32; 4]],
    out: &mut [f32],
) -> Result<()> {
    let n = check_learned(x, in_dim, batch, pool, k, w, coef)?;
    check_len("out", out.len(), rows_times_batch(n, batch)?, "N x batch values")?;
    if batch == 0 || n == 0 {
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    let ctx = LearnedCtx { x, batch, k, n, pool, w, coef };
    if out.len() <= PARALLEL_MIN {
        learned_forward_isa(isa, 0, out, &ctx);
        return Ok(());
    }
    let per = rows_per_task(batch);
    let tasks = out.chunks_mut(per * batch).enumerate().map(|(t, out)| (t * per, out)).collect();
    run_tasks(tasks, |(first, out)| learned_forward_isa(isa, first, out, &ctx));
    Ok(())
}

/// Gradients of [`learned_gate_forward`] given `grad_out` (`N x batch`), for a layer whose input needs no gradient
/// (the first layer of a model): `grad_w` (`2N x k`, overwritten) the weights' gradient, `grad_w[r, j] = sum_b
/// dL/d(mixed r)[b] * x[pool[r, j], b]` with `dL/da = g * (c1 + c3*b)` and `dL/db = g * (c2 + c3*a)`; `grad_coef`
/// (`N`) as [`crate::gate_backward_coef`]'s. The same bits as [`crate::gate_backward`] on the mixed inputs followed
/// by [`candidate_backward`], reading only `x`, the pool and `grad_out`.
#[allow(clippy::too_many_arguments)]
pub fn learned_gate_backward(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    pool: &[u32],
    k: usize,
    w: &[f32],
    coef: &[[f32; 4]],
    grad_out: &[f32],
    grad_w: &mut [f32],
    grad_coef: &mut [[f32; 4]],
) -> Result<()> {
    let n = check_learned(x, in_dim, batch, pool, k, w, coef)?;
    check_len("grad_out", grad_out.len(), rows_times_batch(n, batch)?, "N x batch values")?;
    check_len("grad_w", grad_w.len(), pool.len(), "2N x K values, one per candidate")?;
    check_len("grad_coef", grad_coef.len(), n, "one [4] row per gate")?;
    if batch == 0 {
        grad_w.fill(0.0);
        grad_coef.fill([0.0; 4]);
        return Ok(());
    }
    if n == 0 {
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    let ctx = LearnedCtx { x, batch, k, n, pool, w, coef };
    // The weight gradients of wire A (rows 0..N) and wire B (rows N..2N), split alike into runs of gates.
    let (grad_wa, grad_wb) = grad_w.split_at_mut(n * k);
    if grad_out.len() <= PARALLEL_MIN {
        learned_backward_isa(isa, LearnedTask { first: 0, g: grad_out, grad_wa, grad_wb, grad_coef }, &ctx);
        return Ok(());
    }
    let per = rows_per_task(batch);
    let tasks = grad_out
        .chunks(per * batch)
        .zip(grad_wa.chunks_mut(per * k))
        .zip(grad_wb.chunks_mut(per * k))
        .zip(grad_coef.chunks_mut(per))
        .enumerate()
        .map(|(t, (((g, grad_wa), grad_wb), grad_coef))| LearnedTask { first: t * per, g, grad_wa, grad_wb, grad_coef })
        .collect();
    run_tasks(tasks, |task| learned_backward_isa(isa, task, &ctx));
    Ok(())
}

/// Checks a learned gate layer's arguments and returns its number of gates `N`.
fn check_learned(
    x: &[f32],
    in_dim: usize,
    batch: usize,
    pool: &[u32],
    k: usize,
    w: &[f32],
    coef: &[[f32; 4]],
) -> Result<usize> {
    let rows = check_pool(x, in_dim, batch, pool, k)?;
    if !rows.is_multiple_of(2) {
        return Err(Error::Input(format!("pool: expected 2N rows (wires A, then wires B), got {rows}")));
    }
    check_len("w", w.len(), pool.len(), "2N x K weights, one per candidate")?;
    check_len("coef", coef.len(), rows / 2, "one [c0, c1, c2, c3] per gate")?;
    Ok(rows / 2)
}

/// Everything the learned gate kernels read.
struct LearnedCtx<'a> {
    x: &'a [f32],
    batch: usize,
    k: usize,
    n: usize,
    pool: &'a [u32],
    w: &'a [f32],
    coef: &'a [[f32; 4]],
}

impl LearnedCtx<'_> {
    /// The mixed inputs `a` and `b` of gate `gate`, into the two buffers.
    #[inline(always)]
    fn mix(&self, gate: usize, a: &mut [f32], b: &mut [f32]) {
        let (k, batch) = (self.k, self.batch);
        let (ra, rb) = (gate * k..(gate + 1) * k, (self.n + gate) * k..(self.n + gate + 1) * k);
        mix_row(self.x, batch, &self.pool[ra.clone()], &self.w[ra], a);
        mix_row(self.x, batch, &self.pool[rb.clone()], &self.w[rb], b);
    }

    #[inline(always)]
    fn prefetch(&self, gate: usize) {
        prefetch_choice(self.x, self.batch, self.pool, self.k, self.w, gate);
        prefetch_choice(self.x, self.batch, self.pool, self.k, self.w, self.n + gate);
    }
}

/// Output rows of the gates `first..first + out.len() / batch`.
#[inline(always)]
fn learned_forward(first: usize, out: &mut [f32], ctx: &LearnedCtx<'_>) {
    let batch = ctx.batch;
    let (mut a, mut b) = (vec![0.0f32; batch], vec![0.0f32; batch]);
    let ahead = prefetch_distance(batch);
    for (r, o) in out.chunks_exact_mut(batch).enumerate() {
        let gate = first + r;
        if gate + ahead < ctx.n {
            ctx.prefetch(gate + ahead);
        }
        ctx.mix(gate, &mut a, &mut b);
        let [c0, c1, c2, c3] = ctx.coef[gate];
        for ((o, &a), &b) in o.iter_mut().zip(&a).zip(&b) {
            *o = c0 + c1 * a + (c2 + c3 * a) * b;
        }
    }
}

/// A run of gates `first..first + grad_coef.len()` and their parts of the gradients.
struct LearnedTask<'a> {
    first: usize,
    g: &'a [f32],
    grad_wa: &'a mut [f32],
    grad_wb: &'a mut [f32],
    grad_coef: &'a mut [[f32; 4]],
}

#[inline(always)]
fn learned_backward(task: LearnedTask<'_>, ctx: &LearnedCtx<'_>) {
    let (batch, k) = (ctx.batch, ctx.k);
    let LearnedTask { first, g, grad_wa, grad_wb, grad_coef } = task;
    let mut buffers = vec![0.0f32; 4 * batch];
    let (a, rest) = buffers.split_at_mut(batch);
    let (b, rest) = rest.split_at_mut(batch);
    let (da, db) = rest.split_at_mut(batch);
    let ahead = prefetch_distance(batch);
    for (r, (g, out)) in g.chunks_exact(batch).zip(grad_coef.iter_mut()).enumerate() {
        let gate = first + r;
        if gate + ahead < ctx.n {
            ctx.prefetch(gate + ahead);
        }
        ctx.mix(gate, a, b);
        let [_, c1, c2, c3] = ctx.coef[gate];
        // As gate_backward's pass over the a side (which starts its input gradient at zero) and its b side.
        da.fill(0.0);
        *out = batch_sums(g, a, b, Some((&mut *da, c1, c3)));
        db.fill(0.0);
        for ((db, &g), &a) in db.iter_mut().zip(g).zip(&*a) {
            *db += g * (c2 + c3 * a);
        }
        let (wires_a, wires_b) = (&ctx.pool[gate * k..(gate + 1) * k], &ctx.pool[(ctx.n + gate) * k..][..k]);
        dots(ctx.x, batch, da, wires_a, &mut grad_wa[r * k..(r + 1) * k]);
        dots(ctx.x, batch, db, wires_b, &mut grad_wb[r * k..(r + 1) * k]);
    }
}

per_isa!(learned_forward_isa => learned_forward(first: usize, out: &mut [f32], ctx: &LearnedCtx<'_>));
per_isa!(learned_backward_isa => learned_backward(task: LearnedTask<'_>, ctx: &LearnedCtx<'_>));

#[cfg(test)]
mod tests {
    use super::*;
    use bitlogic::SplitMix64;

    struct Case {
        in_dim: usize,
        batch: usize,
        k: usize,
        pool: Vec<u32>,
        x: Vec<f32>,
        w: Vec<f32>,
        v: Vec<f32>,
        g: Vec<f32>,
    }

    fn uniform(rng: &mut SplitMix64) -> f32 {
        (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A random case; `one_hot` makes the forward weights one-hot (the straight-through estimators), with `v` soft.
    fn case(seed: u64, in_dim: usize, rows: usize, k: usize, batch: usize, one_hot: bool) -> Case {
        let mut rng = SplitMix64::new(seed);
        let mut pool: Vec<u32> = (0..rows * k).map(|_| (rng.next_u64() % in_dim as u64) as u32).collect();
        if k > 1 && rows > 0 {
            pool[1] = pool[0]; // a repeated candidate in one pool
        }
        let x = (0..in_dim * batch).map(|_| uniform(&mut rng)).collect();
        let v: Vec<f32> = (0..rows * k).map(|_| uniform(&mut rng)).collect();
        let w = if one_hot {
            (0..rows * k).map(|s| if s % k == (s / k) % k { 1.0 } else { 0.0 }).collect()
        } else {
            v.clone()
        };
        let g = (0..rows * batch).map(|_| uniform(&mut rng) - 0.5).collect();
        Case { in_dim, batch, k, pool, x, w, v, g }
    }

    /// Naive f64 reference: (out, grad_w, grad_x), each with the sums of absolute terms, for tolerances.
    #[allow(clippy::type_complexity)]
    fn reference(c: &Case) -> [(Vec<f64>, Vec<f64>); 3] {
        let (b, k) = (c.batch, c.k);
        let rows = c.pool.len() / k;
        let mut out = (vec![0.0; rows * b], vec![0.0; rows * b]);
        let mut gw = (vec![0.0; rows * k], vec![0.0; rows * k]);
        let mut gx = (vec![0.0; c.in_dim * b], vec![0.0; c.in_dim * b]);
        for slot in 0..rows * k {
            let (r, i) = (slot / k, c.pool[slot] as usize);
            let (w, v) = (f64::from(c.w[slot]), f64::from(c.v[slot]));
            for s in 0..b {
                let a = f64::from(c.x[i * b + s]);
                let g = f64::from(c.g[r * b + s]);
                out.0[r * b + s] += w * a;
                out.1[r * b + s] += (w * a).abs();
                gw.0[slot] += g * a;
                gw.1[slot] += (g * a).abs();
                gx.0[i * b + s] += v * g;
                gx.1[i * b + s] += (v * g).abs();
            }
        }
        [out, gw, gx]
    }

    fn assert_close(what: &str, got: &[f32], want: &(Vec<f64>, Vec<f64>)) {
        assert_eq!(got.len(), want.0.len(), "{what}: length");
        for (j, (&o, (&r, &s))) in got.iter().zip(want.0.iter().zip(&want.1)).enumerate() {
            let err = (f64::from(o) - r).abs();
            assert!(err <= 1e-5 * (s + r.abs()).max(1e-3), "{what}[{j}]: got {o}, want {r} (scale {s})");
        }
    }

    /// Runs the kernels on `isa` (the public functions when a shape is empty) and returns (out, grad_w, grad_x,
    /// grad_w without grad_x).
    fn run(c: &Case, isa: Isa) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let rows = c.pool.len() / c.k;
        let mut out = vec![f32::NAN; rows * c.batch];
        let mut gw = vec![f32::NAN; rows * c.k];
        let mut gx = vec![f32::NAN; c.in_dim * c.batch];
        let mut gw_only = vec![f32::NAN; rows * c.k];
        if c.batch == 0 || rows == 0 {
            candidate_forward(&c.x, c.in_dim, c.batch, &c.pool, c.k, &c.w, &mut out).unwrap();
            candidate_backward(&c.x, c.in_dim, c.batch, &c.pool, c.k, &c.v, &c.g, &mut gw, Some(&mut gx)).unwrap();
            candidate_backward(&c.x, c.in_dim, c.batch, &c.pool, c.k, &c.v, &c.g, &mut gw_only, None).unwrap();
        } else {
            forward_with(isa, &c.x, c.batch, &c.pool, c.k, &c.w, &mut out);
            input_grad_with(isa, &c.x, c.in_dim, c.batch, &c.pool, c.k, &c.v, &c.g, &mut gw, &mut gx);
            weight_grad_with(isa, &c.x, c.batch, &c.pool, c.k, &c.g, &mut gw_only);
        }
        (out, gw, gx, gw_only)
    }

    fn check_case(c: &Case, isa: Isa) {
        let [out_ref, gw_ref, gx_ref] = reference(c);
        let (out, gw, gx, gw_only) = run(c, isa);
        assert_close("out", &out, &out_ref);
        assert_close("grad_w", &gw, &gw_ref);
        assert_close("grad_x", &gx, &gx_ref);
        assert!(gw_only == gw, "grad_w with and without grad_x differ");
    }

    #[test]
    fn matches_reference_on_small_shapes() {
        let mut seed = 0;
        for &(in_dim, rows, k) in &[(1, 1, 1), (1, 3, 2), (2, 1, 4), (5, 7, 1), (50, 20, 8), (3, 40, 3), (9, 4, 16)] {
            for batch in [1, 7, 16, 17, 33, 64, 65, 100, 130] {
                for one_hot in [false, true] {
                    seed += 1;
                    check_case(&case(seed, in_dim, rows, k, batch, one_hot), Isa::Portable);
                }
            }
        }
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        for one_hot in [false, true] {
            let c = case(99, 300, 3000, 8, 37, one_hot); // large enough to run in parallel
            let mut want = None;
            for isa in Isa::supported() {
                let got = run(&c, isa);
                match &want {
                    None => want = Some(got),
                    Some(w) => assert!(*w == got, "{} differs from the portable path", isa.name()),
                }
            }
            check_case(&c, Isa::default_for_machine().unwrap());
        }
    }

    #[test]
    fn one_hot_forward_copies_the_row_and_zero_rows_are_zero() {
        // in_dim 3, batch 2; choice 0 picks wire 2, choice 1 has no weight; wire 1 is read by nobody.
        let x = [1.0, 2.0, 9.0, 9.0, f32::INFINITY, -0.5];
        let pool = [0, 2, 0, 2];
        let w = [0.0, 1.0, 0.0, 0.0];
        let mut out = [f32::NAN; 4];
        candidate_forward(&x, 3, 2, &pool, 2, &w, &mut out).unwrap();
        assert_eq!(out, [f32::INFINITY, -0.5, 0.0, 0.0], "zero weights never touch the (infinite) values");
        let v = [0.25, 0.75, 0.5, 0.5];
        let g = [1.0, 2.0, 4.0, 8.0];
        let (mut gw, mut gx) = ([f32::NAN; 4], [f32::NAN; 6]);
        candidate_backward(&x, 3, 2, &pool, 2, &v, &g, &mut gw, Some(&mut gx)).unwrap();
        assert_eq!(gx, [0.25 * 1.0 + 0.5 * 4.0, 0.25 * 2.0 + 0.5 * 8.0, 0.0, 0.0, 0.75 + 2.0, 1.5 + 4.0]);
        assert_eq!(gw, [1.0 + 4.0, f32::INFINITY, 4.0 + 16.0, f32::INFINITY]);
    }

    #[test]
    fn empty_shapes() {
        check_case(&case(1, 4, 3, 2, 0, false), Isa::Portable);
        check_case(&case(2, 4, 0, 2, 5, false), Isa::Portable);
        let mut gx = vec![f32::NAN; 8];
        candidate_backward(&[0.5; 8], 4, 2, &[], 3, &[], &[], &mut [], Some(&mut gx)).unwrap();
        assert_eq!(gx, vec![0.0; 8]);
        candidate_forward(&[], 0, 2, &[], 1, &[], &mut []).unwrap();
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
        let pool = [0, 1, 2, 0]; // R 2, K 2
        let w = [0.25f32; 4];
        let mut out = [0.0; 4];
        let m = message(candidate_forward(&x, 3, 2, &pool, 0, &w, &mut out));
        assert!(m.contains("k: expected at least 1"), "{m}");
        let m = message(candidate_forward(&x, 3, 2, &pool, 3, &w, &mut out));
        assert!(m.contains("not a multiple of K"), "{m}");
        let m = message(candidate_forward(&x, 3, 2, &[0, 1, 3, 0], 2, &w, &mut out));
        assert!(m.contains("pool[1, 0] = 3") && m.contains("below in_dim = 3"), "{m}");
        let m = message(candidate_forward(&x[..5], 3, 2, &pool, 2, &w, &mut out));
        assert!(m.contains("x: expected in_dim x batch = 3 x 2 = 6 values, got 5"), "{m}");
        let m = message(candidate_forward(&x, 3, 2, &pool, 2, &w[..3], &mut out));
        assert!(m.contains("w: expected 4"), "{m}");
        let m = message(candidate_forward(&x, 3, 2, &pool, 2, &w, &mut out[..3]));
        assert!(m.contains("out: expected 4"), "{m}");
        let m = message(candidate_forward(&x, usize::MAX, 2, &pool, 2, &w, &mut out));
        assert!(m.contains("overflows"), "{m}");

        let g = [0.0f32; 4];
        let (mut gw, mut gx) = ([0.0f32; 4], [0.0f32; 6]);
        let m = message(candidate_backward(&x, 3, 2, &pool, 2, &w[..2], &g, &mut gw, None));
        assert!(m.contains("v: expected 4"), "{m}");
        let m = message(candidate_backward(&x, 3, 2, &pool, 2, &w, &g[..3], &mut gw, None));
        assert!(m.contains("grad_out: expected 4"), "{m}");
        let m = message(candidate_backward(&x, 3, 2, &pool, 2, &w, &g, &mut gw[..3], None));
        assert!(m.contains("grad_w: expected 4"), "{m}");
        let m = message(candidate_backward(&x, 3, 2, &pool, 2, &w, &g, &mut gw, Some(&mut gx[..5])));
        assert!(m.contains("grad_x: expected 6"), "{m}");
        let m = message(candidate_backward(&x, 3, 2, &[0, 9, 0, 0], 2, &w, &g, &mut gw, Some(&mut gx)));
        assert!(m.contains("pool[0, 1] = 9"), "{m}");
    }

    /// The learned gate kernels against the composition they fuse: the mix, then gates reading rows `n` and `N + n`.
    fn check_learned_case(seed: u64, in_dim: usize, n: usize, k: usize, batch: usize, one_hot: bool) {
        let c = case(seed, in_dim, 2 * n, k, batch, one_hot);
        let mut rng = SplitMix64::new(seed ^ 0x5eed);
        let coef: Vec<[f32; 4]> = (0..n).map(|_| std::array::from_fn(|_| 2.0 * uniform(&mut rng) - 1.0)).collect();
        let g: Vec<f32> = (0..n * batch).map(|_| uniform(&mut rng) - 0.5).collect();
        let (ia, ib): (Vec<u32>, Vec<u32>) = ((0..n as u32).collect(), (n as u32..2 * n as u32).collect());
        let mut mixed = vec![0.0; 2 * n * batch];
        candidate_forward(&c.x, in_dim, batch, &c.pool, k, &c.w, &mut mixed).unwrap();
        let mut want_out = vec![0.0; n * batch];
        crate::gate_forward(&mixed, 2 * n, batch, &ia, &ib, &coef, &mut want_out).unwrap();
        let (mut grad_mixed, mut want_coef) = (vec![0.0; 2 * n * batch], vec![[0.0; 4]; n]);
        crate::gate_backward(&mixed, 2 * n, batch, &ia, &ib, &coef, &g, &mut grad_mixed, &mut want_coef).unwrap();
        let mut want_w = vec![0.0; 2 * n * k];
        candidate_backward(&c.x, in_dim, batch, &c.pool, k, &c.w, &grad_mixed, &mut want_w, None).unwrap();
        for isa in Isa::supported() {
            let ctx = LearnedCtx { x: &c.x, batch, k, n, pool: &c.pool, w: &c.w, coef: &coef };
            let mut out = vec![f32::NAN; n * batch];
            let (mut gw, mut gc) = (vec![f32::NAN; 2 * n * k], vec![[f32::NAN; 4]; n]);
            if batch > 0 && n > 0 {
                learned_forward_isa(isa, 0, &mut out, &ctx);
                let (grad_wa, grad_wb) = gw.split_at_mut(n * k);
                learned_backward_isa(isa, LearnedTask { first: 0, g: &g, grad_wa, grad_wb, grad_coef: &mut gc }, &ctx);
            } else {
                learned_gate_forward(&c.x, in_dim, batch, &c.pool, k, &c.w, &coef, &mut out).unwrap();
                learned_gate_backward(&c.x, in_dim, batch, &c.pool, k, &c.w, &coef, &g, &mut gw, &mut gc).unwrap();
            }
            assert!(out == want_out, "{}: forward differs from the composition", isa.name());
            assert!(gw == want_w && gc == want_coef, "{}: backward differs from the composition", isa.name());
            // The public functions (in parallel when large enough) give the same bits.
            let mut out2 = vec![f32::NAN; n * batch];
            let (mut gw2, mut gc2) = (vec![f32::NAN; 2 * n * k], vec![[f32::NAN; 4]; n]);
            learned_gate_forward(&c.x, in_dim, batch, &c.pool, k, &c.w, &coef, &mut out2).unwrap();
            learned_gate_backward(&c.x, in_dim, batch, &c.pool, k, &c.w, &coef, &g, &mut gw2, &mut gc2).unwrap();
            assert!(out2 == want_out && gw2 == want_w && gc2 == want_coef, "{}: public functions", isa.name());
        }
    }

    #[test]
    fn learned_gates_equal_the_mix_then_the_gates() {
        let mut seed = 500;
        for &(in_dim, n, k, batch) in &[(1, 1, 1, 1), (5, 3, 2, 7), (50, 20, 8, 33), (300, 1500, 8, 37), (9, 4, 16, 0)]
        {
            for one_hot in [false, true] {
                seed += 1;
                check_learned_case(seed, in_dim, n, k, batch, one_hot);
            }
        }
    }

    #[test]
    fn learned_gates_reject_bad_inputs() {
        let x = [0.5f32; 6]; // in_dim 3, batch 2
        let pool = [0, 1, 2, 0]; // 2 rows of K = 2: one gate
        let w = [0.5f32; 4];
        let coef = [[0.0f32; 4]];
        let mut out = [0.0; 2];
        let m = message(learned_gate_forward(&x, 3, 2, &pool[..2], 2, &w[..2], &coef, &mut out));
        assert!(m.contains("expected 2N rows"), "{m}");
        let m = message(learned_gate_forward(&x, 3, 2, &pool, 2, &w, &[], &mut out));
        assert!(m.contains("coef: expected 1"), "{m}");
        let m = message(learned_gate_forward(&x, 3, 2, &[0, 1, 2, 5], 2, &w, &coef, &mut out));
        assert!(m.contains("pool[1, 1] = 5"), "{m}");
        let m = message(learned_gate_forward(&x, 3, 2, &pool, 2, &w, &coef, &mut out[..1]));
        assert!(m.contains("out: expected 2"), "{m}");
        let (mut gw, mut gc) = ([0.0f32; 4], [[0.0f32; 4]]);
        let m = message(learned_gate_backward(&x, 3, 2, &pool, 2, &w, &coef, &[0.0; 3], &mut gw, &mut gc));
        assert!(m.contains("grad_out: expected 2"), "{m}");
        let m = message(learned_gate_backward(&x, 3, 2, &pool, 2, &w, &coef, &[0.0; 2], &mut gw[..3], &mut gc));
        assert!(m.contains("grad_w: expected 4"), "{m}");
    }
}
