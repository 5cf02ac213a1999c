"""The training run: its state in one object, and the epoch / step / checkpoint steps that advance it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bitlogic.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    State,
    load_model_state,
    restore_position,
)
from bitlogic.training.data import Data, TrainingData, evaluate, steps_per_epoch
from bitlogic.training.interrupt import InterruptGuard, Snapshot, restore_snapshot, snapshot
from bitlogic.training.progress import progress_bar, write

Schedule = Literal["onecycle", "cosine"]
#: The loss of a batch: ``loss(scores, labels)``.
Loss = Callable[[Tensor, Tensor], Tensor]
#: How a checkpoint dict is written to its path.
SaveFile = Callable[[Any, Path], None]


@dataclass
class TrainResult:
    """Per-epoch ``history`` (dicts with ``epoch``, ``loss``, ``train_acc``, ``test_acc``, ``seconds``), the
    training wall time in ``seconds`` (summed over resumed runs) and the final ``test_accuracy`` in ``eval()``."""

    history: list[dict[str, float]]
    seconds: float
    test_accuracy: float


@dataclass(frozen=True)
class Settings:
    """The settings of a run; those of :meth:`config` must match when a checkpoint is resumed."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    schedule: Schedule
    eval_batch_size: int
    progress: bool

    def config(self, num_train: int) -> dict[str, Any]:
        return {
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": float(self.lr), "seed": self.seed,
            "schedule": self.schedule, "num_train": num_train,
        }  # fmt: skip


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, lr: float, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if schedule == "onecycle":
        # OneCycleLR divides by (pct_start * total_steps - 1): keep that away from zero on very short runs.
        pct_start = 0.1
        while float(pct_start * total_steps) - 1 == 0:
            pct_start *= 1.5
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start
        )
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose onecycle or cosine")


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
    checkpoint: Path | None
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


def prepare(model: nn.Module, dataset: TrainingData, settings: Settings, device: torch.device,
            checkpoint: Path | None, resume: bool, extra: dict[str, Any] | None, loss: Loss,
            save_file: SaveFile) -> Run:
    """A run at its start: fresh, or at the position of ``checkpoint`` with ``resume``."""
    data = Data.load(dataset, device)
    count = data.x_train.shape[0]
    steps = steps_per_epoch(count, settings.batch_size)
    saved: dict[str, Any] | None = None
    if resume:
        assert checkpoint is not None
        saved = load_model_state(checkpoint, model, settings.config(count))
        if extra is None:
            extra = saved["extra"]
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = make_scheduler(optimizer, settings.schedule, settings.lr, settings.epochs * steps)
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
               dict(extra) if extra is not None else {}, checkpoint, loss, save_file, steps)


def save(run: Run) -> None:
    """Writes the checkpoint of ``run`` (when it has a path): its position and every state it needs to go on."""
    if run.checkpoint is None:
        return
    now = time.perf_counter()
    state = run.state
    cuda_rng = torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None
    run.save_file(
        {
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
                "epoch_seconds": state.epoch_seconds + (now - run.epoch_start),
                "train_seconds": state.train_seconds + (now - run.run_start),
            },
            "history": state.history,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
        },
        run.checkpoint,
    )


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


def _finish_epoch(run: Run, guard: InterruptGuard) -> None:
    """Evaluates the model, records the epoch in the history, moves to the next epoch and saves the checkpoint."""
    state = run.state
    run.snap = snapshot(run.model, run.device)
    test_acc = evaluate(run.model, run.data.x_test, run.data.y_test, run.settings.eval_batch_size, run.device)
    run.model.train()
    with guard.critical():
        now = time.perf_counter()
        n = max(float(run.seen.item()), 1.0)
        entry = {
            "epoch": float(state.epoch + 1),
            "loss": float(run.loss_sum.item()) / n,
            "train_acc": float(run.correct.item()) / n,
            "test_acc": test_acc,
            "seconds": state.epoch_seconds + (now - run.epoch_start),
        }
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
        save(run)
        run.snap = None
        write(
            f"epoch {int(entry['epoch'])}/{run.settings.epochs}: loss {entry['loss']:.4f}, "
            f"train acc {entry['train_acc']:.2%}, test acc {entry['test_acc']:.2%}, {entry['seconds']:.1f} s",
            run.settings.progress,
        )


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
    # The model has not changed since the last epoch's evaluation.
    test_accuracy = state.history[-1]["test_acc"] if state.history else evaluate(run.model, run.data.x_test,
                                                                                 run.data.y_test)
    seconds = state.train_seconds + (time.perf_counter() - run.run_start)
    return TrainResult(history=state.history, seconds=seconds, test_accuracy=test_accuracy)


__all__ = ["Loss", "Run", "SaveFile", "Schedule", "Settings", "TrainResult", "execute", "make_scheduler", "prepare",
           "save"]
