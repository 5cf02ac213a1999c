"""bitlogic: train boolean networks in PyTorch, run them as bit-sliced circuits in Rust.

Inference API::

    net = bitlogic.load("mnist.bitlogic")
    labels = net.predict(x)          # int64 [N]
    scores = net.scores(x)           # int32 [N, num_classes]

Every error bitlogic raises is a :class:`BitlogicError` (see :mod:`bitlogic.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitlogic._native import __version__
from bitlogic.errors import (
    BitlogicError,
    CheckpointError,
    CudaError,
    DatasetError,
    ExportError,
    FormatError,
    InputError,
    KernelCompileError,
)
from bitlogic.network import Network, load, pack_bits, random_network, supported_isas
from bitlogic.spec import (
    BinaryLayer,
    BitsEncoder,
    ConvBinaryLayer,
    ConvGateLayer,
    ConvLutLayer,
    GateLayer,
    LutLayer,
    OrPoolLayer,
    ThresholdEncoder,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from torch import nn


def compile(  # noqa: A001
    model: nn.Module, *, info: Mapping[str, str] | None = None, input_shape: Sequence[int] | None = None
) -> Network:
    """The boolean network a trained model computes in ``eval()``, exactly.

    ``model`` is a ``torch.nn.Sequential`` of an optional encoder (``bitlogic.nn.Thermometer`` or
    ``DistributiveThermometer``), spatial layers on images (``LogicConv2d``, ``LUTConv2d``, ``BinaryConv2d`` (+
    ``BatchNorm2d``) + ``Sign``, ``OrPool2d``, ``nn.MaxPool2d`` on bits), ``nn.Flatten``, ``LogicLayer``,
    ``LUTLayer`` and ``BinaryLinear`` (+ ``BatchNorm1d``) + ``Sign`` layers, and a final ``GroupSum``. For every input
    ``x``, ``compile(model).scores(x) / tau`` equals ``model.eval()(x)`` (an image batch flattened to rows,
    ``x.reshape(len(x), -1)``).

    The spatial layers need the shape of their input image: a ``DistributiveThermometer`` fitted on images
    ``[N, C, H, W]`` records it; otherwise pass ``input_shape=(C, H, W)``, the shape of the model's input images
    (an encoder given images outputs ``C*T`` channels). Raises :class:`bitlogic.ExportError` naming the layer that
    cannot be exported. Needs torch.
    """
    from bitlogic.export import compile_model

    return compile_model(model, info=info, input_shape=input_shape)


__all__ = [
    "BinaryLayer",
    "BitlogicError",
    "BitsEncoder",
    "CheckpointError",
    "ConvBinaryLayer",
    "ConvGateLayer",
    "ConvLutLayer",
    "CudaError",
    "DatasetError",
    "ExportError",
    "FormatError",
    "GateLayer",
    "InputError",
    "KernelCompileError",
    "LutLayer",
    "Network",
    "OrPoolLayer",
    "ThresholdEncoder",
    "__version__",
    "compile",
    "load",
    "pack_bits",
    "random_network",
    "supported_isas",
]
