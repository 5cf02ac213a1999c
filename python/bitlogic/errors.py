"""Every error bitlogic raises, in one hierarchy: catch :class:`BitlogicError` to catch them all.

The three the Rust core raises (``BitlogicError``, ``FormatError``, ``InputError``) are defined by the native module,
which must be able to raise them; the rest are defined here, on top of them. ``BitlogicError`` is a ``ValueError``
(bad files, arrays and models are bad values); the GPU errors are ``RuntimeError`` s as well, since a missing driver
is a property of the machine, not of a value.
"""

from __future__ import annotations

try:
    from bitlogic._native import BitlogicError, FormatError, InputError
except ImportError:  # pragma: no cover - the native module is not built
    # The pure-Python parts (bitlogic.spec, bitlogic.reference) still import and raise these, so that the reference
    # evaluator can be tested on its own; nothing native exists then to raise the native module's classes.
    class BitlogicError(ValueError):  # type: ignore[no-redef]
        """Base class of the errors bitlogic raises."""

    class FormatError(BitlogicError):  # type: ignore[no-redef]
        """A network file is malformed or of an unsupported version."""

    class InputError(BitlogicError):  # type: ignore[no-redef]
        """An array does not fit what the network expects."""


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


def nan_feature(sample: int, feature: int) -> InputError:
    """The engine's error for a NaN feature (rust/bitlogic/src/input.rs), for the Python code that checks inputs the
    same way without the engine (the torch encoders, the numpy reference): one text, whichever evaluates the network.
    The GPU back end needs no copy: it has the engine check the rows up to the first NaN and raises its error."""
    return InputError(f"invalid input: sample {sample}, feature {feature} is NaN; expected a number")


__all__ = [
    "BitlogicError",
    "CheckpointError",
    "CudaError",
    "DatasetError",
    "ExportError",
    "FormatError",
    "InputError",
    "KernelCompileError",
    "nan_feature",
]
