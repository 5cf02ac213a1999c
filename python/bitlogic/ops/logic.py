"""Relaxed two-input gates ``out = c0 + c1*a + c2*b + c3*a*b``: the gate algebra and where a layer's gates run.

Each of the 16 two-input boolean functions, relaxed to real inputs in [0, 1], is a bilinear polynomial with four
coefficients (``a AND b = a*b``, ``a XOR b = a + b - 2ab``), and so is any mixture of them. Three implementations
of a layer of such gates give the same results up to float rounding:

- :func:`gates_torch`, plain tensor operations, for any device and dtype (autograd derives the backward pass);
- :class:`FusedGates`, the fused Rust kernels of ``bitlogic._native`` (one pass forward, one backward), for float32
  on the CPU, where the plain version is limited by the memory traffic of its ~18 elementwise passes;
- :func:`logic_gates`, the CUDA kernels of ``cuda/logic_layer.cu`` (launched by :mod:`bitlogic.gpu.logic`), for
  float32 and bfloat16 on a GPU (see :mod:`bitlogic.gpu` for when they are used).

:func:`gates` is the rule that picks one. The kernels work on feature-major activations (``[features, batch]``,
contiguous over the batch) and return a ``[batch, N]`` *view* of a feature-major ``[N, batch]`` result, so a stack
of layers hands activations (and gradients) from one kernel to the next without a transpose.

Learned wiring's candidate mix (:func:`mix_candidates`: each gate input the weighted sum of its ``K`` candidate
wires) has the same three: :class:`MixCandidates` in torch (the reference), :class:`FusedMix` on the fused Rust
kernels for float32 on the CPU (no ``[R*K, B]`` copy of the candidates' values; a one-hot forward copies one row),
and :class:`KernelMix` on the CUDA kernels of ``cuda/candidates.cu``. :mod:`bitlogic.ops.lut`'s pooled mappings use
the same primitives.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

# The op-code convention is the core's (NUM_OPS two-input functions, OP_TABLES their truth tables), read here so
# that training, the engine and the file format cannot disagree on what an op code means.
from bitlogic._native import (
    NUM_OPS,
    OP_TABLES,
    candidate_backward,
    candidate_forward,
    gate_backward,
    gate_backward_coef,
    gate_forward,
    learned_gate_backward,
    learned_gate_forward,
)
from bitlogic.gpu import candidates as mix_kernels
from bitlogic.gpu import logic as kernels
from bitlogic.gpu import use_kernels
from bitlogic.gpu._kernels import Backend, backend_for
from bitlogic.ops._threads import kernel_threads
from bitlogic.ops.estimators import ESTIMATORS, gumbel_noise, straight_through

#: Op code of the pass-through gate ``A`` (difflogic's order), the target of residual initialization.
PASS_A = 3


def op_truth_table(op: int) -> tuple[int, int, int, int]:
    """Outputs of gate ``op`` for (a, b) = (0,0), (0,1), (1,0), (1,1): the core's ``OP_TABLES[op]``, which are the
    op code's bits, most significant first (docs/FORMAT.md)."""
    if not 0 <= op < NUM_OPS:
        raise ValueError(f"op code must be in 0..{NUM_OPS - 1}, got {op}")
    return OP_TABLES[op]


def corner_coefficients(p: Tensor) -> Tensor:
    """Coefficients of the bilinear gate through the corner values ``p[..., (f00, f01, f10, f11)]``."""
    f00, f01, f10, f11 = p.unbind(-1)
    return torch.stack([f00, f10 - f00, f01 - f00, f11 - f10 - f01 + f00], dim=-1)


#: ``[16, 4]``: row ``op`` holds (c0, c1, c2, c3) with gate(a, b) = c0 + c1*a + c2*b + c3*a*b; a softmax over the 16
#: ops times this matrix gives the mixture's coefficients.
GATE_COEFFICIENTS = corner_coefficients(
    torch.tensor([op_truth_table(op) for op in range(NUM_OPS)], dtype=torch.float32)
)


class ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``factor`` (difflogic's grad_factor for deep stacks)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """``x``, with its gradient multiplied by ``factor`` on the way back."""
    out: Tensor = ScaleGrad.apply(x, factor)
    return out


def gates_torch(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> Tensor:
    """``[B, N]`` outputs ``c0 + c1*a + c2*b + c3*a*b`` with ``a = x[:, ia]``, ``b = x[:, ib]``, ``c = coef[n]``.

    ``x`` is ``[B, in_dim]``, ``ia`` and ``ib`` are ``[N]`` wire indices and ``coef`` is ``[N, 4]``; any device and
    dtype, differentiable by autograd.
    """
    a = x[:, ia]
    b = x[:, ib]
    c0, c1, c2, c3 = coef.unbind(1)
    return c0 + c1 * a + (c2 + c3 * a) * b


def _wires(w: Tensor) -> npt.NDArray[np.int64]:
    return w.detach().to(device="cpu", dtype=torch.int64).numpy()


class FusedGates(torch.autograd.Function):
    """:func:`gates_torch` for float32 CPU tensors, computed by the fused kernels of ``bitlogic._native``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> Tensor:
        # x.t() of a [B, in_dim] view of a feature-major [in_dim, B] tensor (what this function returns) is already
        # contiguous, so .contiguous() copies only data fed in sample-major order (the first layer).
        xt = x.detach().t().contiguous()
        ia_np, ib_np = _wires(ia), _wires(ib)
        coef = coef.detach().contiguous()
        out = gate_forward(xt.numpy(), ia_np, ib_np, coef.numpy(), threads=kernel_threads())
        ctx.save_for_backward(xt, coef)
        ctx.wires = (ia_np, ib_np)
        return torch.from_numpy(out).t()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, Tensor | None]:
        xt, coef = ctx.saved_tensors
        ia_np, ib_np = ctx.wires
        g = grad.t().contiguous().numpy()  # feature-major [N, B]; no copy when it already is
        need_x, _, _, need_coef = ctx.needs_input_grad
        if need_x:
            grad_x, grad_coef = gate_backward(xt.numpy(), ia_np, ib_np, coef.numpy(), g, threads=kernel_threads())
            return torch.from_numpy(grad_x).t(), None, None, torch.from_numpy(grad_coef) if need_coef else None
        if need_coef:
            grad_coef = gate_backward_coef(xt.numpy(), ia_np, ib_np, g, threads=kernel_threads())
            return None, None, None, torch.from_numpy(grad_coef)
        return None, None, None, None


class KernelGates(torch.autograd.Function):
    """:func:`gates_torch` on a GPU, computed by the kernels of ``cuda/logic_layer.cu`` through ``backend``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor, backend: Backend) -> Tensor:
        xt = x.detach().t().contiguous()  # no copy for the output of a previous layer (already feature-major)
        wires = kernels.wiring(ia, ib, x.shape[1])
        c = coef.detach().to(kernels.compute_dtype(x.dtype)).contiguous()
        out = kernels.forward(xt, wires, c, backend)
        ctx.save_for_backward(xt, c)
        ctx.wires, ctx.backend, ctx.coef_dtype = wires, backend, coef.dtype
        return out.t()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, Tensor | None, None]:
        xt, c = ctx.saved_tensors
        g = grad.t().to(xt.dtype).contiguous()  # feature-major [N, B]; no copy when it already is
        need_x, _, _, need_coef, _ = ctx.needs_input_grad
        grad_x = kernels.backward_input(xt, ctx.wires, c, g, ctx.backend).t() if need_x else None
        grad_coef = kernels.backward_coef(xt, ctx.wires, g, ctx.backend).to(ctx.coef_dtype) if need_coef else None
        return grad_x, None, None, grad_coef, None


def logic_gates(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor, backend: Backend | None = None) -> Tensor:
    """:func:`gates_torch` on the CUDA kernels, differentiable in ``x`` and ``coef``.

    ``x`` is float32, bfloat16 or float64 (the latter for gradcheck); ``backend`` defaults to the kernels of ``x``'s
    GPU. Raises ``ValueError`` for wires outside the ``x.shape[1]`` inputs, which the kernels would read out of
    bounds.
    """
    out: Tensor = KernelGates.apply(x, ia, ib, coef, backend or backend_for(x.device))
    return out


