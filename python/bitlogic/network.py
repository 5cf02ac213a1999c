"""The ``Network`` class: a compiled boolean network evaluated by the Rust engine."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

# Names imported from bitlogic._native itself: the import-layer check reads `from bitlogic import _native` (the
# compiled module has no source) as an import of the package, which imports everything above this module.
from bitlogic._native import Network as _NativeNetwork
from bitlogic._native import random_network as _random_network
from bitlogic._native import supported_isas as _supported_isas
from bitlogic.errors import InputError
from bitlogic.spec import Encoder, Layer, encoder_from_parts, encoder_parts, layer_from_parts, layer_parts

PathLike = str | os.PathLike[str]
Isa = Literal["portable", "neon", "avx2", "avx512"]


class Network:
    """A compiled network: encoder, layers of gates / lookup tables / binary neurons (dense, or convolutions and OR
    pooling over images), and a GroupSum head.

    Evaluation runs in Rust with the GIL released; a ``Network`` is immutable and can be used from several threads.
    Build one with :func:`load`, :meth:`from_arrays`, :func:`random_network` or ``bitlogic.compile`` (from torch).
    """

    __slots__ = ("_net",)

    def __init__(self, native: _NativeNetwork) -> None:
        if not isinstance(native, _NativeNetwork):
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
        parts = [layer_parts(layer) for layer in layers]
        num_input_bits, thresholds, bit_order = encoder_parts(encoder)
        info_dict = dict(info) if info is not None else None
        native = _NativeNetwork.from_parts(num_input_bits, thresholds, bit_order, parts, num_classes, tau, info_dict)
        return cls(native)

    @classmethod
    def from_bytes(cls, data: bytes) -> Network:
        """Parses the bytes of a network file."""
        return cls(_NativeNetwork.from_bytes(data))

    # -- evaluation ---------------------------------------------------------------------------------------------

    def predict(
        self,
        x: Any,
        *,
        threads: int | None = None,
        isa: Isa | None = None,
        optimize: bool = True,
        num_samples: int | None = None,
    ) -> np.ndarray:
        """Predicted class of every row of ``x``, int64 ``[N]``; ties go to the lowest class index.

        ``x`` is a 2-D array: float32, float64 or uint8 features (through the network's encoder), bool (or 0/1
        uint8 for a network without thresholds) input bits, or input bits already packed as uint64 bit planes
        ``[num_input_bits, ceil(N / 64)]`` (see :func:`bitlogic.pack_bits`; ``num_samples`` gives ``N``, by
        default 64 per word). ``threads=None`` uses every core; ``isa`` forces an instruction-set path (see
        :func:`bitlogic.supported_isas`); ``optimize=False`` evaluates every gate and table as written, for
        comparison with the optimized program (same results).
        """
        return self._net.predict(_as_array(x), threads, isa, optimize, _samples(num_samples))

    def scores(
        self,
        x: Any,
        *,
        threads: int | None = None,
        isa: Isa | None = None,
        optimize: bool = True,
        num_samples: int | None = None,
    ) -> np.ndarray:
        """GroupSum class scores, int32 ``[N, num_classes]``: the popcount of each class's group of output bits.

        Divided by :attr:`tau` they equal the trained model's outputs. Arguments as for :meth:`predict`.
        """
        return self._net.scores(_as_array(x), threads, isa, optimize, _samples(num_samples))

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
        """The encoder, unpacked (:mod:`bitlogic.spec`)."""
        return encoder_from_parts(*self._net.encoder_parts())

    @property
    def layers(self) -> list[Layer]:
        """The layers, first to last, unpacked (:mod:`bitlogic.spec`). A kind this module does not know (a native
        module newer than it) raises :class:`bitlogic.FormatError` naming it."""
        return [layer_from_parts(*parts) for parts in self._net.layer_parts()]

    def prepare(self) -> "Network":
        """Runs the optimizing passes now rather than on the first evaluation, and returns the network.

        Evaluation needs them once; calling this after loading keeps that time out of the first ``predict``.
        A network too large for the engine's compiler raises :class:`bitlogic.InputError`."""
        self._net.prepare()
        return self

    def stats(self) -> dict[str, Any]:
        """Sizes, read from the layers without compiling anything: ``gates``, ``luts`` (arity -> count),
        ``binary_weights``, ``depth`` (layers), ``bytes`` (network data as stored in a file), ``num_inputs``,
        ``num_input_bits`` and ``num_classes``. What the engine runs is :meth:`optimization`."""
        stats: dict[str, Any] = self._net.stats()
        return stats

    def optimization(self) -> dict[str, Any]:
        """The programs the engine runs, which it compiles here if no evaluation has yet: ``before`` and ``after``
        (without and with optimization: ``ops`` three-input operations, of which ``inverters``, ``two_input_ops``
        and ``three_input_ops``, ``binary_rows``, ``binary_weights``, ``inputs_read``, ``slots`` of working memory
        and ``depth``) and ``passes`` (what each optimizing pass removed: ``constants``, ``wires``,
        ``inverters_absorbed``, ``merged``, ``inputs_removed``, ``luts_split``, ``fused``, ``dead``,
        ``binary_inputs_folded``, ``binary_rows_constant``). Each program is built once per network and kept.
        A network too large for the engine's compiler raises :class:`bitlogic.InputError`."""
        optimization: dict[str, Any] = self._net.optimization()
        return optimization

    def program(self, optimize: bool = True) -> dict[str, Any]:
        """The compiled program the engine evaluates (``optimize=False``: every gate and table as written), for back
        ends that run it elsewhere, such as :class:`bitlogic.gpu.GpuNetwork`; compiled here if not yet, then kept.

        A program works on numbered bit-plane *slots* (one bit per sample), ``0..num_slots``:

        - ``input_bits``, uint32 ``[I]``: slot ``i < I`` holds bit ``input_bits[i]`` of the encoder's output;
        - ``false_slot`` (``I``) and ``true_slot`` (``I + 1``) hold FALSE and TRUE for the whole run;
        - ``num_slots``: every slot index is below it. The other slots are working memory, written by one step and
          read by later ones, and **reused** once their last reader has run, so the steps must run in order;
        - ``ops``, uint32 ``[M, 4]``: every three-input operation ``[a, b, c, out]``, in the order they run; it
          writes to slot ``out`` bit ``x + 2y + 4z`` of its truth table, where ``x``, ``y``, ``z`` are the bits in
          slots ``a``, ``b``, ``c`` (read before ``out`` is written, which may be one of them);
        - ``imms``, uint8 ``[M]``: each operation's truth table;
        - ``steps``, in the order they run, each a dict: ``kind="ops"`` with ``imm`` (the truth table of the run) and
          ``start``, ``end`` (the run is ``ops[start:end]``), or ``kind="binary"`` (an XNOR-popcount layer) with
          ``inputs`` uint32 (input slots, in weight order), ``weights`` uint64 ``[outputs, ceil(inputs / 64)]``
          (weight ``j`` of a row is bit ``j % 64`` of word ``j // 64``), ``thresholds`` int32 and ``outputs``
          uint32 (row ``r`` writes 1 to slot ``outputs[r]`` when at least ``thresholds[r]`` inputs equal their
          weight bit);
        - ``classes``, one dict per class: the score of class ``k`` is the number of ones among the slots
          ``classes[k]["slots"]``, plus the number of zeros among ``classes[k]["inverted"]``, plus
          ``classes[k]["ones"]``; ``slots`` and ``inverted`` are uint32.

        The Rust core's ``ProgramView`` documents the same program. A network too large for the engine's compiler
        raises :class:`bitlogic.InputError`."""
        program: dict[str, Any] = self._net.program(optimize)
        return program

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # Pickles (multiprocessing, copy.deepcopy) carry the network file's bytes.
        return (Network.from_bytes, (self.to_bytes(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self._net == other._net

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        s = self._net.stats()
        parts = [f"gates={s['gates']}"] if s["gates"] else []
        parts += [f"luts{n}={c}" for n, c in s["luts"].items()]
        if s["binary_weights"]:
            parts.append(f"binary_weights={s['binary_weights']}")
        body = ", ".join(parts) or "no layers"
        return f"<bitlogic.Network {self.num_inputs} inputs -> {self.num_classes} classes, depth {s['depth']}, {body}>"


def _samples(num_samples: int | None) -> int | None:
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 0):
        raise InputError(f"num_samples must be a non-negative integer, got {num_samples!r}")
    return num_samples


def _as_array(x: Any) -> Any:
    # Lists and other array-likes become arrays here; numpy arrays pass through untouched (no copy, any order).
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def load(path: PathLike) -> Network:
    """Reads a network file. A malformed file raises :class:`bitlogic.FormatError`.

    The engine compiles the network (its optimizing passes) on the first evaluation, or when
    :meth:`Network.prepare` is called."""
    return Network(_NativeNetwork.load(os.fspath(path)))


def pack_bits(bits: Any) -> np.ndarray:
    """Packs input bits ``[N, B]`` (bool or 0/1 integers) as bit planes, uint64 ``[B, ceil(N / 64)]``: sample ``s``
    is bit ``s % 64`` of word ``s // 64`` of each plane. Packed planes go to :meth:`Network.predict` as they are,
    skipping the encoder; pass ``num_samples=N``."""
    array = np.asarray(bits)
    if array.ndim != 2:
        raise InputError(f"expected a 2-dimensional array of shape [samples, bits], got shape {array.shape}")
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.integer) or ((array != 0) & (array != 1)).any():
            raise InputError("expected bool or 0/1 integer bits")
        array = array.astype(np.bool_)
    n, b = array.shape
    words = -(-n // 64)
    packed = np.zeros((b, words * 8), dtype=np.uint8)
    packed[:, : -(-n // 8)] = np.packbits(array.T, axis=1, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)


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
    return Network(_random_network(num_inputs, list(widths), num_classes, kind, n, seed))


def supported_isas() -> list[str]:
    """Instruction-set paths this CPU supports, slowest first (``BITLOGIC_ISA`` forces one)."""
    return _supported_isas()
