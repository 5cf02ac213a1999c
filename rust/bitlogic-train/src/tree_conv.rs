//! Fused kernels of a tree convolution (`LogicConv2d`, the `conv_gates` layer while training): every output channel
//! is a binary tree of relaxed two-input gates over `2^d` leaves of the receptive field, shared over the positions.
//!
//! The input `x` is `[B, C, H, W]` (sample-major, C order, like torch's `NCHW`), the output `[B, O, H', W']`. Leaf `j`
//! of channel `o` reads input channel `c`, row `y'*sh - ph + dy` and column `x'*sw - pw + dx` at output position
//! `(y', x')` (`leaves[o, j] = [c, dy, dx]`), 0 outside the image (zero padding). At one position `nodes[0..L]`
//! (`L = 2^d`) are the leaves' values, gate `g` computes `c0 + c1*a + (c2 + c3*a)*b` with `a = nodes[2g]`,
//! `b = nodes[2g + 1]` and `[c0, c1, c2, c3] = coef[o, g]` and writes `nodes[L + g]`; the output is the last node.
//!
//! Written with tensor operations, the leaves are first gathered into a `[B*H'*W', O*L]` tensor (`L` times the
//! output) and every tree level is a gate layer over it, with autograd keeping every level for the backward pass.
//! These kernels read the receptive field in place and keep a tree's nodes in a small buffer: for a chunk of up to
//! [`chunk_positions`] positions of one channel, one row of nodes per tree node, every gate one loop over the chunk
//! (vectorized). Each task first copies its sample into a zero-padded buffer so that every leaf read is one
//! unconditional load at `leaf offset + position offset` (no bounds test per read).
//!
//! The backward pass saves nothing from the forward pass: it recomputes the trees from `x`. It visits only the
//! positions whose output gradient is not exactly 0 (behind an OR / max pool, 3 of 4 are 0), gathering them into
//! chunks, so a pooled layer's backward pass costs about a quarter of a dense one. Its tasks are runs of samples:
//! each owns the input gradient of its samples (accumulated in a padded buffer, no two tasks write one element) and
//! a partial coefficient gradient, and the partials are summed in task order afterwards: the same bits on any number
//! of threads.

use bitlogic::{Error, Isa, Result};

use super::{batch_sums, check_len, run_tasks, PARALLEL_MIN};

/// The deepest tree the kernels take (`2^8` leaves), as the file format's `conv_gates` layers.
pub const MAX_TREE_DEPTH: usize = 8;

/// Most backward tasks (runs of samples), each with its own partial coefficient gradient.
const MAX_BACKWARD_TASKS: usize = 64;
/// Bound on the partial coefficient gradients of the backward tasks together, in `[f32; 4]` rows (64 MiB).
const PARTIAL_ROWS_BUDGET: usize = 1 << 22;
/// About this many node values per forward task (output channels x positions x tree nodes).
const FORWARD_TASK_NODES: usize = 1 << 16;

/// The shape of a tree convolution's input and its window: the `[B, C, H, W]` input, `kernel_size = [kh, kw]`,
/// `stride = [sh, sw]` and zero `padding = [ph, pw]` (as in the file format's spatial layers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// `[B, C, H, W]`.
    pub input: [usize; 4],
    /// `[kh, kw]`, each at least 1.
    pub kernel_size: [usize; 2],
    /// `[sh, sw]`, each at least 1.
    pub stride: [usize; 2],
    /// `[ph, pw]`.
    pub padding: [usize; 2],
}

impl ConvShape {
    /// The output size `[H', W']`, `H' = (H + 2*ph - kh) / sh + 1`; [`Error::Input`] when a size is zero or the
    /// window is larger than the padded input.
    pub fn output_size(&self) -> Result<[usize; 2]> {
        let [_, _, h, w] = self.input;
        let mut out = [0; 2];
        for (axis, name) in ["height", "width"].into_iter().enumerate() {
            let (size, k, s, p) = ([h, w][axis], self.kernel_size[axis], self.stride[axis], self.padding[axis]);
            if k == 0 || s == 0 {
                return Err(Error::Input(format!(
                    "kernel_size and stride: expected at least 1 along the {name}, got kernel {k} and stride {s}"
                )));
            }
            let padded = p.checked_mul(2).and_then(|p2| size.checked_add(p2)).ok_or_else(|| overflow("padding"))?;
            if size == 0 || k > padded {
                return Err(Error::Input(format!(
                    "kernel_size: expected at most the padded input {name} {size} + 2 x {p} = {padded} (and an input \
                     {name} of at least 1), got {k}"
                )));
            }
            out[axis] = (padded - k) / s + 1;
        }
        Ok(out)
    }
}

fn overflow(what: &str) -> Error {
    Error::Input(format!("{what}: the sizes overflow the address space"))
}

fn product(what: &str, factors: &[usize]) -> Result<usize> {
    factors.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f)).ok_or_else(|| overflow(what))
}

