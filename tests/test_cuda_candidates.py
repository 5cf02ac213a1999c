"""The candidate-mix kernels of cuda/candidates.cu (launched by bitlogic.gpu.candidates), the learned wiring's
weighted sums ``out[r] = sum_k w[r, k] * x[pool[r, k]]`` and their gradients.

On the CPU they run in the emulator (tests/cuda_emulator.py) against the pure-torch reference ``MixCandidates`` of
bitlogic.ops.logic, in float64; on a GPU (where one exists) the same checks run on the device. Tolerances: float32
within 1e-5 relative (the kernels sum in another order than torch), bfloat16 within one bfloat16 rounding step.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bitlogic.gpu import _driver, _kernels, candidates
from bitlogic.gpu._kernels import Backend, backend_for
from bitlogic.nn import LogicLayer, LUTLayer
from bitlogic.ops.logic import MixCandidates, kernel_mix, kernel_mix_applies, kernel_mix_grads
from bitlogic.ops.lut import CandidateSelect
from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU emulator of the CUDA kernels needs g++")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

Result = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    return Emulator(Path(tmp_path_factory.mktemp("emulated-kernels")))


def _problem(batch: int, inputs: int, rows: int, k: int, seed: int, weights: str = "soft",
             device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feature-major x ``[inputs, batch]``, int64 pool ``[rows, k]`` (candidates may repeat) and weights."""
    g = torch.Generator().manual_seed(seed)
    xt = torch.rand(inputs, batch, generator=g)
    pool = torch.randint(0, inputs, (rows, k), generator=g)
    logits = torch.randn(rows, k, generator=g)
    if weights == "soft":
        w = torch.softmax(logits, dim=1)
    elif weights == "one-hot":
        w = torch.zeros(rows, k).scatter_(1, logits.argmax(dim=1, keepdim=True), 1.0)
    else:  # arbitrary real weights, some exactly zero
        w = logits * (torch.rand(rows, k, generator=g) > 0.3)
    return xt.to(device), pool.to(device), w.to(device)


def _reference(xt: torch.Tensor, pool: torch.Tensor, w: torch.Tensor, grad: torch.Tensor) -> Result:
    """Output, input gradient and weight gradient of the torch op, in float64."""
    x = xt.detach().double().requires_grad_()
    weights = w.detach().double().requires_grad_()
    out = MixCandidates.apply(x, pool.reshape(-1), weights)
    out.backward(grad.double())
    assert x.grad is not None and weights.grad is not None
    return out.detach(), x.grad, weights.grad


def _run(xt: torch.Tensor, pool: torch.Tensor, w: torch.Tensor, grad: torch.Tensor, backend: Backend) -> Result:
    p = candidates.pool(pool.reshape(-1), xt.shape[0])
    wc = w.to(candidates.compute_dtype(xt.dtype)).contiguous()
    out = candidates.forward(xt, p, wc, backend)
    gx = candidates.backward_input(xt, p, wc, grad, backend)
    gw = candidates.backward_weights(xt, p, grad, w.shape[1], backend)
    return out, gx, gw


def _close(got: Result, want: Result, gw_atol: float = 1e-4) -> None:
    torch.testing.assert_close(got[0].double(), want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1].double(), want[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2].double(), want[2], rtol=1e-5, atol=gw_atol)


@pytest.mark.parametrize("weights", ["soft", "one-hot", "real"])
@pytest.mark.parametrize(("batch", "inputs", "rows", "k"),
                         [(1, 3, 5, 1), (37, 16, 40, 4), (300, 50, 24, 8), (33, 7, 10, 16), (65, 200, 9, 3)])
def test_forward_and_gradients_match_the_reference(emulator: Emulator, batch: int, inputs: int, rows: int, k: int,
                                                   weights: str) -> None:
    xt, pool, w = _problem(batch, inputs, rows, k, seed=batch + k, weights=weights)
    grad = torch.randn(rows, batch, generator=torch.Generator().manual_seed(7))
    got = _run(xt, pool, w, grad, emulator)
    _close(got, _reference(xt, pool, w, grad))
    assert got[0].shape == (rows, batch) and got[1].shape == (inputs, batch) and got[2].shape == (rows, k)
    assert got[0].dtype == got[1].dtype == got[2].dtype == torch.float32


