"""Binary convolutions against this core's XNOR-popcount peak, measured side by side in one run.

Each binary convolution of the ``conv-binary-s`` preset (untrained, or the state_dict of ``--state``, e.g. saved by
``benches/accuracy.py --save``) runs alone as a network of its own (bits in, the layer, one class counting its
outputs), single-threaded on the engine's default instruction-set path. Its rate in bit comparisons per second
(samples/s times the XNOR-popcount comparisons the compiled program makes per sample) is set against the rate of
``rust/bitlogic/examples/xnor_peak.rs``: the same XOR-and-popcount loop shape on L1-resident words, which no binary
layer can beat. The fraction is how much of the core the layer uses; the rest goes to reading its inputs from the
bit planes, transposing them to samples (the im2col of each window) and writing the outputs back.

    python benches/conv.py [--samples 20000] [--repeats 5] [--state conv-binary-s.pt]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

import bitlogic  # noqa: E402
from bitlogic import presets  # noqa: E402
from bitlogic.spec import BitsEncoder, ConvBinaryLayer  # noqa: E402
from _machine import cpu_name  # noqa: E402  (benches/ is the script directory, first on sys.path)

ROOT = Path(__file__).resolve().parents[1]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rates() -> dict[str, float]:
    """Bit comparisons per second of ``examples/xnor_peak.rs`` by instruction-set path (built here, release)."""
    command = ["cargo", "run", "--quiet", "--release", "-p", "bitlogic", "--example", "xnor_peak"]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {isa: float(rate) for isa, rate in (line.split() for line in out.splitlines() if line.strip())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--state", type=Path, help="a state_dict of conv-binary-s (default: untrained weights)")
    args = parser.parse_args()

    torch.manual_seed(0)
    pixels = np.random.default_rng(0).integers(0, 256, (1000, 784)).astype(np.float32)
    model = presets.get("conv-binary-s").build(pixels, 10, (1, 28, 28))
    if args.state is not None:
        model.load_state_dict(torch.load(args.state, weights_only=True))
    net = bitlogic.compile(model)
    isa = bitlogic._native.default_isa()
    print(f"# binary convolutions of conv-binary-s ({'trained' if args.state else 'untrained'}), {cpu_name()}, "
          f"{isa}, 1 thread, {args.samples:,} samples")
    peaks = peak_rates()
    peak = peaks[isa]
    print(f"XNOR-popcount peak ({isa}, examples/xnor_peak.rs): {peak / 1e9:,.1f} G bit comparisons/s")
    print(f"{'layer':<34} {'comparisons/sample':>18} {'samples/s':>11} {'G comparisons/s':>16} {'of peak':>8}")
    rng = np.random.default_rng(1)
    for index, layer in enumerate(net.layers):
        if not isinstance(layer, ConvBinaryLayer):
            continue
        alone = bitlogic.Network.from_arrays(BitsEncoder(layer.input_width), [layer], num_classes=1)
        program = alone.optimization()["after"]
        comparisons = int(program["binary_weights"])  # rows x inputs of every binary step: one XNOR each
        bits = rng.random((args.samples, layer.input_width)) < 0.5
        rate = args.samples / best_seconds(lambda: alone.predict(bits, threads=1), args.repeats)
        c, h, w = layer.input_shape
        o, h2, w2 = layer.output_shape
        name = f"{index}: {c}x{h}x{w} -> {o}x{h2}x{w2}, {layer.kernel_size[0]}x{layer.kernel_size[1]}"
        print(f"{name:<34} {comparisons:>18,} {rate:>11,.0f} {rate * comparisons / 1e9:>16,.1f} "
              f"{rate * comparisons / peak:>8.1%}")


if __name__ == "__main__":
    main()
