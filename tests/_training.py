"""What the training suites share: the tiny model they train, and the module that interrupts it."""

from __future__ import annotations

import os
import signal

import torch
from torch import nn

from bitlogic import datasets
from bitlogic.nn import BinaryLinear, DistributiveThermometer, GroupSum, Sign


class Interrupt(nn.Module):
    """Identity that raises KeyboardInterrupt (or sends a real SIGINT) on its ``at``-th training forward.

    It sits last, after the batch norms have updated their running statistics, so an interrupted step has side
    effects that the training loop must undo.
    """

    def __init__(self, at: int | None = None, real_signal: bool = False) -> None:
        super().__init__()
        self.at, self.real_signal, self.calls = at, real_signal, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                if self.real_signal:
                    os.kill(os.getpid(), signal.SIGINT)
                else:
                    raise KeyboardInterrupt
        return x


def tiny(ds: datasets.Dataset, seed: int = 0, hidden: int = 64, interrupt: Interrupt | None = None) -> nn.Sequential:
    torch.manual_seed(seed)
    bits = 2 * ds.num_features
    return nn.Sequential(
        DistributiveThermometer(2).fit(ds.x_train),
        nn.Flatten(),
        BinaryLinear(bits, hidden),
        nn.BatchNorm1d(hidden),
        Sign(),
        BinaryLinear(hidden, 10 * ds.num_classes),
        nn.BatchNorm1d(10 * ds.num_classes),
        Sign(),
        GroupSum(ds.num_classes, 2.0),
        interrupt or Interrupt(),
    )
