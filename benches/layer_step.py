"""Training-step time of whole bitlogic.nn models, bitlogic's kernels against the pure-torch path, side by side.

Three models, each a forward pass, a GroupSum cross-entropy, the backward pass and an Adam step on random data:

* logic: 6 x 8000 LogicLayers on 784 inputs (the random 6 x 8000 network of the speed figures);
* lut: LUTLayers of 2000 + 1000 six-input tables on 2352 inputs (random mapping), ste outputs;
* binary: BinaryLinear 2352 -> 2048 -> 2048 -> 1000 with BatchNorm1d and Sign after each.

"kernels" runs the layers as they run by default (on a GPU the CUDA kernels of cuda/, on the CPU the fused Rust
gate kernels); "torch" sets ``BITLOGIC_CUDA_KERNELS=0`` and, on the CPU, calls the plain-torch gate arithmetic, so
both columns train the same model from the same state. Each step's loss is checked equal (within float tolerance)
between the two before timing. Figures depend on the machine: report them with it.

    python benches/layer_step.py [--device cuda] [--batch 512] [--dtype bfloat16] [--steps 20] [--models logic,lut]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

import bitlogic.ops.logic as gates_module
from bitlogic.nn import BinaryLinear, GroupSum, LogicLayer, LUTLayer, Sign
from _machine import cpu_name  # benches/ is the script directory, first on sys.path

CLASSES = 10


def logic_model() -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [LogicLayer(784, 8000)] + [LogicLayer(8000, 8000) for _ in range(5)]
    return nn.Sequential(*layers, GroupSum(CLASSES, 30.0)), 784


def lut_model() -> tuple[nn.Module, int]:
    return nn.Sequential(LUTLayer(2352, 2000, n=6), LUTLayer(2000, 1000, n=6), GroupSum(CLASSES, 10 / 3)), 2352


def binary_model() -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    width = 2352
    for out in (2048, 2048, 1000):
        layers += [BinaryLinear(width, out), nn.BatchNorm1d(out), Sign()]
        width = out
    return nn.Sequential(*layers, GroupSum(CLASSES, 10.0)), 2352


MODELS: dict[str, Callable[[], tuple[nn.Module, int]]] = {"logic": logic_model, "lut": lut_model,
                                                          "binary": binary_model}


@contextlib.contextmanager
def pure_torch(device: torch.device) -> Iterator[None]:
    """The layers' pure-torch path: CUDA kernels off, and on the CPU the plain gate arithmetic instead of Rust."""
    saved_env = os.environ.get("BITLOGIC_CUDA_KERNELS")
    saved_gates = gates_module._fused_applies
    os.environ["BITLOGIC_CUDA_KERNELS"] = "0"
    if device.type == "cpu":
        gates_module._fused_applies = lambda *args: False
    try:
        yield
    finally:
        gates_module._fused_applies = saved_gates
        if saved_env is None:
            os.environ.pop("BITLOGIC_CUDA_KERNELS", None)
        else:
            os.environ["BITLOGIC_CUDA_KERNELS"] = saved_env


class Run:
    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.model, self.x, self.y, self.device = model.train(), x, y, device
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.01)

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x).float(), self.y)
        loss.backward()
        self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return float(loss.detach())


def median_seconds(run: Run, steps: int, torch_path: bool) -> float:
    times = []
    with pure_torch(run.device) if torch_path else contextlib.nullcontext():
        run.step()  # warm-up (and, on a GPU, the kernels' first compile or cache load)
        for _ in range(steps):
            start = time.perf_counter()
            run.step()
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="activations")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", default="logic,lut,binary", help="comma-separated subset of logic,lut,binary")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU on this machine")
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{cpu_name()}, {torch.get_num_threads()} torch threads")
    print(f"{where}; torch {torch.__version__}; batch {args.batch}, {args.dtype} activations, Adam, median of "
          f"{args.steps} steps")
    print(f"{'model':<8} {'kernels ms':>11} {'torch ms':>10} {'speedup':>8}   loss check (kernels / torch)")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model, inputs = MODELS[name]()
        model = model.to(device)
        x = (torch.rand(args.batch, inputs, device=device) > 0.5).to(dtype)
        y = torch.randint(0, CLASSES, (args.batch,), device=device)
        kernels, reference = Run(model, x, y, device), Run(copy.deepcopy(model), x, y, device)
        first = kernels.step()
        with pure_torch(device):
            second = reference.step()
        tolerance = 1e-3 if dtype == torch.float32 else 3e-2
        assert abs(first - second) <= tolerance * max(1.0, abs(second)), f"{name}: loss {first} vs {second}"
        fast = median_seconds(kernels, args.steps, torch_path=False)
        slow = median_seconds(reference, args.steps, torch_path=True)
        print(f"{name:<8} {fast * 1e3:11.1f} {slow * 1e3:10.1f} {slow / fast:7.1f}x   {first:.5f} / {second:.5f}")


if __name__ == "__main__":
    main()
