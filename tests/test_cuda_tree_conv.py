"""The tree-convolution kernels of cuda/tree_conv.cu (launched by bitlogic.gpu.tree_conv), forward and backward.

On the CPU they run in the emulator (tests/cuda_emulator.py) against ``reference`` below, a plain torch autograd
implementation of the definition, in float64; on a GPU (where one exists) the same checks run on the device.
Tolerances: float32 within 1e-5 relative (the kernels sum in another order than torch), bfloat16 within one
bfloat16 rounding step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bitlogic.gpu import tree_conv
from bitlogic.gpu._kernels import Backend, backend_for
from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU emulator of the CUDA kernels needs g++")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

Pair = tuple[int, int]
Result = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    return Emulator(Path(tmp_path_factory.mktemp("emulated-kernels")))


def reference(x: torch.Tensor, leaves: torch.Tensor, coef: torch.Tensor, kernel_size: Pair, stride: Pair,
              padding: Pair) -> torch.Tensor:
    """The definition in torch: gather every leaf's input over the zero-padded x, then the gates level by level."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    batch, _, height, width = x.shape
    ho, wo = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    padded = F.pad(x, (pw, pw, ph, ph))
    rows = (torch.arange(ho) * sh)[None, None, :, None] + leaves[:, :, 1, None, None]  # [O, L, H', 1]
    cols = (torch.arange(wo) * sw)[None, None, None, :] + leaves[:, :, 2, None, None]  # [O, L, 1, W']
    level = padded[:, leaves[:, :, 0, None, None], rows, cols]  # [B, O, L, H', W']
    gate = 0
    while level.shape[2] > 1:
        a, b = level[:, :, 0::2], level[:, :, 1::2]
        c = coef[:, gate:gate + a.shape[2]].permute(2, 0, 1)[:, None, :, :, None, None]  # [4, 1, O, n, 1, 1]
        level = c[0] + c[1] * a + (c[2] + c[3] * a) * b
        gate += a.shape[2]
    assert level.shape == (batch, leaves.shape[0], 1, ho, wo)
    return level[:, :, 0]


def _problem(batch: int, channels: int, size: Pair, out_channels: int, depth: int, kernel_size: Pair, seed: int,
             device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, *size, generator=g)
    count = out_channels << depth
    leaves = torch.stack([torch.randint(0, channels, (count,), generator=g),
                          torch.randint(0, kernel_size[0], (count,), generator=g),
                          torch.randint(0, kernel_size[1], (count,), generator=g)], dim=1).view(out_channels, -1, 3)
    coef = torch.randn(out_channels, (1 << depth) - 1, 4, generator=g)
    return x.to(device), leaves.to(device), coef.to(device)


def _reference_grads(x: torch.Tensor, leaves: torch.Tensor, coef: torch.Tensor, grad: torch.Tensor,
                     *geometry: Pair) -> Result:
    xd = x.detach().cpu().double().requires_grad_()
    cd = coef.detach().cpu().double().requires_grad_()
    out = reference(xd, leaves.cpu(), cd, *geometry)  # type: ignore[arg-type]
    out.backward(grad.cpu().double())
    assert xd.grad is not None and cd.grad is not None
    return out.detach(), xd.grad, cd.grad


def _run(x: torch.Tensor, leaves: torch.Tensor, coef: torch.Tensor, grad: torch.Tensor, geometry: tuple[Pair, ...],
         backend: Backend) -> Result:
    xk = x.detach().clone().requires_grad_()
    ck = coef.detach().clone().requires_grad_()
    out = tree_conv.kernel_tree_conv(xk, leaves, ck, *geometry, backend=backend)
    out.backward(grad)
    assert xk.grad is not None and ck.grad is not None
    return out.detach(), xk.grad, ck.grad


def _close(got: Result, want: Result, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double().cpu(), b, rtol=rtol, atol=atol)


