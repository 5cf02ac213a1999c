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


Encoder = Union[BitsEncoder, ThresholdEncoder]
Layer = Union[GateLayer, LutLayer, BinaryLayer]

#: Every layer class by its kind, in the order of docs/FORMAT.md.
LAYER_KINDS: dict[str, type[Layer]] = {cls.kind: cls for cls in (GateLayer, LutLayer, BinaryLayer)}
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


def layer_from_parts(kind: str, first: Any, second: Any) -> Layer:
    """A layer from a native ``(kind, array, array)`` part."""
    layer: Layer = layer_class(kind).from_parts(first, second)
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


def layer_parts(layer: Layer) -> tuple[str, np.ndarray, np.ndarray]:
    """The native ``(kind, array, array)`` part of a layer; a ``TypeError`` for anything but a layer class."""
    _check_type(layer, LAYER_KINDS)
    return (layer.kind, *layer.to_parts())


def encoder_parts(encoder: Encoder) -> tuple[int | None, np.ndarray | None, str]:
    """The native constructor's encoder arguments; a ``TypeError`` for anything but an encoder class."""
    _check_type(encoder, ENCODER_KINDS)
    return encoder.to_parts()
