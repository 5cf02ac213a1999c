"""Devices, the training data as tensors, and the model's predictions and accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
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


@dataclass(frozen=True)
class Data:
    """The training and test sets as tensors on the training device, converted once."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @classmethod
    def load(cls, dataset: TrainingData, device: torch.device) -> Data:
        x_train = features(dataset.x_train, device)
        x_test = features(dataset.x_test, device)
        return cls(x_train, labels(dataset.y_train, x_train.shape[0], device), x_test,
                   labels(dataset.y_test, x_test.shape[0], device))


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


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``count`` samples."""
    # The last, smaller batch is kept, except a single left-over sample: batch norm cannot train on one sample.
    return max(1, count // batch_size + (1 if count % batch_size > 1 else 0))


__all__ = ["Data", "TrainingData", "evaluate", "features", "labels", "predict", "resolve_device", "steps_per_epoch"]
