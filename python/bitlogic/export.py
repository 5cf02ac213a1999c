"""Exact export of a trained torch model to a Network (``bitlogic.compile``).

Every module of the model says what it becomes through the export protocol of :mod:`bitlogic.nn._export`
(``export_part``); torch's own modules, and the encoders, are looked up in :data:`_ADAPTERS`. This module only
checks that the parts come in the order a network file holds them (encoder, layers, head) and fit each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from torch import nn

from bitlogic.errors import ExportError
from bitlogic.network import Network
from bitlogic.nn._export import EncoderPart, Exportable, FlattenPart, HeadPart, LayerPart, Part
from bitlogic.nn.encoders import DistributiveThermometer, Thermometer
from bitlogic.spec import BitsEncoder, Encoder, ThresholdEncoder

__all__ = ["ExportError", "compile_model"]

_NOT_EXPORTABLE = (
    "not exportable; a model holds an encoder, Flatten, LogicLayer, LUTLayer, BinaryLinear (+ BatchNorm1d) + Sign and "
    "a final GroupSum"
)


def _flatten_part(module: nn.Module) -> FlattenPart:
    assert isinstance(module, nn.Flatten)
    if module.start_dim != 1 or module.end_dim != -1:
        raise ExportError("only Flatten(start_dim=1, end_dim=-1) is supported")
    return FlattenPart()


def _encoder_part(module: nn.Module) -> EncoderPart:
    assert isinstance(module, (Thermometer, DistributiveThermometer))
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


def _adapter(module: nn.Module) -> tuple[bool, Callable[[nn.Module], Part] | None]:
    for cls in type(module).__mro__:
        if cls in _ADAPTERS:
            return True, _ADAPTERS[cls]
    return False, None


def _flatten(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_children():
        if isinstance(module, nn.Sequential):
            for sub_name, sub in _flatten(module):
                yield f"{name}.{sub_name}", sub
        else:
            yield name, module


def _where(name: str, module: nn.Module) -> str:
    return f"layer {name} ({type(module).__name__})"


def compile_model(model: nn.Module, info: Mapping[str, str] | None = None) -> Network:
    """See :func:`bitlogic.compile`."""
    if not isinstance(model, nn.Sequential):
        raise ExportError(f"expected a torch.nn.Sequential, got {type(model).__name__}")
    modules = [(n, m) for n, m in _flatten(model) if _adapter(m) != (True, None)]
    was_training = model.training
    model.eval()
    try:
        return _compile(modules, info)
    finally:
        model.train(was_training)


def _part(name: str, module: nn.Module, following: Sequence[nn.Module]) -> Part:
    """What ``module`` becomes, by its own ``export_part`` or by :data:`_ADAPTERS`; errors name the module."""
    try:
        if isinstance(module, Exportable):
            return module.export_part(following)
        known, adapter = _adapter(module)
        if adapter is None:
            raise ExportError(_NOT_EXPORTABLE)
        return adapter(module)
    except ExportError as error:
        raise ExportError(f"{_where(name, module)}: {error}") from None


def _compile(modules: list[tuple[str, nn.Module]], info: Mapping[str, str] | None) -> Network:
    encoder: tuple[str, EncoderPart] | None = None  # the encoder module's class name and its part
    layers: list[LayerPart] = []
    head: HeadPart | None = None
    position = 0
    while position < len(modules):
        name, module = modules[position]
        if head is not None:
            raise ExportError(f"{_where(name, module)}: GroupSum must be the last layer")
        part = _part(name, module, [m for _, m in modules[position + 1 :]])
        position += 1 + (part.consumed if isinstance(part, LayerPart) else 0)
        if isinstance(part, LayerPart):
            if layers and part.in_width != layers[-1].out_width:
                raise ExportError(
                    f"{_where(name, module)}: expects {part.in_width} inputs but the previous layer gives "
                    f"{layers[-1].out_width}"
                )
            layers.append(part)
        elif isinstance(part, HeadPart):
            head = part
        elif layers:  # an encoder or a reshape after the first layer
            what = "an encoder must come first" if isinstance(part, EncoderPart) else _NOT_EXPORTABLE
            raise ExportError(f"{_where(name, module)}: {what}")
        elif isinstance(part, EncoderPart):
            if encoder is not None:
                raise ExportError(f"{_where(name, module)}: a model has one encoder")
            encoder = (type(module).__name__, part)
    if not layers:
        raise ExportError("the model has no LogicLayer, LUTLayer or BinaryLinear layer")
    if head is None:
        raise ExportError("the model must end with GroupSum")
    width = layers[-1].out_width
    if width % head.k:
        raise ExportError(f"GroupSum(k={head.k}): the last layer's {width} outputs do not split into {head.k} groups")
    return Network.from_arrays(
        _encoder(encoder, layers[0].in_width), [part.layer for part in layers], num_classes=head.k, tau=head.tau,
        info=info,
    )


def _encoder(encoder: tuple[str, EncoderPart] | None, width: int) -> Encoder:
    """The network's encoder for a first layer of ``width`` bits: the model's, or bits as they come."""
    if encoder is None:
        return BitsEncoder(width)
    name, part = encoder
    if width % part.num_bits:
        raise ExportError(
            f"encoder ({name}): the first layer reads {width} bits, not a multiple of its {part.num_bits} bits per "
            "feature"
        )
    try:
        thresholds = part.thresholds(width // part.num_bits)
    except ValueError as error:
        raise ExportError(f"encoder ({name}): {error}") from None
    return ThresholdEncoder(thresholds, "feature_major")
