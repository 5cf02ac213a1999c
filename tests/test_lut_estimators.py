"""LUTLayer's estimators ("hard", "soft", "gumbel") and learnable mappings over candidate pools, in any layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
import bitlogic.datasets
from bitlogic.nn import GroupSum, LUTLayer, Thermometer
from bitlogic.ops.lut import (
    candidate_select,
    gumbel_lookup,
    learnable_select,
    lookup,
    multilinear,
    random_pool,
    relaxed_select,
    soft_lookup,
)

from _exactness import assert_exact

FEATURES = 12
BITS = 3
ESTIMATORS = ["hard", "soft", "gumbel"]
MAPPINGS = [{}, {"mapping": "learnable"}, {"mapping": "learnable", "candidates": 5}]


def features(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, FEATURES, generator=g) * 2.4 - 1.2
    on = torch.rand(n, FEATURES, generator=g) < 0.2
    x[on] = torch.tensor([-0.5, 0.0, 0.5])[torch.randint(0, 3, (int(on.sum()),), generator=g)]
    return x


def build(estimator: str, seed: int, **mapping: object) -> nn.Sequential:
    """Two LUT layers, both with the given mapping (a learnable mapping in the second layer too)."""
    torch.manual_seed(seed)
    width = FEATURES * BITS
    return nn.Sequential(
        Thermometer(BITS, -1.0, 1.0),
        nn.Flatten(),
        LUTLayer(width, 40, n=4, estimator=estimator, **mapping),  # type: ignore[arg-type]
        LUTLayer(40, 30, n=3, estimator=estimator, **mapping),  # type: ignore[arg-type]
        GroupSum(3, tau=7.0),
    )


def train_steps(model: nn.Sequential, x: torch.Tensor, steps: int, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (x.shape[0],), generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        for p in model.parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all())
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("mapping", MAPPINGS, ids=["random", "learnable", "candidates"])
def test_trained_layers_export_exactly(estimator: str, mapping: dict[str, object]) -> None:
    model = build(estimator, 1, **mapping)
    losses = train_steps(model, features(256, 1), steps=8, seed=1)
    assert all(np.isfinite(losses))
    assert_exact(model, features(600, 2))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("mapping", MAPPINGS, ids=["random", "learnable", "candidates"])
def test_gradients_reach_every_parameter_and_the_inputs(estimator: str, mapping: dict[str, object]) -> None:
    torch.manual_seed(0)
    first = LUTLayer(20, 16, n=4, estimator=estimator, **mapping).train()  # type: ignore[arg-type]
    second = LUTLayer(16, 8, n=3, estimator=estimator, **mapping).train()  # type: ignore[arg-type]
    x = torch.rand(32, 20).requires_grad_(True)
    out = second(first(x))
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and bool(x.grad.abs().sum() > 0)
    for p in [*first.parameters(), *second.parameters()]:
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_training_is_reproducible_under_a_seed(estimator: str) -> None:
    def run() -> dict[str, torch.Tensor]:
        model = build(estimator, 4, mapping="learnable", candidates=4)
        torch.manual_seed(5)  # the Gumbel noise comes from torch's generator
        train_steps(model, features(128, 4), steps=4, seed=4)
        return model.state_dict()

    a, b = run(), run()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_hard_is_the_default_and_changes_nothing() -> None:
    for kwargs in [{}, {"mapping": "learnable"}, {"ste": False}, {"mapping": "arange", "n": 3}]:
        torch.manual_seed(6)
        default = LUTLayer(30, 20, **kwargs)  # type: ignore[arg-type]
        torch.manual_seed(6)
        hard = LUTLayer(30, 20, estimator="hard", **kwargs)  # type: ignore[arg-type]
        assert default.estimator == "hard"
        assert list(default.state_dict()) == list(hard.state_dict())
        assert all(torch.equal(v, hard.state_dict()[k]) for k, v in default.state_dict().items())
        results = []
        for layer in (default, hard):
            x = torch.rand(64, 30, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
            y = layer.train()(x)
            (y * torch.arange(20.0)).sum().backward()
            results.append((y, x.grad, [p.grad for p in layer.parameters()]))
        (y0, gx0, gp0), (y1, gx1, gp1) = results
        assert torch.equal(y0, y1) and gx0 is not None and gx1 is not None and torch.equal(gx0, gx1)
        assert all(a is not None and b is not None and torch.equal(a, b) for a, b in zip(gp0, gp1))


def test_default_state_dict_keys_are_unchanged() -> None:
    assert set(LUTLayer(10, 4, n=2).state_dict()) == {"inputs", "tables"}
    assert set(LUTLayer(10, 4, n=2, mapping="learnable").state_dict()) == {"mapping_weight", "inputs", "tables"}
    pooled = LUTLayer(10, 4, n=2, mapping="learnable", candidates=3).state_dict()
    assert set(pooled) == {"mapping_weight", "candidates", "inputs", "tables"}
    assert pooled["mapping_weight"].shape == (8, 3) and pooled["candidates"].shape == (8, 3)


def test_multilinear_is_the_lookup_on_bits_and_a_finite_difference_along_each_input() -> None:
    g = torch.Generator().manual_seed(8)
    tables = torch.rand(5, 16, generator=g) * 2 - 1
    bits = torch.randint(0, 2, (40, 20), generator=g).to(torch.float32).requires_grad_(True)
    probabilities = torch.sigmoid(tables / 0.25)
    out = multilinear(bits, probabilities)
    weights = torch.zeros(4, 16, 16)  # no EFD: only the addressed entry, through a lookup with the soft bit
    address = (bits.detach().view(40, 5, 4).to(torch.int64) << torch.arange(4)).sum(-1)
    assert torch.allclose(out, probabilities.gather(1, address.t()).t())
    assert torch.equal(lookup(bits.detach(), tables, weights, True), (tables.gather(1, address.t()).t() > 0).float())
    out.sum().backward()
    assert bits.grad is not None
    for j in range(4):
        up = probabilities.gather(1, (address | (1 << j)).t()).t()
        down = probabilities.gather(1, (address & ~(1 << j)).t()).t()
        assert torch.allclose(bits.grad.view(40, 5, 4)[..., j], up - down, atol=1e-6)


def test_soft_and_gumbel_forwards() -> None:
    g = torch.Generator().manual_seed(9)
    tables = torch.rand(6, 8, generator=g) * 2 - 1
    x = torch.rand(30, 18, generator=g)
    soft = soft_lookup(x, tables, 0.25)
    assert bool(((soft > 0) & (soft < 1)).all())
    torch.manual_seed(0)
    gumbel = gumbel_lookup(x, tables.requires_grad_(True), 0.25)
    assert set(gumbel.unique().tolist()) <= {0.0, 1.0}
    gumbel.sum().backward()
    assert tables.grad is not None and bool(torch.isfinite(tables.grad).all())
    # Far from zero the noise rarely flips an entry: at a low temperature the forward is the hard lookup.
    torch.manual_seed(0)
    sure = torch.where(tables.detach() > 0, 1.0, -1.0)
    weights = torch.zeros(3, 8, 8)
    assert torch.equal(gumbel_lookup(x, sure, 0.01), lookup(x, sure, weights, True))


def test_candidate_select_is_learnable_select_over_the_pool() -> None:
    torch.manual_seed(10)
    rows, width, k = 12, 9, 4
    pool = random_pool(width, rows, k)
    assert all(len(set(row.tolist())) == k for row in pool)  # distinct candidates
    weight = torch.rand(rows, k)
    dense = torch.full((rows, width), -1e4)
    dense.scatter_(1, pool, weight)
    x = torch.rand(20, width)
    grad = torch.randn(20, rows)
    results = []
    for select in (lambda a, w: candidate_select(a, w, pool, 0.05), lambda a, w: learnable_select(a, w, 0.05)):
        xs = x.clone().requires_grad_(True)
        w = (weight if len(results) == 0 else dense).clone().requires_grad_(True)
        out = select(xs, w)
        (out * grad).sum().backward()
        assert w.grad is not None
        results.append((out, xs.grad, w.grad if len(results) == 0 else w.grad.gather(1, pool)))
    (o0, x0, w0), (o1, x1, w1) = results
    assert torch.equal(o0, o1)
    assert x0 is not None and x1 is not None and torch.allclose(x0, x1, atol=1e-6)
    assert torch.allclose(w0, w1, atol=1e-6)
    for estimator in ("soft", "gumbel"):
        # The relaxed selections: the gradient is the mixture's alone (the Gumbel one's with the same noise).
        torch.manual_seed(13)
        xs = x.clone().requires_grad_(True)
        out = relaxed_select(xs, weight, 0.05, estimator, pool)
        (out * grad).sum().backward()
        torch.manual_seed(13)
        logits = weight / 0.05
        if estimator == "gumbel":
            logits = logits - torch.log(-torch.log(torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)))
            assert torch.equal(out, x[:, pool.gather(1, logits.argmax(1, keepdim=True)).squeeze(1)])
        mixture = torch.zeros(rows, width).scatter_(1, pool, torch.softmax(logits, dim=1))
        if estimator == "soft":
            assert torch.allclose(out, x @ mixture.t(), atol=1e-6)
        assert xs.grad is not None and torch.allclose(xs.grad, grad @ mixture, atol=1e-5)


def test_learnable_wires_are_the_argmax_candidates() -> None:
    torch.manual_seed(11)
    layer = LUTLayer(30, 10, n=3, mapping="learnable", candidates=6)
    wires = layer.wires().reshape(-1)
    assert torch.equal(wires, layer.candidates[torch.arange(30), layer.mapping_weight.argmax(1)])
    x = torch.rand(50, 30)
    with torch.no_grad():
        assert torch.equal(layer.eval()(x), lookup(x[:, wires], layer.tables, layer.efd, True))
    part = layer.export_part([])
    assert np.array_equal(part.layer.inputs, wires.view(10, 3).numpy())  # type: ignore[attr-defined]


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="estimator must be"):
        LUTLayer(10, 4, estimator="exact")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="candidates needs mapping='learnable'"):
        LUTLayer(10, 4, candidates=3)
    with pytest.raises(ValueError, match="candidates must be in 1..in_dim=10"):
        LUTLayer(10, 4, mapping="learnable", candidates=11)
    with pytest.raises(ValueError, match="ste=False is a variant of the 'hard' estimator"):
        LUTLayer(10, 4, estimator="soft", ste=False)
    with pytest.raises(ValueError, match="temperature must be positive"):
        LUTLayer(10, 4, estimator="gumbel", temperature=0.0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_small_digits_train_above_chance(estimator: str) -> None:
    data = bitlogic.datasets.load("digits")
    torch.manual_seed(12)
    model = nn.Sequential(
        Thermometer(3, data.low, data.high),
        nn.Flatten(),
        LUTLayer(data.num_features * 3, 300, n=4, mapping="learnable", candidates=8, estimator=estimator),  # type: ignore[arg-type]
        LUTLayer(300, 200, n=4, estimator=estimator),  # type: ignore[arg-type]
        GroupSum(10, tau=5.0),
    )
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(2):
        for batch in torch.randperm(x.shape[0]).split(64):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net = bitlogic.compile(model)
    accuracy = float((net.predict(data.x_test) == data.y_test).mean())
    assert accuracy > 0.5, accuracy  # chance is 0.1
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(data.x_test))
    assert torch.equal(torch.from_numpy(net.scores(data.x_test)).to(torch.float32) / 5.0, expected)
