"""The LUTLayer kernels of cuda/lut_layer.cu (launched by bitlogic.gpu.lut), run through the op of bitlogic.ops.lut.

On the CPU they run in the emulator (tests/cuda_emulator.py) against the pure-torch ``TorchLookup`` of bitlogic.ops.lut;
on a GPU (where one exists) the same checks run on the device, and a LUTLayer training step is compared with the
pure-torch path. The forward pass is a lookup and the input gradient one product of the same two float32 numbers as
torch's, so in the emulator both must agree exactly; the table gradient, summed with atomics in another order than
torch's index_add, gets a float32 tolerance (and so does the input gradient on a GPU, see there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bitlogic.gpu import lut as kernels
from bitlogic.gpu._kernels import backend_for
from bitlogic.nn import LUTLayer
from bitlogic.ops import lut
from bitlogic.ops.lut import TorchLookup, efd_matrix
from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU emulator of the CUDA kernels needs g++")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

Result = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    return Emulator(Path(tmp_path_factory.mktemp("emulated-kernels")))


def _problem(batch: int, width: int, n: int, seed: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """Inputs in [0, 1] (some exactly 0.5, which reads as 0), tables in [-1.5, 1.5] (some exactly 0, which is
    False), the default EFD weights of LUTLayer and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    selected = torch.rand(batch, width * n, generator=g)
    selected[torch.rand(selected.shape, generator=g) < 0.1] = 0.5
    tables = torch.rand(width, 1 << n, generator=g) * 3 - 1.5
    tables[torch.rand(tables.shape, generator=g) < 0.1] = 0.0
    weights = efd_matrix(n, 0.5 * 0.75 ** (n - 1), 1 / 3)
    grad = torch.randn(batch, width, generator=g)
    return tuple(t.to(device) for t in (selected, tables, weights, grad))


def _run(selected: torch.Tensor, tables: torch.Tensor, weights: torch.Tensor, grad: torch.Tensor, ste: bool,
         backend: object | None) -> Result:
    """Outputs and gradients (selected, tables) of the kernels (``backend``) or of ``TorchLookup`` (``None``)."""
    x = selected.detach().clone().requires_grad_()
    t = tables.detach().clone().requires_grad_()
    if backend is None:
        out = TorchLookup.apply(x, t, weights, ste)
    else:
        out = lut.lut_lookup(x, t, weights, ste, backend)  # type: ignore[arg-type]
    out.backward(grad.to(out.dtype))
    return out.detach(), x.grad, t.grad


@pytest.mark.parametrize("ste", [True, False])
@pytest.mark.parametrize(("n", "batch", "width"), [(1, 300, 7), (2, 45, 13), (6, 37, 9), (8, 19, 3)])
def test_forward_and_gradients_match_the_torch_lookup(emulator: Emulator, n: int, batch: int, width: int,
                                                      ste: bool) -> None:
    selected, tables, weights, grad = _problem(batch, width, n, seed=10 * n + ste)
    out, gx, gt = _run(selected, tables, weights, grad, ste, emulator)
    ref_out, ref_gx, ref_gt = _run(selected, tables, weights, grad, ste, None)
    assert out.dtype == ref_out.dtype == torch.float32 and out.shape == (batch, width)
    assert torch.equal(out, ref_out)
    assert gx is not None and ref_gx is not None and torch.equal(gx, ref_gx)
    assert gt is not None and ref_gt is not None and gt.dtype == torch.float32
    torch.testing.assert_close(gt, ref_gt, rtol=1e-5, atol=1e-5)
    assert {block for _, _, block in emulator.launches[-3:]} == {(kernels.THREADS, 1, 1)}


def test_the_address_reads_input_j_as_bit_j(emulator: Emulator) -> None:
    # Table 0 of n = 3 holds entry a at address a (scaled into (0, 1) by the soft output), so its output spells the
    # address: inputs (1, 0, 1) are address 0b101 = 5 and so on; exactly 0.5 is a 0 bit.
    n = 3
    tables = (torch.arange(8, dtype=torch.float32) / 8).view(1, 8)
    selected = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.9, 0.5], [0.51, 0.6, 0.7], [0.5, 0.5, 0.5]])
    out = lut.lut_lookup(selected, tables, efd_matrix(n, 0.5, 1 / 3), False, emulator)  # type: ignore[arg-type]
    addresses = torch.round((out * 2 - 1) * 8).to(torch.int64).view(-1)
    assert addresses.tolist() == [5, 2, 7, 0]


