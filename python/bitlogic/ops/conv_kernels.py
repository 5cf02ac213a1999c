"""The fused CPU kernel of a tree convolution (``LogicConv2d``), when one applies.

:class:`FusedTreeConv` runs ``bitlogic._native.tree_conv_forward`` / ``tree_conv_backward`` (``rust/bitlogic-train``,
module ``tree_conv``): the forward pass reads each receptive field in place and evaluates the trees without the
``[B*H'*W', O*2^d]`` gather of the torch path; the backward pass keeps nothing but ``x``, recomputes the trees and
skips the positions whose output gradient is exactly 0 (behind an OR / max pool, 3 of 4). The results equal
:func:`bitlogic.ops.conv.tree_conv`'s up to float rounding, and are the same bits for every thread count.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bitlogic._native import tree_conv_backward, tree_conv_forward
from bitlogic.ops._threads import kernel_threads

#: The deepest tree the kernels take (the file format's conv_gates limit); deeper trees run on the torch path.
MAX_DEPTH = 8


def _pair(values: tuple[int, int]) -> tuple[int, int]:
    first, second = values
    return int(first), int(second)


class FusedTreeConv(torch.autograd.Function):
    """The tree convolution of float32 CPU tensors on the fused kernels; differentiable in ``x`` and ``coef``.

    ``x`` is ``[B, C, H, W]``, ``leaves`` integer ``[O, 2^d, 3]`` rows ``(c, dy, dx)``, ``coef`` ``[O, 2^d - 1, 4]``;
    the output is ``[B, O, H', W']`` (zero padding)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        leaves: Tensor,
        coef: Tensor,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> Tensor:
        x = x.detach().contiguous()
        leaves_np = leaves.detach().to(torch.int64).contiguous().numpy()
        coef = coef.detach().contiguous()
        geometry = (_pair(kernel_size), _pair(stride), _pair(padding))
        out = tree_conv_forward(x.numpy(), leaves_np, coef.numpy(), *geometry, threads=kernel_threads())
        ctx.save_for_backward(x, coef)
        ctx.leaves, ctx.geometry = leaves_np, geometry
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, None, None, None]:
        x, coef = ctx.saved_tensors
        need_x, _, need_coef = ctx.needs_input_grad[:3]
        if not (need_x or need_coef):
            return None, None, None, None, None, None
        g = grad.to(torch.float32).contiguous().numpy()
        kernel_size, stride, padding = ctx.geometry
        grad_x, grad_coef = tree_conv_backward(x.numpy(), ctx.leaves, coef.numpy(), g, kernel_size, stride, padding,
                                               need_x, threads=kernel_threads())
        return (torch.from_numpy(grad_x) if grad_x is not None else None, None,
                torch.from_numpy(grad_coef) if need_coef else None, None, None, None)


def fused_applies(x: Tensor, leaves: Tensor, coef: Tensor) -> bool:
    """Whether :class:`FusedTreeConv` takes these tensors: float32 ``x`` ``[B, C, H, W]`` and ``coef``
    ``[O, 2^d - 1, 4]`` on the CPU with ``1 <= d <= MAX_DEPTH``, integer ``leaves`` ``[O, 2^d, 3]`` on the CPU."""
    if x.dim() != 4 or leaves.dim() != 3 or coef.dim() != 3:
        return False
    per_tree = leaves.shape[1]
    return (
        x.dtype == torch.float32
        and coef.dtype == torch.float32
        and not leaves.dtype.is_floating_point
        and all(t.device.type == "cpu" for t in (x, leaves, coef))
        and 2 <= per_tree <= 2**MAX_DEPTH
        and per_tree & (per_tree - 1) == 0
    )


def fused_tree_conv(
    x: Tensor,
    leaves: Tensor,
    coef: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> Tensor | None:
    """The output of :func:`bitlogic.ops.conv.tree_conv` from the fused kernel, or ``None`` where none applies
    (see :func:`fused_applies`). Arguments the kernel takes but cannot use (a leaf outside the channels or the
    window, a ``coef`` of the wrong shape, a window larger than the padded input) raise ``bitlogic.InputError``."""
    if not fused_applies(x, leaves, coef):
        return None
    out: Tensor = FusedTreeConv.apply(x, leaves, coef, kernel_size, stride, padding)
    return out


__all__ = ["MAX_DEPTH", "FusedTreeConv", "fused_applies", "fused_tree_conv"]
