"""LUTLayer: n-input lookup tables trained with the Extended Finite Difference (Differentiable Weightless NNs).

Every table holds ``2**n`` real entries; its output bit for a binary address is ``entry > 0``. The forward pass is
already the boolean function (inputs are read as bits, ``x > 0.5``), so ``eval()`` changes nothing but the handling
of ``ste=False``. The gradients (straight-through for the entries, EFD for the inputs), their math and the choice of
kernels (on a GPU those of :mod:`bitlogic.gpu.lut`, with the same outputs and gradients) are
:mod:`bitlogic.ops.lut`'s. That is the ``"hard"`` estimator, the default; ``"soft"`` and ``"gumbel"`` train with
relaxed tables instead (see :class:`LUTLayer`). Whatever the estimator, ``eval()`` is the boolean function the
network file holds: ``entry > 0`` at the address of the bits, the learnable mapping's argmax wires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.nn._export import LayerPart
from bitlogic.ops.inputs import float_inputs
from bitlogic.ops.lut import (
    MAX_ARITY,
    candidate_select,
    efd_gradients,
    efd_matrix,
    gumbel_lookup,
    learnable_select,
    lookup,
    random_pool,
    relaxed_select,
    soft_lookup,
)
from bitlogic.ops.estimators import ESTIMATORS, Estimator, check_estimator
from bitlogic.spec import LutLayer

Mapping = Literal["random", "learnable", "arange"]


def check_table_options(owner: str, n: int, estimator: str, ste: bool, temperature: float) -> None:
    """Refuses an arity, ``estimator``, ``ste`` or ``temperature`` a table layer does not take, naming ``owner``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ARITY:
        raise ValueError(f"{owner}: n must be in 1..{MAX_ARITY}, got {n!r}")
    check_estimator(estimator, owner)
    if estimator != "hard" and not ste:
        raise ValueError(f"{owner}: ste=False is a variant of the 'hard' estimator, not of {estimator!r}")
    if not temperature > 0:
        raise ValueError(f"{owner}: temperature must be positive, got {temperature}")


def efd_weights(n: int, alpha: float | None, beta: float | None) -> tuple[float, float]:
    """The EFD weights ``(alpha, beta)``, by default ``alpha = 0.5 * 0.75**(n-1)`` and ``beta = 1/3`` (the total
    weight of the terms of one input is then 0.5 for every n)."""
    return (0.5 * 0.75 ** (n - 1) if alpha is None else float(alpha)), (1.0 / 3.0 if beta is None else float(beta))


def table_outputs(
    selected: Tensor, tables: Tensor, efd: Tensor, estimator: str, temperature: float, ste: bool
) -> Tensor:
    """``[B, L]`` outputs of the tables ``[L, 2**n]`` at their ``[B, L*n]`` selected inputs, by ``estimator`` (a
    layer passes ``"hard"`` in ``eval()``): the boolean lookup with straight-through entries and EFD input gradients
    (``ste=False``: the soft bit of the entry), or the relaxed ``"soft"`` / ``"gumbel"`` tables."""
    if estimator == "soft":
        return soft_lookup(selected, tables, temperature)
    if estimator == "gumbel":
        return gumbel_lookup(selected, tables, temperature)
    return lookup(selected, tables, efd, ste)


