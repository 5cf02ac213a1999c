"""LogicLayer(connections="learned"): candidate pools, the mixture while training, exact export of the argmax wires."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
from bitlogic.nn import GroupSum, LogicLayer, Thermometer
from bitlogic.nn.logic import DEFAULT_CANDIDATES
from bitlogic.ops.logic import gates_torch, mix_candidates

from _exactness import assert_exact, train_steps

FEATURES, BITS = 10, 3


def features(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, FEATURES, generator=g) * 2.4 - 1.2


def build(seed: int, estimator: str = "soft", parametrization: str = "softmax16") -> nn.Sequential:
    torch.manual_seed(seed)
    width = FEATURES * BITS
    kw = {"estimator": estimator, "parametrization": parametrization}
    model = nn.Sequential(
        Thermometer(BITS, -1.0, 1.0),
        nn.Flatten(),
        LogicLayer(width, 48, connections="learned", **kw),  # type: ignore[arg-type]
        LogicLayer(48, 40, connections="learned", candidates=3, **kw),  # type: ignore[arg-type]
        LogicLayer(40, 30, **kw),  # type: ignore[arg-type]
        GroupSum(3, tau=5.0),
    )
    with torch.no_grad():  # trained-looking choices: not all candidate 0
        for m in model.modules():
            if isinstance(m, LogicLayer) and m.connections == "learned":
                m.wire_logits.normal_(0.0, 2.0)
    return model


def test_learned_layer_holds_candidates_and_logits() -> None:
    layer = LogicLayer(100, 60, connections="learned")
    assert layer.candidates.shape == (2, 60, DEFAULT_CANDIDATES) and layer.candidates.dtype == torch.int64
    assert isinstance(layer.wire_logits, nn.Parameter) and layer.wire_logits.shape == (2, 60, DEFAULT_CANDIDATES)
    assert set(layer.state_dict()) == {"candidates", "wire_logits", "weight"}
    # Drawn like "random": every input is in some pool, and about equally many.
    counts = torch.bincount(layer.candidates.reshape(-1), minlength=100)
    assert int(counts.min()) >= 9 and int(counts.max()) <= 10
    assert LogicLayer(10, 4, connections="learned", candidates=3).candidates.shape == (2, 4, 3)


def test_inputs_are_the_argmax_candidates() -> None:
    layer = LogicLayer(30, 20, connections="learned", candidates=5)
    with torch.no_grad():
        layer.wire_logits.normal_()
    chosen = layer.wire_logits.argmax(dim=2)
    expected = torch.gather(layer.candidates, 2, chosen.unsqueeze(2)).squeeze(2)
    layer.eval()
    assert torch.equal(layer.inputs, expected)
    with torch.no_grad():  # a new choice shows at once
        layer.wire_logits[0, 3, :] = torch.arange(5.0)
    assert int(layer.inputs[0, 3]) == int(layer.candidates[0, 3, 4])
    part = layer.export_part([])
    assert np.array_equal(part.layer.inputs, layer.inputs.t().numpy())  # type: ignore[attr-defined]


def test_eval_is_the_gate_layer_of_the_argmax_wires() -> None:
    layer = LogicLayer(30, 20, connections="learned").eval()
    with torch.no_grad():
        layer.wire_logits.normal_()
    fixed = LogicLayer(30, 20).eval()
    fixed.load_state_dict({"inputs": layer.inputs, "weight": layer.weight.detach()})
    x = (torch.rand(50, 30) > 0.5).float()
    assert torch.equal(layer(x), fixed(x))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("parametrization", ["softmax16", "inputwise"])
def test_learned_wiring_exports_exactly(seed: int, parametrization: str) -> None:
    model = build(seed, parametrization=parametrization)
    assert_exact(model, features(500, seed))
    train_steps(model, features(256, seed + 10), steps=15, seed=seed)
    net = assert_exact(model, features(500, seed + 20))
    first = model[2]
    assert isinstance(first, LogicLayer)
    assert np.array_equal(net.layers[0].inputs, first.inputs.t().numpy())  # type: ignore[union-attr]


def test_training_moves_the_choice() -> None:
    model = build(3)
    first = model[2]
    assert isinstance(first, LogicLayer)
    before = first.wire_logits.detach().clone()
    train_steps(model, features(128, 3), steps=3, seed=3)
    assert first.wire_logits.grad is not None and bool(first.wire_logits.grad.abs().sum() > 0)
    assert not torch.equal(before, first.wire_logits.detach())


def test_state_dict_round_trip_keeps_the_network() -> None:
    model = build(4)
    train_steps(model, features(128, 4), steps=5, seed=4)
    reloaded = build(99)
    reloaded.load_state_dict(model.state_dict())
    assert bitlogic.compile(reloaded) == bitlogic.compile(model)


def test_training_forward_is_the_softmax_mixture_of_the_candidates() -> None:
    torch.manual_seed(5)
    layer = LogicLayer(12, 16, connections="learned", candidates=4)
    with torch.no_grad():
        layer.wire_logits.normal_()
    x = torch.rand(9, 12, requires_grad=True)
    out = layer(x)  # the fused kernels on the mixed inputs
    (out * torch.linspace(-1, 1, 16)).sum().backward()
    got = (out.detach(), x.grad, layer.wire_logits.grad, layer.weight.grad)

    x2 = x.detach().clone().requires_grad_()
    logits = layer.wire_logits.detach().clone().requires_grad_()
    weight = layer.weight.detach().clone().requires_grad_()
    p = torch.softmax(logits, dim=2)  # [2, 16, 4]
    mixed = (x2[:, layer.candidates] * p).sum(3)  # [9, 2, 16]
    coef = torch.softmax(weight, dim=1) @ bitlogic.nn.GATE_COEFFICIENTS
    a, b = mixed[:, 0], mixed[:, 1]
    ref = coef[:, 0] + coef[:, 1] * a + coef[:, 2] * b + coef[:, 3] * a * b
    (ref * torch.linspace(-1, 1, 16)).sum().backward()
    for g, r in zip(got, (ref.detach(), x2.grad, logits.grad, weight.grad)):
        assert g is not None and r is not None
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_mix_candidates_gradcheck() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.rand(5, 7, dtype=torch.float64, generator=g).requires_grad_()
    candidates = torch.randint(0, 7, (2, 6, 3), generator=g)
    weights = torch.rand(2, 6, 3, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: mix_candidates(x, candidates, w), (x, weights))
    got = mix_candidates(x, candidates, weights)
    assert got.shape == (2, 6, 5)
    torch.testing.assert_close(got, (x[:, candidates] * weights).sum(3).permute(1, 2, 0))


def test_one_candidate_is_fixed_wiring() -> None:
    torch.manual_seed(7)
    layer = LogicLayer(20, 24, connections="learned", candidates=1)
    x = torch.rand(11, 20)
    coef = layer.coefficients().detach()
    expected = gates_torch(x, layer.candidates[0, :, 0], layer.candidates[1, :, 0], coef)
    torch.testing.assert_close(layer(x).detach(), expected)


def test_learned_wiring_follows_the_module_to_float64() -> None:
    layer = LogicLayer(10, 8, connections="learned").double()
    x = torch.rand(4, 10, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": 4}, "needs connections='learned'"),
        ({"connections": "learned", "candidates": 0}, "positive integer"),
        ({"connections": "learned", "candidates": 2.5}, "positive integer"),
        ({"connections": "everything"}, "'random', 'unique' or 'learned'"),
    ],
)
def test_bad_wiring_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LogicLayer(10, 8, **kwargs)  # type: ignore[arg-type]
