"""The Python API: accepted inputs, errors, thread safety, introspection and construction."""

from __future__ import annotations

import concurrent.futures
import copy
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bitlogic
from bitlogic import reference
from bitlogic.spec import (
    ENCODER_KINDS,
    LAYER_KINDS,
    BinaryLayer,
    BitsEncoder,
    GateLayer,
    Layer,
    LutLayer,
    ThresholdEncoder,
)

from _proxy import with_native


def threshold_network(bit_order: str = "feature_major") -> tuple[ThresholdEncoder, list[Layer], int]:
    """F = 5 features, T = 3 thresholds -> 15 bits -> 40 gates -> 24 three-input tables -> 12 binary outputs, k = 4."""
    rng = np.random.default_rng(21)
    encoder = ThresholdEncoder((rng.integers(-4, 12, size=(5, 3)) * 0.5).astype(np.float32), bit_order)  # type: ignore[arg-type]
    layers: list[Layer] = [
        GateLayer(inputs=rng.integers(0, 15, size=(40, 2)), ops=rng.integers(0, 16, size=40)),
        LutLayer(inputs=rng.integers(0, 40, size=(24, 3)), tables=rng.integers(0, 2, size=(24, 8))),
        BinaryLayer(weights=rng.integers(0, 2, size=(12, 24)), thresholds=rng.integers(9, 16, size=12)),
    ]
    return encoder, layers, 4


@pytest.fixture(scope="module")
def tnet() -> bitlogic.Network:
    encoder, layers, k = threshold_network()
    return bitlogic.Network.from_arrays(encoder, layers, k, tau=4.0)


@pytest.fixture(scope="module")
def bnet() -> bitlogic.Network:
    return bitlogic.random_network(70, [128, 64, 30], 5, kind="gates", seed=4)


def features(n: int, f: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(-6, 18, size=(n, f)) * 0.5 + rng.normal(0, 0.01, size=(n, f)) * (rng.random((n, f)) < 0.5))


# -- memory layouts ---------------------------------------------------------------------------------------------------


def layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    """The same logical array in several memory layouts."""
    n, c = x.shape
    wide = np.zeros((2 * n, 3 * c + 1), dtype=x.dtype)
    wide[::2, 1::3] = x
    reversed_rows = np.ascontiguousarray(x[::-1])[::-1]
    out = {
        "C": np.ascontiguousarray(x),
        "F": np.asfortranarray(x),
        "strided": wide[::2, 1::3],
        "reversed": reversed_rows,
        "transposed": np.ascontiguousarray(x.T).T,
        "column-slice": np.concatenate([x, x], axis=1)[:, c:],
    }
    assert out["F"].flags.f_contiguous and not out["F"].flags.c_contiguous or n == 1 or c == 1
    assert not out["strided"].flags.c_contiguous and not out["strided"].flags.f_contiguous
    assert reversed_rows.strides[0] < 0
    for name, y in out.items():
        assert np.array_equal(y, x), name
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8"])
def test_layouts_give_identical_results_for_features(tnet: bitlogic.Network, dtype: str) -> None:
    x = features(130)
    if dtype == "uint8":
        x = np.clip(np.round(x), 0, 255)
    x = x.astype(dtype)
    expected = reference.network_scores(tnet, x)
    for name, y in layouts(x).items():
        np.testing.assert_array_equal(tnet.scores(y), expected, err_msg=name)
        np.testing.assert_array_equal(tnet.predict(y), np.argmax(expected, axis=1), err_msg=name)


@pytest.mark.parametrize("dtype", ["bool", "uint8"])
def test_layouts_give_identical_results_for_bits(bnet: bitlogic.Network, dtype: str) -> None:
    x = np.random.default_rng(1).integers(0, 2, size=(130, 70)).astype(dtype)
    expected = reference.network_scores(bnet, x)
    for name, y in layouts(x).items():
        np.testing.assert_array_equal(bnet.scores(y), expected, err_msg=name)


def test_layouts_for_pre_encoded_bits(tnet: bitlogic.Network) -> None:
    x = np.random.default_rng(2).integers(0, 2, size=(77, 15)).astype(bool)
    expected = reference.network_scores(tnet, x)
    for name, y in layouts(x).items():
        np.testing.assert_array_equal(tnet.scores(y), expected, err_msg=name)


def test_read_only_input(tnet: bitlogic.Network) -> None:
    x = features(40).astype(np.float32)
    x.flags.writeable = False
    np.testing.assert_array_equal(tnet.scores(x), reference.network_scores(tnet, x))


def test_input_is_not_modified(tnet: bitlogic.Network) -> None:
    x = features(40)
    before = x.copy()
    tnet.scores(x)
    tnet.predict(x)
    np.testing.assert_array_equal(x, before)