/// Output `out` (`[B, O, H', W']`) of the tree convolution of `x` (`[B, C, H, W]`, `shape`) with `O` trees of depth
/// `depth`: `leaves` is `[O, 2^depth]` rows `[c, dy, dx]`, `coef` `[O, 2^depth - 1]` gate coefficients.
///
/// Returns [`Error::Input`] when a length does not match `shape` and `depth`, `depth` is not in
/// `1..=`[`MAX_TREE_DEPTH`], or a leaf reads outside the channels or the window; nothing is written then.
pub fn tree_conv_forward(
    x: &[f32],
    shape: ConvShape,
    depth: usize,
    leaves: &[[u32; 3]],
    coef: &[[f32; 4]],
    out: &mut [f32],
) -> Result<()> {
    let plan = Plan::new(shape, depth, leaves)?;
    check_len("x", x.len(), plan.input_len()?, "B x C x H x W values")?;
    check_len("coef", coef.len(), plan.out_channels * plan.gates(), "O x (2^depth - 1) gates")?;
    check_len("out", out.len(), plan.output_len()?, "B x O x H' x W' values")?;
    if out.is_empty() {
        return Ok(());
    }
    let isa = Isa::default_for_machine()?;
    let offsets = plan.position_offsets();
    let ctx = Ctx { plan: &plan, x, coef, grad_out: &[], offsets: &offsets };
    let planes = plan.out_channels;
    let per = (FORWARD_TASK_NODES / (plan.positions() * plan.nodes()).max(1)).clamp(1, planes);
    // One task per sample and run of `per` output channels: its planes are one contiguous run of `out`.
    let tasks: Vec<ForwardTask<'_>> = out
        .chunks_mut(plan.positions() * planes)
        .enumerate()
        .flat_map(|(sample, planes_out)| {
            planes_out.chunks_mut(per * plan.positions()).enumerate().map(move |(k, out)| ForwardTask {
                sample,
                first_channel: k * per,
                out,
            })
        })
        .collect();
    if out_work(&plan) <= PARALLEL_MIN {
        tasks.into_iter().for_each(|task| forward_task_isa(isa, task, &ctx));
    } else {
        run_tasks(tasks, |task| forward_task_isa(isa, task, &ctx));
    }
    Ok(())
}

/// Gradients of [`tree_conv_forward`] given `grad_out` (`[B, O, H', W']`).
///
/// Writes (overwrites) `grad_coef` (`[O, 2^depth - 1]`): for every gate, `[sum g, sum g*a, sum g*b, sum g*a*b]`
/// over the samples and positions, `g` the gradient of the gate's output; and, when given, `grad_x`
/// (`[B, C, H, W]`): the sum of the gradients of the leaves reading each input (padding reads go nowhere). The trees
/// are recomputed from `x`; positions whose `grad_out` is exactly 0 are skipped (they contribute nothing).
///
/// Returns [`Error::Input`] as [`tree_conv_forward`] does, and when `grad_out`, `grad_x` or `grad_coef` has the wrong
/// length.
#[allow(clippy::too_many_arguments)]
pub fn tree_conv_backward(
    x: &[f32],
    shape: ConvShape,
    depth: usize,
    leaves: &[[u32; 3]],
    coef: &[[f32; 4]],
    grad_out: &[f32],
    grad_x: Option<&mut [f32]>,
    grad_coef: &mut [[f32; 4]],
) -> Result<()> {
    let plan = Plan::new(shape, depth, leaves)?;
    let rows = plan.out_channels * plan.gates();
    check_len("x", x.len(), plan.input_len()?, "B x C x H x W values")?;
    check_len("coef", coef.len(), rows, "O x (2^depth - 1) gates")?;
    check_len("grad_out", grad_out.len(), plan.output_len()?, "B x O x H' x W' values, the shape of the output")?;
    check_len("grad_coef", grad_coef.len(), rows, "one [4] row per gate")?;
    if let Some(grad_x) = &grad_x {
        check_len("grad_x", grad_x.len(), x.len(), "B x C x H x W values, the shape of x")?;
    }
    let isa = Isa::default_for_machine()?;
    let batch = plan.batch;
    // Runs of samples: a fixed number for the sizes (never for the threads), bounded by the memory of the partials.
    let groups = batch.min(MAX_BACKWARD_TASKS).min((PARTIAL_ROWS_BUDGET / rows.max(1)).max(1));
    let per = batch.div_ceil(groups.max(1)).max(1);
    let count = batch.div_ceil(per);
    let mut partials = vec![[0.0f32; 4]; rows * count];
    let mut tasks = Vec::with_capacity(count);
    let (mut rest_coef, mut rest_x) = (partials.as_mut_slice(), grad_x);
    for k in 0..count {
        let samples = k * per..((k + 1) * per).min(batch);
        let (grad_coef, tail) = rest_coef.split_at_mut(rows);
        rest_coef = tail;
        let grad_x = rest_x.take().map(|rest| {
            let (part, tail) = rest.split_at_mut(samples.len() * plan.sample_len());
            rest_x = Some(tail);
            part
        });
        tasks.push(BackwardTask { samples, grad_x, grad_coef });
    }
    let offsets = plan.position_offsets();
    let ctx = Ctx { plan: &plan, x, coef, grad_out, offsets: &offsets };
    if out_work(&plan) <= PARALLEL_MIN {
        tasks.into_iter().for_each(|task| backward_task_isa(isa, task, &ctx));
    } else {
        run_tasks(tasks, |task| backward_task_isa(isa, task, &ctx));
    }
    grad_coef.fill([0.0; 4]);
    for partial in partials.chunks_exact(rows.max(1)) {
        for (total, part) in grad_coef.iter_mut().zip(partial) {
            for k in 0..4 {
                total[k] += part[k];
            }
        }
    }
    Ok(())
}

