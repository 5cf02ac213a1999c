"""What several commands share: the usage error, loading files and data sets, timing and formatting figures."""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

import bitlogic
from bitlogic.errors import BitlogicError
from bitlogic.network import Network

if TYPE_CHECKING:
    from bitlogic.datasets import Dataset

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
# Throughput figures from fewer rows than this are mostly call overhead; smaller test sets are tiled up to it.
MIN_BENCH_ROWS = 8192


class CliError(BitlogicError):
    """A usage problem: a missing file, a flag that does not fit. Reported, like every ``BitlogicError``, as
    ``bitlogic: error: <message>``."""


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def load_network(path: str) -> Network:
    if not os.path.exists(path):
        raise CliError(f"no such network file: {path}")
    if os.path.isdir(path):
        raise CliError(f"{path} is a directory, not a network file")
    return bitlogic.load(path)


def load_dataset(name: str, data_dir: str | None) -> Dataset:
    from bitlogic import datasets

    return datasets.load(name, root=data_dir)


def best_rate(
    net: Network, x: np.ndarray, repeat: int, threads: int | None, isa: Any = None, optimize: bool = True
) -> float:
    """Samples per second, best of ``repeat`` timed runs after one warm-up."""
    net.predict(x[: min(len(x), 256)], threads=threads, isa=isa, optimize=optimize)
    best = math.inf
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        net.predict(x, threads=threads, isa=isa, optimize=optimize)
        best = min(best, time.perf_counter() - start)
    return len(x) / max(best, 1e-9)


def sustained_rate(net: Network, x: np.ndarray, min_seconds: float = 0.2) -> tuple[float, int]:
    """Samples per second of ``predict(x)`` on every core, called until ``min_seconds`` have passed, and the number
    of calls timed. The program is compiled and one call made before the clock starts."""
    net.prepare()
    net.predict(x)
    calls, start = 0, time.perf_counter()
    while True:
        net.predict(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * len(x) / elapsed, calls


def tile(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` repeated up to ``rows`` rows (as it is when it has as many already)."""
    if len(x) >= rows or len(x) == 0:
        return x
    return np.ascontiguousarray(np.resize(x, (rows, *x.shape[1:])))


def rate(samples_per_second: float) -> str:
    if samples_per_second >= 1e6:
        return f"{samples_per_second / 1e6:.2f} M samples/s"
    if samples_per_second >= 1e3:
        return f"{samples_per_second / 1e3:.1f} k samples/s"
    return f"{samples_per_second:.0f} samples/s"


def size(stats: dict[str, Any]) -> str:
    parts = []
    if stats.get("gates"):
        parts.append(f"{stats['gates']:,} gates")
    for arity, count in sorted(dict(stats.get("luts") or {}).items()):
        parts.append(f"{count:,} {arity}-input LUTs")
    if stats.get("binary_weights"):
        parts.append(f"{stats['binary_weights']:,} binary weights")
    return ", ".join(parts) or "no layers"


def thread_counts(threads: int | None) -> list[int | None]:
    """``[threads]`` when given, else 1 and all cores (``None``: the engine uses every core)."""
    if threads is not None:
        if threads < 1:
            raise CliError(f"--threads must be >= 1, got {threads}")
        return [threads]
    return [1] if (os.cpu_count() or 1) == 1 else [1, None]


def threads_label(threads: int | None) -> str:
    if threads is None:
        return f"all ({os.cpu_count() or 1})"
    return str(threads)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _finite_float(text: str, accept: Callable[[float], bool], expected: str) -> float:
    """argparse type: a finite number for which ``accept`` holds; otherwise an error saying ``expected``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (accept(value) and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _finite_float(text, lambda v: v > 0, "a positive number")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _finite_float(text, lambda v: v >= 0, "a number >= 0")


def fraction(text: str) -> float:
    """argparse type: a number 0 <= x < 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction 0 <= x < 1, got {text}")
    return value
