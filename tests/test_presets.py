"""Every preset builds a model for a dataset's shape that trains and exports exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bitlogic
from bitlogic import datasets, presets
from bitlogic.nn import GroupSum


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.load("digits")


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_preset_trains_and_exports_exactly(name: str, digits: datasets.Dataset) -> None:
    torch.manual_seed(0)
    preset = presets.get(name)
    model = preset.build(digits.x_train, digits.num_classes)
    x = torch.from_numpy(digits.x_train[:64]).to(torch.float32)
    y = torch.from_numpy(digits.y_train[:64])
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.lr)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    net = bitlogic.compile(model)
    assert net.num_inputs == digits.num_features and net.num_classes == digits.num_classes
    x_test = torch.from_numpy(digits.x_test).to(torch.float32)
    with torch.no_grad():
        expected = model.eval()(x_test)
    head = model[-1]
    assert isinstance(head, GroupSum)
    got = torch.from_numpy(net.scores(digits.x_test)).to(torch.float32) / head.tau
    assert torch.equal(got, expected)
    assert np.array_equal(net.predict(digits.x_test), expected.argmax(1).numpy())


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(ValueError, match="binary-small"):
        presets.get("nope")