/// Node values the forward pass computes in all: whether to wake threads.
fn out_work(plan: &Plan) -> usize {
    plan.batch.saturating_mul(plan.out_channels).saturating_mul(plan.positions()).saturating_mul(plan.nodes())
}

/// The checked sizes of one call and the leaves as offsets into a zero-padded sample.
struct Plan {
    batch: usize,
    /// `[C, H, W]`.
    input: [usize; 3],
    padding: [usize; 2],
    stride: [usize; 2],
    /// `[H + 2 ph, W + 2 pw]`.
    padded: [usize; 2],
    /// `[H', W']`.
    output: [usize; 2],
    out_channels: usize,
    /// `L = 2^depth`.
    leaves_per_tree: usize,
    /// `leaf_offsets[o * L + j]`: where leaf `j` of tree `o` reads in the padded sample, at output position (0, 0).
    leaf_offsets: Vec<usize>,
    /// Positions per chunk (see [`chunk_positions`]).
    chunk: usize,
}

impl Plan {
    fn new(shape: ConvShape, depth: usize, leaves: &[[u32; 3]]) -> Result<Self> {
        if !(1..=MAX_TREE_DEPTH).contains(&depth) {
            return Err(Error::Input(format!("depth: expected 1..={MAX_TREE_DEPTH}, got {depth}")));
        }
        let output = shape.output_size()?;
        let [batch, c, h, w] = shape.input;
        let [kh, kw] = shape.kernel_size;
        let padded = [h + 2 * shape.padding[0], w + 2 * shape.padding[1]];
        let per_tree = 1usize << depth;
        if !leaves.len().is_multiple_of(per_tree) {
            return Err(Error::Input(format!(
                "leaves: expected O x 2^depth = O x {per_tree} rows [c, dy, dx], got {} (not a multiple of {per_tree})",
                leaves.len()
            )));
        }
        product("input", &[batch, c, h, w])?;
        product("output", &[batch, leaves.len() / per_tree, output[0], output[1]])?;
        let plane = product("padded input", &[padded[0], padded[1]])?;
        product("padded input", &[plane, c])?;
        let mut leaf_offsets = Vec::with_capacity(leaves.len());
        for (k, &[lc, dy, dx]) in leaves.iter().enumerate() {
            let (lc, dy, dx) = (lc as usize, dy as usize, dx as usize);
            if lc >= c || dy >= kh || dx >= kw {
                return Err(Error::Input(format!(
                    "leaves[{}, {}] = [{lc}, {dy}, {dx}]: expected [c, dy, dx] with c < C = {c}, dy < kh = {kh} and \
                     dx < kw = {kw}",
                    k / per_tree,
                    k % per_tree
                )));
            }
            leaf_offsets.push(lc * plane + dy * padded[1] + dx);
        }
        Ok(Plan {
            batch,
            input: [c, h, w],
            padding: shape.padding,
            stride: shape.stride,
            padded,
            output,
            out_channels: leaves.len() / per_tree,
            leaves_per_tree: per_tree,
            leaf_offsets,
            chunk: chunk_positions(depth),
        })
    }

    fn gates(&self) -> usize {
        self.leaves_per_tree - 1
    }

    /// Nodes of a tree, leaves included.
    fn nodes(&self) -> usize {
        2 * self.leaves_per_tree - 1
    }

    fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }

    fn sample_len(&self) -> usize {
        self.input.iter().product()
    }

    fn padded_len(&self) -> usize {
        self.input[0] * self.padded[0] * self.padded[1]
    }

    fn input_len(&self) -> Result<usize> {
        product("x", &[self.batch, self.sample_len()])
    }

    fn output_len(&self) -> Result<usize> {
        product("output", &[self.batch, self.out_channels, self.positions()])
    }

    /// Where every output position `p = y' * W' + x'` reads the padded sample, relative to a leaf's offset (once per
    /// call: a division per position costs as much as the tree).
    fn position_offsets(&self) -> Vec<usize> {
        let ([ho, wo], [sh, sw], wp) = (self.output, self.stride, self.padded[1]);
        (0..ho).flat_map(|y| (0..wo).map(move |x| y * sh * wp + x * sw)).collect()
    }

    /// Copies sample `x` (`[C, H, W]`) into the interior of `padded`, whose border stays 0.
    fn pad(&self, x: &[f32], padded: &mut [f32]) {
        let ([_, h, w], [ph, pw], [hp, wp]) = (self.input, self.padding, self.padded);
        for (src, dst) in x.chunks_exact(h * w).zip(padded.chunks_exact_mut(hp * wp)) {
            for (src, dst) in src.chunks_exact(w).zip(dst[ph * wp..].chunks_exact_mut(wp)) {
                dst[pw..pw + w].copy_from_slice(src);
            }
        }
    }

    /// The interior of `padded` into `x` (`[C, H, W]`): the input gradient, without the padding's.
    fn unpad(&self, padded: &[f32], x: &mut [f32]) {
        let ([_, h, w], [ph, pw], [hp, wp]) = (self.input, self.padding, self.padded);
        for (dst, src) in x.chunks_exact_mut(h * w).zip(padded.chunks_exact(hp * wp)) {
            for (dst, src) in dst.chunks_exact_mut(w).zip(src[ph * wp..].chunks_exact(wp)) {
                dst.copy_from_slice(&src[pw..pw + w]);
            }
        }
    }
}

