"""The fused candidate-mix kernels (bitlogic._native.candidate_forward / candidate_backward) against the torch
reference (ops.logic.MixCandidates), and the layers with learned wiring on them against the torch path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import Tensor

import bitlogic
import bitlogic.ops.logic as ops_logic
import bitlogic.ops.lut as ops_lut
from bitlogic._native import candidate_backward, candidate_forward
from bitlogic.nn import LogicLayer, LUTLayer
from bitlogic.ops.logic import MixCandidates, fused_mix


@contextmanager
def torch_path() -> Iterator[None]:
    """The candidate mix on its torch reference while inside (ops.lut imported the check by name)."""
    saved = ops_logic.fused_mix_applies, ops_lut.fused_mix_applies
    ops_logic.fused_mix_applies = ops_lut.fused_mix_applies = lambda *tensors: False
    try:
        yield
    finally:
        ops_logic.fused_mix_applies, ops_lut.fused_mix_applies = saved


def one_hot(rows: int, k: int, generator: torch.Generator) -> Tensor:
    return torch.zeros(rows, k).scatter_(1, torch.randint(0, k, (rows, 1), generator=generator), 1.0)


def reference(xt: Tensor, pool: Tensor, w: Tensor, v: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(out, grad_w, grad_x) of MixCandidates in float64, the input gradient weighted by v."""
    xt64 = xt.double().requires_grad_()
    w64 = w.double().requires_grad_()
    out = MixCandidates.apply(xt64, pool.reshape(-1), w64)
    (grad_w,) = torch.autograd.grad(out, [w64], g.double())
    grad_x = torch.zeros_like(xt64).index_add_(0, pool.reshape(-1), (v.double().unsqueeze(2) * g.double().unsqueeze(
        1)).reshape(-1, xt.shape[1]))
    return out.detach(), grad_w, grad_x


SHAPES = [(1, 1, 1, 1), (5, 7, 1, 3), (50, 20, 8, 17), (3, 40, 3, 64), (300, 2000, 16, 37), (9, 4, 16, 130)]


@pytest.mark.parametrize("in_dim,rows,k,batch", SHAPES)
@pytest.mark.parametrize("hard", [False, True])
def test_kernels_match_the_torch_reference(in_dim: int, rows: int, k: int, batch: int, hard: bool) -> None:
    gen = torch.Generator().manual_seed(in_dim * 1000 + rows + k + batch)
    xt = torch.rand(in_dim, batch, generator=gen)
    pool = torch.randint(0, in_dim, (rows, k), generator=gen)
    if k > 1:
        pool[0, 1] = pool[0, 0]  # a repeated candidate
    v = torch.softmax(torch.randn(rows, k, generator=gen), 1)
    w = one_hot(rows, k, gen) if hard else v
    g = torch.randn(rows, batch, generator=gen)
    out = candidate_forward(xt.numpy(), pool.numpy(), w.numpy())
    grad_w, grad_x = candidate_backward(xt.numpy(), pool.numpy(), v.numpy(), g.numpy(), True)
    grad_w_only, none = candidate_backward(xt.numpy(), pool.numpy(), v.numpy(), g.numpy(), False)
    want_out, want_w, want_x = reference(xt, pool, w, v, g)
    np.testing.assert_allclose(out, want_out.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_w, want_w.numpy(), rtol=1e-4, atol=1e-4)
    assert grad_x is not None
    np.testing.assert_allclose(grad_x, want_x.numpy(), rtol=1e-4, atol=1e-5)
    assert none is None
    np.testing.assert_array_equal(grad_w_only, grad_w)  # the same bits with or without the input gradient
    if hard:
        np.testing.assert_array_equal(out, xt.numpy()[(pool * w.long()).sum(1).numpy()])  # one-hot: exact copies


def test_inputs_no_pool_reads_get_zero_and_zero_weights_are_skipped() -> None:
    xt = torch.tensor([[1.0, 2.0], [9.0, 9.0], [float("inf"), -0.5]])
    pool = torch.tensor([[0, 2], [0, 2]])
    w = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    out = candidate_forward(xt.numpy(), pool.numpy(), w.numpy())
    np.testing.assert_array_equal(out, [[float("inf"), -0.5], [0.0, 0.0]])
    v = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    _, grad_x = candidate_backward(xt.numpy(), pool.numpy(), v.numpy(), np.array([[1, 2], [4, 8]], np.float32), True)
    assert grad_x is not None
    np.testing.assert_array_equal(grad_x[1], [0.0, 0.0])


