"""``bitlogic eval``: the test accuracy of a network file on a data set, and the engine's throughput on it."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from bitlogic.cli._common import MIN_BENCH_ROWS, CliError, load_dataset, load_network, rate, sustained_rate, tile


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="test accuracy of a network file on a dataset")
    p.add_argument("model", help="network file")
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--data-dir", help="dataset directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    net = load_network(args.model)
    dataset = load_dataset(args.dataset, args.data_dir)
    if net.num_inputs != dataset.num_features:
        raise CliError(
            f"{args.model} takes {net.num_inputs} inputs but {dataset.name} has {dataset.num_features} features"
        )
    if net.num_classes < dataset.num_classes:
        raise CliError(f"{args.model} has {net.num_classes} classes but {dataset.name} has {dataset.num_classes}")
    net.prepare()  # compiled here, so that neither the accuracy nor the timing below includes it
    predictions = net.predict(dataset.x_test)
    correct = int((predictions == dataset.y_test).sum())
    total = len(dataset.y_test)
    print(f"{dataset.name} test accuracy {correct / total:.2%} ({correct}/{total})")
    # A few hundred rows take microseconds: timed alone they measure the call, not the engine.
    x = tile(np.asarray(dataset.x_test), MIN_BENCH_ROWS)
    samples_per_second, calls = sustained_rate(net, x)
    rows = f"{len(x):,} rows" + (f" (the {total} test rows repeated)" if len(x) > total else "")
    print(f"throughput {rate(samples_per_second)}: all threads, {calls} calls of {rows}, compiled beforehand")
    return 0
