"""Kernel modules: the sources of ``cuda/`` (built into the extension), compiled with NVRTC for the GPU at hand
(through the on-disk cache), loaded once per device, and launched on torch's current stream.

Ops launch kernels through a :class:`Backend`: :class:`CudaBackend` on a GPU; the tests run the same ops on the CPU
through an emulator backend that compiles the same sources as host C++.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from bitlogic._native import cuda_sources
from bitlogic.errors import CudaError
from bitlogic.gpu import _cache
from bitlogic.gpu._driver import driver
from bitlogic.gpu._nvrtc import Nvrtc, nvrtc

if TYPE_CHECKING:
    import torch

#: Options of every compile. No fast-math: the forward kernels must round as the reference does.
OPTIONS: tuple[str, ...] = ()

Arg = ctypes.c_void_p | ctypes.c_int | ctypes.c_longlong | ctypes.c_uint | ctypes.c_float
Dims = tuple[int, int, int]


def sources() -> dict[str, str]:
    """Kernel sources by file name: the ``.cu`` modules and the ``.cuh`` headers they include."""
    return cuda_sources()


def modules() -> list[str]:
    return sorted(name for name in sources() if name.endswith(".cu"))


def image(module: str, target: str, compiler: Nvrtc | None = None) -> bytes:
    """The compiled image of ``module`` (a file name of ``cuda/``) for ``target`` (``sm_90``, ``compute_90``)."""
    compiler = compiler or nvrtc()
    texts = sources()
    if module not in texts:
        raise CudaError(f"no kernel source {module!r}; the sources are {', '.join(modules())}")
    headers = {name: text for name, text in texts.items() if name.endswith(".cuh")}
    digest = _cache.key(texts[module], headers, OPTIONS, compiler.version, target)
    cached = _cache.read(module, digest, target)
    if cached is not None:
        return cached
    compiled = compiler.compile(texts[module], module, headers, target, OPTIONS)
    _cache.write(module, digest, target, compiled)
    return compiled


def pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr())


def i32(value: int) -> ctypes.c_int:
    if not -(2**31) <= value < 2**31:
        raise CudaError(f"{value} does not fit a 32-bit kernel argument")
    return ctypes.c_int(value)


def i64(value: int) -> ctypes.c_longlong:
    return ctypes.c_longlong(value)


def blocks(count: int, per_block: int) -> int:
    """Blocks of ``per_block`` threads that cover ``count`` items (at least one)."""
    return max(1, -(-count // per_block))


class Backend(Protocol):
    """Where kernels run: ``launch`` runs ``kernel`` of ``module`` on a grid of blocks, in order with torch's work."""

    def launch(self, module: str, kernel: str, grid: Dims, block: Dims, args: Sequence[Arg]) -> None: ...


class CudaBackend:
    """Kernels on CUDA device ``index``: compiled for its architecture on first use, launched on torch's stream."""

    def __init__(self, index: int) -> None:
        import torch

        self.index = index
        self.capability = torch.cuda.get_device_capability(index)
        self.target = nvrtc().target_for(self.capability)
        self._modules: dict[str, ctypes.c_void_p] = {}
        self._functions: dict[tuple[str, str], ctypes.c_void_p] = {}
        self._lock = threading.Lock()

    def _function(self, module: str, kernel: str) -> ctypes.c_void_p:
        found = self._functions.get((module, kernel))
        if found is not None:
            return found
        with self._lock:  # the first use of a module compiles (or reads from the cache) and loads it, once
            found = self._functions.get((module, kernel))
            if found is None:
                handle = self._modules.get(module)
                if handle is None:
                    handle = driver().load_module(self.index, image(module, self.target))
                    self._modules[module] = handle
                found = driver().function(handle, kernel)
                self._functions[(module, kernel)] = found
            return found

    def launch(self, module: str, kernel: str, grid: Dims, block: Dims, args: Sequence[Arg]) -> None:
        import torch

        function = self._function(module, kernel)
        stream = torch.cuda.current_stream(self.index).cuda_stream
        driver().launch(self.index, function, grid, block, stream, args, kernel)


@functools.lru_cache(maxsize=None)
def _cuda_backend(index: int) -> CudaBackend:
    return CudaBackend(index)


def backend_for(device: torch.device) -> Backend:
    """The backend for tensors on ``device``; raises :class:`CudaError` for anything but a CUDA device."""
    if device.type != "cuda":
        raise CudaError(f"GPU kernels need CUDA tensors, got tensors on {device}")
    import torch

    return _cuda_backend(device.index if device.index is not None else torch.cuda.current_device())


__all__ = ["Backend", "CudaBackend", "OPTIONS", "backend_for", "blocks", "i32", "i64", "image", "modules", "pointer",
           "sources"]
