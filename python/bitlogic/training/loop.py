"""The training run: its state in one object, and the epoch / step / checkpoint steps that advance it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bitlogic.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    State,
    load_model_state,
    restore_position,
)
from bitlogic.errors import CheckpointError
from bitlogic.training.data import Data, evaluate, relaxed_accuracy, steps_per_epoch
from bitlogic.training.history import complete, legacy, write_history
from bitlogic.training.interrupt import InterruptGuard, Snapshot, restore_snapshot, snapshot
from bitlogic.training.progress import progress_bar, write
from bitlogic.training.schedules import Schedule, make_scheduler

#: The loss of a batch: ``loss(scores, labels)``.
Loss = Callable[[Tensor, Tensor], Tensor]
#: How a checkpoint dict is written to its path.
SaveFile = Callable[[Any, Path], None]


@dataclass
class TrainResult:
    """Per-epoch ``history`` (dicts with ``epoch``, ``loss``, ``train_acc``, ``test_acc``, ``seconds``), the
    training wall time in ``seconds`` (summed over resumed runs) and the final ``test_accuracy`` in ``eval()`` (NaN
    without a test set). ``records`` holds the history file's rows: every column of
    :data:`bitlogic.training.history.COLUMNS` (``lr``, ``val_acc``, ``relaxed_acc``, ``eval_acc``, ``gap`` too),
    one dict per epoch; ``best_epoch`` / ``best_val_accuracy`` the epoch (1-based) of the best checkpoint and its
    validation accuracy when there is a validation split (else 0 and NaN)."""

    history: list[dict[str, float]]
    seconds: float
    test_accuracy: float
    records: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = math.nan


@dataclass(frozen=True)
class Settings:
    """The settings of a run; those of :meth:`config` must match when a checkpoint is resumed."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    schedule: str  # canonical (schedules.canonical)
    eval_batch_size: int
    progress: bool
    weight_decay: float = 0.0
    val_split: float = 0.0
    step_size: int = 1  # "step" only: the period in epochs
    gamma: float = 0.1  # "step" only: the decay factor

    def config(self, num_train: int) -> dict[str, Any]:
        config = {
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": float(self.lr), "seed": self.seed,
            "schedule": self.schedule, "num_train": num_train, "weight_decay": float(self.weight_decay),
            "val_split": float(self.val_split),
        }  # fmt: skip
        if self.schedule == "step":
            config.update(step_size=self.step_size, gamma=float(self.gamma))
        return config

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Adam; with ``weight_decay`` AdamW's decoupled decay (``w -= lr * weight_decay * w`` each step, apart from
        the gradient's moments) on every parameter."""
        if self.weight_decay > 0:
            return torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(model.parameters(), lr=self.lr)


@dataclass(frozen=True)
class Outputs:
    """The files a run writes: the checkpoint, the history, the best checkpoint by validation accuracy."""

    checkpoint: Path | None = None
    history: Path | None = None
    best: Path | None = None


@dataclass
class Run:
    """Everything a run reads and changes, from its first step to its last checkpoint."""

    model: nn.Module
    data: Data
    settings: Settings
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    state: State
    extra: dict[str, Any]
    outputs: Outputs
    loss: Loss
    save_file: SaveFile
    steps: int  # per epoch
    # Running sums of the epoch on the device (read back once per bar update, not per step).
    loss_sum: Tensor = field(init=False)
    correct: Tensor = field(init=False)
    seen: Tensor = field(init=False)
    run_start: float = field(init=False)
    epoch_start: float = field(init=False)
    snap: Snapshot | None = None  # the state before the step in progress, undone on an interrupt
    bar: Any = None

    def __post_init__(self) -> None:
        acc = torch.float32 if self.device.type == "mps" else torch.float64
        self.loss_sum = torch.tensor(self.state.loss_sum, dtype=acc, device=self.device)
        self.correct = torch.tensor(self.state.correct, dtype=acc, device=self.device)
        self.seen = torch.tensor(self.state.count, dtype=acc, device=self.device)
        self.run_start = self.epoch_start = time.perf_counter()


def prepare(model: nn.Module, data: Data, settings: Settings, device: torch.device, outputs: Outputs,
            resume: bool, extra: dict[str, Any] | None, loss: Loss, save_file: SaveFile) -> Run:
    """A run at its start: fresh, or at the position of ``outputs.checkpoint`` with ``resume``."""
    checkpoint = outputs.checkpoint
    count = data.x_train.shape[0]
    steps = steps_per_epoch(count, settings.batch_size)
    saved: dict[str, Any] | None = None
    if resume:
        assert checkpoint is not None
        saved = load_model_state(checkpoint, model, settings.config(count))
        if saved.get("data_digest") != data.digest:
            raise CheckpointError(
                f"{checkpoint}: the training samples differ from those it was made with (a DataLoader must yield "
                "the same samples in the same order again, e.g. without shuffle=True, to resume exactly)"
            )
        if extra is None:
            extra = saved["extra"]
    model.to(device)
    optimizer = settings.optimizer(model)
    scheduler = make_scheduler(optimizer, settings.schedule, settings.lr, settings.epochs * steps,
                               steps_per_epoch=steps, step_size=settings.step_size, gamma=settings.gamma)
    generator = torch.Generator()
    generator.manual_seed(settings.seed)
    if saved is not None:
        assert checkpoint is not None
        shape = (count, settings.epochs, steps)
        state = restore_position(checkpoint, saved, optimizer, scheduler, generator, device, shape)
    else:
        state = State()
        torch.manual_seed(settings.seed)
    return Run(model, data, settings, device, optimizer, scheduler, generator, state,
               dict(extra) if extra is not None else {}, outputs, loss, save_file, steps)


