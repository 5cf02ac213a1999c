"""What the layer families share in their estimators: the names, the exact straight-through and the noise.

A layer with a discrete choice (a gate among the 16, a wire among candidates, a table entry's sign) trains it by one
of :data:`ESTIMATORS`: ``"soft"`` the relaxed value itself; ``"hard"`` the discrete choice forward with the relaxed
gradient backward (straight-through); ``"gumbel"`` a noisy discrete choice forward with the gradient of the
tempered relaxation of the same noisy logits backward. :mod:`bitlogic.ops.logic` and :mod:`bitlogic.ops.lut` say
what each means for their family; the pieces here are the same for both.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

Estimator = Literal["soft", "gumbel", "hard"]
ESTIMATORS: tuple[Estimator, ...] = ("soft", "gumbel", "hard")


class StraightThrough(torch.autograd.Function):
    """``hard`` forward, the gradient handed to ``soft`` backward. Unlike ``hard + soft - soft.detach()`` the forward
    is ``hard`` exactly (no rounding), so a hard-trained layer computes what its ``eval()`` computes."""

    @staticmethod
    def forward(ctx: Any, hard: Tensor, soft: Tensor) -> Tensor:
        return hard.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, grad


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """``hard`` in the forward pass; the gradient goes to ``soft`` (same shape) in the backward pass."""
    out: Tensor = StraightThrough.apply(hard, soft)
    return out


def gumbel_noise(like: Tensor) -> Tensor:
    """Standard Gumbel samples shaped like ``like``, ``-log(E)`` for ``E ~ Exp(1)``, from torch's global generator
    (so ``torch.manual_seed`` reproduces them)."""
    e = torch.empty_like(like).exponential_()
    return -torch.log(e.clamp_min(torch.finfo(like.dtype).tiny))


def logistic_noise(like: Tensor) -> Tensor:
    """Logistic noise ``log(u) - log(1 - u)``, the difference of two Gumbel samples, from torch's global generator."""
    u = torch.rand_like(like).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


def check_estimator(estimator: str, owner: str) -> None:
    """Refuses a name that is not one of :data:`ESTIMATORS`, naming the layer."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"{owner}: estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {estimator!r}")


__all__ = ["ESTIMATORS", "Estimator", "StraightThrough", "check_estimator", "gumbel_noise", "logistic_noise",
           "straight_through"]
