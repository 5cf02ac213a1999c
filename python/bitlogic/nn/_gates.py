"""The arithmetic of a layer of relaxed two-input gates: ``out = c0 + c1*a + c2*b + c3*a*b`` per gate.

Two implementations give the same results up to float rounding:

- :func:`gates_torch`, plain tensor operations, for any device and dtype (autograd derives the backward pass);
- :class:`_FusedGates`, the fused Rust kernels of ``bitlogic._native`` (one pass forward, one backward), for float32
  on the CPU, where the plain version is limited by the memory traffic of its ~18 elementwise passes;
- :func:`bitlogic.gpu.logic.logic_gates`, the CUDA kernels of ``cuda/logic_layer.cu``, for float32 and bfloat16 on a
  GPU (see :mod:`bitlogic.gpu` for when they are used).

:func:`gates` picks the fused kernels when they apply. They work on feature-major activations (``[features,
batch]``, contiguous over the batch) and return a ``[batch, N]`` *view* of a feature-major ``[N, batch]`` result, so a
stack of layers hands activations (and gradients) from one kernel to the next without a transpose.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from bitlogic import _native


def gates_torch(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> Tensor:
    """``[B, N]`` outputs ``c0 + c1*a + c2*b + c3*a*b`` with ``a = x[:, ia]``, ``b = x[:, ib]``, ``c = coef[n]``.

    ``x`` is ``[B, in_dim]``, ``ia`` and ``ib`` are ``[N]`` wire indices and ``coef`` is ``[N, 4]``; any device and
    dtype, differentiable by autograd.
    """
    a = x[:, ia]
    b = x[:, ib]
    c0, c1, c2, c3 = coef.unbind(1)
    return c0 + c1 * a + (c2 + c3 * a) * b


def _wires(w: Tensor) -> npt.NDArray[np.int64]:
    return w.detach().to(device="cpu", dtype=torch.int64).numpy()


class _FusedGates(torch.autograd.Function):
    """:func:`gates_torch` for float32 CPU tensors, computed by the fused kernels of ``bitlogic._native``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> Tensor:
        # x.t() of a [B, in_dim] view of a feature-major [in_dim, B] tensor (what this function returns) is already
        # contiguous, so .contiguous() copies only data fed in sample-major order (the first layer).
        xt = x.detach().t().contiguous()
        ia_np, ib_np = _wires(ia), _wires(ib)
        coef = coef.detach().contiguous()
        out = _native.gate_forward(xt.numpy(), ia_np, ib_np, coef.numpy())
        ctx.save_for_backward(xt, coef)
        ctx.wires = (ia_np, ib_np)
        return torch.from_numpy(out).t()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, Tensor | None]:
        xt, coef = ctx.saved_tensors
        ia_np, ib_np = ctx.wires
        g = grad.t().contiguous().numpy()  # feature-major [N, B]; no copy when it already is
        need_x, _, _, need_coef = ctx.needs_input_grad
        if need_x:
            grad_x, grad_coef = _native.gate_backward(xt.numpy(), ia_np, ib_np, coef.numpy(), g)
            return torch.from_numpy(grad_x).t(), None, None, torch.from_numpy(grad_coef) if need_coef else None
        if need_coef:
            return None, None, None, torch.from_numpy(_native.gate_backward_coef(xt.numpy(), ia_np, ib_np, g))
        return None, None, None, None


def _fused_applies(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> bool:
    return (
        x.dim() == 2
        and x.dtype == torch.float32
        and coef.dtype == torch.float32
        and x.device.type == "cpu"
        and coef.device.type == "cpu"
        and ia.device.type == "cpu"
        and ib.device.type == "cpu"
        and not ia.dtype.is_floating_point
        and not ib.dtype.is_floating_point
    )


def gates(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> Tensor:
    """``[B, N]`` outputs of the relaxed gates ``c0 + c1*a + c2*b + c3*a*b`` (see :func:`gates_torch`).

    Runs the fused Rust kernels for float32 tensors on the CPU, the CUDA kernels on a GPU, and :func:`gates_torch`
    otherwise; all give the same results and gradients up to float rounding. The fused results are transposed views
    of feature-major tensors.
    """
    if _fused_applies(x, ia, ib, coef):
        out: Tensor = _FusedGates.apply(x, ia, ib, coef)
        return out
    if x.device.type == "cuda":
        from bitlogic.gpu import logic, use_kernels

        if logic.supports(x, ia, ib, coef) and use_kernels(x.device):
            return logic.logic_gates(x, ia, ib, coef)
    return gates_torch(x, ia, ib, coef)


__all__ = ["gates", "gates_torch"]
