"""Inference throughput: the bitlogic engine against torch eval() of the same model, a straight-line C program
generated for the same network and compiled with gcc -O1 (one statement per gate, the approach of difflogic's
CompiledLogicNet), and the engine with its optimizing passes off. Every figure of one table comes from one run.

Workloads: a random 6 x 8000-gate network on 784 bool inputs (10 classes), and the architectures of the MNIST presets
from raw uint8 pixels, untrained (random weights) or, with ``--trained DIR``, the networks and state_dicts that
``benches/presets.py --save DIR`` wrote. Every evaluator's predictions are checked against the engine's.

    python benches/throughput.py [--samples 100000] [--repeats 5] [--workloads gates logic-small ...]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# torch's idle OpenMP workers would otherwise spin on the cores the engine is being timed on.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from torch import nn

import bitlogic
from bitlogic import presets
from bitlogic.nn import GroupSum, LogicLayer
from _machine import cpu_name  # benches/ is the script directory, first on sys.path

GATE_EXPRESSIONS = [  # difflogic's op order, in the straight-line C program
    "0", "a & b", "a & ~b", "a", "~a & b", "b", "a ^ b", "a | b",
    "~(a | b)", "~(a ^ b)", "~b", "a | ~b", "~a", "~a | b", "~(a & b)", "~(uint64_t)0",
]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: page in the input, start the threads, build the program
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


# -- the C program ------------------------------------------------------------------------------------------------


def c_source(net: bitlogic.Network) -> str:
    """One function over 64 samples a word: one statement per gate, then a per-class bit-sliced counter and argmax.
    Gate networks without an encoder only (as CompiledLogicNet)."""
    num_inputs, classes = net.num_input_bits, net.num_classes
    lines = [
        "#include <stdint.h>",
        f"void run(const uint64_t *planes, int64_t words, int64_t samples, int64_t *labels) {{",
        "  for (int64_t w = 0; w < words; w++) {",
    ]
    lines += [f"    const uint64_t x{i} = planes[{i} * words + w];" for i in range(num_inputs)]
    previous = [f"x{i}" for i in range(num_inputs)]
    for index, layer in enumerate(net.layers):
        assert isinstance(layer, bitlogic.GateLayer)
        names = []
        for gate, (op, (a, b)) in enumerate(zip(layer.ops.tolist(), layer.inputs.tolist())):
            name = f"g{index}_{gate}"
            expression = GATE_EXPRESSIONS[op].replace("a", previous[a]).replace("b", previous[b])
            lines.append(f"    const uint64_t {name} = {expression};")
            names.append(name)
        previous = names
    per_class = len(previous) // classes
    planes = max(1, per_class.bit_length())
    lines.append(f"    const uint64_t out[{len(previous)}] = {{{', '.join(previous)}}};")
    lines += [
        f"    uint64_t count[{classes}][{planes}] = {{{{0}}}};",
        f"    for (int c = 0; c < {classes}; c++)",
        f"      for (int j = 0; j < {per_class}; j++) {{",
        f"        uint64_t carry = out[c * {per_class} + j];",
        f"        for (int p = 0; p < {planes} && carry; p++) {{",
        "          uint64_t t = count[c][p] & carry; count[c][p] ^= carry; carry = t;",
        "        }",
        "      }",
        "    for (int s = 0; s < 64 && w * 64 + s < samples; s++) {",
        "      int64_t best = 0, best_count = -1;",
        f"      for (int c = 0; c < {classes}; c++) {{",
        "        int64_t n = 0;",
        f"        for (int p = 0; p < {planes}; p++) n |= (int64_t)((count[c][p] >> s) & 1) << p;",
        "        if (n > best_count) { best_count = n; best = c; }",
        "      }",
        "      labels[w * 64 + s] = best;",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def compile_c(net: bitlogic.Network, directory: Path) -> tuple[Callable[[np.ndarray, int], np.ndarray], float]:
    """The C program of ``net`` compiled with gcc -O1 as a shared library; returns its predict and the compile time."""
    source = directory / "net.c"
    source.write_text(c_source(net))
    library = directory / "net.so"
    start = time.perf_counter()
    subprocess.run(["gcc", "-O1", "-march=native", "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    seconds = time.perf_counter() - start
    run = ctypes.CDLL(str(library)).run
    run.restype = None

    def predict(planes: np.ndarray, samples: int) -> np.ndarray:
        labels = np.empty(samples, dtype=np.int64)
        run(planes.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(planes.shape[1]), ctypes.c_int64(samples),
            labels.ctypes.data_as(ctypes.c_void_p))
        return labels

    return predict, seconds


# -- workloads ----------------------------------------------------------------------------------------------------


def random_gates(rng: np.random.Generator, samples: int) -> tuple[str, nn.Module, np.ndarray]:
    torch.manual_seed(0)
    layers: list[nn.Module] = [LogicLayer(784, 8000)] + [LogicLayer(8000, 8000) for _ in range(5)]
    model = nn.Sequential(*layers, GroupSum(10, tau=10.0))
    return "random 6 x 8000 gates, bool input", model, rng.random((samples, 784), dtype=np.float32) < 0.5


def preset_model(name: str, rng: np.random.Generator, samples: int, trained: Path | None) -> tuple[str, nn.Module, np.ndarray]:
    preset = presets.get(name)
    images = rng.integers(0, 256, (samples, 784), dtype=np.uint8)
    torch.manual_seed(0)
    image_shape = (1, 28, 28) if preset.images else None  # the convolutional presets read MNIST-sized images
    model = preset.build(images[:10000].astype(np.float32), 10, image_shape)
    label = f"{name} (untrained), uint8 pixels"
    if trained is not None:
        model.load_state_dict(torch.load(trained / f"{name}.pt", weights_only=True))
        label = f"{name} (trained), uint8 pixels"
        try:
            from bitlogic import datasets

            test = datasets.load("mnist").x_test
            images = np.ascontiguousarray(np.resize(test, (samples, 784)).astype(np.uint8))
            label = f"{name} (trained), MNIST test pixels"
        except Exception as error:  # noqa: BLE001 - the random pixels stay; say why
            print(f"  ({name}: MNIST not found, random pixels: {error})")
    return label, model, images


def torch_predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).float()).argmax(dim=1).numpy()


def measure(label: str, model: nn.Module, x: np.ndarray, args: argparse.Namespace, workdir: Path) -> None:
    model.eval()
    start = time.perf_counter()
    net = bitlogic.compile(model)
    export_seconds = time.perf_counter() - start
    start = time.perf_counter()
    net.prepare()
    prepare_seconds = time.perf_counter() - start
    optimization = net.optimization()
    before, after = optimization["before"], optimization["after"]
    print(f"\n## {label}: {net}")
    print(f"export {export_seconds:.2f} s, optimizing passes {prepare_seconds:.3f} s: {before['ops']:,} operations -> "
          f"{after['ops']:,}, {before['slots']:,} slots -> {after['slots']:,}, binary rows {before['binary_rows']:,} "
          f"-> {after['binary_rows']:,}")
    print("passes: " + ", ".join(f"{name} {count:,}" for name, count in optimization["passes"].items()))
    n = len(x)
    expected = net.predict(x, threads=1)
    rows: list[tuple[str, float, str]] = []
    isa = bitlogic._native.default_isa()
    rows.append((f"bitlogic {isa}, 1 thread", n / best_seconds(lambda: net.predict(x, threads=1), args.repeats), ""))
    for other in bitlogic.supported_isas():
        if other != isa:
            rate = n / best_seconds(lambda other=other: net.predict(x, threads=1, isa=other), args.repeats)
            rows.append((f"bitlogic {other}, 1 thread", rate, ""))
    rows.append(("bitlogic, optimization off, 1 thread",
                 n / best_seconds(lambda: net.predict(x, threads=1, optimize=False), args.repeats), ""))
    assert np.array_equal(net.predict(x, threads=1, optimize=False), expected), "optimization changed predictions"
    cores = os.cpu_count() or 1
    rows.append((f"bitlogic, {cores} threads", n / best_seconds(lambda: net.predict(x), args.repeats), ""))
    assert np.array_equal(net.predict(x), expected)

    gate_only = net.encoder is None or isinstance(net.encoder, bitlogic.BitsEncoder)
    gate_only = gate_only and all(isinstance(layer, bitlogic.GateLayer) for layer in net.layers)
    if gate_only and x.dtype == np.bool_:
        planes = bitlogic.pack_bits(x)
        rate = n / best_seconds(lambda: net.predict(planes, threads=1, num_samples=n), args.repeats)
        rows.append(("bitlogic, packed bit planes in, 1 thread", rate, ""))
        if shutil.which("gcc"):
            c_predict, compile_seconds = compile_c(net, workdir)
            assert np.array_equal(c_predict(planes, n), expected), "C program != engine"
            rate = n / best_seconds(lambda: c_predict(planes, n), args.repeats)
            rows.append(("C program, gcc -O1, packed bit planes in", rate, f"compiled in {compile_seconds:.1f} s"))

    torch_samples = min(n, args.torch_samples)
    small = x[:torch_samples]
    torch.set_num_threads(1)
    assert np.array_equal(torch_predict(model, small), expected[:torch_samples]), "torch != engine"
    rate = torch_samples / best_seconds(lambda: torch_predict(model, small), 1)
    rows.append((f"torch eval(), 1 thread ({torch_samples} samples)", rate, ""))
    torch.set_num_threads(cores)

    baseline = rows[0][1]
    print(f"{'evaluator':<48}{'samples/s':>14}{'ratio':>9}")
    for name, rate, note in rows:
        print(f"{name:<48}{rate:>14,.0f}{rate / baseline:>8.2f}x  {note}")
    print("every evaluator's predictions equal the engine's")


def load_and_optimize(workdir: Path) -> None:
    """Loading and optimizing a network of 1 M gates (5 x 200 000 on 784 inputs), from a file."""
    path = workdir / "million.bitlogic"
    bitlogic.random_network(784, [200_000] * 5, 10, kind="gates", seed=0).save(path)
    start = time.perf_counter()
    net = bitlogic.load(path)
    loaded = time.perf_counter() - start
    net.prepare()
    total = time.perf_counter() - start
    after = net.optimization()["after"]
    print(f"\n## 1 M gates: load {loaded:.2f} s, load + optimizing passes {total:.2f} s "
          f"({after['ops']:,} operations remain)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-samples", type=int, default=2_000, help="torch is slow: it gets fewer samples")
    parser.add_argument("--workloads", nargs="+", default=["gates", "logic-small", "lut-small", "binary-small"])
    parser.add_argument("--trained", type=Path, default=None, help="directory of benches/presets.py --save")
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical cores; default path {bitlogic._native.default_isa()}; "
          f"torch {torch.__version__}, bitlogic {bitlogic.__version__}; {args.samples} samples, best of "
          f"{args.repeats}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as workdir:
        load_and_optimize(Path(workdir))
        for workload in args.workloads:
            if workload == "gates":
                label, model, x = random_gates(rng, args.samples)
            else:
                label, model, x = preset_model(workload, rng, args.samples, args.trained)
            measure(label, model, x, args, Path(workdir))


if __name__ == "__main__":
    main()
