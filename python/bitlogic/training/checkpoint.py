"""Training checkpoints: the saved position of a run, written atomically, read back with checks.

A checkpoint is a ``torch.save`` dict (``format``, ``version``, ``config``, ``extra``, the position ``epoch`` /
``step`` / ``permutation``, the random-number states, the running sums, ``history`` and the model, optimizer and
scheduler states) that ``torch.load(weights_only=True)`` reads back.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bitlogic._native import write_atomic
from bitlogic.errors import CheckpointError

#: Value of the ``format`` key of every checkpoint.
CHECKPOINT_FORMAT = "bitlogic-checkpoint"
#: Layout version of the checkpoint dict; a reader refuses versions it does not know.
CHECKPOINT_VERSION = 1

PathLike = str | os.PathLike[str]


@dataclass
class State:
    """Where a run stands, as a checkpoint holds it."""

    epoch: int = 0  # the epoch in progress (0-based); == epochs when the run is complete
    step: int = 0  # steps done in that epoch
    permutation: Tensor | None = None  # that epoch's sample order (CPU int64), None before it is drawn
    loss_sum: float = 0.0  # sum of per-sample losses over the epoch's steps so far
    correct: float = 0.0
    count: float = 0.0
    lr: float = math.nan  # the learning rate of the epoch's last step so far
    epoch_seconds: float = 0.0  # time spent in this epoch by earlier (interrupted) runs
    train_seconds: float = 0.0  # time spent training by earlier runs
    history: list[dict[str, float]] = field(default_factory=list)


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through the core's atomic write (a temporary name unique per process and write, the file
    synced, renamed over ``path``, the folder synced), after making the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(os.fspath(path), data)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically: a reader sees the previous file or the whole new one."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # serialized first, so a failing save leaves nothing on disk
    _write_atomic(path, buffer.getvalue())


_REQUIRED_KEYS = (
    "model", "optimizer", "scheduler", "config", "epoch", "step", "permutation", "generator", "cpu_rng",
    "running", "history", "extra",
)  # fmt: skip


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Reads and checks a training checkpoint; raises :class:`CheckpointError` with the reason.

    The dict holds ``format``, ``version``, ``config`` (epochs, batch_size, lr, seed, schedule, num_train),
    ``extra`` (what the caller passed to :func:`bitlogic.training.train`), ``epoch``/``step`` (where the run stands),
    ``history``, and the model / optimizer / scheduler states.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}" + (" (it is a directory)" if p.is_dir() else ""))
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds (pickle, zip, EOF, RuntimeError)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {p}: corrupt or not a checkpoint ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not a bitlogic training checkpoint")
    version = data.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {version!r}, this bitlogic reads version {CHECKPOINT_VERSION}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise CheckpointError(f"{p}: incomplete checkpoint, missing {', '.join(missing)}")
    return data


def _state_dict_mismatch(model: nn.Module, saved: dict[str, Any]) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    resized = [
        f"{k} {list(saved[k].shape)} vs {list(v.shape)}"
        for k, v in own.items()
        if k in saved and isinstance(saved[k], Tensor) and saved[k].shape != v.shape and v.numel() > 0
    ]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    if resized:
        parts.append(f"shapes differ: {', '.join(resized[:3])}{' ...' if len(resized) > 3 else ''}")
    return "; ".join(parts) or None


def check_plain(value: Any, where: str) -> None:
    """``extra`` must survive ``torch.load(weights_only=True)``: plain Python values only."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where}: expected str, int, float, bool, None, list or dict, got {type(value).__name__}")


#: The settings a checkpoint of an older bitlogic does not name were these.
CONFIG_DEFAULTS: dict[str, Any] = {"weight_decay": 0.0, "val_split": 0.0}


def load_model_state(path: Path, model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """Reads the checkpoint at ``path``, checks that it was made with ``config`` and loads its model state into
    ``model``; returns the checkpoint for :func:`restore_position`."""
    saved = load_checkpoint(path)
    made = saved["config"]
    differ = [
        f"{k}={made.get(k, CONFIG_DEFAULTS.get(k))!r} (got {v!r})"
        for k, v in config.items()
        if made.get(k, CONFIG_DEFAULTS.get(k)) != v
    ]
    if differ:
        raise CheckpointError(f"{path} was made with other settings: {', '.join(differ)}")
    if not isinstance(saved["model"], dict):
        raise CheckpointError(f"{path}: the model state is not a state_dict")
    mismatch = _state_dict_mismatch(model, saved["model"])
    if mismatch:
        raise CheckpointError(f"{path} was made for a different model: {mismatch}")
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path} was made for a different model: {error}") from None
    return saved


def restore_position(
    path: Path,
    saved: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    device: torch.device,
    shape: tuple[int, int, int],
) -> State:
    """Puts the optimizer, schedule and random-number states of ``saved`` back and returns its position; ``shape``
    is the run's ``(samples, epochs, steps per epoch)``, which the position must fit."""
    count, epochs, steps = shape
    try:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["cpu_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} does not fit this model's optimizer: {error}") from None
    if device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"], device)
    running = saved["running"]
    permutation = saved["permutation"]
    if permutation is not None and tuple(permutation.shape) != (count,):
        raise CheckpointError(f"{path}: its sample order is for {permutation.shape[0]} samples, not {count}")
    state = State(
        epoch=int(saved["epoch"]), step=int(saved["step"]), permutation=permutation,
        loss_sum=float(running["loss_sum"]), correct=float(running["correct"]), count=float(running["count"]),
        lr=float(running.get("lr", math.nan)), epoch_seconds=float(running["epoch_seconds"]),
        train_seconds=float(running["train_seconds"]),
        history=[dict(h) for h in saved["history"]],
    )  # fmt: skip
    if not (0 <= state.epoch <= epochs and 0 <= state.step <= steps):
        raise CheckpointError(f"{path}: position epoch {state.epoch} step {state.step} is out of range")
    return state


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CONFIG_DEFAULTS",
    "PathLike",
    "State",
    "atomic_save",
    "check_plain",
    "load_checkpoint",
    "load_model_state",
    "restore_position",
]