#: How a layer turns the logits of a choice (of a gate among the 16, or of a wire among a pool of candidates) into
#: weights while training: ``"soft"`` the softmax itself; ``"hard"`` the one-hot of the argmax forward with the
#: softmax's gradient backward (straight-through); ``"gumbel"`` the one-hot of the argmax of logits plus Gumbel noise
#: forward with the gradient of the tempered softmax of the noisy logits backward (Gumbel-softmax, straight-through).
def choice_weights(logits: Tensor, estimator: str, tau: float = 1.0) -> Tensor:
    """Training weights of a choice among ``logits.shape[-1]`` options, by ``estimator`` (see :data:`ESTIMATORS`).

    The weights sum to one over the last dimension; with ``"hard"`` and ``"gumbel"`` they are exactly one-hot in the
    forward pass. The Gumbel noise is drawn once per call, one sample per choice (per gate or wire, not per sample
    of the batch, whose gates share their coefficients).
    """
    if estimator == "soft":
        return torch.softmax(logits, dim=-1)
    if estimator == "hard":
        soft = torch.softmax(logits, dim=-1)
        chosen = logits.detach().argmax(dim=-1, keepdim=True)
    elif estimator == "gumbel":
        noisy = logits + gumbel_noise(logits)
        soft = torch.softmax(noisy / tau, dim=-1)
        chosen = noisy.detach().argmax(dim=-1, keepdim=True)
    else:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {estimator!r}")
    hard = torch.zeros_like(soft).scatter_(-1, chosen, 1.0)
    return straight_through(hard, soft)


def corner_weights(logits: Tensor, estimator: str, tau: float = 1.0) -> Tensor:
    """Training values of the inputwise gates' corners ``sigmoid(logits)``, by ``estimator``.

    Each corner is a choice between 0 and 1 with logits ``(w, 0)``, so the estimators are those of
    :func:`choice_weights` for two options: ``"hard"`` is ``w > 0`` forward and sigmoid's gradient backward;
    ``"gumbel"`` adds the difference of two Gumbel samples (a logistic sample) to ``w``, forwards ``w + noise > 0``
    and takes the gradient of ``sigmoid((w + noise) / tau)``.
    """
    if estimator == "soft":
        return torch.sigmoid(logits)
    if estimator == "hard":
        soft = torch.sigmoid(logits)
        noisy = logits.detach()
    elif estimator == "gumbel":
        noisy = logits + gumbel_noise(logits) - gumbel_noise(logits)
        soft = torch.sigmoid(noisy / tau)
        noisy = noisy.detach()
    else:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {estimator!r}")
    return straight_through((noisy > 0).to(soft.dtype), soft)


class _Scratch(threading.local):
    """One reusable float buffer per thread for the candidates' values, which :class:`MixCandidates` needs only
    while one of its passes runs. A fresh tensor of that size (tens of MB) is a fresh mapping from the system
    allocator on the CPU, and faulting its pages in costs ten times the gather that fills it."""

    buffer: Tensor | None = None

    def get(self, numel: int, like: Tensor) -> Tensor:
        b = self.buffer
        if b is None or b.numel() < numel or b.dtype != like.dtype:
            b = self.buffer = torch.empty(numel, dtype=like.dtype)
        return b[:numel]


_scratch = _Scratch()


def _values(xt: Tensor, rows: int, scratch: bool) -> Tensor | None:
    """The thread's scratch buffer as ``[rows, B]`` (its contents live until the next call), or None."""
    return _scratch.get(rows * xt.shape[1], xt).view(rows, xt.shape[1]) if scratch else None


def _gather(xt: Tensor, flat: Tensor, scratch: bool) -> Tensor:
    """``xt[flat]``, into the thread's scratch buffer when ``scratch``."""
    out = _values(xt, flat.numel(), scratch)
    return xt.index_select(0, flat) if out is None else torch.index_select(xt, 0, flat, out=out)


class MixCandidates(torch.autograd.Function):
    """The weighted candidate sum of :func:`mix_candidates`; differentiable in ``xt`` and ``weights``.

    The gathered values ``[C*N, K, B]`` are not kept for the backward pass: it gathers them again (as cheap as
    reading a saved copy), so on the CPU both passes gather into one reused scratch buffer.
    """

    @staticmethod
    def forward(ctx: Any, xt: Tensor, flat: Tensor, weights: Tensor) -> Tensor:
        rows, k = weights.shape
        scratch = xt.device.type == "cpu"
        values = _gather(xt, flat, scratch).view(rows, k, -1)
        mixed = torch.bmm(weights.view(rows, 1, k), values).view(rows, -1)
        ctx.save_for_backward(xt, flat, weights)
        ctx.scratch = scratch
        return mixed

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None]:
        xt, flat, weights = ctx.saved_tensors
        rows, k = weights.shape
        need_x, _, need_w = ctx.needs_input_grad
        grad = grad.contiguous()
        grad_w = grad_x = None
        if need_w:
            # Multiplied in place and summed over the contiguous batch: faster than 16 000 tiny matrix products.
            values = _gather(xt, flat, ctx.scratch).view(rows, k, -1)
            grad_w = values.mul_(grad.unsqueeze(1)).sum(2)
        if need_x:
            out = _values(xt, rows * k, ctx.scratch)
            product = weights.unsqueeze(2) * grad.unsqueeze(1) if out is None else torch.mul(
                weights.unsqueeze(2), grad.unsqueeze(1), out=out.view(rows, k, -1))
            per_value = product.view(rows * k, -1)
            grad_x = torch.zeros_like(xt).index_add_(0, flat, per_value)
        return grad_x, None, grad_w