def test_fused_mix_gradients_equal_the_torch_function() -> None:
    gen = torch.Generator().manual_seed(3)
    xt = torch.rand(40, 33, generator=gen, requires_grad=True)
    pool = torch.randint(0, 40, (25, 6), generator=gen)
    logits = torch.randn(25, 6, generator=gen, requires_grad=True)
    g = torch.randn(25, 33, generator=gen)
    grads = []
    for fused in (True, False):
        w = torch.softmax(logits, 1)
        out = fused_mix(xt, pool, w) if fused else MixCandidates.apply(xt, pool.reshape(-1), w)
        grads.append((out.detach(), *torch.autograd.grad(out, [xt, logits], g)))
    for got, want in zip(grads[0], grads[1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def _step_grads(layer: torch.nn.Module, x: Tensor, seed: int) -> list[Tensor]:
    torch.manual_seed(seed)  # the same Gumbel noise on both paths
    x = x.clone().requires_grad_()
    out = layer(x)
    loss = (out * torch.linspace(-1, 1, out.shape[1])).sum()
    params = [p for p in layer.parameters()]
    return [out.detach(), *torch.autograd.grad(loss, [x, *params])]


@pytest.mark.parametrize("estimator", ["soft", "hard", "gumbel"])
@pytest.mark.parametrize("k", [1, 8])
def test_logic_layer_learned_wiring_equals_the_torch_path(estimator: str, k: int) -> None:
    torch.manual_seed(0)
    layer = LogicLayer(30, 50, connections="learned", candidates=k, estimator=estimator)  # type: ignore[arg-type]
    with torch.no_grad():
        layer.wire_logits.normal_()
    x = torch.rand(19, 30)
    fused = _step_grads(layer, x, 1)
    with torch_path():
        ref = _step_grads(layer, x, 1)
    for got, want in zip(fused, ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _first_layer_grads(layer: torch.nn.Module, x: Tensor, seed: int) -> list[Tensor]:
    torch.manual_seed(seed)
    out = layer(x)  # x needs no gradient: LogicLayer runs its fused learned-gate kernel
    loss = (out * torch.linspace(-1, 1, out.shape[1])).sum()
    return [out.detach(), *torch.autograd.grad(loss, list(layer.parameters()))]


@pytest.mark.parametrize("estimator", ["soft", "hard", "gumbel"])
@pytest.mark.parametrize("k,out_dim,batch", [(1, 50, 19), (8, 50, 19), (16, 700, 130)])
def test_first_logic_layer_fused_kernel_equals_the_torch_path(estimator: str, k: int, out_dim: int,
                                                               batch: int) -> None:
    torch.manual_seed(0)
    layer = LogicLayer(30, out_dim, connections="learned", candidates=k, estimator=estimator,  # type: ignore[arg-type]
                       grad_factor=2.0)
    with torch.no_grad():
        layer.wire_logits.normal_()
    x = (torch.rand(batch, 30) > 0.5).float()
    fused = _first_layer_grads(layer, x, 1)
    with torch_path():
        ref = _first_layer_grads(layer, x, 1)
    for got, want in zip(fused, ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_learned_gates_declines_what_it_does_not_take() -> None:
    candidates = torch.randint(0, 6, (2, 4, 3))
    weights = torch.full((2, 4, 3), 1 / 3)
    coef = torch.rand(4, 4)
    assert ops_logic.learned_gates(torch.rand(5, 6, requires_grad=True), candidates, weights, coef) is None
    assert ops_logic.learned_gates(torch.rand(5, 6, dtype=torch.float64), candidates, weights.double(),
                                   coef.double()) is None
    assert ops_logic.learned_gates(torch.rand(5, 6), candidates, weights, coef) is not None


@pytest.mark.parametrize("estimator", ["hard", "soft", "gumbel"])
def test_lut_layer_pool_equals_the_torch_path(estimator: str) -> None:
    torch.manual_seed(0)
    layer = LUTLayer(40, 12, n=3, mapping="learnable", candidates=5, estimator=estimator)  # type: ignore[arg-type]
    x = (torch.rand(23, 40) > 0.5).float()
    fused = _step_grads(layer, x, 2)
    with torch_path():
        ref = _step_grads(layer, x, 2)
    for got, want in zip(fused, ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bad_input_raises_input_error() -> None:
    x = np.zeros((3, 2), np.float32)
    pool = np.array([[0, 1], [2, 0]], np.int64)
    w = np.full((2, 2), 0.5, np.float32)
    g = np.zeros((2, 2), np.float32)
    with pytest.raises(bitlogic.InputError, match=r"pool\[1, 0\] = 3"):
        candidate_forward(x, np.array([[0, 1], [3, 0]], np.int64), w)
    with pytest.raises(bitlogic.InputError, match=r"pool\[0, 1\] = -1"):
        candidate_forward(x, np.array([[0, -1], [2, 0]], np.int64), w)
    with pytest.raises(bitlogic.InputError, match=r"pool: expected a 2-dimensional int64"):
        candidate_forward(x, pool.astype(np.int32), w)
    with pytest.raises(bitlogic.InputError, match=r"w: expected shape \[2, 2\]"):
        candidate_forward(x, pool, w[:1])
    with pytest.raises(bitlogic.InputError, match=r"x: expected dtype float32"):
        candidate_forward(x.astype(np.float64), pool, w)
    with pytest.raises(bitlogic.InputError, match=r"k: expected at least 1"):
        candidate_forward(x, np.zeros((2, 0), np.int64), np.zeros((2, 0), np.float32))
    with pytest.raises(bitlogic.InputError, match=r"grad_out: expected 4"):
        candidate_backward(x, pool, w, g[:1], True)
    with pytest.raises(bitlogic.InputError, match=r"v: expected shape"):
        candidate_backward(x, pool, np.ones((2, 1), np.float32), g, False)
    with pytest.raises(bitlogic.InputError, match=r"expected a numpy array"):
        candidate_backward(x, pool.tolist(), w, g, False)  # type: ignore[arg-type]


def test_empty_shapes() -> None:
    out = candidate_forward(np.zeros((4, 0), np.float32), np.zeros((3, 2), np.int64), np.ones((3, 2), np.float32))
    assert out.shape == (3, 0)
    grad_w, grad_x = candidate_backward(np.zeros((4, 0), np.float32), np.zeros((3, 2), np.int64),
                                        np.ones((3, 2), np.float32), np.zeros((3, 0), np.float32), True)
    np.testing.assert_array_equal(grad_w, np.zeros((3, 2)))
    assert grad_x is not None and grad_x.shape == (4, 0)
    grad_w, grad_x = candidate_backward(np.ones((4, 5), np.float32), np.zeros((0, 2), np.int64),
                                        np.ones((0, 2), np.float32), np.zeros((0, 5), np.float32), True)
    assert grad_w.shape == (0, 2) and grad_x is not None
    np.testing.assert_array_equal(grad_x, np.zeros((4, 5)))
