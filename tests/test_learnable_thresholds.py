"""Thermometer encoders with learnable=True: ordered thresholds, a straight-through gradient, and an exact export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
from bitlogic.nn import DistributiveThermometer, GroupSum, LogicLayer, LUTLayer, Thermometer
from bitlogic.nn.encoders import MIN_GAP, ordered_thresholds, raw_thresholds

from _exactness import assert_exact, train_steps

FEATURES = 10
BITS = 4


def features(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Features in about [-1.2, 1.2], a share of them exactly on an initial threshold (where > and >= differ)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, FEATURES, generator=g, dtype=torch.float64) * 2.4 - 1.2
    on = torch.rand(n, FEATURES, generator=g) < 0.2
    x[on] = Thermometer(BITS, -1.0, 1.0).thresholds.to(torch.float64)[torch.randint(0, BITS, (int(on.sum()),), generator=g)]
    return x.to(dtype)


def model_with(encoder: nn.Module, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    width = FEATURES * BITS
    return nn.Sequential(encoder, nn.Flatten(), LUTLayer(width, 40, n=4), LogicLayer(40, 30), GroupSum(3, tau=5.0))


def increasing(t: torch.Tensor) -> bool:
    return bool((t[..., 1:] > t[..., :-1]).all())


def ordered(t: torch.Tensor) -> bool:
    return bool((t[..., 1:] >= t[..., :-1]).all())


def test_the_default_is_not_learnable() -> None:
    assert list(Thermometer(3).state_dict()) == ["thresholds"]
    assert list(DistributiveThermometer(3).state_dict()) == ["thresholds", "image_shape"]  # empty until fitted on images
    assert not any(True for _ in Thermometer(3).parameters())


def test_learnable_thresholds_start_at_the_fixed_ones() -> None:
    fixed, learnable = Thermometer(BITS, -1.0, 1.0), Thermometer(BITS, -1.0, 1.0, learnable=True)
    assert torch.equal(learnable.thresholds, fixed.thresholds)
    assert learnable.thresholds.dtype == torch.float32
    assert float(learnable.surrogate_width) == pytest.approx(2.0 / (BITS + 1))
    x = features(300, 0)
    learnable.train()
    assert torch.equal(learnable(x), fixed(x))
    data = torch.randn(400, 6).numpy()  # continuous data: no ties, so the fitted thresholds are kept exactly
    fitted = DistributiveThermometer(BITS).fit(data)
    learned = DistributiveThermometer(BITS, learnable=True).fit(data)
    assert torch.equal(learned.thresholds, fitted.thresholds)
    spread = float(data.max() - data.min())
    assert float(learned.surrogate_width) == pytest.approx(spread / (BITS + 1))


def test_fitted_ties_are_separated_by_the_minimum_gap() -> None:
    data = np.zeros((100, 3), dtype=np.uint8)
    data[:10, 0] = 200  # feature 0: most values 0, so its lower quantiles tie at 0
    data[:, 1] = np.arange(100)
    encoder = DistributiveThermometer(BITS, learnable=True).fit(data)
    fitted = DistributiveThermometer(BITS).fit(data)
    t = encoder.thresholds
    assert increasing(t)
    assert torch.allclose(t, fitted.thresholds, atol=BITS * MIN_GAP * float(encoder.surrogate_width))
    x = torch.from_numpy(data)
    assert torch.equal(encoder(x), fitted(x))  # uint8 values never fall inside a tiny gap


def test_any_raw_parameters_give_increasing_thresholds() -> None:
    raw = torch.randn(50, 7, dtype=torch.float64) * 10
    assert ordered(ordered_thresholds(raw))  # a gap under float32's resolution rounds to a tie, never below it
    assert increasing(ordered_thresholds(raw.clamp_min(-5)))
    t = ordered_thresholds(raw)
    assert torch.equal(ordered_thresholds(raw_thresholds(t, 1e-9)), t)


def test_forward_is_the_hard_comparison_and_backward_the_sigmoid_surrogate() -> None:
    encoder = Thermometer(BITS, -1.0, 1.0, learnable=True, width=0.3).train()
    x = features(64, 1).requires_grad_(True)
    bits = encoder(x)
    with torch.no_grad():
        assert torch.equal(bits, (x.unsqueeze(-1) > encoder.thresholds).to(torch.float32))
    weights = torch.randn(bits.shape, generator=torch.Generator().manual_seed(2))
    (bits * weights).sum().backward()
    t = encoder.thresholds.detach().requires_grad_(True)
    xs = x.detach().requires_grad_(True)
    (torch.sigmoid((xs.unsqueeze(-1) - t) / 0.3) * weights).sum().backward()
    assert xs.grad is not None and x.grad is not None and t.grad is not None
    assert torch.allclose(x.grad, xs.grad, atol=1e-5)
    # The raw parameters' gradient is the thresholds' surrogate gradient through the parametrization.
    raw = encoder.raw_thresholds.detach().clone().requires_grad_(True)
    (ordered_thresholds(raw) * t.grad).sum().backward()
    assert encoder.raw_thresholds.grad is not None and raw.grad is not None
    assert torch.allclose(encoder.raw_thresholds.grad, raw.grad, atol=1e-5)
    assert bool(torch.isfinite(encoder.raw_thresholds.grad).all()) and bool(encoder.raw_thresholds.grad.abs().sum() > 0)


@pytest.mark.parametrize("kind", ["thermometer", "distributive"])
def test_trained_thresholds_move_stay_ordered_and_export_exactly(kind: str) -> None:
    x = features(256, 3)
    if kind == "thermometer":
        encoder: Thermometer | DistributiveThermometer = Thermometer(BITS, -1.0, 1.0, learnable=True)
    else:
        encoder = DistributiveThermometer(BITS, learnable=True).fit(x)
    model = model_with(encoder, 3)
    before = encoder.thresholds.detach().clone()
    train_steps(model, x, steps=10, seed=3)
    after = encoder.thresholds.detach()
    assert not torch.equal(before, after)
    assert increasing(after)
    net = assert_exact(model, features(500, 4))
    expected = np.broadcast_to(after.numpy(), (FEATURES, BITS))
    assert np.array_equal(net.encoder.thresholds, expected)  # type: ignore[union-attr]
    # float64 features compare in float64 against the float32 thresholds, in torch and in the engine alike.
    assert_exact(model, features(500, 5, torch.float64))
    on = torch.cat([features(50, 6, torch.float64), torch.from_numpy(expected.T.astype(np.float64))])
    assert_exact(model, on)  # features exactly on trained thresholds


def test_uint8_features_export_exactly() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 256, (300, FEATURES), generator=g).to(torch.uint8)
    for encoder in (Thermometer(BITS, 0.0, 255.0, learnable=True), DistributiveThermometer(BITS, learnable=True).fit(x)):
        model = model_with(encoder, 7)
        train_steps(model, x, steps=8, seed=7)
        assert increasing(encoder.thresholds)
        assert_exact(model, torch.randint(0, 256, (400, FEATURES), generator=g).to(torch.uint8))


def test_training_is_reproducible_under_a_seed() -> None:
    def run() -> torch.Tensor:
        encoder = DistributiveThermometer(BITS, learnable=True).fit(features(200, 8))
        train_steps(model_with(encoder, 8), features(200, 8), steps=5, seed=8)
        return encoder.thresholds.detach()

    assert torch.equal(run(), run())


def test_state_dict_round_trip_of_learnable_encoders() -> None:
    x = features(200, 9)
    encoder = DistributiveThermometer(BITS, learnable=True).fit(x)
    train_steps(model_with(encoder, 9), x, steps=4, seed=9)
    fresh = DistributiveThermometer(BITS, learnable=True)  # unfitted: takes the fitted shape from the state_dict
    fresh.load_state_dict(encoder.state_dict())
    assert torch.equal(fresh.thresholds, encoder.thresholds)
    assert float(fresh.surrogate_width) == float(encoder.surrogate_width)
    assert torch.equal(fresh.eval()(x), encoder.eval()(x))
    row = Thermometer(BITS, -1.0, 1.0, learnable=True)
    with torch.no_grad():
        row.raw_thresholds.add_(0.1)
    copy = Thermometer(BITS, -1.0, 1.0, learnable=True)
    copy.load_state_dict(row.state_dict())
    assert torch.equal(copy.thresholds, row.thresholds)


def test_nan_features_raise_input_error_when_learnable() -> None:
    x = features(8, 10)
    x[5, 2] = float("nan")
    for encoder in (Thermometer(BITS, learnable=True), DistributiveThermometer(BITS, learnable=True).fit(features(20, 1))):
        with pytest.raises(bitlogic.InputError, match="sample 5, feature 2 is NaN"):
            encoder.train()(x)
        with pytest.raises(bitlogic.InputError, match="sample 5, feature 2 is NaN"):
            encoder.eval()(x)
    with pytest.raises(bitlogic.InputError, match="sample 5, feature 2 is NaN"):
        DistributiveThermometer(BITS, learnable=True).fit(x)


def test_a_bad_width_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="width must be positive"):
        Thermometer(BITS, learnable=True, width=0.0)
    with pytest.raises(ValueError, match="width must be positive"):
        DistributiveThermometer(BITS, learnable=True, width=-1.0)