class FusedMix(torch.autograd.Function):
    """The candidate mix ``out[r] = sum_k w[r, k] * xt[pool[r, k]]`` (feature-major ``[R, B]``) on the fused kernels
    of ``bitlogic._native``, for float32 CPU tensors; differentiable in ``xt`` and ``w``.

    The backward pass weights the input gradient by ``v`` (``[R, K]``, not differentiated): ``w`` itself when ``v``
    is None (:class:`MixCandidates`'s gradients), the soft weights that a one-hot forward ``w`` stands for otherwise
    (a straight-through estimator). The kernels read the candidates in place: no ``[R*K, B]`` copy of their values
    in either pass, and a one-hot forward costs one row copy per choice."""

    @staticmethod
    def forward(ctx: Any, xt: Tensor, pool: Tensor, w: Tensor, v: Tensor | None) -> Tensor:
        xt = xt.detach().contiguous()
        pool_np = _wires(pool)
        w = w.detach().contiguous()
        out = candidate_forward(xt.numpy(), pool_np, w.numpy(), threads=kernel_threads())
        ctx.save_for_backward(xt, w if v is None else v.detach().to(torch.float32).contiguous())
        ctx.pool = pool_np
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, None]:
        xt, v = ctx.saved_tensors
        need_x, _, need_w, _ = ctx.needs_input_grad
        if not (need_x or need_w):
            return None, None, None, None
        grad_w, grad_x = fused_mix_grads(xt, ctx.pool, v, grad, need_x)
        return grad_x, None, grad_w if need_w else None, None


def fused_mix_grads(
    xt: Tensor, pool: Tensor | npt.NDArray[np.int64], v: Tensor, grad: Tensor, need_x: bool
) -> tuple[Tensor, Tensor | None]:
    """The gradients of :class:`FusedMix` given ``grad`` (``[R, B]``): ``grad_w`` ``[R, K]`` (the dot product of
    each choice's gradient row with each of its candidates) and, when ``need_x``, ``grad_x`` ``[in_dim, B]`` with the
    gradient rows spread to the candidates by ``v``. float32 CPU tensors."""
    pool_np = pool if isinstance(pool, np.ndarray) else _wires(pool)
    v_np = v.detach().to(torch.float32).contiguous().numpy()
    g = grad.contiguous().numpy()
    grad_w, grad_x = candidate_backward(xt.detach().contiguous().numpy(), pool_np, v_np, g, need_x,
                                        threads=kernel_threads())
    return torch.from_numpy(grad_w), (torch.from_numpy(grad_x) if grad_x is not None else None)


def fused_mix(xt: Tensor, pool: Tensor, w: Tensor, v: Tensor | None = None) -> Tensor:
    """:class:`FusedMix`: feature-major ``[R, B]`` mix of the ``[R, K]`` ``pool`` rows of ``xt`` ``[in_dim, B]``
    weighted by ``w``, the input gradient weighted by ``v`` (default ``w``). float32 CPU tensors."""
    out: Tensor = FusedMix.apply(xt, pool, w, v)
    return out


def fused_mix_applies(x: Tensor, *others: Tensor) -> bool:
    """Whether :class:`FusedMix` takes these tensors: float32 on the CPU (indices: integers on the CPU)."""
    return x.dtype == torch.float32 and x.device.type == "cpu" and all(
        t.device.type == "cpu" and (t.dtype == torch.float32 or not t.dtype.is_floating_point) for t in others)