class LUTLayer(nn.Module):
    """``out_dim`` lookup tables of ``n`` inputs each over ``in_dim`` input bits.

    Args:
        n: inputs per table (1..8).
        mapping: which inputs each table reads: ``"random"`` (spread evenly), ``"arange"`` (table ``l`` input ``j``
            reads wire ``(l*n + j) % in_dim``), or ``"learnable"`` (a weight row per table input, argmax chooses;
            any layer of a model may have one).
        candidates: with a learnable mapping, ``K`` random distinct candidate inputs per table input (the buffer
            ``candidates`` ``[out_dim*n, K]``, ``mapping_weight`` then ``[out_dim*n, K]``) instead of all ``in_dim``:
            a bounded pool whose training costs ``K`` per input, not the layer's width. ``None``: every input.
        alpha, beta: EFD weights; default ``alpha = 0.5 * 0.75**(n-1)``, ``beta = 1/3`` (the total weight of the
            terms of one input is then 0.5 for every n).
        ste: outputs are bits ``entry > 0`` with a straight-through gradient; with ``False`` training outputs the
            soft bit ``(clamp(entry, -1, 1) + 1) / 2`` (still bits in ``eval()``).
        clamp_luts: keep table entries in [-1, 1] while training.
        lm_tau: softmax temperature of the learnable mapping's backward.
        estimator: how training differentiates the tables (``eval()`` is the same for all three):

            * ``"hard"`` (the default, the layer's behaviour before estimators were named): the forward is the
              boolean function, entries get the straight-through gradient and inputs the EFD one (:mod:`bitlogic.ops.
              lut`); with ``ste=False`` the forward outputs the soft bit of the addressed entry instead. A learnable
              mapping reads its argmax wire, with ``softmax(W / lm_tau)`` as the inputs' backward.
            * ``"soft"``: a relaxed forward, each table's multilinear interpolation of ``sigmoid(entry /
              temperature)`` at its real inputs (clamped to [0, 1]); autograd gives every gradient. A learnable
              mapping feeds the mixture ``x @ softmax(W / lm_tau)^T``.
            * ``"gumbel"``: logistic (binary Gumbel) noise on the logits ``entry / temperature``, one draw per entry
              and step; forward the hard bit of the perturbed entry at the inputs' address, backward the ``"soft"``
              gradient of the perturbed tables. A learnable mapping reads ``argmax(W / lm_tau + g)`` with Gumbel
              noise ``g``, backward the perturbed mixture's gradient.

            The relaxed estimators run in plain torch on every device (the CUDA kernels are the hard ones).
        temperature: the entries' temperature under ``"soft"`` and ``"gumbel"`` (entries are kept in [-1, 1] by
            ``clamp_luts``, so the default 0.25 spans probabilities from 0.018 to 0.982).

    The wiring (``inputs`` buffer, or ``mapping_weight`` and ``candidates`` for a learnable mapping) is in the
    state_dict.
    """

    inputs: Tensor
    efd: Tensor
    candidates: Tensor

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
        estimator: Estimator = "hard",
        temperature: float = 0.25,
        candidates: int | None = None,
    ) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"LUTLayer: in_dim and out_dim must be positive, got {in_dim} and {out_dim}")
        check_table_options("LUTLayer", n, estimator, ste, temperature)
        if candidates is not None and mapping != "learnable":
            raise ValueError(f"LUTLayer: candidates needs mapping='learnable', got mapping={mapping!r}")
        if candidates is not None and not 1 <= candidates <= in_dim:
            raise ValueError(f"LUTLayer: candidates must be in 1..in_dim={in_dim}, got {candidates}")
        self.in_dim, self.out_dim, self.n = in_dim, out_dim, n
        self.estimator: Estimator = estimator
        self.temperature = float(temperature)
        self.mapping: Mapping = mapping
        self.num_candidates = candidates
        self.alpha, self.beta = efd_weights(n, alpha, beta)
        self.ste, self.clamp_luts, self.lm_tau = bool(ste), bool(clamp_luts), float(lm_tau)
        count = out_dim * n
        if mapping == "random":
            repeats = -(-count // in_dim)
            wires = torch.cat([torch.randperm(in_dim) for _ in range(repeats)])[:count]
        elif mapping == "arange":
            wires = torch.arange(count) % in_dim
        elif mapping == "learnable" and candidates is not None:
            wires = torch.zeros(count, dtype=torch.int64)
            self.register_buffer("candidates", random_pool(in_dim, count, candidates))
            self.mapping_weight = nn.Parameter(torch.rand(count, candidates))
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
            choice = self.mapping_weight.detach().argmax(dim=1)
            if self.num_candidates is not None:
                choice = self.candidates.gather(1, choice.unsqueeze(1)).squeeze(1)
            return choice.view(self.out_dim, self.n)
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
        if self.training and self.estimator != "hard":
            return self._relaxed(x)
        if self.mapping == "learnable" and torch.is_grad_enabled():
            if self.num_candidates is not None:
                selected = candidate_select(x, self.mapping_weight, self.candidates, self.lm_tau)
            else:
                selected = learnable_select(x, self.mapping_weight, self.lm_tau)
        else:
            selected = x[:, self.wires().reshape(-1)]
        return table_outputs(selected, self.tables, self.efd, "hard", self.temperature, self.ste or not self.training)

    def _relaxed(self, x: Tensor) -> Tensor:
        """The training forward of the ``"soft"`` and ``"gumbel"`` estimators."""
        if self.mapping == "learnable":
            pool = self.candidates if self.num_candidates is not None else None
            selected = relaxed_select(x, self.mapping_weight, self.lm_tau, self.estimator, pool)
        else:
            selected = torch.index_select(x, 1, self.inputs.reshape(-1))
        return table_outputs(selected, self.tables, self.efd, self.estimator, self.temperature, self.ste)

    def export_part(self, following: Sequence[nn.Module]) -> LayerPart:
        """The table layer of the network file: the wires and the boolean tables of ``eval()``."""
        layer = LutLayer(inputs=self.wires().cpu().numpy(), tables=self.truth_tables().cpu().numpy().astype(np.uint8))
        return LayerPart(layer, self.in_dim, self.out_dim)

    def extra_repr(self) -> str:
        extra = "" if self.num_candidates is None else f", candidates={self.num_candidates}"
        extra += "" if self.estimator == "hard" else f", estimator={self.estimator!r}"
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, n={self.n}, mapping={self.mapping!r}{extra}"


def num_luts(model: nn.Module) -> int:
    """Total number of tables of every LUTLayer in ``model``."""
    return sum(m.out_dim for m in model.modules() if isinstance(m, LUTLayer))


__all__ = ["ESTIMATORS", "MAX_ARITY", "Estimator", "LUTLayer", "check_table_options", "efd_gradients", "efd_matrix",
           "efd_weights", "num_luts", "table_outputs"]
