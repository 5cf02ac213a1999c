"""A pure-numpy reference evaluator, written straight from docs/FORMAT.md.

This module is the oracle the Rust engine is tested against. It is deliberately slow and plain: every step is a
direct transcription of one sentence of the specification, on unpacked ``bool`` arrays of shape ``[N, width]``, with
no bit slicing, no packing and no cleverness that could share a bug with the engine. It uses numpy,
:mod:`bitlogic.spec` and the error classes, never the engine. Each encoder and layer kind has its own rule, found by
the ``kind`` its spec class carries; a kind without a rule raises :class:`bitlogic.FormatError`.

Usage::

    from bitlogic import reference
    s = reference.scores(encoder, layers, num_classes, x)      # int32 [N, k]
    y = reference.predict(encoder, layers, num_classes, x)     # int64 [N]
    s = reference.network_scores(net, x)                       # same, from a bitlogic.Network
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from bitlogic.errors import InputError, nan_feature
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
    SpatialLayer,
    ThresholdEncoder,
    for_kind,
)

__all__ = [
    "encode",
    "layer_outputs",
    "network_predict",
    "network_scores",
    "predict",
    "scores",
]


class _NetworkLike(Protocol):
    """What :func:`network_scores` needs from a network: the parts, unpacked as :mod:`bitlogic.spec` describes."""

    @property
    def encoder(self) -> Encoder: ...

    @property
    def layers(self) -> Sequence[Layer]: ...

    @property
    def num_classes(self) -> int: ...


def _bits_input(x: np.ndarray, width: int, what: str) -> np.ndarray:
    """Checks an array of already-encoded bits (bool, or 0/1 uint8) and returns it as bool ``[N, width]``."""
    if x.ndim != 2 or x.shape[1] != width:
        raise InputError(f"{what}: expected shape [N, {width}], got {x.shape}")
    if x.dtype == np.bool_:
        return x.astype(bool)
    if x.dtype == np.uint8:
        if x.size and int(x.max()) > 1:
            raise InputError(f"{what}: expected 0/1 values in a uint8 bit array")
        return x.astype(bool)
    raise InputError(f"{what}: expected bool or 0/1 uint8 bits, got dtype {x.dtype}")


def encode(encoder: Encoder, x: Any) -> np.ndarray:
    """The encoder's output (group 0, FORMAT.md 3.2) as bool ``[N, encoder.num_bits]``.

    * Bits encoder: ``x`` is bool or 0/1 uint8 ``[N, num_inputs]``, returned as bool.
    * Threshold encoder: ``x`` is float32 / float64 / uint8 features ``[N, F]``; bit ``(f, t)`` is
      ``x[f] > thresholds[f, t]``. A bool ``x`` of shape ``[N, F*T]`` is taken as bits that are already encoded.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise InputError(f"input: expected a 2-dimensional array, got shape {x.shape}")
    return for_kind(_ENCODERS, encoder, "the reference evaluator")(encoder, x)


def _encode_bits(encoder: BitsEncoder, x: np.ndarray) -> np.ndarray:
    return _bits_input(x, encoder.num_inputs, "input bits")


