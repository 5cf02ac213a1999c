"""LogicLayer(estimator="soft"|"gumbel"|"hard"): gradients, the hard forward, Gumbel reproducibility, digits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
import bitlogic.datasets
from bitlogic.nn import GATE_COEFFICIENTS, GroupSum, LogicLayer, Thermometer
from bitlogic.ops.logic import choice_weights, corner_weights

ESTIMATORS = ["soft", "gumbel", "hard"]
PARAMETRIZATIONS = ["softmax16", "inputwise"]
CONNECTIONS = ["random", "learned"]


def bits(n: int, width: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, width, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def layer(estimator: str, parametrization: str, connections: str, seed: int = 0, **kw: object) -> LogicLayer:
    torch.manual_seed(seed)
    m = LogicLayer(24, 40, connections=connections, parametrization=parametrization,  # type: ignore[arg-type]
                   estimator=estimator, **kw)  # type: ignore[arg-type]
    if connections == "learned":
        with torch.no_grad():
            m.wire_logits.normal_(0.0, 2.0)
    return m


@pytest.mark.parametrize(("estimator", "parametrization", "connections"),
                         list(itertools.product(ESTIMATORS, PARAMETRIZATIONS, CONNECTIONS)))
def test_gradients_have_the_parameters_shapes_and_are_finite(estimator: str, parametrization: str,
                                                             connections: str) -> None:
    m = layer(estimator, parametrization, connections)
    x = torch.rand(16, 24, requires_grad=True)
    out = m(x)
    assert out.shape == (16, 40)
    (out * torch.linspace(-1, 1, 40)).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and bool(torch.isfinite(x.grad).all())
    for p in m.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and bool(torch.isfinite(p.grad).all())
        assert bool(p.grad.abs().sum() > 0)  # the soft gradient reaches every parameter, hard forward or not


@pytest.mark.parametrize(("parametrization", "connections"), list(itertools.product(PARAMETRIZATIONS, CONNECTIONS)))
def test_hard_forward_is_the_eval_output_on_bits(parametrization: str, connections: str) -> None:
    m = layer("hard", parametrization, connections, seed=1)
    x = bits(200, 24, 1)
    trained = m.train()(x)
    with torch.no_grad():
        evaluated = m.eval()(x)
    assert torch.equal(trained.detach(), evaluated)
    assert set(torch.unique(evaluated).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(("parametrization", "connections"), list(itertools.product(PARAMETRIZATIONS, CONNECTIONS)))
def test_gumbel_is_reproducible_under_a_seed(parametrization: str, connections: str) -> None:
    m = layer("gumbel", parametrization, connections, seed=2, tau_gumbel=0.5)
    x = bits(64, 24, 2)
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(torch.cat([m(x).detach() for _ in range(3)]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    assert set(torch.unique(runs[0]).tolist()) <= {0.0, 1.0}  # a sampled boolean gate (and wire) per position


def test_gumbel_samples_follow_the_softmax() -> None:
    torch.manual_seed(3)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]]).expand(20000, 4)
    w = choice_weights(logits, "gumbel")
    assert torch.equal(w.sum(1), torch.ones(20000)) and set(torch.unique(w).tolist()) == {0.0, 1.0}
    torch.testing.assert_close(w.mean(0), torch.softmax(logits[0], 0), atol=0.015, rtol=0)
    corners = corner_weights(torch.full((20000,), 1.0), "gumbel")
    assert abs(float(corners.mean()) - float(torch.sigmoid(torch.tensor(1.0)))) < 0.015


@pytest.mark.parametrize("estimator", ["hard", "gumbel"])
def test_straight_through_gradient_is_the_softmax_gradient(estimator: str) -> None:
    torch.manual_seed(4)
    logits = torch.randn(6, 16, requires_grad=True)
    upstream = torch.randn(6, 16)
    (choice_weights(logits, estimator, tau=0.7) * upstream).sum().backward()
    got = logits.grad
    torch.manual_seed(4)
    torch.randn(6, 16)  # the same draws as above, so the Gumbel noise is the same
    upstream = torch.randn(6, 16)
    ref = logits.detach().clone().requires_grad_()
    noisy = ref + (-torch.log(torch.empty_like(ref).exponential_())) if estimator == "gumbel" else ref
    (torch.softmax(noisy / (0.7 if estimator == "gumbel" else 1.0), dim=1) * upstream).sum().backward()
    torch.testing.assert_close(got, ref.grad)


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_soft_is_the_default_and_unchanged(parametrization: str) -> None:
    torch.manual_seed(8)
    default = LogicLayer(24, 40, parametrization=parametrization)  # type: ignore[arg-type]
    torch.manual_seed(8)
    soft = LogicLayer(24, 40, parametrization=parametrization, estimator="soft")  # type: ignore[arg-type]
    assert default.estimator == "soft"
    for (k1, v1), (k2, v2) in zip(default.state_dict().items(), soft.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.rand(30, 24)
    out = default(x)
    assert torch.equal(out, soft(x))
    # Today's relaxation: the softmax mixture of the 16 gates (or the sigmoid corners) on the fixed wires.
    if parametrization == "softmax16":
        coef = torch.softmax(default.weight, dim=1) @ GATE_COEFFICIENTS
    else:
        f00, f01, f10, f11 = torch.sigmoid(default.weight).unbind(1)
        coef = torch.stack([f00, f10 - f00, f01 - f00, f11 - f10 - f01 + f00], dim=1)
    a, b = x[:, default.inputs[0]], x[:, default.inputs[1]]
    torch.testing.assert_close(out, coef[:, 0] + coef[:, 1] * a + coef[:, 2] * b + coef[:, 3] * a * b)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_digits_train_above_chance_and_export_exactly(estimator: str) -> None:
    data = bitlogic.datasets.load("digits")
    torch.manual_seed(0)
    model = nn.Sequential(
        Thermometer(3, data.low, data.high),
        nn.Flatten(),
        LogicLayer(data.num_features * 3, 1200, connections="learned", estimator=estimator),  # type: ignore[arg-type]
        LogicLayer(1200, 1000, estimator=estimator),  # type: ignore[arg-type]
        GroupSum(10, tau=10.0),
    )
    x, y = torch.from_numpy(data.x_train).float(), torch.from_numpy(data.y_train)
    # Sampled choices (of every gate and wire, from zero wire logits) are noisy early on: more, larger steps.
    epochs, lr = (5, 0.1) if estimator == "gumbel" else (3, 0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(y)).split(64):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    x_test = torch.from_numpy(data.x_test).float()
    net = bitlogic.compile(model)
    model.eval()
    with torch.no_grad():
        scores = model(x_test)
    assert torch.equal(torch.from_numpy(net.scores(data.x_test)).float() / 10.0, scores)
    accuracy = float(np.mean(net.predict(data.x_test) == data.y_test))
    assert accuracy > 0.5, accuracy  # chance is 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"estimator": "straight"}, "estimator must be one of"), ({"estimator": "gumbel", "tau_gumbel": 0.0}, "positive")],
)
def test_bad_estimator_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LogicLayer(10, 8, **kwargs)  # type: ignore[arg-type]
