"""The launches of ``cuda/tree_conv.cu``: tree convolutions (``LogicConv2d``), forward and backward, and the autograd
function :func:`kernel_tree_conv` around them.

``x`` is ``[B, C, H, W]`` (float32 or bfloat16 with float32 coefficients and sums, or float64 throughout, for
gradcheck), zero-padded; ``leaves`` is integer ``[O, L = 2^d, 3]`` of ``(c, dy, dx)``, ``coef`` ``[O, L - 1, 4]``; the
output ``[B, O, H', W']`` with ``H' = (H + 2*ph - kh) // sh + 1``. At every position, channel ``o``'s nodes
``0 .. L`` are its leaves' inputs (0 in the padding) and gate ``g`` stores ``c0 + c1*a + (c2 + c3*a)*b`` of
``a = nodes[2g]``, ``b = nodes[2g + 1]`` as ``nodes[L + g]``; the output is the last node.

The backward pass recomputes the trees from ``x`` and skips positions whose output gradient is 0. It writes the
leaves' gradients (``[B, O, L, H'*W']`` in the sums' dtype: L times the output's size) and gathers them per input
element through a reverse index of the leaves by channel; the coefficient gradient is summed per block of positions
and then over the blocks, in a fixed order. No atomics: the same bits on every run.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from bitlogic.gpu._kernels import Arg, Backend, backend_for, blocks, i32, i64, pointer

MODULE = "tree_conv.cu"
THREADS = 256
MAX_GRID_Y = 65535
#: Blocks of positions per output channel in the backward pass: enough to fill a GPU for a few channels, few enough
#: that each thread sums several positions before the block's reduction. A function of the sizes alone, so the
#: summation order (and the bits) do not depend on the device.
MAX_CHUNKS = 64
#: Grid cap of the input-gradient gather; its threads stride over the elements beyond it.
MAX_BLOCKS = 65535
MAX_DEPTH = 8
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float64: "f64"}

Pair = tuple[int, int]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the coefficients and sums for activations of ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class Geometry:
    """The shape of one tree convolution: ``x`` ``[B, C, H, W]``, trees of ``2^depth`` leaves, ``O`` outputs."""

    batch: int
    channels: int
    height: int
    width: int
    kernel_size: Pair
    stride: Pair
    padding: Pair
    out_channels: int
    depth: int

    @property
    def leaves(self) -> int:
        return 1 << self.depth

    @property
    def output_size(self) -> Pair:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (self.height + 2 * ph - kh) // sh + 1, (self.width + 2 * pw - kw) // sw + 1

    def args(self) -> list[Arg]:
        """The kernels' shape arguments (``BITLOGIC_TREE_SHAPE_PARAMS`` of the source)."""
        (sh, sw), (ph, pw) = self.stride, self.padding
        ho, wo = self.output_size
        ints = (self.channels, self.height, self.width, sh, sw, ph, pw, ho, wo, self.out_channels)
        return [*(i32(v) for v in ints), i64(self.batch)]


def _pair(value: int | tuple[int, ...], what: str, low: int) -> Pair:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in pair):
        raise ValueError(f"tree_conv: {what} must be an int or a pair of ints >= {low}, got {value!r}")
    return pair[0], pair[1]


