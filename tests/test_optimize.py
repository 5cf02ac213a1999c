"""The optimizing passes: what they remove on networks built to contain each case, and that results never change.

Exactness on random networks is covered by test_engine_vs_reference.py (every check there also runs with
``optimize=False`` and from packed bit planes); here each pass is shown to fire, and the statistics to add up.
"""

from __future__ import annotations

import numpy as np
import pytest

import bitlogic
from bitlogic import reference
from bitlogic.spec import BinaryLayer, BitsEncoder, GateLayer, LutLayer, ThresholdEncoder

# difflogic op codes
FALSE, AND, A, B, XOR, OR, NOT_A, NAND, TRUE = 0, 1, 3, 5, 6, 7, 12, 14, 15


def all_inputs(bits: int) -> np.ndarray:
    """Every assignment of ``bits`` input bits, one per row."""
    rows = np.arange(1 << bits)[:, None]
    return ((rows >> np.arange(bits)) & 1).astype(bool)


def check_exact(net: bitlogic.Network, x: np.ndarray) -> None:
    expected = reference.network_scores(net, x)
    np.testing.assert_array_equal(net.scores(x), expected)
    np.testing.assert_array_equal(net.scores(x, optimize=False), expected)
    np.testing.assert_array_equal(net.predict(x), reference.network_predict(net, x))


def test_constants_pass_throughs_and_duplicates_are_removed() -> None:
    # Layer 0: a FALSE gate, a TRUE gate, pass-throughs A and B, an inverter, and the same AND twice.
    layer0 = GateLayer(inputs=[[0, 1], [0, 1], [2, 3], [2, 3], [0, 0], [0, 1], [0, 1], [2, 3]],
                       ops=[FALSE, TRUE, A, B, NOT_A, AND, AND, XOR])
    # Layer 1 reads them: AND with FALSE is FALSE, OR with TRUE is TRUE, NOT NOT A is A.
    layer1 = GateLayer(inputs=[[0, 5], [1, 7], [4, 4], [5, 6], [2, 3], [6, 7]],
                       ops=[AND, OR, NOT_A, XOR, AND, OR])
    net = bitlogic.Network.from_arrays(BitsEncoder(4), [layer0, layer1], num_classes=2)
    check_exact(net, all_inputs(4))
    stats = net.optimization()
    passes = stats["passes"]
    assert passes["constants"] >= 4  # FALSE, TRUE, AND(FALSE, x), OR(TRUE, x); XOR(x, x) as well
    assert passes["wires"] >= 3  # A, B, NOT A and NOT NOT A
    assert passes["merged"] >= 1  # the second AND
    assert stats["before"]["ops"] == 14
    assert stats["after"]["ops"] < stats["before"]["ops"]


def test_class_outputs_read_inverted_cost_no_operation() -> None:
    # Class 0 counts NOT x0, NOT x1 and x0 AND x1; class 1 counts NAND(x0, x1) (the AND read inverted), x2, NOT x2.
    # The counter complements what it reads inverted, so the only operation left is the AND.
    layer = GateLayer(inputs=[[0, 0], [1, 1], [0, 1], [0, 1], [2, 2], [2, 2]], ops=[NOT_A, NOT_A, AND, NAND, A, NOT_A])
    net = bitlogic.Network.from_arrays(BitsEncoder(3), [layer], num_classes=2)
    check_exact(net, all_inputs(3))
    after = net.optimization()["after"]
    assert after["ops"] == 1 and after["depth"] == 1


def test_unused_nodes_are_dead() -> None:
    # The last layer reads only gates 0..9 of the first: the other 30 feed nothing.
    rng = np.random.default_rng(0)
    layer0 = GateLayer(inputs=rng.integers(0, 8, size=(40, 2)), ops=rng.integers(1, 15, size=40))
    layer1 = GateLayer(inputs=rng.integers(0, 10, size=(4, 2)), ops=[AND, OR, XOR, NAND])  # reads gates 0..9
    net = bitlogic.Network.from_arrays(BitsEncoder(8), [layer0, layer1], num_classes=2)
    check_exact(net, all_inputs(8))
    stats = net.optimization()
    assert stats["before"]["ops"] == 44
    assert stats["after"]["ops"] <= 4 + 10
    assert stats["passes"]["dead"] >= 15  # the others were already removed as constants, wires or duplicates


def test_lut_inputs_the_table_ignores_are_dropped() -> None:
    # A 6-input table that only depends on inputs 0 and 3 (their XOR) becomes one two-input operation.
    address = np.arange(64)
    table = (((address >> 0) ^ (address >> 3)) & 1).astype(np.uint8)
    layer = LutLayer(inputs=[[0, 1, 2, 3, 4, 5]], tables=table[None, :])
    net = bitlogic.Network.from_arrays(BitsEncoder(6), [layer], num_classes=1)
    check_exact(net, all_inputs(6))
    stats = net.optimization()
    assert stats["passes"]["inputs_removed"] >= 4
    assert stats["after"]["ops"] == 1
    assert stats["before"]["ops"] == 8 + 7  # eight 3-input leaves under a 7-multiplexer tree


def test_lut_reading_one_wire_twice_is_merged() -> None:
    # Inputs 0 and 1 are the same wire: a 3-input table of (a, a, b) is a 2-input function.
    rng = np.random.default_rng(5)
    tables = rng.integers(0, 2, size=(16, 8)).astype(np.uint8)
    wires = np.stack([rng.integers(0, 4, 16)] * 2 + [rng.integers(0, 4, 16)], axis=1)
    net = bitlogic.Network.from_arrays(BitsEncoder(4), [LutLayer(inputs=wires, tables=tables)], num_classes=2)
    check_exact(net, all_inputs(4))
    assert net.optimization()["passes"]["inputs_removed"] >= 16


