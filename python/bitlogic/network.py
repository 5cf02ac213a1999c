"""The ``Network`` class: a compiled boolean network evaluated by the Rust engine."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from bitlogic import _native
from bitlogic.spec import BinaryLayer, BitsEncoder, Encoder, GateLayer, Layer, LutLayer, ThresholdEncoder

PathLike = str | os.PathLike[str]
Isa = Literal["portable", "avx2", "avx512"]


class Network:
    """A compiled network: encoder, layers of gates / lookup tables / binary neurons, and a GroupSum head.

    Evaluation runs in Rust with the GIL released; a ``Network`` is immutable and can be used from several threads.
    Build one with :func:`load`, :meth:`from_arrays`, :func:`random_network` or ``bitlogic.compile`` (from torch).
    """

    __slots__ = ("_net",)

    def __init__(self, native: _native.Network) -> None:
        if not isinstance(native, _native.Network):
            raise TypeError("use bitlogic.load, Network.from_arrays or bitlogic.random_network to make a Network")
        self._net = native

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        encoder: Encoder,
        layers: Sequence[Layer],
        num_classes: int,
        tau: float = 1.0,
        info: Mapping[str, str] | None = None,
    ) -> Network:
        """Builds a network from numpy arrays (see :mod:`bitlogic.spec`).

        Example, a two-gate network over 3 input bits with 2 classes::

            net = Network.from_arrays(
                BitsEncoder(3),
                [GateLayer(inputs=[[0, 1], [1, 2]], ops=[1, 6])],   # A AND B, A XOR B
                num_classes=2,
            )

        Every wire, op code and width is checked; a bad part raises :class:`bitlogic.InputError`.
        """
        parts: list[tuple[str, np.ndarray, np.ndarray]] = []
        for layer in layers:
            if isinstance(layer, GateLayer):
                parts.append(("gates", layer.inputs, layer.ops))
            elif isinstance(layer, LutLayer):
                parts.append(("luts", layer.inputs, layer.tables))
            elif isinstance(layer, BinaryLayer):
                parts.append(("binary", layer.weights, layer.thresholds))
            else:
                raise TypeError(f"expected GateLayer, LutLayer or BinaryLayer, got {type(layer).__name__}")
        info_dict = dict(info) if info is not None else None
        if isinstance(encoder, BitsEncoder):
            native = _native.Network.from_parts(encoder.num_inputs, None, "", parts, num_classes, tau, info_dict)
        elif isinstance(encoder, ThresholdEncoder):
            native = _native.Network.from_parts(
                None, encoder.thresholds, encoder.bit_order, parts, num_classes, tau, info_dict
            )
        else:
            raise TypeError(f"expected BitsEncoder or ThresholdEncoder, got {type(encoder).__name__}")
        return cls(native)

    @classmethod
    def from_bytes(cls, data: bytes) -> Network:
        """Parses the bytes of a network file."""
        return cls(_native.Network.from_bytes(data))

    # -- evaluation ---------------------------------------------------------------------------------------------

    def predict(self, x: Any, *, threads: int | None = None, isa: Isa | None = None) -> np.ndarray:
        """Predicted class of every row of ``x``, int64 ``[N]``; ties go to the lowest class index.

        ``x`` is a 2-D array: float32, float64 or uint8 features (through the network's encoder), or bool (or 0/1
        uint8 for a network without thresholds) input bits. ``threads=None`` uses every core; ``isa`` forces an
        instruction-set path (see :func:`bitlogic.supported_isas`).
        """
        return self._net.predict(_as_array(x), threads, isa)

    def scores(self, x: Any, *, threads: int | None = None, isa: Isa | None = None) -> np.ndarray:
        """GroupSum class scores, int32 ``[N, num_classes]``: the popcount of each class's group of output bits.

        Divided by :attr:`tau` they equal the trained model's outputs.
        """
        return self._net.scores(_as_array(x), threads, isa)

    # -- files --------------------------------------------------------------------------------------------------

    def save(self, path: PathLike) -> None:
        """Writes the network file (docs/FORMAT.md) atomically: readers see the old file or the new one."""
        self._net.save(os.fspath(path))

    def to_bytes(self) -> bytes:
        """The bytes of the network file."""
        return self._net.to_bytes()

    # -- inspection ---------------------------------------------------------------------------------------------

    @property
    def num_inputs(self) -> int:
        """Values per sample: features for a threshold encoder, bits otherwise."""
        return self._net.num_inputs

    @property
    def num_input_bits(self) -> int:
        """Width of the encoder's output (columns of a bool input)."""
        return self._net.num_input_bits

    @property
    def num_classes(self) -> int:
        return self._net.num_classes

    @property
    def tau(self) -> float:
        """GroupSum temperature: ``scores / tau`` are the trained model's logits."""
        return self._net.tau

    @property
    def info(self) -> dict[str, str]:
        """Free-form annotations stored in the file."""
        return self._net.info

    @property
    def encoder(self) -> Encoder:
        parts = self._net.encoder_parts()
        if parts[0] == "bits":
            return BitsEncoder(parts[1])
        return ThresholdEncoder(parts[1], parts[2])

    @property
    def layers(self) -> list[Layer]:
        out: list[Layer] = []
        for kind, first, second in self._net.layer_parts():
            if kind == "gates":
                out.append(GateLayer(first, second))
            elif kind == "luts":
                out.append(LutLayer(first, second))
            else:
                out.append(BinaryLayer(first, second))
        return out

    def stats(self) -> dict[str, Any]:
        """Sizes: ``gates``, ``luts`` (arity -> count), ``binary_weights``, ``depth`` (layers), ``bytes`` (network
        data as stored in a file), and ``num_inputs``, ``num_input_bits``, ``num_classes``."""
        return self._net.stats()

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # Pickles (multiprocessing, copy.deepcopy) carry the network file's bytes.
        return (Network.from_bytes, (self.to_bytes(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self._net == other._net

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        s = self.stats()
        parts = [f"gates={s['gates']}"] if s["gates"] else []
        parts += [f"luts{n}={c}" for n, c in s["luts"].items()]
        if s["binary_weights"]:
            parts.append(f"binary_weights={s['binary_weights']}")
        body = ", ".join(parts) or "no layers"
        return f"<bitlogic.Network {self.num_inputs} inputs -> {self.num_classes} classes, depth {s['depth']}, {body}>"


def _as_array(x: Any) -> Any:
    # Lists and other array-likes become arrays here; numpy arrays pass through untouched (no copy, any order).
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def load(path: PathLike) -> Network:
    """Reads a network file. A malformed file raises :class:`bitlogic.FormatError`."""
    return Network(_native.Network.load(os.fspath(path)))


def random_network(
    num_inputs: int,
    widths: Sequence[int],
    num_classes: int,
    kind: Literal["gates", "luts", "binary"] = "gates",
    n: int = 6,
    seed: int = 0,
) -> Network:
    """A random network over ``num_inputs`` input bits with one layer of ``kind`` per width (``n``-input tables for
    ``kind="luts"``); the same seed gives the same network everywhere. For tests and benchmarks."""
    return Network(_native.random_network(num_inputs, list(widths), num_classes, kind, n, seed))


def supported_isas() -> list[str]:
    """Instruction-set paths this CPU supports, slowest first (``BITLOGIC_ISA`` forces one)."""
    return _native.supported_isas()
