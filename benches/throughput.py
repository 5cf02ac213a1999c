"""Inference throughput of bitlogic on a random 784-input network of 6 x 8000 gates (10 classes), from bool input.

Prints one table measured in one run: every instruction-set path on one thread, all cores, and the pure-numpy
reference evaluator, each with its ratio to the one-thread default path. Figures depend on the machine: report them
with it.

    python benches/throughput.py [--samples 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

import bitlogic
from bitlogic import reference
from _machine import cpu_name  # benches/ is the script directory, first on sys.path


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: page in the input, start the threads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", type=int, nargs="+", default=[8000] * 6)
    args = parser.parse_args()

    net = bitlogic.random_network(784, args.widths, 10, kind="gates", seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((args.samples, 784), dtype=np.float32) < 0.5
    cores = os.cpu_count() or 1
    print(f"network: {net}")
    print(f"machine: {cpu_name()}, {cores} logical cores; default path {bitlogic._native.default_isa()}")
    print(f"batch: {args.samples} samples of 784 bools, best of {args.repeats}\n")

    rows: list[tuple[str, float]] = []
    for isa in bitlogic.supported_isas():
        seconds = best_seconds(lambda isa=isa: net.predict(x, threads=1, isa=isa), args.repeats)
        rows.append((f"bitlogic {isa}, 1 thread", args.samples / seconds))
    seconds = best_seconds(lambda: net.predict(x), args.repeats)
    rows.append((f"bitlogic default, {cores} threads", args.samples / seconds))

    small = x[:500]
    encoder, layers = net.encoder, net.layers
    seconds = best_seconds(lambda: reference.predict(encoder, layers, net.num_classes, small), 1)
    rows.append(("numpy reference, 1 thread", len(small) / seconds))

    baseline = dict(rows)[f"bitlogic {bitlogic._native.default_isa()}, 1 thread"]
    print(f"{'evaluator':<36}{'samples/s':>14}{'ratio':>10}")
    for name, rate in rows:
        print(f"{name:<36}{rate:>14,.0f}{rate / baseline:>9.2f}x")
    check = net.predict(x[:1000], threads=1)
    assert np.array_equal(check, reference.predict(encoder, layers, net.num_classes, x[:1000])), "engine != reference"
    print("\nengine and reference agree on the first 1000 samples")
    print(f"one-thread default path: {baseline / 1e6:.2f} M samples/s")


if __name__ == "__main__":
    main()
