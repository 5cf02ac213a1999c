"""Time of one training step of a difflogic network: 6 layers x 8000 gates on 784 inputs, batch 100, 10 classes.

One step is a forward pass, the cross-entropy of a GroupSum head (each class sums its 800 outputs, divided by
tau = 30), the backward pass and an Adam step (lr 0.01). Three implementations of the gate layer, side by side:

1. difflogic-style: every layer evaluates the 16 relaxed gates of the difflogic paper (Table 1) explicitly and mixes
   them with the probabilities softmax(w) of its 16 logits per gate;
2. torch 4-coef: the same mixture reduced to four coefficients per gate, ``coef = softmax(w) @ M``, evaluated as
   ``c0 + c1*a + c2*b + c3*a*b`` with tensor operations (``bitlogic.nn._gates.gates_torch``);
3. fused 4-coef: the same, with the fused Rust kernels (``bitlogic.nn._gates.gates``).

Figures depend on the machine: report them with it.

    python benches/train_step.py [--steps 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from bitlogic.nn._gates import gates, gates_torch
from _machine import cpu_name  # benches/ is the script directory, first on sys.path

IN_DIM, WIDTH, DEPTH, BATCH, CLASSES, TAU, LR = 784, 8000, 6, 100, 10, 30.0, 0.01

# (c0, c1, c2, c3) of the 16 relaxed gates, in the order of the difflogic paper's Table 1.
M = torch.tensor(
    [
        [0, 0, 0, 0],  # 0
        [0, 0, 0, 1],  # ab
        [0, 1, 0, -1],  # a - ab
        [0, 1, 0, 0],  # a
        [0, 0, 1, -1],  # b - ab
        [0, 0, 1, 0],  # b
        [0, 1, 1, -2],  # a + b - 2ab
        [0, 1, 1, -1],  # a + b - ab
        [1, -1, -1, 1],  # 1 - (a + b - ab)
        [1, -1, -1, 2],  # 1 - (a + b - 2ab)
        [1, 0, -1, 0],  # 1 - b
        [1, 0, -1, 1],  # 1 - b + ab
        [1, -1, 0, 0],  # 1 - a
        [1, -1, 0, 1],  # 1 - a + ab
        [1, 0, 0, -1],  # 1 - ab
        [1, 0, 0, 0],  # 1
    ],
    dtype=torch.float32,
)

Layer = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def sixteen_gates(x: Tensor, ia: Tensor, ib: Tensor, w: Tensor) -> Tensor:
    """The published formulation: all 16 relaxed gates, weighted by softmax(w) and summed."""
    a, b = x[:, ia], x[:, ib]
    ab = a * b
    ops = [
        torch.zeros_like(a),
        ab,
        a - ab,
        a,
        b - ab,
        b,
        a + b - 2 * ab,
        a + b - ab,
        1 - (a + b - ab),
        1 - (a + b - 2 * ab),
        1 - b,
        1 - b + ab,
        1 - a,
        1 - a + ab,
        1 - ab,
        torch.ones_like(a),
    ]
    p = torch.softmax(w, dim=1)
    out = p[:, 0] * ops[0]
    for i in range(1, 16):
        out = out + p[:, i] * ops[i]
    return out


def four_coef(kernel: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]) -> Layer:
    def layer(x: Tensor, ia: Tensor, ib: Tensor, w: Tensor) -> Tensor:
        return kernel(x, ia, ib, torch.softmax(w, dim=1) @ M)

    return layer


def init_state(seed: int = 0) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor], Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    wires, weights = [], []
    in_dim = IN_DIM
    for _ in range(DEPTH):
        uses = torch.randperm(2 * WIDTH, generator=g) % in_dim  # every input read about equally often
        uses = torch.randperm(in_dim, generator=g)[uses]
        wires.append((uses[:WIDTH].clone(), uses[WIDTH:].clone()))
        weights.append(torch.randn(WIDTH, 16, generator=g))
        in_dim = WIDTH
    x = torch.rand(BATCH, IN_DIM, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return wires, weights, x, y


class Trainer:
    def __init__(self, layer: Layer, seed: int = 0) -> None:
        self.layer = layer
        self.wires, weights, self.x, self.y = init_state(seed)
        self.weights = [w.requires_grad_() for w in weights]
        self.opt = torch.optim.Adam(self.weights, lr=LR)

    def loss(self) -> Tensor:
        h = self.x
        for (ia, ib), w in zip(self.wires, self.weights):
            h = self.layer(h, ia, ib, w)
        # GroupSum over the feature-major view h.t(): the same sums in any layout, and the gradient reaches the last
        # layer as a transposed view of a feature-major tensor, which the fused backward reads without a transpose.
        logits = h.t().unflatten(0, (CLASSES, -1)).sum(1).t() / TAU
        return F.cross_entropy(logits, self.y)

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def seconds_per_step(trainer: Trainer, steps: int, warmup: int = 2) -> tuple[float, float]:
    """Median and fastest time of ``steps`` steps (the median resists the odd interruption)."""
    for _ in range(warmup):
        trainer.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], times[0]



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of the 4-coefficient variants")
    args = parser.parse_args()

    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"network: {DEPTH} x {WIDTH} gates on {IN_DIM} inputs, batch {BATCH}, {CLASSES} classes, Adam lr {LR}")

    # The torch and fused 4-coefficient paths agree: same loss before and after one step from the same state.
    torch_run, fused_run = Trainer(four_coef(gates_torch)), Trainer(four_coef(gates))
    first = (torch_run.step(), fused_run.step())
    with torch.no_grad():
        second = (float(torch_run.loss()), float(fused_run.loss()))
    for name, (a, b) in (("initial", first), ("after one step", second)):
        assert abs(a - b) <= 1e-4, f"{name} loss: torch 4-coef {a:.7f} vs fused {b:.7f}"
    print(f"loss check: torch {first[0]:.6f} / fused {first[1]:.6f}; after one step {second[0]:.6f} / {second[1]:.6f}")

    variants = [
        ("difflogic-style (16 gates)", Trainer(sixteen_gates), max(3, args.steps // 5)),
        ("torch 4-coef", torch_run, args.steps),
        ("fused 4-coef (Rust)", fused_run, args.steps),
    ]
    baseline = None
    print(f"{'variant':<28} {'steps':>5} {'median ms':>10} {'min ms':>8} {'speedup':>8}")
    for name, trainer, steps in variants:
        median, fastest = seconds_per_step(trainer, steps)
        baseline = baseline or median
        print(f"{name:<28} {steps:5d} {median * 1e3:10.1f} {fastest * 1e3:8.1f} {baseline / median:7.1f}x")
    print("speedup: of the median over the difflogic-style median")


if __name__ == "__main__":
    main()
