"""The BinaryLinear kernels of cuda/binary_linear.cu (launched by bitlogic.gpu.binary), run through the op of
bitlogic.ops.binary.

On the CPU they run in the emulator (tests/cuda_emulator.py) against the pure-torch layer ``quantized_sign(2x - 1) @
quantized_sign(W).T``; on a GPU (where one exists) the same checks run on the device, and a BinaryLinear + BatchNorm
+ Sign training step is compared with the pure-torch path. The forward pass is integer arithmetic and the backward
pass repeats autograd's own operations, so every comparison is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bitlogic.gpu import binary
from bitlogic.ops import binary as ops_binary
from bitlogic.gpu._kernels import Backend, backend_for
from bitlogic.nn import QUANTIZERS, BinaryLinear, Sign, quantized_sign
from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU emulator of the CUDA kernels needs g++")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    return Emulator(Path(tmp_path_factory.mktemp("emulated-kernels")))


def _problem(batch: int, inputs: int, outs: int, seed: int, dtype: torch.dtype = torch.float32,
             weight_dtype: torch.dtype = torch.float32, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs in [0, 1] with some exactly 0.5 (the input bit's boundary) and weights in [-1, 1] with some zeros."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, inputs, generator=g)
    x[torch.rand(batch, inputs, generator=g) < 0.1] = 0.5
    w = torch.rand(outs, inputs, generator=g) * 2 - 1
    w[torch.rand(outs, inputs, generator=g) < 0.05] = 0.0
    w[torch.rand(outs, inputs, generator=g) < 0.05] = -0.0
    return x.to(device=device, dtype=dtype), w.to(device=device, dtype=weight_dtype)


def _torch_layer(x: torch.Tensor, w: torch.Tensor, quantizer: str) -> torch.Tensor:
    """The pure-torch forward of BinaryLinear."""
    inputs = quantized_sign(2 * x - 1, quantizer)
    return inputs @ quantized_sign(w, quantizer).to(inputs.dtype).t()


Layer = Callable[[torch.Tensor, torch.Tensor, str], torch.Tensor]


def _kernels(backend: Backend) -> Layer:
    """The op on ``backend`` (the emulator or a GPU), as a function of (x, weight, quantizer)."""
    return lambda x, w, quantizer: ops_binary.binary_linear(x, w, quantizer, backend)


def _grads(fn: Layer, x: torch.Tensor, w: torch.Tensor, grad: torch.Tensor,
           quantizer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    w = w.detach().clone().requires_grad_()
    out = fn(x, w, quantizer)
    out.backward(grad)
    assert x.grad is not None and w.grad is not None
    return out.detach(), x.grad, w.grad


def _assert_same(kernel: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> None:
    for got, want in zip(kernel, reference, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want), (got - want).abs().max()


def _unpack(words: torch.Tensor, cols: int) -> torch.Tensor:
    """bool [rows, cols] of packed int32 words (bit k of word w is column 32w + k)."""
    u = words.numpy().view(np.uint32)
    bits = (u[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return torch.from_numpy(bits.reshape(u.shape[0], -1).astype(bool))[:, :cols]


@pytest.mark.parametrize("cols", [1, 31, 32, 33, 100])
def test_pack_puts_column_32w_plus_k_in_bit_k_of_word_w(emulator: Emulator, cols: int) -> None:
    x, w = _problem(13, cols, 9, seed=cols)
    xw = binary.pack(x, False, emulator)
    ww = binary.pack(w, True, emulator)
    assert xw.shape == (13, (cols + 31) // 32) and ww.shape == (9, (cols + 31) // 32)
    assert torch.equal(_unpack(xw, cols), 2 * x - 1 >= 0)
    assert torch.equal(_unpack(ww, cols), w >= 0)
    # The padding bits are 0; checked on the words themselves, with every real bit set.
    ones = binary.pack(torch.ones(2, cols), True, emulator)
    full = [(1 << 32) - 1] * (cols // 32) + ([(1 << (cols % 32)) - 1] if cols % 32 else [])
    assert ones.numpy().view(np.uint32).tolist() == [full, full]


@pytest.mark.parametrize("weights", [False, True])
def test_bfloat16_bits_match_torch_on_every_bfloat16_value(emulator: Emulator, weights: bool) -> None:
    # All 65536 bit patterns: torch rounds 2x, then 2x - 1, to bfloat16 before comparing; so must the kernel.
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).reshape(256, 256)
    bits = _unpack(binary.pack(x, weights, emulator), 256)
    assert torch.equal(bits, x >= 0 if weights else 2 * x - 1 >= 0)


def test_float32_bits_match_torch_at_the_boundaries(emulator: Emulator) -> None:
    half = torch.tensor(0.5)
    specials = [0.5, 0.25, 1.0, 0.0, -0.0, 1e-45, -1e-45, 1.7e38, 3.4e38, -3.4e38, float("inf"), float("-inf"),
                float("nan")]
    neighbours = [torch.nextafter(half, torch.tensor(d)).item() for d in (0.0, 1.0)]
    near = [torch.nextafter(torch.tensor(v), torch.tensor(d)).item() for v in (0.0, -0.0) for d in (-1.0, 1.0)]
    x = torch.tensor([specials + neighbours + near], dtype=torch.float32)
    assert torch.equal(_unpack(binary.pack(x, False, emulator), x.shape[1]), 2 * x - 1 >= 0)
    assert torch.equal(_unpack(binary.pack(x, True, emulator), x.shape[1]), x >= 0)


def test_pack_reads_strided_views(emulator: Emulator) -> None:
    x, _ = _problem(40, 70, 1, seed=4)
    view = x.t().contiguous().t()  # feature-major storage, as a LogicLayer hands activations on
    assert not view.is_contiguous()
    assert torch.equal(binary.pack(view, False, emulator), binary.pack(x, False, emulator))


@pytest.mark.parametrize(("batch", "inputs", "outs"),
                         [(1, 1, 1), (5, 31, 7), (33, 33, 40), (70, 100, 45), (3, 1100, 5)])
def test_forward_equals_the_torch_layer(emulator: Emulator, batch: int, inputs: int, outs: int) -> None:
    # 1100 inputs are 35 words: more than one 32-word chunk of the GEMM's packed dimension.
    x, w = _problem(batch, inputs, outs, seed=inputs)
    out = ops_binary.binary_linear(x, w, "ste_sign", emulator)
    expected = _torch_layer(x, w, "ste_sign")
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    gemm = [launch for launch in emulator.launches if launch[0] == "binary_gemm_f32"][-1]
    assert gemm[1] == ((outs + 31) // 32, (batch + 31) // 32, 1) and gemm[2] == (32, 8, 1)


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_gradients_equal_the_torch_layer_for_each_quantizer(emulator: Emulator, quantizer: str) -> None:
    x, w = _problem(37, 45, 35, seed=2)
    grad = torch.randn(37, 35, generator=torch.Generator().manual_seed(1))
    kernel = _grads(_kernels(emulator), x, w, grad, quantizer)
    _assert_same(kernel, _grads(_torch_layer, x, w, grad, quantizer))


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("weight_dtype", [torch.bfloat16, torch.float32])
def test_bfloat16_equals_the_torch_layer(emulator: Emulator, quantizer: str, weight_dtype: torch.dtype) -> None:
    x, w = _problem(20, 301, 34, seed=6, dtype=torch.bfloat16, weight_dtype=weight_dtype)
    # Outputs beyond 256 in magnitude are not all bfloat16 values: rows and outputs that agree on most bits make
    # them, and the kernel must round them as torch does (301 and 257 become 300 and 256).
    x[0] = 1.0
    w[0] = 1.0
    w[1] = 1.0
    w[1, :22] = -1.0
    grad = torch.randn(20, 34, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    kernel = _grads(_kernels(emulator), x, w, grad, quantizer)
    reference = _grads(_torch_layer, x, w, grad, quantizer)
    _assert_same(kernel, reference)
    assert kernel[0][0, :2].tolist() == [300.0, 256.0]
    assert kernel[1].dtype == torch.bfloat16 and kernel[2].dtype == weight_dtype


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_half_boundary_and_its_neighbours(emulator: Emulator, quantizer: str, dtype: torch.dtype) -> None:
    # 2x - 1 = 0 at x = 0.5: the bit is 1 there and the estimators are at their peak; the neighbours fall either
    # side. Both the forward pass and the gradients must agree with torch's.
    half = torch.tensor(0.5, dtype=dtype)
    values = [half, torch.nextafter(half, torch.tensor(0.0, dtype=dtype)),
              torch.nextafter(half, torch.tensor(1.0, dtype=dtype)), torch.tensor(0.0, dtype=dtype),
              torch.tensor(1.0, dtype=dtype)]
    x = torch.stack(values).repeat(6, 7)[:, :33]  # 33 inputs: a word and one bit
    w = (torch.arange(5 * 33, dtype=torch.float32).reshape(5, 33) % 7 - 3) / 3
    grad = torch.randn(x.shape[0], 5, generator=torch.Generator().manual_seed(8)).to(dtype)
    kernel = _grads(_kernels(emulator), x, w, grad, quantizer)
    _assert_same(kernel, _grads(_torch_layer, x, w, grad, quantizer))


def test_only_the_needed_gradients(emulator: Emulator) -> None:
    x, w = _problem(9, 40, 6, seed=5)
    grad = torch.randn(9, 6, generator=torch.Generator().manual_seed(0))
    wk, wt = w.clone().requires_grad_(), w.clone().requires_grad_()
    ops_binary.binary_linear(x, wk, "approx_sign", emulator).backward(grad)
    _torch_layer(x, wt, "approx_sign").backward(grad)
    assert wk.grad is not None and wt.grad is not None and torch.equal(wk.grad, wt.grad)
    xk, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    ops_binary.binary_linear(xk, w, "swish_sign", emulator).backward(grad)
    _torch_layer(xt, w, "swish_sign").backward(grad)
    assert xk.grad is not None and xt.grad is not None and torch.equal(xk.grad, xt.grad)


def test_grid_striding_covers_rows_and_words_beyond_one_grid(emulator: Emulator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binary, "MAX_GRID_Y", 1)  # every 32-sample tile through one grid row
    monkeypatch.setattr(binary, "MAX_PACK_BLOCKS", 2)  # 16 warps for all the words
    x, w = _problem(100, 70, 40, seed=9)
    out = ops_binary.binary_linear(x, w, "ste_sign", emulator)
    assert torch.equal(out, _torch_layer(x, w, "ste_sign"))
    assert [launch[1] for launch in emulator.launches[-3:]] == [(2, 1, 1), (2, 1, 1), (2, 1, 1)]


def test_eval_layer_outputs_are_the_match_counts(emulator: Emulator) -> None:
    layer = BinaryLinear(70, 20).eval()
    x = (torch.rand(50, 70) > 0.5).float()
    with torch.no_grad():
        out = ops_binary.binary_linear(x, layer.weight, layer.quantizer, emulator)
        assert torch.equal(out, layer(x))
    matches = ((x.bool()[:, None, :] == layer.weight_bits()[None]).sum(-1)).float()
    assert torch.equal(out, 2 * matches - 70)


def test_empty_batch(emulator: Emulator) -> None:
    x, w = _problem(0, 10, 4, seed=0)
    out, gx, gw = _grads(_kernels(emulator), x, w, torch.zeros(0, 4), "ste_sign")
    assert out.shape == (0, 4) and gx.shape == (0, 10) and torch.equal(gw, torch.zeros(4, 10))


def test_clear_errors_and_what_is_supported(emulator: Emulator) -> None:
    x, w = _problem(4, 10, 3, seed=1)
    with pytest.raises(ValueError, match="quantizer must be one of"):
        ops_binary.binary_linear(x, w, "sign", emulator)
    with pytest.raises(ValueError, match=r"x \[batch, in\] and weight \[out, in\], got \[4, 10\] and \[3, 9\]"):
        ops_binary.binary_linear(x, w[:, :9], "ste_sign", emulator)
    with pytest.raises(TypeError, match="must be float32 or bfloat16, got torch.float64"):
        ops_binary.binary_linear(x.double(), w, "ste_sign", emulator)
    assert not binary.supports(x, w)  # CPU tensors take the pure-torch path


@gpu
@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_the_gpu_kernels_equal_the_torch_layer(dtype: torch.dtype, quantizer: str) -> None:
    x, w = _problem(1000, 777, 300, seed=9, dtype=dtype, device="cuda")
    grad = torch.randn(1000, 300, device="cuda").to(dtype)
    kernel = _grads(_kernels(backend_for(x.device)), x, w, grad, quantizer)
    _assert_same(kernel, _grads(_torch_layer, x, w, grad, quantizer))


@gpu
def test_on_the_gpu_every_bfloat16_value_packs_like_torch() -> None:
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).reshape(256, 256)
    x = x.cuda()
    backend = backend_for(x.device)
    assert torch.equal(_unpack(binary.pack(x, False, backend).cpu(), 256), (2 * x - 1 >= 0).cpu())
    assert torch.equal(_unpack(binary.pack(x, True, backend).cpu(), 256), (x >= 0).cpu())


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_the_gpu_a_binary_layer_step_equals_the_torch_path(monkeypatch: pytest.MonkeyPatch,
                                                             dtype: torch.dtype) -> None:
    calls: list[int] = []
    original = ops_binary.binary_linear

    def counting(x: torch.Tensor, weight: torch.Tensor, quantizer: str = "ste_sign",
                 backend: Backend | None = None) -> torch.Tensor:
        calls.append(1)
        return original(x, weight, quantizer, backend)

    monkeypatch.setattr(ops_binary, "binary_linear", counting)

    def step() -> tuple[torch.Tensor, ...]:
        torch.manual_seed(0)
        model = nn.Sequential(BinaryLinear(300, 200, "approx_sign"), nn.BatchNorm1d(200), Sign(),
                              BinaryLinear(200, 64)).cuda().to(dtype)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        x = torch.rand(256, 300, device="cuda").to(dtype).requires_grad_()
        out = model(x)
        out.float().square().mean().backward()
        optimizer.step()
        assert x.grad is not None
        return (out.detach(), x.grad, *(p.detach().clone() for p in model.parameters()))

    kernel = step()
    assert len(calls) == 2  # both layers took the kernels
    monkeypatch.setenv("BITLOGIC_CUDA_KERNELS", "0")
    reference = step()
    assert len(calls) == 2
    _assert_same(kernel, reference)
