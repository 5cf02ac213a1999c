"""The fused Rust kernels of a layer of relaxed gates against the plain torch formulation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bitlogic import _native  # noqa: E402
from bitlogic.ops.logic import FusedGates, gates, gates_torch  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-5}


def layer(batch: int, in_dim: int, n: int, seed: int, same_wire: bool = True) -> tuple[Any, Any, Any, Any, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, in_dim, generator=g)
    ia = torch.randint(0, in_dim, (n,), generator=g)
    ib = torch.randint(0, in_dim, (n,), generator=g)
    if same_wire:
        ib[::3] = ia[::3]  # gates reading one wire twice
    coef = torch.randn(n, 4, generator=g)
    grad = torch.randn(batch, n, generator=g)
    return x, ia, ib, coef, grad


def grads(out: Any, grad: Any, *inputs: Any) -> tuple[Any, ...]:
    return tuple(torch.autograd.grad(out, inputs, grad))


@pytest.mark.parametrize("batch", [1, 7, 16, 100])
@pytest.mark.parametrize("in_dim,n", [(1, 1), (1, 6), (2, 9), (13, 1), (13, 40), (50, 64), (50, 3)])
def test_fused_matches_torch(batch: int, in_dim: int, n: int) -> None:
    x, ia, ib, coef, grad = layer(batch, in_dim, n, seed=batch * 1000 + in_dim * 10 + n)
    x.requires_grad_()
    coef.requires_grad_()
    fused = FusedGates.apply(x, ia, ib, coef)
    plain = gates_torch(x, ia, ib, coef)
    assert fused.shape == (batch, n)
    torch.testing.assert_close(fused, plain, **TOL)
    for got, want in zip(grads(fused, grad, x, coef), grads(plain, grad, x, coef)):
        torch.testing.assert_close(got, want, **TOL)


def test_same_wire_and_unused_inputs() -> None:
    x = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.25, 0.7]], requires_grad=True)
    ia, ib = torch.tensor([1]), torch.tensor([1])  # one gate reading wire 1 twice; wires 0 and 2 unused
    coef = torch.tensor([[0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    out = FusedGates.apply(x, ia, ib, coef)
    (gx,) = torch.autograd.grad(out.sum(), (x,))
    v = x.detach()[:, 1]
    torch.testing.assert_close(gx[:, 1], 0.2 + 0.3 + 2 * 0.4 * v)  # d/dv of c0 + (c1 + c2) v + c3 v^2
    assert gx[:, 0].abs().max() == 0 and gx[:, 2].abs().max() == 0


@pytest.mark.parametrize("layout", ["transposed", "strided", "expanded"])
def test_non_contiguous_inputs_and_gradients(layout: str) -> None:
    x, ia, ib, coef, grad = layer(9, 12, 20, seed=7)
    if layout == "transposed":
        x_in = x.t().contiguous().t()  # feature-major storage, as a fused layer returns it
        grad_in = grad.t().contiguous().t()
    elif layout == "strided":
        x_in = torch.cat([x, x], dim=1)[:, ::2]
        grad_in = torch.cat([grad, grad], dim=0)[::2]
    else:
        x_in = x[:1].expand(9, 12)
        grad_in = grad[:, :1].expand(9, 20)
    x_in = x_in.detach().requires_grad_()
    coef = coef.t().contiguous().t().requires_grad_()  # non-contiguous coefficients too
    fused = FusedGates.apply(x_in, ia, ib, coef)
    plain = gates_torch(x_in, ia, ib, coef)
    torch.testing.assert_close(fused, plain, **TOL)
    for got, want in zip(grads(fused, grad_in, x_in, coef), grads(plain, grad_in, x_in, coef)):
        torch.testing.assert_close(got, want, **TOL)


def test_chained_layers_pass_feature_major_views() -> None:
    x, ia, ib, coef, _ = layer(5, 30, 40, seed=3)
    ia2, ib2 = torch.randint(0, 40, (25,)), torch.randint(0, 40, (25,))
    coef2 = torch.randn(25, 4)
    for c in (coef, coef2):
        c.requires_grad_()
    h = FusedGates.apply(x, ia, ib, coef)
    assert h.t().is_contiguous()  # the next layer reads it without a copy
    fused = FusedGates.apply(h, ia2, ib2, coef2)
    plain = gates_torch(gates_torch(x, ia, ib, coef), ia2, ib2, coef2)
    torch.testing.assert_close(fused, plain, **TOL)
    grad = torch.randn(5, 25)
    for got, want in zip(grads(fused, grad, coef, coef2), grads(plain, grad, coef, coef2)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("need", ["x", "coef", "both"])
def test_only_the_needed_gradients(need: str) -> None:
    x, ia, ib, coef, grad = layer(7, 10, 15, seed=11)
    x.requires_grad_(need in ("x", "both"))
    coef.requires_grad_(need in ("coef", "both"))
    inputs = [t for t in (x, coef) if t.requires_grad]
    got = grads(FusedGates.apply(x, ia, ib, coef), grad, *inputs)
    want = grads(gates_torch(x, ia, ib, coef), grad, *inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


def test_dispatcher() -> None:
    x, ia, ib, coef, _ = layer(4, 6, 5, seed=5)
    coef.requires_grad_()
    out = gates(x, ia, ib, coef)
    assert type(out.grad_fn).__name__ == "FusedGatesBackward"
    out64 = gates(x.double(), ia, ib, coef.double())
    assert type(out64.grad_fn).__name__ != "FusedGatesBackward"
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, gates_torch(x.double(), ia, ib, coef.double()))
    torch.testing.assert_close(out64.float(), out, **TOL)
    int_wires = gates(x, ia.int(), ib.int(), coef)  # int32 wires take the fused path too
    torch.testing.assert_close(int_wires, out)


def test_gradcheck_of_the_torch_reference() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    coef = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    ia, ib = torch.tensor([0, 1, 2, 3, 2]), torch.tensor([1, 1, 3, 0, 2])
    assert torch.autograd.gradcheck(lambda x, c: gates_torch(x, ia, ib, c), (x, coef))


def native_args() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)  # in_dim 3, batch 4
    return x, np.array([0, 2], dtype=np.int64), np.array([1, 1], dtype=np.int64), np.zeros((2, 4), np.float32)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: (a[0].astype(np.float64), *a[1:]), "x: expected dtype float32, got float64"),
        (lambda a: (np.asfortranarray(a[0]), *a[1:]), "x: expected a C-contiguous array"),
        (lambda a: (a[0][:, ::2], *a[1:]), "x: expected a C-contiguous array"),
        (lambda a: (a[0].ravel(), *a[1:]), "x: expected a 2-dimensional float32 array of shape [in_dim, batch]"),
        (lambda a: (a[0].tolist(), *a[1:]), "x: expected a numpy array, got list"),
        (lambda a: (a[0], np.array([0, -1]), a[2], a[3]), "ia[1] = -1: expected a wire in [0, 3)"),
        (lambda a: (a[0], a[1], np.array([0, 3]), a[3]), "ib[1] = 3: expected a wire in [0, 3)"),
        (lambda a: (a[0], a[1].astype(np.int32), a[2], a[3]), "ia: expected a 1-dimensional int64 array"),
        (lambda a: (a[0], a[1], np.array([0]), a[3]), "ib: expected 2 wires"),
        (lambda a: (*a[:3], np.zeros((2, 3), np.float32)), "coef: expected shape [N, 4], got [2, 3]"),
        (lambda a: (*a[:3], np.zeros((3, 4), np.float32)), "coef: expected 2"),
    ],
)
def test_native_errors(change: Callable[[tuple[Any, ...]], tuple[Any, ...]], message: str) -> None:
    with pytest.raises(_native.InputError) as info:
        _native.gate_forward(*change(native_args()))
    assert message in str(info.value)


def test_native_backward_errors() -> None:
    x, ia, ib, coef = native_args()
    grad_x, grad_coef = _native.gate_backward(x, ia, ib, coef, np.ones((2, 4), np.float32))
    assert grad_x.shape == (3, 4) and grad_coef.shape == (2, 4)
    with pytest.raises(_native.InputError, match=r"grad_out: expected 8 \(N x batch values\), got 6"):
        _native.gate_backward(x, ia, ib, coef, np.ones((2, 3), np.float32))
    with pytest.raises(_native.InputError, match="grad_out: expected dtype float32"):
        _native.gate_backward_coef(x, ia, ib, np.ones((2, 4)))  # type: ignore[arg-type]
    np.testing.assert_array_equal(_native.gate_backward_coef(x, ia, ib, np.ones((2, 4), np.float32)), grad_coef)
