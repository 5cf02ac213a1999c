"""Lookup tables trained with the Extended Finite Difference (Differentiable Weightless NNs): the math and where a
layer's lookups run.

A table of ``n`` inputs holds ``2**n`` real entries; its output bit for a binary address is ``entry > 0`` (inputs
are read as bits, ``x > 0.5``). Gradients:

* table entries: the output's gradient goes to the addressed entry (a straight-through estimator);
* inputs (EFD): input ``j`` of a table at address ``a`` gets ``sum_k alpha * beta**H(k, a) * (T[k] - T[k ^ 2**j])``
  over the entries ``k`` with bit ``j`` set, where ``H`` is the Hamming distance between ``k`` and ``a`` ignoring
  bit ``j``: finite differences along ``j`` at the addressed entry and, damped by ``beta`` per flipped bit, around it.

The input gradient depends only on the table and the address, so it is computed once per step for every (table,
address) pair with one small matrix product (:func:`efd_gradients`) and then gathered per sample. Two
implementations of the lookup give the same outputs and gradients: :class:`TorchLookup` (any device) and
:class:`KernelLookup`, the kernels of ``cuda/lut_layer.cu`` (float32 and bfloat16 activations on a GPU, see
:mod:`bitlogic.gpu` for when they are used). :func:`lookup` picks one. That is the ``"hard"`` estimator of
``LUTLayer``; the relaxed ``"soft"`` (:func:`soft_lookup`) and ``"gumbel"`` (:func:`gumbel_lookup`) ones are plain
torch, and so are the learnable mapping's relaxations (:func:`relaxed_select`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bitlogic._native import MAX_ARITY  # inputs per table the network format allows, defined by the core
from bitlogic.gpu import lut as kernels
from bitlogic.gpu import use_kernels
from bitlogic.gpu._kernels import Backend, backend_for
from bitlogic.ops.estimators import logistic_noise, straight_through
from bitlogic.ops.logic import (
    fused_mix,
    fused_mix_applies,
    fused_mix_grads,
    kernel_mix,
    kernel_mix_applies,
    kernel_mix_grads,
)


def efd_matrix(n: int, alpha: float, beta: float) -> Tensor:
    """``W[j, a, k] = alpha * beta**popcount((a ^ k) without bit j)`` if bit ``j`` of ``k`` is set, else 0."""
    size = 1 << n
    a = torch.arange(size).view(size, 1)
    k = torch.arange(size).view(1, size)
    out = torch.empty(n, size, size, dtype=torch.float64)
    for j in range(n):
        other = (a ^ k) & ~(1 << j)
        distance = torch.zeros_like(other)
        for bit in range(n):
            distance += (other >> bit) & 1
        out[j] = alpha * beta ** distance.to(torch.float64) * ((k >> j) & 1)
    return out.to(torch.float32)


def efd_gradients(tables: Tensor, weights: Tensor) -> Tensor:
    """``[L, 2**n, n]``: the EFD gradient of each table's output w.r.t. each input, at every address."""
    n = weights.shape[0]
    k = torch.arange(1 << n, device=tables.device)
    bit = 1 << torch.arange(n, device=tables.device).view(n, 1)
    diff = tables[:, k | bit] - tables[:, k & ~bit]  # [L, n, 2**n]: T[k with bit j] - T[k without]
    return torch.einsum("jak,ljk->laj", weights.to(tables.dtype), diff)


class TorchLookup(torch.autograd.Function):
    """``[B, L]`` outputs of the tables at the addresses ``sum_j (selected[b, l*n + j] > 0.5) << j``, in torch."""

    @staticmethod
    def forward(ctx: Any, selected: Tensor, tables: Tensor, weights: Tensor, ste: bool) -> Tensor:
        batch = selected.shape[0]
        width, size = tables.shape
        n = weights.shape[0]
        bits = (selected.view(batch, width, n) > 0.5).to(torch.int64)
        address = (bits << torch.arange(n, device=selected.device)).sum(-1)
        flat = address + torch.arange(width, device=selected.device) * size  # [B, L] index into tables.view(-1)
        values = tables.reshape(-1)[flat]
        ctx.save_for_backward(flat, tables, weights)
        if ste:
            return (values > 0).to(selected.dtype)
        return (values.clamp(-1, 1) + 1) * 0.5

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        flat, tables, weights = ctx.saved_tensors
        width, size = tables.shape
        n = weights.shape[0]
        grad_selected = grad_tables = None
        if ctx.needs_input_grad[1]:
            grad_tables = torch.zeros(width * size, dtype=grad.dtype, device=grad.device)
            grad_tables.index_add_(0, flat.reshape(-1), grad.reshape(-1))
            grad_tables = grad_tables.view(width, size)
        if ctx.needs_input_grad[0]:
            per_address = efd_gradients(tables.detach(), weights).reshape(width * size, n)
            grad_selected = (grad.unsqueeze(-1) * per_address[flat]).reshape(grad.shape[0], width * n)
        return grad_selected, grad_tables, None, None


