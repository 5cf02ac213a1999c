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
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitlogic.errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "steps_per_epoch",
    "train",
]

#: Value of the ``format`` key of every checkpoint.
CHECKPOINT_FORMAT = "bitlogic-checkpoint"
#: Layout version of the checkpoint dict; a reader refuses versions it does not know.
CHECKPOINT_VERSION = 1

Schedule = Literal["onecycle", "cosine"]
PathLike = str | os.PathLike[str]

logger = logging.getLogger("bitlogic.training")


class TrainingData(Protocol):
    """What :func:`train` reads from a dataset (``bitlogic.datasets.Dataset`` has it)."""

    @property
    def x_train(self) -> Any: ...
    @property
    def y_train(self) -> Any: ...
    @property
    def x_test(self) -> Any: ...
    @property
    def y_test(self) -> Any: ...


@dataclass
class TrainResult:
    """Per-epoch ``history`` (dicts with ``epoch``, ``loss``, ``train_acc``, ``test_acc``, ``seconds``), the
    training wall time in ``seconds`` (summed over resumed runs) and the final ``test_accuracy`` in ``eval()``."""

    history: list[dict[str, float]]
    seconds: float
    test_accuracy: float


# -- devices and data -----------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; ``"cuda"`` without a GPU is a ValueError."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use --device cpu or auto)")
    return resolved


def _features(x: Any, device: torch.device) -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach().to(device=device, dtype=torch.float32)
    else:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if t.dim() < 2 or t.shape[0] == 0:
        raise ValueError(f"expected features [N, F] with N > 0, got shape {list(t.shape)}")
    return t


def _labels(y: Any, count: int, device: torch.device) -> Tensor:
    if isinstance(y, Tensor):
        t = y.detach().to(device=device, dtype=torch.int64)
    else:
        t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(device)
    if t.shape != (count,):
        raise ValueError(f"expected {count} labels, got shape {list(t.shape)}")
    return t


def _model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def predict(model: nn.Module, x: Any, batch_size: int = 1000, device: str | torch.device | None = None) -> np.ndarray:
    """Predicted classes (int64 ``[N]``, the argmax of the model's scores; ties go to the lowest class, like the
    engine) in ``eval()`` mode, in batches and without gradients. The model's training mode is restored."""
    dev = _model_device(model) if device is None else resolve_device(device)
    features = x if isinstance(x, Tensor) and x.device == dev and x.dtype == torch.float32 else _features(x, dev)
    was_training = model.training
    model.eval()
    try:
        out = []
        with torch.no_grad():
            for start in range(0, features.shape[0], batch_size):
                out.append(model(features[start : start + batch_size]).argmax(dim=1))
        return torch.cat(out).cpu().numpy().astype(np.int64)
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module, x: Any, y: Any, batch_size: int = 1000, device: str | torch.device | None = None
) -> float:
    """Accuracy of ``model`` in ``eval()`` mode on features ``x`` and labels ``y`` (numpy or torch)."""
    predictions = predict(model, x, batch_size, device)
    labels = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if labels.shape != predictions.shape:
        raise ValueError(f"expected {predictions.shape[0]} labels, got shape {list(labels.shape)}")
    return int((predictions == labels).sum()) / len(labels)


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``count`` samples."""
    # The last, smaller batch is kept, except a single left-over sample: batch norm cannot train on one sample.
    return max(1, count // batch_size + (1 if count % batch_size > 1 else 0))


# -- Ctrl-C handling ------------------------------------------------------------------------------------------------


class _InterruptGuard:
    """Turns the first SIGINT into a request honoured at the next step boundary; a second one raises at once.

    Inside ``critical()`` (optimizer step, epoch bookkeeping, checkpoint writes) every SIGINT is deferred. Installed
    only in the main thread and only over Python's default handler, so it never fights a caller's own handler.
    """

    def __init__(self) -> None:
        self.pending = False
        self._critical = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _InterruptGuard:
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


# -- loop state, snapshots and checkpoints --------------------------------------------------------------------------


@dataclass
class _State:
    epoch: int = 0  # the epoch in progress (0-based); == epochs when the run is complete
    step: int = 0  # steps done in that epoch
    permutation: Tensor | None = None  # that epoch's sample order (CPU int64), None before it is drawn
    loss_sum: float = 0.0  # sum of per-sample losses over the epoch's steps so far
    correct: float = 0.0
    count: float = 0.0
    epoch_seconds: float = 0.0  # time spent in this epoch by earlier (interrupted) runs
    train_seconds: float = 0.0  # time spent training by earlier runs
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Snapshot:
    """What a step can change besides the parameters (which only the optimizer step, a critical section, touches):
    buffers such as batch-norm statistics, and the global random-number states."""

    buffers: dict[str, Tensor]
    cpu_rng: Tensor
    cuda_rng: Tensor | None


def _snapshot(model: nn.Module, device: torch.device) -> _Snapshot:
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return _Snapshot(buffers, torch.get_rng_state(), cuda_rng)


def _restore_snapshot(model: nn.Module, snap: _Snapshot, device: torch.device) -> None:
    with torch.no_grad():
        for name, b in model.named_buffers():
            saved = snap.buffers.get(name)
            if saved is not None and saved.shape == b.shape:
                b.copy_(saved)
    torch.set_rng_state(snap.cpu_rng)
    if snap.cuda_rng is not None:
        torch.cuda.set_rng_state(snap.cuda_rng, device)


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


_REQUIRED_KEYS = (
    "model", "optimizer", "scheduler", "config", "epoch", "step", "permutation", "generator", "cpu_rng",
    "running", "history", "extra",
)  # fmt: skip


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Reads and checks a training checkpoint; raises :class:`CheckpointError` with the reason.

    The dict holds ``format``, ``version``, ``config`` (epochs, batch_size, lr, seed, schedule, num_train),
    ``extra`` (what the caller passed to :func:`train`), ``epoch``/``step`` (where the run stands), ``history``, and
    the model / optimizer / scheduler states.
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


def _check_plain(value: Any, where: str) -> None:
    """``extra`` must survive ``torch.load(weights_only=True)``: plain Python values only."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where}: expected str, int, float, bool, None, list or dict, got {type(value).__name__}")