/// Positions evaluated together: one row of that many values per tree node, about 16 KiB of nodes in all (a few
/// AVX-512 registers' worth per gate even for the deepest trees), a multiple of 16 lanes.
fn chunk_positions(depth: usize) -> usize {
    let nodes = (2usize << depth) - 1;
    (4096 / nodes / 16 * 16).clamp(16, 256)
}

/// What every task reads.
struct Ctx<'a> {
    plan: &'a Plan,
    x: &'a [f32],
    coef: &'a [[f32; 4]],
    /// Empty in the forward pass.
    grad_out: &'a [f32],
    /// [`Plan::position_offsets`].
    offsets: &'a [usize],
}

struct ForwardTask<'a> {
    sample: usize,
    first_channel: usize,
    /// The output planes `[first_channel..][..n]` of the sample.
    out: &'a mut [f32],
}

struct BackwardTask<'a> {
    samples: std::ops::Range<usize>,
    /// The input gradient of `samples`, when asked for.
    grad_x: Option<&'a mut [f32]>,
    /// This task's partial coefficient gradient, `[O, L - 1]`.
    grad_coef: &'a mut [[f32; 4]],
}

per_isa!(forward_task_isa => forward_task(task: ForwardTask<'_>, ctx: &Ctx<'_>));
per_isa!(backward_task_isa => backward_task(task: BackwardTask<'_>, ctx: &Ctx<'_>));

/// A chunk's tree nodes: row `k` (node `k`) is `rows[k * stride..][..n]`.
struct Nodes {
    rows: Vec<f32>,
    stride: usize,
}

impl Nodes {
    fn new(plan: &Plan) -> Self {
        Nodes { rows: vec![0.0; plan.nodes() * plan.chunk], stride: plan.chunk }
    }

    #[inline(always)]
    fn row(&self, k: usize, n: usize) -> &[f32] {
        &self.rows[k * self.stride..k * self.stride + n]
    }

    #[inline(always)]
    fn row_mut(&mut self, k: usize, n: usize) -> &mut [f32] {
        &mut self.rows[k * self.stride..k * self.stride + n]
    }

    /// Rows `i` and `i + 1` (read) and row `k > i + 1` (written).
    #[inline(always)]
    fn pair_and_row(&mut self, i: usize, k: usize, n: usize) -> (&[f32], &[f32], &mut [f32]) {
        let (low, high) = self.rows.split_at_mut(k * self.stride);
        let s = self.stride;
        (&low[i * s..i * s + n], &low[(i + 1) * s..(i + 1) * s + n], &mut high[..n])
    }

    /// Row `k` (read) and rows `i`, `i + 1` (written), `k > i + 1`.
    #[inline(always)]
    fn row_and_pair(&mut self, k: usize, i: usize, n: usize) -> (&[f32], &mut [f32], &mut [f32]) {
        let (low, high) = self.rows.split_at_mut(k * self.stride);
        let s = self.stride;
        let (a, b) = low[i * s..(i + 2) * s].split_at_mut(s);
        (&high[..n], &mut a[..n], &mut b[..n])
    }
}

/// The nodes of tree `o` (`leaf_offsets`, `coef`: its rows) at the `n = offsets.len()` positions of a chunk.
#[inline(always)]
fn eval_tree(padded: &[f32], leaf_offsets: &[usize], coef: &[[f32; 4]], offsets: &[usize], nodes: &mut Nodes) {
    let (n, leaves) = (offsets.len(), leaf_offsets.len());
    for (j, &leaf) in leaf_offsets.iter().enumerate() {
        for (v, &p) in nodes.row_mut(j, n).iter_mut().zip(offsets) {
            *v = padded[leaf + p];
        }
    }
    for (g, &[c0, c1, c2, c3]) in coef.iter().enumerate() {
        let (a, b, out) = nodes.pair_and_row(2 * g, leaves + g, n);
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = c0 + c1 * a + (c2 + c3 * a) * b;
        }
    }
}

