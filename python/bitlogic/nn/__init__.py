"""Trainable layers whose eval() form is a boolean circuit; ``bitlogic.compile`` turns a model into a Network.

A model is a ``torch.nn.Sequential``: an encoder (``Thermometer`` / ``DistributiveThermometer``, then
``nn.Flatten``), any mix of ``LogicLayer``, ``LUTLayer`` and ``BinaryLinear`` (+ ``BatchNorm1d``) + ``Sign`` layers,
and ``GroupSum`` last. Every layer passes bits (0/1 floats) to the next in ``eval()``; bool and 0/1 integer inputs
are read as those bits.

Each module says what it becomes in the network file through ``export_part`` (the protocol of
:mod:`bitlogic.nn._export`); the layers' arithmetic and the choice of kernels are :mod:`bitlogic.ops`'s.
"""

from __future__ import annotations

from bitlogic.nn.binary import QUANTIZERS, BinaryLinear, Sign, quantized_sign
from bitlogic.nn.encoders import DistributiveThermometer, Thermometer
from bitlogic.nn.group_sum import GroupSum
from bitlogic.nn.logic import GATE_COEFFICIENTS, LogicLayer, num_gates
from bitlogic.nn.lut import LUTLayer, num_luts

__all__ = [
    "GATE_COEFFICIENTS",
    "QUANTIZERS",
    "BinaryLinear",
    "DistributiveThermometer",
    "GroupSum",
    "LUTLayer",
    "LogicLayer",
    "Sign",
    "Thermometer",
    "num_gates",
    "num_luts",
    "quantized_sign",
]
