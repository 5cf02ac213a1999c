"""What a run reports: a tqdm bar per epoch (when tqdm is installed) and one line per epoch."""

from __future__ import annotations

import importlib
import logging
from typing import Any

logger = logging.getLogger("bitlogic.training")


def progress_bar(total: int, initial: int, desc: str) -> Any:
    """A tqdm bar over the steps of an epoch, or ``None`` without tqdm."""
    # tqdm is optional and untyped, so it is imported by name.
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return None
    return tqdm.tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def write(line: str, progress: bool) -> None:
    """An epoch line: printed above the bar with ``progress``, else to the ``bitlogic.training`` logger at INFO."""
    if progress:
        try:
            importlib.import_module("tqdm").tqdm.write(line)
            return
        except ImportError:
            print(line, flush=True)
            return
    logger.info(line)


__all__ = ["logger", "progress_bar", "write"]
