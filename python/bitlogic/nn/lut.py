"""LUTLayer: n-input lookup tables trained with the Extended Finite Difference (Differentiable Weightless NNs).

Every table holds ``2**n`` real entries; its output bit for a binary address is ``entry > 0``. The forward pass is
already the boolean function (inputs are read as bits, ``x > 0.5``), so ``eval()`` changes nothing but the handling
of ``ste=False``. Gradients:

* table entries: the output's gradient goes to the addressed entry (a straight-through estimator);
* inputs (EFD): input ``j`` of a table at address ``a`` gets ``sum_k alpha * beta**H(k, a) * (T[k] - T[k ^ 2**j])``
  over the entries ``k`` with bit ``j`` set, where ``H`` is the Hamming distance between ``k`` and ``a`` ignoring
  bit ``j``: finite differences along ``j`` at the addressed entry and, damped by ``beta`` per flipped bit, around it.

The input gradient depends only on the table and the address, so the layer computes it once per step for every
(table, address) pair with one small matrix product and then gathers it per sample.

On a GPU the lookup and its backward run as the kernels of :mod:`bitlogic.gpu.lut` (float32 and bfloat16
activations; see :mod:`bitlogic.gpu` for when they are used), with the same outputs and gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

Mapping = Literal["random", "learnable", "arange"]

MAX_ARITY = 8


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


class _Lookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, selected: Tensor, tables: Tensor, weights: Tensor, ste: bool) -> Tensor:
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
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        flat, tables, weights = ctx.saved_tensors  # type: ignore[attr-defined]
        width, size = tables.shape
        n = weights.shape[0]
        grad_selected = grad_tables = None
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_tables = torch.zeros(width * size, dtype=grad.dtype, device=grad.device)
            grad_tables.index_add_(0, flat.reshape(-1), grad.reshape(-1))
            grad_tables = grad_tables.view(width, size)
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            per_address = efd_gradients(tables.detach(), weights).reshape(width * size, n)
            grad_selected = (grad.unsqueeze(-1) * per_address[flat]).reshape(grad.shape[0], width * n)
        return grad_selected, grad_tables, None, None


def _kernels_apply(selected: Tensor, tables: Tensor, weights: Tensor) -> bool:
    """Whether the lookup runs as the GPU kernels of :mod:`bitlogic.gpu.lut`."""
    if selected.device.type != "cuda":
        return False
    from bitlogic.gpu import lut, use_kernels

    return lut.supports(selected, tables, weights) and use_kernels(selected.device)


def _lookup(selected: Tensor, tables: Tensor, weights: Tensor, ste: bool) -> Tensor:
    """``[B, L]`` table outputs for the ``[B, L*n]`` selected inputs: :class:`_Lookup`, or its GPU kernels."""
    if _kernels_apply(selected, tables, weights):
        from bitlogic.gpu import lut

        return lut.lut_lookup(selected, tables, weights, ste)
    out: Tensor = _Lookup.apply(selected, tables, weights, ste)
    return out


class _LearnableSelect(torch.autograd.Function):
    """Input ``r`` of the tables reads ``x[:, argmax(W[r])]``; the backward treats the selection as the product
    with ``softmax(W[r] / tau)`` for the inputs and as the linear map ``x @ W[r]`` for the weights.

    It stays in torch on a GPU too: the forward is one gather and the backward two dense matrix products, which
    cuBLAS does better than a hand-written kernel would."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, tau: float) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.tau = tau  # type: ignore[attr-defined]
        return x[:, weight.argmax(dim=1)]

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, weight = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_x = grad @ torch.softmax(weight / ctx.tau, dim=1)  # type: ignore[attr-defined]
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_w = grad.t() @ x
        return grad_x, grad_w, None


