"""The launches of ``cuda/logic_layer.cu``: relaxed gates ``c0 + c1*a + c2*b + c3*a*b``, forward and backward.

Activations and gradients are feature-major (``[features, batch]``, contiguous over the batch), float32 or bfloat16
with float32 coefficients and sums, or float64 throughout (for gradcheck). The autograd function around these
launches, and the rule for when they run, are :mod:`bitlogic.ops.logic`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from bitlogic.gpu._kernels import Backend, blocks, i32, i64, pointer

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
    ordered, order = torch.sort(wires, stable=True)
    readers = (2 * (order % gates) + order // gates).to(torch.int32)
    # searchsorted rather than bincount: bincount on a GPU reads the maximum back to the host, a sync per call.
    bounds = torch.arange(inputs + 1, dtype=torch.int64, device=ia.device)
    offsets = torch.searchsorted(ordered, bounds)
    return offsets.to(torch.int32), readers


@dataclass
class Wiring:
    """The int32 wires of a layer and, once a backward pass needed it, their reverse index."""

    ia: Tensor
    ib: Tensor
    inputs: int
    offsets: Tensor | None = None
    readers: Tensor | None = None

    def reverse(self) -> tuple[Tensor, Tensor]:
        if self.offsets is None or self.readers is None:
            self.offsets, self.readers = reverse_index(self.ia, self.ib, self.inputs)
        return self.offsets, self.readers


# A LogicLayer passes its wires as the views inputs[0] and inputs[1] of one buffer, whose contents change only through
# in-place writes, which bump the buffer's version counter. The converted wires and the reverse index are kept per
# buffer (weakly: a buffer that is gone takes its entry with it, so a new tensor at the same address never matches)
# and reused while the version and the views' geometry are unchanged, which saves a range check (a host sync), two
# conversions and a sort per layer and step.
_wirings: WeakIdKeyDictionary = WeakIdKeyDictionary()


def wiring(ia: Tensor, ib: Tensor, inputs: int) -> Wiring:
    """The :class:`Wiring` of ``ia``, ``ib`` (cached when both are views of one buffer); raises ``ValueError`` for a
    wire outside ``0 .. inputs - 1``, which the kernels would otherwise read out of bounds."""
    base = ia._base
    key = None
    if base is not None and base is ib._base:
        key = (base._version, inputs, ia.storage_offset(), ib.storage_offset(), ia.stride(), ib.stride(),
               tuple(ia.shape), tuple(ib.shape))
        found = _wirings[base] if base in _wirings else None
        if found is not None and found[0] == key:
            cached: Wiring = found[1]
            return cached
    if ia.shape != ib.shape or ia.dim() != 1:
        raise ValueError(f"logic_gates: wires must be two [N] tensors, got {list(ia.shape)} and {list(ib.shape)}")
    if ia.numel():
        low, high = int(torch.minimum(ia.min(), ib.min())), int(torch.maximum(ia.max(), ib.max()))
        if low < 0 or high >= inputs:
            raise ValueError(f"logic_gates: wire {low if low < 0 else high} is outside the {inputs} inputs")
    result = Wiring(ia.to(torch.int32).contiguous(), ib.to(torch.int32).contiguous(), inputs)
    if key is not None:
        _wirings[base] = (key, result)
    return result


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the coefficients and sums for activations of ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def forward(xt: Tensor, wires: Wiring, coef: Tensor, backend: Backend) -> Tensor:
    """Feature-major ``[N, B]`` gate outputs of the feature-major inputs ``xt`` ``[inputs, B]``; ``coef`` is the
    contiguous ``[N, 4]`` of :func:`compute_dtype`."""
    inputs, batch = xt.shape
    gates = wires.ia.numel()
    out = torch.empty(gates, batch, dtype=xt.dtype, device=xt.device)
    if out.numel():
        backend.launch(
            MODULE, f"logic_forward_{DTYPES[xt.dtype]}", (blocks(batch, THREADS), min(gates, MAX_GRID_Y), 1),
            (THREADS, 1, 1), [pointer(xt), pointer(wires.ia), pointer(wires.ib), pointer(coef), pointer(out),
                              i32(gates), i64(batch)],
        )
    return out


def backward_input(xt: Tensor, wires: Wiring, coef: Tensor, grad: Tensor, backend: Backend) -> Tensor:
    """Feature-major ``[inputs, B]`` gradient of the inputs, for the feature-major output gradient ``grad``."""
    inputs, batch = xt.shape
    gx = torch.empty(inputs, batch, dtype=xt.dtype, device=xt.device)
    if gx.numel():
        offsets, readers = wires.reverse()
        backend.launch(
            MODULE, f"logic_backward_input_{DTYPES[xt.dtype]}", (blocks(batch, THREADS), min(inputs, MAX_GRID_Y), 1),
            (THREADS, 1, 1), [pointer(xt), pointer(wires.ia), pointer(wires.ib), pointer(coef), pointer(grad),
                              pointer(offsets), pointer(readers), pointer(gx), i32(inputs), i64(batch)],
        )
    return gx


def backward_coef(xt: Tensor, wires: Wiring, grad: Tensor, backend: Backend) -> Tensor:
    """``[N, 4]`` gradient of the coefficients (in :func:`compute_dtype`), summed over the batch."""
    batch = xt.shape[1]
    gates = wires.ia.numel()
    gc = torch.zeros(gates, 4, dtype=compute_dtype(xt.dtype), device=xt.device)
    if batch:
        backend.launch(
            MODULE, f"logic_backward_coef_{DTYPES[xt.dtype]}", (min(blocks(gates, THREADS // 32), MAX_GRID_Y), 1, 1),
            (THREADS, 1, 1), [pointer(xt), pointer(wires.ia), pointer(wires.ib), pointer(grad), pointer(gc),
                              i32(gates), i64(batch)],
        )
    return gc


def supports(x: Tensor, ia: Tensor, ib: Tensor, coef: Tensor) -> bool:
    """Whether the kernels take these tensors: 2-D float32/bfloat16/float64 ``x`` on a GPU, the rest beside it."""
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


__all__ = ["Wiring", "backward_coef", "backward_input", "compute_dtype", "forward", "reverse_index", "supports",
           "wiring"]