class KernelMix(torch.autograd.Function):
    """The candidate mix ``out[r] = sum_k w[r, k] * xt[pool[r, k]]`` (feature-major ``[R, B]``) on a GPU, computed by
    the kernels of ``cuda/candidates.cu`` through ``backend``; differentiable in ``xt`` and ``w``. float32, bfloat16
    or float64 (for gradcheck) ``xt``, the weights and sums in float32 (float64 for float64). The backward pass
    weights the input gradient by ``v`` (``[R, K]``, not differentiated; default ``w``), the soft weights a one-hot
    forward ``w`` stands for under a straight-through estimator. Deterministic: no atomics."""

    @staticmethod
    def forward(ctx: Any, xt: Tensor, pool: Tensor, w: Tensor, v: Tensor | None, backend: Backend) -> Tensor:
        xt = xt.detach().contiguous()
        candidates = mix_kernels.pool(pool.reshape(-1), xt.shape[0])  # cached per pool buffer, with its index
        dtype = mix_kernels.compute_dtype(xt.dtype)
        wc = w.detach().to(dtype).contiguous()
        out = mix_kernels.forward(xt, candidates, wc, backend)
        ctx.save_for_backward(xt, wc if v is None else v.detach().to(dtype).contiguous())
        ctx.candidates, ctx.backend, ctx.w_dtype, ctx.k = candidates, backend, w.dtype, pool.shape[1]
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, None, None]:
        xt, v = ctx.saved_tensors
        need_x, _, need_w, _, _ = ctx.needs_input_grad
        g = grad.to(xt.dtype).contiguous()
        grad_x = mix_kernels.backward_input(xt, ctx.candidates, v, g, ctx.backend) if need_x else None
        grad_w = (mix_kernels.backward_weights(xt, ctx.candidates, g, ctx.k, ctx.backend).to(ctx.w_dtype)
                  if need_w else None)
        return grad_x, None, grad_w, None, None


def kernel_mix(xt: Tensor, pool: Tensor, w: Tensor, v: Tensor | None = None, backend: Backend | None = None) -> Tensor:
    """:class:`KernelMix`: feature-major ``[R, B]`` mix of the ``[R, K]`` ``pool`` rows of ``xt`` ``[in_dim, B]``
    weighted by ``w``, the input gradient weighted by ``v`` (default ``w``); ``backend`` defaults to the kernels of
    ``xt``'s GPU. Raises ``ValueError`` for candidates outside the ``in_dim`` inputs."""
    out: Tensor = KernelMix.apply(xt, pool, w, v, backend or backend_for(xt.device))
    return out


def kernel_mix_grads(
    xt: Tensor, pool: Tensor, v: Tensor, grad: Tensor, need_x: bool, backend: Backend | None = None
) -> tuple[Tensor, Tensor | None]:
    """The gradients of :class:`KernelMix` given ``grad`` (``[R, B]``), for autograd functions whose forward pass is
    not a mix (a LUT's chosen candidate): ``grad_w`` ``[R, K]`` (float32; float64 for float64 ``xt``) and, when
    ``need_x``, ``grad_x`` ``[in_dim, B]`` with the gradient rows spread to the candidates by ``v``."""
    backend = backend or backend_for(xt.device)
    xt = xt.detach().contiguous()
    candidates = mix_kernels.pool(pool.reshape(-1), xt.shape[0])
    g = grad.detach().to(xt.dtype).contiguous()
    grad_w = mix_kernels.backward_weights(xt, candidates, g, pool.shape[1], backend)
    if not need_x:
        return grad_w, None
    vc = v.detach().to(mix_kernels.compute_dtype(xt.dtype)).contiguous()
    return grad_w, mix_kernels.backward_input(xt, candidates, vc, g, backend)


def kernel_mix_applies(x: Tensor, pool: Tensor, *others: Tensor) -> bool:
    """Whether :func:`kernel_mix` and :func:`kernel_mix_grads` take these tensors and the CUDA kernels can start on
    their GPU (see :func:`bitlogic.gpu.use_kernels`): a 2-D float32, bfloat16 or float64 ``x`` (either layout), an
    integer ``pool`` and floating ``others`` on that GPU."""
    return mix_kernels.supports(x, pool, *others) and use_kernels(x.device)


