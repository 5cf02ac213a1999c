"""Exact export of a trained torch model to a Network (``bitlogic.compile``).

Every module of the model says what it becomes through the export protocol of :mod:`bitlogic.nn._export`
(``export_part``, or ``export_spatial`` for the layers of images); torch's own modules, and the encoders, are looked
up in :data:`_ADAPTERS` and :data:`_SPATIAL_ADAPTERS`. This module only checks that the parts come in the order a
network file holds them (encoder, spatial layers, dense layers, head) and fit each other, and threads the image
shape ``(C, H, W)`` of the bits through the spatial layers: from the encoder fitted on images or from
``input_shape``, each spatial layer giving the shape of its output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from bitlogic.errors import ExportError
from bitlogic.network import Network
from bitlogic.nn._export import (
    EncoderPart,
    Exportable,
    FlattenPart,
    HeadPart,
    LayerPart,
    Part,
    Shape,
    SpatialExportable,
)
from bitlogic.nn.encoders import DistributiveThermometer, Thermometer
from bitlogic.nn.pool import max_pool_part
from bitlogic.spec import BitsEncoder, Encoder, Layer, ThresholdEncoder

__all__ = ["ExportError", "Exported", "compile_model", "export_parts"]

_NOT_EXPORTABLE = (
    "not exportable; a model holds an encoder, spatial layers (LogicConv2d, LUTConv2d, BinaryConv2d (+ BatchNorm2d) + "
    "Sign, OrPool2d, MaxPool2d on bits) then Flatten, LogicLayer, LUTLayer, BinaryLinear (+ BatchNorm1d) + Sign and a "
    "final GroupSum"
)

_NEEDS_SHAPE = (
    "needs the shape of its input image: pass bitlogic.compile(model, input_shape=(C, H, W)) with the model's input "
    "image shape, or fit the DistributiveThermometer on images [N, C, H, W]"
)


def _flatten_part(module: nn.Module) -> FlattenPart:
    assert isinstance(module, nn.Flatten)
    if module.start_dim != 1 or module.end_dim != -1:
        raise ExportError("only Flatten(start_dim=1, end_dim=-1) is supported")
    return FlattenPart()


def _encoder_part(module: nn.Module) -> EncoderPart:
    assert isinstance(module, (Thermometer, DistributiveThermometer))
    if isinstance(module, DistributiveThermometer):
        image = module.fitted_image
        return EncoderPart(module.num_bits, module.feature_thresholds, image, module.fitted and image is None)
    return EncoderPart(module.num_bits, module.feature_thresholds)


#: Modules without an ``export_part`` of their own, by class (subclasses included). ``None``: the identity in eval(),
#: skipped.
_ADAPTERS: dict[type[nn.Module], Callable[[nn.Module], Part] | None] = {
    nn.Identity: None,
    nn.Dropout: None,
    nn.Flatten: _flatten_part,
    Thermometer: _encoder_part,
    DistributiveThermometer: _encoder_part,
}


#: Torch's spatial modules, by class: what each becomes over an input image of the given shape.
_SPATIAL_ADAPTERS: dict[type[nn.Module], Callable[[nn.Module, Shape], LayerPart]] = {
    nn.MaxPool2d: max_pool_part,
}


def _adapter(module: nn.Module) -> tuple[bool, Callable[[nn.Module], Part] | None]:
    for cls in type(module).__mro__:
        if cls in _ADAPTERS:
            return True, _ADAPTERS[cls]
    return False, None


def _spatial(module: nn.Module) -> Callable[[Sequence[nn.Module], Shape], LayerPart] | None:
    """How ``module`` exports over an input image, when it is a spatial module; None for the others."""
    if isinstance(module, SpatialExportable):
        return module.export_spatial
    for cls in type(module).__mro__:
        if cls in _SPATIAL_ADAPTERS:
            adapter = _SPATIAL_ADAPTERS[cls]
            return lambda following, shape: adapter(module, shape)
    return None


def _flatten(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_children():
        if isinstance(module, nn.Sequential):
            for sub_name, sub in _flatten(module):
                yield f"{name}.{sub_name}", sub
        else:
            yield name, module


def _where(name: str, module: nn.Module) -> str:
    return f"layer {name} ({type(module).__name__})"


@dataclass(frozen=True)
class Exported:
    """What a model becomes, before the native network is built: the arguments of ``Network.from_arrays``."""

    encoder: Encoder
    layers: list[Layer]
    num_classes: int
    tau: float


def compile_model(
    model: nn.Module, info: Mapping[str, str] | None = None, input_shape: Sequence[int] | None = None
) -> Network:
    """See :func:`bitlogic.compile`."""
    parts = export_parts(model, input_shape)
    return Network.from_arrays(parts.encoder, parts.layers, num_classes=parts.num_classes, tau=parts.tau, info=info)


def export_parts(model: nn.Module, input_shape: Sequence[int] | None = None) -> Exported:
    """The encoder, layers and head ``bitlogic.compile`` builds its network of (the spec classes, which the numpy
    reference evaluates too); the same checks and errors."""
    if not isinstance(model, nn.Sequential):
        raise ExportError(f"expected a torch.nn.Sequential, got {type(model).__name__}")
    shape = _input_shape(input_shape)
    modules = [(n, m) for n, m in _flatten(model) if _adapter(m) != (True, None)]
    first = modules[0][1] if modules else None
    if isinstance(first, nn.Unflatten):
        shape = _unflatten_shape(modules[0][0], first, shape)
        modules = modules[1:]
    was_training = model.training
    model.eval()
    try:
        return _compile(modules, shape)
    finally:
        model.train(was_training)


def _input_shape(value: Sequence[int] | None) -> Shape | None:
    if value is None:
        return None
    items = tuple(value)
    if len(items) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items):
        raise ExportError(f"input_shape: expected the model's input image (C, H, W), three positive ints, got "
                          f"{value!r}")
    return items[0], items[1], items[2]


def _unflatten_shape(name: str, module: nn.Unflatten, given: Shape | None) -> Shape:
    """The image shape of a model that starts with ``nn.Unflatten(1, (C, H, W))``: flat samples ``[B, C*H*W]`` made
    images in C order, which is the order of the file's features, so the reshape itself exports as nothing."""
    size = tuple(module.unflattened_size)
    if module.dim != 1 or len(size) != 3:
        raise ExportError(f"{_where(name, module)}: only a first Unflatten(1, (C, H, W)) of flat samples is supported")
    shape = _input_shape(size)
    assert shape is not None
    if given is not None and given != shape:
        raise ExportError(f"{_where(name, module)}: makes images {shape}, but input_shape={given} was given")
    return shape