# -- feature dtypes ---------------------------------------------------------------------------------------------------


def test_float32_float64_uint8_features(tnet: bitlogic.Network) -> None:
    x64 = features(300)
    for x in (x64, x64.astype(np.float32), np.clip(np.round(x64), 0, 255).astype(np.uint8)):
        np.testing.assert_array_equal(tnet.scores(x), reference.network_scores(tnet, x), err_msg=str(x.dtype))


def test_uint8_features_compare_like_their_float32_values(tnet: bitlogic.Network) -> None:
    x = np.random.default_rng(3).integers(0, 12, size=(200, 5)).astype(np.uint8)
    np.testing.assert_array_equal(tnet.scores(x), tnet.scores(x.astype(np.float32)))


def test_float64_is_compared_in_float64() -> None:
    t = np.float32(0.1)
    net = bitlogic.Network.from_arrays(ThresholdEncoder([[t]]), [], 1)
    above = np.nextafter(np.float64(t), np.inf)  # rounds to t in float32
    x = np.array([[np.float64(t)], [above], [0.1]], dtype=np.float64)
    assert net.scores(x)[:, 0].tolist() == [0, 1, 0]
    assert net.scores(x.astype(np.float32))[:, 0].tolist() == [0, 0, 0]


def test_pre_encoded_bits_equal_encoding_first() -> None:
    for order in ("feature_major", "threshold_major"):
        encoder, layers, k = threshold_network(order)
        net = bitlogic.Network.from_arrays(encoder, layers, k)
        x = features(100).astype(np.float32)
        bits = reference.encode(encoder, x)
        np.testing.assert_array_equal(net.scores(bits), net.scores(x))


def test_result_dtypes_and_shapes(tnet: bitlogic.Network) -> None:
    x = features(65).astype(np.float32)
    s = tnet.scores(x)
    y = tnet.predict(x)
    assert s.dtype == np.int32 and s.shape == (65, 4)
    assert y.dtype == np.int64 and y.shape == (65,)
    assert s.flags.writeable and y.flags.writeable


def test_predict_ties_go_to_the_lowest_class() -> None:
    # No layers: 8 input bits are the head's 4 groups of 2.
    net = bitlogic.Network.from_arrays(BitsEncoder(8), [], 4)
    x = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],  # all 0 -> 0
            [1, 1, 1, 1, 1, 1, 1, 1],  # all 2 -> 0
            [0, 0, 1, 0, 0, 0, 0, 1],  # classes 1 and 3 tie at 1 -> 1
            [0, 0, 0, 0, 1, 1, 1, 1],  # classes 2 and 3 tie at 2 -> 2
            [1, 0, 1, 1, 0, 1, 1, 1],  # class 1 and 3 tie at 2 -> 1
            [0, 0, 0, 0, 0, 0, 0, 1],  # class 3 alone -> 3
        ],
        dtype=bool,
    )
    assert net.scores(x).tolist() == [[0, 0, 0, 0], [2, 2, 2, 2], [0, 1, 0, 1], [0, 0, 2, 2], [1, 2, 1, 2], [0, 0, 0, 1]]
    assert net.predict(x).tolist() == [0, 0, 1, 2, 1, 3]
    # The same rows repeated past a 64-sample word keep the rule.
    many = np.tile(x, (30, 1))
    assert net.predict(many).tolist() == [0, 0, 1, 2, 1, 3] * 30


def test_empty_batch(tnet: bitlogic.Network) -> None:
    s = tnet.scores(np.zeros((0, 5), dtype=np.float32))
    assert s.shape == (0, 4) and s.dtype == np.int32
    assert tnet.predict(np.zeros((0, 5), dtype=np.float32)).shape == (0,)


# -- input errors -----------------------------------------------------------------------------------------------------


def input_error(call: object, *words: str) -> str:
    with pytest.raises(bitlogic.InputError) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, bitlogic.BitlogicError)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


@pytest.mark.parametrize("method", ["scores", "predict"])
def test_wrong_number_of_features(tnet: bitlogic.Network, method: str) -> None:
    fn = getattr(tnet, method)
    for cols in (4, 6, 1):
        input_error(lambda: fn(np.zeros((3, cols), dtype=np.float32)), "5")


def test_wrong_number_of_bits(bnet: bitlogic.Network, tnet: bitlogic.Network) -> None:
    input_error(lambda: bnet.scores(np.zeros((3, 69), dtype=bool)), "70")
    input_error(lambda: bnet.scores(np.zeros((3, 71), dtype=np.uint8)), "70")
    # Bool input to a threshold network is pre-encoded bits: F*T = 15 columns, not F = 5.
    input_error(lambda: tnet.scores(np.zeros((3, 5), dtype=bool)), "15")


