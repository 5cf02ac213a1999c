"""Hand-checked truths for the numpy reference evaluator.

Every expected value here is worked out by hand from docs/FORMAT.md, so that the reference (the engine's oracle) is
itself checked against the specification. Only ``bitlogic.spec`` and ``bitlogic.reference`` are used: these tests run
without the native module.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from bitlogic import reference
from bitlogic.errors import FormatError, InputError
from bitlogic.spec import LAYER_KINDS, BinaryLayer, BitsEncoder, GateLayer, LutLayer, ThresholdEncoder

# The op-code table of FORMAT.md 3.3, transcribed function by function.
OP_FUNCTIONS = {
    0: lambda a, b: 0,  # FALSE
    1: lambda a, b: a & b,  # A AND B
    2: lambda a, b: a & (1 - b),  # A AND NOT B
    3: lambda a, b: a,  # A
    4: lambda a, b: (1 - a) & b,  # NOT A AND B
    5: lambda a, b: b,  # B
    6: lambda a, b: a ^ b,  # A XOR B
    7: lambda a, b: a | b,  # A OR B
    8: lambda a, b: 1 - (a | b),  # NOT (A OR B)
    9: lambda a, b: 1 - (a ^ b),  # NOT (A XOR B)
    10: lambda a, b: 1 - b,  # NOT B
    11: lambda a, b: a | (1 - b),  # A OR NOT B
    12: lambda a, b: 1 - a,  # NOT A
    13: lambda a, b: (1 - a) | b,  # NOT A OR B
    14: lambda a, b: 1 - (a & b),  # NOT (A AND B)
    15: lambda a, b: 1,  # TRUE
}

# The same sixteen functions as truth tables over (a, b) = (0,0), (0,1), (1,0), (1,1), written out by hand.
OP_TRUTH_TABLES = {
    0: (0, 0, 0, 0),
    1: (0, 0, 0, 1),
    2: (0, 0, 1, 0),
    3: (0, 0, 1, 1),
    4: (0, 1, 0, 0),
    5: (0, 1, 0, 1),
    6: (0, 1, 1, 0),
    7: (0, 1, 1, 1),
    8: (1, 0, 0, 0),
    9: (1, 0, 0, 1),
    10: (1, 0, 1, 0),
    11: (1, 0, 1, 1),
    12: (1, 1, 0, 0),
    13: (1, 1, 0, 1),
    14: (1, 1, 1, 0),
    15: (1, 1, 1, 1),
}

PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_op_table_transcriptions_agree() -> None:
    # The function table, the hand-written truth tables and the "bit 3 - (2a + b) of the op code" rule of
    # FORMAT.md 3.3 are three statements of the same thing.
    for op in range(16):
        for index, (a, b) in enumerate(PAIRS):
            assert OP_FUNCTIONS[op](a, b) == OP_TRUTH_TABLES[op][index]
            assert (op >> (3 - (2 * a + b))) & 1 == OP_TRUTH_TABLES[op][index]


@pytest.mark.parametrize("op", range(16))
def test_every_op_code_on_all_four_input_pairs(op: int) -> None:
    # Two input bits; rows are the four (a, b) pairs; one gate reading A = bit 0, B = bit 1.
    x = np.array(PAIRS, dtype=bool)
    layer = GateLayer(inputs=[[0, 1]], ops=[op])
    out = reference.layer_outputs(layer, x)
    assert out.dtype == np.bool_
    assert out.shape == (4, 1)
    assert out[:, 0].astype(int).tolist() == list(OP_TRUTH_TABLES[op])


def test_gate_wires_select_a_and_b_by_position() -> None:
    # op 2 is A AND NOT B, which is not symmetric: swapping the wires must swap the roles.
    x = np.array([[1, 0, 0], [0, 0, 1]], dtype=bool)
    layer = GateLayer(inputs=[[0, 2], [2, 0], [1, 1], [2, 2]], ops=[2, 2, 15, 3])
    out = reference.layer_outputs(layer, x).astype(int)
    # Row 0: bit0=1, bit2=0 -> gate0 = 1 AND NOT 0 = 1; gate1 = 0 AND NOT 1 = 0; TRUE; A = bit2 = 0.
    # Row 1: bit0=0, bit2=1 -> gate0 = 0; gate1 = 1 AND NOT 0 = 1; TRUE; A = bit2 = 1.
    assert out.tolist() == [[1, 0, 1, 0], [0, 1, 1, 1]]


def test_all_sixteen_gates_in_one_layer() -> None:
    x = np.array(PAIRS, dtype=bool)
    layer = GateLayer(inputs=[[0, 1]] * 16, ops=list(range(16)))
    out = reference.layer_outputs(layer, x).astype(int)
    for op in range(16):
        assert tuple(out[:, op]) == OP_TRUTH_TABLES[op]


def test_lut_address_input_zero_is_least_significant() -> None:
    # A 3-input table whose only 1 is entry 5 = 0b101: x0 = 1, x1 = 0, x2 = 1.
    table = np.zeros(8, dtype=np.uint8)
    table[5] = 1
    layer = LutLayer(inputs=[[0, 1, 2]], tables=[table])
    rows = np.array(list(itertools.product([0, 1], repeat=3)), dtype=bool)  # (b0, b1, b2)
    out = reference.layer_outputs(layer, rows)[:, 0]
    for row, value in zip(rows.astype(int).tolist(), out.tolist()):
        assert value == (row == [1, 0, 1])


def test_lut_address_follows_the_wire_order_not_the_bit_index() -> None:
    # Two-input table with only entry 1 set: output 1 exactly when input 0 is 1 and input 1 is 0. Input 0 of the
    # table is wired to bit 2 and input 1 to bit 0.
    layer = LutLayer(inputs=[[2, 0]], tables=[[0, 1, 0, 0]])
    x = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]], dtype=bool)
    assert reference.layer_outputs(layer, x)[:, 0].tolist() == [False, True, False, False]


def test_lut_arity_one_and_eight() -> None:
    # n = 1: table [1, 0] is NOT.
    not_layer = LutLayer(inputs=[[0]], tables=[[1, 0]])
    assert reference.layer_outputs(not_layer, np.array([[0], [1]], dtype=bool))[:, 0].tolist() == [True, False]
    # n = 8: only entry 0b10000001 = 129 is 1, so bits 0 and 7 set, all others clear.
    table = np.zeros(256, dtype=np.uint8)
    table[129] = 1
    layer = LutLayer(inputs=[list(range(8))], tables=[table])
    x = np.zeros((3, 8), dtype=bool)
    x[0, [0, 7]] = True
    x[1, [0, 6]] = True
    x[2, 7] = True
    assert reference.layer_outputs(layer, x)[:, 0].tolist() == [True, False, False]


def test_lut_of_every_address() -> None:
    # The identity "table = its own index bit" reads every address: entry a of table k is bit k of a.
    n = 4
    tables = [[(a >> k) & 1 for a in range(16)] for k in range(n)]
    layer = LutLayer(inputs=[list(range(n))] * n, tables=tables)
    x = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
    assert np.array_equal(reference.layer_outputs(layer, x), x)


def test_binary_layer_counts_matches() -> None:
    # Weights +1 -1 +1 +1 against input bits 1 1 1 0: matches at j = 0 and j = 2 only, so matches = 2.
    # Thresholds below 1 give constant 1, above I = 4 constant 0.
    thresholds = [-3, 0, 1, 2, 3, 4, 5, 100]
    layer = BinaryLayer(weights=[[1, 0, 1, 1]] * len(thresholds), thresholds=thresholds)
    x = np.array([[1, 1, 1, 0]], dtype=bool)
    assert reference.layer_outputs(layer, x)[0].astype(int).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_binary_layer_matches_is_xnor_popcount_for_all_inputs() -> None:
    weights = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=np.uint8)
    x = np.array(list(itertools.product([0, 1], repeat=3)), dtype=bool)
    for threshold in range(-1, 5):
        layer = BinaryLayer(weights=weights, thresholds=[threshold] * 3)
        out = reference.layer_outputs(layer, x)
        for r, row in enumerate(x.astype(int)):
            for o in range(3):
                matches = sum(1 for j in range(3) if row[j] == weights[o, j])
                # The +-1 view: dot = 2*matches - I.
                dot = sum((2 * row[j] - 1) * (2 * int(weights[o, j]) - 1) for j in range(3))
                assert dot == 2 * matches - 3
                assert out[r, o] == (matches >= threshold)


@pytest.mark.parametrize("threshold", [-(2**31), -1, 0])
def test_binary_threshold_at_most_zero_is_constant_one(threshold: int) -> None:
    layer = BinaryLayer(weights=[[1, 1, 0, 0, 1]], thresholds=[threshold])
    x = np.array(list(itertools.product([0, 1], repeat=5)), dtype=bool)
    assert reference.layer_outputs(layer, x).all()


@pytest.mark.parametrize("threshold", [6, 7, 2**31 - 1])
def test_binary_threshold_above_input_width_is_constant_zero(threshold: int) -> None:
    layer = BinaryLayer(weights=[[1, 1, 0, 0, 1]], thresholds=[threshold])
    x = np.array(list(itertools.product([0, 1], repeat=5)), dtype=bool)
    assert not reference.layer_outputs(layer, x).any()


def test_binary_threshold_equal_to_input_width_needs_all_matches() -> None:
    layer = BinaryLayer(weights=[[1, 0, 1]], thresholds=[3])
    x = np.array(list(itertools.product([0, 1], repeat=3)), dtype=bool)
    assert reference.layer_outputs(layer, x)[:, 0].tolist() == [row == (1, 0, 1) for row in map(tuple, x.astype(int))]


THRESHOLDS = np.array([[0.0, 1.0, 2.0], [10.0, 20.0, 30.0]], dtype=np.float32)


def test_encoder_feature_major_order() -> None:
    enc = ThresholdEncoder(THRESHOLDS, "feature_major")
    # x = (0.5, 35): feature 0 passes threshold 0 only; feature 1 passes all three.
    bits = reference.encode(enc, np.array([[0.5, 35.0]], dtype=np.float32))
    # Index f*T + t.
    assert bits.astype(int).tolist() == [[1, 0, 0, 1, 1, 1]]


def test_encoder_threshold_major_order() -> None:
    enc = ThresholdEncoder(THRESHOLDS, "threshold_major")
    bits = reference.encode(enc, np.array([[0.5, 35.0]], dtype=np.float32))
    # Index t*F + f: (t0: f0 f1) (t1: f0 f1) (t2: f0 f1).
    assert bits.astype(int).tolist() == [[1, 1, 0, 1, 0, 1]]


def test_encoder_orders_differ_by_a_transpose_for_every_bit() -> None:
    rng = np.random.default_rng(7)
    thresholds = rng.normal(size=(5, 3)).astype(np.float32)
    x = rng.normal(size=(20, 5)).astype(np.float32)
    fm = reference.encode(ThresholdEncoder(thresholds, "feature_major"), x)
    tm = reference.encode(ThresholdEncoder(thresholds, "threshold_major"), x)
    for f in range(5):
        for t in range(3):
            expected = x[:, f] > thresholds[f, t]
            assert np.array_equal(fm[:, f * 3 + t], expected)
            assert np.array_equal(tm[:, t * 5 + f], expected)


def test_encoder_comparison_is_strictly_greater() -> None:
    enc = ThresholdEncoder([[1.5]])
    x = np.array([[1.5], [np.nextafter(np.float32(1.5), np.float32(2))], [np.nextafter(np.float32(1.5), np.float32(0))]],
                 dtype=np.float32)
    assert reference.encode(enc, x)[:, 0].tolist() == [False, True, False]


def test_encoder_float64_compares_against_the_widened_threshold() -> None:
    # float32(0.1) is slightly above the float64 0.1; comparing in float64 keeps the difference.
    t32 = np.float32(0.1)
    enc = ThresholdEncoder([[t32]])
    t64 = np.float64(t32)
    just_above = np.nextafter(t64, np.inf)
    # Rounded to float32, just_above would equal the threshold (and give 0): float64 comparison must give 1.
    assert np.float32(just_above) == t32
    x = np.array([[0.1], [t64], [just_above]], dtype=np.float64)
    assert reference.encode(enc, x)[:, 0].tolist() == [False, False, True]
    # The same values as float32 compare as float32.
    assert reference.encode(enc, x.astype(np.float32))[:, 0].tolist() == [False, False, False]


def test_encoder_uint8_features() -> None:
    enc = ThresholdEncoder([[2.0, 2.5, -1.0, 255.0]])
    x = np.array([[2], [3], [0], [255]], dtype=np.uint8)
    assert reference.encode(enc, x).astype(int).tolist() == [[0, 0, 1, 0], [1, 1, 1, 0], [0, 0, 1, 0], [1, 1, 1, 0]]


def test_encoder_infinite_thresholds() -> None:
    enc = ThresholdEncoder([[-np.inf, np.inf]])
    x = np.array([[-np.inf], [-1e30], [0.0], [np.inf]], dtype=np.float32)
    # -inf > -inf is false; +inf > +inf is false.
    assert reference.encode(enc, x).astype(int).tolist() == [[0, 0], [1, 0], [1, 0], [1, 0]]


def test_encoder_rejects_nan_features() -> None:
    enc = ThresholdEncoder([[0.0]])
    with pytest.raises(ValueError, match="NaN"):
        reference.encode(enc, np.array([[np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        reference.encode(enc, np.array([[1.0], [np.nan]], dtype=np.float64))
    # The engine's rule and wording: the first NaN by sample, then feature.
    x = np.zeros((4, 3), dtype=np.float32)
    x[3, 0] = x[2, 2] = x[2, 1] = np.nan
    with pytest.raises(InputError, match=r"^invalid input: sample 2, feature 1 is NaN; expected a number$"):
        reference.encode(ThresholdEncoder(np.zeros((3, 1))), x)


def test_bool_input_to_a_threshold_encoder_is_already_encoded() -> None:
    enc = ThresholdEncoder(THRESHOLDS)
    bits = np.array([[1, 0, 1, 1, 0, 0]], dtype=bool)
    assert np.array_equal(reference.encode(enc, bits), bits)
    with pytest.raises(ValueError):
        reference.encode(enc, np.ones((1, 2), dtype=bool))  # F columns, but bits need F*T


def test_bits_encoder_accepts_bool_and_01_uint8() -> None:
    enc = BitsEncoder(3)
    x = np.array([[0, 1, 1]], dtype=np.uint8)
    assert reference.encode(enc, x).tolist() == [[False, True, True]]
    assert reference.encode(enc, x.astype(bool)).tolist() == [[False, True, True]]
    with pytest.raises(ValueError):
        reference.encode(enc, np.array([[0, 2, 1]], dtype=np.uint8))
    with pytest.raises(ValueError):
        reference.encode(enc, np.zeros((1, 4), dtype=bool))
    with pytest.raises(ValueError):
        reference.encode(enc, np.zeros(3, dtype=bool))


def test_group_sum_counts_consecutive_groups() -> None:
    # No layers: the head reads the encoder's 6 bits as k = 3 groups of 2.
    x = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 0, 0, 1, 1]], dtype=bool)
    s = reference.scores(BitsEncoder(6), [], 3, x)
    assert s.dtype == np.int32
    assert s.tolist() == [[1, 2, 1], [0, 0, 2]]
    assert reference.predict(BitsEncoder(6), [], 3, x).tolist() == [1, 2]


def test_predict_ties_go_to_the_lowest_class() -> None:
    x = np.array(
        [
            [0, 0, 0, 0],  # all tied at 0 -> class 0
            [1, 1, 1, 1],  # all tied at 1 -> class 0
            [0, 1, 0, 1],  # classes 1 and 3 tied -> class 1
            [0, 0, 1, 1],  # classes 2 and 3 tied -> class 2
            [0, 0, 0, 1],
        ],
        dtype=bool,
    )
    y = reference.predict(BitsEncoder(4), [], 4, x)
    assert y.dtype == np.int64
    assert y.tolist() == [0, 0, 1, 2, 3]


def test_head_width_must_be_divisible() -> None:
    with pytest.raises(ValueError, match="divisible"):
        reference.scores(BitsEncoder(5), [], 2, np.zeros((1, 5), dtype=bool))


def test_a_small_network_by_hand() -> None:
    # Threshold encoder (feature_major), then XOR / AND gates, then a LUT layer, then a binary layer, k = 2.
    enc = ThresholdEncoder([[0.0], [0.5]])  # bits: x0 > 0, x1 > 0.5
    gates = GateLayer(inputs=[[0, 1], [0, 1]], ops=[6, 1])  # XOR, AND
    luts = LutLayer(inputs=[[0, 1], [1, 0]], tables=[[0, 1, 1, 0], [1, 0, 0, 0]])  # XOR, NOR
    binary = BinaryLayer(weights=[[1, 1], [0, 0], [1, 0], [0, 1]], thresholds=[2, 2, 1, 1])
    x = np.array([[1.0, 1.0], [1.0, 0.0], [-1.0, 1.0], [0.0, 0.5]], dtype=np.float32)
    # encoded:     (1,1)      (1,0)      (0,1)       (0,0)
    # gates:       (0,1)      (1,0)      (1,0)       (0,0)
    # luts:        (1,0)      (1,0)      (1,0)       (0,1)
    # binary o0 = both 1; o1 = both 0; o2 = (l0 == 1) + (l1 == 0) >= 1; o3 = (l0 == 0) + (l1 == 1) >= 1:
    #   (1,0) -> 0, 0, 1, 0 ;  (0,1) -> 0, 0, 0, 1
    s = reference.scores(enc, [gates, luts, binary], 2, x)
    assert s.tolist() == [[0, 1], [0, 1], [0, 1], [0, 1]]
    # With threshold 1, the first binary output is "l0 or l1", which holds on every row here.
    binary2 = BinaryLayer(weights=[[1, 1], [0, 0], [1, 0], [0, 1]], thresholds=[1, 2, 1, 1])
    s2 = reference.scores(enc, [gates, luts, binary2], 2, x)
    assert s2.tolist() == [[1, 1], [1, 1], [1, 1], [1, 1]]
    assert reference.predict(enc, [gates, luts, binary2], 2, x).tolist() == [0, 0, 0, 0]


def test_layer_checks_wires_and_widths() -> None:
    x = np.zeros((1, 3), dtype=bool)
    with pytest.raises(ValueError):
        reference.layer_outputs(GateLayer(inputs=[[0, 3]], ops=[1]), x)
    with pytest.raises(ValueError):
        reference.layer_outputs(LutLayer(inputs=[[3]], tables=[[0, 1]]), x)
    with pytest.raises(ValueError):
        reference.layer_outputs(BinaryLayer(weights=[[1, 0]], thresholds=[1]), x)
    with pytest.raises(ValueError):
        reference.layer_outputs(GateLayer(inputs=[[0, 1]], ops=[16]), x)


def test_network_scores_reads_the_parts_of_a_network_like_object() -> None:
    class Parts:
        encoder = BitsEncoder(2)
        layers = [GateLayer(inputs=[[0, 1], [0, 1]], ops=[7, 8])]
        num_classes = 2

    x = np.array([[0, 0], [1, 0]], dtype=bool)
    assert reference.network_scores(Parts(), x).tolist() == [[0, 1], [1, 0]]
    assert reference.network_predict(Parts(), x).tolist() == [1, 0]


# -- kinds ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvLayer:
    """A layer of a kind the reference has no rule for."""

    kind: ClassVar[str] = "conv"
    width: int = 1


def test_every_layer_kind_has_a_rule() -> None:
    assert set(reference._LAYERS) == set(LAYER_KINDS)


def test_a_kind_without_a_rule_is_an_error_naming_it() -> None:
    with pytest.raises(FormatError, match=r"no code for the kind 'conv'; it knows gates, luts, binary, conv_gates, conv_luts, conv_binary, or_pool"):
        reference.layer_outputs(ConvLayer(), np.zeros((1, 2), dtype=bool))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a bitlogic.spec encoder or layer, got str"):
        reference.layer_outputs("gates", np.zeros((1, 2), dtype=bool))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reference.encode(None, np.zeros((1, 2), dtype=bool))  # type: ignore[arg-type]


NO_NATIVE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "bitlogic._native":
            raise ImportError("no bitlogic._native here")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
import conftest  # registers a bare bitlogic package, as when the extension is not built
import numpy as np
from bitlogic import errors, reference
from bitlogic.spec import BitsEncoder, GateLayer
assert "bitlogic._native" not in sys.modules
scores = reference.scores(BitsEncoder(2), [GateLayer(inputs=[[0, 1], [0, 1]], ops=[1, 6])], 2, np.eye(2, dtype=bool))
assert scores.tolist() == [[0, 1], [0, 1]]
try:
    reference.encode(BitsEncoder(2), np.zeros((1, 3), dtype=bool))
except errors.BitlogicError as error:
    assert isinstance(error, errors.InputError) and isinstance(error, ValueError)
else:
    raise AssertionError("no error")
"""


def test_the_reference_runs_without_the_native_module() -> None:
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(tests.parent / "python")}
    done = subprocess.run(
        [sys.executable, "-c", NO_NATIVE, str(tests)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