def _part(name: str, module: nn.Module, following: Sequence[nn.Module], layout: _Layout) -> Part:
    """What ``module`` becomes, by its own ``export_part`` / ``export_spatial`` or by the adapters; errors name the
    module."""
    try:
        spatial = _spatial(module)
        if spatial is not None:
            return spatial(following, layout.spatial_input())
        if isinstance(module, Exportable):
            return module.export_part(following)
        known, adapter = _adapter(module)
        if adapter is None:
            raise ExportError(_NOT_EXPORTABLE)
        return adapter(module)
    except ExportError as error:
        raise ExportError(f"{_where(name, module)}: {error}") from None


@dataclass
class _Layout:
    """Where the bits stand between two modules: ``shape``, the image ``(C, H, W)`` they form (None: unknown or
    flat), and ``flat``, whether they were flattened (by ``nn.Flatten`` or a dense layer), after which no spatial
    layer may come."""

    shape: Shape | None
    flat: bool = False

    def spatial_input(self) -> Shape:
        if self.flat:
            raise ExportError("a spatial layer after Flatten or a dense layer; spatial layers come first, then "
                              "nn.Flatten and the dense layers")
        if self.shape is None:
            raise ExportError(_NEEDS_SHAPE)
        return self.shape

    def image(self) -> bool:
        """Whether the bits are still an image (spatial layers before, no Flatten yet)."""
        return self.shape is not None and not self.flat