@pytest.mark.parametrize("shape", [(5,), (0,), (2, 3, 5), (1, 1, 1, 5)])
def test_not_two_dimensional(tnet: bitlogic.Network, shape: tuple[int, ...]) -> None:
    input_error(lambda: tnet.scores(np.zeros(shape, dtype=np.float32)), "2")
    input_error(lambda: tnet.predict(np.zeros(shape, dtype=np.float32)), "2")


def test_one_dimensional_bits(bnet: bitlogic.Network) -> None:
    input_error(lambda: bnet.predict(np.zeros(70, dtype=bool)), "2")


@pytest.mark.parametrize(
    "dtype", ["int64", "int32", "int8", "uint16", "float16", "complex64", "complex128", "U1", "S1", "object"]
)
def test_unsupported_feature_dtypes(tnet: bitlogic.Network, dtype: str) -> None:
    x = np.zeros((3, 5), dtype=dtype)
    message = input_error(lambda: tnet.scores(x))
    assert "float32" in message and "uint8" in message, message


@pytest.mark.parametrize("dtype", ["int64", "float32", "float64", "int8", "complex64", "U1"])
def test_unsupported_bit_dtypes(bnet: bitlogic.Network, dtype: str) -> None:
    x = np.zeros((3, 70), dtype=dtype)
    message = input_error(lambda: bnet.scores(x))
    assert "bool" in message.lower(), message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_features(tnet: bitlogic.Network, dtype: str) -> None:
    x = features(100).astype(dtype)
    x[57, 3] = np.nan
    input_error(lambda: tnet.scores(x), "nan")
    input_error(lambda: tnet.predict(np.asfortranarray(x)), "nan")
    # Infinite features are ordinary values.
    x[57, 3] = np.inf
    np.testing.assert_array_equal(tnet.scores(x), reference.network_scores(tnet, x))


def test_uint8_bits_must_be_zero_or_one(bnet: bitlogic.Network) -> None:
    x = np.zeros((100, 70), dtype=np.uint8)
    x[99, 69] = 2
    input_error(lambda: bnet.scores(x), "0", "1")
    x[99, 69] = 255
    input_error(lambda: bnet.predict(x), "0", "1")
    x[99, 69] = 1
    bnet.scores(x)


def test_threads_must_be_positive(bnet: bitlogic.Network) -> None:
    with pytest.raises(ValueError):
        bnet.scores(np.zeros((3, 70), dtype=bool), threads=0)


# -- threads ----------------------------------------------------------------------------------------------------------


def test_predict_from_four_python_threads(bnet: bitlogic.Network) -> None:
    rng = np.random.default_rng(8)
    batches = [rng.integers(0, 2, size=(3000, 70)).astype(bool) for _ in range(4)]
    expected = [bnet.predict(b, threads=1) for b in batches]
    start = threading.Barrier(4)

    def work(i: int) -> list[np.ndarray]:
        start.wait()
        return [bnet.predict(batches[(i + j) % 4]) for j in range(8)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(4)))
    for i, result in enumerate(results):
        for j, got in enumerate(result):
            np.testing.assert_array_equal(got, expected[(i + j) % 4])
    np.testing.assert_array_equal(expected[0], reference.network_predict(bnet, batches[0]))


def test_scores_from_threads_on_a_threshold_network(tnet: bitlogic.Network) -> None:
    x = features(2000).astype(np.float32)
    expected = reference.network_scores(tnet, x)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: tnet.scores(x, threads=t), [1, 2, None, 1, 2, None]))
    for got in results:
        np.testing.assert_array_equal(got, expected)


def test_one_path_saved_from_eight_threads_always_reads_whole(tmp_path: Path) -> None:
    # Network.save is the core's atomic write: a temporary name unique per write, so writers never share one, and
    # a reader (here two, loading all the time) sees one whole network, never a torn or mixed file.
    kinds = ("gates", "luts", "binary")
    nets = [bitlogic.random_network(20 + i, [30 + 7 * i, 12], 3, kind=kinds[i % 3], n=2 + i % 5, seed=i)
            for i in range(8 * 10)]  # fmt: skip
    written = [net.to_bytes() for net in nets]
    assert len(set(written)) == len(written)
    path = tmp_path / "net.bitlogic"
    nets[0].save(path)
    start = threading.Barrier(8 + 2)
    done = threading.Event()

    def writer(i: int) -> None:
        start.wait()
        for j in range(10):
            nets[i * 10 + j].save(path)

    def reader() -> int:
        start.wait()
        loads = 0
        while not done.is_set() or loads == 0:
            assert bitlogic.load(path).to_bytes() in written
            loads += 1
        return loads

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        readers = [pool.submit(reader) for _ in range(2)]
        writers = [pool.submit(writer, i) for i in range(8)]
        for w in writers:
            w.result()
        done.set()
        assert all(r.result() > 0 for r in readers)
    last = bitlogic.load(path)
    assert any(last == net for net in nets)
    assert [p.name for p in tmp_path.iterdir()] == ["net.bitlogic"]  # no temporary file left behind


