"""Convolutions of bits: the receptive-field geometry and the training arithmetic of the convolutional layers.

Every output position ``(y', x')`` of a convolution reads the window of input rows ``y'*sh - ph + dy`` and columns
``x'*sw - pw + dx`` (``dy < kh``, ``dx < kw``); a row or column outside the image is padding (docs/FORMAT.md's
geometry). Three computations run over those windows:

* :func:`tree_conv`: a tree of relaxed two-input gates per output channel (``LogicConv2d``). The fused CPU kernel of
  :mod:`bitlogic.ops.conv_kernels` runs it where it applies; the torch path here is the reference: one gather of
  every tree's leaves at every position from the zero-padded input, then one :func:`bitlogic.ops.logic.gates` call per
  tree level over a batch of ``B*H'*W'`` positions (so the gate kernels of that module do the arithmetic);
* :func:`table_inputs` / :func:`to_image`: the ``n`` inputs of one table per output channel at every position
  (``LUTConv2d``), laid out as the ``[positions, tables * n]`` inputs of :mod:`bitlogic.ops.lut`'s lookups;
* :func:`binary_conv`: the XNOR-popcount convolution, inputs and weights read as +-1, padding ``pad_value``
  (``BinaryConv2d``): the integer dot product of every window.

Leaves are int64 ``[O, L, 3]`` rows ``(c, dy, dx)``: input channel ``c`` at offset ``(dy, dx)`` of the window. The
gathered values are feature-major ``[O*L, H'*W'*B]`` (positions outer, samples inner), the layout the gate kernels
read without a copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional

from bitlogic.gpu import tree_conv as tree_kernels
from bitlogic.gpu import use_kernels
from bitlogic.ops.binary import quantized_sign
from bitlogic.ops.conv_kernels import fused_tree_conv
from bitlogic.ops.estimators import straight_through
from bitlogic.ops.logic import gates

Pair = tuple[int, int]


def as_pair(value: int | Sequence[int], name: str, owner: str, minimum: int) -> Pair:
    """``(value, value)`` for an int, the two ints of a pair otherwise; ``ValueError`` naming ``owner`` and ``name``
    for anything else or for a value below ``minimum``."""
    items = (value, value) if isinstance(value, int) else tuple(value)
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def output_size(size: Pair, kernel_size: Pair, stride: Pair, padding: Pair = (0, 0)) -> Pair:
    """``(H', W')`` of a window of ``kernel_size`` moved by ``stride`` over an ``(H, W)`` image padded by
    ``padding`` on each side: ``floor((H + 2*ph - kh) / sh) + 1``. ``ValueError`` where the window does not fit."""
    out = []
    for axis, (n, k, s, p) in enumerate(zip(size, kernel_size, stride, padding)):
        if k > n + 2 * p:
            name = ("height", "width")[axis]
            raise ValueError(f"kernel {name} {k} is larger than the padded input {name} {n} + 2*{p}")
        out.append((n + 2 * p - k) // s + 1)
    return out[0], out[1]


def random_leaves(
    in_channels: int, out_channels: int, leaves: int, kernel_size: Pair, channels_per_tree: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """int64 ``[out_channels, leaves, 3]`` rows ``(c, dy, dx)``: each output channel draws ``channels_per_tree``
    distinct input channels (all of them when there are fewer), and each of its leaves one of those channels and a
    window offset, uniformly (LogicTreeNet's random receptive-field connections)."""
    chosen = min(channels_per_tree, in_channels)
    pools = torch.rand(out_channels, in_channels, generator=generator).argsort(dim=1)[:, :chosen]  # [O, chosen]
    pick = torch.randint(0, chosen, (out_channels, leaves), generator=generator)
    channel = pools.gather(1, pick)
    dy = torch.randint(0, kernel_size[0], (out_channels, leaves), generator=generator)
    dx = torch.randint(0, kernel_size[1], (out_channels, leaves), generator=generator)
    return torch.stack([channel, dy, dx], dim=-1)


def field_index(
    input_shape: tuple[int, int, int], leaves: Tensor, kernel_size: Pair, stride: Pair, padding: Pair
) -> Tensor:
    """int64 ``[O*L, H'*W']``: where leaf ``(o, l)`` reads at each output position, as an index into the flattened
    zero-padded input ``[C, H + 2*ph, W + 2*pw]``."""
    _, height, width = input_shape
    rows, cols = output_size((height, width), kernel_size, stride, padding)
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    ys = torch.arange(rows, device=leaves.device) * stride[0]  # each window's top row in padded coordinates
    xs = torch.arange(cols, device=leaves.device) * stride[1]
    corner = (ys.unsqueeze(1) * padded_w + xs.unsqueeze(0)).reshape(-1)  # [P]
    offset = (leaves[..., 0] * padded_h + leaves[..., 1]) * padded_w + leaves[..., 2]  # [O, L]
    return offset.reshape(-1, 1) + corner.unsqueeze(0)


def _check_image(x: Tensor, where: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{where}: expected an image batch [B, C, H, W], got {list(x.shape)}")


def _check_leaves(leaves: Tensor, where: str) -> None:
    if leaves.dim() != 3 or leaves.shape[2] != 3 or leaves.dtype.is_floating_point:
        raise ValueError(f"{where}: leaves must be integer [O, L, 3] rows (c, dy, dx), got {list(leaves.shape)} "
                         f"{leaves.dtype}")


def gather_fields(x: Tensor, leaves: Tensor, kernel_size: Pair, stride: Pair, padding: Pair) -> Tensor:
    """Feature-major ``[O*L, H'*W'*B]``: the value every leaf reads at every position (positions outer, samples
    inner), 0 where it reads padding. One gather (``index_select``, whose backward adds in a fixed order) from the
    zero-padded input ``x`` ``[B, C, H, W]``."""
    batch = x.shape[0]
    index = field_index((x.shape[1], x.shape[2], x.shape[3]), leaves, kernel_size, stride, padding)
    if padding != (0, 0):
        x = functional.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    xt = x.reshape(batch, -1).t().contiguous()  # [C*Hp*Wp, B]
    return torch.index_select(xt, 0, index.reshape(-1)).view(index.shape[0], -1)


def to_image(values: Tensor, batch: int, size: Pair) -> Tensor:
    """``[B, O, H', W']`` from per-position outputs ``[H'*W'*B, O]`` (positions outer, samples inner), as a view
    where the layout allows."""
    out = values.reshape(size[0] * size[1], batch, values.shape[1]).permute(1, 2, 0)
    return out.reshape(batch, values.shape[1], size[0], size[1])


_PAIRS: dict[tuple[torch.device, int], Tensor] = {}


def _pair_wires(count: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Wires ``(2g, 2g + 1)`` of ``count`` gates: a tree level reads its inputs in pairs. Both are views of one
    buffer kept per size and device, so that the GPU launchers find their cached index again on every call."""
    key = (device, count)
    pairs = _PAIRS.get(key)
    if pairs is None:
        pairs = _PAIRS[key] = torch.arange(2 * count, device=device).view(count, 2)
    return pairs[:, 0], pairs[:, 1]


def tree_conv(
    x: Tensor, leaves: Tensor, coef: Tensor, kernel_size: Pair, stride: Pair, padding: Pair
) -> Tensor:
    """``[B, O, H', W']``: a tree of relaxed gates per output channel, shared over the positions of ``x``
    ``[B, C, H, W]``.

    ``leaves`` int64 ``[O, 2**d, 3]`` (channel ``c < C``, offsets ``dy < kh``, ``dx < kw``) and ``coef``
    ``[O, 2**d - 1, 4]``: gate ``g`` of a tree computes ``c0 + c1*a + (c2 + c3*a)*b`` from nodes ``2g`` and ``2g + 1``
    and is node ``2**d + g`` (nodes ``0 .. 2**d`` are the leaves, read 0 on padding); the output is the last node.
    So gates ``0 .. 2**(d-1)`` are the first level, reading the leaves in pairs, the next level reads their outputs
    in pairs, and so on to the root. The fused CPU kernel runs it where it applies, the CUDA kernels of
    ``cuda/tree_conv.cu`` on a GPU (see :mod:`bitlogic.gpu` for when); otherwise one gather and one
    :func:`bitlogic.ops.logic.gates` call per level (differentiable in ``x`` and ``coef``, any dtype and device).
    """
    _check_image(x, "tree_conv")
    _check_leaves(leaves, "tree_conv")
    trees, width = leaves.shape[0], leaves.shape[1]
    if width < 2 or width & (width - 1):
        raise ValueError(f"tree_conv: a tree has 2**depth leaves (depth >= 1), got {width}")
    if tuple(coef.shape) != (trees, width - 1, 4):
        raise ValueError(f"tree_conv: coef must be [{trees}, {width - 1}, 4] for leaves {list(leaves.shape)}, got "
                         f"{list(coef.shape)}")
    fused = fused_tree_conv(x, leaves, coef, kernel_size, stride, padding)
    if fused is not None:
        return fused
    if tree_kernels.supports(x, leaves, coef) and use_kernels(x.device):
        out: Tensor = tree_kernels.kernel_tree_conv(x, leaves, coef, kernel_size, stride, padding)
        return out
    size = output_size((x.shape[2], x.shape[3]), kernel_size, stride, padding)
    nodes = gather_fields(x, leaves, kernel_size, stride, padding).t()  # [P*B, O*L], a view of feature-major
    level_width = width
    while level_width > 1:
        half = level_width // 2
        first = width - level_width  # the level's first gate: the levels before it hold width - level_width gates
        ia, ib = _pair_wires(trees * half, x.device)
        nodes = gates(nodes, ia, ib, coef[:, first : first + half].reshape(trees * half, 4))
        level_width = half
    return to_image(nodes, x.shape[0], size)


def table_inputs(x: Tensor, leaves: Tensor, kernel_size: Pair, stride: Pair, padding: Pair) -> Tensor:
    """``[H'*W'*B, O*n]``: the ``n`` inputs of every output channel's table at every position of ``x``
    ``[B, C, H, W]`` (0 where one reads padding), contiguous, as :func:`bitlogic.ops.lut.lookup` reads them; rows
    positions outer, samples inner (:func:`to_image` puts the outputs back)."""
    _check_image(x, "table_inputs")
    _check_leaves(leaves, "table_inputs")
    return gather_fields(x, leaves, kernel_size, stride, padding).t().contiguous()


def binary_conv(
    x: Tensor, weight: Tensor, stride: Pair, padding: Pair, pad_value: float, quantizer: str = "ste_sign"
) -> Tensor:
    """``[B, O, H', W']``: the integer dot products ``sum_j s_j * sign(w_j)`` of every window of ``x``
    ``[B, C, H, W]`` with ``weight`` ``[O, C, kh, kw]``, where ``s = sign(2x - 1)`` (+1 for a bit 1, -1 for a 0) and
    a padded input is ``pad_value`` (1: LCE's one padding; 0: padded inputs add nothing). Gradients pass both signs
    through the estimator ``quantizer``. The sums of +-1 are integers (exact in float32 up to 2**24 terms), rounded to
    them whatever the convolution algorithm."""
    _check_image(x, "binary_conv")
    inputs = quantized_sign(2 * x - 1, quantizer)
    if padding != (0, 0):
        inputs = functional.pad(inputs, (padding[1], padding[1], padding[0], padding[0]), value=float(pad_value))
    weights = quantized_sign(weight, quantizer).to(inputs.dtype)
    out = functional.conv2d(inputs, weights, stride=stride)
    # Some convolution algorithms round on the way (Winograd and FFT convolutions, which cuDNN may pick): the dot of
    # +-1 values is an integer, restored exactly here, the gradient passing unchanged.
    return straight_through(out.detach().round(), out)


__all__ = [
    "Pair",
    "as_pair",
    "binary_conv",
    "field_index",
    "gather_fields",
    "output_size",
    "random_leaves",
    "table_inputs",
    "to_image",
    "tree_conv",
]
