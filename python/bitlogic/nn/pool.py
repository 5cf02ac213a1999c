"""OrPool2d: max pooling that is an OR on bits, and the ``or_pool`` layer it (and ``nn.MaxPool2d`` on bits) exports.

While training the inputs are relaxed bits in [0, 1] and the pool is their maximum, whose gradient goes to the
largest input of each window; in ``eval()`` the inputs are bits and the maximum of 0/1 values is their OR, the
network file's ``or_pool`` layer exactly. No padding (the file's pool has none).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional

from bitlogic.errors import ExportError
from bitlogic.nn._conv import check_input, window
from bitlogic.nn._export import LayerPart, Shape, spatial_part
from bitlogic.ops.conv import Pair, as_pair
from bitlogic.spec import OrPoolLayer


class OrPool2d(nn.Module):
    """Max pooling over ``kernel_size`` windows moved by ``stride``: the OR of each window of bits in ``eval()``.
    Input ``[B, C, H, W]``, output ``[B, C, H', W']`` with ``H' = (H - kh) // sh + 1``."""

    def __init__(self, kernel_size: int | Sequence[int] = 2, stride: int | Sequence[int] = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride, _ = window("OrPool2d", kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"OrPool2d: expected input [batch, channels, height, width], got {list(x.shape)}")
        check_input("OrPool2d", x, x.shape[1], self.kernel_size, self.stride, (0, 0))
        return functional.max_pool2d(x, self.kernel_size, self.stride)

    def export_spatial(self, following: Sequence[nn.Module], input_shape: Shape) -> LayerPart:
        """The ``or_pool`` layer of the network file over an input image of ``input_shape``."""
        return or_pool_part(input_shape, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def or_pool_part(input_shape: Shape, kernel_size: Pair, stride: Pair) -> LayerPart:
    """The ``or_pool`` layer of a pool of bits over an image of ``input_shape``."""
    return spatial_part(lambda: OrPoolLayer(input_shape, kernel_size, stride))


def max_pool_part(module: nn.Module, input_shape: Shape) -> LayerPart:
    """``nn.MaxPool2d`` on bits is an OR pool; padding, dilation, ``ceil_mode`` and ``return_indices`` have no
    ``or_pool`` counterpart and are refused."""
    assert isinstance(module, nn.MaxPool2d)
    if module.padding not in (0, (0, 0)) or module.dilation not in (1, (1, 1)) or module.ceil_mode \
            or module.return_indices:
        raise ExportError("only MaxPool2d without padding, dilation, ceil_mode or return_indices exports (as an OR "
                          "pool of bits)")
    try:
        kernel = as_pair(module.kernel_size, "kernel_size", "MaxPool2d", 1)
        # MaxPool2d keeps stride=None as the kernel size already; an empty stride means the same.
        stride = as_pair(module.stride or module.kernel_size, "stride", "MaxPool2d", 1)
    except ValueError as error:
        raise ExportError(str(error)) from None
    return or_pool_part(input_shape, kernel, stride)


__all__ = ["OrPool2d", "max_pool_part", "or_pool_part"]
