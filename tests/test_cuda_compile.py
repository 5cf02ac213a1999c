"""The CUDA side that needs no GPU: every kernel source compiles with NVRTC for sm_80 and sm_90 (so a syntax or
type error fails here, on CPU-only machines), the sources shipped in the extension are the files of cuda/, targets
are chosen for old and new GPUs, compiled images are cached on disk, and missing pieces raise clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bitlogic import _native
from bitlogic.gpu import CudaError, KernelCompileError, _cache, _kernels, _nvrtc, use_kernels

REPO = Path(__file__).resolve().parent.parent
needs_nvrtc = pytest.mark.skipif(not _nvrtc.available(), reason="libnvrtc is not installed (no CUDA build of torch)")


def test_the_extension_ships_exactly_the_files_of_cuda() -> None:
    on_disk = {p.name: p.read_text() for p in (REPO / "cuda").iterdir() if p.suffix in (".cu", ".cuh")}
    assert _native.cuda_sources() == on_disk
    assert "logic_layer.cu" in _kernels.modules()


@needs_nvrtc
@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
@pytest.mark.parametrize("module", _kernels.modules())
def test_every_kernel_compiles(module: str, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITLOGIC_CACHE_DIR", str(tmp_path))
    image = _kernels.image(module, target)
    assert image.startswith(b"\x7fELF")  # a CUBIN is an ELF file


@needs_nvrtc
def test_ptx_for_a_gpu_newer_than_nvrtc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITLOGIC_CACHE_DIR", str(tmp_path))
    compiler = _nvrtc.nvrtc()
    newest = compiler.archs[-1]
    target = compiler.target_for((newest // 10 + 5, 0))
    assert target == f"compute_{newest}"
    ptx = _kernels.image("logic_layer.cu", target)
    assert b".entry logic_forward_f32" in ptx and b".entry logic_backward_input_bf16" in ptx


@needs_nvrtc
def test_a_compile_error_carries_nvrtc_s_log() -> None:
    with pytest.raises(KernelCompileError, match=r"broken\.cu.*(undefined|identifier)"):
        _nvrtc.nvrtc().compile('extern "C" __global__ void k() { undefined_name(); }', "broken.cu", {}, "sm_80")


def _fake_compiler(archs: list[int]) -> _nvrtc.Nvrtc:
    compiler = object.__new__(_nvrtc.Nvrtc)
    compiler.archs, compiler.version = archs, (12, 4)
    return compiler


def test_compile_targets() -> None:
    compiler = _fake_compiler([75, 80, 86, 89, 90])
    assert compiler.target_for((9, 0)) == "sm_90"
    assert compiler.target_for((8, 7)) == "compute_86"  # not in the list: PTX of the nearest older architecture
    assert compiler.target_for((12, 0)) == "compute_90"  # newer than NVRTC: PTX the driver compiles
    with pytest.raises(CudaError, match=r"compute capability 6\.1 is older than NVRTC 12\.4 supports \(sm_75"):
        compiler.target_for((6, 1))


def test_the_cache_keys_on_everything_that_changes_the_image(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITLOGIC_CACHE_DIR", str(tmp_path))
    base = _cache.key("src", {"h.cuh": "x"}, ("-a",), (12, 4), "sm_90")
    assert base == _cache.key("src", {"h.cuh": "x"}, ("-a",), (12, 4), "sm_90")
    others = [
        _cache.key("src2", {"h.cuh": "x"}, ("-a",), (12, 4), "sm_90"),
        _cache.key("src", {"h.cuh": "y"}, ("-a",), (12, 4), "sm_90"),
        _cache.key("src", {"h.cuh": "x"}, ("-b",), (12, 4), "sm_90"),
        _cache.key("src", {"h.cuh": "x"}, ("-a",), (12, 5), "sm_90"),
        _cache.key("src", {"h.cuh": "x"}, ("-a",), (12, 4), "sm_80"),
    ]
    assert base not in others and len(set(others)) == len(others)
    assert _cache.read("m.cu", base, "sm_90") is None
    _cache.write("m.cu", base, "sm_90", b"image")
    assert _cache.read("m.cu", base, "sm_90") == b"image"
    assert [p.suffix for p in tmp_path.iterdir()] == [".cubin"]  # no temporary file left behind


def test_a_cached_image_is_not_compiled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITLOGIC_CACHE_DIR", str(tmp_path))
    compiler = _fake_compiler([80])
    calls: list[str] = []

    def compile(source: str, name: str, headers: object, target: str, options: object = ()) -> bytes:
        calls.append(name)
        return b"compiled " + name.encode()

    compiler.compile = compile  # type: ignore[method-assign]
    assert _kernels.image("logic_layer.cu", "sm_80", compiler) == b"compiled logic_layer.cu"
    assert _kernels.image("logic_layer.cu", "sm_80", compiler) == b"compiled logic_layer.cu"
    assert calls == ["logic_layer.cu"]
    with pytest.raises(CudaError, match="no kernel source 'nope.cu'"):
        _kernels.image("nope.cu", "sm_80", compiler)


def test_an_unwritable_cache_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BITLOGIC_CACHE_DIR", str(blocker / "kernels"))
    with pytest.warns(RuntimeWarning, match="could not cache a compiled kernel"):
        _cache.write("m.cu", "0" * 64, "sm_90", b"image")


def test_missing_pieces_raise_clear_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITLOGIC_NVRTC", str(tmp_path / "libnvrtc.so.99"))
    with pytest.raises(CudaError, match=r"BITLOGIC_NVRTC=.* is not a file"):
        _nvrtc.find_library()
    with pytest.raises(CudaError, match="GPU kernels need CUDA tensors, got tensors on cpu"):
        _kernels.backend_for(torch.device("cpu"))
    assert not use_kernels(torch.device("cpu"))


def test_without_a_driver_the_error_says_so() -> None:
    import ctypes

    from bitlogic.gpu import _driver

    try:
        ctypes.CDLL(_driver._LIBRARY)
    except OSError:
        pass
    else:
        pytest.skip("a CUDA driver is installed here; this checks the message where there is none")
    _driver.driver.cache_clear()
    with pytest.raises(CudaError, match=r"the CUDA driver \(libcuda\.so\.1\) could not be loaded.*NVIDIA driver"):
        _driver.driver()
