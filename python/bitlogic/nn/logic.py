"""LogicLayer: a layer of differentiable two-input logic gates (difflogic).

Every gate reads two wires ``a`` and ``b`` of the previous layer. While training, a gate is a mixture of the 16
two-input boolean functions relaxed to real inputs in [0, 1]; each of them is a bilinear polynomial
``c0 + c1*a + c2*b + c3*a*b`` (for example ``a AND b = a*b``, ``a XOR b = a + b - 2ab``), and so is any mixture. The
layer therefore reduces its gate distribution to four coefficients per gate before touching the batch, which costs
4 multiply-adds per gate and sample instead of 16 gate evaluations. In ``eval()`` every gate becomes its most
likely boolean function; on 0/1 inputs the same polynomial with integer coefficients is exact. The gate algebra
and the choice of kernels are :mod:`bitlogic.ops.logic`'s.

With ``connections="learned"`` each gate input chooses its wire among ``K`` candidates while training (the mixture of
the candidates' values, weighted by a softmax over learned logits, or the estimator's hard choice) and reads its
argmax candidate in ``eval()``, where the layer is an ordinary gate layer again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.nn._export import LayerPart
from bitlogic.ops.inputs import float_inputs
from bitlogic.ops.logic import (
    GATE_COEFFICIENTS,
    NUM_OPS,
    PASS_A,
    choice_weights,
    corner_coefficients,
    corner_weights,
    gates,
    learned_gates,
    mix_candidates,
    op_truth_table,
    scale_grad,
)
from bitlogic.ops.estimators import Estimator, check_estimator
from bitlogic.spec import GateLayer

Connections = Literal["random", "unique", "learned"]

#: Candidate wires per gate input of ``connections="learned"`` when ``candidates`` is not given.
DEFAULT_CANDIDATES = 8
Init = Literal["random", "residual"]
Parametrization = Literal["softmax16", "inputwise"]


def random_connections(in_dim: int, out_dim: int, generator: torch.Generator | None = None) -> Tensor:
    """``[2, out_dim]`` wires drawn so that every input is read about equally often (difflogic's "random")."""
    uses = torch.randperm(2 * out_dim, generator=generator) % in_dim
    shuffle = torch.randperm(in_dim, generator=generator)
    return shuffle[uses].view(2, out_dim)


def candidate_connections(
    in_dim: int, out_dim: int, candidates: int, generator: torch.Generator | None = None
) -> Tensor:
    """``[2, out_dim, candidates]`` candidate wires, drawn like :func:`random_connections` over all
    ``2 * out_dim * candidates`` slots: every input is in about as many pools as any other (so in some pool whenever
    there are at least ``in_dim`` slots)."""
    uses = torch.randperm(2 * out_dim * candidates, generator=generator) % in_dim
    shuffle = torch.randperm(in_dim, generator=generator)
    return shuffle[uses].view(2, out_dim, candidates)


def unique_connections(in_dim: int, out_dim: int, generator: torch.Generator | None = None) -> Tensor:
    """``[2, out_dim]`` wires with ``a != b`` in every gate and no unordered pair read by two gates.

    Inputs are shuffled once; gate ``j`` of round ``r = j // in_dim`` reads ``(p[i], p[(i + r + 1) % in_dim])`` with
    ``i = j % in_dim``. Round ``r`` pairs inputs at cyclic distance ``r + 1``, so pairs repeat only once the rounds
    pass half the cycle; that bounds ``out_dim`` by ``in_dim * (in_dim - 1) / 2``.
    """
    if in_dim < 2 or out_dim > in_dim * (in_dim - 1) // 2:
        raise ValueError(
            f"connections='unique': {out_dim} gates need at least that many distinct input pairs, "
            f"but {in_dim} inputs have {in_dim * (in_dim - 1) // 2}"
        )
    p = torch.randperm(in_dim, generator=generator)
    j = torch.arange(out_dim)
    i, r = j % in_dim, j // in_dim
    return torch.stack([p[i], p[(i + r + 1) % in_dim]])


def check_gate_options(owner: str, init: str, parametrization: str, estimator: str, tau_gumbel: float) -> None:
    """Refuses an ``init``, ``parametrization``, ``estimator`` or ``tau_gumbel`` a gate layer does not take, naming
    ``owner`` and the argument."""
    if init not in ("random", "residual"):
        raise ValueError(f"{owner}: init must be 'random' or 'residual', got {init!r}")
    if parametrization not in ("softmax16", "inputwise"):
        raise ValueError(f"{owner}: parametrization must be 'softmax16' or 'inputwise', got {parametrization!r}")
    check_estimator(estimator, owner)
    if not tau_gumbel > 0:
        raise ValueError(f"{owner}: tau_gumbel must be positive, got {tau_gumbel}")


def initial_gate_logits(shape: tuple[int, ...], parametrization: str, init: str, owner: str) -> Tensor:
    """The starting parameters of gates of ``shape``: ``[*shape, 16]`` logits (softmax16) or ``[*shape, 4]`` corner
    logits (inputwise), normal (``init="random"``) or near the pass-through gate ``A`` (``"residual"``)."""
    if parametrization == "softmax16":
        logits = torch.randn(*shape, NUM_OPS)  # drawn for both inits, so that the layers after draw what they did
        if init == "residual":
            # exp(5) / (exp(5) + 15) ~ 0.9 of the mass on A: a near-identity start that still has gradient.
            logits = torch.zeros(*shape, NUM_OPS)
            logits[..., PASS_A] = 5.0
        return logits
    if parametrization == "inputwise":
        if init == "residual":
            corners = torch.tensor(op_truth_table(PASS_A), dtype=torch.float32).expand(*shape, 4)
            return ((corners * 2 - 1) * 3.0).contiguous()  # sigmoid(+-3) = 0.95 / 0.05
        return torch.randn(*shape, 4)
    raise ValueError(f"{owner}: parametrization must be 'softmax16' or 'inputwise', got {parametrization!r}")


def gate_ops(weight: Tensor, parametrization: str) -> Tensor:
    """int64 ``weight.shape[:-1]``: the boolean gate (difflogic op code) each gate's parameters choose in
    ``eval()``: the argmax of the 16 logits, or the op whose corners are the rounded ``sigmoid(w)``."""
    with torch.no_grad():
        if parametrization == "softmax16":
            return weight.argmax(dim=-1)
        bits = (weight > 0).to(torch.int64)  # sigmoid(w) > 0.5
        return (bits[..., 0] << 3) | (bits[..., 1] << 2) | (bits[..., 2] << 1) | bits[..., 3]


def gate_coefficients(
    weight: Tensor, parametrization: str, estimator: str, tau_gumbel: float, training: bool
) -> Tensor:
    """``[*weight.shape[:-1], 4]`` coefficients ``(c0, c1, c2, c3)`` of the gates: the relaxed mixture the
    ``estimator`` gives while ``training``, the chosen boolean gates' (:func:`gate_ops`) otherwise."""
    matrix = GATE_COEFFICIENTS.to(weight.device, weight.dtype)
    if not training:
        return matrix[gate_ops(weight, parametrization)]
    if parametrization == "softmax16":
        return choice_weights(weight, estimator, tau_gumbel) @ matrix
    return corner_coefficients(corner_weights(weight, estimator, tau_gumbel))


class LogicLayer(nn.Module):
    """``out_dim`` differentiable two-input logic gates over ``in_dim`` inputs.

    Args:
        connections: ``"random"`` spreads reads evenly over the inputs; ``"unique"`` also makes every gate read two
            different wires and no two gates the same pair; ``"learned"`` gives each gate input a pool of
            ``candidates`` wires (drawn like ``"random"``) and a learned logit per candidate, and ``eval()`` reads
            the argmax candidate.
        candidates: pool size ``K`` of ``connections="learned"`` (default 8); only for learned wiring.
        grad_factor: scales the gradient passed to the previous layer (values > 1 help deep stacks).
        init: ``"random"`` (normal logits) or ``"residual"``, which makes every gate start close to the
            pass-through gate ``A`` so that a deep stack begins as a near-identity.
        parametrization: ``"softmax16"`` learns 16 logits per gate (difflogic); ``"inputwise"`` learns the gate's
            four corner outputs ``sigmoid(w)`` for (a, b) = (0,0), (0,1), (1,0), (1,1) and interpolates between them
            bilinearly (4 parameters per gate); ``eval()`` rounds each corner, which picks the nearest gate.
        estimator: how training turns the logits of a choice (the gate; the wire, with learned wiring) into
            weights: ``"soft"`` the softmax mixture; ``"hard"`` the argmax forward with the softmax's gradient
            backward (straight-through); ``"gumbel"`` the argmax of the logits plus Gumbel noise forward (drawn per
            gate and step from torch's generator) with the gradient of the softmax of the noisy logits over
            ``tau_gumbel`` backward. For ``"inputwise"`` each corner is the choice between 0 and 1 with logits
            ``(w, 0)``: ``w > 0`` forward (plus logistic noise for ``"gumbel"``), sigmoid's gradient backward.
            ``eval()`` takes the argmax whatever the estimator.
        tau_gumbel: temperature of the ``"gumbel"`` estimator's backward softmax.

    The wiring is in the state_dict: the buffer ``inputs`` (int64 ``[2, out_dim]``: wires A and B) for fixed wiring;
    the buffer ``candidates`` (int64 ``[2, out_dim, K]``) and the parameter ``wire_logits`` (``[2, out_dim, K]``) for
    learned wiring, whose ``inputs`` are the argmax candidates (computed on each read).
    """

    candidates: Tensor
    mix_wires: Tensor

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        connections: Connections = "random",
        grad_factor: float = 1.0,
        init: Init = "random",
        parametrization: Parametrization = "softmax16",
        candidates: int | None = None,
        estimator: Estimator = "soft",
        tau_gumbel: float = 1.0,
    ) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"LogicLayer: in_dim and out_dim must be positive, got {in_dim} and {out_dim}")
        if connections not in ("random", "unique", "learned"):
            raise ValueError(f"LogicLayer: connections must be 'random', 'unique' or 'learned', got {connections!r}")
        if candidates is not None and connections != "learned":
            raise ValueError(f"LogicLayer: candidates={candidates} needs connections='learned', got {connections!r}")
        pool = DEFAULT_CANDIDATES if candidates is None else candidates
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
            raise ValueError(f"LogicLayer: candidates must be a positive integer, got {candidates!r}")
        check_gate_options("LogicLayer", init, parametrization, estimator, tau_gumbel)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.grad_factor = float(grad_factor)
        self.parametrization: Parametrization = parametrization
        self.connections: Connections = connections
        self.estimator: Estimator = estimator
        self.tau_gumbel = float(tau_gumbel)
        if connections == "learned":
            self.register_buffer("candidates", candidate_connections(in_dim, out_dim, pool))
            # Zero logits: training starts from the even mixture of each pool; eval() reads candidate 0 until then.
            self.wire_logits = nn.Parameter(torch.zeros(2, out_dim, pool))
            # The mixed inputs are handed to the gate kernels as a [B, 2 * out_dim] tensor that gate j reads at j
            # and out_dim + j; one buffer whose two rows are the wires, so the GPU launchers cache their index.
            self.register_buffer("mix_wires", torch.arange(2 * out_dim).view(2, out_dim), persistent=False)
        else:
            draw = random_connections if connections == "random" else unique_connections
            wires = draw(in_dim, out_dim)
            self.register_buffer("inputs", wires.to(torch.int64))
        self.weight = nn.Parameter(initial_gate_logits((out_dim,), parametrization, init, "LogicLayer"))

    @property
    def inputs(self) -> Tensor:
        """int64 ``[2, out_dim]``: wires A and B of every gate (for learned wiring, the argmax candidates)."""
        fixed = self._buffers.get("inputs")
        if fixed is not None:
            return fixed
        if self.__dict__.get("connections") != "learned":
            # Before the buffer is registered: hasattr() must say no, so that register_buffer accepts the name.
            raise AttributeError("inputs")
        with torch.no_grad():
            chosen = self.wire_logits.argmax(dim=2, keepdim=True)
            return self.candidates.gather(2, chosen).squeeze(2)

    def ops(self) -> Tensor:
        """The boolean gate each position becomes in ``eval()``: op codes int64 ``[out_dim]`` (difflogic order)."""
        return gate_ops(self.weight, self.parametrization)

    def coefficients(self) -> Tensor:
        """``[out_dim, 4]`` coefficients of the relaxed gates (training) or the chosen boolean gates (eval)."""
        return gate_coefficients(self.weight, self.parametrization, self.estimator, self.tau_gumbel, self.training)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"LogicLayer: expected input [batch, {self.in_dim}], got {list(x.shape)}")
        x = float_inputs(x, self.weight.dtype, "LogicLayer")
        if self.training and self.grad_factor != 1.0 and x.requires_grad:
            x = scale_grad(x, self.grad_factor)
        coef = self.coefficients().to(x.dtype)
        if self.connections == "learned" and self.training:
            weights = choice_weights(self.wire_logits, self.estimator, self.tau_gumbel)
            fused = learned_gates(x, self.candidates, weights, coef)  # one kernel, for a first layer on the CPU
            if fused is not None:
                return fused
            mixed = mix_candidates(x, self.candidates, weights)  # feature-major [2, out_dim, B]
            return gates(mixed.view(2 * self.out_dim, -1).t(), self.mix_wires[0], self.mix_wires[1], coef)
        wires = self.inputs
        return gates(x, wires[0], wires[1], coef)

    def export_part(self, following: Sequence[nn.Module]) -> LayerPart:
        """The gate layer of the network file: wires (A, B) and the op code each gate becomes in ``eval()``."""
        layer = GateLayer(inputs=self.inputs.t().cpu().numpy(), ops=self.ops().cpu().numpy().astype(np.uint8))
        return LayerPart(layer, self.in_dim, self.out_dim)

    def extra_repr(self) -> str:
        learned = self.connections == "learned"
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, parametrization={self.parametrization!r}"
            + (f", connections='learned', candidates={self.candidates.shape[2]}" if learned else "")
            + (f", estimator={self.estimator!r}" if self.estimator != "soft" else "")
            + (f", tau_gumbel={self.tau_gumbel}" if self.estimator == "gumbel" else "")
            + (f", grad_factor={self.grad_factor}" if self.grad_factor != 1.0 else "")
        )


def num_gates(model: nn.Module) -> int:
    """Total number of gates of every LogicLayer in ``model``."""
    return sum(m.out_dim for m in model.modules() if isinstance(m, LogicLayer))


__all__ = ["DEFAULT_CANDIDATES", "GATE_COEFFICIENTS", "NUM_OPS", "PASS_A", "LogicLayer", "candidate_connections",
           "check_gate_options", "corner_coefficients", "gate_coefficients", "gate_ops", "initial_gate_logits",
           "num_gates", "op_truth_table", "random_connections", "unique_connections"]
