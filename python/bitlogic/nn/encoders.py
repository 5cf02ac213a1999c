"""Thermometer encoders: real features to bits, with thresholds kept in the state_dict and exported.

Bit ``t`` of feature ``f`` is ``x[f] > thresholds[f, t]`` (strictly greater), the network file's comparison rule.
The output has one more dimension than the input, the thresholds of each feature last, so that ``nn.Flatten``
after the encoder gives the file's ``feature_major`` bit order (bit ``(f, t)`` at index ``f*T + t``).

A NaN feature has no bits: like the engine, the encoders raise :class:`bitlogic.InputError` naming the first one
(sample, feature), in ``forward`` and in ``DistributiveThermometer.fit``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.errors import InputError, nan_feature


def _check_no_nan(x: Tensor) -> None:
    # One reduction on the common path; the position is searched for only when there is a NaN to report.
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        rows = x.reshape(x.shape[0], -1) if x.dim() else x.reshape(1, 1)
        sample, feature = (int(v) for v in torch.nonzero(torch.isnan(rows))[0])
        raise nan_feature(sample, feature)


def _compare(x: Tensor, thresholds: Tensor) -> Tensor:
    # float32 against float32 thresholds, like the engine (uint8 and other integer features convert exactly).
    # float64 features compare in float64 against the exact float32 thresholds.
    _check_no_nan(x)
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    return (x.unsqueeze(-1) > thresholds.to(x.dtype)).to(torch.float32)


class Thermometer(nn.Module):
    """``num_bits`` thresholds spaced evenly inside ``(low, high)``, the same for every feature.

    Threshold ``t`` is ``low + (t + 1) * (high - low) / (num_bits + 1)``: the bits split ``[low, high]`` into
    ``num_bits + 1`` equal bins.
    """

    thresholds: Tensor

    def __init__(self, num_bits: int, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__()
        if num_bits < 1:
            raise ValueError(f"Thermometer: num_bits must be >= 1, got {num_bits}")
        if not high > low:
            raise ValueError(f"Thermometer: expected low < high, got low={low}, high={high}")
        self.num_bits, self.low, self.high = num_bits, float(low), float(high)
        steps = torch.arange(1, num_bits + 1, dtype=torch.float64) / (num_bits + 1)
        self.register_buffer("thresholds", (low + steps * (high - low)).to(torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return _compare(x, self.thresholds)

    def feature_thresholds(self, num_features: int) -> np.ndarray:
        """float32 ``[num_features, num_bits]`` for the network file."""
        row = self.thresholds.detach().cpu().numpy()
        return np.ascontiguousarray(np.broadcast_to(row, (num_features, self.num_bits)))

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, low={self.low}, high={self.high}"


class DistributiveThermometer(nn.Module):
    """Per-feature thresholds at the quantiles of the training data (DWN's distributive thermometer).

    ``fit(x)`` places threshold ``t`` of feature ``f`` at the ``(t + 1) / (num_bits + 1)`` quantile of ``x[:, f]``, so
    every bit splits the training set as evenly as the feature's values allow. Use it before training (or load a
    state_dict); an unfitted encoder refuses to run.
    """

    thresholds: Tensor

    def __init__(self, num_bits: int, num_features: int | None = None) -> None:
        super().__init__()
        if num_bits < 1:
            raise ValueError(f"DistributiveThermometer: num_bits must be >= 1, got {num_bits}")
        self.num_bits = num_bits
        # The shape is known once fitted; a placeholder of the right shape lets load_state_dict fill it in.
        shape = (num_features, num_bits) if num_features is not None else (0, num_bits)
        self.register_buffer("thresholds", torch.full(shape, float("nan"), dtype=torch.float32))

    @property
    def fitted(self) -> bool:
        return self.thresholds.numel() > 0 and not bool(torch.isnan(self.thresholds).any())

    def fit(self, x: Any) -> DistributiveThermometer:
        """Sets the thresholds from training features ``x`` ``[N, ...]`` (numpy or torch); returns ``self``.

        A NaN in ``x`` raises :class:`bitlogic.InputError` naming its sample and (flattened) feature."""
        data = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        if data.ndim < 2 or data.shape[0] == 0:
            raise ValueError(f"DistributiveThermometer.fit: expected features [N, ...] with N > 0, got {list(data.shape)}")
        data = data.reshape(data.shape[0], -1)
        if np.issubdtype(data.dtype, np.floating) and np.isnan(data).any():
            sample, feature = (int(v) for v in np.argwhere(np.isnan(data))[0])
            raise InputError(
                f"DistributiveThermometer.fit: sample {sample}, feature {feature} is NaN; expected a number"
            )
        q = np.arange(1, self.num_bits + 1, dtype=np.float64) / (self.num_bits + 1)
        # "lower" picks a value present in the data, so a threshold never falls between two equal samples' values.
        thresholds = np.quantile(data, q, axis=0, method="lower").T.astype(np.float32)
        self.thresholds = torch.from_numpy(np.ascontiguousarray(thresholds)).to(self.thresholds.device)
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        key = prefix + "thresholds"
        if key in state_dict and state_dict[key].shape != self.thresholds.shape:
            self.thresholds = torch.empty_like(state_dict[key])  # adopt the fitted shape
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError("DistributiveThermometer: call fit(x_train) before using the encoder")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.thresholds.shape[0]:
            raise ValueError(
                f"DistributiveThermometer: fitted on {self.thresholds.shape[0]} features, got input {list(x.shape)}"
            )
        return _compare(flat, self.thresholds).view(*x.shape, self.num_bits)

    def feature_thresholds(self, num_features: int) -> np.ndarray:
        if not self.fitted:
            raise ValueError("DistributiveThermometer is not fitted")
        if num_features != self.thresholds.shape[0]:
            raise ValueError(f"DistributiveThermometer: fitted on {self.thresholds.shape[0]} features, not {num_features}")
        return np.ascontiguousarray(self.thresholds.detach().cpu().numpy())

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, num_features={self.thresholds.shape[0]}"


__all__ = ["DistributiveThermometer", "Thermometer"]
