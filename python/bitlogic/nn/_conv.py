"""What the convolutional layers share: the checks of their sizes, their inputs and their input images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from bitlogic.errors import ExportError
from bitlogic.nn._export import Shape
from bitlogic.ops.conv import Pair, as_pair, output_size


def positive_int(owner: str, name: str, value: object) -> int:
    """``value`` when it is a positive int; ``ValueError`` naming ``owner`` and the argument ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


def window(
    owner: str, kernel_size: int | Sequence[int], stride: int | Sequence[int], padding: int | Sequence[int] = 0
) -> tuple[Pair, Pair, Pair]:
    """``(kernel_size, stride, padding)`` as pairs (kernel and stride >= 1, padding >= 0), or ``ValueError`` naming
    ``owner`` and the argument."""
    return (as_pair(kernel_size, "kernel_size", owner, 1), as_pair(stride, "stride", owner, 1),
            as_pair(padding, "padding", owner, 0))


def check_input(owner: str, x: Tensor, channels: int, kernel_size: Pair, stride: Pair, padding: Pair) -> Pair:
    """The output size ``(H', W')`` of an input ``[B, channels, H, W]``; ``ValueError`` naming ``owner`` for another
    shape or for an image the window does not fit (padded)."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{owner}: expected input [batch, {channels}, height, width], got {list(x.shape)}")
    try:
        return output_size((x.shape[2], x.shape[3]), kernel_size, stride, padding)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


def check_input_shape(input_shape: Shape, channels: int) -> None:
    """Refuses, at export, an input image whose channels are not the layer's ``channels``."""
    if input_shape[0] != channels:
        raise ExportError(f"expects {channels} input channels, but its input image has shape {list(input_shape)}")


__all__ = ["check_input", "check_input_shape", "positive_int", "window"]