class KernelLookup(torch.autograd.Function):
    """:class:`TorchLookup` on the kernels of ``cuda/lut_layer.cu`` through ``backend``; the table gradient is
    summed in float32 for bfloat16 gradients too."""

    @staticmethod
    def forward(ctx: Any, selected: Tensor, tables: Tensor, weights: Tensor, ste: bool, backend: Backend) -> Tensor:
        x = selected.detach().contiguous()
        out, address = kernels.forward(x, tables.detach().contiguous(), weights.shape[0], ste, backend)
        ctx.save_for_backward(address, tables, weights)
        ctx.backend, ctx.selected_dtype = backend, x.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        address, tables, weights = ctx.saved_tensors
        g = grad.contiguous()
        need_selected, need_tables = ctx.needs_input_grad[:2]
        grad_selected = grad_tables = None
        if need_tables:
            n = weights.shape[0]
            grad_tables = kernels.backward_tables(g, address, tables.shape[1], n, ctx.backend).to(tables.dtype)
        if need_selected:
            per_address = efd_gradients(tables.detach(), weights).to(torch.float32).contiguous()  # [L, 2**n, n]
            grad_selected = kernels.backward_input(g, address, per_address, ctx.selected_dtype, ctx.backend)
        return grad_selected, grad_tables, None, None, None


def _problem(selected: Tensor, tables: Tensor, weights: Tensor) -> str | None:
    """Why the kernels cannot take these tensors (``None`` when they can), whatever their device."""
    if weights.dim() != 3 or not 1 <= weights.shape[0] <= MAX_ARITY:
        return f"weights must be an [n, 2**n, 2**n] EFD matrix with n in 1..{MAX_ARITY}, got {list(weights.shape)}"
    n = weights.shape[0]
    if tuple(weights.shape[1:]) != (1 << n, 1 << n):
        return f"weights must be an [n, 2**n, 2**n] EFD matrix, got {list(weights.shape)}"
    if weights.device != selected.device:
        return f"selected and weights must be on one device, got {selected.device} and {weights.device}"
    return kernels.problem(selected, tables, n)


def lut_lookup(selected: Tensor, tables: Tensor, weights: Tensor, ste: bool, backend: Backend | None = None) -> Tensor:
    """:class:`TorchLookup` on the CUDA kernels (``backend`` defaults to those of ``selected``'s GPU).

    ``selected`` is float32 or bfloat16 ``[B, L*n]``, ``tables`` float32 ``[L, 2**n]``, ``weights`` the ``[n, 2**n,
    2**n]`` EFD matrix (:func:`efd_matrix`). Raises ``ValueError`` for tensors the kernels do not take.
    """
    problem = _problem(selected, tables, weights)
    if problem is not None:
        raise ValueError(f"lut_lookup: {problem}")
    out: Tensor = KernelLookup.apply(selected, tables, weights, bool(ste), backend or backend_for(selected.device))
    return out


def _kernels_apply(selected: Tensor, tables: Tensor, weights: Tensor) -> bool:
    """Whether the lookup runs on the CUDA kernels: tensors on a GPU that they take, and kernels that can start."""
    return selected.device.type == "cuda" and _problem(selected, tables, weights) is None and use_kernels(
        selected.device)


def lookup(selected: Tensor, tables: Tensor, weights: Tensor, ste: bool) -> Tensor:
    """``[B, L]`` table outputs for the ``[B, L*n]`` selected inputs: the CUDA kernels where they apply, else
    :class:`TorchLookup`; the same outputs and gradients either way."""
    if _kernels_apply(selected, tables, weights):
        return lut_lookup(selected, tables, weights, ste)
    out: Tensor = TorchLookup.apply(selected, tables, weights, ste)
    return out


class LearnableSelect(torch.autograd.Function):
    """Input ``r`` of the tables reads ``x[:, argmax(W[r])]``; the backward treats the selection as the product
    with ``softmax(W[r] / tau)`` for the inputs and as the linear map ``x @ W[r]`` for the weights.

    It stays in torch on a GPU too: the forward is one gather and the backward two dense matrix products, which
    cuBLAS does better than a hand-written kernel would."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, tau: float) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.tau = tau
        return x[:, weight.argmax(dim=1)]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ torch.softmax(weight / ctx.tau, dim=1)
        if ctx.needs_input_grad[1]:
            grad_w = grad.t() @ x
        return grad_x, grad_w, None


def learnable_select(x: Tensor, weight: Tensor, tau: float) -> Tensor:
    """The inputs ``x[:, argmax(weight[r])]`` of a learnable mapping, with :class:`LearnableSelect`'s gradients."""
    out: Tensor = LearnableSelect.apply(x, weight, tau)
    return out


