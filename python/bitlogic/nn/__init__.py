"""Trainable layers whose eval() form is a boolean circuit; ``bitlogic.compile`` turns a model into a Network.

A model is a ``torch.nn.Sequential``: an encoder (``Thermometer`` / ``DistributiveThermometer``, then
``nn.Flatten``), any mix of ``LogicLayer``, ``LUTLayer`` and ``BinaryLinear`` (+ ``BatchNorm1d``) + ``Sign`` layers,
and ``GroupSum`` last. A convolutional model puts spatial layers on images first (``LogicConv2d``, ``LUTConv2d``,
``BinaryConv2d`` (+ ``BatchNorm2d``) + ``Sign``, ``OrPool2d`` or ``nn.MaxPool2d`` on bits), then ``nn.Flatten`` and
the dense layers. Every layer passes bits (0/1 floats) to the next in ``eval()``; bool and 0/1 integer inputs
are read as those bits.

Each module says what it becomes in the network file through ``export_part`` (the protocol of
:mod:`bitlogic.nn._export`); the layers' arithmetic and the choice of kernels are :mod:`bitlogic.ops`'s.
"""

from __future__ import annotations

from bitlogic.nn.binary import QUANTIZERS, BinaryLinear, Sign, quantized_sign
from bitlogic.nn.binary_conv import BinaryConv2d
from bitlogic.nn.encoders import DistributiveThermometer, Thermometer
from bitlogic.nn.group_sum import GroupSum
from bitlogic.nn.logic import GATE_COEFFICIENTS, LogicLayer, num_gates
from bitlogic.nn.logic_conv import LogicConv2d
from bitlogic.nn.lut import LUTLayer, num_luts
from bitlogic.nn.lut_conv import LUTConv2d
from bitlogic.nn.pool import OrPool2d

__all__ = [
    "GATE_COEFFICIENTS",
    "QUANTIZERS",
    "BinaryConv2d",
    "BinaryLinear",
    "DistributiveThermometer",
    "GroupSum",
    "LUTConv2d",
    "LUTLayer",
    "LogicConv2d",
    "LogicLayer",
    "OrPool2d",
    "Sign",
    "Thermometer",
    "num_gates",
    "num_luts",
    "quantized_sign",
]