CASES = [
    # batch, channels, (H, W), O, depth, kernel, stride, padding
    (2, 3, (6, 7), 4, 3, (3, 3), (1, 1), (1, 1)),
    (3, 2, (8, 8), 3, 2, (2, 2), (2, 2), (0, 0)),
    (2, 4, (9, 5), 2, 1, (5, 3), (2, 1), (2, 0)),
    (1, 1, (4, 4), 2, 4, (1, 1), (1, 1), (0, 0)),
    (2, 3, (5, 6), 2, 5, (3, 2), (3, 2), (2, 1)),
    (1, 2, (3, 3), 1, 8, (3, 3), (1, 1), (1, 1)),
    (2, 2, (2, 3), 3, 3, (4, 5), (1, 1), (1, 1)),  # kernel larger than the image: nearly all padding
]


@pytest.mark.parametrize(("batch", "channels", "size", "out_channels", "depth", "kernel", "stride", "padding"), CASES)
def test_forward_and_gradients_match_the_reference(emulator: Emulator, batch: int, channels: int, size: Pair,
                                                   out_channels: int, depth: int, kernel: Pair, stride: Pair,
                                                   padding: Pair) -> None:
    x, leaves, coef = _problem(batch, channels, size, out_channels, depth, kernel, seed=depth + batch)
    ho, wo = ((n + 2 * p - k) // s + 1 for n, p, k, s in zip(size, padding, kernel, stride))
    grad = torch.randn(batch, out_channels, ho, wo, generator=torch.Generator().manual_seed(3))
    geometry = (kernel, stride, padding)
    got = _run(x, leaves, coef, grad, geometry, emulator)
    # Deep trees of random coefficients grow large values: compare relative to their size.
    _close(got, _reference_grads(x, leaves, coef, grad, *geometry), rtol=1e-4 if depth > 4 else 1e-5)
    assert got[0].shape == (batch, out_channels, ho, wo) and got[0].dtype == torch.float32
    assert got[1].shape == x.shape and got[2].shape == coef.shape and got[2].dtype == torch.float32


def test_float64_matches_exactly_and_passes_gradcheck(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    x, leaves, coef = _problem(2, 3, (5, 4), 3, 3, (3, 2), seed=5)
    geometry = ((3, 2), (2, 1), (1, 1))
    x, coef = x.double().requires_grad_(), coef.double().requires_grad_()
    got = tree_conv.kernel_tree_conv(x, leaves, coef, *geometry, backend=emulator)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, reference(x, leaves, coef, *geometry), rtol=1e-12, atol=1e-12)
    # gradcheck launches a backward pass per output element: a smaller problem, and blocks of one warp, keep the
    # emulator's time down (and run the block reduction with a single warp).
    monkeypatch.setattr(tree_conv, "THREADS", 32)
    x, leaves, coef = _problem(1, 2, (4, 3), 2, 2, (3, 2), seed=6)
    x, coef = x.double().requires_grad_(), coef.double().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, c: tree_conv.kernel_tree_conv(x, leaves, c, *geometry, backend=emulator), (x, coef))


def test_positions_of_zero_gradient_are_skipped(emulator: Emulator) -> None:
    # A NaN input read only by outputs of gradient 0 must not reach the coefficient gradient (0 * NaN would) nor
    # any input gradient: those positions are not recomputed at all.
    x, leaves, coef = _problem(2, 2, (6, 6), 3, 3, (3, 3), seed=2)
    grad = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    grad[0, :, :3, :3] = 0  # every output whose window can hold (0, c, 0, 0)
    x[0, :, 0, 0] = float("nan")
    xk, ck = x.clone().requires_grad_(), coef.clone().requires_grad_()
    out = tree_conv.kernel_tree_conv(xk, leaves, ck, 3, 1, 1, backend=emulator)
    out.backward(grad)
    assert xk.grad is not None and ck.grad is not None
    assert ck.grad.isfinite().all() and xk.grad.isfinite().all()
    assert torch.equal(xk.grad[0, :, 0, 0], torch.zeros(2))
    # Everywhere else the gradients are the reference's, computed without the NaN.
    clean = x.clone()
    clean[0, :, 0, 0] = 0.5
    _, ref_gx, ref_gc = _reference_grads(clean, leaves, coef, grad, (3, 3), (1, 1), (1, 1))
    torch.testing.assert_close(ck.grad.double(), ref_gc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xk.grad[1].double(), ref_gx[1], rtol=1e-5, atol=1e-5)


