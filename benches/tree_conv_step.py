"""Time of a tree convolution (LogicConv2d's arithmetic), the fused CPU kernel against the torch path, side by side.

The default is a LogicTreeNet-like first layer on MNIST-sized input: B = 100 images of 28 x 28 with 16 channels
(thermometer bits), 32 trees of depth 3 over 3 x 3 windows, padding 1. Two figures per path: the forward pass
alone, and forward + backward through a 2 x 2 max pool (as LogicTreeNet's OR pool while training: 3 of 4 output
gradients are exactly 0, which the fused backward pass skips) with gradients for the coefficients and, with
``--input-grad``, the input. The torch path is ``bitlogic.ops.conv.tree_conv`` with its fused kernel switched off (the
gather, then one gate layer per tree level, itself on the fused gate kernels); both paths' outputs and gradients are
checked equal before timing. Figures depend on the machine: report them with it.

    python benches/tree_conv_step.py [--batch 100] [--channels 16] [--out 32] [--size 28] [--depth 3] [--repeat 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

import bitlogic.ops.conv as conv_module
from bitlogic.ops.conv_kernels import fused_tree_conv
from _machine import cpu_name  # benches/ is the script directory, first on sys.path

Pair = tuple[int, int]
Conv = Callable[[Tensor, Tensor, Tensor, Pair, Pair, Pair], Tensor]


def torch_path() -> tuple[str, Conv]:
    """The reference path: ``bitlogic.ops.conv.tree_conv`` with its fused kernel switched off (the gather, then one
    :func:`bitlogic.ops.logic.gates` call per tree level)."""

    def unfused(x: Tensor, leaves: Tensor, coef: Tensor, kernel_size: Pair, stride: Pair, padding: Pair) -> Tensor:
        saved = getattr(conv_module, "fused_tree_conv")
        setattr(conv_module, "fused_tree_conv", lambda *args: None)  # ops.conv imported it by name
        try:
            return conv_module.tree_conv(x, leaves, coef, kernel_size, stride, padding)
        finally:
            setattr(conv_module, "fused_tree_conv", saved)

    return "ops.conv.tree_conv, gather + gate layers", unfused


def fused(x: Tensor, leaves: Tensor, coef: Tensor, kernel_size: Pair, stride: Pair, padding: Pair) -> Tensor:
    out = fused_tree_conv(x, leaves, coef, kernel_size, stride, padding)
    if out is None:
        raise SystemExit("the fused kernel does not take these tensors")
    return out


def timed(step: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of ``step`` over ``repeat`` runs, after two warm-up runs."""
    for _ in range(2):
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--out", type=int, default=32)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--padding", type=int, default=1)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--input-grad", action="store_true", help="also the gradient of the input")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    k, per_tree = args.kernel, 2**args.depth
    x = (torch.rand(args.batch, args.channels, args.size, args.size, generator=g) > 0.5).float()
    x.requires_grad_(args.input_grad)
    leaves = torch.stack([torch.randint(0, args.channels, (args.out, per_tree), generator=g),
                          torch.randint(0, k, (args.out, per_tree), generator=g),
                          torch.randint(0, k, (args.out, per_tree), generator=g)], dim=-1)
    coef = (torch.randn(args.out, per_tree - 1, 4, generator=g) * 0.5).requires_grad_()
    geometry = ((k, k), (args.stride, args.stride), (args.padding, args.padding))
    name, reference = torch_path()
    wrt = [t for t in (x, coef) if t.requires_grad]

    def forward(conv: Conv) -> Callable[[], object]:
        def step() -> object:
            with torch.no_grad():
                return conv(x, leaves, coef, *geometry)
        return step

    def training(conv: Conv) -> Callable[[], list[Tensor]]:
        def step() -> list[Tensor]:
            pooled = F.max_pool2d(conv(x, leaves, coef, *geometry), 2, ceil_mode=True)
            return list(torch.autograd.grad(pooled.square().sum(), wrt))
        return step

    for got, want in zip(training(fused)(), training(reference)()):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(forward(fused)(), forward(reference)(), rtol=1e-4, atol=1e-5)

    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"B={args.batch} C={args.channels} {args.size}x{args.size} -> O={args.out}, k={k}, stride {args.stride}, "
          f"padding {args.padding}, depth {args.depth}; forward+backward through a 2x2 max pool, gradients of "
          f"{'x and coef' if args.input_grad else 'coef'}; median of {args.repeat}")
    print(f"{'path':40s} {'forward ms':>12s} {'fwd+bwd ms':>12s}")
    for label, conv in (("fused CPU kernel", fused), (name, reference)):
        print(f"{label:40s} {timed(forward(conv), args.repeat):12.2f} {timed(training(conv), args.repeat):12.2f}")


if __name__ == "__main__":
    main()
