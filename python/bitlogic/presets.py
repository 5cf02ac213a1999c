"""Named model presets: a family (``logic``, ``lut``, ``binary``) and a size, with training defaults.

A preset builds a fresh ``torch.nn.Sequential`` for a dataset: it fits the encoder on the training features and
sizes the input and output layers to the data. The figures each preset reaches on MNIST are in the README, measured
with ``benches/presets.py``.

The first layer of a ``logic`` preset reads the encoder's bits with ``connections="unique"`` (no gate reads one
wire twice, no two gates the same pair) where the bits have enough distinct pairs for its gates, and with
``"random"`` connections where they do not (a narrow data set: 30 features of 2 bits have 1770 pairs, fewer than
logic-small's 8000 gates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import nn

from bitlogic.errors import BitlogicError, InputError
from bitlogic.nn import (
    BinaryConv2d,
    BinaryLinear,
    DistributiveThermometer,
    GroupSum,
    LogicConv2d,
    LogicLayer,
    LUTLayer,
    OrPool2d,
    Sign,
    Thermometer,
)


@dataclass(frozen=True)
class Preset:
    """A model architecture and the training settings it was tuned with."""

    name: str
    family: str
    description: str
    epochs: int
    batch_size: int
    lr: float
    make: Callable[..., nn.Sequential]
    schedule: str = "onecycle"  # a name bitlogic.training.train takes
    #: The ``step`` schedule's period in epochs (``None``: a third of the run).
    step_size: int | None = None
    #: A convolutional preset: its model reads images, so ``build`` needs their ``image_shape``.
    images: bool = False

    def build(
        self, x_train: np.ndarray, num_classes: int, image_shape: tuple[int, int, int] | None = None
    ) -> nn.Sequential:
        """A fresh model for features like ``x_train`` ``[N, F]`` (the encoder is fitted on them).

        A convolutional preset (``images``) also needs ``image_shape`` ``(C, H, W)`` with ``C*H*W = F`` (a
        ``bitlogic.datasets`` set's ``image_shape``): its model starts with ``nn.Unflatten`` to ``[B, C, H, W]``."""
        x = np.asarray(x_train)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError(f"preset {self.name}: expected training features [N, F], got shape {x.shape}")
        x = x.reshape(x.shape[0], -1)
        if not self.images:
            return self.make(x, num_classes)
        if image_shape is None:
            raise InputError(
                f"preset {self.name} is convolutional and needs images: a data set with an image_shape "
                "(mnist, fashion-mnist, cifar10), or build(..., image_shape=(C, H, W))"
            )
        shape = tuple(int(d) for d in image_shape)
        if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) != x.shape[1]:
            raise InputError(
                f"preset {self.name}: image_shape {tuple(image_shape)} does not hold the {x.shape[1]} features of a "
                "sample"
            )
        return self.make(x, num_classes, shape)


def _encoder(x: np.ndarray, bits: int) -> list[nn.Module]:
    return [DistributiveThermometer(bits).fit(x), nn.Flatten()]


def _binarize(x: np.ndarray, bits: int) -> list[nn.Module]:
    """difflogic's MNIST input: each pixel is one bit, ``pixel > half the range`` (``bits`` must be 1)."""
    del bits
    return [Thermometer(1, 0.0, float(np.max(x)) if np.max(x) > 1 else 1.0), nn.Flatten()]


Encoder = Callable[[np.ndarray, int], list[nn.Module]]


def _first_connections(in_dim: int, out_dim: int) -> Literal["unique", "random"]:
    """``"unique"`` where ``in_dim`` inputs have ``out_dim`` distinct pairs, else ``"random"``."""
    return "unique" if out_dim <= in_dim * (in_dim - 1) // 2 else "random"