def test_only_the_wanted_gradients_are_computed(emulator: Emulator) -> None:
    x, leaves, coef = _problem(2, 3, (5, 5), 2, 2, (3, 3), seed=4)
    grad = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(2))
    _, ref_gx, ref_gc = _reference_grads(x, leaves, coef, grad, (3, 3), (1, 1), (1, 1))
    for needs_x in (True, False):
        xk, ck = x.clone().requires_grad_(needs_x), coef.clone().requires_grad_(not needs_x)
        launches = len(emulator.launches)
        tree_conv.kernel_tree_conv(xk, leaves, ck, 3, 1, 1, backend=emulator).backward(grad)
        kernels = [k for k, _, _ in emulator.launches[launches:]]
        assert kernels[0] == "tree_conv_forward_f32" and kernels[1] == "tree_conv_backward_f32"
        assert ("tree_conv_backward_input_f32" in kernels) == needs_x
        assert ("tree_conv_reduce_coef_f32" in kernels) == (not needs_x)
        if needs_x:
            assert xk.grad is not None and ck.grad is None
            torch.testing.assert_close(xk.grad.double(), ref_gx, rtol=1e-5, atol=1e-5)
        else:
            assert xk.grad is None and ck.grad is not None
            torch.testing.assert_close(ck.grad.double(), ref_gc, rtol=1e-5, atol=1e-5)


def test_grid_striding_covers_channels_chunks_and_inputs(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_conv, "MAX_GRID_Y", 2)  # so 5 output channels take three strides
    monkeypatch.setattr(tree_conv, "MAX_CHUNKS", 2)  # each thread then sums several positions
    monkeypatch.setattr(tree_conv, "MAX_BLOCKS", 1)  # and the gather's threads stride over the inputs
    x, leaves, coef = _problem(3, 4, (9, 10), 5, 3, (3, 3), seed=8)
    grad = torch.randn(3, 5, 9, 10, generator=torch.Generator().manual_seed(2))
    got = _run(x, leaves, coef, grad, ((3, 3), (1, 1), (1, 1)), emulator)
    _close(got, _reference_grads(x, leaves, coef, grad, (3, 3), (1, 1), (1, 1)))
    grids = {kernel: grid for kernel, grid, _ in emulator.launches[-4:]}
    assert grids["tree_conv_forward_f32"][1] == 2 and grids["tree_conv_backward_f32"][:2] == (2, 2)
    assert grids["tree_conv_backward_input_f32"][0] == 1


