"""``bitlogic info``: what a network file holds (encoder, layers, annotations, sizes) and the programs the engine
compiles from it. Each encoder kind is described by its entry below, found by the kind; each layer by its spec
class (``width``, ``fan_in``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from bitlogic.cli._common import load_network
from bitlogic.network import Network
from bitlogic.spec import BitsEncoder, ThresholdEncoder, for_kind


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a network file")
    p.add_argument("model", help="network file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    net = load_network(args.model)
    print(f"{args.model}: {os.path.getsize(args.model):,} bytes")
    print(f"encoder: {for_kind(_ENCODERS, net.encoder, 'bitlogic info')(net.encoder)}")
    layers = net.layers
    print(f"layers: {len(layers)}")
    for index, layer in enumerate(layers):
        print(f"  {index}: {layer.kind:<6} width {layer.width:>7,}  arity {layer.fan_in}")
    print(f"classes: {net.num_classes}, tau {net.tau:g}")
    info = net.info
    print("info:" + ("" if info else " (none)"))
    for key in sorted(info):
        print(f"  {key}: {info[key]}")
    print("stats:")
    for key, value in net.stats().items():
        print(f"  {key}: {_value(value)}")
    _print_programs(net)
    return 0


def _print_programs(net: Network) -> None:
    # The one part that compiles: both programs, each built once.
    optimization = net.optimization()
    before, after = optimization["before"], optimization["after"]
    print("program (as written -> optimized):")
    for key in before:
        print(f"  {key}: {before[key]:,} -> {after[key]:,}")
    removed = {name: count for name, count in optimization["passes"].items() if count}
    print(f"  the passes removed: {_value(removed) if removed else 'nothing'}")


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "-"
    return str(value)


def _threshold_encoder(encoder: ThresholdEncoder) -> str:
    features, count = encoder.thresholds.shape
    finite = encoder.thresholds[np.isfinite(encoder.thresholds)]
    span = f", thresholds in [{finite.min():g}, {finite.max():g}]" if finite.size else ""
    return f"thresholds, {features} features x {count} = {encoder.num_bits} bits ({encoder.bit_order}){span}"


def _bits_encoder(encoder: BitsEncoder) -> str:
    return f"none, {encoder.num_inputs} input bits"


_ENCODERS: dict[str, Callable[[Any], str]] = {"bits": _bits_encoder, "thresholds": _threshold_encoder}