def geometry(x: Tensor, leaves: Tensor, coef: Tensor, kernel_size: int | tuple[int, ...],
             stride: int | tuple[int, ...], padding: int | tuple[int, ...]) -> Geometry:
    """The :class:`Geometry` of these tensors, after checking their shapes and dtypes (not the leaves' values: see
    :func:`leaf_table`); raises ``ValueError`` naming what was expected."""
    if x.dim() != 4 or x.dtype not in DTYPES:
        raise ValueError(f"tree_conv: x must be a [B, C, H, W] float32, bfloat16 or float64 tensor, got a "
                         f"{x.dim()}-D {x.dtype} tensor")
    if leaves.dim() != 3 or leaves.shape[2] != 3 or leaves.dtype.is_floating_point or leaves.dtype == torch.bool:
        raise ValueError(f"tree_conv: leaves must be an integer [O, 2^depth, 3] tensor of (c, dy, dx), got a "
                         f"{leaves.dtype} tensor of shape {list(leaves.shape)}")
    out_channels, count = leaves.shape[0], leaves.shape[1]
    depth = count.bit_length() - 1
    if count != 1 << depth or not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"tree_conv: trees of {count} leaves; expected 2^depth leaves, depth 1..{MAX_DEPTH}")
    if coef.shape != (out_channels, count - 1, 4) or not coef.dtype.is_floating_point:
        raise ValueError(f"tree_conv: coef must be a floating [{out_channels}, {count - 1}, 4] tensor for "
                         f"{list(leaves.shape)} leaves, got a {coef.dtype} tensor of shape {list(coef.shape)}")
    if leaves.device != x.device or coef.device != x.device:
        raise ValueError(f"tree_conv: x, leaves and coef must be on one device, got {x.device}, {leaves.device} "
                         f"and {coef.device}")
    batch, channels, height, width = x.shape
    found = Geometry(batch, channels, height, width, _pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1),
                     _pair(padding, "padding", 0), out_channels, depth)
    if min(found.output_size) < 1 or min(channels, height, width) < 1:
        raise ValueError(f"tree_conv: a {found.kernel_size[0]}x{found.kernel_size[1]} kernel with padding "
                         f"{found.padding} does not fit a {channels}x{height}x{width} input")
    return found


@dataclass
class LeafTable:
    """The int32 leaves ``[O, L, 3]`` of a convolution over ``channels`` inputs and, once a backward pass needed it,
    their reverse index by channel."""

    flat: Tensor
    channels: int
    offsets: Tensor | None = None
    readers: Tensor | None = None

    def reverse(self) -> tuple[Tensor, Tensor]:
        if self.offsets is None or self.readers is None:
            self.offsets, self.readers = reverse_index(self.flat, self.channels)
        return self.offsets, self.readers