def test_binary_rows_fold_constants_and_constant_rows() -> None:
    # A gate layer feeding a binary layer with a constant input; one row can never fire, one always fires.
    gates = GateLayer(inputs=[[0, 1], [1, 2], [2, 3], [0, 0]], ops=[AND, XOR, OR, FALSE])
    weights = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [0, 1, 0, 1], [1, 0, 0, 1]])
    binary = BinaryLayer(weights=weights, thresholds=[2, 5, 0, 3])
    net = bitlogic.Network.from_arrays(BitsEncoder(4), [gates, binary], num_classes=2)
    check_exact(net, all_inputs(4))
    passes = net.optimization()["passes"]
    assert passes["binary_inputs_folded"] >= 1
    assert passes["binary_rows_constant"] >= 2


def test_threshold_encoder_bits_nobody_reads_are_not_computed() -> None:
    thresholds = np.linspace(0, 1, 8 * 3, dtype=np.float32).reshape(8, 3)
    layer = GateLayer(inputs=[[0, 5], [7, 9], [2, 2]], ops=[AND, OR, XOR])  # XOR(x, x) is FALSE
    net = bitlogic.Network.from_arrays(ThresholdEncoder(thresholds), [layer], num_classes=3)
    x = np.random.default_rng(1).random((300, 8), dtype=np.float32)
    np.testing.assert_array_equal(net.scores(x), reference.network_scores(net, x))
    stats = net.optimization()
    assert stats["after"]["inputs_read"] == 4
    assert stats["after"]["ops"] == 2


def test_large_random_network_shrinks_and_stays_exact() -> None:
    net = bitlogic.random_network(64, [2000, 2000, 2000, 100], 10, kind="gates", seed=3)
    x = np.random.default_rng(3).random((700, 64)) < 0.5
    check_exact(net, x)
    stats = net.optimization()
    assert stats["after"]["ops"] < stats["before"]["ops"] / 2
    assert stats["after"]["slots"] <= stats["before"]["slots"]


def test_prepare_returns_the_network_and_the_optimization_is_stable() -> None:
    net = bitlogic.random_network(16, [64, 30], 3, kind="luts", n=6, seed=0)
    assert net.prepare() is net
    first = net.optimization()
    assert net.optimization() == first
    again = bitlogic.Network.from_bytes(net.to_bytes())
    assert again.optimization() == first  # the passes are deterministic


# -- packed bit planes ------------------------------------------------------------------------------------------


def test_pack_bits_layout() -> None:
    bits = np.zeros((130, 3), dtype=bool)
    bits[0, 0] = bits[64, 1] = bits[129, 2] = True
    planes = bitlogic.pack_bits(bits)
    assert planes.dtype == np.uint64 and planes.shape == (3, 3)
    assert planes[0, 0] == 1 and planes[1, 1] == 1 and planes[2, 2] == 1 << 1
    assert planes.sum() == 1 + 1 + 2
    np.testing.assert_array_equal(bitlogic.pack_bits(bits.astype(np.uint8)), planes)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 513])
def test_packed_input_matches_bool_input(n: int) -> None:
    net = bitlogic.random_network(40, [300, 90], 3, kind="gates", seed=n)
    x = np.random.default_rng(n).random((n, 40)) < 0.5
    planes = bitlogic.pack_bits(x)
    expected = net.scores(x)
    np.testing.assert_array_equal(net.scores(planes, num_samples=n), expected)
    for threads in (1, 2):
        np.testing.assert_array_equal(net.predict(planes, num_samples=n, threads=threads), net.predict(x))
    if n % 64 == 0:
        np.testing.assert_array_equal(net.scores(planes), expected)  # num_samples defaults to 64 per word


def test_packed_input_errors() -> None:
    net = bitlogic.random_network(40, [60], 3, kind="gates", seed=0)
    planes = bitlogic.pack_bits(np.zeros((100, 40), dtype=bool))
    with pytest.raises(bitlogic.InputError, match="words per plane"):
        net.predict(planes, num_samples=300)
    with pytest.raises(bitlogic.InputError, match=r"40 input bit planes"):
        net.predict(planes[:39], num_samples=100)
    with pytest.raises(bitlogic.InputError, match="C-contiguous"):
        net.predict(np.asfortranarray(planes), num_samples=100)
    with pytest.raises(bitlogic.InputError, match="non-negative integer"):
        net.predict(planes, num_samples=-1)
    with pytest.raises(bitlogic.InputError, match="num_samples is only for packed"):
        net.predict(np.zeros((100, 40), dtype=bool), num_samples=100)
    with pytest.raises(bitlogic.InputError, match="0/1"):
        bitlogic.pack_bits(np.full((3, 4), 2))
    with pytest.raises(bitlogic.InputError, match="2-dimensional"):
        bitlogic.pack_bits(np.zeros(5, dtype=bool))


def test_encoder_only_network_reads_every_bit() -> None:
    net = bitlogic.Network.from_arrays(BitsEncoder(6), [], num_classes=3)
    check_exact(net, all_inputs(6))
    after = net.optimization()["after"]
    assert after["ops"] == 0 and after["inputs_read"] == 6