def _compile(modules: list[tuple[str, nn.Module]], input_shape: Shape | None) -> Exported:
    encoder: tuple[str, EncoderPart, Shape | None] | None = None  # class name, part and the image it encodes
    layers: list[LayerPart] = []
    head: HeadPart | None = None
    layout = _Layout(input_shape)
    position = 0
    while position < len(modules):
        name, module = modules[position]
        if head is not None:
            raise ExportError(f"{_where(name, module)}: GroupSum must be the last layer")
        part = _part(name, module, [m for _, m in modules[position + 1 :]], layout)
        position += 1 + (part.consumed if isinstance(part, LayerPart) else 0)
        if isinstance(part, LayerPart):
            if layers and part.in_width != layers[-1].out_width:
                raise ExportError(
                    f"{_where(name, module)}: expects {part.in_width} inputs but the previous layer gives "
                    f"{layers[-1].out_width}"
                )
            if part.out_shape is None and layout.image():
                raise ExportError(f"{_where(name, module)}: reads flat bits; put nn.Flatten between the spatial "
                                  "layers and it")
            layout = _Layout(part.out_shape, flat=part.out_shape is None)
            layers.append(part)
        elif isinstance(part, HeadPart):
            if layout.image():
                raise ExportError(f"{_where(name, module)}: GroupSum reads flat bits; put nn.Flatten before it")
            head = part
        elif isinstance(part, FlattenPart) and layers and not layout.image():  # a reshape after a dense layer
            raise ExportError(f"{_where(name, module)}: {_NOT_EXPORTABLE}")
        elif isinstance(part, FlattenPart):
            layout.flat = True
        elif layers:
            raise ExportError(f"{_where(name, module)}: an encoder must come first")
        elif encoder is not None:
            raise ExportError(f"{_where(name, module)}: a model has one encoder")
        else:
            assert isinstance(part, EncoderPart)
            image = _encoded_image(name, part, input_shape)
            encoder = (type(module).__name__, part, image)
            layout = _Layout(None if image is None else (image[0] * part.num_bits, image[1], image[2]))
    if not layers:
        raise ExportError("the model has no LogicLayer, LUTLayer, BinaryLinear or spatial layer")
    if head is None:
        raise ExportError("the model must end with GroupSum")
    width = layers[-1].out_width
    if width % head.k:
        raise ExportError(f"GroupSum(k={head.k}): the last layer's {width} outputs do not split into {head.k} groups")
    return Exported(_encoder(encoder, layers[0].in_width, input_shape), [part.layer for part in layers], head.k,
                    head.tau)


def _encoded_image(name: str, part: EncoderPart, input_shape: Shape | None) -> Shape | None:
    """The image ``(C, H, W)`` an encoder reads: the one it was fitted on, or ``input_shape``; None for flat
    features."""
    if part.flat_only and input_shape is not None:
        raise ExportError(f"encoder ({name}): fitted on flat features, but input_shape={input_shape} says the model "
                          "reads images; fit it on images [N, C, H, W]")
    if part.image_shape is not None and input_shape is not None and part.image_shape != input_shape:
        raise ExportError(f"encoder ({name}): fitted on images of shape {part.image_shape}, but input_shape is "
                          f"{input_shape}")
    return part.image_shape if part.image_shape is not None else input_shape


def _encoder(encoder: tuple[str, EncoderPart, Shape | None] | None, width: int, input_shape: Shape | None) -> Encoder:
    """The network's encoder for a first layer of ``width`` bits: the model's, or bits as they come."""
    if encoder is None:
        if input_shape is not None and width != input_shape[0] * input_shape[1] * input_shape[2]:
            raise ExportError(f"the first layer reads {width} bits, but input_shape={input_shape} holds "
                              f"{input_shape[0] * input_shape[1] * input_shape[2]}")
        return BitsEncoder(width)
    name, part, image = encoder
    if width % part.num_bits:
        raise ExportError(
            f"encoder ({name}): the first layer reads {width} bits, not a multiple of its {part.num_bits} bits per "
            "feature"
        )
    features = width // part.num_bits
    if image is not None and features != image[0] * image[1] * image[2]:
        raise ExportError(f"encoder ({name}): the first layer reads {width} bits, but {part.num_bits} bits of each "
                          f"pixel of an image {image} are {part.num_bits * image[0] * image[1] * image[2]}")
    try:
        thresholds = part.thresholds(features)
    except ValueError as error:
        raise ExportError(f"encoder ({name}): {error}") from None
    # An encoder of images gives channel t*C + c: threshold t of every pixel before threshold t + 1 of any.
    return ThresholdEncoder(thresholds, "feature_major" if image is None else "threshold_major")
