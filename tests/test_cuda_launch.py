"""bitlogic.gpu's launch stack without a GPU: the ctypes calls of ``_driver.py`` and ``CudaBackend`` run against a
stand-in driver (tests/fake_cuda_driver.c, with the real driver's signatures and error codes) whose "module images"
are the emulator's libraries, so an op goes through the very code it uses on a GPU — compile target, module load,
function lookup, argument packing, the launch on torch's stream — and its result is checked."""

from __future__ import annotations

import ctypes
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bitlogic.gpu import CudaError, _driver, _kernels
from bitlogic.ops.logic import gates_torch, logic_gates
from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the stand-in driver and the emulator need gcc and g++")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Emulator]:
    folder = Path(tmp_path_factory.mktemp("fake-driver"))
    library = folder / "libcuda.so.1"
    source = Path(__file__).with_name("fake_cuda_driver.c")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source), "-ldl"], check=True)
    return library, Emulator(folder / "emulated")


@pytest.fixture
def driver(built: tuple[Path, Emulator], monkeypatch: pytest.MonkeyPatch) -> Iterator[_driver.Driver]:
    monkeypatch.setattr(_driver, "_LIBRARY", str(built[0]))
    _driver.driver.cache_clear()
    yield _driver.driver()
    _driver.driver.cache_clear()


def _args(*tensors_and_ints: object) -> list[_kernels.Arg]:
    out: list[_kernels.Arg] = []
    for v in tensors_and_ints:
        out.append(_kernels.pointer(v) if isinstance(v, torch.Tensor) else v)  # type: ignore[arg-type]
    return out


def test_a_kernel_launched_through_the_driver_calls(built: tuple[Path, Emulator], driver: _driver.Driver) -> None:
    module = driver.load_module(0, str(built[1].library_path("logic_layer.cu")).encode())
    function = driver.function(module, "logic_forward_f32")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 300, generator=g)  # feature-major [inputs, batch]
    ia, ib = torch.randint(0, 20, (8,), generator=g), torch.randint(0, 20, (8,), generator=g)
    coef = torch.randn(8, 4, generator=g)
    out = torch.empty(8, 300)
    ia32, ib32 = ia.to(torch.int32), ib.to(torch.int32)

    def launch() -> None:
        driver.launch(0, function, (2, 8, 1), (256, 1, 1), 0xABC,
                      _args(x, ia32, ib32, coef, out, _kernels.i32(8), _kernels.i64(300)), "logic_forward_f32")

    worker = threading.Thread(target=launch)  # a thread that never made the context current (autograd's case)
    worker.start()
    worker.join()
    torch.testing.assert_close(out.t(), gates_torch(x.t(), ia, ib, coef))
    fake = ctypes.CDLL(str(built[0]))
    fake.fake_last_stream.restype = ctypes.c_void_p
    assert fake.fake_last_stream() == 0xABC


def test_driver_errors_name_the_call_and_the_reason(built: tuple[Path, Emulator], driver: _driver.Driver) -> None:
    module = driver.load_module(0, str(built[1].library_path("logic_layer.cu")).encode())
    with pytest.raises(CudaError, match=r"cuModuleGetFunction\(no_such_kernel\) failed: named symbol not found "
                                        r"\(CUDA 500\)"):
        driver.function(module, "no_such_kernel")
    with pytest.raises(CudaError, match=r"cuModuleLoadData failed: device kernel image is invalid \(CUDA 200\)"):
        driver.load_module(0, b"/nonexistent/image")
    with pytest.raises(CudaError, match=r"cuDeviceGet failed: invalid device ordinal \(CUDA 101\)"):
        driver.make_current(3)


def test_an_op_runs_through_cuda_backend(built: tuple[Path, Emulator], driver: _driver.Driver,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # What torch would answer on a GPU: compute capability 9.0 and a stream handle.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda index=None: SimpleNamespace(cuda_stream=0x5EED))
    targets: list[str] = []

    def image(module: str, target: str, compiler: object = None) -> bytes:
        targets.append(target)
        return str(built[1].library_path(module)).encode()

    monkeypatch.setattr(_kernels, "image", image)
    backend = _kernels.CudaBackend(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(70, 12, generator=g, requires_grad=True)
    ia, ib = torch.randint(0, 12, (30,), generator=g), torch.randint(0, 12, (30,), generator=g)
    coef = torch.randn(30, 4, generator=g, requires_grad=True)
    out = logic_gates(x, ia, ib, coef, backend)
    out.sum().backward()
    xr, cr = x.detach().clone().requires_grad_(), coef.detach().clone().requires_grad_()
    ref = gates_torch(xr, ia, ib, cr)
    ref.sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(coef.grad, cr.grad, rtol=1e-5, atol=1e-5)
    assert targets == ["sm_90"]  # compiled (here: built) once for the GPU's architecture, then the module is reused
