"""The CUDA driver API through ctypes: load a compiled module into a device's primary context, launch its kernels.

torch's runtime works in each device's primary context, so modules loaded here see torch's memory and launches go
on torch's current stream; nothing else of the driver is touched.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from collections.abc import Sequence

from bitlogic.errors import CudaError

_LIBRARY = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


class Driver:
    """The loaded driver library and, per device ordinal, its retained primary context."""

    def __init__(self) -> None:
        try:
            self._lib = ctypes.CDLL(_LIBRARY)
        except OSError as error:
            raise CudaError(f"the CUDA driver ({_LIBRARY}) could not be loaded: {error}; is an NVIDIA driver "
                            "installed?") from error
        self._contexts: dict[int, ctypes.c_void_p] = {}
        self._lock = threading.Lock()
        # Typed, so that a launch passes plain ints (building ctypes objects per argument costs microseconds).
        self._launch = self._lib.cuLaunchKernel
        self._launch.argtypes = [ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_void_p]
        self._get_current = self._lib.cuCtxGetCurrent
        self._get_current.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.check(self._lib.cuInit(0), "cuInit")

    def check(self, result: int, what: str) -> None:
        if result == 0:
            return
        text = ctypes.c_char_p()
        self._lib.cuGetErrorString(result, ctypes.byref(text))
        name = text.value.decode(errors="replace") if text.value else "unknown error"
        raise CudaError(f"{what} failed: {name} (CUDA {result})")

    def make_current(self, device: int) -> None:
        """Makes ``device``'s primary context current on this thread (autograd runs backward on its own threads)."""
        context = self._contexts.get(device)
        if context is None:
            context = self._retain(device)
        current = ctypes.c_void_p()
        self.check(self._get_current(ctypes.byref(current)), "cuCtxGetCurrent")
        if current.value != context.value:
            self.check(self._lib.cuCtxSetCurrent(context), "cuCtxSetCurrent")

    def _retain(self, device: int) -> ctypes.c_void_p:
        with self._lock:
            context = self._contexts.get(device)
            if context is None:
                handle = ctypes.c_int()
                self.check(self._lib.cuDeviceGet(ctypes.byref(handle), device), "cuDeviceGet")
                context = ctypes.c_void_p()
                self.check(self._lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), handle),
                           "cuDevicePrimaryCtxRetain")
                self._contexts[device] = context
            return context

    def load_module(self, device: int, image: bytes) -> ctypes.c_void_p:
        self.make_current(device)
        module = ctypes.c_void_p()
        self.check(self._lib.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(image)), "cuModuleLoadData")
        return module

    def function(self, module: ctypes.c_void_p, name: str) -> ctypes.c_void_p:
        function = ctypes.c_void_p()
        self.check(self._lib.cuModuleGetFunction(ctypes.byref(function), module, name.encode()),
                   f"cuModuleGetFunction({name})")
        return function

    def launch(
        self,
        device: int,
        function: ctypes.c_void_p,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        stream: int,
        args: Sequence[ctypes._SimpleCData],  # type: ignore[type-arg]
        name: str,
    ) -> None:
        self.make_current(device)
        params = (ctypes.c_void_p * len(args))(*map(ctypes.addressof, args))
        result = self._launch(function, grid[0], grid[1], grid[2], block[0], block[1], block[2], 0, stream, params,
                              None)
        if result:
            self.check(result, f"launching {name}")


@functools.lru_cache(maxsize=1)
def driver() -> Driver:
    """The process's CUDA driver, loaded at first use."""
    return Driver()


__all__ = ["Driver", "driver"]
