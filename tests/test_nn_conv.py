"""The convolutional layers of bitlogic.nn and their export: shapes, gradients, encoders on images, and the exported
network giving exactly the model's eval() scores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
from bitlogic.export import ExportError
from bitlogic.nn import (
    BinaryConv2d,
    DistributiveThermometer,
    GroupSum,
    LogicConv2d,
    LogicLayer,
    LUTConv2d,
    OrPool2d,
    Sign,
    Thermometer,
)
from bitlogic.ops.conv import output_size, tree_conv

from _exactness import assert_exact, train_steps


def naive_tree_conv(x: torch.Tensor, leaves: torch.Tensor, coef: torch.Tensor, kernel: tuple[int, int],
                    stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The definition, position by position: the leaves' values (0 outside the image), then gate g on nodes 2g and
    2g + 1 appended as node 2**d + g; the last node is the output."""
    batch, _, h, w = x.shape
    trees, width, _ = leaves.shape
    rows, cols = output_size((h, w), kernel, stride, padding)
    out = torch.zeros(batch, trees, rows, cols, dtype=x.dtype)
    for o, yo, xo in itertools.product(range(trees), range(rows), range(cols)):
        nodes = []
        for c, dy, dx in leaves[o].tolist():
            y, xx = yo * stride[0] - padding[0] + dy, xo * stride[1] - padding[1] + dx
            inside = 0 <= y < h and 0 <= xx < w
            nodes.append(x[:, c, y, xx] if inside else torch.zeros(batch, dtype=x.dtype))
        for g in range(width - 1):
            a, b = nodes[2 * g], nodes[2 * g + 1]
            c0, c1, c2, c3 = coef[o, g]
            nodes.append(c0 + c1 * a + (c2 + c3 * a) * b)
        out[:, o, yo, xo] = nodes[-1]
    return out


GEOMETRIES = [((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 1)), ((3, 2), (2, 3), (2, 0)), ((1, 1), (1, 1), (0, 0))]


@pytest.mark.parametrize(("kernel", "stride", "padding"), GEOMETRIES)
@pytest.mark.parametrize("depth", [1, 3])
def test_tree_conv_is_the_tree_at_every_position(kernel: tuple[int, int], stride: tuple[int, int],
                                                 padding: tuple[int, int], depth: int) -> None:
    torch.manual_seed(0)
    layer = LogicConv2d(3, 4, kernel_size=kernel, depth=depth, stride=stride, padding=padding, init="random")
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    coef = layer.coefficients().detach().double()
    got = tree_conv(x, layer.leaves, coef, layer.kernel_size, layer.stride, layer.padding)
    expected = naive_tree_conv(x, layer.leaves, coef, layer.kernel_size, layer.stride, layer.padding)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)
    # float32 (the fused CPU kernels) agrees within rounding
    got32 = layer(x.float())
    assert torch.allclose(got32.double(), expected, atol=1e-5)


def test_tree_conv_gradcheck() -> None:
    torch.manual_seed(1)
    layer = LogicConv2d(2, 3, kernel_size=2, depth=2, stride=1, padding=1, init="random")
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    coef = layer.coefficients().detach().double().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda xi, ci: tree_conv(xi, layer.leaves, ci, layer.kernel_size, layer.stride, layer.padding), (x, coef))
