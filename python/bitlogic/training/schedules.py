"""The learning-rate schedules, stepped once per optimizer step.

``lr`` is the schedule's peak (one-cycle) or starting value (cosine, constant, step):

- ``"one-cycle"`` (also spelled ``"onecycle"``, the default): torch's ``OneCycleLR``, a 10 % warm-up from ``lr / 25``
  to ``lr``, then cosine decay to ``lr / 25e4``.
- ``"cosine"``: cosine decay from ``lr`` to 0 over the run: ``lr * (1 + cos(pi * t / T)) / 2`` at step ``t`` of ``T``.
- ``"constant"``: ``lr`` at every step.
- ``"step"``: ``lr * gamma ** (epoch // step_size)`` (``epoch`` 0-based): multiplied by ``gamma`` (default 0.1)
  every ``step_size`` epochs (default: a third of the run, rounded up, so a run has three plateaus).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from bitlogic.errors import InputError

Schedule = Literal["one-cycle", "onecycle", "cosine", "constant", "step"]
#: The names :func:`make_scheduler` knows, as the checkpoints store them.
SCHEDULES = ("onecycle", "cosine", "constant", "step")
#: The default decay factor of ``"step"``.
STEP_GAMMA = 0.1


def canonical(schedule: str) -> str:
    """The name a checkpoint stores: ``"one-cycle"`` is stored as ``"onecycle"`` (its name before there were four)."""
    name = "onecycle" if schedule == "one-cycle" else schedule
    if name not in SCHEDULES:
        raise InputError(f"unknown schedule {schedule!r}; choose one-cycle, cosine, constant or step")
    return name


def default_step_size(epochs: int) -> int:
    """``"step"``'s default period in epochs: a third of the run, rounded up."""
    return max(1, math.ceil(epochs / 3))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    lr: float,
    total_steps: int,
    *,
    steps_per_epoch: int = 1,
    step_size: int = 1,
    gamma: float = STEP_GAMMA,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``schedule`` over ``total_steps`` optimizer steps (``steps_per_epoch``, ``step_size`` and
    ``gamma`` serve ``"step"``, whose period is counted in epochs)."""
    name = canonical(schedule)
    if name == "onecycle":
        # OneCycleLR divides by (pct_start * total_steps - 1): keep that away from zero on very short runs.
        pct_start = 0.1
        while float(pct_start * total_steps) - 1 == 0:
            pct_start *= 1.5
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start
        )
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size * steps_per_epoch, gamma=gamma)


__all__ = ["SCHEDULES", "STEP_GAMMA", "Schedule", "canonical", "default_step_size", "make_scheduler"]
