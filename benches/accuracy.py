"""Trains the accuracy presets on MNIST and prints one table beside the published figures and the targets.

    python benches/accuracy.py                                  # every preset below (hours on 2 cores)
    python benches/accuracy.py logic-8k --epochs 5              # one preset, fewer epochs (the table says so)
    python benches/accuracy.py --save build/accuracy            # also keep NAME.bitlogic, .pt and .history.csv

For each preset: the test accuracy of the exported network through the Rust engine (the model's ``eval()``
accuracy: the export is exact), its size (gates / LUTs / binary weights), the operations the engine runs after its
optimizing passes, the training time on this machine (all of torch's threads), and the engine's throughput from
the raw uint8 test pixels on one thread (best of five passes over the 10 000 test images, encoder included). Then
each target of the accuracy work, met or not, with the figure that decides it. Training uses the preset's own
epochs, batch, learning rate and schedule unless told otherwise; one run each (seed 0), as the targets are stated.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

# As `bitlogic train` does: torch's OpenMP threads must not spin between the fused kernels (see bitlogic.cli.train).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import bitlogic  # noqa: E402
from bitlogic import datasets, presets  # noqa: E402
from bitlogic.training import train  # noqa: E402
from _machine import cpu_name  # noqa: E402  # benches/ is the script directory, first on sys.path
from _sizes import size_of  # noqa: E402

#: The published figure each preset is set against: (accuracy %, what, where).
PUBLISHED = {
    "logic-8k": (98.45, "8 K gates, learned Top-K wiring", "LILogicNet, arXiv 2511.12340"),
    "difflogic-mnist-s": (97.69, "48 K gates, 200 000 steps", "difflogic, NeurIPS 2022"),
    "dwn-mnist-lg": (98.46, "2 000 + 1 000 LUT6, 30 epochs", "DWN tutorial, ICML 2024"),
    "conv-logic-s": (98.46, "147 K gates", "LogicTreeNet, NeurIPS 2024"),
    "conv-binary-s": (99.04, "binarized MLP", "BinaryNet, Courbariaux et al. 2016"),
}

#: (preset, minimum accuracy %, most gates or None, most training minutes or None).
TARGETS = [
    ("logic-8k", 98.0, 8000, 30.0),
    ("difflogic-mnist-s", 97.7, None, 60.0),
    ("dwn-mnist-lg", 98.3, None, 60.0),
    ("conv-logic-s", 98.5, 150_000, 120.0),
    ("conv-binary-s", 99.0, None, None),
]
#: The speed target: this accuracy (%) at this many images/s from raw uint8 pixels on one core.
SPEED_TARGET = (97.5, 10e6)


@dataclass
class Row:
    name: str
    size: str
    gates: int
    ops: int
    epochs: int
    epochs_asked: int
    minutes: float
    accuracy: float  # percent
    speed: float  # images/s, one thread, from uint8 pixels


def throughput(net: bitlogic.Network, x: np.ndarray) -> float:
    net.predict(x[:1000], threads=1)  # warm: the passes run once, on the first evaluation
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        net.predict(x, threads=1)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def run_preset(name: str, data: datasets.Dataset, epochs: int | None, seed: int, save: Path | None) -> Row:
    preset = presets.get(name)
    torch.manual_seed(seed)
    model = preset.build(data.x_train, data.num_classes, data.image_shape)
    n_epochs = epochs or preset.epochs
    step_size = preset.step_size if epochs is None else None
    history = save / f"{name}.history.csv" if save is not None else None
    print(f"## {name}: {preset.description}; {n_epochs} epochs, batch {preset.batch_size}, lr {preset.lr:g}, "
          f"schedule {preset.schedule}", flush=True)
    result = train(model, data, epochs=n_epochs, batch_size=preset.batch_size, lr=preset.lr, seed=seed,
                   schedule=preset.schedule, step_size=step_size, progress=False, history=history)
    net = bitlogic.compile(model)
    if save is not None:
        net.save(save / f"{name}.bitlogic")
        torch.save(model.state_dict(), save / f"{name}.pt")  # what benches/throughput.py --trained reads
    accuracy = 100 * float(np.mean(net.predict(data.x_test) == data.y_test))
    stats = net.stats()
    ops = int(net.optimization()["after"]["ops"])
    row = Row(name, size_of(stats), int(stats.get("gates") or 0), ops, n_epochs, preset.epochs,
              result.seconds / 60, accuracy, throughput(net, data.x_test))
    print(f"{name}: {row.size}, {ops:,} operations after the passes, {row.minutes:.1f} min, test accuracy "
          f"{accuracy:.2f} %, {row.speed / 1e6:.2f} M images/s (1 thread, uint8 pixels)", flush=True)
    return row


def report(rows: list[Row]) -> None:
    print()
    print("| preset | size | ops after passes | epochs | train time | test accuracy | published | "
          "images/s, 1 thread |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        published = PUBLISHED.get(r.name)
        cited = f"{published[0]:.2f} % ({published[1]}; {published[2]})" if published else "-"
        print(f"| {r.name} | {r.size} | {r.ops:,} | {r.epochs} | {r.minutes:.1f} min | {r.accuracy:.2f} % | "
              f"{cited} | {r.speed / 1e6:.2f} M |")
    print()
    by_name = {r.name: r for r in rows}
    for name, accuracy, gates, minutes in TARGETS:
        r = by_name.get(name)
        want = (f">= {accuracy} %" + (f", <= {gates:,} gates" if gates else "")
                + (f", <= {minutes:.0f} min" if minutes is not None else ""))
        if r is None:
            print(f"target {name}: {want}: not run")
            continue
        small = gates is None or r.gates <= gates
        met = r.accuracy >= accuracy and small and (minutes is None or r.minutes <= minutes)
        shortened = "" if r.epochs == r.epochs_asked else f" (shortened run: {r.epochs} of {r.epochs_asked} epochs)"
        size = f"{r.gates:,} gates" if r.gates else r.size
        print(f"target {name}: {want}: {'MET' if met else 'NOT MET'} — {r.accuracy:.2f} %, {size}, "
              f"{r.minutes:.1f} min{shortened}")
    accuracy, speed = SPEED_TARGET
    fast = [r for r in rows if r.accuracy >= accuracy]
    best = max(fast, key=lambda r: r.speed, default=None)
    if best is None:
        quickest = max(rows, key=lambda r: r.speed, default=None)
        closest = "" if quickest is None else (
            f"; the fastest, {quickest.name}, runs at {quickest.speed / 1e6:.2f} M images/s with {quickest.accuracy:.2f} %")
        print(f"target speed: >= {accuracy} % at >= {speed / 1e6:.0f} M images/s: NOT MET — no preset run reached "
              f"{accuracy} %{closest}")
    else:
        verdict = "MET" if best.speed >= speed else "NOT MET"
        print(f"target speed: >= {accuracy} % at >= {speed / 1e6:.0f} M images/s: {verdict} — fastest at "
              f">= {accuracy} %: {best.name}, {best.speed / 1e6:.2f} M images/s at {best.accuracy:.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(PUBLISHED), help="presets (default: all of the above)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override every preset's epochs (a shortened run)")
    parser.add_argument("--save", type=Path, default=None, help="write NAME.bitlogic, NAME.pt (state_dict) and NAME.history.csv here")
    args = parser.parse_args()
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    data = datasets.load(args.dataset)
    print(f"# {args.dataset}: {len(data.x_train)} train / {len(data.x_test)} test; {cpu_name()}, "
          f"{torch.get_num_threads()} torch threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"torch {torch.__version__}, bitlogic {bitlogic.__version__}",
          flush=True)
    rows = [run_preset(name, data, args.epochs, args.seed, args.save) for name in args.names]
    report(rows)


if __name__ == "__main__":
    main()
