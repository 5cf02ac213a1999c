"""NVRTC, the CUDA runtime compiler, through ctypes: CUDA C++ source in, a CUBIN or PTX image out.

CUDA builds of torch from PyPI bring libnvrtc in NVIDIA's ``nvidia`` wheels; a system CUDA toolkit works too. The
library is looked up, in order: the file named by ``BITLOGIC_NVRTC``; the ``nvidia`` wheels beside torch; torch's own
``lib`` folder; the system's library path. Nothing here needs a GPU, so kernels can be compiled (and checked) on any
machine that has the library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bitlogic.errors import CudaError, KernelCompileError

_LINUX_NAME = re.compile(r"^libnvrtc\.so(\.(\d+)(\.\d+)*)?$")
_WINDOWS_NAME = re.compile(r"^nvrtc64_(\d+)\w*\.dll$")


def _version_key(path: Path) -> int:
    match = _LINUX_NAME.match(path.name) or _WINDOWS_NAME.match(path.name)
    if match is None:
        return -1
    digits = match.group(2) if match.re is _LINUX_NAME else match.group(1)
    return int(digits[:2]) if digits else 0


def _candidates_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if _LINUX_NAME.match(p.name) or _WINDOWS_NAME.match(p.name)]


def _wheel_folders() -> list[Path]:
    """``lib`` / ``bin`` folders of NVIDIA's wheels (``nvidia/cu13/lib``, ``nvidia/cuda_nvrtc/lib``) and torch."""
    folders: list[Path] = []
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            for sub in sorted(Path(root).iterdir()):
                folders += [sub / "lib", sub / "bin"]
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is not None and torch_spec.origin:
        folders.append(Path(torch_spec.origin).parent / "lib")
    return folders


def find_library() -> str:
    """Path (or loader name) of the newest libnvrtc found; raises :class:`CudaError` naming where it looked."""
    override = os.environ.get("BITLOGIC_NVRTC")
    if override:
        if not Path(override).is_file():
            raise CudaError(f"BITLOGIC_NVRTC={override!r} is not a file")
        return override
    folders = _wheel_folders()
    found = [p for folder in folders for p in _candidates_in(folder)]
    if found:
        return str(max(found, key=_version_key))
    name = ctypes.util.find_library("nvrtc")
    if name:
        return name
    raise CudaError(
        "libnvrtc (the CUDA runtime compiler) was not found: install a CUDA build of torch (it brings NVIDIA's "
        "nvidia-cuda-nvrtc wheel), or a CUDA toolkit, or set BITLOGIC_NVRTC to the library's path. Looked in: "
        + ", ".join(str(f) for f in folders if f.is_dir())
        + ", and the system library path"
    )


class Nvrtc:
    """One loaded libnvrtc."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as error:
            raise CudaError(f"libnvrtc at {path} could not be loaded: {error}") from error
        lib = self._lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)
        count = ctypes.c_int()
        self._check(lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)), "nvrtcGetNumSupportedArchs")
        archs = (ctypes.c_int * count.value)()
        self._check(lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
        #: Compute capabilities this NVRTC compiles for, as 10 * major + minor (80 for sm_80), ascending.
        self.archs: list[int] = sorted(archs)

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            message = self._lib.nvrtcGetErrorString(result).decode(errors="replace")
            raise CudaError(f"{what} failed: {message} (NVRTC {result})")

    def compile(
        self, source: str, name: str, headers: Mapping[str, str], target: str, options: Sequence[str] = ()
    ) -> bytes:
        """The image of ``source`` for ``target``: ``"sm_90"`` gives a CUBIN, ``"compute_90"`` a PTX text.

        ``headers`` maps include names to their text. Raises :class:`KernelCompileError` with NVRTC's log.
        """
        lib = self._lib
        program = ctypes.c_void_p()
        names = [k.encode() for k in headers]
        texts = [v.encode() for v in headers.values()]
        self._check(
            lib.nvrtcCreateProgram(
                ctypes.byref(program),
                source.encode(),
                name.encode(),
                len(headers),
                (ctypes.c_char_p * len(texts))(*texts),
                (ctypes.c_char_p * len(names))(*names),
            ),
            "nvrtcCreateProgram",
        )
        try:
            flags = [f"--gpu-architecture={target}", "--std=c++17", *options]
            encoded = [f.encode() for f in flags]
            result = lib.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
            if result != 0:
                raise KernelCompileError(
                    f"NVRTC {self.version[0]}.{self.version[1]} could not compile {name} for {target} "
                    f"({' '.join(flags)}):\n{self._log(program)}"
                )
            cubin = target.startswith("sm_")
            get_size = lib.nvrtcGetCUBINSize if cubin else lib.nvrtcGetPTXSize
            get = lib.nvrtcGetCUBIN if cubin else lib.nvrtcGetPTX
            size = ctypes.c_size_t()
            self._check(get_size(program, ctypes.byref(size)), "nvrtcGetCUBINSize" if cubin else "nvrtcGetPTXSize")
            image = ctypes.create_string_buffer(size.value)
            self._check(get(program, image), "nvrtcGetCUBIN" if cubin else "nvrtcGetPTX")
            return image.raw
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(program))

    def _log(self, program: ctypes.c_void_p) -> str:
        size = ctypes.c_size_t()
        if self._lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)) != 0:
            return "(no log)"
        log = ctypes.create_string_buffer(size.value)
        self._lib.nvrtcGetProgramLog(program, log)
        return log.value.decode(errors="replace").strip()

    def target_for(self, capability: tuple[int, int]) -> str:
        """The compile target for a GPU of compute capability ``capability``.

        A CUBIN for the GPU's own architecture when NVRTC knows it; otherwise PTX for the newest architecture NVRTC
        knows below it, which the driver compiles for the GPU when the module is loaded (a GPU newer than NVRTC).
        """
        cc = capability[0] * 10 + capability[1]
        if cc in self.archs:
            return f"sm_{cc}"
        older = [a for a in self.archs if a <= cc]
        if not older:
            raise CudaError(
                f"the GPU's compute capability {capability[0]}.{capability[1]} is older than NVRTC "
                f"{self.version[0]}.{self.version[1]} supports (sm_{self.archs[0]} and newer)"
            )
        return f"compute_{older[-1]}"


@functools.lru_cache(maxsize=1)
def nvrtc() -> Nvrtc:
    """The process's NVRTC, loaded at first use."""
    return Nvrtc(find_library())


def available() -> bool:
    """Whether a libnvrtc can be found and loaded."""
    try:
        nvrtc()
    except CudaError:
        return False
    return True


__all__ = ["Nvrtc", "available", "find_library", "nvrtc"]

