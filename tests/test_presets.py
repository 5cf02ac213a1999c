"""Every preset builds a model for a dataset's shape that trains and exports exactly; the encoders they fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bitlogic
from bitlogic import datasets, presets
from bitlogic.nn import DistributiveThermometer, GroupSum, LogicLayer, LUTLayer, Thermometer
from bitlogic.spec import ThresholdEncoder


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.load("digits")


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_preset_trains_and_exports_exactly(name: str, digits: datasets.Dataset) -> None:
    torch.manual_seed(0)
    preset = presets.get(name)
    model = preset.build(digits.x_train, digits.num_classes, digits.image_shape)
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


@pytest.mark.parametrize("name", [n for n, p in presets.PRESETS.items() if p.images])
def test_convolutional_presets_need_an_image_shape_that_fits(name: str) -> None:
    x = np.zeros((4, 784), np.float32)
    with pytest.raises(bitlogic.InputError, match="image_shape"):
        presets.get(name).build(x, 10)
    with pytest.raises(bitlogic.InputError, match="does not hold the 784 features"):
        presets.get(name).build(x, 10, (3, 28, 28))
    model = presets.get(name).build(x, 10, (1, 28, 28))
    assert model(torch.zeros(2, 784)).shape == (2, 10)


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(ValueError, match="binary-small"):
        presets.get("nope")


@pytest.mark.parametrize("name", ["logic-small", "logic-large"])
def test_logic_presets_fall_back_to_random_connections_on_narrow_inputs(name: str) -> None:
    x = np.random.default_rng(0).random((50, 30)).astype(np.float32)  # breast-cancer's 30 features
    first = next(m for m in presets.get(name).build(x, 2) if isinstance(m, LogicLayer))
    pairs = {tuple(sorted(p)) for p in first.inputs.T.tolist()}
    assert len(pairs) < first.out_dim  # more gates than distinct pairs: random connections
    wide = next(m for m in presets.get(name).build(np.random.default_rng(0).random((50, 784)), 10)
                if isinstance(m, LogicLayer))
    assert len({tuple(sorted(p)) for p in wide.inputs.T.tolist()}) == wide.out_dim  # unique where they fit
    assert all(a != b for a, b in wide.inputs.T.tolist())


NAN_ERROR = r"^invalid input: sample 2, feature 5 is NaN; expected a number$"


def nan_at_sample_2_feature_5() -> np.ndarray:
    x = np.random.default_rng(1).random((4, 2, 3)).astype(np.float32)  # feature 5 once flattened is x[:, 1, 2]
    x[2, 1, 2] = x[3, 0, 0] = np.nan
    return x


def test_fit_on_a_nan_names_it() -> None:
    with pytest.raises(bitlogic.InputError, match=r"fit: sample 2, feature 5 is NaN; expected a number"):
        DistributiveThermometer(3).fit(nan_at_sample_2_feature_5())
    with pytest.raises(bitlogic.InputError, match=r"sample 2, feature 5 is NaN"):
        DistributiveThermometer(3).fit(torch.from_numpy(nan_at_sample_2_feature_5()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encoders_refuse_nan_like_the_engine(dtype: torch.dtype) -> None:
    x = nan_at_sample_2_feature_5().reshape(4, 6)
    fitted = DistributiveThermometer(2).fit(np.nan_to_num(x))
    net = bitlogic.Network.from_arrays(ThresholdEncoder(fitted.feature_thresholds(6)), [], num_classes=1)
    with pytest.raises(bitlogic.InputError, match=NAN_ERROR):
        net.predict(x.astype(np.float32 if dtype == torch.float32 else np.float64))
    for encoder in (fitted, Thermometer(2)):
        with pytest.raises(bitlogic.InputError, match=NAN_ERROR):
            encoder(torch.from_numpy(x).to(dtype))
    with pytest.raises(bitlogic.InputError, match=NAN_ERROR):
        Thermometer(2)(torch.from_numpy(nan_at_sample_2_feature_5()).to(dtype))  # features counted flattened
    assert fitted(torch.from_numpy(np.nan_to_num(x)).to(dtype)).shape == (4, 6, 2)


def test_accuracy_presets_have_the_named_shapes() -> None:
    x = np.random.default_rng(0).integers(0, 256, (50, 784)).astype(np.uint8)
    small = presets.get("logic-8k").build(x, 10)
    gates = [m for m in small if isinstance(m, LogicLayer)]
    assert sum(m.out_dim for m in gates) <= 8000 and all(m.connections == "learned" for m in gates)
    recipe = presets.get("difflogic-mnist-s").build(x, 10)
    assert [m.out_dim for m in recipe if isinstance(m, LogicLayer)] == [8000] * 6
    encoder = recipe[0]
    assert isinstance(encoder, Thermometer) and encoder.num_bits == 1
    assert float(encoder.feature_thresholds(1)[0, 0]) == 127.5  # pixels binarized at half their range
    assert recipe[-1].tau == 10.0
    dwn = presets.get("dwn-mnist-lg").build(x, 10)
    luts = [m for m in dwn if isinstance(m, LUTLayer)]
    assert [(m.out_dim, m.n, m.mapping) for m in luts] == [(2000, 6, "learnable"), (1000, 6, "learnable")]


def test_cli_settings_take_the_presets_schedule_unless_told() -> None:
    from pathlib import Path

    from bitlogic.cli.train import _Settings

    dwn = presets.get("dwn-mnist-lg")
    base = dict(dataset="mnist", preset=dwn.name, data_dir=None, output=Path("o"), checkpoint=Path("c"), seed=0,
                epochs=None, batch_size=None, lr=None)
    hyper = _Settings(**base).hyper(dwn)  # type: ignore[arg-type]
    assert (hyper.schedule, hyper.step_size, hyper.epochs) == ("step", 14, 30)
    # Other epochs: the period is a third of the run again; another schedule has no period.
    assert _Settings(**{**base, "epochs": 9}).hyper(dwn).step_size is None  # type: ignore[arg-type]
    told = _Settings(**{**base, "schedule": "cosine"}).hyper(dwn)  # type: ignore[arg-type]
    assert (told.schedule, told.step_size) == ("cosine", None)
    assert _Settings(**base).hyper(presets.get("logic-small")).schedule == "onecycle"  # type: ignore[arg-type]
