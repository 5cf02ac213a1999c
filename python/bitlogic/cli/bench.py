"""``bitlogic bench``: inference throughput of a network file on random inputs, per instruction set and thread
count, with and without the optimizing passes."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import bitlogic
from bitlogic.cli._common import CliError, best_rate, load_network, thread_counts, threads_label
from bitlogic.network import Network
from bitlogic.spec import BitsEncoder, ThresholdEncoder, for_kind


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="inference throughput on random inputs, per thread count and ISA")
    p.add_argument("model", help="network file")
    p.add_argument("--batch", type=int, default=10000, help="rows per call (default: 10000)")
    p.add_argument("--threads", type=int, help="thread count (default: 1 and all cores)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs, the best is reported (default: 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    if args.repeat < 1:
        raise CliError(f"--repeat must be >= 1, got {args.repeat}")
    net = load_network(args.model)
    threads = thread_counts(args.threads)
    x = random_inputs(net, args.batch)
    print(f"{args.model}: {net!r}")
    start = time.perf_counter()
    net.prepare()
    seconds = time.perf_counter() - start
    after = net.optimization()["after"]
    binary = f", {after['binary_rows']:,} binary rows" if after["binary_rows"] else ""
    print(f"optimizing passes: {seconds:.3f} s, {after['ops']:,} operations{binary}")
    print(f"{args.batch} random {x.dtype} rows x {x.shape[1]}, best of {args.repeat} runs")
    print(f"{'isa':<24} {'threads':>9} {'samples/s':>14} {'ns/sample':>10}")
    rows: list[tuple[str, Any, bool]] = [(isa, isa, True) for isa in bitlogic.supported_isas()]
    rows.append((f"{bitlogic._native.default_isa()}, optimization off", None, False))
    for label, isa, optimize in rows:
        for t in threads:
            samples_per_second = best_rate(net, x, args.repeat, t, isa, optimize)
            print(f"{label:<24} {threads_label(t):>9} {samples_per_second:>14,.0f} {1e9 / samples_per_second:>10.1f}")
    return 0


def random_inputs(net: Network, rows: int, seed: int = 0) -> np.ndarray:
    """Random rows the network accepts: features spanning its thresholds, or input bits without an encoder."""
    rng = np.random.default_rng(seed)
    make = for_kind(_RANDOM_INPUTS, net.encoder, "bitlogic bench")
    return make(net.encoder, rows, rng)


def _random_features(encoder: ThresholdEncoder, rows: int, rng: np.random.Generator) -> np.ndarray:
    # uint8 where the thresholds lie in 0..255 (the engine's fastest input), float32 otherwise.
    thresholds = encoder.thresholds[np.isfinite(encoder.thresholds)]
    low = float(thresholds.min()) if thresholds.size else 0.0
    high = float(thresholds.max()) if thresholds.size else 255.0
    if low >= 0 and high < 255:
        lo, hi = max(0, math.floor(low)), min(255, math.ceil(high) + 1)
        return rng.integers(lo, hi + 1, size=(rows, encoder.num_inputs), dtype=np.uint8)
    margin = 0.1 * (high - low) + 1e-3
    return rng.uniform(low - margin, high + margin, size=(rows, encoder.num_inputs)).astype(np.float32)


def _random_bits(encoder: BitsEncoder, rows: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2, size=(rows, encoder.num_inputs), dtype=np.uint8).astype(np.bool_)


_RANDOM_INPUTS: dict[str, Callable[[Any, int, np.random.Generator], np.ndarray]] = {
    "bits": _random_bits,
    "thresholds": _random_features,
}
