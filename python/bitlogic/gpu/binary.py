"""BinaryLinear on the GPU: the bit-packed XNOR-popcount GEMM of ``cuda/binary_linear.cu``.

The forward pass packs the input bits ``2x - 1 >= 0`` and the weight bits ``W >= 0`` into 32-bit words and computes
``y = in_features - 2 * popcount(xbits ^ wbits)``: the integer ``sign(2x - 1) @ sign(W).T`` of
:class:`bitlogic.nn.BinaryLinear`, exactly. The backward pass is the one autograd derives for the pure-torch layer,
with the same straight-through estimators, computed with the same torch matmuls in the same order, so the two paths
give the same gradients bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bitlogic.gpu._kernels import Backend, backend_for, blocks, i32, i64, pointer
from bitlogic.nn.binary import QUANTIZERS, _sign, _sign_grad

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


class _BinaryLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, quantizer: str, backend: Backend) -> Tensor:
        xd, wd = x.detach(), weight.detach()
        y = xnor_gemm(pack(xd, False, backend), pack(wd, True, backend), x.shape[1], x.dtype, backend)
        ctx.save_for_backward(x, weight)
        ctx.quantizer = quantizer
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        # What autograd computes for quantized_sign(2 * x - 1) @ quantized_sign(W).to(x.dtype).T, step by step:
        # mm's backward (grad @ signs(W) and grad.T @ signs(u), the orientations torch picks for these layouts), the
        # dtype cast's backward, the estimators' grad * d sign/du, and the 2 of 2 * x last.
        x, weight = ctx.saved_tensors
        need_x, need_weight, _, _ = ctx.needs_input_grad
        quantizer: str = ctx.quantizer
        u = 2 * x - 1
        grad_x = grad_weight = None
        if need_x:
            weights = _sign(weight).to(x.dtype)
            grad_x = (grad.mm(weights) * _sign_grad(u, quantizer)) * 2
        if need_weight:
            grad_weight = grad.t().mm(_sign(u)).to(weight.dtype) * _sign_grad(weight, quantizer)
        return grad_x, grad_weight, None, None


def supports(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`binary_linear` takes these tensors: 2-D float32/bfloat16 ``x`` and ``weight`` on one GPU, of
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


def binary_linear(x: Tensor, weight: Tensor, quantizer: str = "ste_sign", backend: Backend | None = None) -> Tensor:
    """``[B, out]`` outputs ``sign(2x - 1) @ sign(weight).T`` in ``x``'s dtype, for ``x [B, in]`` and ``weight [out,
    in]``; differentiable in both with the straight-through estimator ``quantizer`` (see
    :func:`bitlogic.nn.binary.quantized_sign`). ``backend`` defaults to the kernels of ``x``'s GPU.
    """
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}; got {quantizer!r}")
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"binary_linear: expected x [batch, in] and weight [out, in], got {list(x.shape)} and "
                         f"{list(weight.shape)}")
    if x.dtype not in DTYPES or weight.dtype not in DTYPES:
        raise TypeError(f"binary_linear: x and weight must be float32 or bfloat16, got {x.dtype} and {weight.dtype}")
    if weight.device != x.device:
        raise ValueError(f"binary_linear: x is on {x.device} but weight is on {weight.device}")
    out: Tensor = _BinaryLinear.apply(x, weight, quantizer, backend or backend_for(x.device))
    return out


__all__ = ["binary_linear", "pack", "supports", "xnor_gemm"]
