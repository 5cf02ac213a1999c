"""The Rust engine against the numpy reference, on random networks: scores must agree exactly.

Networks are drawn by hypothesis (structure: encoder, layer kinds, widths, arities, batch size, input dtype) with the
bulk of the arrays filled from a numpy generator seeded by hypothesis, so failures shrink and reproduce. Batch sizes
straddle the engine's 64-sample word boundary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

import bitlogic
from bitlogic import reference
from bitlogic.spec import (
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
    layer_parts,
)

BATCH_SIZES = [1, 63, 64, 65, 1000]
KINDS = ("gates", "luts", "binary")


def make_layer(kind: str, width: int, in_width: int, rng: np.random.Generator, arity: int) -> Layer:
    if kind == "gates":
        return GateLayer(inputs=rng.integers(0, in_width, size=(width, 2)), ops=rng.integers(0, 16, size=width))
    if kind == "luts":
        # A per-table density keeps some tables nearly constant and others balanced.
        density = rng.uniform(0.05, 0.95, size=(width, 1))
        tables = (rng.random((width, 1 << arity)) < density).astype(np.uint8)
        return LutLayer(inputs=rng.integers(0, in_width, size=(width, arity)), tables=tables)
    weights = rng.integers(0, 2, size=(width, in_width))
    # Random weights give about in_width / 2 matches, so thresholds near the middle decide; the rest probe the
    # constant cases (<= 0 and > in_width) and the edges.
    middle = rng.integers(in_width // 2 - 3, in_width // 2 + 4, size=width)
    anywhere = rng.integers(-3, in_width + 4, size=width)
    thresholds = np.where(rng.random(width) < 0.6, middle, anywhere)
    return BinaryLayer(weights=weights, thresholds=thresholds)


@hs.composite
def networks(
    draw: hs.DrawFn,
    kinds: tuple[str, ...] = KINDS,
    encoders: tuple[str, ...] = ("bits", "thresholds"),
    min_layers: int = 1,
    max_layers: int = 3,
    arities: tuple[int, int] = (1, 8),
) -> tuple[Encoder, list[Layer], int, np.random.Generator]:
    rng = np.random.default_rng(draw(hs.integers(0, 2**32 - 1)))
    encoder: Encoder
    if draw(hs.sampled_from(encoders)) == "bits":
        encoder = BitsEncoder(draw(hs.integers(1, 70)))
    else:
        features = draw(hs.integers(1, 12))
        per_feature = draw(hs.integers(1, 4))
        # Thresholds on a grid of halves, so that features drawn from the same grid often tie with them.
        thresholds = (rng.integers(-4, 16, size=(features, per_feature)) * 0.5).astype(np.float32)
        if draw(hs.booleans()):
            thresholds.flat[rng.integers(0, thresholds.size)] = np.inf
            thresholds.flat[rng.integers(0, thresholds.size)] = -np.inf
        encoder = ThresholdEncoder(thresholds, draw(hs.sampled_from(["feature_major", "threshold_major"])))
    num_layers = draw(hs.integers(min_layers, max_layers))
    in_width = encoder.num_bits
    if num_layers == 0:
        divisors = [d for d in range(1, min(in_width, 10) + 1) if in_width % d == 0]
        return encoder, [], draw(hs.sampled_from(divisors)), rng
    num_classes = draw(hs.integers(1, 6))
    layers: list[Layer] = []
    for i in range(num_layers):
        kind = draw(hs.sampled_from(kinds))
        if i == num_layers - 1:
            width = num_classes * draw(hs.integers(1, 16))
        else:
            width = draw(hs.integers(1, 90))
        arity = draw(hs.integers(*arities)) if kind == "luts" else 2
        layers.append(make_layer(kind, width, in_width, rng, arity))
        in_width = width
    return encoder, layers, num_classes, rng


def make_input(encoder: Encoder, n: int, rng: np.random.Generator, form: str) -> np.ndarray:
    """An input batch of the given form: 'bool' / 'uint8' bits, or 'float32' / 'float64' / 'uint8' features."""
    if isinstance(encoder, BitsEncoder):
        bits = rng.integers(0, 2, size=(n, encoder.num_inputs))
        return bits.astype(bool) if form == "bool" else bits.astype(np.uint8)
    features = encoder.num_inputs
    if form == "bool":
        return rng.integers(0, 2, size=(n, encoder.num_bits)).astype(bool)
    if form == "uint8":
        return rng.integers(0, 10, size=(n, features)).astype(np.uint8)
    grid = rng.integers(-6, 18, size=(n, features)) * 0.5
    spread = rng.normal(2.0, 4.0, size=(n, features))
    values = np.where(rng.random((n, features)) < 0.5, grid, spread)
    if form == "float32":
        return values.astype(np.float32)
    # float64: nudge grid values by far less than a float32 ulp. Rounded to float32 they would tie with the
    # threshold; compared in float64 (the rule) they are above or below it.
    nudge = rng.integers(-1, 2, size=(n, features)) * 2.0**-40
    return np.where(rng.random((n, features)) < 0.5, grid + nudge, values).astype(np.float64)


INPUT_FORMS = {
    "bits": ["bool", "uint8"],
    "thresholds": ["float32", "float64", "uint8", "bool"],
}


def check(encoder: Encoder, layers: list[Layer], k: int, x: np.ndarray, net: Any = None) -> None:
    net = net if net is not None else bitlogic.Network.from_arrays(encoder, layers, k)
    expected = reference.scores(encoder, layers, k, x)
    got = net.scores(x)
    assert got.dtype == np.int32
    assert got.shape == (x.shape[0], k)
    if not np.array_equal(got, expected):
        rows = np.nonzero((got != expected).any(axis=1))[0]
        raise AssertionError(
            f"engine != reference on {len(rows)} of {x.shape[0]} rows; first row {rows[0]}: "
            f"engine {got[rows[0]].tolist()} reference {expected[rows[0]].tolist()}"
        )
    predicted = net.predict(x)
    assert predicted.dtype == np.int64
    np.testing.assert_array_equal(predicted, reference.predict(encoder, layers, k, x))
    # Every gate and table as written, without the optimizing passes: the same scores.
    np.testing.assert_array_equal(net.scores(x, optimize=False), expected)
    if x.dtype == np.bool_:
        # The same bits packed as bit planes skip the encoder.
        packed = bitlogic.pack_bits(x)
        np.testing.assert_array_equal(net.scores(packed, num_samples=x.shape[0]), expected)
        np.testing.assert_array_equal(net.predict(packed, num_samples=x.shape[0], optimize=False), predicted)


def _encoder_kind(encoder: Encoder) -> str:
    return "bits" if isinstance(encoder, BitsEncoder) else "thresholds"


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None)
@given(data=hs.data())
def test_single_kind_networks(kind: str, data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(networks(kinds=(kind,)))
    n = data.draw(hs.sampled_from(BATCH_SIZES))
    form = data.draw(hs.sampled_from(INPUT_FORMS[_encoder_kind(encoder)]))
    check(encoder, layers, k, make_input(encoder, n, rng, form))


@pytest.mark.parametrize("arity", range(1, 9))
@settings(max_examples=10, deadline=None)
@given(data=hs.data())
def test_lut_layers_of_each_arity(arity: int, data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(networks(kinds=("luts",), arities=(arity, arity), max_layers=2))
    n = data.draw(hs.sampled_from(BATCH_SIZES))
    form = data.draw(hs.sampled_from(INPUT_FORMS[_encoder_kind(encoder)]))
    check(encoder, layers, k, make_input(encoder, n, rng, form))


@pytest.mark.parametrize("encoder_kind", ["bits", "thresholds"])
@settings(max_examples=80, deadline=None)
@given(data=hs.data())
def test_mixed_networks(encoder_kind: str, data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(networks(encoders=(encoder_kind,), min_layers=0, max_layers=5))
    n = data.draw(hs.sampled_from(BATCH_SIZES))
    form = data.draw(hs.sampled_from(INPUT_FORMS[encoder_kind]))
    check(encoder, layers, k, make_input(encoder, n, rng, form))


@settings(max_examples=30, deadline=None)
@given(data=hs.data())
def test_every_supported_isa_agrees_with_the_reference(data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(networks(max_layers=4))
    n = data.draw(hs.sampled_from(BATCH_SIZES))
    x = make_input(encoder, n, rng, data.draw(hs.sampled_from(INPUT_FORMS[_encoder_kind(encoder)])))
    net = bitlogic.Network.from_arrays(encoder, layers, k)
    expected = reference.scores(encoder, layers, k, x)
    for isa in bitlogic.supported_isas():
        np.testing.assert_array_equal(net.scores(x, isa=isa), expected, err_msg=isa)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_network_matches_reference(kind: str, seed: int) -> None:
    widths = [96, 64, 30] if kind != "binary" else [48, 40, 30]
    net = bitlogic.random_network(50, widths, 3, kind=kind, n=5, seed=seed)  # type: ignore[arg-type]
    layers = net.layers
    assert [layer.width for layer in layers] == widths
    expected_type = {"gates": GateLayer, "luts": LutLayer, "binary": BinaryLayer}[kind]
    assert all(type(layer) is expected_type for layer in layers)
    if kind == "luts":
        assert all(layer.arity == 5 for layer in layers)  # type: ignore[union-attr]
    rng = np.random.default_rng(seed)
    for n in BATCH_SIZES:
        x = rng.integers(0, 2, size=(n, 50)).astype(bool)
        np.testing.assert_array_equal(net.scores(x), reference.network_scores(net, x))
        np.testing.assert_array_equal(net.predict(x), reference.network_predict(net, x))


@pytest.mark.parametrize("n", [6, 7, 8])
def test_random_wide_lut_networks(n: int) -> None:
    net = bitlogic.random_network(40, [64, 20], 4, kind="luts", n=n, seed=11)
    x = np.random.default_rng(n).integers(0, 2, size=(200, 40)).astype(bool)
    np.testing.assert_array_equal(net.scores(x), reference.network_scores(net, x))


@settings(max_examples=10, deadline=None)
@given(data=hs.data())
def test_threads_give_identical_results(data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(networks(max_layers=4))
    n = data.draw(hs.sampled_from([65, 1000, 5000]))
    x = make_input(encoder, n, rng, data.draw(hs.sampled_from(INPUT_FORMS[_encoder_kind(encoder)])))
    net = bitlogic.Network.from_arrays(encoder, layers, k)
    one = net.scores(x, threads=1)
    two = net.scores(x, threads=2)
    default = net.scores(x)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, default)
    np.testing.assert_array_equal(net.predict(x, threads=1), net.predict(x, threads=2))
    np.testing.assert_array_equal(one, reference.scores(encoder, layers, k, x))


def _assert_same_parts(a: Any, b: Any) -> None:
    assert type(a.encoder) is type(b.encoder)
    if isinstance(a.encoder, ThresholdEncoder):
        np.testing.assert_array_equal(a.encoder.thresholds, b.encoder.thresholds)
        assert a.encoder.bit_order == b.encoder.bit_order
    else:
        assert a.encoder.num_inputs == b.encoder.num_inputs
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb)
        for field in ("inputs", "leaves", "ops", "tables", "weights", "thresholds"):
            if hasattr(la, field):
                left, right = getattr(la, field), getattr(lb, field)
                assert left.dtype == right.dtype, field
                np.testing.assert_array_equal(left, right, err_msg=field)
        # A spatial layer's geometry (input shape, window, stride, padding, pad_value): the fourth item of its part.
        assert layer_parts(la)[3:] == layer_parts(lb)[3:]


@settings(max_examples=30, deadline=None)
@given(data=hs.data())
def test_save_load_round_trip(tmp_path_factory: pytest.TempPathFactory, data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(networks(min_layers=0, max_layers=4))
    # Values whose decimal form is short; exactness for every double is test_tau_round_trips_exactly.
    tau = data.draw(hs.sampled_from([1.0, 0.5, 2.5, 10.0, 0.125, 1e-3, 1e6]))
    net = bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)
    path = tmp_path_factory.mktemp("round") / "net.bitlogic"
    net.save(path)
    loaded = bitlogic.load(path)
    assert loaded == net
    assert loaded.tau == tau
    assert loaded.num_classes == k
    assert loaded.num_inputs == net.num_inputs and loaded.num_input_bits == net.num_input_bits
    assert loaded.stats() == net.stats()
    # The arrays that went in come back out, from the built network and from the loaded one.
    spec_view = type("Parts", (), {"encoder": encoder, "layers": layers})()
    _assert_same_parts(net, spec_view)
    _assert_same_parts(loaded, spec_view)
    x = make_input(encoder, data.draw(hs.sampled_from(BATCH_SIZES)), rng, INPUT_FORMS[_encoder_kind(encoder)][0])
    np.testing.assert_array_equal(loaded.scores(x), net.scores(x))
    np.testing.assert_array_equal(loaded.scores(x), reference.scores(encoder, layers, k, x))


@settings(max_examples=200, deadline=None)
@given(tau=hs.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False, allow_subnormal=False))
def test_tau_round_trips_exactly(tau: float) -> None:
    # tau is stored as a JSON number; the double that was saved must be the double that is loaded.
    net = bitlogic.Network.from_arrays(BitsEncoder(2), [], 1, tau=tau)
    assert bitlogic.Network.from_bytes(net.to_bytes()).tau == tau


def test_saved_file_of_every_kind_loads_from_an_independent_writer(tmp_path: Path) -> None:
    # A file written by tests/_safetensors.py (not by bitlogic) for a network with every layer kind and arity.
    import _safetensors as st

    rng = np.random.default_rng(5)
    encoder = ThresholdEncoder((rng.integers(-4, 12, size=(7, 3)) * 0.5).astype(np.float32), "threshold_major")
    layers: list[Layer] = []
    width = encoder.num_bits
    for i, (kind, arity) in enumerate([("gates", 2)] + [("luts", a) for a in range(1, 9)] + [("binary", 2)]):
        out = 60 if i < 9 else 40
        layers.append(make_layer(kind, out, width, rng, arity))
        width = out
    path = tmp_path / "independent.bitlogic"
    path.write_bytes(st.network_bytes(encoder, layers, 4, tau=7.0))
    net = bitlogic.load(path)
    for form in INPUT_FORMS["thresholds"]:
        x = make_input(encoder, 300, rng, form)
        check(encoder, layers, 4, x, net=net)


# -- spatial layers (format 1.2) --------------------------------------------------------------------------------------

SPATIAL_KINDS = ("conv_gates", "conv_luts", "conv_binary", "or_pool")


def make_spatial_layer(draw: hs.DrawFn, kind: str, shape: tuple[int, int, int], rng: np.random.Generator) -> Layer:
    """A random spatial layer of ``kind`` over images of ``shape``: window, stride and padding drawn so that the
    window fits, often with padding and strides that leave odd output sizes."""
    c, h, w = shape
    padding = (0, 0) if kind == "or_pool" else (draw(hs.integers(0, 2)), draw(hs.integers(0, 2)))
    kernel = (draw(hs.integers(1, min(3, h + 2 * padding[0]))), draw(hs.integers(1, min(3, w + 2 * padding[1]))))
    stride = (draw(hs.integers(1, 2)), draw(hs.integers(1, 2)))
    if kind == "or_pool":
        return OrPoolLayer(shape, kernel_size=kernel, stride=stride)
    geometry: dict[str, Any] = {"kernel_size": kernel, "stride": stride, "padding": padding}
    out = draw(hs.integers(1, 4))

    def leaves(count: int) -> np.ndarray:
        return np.stack([rng.integers(0, limit, size=(out, count)) for limit in (c, *kernel)], axis=-1)

    if kind == "conv_gates":
        depth = draw(hs.integers(1, 4))
        ops = rng.integers(0, 16, size=(out, (1 << depth) - 1))
        return ConvGateLayer(shape, leaves(1 << depth), ops, **geometry)
    if kind == "conv_luts":
        arity = draw(hs.integers(1, 6))
        density = rng.uniform(0.05, 0.95, size=(out, 1))
        tables = (rng.random((out, 1 << arity)) < density).astype(np.uint8)
        return ConvLutLayer(shape, leaves(arity), tables, **geometry)
    n = c * kernel[0] * kernel[1]
    # The dot lies in [-n, n] and has the parity of n (away from padding); thresholds near 0 decide, the rest probe
    # the constant ends.
    thresholds = np.where(rng.random(out) < 0.7, rng.integers(-3, 4, size=out), rng.integers(-n - 2, n + 3, size=out))
    weights = rng.integers(0, 2, size=(out, n))
    return ConvBinaryLayer(shape, weights, thresholds, pad_value=draw(hs.integers(0, 1)), **geometry)


@hs.composite
def spatial_networks(
    draw: hs.DrawFn, kinds: tuple[str, ...] = SPATIAL_KINDS, max_layers: int = 3
) -> tuple[Encoder, list[Layer], int, np.random.Generator]:
    """An image encoder (bits, or a thermometer whose threshold_major bits are channels ``t*C + c``), spatial
    layers of ``kinds``, then sometimes a dense gate layer before the head."""
    rng = np.random.default_rng(draw(hs.integers(0, 2**32 - 1)))
    channels, h, w = draw(hs.integers(1, 3)), draw(hs.integers(1, 7)), draw(hs.integers(1, 7))
    encoder: Encoder
    if draw(hs.booleans()):
        encoder = BitsEncoder(channels * h * w)
        shape = (channels, h, w)
    else:
        per_feature = draw(hs.integers(1, 3))
        thresholds = (rng.integers(-4, 16, size=(channels * h * w, per_feature)) * 0.5).astype(np.float32)
        encoder = ThresholdEncoder(thresholds, "threshold_major")
        shape = (channels * per_feature, h, w)
    layers: list[Layer] = []
    for _ in range(draw(hs.integers(1, max_layers))):
        layer = make_spatial_layer(draw, draw(hs.sampled_from(kinds)), shape, rng)
        layers.append(layer)
        shape = layer.output_shape  # type: ignore[union-attr]
    width = layers[-1].width
    if draw(hs.booleans()):
        k = draw(hs.integers(1, 4))
        layers.append(make_layer("gates", k * draw(hs.integers(1, 8)), width, rng, 2))
        return encoder, layers, k, rng
    return encoder, layers, draw(hs.sampled_from([d for d in range(1, 5) if width % d == 0])), rng


def check_every_path(encoder: Encoder, layers: list[Layer], k: int, x: np.ndarray) -> bitlogic.Network:
    """The engine on every supported instruction-set path, optimized or not, equals the reference."""
    net = bitlogic.Network.from_arrays(encoder, layers, k)
    check(encoder, layers, k, x, net=net)
    expected = reference.scores(encoder, layers, k, x)
    for isa in bitlogic.supported_isas():
        for optimize in (True, False):
            np.testing.assert_array_equal(
                net.scores(x, isa=isa, optimize=optimize), expected,  # type: ignore[arg-type]
                err_msg=f"{isa}, optimize={optimize}")
    return net


@pytest.mark.parametrize("kind", SPATIAL_KINDS)
@settings(max_examples=25, deadline=None)
@given(data=hs.data())
def test_spatial_networks_of_each_kind(kind: str, data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(spatial_networks(kinds=(kind,)))
    n = data.draw(hs.sampled_from(BATCH_SIZES[:4]))
    form = data.draw(hs.sampled_from(INPUT_FORMS[_encoder_kind(encoder)]))
    check_every_path(encoder, layers, k, make_input(encoder, n, rng, form))


@settings(max_examples=30, deadline=None)
@given(data=hs.data())
def test_mixed_spatial_networks(data: hs.DataObject) -> None:
    encoder, layers, k, rng = data.draw(spatial_networks(max_layers=4))
    n = data.draw(hs.sampled_from(BATCH_SIZES))
    form = data.draw(hs.sampled_from(INPUT_FORMS[_encoder_kind(encoder)]))
    check_every_path(encoder, layers, k, make_input(encoder, n, rng, form))


@settings(max_examples=20, deadline=None)
@given(data=hs.data())
def test_spatial_save_load_round_trip(tmp_path_factory: pytest.TempPathFactory, data: hs.DataObject) -> None:
    import _safetensors as st

    encoder, layers, k, rng = data.draw(spatial_networks(max_layers=4))
    net = bitlogic.Network.from_arrays(encoder, layers, k)
    path = tmp_path_factory.mktemp("round") / "net.bitlogic"
    net.save(path)
    loaded = bitlogic.load(path)
    assert loaded == net and loaded.stats() == net.stats()
    spec_view = type("Parts", (), {"encoder": encoder, "layers": layers})()
    _assert_same_parts(net, spec_view)
    _assert_same_parts(loaded, spec_view)
    # The engine's file follows the specification as the independent reader knows it, and the independent writer's
    # file of the same network loads as an equal one.
    decoded = st.read_network(path.read_bytes())
    assert decoded.metadata["format_version"] == "1.2"
    _assert_same_parts(decoded, spec_view)
    assert bitlogic.Network.from_bytes(st.network_bytes(encoder, layers, k)) == net
    x = make_input(encoder, 65, rng, INPUT_FORMS[_encoder_kind(encoder)][0])
    np.testing.assert_array_equal(loaded.scores(x), reference.scores(encoder, layers, k, x))