def test_one_hot_weights_forward_the_chosen_candidate_exactly(emulator: Emulator) -> None:
    xt, pool, w = _problem(77, 30, 50, 6, seed=3, weights="one-hot")
    out = candidates.forward(xt, candidates.pool(pool.reshape(-1), 30), w, emulator)
    assert torch.equal(out, xt[pool.gather(1, w.argmax(dim=1, keepdim=True)).squeeze(1)])


def test_zero_weights_are_skipped(emulator: Emulator) -> None:
    # A candidate of weight 0 is not read: a NaN there does not reach the output (0 * NaN would), nor the input
    # gradient through a zero backward weight.
    xt, pool, w = _problem(40, 5, 8, 3, seed=1, weights="one-hot")
    pool[:, 0], pool[:, 1:] = 0, torch.arange(1, 5).repeat(8)[: 8 * 2].view(8, 2)
    w[:, 0], w[:, 1] = 0.0, 1.0 - w[:, 2]
    xt[0] = float("nan")
    p = candidates.pool(pool.reshape(-1), 5)
    out = candidates.forward(xt, p, w, emulator)
    assert not out.isnan().any()
    grad = torch.full((8, 40), float("nan"))
    grad_x = candidates.backward_input(xt, p, torch.zeros_like(w), grad, emulator)
    assert torch.equal(grad_x, torch.zeros(5, 40))


def test_a_choice_listing_one_input_twice_gets_both_terms(emulator: Emulator) -> None:
    xt, _, w = _problem(45, 6, 4, 3, seed=5, weights="real")
    pool = torch.tensor([[2, 2, 2], [1, 3, 1], [0, 5, 4], [5, 5, 0]])
    grad = torch.randn(4, 45, generator=torch.Generator().manual_seed(2))
    _close(_run(xt, pool, w, grad, emulator), _reference(xt, pool, w, grad))


