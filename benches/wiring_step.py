"""Time of one training step with learned wiring against the same network with fixed wiring, side by side.

One step is a forward pass, the cross-entropy of a GroupSum head, the backward pass and an Adam step, on a batch of
256 random thermometer-coded samples (the cost does not depend on the values). Two families:

(a) 1568 bits (784 pixels x 2 thresholds) -> LogicLayer 8000 -> GroupSum(10, tau 20): fixed "random" wiring
    against connections="learned" with K = 8 and 16 candidates per gate input, estimators "hard" and "soft";
(b) 2352 bits (784 x 3) -> LUTLayer 2000 LUT6 -> LUTLayer 1000 LUT6 -> GroupSum(10, tau 20): a random first-layer
    mapping against a learnable one over a pool of K = 16 candidates per table input ("hard" estimator, DWN's).

Every variant is timed once per round, the rounds interleaved (A, B, C, A, B, C, ...) so that a busy machine slows
them alike; the table gives the median and minimum ms per step and the ratio learned / fixed of the medians (the
issue's target: at most 2). With ``--torch-mix`` each learned variant also runs on the torch reference of the
candidate mix (ops.logic.MixCandidates, then the gate kernels; ops.lut's torch gradients), the path before the fused
candidate kernels. On a machine shared with other work, ``--threads 1`` gives the steadier figures: with two
threads a step waits for whichever thread the scheduler took away.

    python benches/wiring_step.py [--rounds 15] [--threads N] [--torch-mix]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bitlogic.ops.logic as ops_logic
import bitlogic.ops.lut as ops_lut
from bitlogic.nn import GroupSum, LogicLayer, LUTLayer
from _machine import cpu_name  # benches/ is the script directory, first on sys.path

BATCH, CLASSES, TAU, LR = 256, 10, 20.0, 0.01


def thermometer_bits(batch: int, thresholds: int) -> Tensor:
    """``[batch, 784 * thresholds]`` float bits: random pixels against evenly spaced thresholds."""
    pixels = torch.rand(batch, 784, 1)
    levels = torch.arange(1, thresholds + 1) / (thresholds + 1)
    return (pixels > levels).to(torch.float32).reshape(batch, -1)


@contextmanager
def torch_mix() -> Iterator[None]:
    """The candidate mix on its torch reference while inside (ops.lut imported the check by name)."""
    saved = ops_logic.fused_mix_applies, ops_lut.fused_mix_applies
    ops_logic.fused_mix_applies = ops_lut.fused_mix_applies = lambda *tensors: False
    try:
        yield
    finally:
        ops_logic.fused_mix_applies, ops_lut.fused_mix_applies = saved


class Variant:
    """One model, its optimizer and its data; ``step()`` times one training step in ms."""

    def __init__(self, name: str, family: str, model: nn.Module, x: Tensor, reference: bool = False) -> None:
        self.name, self.family, self.model, self.x, self.reference = name, family, model, x, reference
        self.y = torch.randint(0, CLASSES, (x.shape[0],))
        self.opt = torch.optim.Adam(model.parameters(), lr=LR)
        self.times: list[float] = []

    def step(self) -> float:
        start = time.perf_counter()
        if self.reference:
            with torch_mix():
                self._step()
        else:
            self._step()
        return (time.perf_counter() - start) * 1e3

    def _step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()


def variants(with_reference: bool) -> list[Variant]:
    torch.manual_seed(0)
    bits2, bits3 = thermometer_bits(BATCH, 2), thermometer_bits(BATCH, 3)
    out: list[Variant] = []

    def logic(**kw: object) -> nn.Module:
        return nn.Sequential(LogicLayer(1568, 8000, **kw), GroupSum(CLASSES, TAU))  # type: ignore[arg-type]

    out.append(Variant("logic 8000 fixed random", "logic", logic(connections="random"), bits2))
    for k in (8, 16):
        for est in ("hard", "soft"):
            make: Callable[[], nn.Module] = lambda k=k, est=est: logic(connections="learned", candidates=k,
                                                                        estimator=est)
            out.append(Variant(f"logic 8000 learned K={k} {est}", "logic", make(), bits2))
            if with_reference:
                out.append(Variant(f"logic 8000 learned K={k} {est} (torch mix)", "logic", make(), bits2, True))

    def lut(**kw: object) -> nn.Module:
        return nn.Sequential(LUTLayer(2352, 2000, n=6, **kw), LUTLayer(2000, 1000, n=6),  # type: ignore[arg-type]
                             GroupSum(CLASSES, TAU))

    out.append(Variant("lut 2000+1000 fixed random", "lut", lut(mapping="random"), bits3))
    out.append(Variant("lut 2000+1000 pool K=16", "lut", lut(mapping="learnable", candidates=16), bits3))
    if with_reference:
        out.append(Variant("lut 2000+1000 pool K=16 (torch mix)", "lut", lut(mapping="learnable", candidates=16),
                           bits3, True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed steps per variant (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--torch-mix", action="store_true", help="also time the torch reference of the mix")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runs = variants(args.torch_mix)
    for v in runs:
        for _ in range(args.warmup):
            v.step()
    for _ in range(args.rounds):
        for v in runs:
            v.times.append(v.step())
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
          f"{args.rounds} interleaved rounds")
    print(f"{'model':<44} {'median ms':>10} {'min ms':>8} {'learned/fixed':>14}")
    fixed: dict[str, float] = {}
    for v in runs:
        median = statistics.median(v.times)
        if "fixed" in v.name:
            fixed[v.family] = median
            ratio = ""
        else:
            ratio = f"{median / fixed[v.family]:.2f}x"
        print(f"{v.name:<44} {median:>10.1f} {min(v.times):>8.1f} {ratio:>14}")


if __name__ == "__main__":
    main()