def test_bfloat16_activations_round_like_torch(emulator: Emulator) -> None:
    x, leaves, coef = _problem(2, 3, (7, 6), 4, 3, (3, 3), seed=11)
    xb = x.to(torch.bfloat16)
    grad = torch.randn(2, 4, 7, 6, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    out, gx, gc = _run(xb, leaves, coef, grad, ((3, 3), (1, 1), (1, 1)), emulator)
    assert out.dtype == gx.dtype == torch.bfloat16 and gc.dtype == torch.float32
    ref_out, ref_gx, ref_gc = _reference_grads(xb.float(), leaves, coef, grad.float(), (3, 3), (1, 1), (1, 1))
    # The tree runs in float32 and rounds once, to the output.
    torch.testing.assert_close(out.double(), ref_out.to(torch.bfloat16).double(), rtol=2**-7, atol=1e-3)
    torch.testing.assert_close(gx.double(), ref_gx.to(torch.bfloat16).double(), rtol=2**-7, atol=1e-2)
    torch.testing.assert_close(gc.double(), ref_gc, rtol=1e-4, atol=1e-3)


def test_results_are_the_same_bits_on_every_run(emulator: Emulator) -> None:
    x, leaves, coef = _problem(3, 3, (8, 8), 4, 3, (3, 3), seed=12)
    grad = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    geometry = ((3, 3), (1, 1), (1, 1))
    first, second = _run(x, leaves, coef, grad, geometry, emulator), _run(x, leaves, coef, grad, geometry, emulator)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_empty_batch(emulator: Emulator) -> None:
    x, leaves, coef = _problem(0, 2, (4, 4), 3, 2, (3, 3), seed=0)
    out, gx, gc = _run(x, leaves, coef, torch.zeros(0, 3, 4, 4), ((3, 3), (1, 1), (1, 1)), emulator)
    assert out.shape == (0, 3, 4, 4) and gx.shape == (0, 2, 4, 4) and torch.equal(gc, torch.zeros(3, 3, 4))


def test_reverse_index_lists_the_leaves_of_each_channel_in_order() -> None:
    leaves = torch.tensor([[[2, 0, 0], [0, 1, 1]], [[2, 1, 0], [1, 0, 1]]])  # O = 2, L = 2
    offsets, readers = tree_conv.reverse_index(leaves, 4)
    assert offsets.dtype == readers.dtype == torch.int32
    assert offsets.tolist() == [0, 1, 2, 4, 4]
    assert [readers[offsets[c]:offsets[c + 1]].tolist() for c in range(4)] == [[1], [3], [0, 2], []]


def test_a_layer_s_leaves_are_converted_once_and_again_after_an_in_place_change() -> None:
    x, leaves, coef = _problem(1, 3, (4, 4), 2, 2, (3, 3), seed=1)
    shape = tree_conv.geometry(x, leaves, coef, 3, 1, 1)
    first = tree_conv.leaf_table(leaves, shape)
    assert tree_conv.leaf_table(leaves, shape) is first and first.flat.dtype == torch.int32
    leaves[0, 0, 0] = 2 - leaves[0, 0, 0]  # an in-place write bumps the version: converted again
    second = tree_conv.leaf_table(leaves, shape)
    assert second is not first and torch.equal(second.flat, leaves.to(torch.int32))


BAD = [
    (lambda x, leaves, coef: (x[0], leaves, coef, 3, 1, 1), r"x must be a \[B, C, H, W\]"),
    (lambda x, leaves, coef: (x.int(), leaves, coef, 3, 1, 1), r"x must be a \[B, C, H, W\] float32"),
    (lambda x, leaves, coef: (x, leaves.float(), coef, 3, 1, 1), "leaves must be an integer"),
    (lambda x, leaves, coef: (x, leaves[:, :3], coef[:, :2], 3, 1, 1), "trees of 3 leaves"),
    (lambda x, leaves, coef: (x, leaves, coef[:, :2], 3, 1, 1), r"coef must be a floating \[2, 3, 4\]"),
    (lambda x, leaves, coef: (x, leaves, coef, 3, 0, 1), "stride must be an int or a pair of ints >= 1"),
    (lambda x, leaves, coef: (x, leaves, coef, 3, 1, -1), "padding must be an int or a pair of ints >= 0"),
    (lambda x, leaves, coef: (x, leaves, coef, (7, 3), 1, 1), "does not fit a 3x4x4 input"),
    (lambda x, leaves, coef: (x, leaves, coef, 2, 1, 0), "leaf dy 2 is outside 0..1"),
    (lambda x, leaves, coef: (x[:, :2], leaves, coef, 3, 1, 1), "leaf channel 2 is outside 0..1"),
]


@pytest.mark.parametrize(("make", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_inputs_are_refused_before_any_launch(emulator: Emulator, make: object, message: str) -> None:
    x, leaves, coef = _problem(1, 3, (4, 4), 2, 2, (3, 3), seed=0)
    leaves[1, 2] = torch.tensor([2, 2, 1])  # the largest channel and dy, for the two range errors
    launches = len(emulator.launches)
    with pytest.raises(ValueError, match=message):
        tree_conv.kernel_tree_conv(*make(x, leaves, coef), backend=emulator)  # type: ignore[operator]
    assert len(emulator.launches) == launches


def test_cpu_tensors_never_take_the_kernels() -> None:
    x, leaves, coef = _problem(1, 2, (4, 4), 2, 2, (3, 3), seed=0)
    assert not tree_conv.supports(x, leaves, coef)


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_the_gpu_kernels_match_the_reference(dtype: torch.dtype) -> None:
    x, leaves, coef = _problem(64, 16, (16, 16), 32, 3, (3, 3), seed=9, device="cuda")
    x = x.to(dtype)
    grad = torch.randn(64, 32, 16, 16, device="cuda").to(dtype)
    grad[:, :, ::2] = 0  # half the positions skipped
    geometry = ((3, 3), (1, 1), (1, 1))
    got = _run(x, leaves, coef, grad, geometry, backend_for(x.device))
    want = _reference_grads(x.float(), leaves, coef, grad.float(), *geometry)
    if dtype == torch.float32:
        _close(got, want, rtol=1e-5, atol=1e-4)
    else:
        torch.testing.assert_close(got[0].double().cpu(), want[0].to(dtype).double(), rtol=2**-7, atol=1e-2)
        torch.testing.assert_close(got[1].double().cpu(), want[1].to(dtype).double(), rtol=2**-7, atol=2e-2)
        torch.testing.assert_close(got[2].double().cpu(), want[2], rtol=1e-3, atol=1e-1)


@gpu
@pytest.mark.parametrize("depth", [1, 4, 6])
def test_on_the_gpu_every_depth_instance_matches_the_reference(depth: int) -> None:
    x, leaves, coef = _problem(8, 6, (12, 12), 8, depth, (3, 3), seed=depth, device="cuda")
    coef = coef / 4  # keeps deep trees of random coefficients in a moderate range
    grad = torch.randn(8, 8, 6, 6, device="cuda")
    geometry = ((3, 3), (2, 2), (1, 1))
    _close(_run(x, leaves, coef, grad, geometry, backend_for(x.device)),
           _reference_grads(x, leaves, coef, grad, *geometry), rtol=1e-4, atol=1e-4)


@gpu
def test_on_the_gpu_results_are_the_same_bits_on_every_run() -> None:
    x, leaves, coef = _problem(128, 16, (32, 32), 64, 3, (3, 3), seed=2, device="cuda")
    grad = torch.randn(128, 64, 32, 32, device="cuda")
    geometry = ((3, 3), (1, 1), (1, 1))
    backend = backend_for(x.device)
    first, second = _run(x, leaves, coef, grad, geometry, backend), _run(x, leaves, coef, grad, geometry, backend)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@gpu
def test_on_the_gpu_a_logic_conv_step_runs_the_kernels_and_matches_the_torch_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bitlogic.nn import LogicConv2d

    torch.manual_seed(0)
    layer = LogicConv2d(4, 16, padding=1).cuda()
    x = torch.rand(32, 4, 15, 15, device="cuda", requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    kernel_grads = (x.grad.clone(), layer.weight.grad.clone())
    x.grad = None
    layer.weight.grad = None
    monkeypatch.setenv("BITLOGIC_CUDA_KERNELS", "0")  # the gather and one gate layer per tree level
    layer(x).square().sum().backward()
    torch.testing.assert_close(kernel_grads[0], x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(kernel_grads[1], layer.weight.grad, rtol=1e-4, atol=1e-4)