def _encode_thresholds(encoder: ThresholdEncoder, x: np.ndarray) -> np.ndarray:
    values: np.ndarray
    limits: np.ndarray
    thresholds = encoder.thresholds  # float32 [F, T]
    num_features, per_feature = thresholds.shape
    if x.dtype == np.bool_:
        return _bits_input(x, num_features * per_feature, "encoded input bits")
    if x.shape[1] != num_features:
        raise InputError(f"input features: expected shape [N, {num_features}], got {x.shape}")

    # The comparison rule of FORMAT.md 3.2. Both conversions below are exact: every uint8 is a float32, and every
    # float32 is a float64. Comparing a float64 feature in float64 matters: rounding it to float32 first could turn
    # a value just above a threshold into one equal to it.
    if x.dtype == np.float32:
        values, limits = x, thresholds
    elif x.dtype == np.float64:
        values, limits = x, thresholds.astype(np.float64)
    elif x.dtype == np.uint8:
        values, limits = x.astype(np.float32), thresholds
    else:
        raise InputError(f"input features: expected float32, float64 or uint8, got dtype {x.dtype}")
    if np.isnan(values).any():
        sample, feature = (int(v) for v in np.argwhere(np.isnan(values))[0])
        raise nan_feature(sample, feature)

    # above[n, f, t] = x[n, f] > thresholds[f, t]  (strictly greater).
    above: np.ndarray = values[:, :, None] > limits[None, :, :]
    if encoder.bit_order == "feature_major":
        # Index f*T + t: f varies slowest, which is the C order of [N, F, T].
        return above.reshape(x.shape[0], num_features * per_feature)
    # threshold_major, index t*F + f: the C order of [N, T, F].
    by_threshold: np.ndarray = above.transpose(0, 2, 1)
    return by_threshold.reshape(x.shape[0], num_features * per_feature)


def _check_wires(inputs: np.ndarray, width: int, kind: str) -> None:
    if inputs.size and int(inputs.max()) >= width:
        raise InputError(f"{kind} layer: wire index {int(inputs.max())} is not below the input width {width}")


def layer_outputs(layer: Layer, input_bits: Any) -> np.ndarray:
    """One layer's output bits, bool ``[N, layer.width]``, from its input bits, bool ``[N, input width]``."""
    bits: np.ndarray = np.asarray(input_bits, dtype=bool)
    if bits.ndim != 2:
        raise InputError(f"layer input: expected a 2-dimensional bit array, got shape {bits.shape}")
    return for_kind(_LAYERS, layer, "the reference evaluator")(layer, bits)


def _gates(layer: GateLayer, bits: np.ndarray) -> np.ndarray:
    # FORMAT.md 3.3: the output for (a, b) is bit 3 - (2a + b) of the op code.
    if layer.ops.size and int(layer.ops.max()) > 15:
        raise InputError(f"gates layer: op code {int(layer.ops.max())} is above 15")
    _check_wires(layer.inputs, bits.shape[1], "gates")
    a = bits[:, layer.inputs[:, 0]].astype(np.int64)
    b = bits[:, layer.inputs[:, 1]].astype(np.int64)
    ops = layer.ops.astype(np.int64)[None, :]
    return np.asarray(((ops >> (3 - (2 * a + b))) & 1).astype(bool))


def _luts(layer: LutLayer, bits: np.ndarray) -> np.ndarray:
    # FORMAT.md 3.4: address = sum_j x_j * 2^j (input 0 least significant), output = entry `address`.
    arity = layer.arity
    if layer.tables.shape != (layer.width, 1 << arity):
        raise InputError(f"luts layer: expected tables of shape [{layer.width}, {1 << arity}], "
                         f"got {layer.tables.shape}")
    _check_wires(layer.inputs, bits.shape[1], "luts")
    address = np.zeros((bits.shape[0], layer.width), dtype=np.int64)
    for j in range(arity):
        address += bits[:, layer.inputs[:, j]].astype(np.int64) << j
    rows = np.arange(layer.width)[None, :]
    return layer.tables[rows, address].astype(bool)


def _binary(layer: BinaryLayer, bits: np.ndarray) -> np.ndarray:
    # FORMAT.md 3.5: matches(o) = #{j : input_j == weight_(o,j)}; output = matches(o) >= thresholds[o].
    width = bits.shape[1]
    if layer.weights.shape[1] != width:
        raise InputError(f"binary layer: weights have {layer.weights.shape[1]} columns, input width is {width}")
    if layer.thresholds.shape != (layer.width,):
        raise InputError(f"binary layer: expected {layer.width} thresholds, got shape {layer.thresholds.shape}")
    x = bits.astype(np.int64)
    w = layer.weights.astype(np.int64)
    # Inputs equal to their weight are the ones where both are 1 plus the ones where both are 0.
    matches: np.ndarray = x @ w.T + (1 - x) @ (1 - w).T
    return np.asarray(matches >= layer.thresholds.astype(np.int64)[None, :])


