"""The fused tree-convolution kernels (bitlogic._native.tree_conv_forward / tree_conv_backward, through
ops.conv_kernels) against a plain torch autograd implementation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import bitlogic
from bitlogic._native import tree_conv_backward, tree_conv_forward
from bitlogic.ops.conv_kernels import fused_tree_conv

Pair = tuple[int, int]


def tree_conv_plain(x: Tensor, leaves: Tensor, coef: Tensor, kernel_size: Pair, stride: Pair, padding: Pair) -> Tensor:
    """The tree convolution in plain torch (autograd derives its gradients): gather the leaves from the zero-padded
    input, then one gate per pair of nodes, level by level (gate g reads nodes 2g and 2g + 1)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    xp = F.pad(x, (pw, pw, ph, ph))
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    c, dy, dx = leaves.unbind(-1)  # [O, L] each
    rows = dy[:, :, None, None] + (torch.arange(ho) * sh)[:, None]
    cols = dx[:, :, None, None] + torch.arange(wo) * sw
    nodes = xp[:, c[:, :, None, None], rows, cols]  # [B, O, L, H', W']
    first = 0
    while nodes.shape[2] > 1:
        half = nodes.shape[2] // 2
        c0, c1, c2, c3 = (t[None, :, :, None, None] for t in coef[:, first:first + half].unbind(-1))
        a, b = nodes[:, :, 0::2], nodes[:, :, 1::2]
        nodes = c0 + c1 * a + (c2 + c3 * a) * b
        first += half
    return nodes[:, :, 0]


