"""Plain numpy descriptions of a compiled network's parts.

These classes hold what a network file holds, unpacked into numpy arrays that are easy to build and inspect:
``Network.from_arrays`` takes them, ``Network.encoder`` and ``Network.layers`` return them, and the numpy
reference evaluator reads them. Packing, validation and evaluation live in the Rust core; the constructors here
only normalise dtypes and shapes so that mistakes surface where the array was made (an :class:`InputError`).

Each class carries its ``kind``, the name the network file and the native module use for it, and its conversion to
and from the native module's parts (``to_parts`` / ``from_parts``). :data:`LAYER_KINDS` and :data:`ENCODER_KINDS`
map each kind to its class: code that handles every kind looks its code up by kind (:func:`layer_from_parts`,
:func:`encoder_from_parts`), so a kind it does not know is an error that names it, never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union

import numpy as np

from bitlogic.errors import FormatError, InputError

BitOrder = Literal["feature_major", "threshold_major"]


def _as(name: str, array: object, dtype: type, ndim: int) -> np.ndarray:
    out: np.ndarray = np.ascontiguousarray(array, dtype=dtype)
    if out.ndim != ndim:
        raise InputError(f"{name}: expected a {ndim}-dimensional array, got shape {out.shape}")
    return out


def _bits(name: str, array: object, ndim: int) -> np.ndarray:
    raw = np.asarray(array)
    if raw.dtype != np.bool_ and raw.size and (raw.min() < 0 or raw.max() > 1):
        raise InputError(f"{name}: expected 0/1 values")
    return _as(name, raw, np.uint8, ndim)


@dataclass(frozen=True, eq=False)
class BitsEncoder:
    """Inputs are already bits: ``num_inputs`` of them per sample."""

    kind: ClassVar[str] = "bits"
    num_inputs: int

    @property
    def num_bits(self) -> int:
        return self.num_inputs

    def to_parts(self) -> tuple[int | None, np.ndarray | None, str]:
        """The native constructor's encoder arguments: ``(num_input_bits, thresholds, bit_order)``."""
        return self.num_inputs, None, ""

    @classmethod
    def from_parts(cls, num_inputs: int) -> BitsEncoder:
        """From the native ``encoder_parts()`` after its kind: ``("bits", num_inputs)``."""
        return cls(int(num_inputs))


