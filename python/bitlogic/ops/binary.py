"""Binarized dense layers (larq-style): the sign estimators and where a layer's XNOR-popcount product runs.

``sign`` is the forward pass of every binarization (``+1`` where ``x >= 0``, else ``-1``); its gradient is a
straight-through estimator chosen by the quantizer (:data:`QUANTIZERS`). The product of a ``BinaryLinear`` is
``sign(2x - 1) @ sign(W).T``, the integer ``2*matches - in_features``. Two implementations give the same outputs and
gradients bit for bit: :func:`linear_torch` (any device and dtype, autograd derives the backward pass) and
:class:`KernelLinear`, whose forward pass is the bit-packed XNOR-popcount GEMM of ``cuda/binary_linear.cu`` and
whose backward pass repeats autograd's torch matmuls in the same order. :func:`linear` picks one.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from bitlogic.gpu import binary as kernels
from bitlogic.gpu import use_kernels
from bitlogic.gpu._kernels import Backend, backend_for

Quantizer = Literal["ste_sign", "approx_sign", "swish_sign"]
QUANTIZERS = ("ste_sign", "approx_sign", "swish_sign")
SWISH_BETA = 5.0


def sign(x: Tensor) -> Tensor:
    """``+1`` where ``x >= 0``, else ``-1``, in ``x``'s dtype (no gradient of its own)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def sign_grad(x: Tensor, quantizer: str) -> Tensor:
    """d sign / dx as each estimator defines it."""
    if quantizer == "ste_sign":  # identity inside [-1, 1]
        return (x.abs() <= 1).to(x.dtype)
    if quantizer == "approx_sign":  # derivative of the piecewise quadratic of Bi-Real Net
        return (2 - 2 * x.abs()).clamp(min=0)
    b = SWISH_BETA  # derivative of SignSwish 2*sigmoid(b*x)*(1 + b*x*(1 - sigmoid(b*x))) - 1
    return b * (2 - b * x * torch.tanh(b * x / 2)) / (1 + torch.cosh(b * x))


def check_quantizer(quantizer: str, where: str = "") -> None:
    """Raises ``ValueError`` naming the quantizers for one that is not among them (``where`` prefixes the text)."""
    if quantizer not in QUANTIZERS:
        raise ValueError(f"{where}quantizer must be one of {', '.join(QUANTIZERS)}; got {quantizer!r}")


class QuantizedSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, quantizer: str) -> Tensor:
        ctx.save_for_backward(x)
        ctx.quantizer = quantizer
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * sign_grad(x, ctx.quantizer), None


def quantized_sign(x: Tensor, quantizer: str = "ste_sign") -> Tensor:
    """``+1`` where ``x >= 0`` else ``-1``, with the gradient of ``quantizer``."""
    check_quantizer(quantizer)
    if not torch.is_grad_enabled() or not x.requires_grad:
        return sign(x)
    out: Tensor = QuantizedSign.apply(x, quantizer)
    return out


def linear_torch(x: Tensor, weight: Tensor, quantizer: str) -> Tensor:
    """``[B, out]``: ``sign(2x - 1) @ sign(weight).T`` with the estimator ``quantizer``, in torch."""
    inputs = quantized_sign(2 * x - 1, quantizer)
    weights = quantized_sign(weight, quantizer).to(inputs.dtype)
    return inputs @ weights.t()


class KernelLinear(torch.autograd.Function):
    """:func:`linear_torch` with the forward pass on the kernels of ``cuda/binary_linear.cu`` through ``backend``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, quantizer: str, backend: Backend) -> Tensor:
        y = kernels.forward(x.detach(), weight.detach(), backend)
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
            weights = sign(weight).to(x.dtype)
            grad_x = (grad.mm(weights) * sign_grad(u, quantizer)) * 2
        if need_weight:
            grad_weight = grad.t().mm(sign(u)).to(weight.dtype) * sign_grad(weight, quantizer)
        return grad_x, grad_weight, None, None


def binary_linear(x: Tensor, weight: Tensor, quantizer: str = "ste_sign", backend: Backend | None = None) -> Tensor:
    """:func:`linear_torch` on the CUDA kernels, for float32/bfloat16 ``x [B, in]`` and ``weight [out, in]``;
    ``backend`` defaults to the kernels of ``x``'s GPU."""
    check_quantizer(quantizer)
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"binary_linear: expected x [batch, in] and weight [out, in], got {list(x.shape)} and "
                         f"{list(weight.shape)}")
    if x.dtype not in kernels.DTYPES or weight.dtype not in kernels.DTYPES:
        raise TypeError(f"binary_linear: x and weight must be float32 or bfloat16, got {x.dtype} and {weight.dtype}")
    if weight.device != x.device:
        raise ValueError(f"binary_linear: x is on {x.device} but weight is on {weight.device}")
    out: Tensor = KernelLinear.apply(x, weight, quantizer, backend or backend_for(x.device))
    return out


def linear(x: Tensor, weight: Tensor, quantizer: str) -> Tensor:
    """``sign(2x - 1) @ sign(weight).T``: the CUDA kernels where they apply (see :mod:`bitlogic.gpu`), else
    :func:`linear_torch`; the same outputs and gradients either way."""
    if kernels.supports(x, weight) and use_kernels(x.device):
        return binary_linear(x, weight, quantizer)
    return linear_torch(x, weight, quantizer)


__all__ = [
    "QUANTIZERS",
    "SWISH_BETA",
    "KernelLinear",
    "QuantizedSign",
    "Quantizer",
    "binary_linear",
    "check_quantizer",
    "linear",
    "linear_torch",
    "quantized_sign",
    "sign",
    "sign_grad",
]