def save(run: Run, best: bool = False) -> None:
    """Writes the checkpoint of ``run`` (when it has a path): its position and every state it needs to go on; with
    ``best``, the same to the best checkpoint's path too."""
    targets = [run.outputs.checkpoint] + ([run.outputs.best] if best else [])
    paths = [path for path in targets if path is not None]
    if not paths:
        return
    now = time.perf_counter()
    state = run.state
    cuda_rng = torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None
    contents = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": run.settings.config(run.data.x_train.shape[0]),
        "extra": run.extra,
        "epoch": state.epoch,
        "step": state.step,
        "permutation": state.permutation,
        "generator": run.generator.get_state(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": cuda_rng,
        "running": {
            "loss_sum": float(run.loss_sum.item()),
            "correct": float(run.correct.item()),
            "count": float(run.seen.item()),
            "lr": state.lr,
            "epoch_seconds": state.epoch_seconds + (now - run.epoch_start),
            "train_seconds": state.train_seconds + (now - run.run_start),
        },
        "history": state.history,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "data_digest": run.data.digest,
    }
    for path in paths:
        run.save_file(contents, path)


def _step(run: Run, guard: InterruptGuard, order: Tensor) -> None:
    """One optimizer step on the next batch of ``order``; everything it changes lands in one critical section."""
    state, batch_size = run.state, run.settings.batch_size
    run.snap = snapshot(run.model, run.device)
    index = order[state.step * batch_size : (state.step + 1) * batch_size]
    xb, yb = run.data.x_train[index], run.data.y_train[index]
    run.optimizer.zero_grad(set_to_none=True)
    scores = run.model(xb)
    loss = run.loss(scores, yb)
    torch.autograd.backward(loss)
    with guard.critical():
        state.lr = float(run.optimizer.param_groups[0]["lr"])
        run.optimizer.step()
        run.scheduler.step()
        with torch.no_grad():
            acc = run.loss_sum.dtype
            run.loss_sum += loss.detach().to(acc) * yb.shape[0]
            run.correct += (scores.detach().argmax(dim=1) == yb).sum().to(acc)
            run.seen += yb.shape[0]
        state.step += 1
        run.snap = None


def _update_bar(run: Run, last_postfix: float) -> float:
    """Advances the bar; its loss and accuracy are refreshed at most twice a second (each costs a device sync)."""
    now = time.perf_counter()
    if now - last_postfix > 0.5 or run.state.step == run.steps:
        last_postfix = now
        n = max(float(run.seen.item()), 1.0)
        run.bar.set_postfix(
            loss=f"{run.loss_sum.item() / n:.4f}", acc=f"{run.correct.item() / n:.2%}", refresh=False
        )
    run.bar.update(1)
    return last_postfix


def _close_bar(run: Run) -> None:
    if run.bar is not None:
        run.bar.close()
        run.bar = None


def _train_epoch(run: Run, guard: InterruptGuard) -> None:
    """The remaining steps of the epoch in progress, in its sample order (drawn when the epoch begins)."""
    state = run.state
    if state.permutation is None:
        with guard.critical():
            state.permutation = torch.randperm(run.data.x_train.shape[0], generator=run.generator)
    order = state.permutation.to(run.device)
    if run.settings.progress and state.step < run.steps:
        run.bar = progress_bar(run.steps, state.step, f"epoch {state.epoch + 1}/{run.settings.epochs}")
    last_postfix = 0.0
    while state.step < run.steps:
        _step(run, guard, order)
        if run.bar is not None:
            last_postfix = _update_bar(run, last_postfix)
        guard.check()
    _close_bar(run)


