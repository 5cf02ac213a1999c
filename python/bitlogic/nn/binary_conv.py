"""BinaryConv2d: the XNOR-popcount convolution of larq's QuantConv2D (LCE's BConv2D).

A binary convolution block is ``BinaryConv2d`` followed by ``torch.nn.BatchNorm2d`` (optional) and ``Sign``:

* ``BinaryConv2d`` reads input bits as +-1 (``sign(2x - 1)``), pads them with ``pad_value`` (1: LCE's one padding,
  0: zero padding, padded inputs add nothing), binarizes its latent weights with ``sign`` (clipped to [-1, 1] while
  training) and outputs the integer dot product of every window, ``y = sum_j s_j * w_j``;
* ``BatchNorm2d`` shifts and scales ``y`` per channel; ``Sign`` turns the result back into bits (1 where ``>= 0``).

The exported ``conv_binary`` layer is ``dot >= threshold`` per output channel: ``bitlogic.compile`` runs the batch
norm and sign of ``eval()`` on every integer dot in ``[-n, n]`` (``n = C*kh*kw``) and flips the weight rows of
channels whose batch-norm scale is negative (:func:`bitlogic.nn.binary.sign_thresholds`), so the two agree exactly.
Gradients pass both signs through the straight-through estimator ``quantizer`` (:mod:`bitlogic.ops.binary`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.errors import ExportError
from bitlogic.nn._conv import check_input, check_input_shape, positive_int, window
from bitlogic.nn._export import LayerPart, Shape, spatial_part
from bitlogic.nn.binary import Sign, sign_thresholds
from bitlogic.ops.binary import Quantizer, check_quantizer
from bitlogic.ops.conv import binary_conv
from bitlogic.ops.inputs import float_inputs
from bitlogic.spec import ConvBinaryLayer


class BinaryConv2d(nn.Module):
    """Binarized convolution: ``y = conv2d(pad(sign(2x - 1), pad_value), sign(W))``, the integer dot of each window.

    ``weight`` is ``[out_channels, in_channels, kh, kw]`` (latent, Glorot uniform as larq's default); input
    ``[B, C, H, W]`` bits, output ``[B, O, H', W']`` integers in ``[-n, n]``, ``n = C*kh*kw``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        pad_value: float = 1.0,
        quantizer: Quantizer = "ste_sign",
    ) -> None:
        super().__init__()
        owner = "BinaryConv2d"
        self.in_channels = positive_int(owner, "in_channels", in_channels)
        self.out_channels = positive_int(owner, "out_channels", out_channels)
        self.kernel_size, self.stride, self.padding = window(owner, kernel_size, stride, padding)
        if pad_value not in (0, 1) or isinstance(pad_value, bool):
            raise ValueError(f"{owner}: pad_value must be 1.0 (one padding) or 0.0 (zero padding), got {pad_value!r}")
        check_quantizer(quantizer, f"{owner}: ")
        self.pad_value = float(pad_value)
        self.quantizer: Quantizer = quantizer
        kh, kw = self.kernel_size
        bound = math.sqrt(6.0 / ((in_channels + out_channels) * kh * kw))  # Glorot uniform over the receptive field
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw).uniform_(-bound, bound))

    @property
    def fan_in(self) -> int:
        """Inputs of each window: ``C*kh*kw``."""
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def weight_bits(self) -> Tensor:
        """bool ``[O, C*kh*kw]``: True where the binarized weight is +1 (``weight[o, c, dy, dx]`` flattened)."""
        return (self.weight.detach() >= 0).reshape(self.out_channels, -1)

    def forward(self, x: Tensor) -> Tensor:
        check_input("BinaryConv2d", x, self.in_channels, self.kernel_size, self.stride, self.padding)
        if self.training:
            with torch.no_grad():
                self.weight.clamp_(-1.0, 1.0)
        x = float_inputs(x, self.weight.dtype, "BinaryConv2d")
        return binary_conv(x, self.weight, self.stride, self.padding, self.pad_value, self.quantizer)

    def export_spatial(self, following: Sequence[nn.Module], input_shape: Shape) -> LayerPart:
        """The ``conv_binary`` layer of the network file, folded from this layer and the ``BatchNorm2d`` (optional)
        and ``Sign`` that must follow it: thresholds on the dot product."""
        check_input_shape(input_shape, self.in_channels)
        norm: nn.BatchNorm2d | None = None
        if following and isinstance(following[0], nn.BatchNorm2d):
            norm = following[0]
            if norm.num_features != self.out_channels:
                raise ExportError(f"followed by a BatchNorm2d of {norm.num_features} features")
        consumed = 0 if norm is None else 1
        sign = following[consumed] if len(following) > consumed else None
        if not isinstance(sign, Sign):
            pooled = " (pool after Sign: a pool of the dot products is no pool of bits)" if isinstance(
                sign, (nn.MaxPool2d, nn.AvgPool2d)) else ""
            raise ExportError(f"must be followed by [BatchNorm2d and] Sign, so that its outputs are bits{pooled}")
        n = self.fan_in
        dots = torch.arange(-n, n + 1)  # every integer dot of a window (the parity depends on the padding)
        per_channel = None if norm is None else _per_channel(norm)
        flip, steps = sign_thresholds(dots, self.out_channels, per_channel, sign, self.weight, "dot product")
        weights = (self.weight_bits().cpu() ^ flip.unsqueeze(1)).numpy().astype(np.uint8)
        thresholds = (steps - n).numpy().astype(np.int32)  # step u of the grid is the dot u - n
        return spatial_part(
            lambda: ConvBinaryLayer(input_shape, weights, thresholds, self.kernel_size, self.stride, self.padding,
                                    int(self.pad_value)),
            consumed=consumed + 1,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, pad_value={self.pad_value}, quantizer={self.quantizer!r}"
        )


def _per_channel(norm: nn.BatchNorm2d) -> Callable[[Tensor], Tensor]:
    """``norm`` on a ``[V, O]`` grid of dots, each value a one-pixel image of ``O`` channels."""
    return lambda dots: norm(dots[:, :, None, None])[:, :, 0, 0]


__all__ = ["BinaryConv2d"]
