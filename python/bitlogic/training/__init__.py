"""Training loop for bitlogic models: Adam (or AdamW), four learning-rate schedules, a validation split, the
discretization gap, a history file and exact checkpoints.

::

    model = bitlogic.presets.get("lut-small").build(ds.x_train, ds.num_classes)
    result = train(model, ds, epochs=8, batch_size=100, lr=0.01, checkpoint="run.ckpt")
    net = bitlogic.compile(model)

The model's output (a ``GroupSum``'s class scores) is trained with cross-entropy. The features are converted to
float32 once and kept on the device; every epoch visits the training set in a fresh random order drawn from a
``torch.Generator`` seeded with ``seed``, so a run is reproducible.

With ``checkpoint=PATH`` the complete training state (model, optimizer, schedule, position inside the epoch, the
epoch's sample order, random-number states, history and the caller's ``extra`` dict) is written atomically at the end
of every epoch and when the run is interrupted by ``KeyboardInterrupt``; ``resume=True`` continues from it exactly,
mid-epoch too, as if the run had never stopped. A first Ctrl-C lets the current step finish (so the saved state is
a clean step boundary); a second one interrupts at once, and the state from before the unfinished step is saved.

The modules: :mod:`~bitlogic.training.loop` (the run and its steps), :mod:`~bitlogic.training.checkpoint` (saving,
loading and resuming), :mod:`~bitlogic.training.interrupt` (Ctrl-C), :mod:`~bitlogic.training.data` (inputs, the
validation split, devices, predictions, the relaxed accuracy), :mod:`~bitlogic.training.schedules` (the
learning-rate schedules), :mod:`~bitlogic.training.history` (the history file) and
:mod:`~bitlogic.training.progress` (the bar and the epoch lines).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bitlogic.errors import CheckpointError, InputError
from bitlogic.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CONFIG_DEFAULTS,
    PathLike,
    check_plain,
    load_checkpoint,
)
from bitlogic.training.checkpoint import atomic_save as _atomic_save
from bitlogic.training.data import (
    Data,
    TrainingData,
    evaluate,
    predict,
    relaxed_accuracy,
    resolve_device,
    split_indices,
    steps_per_epoch,
)
from bitlogic.training.history import COLUMNS, check_path, derived_path, read_history
from bitlogic.training.loop import Outputs, Settings, TrainResult, execute, prepare
from bitlogic.training.schedules import STEP_GAMMA, Schedule, default_step_size
from bitlogic.training.schedules import canonical as canonical_schedule
from bitlogic.training.progress import logger

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "COLUMNS",
    "CONFIG_DEFAULTS",
    "CheckpointError",
    "PathLike",
    "Schedule",
    "TrainResult",
    "TrainingData",
    "best_checkpoint_path",
    "canonical_schedule",
    "evaluate",
    "load_checkpoint",
    "logger",
    "predict",
    "read_history",
    "relaxed_accuracy",
    "resolve_device",
    "split_indices",
    "steps_per_epoch",
    "train",
]


def best_checkpoint_path(checkpoint: PathLike) -> Path:
    """Where the best checkpoint goes by default: ``run.ckpt`` -> ``run.best.ckpt``."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.best{path.suffix}")