# -- spatial layers (format 1.2) --------------------------------------------------------------------------------------

PADDED = -1  # a window value that is padding, not an input bit


def _windows(layer: SpatialLayer, bits: np.ndarray) -> np.ndarray:
    """The receptive field of every output position, int8 ``[N, H', W', C, kh, kw]``: the input bit ``(c, y, x)``
    with ``y = y'*sh - ph + dy`` and ``x = x'*sw - pw + dx``, or :data:`PADDED` where ``(y, x)`` is off the image."""
    c, h, w = layer.input_shape
    if bits.shape[1] != c * h * w:
        raise InputError(f"{layer.kind} layer: input_shape {layer.input_shape} holds {c * h * w} bits, "
                         f"the input width is {bits.shape[1]}")
    # Input bit (c, y, x) has index (c*H + y)*W + x: the C order of [C, H, W].
    image = bits.reshape(bits.shape[0], c, h, w).astype(np.int8)
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    ph, pw = (0, 0) if isinstance(layer, OrPoolLayer) else layer.padding  # or_pool has no padding
    out_h, out_w = layer.output_size
    field = np.full((bits.shape[0], out_h, out_w, c, kh, kw), PADDED, dtype=np.int8)
    for oy in range(out_h):
        for ox in range(out_w):
            for dy in range(kh):
                for dx in range(kw):
                    y, x = oy * sh - ph + dy, ox * sw - pw + dx
                    if 0 <= y < h and 0 <= x < w:
                        field[:, oy, ox, :, dy, dx] = image[:, :, y, x]
    return field


def _flat_outputs(values: np.ndarray) -> np.ndarray:
    """Per-position outputs ``[N, H', W', channels]`` as bits ``[N, channels*H'*W']``: output bit ``(o, y', x')``
    has index ``(o*H' + y')*W' + x'``, the C order of ``[channels, H', W']``."""
    by_channel = values.transpose(0, 3, 1, 2)
    return np.asarray(by_channel.reshape(values.shape[0], -1).astype(bool))


def _leaf_bits(layer: ConvGateLayer | ConvLutLayer, field: np.ndarray) -> np.ndarray:
    """The bits the leaves read at every position, int64 ``[N, H', W', O, leaves]``; a padded leaf reads 0."""
    c, kh, kw = layer.input_shape[0], *layer.kernel_size
    leaves = layer.leaves.astype(np.int64)
    for axis, (name, limit) in enumerate([("channel", c), ("row", kh), ("column", kw)]):
        if leaves.size and int(leaves[..., axis].max()) >= limit:
            raise InputError(f"{layer.kind} layer: a leaf's {name} {int(leaves[..., axis].max())} is not below "
                             f"{limit}")
    read = field[:, :, :, leaves[..., 0], leaves[..., 1], leaves[..., 2]].astype(np.int64)
    return np.where(read == PADDED, 0, read)


def _conv_gates(layer: ConvGateLayer, bits: np.ndarray) -> np.ndarray:
    # nodes[0 .. 2^d] are the leaves; gate g computes op[o, g](nodes[2g], nodes[2g+1]) as node 2^d + g (the rule of
    # FORMAT.md 3.3 for one gate); the output is the last node.
    if layer.ops.size and int(layer.ops.max()) > 15:
        raise InputError(f"conv_gates layer: op code {int(layer.ops.max())} is above 15")
    nodes = list(np.moveaxis(_leaf_bits(layer, _windows(layer, bits)), -1, 0))  # each [N, H', W', O]
    ops = layer.ops.astype(np.int64)
    for g in range(ops.shape[1]):
        a, b = nodes[2 * g], nodes[2 * g + 1]
        nodes.append((ops[:, g] >> (3 - (2 * a + b))) & 1)
    return _flat_outputs(nodes[-1])


