"""Runs the CUDA kernels of ``cuda/`` on the CPU, for tests on machines without a GPU.

Each source is compiled as host C++ with g++ against ``cuda_emulator.h`` into a shared library that exports one
``emulate_<kernel>(dims, args)`` per kernel; :class:`Emulator` is a :class:`bitlogic.gpu._kernels.Backend` whose
``launch`` calls it with the same packed arguments ``cuLaunchKernel`` receives. The ops of :mod:`bitlogic.gpu` then
run unchanged on CPU tensors, so the tests check the kernels' arithmetic and indexing and the ops' launch
arguments; what only a GPU shows (timing, coalescing, streams, races between blocks) is left to the GPU tests. The
threads of a block run as fibers on one OS thread, switching at barriers (see the header).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "cuda"
HEADER = Path(__file__).resolve().parent / "cuda_emulator.h"
_KERNEL = re.compile(r'extern\s+"C"\s+void\s+(\w+)\s*\(')


def available() -> bool:
    return shutil.which("g++") is not None


class Emulator:
    """A backend that runs kernels on the CPU; ``build_dir`` holds the compiled libraries."""

    def __init__(self, build_dir: Path, sources: Path = SOURCES) -> None:
        self.build_dir, self.sources = build_dir, sources
        self._libraries: dict[str, ctypes.CDLL] = {}
        self.launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = []

    def library_path(self, module: str) -> Path:
        """The shared library of ``module`` (compiled on first use), exporting ``emulate_<kernel>`` per kernel."""
        source = self.sources / module
        flags = ["-std=c++20", "-O1", "-fPIC", "-include", str(HEADER), "-I", str(SOURCES), "-I", str(self.sources)]
        if os.environ.get("BITLOGIC_EMULATOR_SANITIZE"):
            # Out-of-bounds reads and writes of the kernels, reported by AddressSanitizer. The process must start
            # with the runtime preloaded (LD_PRELOAD=$(gcc -print-file-name=libasan.so)), so that torch's CPU
            # tensors come from its allocator and carry red zones.
            flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
        preprocessed = subprocess.run(
            ["g++", *flags, "-x", "c++", "-E", str(source)], check=True, capture_output=True, text=True
        ).stdout
        kernels = sorted(set(_KERNEL.findall(preprocessed)))
        wrappers = "".join(
            f'extern "C" int emulate_{k}(const unsigned int* d, void** a) {{ return emulator::launch(&{k}, d, a); }}\n'
            for k in kernels
        )
        text = f'#include "{source}"\n{wrappers}'
        headers = "".join(p.read_text() for p in sorted(SOURCES.glob("*.cuh")))
        digest = hashlib.sha256(
            (" ".join(flags) + text + source.read_text() + headers + HEADER.read_text()).encode()
        ).hexdigest()[:16]
        self.build_dir.mkdir(parents=True, exist_ok=True)
        unit = self.build_dir / f"{source.stem}-{digest}.cpp"
        library = unit.with_suffix(".so")
        if not library.exists():
            unit.write_text(text)
            subprocess.run(["g++", *flags, "-shared", "-o", str(library), str(unit)], check=True)
        return library

    def _library(self, module: str) -> ctypes.CDLL:
        found = self._libraries.get(module)
        if found is None:
            found = ctypes.CDLL(str(self.library_path(module)))
            self._libraries[module] = found
        return found

    def launch(
        self,
        module: str,
        kernel: str,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        args: Sequence[ctypes._SimpleCData],  # type: ignore[type-arg]
    ) -> None:
        function = getattr(self._library(module), f"emulate_{kernel}")
        dims = (ctypes.c_uint * 6)(*grid, *block)
        params = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        self.launches.append((kernel, grid, block))
        if function(dims, params) != 0:
            raise RuntimeError(f"emulated {kernel} (grid {grid}, block {block}): the threads of a block diverged at "
                               "a barrier; see stderr")
