"""LUTConv2d: a convolution whose kernel is one n-input lookup table per output channel (a convolutional DWN layer).

Each output channel owns one table of ``2**n`` real entries whose ``n`` inputs are leaves of the window (an input
channel at an offset of the ``kh x kw`` window, drawn at random as :class:`bitlogic.nn.LogicConv2d` draws its
leaves); the same table runs at every position. It trains exactly as :class:`bitlogic.nn.LUTLayer` does, on the
``B*H'*W'`` windows as a batch: the ``"hard"`` estimator's boolean lookup with straight-through entries and
Extended Finite Difference input gradients, or the relaxed ``"soft"`` / ``"gumbel"`` tables. In ``eval()`` a table
outputs ``entry > 0`` at the address of its input bits (padded inputs read 0), the network file's ``conv_luts``
layer exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.nn._conv import check_input, check_input_shape, positive_int, window
from bitlogic.nn._export import LayerPart, Shape, spatial_part
from bitlogic.nn.lut import check_table_options, efd_weights, table_outputs
from bitlogic.ops.conv import random_leaves, table_inputs, to_image
from bitlogic.ops.estimators import Estimator
from bitlogic.ops.inputs import float_inputs
from bitlogic.ops.lut import efd_matrix
from bitlogic.spec import ConvLutLayer


class LUTConv2d(nn.Module):
    """``out_channels`` tables of ``n`` inputs over the ``kernel_size`` windows of ``in_channels``.

    Args:
        kernel_size, stride, padding: the window, its step and the zero padding on each side (ints or pairs).
        n: inputs per table (1..8).
        channels_per_tree: the input channels a table reads: each draws that many distinct channels (all of them
            when ``in_channels`` is smaller) and each input one of them and a window offset, uniformly.
        alpha, beta, ste, clamp_luts, estimator, temperature: as for :class:`bitlogic.nn.LUTLayer`.

    The buffer ``leaves`` (int64 ``[O, n, 3]``: channel, row and column offset of each table input; input ``j`` is
    address bit ``j``) and the parameter ``tables`` (``[O, 2**n]``) are the state_dict. Input ``[B, C, H, W]`` bits
    (or values in [0, 1] for the relaxed estimators), output ``[B, O, H', W']``.
    """

    leaves: Tensor
    efd: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        n: int = 6,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 1,
        channels_per_tree: int = 2,
        alpha: float | None = None,
        beta: float | None = None,
        ste: bool = True,
        clamp_luts: bool = True,
        estimator: Estimator = "hard",
        temperature: float = 0.25,
    ) -> None:
        super().__init__()
        owner = "LUTConv2d"
        self.in_channels = positive_int(owner, "in_channels", in_channels)
        self.out_channels = positive_int(owner, "out_channels", out_channels)
        self.kernel_size, self.stride, self.padding = window(owner, kernel_size, stride, padding)
        self.channels_per_tree = positive_int(owner, "channels_per_tree", channels_per_tree)
        check_table_options(owner, n, estimator, ste, temperature)
        self.n = n
        self.estimator: Estimator = estimator
        self.temperature = float(temperature)
        self.alpha, self.beta = efd_weights(n, alpha, beta)
        self.ste, self.clamp_luts = bool(ste), bool(clamp_luts)
        self.register_buffer("leaves", random_leaves(in_channels, out_channels, n, self.kernel_size, channels_per_tree))
        self.tables = nn.Parameter(torch.rand(out_channels, 1 << n) * 2 - 1)
        self.register_buffer("efd", efd_matrix(n, self.alpha, self.beta), persistent=False)

    def truth_tables(self) -> Tensor:
        """The boolean tables of ``eval()``: bool ``[O, 2**n]``, entry ``a`` for address ``sum(x_j << j)``."""
        return self.tables.detach() > 0

    def forward(self, x: Tensor) -> Tensor:
        size = check_input("LUTConv2d", x, self.in_channels, self.kernel_size, self.stride, self.padding)
        if self.training and self.clamp_luts:
            with torch.no_grad():
                self.tables.clamp_(-1.0, 1.0)
        x = float_inputs(x, self.tables.dtype, "LUTConv2d")
        selected = table_inputs(x, self.leaves, self.kernel_size, self.stride, self.padding)  # [P*B, O*n]
        estimator = self.estimator if self.training else "hard"
        out = table_outputs(selected, self.tables, self.efd, estimator, self.temperature, self.ste or not self.training)
        return to_image(out, x.shape[0], size)

    def export_spatial(self, following: Sequence[nn.Module], input_shape: Shape) -> LayerPart:
        """The ``conv_luts`` layer of the network file over an input image of ``input_shape``: the leaves and the
        boolean tables of ``eval()``."""
        check_input_shape(input_shape, self.in_channels)
        leaves = self.leaves.cpu().numpy().astype(np.uint32)
        tables = self.truth_tables().cpu().numpy().astype(np.uint8)
        return spatial_part(lambda: ConvLutLayer(input_shape, leaves, tables, self.kernel_size, self.stride,
                                                 self.padding))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, n={self.n}, "
            f"stride={self.stride}, padding={self.padding}, channels_per_tree={self.channels_per_tree}"
            + ("" if self.estimator == "hard" else f", estimator={self.estimator!r}")
        )


__all__ = ["LUTConv2d"]
