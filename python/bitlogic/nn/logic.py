"""LogicLayer: a layer of differentiable two-input logic gates (difflogic).

Every gate reads two wires ``a`` and ``b`` of the previous layer. While training, a gate is a mixture of the 16
two-input boolean functions relaxed to real inputs in [0, 1]; each of them is a bilinear polynomial
``c0 + c1*a + c2*b + c3*a*b`` (for example ``a AND b = a*b``, ``a XOR b = a + b - 2ab``), and so is any mixture. The
layer therefore reduces its gate distribution to four coefficients per gate before touching the batch, which costs
4 multiply-adds per gate and sample instead of 16 gate evaluations. In ``eval()`` every gate becomes its most
likely boolean function; on 0/1 inputs the same polynomial with integer coefficients is exact. The gate algebra
and the choice of kernels are :mod:`bitlogic.ops.logic`'s.
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
    corner_coefficients,
    gates,
    op_truth_table,
    scale_grad,
)
from bitlogic.spec import GateLayer

Connections = Literal["random", "unique"]
Init = Literal["random", "residual"]
Parametrization = Literal["softmax16", "inputwise"]


def random_connections(in_dim: int, out_dim: int, generator: torch.Generator | None = None) -> Tensor:
    """``[2, out_dim]`` wires drawn so that every input is read about equally often (difflogic's "random")."""
    uses = torch.randperm(2 * out_dim, generator=generator) % in_dim
    shuffle = torch.randperm(in_dim, generator=generator)
    return shuffle[uses].view(2, out_dim)


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


class LogicLayer(nn.Module):
    """``out_dim`` differentiable two-input logic gates over ``in_dim`` inputs.

    Args:
        connections: ``"random"`` spreads reads evenly over the inputs; ``"unique"`` also makes every gate read two
            different wires and no two gates the same pair.
        grad_factor: scales the gradient passed to the previous layer (values > 1 help deep stacks).
        init: ``"random"`` (normal logits) or ``"residual"``, which makes every gate start close to the
            pass-through gate ``A`` so that a deep stack begins as a near-identity.
        parametrization: ``"softmax16"`` learns 16 logits per gate (difflogic); ``"inputwise"`` learns the gate's
            four corner outputs ``sigmoid(w)`` for (a, b) = (0,0), (0,1), (1,0), (1,1) and interpolates between them
            bilinearly (4 parameters per gate); ``eval()`` rounds each corner, which picks the nearest gate.

    The wiring is the buffer ``inputs`` (int64 ``[2, out_dim]``: wires A and B), so it lives in the state_dict.
    """

    inputs: Tensor

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        connections: Connections = "random",
        grad_factor: float = 1.0,
        init: Init = "random",
        parametrization: Parametrization = "softmax16",
    ) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"LogicLayer: in_dim and out_dim must be positive, got {in_dim} and {out_dim}")
        if connections == "random":
            wires = random_connections(in_dim, out_dim)
        elif connections == "unique":
            wires = unique_connections(in_dim, out_dim)
        else:
            raise ValueError(f"LogicLayer: connections must be 'random' or 'unique', got {connections!r}")
        if init not in ("random", "residual"):
            raise ValueError(f"LogicLayer: init must be 'random' or 'residual', got {init!r}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.grad_factor = float(grad_factor)
        self.parametrization: Parametrization = parametrization
        self.register_buffer("inputs", wires.to(torch.int64))
        if parametrization == "softmax16":
            logits = torch.randn(out_dim, NUM_OPS)
            if init == "residual":
                # exp(5) / (exp(5) + 15) ~ 0.9 of the mass on A: a near-identity start that still has gradient.
                logits = torch.zeros(out_dim, NUM_OPS)
                logits[:, PASS_A] = 5.0
            self.weight = nn.Parameter(logits)
        elif parametrization == "inputwise":
            if init == "residual":
                corners = torch.tensor([op_truth_table(PASS_A)], dtype=torch.float32).expand(out_dim, 4)
                logits = (corners * 2 - 1) * 3.0  # sigmoid(+-3) = 0.95 / 0.05
            else:
                logits = torch.randn(out_dim, 4)
            self.weight = nn.Parameter(logits.clone())
        else:
            raise ValueError(
                f"LogicLayer: parametrization must be 'softmax16' or 'inputwise', got {parametrization!r}"
            )

    def ops(self) -> Tensor:
        """The boolean gate each position becomes in ``eval()``: op codes int64 ``[out_dim]`` (difflogic order)."""
        with torch.no_grad():
            if self.parametrization == "softmax16":
                return self.weight.argmax(dim=1)
            bits = (self.weight > 0).to(torch.int64)  # sigmoid(w) > 0.5
            return (bits[:, 0] << 3) | (bits[:, 1] << 2) | (bits[:, 2] << 1) | bits[:, 3]

    def coefficients(self) -> Tensor:
        """``[out_dim, 4]`` coefficients of the relaxed gates (training) or the chosen boolean gates (eval)."""
        matrix = GATE_COEFFICIENTS.to(self.weight.device, self.weight.dtype)
        if not self.training:
            return matrix[self.ops()]
        if self.parametrization == "softmax16":
            return torch.softmax(self.weight, dim=1) @ matrix
        return corner_coefficients(torch.sigmoid(self.weight))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"LogicLayer: expected input [batch, {self.in_dim}], got {list(x.shape)}")
        x = float_inputs(x, self.weight.dtype, "LogicLayer")
        if self.training and self.grad_factor != 1.0 and x.requires_grad:
            x = scale_grad(x, self.grad_factor)
        coef = self.coefficients().to(x.dtype)
        return gates(x, self.inputs[0], self.inputs[1], coef)

    def export_part(self, following: Sequence[nn.Module]) -> LayerPart:
        """The gate layer of the network file: wires (A, B) and the op code each gate becomes in ``eval()``."""
        layer = GateLayer(inputs=self.inputs.t().cpu().numpy(), ops=self.ops().cpu().numpy().astype(np.uint8))
        return LayerPart(layer, self.in_dim, self.out_dim)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, parametrization={self.parametrization!r}"
            + (f", grad_factor={self.grad_factor}" if self.grad_factor != 1.0 else "")
        )


def num_gates(model: nn.Module) -> int:
    """Total number of gates of every LogicLayer in ``model``."""
    return sum(m.out_dim for m in model.modules() if isinstance(m, LogicLayer))


__all__ = ["GATE_COEFFICIENTS", "NUM_OPS", "PASS_A", "LogicLayer", "corner_coefficients", "num_gates", "op_truth_table",
           "random_connections", "unique_connections"]
