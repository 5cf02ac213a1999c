"""The export protocol: what a module of a model becomes in a network file (read by ``bitlogic.compile``).

A module that ``bitlogic.compile`` can export implements :class:`Exportable`: ``export_part(following)`` returns one
of the parts below, given the modules that come after it (a ``BinaryLinear`` consumes the ``BatchNorm1d`` and
``Sign`` that follow it). A new kind of layer implements the method and returns a :class:`LayerPart`; the exporter
needs no change. Torch modules that cannot implement it (``nn.Flatten``, ``nn.Identity``...) are looked up in a
table of the exporter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, Union, runtime_checkable

import numpy as np
from torch import nn

from bitlogic.spec import Layer


@dataclass(frozen=True)
class LayerPart:
    """A layer of the network: ``layer`` reads ``in_width`` bits and gives ``out_width``; it stands for its module
    and the ``consumed`` modules after it."""

    layer: Layer
    in_width: int
    out_width: int
    consumed: int = 0


@dataclass(frozen=True)
class EncoderPart:
    """The network's threshold encoder, first: ``num_bits`` per feature, ``thresholds(num_features)`` the float32
    ``[num_features, num_bits]`` of the file (it raises ``ValueError`` when the count does not fit)."""

    num_bits: int
    thresholds: Callable[[int], np.ndarray]


@dataclass(frozen=True)
class FlattenPart:
    """A reshape between the encoder and the first layer that keeps the bits in feature-major order."""


@dataclass(frozen=True)
class HeadPart:
    """The class scores, last: the last layer's outputs split into ``k`` groups, each group's count over ``tau``."""

    k: int
    tau: float


Part = Union[LayerPart, EncoderPart, FlattenPart, HeadPart]


@runtime_checkable
class Exportable(Protocol):
    """A module that says what it becomes in a network file; raises :class:`bitlogic.ExportError` when it cannot
    (the exporter prefixes the module's name)."""

    def export_part(self, following: Sequence[nn.Module]) -> Part: ...


__all__ = ["EncoderPart", "Exportable", "FlattenPart", "HeadPart", "LayerPart", "Part"]
