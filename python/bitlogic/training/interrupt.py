"""Ctrl-C during training: stop at a step boundary, or undo the unfinished step."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn


class InterruptGuard:
    """Turns the first SIGINT into a request honoured at the next step boundary; a second one raises at once.

    Inside ``critical()`` (optimizer step, epoch bookkeeping, checkpoint writes) every SIGINT is deferred. Installed
    only in the main thread and only over Python's default handler, so it never fights a caller's own handler.
    """

    def __init__(self) -> None:
        self.pending = False
        self._critical = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is signal.default_int_handler:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
        if exc_type is None:
            self.check()  # a Ctrl-C that arrived after the last step boundary

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pending and not self._critical:
            raise KeyboardInterrupt
        self.pending = True

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


@dataclass
class Snapshot:
    """What a step can change besides the parameters (which only the optimizer step, a critical section, touches):
    buffers such as batch-norm statistics, and the global random-number states."""

    buffers: dict[str, Tensor]
    cpu_rng: Tensor
    cuda_rng: Tensor | None


def snapshot(model: nn.Module, device: torch.device) -> Snapshot:
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return Snapshot(buffers, torch.get_rng_state(), cuda_rng)


def restore_snapshot(model: nn.Module, snap: Snapshot, device: torch.device) -> None:
    with torch.no_grad():
        for name, b in model.named_buffers():
            saved = snap.buffers.get(name)
            if saved is not None and saved.shape == b.shape:
                b.copy_(saved)
    torch.set_rng_state(snap.cpu_rng)
    if snap.cuda_rng is not None:
        torch.cuda.set_rng_state(snap.cuda_rng, device)


__all__ = ["InterruptGuard", "Snapshot", "restore_snapshot", "snapshot"]
