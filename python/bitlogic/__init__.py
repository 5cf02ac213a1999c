"""bitlogic: train boolean networks in PyTorch, run them as bit-sliced circuits in Rust.

Inference API::

    net = bitlogic.load("mnist.bitlogic")
    labels = net.predict(x)          # int64 [N]
    scores = net.scores(x)           # int32 [N, num_classes]
"""

from __future__ import annotations

from bitlogic._native import BitlogicError, FormatError, InputError, __version__
from bitlogic.network import Network, load, random_network, supported_isas
from bitlogic.spec import BinaryLayer, BitsEncoder, GateLayer, LutLayer, ThresholdEncoder

__all__ = [
    "BinaryLayer",
    "BitlogicError",
    "BitsEncoder",
    "FormatError",
    "GateLayer",
    "InputError",
    "LutLayer",
    "Network",
    "ThresholdEncoder",
    "__version__",
    "load",
    "random_network",
    "supported_isas",
]
