"""Hand-checked truths for the spatial layer kinds of format 1.2 (conv_gates, conv_luts, conv_binary, or_pool): the
spec classes' shapes and errors, and the numpy reference's rules, each worked out by hand from the format's text.

Only ``bitlogic.spec`` and ``bitlogic.reference`` are used: these tests run without the native module.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from bitlogic import reference
from bitlogic.errors import InputError
from bitlogic.spec import (
    LAYER_KINDS,
    ConvBinaryLayer,
    ConvGateLayer,
    ConvLutLayer,
    OrPoolLayer,
    layer_from_parts,
    layer_parts,
)


def image_bits(image: Any) -> np.ndarray:
    """One sample: an image ``[C, H, W]`` of 0/1 as the bool row ``[1, C*H*W]`` (index ``(c*H + y)*W + x``)."""
    array = np.asarray(image, dtype=bool)
    return array.reshape(1, -1)


def every_image(shape: tuple[int, int, int]) -> np.ndarray:
    """Every image of ``shape`` as rows of bits, ``[2**(C*H*W), C*H*W]``."""
    size = int(np.prod(shape))
    return np.array(list(itertools.product([0, 1], repeat=size)), dtype=bool)


# -- spec classes -----------------------------------------------------------------------------------------------------


def test_output_sizes_follow_the_formula() -> None:
    # H' = floor((H + 2*ph - kh) / sh) + 1: (5 + 2 - 3) // 2 + 1 = 3 and (7 + 2 - 3) // 2 + 1 = 4.
    layer = ConvGateLayer((2, 5, 7), np.zeros((6, 4, 3)), np.zeros((6, 3)), kernel_size=3, stride=2, padding=1)
    assert layer.output_size == (3, 4) and layer.output_shape == (6, 3, 4)
    assert layer.width == 6 * 3 * 4 and layer.input_width == 2 * 5 * 7
    assert layer.depth == 2 and layer.fan_in == 4 and layer.out_channels == 6
    assert layer.kernel_size == (3, 3) and layer.stride == (2, 2) and layer.padding == (1, 1)
    # or_pool has no padding: (5 - 2) // 2 + 1 = 2, (7 - 2) // 2 + 1 = 3; channels stay.
    pool = OrPoolLayer((3, 5, 7))
    assert pool.output_shape == (3, 2, 3) and pool.width == 18 and pool.fan_in == 4
    luts = ConvLutLayer((1, 4, 4), np.zeros((2, 5, 3)), np.zeros((2, 32)), kernel_size=(2, 3))
    assert luts.output_shape == (2, 3, 2) and luts.arity == 5 == luts.fan_in
    binary = ConvBinaryLayer((2, 4, 4), np.ones((3, 18)), [0, 1, 2], padding=(0, 1), pad_value=0)
    assert binary.output_shape == (3, 2, 4) and binary.fan_in == 18 and binary.pad_value == 0


def test_arrays_are_normalised() -> None:
    layer = ConvGateLayer([1, 3, 3], [[[0, 1, 2], [0, 2, 1]]], [[6]], kernel_size=[3, 3], stride=np.int64(1))
    assert layer.leaves.dtype == np.uint32 and layer.leaves.shape == (1, 2, 3)
    assert layer.ops.dtype == np.uint8 and layer.input_shape == (1, 3, 3) and layer.stride == (1, 1)
    assert all(type(v) is int for v in layer.input_shape + layer.kernel_size + layer.stride + layer.padding)
    binary = ConvBinaryLayer((1, 1, 1), [[True]], [1], kernel_size=1)
    assert binary.weights.dtype == np.uint8 and binary.thresholds.dtype == np.int32


@pytest.mark.parametrize("layer", [
    ConvGateLayer((2, 4, 5), np.ones((3, 8, 3)), np.ones((3, 7)), stride=(1, 2), padding=(2, 0)),
    ConvLutLayer((1, 3, 3), np.ones((2, 3, 3)), np.ones((2, 8)), kernel_size=2),
    ConvBinaryLayer((1, 3, 3), np.ones((2, 9)), [1, 2], padding=1, pad_value=0),
    OrPoolLayer((2, 6, 6), kernel_size=3, stride=(3, 1)),
], ids=lambda layer: layer.kind)
def test_parts_round_trip(layer: Any) -> None:
    parts = layer_parts(layer)
    assert parts[0] == layer.kind and len(parts) == 4
    geometry = parts[3]
    assert set(geometry) == {"input_shape", "kernel_size", "stride"} | (
        set() if layer.kind == "or_pool" else {"padding"}) | ({"pad_value"} if layer.kind == "conv_binary" else set())
    back = layer_from_parts(*parts)
    assert type(back) is type(layer) and back.output_shape == layer.output_shape
    assert layer_parts(back)[3] == geometry
    for a, b in zip(parts[1:3], layer_parts(back)[1:3]):
        assert (a is None and b is None) or np.array_equal(a, b)


def test_every_spatial_kind_is_a_layer_kind() -> None:
    assert {"conv_gates", "conv_luts", "conv_binary", "or_pool"} <= set(LAYER_KINDS)


BAD: list[tuple[str, Any]] = [
    ("input_shape", lambda: OrPoolLayer((2, 4))),
    ("input_shape", lambda: OrPoolLayer((0, 4, 4))),
    ("input_shape", lambda: OrPoolLayer(4)),  # type: ignore[arg-type]
    ("kernel_size", lambda: OrPoolLayer((1, 4, 4), kernel_size=(2, 0))),
    ("kernel_size", lambda: OrPoolLayer((1, 4, 4), kernel_size=(2, 2, 2))),  # type: ignore[arg-type]
    ("stride", lambda: OrPoolLayer((1, 4, 4), stride=0)),  # type: ignore[arg-type]
    ("stride", lambda: OrPoolLayer((1, 4, 4), stride=(1.5, 1))),  # type: ignore[arg-type]
    ("kernel_size", lambda: OrPoolLayer((1, 1, 4))),  # the 2-row window does not fit one row
    ("padding", lambda: ConvGateLayer((1, 3, 3), np.zeros((1, 2, 3)), np.zeros((1, 1)), padding=-1)),
    ("kernel_size", lambda: ConvGateLayer((1, 1, 1), np.zeros((1, 2, 3)), np.zeros((1, 1)), padding=0)),
    ("leaves", lambda: ConvGateLayer((1, 3, 3), np.zeros((1, 3, 3)), np.zeros((1, 2)))),  # 3 leaves: no depth
    ("leaves", lambda: ConvGateLayer((1, 3, 3), np.zeros((1, 1, 3)), np.zeros((1, 0)))),  # depth 0
    ("leaves", lambda: ConvGateLayer((1, 3, 3), np.zeros((1, 2, 2)), np.zeros((1, 1)))),
    ("leaves", lambda: ConvGateLayer((1, 3, 3), np.zeros((2, 3)), np.zeros((1, 1)))),
    ("ops", lambda: ConvGateLayer((1, 3, 3), np.zeros((1, 4, 3)), np.zeros((1, 2)))),
    ("ops", lambda: ConvGateLayer((1, 3, 3), np.zeros((2, 4, 3)), np.zeros((1, 3)))),
    ("ops", lambda: ConvGateLayer((1, 3, 3), np.zeros((1, 4, 3)), np.zeros(3))),
    ("tables", lambda: ConvLutLayer((1, 3, 3), np.zeros((2, 2, 3)), np.zeros((2, 3)))),
    ("tables", lambda: ConvLutLayer((1, 3, 3), np.zeros((2, 2, 3)), np.zeros((1, 4)))),
    ("tables", lambda: ConvLutLayer((1, 3, 3), np.zeros((1, 2, 3)), [[0, 1, 2, 0]])),
    ("weights", lambda: ConvBinaryLayer((2, 3, 3), np.zeros((1, 9)), [0])),  # C*kh*kw = 18
    ("weights", lambda: ConvBinaryLayer((1, 3, 3), [[0, 1, 0, 0, 2, 0, 0, 0, 0]], [0])),
    ("thresholds", lambda: ConvBinaryLayer((1, 3, 3), np.zeros((2, 9)), [0])),
    ("pad_value", lambda: ConvBinaryLayer((1, 3, 3), np.zeros((1, 9)), [0], pad_value=-1)),
    ("pad_value", lambda: ConvBinaryLayer((1, 3, 3), np.zeros((1, 9)), [0], pad_value=0.5)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("name,make", BAD, ids=[f"{i}-{name}" for i, (name, _) in enumerate(BAD)])
def test_bad_spec_arguments_name_the_argument(name: str, make: Any) -> None:
    with pytest.raises(InputError, match=rf"^{name}: expected"):
        make()


# -- or_pool ----------------------------------------------------------------------------------------------------------


def test_or_pool_two_by_two() -> None:
    image = [[[1, 0, 0, 0],
              [0, 0, 0, 0],
              [0, 0, 0, 1],
              [0, 0, 1, 1]]]
    out = reference.layer_outputs(OrPoolLayer((1, 4, 4)), image_bits(image))
    assert out.astype(int).tolist() == [[1, 0, 0, 1]]  # (y', x') = (0,0) (0,1) (1,0) (1,1)


def test_or_pool_channels_odd_sizes_and_overlapping_windows() -> None:
    # Two channels of 3 x 4, window 2 x 3, stride 1: H' = 2, W' = 2. Output index (c*H' + y')*W' + x'.
    image = [[[0, 0, 0, 1],
              [0, 0, 0, 0],
              [0, 0, 0, 0]],
             [[0, 0, 0, 0],
              [0, 0, 0, 0],
              [1, 0, 0, 0]]]
    out = reference.layer_outputs(OrPoolLayer((2, 3, 4), kernel_size=(2, 3), stride=1), image_bits(image))
    # Channel 0: the 1 at (0, 3) is in the windows of x' = 1 (columns 1..3) with rows 0..1 (y' = 0) only.
    # Channel 1: the 1 at (2, 0) is in the windows of x' = 0 with rows 1..2 (y' = 1) only.
    assert out.astype(int).tolist() == [[0, 1, 0, 0, 0, 0, 1, 0]]


def test_or_pool_stride_skips_inputs() -> None:
    # Window 1 x 1 with stride 2 picks every other row and column: (0,0) (0,2) (2,0) (2,2) of a 3 x 3 image.
    rows = every_image((1, 3, 3))
    out = reference.layer_outputs(OrPoolLayer((1, 3, 3), kernel_size=1, stride=2), rows)
    np.testing.assert_array_equal(out, rows[:, [0, 2, 6, 8]])


# -- conv_gates -------------------------------------------------------------------------------------------------------


def test_conv_gates_one_gate_reads_its_leaves_by_offset() -> None:
    # Depth 1: AND (op 1) of leaf A = (c 0, dy 0, dx 0) and leaf B = (0, 1, 1) over a 2 x 2 window, stride 1, no
    # padding, on 3 x 3 images: output (y', x') = img[y', x'] AND img[y' + 1, x' + 1].
    layer = ConvGateLayer((1, 3, 3), [[[0, 0, 0], [0, 1, 1]]], [[1]], kernel_size=2)
    rows = every_image((1, 3, 3))
    out = reference.layer_outputs(layer, rows)
    img = rows.reshape(-1, 3, 3)
    want = np.stack([img[:, y, x] & img[:, y + 1, x + 1] for y in range(2) for x in range(2)], axis=1)
    np.testing.assert_array_equal(out, want)


def test_conv_gates_padding_reads_zero() -> None:
    # Op 3 is A: the tree copies leaf (0, 0, 0), the top-left of a 3 x 3 window with padding 1, which is input
    # (y' - 1, x' - 1): the image shifted down and right by one, zeros coming in. Op 12 (NOT A) shows the padding is
    # read as 0, not skipped.
    rows = every_image((1, 2, 3))
    img = rows.reshape(-1, 2, 3)
    shifted = np.zeros((rows.shape[0], 2, 3), dtype=bool)
    shifted[:, 1:, 1:] = img[:, :1, :2]
    for op, want in [(3, shifted), (12, ~shifted)]:
        layer = ConvGateLayer((1, 2, 3), [[[0, 0, 0], [0, 2, 2]]], [[op]], padding=1)
        np.testing.assert_array_equal(reference.layer_outputs(layer, rows), want.reshape(rows.shape[0], -1))


def test_conv_gates_tree_order() -> None:
    # Depth 2 over a 4-channel 1 x 1 image (window 1 x 1): leaves read channels 3, 0, 1, 2. Gate 0 reads nodes 0, 1
    # (leaves), gate 1 nodes 2, 3, and gate 2 (the output) nodes 4, 5 (gates 0 and 1). With gate 0 = A AND NOT B
    # (op 2), gate 1 = A OR B (op 7), gate 2 = A AND NOT B: out = (x3 AND NOT x0) AND NOT (x1 OR x2).
    leaves = [[[3, 0, 0], [0, 0, 0], [1, 0, 0], [2, 0, 0]]]
    layer = ConvGateLayer((4, 1, 1), leaves, [[2, 7, 2]], kernel_size=1)
    rows = every_image((4, 1, 1))
    x0, x1, x2, x3 = rows.T
    np.testing.assert_array_equal(reference.layer_outputs(layer, rows)[:, 0], x3 & ~x0 & ~(x1 | x2))


def test_conv_gates_output_channels_are_laid_out_channel_first() -> None:
    # Two channels on a 1 x 3 image with a 1 x 1 window: channel 0 copies the input (op 3), channel 1 is NOT B.
    layer = ConvGateLayer((1, 1, 3), [[[0, 0, 0], [0, 0, 0]]] * 2, [[3], [10]], kernel_size=1)
    out = reference.layer_outputs(layer, image_bits([[[1, 0, 0]]]))
    assert out.astype(int).tolist() == [[1, 0, 0, 0, 1, 1]]


# -- conv_luts --------------------------------------------------------------------------------------------------------


def test_conv_luts_input_zero_is_least_significant() -> None:
    # One 3-input table whose only 1 is entry 5 = 0b101 (inputs 0 and 2 set), inputs = channels 0, 1, 2.
    table = np.zeros(8, dtype=np.uint8)
    table[5] = 1
    layer = ConvLutLayer((3, 1, 1), [[[0, 0, 0], [1, 0, 0], [2, 0, 0]]], [table], kernel_size=1)
    rows = every_image((3, 1, 1))
    out = reference.layer_outputs(layer, rows)[:, 0]
    assert out.tolist() == [row == (1, 0, 1) for row in map(tuple, rows.astype(int))]


def test_conv_luts_padded_inputs_read_zero() -> None:
    # A 2-input XNOR table (entries 1, 0, 0, 1) of (y, x) and (y, x + 1) via a 1 x 2 window with padding (0, 1):
    # at x' = 0 the first input is padding (0), at the last x' the second is.
    layer = ConvLutLayer((1, 1, 2), [[[0, 0, 0], [0, 0, 1]]], [[1, 0, 0, 1]], kernel_size=(1, 2), padding=(0, 1))
    assert layer.output_shape == (1, 1, 3)
    out = reference.layer_outputs(layer, image_bits([[[1, 0]]])).astype(int)
    # x' = 0: (pad 0, 1) -> 0; x' = 1: (1, 0) -> 0; x' = 2: (0, pad 0) -> 1.
    assert out.tolist() == [[0, 0, 1]]


# -- conv_binary ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_value", [0, 1])
def test_conv_binary_pad_value_enters_the_dot(pad_value: int) -> None:
    # A 1 x 1 image under a 3 x 3 window with padding 1: one real input and 8 padded ones, all weights +1.
    # dot = s + 8 * pad_value, s = +1 for bit 1 and -1 for bit 0: pad_value 1 gives 9 or 7, pad_value 0 gives 1 or -1.
    thresholds = [-1, 0, 1, 2, 7, 8, 9, 10]
    layer = ConvBinaryLayer((1, 1, 1), np.ones((8, 9)), thresholds, padding=1, pad_value=pad_value)
    out = reference.layer_outputs(layer, np.array([[0], [1]], dtype=bool)).astype(int)
    for bit, row in zip([0, 1], out.tolist()):
        dot = (2 * bit - 1) + 8 * pad_value
        assert row == [int(dot >= t) for t in thresholds]


def test_conv_binary_weight_order_is_channel_row_column() -> None:
    # Two channels of a 2 x 2 image under a full 2 x 2 window: weight j = (c*kh + dy)*kw + dx pairs with input bit
    # (c*H + y)*W + x, the same index here. Row o has weight +1 at j = o only (the rest -1): dot = s_o - sum others,
    # so a threshold of 8 - 2 = 6 (all 8 agreeing but the -1 ones) picks out exactly the image with only input o set.
    weights = np.zeros((8, 8), dtype=np.uint8)
    weights[np.arange(8), np.arange(8)] = 1
    layer = ConvBinaryLayer((2, 2, 2), weights, [8] * 8, kernel_size=2)
    rows = every_image((2, 2, 2))
    out = reference.layer_outputs(layer, rows)
    one_hot = rows.sum(axis=1) == 1
    for o in range(8):
        np.testing.assert_array_equal(out[:, o], one_hot & rows[:, o])
    # And the dot itself, counted by hand for one weight row and one image.
    w = np.array([1, 0, 0, 1, 1, 1, 0, 0], dtype=np.uint8)
    x = np.array([1, 1, 0, 1, 0, 1, 1, 0], dtype=bool)
    dot = sum((1 if xi else -1) * (1 if wi else -1) for xi, wi in zip(x, w))  # = 1 - 1 + 1 + 1 - 1 + 1 - 1 + 1 = 2
    assert dot == 2
    for threshold, want in [(2, True), (3, False)]:
        row = ConvBinaryLayer((2, 2, 2), [w], [threshold], kernel_size=2)
        assert reference.layer_outputs(row, x[None, :])[0, 0] == want


def test_conv_binary_stride_and_positions() -> None:
    # A 1 x 5 image, window 1 x 3, stride 2: positions x' = 0 (columns 0..2) and 1 (columns 2..4). Weights +1 +1 +1,
    # threshold 3: all three inputs 1.
    layer = ConvBinaryLayer((1, 1, 5), np.ones((1, 3)), [3], kernel_size=(1, 3), stride=2)
    out = reference.layer_outputs(layer, image_bits([[[1, 1, 1, 0, 1]]])).astype(int)
    assert out.tolist() == [[1, 0]]


# -- errors -----------------------------------------------------------------------------------------------------------


def test_reference_checks_widths_leaves_and_op_codes() -> None:
    x = np.zeros((1, 9), dtype=bool)
    with pytest.raises(InputError, match=r"input_shape \(1, 2, 4\) holds 8 bits, the input width is 9"):
        reference.layer_outputs(OrPoolLayer((1, 2, 4)), x)
    with pytest.raises(InputError, match="channel 1 is not below 1"):
        reference.layer_outputs(ConvGateLayer((1, 3, 3), [[[1, 0, 0], [0, 0, 0]]], [[1]]), x)
    with pytest.raises(InputError, match="row 3 is not below 3"):
        reference.layer_outputs(ConvLutLayer((1, 3, 3), [[[0, 3, 0]]], [[0, 1]]), x)
    with pytest.raises(InputError, match="column 2 is not below 2"):
        reference.layer_outputs(ConvLutLayer((1, 3, 3), [[[0, 0, 2]]], [[0, 1]], kernel_size=2), x)
    with pytest.raises(InputError, match="op code 16 is above 15"):
        reference.layer_outputs(ConvGateLayer((1, 3, 3), [[[0, 0, 0], [0, 0, 0]]], [[16]]), x)