def _make_scheduler(
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


def _progress_bar(total: int, initial: int, desc: str) -> Any:
    # tqdm is optional and untyped, so it is imported by name; without it there is no bar.
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return None
    return tqdm.tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def _write(line: str, progress: bool) -> None:
    if progress:
        try:
            importlib.import_module("tqdm").tqdm.write(line)
            return
        except ImportError:
            print(line, flush=True)
            return
    logger.info(line)


# -- the loop -------------------------------------------------------------------------------------------------------


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
        _check_plain(dict(extra), "extra")
    dev = resolve_device(device)
    ckpt_path = Path(checkpoint) if checkpoint is not None else None

    x_train = _features(dataset.x_train, dev)
    y_train = _labels(dataset.y_train, x_train.shape[0], dev)
    x_test = _features(dataset.x_test, dev)
    y_test = _labels(dataset.y_test, x_test.shape[0], dev)
    count = x_train.shape[0]
    steps = steps_per_epoch(count, batch_size)
    config: dict[str, Any] = {
        "epochs": epochs, "batch_size": batch_size, "lr": float(lr), "seed": seed, "schedule": schedule,
        "num_train": count,
    }  # fmt: skip

    state = _State()
    saved: dict[str, Any] | None = None
    if resume:
        assert ckpt_path is not None
        saved = load_checkpoint(ckpt_path)
        made = saved["config"]
        differ = [f"{k}={made.get(k)!r} (got {v!r})" for k, v in config.items() if made.get(k) != v]
        if differ:
            raise CheckpointError(f"{ckpt_path} was made with other settings: {', '.join(differ)}")
        if not isinstance(saved["model"], dict):
            raise CheckpointError(f"{ckpt_path}: the model state is not a state_dict")
        mismatch = _state_dict_mismatch(model, saved["model"])
        if mismatch:
            raise CheckpointError(f"{ckpt_path} was made for a different model: {mismatch}")
        try:
            model.load_state_dict(saved["model"])
        except (RuntimeError, ValueError) as error:
            raise CheckpointError(f"{ckpt_path} was made for a different model: {error}") from None
        if extra is None:
            extra = saved["extra"]
    model.to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = _make_scheduler(optimizer, schedule, lr, epochs * steps)
    generator = torch.Generator()
    generator.manual_seed(seed)
    if saved is not None:
        try:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            generator.set_state(saved["generator"])
            torch.set_rng_state(saved["cpu_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{ckpt_path} does not fit this model's optimizer: {error}") from None
        if dev.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], dev)
        running = saved["running"]
        permutation = saved["permutation"]
        if permutation is not None and tuple(permutation.shape) != (count,):
            raise CheckpointError(f"{ckpt_path}: its sample order is for {permutation.shape[0]} samples, not {count}")
        state = _State(
            epoch=int(saved["epoch"]), step=int(saved["step"]), permutation=permutation,
            loss_sum=float(running["loss_sum"]), correct=float(running["correct"]), count=float(running["count"]),
            epoch_seconds=float(running["epoch_seconds"]), train_seconds=float(running["train_seconds"]),
            history=[dict(h) for h in saved["history"]],
        )  # fmt: skip
        if not (0 <= state.epoch <= epochs and 0 <= state.step <= steps):
            raise CheckpointError(f"{ckpt_path}: position epoch {state.epoch} step {state.step} is out of range")
        saved = None  # free the copies
    else:
        torch.manual_seed(seed)
    extra_dict: dict[str, Any] = dict(extra) if extra is not None else {}

    acc_dtype = torch.float32 if dev.type == "mps" else torch.float64
    loss_sum = torch.tensor(state.loss_sum, dtype=acc_dtype, device=dev)
    correct = torch.tensor(state.correct, dtype=acc_dtype, device=dev)
    seen = torch.tensor(state.count, dtype=acc_dtype, device=dev)
    run_start = time.perf_counter()
    epoch_start = run_start

    def save() -> None:
        if ckpt_path is None:
            return
        now = time.perf_counter()
        cuda_rng = torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None
        _atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "config": config,
                "extra": extra_dict,
                "epoch": state.epoch,
                "step": state.step,
                "permutation": state.permutation,
                "generator": generator.get_state(),
                "cpu_rng": torch.get_rng_state(),
                "cuda_rng": cuda_rng,
                "running": {
                    "loss_sum": float(loss_sum.item()),
                    "correct": float(correct.item()),
                    "count": float(seen.item()),
                    "epoch_seconds": state.epoch_seconds + (now - epoch_start),
                    "train_seconds": state.train_seconds + (now - run_start),
                },
                "history": state.history,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
            ckpt_path,
        )

    model.train()
    snap: _Snapshot | None = None
    bar: Any = None
    with _InterruptGuard() as guard:
        try:
            while state.epoch < epochs:
                if state.permutation is None:
                    with guard.critical():
                        state.permutation = torch.randperm(count, generator=generator)
                order = state.permutation.to(dev)
                if progress and state.step < steps:
                    bar = _progress_bar(steps, state.step, f"epoch {state.epoch + 1}/{epochs}")
                last_postfix = 0.0
                while state.step < steps:
                    snap = _snapshot(model, dev)
                    index = order[state.step * batch_size : (state.step + 1) * batch_size]
                    xb, yb = x_train[index], y_train[index]
                    optimizer.zero_grad(set_to_none=True)
                    scores = model(xb)
                    loss = F.cross_entropy(scores, yb)
                    torch.autograd.backward(loss)
                    with guard.critical():
                        optimizer.step()
                        scheduler.step()
                        with torch.no_grad():
                            loss_sum += loss.detach().to(acc_dtype) * yb.shape[0]
                            correct += (scores.detach().argmax(dim=1) == yb).sum().to(acc_dtype)
                            seen += yb.shape[0]
                        state.step += 1
                        snap = None
                    if bar is not None:
                        now = time.perf_counter()
                        if now - last_postfix > 0.5 or state.step == steps:
                            last_postfix = now
                            n = max(float(seen.item()), 1.0)
                            bar.set_postfix(
                                loss=f"{loss_sum.item() / n:.4f}", acc=f"{correct.item() / n:.2%}", refresh=False
                            )
                        bar.update(1)
                    guard.check()
                if bar is not None:
                    bar.close()
                    bar = None

                snap = _snapshot(model, dev)
                test_acc = evaluate(model, x_test, y_test, eval_batch_size, dev)
                model.train()
                with guard.critical():
                    now = time.perf_counter()
                    n = max(float(seen.item()), 1.0)
                    entry = {
                        "epoch": float(state.epoch + 1),
                        "loss": float(loss_sum.item()) / n,
                        "train_acc": float(correct.item()) / n,
                        "test_acc": test_acc,
                        "seconds": state.epoch_seconds + (now - epoch_start),
                    }
                    state.history.append(entry)
                    state.epoch += 1
                    state.step = 0
                    state.permutation = None
                    state.epoch_seconds = 0.0
                    state.train_seconds += now - run_start
                    run_start = epoch_start = now
                    loss_sum.zero_()
                    correct.zero_()
                    seen.zero_()
                    save()
                    snap = None
                    _write(
                        f"epoch {int(entry['epoch'])}/{epochs}: loss {entry['loss']:.4f}, "
                        f"train acc {entry['train_acc']:.2%}, test acc {entry['test_acc']:.2%}, "
                        f"{entry['seconds']:.1f} s",
                        progress,
                    )
                guard.check()
        except KeyboardInterrupt:
            with guard.critical():
                if bar is not None:
                    bar.close()
                if snap is not None:  # undo the unfinished step's side effects
                    _restore_snapshot(model, snap, dev)
                model.train()
                save()
            raise
        finally:
            if bar is not None:
                bar.close()

    # The model has not changed since the last epoch's evaluation.
    test_accuracy = state.history[-1]["test_acc"] if state.history else evaluate(model, x_test, y_test)
    seconds = state.train_seconds + (time.perf_counter() - run_start)
    return TrainResult(history=state.history, seconds=seconds, test_accuracy=test_accuracy)