class CandidateSelect(torch.autograd.Function):
    """:class:`LearnableSelect` over a pool: input ``r`` reads ``x[:, pool[r, argmax(W[r])]]``; the backward treats
    the selection as the mixture ``sum_k softmax(W[r] / tau)[k] * x[:, pool[r, k]]`` for the inputs and as
    ``sum_k W[r, k] * x[:, pool[r, k]]`` for the weights, so it costs ``K`` per input instead of the layer's width."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, pool: Tensor, tau: float) -> Tensor:
        ctx.save_for_backward(x, weight, pool)
        ctx.tau = tau
        return x[:, pool.gather(1, weight.argmax(dim=1, keepdim=True)).squeeze(1)]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, weight, pool = ctx.saved_tensors
        rows, k = pool.shape
        need_x, need_w = ctx.needs_input_grad[:2]
        if fused_mix_applies(x, grad, weight, pool) and (need_x or need_w):
            # The fused kernels: both gradients in one pass over the feature-major input and gradient, no [R, K, B]
            # copy of the candidates' values.
            soft = torch.softmax(weight.detach() / ctx.tau, dim=1)
            gw, gx = fused_mix_grads(x.detach().t().contiguous(), pool, soft, grad.t(), need_x)
            return (gx.t() if gx is not None else None), (gw.to(weight.dtype) if need_w else None), None, None
        if kernel_mix_applies(x, pool, grad, weight) and (need_x or need_w):
            # The CUDA kernels: the same two gradients, each input's by one thread in a fixed order (no atomics).
            soft = torch.softmax(weight.detach() / ctx.tau, dim=1)
            gw, gx = kernel_mix_grads(x.t(), pool, soft, grad.t(), need_x)
            return (gx.t() if gx is not None else None), (gw.to(weight.dtype) if need_w else None), None, None
        grad_t = grad.t()  # [R, B]: rows of samples, so that gathering and adding run over contiguous rows
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            spread = grad_t.unsqueeze(1) * torch.softmax(weight / ctx.tau, dim=1).to(grad.dtype).unsqueeze(-1)
            grad_x_t = torch.zeros(x.shape[1], x.shape[0], dtype=x.dtype, device=x.device)
            grad_x = grad_x_t.index_add_(0, pool.reshape(-1), spread.reshape(rows * k, -1)).t()
        if ctx.needs_input_grad[1]:
            pooled = x.t().contiguous()[pool]  # [R, K, B]
            grad_w = torch.einsum("rb,rkb->rk", grad_t, pooled).to(weight.dtype)
        return grad_x, grad_w, None, None


def candidate_select(x: Tensor, weight: Tensor, pool: Tensor, tau: float) -> Tensor:
    """The inputs ``x[:, pool[r, argmax(weight[r])]]`` of a learnable mapping over a pool of ``K`` candidates per
    input (``pool`` int64 ``[R, K]``, ``weight`` ``[R, K]``), with :class:`CandidateSelect`'s gradients."""
    out: Tensor = CandidateSelect.apply(x, weight, pool, tau)
    return out


def random_pool(in_dim: int, rows: int, k: int) -> Tensor:
    """int64 ``[rows, k]``: ``k`` distinct inputs out of ``in_dim`` for each row, drawn from torch's generator."""
    chunks = [torch.rand(min(1024, rows - start), in_dim).topk(k, dim=1).indices for start in range(0, rows, 1024)]
    return torch.cat(chunks).to(torch.int64)


# The relaxed estimators ("soft", "gumbel") below are plain torch on every device: autograd differentiates them, and
# their cost, a weight for each of the 2**n entries per sample and table, is what a relaxation over the entries is.


def multilinear(selected: Tensor, probabilities: Tensor) -> Tensor:
    """``[B, L]``: each table's multilinear interpolation at the ``[B, L*n]`` inputs (clamped to [0, 1], the gradient
    passing the clamp unchanged: a plain clamp would stop it at exact bits, the inputs a hard layer before gives).

    Table ``l`` gives ``sum_a probabilities[l, a] * prod_j (x_j if bit j of a else 1 - x_j)``: the expected output
    when input ``j`` is 1 with probability ``x_j`` and entry ``a`` is 1 with probability ``probabilities[l, a]``; on
    bits it is the entry at their address, as :func:`lookup` reads it.
    """
    width, size = probabilities.shape
    n = size.bit_length() - 1
    x = selected.reshape(selected.shape[0], width, n)
    x = x + (x.clamp(0, 1) - x).detach()
    # Interpolate along the most significant address bit first: each step halves the entries left.
    values = probabilities.to(x.dtype).unsqueeze(0)  # [1, L, 2**n], broadcast over the batch by the first step
    for j in reversed(range(n)):
        half = 1 << j
        values = torch.lerp(values[..., :half], values[..., half:], x[..., j : j + 1])
    return values.squeeze(-1)


