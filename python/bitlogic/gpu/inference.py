"""Bit-sliced inference of a compiled :class:`bitlogic.Network` on the GPU (``cuda/packed_inference.cu``).

The GPU runs the CPU engine's own program, after the same optimizing passes, so the results are bit-exact with the
CPU engine (``Network.scores`` / ``Network.predict``) and with :mod:`bitlogic.reference`::

    gpu_net = GpuNetwork(bitlogic.load("mnist.bitlogic"))   # the compiled program uploaded once
    scores = gpu_net.scores(x)                              # x: a CUDA tensor; int32 [N, k] on the same GPU
    labels = gpu_net.predict(x)                             # int64 [N], ties to the lowest class

``x`` takes the forms the CPU engine takes, as a tensor on the network's device: float32, float64 or uint8 features
``[N, F]`` for a threshold encoder (bool ``[N, F*T]`` there means bits already encoded), bool or 0/1 uint8 bits
``[N, B]`` for a bits encoder. Anything else raises :class:`bitlogic.InputError`; where the CPU engine would refuse
the same array, the error is the CPU engine's own (it checks a stand-in array of the same shape, or the rows up to
the first bad value).

The program is the engine's compiled form, read through :meth:`bitlogic.Network.program` (which documents its slots
and steps, as the Rust ``ProgramView`` does): gates, lookup tables and binary layers lowered to three-input
operations ``out = f(a, b, c)`` on numbered bit-plane slots and binary (XNOR-popcount) steps, through the passes that
fold constants, merge duplicates, absorb inverters and fuse small cones into one operation, followed by one sum per
class over slots, inverted slots and bits known to be 1. ``optimize=False`` uploads the program of the network as
written instead (every gate one operation, every table split into three-input ones), for comparison.

How it runs: torch compares the features with the thresholds (FORMAT.md 3.2's rule: float32 with float32, float64
with the thresholds widened exactly to float64, uint8 widened exactly to float32), producing the bits bit-major,
``[B, N]``. The slots are uint32 ``[num_slots, ceil(N / 32)]``, sample ``32w + s`` at bit ``s`` of word ``w``; a
pack kernel loads the encoder bits the program reads into slots ``0 .. num_inputs - 1``, torch sets the next two to
the constants FALSE and TRUE, and then the steps run in program order:

* a stretch of consecutive operations: one launch, one thread per word running every operation of the stretch in
  order (a seven-mux tree on the op's truth table, 32 samples per operation). The engine reuses a slot as soon as
  its last reader has run, so operations running side by side could race on a reused slot; a thread that owns its
  word of every slot cannot. The threads of a warp touch 32 consecutive words of a slot, which coalesces;
* a binary step: its input slots are gathered into sample rows (32x32 bits per warp, five shuffles), then one
  thread per (output, sample) counts ``inputs - popcount(row ^ weights)`` and a ballot packs 32 samples' output
  bits into a word of the output's slot. Gathering once per step lets every output reuse the rows;
* the head: every class's slots are gathered into rows too, and one thread per (sample, class) counts the 1 bits of
  its plain slots, the 0 bits of its inverted ones and its constant ones, int32 like the CPU engine. ``predict`` is
  torch's argmax, which returns the first maximum.

Launches go through a :class:`~bitlogic.gpu._kernels.Backend` (by default the kernels of ``device``'s GPU), in order
with torch's work on the current stream; the tests pass the CPU emulator and CPU tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import Tensor

from bitlogic.errors import InputError
from bitlogic.gpu._kernels import Arg, Backend, backend_for, blocks, i32, i64, pointer
from bitlogic.network import Network
from bitlogic.spec import ThresholdEncoder

MODULE = "packed_inference.cu"
THREADS = 256
#: Grid cap of every launch; the kernels stride over the rest, so any number of samples fits.
MAX_BLOCKS = 65535
#: The numpy dtype the CPU engine reads for each tensor dtype the GPU takes.
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.uint8: np.uint8, torch.bool: np.bool_}


@dataclass(frozen=True)
class _Ops:
    """Operations ``start .. end - 1`` of the program: a stretch with no binary step inside."""

    start: int
    end: int


@dataclass(frozen=True)
class _Binary:
    inputs: Tensor  # int32 [I]: the slots read, in the order of the weight bits
    weights: Tensor  # int32 [O, ceil(I / 32)]: weight j at bit j % 32 of word j // 32, padding 0
    thresholds: Tensor  # int32 [O]
    outputs: Tensor  # int32 [O]: the slot of every output


_Step: TypeAlias = "_Ops | _Binary"


def _row_words(width: int) -> int:
    return -(-width // 32)


def _ops_stretches(steps: Sequence[dict[str, Any]]) -> list[_Ops | dict[str, Any]]:
    """The program's steps with every run of consecutive operation steps merged into one stretch (one launch); the
    binary steps as they are."""
    merged: list[_Ops | dict[str, Any]] = []
    for step in steps:
        if step["kind"] == "ops":
            last = merged[-1] if merged else None
            if isinstance(last, _Ops) and last.end == step["start"]:
                merged[-1] = _Ops(last.start, int(step["end"]))
            else:
                merged.append(_Ops(int(step["start"]), int(step["end"])))
        elif step["kind"] == "binary":
            merged.append(step)
        else:
            raise TypeError(f"unknown program step kind {step['kind']!r}")
    return merged


def _weight_words(weights: np.ndarray, inputs: int) -> np.ndarray:
    """The engine's uint64 weight words ``[O, ceil(I / 64)]`` (weight j at bit j % 64 of word j // 64) as int32
    words ``[O, ceil(I / 32)]``: the same bits, little-endian halves. The kernels read the words as uint32; int32 is
    the same 32 bits in a dtype every torch version handles."""
    rows, words = weights.shape
    halves = np.ascontiguousarray(weights, dtype="<u8").view("<u4").reshape(rows, 2 * words)
    return np.ascontiguousarray(halves[:, : _row_words(inputs)]).view(np.int32)


def _head(classes: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The head as the kernels read it: every class's member slots in turn, plain ones first, then the inverted ones,
    uint32 ``[total]``; and per class ``(start, end of plain, end of inverted, ones)``, int32 ``[classes, 4]``."""
    members: list[np.ndarray] = []
    bounds = np.zeros((len(classes), 4), dtype=np.int32)
    at = 0
    for c, sums in enumerate(classes):
        plain, inverted = np.asarray(sums["slots"]), np.asarray(sums["inverted"])
        bounds[c] = (at, at + len(plain), at + len(plain) + len(inverted), int(sums["ones"]))
        members += [plain, inverted]
        at += len(plain) + len(inverted)
    return np.concatenate(members or [np.zeros(0)]).astype(np.uint32), bounds