def _conv_luts(layer: ConvLutLayer, bits: np.ndarray) -> np.ndarray:
    # address = sum_j x_j * 2^j over the channel's table inputs (input 0 least significant), output = entry address.
    inputs = _leaf_bits(layer, _windows(layer, bits))  # [N, H', W', O, n]
    address = np.zeros(inputs.shape[:-1], dtype=np.int64)
    for j in range(layer.arity):
        address += inputs[..., j] << j
    channels = np.arange(layer.out_channels)
    return _flat_outputs(layer.tables[channels, address])


def _conv_binary(layer: ConvBinaryLayer, bits: np.ndarray) -> np.ndarray:
    # dot = sum_j s_j * w_(o,j) over the window, j = (c*kh + dy)*kw + dx; s_j = +1 for a bit 1, -1 for a bit 0,
    # pad_value for a padded input; w = +1 for a weight bit 1, -1 for 0. Output = dot >= thresholds[o].
    field = _windows(layer, bits)
    field = field.reshape(*field.shape[:3], -1).astype(np.int64)  # [N, H', W', C*kh*kw]: the C order of (c, dy, dx)
    s = np.where(field == PADDED, layer.pad_value, 2 * field - 1)
    w = 2 * layer.weights.astype(np.int64) - 1  # [O, C*kh*kw]
    dot = s @ w.T  # [N, H', W', O]
    return _flat_outputs(dot >= layer.thresholds.astype(np.int64))


def _or_pool(layer: OrPoolLayer, bits: np.ndarray) -> np.ndarray:
    # Output (c, y', x') = OR of inputs (c, y'*sh + dy, x'*sw + dx), dy < kh, dx < kw; there is no padding.
    field = _windows(layer, bits)  # [N, H', W', C, kh, kw]
    return _flat_outputs((field == 1).any(axis=(4, 5)))


# Each kind's rule, by the kind its spec class carries (bitlogic.spec.LAYER_KINDS, ENCODER_KINDS).
_Rule = Callable[[Any, np.ndarray], np.ndarray]
_ENCODERS: dict[str, _Rule] = {"bits": _encode_bits, "thresholds": _encode_thresholds}
_LAYERS: dict[str, _Rule] = {
    "gates": _gates,
    "luts": _luts,
    "binary": _binary,
    "conv_gates": _conv_gates,
    "conv_luts": _conv_luts,
    "conv_binary": _conv_binary,
    "or_pool": _or_pool,
}


def scores(encoder: Encoder, layers: Sequence[Layer], num_classes: int, x: Any) -> np.ndarray:
    """GroupSum class scores, int32 ``[N, num_classes]`` (FORMAT.md 3.6)."""
    bits = encode(encoder, x)
    for layer in layers:
        bits = layer_outputs(layer, bits)
    total = bits.shape[1]
    if num_classes < 1 or total % num_classes:
        raise InputError(f"head: the last width {total} is not divisible by num_classes={num_classes}")
    group = total // num_classes
    # Class c counts the 1 bits among bits c*g .. (c+1)*g: consecutive groups are the C order of [N, k, g].
    counts: np.ndarray = bits.reshape(bits.shape[0], num_classes, group).sum(axis=2, dtype=np.int64)
    return counts.astype(np.int32)


def predict(encoder: Encoder, layers: Sequence[Layer], num_classes: int, x: Any) -> np.ndarray:
    """Predicted class, int64 ``[N]``: the largest score, ties to the lowest class index."""
    # np.argmax returns the first occurrence of the maximum, which is exactly the tie rule.
    best: np.ndarray = np.argmax(scores(encoder, layers, num_classes, x), axis=1)
    return best.astype(np.int64)


def network_scores(net: _NetworkLike, x: Any) -> np.ndarray:
    """:func:`scores` of a :class:`bitlogic.Network` (or anything with ``encoder``, ``layers``, ``num_classes``)."""
    return scores(net.encoder, net.layers, net.num_classes, x)


def network_predict(net: _NetworkLike, x: Any) -> np.ndarray:
    """:func:`predict` of a :class:`bitlogic.Network`."""
    return predict(net.encoder, net.layers, net.num_classes, x)
