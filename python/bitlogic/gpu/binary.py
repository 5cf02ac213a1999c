"""The launches of ``cuda/binary_linear.cu``: the bit-packed XNOR-popcount GEMM of a BinaryLinear's forward pass.

The forward pass packs the input bits ``2x - 1 >= 0`` and the weight bits ``W >= 0`` into 32-bit words and computes
``y = in_features - 2 * popcount(xbits ^ wbits)``: the integer ``sign(2x - 1) @ sign(W).T`` of
:class:`bitlogic.nn.BinaryLinear`, exactly. The backward pass is torch matmuls (:mod:`bitlogic.ops.binary`, which
also holds the autograd function and the rule for when these kernels run).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bitlogic.gpu._kernels import Backend, blocks, i32, i64, pointer

MODULE = "binary_linear.cu"
PACK_THREADS = 256  # 8 warps, one packed word per warp and step
MAX_PACK_BLOCKS = 4096  # the warps stride over the words beyond this
TILE = 32  # the GEMM's output tile is TILE x TILE, computed by a TILE x ROWS_PER_PASS block
ROWS_PER_PASS = 8
MAX_GRID_Y = 65535
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}


def pack(m: Tensor, weights: bool, backend: Backend) -> Tensor:
    """int32 ``[rows, ceil(cols / 32)]`` words of the bits of a 2-D float32/bfloat16 ``m``: ``W >= 0`` when
    ``weights``, else the input bits ``2x - 1 >= 0`` (in ``m``'s dtype). Bit ``k`` of word ``w`` is column
    ``32w + k``; bits past the last column are 0. (The words are uint32 to the kernels; torch has no such dtype.)
    """
    rows, cols = m.shape
    words = torch.empty(rows, -(-cols // 32), dtype=torch.int32, device=m.device)
    if words.numel():
        kind = "weight" if weights else "input"
        warps = PACK_THREADS // 32
        backend.launch(
            MODULE, f"binary_pack_{kind}_{DTYPES[m.dtype]}", (min(blocks(words.numel(), warps), MAX_PACK_BLOCKS), 1, 1),
            (PACK_THREADS, 1, 1), [pointer(m), pointer(words), i64(rows), i32(cols), i64(m.stride(0)),
                                   i64(m.stride(1))],
        )
    return words


def xnor_gemm(xw: Tensor, ww: Tensor, in_features: int, dtype: torch.dtype, backend: Backend) -> Tensor:
    """``[batch, out]`` of ``dtype``: ``in_features - 2 * popcount(xw[b] ^ ww[o])`` over the packed words."""
    batch, words = xw.shape
    outs = ww.shape[0]
    y = torch.empty(batch, outs, dtype=dtype, device=xw.device)
    if y.numel():
        backend.launch(
            MODULE, f"binary_gemm_{DTYPES[dtype]}", (blocks(outs, TILE), min(blocks(batch, TILE), MAX_GRID_Y), 1),
            (TILE, ROWS_PER_PASS, 1), [pointer(xw), pointer(ww), pointer(y), i64(batch), i32(outs), i32(words),
                                       i32(in_features)],
        )
    return y


def forward(x: Tensor, weight: Tensor, backend: Backend) -> Tensor:
    """``[B, out]`` of ``x``'s dtype: ``sign(2x - 1) @ sign(weight).T`` for ``x [B, in]`` and ``weight [out, in]``."""
    return xnor_gemm(pack(x, False, backend), pack(weight, True, backend), x.shape[1], x.dtype, backend)


def supports(x: Tensor, weight: Tensor) -> bool:
    """Whether the kernels take these tensors: 2-D float32/bfloat16 ``x`` and ``weight`` on one GPU, of
    matching width, outside CUDA autocast (which would make the pure-torch layer's matmul return autocast's dtype).
    """
    return (
        x.device.type == "cuda"
        and x.dim() == 2
        and weight.dim() == 2
        and x.dtype in DTYPES
        and weight.dtype in DTYPES
        and weight.device == x.device
        and x.shape[1] == weight.shape[1]
        and not torch.is_autocast_enabled()  # without an argument: CUDA autocast, on every supported torch
    )


__all__ = ["forward", "pack", "supports", "xnor_gemm"]
