"""LUTLayer on the GPU: the table lookup and its EFD backward of ``cuda/lut_layer.cu``.

The same contract as :class:`bitlogic.nn.lut._Lookup`: ``selected`` is the ``[B, L*n]`` sample-major matrix of the
inputs each table reads, ``tables`` the float32 ``[L, 2**n]`` entries and ``weights`` the ``[n, 2**n, 2**n]`` EFD
matrix; the outputs are the bits ``entry > 0`` in ``selected``'s dtype (``ste``) or the float32 soft bits
``(clamp(entry, -1, 1) + 1) / 2``. The forward pass is one kernel (torch needs about six passes) and saves the int32
address of every (sample, table) for the backward pass, which scatters the output gradient into the addressed
entries and gathers the EFD gradient of the addressed entry per input. That EFD gradient depends only on the table
and the address, so torch computes it once per step for all ``L * 2**n`` pairs (:func:`efd_gradients`, tiny).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bitlogic.gpu._kernels import Backend, backend_for, blocks, i32, i64, pointer
from bitlogic.nn.lut import MAX_ARITY, efd_gradients

MODULE = "lut_layer.cu"
THREADS = 256
#: Grid cap of every launch; the kernels stride over the rest, so any batch fits.
MAX_BLOCKS = 65535
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}


def _grid(count: int) -> tuple[int, int, int]:
    return (min(blocks(count, THREADS), MAX_BLOCKS), 1, 1)


class _KernelLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, selected: Tensor, tables: Tensor, weights: Tensor, ste: bool, backend: Backend) -> Tensor:
        batch = selected.shape[0]
        width, size = tables.shape
        n = weights.shape[0]
        x = selected.detach().contiguous()
        t = tables.detach().contiguous()
        out_dtype = x.dtype if ste else t.dtype  # as nn.lut._Lookup: soft bits come out in the tables' dtype
        out = torch.empty(batch, width, dtype=out_dtype, device=x.device)
        address = torch.empty(batch, width, dtype=torch.int32, device=x.device)
        if out.numel():
            backend.launch(
                MODULE, f"lut_forward_{DTYPES[x.dtype]}_{DTYPES[out_dtype]}", _grid(batch * width), (THREADS, 1, 1),
                [pointer(x), pointer(t), pointer(out), pointer(address), i32(width), i32(n), i64(batch),
                 i32(int(ste))],
            )
        ctx.save_for_backward(address, tables, weights)
        ctx.backend, ctx.selected_dtype, ctx.size = backend, x.dtype, size
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        address, tables, weights = ctx.saved_tensors
        backend: Backend = ctx.backend
        batch, width = address.shape
        n = weights.shape[0]
        g = grad.contiguous()
        suffix = DTYPES[g.dtype]
        need_selected, need_tables = ctx.needs_input_grad[:2]
        grad_selected = grad_tables = None
        if need_tables:
            # Accumulated in float32 whatever the gradient's dtype (torch's index_add would sum bfloat16 in bfloat16).
            gt = torch.zeros(width, ctx.size, dtype=torch.float32, device=g.device)
            if g.numel():
                backend.launch(
                    MODULE, f"lut_backward_tables_{suffix}", _grid(batch * width), (THREADS, 1, 1),
                    [pointer(g), pointer(address), pointer(gt), i32(width), i32(n), i64(batch)],
                )
            grad_tables = gt.to(tables.dtype)
        if need_selected:
            per_address = efd_gradients(tables.detach(), weights).to(torch.float32).contiguous()  # [L, 2**n, n]
            gs = torch.empty(batch, width * n, dtype=ctx.selected_dtype, device=g.device)
            if gs.numel():
                backend.launch(
                    MODULE, f"lut_backward_input_{suffix}_{DTYPES[ctx.selected_dtype]}", _grid(gs.numel()),
                    (THREADS, 1, 1),
                    [pointer(g), pointer(address), pointer(per_address), pointer(gs), i32(width), i32(n),
                     i64(batch)],
                )
            grad_selected = gs
        return grad_selected, grad_tables, None, None, None


def _problem(selected: Tensor, tables: Tensor, weights: Tensor) -> str | None:
    """Why the kernels cannot take these tensors (``None`` when they can), whatever their device."""
    if selected.dtype not in DTYPES:
        return f"selected must be float32 or bfloat16, got {selected.dtype}"
    if tables.dtype != torch.float32:
        return f"tables must be float32, got {tables.dtype}"
    if weights.dim() != 3 or not 1 <= weights.shape[0] <= MAX_ARITY:
        return f"weights must be an [n, 2**n, 2**n] EFD matrix with n in 1..{MAX_ARITY}, got {list(weights.shape)}"
    n = weights.shape[0]
    if tuple(weights.shape[1:]) != (1 << n, 1 << n):
        return f"weights must be an [n, 2**n, 2**n] EFD matrix, got {list(weights.shape)}"
    if tables.dim() != 2 or tables.shape[1] != 1 << n:
        return f"tables must be [L, {1 << n}] for n = {n}, got {list(tables.shape)}"
    if selected.dim() != 2 or selected.shape[1] != tables.shape[0] * n:
        return f"selected must be [batch, {tables.shape[0] * n}] (L*n), got {list(selected.shape)}"
    if tables.device != selected.device or weights.device != selected.device:
        return f"selected, tables and weights must be on one device, got {selected.device}, {tables.device}, " \
               f"{weights.device}"
    return None


def supports(selected: Tensor, tables: Tensor, weights: Tensor) -> bool:
    """Whether :func:`lut_lookup` takes these tensors: float32/bfloat16 ``selected`` on a GPU, float32 ``tables``
    and the EFD ``weights`` beside it, shaped as :class:`bitlogic.nn.LUTLayer` makes them."""
    return selected.device.type == "cuda" and _problem(selected, tables, weights) is None


def lut_lookup(selected: Tensor, tables: Tensor, weights: Tensor, ste: bool, backend: Backend | None = None) -> Tensor:
    """``[B, L]`` outputs of the tables at the addresses ``sum_j (selected[b, l*n + j] > 0.5) << j``.

    The outputs, their dtypes and the gradients (table entries and EFD input gradients) are those of
    :class:`bitlogic.nn.lut._Lookup`, except that the table gradient is summed in float32 for bfloat16 gradients
    too; ``backend`` defaults to the kernels of ``selected``'s GPU. Raises ``ValueError`` for tensors the kernels do
    not take.
    """
    problem = _problem(selected, tables, weights)
    if problem is not None:
        raise ValueError(f"lut_lookup: {problem}")
    out: Tensor = _KernelLookup.apply(selected, tables, weights, bool(ste), backend or backend_for(selected.device))
    return out


__all__ = ["lut_lookup", "supports"]
