"""bitlogic: train boolean networks in PyTorch, run them as bit-sliced circuits in Rust.

Inference API::

    net = bitlogic.load("mnist.bitlogic")
    labels = net.predict(x)          # int64 [N]
    scores = net.scores(x)           # int32 [N, num_classes]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitlogic._native import BitlogicError, FormatError, InputError, __version__
from bitlogic.network import Network, load, pack_bits, random_network, supported_isas
from bitlogic.spec import BinaryLayer, BitsEncoder, GateLayer, LutLayer, ThresholdEncoder

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn


def compile(model: nn.Module, *, info: Mapping[str, str] | None = None) -> Network:  # noqa: A001
    """The boolean network a trained model computes in ``eval()``, exactly.

    ``model`` is a ``torch.nn.Sequential`` of an optional encoder (``bitlogic.nn.Thermometer`` or
    ``DistributiveThermometer``, then ``nn.Flatten``), ``LogicLayer``, ``LUTLayer`` and ``BinaryLinear`` (+
    ``BatchNorm1d``) + ``Sign`` layers, and a final ``GroupSum``. For every input ``x``,
    ``compile(model).scores(x) / tau`` equals ``model.eval()(x)``. Raises ``bitlogic.export.ExportError`` naming the
    layer that cannot be exported. Needs torch.
    """
    from bitlogic.export import compile_model

    return compile_model(model, info=info)


__all__ = [
    "BinaryLayer",
    "BitlogicError",
    "BitsEncoder",
    "FormatError",
    "GateLayer",
    "InputError",
    "LutLayer",
    "Network",
    "ThresholdEncoder",
    "__version__",
    "compile",
    "load",
    "pack_bits",
    "random_network",
    "supported_isas",
]
