"""Bit-sliced inference of a compiled :class:`bitlogic.Network` on the GPU (``cuda/packed_inference.cu``).

The results are bit-exact with the CPU engine (``Network.scores`` / ``Network.predict``) and with
:mod:`bitlogic.reference`::

    gpu_net = GpuNetwork(bitlogic.load("mnist.bitlogic"))   # wires, ops, tables and weights uploaded once
    scores = gpu_net.scores(x)                              # x: a CUDA tensor; int32 [N, k] on the same GPU
    labels = gpu_net.predict(x)                             # int64 [N], ties to the lowest class

``x`` takes the forms the CPU engine takes, as a tensor on the network's device: float32, float64 or uint8 features
``[N, F]`` for a threshold encoder (bool ``[N, F*T]`` there means bits already encoded), bool or 0/1 uint8 bits
``[N, B]`` for a bits encoder. Anything else raises :class:`bitlogic.InputError` with the CPU engine's message.

How it runs: torch compares the features with the thresholds (FORMAT.md 3.2's rule: float32 with float32, float64
with the thresholds widened exactly to float64, uint8 widened exactly to float32), producing the bits bit-major,
``[B, N]``. A pack kernel turns them into bit planes, uint32 ``[B, ceil(N / 32)]`` with sample ``32w + s`` at bit
``s`` of word ``w``, and every layer maps planes to planes with 32 samples per word operation:

* gates: one thread per (gate, word), the four minterms of the op code's truth table;
* lookup tables: one thread per (table, word), the mux tree of the table's entries over the input words. A table of
  ``n`` inputs costs ``2**n - 1`` three-operation muxes per 32 samples, in registers (the arity is a template
  argument, so the tree unrolls). The alternative, one thread per (table, sample) assembling its address bit by bit
  and a ballot packing the outputs, costs about ``3n + 10`` warp instructions per 32 samples against
  ``3 (2**n - 1) / 32`` here: fewer for every arity the format allows (1 to 8), with the same memory traffic;
* binary layers: the input planes are transposed to sample rows (32x32 bits per warp, five shuffles), then one
  thread per (output, sample) counts ``inputs - popcount(row ^ weights)`` and a ballot packs 32 samples' output
  bits into a word of the output plane. Transposing once per layer lets every output reuse the rows; a per-output
  transpose would cost more than the popcounts themselves;
* the head: the last planes are transposed to rows too, and one thread per (sample, class) counts the 1 bits of
  the class's group, int32 like the CPU engine. ``predict`` is torch's argmax, which returns the first maximum.

Launches go through a :class:`~bitlogic.gpu._kernels.Backend` (by default the kernels of ``device``'s GPU), in order
with torch's work on the current stream; the tests pass the CPU emulator and CPU tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import torch
from torch import Tensor

from bitlogic._native import InputError
from bitlogic.gpu._kernels import Arg, Backend, backend_for, blocks, i32, i64, pointer
from bitlogic.network import Network
from bitlogic.spec import BinaryLayer, BitsEncoder, GateLayer, LutLayer, ThresholdEncoder

MODULE = "packed_inference.cu"
THREADS = 256
#: Grid cap of every launch; the kernels stride over the rest, so any number of samples fits.
MAX_BLOCKS = 65535
#: The arities cuda/packed_inference.cu has a mux tree for: all that FORMAT.md allows.
ARITIES = range(1, 9)
_FEATURE_DTYPES = (torch.float32, torch.float64, torch.uint8)


@dataclass(frozen=True)
class _Gates:
    width: int
    wires: Tensor  # int32 [G, 2]: inputs A, B
    ops: Tensor  # uint8 [G]


@dataclass(frozen=True)
class _Luts:
    width: int
    arity: int
    wires: Tensor  # int32 [L, n]
    tables: Tensor  # int32 [L, ceil(2**n / 32)]: entry a at bit a % 32 of word a // 32


@dataclass(frozen=True)
class _Binary:
    width: int
    inputs: int
    weights: Tensor  # int32 [O, ceil(I / 32)]: weight j at bit j % 32 of word j // 32, padding 0
    thresholds: Tensor  # int32 [O]


_Layer: TypeAlias = "_Gates | _Luts | _Binary"


def _words(bits: np.ndarray, per_row: int) -> np.ndarray:
    """0/1 ``[R, C]`` packed little-endian into int32 words ``[R, per_row]`` (bit ``c % 32`` of word ``c // 32``);
    the bits past ``C`` are 0. The kernels read the words as uint32; int32 is the same 32 bits in a dtype every
    torch version handles."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), axis=1, bitorder="little")
    padded = np.zeros((packed.shape[0], per_row * 4), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return np.ascontiguousarray(padded.view("<u4").view(np.int32))


def _row_words(width: int) -> int:
    return -(-width // 32)


class GpuNetwork:
    """A compiled network evaluated by the kernels of ``cuda/packed_inference.cu`` on ``device``.

    The encoder's thresholds and every layer's wires, op codes, tables and weights are uploaded once, here. The
    object holds no state that evaluation changes, so one instance serves any number of calls. ``backend`` runs the
    kernels (default: ``backend_for(device)``, which raises :class:`bitlogic.gpu.CudaError` for a device that is
    not a GPU).
    """

    def __init__(self, net: Network, device: str | torch.device = "cuda", *, backend: Backend | None = None) -> None:
        if not isinstance(net, Network):
            raise TypeError(f"expected a bitlogic.Network, got {type(net).__name__}")
        place = torch.device(device)
        if place.type == "cuda" and place.index is None and torch.cuda.is_available():
            place = torch.device("cuda", torch.cuda.current_device())  # so that tensors' devices compare equal
        self.device = place
        self.backend: Backend = backend if backend is not None else backend_for(place)
        self.num_classes = net.num_classes
        self.num_inputs = net.num_inputs
        self.num_input_bits = net.num_input_bits

        encoder = net.encoder
        self._threshold_major = False
        self._thresholds: Tensor | None = None  # float32 [F, T]
        self._thresholds64: Tensor | None = None  # the same values, exactly, in float64
        if isinstance(encoder, ThresholdEncoder):
            self._thresholds = torch.from_numpy(encoder.thresholds.copy()).to(place)
            self._thresholds64 = self._thresholds.to(torch.float64)
            self._threshold_major = encoder.bit_order == "threshold_major"
        elif not isinstance(encoder, BitsEncoder):
            raise TypeError(f"expected BitsEncoder or ThresholdEncoder, got {type(encoder).__name__}")

        def upload(array: np.ndarray, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device=place, dtype=dtype).contiguous()

        self._layers: list[_Layer] = []
        width = encoder.num_bits
        for layer in net.layers:
            if isinstance(layer, GateLayer):
                self._layers.append(_Gates(layer.width, upload(layer.inputs.astype(np.int32), torch.int32),
                                           upload(layer.ops, torch.uint8)))
            elif isinstance(layer, LutLayer):
                if layer.arity not in ARITIES:
                    raise InputError(f"luts layer: arity {layer.arity} is outside 1..=8")
                table_words = _row_words(1 << layer.arity)
                self._layers.append(_Luts(layer.width, layer.arity, upload(layer.inputs.astype(np.int32), torch.int32),
                                          upload(_words(layer.tables, table_words), torch.int32)))
            elif isinstance(layer, BinaryLayer):
                self._layers.append(_Binary(layer.width, width,
                                            upload(_words(layer.weights, _row_words(width)), torch.int32),
                                            upload(layer.thresholds, torch.int32)))
            else:
                raise TypeError(f"expected GateLayer, LutLayer or BinaryLayer, got {type(layer).__name__}")
            width = layer.width

    # -- evaluation ---------------------------------------------------------------------------------------------

    def scores(self, x: Tensor) -> Tensor:
        """GroupSum class scores, int32 ``[N, num_classes]`` on the network's device (see the module docstring for
        the forms ``x`` takes)."""
        bits = self._input_bits(x)
        n = bits.shape[1]
        if n == 0:
            return torch.zeros(0, self.num_classes, dtype=torch.int32, device=self.device)
        words = -(-n // 32)
        planes = self._empty(bits.shape[0], words)
        self._launch_units("infer_pack", bits.shape[0] * words,
                           [pointer(bits), pointer(planes), i32(bits.shape[0]), i64(n), i64(words)])
        width = bits.shape[0]
        for layer in self._layers:
            out = self._empty(layer.width, words)
            if isinstance(layer, _Gates):
                self._launch_items("infer_gates", layer.width * words,
                                   [pointer(planes), pointer(layer.wires), pointer(layer.ops), pointer(out),
                                    i32(layer.width), i64(words)])
            elif isinstance(layer, _Luts):
                self._launch_items("infer_luts", layer.width * words,
                                   [pointer(planes), pointer(layer.wires), pointer(layer.tables), pointer(out),
                                    i32(layer.width), i32(layer.arity), i64(words)])
            else:
                rows = self._rows(planes, width, words)
                self._launch_units("infer_binary", layer.width * words,
                                   [pointer(rows), pointer(layer.weights), pointer(layer.thresholds), pointer(out),
                                    i32(layer.width), i32(layer.inputs), i32(_row_words(layer.inputs)), i64(words)])
            planes, width = out, layer.width
        rows = self._rows(planes, width, words)
        scores = torch.empty(n, self.num_classes, dtype=torch.int32, device=self.device)
        self._launch_items("infer_group_sum", n * self.num_classes,
                           [pointer(rows), pointer(scores), i32(self.num_classes), i32(width // self.num_classes),
                            i32(_row_words(width)), i64(n)])
        return scores

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class of every sample, int64 ``[N]``: the largest score, ties to the lowest class index."""
        # torch.argmax returns the index of the first maximal value, which is the tie rule.
        return torch.argmax(self.scores(x), dim=1)

    # -- input --------------------------------------------------------------------------------------------------

    def _input_bits(self, x: Tensor) -> Tensor:
        """The encoder's output, bool ``[B, N]`` (bit-major, contiguous), checked as the CPU engine checks."""
        if not isinstance(x, Tensor):
            raise InputError(f"expected a torch.Tensor on {self.device}, got {type(x).__name__}")
        if x.dim() != 2:
            raise InputError(f"expected a 2-dimensional array of shape [samples, inputs], got shape {list(x.shape)}")
        if x.dtype not in (*_FEATURE_DTYPES, torch.bool):
            raise InputError(f"expected a float32, float64, uint8 or bool tensor, got dtype {x.dtype}")
        if x.device != self.device:
            raise InputError(f"expected a tensor on {self.device}, got one on {x.device}")
        thresholds = self._thresholds
        if thresholds is None:
            if x.dtype.is_floating_point:
                raise InputError(f"invalid input: this network takes {self.num_input_bits} input bits per sample "
                                 "(a bool or 0/1 uint8 array), not float features")
            self._check_bit_columns(x)
            if x.dtype == torch.uint8:
                above = x > 1
                if bool(above.any()):
                    sample, bit = (int(v) for v in torch.nonzero(above)[0])
                    raise InputError(f"invalid input: sample {sample}, input bit {bit} is {int(x[sample, bit])}; "
                                     "expected 0 or 1")
            return x.t().to(torch.bool).contiguous()
        if x.dtype == torch.bool:  # a threshold network takes bits that are already encoded
            self._check_bit_columns(x)
            return x.t().contiguous()
        features, per_feature = thresholds.shape
        if x.shape[1] != features:
            raise InputError(f"invalid input: expected {features} features per sample (shape [N, {features}]), "
                             f"got {x.shape[1]} columns")
        # FORMAT.md 3.2. Both widenings are exact: every uint8 is a float32 and every float32 a float64. A float64
        # feature must meet the float64 threshold: rounding the feature to float32 could make a value just above a
        # threshold equal to it.
        if x.dtype == torch.float64:
            assert self._thresholds64 is not None
            values, limits = x, self._thresholds64
        elif x.dtype == torch.uint8:
            values, limits = x.to(torch.float32), thresholds
        else:
            values, limits = x, thresholds
        if values.dtype != torch.uint8:
            nan = torch.isnan(values)
            if bool(nan.any()):
                sample, feature = (int(v) for v in torch.nonzero(nan)[0])
                raise InputError(f"invalid input: sample {sample}, feature {feature} is NaN; expected a number")
        by_feature = values.t().contiguous()  # [F, N], so that the comparisons below come out bit-major
        if self._threshold_major:  # bit t*F + f: the C order of [T, F, N]
            above = by_feature[None, :, :] > limits.t()[:, :, None]
        else:  # bit f*T + t: the C order of [F, T, N]
            above = by_feature[:, None, :] > limits[:, :, None]
        return above.reshape(features * per_feature, x.shape[0]).contiguous()

    def _check_bit_columns(self, x: Tensor) -> None:
        if x.shape[1] != self.num_input_bits:
            raise InputError(f"invalid input: expected {self.num_input_bits} input bits per sample "
                             f"(shape [N, {self.num_input_bits}]), got {x.shape[1]} columns")

    # -- launches -----------------------------------------------------------------------------------------------

    def _empty(self, width: int, words: int) -> Tensor:
        return torch.empty(width, words, dtype=torch.int32, device=self.device)

    def _rows(self, planes: Tensor, width: int, words: int) -> Tensor:
        """Sample rows ``[32 * words, ceil(width / 32)]`` of planes ``[width, words]``."""
        row_words = _row_words(width)
        rows = torch.empty(32 * words, row_words, dtype=torch.int32, device=self.device)
        self._launch_units("infer_rows", words * row_words,
                           [pointer(planes), pointer(rows), i32(width), i32(row_words), i64(words)])
        return rows

    def _launch_items(self, kernel: str, items: int, args: Sequence[Arg]) -> None:
        """A kernel with one thread per item."""
        grid = (min(blocks(items, THREADS), MAX_BLOCKS), 1, 1)
        self.backend.launch(MODULE, kernel, grid, (THREADS, 1, 1), args)

    def _launch_units(self, kernel: str, units: int, args: Sequence[Arg]) -> None:
        """A kernel with one warp per unit (its lanes exchange values)."""
        grid = (min(blocks(units, THREADS // 32), MAX_BLOCKS), 1, 1)
        self.backend.launch(MODULE, kernel, grid, (THREADS, 1, 1), args)

    def __repr__(self) -> str:
        kinds = ", ".join(type(layer).__name__.strip("_").lower() for layer in self._layers) or "no layers"
        return (f"<bitlogic.gpu.GpuNetwork on {self.device}: {self.num_inputs} inputs -> {self.num_classes} classes, "
                f"{kinds}>")


__all__ = ["ARITIES", "GpuNetwork"]
