"""Every error bitlogic raises, in one hierarchy: catch :class:`BitlogicError` to catch them all.

The three the Rust core raises (``BitlogicError``, ``FormatError``, ``InputError``) are defined by the native module,
which must be able to raise them; the rest are defined here, on top of them. ``BitlogicError`` is a ``ValueError``
(bad files, arrays and models are bad values); the GPU errors are ``RuntimeError`` s as well, since a missing driver
is a property of the machine, not of a value.
"""

from __future__ import annotations

from bitlogic._native import BitlogicError, FormatError, InputError


class ExportError(BitlogicError):
    """A model that ``bitlogic.compile`` cannot turn into a network; the message names the layer and why."""


class CheckpointError(BitlogicError):
    """A training checkpoint that cannot be read or resumed: missing, corrupt, or of another model."""


class DatasetError(BitlogicError):
    """A data set that cannot be found, read or verified; the message names the file and what was expected."""


class CudaError(BitlogicError, RuntimeError):
    """A GPU operation failed: no CUDA GPU or driver, no libnvrtc, or a kernel that did not load or launch."""


class KernelCompileError(CudaError):
    """NVRTC rejected a kernel source; the message holds its log."""


__all__ = [
    "BitlogicError",
    "CheckpointError",
    "CudaError",
    "DatasetError",
    "ExportError",
    "FormatError",
    "InputError",
    "KernelCompileError",
]