def test_special_values_follow_torch(emulator: Emulator) -> None:
    # NaN inputs read as 0 (NaN > 0.5 is false); NaN entries are False with ste and stay NaN through the clamp of
    # the soft output; -0.0 is not > 0; entries beyond [-1, 1] clamp.
    n = 2
    selected = torch.tensor([[float("nan"), 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0],
                             [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]])
    tables = torch.tensor([[-0.0, float("nan"), 2.5, -7.0], [0.25, float("inf"), float("-inf"), float("nan")]])
    tables = tables.repeat(2, 1)
    weights = efd_matrix(n, 0.5, 1 / 3)
    for ste in (True, False):
        out = lut.lut_lookup(selected, tables, weights, ste, emulator)  # type: ignore[arg-type]
        ref = TorchLookup.apply(selected, tables, weights, ste)
        torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("ste", [True, False])
def test_bfloat16_activations(emulator: Emulator, ste: bool) -> None:
    selected, tables, weights, grad = _problem(70, 11, 4, seed=3)
    xb = selected.to(torch.bfloat16)
    gb = grad.to(torch.bfloat16)
    out, gx, gt = _run(xb, tables, weights, gb, ste, emulator)
    ref_out, ref_gx, _ = _run(xb, tables, weights, gb, ste, None)
    # ste outputs are bits in the inputs' dtype, soft outputs float32 like the tables: as TorchLookup.
    assert out.dtype == ref_out.dtype == (torch.bfloat16 if ste else torch.float32)
    assert torch.equal(out, ref_out)
    # The input gradient is the float32 product rounded once to bfloat16, on both paths.
    assert gx is not None and ref_gx is not None and gx.dtype == torch.bfloat16 and torch.equal(gx, ref_gx)
    # The kernels sum the table gradient in float32 (torch's index_add would in bfloat16): compare with float32.
    _, _, ref_gt = _run(xb.float(), tables, weights, gb.float(), ste, None)
    assert gt is not None and ref_gt is not None and gt.dtype == torch.float32
    torch.testing.assert_close(gt, ref_gt, rtol=1e-5, atol=1e-5)


def test_every_sample_adding_into_one_entry_is_counted(emulator: Emulator) -> None:
    # Every sample of a table adds into the same entry (on a GPU, 512 concurrent atomics per entry); the sum of
    # ones is exact in float32, so any lost update shows.
    selected = torch.ones(512, 2)
    tables = torch.zeros(2, 2, requires_grad=True)
    out = lut.lut_lookup(selected, tables, efd_matrix(1, 0.5, 1 / 3), True, emulator)  # type: ignore[arg-type]
    out.backward(torch.ones_like(out))
    assert tables.grad is not None and tables.grad.tolist() == [[0.0, 512.0], [0.0, 512.0]]


def test_grid_striding_covers_a_batch_beyond_one_grid(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "MAX_BLOCKS", 2)  # 2 * 256 threads for 1200 items and 4800 input gradients
    selected, tables, weights, grad = _problem(100, 12, 4, seed=8)
    out, gx, gt = _run(selected, tables, weights, grad, False, emulator)
    ref_out, ref_gx, ref_gt = _run(selected, tables, weights, grad, False, None)
    assert torch.equal(out, ref_out)
    assert gx is not None and ref_gx is not None and torch.equal(gx, ref_gx)
    assert gt is not None and ref_gt is not None
    torch.testing.assert_close(gt, ref_gt, rtol=1e-5, atol=1e-5)
    assert {grid for _, grid, _ in emulator.launches[-3:]} == {(2, 1, 1)}


def test_only_the_gradients_asked_for_are_computed(emulator: Emulator) -> None:
    selected, tables, weights, grad = _problem(33, 5, 3, seed=4)
    t = tables.clone().requires_grad_()
    before = len(emulator.launches)
    lut.lut_lookup(selected, t, weights, True, emulator).backward(grad)  # type: ignore[arg-type]
    assert [k for k, _, _ in emulator.launches[before:]] == ["lut_forward_f32_f32", "lut_backward_tables_f32"]
    _, _, ref_gt = _run(selected, tables, weights, grad, True, None)
    assert t.grad is not None and ref_gt is not None
    torch.testing.assert_close(t.grad, ref_gt, rtol=1e-5, atol=1e-5)
    x = selected.clone().requires_grad_()
    before = len(emulator.launches)
    lut.lut_lookup(x, tables, weights, True, emulator).backward(grad)  # type: ignore[arg-type]
    assert [k for k, _, _ in emulator.launches[before:]] == ["lut_forward_f32_f32", "lut_backward_input_f32_f32"]


def test_empty_batch(emulator: Emulator) -> None:
    selected, tables, weights, grad = _problem(0, 4, 3, seed=0)
    out, gx, gt = _run(selected, tables, weights, grad, True, emulator)
    assert out.shape == (0, 4) and gx is not None and gx.shape == (0, 12)
    assert gt is not None and torch.equal(gt, torch.zeros(4, 8))