def test_the_input_gradient_takes_separate_backward_weights(emulator: Emulator) -> None:
    # The straight-through estimators forward one-hot weights and differentiate the soft ones.
    xt, pool, hard = _problem(50, 12, 20, 5, seed=8, weights="one-hot")
    soft = torch.softmax(torch.randn(20, 5, generator=torch.Generator().manual_seed(3)), dim=1)
    grad = torch.randn(20, 50, generator=torch.Generator().manual_seed(4))
    p = candidates.pool(pool.reshape(-1), 12)
    got = candidates.backward_input(xt, p, soft, grad, emulator)
    want = torch.zeros(12, 50, dtype=torch.float64).index_add_(
        0, pool.reshape(-1), (soft.double().unsqueeze(2) * grad.double().unsqueeze(1)).reshape(100, 50))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_grid_striding_covers_rows_inputs_and_pairs_beyond_one_grid(emulator: Emulator,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(candidates, "MAX_GRID_Y", 3)  # so a handful of rows and inputs already need several strides
    monkeypatch.setattr(candidates, "MAX_BLOCKS", 2)  # and 16 warps a dozen strides over the pairs
    xt, pool, w = _problem(40, 11, 29, 7, seed=5)
    grad = torch.randn(29, 40, generator=torch.Generator().manual_seed(2))
    _close(_run(xt, pool, w, grad, emulator), _reference(xt, pool, w, grad))
    grids = [grid for _, grid, _ in emulator.launches[-3:]]
    assert grids[0][1] == 3 and grids[1][1] == 3 and grids[2][0] == 2


def test_bfloat16_activations_round_like_torch(emulator: Emulator) -> None:
    xt, pool, w = _problem(90, 20, 33, 4, seed=11)
    xb = xt.to(torch.bfloat16)
    grad = torch.randn(33, 90, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    out, gx, gw = _run(xb, pool, w, grad, emulator)
    assert out.dtype == torch.bfloat16 and gx.dtype == torch.bfloat16 and gw.dtype == torch.float32
    ref_out, ref_gx, ref_gw = _reference(xb.float(), pool, w, grad.float())
    # One bfloat16 step (2^-8 relative) for values the kernel rounds once from float32.
    torch.testing.assert_close(out.double(), ref_out.to(torch.bfloat16).double(), rtol=2**-7, atol=1e-3)
    torch.testing.assert_close(gx.double(), ref_gx.to(torch.bfloat16).double(), rtol=2**-7, atol=1e-2)
    torch.testing.assert_close(gw.double(), ref_gw, rtol=1e-4, atol=1e-3)


def test_float64_is_float64_throughout(emulator: Emulator) -> None:
    xt, pool, w = _problem(21, 9, 13, 5, seed=6, weights="real")
    grad = torch.randn(13, 21, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = _run(xt.double(), pool, w.double(), grad, emulator)
    want = _reference(xt, pool, w, grad)
    assert all(t.dtype == torch.float64 for t in got)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_results_are_the_same_bits_on_every_run(emulator: Emulator) -> None:
    xt, pool, w = _problem(130, 25, 60, 8, seed=12)
    grad = torch.randn(60, 130, generator=torch.Generator().manual_seed(6))
    first, second = _run(xt, pool, w, grad, emulator), _run(xt, pool, w, grad, emulator)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_empty_batch_and_no_rows(emulator: Emulator) -> None:
    xt, pool, w = _problem(0, 4, 6, 3, seed=0)
    out, gx, gw = _run(xt, pool, w, torch.zeros(6, 0), emulator)
    assert out.shape == (6, 0) and gx.shape == (4, 0) and torch.equal(gw, torch.zeros(6, 3))
    xt = torch.rand(4, 10)
    out, gx, gw = _run(xt, torch.zeros(0, 3, dtype=torch.int64), torch.zeros(0, 3), torch.zeros(0, 10), emulator)
    assert out.shape == (0, 10) and torch.equal(gx, torch.zeros(4, 10)) and gw.shape == (0, 3)


def test_reverse_index_lists_every_read_in_increasing_position() -> None:
    flat = torch.tensor([0, 2, 2, 1, 2, 0])  # two rows of K = 3
    offsets, readers = candidates.reverse_index(flat, 4)
    assert offsets.dtype == readers.dtype == torch.int32
    assert offsets.tolist() == [0, 2, 3, 6, 6]
    assert [readers[offsets[i]:offsets[i + 1]].tolist() for i in range(4)] == [[0, 5], [3], [1, 2, 4], []]


def test_a_layer_s_pool_is_converted_once_and_again_after_an_in_place_change() -> None:
    buffer = torch.tensor([[[0, 1], [2, 2]], [[1, 0], [2, 1]]])  # [2, N, K], as a LogicLayer holds its candidates
    first = candidates.pool(buffer.reshape(-1), 3)
    assert candidates.pool(buffer.reshape(-1), 3) is first  # a fresh view of the same buffer: the cached entry
    offsets, _ = first.reverse()
    assert first.reverse()[0] is offsets
    buffer[0, 0, 0] = 2  # an in-place write bumps the version: converted again
    second = candidates.pool(buffer.reshape(-1), 3)
    assert second is not first and second.flat.tolist() == [2, 1, 2, 2, 1, 0, 2, 1]
    assert candidates.pool(buffer.reshape(-1), 4) is not second  # another input width is another entry
    assert candidates.pool(buffer[1].reshape(-1), 3) is not second  # another view of the buffer too


def test_bad_inputs_are_refused_before_any_launch(emulator: Emulator) -> None:
    xt, pool, w = _problem(8, 5, 4, 2, seed=0)
    launches = len(emulator.launches)
    with pytest.raises(ValueError, match="candidate 5 is outside the 5 inputs"):
        candidates.pool(torch.tensor([0, 5]), 5)
    with pytest.raises(ValueError, match="candidate -1 is outside the 5 inputs"):
        candidates.pool(torch.tensor([-1, 0]), 5)
    with pytest.raises(ValueError, match="1-D integer tensor"):
        candidates.pool(torch.tensor([0.0, 1.0]), 5)
    p = candidates.pool(pool.reshape(-1), 5)
    with pytest.raises(ValueError, match=r"x has 6 inputs, the candidates index 5"):
        candidates.forward(torch.rand(6, 8), p, w, emulator)
    with pytest.raises(ValueError, match=r"weights must be a contiguous \[rows, K\] torch.float32"):
        candidates.forward(xt, p, w.double(), emulator)
    with pytest.raises(ValueError, match=r"weights \[2, 2\] do not match the 8 candidates"):
        candidates.forward(xt, p, w[:2].contiguous(), emulator)
    with pytest.raises(ValueError, match="x must be a contiguous feature-major"):
        candidates.forward(xt.t(), p, w, emulator)
    with pytest.raises(ValueError, match=r"output gradient must be a contiguous \[4, 8\]"):
        candidates.backward_input(xt, p, w, torch.zeros(4, 7), emulator)
    with pytest.raises(ValueError, match="8 candidates are not rows of K = 3"):
        candidates.backward_weights(xt, p, torch.zeros(4, 8), 3, emulator)
    assert len(emulator.launches) == launches


def _autograd(xt: torch.Tensor, pool: torch.Tensor, w: torch.Tensor, grad: torch.Tensor, backend: Backend,
              v: torch.Tensor | None = None) -> Result:
    x = xt.detach().clone().requires_grad_()
    weights = w.detach().clone().requires_grad_()
    out = kernel_mix(x, pool, weights, v, backend)
    out.backward(grad)
    assert x.grad is not None and weights.grad is not None
    return out.detach(), x.grad, weights.grad


@pytest.mark.parametrize("weights", ["soft", "one-hot"])
def test_the_autograd_function_matches_the_reference(emulator: Emulator, weights: str) -> None:
    xt, pool, w = _problem(61, 14, 30, 6, seed=4, weights=weights)
    grad = torch.randn(30, 61, generator=torch.Generator().manual_seed(9))
    got = _autograd(xt, pool, w, grad, emulator)
    _close(got, _reference(xt, pool, w, grad))
    assert got[2].dtype == torch.float32


def test_the_autograd_function_spreads_the_input_gradient_by_the_backward_weights(emulator: Emulator) -> None:
    xt, pool, hard = _problem(50, 12, 20, 5, seed=8, weights="one-hot")
    soft = torch.softmax(torch.randn(20, 5, generator=torch.Generator().manual_seed(3)), dim=1)
    grad = torch.randn(20, 50, generator=torch.Generator().manual_seed(4))
    out, gx, gw = _autograd(xt, pool, hard, grad, emulator, v=soft)
    ref_out, _, ref_gw = _reference(xt, pool, hard, grad)  # the forward pass and weight gradient ignore v
    _, ref_gx, _ = _reference(xt, pool, soft, grad)  # the input gradient is the soft mixture's
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx.double(), ref_gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw.double(), ref_gw, rtol=1e-5, atol=1e-4)


def test_gradcheck_in_float64(emulator: Emulator) -> None:
    xt, pool, w = _problem(9, 5, 7, 3, seed=13, weights="real")
    pool[0] = 2  # one choice lists an input three times
    x = xt.double().requires_grad_()
    weights = w.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: kernel_mix(x, pool, w, None, emulator), (x, weights))


def test_candidates_outside_the_inputs_are_refused_by_the_op(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="candidate 4 is outside the 4 inputs"):
        kernel_mix(torch.rand(4, 3), torch.tensor([[0, 4]]), torch.ones(1, 2), None, emulator)


@pytest.mark.parametrize("need_x", [True, False])
def test_the_gradients_alone_match_a_lut_mapping_s_candidate_select(emulator: Emulator, need_x: bool) -> None:
    # A LUT's learnable mapping forwards its chosen candidate and differentiates the mixture softmax(W / tau).
    g = torch.Generator().manual_seed(21)
    x = torch.rand(43, 18, generator=g, dtype=torch.float64, requires_grad=True)  # sample-major, as LUTLayer reads
    weight = torch.randn(24, 5, generator=g, dtype=torch.float64, requires_grad=True)
    pool = torch.randint(0, 18, (24, 5), generator=g)
    grad = torch.randn(43, 24, generator=g, dtype=torch.float64)
    CandidateSelect.apply(x, weight, pool, 0.5).backward(grad)
    assert x.grad is not None and weight.grad is not None
    soft = torch.softmax(weight.detach() / 0.5, dim=1)
    gw, gx = kernel_mix_grads(x.detach().t(), pool, soft, grad.t(), need_x, emulator)
    torch.testing.assert_close(gw, weight.grad, rtol=1e-12, atol=1e-12)
    if need_x:
        assert gx is not None
        torch.testing.assert_close(gx.t(), x.grad, rtol=1e-12, atol=1e-12)
    else:
        assert gx is None


@pytest.mark.parametrize("estimator", ["soft", "hard"])
def test_a_learned_wiring_layer_routes_its_mix_to_the_kernels(emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
                                                             estimator: str) -> None:
    # mix_candidates' GPU branch, taken on the CPU: the emulator stands in for the GPU (float64, which no CPU kernel
    # takes), and the layer's step must match the pure-torch one.
    from bitlogic.ops import logic as ops

    torch.manual_seed(0)
    layer = LogicLayer(20, 30, connections="learned", candidates=4, estimator=estimator).double()
    x = torch.rand(37, 20, dtype=torch.float64, requires_grad=True)
    params = [x, *layer.parameters()]

    def step() -> list[torch.Tensor]:
        for p in params:
            p.grad = None
        out = layer(x)
        out.square().sum().backward()
        return [out.detach(), *(p.grad.clone() for p in params if p.grad is not None)]

    reference = step()
    monkeypatch.setattr(candidates, "supports", lambda *tensors: True)
    monkeypatch.setattr(ops, "use_kernels", lambda device: True)
    monkeypatch.setattr(ops, "backend_for", lambda device: emulator)
    launches = len(emulator.launches)
    routed = step()
    assert [k for k, _, _ in emulator.launches[launches:]] == [
        "candidate_forward_f64", "candidate_backward_input_f64", "candidate_backward_weights_f64"]
    assert len(routed) == len(reference) == 2 + len(list(layer.parameters()))
    for got, want in zip(routed, reference):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("estimator", ["hard", "soft", "gumbel"])
def test_a_lut_layer_s_learnable_pool_routes_its_mapping_to_the_kernels(emulator: Emulator,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      estimator: str) -> None:
    # The GPU branches of CandidateSelect ("hard") and relaxed_select ("soft", "gumbel"), taken on the CPU with the
    # emulator standing in for the GPU (float64, which no CPU kernel takes): the step must match the pure-torch one.
    from bitlogic.ops import logic as ops
    from bitlogic.ops import lut as lut_ops

    torch.manual_seed(0)
    layer = LUTLayer(24, 10, n=3, mapping="learnable", candidates=5, estimator=estimator).double()
    x = torch.rand(37, 24, dtype=torch.float64, requires_grad=True)
    params = [x, *layer.parameters()]

    def step() -> list[torch.Tensor]:
        for p in params:
            p.grad = None
        torch.manual_seed(1)  # the same Gumbel noise on both paths
        out = layer(x)
        out.square().sum().backward()
        return [out.detach(), *(p.grad.clone() for p in params if p.grad is not None)]

    reference = step()
    monkeypatch.setattr(lut_ops, "kernel_mix_applies", lambda *tensors: True)
    monkeypatch.setattr(ops, "backend_for", lambda device: emulator)
    launches = len(emulator.launches)
    routed = step()
    kernels = [k for k, _, _ in emulator.launches[launches:]]
    assert "candidate_backward_weights_f64" in kernels and "candidate_backward_input_f64" in kernels
    assert ("candidate_forward_f64" in kernels) == (estimator != "hard")
    assert len(routed) == len(reference) == 2 + len(list(layer.parameters()))
    for got, want in zip(routed, reference):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_cpu_tensors_never_take_the_kernels() -> None:
    x, pool, w = torch.rand(4, 8), torch.zeros(2, 3, dtype=torch.int64), torch.rand(2, 3)
    assert not candidates.supports(x, pool.reshape(-1), w)
    assert not kernel_mix_applies(x, pool, w)


@pytest.fixture
def fake_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in libcuda of tests/fake_cuda_driver.c (see tests/test_cuda_launch.py), loaded as the driver."""
    library = tmp_path / "libcuda.so.1"
    source = Path(__file__).with_name("fake_cuda_driver.c")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source), "-ldl"], check=True)
    monkeypatch.setattr(_driver, "_LIBRARY", str(library))
    _driver.driver.cache_clear()
    yield library
    _driver.driver.cache_clear()


def test_the_op_runs_through_cuda_backend(emulator: Emulator, fake_driver: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The launch path of a GPU (module load, function lookup, argument packing, torch's stream) with the emulator's
    # libraries as the module images: what torch would answer on a GPU is compute capability 9.0 and a stream.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda index=None: SimpleNamespace(cuda_stream=0x5EED))
    monkeypatch.setattr(_kernels, "image", lambda module, target, compiler=None: str(
        emulator.library_path(module)).encode())
    xt, pool, w = _problem(70, 12, 30, 4, seed=17)
    grad = torch.randn(30, 70, generator=torch.Generator().manual_seed(3))
    got = _autograd(xt, pool, w, grad, _kernels.CudaBackend(0))
    _close(got, _reference(xt, pool, w, grad))


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_the_gpu_kernels_match_the_reference(dtype: torch.dtype) -> None:
    xt, pool, w = _problem(1000, 784, 16000, 8, seed=9, device="cuda")
    xt = xt.to(dtype)
    grad = torch.randn(16000, 1000, device="cuda").to(dtype)
    out, gx, gw = _run(xt, pool, w, grad, backend_for(xt.device))
    ref_out, ref_gx, ref_gw = _reference(xt.float(), pool, w, grad.float())
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 2**-7, "atol": 2e-2}
    torch.testing.assert_close(out.double(), ref_out.to(dtype).double(), **tol)
    torch.testing.assert_close(gx.double(), ref_gx.to(dtype).double(), **tol)
    torch.testing.assert_close(gw.double(), ref_gw, rtol=1e-3, atol=1e-2)


@gpu
def test_on_the_gpu_results_are_the_same_bits_on_every_run() -> None:
    xt, pool, w = _problem(4096, 400, 8000, 16, seed=2, device="cuda")
    grad = torch.randn(8000, 4096, device="cuda")
    backend = backend_for(xt.device)
    first, second = _run(xt, pool, w, grad, backend), _run(xt, pool, w, grad, backend)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@gpu
@pytest.mark.parametrize("estimator", ["soft", "hard", "gumbel"])
def test_on_the_gpu_a_learned_wiring_step_matches_the_torch_path(monkeypatch: pytest.MonkeyPatch,
                                                                 estimator: str) -> None:
    torch.manual_seed(0)
    layer = LogicLayer(200, 500, connections="learned", candidates=8, estimator=estimator).cuda()
    x = torch.rand(256, 200, device="cuda", requires_grad=True)
    params = [x, *layer.parameters()]

    def step() -> list[torch.Tensor]:
        for p in params:
            p.grad = None
        torch.manual_seed(1)  # the same Gumbel noise on both paths
        layer(x).square().sum().backward()
        grads = [p.grad for p in params]
        assert all(g is not None for g in grads)
        return [g.clone() for g in grads if g is not None]

    kernel_grads = step()
    monkeypatch.setenv("BITLOGIC_CUDA_KERNELS", "0")
    for got, want in zip(kernel_grads, step()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
