"""Writes the golden network files of tests/golden/ (see README.md there): the format frozen per version.

Each case is a random network drawn with a fixed seed, saved by the engine's writer as ``v{VERSION}/NAME.bitlogic``,
beside ``v{VERSION}/NAME.expected.safetensors`` holding the tensors ``inputs`` (uint8 bits or features, or float32
features) and ``scores`` (int32 ``[N, num_classes]``). The scores are the engine's, on the network as built and as
read back from the written bytes, with and without the optimizing passes, and the script stops unless they all equal
the numpy reference's (``bitlogic.reference``).

The files are frozen: an existing file is never overwritten unless ``--force`` is given, and a case is only written
by a writer of the case's own format version, so a newer writer can never rewrite an older version's files.

    .venv/bin/python tests/golden/generate.py            # writes the cases whose files are missing
    .venv/bin/python tests/golden/generate.py --force    # rewrites this version's cases (review the diff!)
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for tests/_safetensors.py

import _safetensors as st  # noqa: E402
import bitlogic  # noqa: E402
from bitlogic import reference  # noqa: E402
from bitlogic.spec import (  # noqa: E402
    BinaryLayer,
    BitsEncoder,
    ConvBinaryLayer,
    ConvGateLayer,
    ConvLutLayer,
    Encoder,
    GateLayer,
    Layer,
    LutLayer,
    OrPoolLayer,
    ThresholdEncoder,
)

ROWS = 150  # two full words of samples and a partial third


@dataclass
class Net:
    encoder: Encoder
    layers: list[Layer]
    num_classes: int
    tau: float = 1.0
    info: dict[str, str] = field(default_factory=dict)


# -- random parts -----------------------------------------------------------------------------------------------------


def gates(rng: np.random.Generator, inputs: int, width: int) -> GateLayer:
    ops = rng.integers(0, 16, size=width)
    ops[: min(16, width)] = np.arange(min(16, width))  # every op code that fits
    return GateLayer(inputs=rng.integers(0, inputs, size=(width, 2)), ops=ops)


def luts(rng: np.random.Generator, inputs: int, width: int, arity: int) -> LutLayer:
    return LutLayer(
        inputs=rng.integers(0, inputs, size=(width, arity)), tables=rng.integers(0, 2, size=(width, 1 << arity))
    )


def binary(rng: np.random.Generator, inputs: int, width: int) -> BinaryLayer:
    # Thresholds mostly near the middle (outputs that vary), some constant ones (<= 0, above the input width).
    thresholds = rng.integers(inputs // 2 - 4, inputs // 2 + 5, size=width)
    thresholds[:4] = [0, -3, inputs, inputs + 1][: min(4, width)]
    return BinaryLayer(weights=rng.integers(0, 2, size=(width, inputs)), thresholds=thresholds)


def threshold_encoder(rng: np.random.Generator, features: int, per: int, order: str) -> ThresholdEncoder:
    values = rng.choice(np.array([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0], dtype=np.float32), size=(features, per))
    values = values + rng.normal(0.0, 0.25, size=values.shape).astype(np.float32) * (rng.random(values.shape) < 0.5)
    values[0, 0], values[-1, -1] = -np.inf, np.inf
    return ThresholdEncoder(np.sort(values, axis=1).astype(np.float32), order)  # type: ignore[arg-type]


def stack(rng: np.random.Generator, encoder: Encoder, specs: list[tuple[str, int, int]]) -> list[Layer]:
    """Layers from ``(kind, width, arity)``, each reading the one before."""
    layers: list[Layer] = []
    inputs = encoder.num_bits
    for kind, width, arity in specs:
        if kind == "gates":
            layers.append(gates(rng, inputs, width))
        elif kind == "luts":
            layers.append(luts(rng, inputs, width, arity))
        else:
            layers.append(binary(rng, inputs, width))
        inputs = width
    return layers


def leaves(rng: np.random.Generator, channels: int, count: int, shape: tuple[int, int, int],
           kernel: tuple[int, int]) -> np.ndarray:
    """Random ``(c, dy, dx)`` leaves ``[channels, count, 3]`` over a window of ``kernel`` on images of ``shape``."""
    return np.stack([rng.integers(0, limit, size=(channels, count)) for limit in (shape[0], *kernel)], axis=-1)


def conv_gates(rng: np.random.Generator, shape: tuple[int, int, int], channels: int, depth: int,
               kernel_size: tuple[int, int] = (3, 3), **geometry: Any) -> ConvGateLayer:
    ops = rng.integers(0, 16, size=(channels, (1 << depth) - 1))
    ops.flat[:16] = np.arange(min(16, ops.size))  # every op code that fits
    tree_leaves = leaves(rng, channels, 1 << depth, shape, kernel_size)
    return ConvGateLayer(shape, tree_leaves, ops, kernel_size=kernel_size, **geometry)


def conv_binary(rng: np.random.Generator, shape: tuple[int, int, int], channels: int,
                kernel_size: tuple[int, int] = (3, 3), **geometry: Any) -> ConvBinaryLayer:
    n = shape[0] * kernel_size[0] * kernel_size[1]
    # Thresholds on the dot near 0 (outputs that vary) and two constant ones (below -n, above n).
    thresholds = rng.integers(-3, 4, size=channels)
    thresholds[:2] = [-n - 1, n + 1]
    weights = rng.integers(0, 2, size=(channels, n))
    return ConvBinaryLayer(shape, weights, thresholds, kernel_size=kernel_size, **geometry)


# -- inputs -----------------------------------------------------------------------------------------------------------


def bit_inputs(rng: np.random.Generator, cols: int) -> np.ndarray:
    bias = rng.random(cols)  # some nearly constant columns
    return (rng.random((ROWS, cols)) < bias).astype(np.uint8)


def float_inputs(rng: np.random.Generator, encoder: ThresholdEncoder) -> np.ndarray:
    """Features that often equal a threshold exactly, or its neighbour; infinities and signed zeros too."""
    t = encoder.thresholds
    f = t.shape[0]
    picked = t[np.arange(f)[None, :], rng.integers(0, t.shape[1], size=(ROWS, f))]
    x = rng.normal(0.5, 1.5, size=(ROWS, f)).astype(np.float32)
    choice = rng.integers(0, 6, size=(ROWS, f))
    x = np.where(choice == 0, picked, x)
    x = np.where(choice == 1, np.nextafter(picked, np.float32(np.inf)), x)
    x = np.where(choice == 2, np.nextafter(picked, np.float32(-np.inf)), x)
    specials = np.array([np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    x = np.where(choice == 3, specials[rng.integers(0, 4, size=(ROWS, f))], x)
    return x.astype(np.float32)


def u8_inputs(rng: np.random.Generator, encoder: ThresholdEncoder) -> np.ndarray:
    t = encoder.thresholds
    near = np.clip(np.nan_to_num(t, posinf=255, neginf=0), 0, 255).astype(np.uint8)
    x = rng.integers(0, 256, size=(ROWS, t.shape[0]))
    hit = near[np.arange(t.shape[0])[None, :], rng.integers(0, t.shape[1], size=x.shape)]
    x = np.where(rng.random(x.shape) < 0.5, hit, x)
    x[rng.random(x.shape) < 0.1] = 255
    return x.astype(np.uint8)


# -- the cases --------------------------------------------------------------------------------------------------------


Case = Callable[[np.random.Generator], tuple[Net, np.ndarray]]
CASES: dict[str, tuple[str, str, Case]] = {}


def case(name: str, version: str, covers: str) -> Callable[[Case], Case]:
    def register(build: Case) -> Case:
        CASES[name] = (version, covers, build)
        return build

    return register


@case("gates", "1.0", "bits encoder, two gate layers holding all 16 op codes")
def _gates(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = BitsEncoder(19)
    return Net(encoder, stack(rng, encoder, [("gates", 40, 0), ("gates", 24, 0)]), 4), bit_inputs(rng, 19)


def _luts(arity: int) -> Case:
    def build(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
        encoder = BitsEncoder(13)
        layers = stack(rng, encoder, [("luts", 12, arity), ("luts", 6, arity)])
        return Net(encoder, layers, 3), bit_inputs(rng, 13)

    return build


for _arity in range(1, 9):
    case(f"luts_arity{_arity}", "1.0", f"bits encoder, two LUT layers of arity {_arity}")(_luts(_arity))


@case("binary", "1.0", "bits encoder, binary layers over input widths 70, 130, 65 and 64 (padded rows); constant "
      "outputs from thresholds <= 0 and above the input width")
def _binary(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = BitsEncoder(70)
    layers = stack(rng, encoder, [("binary", 130, 0), ("binary", 65, 0), ("binary", 64, 0), ("binary", 6, 0)])
    return Net(encoder, layers, 3), bit_inputs(rng, 70)


@case("thresholds_feature_major", "1.0", "threshold encoder (7 x 3, feature_major, infinite thresholds), float32 "
      "features on and next to thresholds, gates then 3-input LUTs")
def _feature_major(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = threshold_encoder(rng, 7, 3, "feature_major")
    layers = stack(rng, encoder, [("gates", 30, 0), ("luts", 15, 3)])
    return Net(encoder, layers, 5), float_inputs(rng, encoder)


@case("thresholds_threshold_major", "1.0", "as thresholds_feature_major, in threshold_major bit order")
def _threshold_major(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = threshold_encoder(rng, 7, 3, "threshold_major")
    layers = stack(rng, encoder, [("gates", 30, 0), ("luts", 15, 3)])
    return Net(encoder, layers, 5), float_inputs(rng, encoder)


@case("thresholds_only", "1.0", "threshold encoder (4 x 3, threshold_major) read directly by the head: the bit order "
      "shows in the scores")
def _thresholds_only(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = threshold_encoder(rng, 4, 3, "threshold_major")
    return Net(encoder, [], 3), float_inputs(rng, encoder)


@case("thresholds_u8", "1.0", "threshold encoder (6 x 4, feature_major) with uint8 features, binary then gates")
def _thresholds_u8(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    values = np.array([[-1, 0, 127.5, 255]] * 6, dtype=np.float32) + rng.integers(0, 40, size=(6, 4))
    values[:, -1] = [254.5, 255, np.inf, 300, 255, 254]
    encoder = ThresholdEncoder(np.sort(values, axis=1), "feature_major")
    layers = stack(rng, encoder, [("binary", 20, 0), ("gates", 10, 0)])
    return Net(encoder, layers, 2), u8_inputs(rng, encoder)


@case("bits_only", "1.0", "bits encoder read directly by the head (no layers)")
def _bits_only(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    return Net(BitsEncoder(12), [], 4), bit_inputs(rng, 12)


@case("mixed", "1.0", "every kind in one network: threshold encoder (10 x 4) -> gates -> 6-input LUTs -> binary -> "
      "2-input LUTs -> gates; tau 2.5; info with non-ASCII text and quotes")
def _mixed(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = threshold_encoder(rng, 10, 4, "feature_major")
    specs = [("gates", 96, 0), ("luts", 80, 6), ("binary", 70, 0), ("luts", 48, 2), ("gates", 30, 0)]
    info = {"producer": "tests/golden/generate.py", "note": 'caf\u00e9 "quoted" \u2713', "empty": ""}
    return Net(encoder, stack(rng, encoder, specs), 10, tau=2.5, info=info), float_inputs(rng, encoder)


@case("mixed_bits", "1.0", "bits encoder (33) -> 5-input LUTs -> binary -> gates; tau 0.3 (not a binary fraction); "
      "one info entry")
def _mixed_bits(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = BitsEncoder(33)
    layers = stack(rng, encoder, [("luts", 40, 5), ("binary", 50, 0), ("gates", 20, 0)])
    return Net(encoder, layers, 2, tau=0.3, info={"dataset": "none"}), bit_inputs(rng, 33)


@case("all_kinds", "1.1", "format 1.1 (with the digest of the data): threshold encoder (8 x 3, threshold_major) -> "
      "gates -> 1-input LUTs -> 8-input LUTs -> binary over 45 inputs -> 4-input LUTs -> gates; tau 1.5; info")
def _all_kinds(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = threshold_encoder(rng, 8, 3, "threshold_major")
    specs = [("gates", 64, 0), ("luts", 50, 1), ("luts", 45, 8), ("binary", 40, 0), ("luts", 36, 4), ("gates", 24, 0)]
    info = {"producer": "tests/golden/generate.py", "format": "1.1"}
    return Net(encoder, stack(rng, encoder, specs), 4, tau=1.5, info=info), float_inputs(rng, encoder)


@case("conv_gates", "1.2", "format 1.2: bits encoder of 2 x 7 x 6 images -> conv_gates (depth 3, 3 x 3, padding 1, "
      "every op code) -> conv_gates (depth 1, 2 x 3, stride 2) -> or_pool 2 x 2 -> gates")
def _conv_gates(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    first = conv_gates(rng, (2, 7, 6), 6, 3, padding=(1, 1))
    second = conv_gates(rng, first.output_shape, 5, 1, kernel_size=(2, 3), stride=(2, 2))
    pool = OrPoolLayer(second.output_shape)
    head = gates(rng, pool.width, 12)
    return Net(BitsEncoder(84), [first, second, pool, head], 4), bit_inputs(rng, 84)


@case("conv_luts", "1.2", "format 1.2: threshold encoder (5 x 5 image, 2 thresholds, threshold_major: a 2-channel "
      "image) -> conv_luts (4 inputs, 3 x 3, stride 2, padding (1, 0)) -> conv_luts (1 and 6 inputs) -> LUTs")
def _conv_luts(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    encoder = threshold_encoder(rng, 25, 2, "threshold_major")
    shape = (2, 5, 5)
    layers: list[Layer] = []
    # (arity, geometry) of the three conv_luts layers.
    geometries: list[tuple[int, dict[str, Any]]] = [
        (4, {"stride": (2, 2), "padding": (1, 0)}),
        (1, {"kernel_size": (1, 1)}),
        (6, {"kernel_size": (2, 2), "padding": (1, 1)}),
    ]
    for arity, geometry in geometries:
        kernel = geometry.get("kernel_size", (3, 3))
        tables = rng.integers(0, 2, size=(4, 1 << arity))
        layer = ConvLutLayer(shape, leaves(rng, 4, arity, shape, kernel), tables, **geometry)
        layers.append(layer)
        shape = layer.output_shape
    layers.append(luts(rng, layers[-1].width, 9, 3))
    return Net(encoder, layers, 3), float_inputs(rng, encoder)


@case("conv_binary", "1.2", "format 1.2: bits encoder of 3 x 6 x 5 images -> conv_binary (one padding, 3 x 3, "
      "padding 1) -> conv_binary (zero padding, 2 x 2, stride 2, padding 1) -> dense binary; constant channels")
def _conv_binary(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    first = conv_binary(rng, (3, 6, 5), 5, padding=(1, 1), pad_value=1)
    second = conv_binary(rng, first.output_shape, 4, kernel_size=(2, 2), stride=(2, 2), padding=(1, 1), pad_value=0)
    dense = binary(rng, second.width, 8)
    return Net(BitsEncoder(90), [first, second, dense], 2), bit_inputs(rng, 90)


@case("or_pool", "1.2", "format 1.2: bits encoder of 3 x 9 x 9 images -> or_pool (3 x 3, stride 2) -> conv_gates "
      "(depth 2) -> or_pool (2 x 1, stride (1, 2): odd sizes) -> gates")
def _or_pool(rng: np.random.Generator) -> tuple[Net, np.ndarray]:
    # Sparse images, so that an OR over a window is not almost always 1.
    x = (rng.random((ROWS, 243)) < 0.04).astype(np.uint8)
    first = OrPoolLayer((3, 9, 9), kernel_size=(3, 3), stride=(2, 2))
    tree = conv_gates(rng, first.output_shape, 4, 2, padding=(1, 1))
    second = OrPoolLayer(tree.output_shape, kernel_size=(2, 1), stride=(1, 2))
    return Net(BitsEncoder(243), [first, tree, second, gates(rng, second.width, 10)], 5), x


# -- writing ----------------------------------------------------------------------------------------------------------


def writer_version() -> str:
    probe = bitlogic.Network.from_arrays(BitsEncoder(1), [], 1)
    metadata, _ = st.read(probe.to_bytes())
    assert metadata is not None
    return metadata["format_version"]


def expected_scores(net: Net, x: np.ndarray, data: bytes) -> np.ndarray:
    """The engine's scores, checked against the numpy reference; raises if any path disagrees."""
    built = bitlogic.Network.from_arrays(net.encoder, net.layers, net.num_classes, tau=net.tau, info=net.info)
    loaded = bitlogic.Network.from_bytes(data)
    assert loaded == built, "the written file reads back as a different network"
    want = reference.scores(net.encoder, net.layers, net.num_classes, x)
    for name, got in [
        ("engine", built.scores(x)),
        ("engine, read back", loaded.scores(x)),
        ("engine, unoptimized", loaded.scores(x, optimize=False)),
        ("engine, one thread", loaded.scores(x, threads=1)),
    ]:
        if not np.array_equal(got, want):
            raise SystemExit(f"{name} disagrees with the numpy reference")
    assert want.min() != want.max(), "the inputs should exercise more than one score"
    return np.asarray(want, dtype=np.int32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="overwrite existing files of this writer's version")
    parser.add_argument("--table", action="store_true", help="print the case table of README.md and stop")
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    args = parser.parse_args(argv)
    if args.table:
        print(describe())
        return 0
    version = writer_version()
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {sorted(CASES)}")
    for name, (case_version, _, build) in CASES.items():
        if args.cases and name not in args.cases:
            continue
        folder = HERE / f"v{case_version}"
        paths = [folder / f"{name}.bitlogic", folder / f"{name}.expected.safetensors"]
        if case_version != version:
            print(f"{name}: frozen at format {case_version}, this writer writes {version}: kept")
            continue
        if any(p.exists() for p in paths) and not args.force:
            print(f"{name}: exists, kept (--force rewrites it)")
            continue
        # The seed follows from the name alone, so adding a case never changes another.
        net, x = build(np.random.default_rng(zlib.crc32(name.encode())))
        built = bitlogic.Network.from_arrays(net.encoder, net.layers, net.num_classes, tau=net.tau, info=net.info)
        data = built.to_bytes()
        scores = expected_scores(net, x, data)
        folder.mkdir(exist_ok=True)
        inputs = st.Tensor.of("F32" if x.dtype == np.float32 else "U8", x)
        expected = st.write(
            {"inputs": inputs, "scores": st.Tensor.of("I32", scores)},
            {"case": name, "format_version": case_version},
        )
        paths[0].write_bytes(data)
        paths[1].write_bytes(expected)
        print(f"{name}: written ({len(data)} + {len(expected)} bytes)")
    return 0


def describe() -> str:
    """The case table of README.md, for pasting."""
    rows = [f"| `v{v}/{name}` | {covers} |" for name, (v, covers, _) in CASES.items()]
    return "\n".join(["| case | covers |", "| --- | --- |", *rows])


if __name__ == "__main__":
    sys.exit(main())