def train(
    model: nn.Module,
    dataset: TrainingData | Any,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: str | torch.device = "cpu",
    seed: int = 0,
    checkpoint: PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    schedule: Schedule = "onecycle",
    eval_batch_size: int = 1000,
    weight_decay: float = 0.0,
    val_split: float = 0.0,
    step_size: int | None = None,
    gamma: float = STEP_GAMMA,
    history: PathLike | bool | None = None,
    best_checkpoint: PathLike | None = None,
    test: Any = None,
) -> TrainResult:
    """Trains ``model`` on ``dataset`` in place.

    ``dataset``: a ``bitlogic.datasets`` set (anything with ``x_train``, ``y_train``, ``x_test``, ``y_test``); a
    tuple ``(x_train, y_train, x_test, y_test)`` or ``(x_train, y_train)`` of numpy arrays or torch tensors; a torch
    ``DataLoader`` of ``(x, y)`` batches; or a pair ``(train_loader, test_loader)``. ``test=`` gives the test set of
    an input without one (a DataLoader or ``(x_test, y_test)``); with none, there is no test accuracy (NaN). A
    DataLoader is read once, at the start, in the order it yields, and its samples kept on the device like arrays:
    training then draws its own shuffled batches of ``batch_size`` from them, so a transform in the loader runs once,
    not every epoch. Resuming needs the loader to yield the same samples in the same order again (a fingerprint in
    the checkpoint is compared; a shuffling loader is refused with a :class:`CheckpointError`).

    Adam with ``lr`` as the peak of a one-cycle schedule (10 % warm-up, cosine decay) over ``epochs * steps``
    steps, cross-entropy on the model's scores; ``schedule`` is ``"one-cycle"`` (also ``"onecycle"``), ``"cosine"``
    (from ``lr`` to 0), ``"constant"`` or ``"step"`` (``lr * gamma ** (epoch // step_size)``; ``step_size`` in
    epochs, by default a third of the run rounded up; :mod:`bitlogic.training.schedules`). ``weight_decay > 0``
    switches to AdamW: decoupled decay of every parameter (``w -= lr * weight_decay * w`` each step). Deterministic
    for a given ``seed`` (and torch thread count / device). ``progress`` shows a tqdm bar and one line per epoch;
    without it the epoch lines go to the ``bitlogic.training`` logger at INFO.

    ``val_split`` (0 <= val_split < 1) holds ``round(val_split * N)`` rows of the training set out for validation,
    drawn with a generator seeded from ``seed`` (:func:`split_indices`); the validation accuracy is reported every
    epoch and the test set only once, after the last epoch. Every epoch also reports the discretization gap:
    ``relaxed_acc - eval_acc``, the accuracy of the relaxed model (:func:`relaxed_accuracy`: the ``bitlogic.nn``
    layers' training forward, other modules in ``eval()``) minus that of ``eval()``, on the validation split, or
    without one on a fixed sample of up to 5 000 training rows.

    ``checkpoint``: a file rewritten atomically at the end of every epoch and on ``KeyboardInterrupt`` (which is
    then re-raised). ``resume=True`` continues from it exactly; ``epochs``, ``batch_size``, ``lr``, ``seed``,
    ``schedule``, ``weight_decay`` and ``val_split`` must be those it was made with. ``extra`` (plain str / int /
    float / bool / list / dict values) is stored in the checkpoint for the caller, e.g. which preset and dataset to
    rebuild the model from. ``history``: a ``.csv`` or ``.json`` file rewritten atomically at the end of every epoch
    with one row per epoch (:data:`COLUMNS`); ``True`` puts it beside the checkpoint (``run.ckpt`` ->
    ``run.history.csv``). ``best_checkpoint``: with a validation split, the checkpoint of the epoch with the highest
    validation accuracy (the first of equals), by default ``run.best.ckpt`` beside ``checkpoint``; it is an ordinary
    checkpoint (at the end of that epoch) that :func:`load_checkpoint` reads.
    """
    _check_arguments(epochs, batch_size, eval_batch_size, lr, weight_decay, val_split, step_size, gamma)
    _check_outputs(checkpoint, resume, history, best_checkpoint, val_split)
    if extra is not None:
        check_plain(dict(extra), "extra")
    settings = Settings(epochs, batch_size, lr, seed, canonical_schedule(schedule), eval_batch_size, progress,
                        float(weight_decay), float(val_split),
                        step_size if step_size is not None else default_step_size(epochs), float(gamma))
    path = Path(checkpoint) if checkpoint is not None else None
    history_path = None
    if isinstance(history, bool):
        history_path = derived_path(path) if history and path is not None else None
    elif history is not None:
        history_path = check_path(Path(history))
    best = Path(best_checkpoint) if best_checkpoint is not None else None
    if best is None and path is not None and val_split > 0:
        best = best_checkpoint_path(path)
    outputs = Outputs(path, history_path, best)
    resolved = resolve_device(device)
    data = Data.prepare(dataset, test, resolved, val_split, seed)
    # The loss and the checkpoint writer are looked up here, at the call, so that they can be replaced for a test.
    run = prepare(model, data, settings, resolved, outputs, resume, extra, F.cross_entropy, _atomic_save)
    return execute(run)


def _check_arguments(
    epochs: int, batch_size: int, eval_batch_size: int, lr: float, weight_decay: float, val_split: float,
    step_size: int | None, gamma: float,
) -> None:
    """Refuses a setting out of range, naming it (before anything is loaded or trained)."""
    if epochs < 1 or batch_size < 1 or eval_batch_size < 1:
        raise ValueError(f"epochs and batch sizes must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise InputError(f"weight_decay must be a number >= 0, got {weight_decay}")
    if not 0 <= val_split < 1:
        raise InputError(f"val_split must be a fraction 0 <= val_split < 1, got {val_split}")
    if step_size is not None and step_size < 1:
        raise InputError(f"step_size must be a number of epochs >= 1, got {step_size}")
    if not (gamma > 0 and math.isfinite(gamma)):
        raise InputError(f"gamma must be a positive number, got {gamma}")


def _check_outputs(
    checkpoint: PathLike | None, resume: bool, history: PathLike | bool | None, best_checkpoint: PathLike | None,
    val_split: float,
) -> None:
    """Refuses output settings that need another one: resume and history=True need a checkpoint, a best checkpoint
    a validation split."""
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if history is True and checkpoint is None:
        raise InputError("history=True puts the history beside the checkpoint: it needs checkpoint= (or pass a path)")
    if best_checkpoint is not None and val_split == 0:
        raise InputError("best_checkpoint= keeps the epoch of the best validation accuracy: it needs val_split > 0")