/// The output planes of one sample's run of channels.
#[inline(always)]
fn forward_task(task: ForwardTask<'_>, ctx: &Ctx<'_>) {
    let plan = ctx.plan;
    let (l, gates, positions) = (plan.leaves_per_tree, plan.gates(), plan.positions());
    let mut padded = vec![0.0f32; plan.padded_len()];
    plan.pad(&ctx.x[task.sample * plan.sample_len()..][..plan.sample_len()], &mut padded);
    let mut nodes = Nodes::new(plan);
    for (k, out) in task.out.chunks_exact_mut(positions).enumerate() {
        let o = task.first_channel + k;
        let (leaf_offsets, coef) = (&plan.leaf_offsets[o * l..][..l], &ctx.coef[o * gates..][..gates]);
        for (offsets, out) in ctx.offsets.chunks(plan.chunk).zip(out.chunks_mut(plan.chunk)) {
            eval_tree(&padded, leaf_offsets, coef, offsets, &mut nodes);
            out.copy_from_slice(nodes.row(plan.nodes() - 1, out.len()));
        }
    }
}

/// The gradients of one run of samples: its input gradient and its partial coefficient gradient.
#[inline(always)]
fn backward_task(task: BackwardTask<'_>, ctx: &Ctx<'_>) {
    let plan = ctx.plan;
    let BackwardTask { samples, mut grad_x, grad_coef } = task;
    let (l, gates, positions, chunk) = (plan.leaves_per_tree, plan.gates(), plan.positions(), plan.chunk);
    let mut padded = vec![0.0f32; plan.padded_len()];
    let mut grad_padded = vec![0.0f32; if grad_x.is_some() { plan.padded_len() } else { 0 }];
    let (mut nodes, mut grads) = (Nodes::new(plan), Nodes::new(plan));
    let mut offsets = vec![0usize; chunk];
    grad_coef.fill([0.0; 4]);
    let first = samples.start;
    for sample in samples {
        plan.pad(&ctx.x[sample * plan.sample_len()..][..plan.sample_len()], &mut padded);
        grad_padded.fill(0.0);
        let tree = TreeGrad { padded: &padded, with_leaves: grad_x.is_some() };
        for o in 0..plan.out_channels {
            let g_plane = &ctx.grad_out[(sample * plan.out_channels + o) * positions..][..positions];
            let (leaf_offsets, coef) = (&plan.leaf_offsets[o * l..][..l], &ctx.coef[o * gates..][..gates]);
            let grad_coef = &mut grad_coef[o * gates..][..gates];
            // Gather the positions with a nonzero gradient into chunks: their offsets and, in the root's row of
            // `grads`, their gradients.
            let mut n = 0;
            for (p, &g) in g_plane.iter().enumerate() {
                if g == 0.0 {
                    continue;
                }
                offsets[n] = ctx.offsets[p];
                grads.row_mut(plan.nodes() - 1, chunk)[n] = g;
                n += 1;
                if n == chunk {
                    tree.backward(leaf_offsets, coef, &offsets, &mut nodes, &mut grads, grad_coef, &mut grad_padded);
                    n = 0;
                }
            }
            if n > 0 {
                tree.backward(leaf_offsets, coef, &offsets[..n], &mut nodes, &mut grads, grad_coef, &mut grad_padded);
            }
        }
        if let Some(grad_x) = grad_x.as_deref_mut() {
            plan.unpad(&grad_padded, &mut grad_x[(sample - first) * plan.sample_len()..][..plan.sample_len()]);
        }
    }
}

/// The backward pass of the trees of one sample.
struct TreeGrad<'a> {
    padded: &'a [f32],
    /// Whether the leaves' gradients are wanted (the input gradient).
    with_leaves: bool,
}