class LUTLayer(nn.Module):
    """``out_dim`` lookup tables of ``n`` inputs each over ``in_dim`` input bits.

    Args:
        n: inputs per table (1..8).
        mapping: which inputs each table reads: ``"random"`` (spread evenly), ``"arange"`` (table ``l`` input ``j``
            reads wire ``(l*n + j) % in_dim``), or ``"learnable"`` (a weight row per table input, argmax chooses).
        alpha, beta: EFD weights; default ``alpha = 0.5 * 0.75**(n-1)``, ``beta = 1/3`` (the total weight of the
            terms of one input is then 0.5 for every n).
        ste: outputs are bits ``entry > 0`` with a straight-through gradient; with ``False`` training outputs the
            soft bit ``(clamp(entry, -1, 1) + 1) / 2`` (still bits in ``eval()``).
        clamp_luts: keep table entries in [-1, 1] while training.
        lm_tau: softmax temperature of the learnable mapping's backward.

    The wiring (``inputs`` buffer, or ``mapping_weight`` for a learnable mapping) is in the state_dict.
    """

    inputs: Tensor
    efd: Tensor

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        n: int = 6,
        mapping: Mapping = "random",
        alpha: float | None = None,
        beta: float | None = None,
        ste: bool = True,
        clamp_luts: bool = True,
        lm_tau: float = 0.001,
    ) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"LUTLayer: in_dim and out_dim must be positive, got {in_dim} and {out_dim}")
        if not 1 <= n <= MAX_ARITY:
            raise ValueError(f"LUTLayer: n must be in 1..{MAX_ARITY}, got {n}")
        self.in_dim, self.out_dim, self.n = in_dim, out_dim, n
        self.mapping: Mapping = mapping
        self.alpha = 0.5 * 0.75 ** (n - 1) if alpha is None else float(alpha)
        self.beta = 1.0 / 3.0 if beta is None else float(beta)
        self.ste, self.clamp_luts, self.lm_tau = bool(ste), bool(clamp_luts), float(lm_tau)
        count = out_dim * n
        if mapping == "random":
            repeats = -(-count // in_dim)
            wires = torch.cat([torch.randperm(in_dim) for _ in range(repeats)])[:count]
        elif mapping == "arange":
            wires = torch.arange(count) % in_dim
        elif mapping == "learnable":
            wires = torch.zeros(count, dtype=torch.int64)
            self.mapping_weight = nn.Parameter(torch.rand(count, in_dim))
        else:
            raise ValueError(f"LUTLayer: mapping must be 'random', 'learnable' or 'arange', got {mapping!r}")
        self.register_buffer("inputs", wires.view(out_dim, n).to(torch.int64))
        self.tables = nn.Parameter(torch.rand(out_dim, 1 << n) * 2 - 1)
        self.register_buffer("efd", efd_matrix(n, self.alpha, self.beta), persistent=False)

    def wires(self) -> Tensor:
        """int64 ``[out_dim, n]``: the input read by each table input (the argmax for a learnable mapping)."""
        if self.mapping == "learnable":
            return self.mapping_weight.detach().argmax(dim=1).view(self.out_dim, self.n)
        return self.inputs

    def truth_tables(self) -> Tensor:
        """The boolean tables of ``eval()``: bool ``[out_dim, 2**n]``, entry ``a`` for address ``sum(x_j << j)``."""
        return self.tables.detach() > 0

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"LUTLayer: expected input [batch, {self.in_dim}], got {list(x.shape)}")
        if self.training and self.clamp_luts:
            with torch.no_grad():
                self.tables.clamp_(-1.0, 1.0)
        if self.mapping == "learnable" and torch.is_grad_enabled():
            selected = _LearnableSelect.apply(x, self.mapping_weight, self.lm_tau)
        else:
            selected = x[:, self.wires().reshape(-1)]
        return _lookup(selected, self.tables, self.efd, self.ste or not self.training)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, n={self.n}, mapping={self.mapping!r}"


def num_luts(model: nn.Module) -> int:
    """Total number of tables of every LUTLayer in ``model``."""
    return sum(m.out_dim for m in model.modules() if isinstance(m, LUTLayer))


__all__ = ["LUTLayer", "efd_gradients", "efd_matrix", "num_luts"]
