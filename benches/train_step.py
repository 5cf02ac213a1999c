"""Time of one training step of a difflogic network: 6 layers x 8000 gates on 784 inputs, 10 classes.

One step is a forward pass, the cross-entropy of a GroupSum head (each class sums its 800 outputs, divided by
tau = 30), the backward pass and an Adam step (lr 0.01). Three implementations of the gate layer, side by side:

1. difflogic-style: every layer evaluates the 16 relaxed gates of the difflogic paper (Table 1) explicitly and mixes
   them with the probabilities softmax(w) of its 16 logits per gate;
2. torch 4-coef: the same mixture reduced to four coefficients per gate, ``coef = softmax(w) @ M``, evaluated as
   ``c0 + c1*a + c2*b + c3*a*b`` with tensor operations (``bitlogic.ops.logic.gates_torch``);
3. fused 4-coef: the same, with bitlogic's kernels (``bitlogic.ops.logic.gates``): the fused Rust kernels on the
   CPU, the CUDA kernels of ``cuda/logic_layer.cu`` with ``--device cuda`` (float32, or bfloat16 activations with
   ``--dtype bfloat16``).

On the CPU it then times the fused step against itself, interleaved (one step of each in turn, so that a busy
machine slows both alike): with the kernels on ``torch.get_num_threads()`` threads, the caller and helpers that sleep
while idle (the default, see ``bitlogic.ops._threads``), and on rayon's pool, whose idle workers spin, how the
kernels ran before (``BITLOGIC_KERNEL_POOL=rayon`` or ``bitlogic.ops._threads.rayon_pool = True`` selects it). Beside them, the kernels alone: the same six
forward and backward calls, without torch around them, which is what the step's kernel part can at best cost. Run it
with other thread settings to compare (``OMP_WAIT_POLICY=PASSIVE``, ``OMP_NUM_THREADS=1``, ``--threads 1``).

Figures depend on the machine: report them with it. The default batch is 100 on the CPU and 512 on a GPU.

    python benches/train_step.py [--steps 20] [--device cuda] [--batch 512] [--dtype bfloat16] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from bitlogic import _native
from bitlogic.ops import _threads
from bitlogic.ops.logic import gates, gates_torch
from _machine import cpu_name  # benches/ is the script directory, first on sys.path

IN_DIM, WIDTH, DEPTH, CLASSES, TAU, LR = 784, 8000, 6, 10, 30.0, 0.01

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
        return kernel(x, ia, ib, (torch.softmax(w, dim=1) @ M.to(w.device)).to(x.dtype))

    return layer


def init_state(batch: int, seed: int = 0) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor], Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    wires, weights = [], []
    in_dim = IN_DIM
    for _ in range(DEPTH):
        uses = torch.randperm(2 * WIDTH, generator=g) % in_dim  # every input read about equally often
        uses = torch.randperm(in_dim, generator=g)[uses]
        wires.append((uses[:WIDTH].clone(), uses[WIDTH:].clone()))
        weights.append(torch.randn(WIDTH, 16, generator=g))
        in_dim = WIDTH
    x = torch.rand(batch, IN_DIM, generator=g)
    y = torch.randint(0, CLASSES, (batch,), generator=g)
    return wires, weights, x, y


class Trainer:
    def __init__(self, layer: Layer, batch: int, device: torch.device, dtype: torch.dtype, seed: int = 0) -> None:
        self.layer, self.device = layer, device
        wires, weights, x, y = init_state(batch, seed)
        self.wires = [(a.to(device), b.to(device)) for a, b in wires]
        self.x, self.y = x.to(device, dtype), y.to(device)
        self.weights = [w.to(device).requires_grad_() for w in weights]
        self.opt = torch.optim.Adam(self.weights, lr=LR)

    def loss(self) -> Tensor:
        h = self.x
        for (ia, ib), w in zip(self.wires, self.weights):
            h = self.layer(h, ia, ib, w)
        # GroupSum over the feature-major view h.t(): the same sums in any layout, and the gradient reaches the last
        # layer as a transposed view of a feature-major tensor, which the fused backward reads without a transpose.
        logits = h.t().unflatten(0, (CLASSES, -1)).sum(1).t().float() / TAU
        return F.cross_entropy(logits, self.y)

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
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


def median_min(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return times[len(times) // 2], times[0]


def kernels_alone(trainer: Trainer) -> Callable[[], None]:
    """The native calls of one fused step (six forward, five full backward and the first layer's coefficient
    gradient) on the trainer's shapes, with nothing of torch between them."""
    h = trainer.x.t().contiguous().numpy()
    layers = []
    for (ia, ib), w in zip(trainer.wires, trainer.weights):
        coef = (torch.softmax(w.detach(), dim=1) @ M).numpy()
        ia_np, ib_np = ia.numpy(), ib.numpy()
        layers.append((h, ia_np, ib_np, coef))
        h = _native.gate_forward(h, ia_np, ib_np, coef)
    g = torch.rand(h.shape, generator=torch.Generator().manual_seed(1)).numpy()

    def run() -> None:
        threads = _threads.kernel_threads()
        for x, ia_np, ib_np, coef in layers:
            _native.gate_forward(x, ia_np, ib_np, coef, threads=threads)
        for k, (x, ia_np, ib_np, coef) in reversed(list(enumerate(layers))):
            if k:
                _native.gate_backward(x, ia_np, ib_np, coef, g, threads=threads)
            else:
                _native.gate_backward_coef(x, ia_np, ib_np, g, threads=threads)

    return run


