"""Plain numpy descriptions of a compiled network's parts.

These classes hold what a network file holds, unpacked into numpy arrays that are easy to build and inspect:
``Network.from_arrays`` takes them, ``Network.encoder`` and ``Network.layers`` return them, and the numpy
reference evaluator reads them. Packing, validation and evaluation live in the Rust core; the constructors here
only normalise dtypes and shapes so that mistakes surface where the array was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

BitOrder = Literal["feature_major", "threshold_major"]


def _as(name: str, array: object, dtype: type, ndim: int) -> np.ndarray:
    out: np.ndarray = np.ascontiguousarray(array, dtype=dtype)
    if out.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-dimensional array, got shape {out.shape}")
    return out


def _bits(name: str, array: object, ndim: int) -> np.ndarray:
    raw = np.asarray(array)
    if raw.dtype != np.bool_ and raw.size and (raw.min() < 0 or raw.max() > 1):
        raise ValueError(f"{name}: expected 0/1 values")
    return _as(name, raw, np.uint8, ndim)


@dataclass(frozen=True, eq=False)
class BitsEncoder:
    """Inputs are already bits: ``num_inputs`` of them per sample."""

    num_inputs: int

    @property
    def num_bits(self) -> int:
        return self.num_inputs


@dataclass(frozen=True, eq=False)
class ThresholdEncoder:
    """Bit ``(f, t)`` is ``x[f] > thresholds[f, t]`` (a thermometer code when ``T > 1``).

    ``thresholds`` is float32 of shape ``[F, T]``. In ``feature_major`` order bit ``(f, t)`` has index ``f*T + t``,
    in ``threshold_major`` order ``t*F + f``.
    """

    thresholds: np.ndarray
    bit_order: BitOrder = "feature_major"

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", _as("thresholds", self.thresholds, np.float32, 2))
        if self.bit_order not in ("feature_major", "threshold_major"):
            raise ValueError(f"bit_order: expected 'feature_major' or 'threshold_major', got {self.bit_order!r}")

    @property
    def num_inputs(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def num_bits(self) -> int:
        return int(self.thresholds.size)


@dataclass(frozen=True, eq=False)
class GateLayer:
    """Two-input gates: ``inputs`` uint32 ``[G, 2]`` (A, B), ``ops`` uint8 ``[G]`` in difflogic's order 0..15."""

    inputs: np.ndarray
    ops: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", _as("inputs", self.inputs, np.uint32, 2))
        object.__setattr__(self, "ops", _as("ops", self.ops, np.uint8, 1))

    @property
    def width(self) -> int:
        return int(self.ops.shape[0])


@dataclass(frozen=True, eq=False)
class LutLayer:
    """n-input lookup tables: ``inputs`` uint32 ``[L, n]``; ``tables`` 0/1 uint8 ``[L, 2**n]``.

    Entry ``a`` of a table is its output for the address ``a = sum(x_j << j)``: input 0 is the least significant bit.
    """

    inputs: np.ndarray
    tables: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", _as("inputs", self.inputs, np.uint32, 2))
        object.__setattr__(self, "tables", _bits("tables", self.tables, 2))

    @property
    def width(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def arity(self) -> int:
        return int(self.inputs.shape[1])


@dataclass(frozen=True, eq=False)
class BinaryLayer:
    """XNOR-popcount dense layer: ``weights`` 0/1 uint8 ``[O, I]`` (1 = +1), ``thresholds`` int32 ``[O]``.

    Output ``o`` is 1 when the number of inputs equal to their weight bit is at least ``thresholds[o]``.
    """

    weights: np.ndarray
    thresholds: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _bits("weights", self.weights, 2))
        object.__setattr__(self, "thresholds", _as("thresholds", self.thresholds, np.int32, 1))

    @property
    def width(self) -> int:
        return int(self.weights.shape[0])


Encoder = Union[BitsEncoder, ThresholdEncoder]
Layer = Union[GateLayer, LutLayer, BinaryLayer]
