"""LogicConv2d: a convolution whose kernel is a tree of differentiable two-input logic gates (LogicTreeNet).

Each output channel owns one binary tree of ``2**depth - 1`` gates over ``2**depth`` leaves; a leaf reads one input
channel at one offset of the ``kh x kw`` window, and the same tree runs at every position of the image, as the
weights of an ordinary convolution do. While training each gate is a relaxed mixture of the 16 two-input functions,
exactly as in :class:`bitlogic.nn.LogicLayer` (the same parametrizations, estimators, residual start and bilinear
coefficients ``c0 + c1*a + c2*b + c3*a*b``, computed once per gate and shared by every position); on inputs in
[0, 1] the tree is then the probability that the circuit of independently drawn gates outputs 1. In ``eval()``
every gate is its most likely boolean function, and on bits the tree computes exactly the boolean circuit of the
network file's ``conv_gates`` layer. Padded leaves read 0.

The arithmetic is :func:`bitlogic.ops.conv.tree_conv`'s: the fused CPU kernel where it applies, otherwise one
gather of the leaves and one call of the gate kernels per tree level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor, nn

from bitlogic.nn._conv import check_input, check_input_shape, positive_int, window
from bitlogic.nn._export import LayerPart, Shape, spatial_part
from bitlogic.nn.logic import (
    Init,
    Parametrization,
    check_gate_options,
    gate_coefficients,
    gate_ops,
    initial_gate_logits,
)
from bitlogic.ops.conv import random_leaves, tree_conv
from bitlogic.ops.estimators import Estimator
from bitlogic.ops.inputs import float_inputs
from bitlogic.ops.logic import scale_grad
from bitlogic.spec import ConvGateLayer

#: Deepest tree the network file allows (``conv_gates``' depth 1..8).
MAX_DEPTH = 8


class LogicConv2d(nn.Module):
    """``out_channels`` trees of ``2**depth - 1`` logic gates over the ``kernel_size`` windows of ``in_channels``.

    Args:
        kernel_size, stride, padding: the window, its step and the zero padding on each side (ints or pairs).
        depth: levels of each tree (1..8): ``2**depth`` leaves, ``2**depth - 1`` gates.
        channels_per_tree: the input channels a tree reads: each tree draws that many distinct channels (all of
            them when ``in_channels`` is smaller) and each leaf one of them and a window offset, uniformly.
        grad_factor, init, parametrization, estimator, tau_gumbel: as for :class:`bitlogic.nn.LogicLayer`, per gate
            (``init="residual"`` by default: every gate starts near the pass-through ``A``, so a tree starts near its
            first leaf).

    The buffer ``leaves`` (int64 ``[O, 2**depth, 3]``: channel, row and column offset in the window of each leaf)
    and the parameter ``weight`` (``[O, 2**depth - 1, 16]`` logits, or ``[..., 4]`` corner logits for
    ``"inputwise"``) are the state_dict. Gate ``g`` of a tree reads nodes ``2g`` and ``2g + 1`` as A and B and is node
    ``2**depth + g`` (the leaves are nodes ``0 .. 2**depth``); the last node is the output. Input ``[B, C, H, W]``
    floats in [0, 1] (or bits), output ``[B, O, H', W']``.
    """

    leaves: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        depth: int = 3,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 1,
        channels_per_tree: int = 2,
        grad_factor: float = 1.0,
        init: Init = "residual",
        parametrization: Parametrization = "softmax16",
        estimator: Estimator = "soft",
        tau_gumbel: float = 1.0,
    ) -> None:
        super().__init__()
        owner = "LogicConv2d"
        self.in_channels = positive_int(owner, "in_channels", in_channels)
        self.out_channels = positive_int(owner, "out_channels", out_channels)
        self.kernel_size, self.stride, self.padding = window(owner, kernel_size, stride, padding)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"{owner}: depth must be in 1..{MAX_DEPTH}, got {depth!r}")
        self.channels_per_tree = positive_int(owner, "channels_per_tree", channels_per_tree)
        check_gate_options(owner, init, parametrization, estimator, tau_gumbel)
        self.depth = depth
        self.grad_factor = float(grad_factor)
        self.parametrization: Parametrization = parametrization
        self.estimator: Estimator = estimator
        self.tau_gumbel = float(tau_gumbel)
        leaves = random_leaves(in_channels, out_channels, 1 << depth, self.kernel_size, channels_per_tree)
        self.register_buffer("leaves", leaves)
        self.weight = nn.Parameter(initial_gate_logits((out_channels, (1 << depth) - 1), parametrization, init, owner))

    def ops(self) -> Tensor:
        """int64 ``[O, 2**depth - 1]``: the boolean gate (op code) each gate of each tree becomes in ``eval()``."""
        return gate_ops(self.weight, self.parametrization)

    def coefficients(self) -> Tensor:
        """``[O, 2**depth - 1, 4]`` coefficients of the relaxed gates (training) or the chosen boolean gates."""
        return gate_coefficients(self.weight, self.parametrization, self.estimator, self.tau_gumbel, self.training)

    def forward(self, x: Tensor) -> Tensor:
        check_input("LogicConv2d", x, self.in_channels, self.kernel_size, self.stride, self.padding)
        x = float_inputs(x, self.weight.dtype, "LogicConv2d")
        if self.training and self.grad_factor != 1.0 and x.requires_grad:
            x = scale_grad(x, self.grad_factor)
        coef = self.coefficients().to(x.dtype)
        return tree_conv(x, self.leaves, coef, self.kernel_size, self.stride, self.padding)

    def export_spatial(self, following: Sequence[nn.Module], input_shape: Shape) -> LayerPart:
        """The ``conv_gates`` layer of the network file over an input image of ``input_shape``: the leaves and the
        op codes of ``eval()``."""
        check_input_shape(input_shape, self.in_channels)
        leaves = self.leaves.cpu().numpy().astype(np.uint32)
        ops = self.ops().cpu().numpy().astype(np.uint8)
        return spatial_part(lambda: ConvGateLayer(input_shape, leaves, ops, self.kernel_size, self.stride,
                                                  self.padding))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, depth={self.depth}, "
            f"stride={self.stride}, padding={self.padding}, channels_per_tree={self.channels_per_tree}, "
            f"parametrization={self.parametrization!r}"
            + (f", estimator={self.estimator!r}" if self.estimator != "soft" else "")
            + (f", tau_gumbel={self.tau_gumbel}" if self.estimator == "gumbel" else "")
            + (f", grad_factor={self.grad_factor}" if self.grad_factor != 1.0 else "")
        )


__all__ = ["MAX_DEPTH", "LogicConv2d"]
