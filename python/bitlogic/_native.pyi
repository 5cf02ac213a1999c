"""Type stubs of the native module (checked against it by ``python -m mypy.stubtest bitlogic._native``)."""

from collections.abc import Sequence
from typing import Any, TypeAlias, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "BitlogicError",
    "FORMAT_VERSION",
    "FormatError",
    "InputError",
    "MAX_ARITY",
    "MAX_WIDTH",
    "NUM_OPS",
    "Network",
    "OP_TABLES",
    "__version__",
    "candidate_backward",
    "candidate_forward",
    "cuda_sources",
    "default_isa",
    "gate_backward",
    "gate_backward_coef",
    "gate_forward",
    "learned_gate_backward",
    "learned_gate_forward",
    "random_network",
    "supported_isas",
    "tree_conv_backward",
    "tree_conv_forward",
    "write_atomic",
]

__version__: str
FORMAT_VERSION: str
#: Largest LUT arity the engine supports.
MAX_ARITY: int
#: Largest width of a bit group (encoder output or layer): 2**31 - 1.
MAX_WIDTH: int
#: Number of two-input gate op codes (0..NUM_OPS-1).
NUM_OPS: int
#: ``OP_TABLES[op][2*a + b]`` (0 or 1) is the output of gate ``op`` for the inputs ``(a, b)``.
OP_TABLES: tuple[tuple[int, int, int, int], ...]

#: A layer as ``Network.from_parts`` takes it and ``Network.layer_parts`` gives it: ``(kind, array, array)`` for the
#: dense kinds; ``(kind, array | None, array | None, geometry)`` for the spatial ones, ``geometry`` holding
#: ``input_shape``, ``kernel_size``, ``stride``, ``padding`` (not for ``or_pool``) and ``pad_value`` (``conv_binary``).
_LayerParts: TypeAlias = (
    tuple[str, npt.NDArray[Any], npt.NDArray[Any]]
    | tuple[str, npt.NDArray[Any] | None, npt.NDArray[Any] | None, dict[str, Any]]
)

class BitlogicError(ValueError): ...
class FormatError(BitlogicError): ...
class InputError(BitlogicError): ...

@final
class Network:
    @staticmethod
    def load(path: str) -> Network: ...
    @staticmethod
    def from_bytes(data: bytes) -> Network: ...
    @staticmethod
    def from_parts(
        num_input_bits: int | None,
        thresholds: npt.NDArray[np.float32] | None,
        bit_order: str,
        layers: Sequence[_LayerParts],
        num_classes: int,
        tau: float,
        info: dict[str, str] | None = None,
    ) -> Network: ...
    def to_bytes(self) -> bytes: ...
    def save(self, path: str) -> None: ...
    def encoder_parts(self) -> tuple[Any, ...]: ...
    def layer_parts(self) -> list[_LayerParts]: ...
    def scores(
        self,
        x: npt.NDArray[Any],
        threads: int | None = None,
        isa: str | None = None,
        optimize: bool = True,
        num_samples: int | None = None,
    ) -> npt.NDArray[np.int32]: ...
    def predict(
        self,
        x: npt.NDArray[Any],
        threads: int | None = None,
        isa: str | None = None,
        optimize: bool = True,
        num_samples: int | None = None,
    ) -> npt.NDArray[np.int64]: ...
    def prepare(self) -> None: ...
    def optimization(self) -> dict[str, Any]: ...
    def program(self, optimize: bool = True) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    @property
    def num_inputs(self) -> int: ...
    @property
    def num_input_bits(self) -> int: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def tau(self) -> float: ...
    @property
    def info(self) -> dict[str, str]: ...
    def __eq__(self, other: object, /) -> bool: ...

def random_network(
    num_inputs: int, widths: Sequence[int], num_classes: int, kind: str = "gates", n: int = 6, seed: int = 0
) -> Network: ...
def supported_isas() -> list[str]: ...
def default_isa() -> str: ...
# threads: None one per core, n >= 1 at most n (the caller and sleeping helpers), 0 rayon's global pool.
def gate_forward(
    x: npt.NDArray[np.float32],
    ia: npt.NDArray[np.int64],
    ib: npt.NDArray[np.int64],
    coef: npt.NDArray[np.float32],
    *,
    threads: int | None = None,
) -> npt.NDArray[np.float32]: ...
def gate_backward(
    x: npt.NDArray[np.float32],
    ia: npt.NDArray[np.int64],
    ib: npt.NDArray[np.int64],
    coef: npt.NDArray[np.float32],
    grad_out: npt.NDArray[np.float32],
    *,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def gate_backward_coef(
    x: npt.NDArray[np.float32],
    ia: npt.NDArray[np.int64],
    ib: npt.NDArray[np.int64],
    grad_out: npt.NDArray[np.float32],
    *,
    threads: int | None = None,
) -> npt.NDArray[np.float32]: ...

def candidate_forward(
    x: npt.NDArray[np.float32],
    pool: npt.NDArray[np.int64],
    w: npt.NDArray[np.float32],
    *,
    threads: int | None = None,
) -> npt.NDArray[np.float32]: ...
def candidate_backward(
    x: npt.NDArray[np.float32],
    pool: npt.NDArray[np.int64],
    v: npt.NDArray[np.float32],
    grad_out: npt.NDArray[np.float32],
    need_x: bool,
    *,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]: ...

def learned_gate_forward(
    x: npt.NDArray[np.float32],
    pool: npt.NDArray[np.int64],
    w: npt.NDArray[np.float32],
    coef: npt.NDArray[np.float32],
    *,
    threads: int | None = None,
) -> npt.NDArray[np.float32]: ...
def learned_gate_backward(
    x: npt.NDArray[np.float32],
    pool: npt.NDArray[np.int64],
    w: npt.NDArray[np.float32],
    coef: npt.NDArray[np.float32],
    grad_out: npt.NDArray[np.float32],
    *,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

def tree_conv_forward(
    x: npt.NDArray[np.float32],
    leaves: npt.NDArray[np.int64],
    coef: npt.NDArray[np.float32],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    *,
    threads: int | None = None,
) -> npt.NDArray[np.float32]: ...
def tree_conv_backward(
    x: npt.NDArray[np.float32],
    leaves: npt.NDArray[np.int64],
    coef: npt.NDArray[np.float32],
    grad_out: npt.NDArray[np.float32],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    need_x: bool,
    *,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32]]: ...

def cuda_sources() -> dict[str, str]: ...
def write_atomic(path: str, data: bytes) -> None: ...