class FusedLearnedGates(torch.autograd.Function):
    """A gate layer with learned wiring whose input needs no gradient (the first layer of a model), in one kernel
    per pass: :func:`mix_candidates` then :func:`gates` on the mixed inputs, the same bits, without the ``[2N, B]``
    mixed inputs and their gradient in memory. float32 CPU tensors; differentiable in ``w`` and ``coef``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, pool: Tensor, w: Tensor, coef: Tensor) -> Tensor:
        xt = x.detach().t().contiguous()
        pool_np = _wires(pool)
        w, coef = w.detach().contiguous(), coef.detach().contiguous()
        out = learned_gate_forward(xt.numpy(), pool_np, w.numpy(), coef.numpy(), threads=kernel_threads())
        ctx.save_for_backward(xt, w, coef)
        ctx.pool = pool_np
        return torch.from_numpy(out).t()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor, Tensor]:
        xt, w, coef = ctx.saved_tensors
        g = grad.t().contiguous().numpy()  # feature-major [N, B]
        grad_w, grad_coef = learned_gate_backward(xt.numpy(), ctx.pool, w.numpy(), coef.numpy(), g,
                                                  threads=kernel_threads())
        return None, None, torch.from_numpy(grad_w), torch.from_numpy(grad_coef)


def learned_gates(x: Tensor, candidates: Tensor, weights: Tensor, coef: Tensor) -> Tensor | None:
    """``[B, N]``: the gates over the candidate mix of ``x`` (``gates(mix_candidates(...))``, see
    :class:`FusedLearnedGates`) when the fused kernel takes the tensors (float32 on the CPU, ``x`` needing no
    gradient), else None (the caller composes the two)."""
    c, n, k = candidates.shape
    w = weights.reshape(c * n, k)
    if c != 2 or x.requires_grad or x.dim() != 2 or not fused_mix_applies(x, candidates, w, coef):
        return None
    out: Tensor = FusedLearnedGates.apply(x, candidates.reshape(c * n, k), w, coef)
    return out


def mix_candidates(x: Tensor, candidates: Tensor, weights: Tensor) -> Tensor:
    """Feature-major ``[C, N, B]``: the ``weights``-weighted sum of the candidate wires of every gate input.

    ``x`` is ``[B, in_dim]``, ``candidates`` int64 ``[C, N, K]`` wire indices and ``weights`` ``[C, N, K]``; the
    input is read transposed (no copy of ``x`` when it is a view of a feature-major tensor, as the kernels return)
    and the result is contiguous over the batch, as the gate kernels read it. float32 CPU tensors go to
    :class:`FusedMix`, GPU tensors the CUDA kernels take to :class:`KernelMix`; others to :class:`MixCandidates`
    (one gather of the ``[C*N*K, B]`` candidate values and one batched weighted sum), the reference, with the same
    results and gradients up to float rounding.
    """
    c, n, k = candidates.shape
    xt = x.t().contiguous()  # [in_dim, B]
    w = weights.reshape(c * n, k).to(x.dtype).contiguous()
    if fused_mix_applies(x, candidates, w):
        return fused_mix(xt, candidates.reshape(c * n, k), w).view(c, n, -1)
    if mix_kernels.supports(xt, candidates, w) and use_kernels(x.device):
        return kernel_mix(xt, candidates.reshape(c * n, k), w).view(c, n, -1)
    mixed: Tensor = MixCandidates.apply(xt, candidates.reshape(-1), w)
    return mixed.view(c, n, -1)


def _fused_applies(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> bool:
    return (
        x.dim() == 2
        and x.dtype == torch.float32
        and coef.dtype == torch.float32
        and x.device.type == "cpu"
        and coef.device.type == "cpu"
        and ia.device.type == "cpu"
        and ib.device.type == "cpu"
        and not ia.dtype.is_floating_point
        and not ib.dtype.is_floating_point
    )


def gates(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> Tensor:
    """``[B, N]`` outputs of the relaxed gates ``c0 + c1*a + c2*b + c3*a*b`` (see :func:`gates_torch`).

    Runs the fused Rust kernels for float32 tensors on the CPU, the CUDA kernels on a GPU, and :func:`gates_torch`
    otherwise; all give the same results and gradients up to float rounding. The kernels' results are transposed
    views of feature-major tensors.
    """
    if _fused_applies(x, ia, ib, coef):
        out: Tensor = FusedGates.apply(x, ia, ib, coef)
        return out
    if kernels.supports(x, ia, ib, coef) and use_kernels(x.device):
        return logic_gates(x, ia, ib, coef)
    return gates_torch(x, ia, ib, coef)


__all__ = [
    "GATE_COEFFICIENTS",
    "NUM_OPS",
    "PASS_A",
    "FusedGates",
    "FusedLearnedGates",
    "FusedMix",
    "KernelGates",
    "KernelMix",
    "MixCandidates",
    "ScaleGrad",
    "choice_weights",
    "corner_coefficients",
    "corner_weights",
    "fused_mix",
    "fused_mix_applies",
    "fused_mix_grads",
    "gates",
    "gates_torch",
    "kernel_mix",
    "kernel_mix_applies",
    "kernel_mix_grads",
    "learned_gates",
    "logic_gates",
    "mix_candidates",
    "op_truth_table",
    "scale_grad",
]