def _logic(
    bits: int, widths: list[int], tau: float, learned: int | None = None, encoder: Encoder = _encoder
) -> Callable[[np.ndarray, int], nn.Sequential]:
    """Gate layers of ``widths`` over ``bits`` per feature; with ``learned=K`` every layer learns its wiring from
    pools of ``K`` candidates, else the first reads ``"unique"`` pairs (where there are enough) and the rest random
    ones."""

    def make(x: np.ndarray, classes: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = x.shape[1] * bits
        for i, out in enumerate(widths):
            out = out if i < len(widths) - 1 else out - out % classes
            if learned is not None:
                layers.append(LogicLayer(width, out, connections="learned", candidates=min(learned, width)))
            else:
                wiring = _first_connections(width, out) if i == 0 else "random"
                layers.append(LogicLayer(width, out, connections=wiring))
            width = out
        return nn.Sequential(*encoder(x, bits), *layers, GroupSum(classes, tau))

    return make


def _lut(
    bits: int, widths: list[int], n: int, tau: float, candidates: int | None = None, learn_all: bool = False
) -> Callable[[np.ndarray, int], nn.Sequential]:
    """LUT layers of ``widths``; the first (every one with ``learn_all``) learns its mapping, over all inputs or
    over pools of ``candidates``."""

    def make(x: np.ndarray, classes: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = x.shape[1] * bits
        for i, out in enumerate(widths):
            out = out if i < len(widths) - 1 else out - out % classes
            # A learned choice of inputs matters most where the inputs are raw encoder bits.
            if i == 0 or learn_all:
                pool = None if candidates is None else min(candidates, width)
                layers.append(LUTLayer(width, out, n=n, mapping="learnable", candidates=pool))
            else:
                layers.append(LUTLayer(width, out, n=n, mapping="random"))
            width = out
        return nn.Sequential(*_encoder(x, bits), *layers, GroupSum(classes, tau))

    return make


def _binary(bits: int, hidden: list[int], per_class: int) -> Callable[[np.ndarray, int], nn.Sequential]:
    def make(x: np.ndarray, classes: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = x.shape[1] * bits
        for out in [*hidden, per_class * classes]:
            layers += [BinaryLinear(width, out), nn.BatchNorm1d(out), Sign()]
            width = out
        return nn.Sequential(*_encoder(x, bits), *layers, GroupSum(classes, per_class / 10))

    return make


def _image_encoder(x: np.ndarray, bits: int, shape: tuple[int, int, int]) -> list[nn.Module]:
    """Images ``[B, C*H*W]`` to ``[B, C*bits, H, W]``: ``bits`` evenly spaced thresholds over the value range (on
    images, a per-pixel distribution mostly repeats the background's value)."""
    high = float(np.max(x)) if x.size and np.max(x) > 1 else 1.0
    return [nn.Unflatten(1, shape), Thermometer(bits, 0.0, high)]


def _conv_logic(
    bits: int, channels: list[int], dense: list[int], tau: float, depth: int = 3
) -> Callable[[np.ndarray, int, tuple[int, int, int]], nn.Sequential]:
    """LogicTreeNet-style: per stage a ``LogicConv2d`` (3 x 3 window, padding 1, trees of ``depth``, two input
    channels per tree) and an ``OrPool2d(2)``; then ``nn.Flatten`` and randomly wired gate layers of ``dense``."""

    def make(x: np.ndarray, classes: int, shape: tuple[int, int, int]) -> nn.Sequential:
        c, h, w = shape
        layers = _image_encoder(x, bits, shape)
        cin = c * bits
        for cout in channels:
            layers += [LogicConv2d(cin, cout, kernel_size=3, depth=depth, padding=1), OrPool2d(2, 2)]
            cin, h, w = cout, h // 2, w // 2
        layers.append(nn.Flatten())
        width = cin * h * w
        for i, out in enumerate(dense):
            out = out if i < len(dense) - 1 else out - out % classes
            layers.append(LogicLayer(width, out))
            width = out
        return nn.Sequential(*layers, GroupSum(classes, tau))

    return make


def _conv_binary(
    bits: int, channels: list[int], hidden: list[int], per_class: int
) -> Callable[[np.ndarray, int, tuple[int, int, int]], nn.Sequential]:
    """A binary CNN (larq's pattern): per stage a 3 x 3 ``BinaryConv2d`` with one padding, ``BatchNorm2d``,
    ``Sign`` and a 2 x 2 max pool on the bits; then binary dense layers of ``hidden`` and ``per_class`` outputs per
    class."""

    def make(x: np.ndarray, classes: int, shape: tuple[int, int, int]) -> nn.Sequential:
        c, h, w = shape
        layers = _image_encoder(x, bits, shape)
        cin = c * bits
        for cout in channels:
            layers += [BinaryConv2d(cin, cout, 3, padding=1, pad_value=1.0), nn.BatchNorm2d(cout), Sign(),
                       nn.MaxPool2d(2)]
            cin, h, w = cout, h // 2, w // 2
        layers.append(nn.Flatten())
        width = cin * h * w
        for out in [*hidden, per_class * classes]:
            layers += [BinaryLinear(width, out), nn.BatchNorm1d(out), Sign()]
            width = out
        return nn.Sequential(*layers, GroupSum(classes, per_class / 10))

    return make


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("logic-small", "logic", "4 x 8000 two-input gates", 10, 100, 0.05, _logic(2, [8000] * 4, 20.0)),
        Preset("logic-large", "logic", "6 x 12000 two-input gates", 10, 100, 0.05, _logic(3, [12000] * 6, 30.0)),
        Preset("lut-small", "lut", "1000 + 500 six-input LUTs", 6, 256, 0.02, _lut(3, [1000, 500], 6, 10 / 3)),
        Preset("lut-large", "lut", "2000 + 1000 six-input LUTs", 8, 256, 0.02, _lut(3, [2000, 1000], 6, 10 / 3)),
        Preset("binary-small", "binary", "XNOR-popcount MLP, 2 x 1024 hidden", 8, 256, 3e-3, _binary(2, [1024] * 2, 50)),
        Preset("binary-large", "binary", "XNOR-popcount MLP, 2 x 2048 hidden", 10, 256, 3e-3, _binary(3, [2048] * 2, 100)),
        # Learned wiring: every gate input picks its wire among 32 candidates. Two layers of 4000 measured better
        # than one of 8000 (with 16 or 64 candidates) or three, after 6 epochs (benches/accuracy.py, docs/performance.md).
        Preset("logic-8k", "logic", "2 x 4000 two-input gates, learned wiring", 50, 256, 0.1,
               _logic(2, [4000, 4000], 15.0, learned=32)),
        # difflogic's MNIST recipe (its "small" model): pixels binarized at half range, 6 x 8000 randomly wired
        # gates, tau 10, Adam at lr 0.01, batch 100 (difflogic trains 200 000 steps; this preset fewer epochs).
        Preset("difflogic-mnist-s", "logic", "6 x 8000 two-input gates (difflogic's MNIST recipe)", 100, 100, 0.01,
               _logic(1, [8000] * 6, 10.0, encoder=_binarize), schedule="constant"),
        # DWN's MNIST recipe: 3-bit distributive thermometer, 2000 + 1000 six-input LUTs, tau 1/0.3, learnable
        # mappings (here in both layers, over pools of 16 candidates), lr 0.01 divided by 10 every 14 epochs.
        Preset("dwn-mnist-lg", "lut", "2000 + 1000 six-input LUTs, learned mappings (DWN's MNIST recipe)", 30, 128,
               0.01, _lut(3, [2000, 1000], 6, 10 / 3, candidates=16, learn_all=True), schedule="step", step_size=14),
        # Convolutional (images: MNIST, Fashion-MNIST, CIFAR-10). Gates are counted unrolled, every tree gate and
        # pooling OR at every position (the circuit's size): conv-logic-s has 143 128 on MNIST. Two dense layers of
        # 8000 gates measured 85.1 % after one epoch against 61.0 % with two of 1600 (docs/performance.md).
        Preset("conv-logic-s", "logic", "logic-tree CNN, 12-24-48 channels, depth-3 trees (LogicTreeNet-S scale)",
               30, 100, 0.02, _conv_logic(2, [12, 24, 48], [8000, 8000], 20.0), images=True),
        Preset("conv-binary-s", "binary", "binary CNN, 32-64 channels, 512 hidden (larq's MNIST pattern)", 10, 128,
               3e-3, _conv_binary(2, [32, 64], [512], 30), images=True),
        # CIFAR-10 at LogicTreeNet's S and M scale (0.40 M and 3.08 M gates published), for GPU training: 0.46 M and
        # 2.7 M gates.
        Preset("conv-logic-cifar-s", "logic", "logic-tree CNN, 32-64-128 channels (LogicTreeNet-S scale, CIFAR-10)",
               100, 128, 0.02, _conv_logic(3, [32, 64, 128], [8000, 8000], 30.0), images=True),
        Preset("conv-logic-cifar-m", "logic", "logic-tree CNN, 192-384-768 channels (LogicTreeNet-M scale, CIFAR-10)",
               200, 128, 0.02, _conv_logic(3, [192, 384, 768], [32000, 16000], 60.0), images=True),
    ]
}


def get(name: str) -> Preset:
    """The preset called ``name``; a :class:`bitlogic.BitlogicError` lists the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BitlogicError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


__all__ = ["PRESETS", "Preset", "get"]