def reverse_index(leaves: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    """For each input channel, the leaves that read it: int32 ``offsets [channels + 1]`` and ``readers [O*L]``.

    ``readers[offsets[c]:offsets[c + 1]]`` holds, in increasing order, every flat leaf ``r = o*L + j`` with
    ``leaves[o, j, 0] == c``.
    """
    ordered, order = torch.sort(leaves.reshape(-1, 3)[:, 0].to(torch.int64), stable=True)
    # searchsorted rather than bincount: bincount on a GPU reads the maximum back to the host, a sync per call.
    bounds = torch.arange(channels + 1, dtype=torch.int64, device=leaves.device)
    return torch.searchsorted(ordered, bounds).to(torch.int32), order.to(torch.int32)


# A LogicConv2d's leaves are a buffer changed only in place (which bumps its version counter): as for the gates'
# wires (bitlogic.gpu.logic), the checked int32 copy and its reverse index are kept per buffer, weakly, and reused
# while the version, the geometry and the input's channels are unchanged, saving a range check (a host sync), a
# conversion and a sort per layer and step.
_tables: WeakIdKeyDictionary = WeakIdKeyDictionary()


def leaf_table(leaves: Tensor, shape: Geometry) -> LeafTable:
    """The :class:`LeafTable` of ``leaves`` (cached per buffer); raises ``ValueError`` for a leaf outside the
    receptive field (``c < C``, ``dy < kh``, ``dx < kw``), which the kernels would otherwise read out of bounds."""
    owner = leaves._base if leaves._base is not None else leaves
    key = (owner._version, shape.channels, shape.kernel_size, leaves.storage_offset(), leaves.stride(),
           tuple(leaves.shape), leaves.device)
    found = _tables[owner] if owner in _tables else None
    if found is not None and found[0] == key:
        cached: LeafTable = found[1]
        return cached
    limits = (shape.channels, *shape.kernel_size)
    if leaves.numel() >= 2**31:
        raise ValueError(f"tree_conv: {leaves.numel()} leaf entries do not fit the kernels' 32-bit indices")
    if leaves.numel():
        low = leaves.reshape(-1, 3).amin(dim=0).tolist()
        high = leaves.reshape(-1, 3).amax(dim=0).tolist()
        for name, lo, hi, limit in zip(("channel", "dy", "dx"), low, high, limits):
            if lo < 0 or hi >= limit:
                raise ValueError(f"tree_conv: leaf {name} {lo if lo < 0 else hi} is outside 0..{limit - 1}")
    table = LeafTable(leaves.to(torch.int32).contiguous(), shape.channels)
    _tables[owner] = (key, table)
    return table


def _check_x(x: Tensor, shape: Geometry) -> None:
    if not x.is_contiguous() or tuple(x.shape) != (shape.batch, shape.channels, shape.height, shape.width):
        raise ValueError(f"tree_conv: x must be a contiguous {[shape.batch, shape.channels, shape.height, shape.width]}"
                         f" tensor, got {list(x.shape)}")


def _check_coef(coef: Tensor, x: Tensor, shape: Geometry) -> None:
    dtype = compute_dtype(x.dtype)
    if coef.dtype != dtype or not coef.is_contiguous() or coef.shape != (shape.out_channels, shape.leaves - 1, 4):
        raise ValueError(f"tree_conv: coef must be a contiguous [{shape.out_channels}, {shape.leaves - 1}, 4] {dtype}"
                         f" tensor for {x.dtype} inputs, got {coef.dtype} {list(coef.shape)}")


def forward(x: Tensor, table: LeafTable, coef: Tensor, shape: Geometry, backend: Backend) -> Tensor:
    """``[B, O, H', W']``: the trees at every position of the contiguous ``x``; ``coef`` is the contiguous
    ``[O, L - 1, 4]`` of :func:`compute_dtype`."""
    _check_x(x, shape)
    _check_coef(coef, x, shape)
    ho, wo = shape.output_size
    y = torch.empty(shape.batch, shape.out_channels, ho, wo, dtype=x.dtype, device=x.device)
    if y.numel():
        backend.launch(
            MODULE, f"tree_conv_forward_{DTYPES[x.dtype]}",
            (blocks(shape.batch * ho * wo, THREADS), min(shape.out_channels, MAX_GRID_Y), 1), (THREADS, 1, 1),
            [pointer(x), pointer(table.flat), pointer(coef), pointer(y), *shape.args(), i32(shape.depth)],
        )
    return y


def chunks(shape: Geometry) -> int:
    """Blocks of positions per output channel of the backward pass."""
    ho, wo = shape.output_size
    return min(blocks(shape.batch * ho * wo, THREADS), MAX_CHUNKS)


def backward(x: Tensor, table: LeafTable, coef: Tensor, grad: Tensor, shape: Geometry, need_x: bool,
             need_coef: bool, backend: Backend) -> tuple[Tensor | None, Tensor | None]:
    """``(grad_x, grad_coef)`` for the contiguous output gradient ``grad`` ``[B, O, H', W']``: ``grad_x`` like
    ``x`` when ``need_x``, ``grad_coef`` ``[O, L - 1, 4]`` in :func:`compute_dtype` when ``need_coef`` (else
    ``None``)."""
    _check_x(x, shape)
    _check_coef(coef, x, shape)
    ho, wo = shape.output_size
    out_shape = (shape.batch, shape.out_channels, ho, wo)
    if tuple(grad.shape) != out_shape or grad.dtype != x.dtype or not grad.is_contiguous() or grad.device != x.device:
        raise ValueError(f"tree_conv: the output gradient must be a contiguous {list(out_shape)} {x.dtype} tensor on "
                         f"{x.device}, got {list(grad.shape)} {grad.dtype} on {grad.device}")
    dtype, k, n = compute_dtype(x.dtype), 4 * (shape.leaves - 1), chunks(shape)
    suffix = DTYPES[x.dtype]
    if not grad.numel():  # no positions (an empty batch): nothing to launch
        zeros = torch.zeros(shape.out_channels, shape.leaves - 1, 4, dtype=dtype, device=x.device)
        return (torch.zeros_like(x) if need_x else None), (zeros if need_coef else None)
    # Every entry of these is written (0 for skipped positions), so none needs clearing.
    leaf_grad = torch.empty(shape.batch, shape.out_channels, shape.leaves, ho * wo, dtype=dtype, device=x.device) \
        if need_x else None
    partial = torch.empty(shape.out_channels, n, k, dtype=dtype, device=x.device) if need_coef else None
    grad_x = torch.empty_like(x) if need_x else None
    grad_coef = torch.empty(shape.out_channels, shape.leaves - 1, 4, dtype=dtype, device=x.device) \
        if need_coef else None
    if not (need_x or need_coef):
        return None, None
    backend.launch(
        MODULE, f"tree_conv_backward_{suffix}", (n, min(shape.out_channels, MAX_GRID_Y), 1), (THREADS, 1, 1),
        [pointer(x), pointer(table.flat), pointer(coef), pointer(grad), _optional(leaf_grad), _optional(partial),
         *shape.args(), i32(shape.depth)],
    )
    if partial is not None and grad_coef is not None:
        count = shape.out_channels * k
        backend.launch(
            MODULE, f"tree_conv_reduce_coef_{'f64' if dtype == torch.float64 else 'f32'}",
            (blocks(count, THREADS), 1, 1), (THREADS, 1, 1),
            [pointer(partial), pointer(grad_coef), i64(count), i32(n), i32(k)],
        )
    if leaf_grad is not None and grad_x is not None:
        offsets, readers = table.reverse()
        backend.launch(
            MODULE, f"tree_conv_backward_input_{suffix}", (min(blocks(x.numel(), THREADS), MAX_BLOCKS), 1, 1),
            (THREADS, 1, 1),
            [pointer(table.flat), pointer(leaf_grad), pointer(offsets), pointer(readers), pointer(grad_x),
             *shape.args(), i32(shape.leaves)],
        )
    return grad_x, grad_coef


def _optional(tensor: Tensor | None) -> ctypes.c_void_p:
    # A null pointer tells the backward kernel that this output is not wanted.
    return pointer(tensor) if tensor is not None else ctypes.c_void_p(None)


class KernelTreeConv(torch.autograd.Function):
    """A tree convolution on the kernels of ``cuda/tree_conv.cu`` through ``backend``; differentiable in ``x`` and
    ``coef``. Deterministic: no atomics."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, leaves: Tensor, coef: Tensor, kernel_size: int | tuple[int, ...],
                stride: int | tuple[int, ...], padding: int | tuple[int, ...], backend: Backend) -> Tensor:
        shape = geometry(x, leaves, coef, kernel_size, stride, padding)
        table = leaf_table(leaves, shape)
        x = x.detach().contiguous()
        coef_c = coef.detach().to(compute_dtype(x.dtype)).contiguous()
        ctx.save_for_backward(x, coef_c)
        ctx.table, ctx.shape, ctx.backend, ctx.coef_dtype = table, shape, backend, coef.dtype
        return forward(x, table, coef_c, shape, backend)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, None, None, None, None]:
        x, coef = ctx.saved_tensors
        need_x, _, need_coef = ctx.needs_input_grad[:3]
        grad_x, grad_coef = backward(x, ctx.table, coef, grad.to(x.dtype).contiguous(), ctx.shape, need_x,
                                     need_coef, ctx.backend)
        if grad_coef is not None:
            grad_coef = grad_coef.to(ctx.coef_dtype)
        return grad_x, None, grad_coef, None, None, None, None


def kernel_tree_conv(x: Tensor, leaves: Tensor, coef: Tensor, kernel_size: int | tuple[int, ...],
                     stride: int | tuple[int, ...], padding: int | tuple[int, ...],
                     backend: Backend | None = None) -> Tensor:
    """:class:`KernelTreeConv`: ``[B, O, H', W']`` of ``x`` ``[B, C, H, W]``, ``leaves`` ``[O, 2^d, 3]`` and
    ``coef`` ``[O, 2^d - 1, 4]`` (see the module's docs); ``backend`` defaults to the kernels of ``x``'s GPU. Raises
    ``ValueError`` for shapes that do not fit and for leaves outside the receptive field."""
    out: Tensor = KernelTreeConv.apply(x, leaves, coef, kernel_size, stride, padding,
                                       backend or backend_for(x.device))
    return out


def supports(x: Tensor, leaves: Tensor, coef: Tensor) -> bool:
    """Whether the kernels take these tensors: a 4-D float32/bfloat16/float64 ``x`` on a GPU, integer leaves and
    floating coefficients beside it."""
    return (
        x.device.type == "cuda"
        and x.dim() == 4
        and x.dtype in DTYPES
        and leaves.device == x.device
        and coef.device == x.device
        and not leaves.dtype.is_floating_point
        and coef.dtype.is_floating_point
    )


__all__ = ["Geometry", "KernelTreeConv", "LeafTable", "backward", "chunks", "compute_dtype", "forward", "geometry",
           "kernel_tree_conv", "leaf_table", "reverse_index", "supports"]
