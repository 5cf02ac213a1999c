"""Devices, the training data as tensors, and the model's predictions and accuracy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.utils.data
from torch import Tensor, nn

from bitlogic.errors import CudaError, InputError


class TrainingData(Protocol):
    """What :func:`bitlogic.training.train` reads from a dataset (``bitlogic.datasets.Dataset`` has it)."""

    @property
    def x_train(self) -> Any: ...
    @property
    def y_train(self) -> Any: ...
    @property
    def x_test(self) -> Any: ...
    @property
    def y_test(self) -> Any: ...


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU. A name torch does not know is an :class:`InputError`; a CUDA
    device without a usable GPU is a :class:`CudaError` (both are :class:`bitlogic.BitlogicError`)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise InputError(f"unknown device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CudaError(f"device {device!r} requested but torch finds no CUDA GPU (use device 'cpu', or 'auto' to "
                        "take a GPU only when there is one)")
    return resolved


def features(x: Any, device: torch.device) -> Tensor:
    """float32 ``[N, ...]`` features on ``device``, from numpy or torch."""
    if isinstance(x, Tensor):
        t = x.detach().to(device=device, dtype=torch.float32)
    else:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if t.dim() < 2 or t.shape[0] == 0:
        raise ValueError(f"expected features [N, F] with N > 0, got shape {list(t.shape)}")
    return t


def labels(y: Any, count: int, device: torch.device) -> Tensor:
    """int64 ``[count]`` labels on ``device``, from numpy or torch."""
    if isinstance(y, Tensor):
        t = y.detach().to(device=device, dtype=torch.int64)
    else:
        t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(device)
    if t.shape != (count,):
        raise ValueError(f"expected {count} labels, got shape {list(t.shape)}")
    return t


#: Rows of the training set the gap is measured on when there is no validation split.
GAP_ROWS = 5000
_SPLIT, _GAP = 1, 2  # the purposes of the seeded generators below


def _generator(seed: int, purpose: int) -> torch.Generator:
    """A generator for one purpose, apart from the training order's (which is seeded with ``seed`` itself)."""
    generator = torch.Generator()
    generator.manual_seed((seed * 0x9E3779B97F4A7C15 + purpose) % 2**63)
    return generator


def split_indices(count: int, val_split: float, seed: int) -> tuple[Tensor, Tensor]:
    """The rows ``(train, validation)`` of a training set of ``count`` rows, each in ascending order: the
    validation split is ``round(val_split * count)`` rows drawn with a generator seeded from ``seed``."""
    held = round(val_split * count)
    if not 0 < held < count:
        raise InputError(f"val_split={val_split} of {count} training rows leaves {held} for validation and "
                         f"{count - held} for training; both need at least one")
    order = torch.randperm(count, generator=_generator(seed, _SPLIT))
    return order[held:].sort().values, order[:held].sort().values


_INPUTS = ("train() takes a bitlogic.datasets set (x_train, y_train, x_test, y_test), a tuple (x_train, y_train) or "
           "(x_train, y_train, x_test, y_test) of numpy arrays or torch tensors, a torch DataLoader of (x, y) "
           "batches, or a pair (train loader, test loader)")


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, Tensor))


def _is_loader(value: Any) -> bool:
    return isinstance(value, torch.utils.data.DataLoader)


def read_loader(loader: Any, what: str) -> tuple[Tensor, Tensor]:
    """One pass over ``loader``, its ``(x, y)`` batches concatenated on the CPU."""
    xs, ys = [], []
    for number, batch in enumerate(loader):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(_is_array(b) for b in batch)):
            raise InputError(f"{what} DataLoader: batch {number} is {type(batch).__name__}, expected a pair "
                             "(features, labels) of tensors")
        xs.append(torch.as_tensor(batch[0]).detach().cpu())
        ys.append(torch.as_tensor(batch[1]).detach().cpu().reshape(-1))
    if not xs:
        raise InputError(f"{what} DataLoader yields no batches")
    try:
        return torch.cat(xs), torch.cat(ys)
    except RuntimeError as error:
        raise InputError(f"{what} DataLoader: its batches do not fit together ({error})") from None


def digest(x: Tensor, y: Tensor) -> str:
    """A fingerprint of the samples and their order, which a resumed run must see again."""
    h = hashlib.blake2b(digest_size=16)
    for t in (x, y):
        h.update(str(list(t.shape)).encode())
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


Pair = tuple[Any, Any]


def _test_set(test: Any) -> Pair:
    if _is_loader(test):
        return read_loader(test, "test")
    if isinstance(test, (tuple, list)) and len(test) == 2 and all(_is_array(t) for t in test):
        return test[0], test[1]
    raise InputError(f"test= takes a DataLoader or a pair (x_test, y_test) of arrays or tensors, got "
                     f"{type(test).__name__}")


