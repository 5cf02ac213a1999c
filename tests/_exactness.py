"""The exact-export check the torch-layer suites share: a model's ``eval()`` output equals the compiled network's
scores divided by ``tau``, bit for bit, and the engine's predictions equal the numpy reference's; and the few Adam
steps that move a model's parameters before it is checked again."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import bitlogic
import bitlogic.reference
from bitlogic.nn import GroupSum


def assert_exact(model: nn.Sequential, x: torch.Tensor) -> bitlogic.Network:
    net = bitlogic.compile(model)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    head = model[-1]
    assert isinstance(head, GroupSum)
    rows = x.reshape(x.shape[0], -1).numpy()
    got = torch.from_numpy(net.scores(rows)).to(torch.float32) / head.tau
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert np.array_equal(net.predict(rows), bitlogic.reference.network_predict(net, rows))
    return net


def train_steps(model: nn.Sequential, x: torch.Tensor, steps: int, seed: int, classes: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (x.shape[0],), generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
