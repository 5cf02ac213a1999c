"""The per-user on-disk cache of compiled kernel images.

An image is stored under the SHA-256 of everything that determines it: the source and header texts, the compile
options, the NVRTC version and the target architecture, so a changed kernel, a new NVRTC or another GPU never reads a
stale file. Files are written by the core's atomic write (a unique temporary name, synced, renamed), so concurrent
writers and interrupted writes leave either no file or a whole one. The folder is ``BITLOGIC_CACHE_DIR``, else
``$XDG_CACHE_HOME/bitlogic/kernels``, else ``~/.cache/bitlogic/kernels``; a cache that cannot be written only costs a
recompile.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from bitlogic._native import write_atomic


def folder() -> Path:
    override = os.environ.get("BITLOGIC_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bitlogic" / "kernels"


def key(source: str, headers: Mapping[str, str], options: Sequence[str], nvrtc: tuple[int, int], target: str) -> str:
    text = json.dumps(
        {"source": source, "headers": dict(sorted(headers.items())), "options": list(options), "nvrtc": nvrtc,
         "target": target},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _path(name: str, digest: str, target: str) -> Path:
    suffix = "cubin" if target.startswith("sm_") else "ptx"
    return folder() / f"{Path(name).stem}-{target}-{digest[:32]}.{suffix}"


def read(name: str, digest: str, target: str) -> bytes | None:
    try:
        return _path(name, digest, target).read_bytes()
    except OSError:
        return None


def write(name: str, digest: str, target: str, image: bytes) -> None:
    path = _path(name, digest, target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(os.fspath(path), image)
    except OSError as error:
        warnings.warn(f"bitlogic: could not cache a compiled kernel in {path.parent}: {error}", RuntimeWarning,
                      stacklevel=3)


__all__ = ["folder", "key", "read", "write"]
