"""The launches of ``cuda/lut_layer.cu``: the table lookup of a LUTLayer and its backward passes.

``selected`` is the ``[B, L*n]`` sample-major matrix of the inputs each table reads (float32 or bfloat16),
``tables`` the float32 ``[L, 2**n]`` entries. The forward pass is one kernel (torch needs about six passes) and
returns the int32 address of every (sample, table) for the backward passes: one scatters the output gradient into
the addressed entries, the other gathers, per input, the EFD gradient of the addressed entry from the caller's
``[L, 2**n, n]`` table of them. The autograd function around these launches, the EFD math and the rule for when they
run are :mod:`bitlogic.ops.lut`'s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bitlogic.gpu._kernels import Backend, blocks, i32, i64, pointer

MODULE = "lut_layer.cu"
THREADS = 256
#: Grid cap of every launch; the kernels stride over the rest, so any batch fits.
MAX_BLOCKS = 65535
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}


def _grid(count: int) -> tuple[int, int, int]:
    return (min(blocks(count, THREADS), MAX_BLOCKS), 1, 1)


def forward(selected: Tensor, tables: Tensor, n: int, ste: bool, backend: Backend) -> tuple[Tensor, Tensor]:
    """``[B, L]`` outputs and int32 ``[B, L]`` addresses of contiguous ``selected`` and ``tables``.

    The outputs are the bits ``entry > 0`` in ``selected``'s dtype (``ste``) or the soft bits
    ``(clamp(entry, -1, 1) + 1) / 2`` in the tables' float32.
    """
    batch = selected.shape[0]
    width = tables.shape[0]
    out_dtype = selected.dtype if ste else tables.dtype
    out = torch.empty(batch, width, dtype=out_dtype, device=selected.device)
    address = torch.empty(batch, width, dtype=torch.int32, device=selected.device)
    if out.numel():
        backend.launch(
            MODULE, f"lut_forward_{DTYPES[selected.dtype]}_{DTYPES[out_dtype]}", _grid(batch * width),
            (THREADS, 1, 1), [pointer(selected), pointer(tables), pointer(out), pointer(address), i32(width), i32(n),
                              i64(batch), i32(int(ste))],
        )
    return out, address


def backward_tables(grad: Tensor, address: Tensor, size: int, n: int, backend: Backend) -> Tensor:
    """float32 ``[L, size]``: the contiguous output gradient ``grad`` summed into the addressed entries.

    Accumulated in float32 whatever the gradient's dtype (torch's index_add would sum bfloat16 in bfloat16).
    """
    batch, width = address.shape
    gt = torch.zeros(width, size, dtype=torch.float32, device=grad.device)
    if grad.numel():
        backend.launch(
            MODULE, f"lut_backward_tables_{DTYPES[grad.dtype]}", _grid(batch * width), (THREADS, 1, 1),
            [pointer(grad), pointer(address), pointer(gt), i32(width), i32(n), i64(batch)],
        )
    return gt


def backward_input(grad: Tensor, address: Tensor, per_address: Tensor, dtype: torch.dtype,
                   backend: Backend) -> Tensor:
    """``[B, L*n]`` of ``dtype``: ``grad[b, l] * per_address[l, address[b, l], j]`` for input ``j`` of table ``l``.

    ``per_address`` is the contiguous float32 ``[L, 2**n, n]`` EFD gradient of every (table, address) pair.
    """
    batch, width = address.shape
    n = per_address.shape[2]
    gs = torch.empty(batch, width * n, dtype=dtype, device=grad.device)
    if gs.numel():
        backend.launch(
            MODULE, f"lut_backward_input_{DTYPES[grad.dtype]}_{DTYPES[dtype]}", _grid(gs.numel()), (THREADS, 1, 1),
            [pointer(grad), pointer(address), pointer(per_address), pointer(gs), i32(width), i32(n), i64(batch)],
        )
    return gs


def problem(selected: Tensor, tables: Tensor, n: int) -> str | None:
    """Why the kernels cannot take these tensors for tables of ``n`` inputs (``None`` when they can), whatever their
    device."""
    if selected.dtype not in DTYPES:
        return f"selected must be float32 or bfloat16, got {selected.dtype}"
    if tables.dtype != torch.float32:
        return f"tables must be float32, got {tables.dtype}"
    if tables.dim() != 2 or tables.shape[1] != 1 << n:
        return f"tables must be [L, {1 << n}] for n = {n}, got {list(tables.shape)}"
    if selected.dim() != 2 or selected.shape[1] != tables.shape[0] * n:
        return f"selected must be [batch, {tables.shape[0] * n}] (L*n), got {list(selected.shape)}"
    if tables.device != selected.device:
        return f"selected and tables must be on one device, got {selected.device} and {tables.device}"
    return None


__all__ = ["backward_input", "backward_tables", "forward", "problem"]