def _measure(run: Run, last: bool) -> dict[str, float]:
    """The epoch's accuracies: validation, test (every epoch without a validation split, else only after the last)
    and the discretization gap on the gap's rows."""
    data, batch, device = run.data, run.settings.eval_batch_size, run.device
    nan = math.nan
    figures = {"val_acc": nan, "test_acc": nan, "relaxed_acc": nan, "eval_acc": nan, "gap": nan}
    if data.x_val is not None:
        figures["val_acc"] = evaluate(run.model, data.x_val, data.y_val, batch, device)
    if data.x_test is not None and (data.x_val is None or last):
        figures["test_acc"] = evaluate(run.model, data.x_test, data.y_test, batch, device)
    if data.x_gap is not None and data.y_gap is not None:
        figures["eval_acc"] = (figures["val_acc"] if data.x_val is not None
                               else evaluate(run.model, data.x_gap, data.y_gap, batch, device))
        figures["relaxed_acc"] = relaxed_accuracy(run.model, data.x_gap, data.y_gap, batch)
        figures["gap"] = figures["relaxed_acc"] - figures["eval_acc"]
    return figures


def best_so_far(history: list[dict[str, float]]) -> tuple[int, float]:
    """The epoch (1-based; 0 for none) with the highest validation accuracy, the first of equals, and that
    accuracy."""
    best, accuracy = 0, -math.inf
    for row in history:
        value = row.get("val_acc", math.nan)
        if not math.isnan(value) and value > accuracy:
            best, accuracy = int(row["epoch"]), value
    return best, (accuracy if best else math.nan)


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2%}"


def _line(entry: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(entry['epoch'])}/{epochs}: loss {entry['loss']:.4f}",
             f"train acc {entry['train_acc']:.2%}"]
    if not math.isnan(entry["val_acc"]):
        parts.append(f"val acc {entry['val_acc']:.2%}")
    if not math.isnan(entry["test_acc"]):
        parts.append(f"test acc {entry['test_acc']:.2%}")
    if not math.isnan(entry["gap"]):
        parts.append(f"relaxed {_percent(entry['relaxed_acc'])} vs eval {_percent(entry['eval_acc'])} "
                     f"(gap {100 * entry['gap']:+.2f} pts)")
    parts.append(f"lr {entry['lr']:.3g}, {entry['seconds']:.1f} s")
    return ", ".join(parts)


def _finish_epoch(run: Run, guard: InterruptGuard) -> None:
    """Evaluates the model, records the epoch in the history, moves to the next epoch and saves the checkpoint
    (and the best checkpoint and the history file)."""
    state = run.state
    run.snap = snapshot(run.model, run.device)
    figures = _measure(run, state.epoch + 1 == run.settings.epochs)
    run.model.train()
    with guard.critical():
        now = time.perf_counter()
        n = max(float(run.seen.item()), 1.0)
        entry = {
            "epoch": float(state.epoch + 1),
            "lr": state.lr,
            "loss": float(run.loss_sum.item()) / n,
            "train_acc": float(run.correct.item()) / n,
            **figures,
            "seconds": state.epoch_seconds + (now - run.epoch_start),
        }
        previous_best = best_so_far(state.history)[1]
        state.history.append(entry)
        state.epoch += 1
        state.step = 0
        state.permutation = None
        state.epoch_seconds = 0.0
        state.train_seconds += now - run.run_start
        run.run_start = run.epoch_start = now
        run.loss_sum.zero_()
        run.correct.zero_()
        run.seen.zero_()
        improved = not math.isnan(entry["val_acc"]) and (math.isnan(previous_best) or entry["val_acc"] > previous_best)
        save(run, best=improved)
        if run.outputs.history is not None:
            write_history(run.outputs.history, state.history)
        run.snap = None
        write(_line(entry, run.settings.epochs), run.settings.progress)


def execute(run: Run) -> TrainResult:
    """Trains until the last epoch. On ``KeyboardInterrupt`` the unfinished step is undone, the checkpoint saved and
    the interrupt re-raised."""
    run.model.train()
    with InterruptGuard() as guard:
        try:
            while run.state.epoch < run.settings.epochs:
                _train_epoch(run, guard)
                _finish_epoch(run, guard)
                guard.check()
        except KeyboardInterrupt:
            with guard.critical():
                _close_bar(run)
                if run.snap is not None:  # undo the unfinished step's side effects
                    restore_snapshot(run.model, run.snap, run.device)
                run.model.train()
                save(run)
            raise
        finally:
            _close_bar(run)
    state = run.state
    if run.outputs.history is not None:  # also when a finished run is resumed: the file matches the checkpoint
        write_history(run.outputs.history, state.history)
    # The model has not changed since the last epoch's evaluation (which, with a validation split, is the one
    # evaluation of the test set).
    test_accuracy = state.history[-1].get("test_acc", math.nan)
    seconds = state.train_seconds + (time.perf_counter() - run.run_start)
    best_epoch, best_accuracy = best_so_far(state.history)
    return TrainResult(
        history=[legacy(row) for row in state.history], seconds=seconds, test_accuracy=test_accuracy,
        records=[complete(row) for row in state.history], best_epoch=best_epoch, best_val_accuracy=best_accuracy,
    )


__all__ = ["Loss", "Outputs", "Run", "SaveFile", "Schedule", "Settings", "TrainResult", "best_so_far", "execute",
           "make_scheduler", "prepare", "save"]
