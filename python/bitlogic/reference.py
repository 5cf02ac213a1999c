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
from bitlogic.spec import BinaryLayer, BitsEncoder, Encoder, GateLayer, Layer, LutLayer, ThresholdEncoder, for_kind

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


# Each kind's rule, by the kind its spec class carries (bitlogic.spec.LAYER_KINDS, ENCODER_KINDS).
_Rule = Callable[[Any, np.ndarray], np.ndarray]
_ENCODERS: dict[str, _Rule] = {"bits": _encode_bits, "thresholds": _encode_thresholds}
_LAYERS: dict[str, _Rule] = {"gates": _gates, "luts": _luts, "binary": _binary}


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
