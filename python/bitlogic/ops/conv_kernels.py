"""The fused CPU kernel of a tree convolution (``LogicConv2d``), when one applies."""

from __future__ import annotations

from torch import Tensor


def fused_tree_conv(
    x: Tensor,
    leaves: Tensor,
    coef: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> Tensor | None:
    """The output of :func:`bitlogic.ops.conv.tree_conv` from the fused kernel, or ``None`` where none applies."""
    return None


__all__ = ["fused_tree_conv"]
