"""Shared test setup.

The tests run against the package in ``python/`` (the source tree), not against some other installed copy. The pure
Python parts (``bitlogic.spec``, ``bitlogic.reference``) must import even when the native module has not been built
yet, so that the reference evaluator can be tested on its own: if importing the package fails only because
``bitlogic._native`` is missing, a bare namespace for ``bitlogic`` is registered instead, which lets the submodules
import without running ``bitlogic/__init__.py``. Tests that need the engine then fail at their own import, loudly.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_DIR = ROOT / "python"
TESTS_DIR = Path(__file__).resolve().parent

for _path in (str(PYTHON_DIR), str(TESTS_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

try:
    importlib.import_module("bitlogic")
except ImportError as _error:  # the native module is not built yet
    if "_native" not in str(_error):
        raise
    sys.modules.pop("bitlogic", None)
    _package = types.ModuleType("bitlogic")
    _package.__path__ = [str(PYTHON_DIR / "bitlogic")]
    sys.modules["bitlogic"] = _package


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator, so that a failure reproduces."""
    return np.random.default_rng(12345)
