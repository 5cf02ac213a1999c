"""The export protocol: what a module of a model becomes in a network file (read by ``bitlogic.compile``).

A module that ``bitlogic.compile`` can export implements :class:`Exportable`: ``export_part(following)`` returns one
of the parts below, given the modules that come after it (a ``BinaryLinear`` consumes the ``BatchNorm1d`` and
``Sign`` that follow it). A new kind of layer implements the method and returns a :class:`LayerPart`; the exporter
needs no change. Torch modules that cannot implement it (``nn.Flatten``, ``nn.Identity``...) are looked up in a
table of the exporter.

A spatial layer (a convolution, a pool) reads an image of bits whose shape it needs to know: it implements
:class:`SpatialExportable` instead, ``export_spatial(following, input_shape)``, and returns a :class:`LayerPart` with
the shape of its output image (:func:`spatial_part`). The exporter threads the shape from the encoder (or from
``bitlogic.compile``'s ``input_shape``) through the spatial layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, Union, runtime_checkable

import numpy as np
from torch import nn

from bitlogic.errors import ExportError, InputError
from bitlogic.spec import Layer, SpatialLayer

#: An image of bits ``(C, H, W)``: bit ``(c, y, x)`` at index ``(c*H + y)*W + x`` (``nn.Flatten``'s order).
Shape = tuple[int, int, int]


@dataclass(frozen=True)
class LayerPart:
    """A layer of the network: ``layer`` reads ``in_width`` bits and gives ``out_width``; it stands for its module
    and the ``consumed`` modules after it. A spatial layer's output is the image ``out_shape`` (None: flat bits)."""

    layer: Layer
    in_width: int
    out_width: int
    consumed: int = 0
    out_shape: Shape | None = None


@dataclass(frozen=True)
class EncoderPart:
    """The network's threshold encoder, first: ``num_bits`` per feature, ``thresholds(num_features)`` the float32
    ``[num_features, num_bits]`` of the file (it raises ``ValueError`` when the count does not fit)."""

    num_bits: int
    thresholds: Callable[[int], np.ndarray]
    #: The ``(C, H, W)`` image shape the encoder recorded when it was fitted on images (then it outputs the
    #: ``[C*T, H, W]`` image of channel ``t*C + c``, the file's ``threshold_major`` order over the ``C*H*W`` pixels).
    image_shape: Shape | None = None
    #: True for an encoder that cannot take images (fitted on flat features): ``input_shape`` is then refused.
    flat_only: bool = False


@dataclass(frozen=True)
class FlattenPart:
    """A reshape between the encoder and the first layer that keeps the bits in feature-major order, or between the
    spatial layers and the dense ones (the identity on the bits' order, C order of the image)."""


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


@runtime_checkable
class SpatialExportable(Protocol):
    """A spatial module: given the image shape ``(C, H, W)`` of its input bits, the layer it becomes (a
    :class:`LayerPart` whose ``out_shape`` is its output image); raises :class:`bitlogic.ExportError` when it
    cannot."""

    def export_spatial(self, following: Sequence[nn.Module], input_shape: Shape) -> LayerPart: ...


def spatial_part(make: Callable[[], SpatialLayer], consumed: int = 0) -> LayerPart:
    """The :class:`LayerPart` of the spatial layer ``make()`` builds (its input and output widths and its output
    image); the spec's refusal of a geometry (a window larger than the padded image) becomes an ``ExportError``."""
    try:
        layer = make()
    except InputError as error:
        raise ExportError(str(error)) from None
    return LayerPart(layer, layer.input_width, layer.width, consumed=consumed, out_shape=layer.output_shape)


__all__ = ["EncoderPart", "Exportable", "FlattenPart", "HeadPart", "LayerPart", "Part", "Shape", "SpatialExportable",
           "spatial_part"]