impl TreeGrad<'_> {
    /// Recomputes tree `o` at the chunk's `n = offsets.len()` positions, whose output gradients are in the root's row
    /// of `grads`, then adds its gates' coefficient gradients to `grad_coef` and, when wanted, its leaves' gradients
    /// to `grad_padded`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        leaf_offsets: &[usize],
        coef: &[[f32; 4]],
        offsets: &[usize],
        nodes: &mut Nodes,
        grads: &mut Nodes,
        grad_coef: &mut [[f32; 4]],
        grad_padded: &mut [f32],
    ) {
        let (n, leaves) = (offsets.len(), leaf_offsets.len());
        eval_tree(self.padded, leaf_offsets, coef, offsets, nodes);
        // From the root down: every node is read by exactly one gate, so its gradient is that gate's term alone.
        for (g, &[_, c1, c2, c3]) in coef.iter().enumerate().rev() {
            let (a, b) = (nodes.row(2 * g, n), nodes.row(2 * g + 1, n));
            let (gout, ga, gb) = grads.row_and_pair(leaves + g, 2 * g, n);
            let sums = batch_sums(gout, a, b, None);
            for (total, s) in grad_coef[g].iter_mut().zip(sums) {
                *total += s;
            }
            if 2 * g >= leaves || self.with_leaves {
                for ((((ga, gb), &go), &a), &b) in ga.iter_mut().zip(gb.iter_mut()).zip(gout).zip(a).zip(b) {
                    *ga = go * (c1 + c3 * b);
                    *gb = go * (c2 + c3 * a);
                }
            }
        }
        if self.with_leaves {
            for (j, &leaf) in leaf_offsets.iter().enumerate() {
                for (&g, &p) in grads.row(j, n).iter().zip(offsets) {
                    grad_padded[leaf + p] += g;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{with_threads, Threads};
    use bitlogic::SplitMix64;
    use std::num::NonZeroUsize;

    struct Case {
        shape: ConvShape,
        depth: usize,
        leaves: Vec<[u32; 3]>,
        coef: Vec<[f32; 4]>,
        x: Vec<f32>,
        g: Vec<f32>,
    }

    fn uniform(rng: &mut SplitMix64) -> f32 {
        (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn below(rng: &mut SplitMix64, n: usize) -> u32 {
        (rng.next_u64() % n as u64) as u32
    }

    /// A random case; `sparse` zeroes about 3 of 4 output gradients (as behind a 2 x 2 max pool).
    #[allow(clippy::too_many_arguments)]
    fn case(seed: u64, input: [usize; 4], kernel: usize, stride: usize, pad: usize, o: usize, depth: usize) -> Case {
        let mut rng = SplitMix64::new(seed);
        let shape = ConvShape { input, kernel_size: [kernel, kernel], stride: [stride, stride], padding: [pad, pad] };
        let [b, c, h, w] = input;
        let l = 1 << depth;
        let leaves =
            (0..o * l).map(|_| [below(&mut rng, c), below(&mut rng, kernel), below(&mut rng, kernel)]).collect();
        let coef = (0..o * (l - 1)).map(|_| std::array::from_fn(|_| 2.0 * uniform(&mut rng) - 1.0)).collect();
        let x = (0..b * c * h * w).map(|_| uniform(&mut rng)).collect();
        let [ho, wo] = shape.output_size().unwrap();
        let g =
            (0..b * o * ho * wo).map(|_| if below(&mut rng, 4) == 0 { uniform(&mut rng) - 0.5 } else { 0.0 }).collect();
        Case { shape, depth, leaves, coef, x, g }
    }

    /// Naive f64 reference, position by position with explicit bounds tests: (out, grad_x, grad_coef).
    fn reference(c: &Case) -> (Vec<f64>, Vec<f64>, Vec<[f64; 4]>) {
        let [b, ch, h, w] = c.shape.input;
        let ([kh, kw], [sh, sw], [ph, pw]) = (c.shape.kernel_size, c.shape.stride, c.shape.padding);
        let [ho, wo] = c.shape.output_size().unwrap();
        let l = 1 << c.depth;
        let o_count = c.leaves.len() / l;
        assert!(kh > 0 && kw > 0);
        let mut out = vec![0.0; b * o_count * ho * wo];
        let mut gx = vec![0.0; b * ch * h * w];
        let mut gc = vec![[0.0; 4]; c.coef.len()];
        let mut nodes = vec![0.0f64; 2 * l - 1];
        let mut grads = vec![0.0f64; 2 * l - 1];
        for s in 0..b {
            for o in 0..o_count {
                for yo in 0..ho {
                    for xo in 0..wo {
                        let index = |leaf: [u32; 3]| {
                            let y = (yo * sh + leaf[1] as usize).checked_sub(ph).filter(|&y| y < h)?;
                            let x = (xo * sw + leaf[2] as usize).checked_sub(pw).filter(|&x| x < w)?;
                            Some(((s * ch + leaf[0] as usize) * h + y) * w + x)
                        };
                        let tree = &c.leaves[o * l..(o + 1) * l];
                        for (node, &leaf) in nodes.iter_mut().zip(tree) {
                            *node = index(leaf).map_or(0.0, |i| f64::from(c.x[i]));
                        }
                        for g in 0..l - 1 {
                            let [c0, c1, c2, c3] = c.coef[o * (l - 1) + g].map(f64::from);
                            let (a, bb) = (nodes[2 * g], nodes[2 * g + 1]);
                            nodes[l + g] = c0 + c1 * a + c2 * bb + c3 * a * bb;
                        }
                        let at = ((s * o_count + o) * ho + yo) * wo + xo;
                        out[at] = nodes[2 * l - 2];
                        grads[2 * l - 2] = f64::from(c.g[at]);
                        for g in (0..l - 1).rev() {
                            let [_, c1, c2, c3] = c.coef[o * (l - 1) + g].map(f64::from);
                            let (a, bb, go) = (nodes[2 * g], nodes[2 * g + 1], grads[l + g]);
                            grads[2 * g] = go * (c1 + c3 * bb);
                            grads[2 * g + 1] = go * (c2 + c3 * a);
                            let row = &mut gc[o * (l - 1) + g];
                            for (k, t) in [go, go * a, go * bb, go * a * bb].into_iter().enumerate() {
                                row[k] += t;
                            }
                        }
                        for (&leaf, &g) in tree.iter().zip(&grads) {
                            if let Some(i) = index(leaf) {
                                gx[i] += g;
                            }
                        }
                    }
                }
            }
        }
        (out, gx, gc)
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((f64::from(g) - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}[{k}]: got {g}, want {w}");
        }
    }

    type Results = (Vec<f32>, Vec<f32>, Vec<[f32; 4]>, Vec<[f32; 4]>);

    fn run(c: &Case) -> Results {
        let [ho, wo] = c.shape.output_size().unwrap();
        let o = c.leaves.len() >> c.depth;
        let mut out = vec![f32::NAN; c.shape.input[0] * o * ho * wo];
        tree_conv_forward(&c.x, c.shape, c.depth, &c.leaves, &c.coef, &mut out).unwrap();
        let mut gx = vec![f32::NAN; c.x.len()];
        let mut gc = vec![[f32::NAN; 4]; c.coef.len()];
        tree_conv_backward(&c.x, c.shape, c.depth, &c.leaves, &c.coef, &c.g, Some(&mut gx), &mut gc).unwrap();
        let mut gc_only = vec![[f32::NAN; 4]; c.coef.len()];
        tree_conv_backward(&c.x, c.shape, c.depth, &c.leaves, &c.coef, &c.g, None, &mut gc_only).unwrap();
        (out, gx, gc, gc_only)
    }

    fn check(c: &Case) {
        let (out, gx, gc, gc_only) = run(c);
        let (want_out, want_gx, want_gc) = reference(c);
        assert_close("out", &out, &want_out);
        assert_close("grad_x", &gx, &want_gx);
        let flat = |rows: &[[f32; 4]]| rows.iter().flatten().copied().collect::<Vec<_>>();
        assert_close("grad_coef", &flat(&gc), &want_gc.iter().flatten().copied().collect::<Vec<_>>());
        assert_eq!(gc, gc_only, "the coefficient gradient is the same bits with or without the input gradient");
    }

    #[test]
    fn matches_the_naive_reference() {
        let mut seed = 0;
        for &(input, kernel, stride, pad) in &[
            ([1, 1, 1, 1], 1, 1, 0),
            ([2, 3, 5, 7], 3, 1, 1),
            ([3, 2, 9, 6], 3, 2, 0),
            ([1, 4, 7, 7], 2, 2, 2),
            ([2, 5, 4, 3], 5, 1, 2),
            ([5, 3, 11, 13], 3, 2, 1),
        ] {
            for depth in 1..=4 {
                seed += 1;
                check(&case(seed, input, kernel, stride, pad, 3, depth));
            }
        }
        check(&case(99, [2, 2, 3, 3], 2, 1, 1, 2, MAX_TREE_DEPTH)); // chunks of 16 positions
    }

    #[test]
    fn dense_gradients_and_chunk_boundaries() {
        let mut c = case(5, [2, 3, 17, 19], 3, 1, 1, 2, 2); // 323 positions: chunks of 256 and 67
        let mut rng = SplitMix64::new(6);
        c.g.iter_mut().for_each(|g| *g = uniform(&mut rng) - 0.5);
        check(&c);
        c.g.fill(0.0);
        let (_, gx, gc, _) = run(&c);
        assert!(gx.iter().all(|&v| v == 0.0) && gc.iter().flatten().all(|&v| v == 0.0), "zero gradient, zero result");
    }

    #[test]
    fn zero_gradient_positions_are_skipped() {
        // Input value 1 at (0, 0) read only by output position (0, 0) of a 1 x 1 kernel: with its gradient 0 and an
        // infinite coefficient, computing it would put NaN (0 x inf) into the coefficient gradient.
        let shape = ConvShape { input: [1, 1, 2, 2], kernel_size: [1, 1], stride: [1, 1], padding: [0, 0] };
        let x = [1.0, 0.0, 0.0, 0.0];
        let coef = [[0.0, f32::INFINITY, 0.0, 0.0]];
        let g = [0.0, 1.0, 1.0, 1.0];
        let (mut gx, mut gc) = ([f32::NAN; 4], [[f32::NAN; 4]]);
        tree_conv_backward(&x, shape, 1, &[[0, 0, 0], [0, 0, 0]], &coef, &g, Some(&mut gx), &mut gc).unwrap();
        assert_eq!(gc, [[3.0, 0.0, 0.0, 0.0]]);
        assert_eq!(gx, [0.0, f32::INFINITY, f32::INFINITY, f32::INFINITY]);
    }

    #[test]
    fn every_thread_setting_and_isa_gives_the_same_bits() {
        let c = case(7, [9, 4, 12, 12], 3, 1, 1, 16, 3); // several tasks in both passes
        let mut want = None;
        let settings = [1, 2, 3, 8].map(|n| Threads::AtMost(NonZeroUsize::new(n).unwrap()));
        for threads in settings.into_iter().chain([Threads::RayonPool]) {
            let got = with_threads(threads, || run(&c));
            match &want {
                None => want = Some(got),
                Some(w) => assert!(*w == got, "{threads:?} differs from one thread"),
            }
        }
        let plan = Plan::new(c.shape, c.depth, &c.leaves).unwrap();
        for isa in Isa::supported() {
            let offsets = plan.position_offsets();
            let ctx = Ctx { plan: &plan, x: &c.x, coef: &c.coef, grad_out: &c.g, offsets: &offsets };
            let mut out = vec![0.0; want.as_ref().unwrap().0.len()];
            let per = out.len() / c.shape.input[0];
            for (sample, out) in out.chunks_mut(per).enumerate() {
                forward_task_isa(isa, ForwardTask { sample, first_channel: 0, out }, &ctx);
            }
            assert!(out == want.as_ref().unwrap().0, "{} differs", isa.name());
        }
        check(&c);
    }

    fn message(result: Result<()>) -> String {
        match result {
            Err(Error::Input(m)) => m,
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_arguments() {
        let shape = ConvShape { input: [1, 2, 3, 3], kernel_size: [3, 3], stride: [1, 1], padding: [0, 0] };
        let leaves = [[0, 0, 0], [1, 2, 2]];
        let (x, coef, mut out) = ([0.5f32; 18], [[0.0f32; 4]], [f32::NAN; 1]);
        let fwd = |shape, depth, leaves: &[[u32; 3]], x: &[f32], coef: &[[f32; 4]], out: &mut [f32]| {
            message(tree_conv_forward(x, shape, depth, leaves, coef, out))
        };
        let m = fwd(shape, 0, &leaves, &x, &coef, &mut out);
        assert!(m.contains("depth: expected 1..=8, got 0"), "{m}");
        let m = fwd(shape, 9, &leaves, &x, &coef, &mut out);
        assert!(m.contains("got 9"), "{m}");
        let m = fwd(shape, 2, &leaves, &x, &coef, &mut out);
        assert!(m.contains("leaves: expected O x 2^depth = O x 4"), "{m}");
        let m = fwd(shape, 1, &[[0, 0, 0], [2, 0, 0]], &x, &coef, &mut out);
        assert!(m.contains("leaves[0, 1] = [2, 0, 0]") && m.contains("c < C = 2"), "{m}");
        let m = fwd(shape, 1, &[[0, 0, 0], [0, 0, 3]], &x, &coef, &mut out);
        assert!(m.contains("dx < kw = 3"), "{m}");
        let m = fwd(ConvShape { kernel_size: [4, 3], ..shape }, 1, &leaves, &x, &coef, &mut out);
        assert!(m.contains("kernel_size: expected at most the padded input height 3 + 2 x 0 = 3"), "{m}");
        let m = fwd(ConvShape { stride: [1, 0], ..shape }, 1, &leaves, &x, &coef, &mut out);
        assert!(m.contains("stride 0"), "{m}");
        let m = fwd(shape, 1, &leaves, &x[..17], &coef, &mut out);
        assert!(m.contains("x: expected 18"), "{m}");
        let m = fwd(shape, 1, &leaves, &x, &[], &mut out);
        assert!(m.contains("coef: expected 1"), "{m}");
        let m = fwd(shape, 1, &leaves, &x, &coef, &mut []);
        assert!(m.contains("out: expected 1"), "{m}");
        let m = fwd(ConvShape { input: [usize::MAX, 2, 3, 3], ..shape }, 1, &leaves, &x, &coef, &mut out);
        assert!(m.contains("overflow"), "{m}");
        assert!(out[0].is_nan(), "nothing written on an error");

        let (mut gx, mut gc) = ([0.0f32; 18], [[0.0f32; 4]]);
        let m = message(tree_conv_backward(&x, shape, 1, &leaves, &coef, &[], Some(&mut gx), &mut gc));
        assert!(m.contains("grad_out: expected 1"), "{m}");
        let m = message(tree_conv_backward(&x, shape, 1, &leaves, &coef, &[1.0], Some(&mut gx[..3]), &mut gc));
        assert!(m.contains("grad_x: expected 18"), "{m}");
        let m = message(tree_conv_backward(&x, shape, 1, &leaves, &coef, &[1.0], None, &mut []));
        assert!(m.contains("grad_coef: expected 1"), "{m}");
    }

    #[test]
    fn empty_batch_and_no_channels() {
        let shape = ConvShape { input: [0, 2, 3, 3], kernel_size: [3, 3], stride: [1, 1], padding: [1, 1] };
        let leaves = [[0, 0, 0], [1, 2, 2]];
        tree_conv_forward(&[], shape, 1, &leaves, &[[0.0; 4]], &mut []).unwrap();
        let mut gc = [[f32::NAN; 4]];
        tree_conv_backward(&[], shape, 1, &leaves, &[[0.0; 4]], &[], Some(&mut []), &mut gc).unwrap();
        assert_eq!(gc, [[0.0; 4]]);
        let shape = ConvShape { input: [2, 2, 3, 3], ..shape };
        let mut gx = [f32::NAN; 36];
        tree_conv_backward(&[0.5; 36], shape, 1, &[], &[], &[], Some(&mut gx), &mut []).unwrap();
        assert_eq!(gx, [0.0; 36]);
    }
}
