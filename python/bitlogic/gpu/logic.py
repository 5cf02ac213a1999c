"""LogicLayer on the GPU: the relaxed gates ``c0 + c1*a + c2*b + c3*a*b`` of ``cuda/logic_layer.cu``.

The same contract as the CPU kernels of :mod:`bitlogic.nn._gates`: feature-major activations in and out (the result
is a ``[batch, N]`` view of a ``[N, batch]`` tensor, so stacked layers hand activations on without a transpose),
float32 or bfloat16 activations with float32 coefficients and sums, or float64 throughout (for gradcheck).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bitlogic.gpu._kernels import Backend, backend_for, blocks, i32, i64, pointer

MODULE = "logic_layer.cu"
THREADS = 256
MAX_GRID_Y = 65535
DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float64: "f64"}


def reverse_index(ia: Tensor, ib: Tensor, inputs: int) -> tuple[Tensor, Tensor]:
    """For each input, the gates that read it: int32 ``offsets [inputs + 1]`` and ``readers [2N]``.

    ``readers[offsets[i]:offsets[i + 1]]`` holds ``2 * gate + role`` (role 0 for wire a, 1 for wire b) of every read
    of input ``i``; a gate reading ``i`` on both wires is listed twice.
    """
    gates = ia.numel()
    wires = torch.cat([ia.reshape(-1), ib.reshape(-1)]).to(torch.int64)
    order = torch.argsort(wires, stable=True)
    readers = (2 * (order % gates) + order // gates).to(torch.int32)
    counts = torch.bincount(wires, minlength=inputs)
    offsets = torch.zeros(inputs + 1, dtype=torch.int64, device=ia.device)
    offsets[1:] = torch.cumsum(counts, 0)
    return offsets.to(torch.int32), readers


class _LogicGates(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor, backend: Backend) -> Tensor:
        suffix = DTYPES[x.dtype]
        batch, inputs = x.shape
        gates = ia.numel()
        xt = x.detach().t().contiguous()  # no copy for the output of a previous layer (already feature-major)
        ia32 = ia.to(torch.int32).contiguous()
        ib32 = ib.to(torch.int32).contiguous()
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        c = coef.detach().to(compute).contiguous()
        out = torch.empty(gates, batch, dtype=x.dtype, device=x.device)
        if out.numel():
            backend.launch(
                MODULE, f"logic_forward_{suffix}", (blocks(batch, THREADS), min(gates, MAX_GRID_Y), 1),
                (THREADS, 1, 1), [pointer(xt), pointer(ia32), pointer(ib32), pointer(c), pointer(out), i32(gates),
                                  i64(batch)],
            )
        ctx.save_for_backward(xt, ia32, ib32, c)
        ctx.backend, ctx.suffix, ctx.coef_dtype = backend, suffix, coef.dtype
        return out.t()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, Tensor | None, None]:
        xt, ia32, ib32, c = ctx.saved_tensors
        backend: Backend = ctx.backend
        inputs, batch = xt.shape
        gates = ia32.numel()
        g = grad.t().to(xt.dtype).contiguous()  # feature-major [N, B]; no copy when it already is
        need_x, _, _, need_coef, _ = ctx.needs_input_grad
        grad_x = grad_coef = None
        if need_x:
            gx = torch.empty(inputs, batch, dtype=xt.dtype, device=xt.device)
            if gx.numel():
                offsets, readers = reverse_index(ia32, ib32, inputs)
                backend.launch(
                    MODULE, f"logic_backward_input_{ctx.suffix}",
                    (blocks(batch, THREADS), min(inputs, MAX_GRID_Y), 1), (THREADS, 1, 1),
                    [pointer(xt), pointer(ia32), pointer(ib32), pointer(c), pointer(g), pointer(offsets),
                     pointer(readers), pointer(gx), i32(inputs), i64(batch)],
                )
            grad_x = gx.t()
        if need_coef:
            gc = torch.zeros(gates, 4, dtype=c.dtype, device=xt.device)
            if batch:
                backend.launch(
                    MODULE, f"logic_backward_coef_{ctx.suffix}", (min(blocks(gates, THREADS // 32), MAX_GRID_Y), 1, 1),
                    (THREADS, 1, 1), [pointer(xt), pointer(ia32), pointer(ib32), pointer(g), pointer(gc),
                                      i32(gates), i64(batch)],
                )
            grad_coef = gc.to(ctx.coef_dtype)
        return grad_x, None, None, grad_coef, None


def supports(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> bool:
    """Whether :func:`logic_gates` takes these tensors: 2-D float32/bfloat16/float64 ``x`` on a GPU, the rest beside
    it."""
    return (
        x.device.type == "cuda"
        and x.dim() == 2
        and x.dtype in DTYPES
        and ia.device == x.device
        and ib.device == x.device
        and coef.device == x.device
        and not ia.dtype.is_floating_point
        and not ib.dtype.is_floating_point
    )


def logic_gates(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor, backend: Backend | None = None) -> Tensor:
    """``[B, N]`` outputs ``c0 + c1*a + c2*b + c3*a*b`` with ``a = x[:, ia]``, ``b = x[:, ib]``, ``c = coef[n]``.

    Differentiable in ``x`` and ``coef``; ``backend`` defaults to the kernels of ``x``'s GPU.
    """
    out: Tensor = _LogicGates.apply(x, ia, ib, coef, backend or backend_for(x.device))
    return out


__all__ = ["logic_gates", "reverse_index", "supports"]