def soft_lookup(selected: Tensor, tables: Tensor, temperature: float) -> Tensor:
    """The ``"soft"`` estimator: the relaxed forward :func:`multilinear` over ``sigmoid(tables / temperature)``."""
    return multilinear(selected, torch.sigmoid(tables / temperature))


def gumbel_lookup(selected: Tensor, tables: Tensor, temperature: float) -> Tensor:
    """The ``"gumbel"`` estimator: logits ``tables / temperature`` plus :func:`logistic_noise` (one draw per entry and
    step); forward the hard bit ``perturbed entry > 0`` at the inputs' address (``x > 0.5``), backward the gradient of
    :func:`multilinear` over ``sigmoid(perturbed)`` (the binary Gumbel-softmax with a straight-through forward)."""
    width, size = tables.shape
    n = size.bit_length() - 1
    logits = tables / temperature
    perturbed = logits + logistic_noise(logits)
    batch = selected.shape[0]
    bits = (selected.detach().reshape(batch, width, n) > 0.5).to(torch.int64)
    address = (bits << torch.arange(n, device=selected.device)).sum(-1)
    flat = address + torch.arange(width, device=selected.device) * size
    hard = (perturbed.detach().reshape(-1)[flat] > 0).to(selected.dtype)
    soft = multilinear(selected, torch.sigmoid(perturbed))
    return straight_through(hard, soft)


def relaxed_select(x: Tensor, weight: Tensor, tau: float, estimator: str, pool: Tensor | None = None) -> Tensor:
    """A learnable mapping's inputs ``[B, R]`` under ``"soft"`` (the mixture ``x @ softmax(weight / tau)^T``) or
    ``"gumbel"`` (forward ``x[:, argmax(weight / tau + g)]`` with Gumbel noise ``g``, backward that mixture's
    gradient with the same noise); ``"hard"`` is :func:`learnable_select`. With a ``pool`` ``[R, K]`` the candidates
    of input ``r`` are ``x[:, pool[r]]`` (``weight`` ``[R, K]``) instead of every input."""
    logits = weight / tau
    if estimator == "gumbel":
        u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
        logits = logits - torch.log(-torch.log(u))
    mixture = torch.softmax(logits, dim=1).to(x.dtype)
    choice = logits.detach().argmax(dim=1)
    mix = None
    if pool is not None:
        mix = fused_mix if fused_mix_applies(x, mixture, pool) else kernel_mix if kernel_mix_applies(
            x, pool, mixture) else None
    if pool is not None and mix is not None:
        # The fused CPU or the CUDA kernels: the forward reads the chosen candidate (gumbel) or mixes them in place
        # (soft), and the backward spreads the gradient by the mixture; the weights' gradient goes to the mixture
        # either way.
        xt = x.t().contiguous()
        if estimator == "soft":
            return mix(xt, pool, mixture).t()
        one_hot = torch.zeros_like(mixture).scatter_(1, choice.unsqueeze(1), 1.0)
        return mix(xt, pool, straight_through(one_hot, mixture), mixture).t()
    if pool is None:
        soft = x @ mixture.t()
    else:
        rows, k = pool.shape
        # index_select: its backward adds in a fixed order (indexing's backward on this view does not, with threads).
        pooled = torch.index_select(x.t(), 0, pool.reshape(-1)).view(rows, k, x.shape[0])
        soft = torch.einsum("rkb,rk->br", pooled, mixture)
        choice = pool.gather(1, choice.unsqueeze(1)).squeeze(1)
    if estimator == "soft":
        return soft
    return straight_through(x.detach()[:, choice], soft)  # the forward's choice, the gradient the mixture's


__all__ = [
    "MAX_ARITY",
    "CandidateSelect",
    "KernelLookup",
    "LearnableSelect",
    "TorchLookup",
    "candidate_select",
    "efd_gradients",
    "efd_matrix",
    "gumbel_lookup",
    "learnable_select",
    "lookup",
    "lut_lookup",
    "multilinear",
    "random_pool",
    "relaxed_select",
    "soft_lookup",
]