def _run_program(program: dict[str, Any], encoded: np.ndarray) -> np.ndarray:
    # Network.program's documented meaning, evaluated one sample per row with numpy bools.
    n = encoded.shape[0]
    slots = np.zeros((program["num_slots"], n), dtype=bool)
    slots[: len(program["input_bits"])] = encoded[:, program["input_bits"]].T
    slots[program["true_slot"]] = True
    for step in program["steps"]:
        if step["kind"] == "ops":
            for a, b, c, out in program["ops"][step["start"] : step["end"]]:
                assert program["imms"][step["start"]] == step["imm"]
                index = slots[a].astype(int) + 2 * slots[b] + 4 * slots[c]
                slots[out] = (step["imm"] >> index) & 1
        else:
            columns = np.arange(len(step["inputs"]))
            weights = (step["weights"][:, columns // 64] >> (columns % 64).astype(np.uint64)) & 1  # [rows, inputs]
            matches = (slots[step["inputs"]][None, :, :] == weights[:, :, None].astype(bool)).sum(1)
            slots[step["outputs"]] = matches >= step["thresholds"][:, None]
    return np.stack([slots[c["slots"]].sum(0) + (~slots[c["inverted"]]).sum(0) + c["ones"]
                     for c in program["classes"]], axis=1)  # fmt: skip


@pytest.mark.parametrize("kind", ["gates", "luts", "binary"])
def test_program_is_what_the_engine_evaluates(kind: str) -> None:
    net = bitlogic.random_network(24, [40, 30, 12], 3, kind=kind, n=4, seed=5)  # type: ignore[arg-type]
    bits = np.random.default_rng(5).integers(0, 2, size=(100, 24)).astype(bool)
    expected = net.scores(bits)
    for optimize in (True, False):
        program = net.program(optimize)
        assert program["ops"].dtype == np.uint32 and program["ops"].shape[1] == 4
        assert program["false_slot"] == len(program["input_bits"]) and program["true_slot"] == program["false_slot"] + 1
        np.testing.assert_array_equal(_run_program(program, bits), expected)
    if kind != "binary":
        assert len(net.program(True)["imms"]) < len(net.program(False)["imms"])


# -- introspection ----------------------------------------------------------------------------------------------------


def test_stats_of_a_known_network() -> None:
    encoder, layers, k = threshold_network()
    net = bitlogic.Network.from_arrays(encoder, layers, k)
    s = net.stats()
    assert s["gates"] == 40
    assert s["luts"] == {3: 24}
    assert s["binary_weights"] == 12 * 24
    assert s["depth"] == 3
    # Data as stored in a file: thresholds 15 x F32; gates 40 x (2 x U32 + U8); tables 24 x (3 x U32 + 1 byte);
    # binary 12 x (3 bytes of weights + I32).
    assert s["bytes"] == 15 * 4 + 40 * 9 + 24 * (12 + 1) + 12 * (3 + 4)
    assert s["num_inputs"] == 5 and s["num_input_bits"] == 15 and s["num_classes"] == 4


def test_stats_counts_each_lut_arity_and_binary_weights() -> None:
    rng = np.random.default_rng(0)
    layers: list[Layer] = [
        LutLayer(inputs=rng.integers(0, 10, size=(16, 2)), tables=rng.integers(0, 2, size=(16, 4))),
        LutLayer(inputs=rng.integers(0, 16, size=(12, 6)), tables=rng.integers(0, 2, size=(12, 64))),
        BinaryLayer(weights=rng.integers(0, 2, size=(9, 12)), thresholds=np.zeros(9)),
        LutLayer(inputs=rng.integers(0, 9, size=(6, 2)), tables=rng.integers(0, 2, size=(6, 4))),
        GateLayer(inputs=rng.integers(0, 6, size=(3, 2)), ops=[1, 2, 3]),
    ]
    s = bitlogic.Network.from_arrays(BitsEncoder(10), layers, 3).stats()
    assert s["luts"] == {2: 22, 6: 12}
    assert s["gates"] == 3
    assert s["binary_weights"] == 108
    assert s["depth"] == 5
    assert s["bytes"] == 22 * (8 + 1) + 12 * (24 + 8) + 9 * (2 + 4) + 3 * 9


def test_stats_of_an_empty_network() -> None:
    s = bitlogic.Network.from_arrays(BitsEncoder(4), [], 2).stats()
    assert (s["gates"], s["luts"], s["binary_weights"], s["depth"], s["bytes"]) == (0, {}, 0, 0, 0)


def test_sizes_and_properties(tnet: bitlogic.Network, bnet: bitlogic.Network) -> None:
    assert tnet.num_inputs == 5
    assert tnet.num_input_bits == 15
    assert tnet.num_classes == 4
    assert tnet.tau == 4.0
    assert bnet.num_inputs == 70 and bnet.num_input_bits == 70
    assert bnet.num_classes == 5
    assert bnet.tau == 1.0


def test_parts_come_back_unpacked(tnet: bitlogic.Network) -> None:
    encoder, layers, _ = threshold_network()
    got = tnet.encoder
    assert isinstance(got, ThresholdEncoder) and got.bit_order == "feature_major"
    assert got.thresholds.dtype == np.float32
    np.testing.assert_array_equal(got.thresholds, encoder.thresholds)
    back = tnet.layers
    assert isinstance(back[0], GateLayer) and isinstance(back[1], LutLayer) and isinstance(back[2], BinaryLayer)
    np.testing.assert_array_equal(back[0].inputs, layers[0].inputs)  # type: ignore[union-attr]
    np.testing.assert_array_equal(back[0].ops, layers[0].ops)  # type: ignore[union-attr]
    np.testing.assert_array_equal(back[1].tables, layers[1].tables)  # type: ignore[union-attr]
    assert back[1].tables.shape == (24, 8)  # unpacked: one entry per address
    np.testing.assert_array_equal(back[2].weights, layers[2].weights)  # type: ignore[union-attr]
    assert back[2].weights.shape == (12, 24)
    np.testing.assert_array_equal(back[2].thresholds, layers[2].thresholds)  # type: ignore[union-attr]
    # A network rebuilt from its own parts is equal to it.
    assert bitlogic.Network.from_arrays(tnet.encoder, tnet.layers, tnet.num_classes, tau=tnet.tau) == tnet


def test_bits_encoder_comes_back() -> None:
    net = bitlogic.random_network(33, [12], 4, seed=1)
    assert isinstance(net.encoder, BitsEncoder) and net.encoder.num_inputs == 33


# -- random networks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gates", "luts", "binary"])
def test_random_network_is_deterministic_by_seed(kind: str) -> None:
    a = bitlogic.random_network(40, [50, 20], 4, kind=kind, n=4, seed=7)  # type: ignore[arg-type]
    b = bitlogic.random_network(40, [50, 20], 4, kind=kind, n=4, seed=7)  # type: ignore[arg-type]
    c = bitlogic.random_network(40, [50, 20], 4, kind=kind, n=4, seed=8)  # type: ignore[arg-type]
    assert a == b
    assert a != c
    for la, lb in zip(a.layers, b.layers):
        for field in ("inputs", "ops", "tables", "weights", "thresholds"):
            if hasattr(la, field):
                np.testing.assert_array_equal(getattr(la, field), getattr(lb, field))
    x = np.random.default_rng(0).integers(0, 2, size=(500, 40)).astype(bool)
    np.testing.assert_array_equal(a.scores(x), b.scores(x))
    assert not np.array_equal(a.scores(x), c.scores(x))


def test_random_network_width_must_divide() -> None:
    with pytest.raises(bitlogic.BitlogicError):
        bitlogic.random_network(10, [10, 7], 2)


# -- construction errors ----------------------------------------------------------------------------------------------


def construction_error(encoder: object, layers: list[Layer], k: int, *words: str, tau: float = 1.0) -> str:
    with pytest.raises(bitlogic.BitlogicError) as info:
        bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    for word in words:  # "a|b": either is enough
        assert any(w.lower() in message.lower() for w in word.split("|")), f"{word!r} not in {message!r}"
    return message


def test_wire_out_of_range() -> None:
    construction_error(BitsEncoder(4), [GateLayer(inputs=[[0, 1], [3, 4]], ops=[1, 1])], 2, "4", "wire")
    construction_error(
        BitsEncoder(4),
        [GateLayer(inputs=[[0, 1], [2, 3]], ops=[1, 1]), LutLayer(inputs=[[0, 2]], tables=[[0, 1, 1, 0]])],
        1,
        "wire",
    )
    construction_error(ThresholdEncoder(np.zeros((2, 2))), [LutLayer(inputs=[[0, 4]], tables=[[0, 1, 1, 0]])], 1)


def test_op_code_16() -> None:
    construction_error(BitsEncoder(2), [GateLayer(inputs=[[0, 1], [1, 0]], ops=[15, 16])], 1, "16")


def test_widths_not_divisible_by_num_classes() -> None:
    construction_error(BitsEncoder(4), [GateLayer(inputs=[[0, 1]] * 5, ops=[1] * 5)], 2, "5")
    construction_error(BitsEncoder(7), [], 3)


def test_bad_tables_weights_and_head() -> None:
    construction_error(BitsEncoder(3), [LutLayer(inputs=[[0, 1]], tables=[[0, 1, 1]])], 1, "tables")
    construction_error(BitsEncoder(3), [BinaryLayer(weights=[[0, 1]], thresholds=[1])], 1, "weights")
    construction_error(BitsEncoder(3), [BinaryLayer(weights=[[0, 1, 1]], thresholds=[1, 2])], 1, "thresholds|weights")
    construction_error(BitsEncoder(3), [LutLayer(inputs=np.zeros((2, 9)), tables=np.zeros((2, 512)))], 1)
    construction_error(BitsEncoder(2), [], 0)
    for tau in (0.0, -1.0, float("nan"), float("inf")):
        construction_error(BitsEncoder(2), [], 1, "tau", tau=tau)
    construction_error(ThresholdEncoder([[0.0, np.nan]]), [], 1, "nan")


def test_empty_layers_and_encoders() -> None:
    construction_error(BitsEncoder(0), [], 1)
    construction_error(ThresholdEncoder(np.zeros((0, 2))), [], 1)
    construction_error(BitsEncoder(4), [GateLayer(inputs=np.zeros((0, 2)), ops=[])], 1)


def test_not_a_layer() -> None:
    with pytest.raises(TypeError):
        bitlogic.Network.from_arrays(BitsEncoder(2), ["gates"], 1)  # type: ignore[list-item]


def test_error_hierarchy() -> None:
    assert issubclass(bitlogic.InputError, bitlogic.BitlogicError)
    assert issubclass(bitlogic.FormatError, bitlogic.BitlogicError)
    assert issubclass(bitlogic.BitlogicError, ValueError)
    assert not issubclass(bitlogic.InputError, bitlogic.FormatError)


ERRORS = ["BitlogicError", "FormatError", "InputError", "ExportError", "CheckpointError", "DatasetError", "CudaError",
          "KernelCompileError"]


def test_every_error_is_a_bitlogic_error_from_one_module() -> None:
    import bitlogic.datasets
    import bitlogic.errors

    assert sorted(ERRORS) == sorted(name for name in bitlogic.errors.__all__ if name[0].isupper())
    for name in ERRORS:
        cls = getattr(bitlogic, name)
        assert cls is getattr(bitlogic.errors, name) and name in bitlogic.__all__
        assert issubclass(cls, bitlogic.BitlogicError) and issubclass(cls, ValueError)
    assert issubclass(bitlogic.CudaError, RuntimeError) and issubclass(bitlogic.KernelCompileError, bitlogic.CudaError)
    assert bitlogic.datasets.DatasetError is bitlogic.DatasetError


def raise_format_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bitlogic"
    path.write_bytes(b"not a network")
    bitlogic.load(path)


def raise_input_error(tmp_path: Path) -> None:
    bitlogic.random_network(8, [4], 2).predict(np.zeros((3, 5), dtype=bool))


def raise_export_error(tmp_path: Path) -> None:
    from torch import nn

    bitlogic.compile(nn.Sequential(nn.Linear(2, 2)))


def raise_checkpoint_error(tmp_path: Path) -> None:
    from bitlogic import training

    training.load_checkpoint(tmp_path / "none.ckpt")


def raise_dataset_error(tmp_path: Path) -> None:
    from bitlogic import datasets

    datasets.load("no-such-set")


def raise_cuda_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bitlogic.gpu import _driver

    monkeypatch.setattr(_driver, "_LIBRARY", str(tmp_path / "libcuda-missing.so"))  # as on a machine without one
    _driver.Driver()


@pytest.mark.parametrize(
    ("raise_it", "expected"),
    [
        (raise_format_error, "FormatError"),
        (raise_input_error, "InputError"),
        (raise_export_error, "ExportError"),
        (raise_checkpoint_error, "CheckpointError"),
        (raise_dataset_error, "DatasetError"),
        (raise_cuda_error, "CudaError"),
    ],
)
def test_one_except_clause_catches_every_kind_of_failure(
    raise_it: Callable[..., None], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arguments = (tmp_path, monkeypatch) if raise_it is raise_cuda_error else (tmp_path,)
    try:
        raise_it(*arguments)
    except bitlogic.BitlogicError as error:
        assert isinstance(error, getattr(bitlogic, expected)), repr(error)
    else:
        pytest.fail(f"{raise_it.__name__} raised nothing")


def test_an_unknown_layer_kind_is_an_error_naming_it() -> None:
    net = bitlogic.random_network(8, [4], 2)
    kind, first, second = net._net.layer_parts()[0]
    with_native(net, layer_parts=[(kind, first, second), ("conv", first, second)])
    with pytest.raises(bitlogic.FormatError, match=r"unknown layer kind 'conv'.*gates, luts, binary"):
        net.layers


def test_an_unknown_encoder_kind_is_an_error_naming_it() -> None:
    net = bitlogic.random_network(8, [4], 2)
    with_native(net, encoder_parts=("wavelet", 8))
    with pytest.raises(bitlogic.FormatError, match=r"unknown encoder kind 'wavelet'.*bits, thresholds"):
        net.encoder


def test_each_kind_converts_to_and_from_its_native_parts(tnet: bitlogic.Network) -> None:
    assert list(LAYER_KINDS) == ["gates", "luts", "binary", "conv_gates", "conv_luts", "conv_binary", "or_pool"]
    assert list(ENCODER_KINDS) == ["bits", "thresholds"]
    for (kind, first, second), layer in zip(tnet._net.layer_parts(), tnet.layers, strict=True):
        assert type(layer) is LAYER_KINDS[kind] and layer.kind == kind
        again = type(layer).from_parts(*layer.to_parts())
        assert all(np.array_equal(getattr(again, f), getattr(layer, f)) for f in layer.__dataclass_fields__)
    assert tnet.encoder.kind == tnet._net.encoder_parts()[0] == "thresholds"
    rebuilt = bitlogic.Network.from_arrays(tnet.encoder, tnet.layers, tnet.num_classes, tau=tnet.tau)
    assert rebuilt == tnet


def test_stats_compile_nothing_and_optimization_compiles_once() -> None:
    net = bitlogic.random_network(64, [20000] * 4 + [100], 10, seed=1)
    native = with_native(net)
    stats = net.stats()
    assert stats["gates"] == 80100 and "before" not in stats and "after" not in stats
    assert set(native.calls) == {"stats"}
    optimization = net.optimization()
    assert set(optimization) == {"before", "after", "passes"}
    assert optimization["after"]["ops"] < optimization["before"]["ops"]
    assert native.calls["optimization"] == 1 and "prepare" not in native.calls


def test_network_pickles_and_deep_copies() -> None:
    net = bitlogic.random_network(20, [24, 12], 3, kind="luts", n=3, seed=5)
    x = np.random.default_rng(5).random((100, 20)) < 0.5
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert isinstance(clone, bitlogic.Network)
        assert clone == net
        np.testing.assert_array_equal(clone.scores(x), net.scores(x))


# -- spatial layers (format 1.2) --------------------------------------------------------------------------------------


def test_bad_spatial_layers_are_input_errors_naming_the_problem() -> None:
    from bitlogic.spec import ConvBinaryLayer, ConvGateLayer, ConvLutLayer, OrPoolLayer

    # The image does not hold the encoder's bits.
    construction_error(BitsEncoder(20), [OrPoolLayer((1, 4, 4))], 1, "16|20")
    # Leaves outside the window, op codes above 15, depth above 8, arity above 8: the core's checks.
    tree = [[[0, 0, 0], [1, 0, 0]]]
    construction_error(BitsEncoder(9), [ConvGateLayer((1, 3, 3), tree, [[1]])], 1, "conv_gates", "leaf|leaves")
    construction_error(BitsEncoder(9), [ConvGateLayer((1, 3, 3), [[[0, 0, 3], [0, 0, 0]]], [[1]])], 1, "conv_gates")
    construction_error(BitsEncoder(9), [ConvGateLayer((1, 3, 3), [[[0, 0, 0]] * 2], [[16]])], 1, "16")
    construction_error(BitsEncoder(9), [ConvGateLayer((1, 3, 3), np.zeros((1, 512, 3)), np.zeros((1, 511)))], 1,
                       "depth")
    construction_error(BitsEncoder(9), [ConvLutLayer((1, 3, 3), np.zeros((1, 9, 3)), np.zeros((1, 512)))], 1,
                       "arity")
    construction_error(BitsEncoder(9), [ConvBinaryLayer((1, 3, 3), np.ones((1, 9)), [0]), GateLayer([[0, 1]], [1])],
                       1, "wire|1")


def from_native_parts(parts: list[Any], num_input_bits: int = 9) -> str:
    """The message of the InputError the native constructor raises for ``parts`` (bypassing the spec classes)."""
    with pytest.raises(bitlogic.InputError) as info:
        bitlogic._native.Network.from_parts(num_input_bits, None, "", parts, 1, 1.0)
    return str(info.value)


GEOMETRY = {"input_shape": (1, 3, 3), "kernel_size": (3, 3), "stride": (1, 1), "padding": (0, 0)}
LEAVES = np.zeros((1, 2, 3), dtype=np.uint32)
OPS = np.zeros((1, 1), dtype=np.uint8)


@pytest.mark.parametrize("part,words", [
    (("conv_gates", LEAVES, OPS), ["geometry"]),
    (("conv_gates", LEAVES, OPS, [1, 3, 3]), ["geometry", "dict"]),
    (("conv_gates", LEAVES, OPS, {**GEOMETRY, "dilation": (1, 1)}), ["dilation"]),
    (("conv_gates", LEAVES, OPS, {k: v for k, v in GEOMETRY.items() if k != "stride"}), ["stride", "missing"]),
    (("conv_gates", LEAVES, OPS, {**GEOMETRY, "stride": (1, -1)}), ["stride"]),
    (("conv_gates", LEAVES, OPS, {**GEOMETRY, "input_shape": (1, 3)}), ["input_shape"]),
    (("conv_gates", LEAVES, OPS, {**GEOMETRY, "kernel_size": (4, 3)}), ["kernel_size"]),
    (("conv_gates", LEAVES.astype(np.int64), OPS, GEOMETRY), ["leaves", "uint32", "int64"]),
    (("conv_gates", LEAVES[0], OPS, GEOMETRY), ["leaves", "3-dimensional"]),
    (("conv_gates", np.zeros((1, 3, 3), dtype=np.uint32), OPS, GEOMETRY), ["leaves", "2^depth"]),
    (("conv_gates", LEAVES, np.zeros((1, 2), dtype=np.uint8), GEOMETRY), ["ops", "[1, 1]"]),
    (("conv_gates", "leaves", OPS, GEOMETRY), ["leaves", "numpy array"]),
    (("conv_luts", LEAVES, np.zeros((1, 3), dtype=np.uint8), GEOMETRY), ["tables", "2^2"]),
    (("conv_binary", np.ones((1, 9), dtype=np.uint8), np.zeros(1, dtype=np.int32), GEOMETRY), ["pad_value"]),
    (("conv_binary", np.ones((1, 9), dtype=np.uint8), np.zeros(1, dtype=np.int32), {**GEOMETRY, "pad_value": 2}),
     ["pad_value"]),
    (("conv_binary", np.ones((1, 8), dtype=np.uint8), np.zeros(1, dtype=np.int32), {**GEOMETRY, "pad_value": 1}),
     ["weights", "[O, 9]"]),
    (("conv_binary", np.ones((1, 9), dtype=np.uint8), np.zeros(2, dtype=np.int32), {**GEOMETRY, "pad_value": 1}),
     ["conv_binary", "weights"]),
    (("or_pool", LEAVES, None, {"input_shape": (1, 3, 3), "kernel_size": (2, 2), "stride": (1, 1)}), ["None"]),
    (("or_pool", None, None, GEOMETRY), ["padding"]),
    (("gates", np.zeros((1, 2), dtype=np.uint32), np.zeros(1, dtype=np.uint8), GEOMETRY), ["geometry"]),
    (("conv", LEAVES, OPS, GEOMETRY), ["conv", "or_pool"]),
    (("conv_gates",), ["tuple"]),
    (["conv_gates", LEAVES, OPS, GEOMETRY], ["tuple"]),
])
def test_bad_native_spatial_parts_name_what_was_expected(part: Any, words: list[str]) -> None:
    message = from_native_parts([part])
    assert message.startswith("invalid network: layer 0"), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_spatial_parts_come_back_as_they_went_in() -> None:
    from bitlogic.spec import ConvBinaryLayer, OrPoolLayer

    layers: list[Layer] = [ConvBinaryLayer((2, 3, 4), np.ones((3, 8)), [0, 1, 2], kernel_size=2, padding=(1, 0),
                                           pad_value=0), OrPoolLayer((3, 4, 3), kernel_size=(2, 1), stride=1)]
    net = bitlogic.Network.from_arrays(BitsEncoder(24), layers, 3)
    parts = net._net.layer_parts()
    assert [p[0] for p in parts] == ["conv_binary", "or_pool"]
    assert parts[0][3] == {"input_shape": (2, 3, 4), "kernel_size": (2, 2), "stride": (1, 1), "padding": (1, 0),
                           "pad_value": 0}
    assert parts[1][1:] == (None, None, {"input_shape": (3, 4, 3), "kernel_size": (2, 1), "stride": (1, 1)})
    back = net.layers
    assert isinstance(back[0], ConvBinaryLayer) and back[0].output_shape == (3, 4, 3)
    assert isinstance(back[1], OrPoolLayer) and back[1].width == 27
