"""BinaryLinear and Sign: larq-style binarized dense layers.

A binary layer is ``BinaryLinear`` followed by ``torch.nn.BatchNorm1d`` (optional) and ``Sign``:

* ``BinaryLinear`` reads input bits as +-1 (``sign(2x - 1)``), binarizes its latent weights with ``sign`` (latent
  weights stay clipped to [-1, 1]) and outputs the integer dot product ``y = 2*matches - in_features``;
* ``BatchNorm1d`` shifts and scales ``y``;
* ``Sign`` turns the result back into bits: 1 where it is ``>= 0``.

The exported layer is the XNOR-popcount ``matches >= threshold``: ``bitlogic.compile`` finds each output's integer
threshold by running the batch norm and sign of ``eval()`` on every possible match count, so the two agree exactly.
Gradients pass ``sign`` through a straight-through estimator chosen by ``quantizer``.

On a GPU, ``BinaryLinear`` runs the bit-packed XNOR-popcount kernels of :mod:`bitlogic.gpu.binary` for float32 and
bfloat16 (see :mod:`bitlogic.gpu` for when they are used): the same outputs and gradients as the torch operations.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

Quantizer = Literal["ste_sign", "approx_sign", "swish_sign"]
QUANTIZERS = ("ste_sign", "approx_sign", "swish_sign")
SWISH_BETA = 5.0


def _sign(x: Tensor) -> Tensor:
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _sign_grad(x: Tensor, quantizer: str) -> Tensor:
    """d sign / dx as each estimator defines it."""
    if quantizer == "ste_sign":  # identity inside [-1, 1]
        return (x.abs() <= 1).to(x.dtype)
    if quantizer == "approx_sign":  # derivative of the piecewise quadratic of Bi-Real Net
        return (2 - 2 * x.abs()).clamp(min=0)
    b = SWISH_BETA  # derivative of SignSwish 2*sigmoid(b*x)*(1 + b*x*(1 - sigmoid(b*x))) - 1
    return b * (2 - b * x * torch.tanh(b * x / 2)) / (1 + torch.cosh(b * x))


class _QuantizedSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, quantizer: str) -> Tensor:
        ctx.save_for_backward(x)
        ctx.quantizer = quantizer  # type: ignore[attr-defined]
        return _sign(x)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * _sign_grad(x, ctx.quantizer), None  # type: ignore[attr-defined]


def quantized_sign(x: Tensor, quantizer: str = "ste_sign") -> Tensor:
    """``+1`` where ``x >= 0`` else ``-1``, with the gradient of ``quantizer``."""
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}; got {quantizer!r}")
    if not torch.is_grad_enabled() or not x.requires_grad:
        return _sign(x)
    out: Tensor = _QuantizedSign.apply(x, quantizer)
    return out


class BinaryLinear(nn.Module):
    """Binarized dense layer: ``y = sign(2x - 1) @ sign(W).T``, the integer ``2*matches - in_features``."""

    def __init__(self, in_features: int, out_features: int, quantizer: Quantizer = "ste_sign") -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"BinaryLinear: sizes must be positive, got {in_features} and {out_features}")
        if quantizer not in QUANTIZERS:
            raise ValueError(f"BinaryLinear: quantizer must be one of {', '.join(QUANTIZERS)}; got {quantizer!r}")
        self.in_features, self.out_features = in_features, out_features
        self.quantizer: Quantizer = quantizer
        bound = math.sqrt(6.0 / (in_features + out_features))  # Glorot uniform, as larq's dense default
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))

    def weight_bits(self) -> Tensor:
        """bool ``[out, in]``: True where the binarized weight is +1."""
        return self.weight.detach() >= 0

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"BinaryLinear: expected input [batch, {self.in_features}], got {list(x.shape)}")
        if self.training:
            with torch.no_grad():
                self.weight.clamp_(-1.0, 1.0)
        if x.device.type == "cuda":
            from bitlogic.gpu import binary, use_kernels

            if binary.supports(x, self.weight) and use_kernels(x.device):
                return binary.binary_linear(x, self.weight, self.quantizer)
        inputs = quantized_sign(2 * x - 1, self.quantizer)
        weights = quantized_sign(self.weight, self.quantizer).to(inputs.dtype)
        return inputs @ weights.t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, quantizer={self.quantizer!r}"


class Sign(nn.Module):
    """Bits from real values: 1 where ``x >= 0``, else 0 (``(sign(x) + 1) / 2``), gradient by ``quantizer``."""

    def __init__(self, quantizer: Quantizer = "ste_sign") -> None:
        super().__init__()
        if quantizer not in QUANTIZERS:
            raise ValueError(f"Sign: quantizer must be one of {', '.join(QUANTIZERS)}; got {quantizer!r}")
        self.quantizer: Quantizer = quantizer

    def forward(self, x: Tensor) -> Tensor:
        return (quantized_sign(x, self.quantizer) + 1) * 0.5

    def extra_repr(self) -> str:
        return f"quantizer={self.quantizer!r}"


__all__ = ["BinaryLinear", "QUANTIZERS", "Sign", "quantized_sign"]
