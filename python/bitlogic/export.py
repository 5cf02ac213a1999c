"""Exact export of a trained torch model to a Network (``bitlogic.compile``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from bitlogic.errors import ExportError
from bitlogic.network import Network
from bitlogic.nn.binary import BinaryLinear, Sign
from bitlogic.nn.encoders import DistributiveThermometer, Thermometer
from bitlogic.nn.group_sum import GroupSum
from bitlogic.nn.logic import LogicLayer
from bitlogic.nn.lut import LUTLayer
from bitlogic.spec import BinaryLayer, BitsEncoder, Encoder, GateLayer, Layer, LutLayer, ThresholdEncoder

__all__ = ["ExportError", "binary_thresholds", "compile_model"]

#: Modules that are the identity in eval() and are skipped.
_TRANSPARENT = (nn.Identity, nn.Dropout)


def _flatten(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_children():
        if isinstance(module, nn.Sequential):
            for sub_name, sub in _flatten(module):
                yield f"{name}.{sub_name}", sub
        else:
            yield name, module


def _where(name: str, module: nn.Module) -> str:
    return f"layer {name} ({type(module).__name__})"


def binary_thresholds(
    linear: BinaryLinear, norm: nn.BatchNorm1d | None, sign: Sign
) -> tuple[np.ndarray, np.ndarray]:
    """Folds ``linear -> norm -> sign`` into XNOR-popcount weight bits ``[O, I]`` and integer thresholds ``[O]``.

    Rather than solving ``gamma * (2m - I - mean) / sqrt(var + eps) + beta >= 0`` for ``m`` in real numbers (float
    rounding can move the answer by one), the eval() modules themselves run on every possible match count
    ``m = 0..I``; the output is monotone in ``m``, rising (threshold = first 1) or, when the batch-norm scale is
    negative, falling, which flipping the weight bits turns into a rising one.
    """
    count = linear.in_features
    matches = torch.arange(count + 1, dtype=torch.float32)
    dot = (2 * matches - count).unsqueeze(1).expand(count + 1, linear.out_features).contiguous()
    with torch.no_grad():
        param = next(linear.parameters())
        dot = dot.to(param.device, param.dtype)
        out = norm(dot) if norm is not None else dot
        bits = (sign(out) > 0.5).cpu()  # [I+1, O]
    rising = (bits[1:] >= bits[:-1]).all(dim=0)
    falling = (bits[1:] <= bits[:-1]).all(dim=0)
    if not bool((rising | falling).all()):
        bad = int((~(rising | falling)).nonzero()[0])
        raise ExportError(f"output {bad}: its bit is not monotone in the match count (NaN in the batch norm?)")
    any_one = bits.any(dim=0)
    first_one = torch.where(any_one, bits.to(torch.int64).argmax(dim=0), count + 1)
    last_one = count - bits.flip(0).to(torch.int64).argmax(dim=0)
    flip = falling & ~rising  # strictly falling: count mismatches instead
    thresholds = torch.where(flip, count - last_one, first_one)
    weights = linear.weight_bits().cpu() ^ flip.unsqueeze(1)
    return weights.numpy().astype(np.uint8), thresholds.numpy().astype(np.int32)


def compile_model(model: nn.Module, info: Mapping[str, str] | None = None) -> Network:
    """See :func:`bitlogic.compile`."""
    if not isinstance(model, nn.Sequential):
        raise ExportError(f"expected a torch.nn.Sequential, got {type(model).__name__}")
    modules = [(n, m) for n, m in _flatten(model) if not isinstance(m, _TRANSPARENT)]
    was_training = model.training
    model.eval()
    try:
        return _compile(modules, info)
    finally:
        model.train(was_training)


def _compile(modules: list[tuple[str, nn.Module]], info: Mapping[str, str] | None) -> Network:
    encoder_module: Thermometer | DistributiveThermometer | None = None
    position = 0
    while position < len(modules) and isinstance(modules[position][1], (nn.Flatten, Thermometer, DistributiveThermometer)):
        name, module = modules[position]
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise ExportError(f"{_where(name, module)}: only Flatten(start_dim=1, end_dim=-1) is supported")
        elif encoder_module is not None:
            raise ExportError(f"{_where(name, module)}: a model has one encoder")
        else:
            assert isinstance(module, (Thermometer, DistributiveThermometer))
            encoder_module = module
        position += 1

    layers: list[Layer] = []
    width: int | None = None  # bits entering the next layer
    head: GroupSum | None = None
    while position < len(modules):
        name, module = modules[position]
        position += 1
        if head is not None:
            raise ExportError(f"{_where(name, module)}: GroupSum must be the last layer")
        if isinstance(module, GroupSum):
            head = module
            continue
        if isinstance(module, LogicLayer):
            in_dim, out_dim = module.in_dim, module.out_dim
            layer: Layer = GateLayer(
                inputs=module.inputs.t().cpu().numpy(), ops=module.ops().cpu().numpy().astype(np.uint8)
            )
        elif isinstance(module, LUTLayer):
            in_dim, out_dim = module.in_dim, module.out_dim
            layer = LutLayer(
                inputs=module.wires().cpu().numpy(), tables=module.truth_tables().cpu().numpy().astype(np.uint8)
            )
        elif isinstance(module, BinaryLinear):
            in_dim, out_dim = module.in_features, module.out_features
            norm: nn.BatchNorm1d | None = None
            following = modules[position][1] if position < len(modules) else None
            if isinstance(following, nn.BatchNorm1d):
                norm = following
                position += 1
                if following.num_features != out_dim:
                    raise ExportError(
                        f"{_where(name, module)}: followed by a BatchNorm1d of {following.num_features} features"
                    )
            if position >= len(modules) or not isinstance(modules[position][1], Sign):
                raise ExportError(
                    f"{_where(name, module)}: must be followed by [BatchNorm1d and] Sign, so that its outputs are bits"
                )
            sign: Sign = modules[position][1]  # type: ignore[assignment]
            position += 1
            try:
                weights, thresholds = binary_thresholds(module, norm, sign)
            except ExportError as error:
                raise ExportError(f"{_where(name, module)}: {error}") from None
            layer = BinaryLayer(weights=weights, thresholds=thresholds)
        elif isinstance(module, (Thermometer, DistributiveThermometer)):
            raise ExportError(f"{_where(name, module)}: an encoder must come first")
        else:
            raise ExportError(
                f"{_where(name, module)}: not exportable; a model holds an encoder, Flatten, LogicLayer, LUTLayer, "
                "BinaryLinear (+ BatchNorm1d) + Sign and a final GroupSum"
            )
        if width is not None and in_dim != width:
            raise ExportError(f"{_where(name, module)}: expects {in_dim} inputs but the previous layer gives {width}")
        if width is None:
            first_width = in_dim
        width = out_dim
        layers.append(layer)

    if not layers:
        raise ExportError("the model has no LogicLayer, LUTLayer or BinaryLinear layer")
    if head is None:
        raise ExportError("the model must end with GroupSum")
    assert width is not None
    if width % head.k:
        raise ExportError(f"GroupSum(k={head.k}): the last layer's {width} outputs do not split into {head.k} groups")

    encoder: Encoder
    if encoder_module is None:
        encoder = BitsEncoder(first_width)
    else:
        bits = encoder_module.num_bits
        if first_width % bits:
            raise ExportError(
                f"encoder ({type(encoder_module).__name__}): the first layer reads {first_width} bits, "
                f"not a multiple of its {bits} bits per feature"
            )
        try:
            thresholds = encoder_module.feature_thresholds(first_width // bits)
        except ValueError as error:
            raise ExportError(f"encoder ({type(encoder_module).__name__}): {error}") from None
        encoder = ThresholdEncoder(thresholds, "feature_major")
    return Network.from_arrays(encoder, layers, num_classes=head.k, tau=head.tau, info=info)
