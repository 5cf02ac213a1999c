"""BinaryLinear and Sign: larq-style binarized dense layers.

A binary layer is ``BinaryLinear`` followed by ``torch.nn.BatchNorm1d`` (optional) and ``Sign``:

* ``BinaryLinear`` reads input bits as +-1 (``sign(2x - 1)``), binarizes its latent weights with ``sign`` (latent
  weights stay clipped to [-1, 1]) and outputs the integer dot product ``y = 2*matches - in_features``;
* ``BatchNorm1d`` shifts and scales ``y``;
* ``Sign`` turns the result back into bits: 1 where it is ``>= 0``.

The exported layer is the XNOR-popcount ``matches >= threshold``: ``bitlogic.compile`` finds each output's integer
threshold by running the batch norm and sign of ``eval()`` on every possible match count, so the two agree exactly.
Gradients pass ``sign`` through a straight-through estimator chosen by ``quantizer``.

The sign estimators and the choice of kernels are :mod:`bitlogic.ops.binary`'s: on a GPU, ``BinaryLinear`` runs the
bit-packed XNOR-popcount kernels of :mod:`bitlogic.gpu.binary` for float32 and bfloat16 (see :mod:`bitlogic.gpu`
for when they are used), with the same outputs and gradients as the torch operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.errors import ExportError
from bitlogic.nn._export import LayerPart
from bitlogic.ops.binary import QUANTIZERS, Quantizer, check_quantizer, linear, quantized_sign
from bitlogic.ops.inputs import float_inputs
from bitlogic.spec import BinaryLayer


class BinaryLinear(nn.Module):
    """Binarized dense layer: ``y = sign(2x - 1) @ sign(W).T``, the integer ``2*matches - in_features``."""

    def __init__(self, in_features: int, out_features: int, quantizer: Quantizer = "ste_sign") -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"BinaryLinear: sizes must be positive, got {in_features} and {out_features}")
        check_quantizer(quantizer, "BinaryLinear: ")
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
        return linear(float_inputs(x, self.weight.dtype, "BinaryLinear"), self.weight, self.quantizer)

    def export_part(self, following: Sequence[nn.Module]) -> LayerPart:
        """The XNOR-popcount layer of the network file, folded from this layer and the ``BatchNorm1d`` (optional) and
        ``Sign`` that must follow it (see :func:`binary_thresholds`)."""
        norm: nn.BatchNorm1d | None = None
        if following and isinstance(following[0], nn.BatchNorm1d):
            norm = following[0]
            if norm.num_features != self.out_features:
                raise ExportError(f"followed by a BatchNorm1d of {norm.num_features} features")
        consumed = 0 if norm is None else 1
        sign = following[consumed] if len(following) > consumed else None
        if not isinstance(sign, Sign):
            raise ExportError("must be followed by [BatchNorm1d and] Sign, so that its outputs are bits")
        weights, thresholds = binary_thresholds(self, norm, sign)
        layer = BinaryLayer(weights=weights, thresholds=thresholds)
        return LayerPart(layer, self.in_features, self.out_features, consumed=consumed + 1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, quantizer={self.quantizer!r}"


class Sign(nn.Module):
    """Bits from real values: 1 where ``x >= 0``, else 0 (``(sign(x) + 1) / 2``), gradient by ``quantizer``."""

    def __init__(self, quantizer: Quantizer = "ste_sign") -> None:
        super().__init__()
        check_quantizer(quantizer, "Sign: ")
        self.quantizer: Quantizer = quantizer

    def forward(self, x: Tensor) -> Tensor:
        return (quantized_sign(x, self.quantizer) + 1) * 0.5

    def extra_repr(self) -> str:
        return f"quantizer={self.quantizer!r}"


def binary_thresholds(
    layer: BinaryLinear, norm: nn.BatchNorm1d | None, sign: Sign
) -> tuple[np.ndarray, np.ndarray]:
    """Folds ``layer -> norm -> sign`` into XNOR-popcount weight bits ``[O, I]`` and integer thresholds ``[O]`` on
    the match count ``m`` (the dot product is ``2m - I``; see :func:`sign_thresholds`)."""
    count = layer.in_features
    dots = 2 * torch.arange(count + 1) - count  # the dot product of every match count m = 0..I
    flip, thresholds = sign_thresholds(dots, layer.out_features, norm, sign, next(layer.parameters()), "match count")
    weights = layer.weight_bits().cpu() ^ flip.unsqueeze(1)
    return weights.numpy().astype(np.uint8), thresholds.numpy().astype(np.int32)


def sign_thresholds(
    dots: Tensor, outputs: int, norm: Callable[[Tensor], Tensor] | None, sign: Sign, like: Tensor, what: str
) -> tuple[Tensor, Tensor]:
    """Where the bits of ``sign(norm(dot))`` switch on, for every output: ``(flip, thresholds)``, bool and int64
    ``[outputs]``.

    ``dots`` are the ``K + 1`` values the dot product of an output can take, equally spaced and increasing; step ``u``
    of the grid is ``dots[u]``. Rather than solving ``gamma * (dot - mean) / sqrt(var + eps) + beta >= 0`` in real
    numbers (float rounding can move the answer by one), the eval() modules themselves run on every value (as
    ``[K + 1, outputs]``, in ``like``'s dtype and device; ``norm`` takes that shape). The bit is monotone in the dot,
    rising (threshold: the first step that gives 1, ``K + 1`` for none) or, when the batch-norm scale is negative,
    falling: then ``flip`` is set, and flipping the weights (which negates the dot: step ``u`` becomes ``K - u``)
    turns it into a rising one whose threshold is returned. Raises ``ExportError`` for an output whose bit is not
    monotone in the ``what`` (a NaN in the batch norm).
    """
    steps = dots.shape[0] - 1
    grid = dots.to(torch.float32).unsqueeze(1).expand(steps + 1, outputs).contiguous()
    with torch.no_grad():
        grid = grid.to(like.device, like.dtype)
        out = norm(grid) if norm is not None else grid
        bits = (sign(out) > 0.5).cpu()  # [K+1, O]
    rising = (bits[1:] >= bits[:-1]).all(dim=0)
    falling = (bits[1:] <= bits[:-1]).all(dim=0)
    if not bool((rising | falling).all()):
        bad = int((~(rising | falling)).nonzero()[0])
        raise ExportError(f"output {bad}: its bit is not monotone in the {what} (NaN in the batch norm?)")
    any_one = bits.any(dim=0)
    first_one = torch.where(any_one, bits.to(torch.int64).argmax(dim=0), steps + 1)
    last_one = steps - bits.flip(0).to(torch.int64).argmax(dim=0)
    flip = falling & ~rising  # strictly falling: count from the other end
    return flip, torch.where(flip, steps - last_one, first_one)


__all__ = ["BinaryLinear", "QUANTIZERS", "Quantizer", "Sign", "binary_thresholds", "quantized_sign", "sign_thresholds"]
