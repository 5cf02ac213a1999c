"""GPU training kernels: the CUDA sources of ``cuda/``, compiled at first use with NVRTC and launched through the
CUDA driver on torch's current stream. Nothing is compiled at install time and nothing here needs a GPU to import.

``bitlogic.nn`` layers use the kernels by themselves for CUDA tensors: :mod:`bitlogic.ops` decides per call, with
:func:`use_kernels`; the modules here only launch kernels and know nothing of layers. ``BITLOGIC_CUDA_KERNELS=0``
turns them off (the pure-torch path then runs on the GPU too); where they cannot start (no libnvrtc, a GPU older
than NVRTC supports) the layers warn once and use the pure-torch path.

Inference of a compiled network on the GPU, bit-exact with the CPU engine::

    from bitlogic.gpu import GpuNetwork
    labels = GpuNetwork(bitlogic.load("mnist.bitlogic")).predict(x)   # x: a CUDA tensor
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from bitlogic.errors import CudaError, KernelCompileError
from bitlogic.gpu import _kernels

if TYPE_CHECKING:
    import torch

    from bitlogic.gpu.inference import GpuNetwork

_unusable: dict[str, str] = {}


def kernels_enabled() -> bool:
    """Whether ``BITLOGIC_CUDA_KERNELS`` leaves the kernels on (anything but ``0``)."""
    return os.environ.get("BITLOGIC_CUDA_KERNELS", "1") != "0"


def use_kernels(device: torch.device) -> bool:
    """Whether layers should run the kernels for tensors on ``device``: a CUDA device whose kernels can start.

    The first failure to start them (no libnvrtc, no driver) is warned about once, naming the reason; later calls
    return False quietly.
    """
    if device.type != "cuda" or not kernels_enabled():
        return False
    key = str(device)
    if key in _unusable:
        return False
    try:
        _kernels.backend_for(device)
    except CudaError as error:
        _unusable[key] = str(error)
        warnings.warn(f"bitlogic: CUDA kernels are unavailable on {device}, using the pure-torch path: {error}",
                      RuntimeWarning, stacklevel=3)
        return False
    return True


def __getattr__(name: str) -> object:
    # GpuNetwork needs torch; importing it lazily keeps `import bitlogic.gpu` free of torch.
    if name == "GpuNetwork":
        from bitlogic.gpu.inference import GpuNetwork

        return GpuNetwork
    raise AttributeError(f"module 'bitlogic.gpu' has no attribute {name!r}")


__all__ = ["CudaError", "GpuNetwork", "KernelCompileError", "kernels_enabled", "use_kernels"]