class GpuNetwork:
    """A compiled network evaluated by the kernels of ``cuda/packed_inference.cu`` on ``device``.

    The encoder's thresholds and the compiled program (optimized unless ``optimize=False``, as for the CPU engine)
    are uploaded once, here. The object holds no state that evaluation changes, so one instance serves any number
    of calls. ``backend`` runs the kernels (default: ``backend_for(device)``, which raises
    :class:`bitlogic.gpu.CudaError` for a device that is not a GPU).
    """

    def __init__(self, net: Network, device: str | torch.device = "cuda", *, optimize: bool = True,
                 backend: Backend | None = None) -> None:
        if not isinstance(net, Network):
            raise TypeError(f"expected a bitlogic.Network, got {type(net).__name__}")
        place = torch.device(device)
        if place.type == "cuda" and place.index is None and torch.cuda.is_available():
            place = torch.device("cuda", torch.cuda.current_device())  # so that tensors' devices compare equal
        self.device = place
        self.backend: Backend = backend if backend is not None else backend_for(place)
        self.optimize = optimize
        self.num_classes = net.num_classes
        self.num_inputs = net.num_inputs
        self.num_input_bits = net.num_input_bits
        self._engine = net  # the CPU engine, whose checks give the input errors their wording

        encoder = net.encoder
        self._threshold_major = False
        self._thresholds: Tensor | None = None  # float32 [F, T]
        self._thresholds64: Tensor | None = None  # the same values, exactly, in float64
        if isinstance(encoder, ThresholdEncoder):
            self._thresholds = torch.from_numpy(encoder.thresholds.copy()).to(place)
            self._thresholds64 = self._thresholds.to(torch.float64)
            self._threshold_major = encoder.bit_order == "threshold_major"

        def upload(array: np.ndarray, dtype: torch.dtype) -> Tensor:
            # uint32 slot indices travel as int32, the same 32 bits (every index is below 2^31).
            host = np.ascontiguousarray(array)
            if host.dtype == np.uint32:
                host = host.view(np.int32)
            return torch.from_numpy(host).to(device=place, dtype=dtype).contiguous()

        program = net.program(optimize)
        self.num_slots: int = int(program["num_slots"])
        #: Three-input operations of the uploaded program.
        self.num_ops: int = int(program["imms"].shape[0])
        self._false_slot, self._true_slot = int(program["false_slot"]), int(program["true_slot"])
        self._select = upload(program["input_bits"], torch.int32)  # slot i <- encoder bit select[i]
        self._ops = upload(program["ops"].reshape(-1, 4), torch.int32)
        self._imms = upload(program["imms"], torch.uint8)
        self._steps: list[_Step] = []
        for step in _ops_stretches(program["steps"]):
            if isinstance(step, _Ops):
                self._steps.append(step)
                continue
            inputs = np.asarray(step["inputs"])
            self._steps.append(_Binary(upload(inputs, torch.int32),
                                       upload(_weight_words(step["weights"], len(inputs)), torch.int32),
                                       upload(step["thresholds"], torch.int32), upload(step["outputs"], torch.int32)))
        members, bounds = _head(program["classes"])
        self._members = upload(members, torch.int32)
        self._bounds = upload(bounds, torch.int32)

    # -- evaluation ---------------------------------------------------------------------------------------------

    def scores(self, x: Tensor) -> Tensor:
        """GroupSum class scores, int32 ``[N, num_classes]`` on the network's device (see the module docstring for
        the forms ``x`` takes)."""
        bits = self._input_bits(x)
        n = bits.shape[1]
        if n == 0:
            return torch.zeros(0, self.num_classes, dtype=torch.int32, device=self.device)
        words = -(-n // 32)
        slots = torch.empty(self.num_slots, words, dtype=torch.int32, device=self.device)
        count = self._select.shape[0]
        self._launch_units("infer_pack", count * words,
                           [pointer(bits), pointer(self._select), pointer(slots), i32(count), i64(n), i64(words)])
        slots[self._false_slot].zero_()
        slots[self._true_slot].fill_(-1)  # all 32 bits set
        for step in self._steps:
            if isinstance(step, _Ops):
                self._launch_items("infer_ops", words, [pointer(slots), pointer(self._ops), pointer(self._imms),
                                                        i64(step.start), i64(step.end), i64(words)])
            else:
                inputs = step.inputs.shape[0]
                rows = self._rows(slots, step.inputs, words)
                outputs = step.outputs.shape[0]
                self._launch_units("infer_binary", outputs * words,
                                   [pointer(rows), pointer(step.weights), pointer(step.thresholds),
                                    pointer(step.outputs), pointer(slots), i32(outputs), i32(inputs),
                                    i32(_row_words(inputs)), i64(words)])
        rows = self._rows(slots, self._members, words)
        scores = torch.empty(n, self.num_classes, dtype=torch.int32, device=self.device)
        self._launch_items("infer_class_sums", n * self.num_classes,
                           [pointer(rows), pointer(self._bounds), pointer(scores), i32(self.num_classes),
                            i32(_row_words(self._members.shape[0])), i64(n)])
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
        if x.dim() != 2:  # the engine's message, from a stand-in of the same shape that takes no memory
            raise self._engine_error(np.broadcast_to(np.zeros((), dtype=np.bool_), tuple(x.shape)))
        if x.dtype not in _NUMPY_DTYPES:
            raise InputError(f"expected a float32, float64, uint8 or bool tensor, got dtype {x.dtype}")
        if x.device != self.device:
            raise InputError(f"expected a tensor on {self.device}, got one on {x.device}")
        # Columns and dtype as the engine accepts them: it checks a stand-in without rows.
        self._engine_check(np.zeros((0, x.shape[1]), dtype=_NUMPY_DTYPES[x.dtype]))
        thresholds = self._thresholds
        if thresholds is None:  # input bits, bool or 0/1 uint8
            if x.dtype == torch.uint8:
                self._check_rows(x, x > 1)
            return x.t().to(torch.bool).contiguous()
        if x.dtype == torch.bool:  # a threshold network takes bits that are already encoded
            return x.t().contiguous()
        if x.dtype != torch.uint8:
            self._check_rows(x, torch.isnan(x))
        features, per_feature = thresholds.shape
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
        by_feature = values.t().contiguous()  # [F, N], so that the comparisons below come out bit-major
        if self._threshold_major:  # bit t*F + f: the C order of [T, F, N]
            above = by_feature[None, :, :] > limits.t()[:, :, None]
        else:  # bit f*T + t: the C order of [F, T, N]
            above = by_feature[:, None, :] > limits[:, :, None]
        return above.reshape(features * per_feature, x.shape[0]).contiguous()

    def _check_rows(self, x: Tensor, bad: Tensor) -> None:
        """Raises the engine's error for ``x`` where ``bad`` (bool, the shape of ``x``) marks a value it refuses: the
        rows up to the first bad one are checked by the engine, so the message names the same sample and column."""
        if bool(bad.any()):
            sample = int(torch.nonzero(bad)[0, 0])
            raise self._engine_error(x[: sample + 1].cpu().numpy())

    def _engine_check(self, x: np.ndarray) -> None:
        self._engine.scores(x, optimize=self.optimize)

    def _engine_error(self, x: np.ndarray) -> InputError:
        """The engine's error for ``x``, an array it refuses."""
        try:
            self._engine_check(x)
        except InputError as error:
            return error
        raise AssertionError(f"the CPU engine accepts an input GpuNetwork refuses (shape {list(x.shape)})")

    # -- launches -----------------------------------------------------------------------------------------------

    def _rows(self, slots: Tensor, members: Tensor, words: int) -> Tensor:
        """Sample rows ``[32 * words, ceil(len(members) / 32)]`` of the slots ``members``, in that order."""
        count = members.shape[0]
        row_words = _row_words(count)
        rows = torch.empty(32 * words, row_words, dtype=torch.int32, device=self.device)
        self._launch_units("infer_rows", words * row_words,
                           [pointer(slots), pointer(members), i32(count), pointer(rows), i32(row_words), i64(words)])
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
        binary = sum(isinstance(step, _Binary) for step in self._steps)
        program = "optimized" if self.optimize else "as written"
        return (f"<bitlogic.gpu.GpuNetwork on {self.device}: {self.num_inputs} inputs -> {self.num_classes} classes, "
                f"{self.num_ops} operations and {binary} binary steps ({program}), {self.num_slots} slots>")


__all__ = ["GpuNetwork"]