@dataclass(frozen=True, eq=False)
class ThresholdEncoder:
    """Bit ``(f, t)`` is ``x[f] > thresholds[f, t]`` (a thermometer code when ``T > 1``).

    ``thresholds`` is float32 of shape ``[F, T]``. In ``feature_major`` order bit ``(f, t)`` has index ``f*T + t``,
    in ``threshold_major`` order ``t*F + f``.
    """

    kind: ClassVar[str] = "thresholds"
    thresholds: np.ndarray
    bit_order: BitOrder = "feature_major"

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", _as("thresholds", self.thresholds, np.float32, 2))
        if self.bit_order not in ("feature_major", "threshold_major"):
            raise InputError(f"bit_order: expected 'feature_major' or 'threshold_major', got {self.bit_order!r}")

    @property
    def num_inputs(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def num_bits(self) -> int:
        return int(self.thresholds.size)

    def to_parts(self) -> tuple[int | None, np.ndarray | None, str]:
        """The native constructor's encoder arguments: ``(num_input_bits, thresholds, bit_order)``."""
        return None, self.thresholds, self.bit_order

    @classmethod
    def from_parts(cls, thresholds: np.ndarray, bit_order: BitOrder) -> ThresholdEncoder:
        """From the native ``encoder_parts()`` after its kind: ``("thresholds", thresholds, bit_order)``."""
        return cls(thresholds, bit_order)


@dataclass(frozen=True, eq=False)
class GateLayer:
    """Two-input gates: ``inputs`` uint32 ``[G, 2]`` (A, B), ``ops`` uint8 ``[G]`` in difflogic's order 0..15."""

    kind: ClassVar[str] = "gates"
    inputs: np.ndarray
    ops: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", _as("inputs", self.inputs, np.uint32, 2))
        object.__setattr__(self, "ops", _as("ops", self.ops, np.uint8, 1))

    @property
    def width(self) -> int:
        return int(self.ops.shape[0])

    @property
    def fan_in(self) -> int:
        """Inputs each output reads."""
        return 2

    def to_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """The two arrays of the native ``("gates", inputs, ops)`` part."""
        return self.inputs, self.ops

    @classmethod
    def from_parts(cls, inputs: np.ndarray, ops: np.ndarray) -> GateLayer:
        return cls(inputs, ops)


@dataclass(frozen=True, eq=False)
class LutLayer:
    """n-input lookup tables: ``inputs`` uint32 ``[L, n]``; ``tables`` 0/1 uint8 ``[L, 2**n]``.

    Entry ``a`` of a table is its output for the address ``a = sum(x_j << j)``: input 0 is the least significant bit.
    """

    kind: ClassVar[str] = "luts"
    inputs: np.ndarray
    tables: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", _as("inputs", self.inputs, np.uint32, 2))
        object.__setattr__(self, "tables", _bits("tables", self.tables, 2))

    def to_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """The two arrays of the native ``("luts", inputs, tables)`` part."""
        return self.inputs, self.tables

    @classmethod
    def from_parts(cls, inputs: np.ndarray, tables: np.ndarray) -> LutLayer:
        return cls(inputs, tables)

    @property
    def width(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def arity(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def fan_in(self) -> int:
        """Inputs each output reads: the arity."""
        return self.arity


@dataclass(frozen=True, eq=False)
class BinaryLayer:
    """XNOR-popcount dense layer: ``weights`` 0/1 uint8 ``[O, I]`` (1 = +1), ``thresholds`` int32 ``[O]``.

    Output ``o`` is 1 when the number of inputs equal to their weight bit is at least ``thresholds[o]``.
    """

    kind: ClassVar[str] = "binary"
    weights: np.ndarray
    thresholds: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _bits("weights", self.weights, 2))
        object.__setattr__(self, "thresholds", _as("thresholds", self.thresholds, np.int32, 1))

    @property
    def width(self) -> int:
        return int(self.weights.shape[0])

    @property
    def fan_in(self) -> int:
        """Inputs each output reads: the whole layer input."""
        return int(self.weights.shape[1])

    def to_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """The two arrays of the native ``("binary", weights, thresholds)`` part."""
        return self.weights, self.thresholds

    @classmethod
    def from_parts(cls, weights: np.ndarray, thresholds: np.ndarray) -> BinaryLayer:
        return cls(weights, thresholds)


# -- spatial layers (format 1.2) --------------------------------------------------------------------------------------

Pair = tuple[int, int]
Shape3 = tuple[int, int, int]


def _ints(name: str, value: object, count: int, minimum: int, *, scalar: bool) -> tuple[int, ...]:
    """``value`` as ``count`` Python integers of at least ``minimum``; with ``scalar`` one integer stands for
    ``count`` copies of itself (``kernel_size=3`` is ``(3, 3)``, as in torch)."""

    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    items: object = (value,) * count if scalar and is_int(value) else value
    if not isinstance(items, (tuple, list, np.ndarray)) or len(items) != count or not all(map(is_int, items)) \
            or any(int(v) < minimum for v in items):
        single = " (or one integer for all)" if scalar else ""
        raise InputError(f"{name}: expected {count} integers >= {minimum}{single}, got {value!r}")
    return tuple(int(v) for v in items)


def _window_count(name: str, size: int, kernel: int, stride: int, padding: int) -> int:
    """Output positions along one axis: ``floor((size + 2*padding - kernel) / stride) + 1``, at least 1."""
    if kernel > size + 2 * padding:
        raise InputError(f"kernel_size: expected a window {name} of at most {size + 2 * padding} (the image's {size} "
                         f"plus twice the padding {padding}), got {kernel}")
    return (size + 2 * padding - kernel) // stride + 1


class _Spatial:
    """What every spatial layer shares: an input image ``input_shape`` ``(C, H, W)`` (input bit ``(c, y, x)`` has
    index ``(c*H + y)*W + x``), a window ``kernel_size`` moved by ``stride``, and an output image ``output_shape``
    ``(channels, H', W')`` laid out the same way."""

    input_shape: Shape3
    kernel_size: Pair
    stride: Pair

    def _padding(self) -> Pair:
        return (0, 0)

    def _output_channels(self) -> int:
        return self.input_shape[0]

    def _normalise_geometry(self) -> None:
        shape = _ints("input_shape", self.input_shape, 3, 1, scalar=False)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "kernel_size", _ints("kernel_size", self.kernel_size, 2, 1, scalar=True))
        object.__setattr__(self, "stride", _ints("stride", self.stride, 2, 1, scalar=True))

    def _check_window(self) -> None:
        # The output size exists (the window fits the padded image); output_size computes it again when read.
        _ = self.output_size

    @property
    def output_size(self) -> Pair:
        """``(H', W')``: window positions down and across."""
        (_, h, w), (kh, kw), (sh, sw), (ph, pw) = self.input_shape, self.kernel_size, self.stride, self._padding()
        return _window_count("height", h, kh, sh, ph), _window_count("width", w, kw, sw, pw)

    @property
    def output_shape(self) -> Shape3:
        """``(channels, H', W')`` of the output image."""
        return (self._output_channels(), *self.output_size)

    @property
    def width(self) -> int:
        """Output bits: ``channels * H' * W'``."""
        c, h, w = self.output_shape
        return c * h * w

    @property
    def input_width(self) -> int:
        """Input bits: ``C * H * W``."""
        c, h, w = self.input_shape
        return c * h * w

    def _geometry(self) -> dict[str, Any]:
        return {"input_shape": self.input_shape, "kernel_size": self.kernel_size, "stride": self.stride}


class _Conv(_Spatial):
    """A spatial layer of ``out_channels`` output channels, whose window may reach ``padding`` past the image."""

    padding: Pair

    def _padding(self) -> Pair:
        return self.padding

    def _output_channels(self) -> int:
        return self.out_channels

    @property
    def out_channels(self) -> int:
        raise NotImplementedError

    def _normalise_geometry(self) -> None:
        super()._normalise_geometry()
        object.__setattr__(self, "padding", _ints("padding", self.padding, 2, 0, scalar=True))

    def _geometry(self) -> dict[str, Any]:
        return {**super()._geometry(), "padding": self.padding}

    def _leaves(self, leaves: object, rows: int | None, what: str) -> np.ndarray:
        """``leaves`` as uint32 ``[O, rows, 3]`` of ``(c, dy, dx)`` (``rows=None``: any number)."""
        out = _as("leaves", leaves, np.uint32, 3)
        if out.shape[2] != 3 or (rows is not None and out.shape[1] != rows):
            count = "?" if rows is None else str(rows)
            raise InputError(f"leaves: expected shape [O, {count}, 3] ({what}, each (c, dy, dx)), got {out.shape}")
        return out


def _same_rows(name: str, array: np.ndarray, rows: int, shape: str) -> None:
    if array.shape[0] != rows:
        raise InputError(f"{name}: expected shape {shape} with O = {rows} (one row per output channel), "
                         f"got {array.shape}")


@dataclass(frozen=True, eq=False)
class ConvGateLayer(_Conv):
    """A tree of two-input gates per output channel, shared over the image's positions (LogicTreeNet).

    ``leaves`` uint32 ``[O, 2**d, 3]``: leaf ``j`` of channel ``o`` reads input ``(c, dy, dx)`` of the window (a
    padded one reads 0); ``ops`` uint8 ``[O, 2**d - 1]``: gate ``g`` reads nodes ``2g`` and ``2g + 1`` (the leaves
    first, then the gates' outputs) as A and B and is node ``2**d + g``; the last gate is the output.
    """

    kind: ClassVar[str] = "conv_gates"
    input_shape: Shape3
    leaves: np.ndarray
    ops: np.ndarray
    kernel_size: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def __post_init__(self) -> None:
        self._normalise_geometry()
        leaves = self._leaves(self.leaves, None, "2**depth leaves per tree")
        count = leaves.shape[1]
        if count < 2 or count & (count - 1):
            raise InputError(f"leaves: expected shape [O, 2**depth, 3] with depth >= 1, got {leaves.shape}")
        object.__setattr__(self, "leaves", leaves)
        ops = _as("ops", self.ops, np.uint8, 2)
        _same_rows("ops", ops, leaves.shape[0], f"[O, {count - 1}]")
        if ops.shape[1] != count - 1:
            raise InputError(f"ops: expected shape [{leaves.shape[0]}, {count - 1}] (2**depth - 1 gates per tree), "
                             f"got {ops.shape}")
        object.__setattr__(self, "ops", ops)
        self._check_window()

    @property
    def out_channels(self) -> int:
        return int(self.leaves.shape[0])

    @property
    def depth(self) -> int:
        return int(self.leaves.shape[1]).bit_length() - 1

    @property
    def fan_in(self) -> int:
        """Inputs each output reads: the tree's leaves."""
        return int(self.leaves.shape[1])

    def to_parts(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The native ``("conv_gates", leaves, ops, geometry)`` part after its kind."""
        return self.leaves, self.ops, self._geometry()

    @classmethod
    def from_parts(cls, leaves: np.ndarray, ops: np.ndarray, geometry: Mapping[str, Any]) -> ConvGateLayer:
        return cls(leaves=leaves, ops=ops, **geometry)


@dataclass(frozen=True, eq=False)
class ConvLutLayer(_Conv):
    """One n-input table per output channel over the window: ``leaves`` uint32 ``[O, n, 3]`` (input ``j`` of the
    table reads ``(c, dy, dx)``, a padded one 0), ``tables`` 0/1 uint8 ``[O, 2**n]`` addressed as :class:`LutLayer`."""

    kind: ClassVar[str] = "conv_luts"
    input_shape: Shape3
    leaves: np.ndarray
    tables: np.ndarray
    kernel_size: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def __post_init__(self) -> None:
        self._normalise_geometry()
        leaves = self._leaves(self.leaves, None, "n table inputs per channel")
        object.__setattr__(self, "leaves", leaves)
        tables = _bits("tables", self.tables, 2)
        o, n = leaves.shape[:2]
        if n > 16 or tables.shape != (o, 1 << n):
            raise InputError(f"tables: expected shape [{o}, 2**{n}] (one entry per address), got {tables.shape}")
        object.__setattr__(self, "tables", tables)
        self._check_window()

    @property
    def out_channels(self) -> int:
        return int(self.leaves.shape[0])

    @property
    def arity(self) -> int:
        return int(self.leaves.shape[1])

    @property
    def fan_in(self) -> int:
        """Inputs each output reads: the arity."""
        return self.arity

    def to_parts(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The native ``("conv_luts", leaves, tables, geometry)`` part after its kind."""
        return self.leaves, self.tables, self._geometry()

    @classmethod
    def from_parts(cls, leaves: np.ndarray, tables: np.ndarray, geometry: Mapping[str, Any]) -> ConvLutLayer:
        return cls(leaves=leaves, tables=tables, **geometry)


@dataclass(frozen=True, eq=False)
class ConvBinaryLayer(_Conv):
    """XNOR-popcount convolution (larq QuantConv2D): ``weights`` 0/1 uint8 ``[O, C*kh*kw]`` (1 = +1; weight
    ``(c*kh + dy)*kw + dx``, torch's ``weight[o, c, dy, dx]`` flattened), ``thresholds`` int32 ``[O]``.

    Output ``(o, y', x')`` is 1 when the dot product of the window's inputs (bit 1 = +1, bit 0 = -1, a padded input
    ``pad_value``) with row ``o`` is at least ``thresholds[o]``: thresholds on the dot, unlike :class:`BinaryLayer`.
    """

    kind: ClassVar[str] = "conv_binary"
    input_shape: Shape3
    weights: np.ndarray
    thresholds: np.ndarray
    kernel_size: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    pad_value: int = 1

    def __post_init__(self) -> None:
        self._normalise_geometry()
        weights = _bits("weights", self.weights, 2)
        (c, _, _), (kh, kw) = self.input_shape, self.kernel_size
        if weights.shape[1] != c * kh * kw:
            raise InputError(f"weights: expected shape [O, {c * kh * kw}] (C*kh*kw = {c}*{kh}*{kw} per row), "
                             f"got {weights.shape}")
        object.__setattr__(self, "weights", weights)
        thresholds = _as("thresholds", self.thresholds, np.int32, 1)
        _same_rows("thresholds", thresholds, weights.shape[0], "[O]")
        object.__setattr__(self, "thresholds", thresholds)
        if self.pad_value not in (0, 1) or isinstance(self.pad_value, float):
            raise InputError(f"pad_value: expected 0 (zero padding) or 1 (one padding), got {self.pad_value!r}")
        object.__setattr__(self, "pad_value", int(self.pad_value))
        self._check_window()

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def fan_in(self) -> int:
        """Inputs each output reads: the whole window, ``C*kh*kw``."""
        return int(self.weights.shape[1])

    def to_parts(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The native ``("conv_binary", weights, thresholds, geometry)`` part after its kind."""
        return self.weights, self.thresholds, {**self._geometry(), "pad_value": self.pad_value}

    @classmethod
    def from_parts(cls, weights: np.ndarray, thresholds: np.ndarray, geometry: Mapping[str, Any]) -> ConvBinaryLayer:
        return cls(weights=weights, thresholds=thresholds, **geometry)


@dataclass(frozen=True, eq=False)
class OrPoolLayer(_Spatial):
    """OR pooling (max pooling on bits), channel by channel: output ``(c, y', x')`` is the OR of the inputs
    ``(c, y'*sh + dy, x'*sw + dx)`` for ``dy < kh``, ``dx < kw``. No padding, no arrays."""

    kind: ClassVar[str] = "or_pool"
    input_shape: Shape3
    kernel_size: Pair = (2, 2)
    stride: Pair = (2, 2)

    def __post_init__(self) -> None:
        self._normalise_geometry()
        self._check_window()

    @property
    def fan_in(self) -> int:
        """Inputs each output reads: the window."""
        return self.kernel_size[0] * self.kernel_size[1]

    def to_parts(self) -> tuple[None, None, dict[str, Any]]:
        """The native ``("or_pool", None, None, geometry)`` part after its kind."""
        return None, None, self._geometry()

    @classmethod
    def from_parts(cls, first: None, second: None, geometry: Mapping[str, Any]) -> OrPoolLayer:
        return cls(**geometry)


Encoder = Union[BitsEncoder, ThresholdEncoder]
Layer = Union[GateLayer, LutLayer, BinaryLayer, ConvGateLayer, ConvLutLayer, ConvBinaryLayer, OrPoolLayer]
SpatialLayer = Union[ConvGateLayer, ConvLutLayer, ConvBinaryLayer, OrPoolLayer]
#: A layer as the native module takes and gives it: ``(kind, array, array)`` for the dense kinds,
#: ``(kind, array or None, array or None, geometry)`` for the spatial ones.
LayerParts = Union[tuple[str, np.ndarray, np.ndarray], tuple[str, Any, Any, dict[str, Any]]]

#: Every layer class by its kind, in the order of docs/FORMAT.md.
LAYER_KINDS: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (GateLayer, LutLayer, BinaryLayer, ConvGateLayer, ConvLutLayer, ConvBinaryLayer, OrPoolLayer)
}
#: Every encoder class by its kind.
ENCODER_KINDS: dict[str, type[Encoder]] = {cls.kind: cls for cls in (BitsEncoder, ThresholdEncoder)}


def _class_of(known: dict[str, Any], kind: object, what: str) -> Any:
    try:
        return known[kind]  # type: ignore[index]
    except (KeyError, TypeError):  # TypeError: not even hashable
        raise FormatError(f"unknown {what} kind {kind!r}; this version of bitlogic knows {', '.join(known)}") from None


def layer_class(kind: str) -> type[Layer]:
    """The layer class of ``kind``; a :class:`FormatError` naming it and the known kinds otherwise."""
    cls: type[Layer] = _class_of(LAYER_KINDS, kind, "layer")
    return cls


def layer_from_parts(kind: str, *values: Any) -> Layer:
    """A layer from a native part, ``(kind, array, array)`` or, for a spatial kind, ``(kind, a, b, geometry)``."""
    layer: Layer = layer_class(kind).from_parts(*values)
    return layer


def encoder_from_parts(kind: str, *values: Any) -> Encoder:
    """An encoder from a native ``encoder_parts()`` tuple, ``(kind, *values)``."""
    cls: type[Encoder] = _class_of(ENCODER_KINDS, kind, "encoder")
    encoder: Encoder = cls.from_parts(*values)
    return encoder


T = TypeVar("T")


def for_kind(table: Mapping[str, T], part: object, owner: str) -> T:
    """``table[part.kind]``: the code that ``owner`` (e.g. "the reference evaluator") has for the kind of ``part``, a
    spec encoder or layer. A part of a kind ``owner`` has no entry for raises :class:`FormatError` naming both the
    kind and the kinds ``owner`` knows; anything that is no spec part raises ``TypeError``."""
    kind = getattr(type(part), "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"expected a bitlogic.spec encoder or layer, got {type(part).__name__}")
    try:
        return table[kind]
    except KeyError:
        raise FormatError(f"{owner} has no code for the kind {kind!r}; it knows {', '.join(table)}") from None


def _check_type(value: object, known: dict[str, type[Any]]) -> None:
    if not isinstance(value, tuple(known.values())):
        names = ", ".join(cls.__name__ for cls in known.values())
        raise TypeError(f"expected one of {names}, got {type(value).__name__}")


def layer_parts(layer: Layer) -> LayerParts:
    """The native part of a layer (:data:`LayerParts`); a ``TypeError`` for anything but a layer class."""
    _check_type(layer, LAYER_KINDS)
    parts: LayerParts = (layer.kind, *layer.to_parts())
    return parts


def encoder_parts(encoder: Encoder) -> tuple[int | None, np.ndarray | None, str]:
    """The native constructor's encoder arguments; a ``TypeError`` for anything but an encoder class."""
    _check_type(encoder, ENCODER_KINDS)
    return encoder.to_parts()
