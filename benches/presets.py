"""Trains presets on a dataset and prints one table: size, training time, test accuracy and inference speed.

    python benches/presets.py                       # every preset on MNIST (BITLOGIC_DATA or the user cache)
    python benches/presets.py binary-small lut-small --dataset digits

Accuracy is the exported network's, through the Rust engine (identical to the model's eval() accuracy). Training
uses the preset's defaults and all of torch's threads; inference is timed on the test set, one thread.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import bitlogic
from bitlogic import datasets, presets
from bitlogic.training import train
from _machine import cpu_name  # benches/ is the script directory, first on sys.path
from _sizes import size_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(presets.PRESETS), help="presets (default: all)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override every preset's epochs")
    parser.add_argument("--save", type=Path, default=None,
                        help="write NAME.bitlogic and NAME.pt (the state_dict) here, for benches/throughput.py")
    args = parser.parse_args()

    data = datasets.load(args.dataset)
    print(f"# {args.dataset}: {len(data.x_train)} train / {len(data.x_test)} test; {cpu_name()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, bitlogic {bitlogic.__version__}")
    rows = []
    for name in args.names:
        preset = presets.get(name)
        torch.manual_seed(args.seed)
        model = preset.build(data.x_train, data.num_classes, data.image_shape)
        epochs = args.epochs or preset.epochs
        result = train(model, data, epochs=epochs, batch_size=preset.batch_size, lr=preset.lr, seed=args.seed,
                       progress=False)
        net = bitlogic.compile(model)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            net.save(args.save / f"{name}.bitlogic")
            torch.save(model.state_dict(), args.save / f"{name}.pt")
        accuracy = float(np.mean(net.predict(data.x_test) == data.y_test))
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            net.predict(data.x_test, threads=1)
            best = min(best, time.perf_counter() - start)
        row = (name, size_of(net.stats()), epochs, result.seconds, accuracy, len(data.x_test) / best)
        rows.append(row)
        print(f"{name}: {row[1]}, {epochs} epochs, {row[3]:.0f} s, test accuracy {100 * accuracy:.2f} %, "
              f"{row[5] / 1e6:.2f} M samples/s (1 thread)", flush=True)
    print()
    print("| preset | size | epochs | train time | test accuracy | inference, 1 thread |")
    print("|---|---|---|---|---|---|")
    for name, size, epochs, seconds, accuracy, speed in rows:
        print(f"| {name} | {size} | {epochs} | {seconds / 60:.1f} min | {100 * accuracy:.2f} % | "
              f"{speed / 1e6:.2f} M/s |")


if __name__ == "__main__":
    main()
