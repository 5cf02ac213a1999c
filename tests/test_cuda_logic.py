"""The LogicLayer kernels of cuda/logic_layer.cu (launched by bitlogic.gpu.logic), run through the op of
bitlogic.ops.logic.

On the CPU they run in the emulator (tests/cuda_emulator.py) against the pure-torch reference ``gates_torch``; on a
GPU (where one exists) the same checks run on the device, and a LogicLayer training step is compared with the
pure-torch path. Tolerances: float32 results within 1e-5 relative (the kernels sum in another order than torch),
bfloat16 within one bfloat16 rounding step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bitlogic.gpu import logic
from bitlogic.gpu._kernels import backend_for
from bitlogic.nn import LogicLayer
from bitlogic.ops.logic import gates_torch, logic_gates
from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU emulator of the CUDA kernels needs g++")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    return Emulator(Path(tmp_path_factory.mktemp("emulated-kernels")))


def _problem(batch: int, inputs: int, gates: int, seed: int, same_wires: bool = False,
             device: str = "cpu") -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, inputs, generator=g)
    ia = torch.randint(0, inputs, (gates,), generator=g)
    ib = ia.clone() if same_wires else torch.randint(0, inputs, (gates,), generator=g)
    coef = torch.randn(gates, 4, generator=g)
    return tuple(t.to(device) for t in (x, ia, ib, coef))


def _reference(x: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor, coef: torch.Tensor,
               grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.detach().double().requires_grad_()
    c = coef.detach().double().requires_grad_()
    out = gates_torch(x, ia, ib, c)
    out.backward(grad.double())
    assert x.grad is not None and c.grad is not None
    return out.detach(), x.grad, c.grad


def _run(x: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor, coef: torch.Tensor, grad: torch.Tensor,
         backend: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    c = coef.detach().clone().requires_grad_()
    out = logic_gates(x, ia, ib, c, backend)  # type: ignore[arg-type]
    out.backward(grad)
    assert x.grad is not None and c.grad is not None
    return out.detach(), x.grad, c.grad


@pytest.mark.parametrize(("batch", "inputs", "gates"), [(1, 3, 5), (37, 16, 40), (300, 50, 24)])
def test_forward_and_gradients_match_the_reference(emulator: Emulator, batch: int, inputs: int, gates: int) -> None:
    x, ia, ib, coef = _problem(batch, inputs, gates, seed=batch)
    grad = torch.randn(batch, gates, generator=torch.Generator().manual_seed(7))
    out, gx, gc = _run(x, ia, ib, coef, grad, emulator)
    ref_out, ref_gx, ref_gc = _reference(x, ia, ib, coef, grad)
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx.double(), ref_gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gc.double(), ref_gc, rtol=1e-5, atol=1e-4)
    assert out.shape == (batch, gates) and gx.shape == (batch, inputs) and gc.shape == (gates, 4)


def test_a_gate_reading_one_wire_twice_gets_both_derivatives(emulator: Emulator) -> None:
    # d/dx (c0 + c1 x + c2 x + c3 x^2) = c1 + c2 + 2 c3 x: both roles of the wire must contribute.
    x, ia, ib, coef = _problem(70, 6, 12, seed=3, same_wires=True)
    grad = torch.randn(70, 12, generator=torch.Generator().manual_seed(1))
    _, gx, _ = _run(x, ia, ib, coef, grad, emulator)
    _, ref_gx, _ = _reference(x, ia, ib, coef, grad)
    torch.testing.assert_close(gx.double(), ref_gx, rtol=1e-5, atol=1e-5)


def test_grid_striding_covers_gates_and_inputs_beyond_one_grid_row(emulator: Emulator,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logic, "MAX_GRID_Y", 3)  # so a handful of gates and inputs already need several strides
    x, ia, ib, coef = _problem(40, 11, 29, seed=5)
    grad = torch.randn(40, 29, generator=torch.Generator().manual_seed(2))
    out, gx, gc = _run(x, ia, ib, coef, grad, emulator)
    ref_out, ref_gx, ref_gc = _reference(x, ia, ib, coef, grad)
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx.double(), ref_gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gc.double(), ref_gc, rtol=1e-5, atol=1e-4)
    assert {grid[1] for _, grid, _ in emulator.launches[-3:]} <= {1, 3}


def test_bfloat16_activations_round_like_torch(emulator: Emulator) -> None:
    x, ia, ib, coef = _problem(90, 20, 33, seed=11)
    xb = x.to(torch.bfloat16)
    grad = torch.randn(90, 33, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    out, gx, gc = _run(xb, ia, ib, coef, grad, emulator)
    assert out.dtype == torch.bfloat16 and gx.dtype == torch.bfloat16 and gc.dtype == torch.float32
    ref_out, ref_gx, ref_gc = _reference(xb.float(), ia, ib, coef, grad.float())
    # One bfloat16 step (2^-8 relative) for values the kernel rounds once from float32.
    torch.testing.assert_close(out.double(), ref_out.to(torch.bfloat16).double(), rtol=2**-7, atol=1e-3)
    torch.testing.assert_close(gx.double(), ref_gx.to(torch.bfloat16).double(), rtol=2**-7, atol=1e-2)
    torch.testing.assert_close(gc.double(), ref_gc, rtol=1e-4, atol=1e-3)


def test_the_bfloat16_rounding_is_torchs_on_every_tie_and_special_value(emulator: Emulator) -> None:
    # out = c0 (c1 = c2 = c3 = 0) stores float32 c0 as bfloat16: compare the kernel's rounding with torch's. Ties
    # to even both ways, a carry into the exponent, overflow to infinity, infinities, subnormals, negatives.
    bits = torch.tensor([0x3F808000, 0x3F818000, 0x3F80FFFF, 0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x00000001,
                         0x00018000, 0xBF808000, 0xBF818001, 0x3F7F7FFF, 0x3F7F8000], dtype=torch.int64).to(torch.int32)
    values = bits.view(torch.float32)
    gates = values.numel()
    coef = torch.zeros(gates, 4)
    coef[:, 0] = values
    x = torch.zeros(1, 1, dtype=torch.bfloat16)
    zero = torch.zeros(gates, dtype=torch.int64)
    out = logic_gates(x, zero, zero, coef, emulator)  # type: ignore[arg-type]
    expected = values.to(torch.bfloat16)
    assert torch.equal(out[0].view(torch.int16), expected.view(torch.int16))
    nan = logic_gates(x, zero[:1], zero[:1], torch.full((1, 4), float("nan")), emulator)  # type: ignore[arg-type]
    assert torch.isnan(nan).all()


def test_eval_gates_are_exact_on_bits(emulator: Emulator) -> None:
    layer = LogicLayer(30, 64).eval()
    x = (torch.rand(100, 30) > 0.5).float()
    with torch.no_grad():
        coef = layer.coefficients()
        out = logic_gates(x, layer.inputs[0], layer.inputs[1], coef, emulator)  # type: ignore[arg-type]
        assert torch.equal(out, layer(x))


def test_reverse_index_lists_every_read_once_per_role() -> None:
    ia = torch.tensor([0, 2, 2, 1])
    ib = torch.tensor([2, 2, 0, 3])
    offsets, readers = logic.reverse_index(ia, ib, 5)
    assert offsets.tolist() == [0, 2, 3, 7, 8, 8]
    lists = [sorted(readers[offsets[i]:offsets[i + 1]].tolist()) for i in range(5)]
    # input 2: gate 0 as b (1), gate 1 as a and b (2, 3), gate 2 as a (4).
    assert lists == [[0, 5], [6], [1, 2, 3, 4], [7], []]


def test_empty_batch(emulator: Emulator) -> None:
    x, ia, ib, coef = _problem(0, 4, 6, seed=0)
    out, gx, gc = _run(x, ia, ib, coef, torch.zeros(0, 6), emulator)
    assert out.shape == (0, 6) and gx.shape == (0, 4) and torch.equal(gc, torch.zeros(6, 4))


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_the_gpu_kernels_match_the_reference(dtype: torch.dtype) -> None:
    x, ia, ib, coef = _problem(1000, 300, 2000, seed=9, device="cuda")
    x = x.to(dtype)
    grad = torch.randn(1000, 2000, device="cuda").to(dtype)
    out, gx, gc = _run(x, ia, ib, coef, grad, backend_for(x.device))
    ref_out, ref_gx, ref_gc = _reference(x.float(), ia, ib, coef, grad.float())
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 2**-7, "atol": 2e-2}
    torch.testing.assert_close(out.double(), ref_out.to(dtype).double(), **tol)
    torch.testing.assert_close(gx.double(), ref_gx.to(dtype).double(), **tol)
    torch.testing.assert_close(gc.double(), ref_gc, rtol=1e-3, atol=1e-2)


@gpu
def test_on_the_gpu_a_logic_layer_step_matches_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    layer = LogicLayer(200, 500).cuda()
    x = torch.rand(256, 200, device="cuda", requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    kernel_grads = (x.grad.clone(), layer.weight.grad.clone())
    x.grad = None
    layer.weight.grad = None
    monkeypatch.setenv("BITLOGIC_CUDA_KERNELS", "0")
    layer(x).square().sum().backward()
    torch.testing.assert_close(kernel_grads[0], x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(kernel_grads[1], layer.weight.grad, rtol=1e-4, atol=1e-5)


def test_gradcheck_in_float64(emulator: Emulator) -> None:
    x, ia, ib, coef = _problem(9, 5, 7, seed=13)
    ia[0] = ib[0]  # one gate reads a wire twice
    x = x.double().requires_grad_()
    coef = coef.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, c: logic_gates(x, ia, ib, c, emulator), (x, coef))  # type: ignore[arg-type]


def test_a_layer_s_wiring_is_converted_once_and_again_after_an_in_place_change() -> None:
    buffer = torch.tensor([[0, 1, 2], [2, 2, 0]])
    first = logic.wiring(buffer[0], buffer[1], 3)
    assert logic.wiring(buffer[0], buffer[1], 3) is first  # fresh views of the same buffer: the cached entry
    offsets, readers = first.reverse()
    assert first.reverse()[0] is offsets
    buffer[1, 0] = 1  # an in-place write bumps the version: converted again
    second = logic.wiring(buffer[0], buffer[1], 3)
    assert second is not first and second.ib.tolist() == [1, 2, 0]
    assert logic.wiring(buffer[0], buffer[1], 4) is not second  # another input width is another entry
    loose = logic.wiring(torch.tensor([0, 1]), torch.tensor([1, 0]), 2)
    assert logic.wiring(torch.tensor([0, 1]), torch.tensor([1, 0]), 2) is not loose  # no buffer: nothing cached


def test_wires_outside_the_inputs_are_refused_before_any_launch(emulator: Emulator) -> None:
    x = torch.rand(4, 3)
    with pytest.raises(ValueError, match="wire 3 is outside the 3 inputs"):
        logic_gates(x, torch.tensor([0, 3]), torch.tensor([1, 1]), torch.zeros(2, 4), emulator)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wire -1 is outside the 3 inputs"):
        logic_gates(x, torch.tensor([0, 1]), torch.tensor([-1, 1]), torch.zeros(2, 4), emulator)  # type: ignore[arg-type]