def split_input(dataset: Any, test: Any = None) -> tuple[Pair, Pair | None, bool]:
    """The training pair, the test pair (``None`` without one) and whether the training set came from a
    DataLoader, from any input :func:`bitlogic.training.train` accepts."""
    if all(hasattr(dataset, a) for a in ("x_train", "y_train", "x_test", "y_test")):
        sets: tuple[Pair, Pair | None, bool] = ((dataset.x_train, dataset.y_train),
                                               (dataset.x_test, dataset.y_test), False)
    elif _is_loader(dataset):
        sets = (read_loader(dataset, "training"), None, True)
    elif isinstance(dataset, (tuple, list)) and len(dataset) in (2, 4) and all(_is_array(d) for d in dataset):
        sets = ((dataset[0], dataset[1]), (dataset[2], dataset[3]) if len(dataset) == 4 else None, False)
    elif isinstance(dataset, (tuple, list)) and len(dataset) == 2 and all(_is_loader(d) for d in dataset):
        sets = (read_loader(dataset[0], "training"), read_loader(dataset[1], "test"), True)
    else:
        kinds = ", ".join(type(d).__name__ for d in dataset) if isinstance(dataset, (tuple, list)) else ""
        got = f"a {type(dataset).__name__}" + (f" of {len(dataset)} ({kinds})" if kinds else "")
        raise InputError(f"{_INPUTS}; got {got}")
    if test is not None:
        if sets[1] is not None:
            raise InputError("test= is for inputs without a test set: (x_train, y_train) or a single DataLoader")
        sets = (sets[0], _test_set(test), sets[2])
    return sets


@dataclass(frozen=True)
class Data:
    """The training, validation and test sets as tensors on the training device, converted once, and the rows
    the discretization gap is measured on (the validation split, else a fixed sample of the training set)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor | None
    y_test: Tensor | None
    x_val: Tensor | None = None
    y_val: Tensor | None = None
    x_gap: Tensor | None = None
    y_gap: Tensor | None = None
    digest: str | None = None  # of a DataLoader's training samples, checked on resume

    @classmethod
    def prepare(cls, dataset: Any, test: Any, device: torch.device, val_split: float = 0.0,
                seed: int = 0) -> Data:
        """Any input of :func:`bitlogic.training.train`; ``val_split`` holds rows of the training set out."""
        (x, y), test_pair, from_loader = split_input(dataset, test)
        x_all = features(x, device)
        y_all = labels(y, x_all.shape[0], device)
        fingerprint = digest(x_all, y_all) if from_loader else None
        x_test = y_test = None
        if test_pair is not None:
            x_test = features(test_pair[0], device)
            y_test = labels(test_pair[1], x_test.shape[0], device)
        if val_split > 0:
            rows, held = (i.to(device) for i in split_indices(x_all.shape[0], val_split, seed))
            x_val, y_val = x_all[held], y_all[held]
            return cls(x_all[rows], y_all[rows], x_test, y_test, x_val, y_val, x_val, y_val, fingerprint)
        sample = torch.randperm(x_all.shape[0], generator=_generator(seed, _GAP))[:GAP_ROWS].sort().values
        sample = sample.to(device)
        return cls(x_all, y_all, x_test, y_test, None, None, x_all[sample], y_all[sample], fingerprint)


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
    inputs = x if isinstance(x, Tensor) and x.device == dev and x.dtype == torch.float32 else features(x, dev)
    was_training = model.training
    model.eval()
    try:
        out = []
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                out.append(model(inputs[start : start + batch_size]).argmax(dim=1))
        return torch.cat(out).cpu().numpy().astype(np.int64)
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module, x: Any, y: Any, batch_size: int = 1000, device: str | torch.device | None = None
) -> float:
    """Accuracy of ``model`` in ``eval()`` mode on features ``x`` and labels ``y`` (numpy or torch)."""
    predictions = predict(model, x, batch_size, device)
    expected = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if expected.shape != predictions.shape:
        raise ValueError(f"expected {predictions.shape[0]} labels, got shape {list(expected.shape)}")
    return int((predictions == expected).sum()) / len(expected)


def relaxed_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Accuracy of the relaxed model: the layers of :mod:`bitlogic.nn` run their training forward (soft gates and
    tables, the estimators' relaxations) while every other module is in ``eval()`` (batch norm uses its running
    statistics, dropout is off), without gradients. A layer whose training forward is already discrete (the
    ``"hard"`` estimator, binary layers) has no gap; one that samples noise (``"gumbel"``) is measured with one
    sample of it. The modes and the random-number states are put back, so a run that measures it trains exactly as
    one that does not."""
    modes = [(m, m.training) for m in model.modules()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(x.device) if x.device.type == "cuda" else None
    model.eval()
    for m in model.modules():
        if type(m).__module__.startswith("bitlogic.nn"):
            m.training = True
    try:
        correct = 0
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                scores = model(x[start : start + batch_size])
                correct += int((scores.argmax(dim=1) == y[start : start + batch_size]).sum())
        return correct / x.shape[0]
    finally:
        for m, mode in modes:
            m.training = mode
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, x.device)


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``count`` samples."""
    # The last, smaller batch is kept, except a single left-over sample: batch norm cannot train on one sample.
    return max(1, count // batch_size + (1 if count % batch_size > 1 else 0))


__all__ = ["GAP_ROWS", "Data", "TrainingData", "digest", "evaluate", "features", "labels", "predict", "read_loader",
           "relaxed_accuracy", "resolve_device", "split_indices", "split_input", "steps_per_epoch"]