def compare_kernel_threads(trainer: Trainer, steps: int) -> None:
    """The fused step with the kernels on their helper threads and on rayon's pool, and the kernels alone on
    either, interleaved."""
    alone = kernels_alone(trainer)
    variants: list[tuple[str, bool, Callable[[], object]]] = [
        ("step, kernels on rayon's pool (before)", True, trainer.step),
        ("step, kernels on helper threads (now)", False, trainer.step),
        ("kernels alone, helper threads", False, alone),
        ("kernels alone, rayon's pool", True, alone),
    ]
    times: list[list[float]] = [[] for _ in variants]
    saved = _threads.rayon_pool
    try:
        for i in range(steps + 2):
            for (_, rayon, run), record in zip(variants, times):
                _threads.rayon_pool = rayon
                start = time.perf_counter()
                run()
                if i >= 2:  # two warm-up rounds
                    record.append(time.perf_counter() - start)
    finally:
        _threads.rayon_pool = saved
    wait = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"\nfused step, interleaved ({steps} rounds; torch {torch.get_num_threads()} threads, OMP_WAIT_POLICY {wait}, "
          f"load {os.getloadavg()[0]:.1f}):")
    print(f"{'variant':<40} {'median ms':>10} {'min ms':>8}")
    for (name, _, _), record in zip(variants, times):
        median, fastest = median_min(record)
        print(f"{name:<40} {median * 1e3:10.1f} {fastest * 1e3:8.1f}")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of the 4-coefficient variants")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 100 on the CPU, 512 on a GPU)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="activations")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    batch = args.batch or (512 if device.type == "cuda" else 100)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA GPU on this machine")
        print(f"GPU: {torch.cuda.get_device_name(device)}; torch {torch.__version__}, CUDA {torch.version.cuda}")
        fused_name = "CUDA kernels 4-coef"
    else:
        print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
        fused_name = "fused 4-coef (Rust)"
        if dtype != torch.float32:
            raise SystemExit("--dtype bfloat16: the CPU kernels are float32; use --device cuda")
    print(f"network: {DEPTH} x {WIDTH} gates on {IN_DIM} inputs, batch {batch}, {CLASSES} classes, Adam lr {LR}, "
          f"{args.dtype} activations")

    # The torch and fused 4-coefficient paths agree: same loss before and after one step from the same state.
    torch_run = Trainer(four_coef(gates_torch), batch, device, dtype)
    fused_run = Trainer(four_coef(gates), batch, device, dtype)
    first = (torch_run.step(), fused_run.step())
    with torch.no_grad():
        second = (float(torch_run.loss()), float(fused_run.loss()))
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    for name, (a, b) in (("initial", first), ("after one step", second)):
        assert abs(a - b) <= tolerance, f"{name} loss: torch 4-coef {a:.7f} vs {fused_name} {b:.7f}"
    print(f"loss check: torch {first[0]:.6f} / {fused_name} {first[1]:.6f}; after one step {second[0]:.6f} / "
          f"{second[1]:.6f}")

    variants = [
        ("difflogic-style (16 gates)", Trainer(sixteen_gates, batch, device, dtype), max(3, args.steps // 5)),
        ("torch 4-coef", torch_run, args.steps),
        (fused_name, fused_run, args.steps),
    ]
    baseline = None
    print(f"{'variant':<28} {'steps':>5} {'median ms':>10} {'min ms':>8} {'speedup':>8}")
    for name, trainer, steps in variants:
        median, fastest = seconds_per_step(trainer, steps)
        baseline = baseline or median
        print(f"{name:<28} {steps:5d} {median * 1e3:10.1f} {fastest * 1e3:8.1f} {baseline / median:7.1f}x")
    print("speedup: of the median over the difflogic-style median")
    if device.type == "cpu":
        compare_kernel_threads(fused_run, args.steps)


if __name__ == "__main__":
    main()