def test_tensors_the_kernels_do_not_take_raise() -> None:
    selected, tables, weights, _ = _problem(5, 4, 3, seed=0)
    with pytest.raises(ValueError, match=r"selected must be \[batch, 12\]"):
        lut.lut_lookup(selected[:, :10], tables, weights, True)
    with pytest.raises(ValueError, match=r"tables must be \[L, 8\]"):
        lut.lut_lookup(selected, tables[:, :4], weights, True)
    with pytest.raises(ValueError, match="tables must be float32"):
        lut.lut_lookup(selected, tables.double(), weights, True)
    with pytest.raises(ValueError, match="selected must be float32 or bfloat16"):
        lut.lut_lookup(selected.half(), tables, weights, True)
    with pytest.raises(ValueError, match="EFD matrix"):
        lut.lut_lookup(selected, tables, weights[:, :4], True)
    assert not lut._kernels_apply(selected, tables, weights)  # CPU tensors: the kernels are for GPUs


@pytest.mark.parametrize(("mapping", "ste"), [("random", True), ("learnable", False)])
def test_a_lut_layer_runs_its_lookup_on_the_kernels(emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
                                                    mapping: str, ste: bool) -> None:
    # The layer's switch to the kernels, on CPU tensors: the GPU test below does the same on a device.
    torch.manual_seed(1)
    layer = LUTLayer(20, 16, n=4, mapping=mapping, ste=ste)  # type: ignore[arg-type]
    x = torch.rand(50, 20, requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None and layer.tables.grad is not None
    ref = (x.grad.clone(), layer.tables.grad.clone())
    x.grad = None
    layer.tables.grad = None
    monkeypatch.setattr(lut, "_kernels_apply", lambda *_: True)
    monkeypatch.setattr(lut, "backend_for", lambda _: emulator)
    before = len(emulator.launches)
    layer(x).square().sum().backward()
    assert {k for k, _, _ in emulator.launches[before:]} == {
        "lut_forward_f32_f32", "lut_backward_tables_f32", "lut_backward_input_f32_f32"}
    torch.testing.assert_close(x.grad, ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.tables.grad, ref[1], rtol=1e-5, atol=1e-5)


def test_on_the_cpu_the_layer_keeps_the_torch_lookup() -> None:
    layer = LUTLayer(10, 4, n=2)
    assert not lut._kernels_apply(torch.rand(3, 8), layer.tables, layer.efd)


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("ste", [True, False])
@pytest.mark.parametrize("n", [2, 6])
def test_on_the_gpu_kernels_match_the_torch_lookup(dtype: torch.dtype, ste: bool, n: int) -> None:
    selected, tables, weights, grad = _problem(3001, 500, n, seed=9, device="cuda")
    selected = selected.to(dtype)
    grad = grad.to(dtype)
    out, gx, gt = _run(selected, tables, weights, grad, ste, backend_for(selected.device))
    ref_out, ref_gx, _ = _run(selected, tables, weights, grad, ste, None)
    _, _, ref_gt = _run(selected.float(), tables, weights, grad.float(), ste, None)
    assert out.dtype == ref_out.dtype and torch.equal(out, ref_out)
    # Both paths gather from efd_gradients computed by cuBLAS, which need not repeat its last bit from run to run
    # on a GPU: a float32 tolerance here, one bfloat16 step for bfloat16.
    assert gx is not None and ref_gx is not None and gx.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2**-7, "atol": 1e-3}
    torch.testing.assert_close(gx, ref_gx, **tol)
    assert gt is not None and ref_gt is not None
    torch.testing.assert_close(gt, ref_gt, rtol=1e-5, atol=1e-4)


@gpu
@pytest.mark.parametrize(("mapping", "ste"), [("random", True), ("random", False), ("learnable", True)])
def test_on_the_gpu_a_lut_layer_step_matches_the_torch_path(monkeypatch: pytest.MonkeyPatch, mapping: str,
                                                            ste: bool) -> None:
    torch.manual_seed(0)
    layer = LUTLayer(200, 500, n=6, mapping=mapping, ste=ste).cuda()  # type: ignore[arg-type]
    x = torch.rand(256, 200, device="cuda", requires_grad=True)
    probe = torch.zeros(1, 500 * 6, device="cuda")  # the selected inputs' shape
    assert lut._kernels_apply(probe, layer.tables, layer.efd)
    out = layer(x)
    out.square().sum().backward()
    assert x.grad is not None and layer.tables.grad is not None
    kernel = (out.detach(), x.grad.clone(), layer.tables.grad.clone())
    x.grad = None
    layer.tables.grad = None
    monkeypatch.setenv("BITLOGIC_CUDA_KERNELS", "0")
    assert not lut._kernels_apply(probe, layer.tables, layer.efd)
    out = layer(x)
    out.square().sum().backward()
    assert torch.equal(kernel[0], out.detach())
    torch.testing.assert_close(kernel[1], x.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kernel[2], layer.tables.grad, rtol=1e-5, atol=1e-4)
