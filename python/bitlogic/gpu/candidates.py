"""The launches of ``cuda/candidates.cu``: the candidate mix of learned wiring, forward and backward.

Each of ``R`` choices reads ``out[r] = sum_k w[r, k] * x[pool[r, k]]``. Activations and gradients are feature-major
(``[rows, batch]``, contiguous over the batch), float32 or bfloat16 with float32 weights and sums, or float64
throughout (for gradcheck). The pool is passed as its flat ``[R*K]`` indices (the order of ``pool.reshape(-1)``);
the input gradient reads it through a reverse index (each input's readers, one thread per input and sample, no
atomics), built once per pool and kept while the pool is unchanged. The autograd function around these launches,
and the rule for when they run, are :mod:`bitlogic.ops.logic`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from bitlogic.gpu._kernels import Backend, blocks, i32, i64, pointer

MODULE = "candidates.cu"
THREADS = 256
MAX_GRID_Y = 65535
#: Grid cap of the weight gradient; its warps stride over the pairs beyond it.
MAX_BLOCKS = 65535
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float64: "f64"}


def reverse_index(flat: Tensor, inputs: int) -> tuple[Tensor, Tensor]:
    """For each input, the pairs that read it: int32 ``offsets [inputs + 1]`` and ``readers [R*K]``.

    ``readers[offsets[i]:offsets[i + 1]]`` holds, in increasing order, every flat position ``p = r*K + k`` with
    ``flat[p] == i`` (a choice listing ``i`` twice among its candidates appears twice).
    """
    ordered, order = torch.sort(flat.reshape(-1).to(torch.int64), stable=True)
    # searchsorted rather than bincount: bincount on a GPU reads the maximum back to the host, a sync per call.
    bounds = torch.arange(inputs + 1, dtype=torch.int64, device=flat.device)
    return torch.searchsorted(ordered, bounds).to(torch.int32), order.to(torch.int32)


@dataclass
class Pool:
    """The int32 flat candidates of a layer over ``inputs`` inputs and, once a backward pass needed it, their
    reverse index."""

    flat: Tensor
    inputs: int
    offsets: Tensor | None = None
    readers: Tensor | None = None

    def reverse(self) -> tuple[Tensor, Tensor]:
        if self.offsets is None or self.readers is None:
            self.offsets, self.readers = reverse_index(self.flat, self.inputs)
        return self.offsets, self.readers


# A layer passes its candidates as a view (pool.reshape(-1)) of one buffer, whose contents change only through
# in-place writes, which bump the buffer's version counter. As for the gates' wires (bitlogic.gpu.logic), the
# converted pool and its reverse index are kept per buffer (weakly: a buffer that is gone takes its entry with it)
# and reused while the version and the view's geometry are unchanged, which saves a range check (a host sync), a
# conversion and a sort per layer and step.
_pools: WeakIdKeyDictionary = WeakIdKeyDictionary()


def pool(flat: Tensor, inputs: int) -> Pool:
    """The :class:`Pool` of the flat candidate indices ``flat`` over ``inputs`` inputs (cached per buffer); raises
    ``ValueError`` for an index outside ``0 .. inputs - 1``, which the kernels would otherwise read out of bounds,
    and for anything but a 1-D integer tensor."""
    if flat.dim() != 1 or flat.dtype.is_floating_point or flat.dtype == torch.bool:
        raise ValueError(f"mix_candidates: candidates must be a 1-D integer tensor, got a {flat.dim()}-D "
                         f"{flat.dtype} tensor")
    owner = flat._base if flat._base is not None else flat
    key = (owner._version, inputs, flat.storage_offset(), flat.stride(), tuple(flat.shape), flat.device)
    found = _pools[owner] if owner in _pools else None
    if found is not None and found[0] == key:
        cached: Pool = found[1]
        return cached
    if flat.numel() >= 2**31:
        raise ValueError(f"mix_candidates: {flat.numel()} candidates do not fit the kernels' 32-bit indices")
    if flat.numel():
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high >= inputs:
            raise ValueError(f"mix_candidates: candidate {low if low < 0 else high} is outside the {inputs} inputs")
    result = Pool(flat.to(torch.int32).contiguous(), inputs)
    _pools[owner] = (key, result)
    return result


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the weights and sums for activations of ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_x(xt: Tensor, candidates: Pool) -> None:
    if xt.dim() != 2 or xt.dtype not in DTYPES or not xt.is_contiguous():
        raise ValueError(f"mix_candidates: x must be a contiguous feature-major [inputs, batch] float32, bfloat16 "
                         f"or float64 tensor, got a {xt.dim()}-D {xt.dtype} tensor")
    if xt.shape[0] != candidates.inputs:
        raise ValueError(f"mix_candidates: x has {xt.shape[0]} inputs, the candidates index {candidates.inputs}")
    if xt.device != candidates.flat.device:
        raise ValueError(f"mix_candidates: x and the candidates must be on one device, got {xt.device} and "
                         f"{candidates.flat.device}")


def _check_weights(xt: Tensor, candidates: Pool, w: Tensor, what: str) -> tuple[int, int]:
    """``(rows, K)`` of ``w``, after checking that ``xt``, ``candidates`` and ``w`` fit one launch."""
    _check_x(xt, candidates)
    if w.dim() != 2 or w.dtype != compute_dtype(xt.dtype) or not w.is_contiguous():
        raise ValueError(f"mix_candidates: {what} must be a contiguous [rows, K] {compute_dtype(xt.dtype)} tensor "
                         f"for {xt.dtype} inputs, got a {w.dim()}-D {w.dtype} tensor")
    if w.numel() != candidates.flat.numel():
        raise ValueError(f"mix_candidates: {what} {list(w.shape)} do not match the {candidates.flat.numel()} "
                         "candidates")
    if w.device != xt.device:
        raise ValueError(f"mix_candidates: x and the {what} must be on one device, got {xt.device} and {w.device}")
    return w.shape[0], w.shape[1]


def _check_grad(grad: Tensor, xt: Tensor, rows: int) -> None:
    if grad.shape != (rows, xt.shape[1]) or grad.dtype != xt.dtype or not grad.is_contiguous() \
            or grad.device != xt.device:
        raise ValueError(f"mix_candidates: the output gradient must be a contiguous [{rows}, {xt.shape[1]}] "
                         f"{xt.dtype} tensor on {xt.device}, got {list(grad.shape)} {grad.dtype} on {grad.device}")


def forward(xt: Tensor, candidates: Pool, w: Tensor, backend: Backend) -> Tensor:
    """Feature-major ``[R, B]`` mixes of the feature-major inputs ``xt`` ``[inputs, B]``: row ``r`` is
    ``sum_k w[r, k] * xt[flat[r*K + k]]``, zero weights skipped; ``w`` is the contiguous ``[R, K]`` of
    :func:`compute_dtype`."""
    rows, k = _check_weights(xt, candidates, w, "weights")
    batch = xt.shape[1]
    out = torch.empty(rows, batch, dtype=xt.dtype, device=xt.device)
    if out.numel():
        backend.launch(
            MODULE, f"candidate_forward_{DTYPES[xt.dtype]}", (blocks(batch, THREADS), min(rows, MAX_GRID_Y), 1),
            (THREADS, 1, 1), [pointer(xt), pointer(candidates.flat), pointer(w), pointer(out), i32(rows), i32(k),
                              i64(batch)],
        )
    return out


def backward_weights(xt: Tensor, candidates: Pool, grad: Tensor, k: int, backend: Backend) -> Tensor:
    """``[R, K]`` gradient of the weights (in :func:`compute_dtype`): ``sum_b grad[r, b] * xt[flat[r*K + k], b]``
    for the feature-major ``[R, B]`` output gradient ``grad``."""
    pairs = candidates.flat.numel()
    if k < 1 or pairs % k:
        raise ValueError(f"mix_candidates: {pairs} candidates are not rows of K = {k}")
    rows = pairs // k
    _check_x(xt, candidates)
    _check_grad(grad, xt, rows)
    gw = torch.zeros(rows, k, dtype=compute_dtype(xt.dtype), device=xt.device)
    if xt.shape[1] and pairs:
        backend.launch(
            MODULE, f"candidate_backward_weights_{DTYPES[xt.dtype]}",
            (min(blocks(pairs, THREADS // 32), MAX_BLOCKS), 1, 1), (THREADS, 1, 1),
            [pointer(xt), pointer(candidates.flat), pointer(grad), pointer(gw), i64(pairs), i32(k),
             i64(xt.shape[1])],
        )
    return gw


def backward_input(xt: Tensor, candidates: Pool, v: Tensor, grad: Tensor, backend: Backend) -> Tensor:
    """Feature-major ``[inputs, B]`` gradient of the inputs: ``sum v[r, k] * grad[r]`` over the pairs that read each
    input, for the backward weights ``v`` (the contiguous ``[R, K]`` of :func:`compute_dtype`; the soft weights of
    a straight-through estimator, or the forward weights) and the feature-major ``[R, B]`` output gradient."""
    rows, k = _check_weights(xt, candidates, v, "backward weights")
    _check_grad(grad, xt, rows)
    inputs, batch = xt.shape
    gx = torch.empty(inputs, batch, dtype=xt.dtype, device=xt.device)
    if gx.numel():
        offsets, readers = candidates.reverse()
        backend.launch(
            MODULE, f"candidate_backward_input_{DTYPES[xt.dtype]}",
            (blocks(batch, THREADS), min(inputs, MAX_GRID_Y), 1), (THREADS, 1, 1),
            [pointer(v), pointer(grad), pointer(offsets), pointer(readers), pointer(gx), i32(inputs), i32(k),
             i64(batch)],
        )
    return gx


def supports(xt: Tensor, flat: Tensor, *weights: Tensor) -> bool:
    """Whether the kernels take these tensors: 2-D float32/bfloat16/float64 ``xt`` on a GPU, integer candidates
    and floating weights (and gradients) beside it."""
    return (
        xt.device.type == "cuda"
        and xt.dim() == 2
        and xt.dtype in DTYPES
        and flat.device == xt.device
        and not flat.dtype.is_floating_point
        and all(w.device == xt.device and w.dtype.is_floating_point for w in weights)
    )


__all__ = ["Pool", "backward_input", "backward_weights", "compute_dtype", "forward", "pool", "reverse_index",
           "supports"]
