"""The fused CPU kernels' threads: the same bits on any thread setting, and safe from several Python threads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bitlogic import _native  # noqa: E402
from bitlogic.ops import _threads  # noqa: E402
from bitlogic.ops.logic import FusedGates  # noqa: E402

# Large enough that every kernel splits its work into many tasks (in_dim x batch and N x batch well above the
# kernels' threshold of 65 536 results for running inline).
BATCH, IN_DIM, N = 64, 1500, 3000


def layer(seed: int) -> tuple[Any, Any, Any, Any, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, IN_DIM, generator=g)
    ia = torch.randint(0, IN_DIM, (N,), generator=g)
    ib = torch.randint(0, IN_DIM, (N,), generator=g)
    ib[::5] = ia[::5]  # gates reading one wire twice
    return x, ia, ib, torch.randn(N, 4, generator=g), torch.randn(BATCH, N, generator=g)


def fused_step(x: Any, ia: Any, ib: Any, coef: Any, grad: Any) -> tuple[Any, Any, Any]:
    """Output, input gradient and coefficient gradient of one fused layer, through autograd."""
    x = x.clone().requires_grad_()
    coef = coef.clone().requires_grad_()
    out = FusedGates.apply(x, ia, ib, coef)
    gx, gc = torch.autograd.grad(out, (x, coef), grad)
    return out.detach().clone(), gx, gc


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """Restores torch's thread count and the pool switch after the test."""
    threads, pool = torch.get_num_threads(), _threads.rayon_pool
    yield
    torch.set_num_threads(threads)
    _threads.rayon_pool = pool


@pytest.mark.usefixtures("torch_threads")
def test_same_bits_for_every_torch_thread_count_and_pool() -> None:
    case = layer(1)
    want = None
    for threads in (1, 2, 3):
        for rayon in (False, True):
            torch.set_num_threads(threads)
            _threads.rayon_pool = rayon
            assert _threads.kernel_threads() == (0 if rayon else threads)
            got = fused_step(*case)
            if want is None:
                want = got
            for name, a, b in zip(("out", "grad_x", "grad_coef"), got, want):
                assert torch.equal(a, b), f"{name} differs with torch threads {threads}, rayon pool {rayon}"


def test_native_threads_argument_gives_the_same_bits() -> None:
    x, ia, ib, coef, grad = layer(2)
    xt, g = x.t().contiguous().numpy(), grad.t().contiguous().numpy()
    ia_np, ib_np, c = ia.numpy(), ib.numpy(), coef.numpy()
    results = []
    for threads in (None, 0, 1, 2, 5):
        out = _native.gate_forward(xt, ia_np, ib_np, c, threads=threads)
        gx, gc = _native.gate_backward(xt, ia_np, ib_np, c, g, threads=threads)
        gc_only = _native.gate_backward_coef(xt, ia_np, ib_np, g, threads=threads)
        np.testing.assert_array_equal(gc_only, gc)
        results.append((out, gx, gc))
    for threads, got in zip((0, 1, 2, 5), results[1:]):
        for a, b in zip(got, results[0]):
            np.testing.assert_array_equal(a, b, err_msg=f"threads={threads} differs from threads=None")


@pytest.mark.usefixtures("torch_threads")
def test_several_python_threads_at_once_neither_deadlock_nor_mix_results() -> None:
    """Calls from several threads overlap (one holds the helpers, the others run alone): each gets its own result."""
    torch.set_num_threads(2)
    cases = [layer(10 + k) for k in range(4)]
    want = [fused_step(*c) for c in cases]
    errors: list[str] = []

    def run(k: int) -> None:
        try:
            for _ in range(10):
                got = fused_step(*cases[k])
                if not all(torch.equal(a, b) for a, b in zip(got, want[k])):
                    errors.append(f"thread {k}: a result differs")
        except Exception as e:  # reported below, with the thread
            errors.append(f"thread {k}: {e!r}")

    workers = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(cases))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a kernel call from several threads did not return (deadlock)"
    assert not errors, errors


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
@pytest.mark.usefixtures("torch_threads")
def test_calls_start_no_thread_per_call() -> None:
    torch.set_num_threads(2)
    case = layer(3)
    fused_step(*case)  # starts the helpers
    before = len(os.listdir("/proc/self/task"))
    for _ in range(20):
        fused_step(*case)
    assert len(os.listdir("/proc/self/task")) == before


def test_environment_variable_selects_rayon_pool() -> None:
    code = "from bitlogic.ops import _threads; print(_threads.rayon_pool, _threads.kernel_threads())"
    env = dict(os.environ, BITLOGIC_KERNEL_POOL="rayon")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "0"]
