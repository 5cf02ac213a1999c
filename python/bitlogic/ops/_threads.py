"""How many threads the fused CPU training kernels of ``bitlogic._native`` use.

The kernels follow ``torch.get_num_threads()``, so the one setting a torch user already has governs a whole training
step. They run on the calling thread and helper threads that sleep while idle (``rust/bitlogic-train``, module
``threads``): no idle worker is left spinning to compete with torch's OpenMP threads for the cores between two calls.

``rayon_pool = True`` (or the environment variable ``BITLOGIC_KERNEL_POOL=rayon`` at import) runs the kernels on
rayon's global pool instead, the behaviour before; ``benches/train_step.py`` sets it to compare the two.
"""

from __future__ import annotations

import os

import torch

#: Run the kernels on rayon's global pool (one spinning worker per core) instead of threads spawned per call.
rayon_pool: bool = os.environ.get("BITLOGIC_KERNEL_POOL", "") == "rayon"


def kernel_threads() -> int:
    """The ``threads`` argument of the native kernels: torch's thread count, or 0 (rayon's pool) when
    :data:`rayon_pool` is set. The results are the same bits either way."""
    return 0 if rayon_pool else torch.get_num_threads()
