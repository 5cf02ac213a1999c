"""LUTLayer: n-input lookup tables trained with the Extended Finite Difference (Differentiable Weightless NNs).

Every table holds ``2**n`` real entries; its output bit for a binary address is ``entry > 0``. The forward pass is
already the boolean function (inputs are read as bits, ``x > 0.5``), so ``eval()`` changes nothing but the handling
of ``ste=False``. The gradients (straight-through for the entries, EFD for the inputs), their math and the choice of
kernels (on a GPU those of :mod:`bitlogic.gpu.lut`, with the same outputs and gradients) are
:mod:`bitlogic.ops.lut`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.nn._export import LayerPart
from bitlogic.ops.inputs import float_inputs
from bitlogic.ops.lut import MAX_ARITY, efd_gradients, efd_matrix, learnable_select, lookup
from bitlogic.spec import LutLayer

Mapping = Literal["random", "learnable", "arange"]


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
        x = float_inputs(x, self.tables.dtype, "LUTLayer")
        if self.mapping == "learnable" and torch.is_grad_enabled():
            selected = learnable_select(x, self.mapping_weight, self.lm_tau)
        else:
            selected = x[:, self.wires().reshape(-1)]
        return lookup(selected, self.tables, self.efd, self.ste or not self.training)

    def export_part(self, following: Sequence[nn.Module]) -> LayerPart:
        """The table layer of the network file: the wires and the boolean tables of ``eval()``."""
        layer = LutLayer(inputs=self.wires().cpu().numpy(), tables=self.truth_tables().cpu().numpy().astype(np.uint8))
        return LayerPart(layer, self.in_dim, self.out_dim)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, n={self.n}, mapping={self.mapping!r}"


def num_luts(model: nn.Module) -> int:
    """Total number of tables of every LUTLayer in ``model``."""
    return sum(m.out_dim for m in model.modules() if isinstance(m, LUTLayer))


__all__ = ["MAX_ARITY", "LUTLayer", "efd_gradients", "efd_matrix", "num_luts"]
