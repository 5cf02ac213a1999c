"""Training loop for bitlogic models: Adam, a one-cycle (or cosine) learning-rate schedule, exact checkpoints.

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
loading and resuming), :mod:`~bitlogic.training.interrupt` (Ctrl-C), :mod:`~bitlogic.training.data` (devices, data,
predictions) and :mod:`~bitlogic.training.progress` (the bar and the epoch lines).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bitlogic.errors import CheckpointError
from bitlogic.training.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, PathLike, check_plain, load_checkpoint
from bitlogic.training.checkpoint import atomic_save as _atomic_save
from bitlogic.training.data import TrainingData, evaluate, predict, resolve_device, steps_per_epoch
from bitlogic.training.loop import Schedule, Settings, TrainResult, execute, prepare
from bitlogic.training.progress import logger

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "PathLike",
    "Schedule",
    "TrainResult",
    "TrainingData",
    "evaluate",
    "load_checkpoint",
    "logger",
    "predict",
    "resolve_device",
    "steps_per_epoch",
    "train",
]


def train(
    model: nn.Module,
    dataset: TrainingData,
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
) -> TrainResult:
    """Trains ``model`` on ``dataset`` (``x_train``, ``y_train``, ``x_test``, ``y_test``) in place.

    Adam with ``lr`` as the peak of a one-cycle schedule (10 % warm-up, cosine decay; ``schedule="cosine"`` for
    plain cosine decay) over ``epochs * steps`` steps, cross-entropy on the model's scores. Deterministic for a
    given ``seed`` (and torch thread count / device). ``progress`` shows a tqdm bar and one line per epoch;
    without it the epoch lines go to the ``bitlogic.training`` logger at INFO.

    ``checkpoint``: a file rewritten atomically at the end of every epoch and on ``KeyboardInterrupt`` (which is
    then re-raised). ``resume=True`` continues from it exactly; ``epochs``, ``batch_size``, ``lr``, ``seed`` and
    ``schedule`` must be those it was made with. ``extra`` (plain str / int / float / bool / list / dict values) is
    stored in the checkpoint for the caller, e.g. which preset and dataset to rebuild the model from.
    """
    if epochs < 1 or batch_size < 1 or eval_batch_size < 1:
        raise ValueError(f"epochs and batch sizes must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if extra is not None:
        check_plain(dict(extra), "extra")
    settings = Settings(epochs, batch_size, lr, seed, schedule, eval_batch_size, progress)
    path = Path(checkpoint) if checkpoint is not None else None
    # The loss and the checkpoint writer are looked up here, at the call, so that they can be replaced for a test.
    run = prepare(model, dataset, settings, resolve_device(device), path, resume, extra, F.cross_entropy,
                  _atomic_save)
    return execute(run)