def problem(seed: int, b: int, c: int, h: int, w: int, o: int, k: Pair, depth: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    per_tree = 2**depth
    leaves = torch.stack([torch.randint(0, c, (o, per_tree), generator=g),
                          torch.randint(0, k[0], (o, per_tree), generator=g),
                          torch.randint(0, k[1], (o, per_tree), generator=g)], dim=-1)
    coef = torch.randn(o, per_tree - 1, 4, generator=g) * 0.5
    return x, leaves, coef


def grads_of(f: Callable[..., Tensor], x: Tensor, leaves: Tensor, coef: Tensor, geometry: tuple[Pair, Pair, Pair],
             grad: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    x, coef = x.clone().requires_grad_(), coef.clone().requires_grad_()
    out = f(x, leaves, coef, *geometry)
    if grad is None:
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    gx, gc = torch.autograd.grad(out, (x, coef), grad)
    return out.detach(), gx, gc


CASES = [
    # (B, C, H, W, O, kernel, stride, padding, depth)
    (1, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0), 1),
    (2, 3, 7, 5, 4, (3, 3), (1, 1), (1, 1), 2),
    (3, 2, 9, 8, 5, (3, 3), (2, 2), (0, 0), 3),
    (2, 4, 6, 7, 3, (2, 3), (2, 1), (2, 1), 4),
    (1, 5, 11, 13, 6, (5, 5), (2, 2), (2, 2), 3),
    (4, 3, 17, 19, 2, (3, 3), (1, 1), (1, 1), 1),  # several chunks of positions per plane
    (3, 6, 10, 10, 8, (3, 2), (1, 2), (0, 1), 4),
]


@pytest.mark.parametrize("b,c,h,w,o,k,s,p,depth", CASES)
@pytest.mark.parametrize("pooled", [False, True])
def test_matches_plain_torch(b: int, c: int, h: int, w: int, o: int, k: Pair, s: Pair, p: Pair, depth: int,
                             pooled: bool) -> None:
    x, leaves, coef = problem(b * 100 + c * 10 + depth, b, c, h, w, o, k, depth)
    geometry = (k, s, p)
    grad = None
    if pooled:  # the gradient of a 2 x 2 max pool after it: most positions get exactly 0
        out = tree_conv_plain(x, leaves, coef, *geometry).requires_grad_()
        pooled_out = F.max_pool2d(out, 2, ceil_mode=True)
        (grad,) = torch.autograd.grad(pooled_out, (out,), torch.randn(pooled_out.shape))
        assert (grad == 0).float().mean() > 0.5 or out.shape[2] * out.shape[3] == 1
    got = grads_of(fused_tree_conv, x, leaves, coef, geometry, grad)  # type: ignore[arg-type]
    want = grads_of(tree_conv_plain, x, leaves, coef, geometry, grad)
    assert got[0].shape == want[0].shape
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


def test_thread_counts_give_the_same_bits() -> None:
    x, leaves, coef = problem(3, 9, 4, 14, 14, 16, (3, 3), 3)
    geometry = ((3, 3), (1, 1), (1, 1))
    g = torch.randn(9, 16, 14, 14)
    g[g < 0.5] = 0  # sparse, as behind a pool
    arrays = (x.numpy(), leaves.numpy(), coef.numpy())
    results = []
    for threads in (1, 2, 3, 0):
        out = tree_conv_forward(*arrays, *geometry, threads=threads)
        gx, gc = tree_conv_backward(*arrays, g.numpy(), *geometry, True, threads=threads)
        none, gc_only = tree_conv_backward(*arrays, g.numpy(), *geometry, False, threads=threads)
        assert none is None and gx is not None
        np.testing.assert_array_equal(gc_only, gc)
        results.append((out, gx, gc))
    for other in results[1:]:
        for a, e in zip(other, results[0]):
            np.testing.assert_array_equal(a, e)


def test_zero_gradients_are_skipped() -> None:
    # x = 1 at (0, 0), read only by output position (0, 0) of a 1 x 1 kernel: its gradient is 0, so a kernel that
    # visited it would add 0 x inf = NaN to the input gradient there.
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    leaves = torch.zeros(1, 2, 3, dtype=torch.int64)
    coef = torch.tensor([[[0.0, float("inf"), 0.0, 0.0]]])
    g = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    gx, gc = tree_conv_backward(x.numpy(), leaves.numpy(), coef.numpy(), g.numpy(), (1, 1), (1, 1), (0, 0), True)
    assert gx is not None
    np.testing.assert_array_equal(gx, [[[[0.0, np.inf], [np.inf, np.inf]]]])
    np.testing.assert_array_equal(gc, [[[3.0, 0.0, 0.0, 0.0]]])
    gx, gc = tree_conv_backward(x.numpy(), leaves.numpy(), coef.numpy(), np.zeros_like(g.numpy()), (1, 1), (1, 1),
                                (0, 0), True)
    assert gx is not None and not gx.any() and not gc.any()


def test_only_the_needed_gradients_and_non_contiguous_inputs() -> None:
    x, leaves, coef = problem(8, 3, 4, 9, 9, 5, (3, 3), 2)
    x_strided = torch.cat([x, x], dim=3)[..., :9]  # not contiguous
    assert not x_strided.is_contiguous()
    coef = coef.requires_grad_()
    out = fused_tree_conv(x_strided, leaves, coef, (3, 3), (1, 1), (1, 1))
    assert out is not None and type(out.grad_fn).__name__ == "FusedTreeConvBackward"
    grad = torch.randn(out.shape).transpose(2, 3).contiguous().transpose(2, 3)  # a non-contiguous gradient
    (gc,) = torch.autograd.grad(out, (coef,), grad)
    (want,) = torch.autograd.grad(tree_conv_plain(x, leaves, coef, (3, 3), (1, 1), (1, 1)), (coef,), grad)
    torch.testing.assert_close(gc, want, rtol=1e-4, atol=1e-5)


def test_returns_none_where_the_kernel_does_not_apply() -> None:
    x, leaves, coef = problem(2, 2, 3, 5, 5, 2, (3, 3), 2)
    geometry = ((3, 3), (1, 1), (1, 1))
    assert fused_tree_conv(x.double(), leaves, coef.double(), *geometry) is None
    assert fused_tree_conv(x, leaves, coef.half(), *geometry) is None
    assert fused_tree_conv(x[0], leaves, coef, *geometry) is None
    assert fused_tree_conv(x, leaves.float(), coef, *geometry) is None
    assert fused_tree_conv(x, leaves[:, :3], coef[:, :2], *geometry) is None  # 3 leaves: not a tree
    deep = torch.zeros(2, 2**9, 3, dtype=torch.int64)
    assert fused_tree_conv(x, deep, torch.zeros(2, 2**9 - 1, 4), *geometry) is None
    assert fused_tree_conv(x, leaves.int(), coef, *geometry) is not None  # int32 leaves take the kernel too


def native_args() -> tuple[Any, ...]:
    x, leaves, coef = problem(4, 2, 3, 5, 5, 2, (3, 3), 2)
    return x.numpy(), leaves.numpy(), coef.numpy(), (3, 3), (1, 1), (1, 1)


def with_leaf(value: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    def change(a: tuple[Any, ...]) -> tuple[Any, ...]:
        leaves = a[1].copy()
        leaves[1, 2] = value
        return (a[0], leaves, *a[2:])
    return change


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: (a[0].astype(np.float64), *a[1:]), "x: expected a 4-dimensional float32 array"),
        (lambda a: (a[0][0], *a[1:]), "x: expected a 4-dimensional float32 array of shape [B, C, H, W]"),
        (lambda a: (a[0][..., ::2], *a[1:]), "x: expected a C-contiguous array"),
        (lambda a: (a[0].tolist(), *a[1:]), "x: expected a numpy array, got list"),
        (lambda a: (a[0], a[1].astype(np.int32), *a[2:]), "leaves: expected a 3-dimensional int64 array"),
        (lambda a: (a[0], a[1][:, :3], a[2][:, :2], *a[3:]), "leaves: expected shape [O, 2**depth, 3]"),
        (with_leaf([3, 0, 0]), "leaves[1, 2] = [3, 0, 0]: expected [c, dy, dx] with c < C = 3"),
        (with_leaf([0, 3, 0]), "dy < kh = 3"),
        (with_leaf([0, 0, -1]), "leaves[1, 2] = [0, 0, -1]: expected nonnegative"),
        (lambda a: (a[0], a[1], np.ascontiguousarray(a[2][:, :2]), *a[3:]), "coef: expected shape [2, 3, 4]"),
        (lambda a: (*a[:3], (9, 3), a[4], a[5]), "kernel_size: expected at most the padded input height 5 + 2 x 1"),
        (lambda a: (*a[:3], (3, 3), (0, 1), a[5]), "stride: expected two integers of at least 1, got (0, 1)"),
        (lambda a: (*a[:3], (3, 3), (1, 1), (-1, 0)), "padding: expected two integers of at least 0"),
        (lambda a: (a[0], np.zeros((1, 2**9, 3), np.int64), np.zeros((1, 2**9 - 1, 4), np.float32), *a[3:]),
         "depth: expected 1..=8, got 9"),
    ],
)
def test_bad_arguments_raise_input_errors(change: Callable[[tuple[Any, ...]], tuple[Any, ...]], message: str) -> None:
    with pytest.raises(bitlogic.InputError) as info:
        tree_conv_forward(*change(native_args()))
    assert message in str(info.value)
    x, leaves, coef, kernel_size, stride, padding = change(native_args())
    with pytest.raises(bitlogic.InputError):
        tree_conv_backward(x, leaves, coef, np.zeros((2, 2, 5, 5), np.float32), kernel_size, stride, padding, True)


def test_bad_gradients_raise_input_errors() -> None:
    x, leaves, coef, kernel_size, stride, padding = native_args()
    geometry = (kernel_size, stride, padding)
    with pytest.raises(bitlogic.InputError, match=r"grad_out: expected shape \[2, 2, 5, 5\]"):
        tree_conv_backward(x, leaves, coef, np.zeros((2, 2, 5, 4), np.float32), *geometry, True)
    with pytest.raises(bitlogic.InputError, match="grad_out: expected a 4-dimensional float32 array"):
        tree_conv_backward(x, leaves, coef, np.zeros((2, 2, 5, 5)), *geometry, True)  # type: ignore[arg-type]
    with pytest.raises(bitlogic.InputError, match="c < C = 3"):
        fused_tree_conv(torch.from_numpy(x), torch.from_numpy(leaves) + torch.tensor([3, 0, 0]),
                        torch.from_numpy(coef), *geometry)
