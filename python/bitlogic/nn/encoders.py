"""Thermometer encoders: real features to bits, with thresholds kept in the state_dict and exported.

Bit ``t`` of feature ``f`` is ``x[f] > thresholds[f, t]`` (strictly greater), the network file's comparison rule.
The output has one more dimension than the input, the thresholds of each feature last, so that ``nn.Flatten``
after the encoder gives the file's ``feature_major`` bit order (bit ``(f, t)`` at index ``f*T + t``).

Images are the exception: given ``[B, C, H, W]`` (and ``DistributiveThermometer`` fitted on such images) the
encoders output the image ``[B, C*T, H, W]`` whose channel ``t*C + c`` holds threshold ``t`` of channel ``c``, the
input of a convolution. Flattened, bit ``(t, c, y, x)`` is at ``t*F + (c*H + y)*W + x`` over the ``F = C*H*W``
pixels: the file's ``threshold_major`` order, in which the exporter writes such an encoder (each pixel with its
channel's thresholds).

A NaN feature has no bits: like the engine, the encoders raise :class:`bitlogic.InputError` naming the first one
(sample, feature), in ``forward`` and in ``DistributiveThermometer.fit``.

With ``learnable=True`` the thresholds are trained. They are stored as the parameter ``raw_thresholds``: the first
threshold of each feature, then the inverse softplus of each gap to the next one, so every threshold is the first
plus a sum of positive gaps and the thresholds of a feature stay in increasing order whatever the optimizer does
(``thresholds`` reads them, ``[..., num_bits]`` float32 like the fixed ones; a gap below float32's resolution rounds
to a tie, never to a threshold below the one before). The forward is the hard comparison
``x > t`` of ``eval()`` and of the network file; its backward is a straight-through surrogate, the derivative of
``sigmoid((x - t) / width)`` (``width``: the surrogate's width, by default one bin of the thermometer). The exporter
reads the current thresholds, so a trained encoder exports exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bitlogic.errors import InputError, nan_feature

#: Learnable thresholds that start equal (ties of a fitted feature) are separated by this fraction of ``width``, so
#: that every gap has a finite raw value and a gradient.
MIN_GAP = 1e-6


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


def ordered_thresholds(raw: Tensor) -> Tensor:
    """float32 ``[..., T]`` thresholds from their raw parameters ``[..., T]``: ``t[0] = raw[0]`` and
    ``t[k] = t[k-1] + softplus(raw[k])``, computed in float64 so that :func:`raw_thresholds` round-trips exactly."""
    r = raw.to(torch.float64)
    gaps = torch.nn.functional.softplus(r[..., 1:])
    return torch.cat([r[..., :1], r[..., :1] + torch.cumsum(gaps, dim=-1)], dim=-1).to(torch.float32)


def raw_thresholds(thresholds: Tensor, min_gap: float) -> Tensor:
    """float64 raw parameters of increasing ``thresholds`` ``[..., T]`` (the inverse of :func:`ordered_thresholds`);
    gaps under ``min_gap`` (ties) become ``min_gap``."""
    t = thresholds.detach().to(torch.float64)
    gaps = (t[..., 1:] - t[..., :-1]).clamp_min(min_gap)
    return torch.cat([t[..., :1], gaps + torch.log(-torch.expm1(-gaps))], dim=-1)  # inverse softplus of the gaps


def _image(bits: Tensor) -> Tensor:
    """``[B, T*C, H, W]`` from bits ``[B, T, C, H, W]``: channel ``t*C + c``."""
    b, t, c, h, w = bits.shape
    return bits.reshape(b, t * c, h, w)


def image_shape_of(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of a batch of images ``[N, C, H, W]``."""
    if len(shape) != 4:
        raise ValueError(f"{where}: expected images [N, C, H, W], got {list(shape)}")
    return int(shape[1]), int(shape[2]), int(shape[3])


class ThresholdSTE(torch.autograd.Function):
    """Forward: the hard bits ``x > t`` of :func:`_compare`. Backward: the derivative of ``sigmoid((x - t) / width)``,
    ``+`` for the features and ``-`` for the thresholds (summed over every sample and feature that shares one)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, thresholds: Tensor, width: float) -> Tensor:
        ctx.save_for_backward(x, thresholds)
        ctx.width = width
        return _compare(x, thresholds)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, thresholds = ctx.saved_tensors
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        z = (x.to(dtype).unsqueeze(-1) - thresholds.to(dtype)) / ctx.width
        s = torch.sigmoid(z)
        g = grad.to(dtype) * s * (1 - s) / ctx.width
        grad_x = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_x = g.sum(-1).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_t = -g.reshape(-1, *thresholds.shape).sum(0).to(thresholds.dtype)
        return grad_x, grad_t, None


class _Thresholds(nn.Module):
    """What both encoders share: the thresholds, fixed (the buffer ``thresholds``) or learnable (the parameter
    ``raw_thresholds``, read through ``thresholds``), and the comparison of ``forward``."""

    thresholds: Tensor
    surrogate_width: Tensor
    image_shape: Tensor

    def __init__(self, initial: Tensor, learnable: bool, width: float | None) -> None:
        super().__init__()
        self.learnable = bool(learnable)
        if width is not None and not width > 0:
            raise ValueError(f"{type(self).__name__}: width must be positive, got {width}")
        if self.learnable:
            self.register_buffer("surrogate_width", torch.tensor(1.0 if width is None else float(width)))
            self.raw_thresholds = nn.Parameter(raw_thresholds(initial, MIN_GAP * float(self.surrogate_width)))
        else:
            self.register_buffer("thresholds", initial)

    def __getattr__(self, name: str) -> Any:
        # A learnable encoder's thresholds are computed from the raw parameter on every read.
        if name == "thresholds" and "raw_thresholds" in self._parameters:
            return ordered_thresholds(self._parameters["raw_thresholds"])  # type: ignore[arg-type]
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "thresholds" and "raw_thresholds" in self._parameters:
            self._set_learnable(value)
        else:
            super().__setattr__(name, value)

    def _set_learnable(self, value: Tensor) -> None:
        raw = self._parameters["raw_thresholds"]
        assert raw is not None
        # The same parameter object, so that an optimizer holding it keeps it (the shape changes when fit sets it).
        raw.data = raw_thresholds(value, MIN_GAP * float(self.surrogate_width)).to(raw.device, raw.dtype)

    def _bits(self, x: Tensor) -> Tensor:
        thresholds = self.thresholds
        if thresholds.requires_grad and torch.is_grad_enabled():
            out: Tensor = ThresholdSTE.apply(x, thresholds, float(self.surrogate_width))
            return out
        return _compare(x, thresholds.detach())

    def _current(self) -> np.ndarray:
        return np.ascontiguousarray(self.thresholds.detach().cpu().numpy())


class Thermometer(_Thresholds):
    """``num_bits`` thresholds spaced evenly inside ``(low, high)``, the same for every feature.

    Threshold ``t`` is ``low + (t + 1) * (high - low) / (num_bits + 1)``: the bits split ``[low, high]`` into
    ``num_bits + 1`` equal bins. With ``learnable=True`` training moves that one row of thresholds (shared by every
    feature, kept in increasing order; see the module's docstring); ``width`` is the surrogate gradient's width,
    by default one bin, ``(high - low) / (num_bits + 1)``.
    """

    def __init__(
        self, num_bits: int, low: float = 0.0, high: float = 1.0, learnable: bool = False, width: float | None = None
    ) -> None:
        if num_bits < 1:
            raise ValueError(f"Thermometer: num_bits must be >= 1, got {num_bits}")
        if not high > low:
            raise ValueError(f"Thermometer: expected low < high, got low={low}, high={high}")
        steps = torch.arange(1, num_bits + 1, dtype=torch.float64) / (num_bits + 1)
        bin_width = (float(high) - float(low)) / (num_bits + 1)
        super().__init__((low + steps * (high - low)).to(torch.float32), learnable, bin_width if width is None else width)
        self.num_bits, self.low, self.high = num_bits, float(low), float(high)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # images [B, C, H, W] -> [B, T*C, H, W], channel t*C + c
            return _image(self._bits(x).permute(0, 4, 1, 2, 3))
        return self._bits(x)

    def feature_thresholds(self, num_features: int) -> np.ndarray:
        """float32 ``[num_features, num_bits]`` for the network file (an image's pixels are its features)."""
        row = self._current()
        return np.ascontiguousarray(np.broadcast_to(row, (num_features, self.num_bits)))

    def extra_repr(self) -> str:
        learnable = ", learnable=True" if self.learnable else ""
        return f"num_bits={self.num_bits}, low={self.low}, high={self.high}{learnable}"


class DistributiveThermometer(_Thresholds):
    """Per-feature thresholds at the quantiles of the training data (DWN's distributive thermometer).

    ``fit(x)`` places threshold ``t`` of feature ``f`` at the ``(t + 1) / (num_bits + 1)`` quantile of ``x[:, f]``, so
    every bit splits the training set as evenly as the feature's values allow. Use it before training (or load a
    state_dict); an unfitted encoder refuses to run.

    Fitted on images ``[N, C, H, W]``, the thresholds are per channel (``[C, T]``, quantiles over every pixel of the
    channel), the buffer ``image_shape`` records ``(C, H, W)`` (empty when fitted on flat features), and the encoder
    takes images ``[B, C, H, W]`` to ``[B, C*T, H, W]`` (channel ``t*C + c``; see the module's docstring).

    With ``learnable=True`` training moves every feature's thresholds from the fitted ones, each feature's kept in
    increasing order (see the module's docstring; fitted thresholds that tie are separated by ``MIN_GAP * width``).
    ``width`` is the surrogate gradient's width; by default ``fit`` sets it to one bin of an even thermometer over the
    data, ``(max(x) - min(x)) / (num_bits + 1)`` (1 for constant data).
    """

    def __init__(
        self, num_bits: int, num_features: int | None = None, learnable: bool = False, width: float | None = None
    ) -> None:
        if num_bits < 1:
            raise ValueError(f"DistributiveThermometer: num_bits must be >= 1, got {num_bits}")
        # The shape is known once fitted; a placeholder of the right shape lets load_state_dict fill it in.
        shape = (num_features, num_bits) if num_features is not None else (0, num_bits)
        super().__init__(torch.full(shape, float("nan"), dtype=torch.float32), learnable, width)
        self.num_bits = num_bits
        self._fixed_width = width is not None
        self.register_buffer("image_shape", torch.zeros(0, dtype=torch.int64))

    @property
    def fitted_image(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` of the images the encoder was fitted on; None when fitted on flat features (or unfitted)."""
        if self.image_shape.numel() != 3:
            return None
        c, h, w = (int(v) for v in self.image_shape.tolist())
        return c, h, w

    @property
    def fitted(self) -> bool:
        thresholds = self.thresholds
        return thresholds.numel() > 0 and not bool(torch.isnan(thresholds).any())

    def fit(self, x: Any) -> DistributiveThermometer:
        """Sets the thresholds from training features ``x`` ``[N, ...]`` (numpy or torch); returns ``self``. Images
        ``[N, C, H, W]`` get thresholds per channel (the quantiles over all of the channel's pixels) and record their
        shape.

        A NaN in ``x`` raises :class:`bitlogic.InputError` naming its sample and (flattened) feature."""
        images = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        if images.ndim < 2 or images.shape[0] == 0:
            raise ValueError(
                f"DistributiveThermometer.fit: expected features [N, ...] with N > 0, got {list(images.shape)}")
        data = images.reshape(images.shape[0], -1)
        if np.issubdtype(data.dtype, np.floating) and np.isnan(data).any():
            sample, feature = (int(v) for v in np.argwhere(np.isnan(data))[0])
            raise InputError(
                f"DistributiveThermometer.fit: sample {sample}, feature {feature} is NaN; expected a number"
            )
        shape = image_shape_of(images.shape, "fit") if images.ndim == 4 else None
        if shape is not None:  # one column of every pixel of each channel: [N*H*W, C]
            data = np.moveaxis(images, 1, -1).reshape(-1, shape[0])
        self.image_shape = torch.tensor(shape if shape is not None else [], dtype=torch.int64,
                                        device=self.image_shape.device)
        q = np.arange(1, self.num_bits + 1, dtype=np.float64) / (self.num_bits + 1)
        # "lower" picks a value present in the data, so a threshold never falls between two equal samples' values.
        thresholds = np.quantile(data, q, axis=0, method="lower").T.astype(np.float32)
        fitted = torch.from_numpy(np.ascontiguousarray(thresholds))
        if self.learnable:
            if not self._fixed_width:
                spread = float(np.max(data)) - float(np.min(data))
                self.surrogate_width.fill_(spread / (self.num_bits + 1) if spread > 0 else 1.0)
            self._set_learnable(fitted)
        else:
            self.thresholds = fitted.to(self.thresholds.device)
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        if self.learnable:
            key, raw = prefix + "raw_thresholds", self._parameters["raw_thresholds"]
            assert raw is not None
            if key in state_dict and state_dict[key].shape != raw.shape:
                raw.data = raw.new_empty(state_dict[key].shape)  # adopt the fitted shape
        else:
            key = prefix + "thresholds"
            if key in state_dict and state_dict[key].shape != self.thresholds.shape:
                self.thresholds = torch.empty_like(state_dict[key])  # adopt the fitted shape
        key = prefix + "image_shape"
        if key not in state_dict:  # saved before encoders took images: fitted on flat features
            state_dict[key] = torch.zeros(0, dtype=torch.int64)
        if state_dict[key].shape != self.image_shape.shape:
            self.image_shape = torch.empty_like(state_dict[key], device=self.image_shape.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if not self.fitted:
            raise RuntimeError("DistributiveThermometer: call fit(x_train) before using the encoder")
        image = self.fitted_image
        if image is not None:
            if x.dim() != 4 or x.shape[1] != image[0]:
                raise ValueError(f"DistributiveThermometer: fitted on images of {image[0]} channels, expected input "
                                 f"[batch, {image[0]}, height, width], got {list(x.shape)}")
            _check_no_nan(x)  # before the permutation, so that the error names the sample's own feature
            # [B, H, W, C] against the [C, T] thresholds, then [B, T, C, H, W]
            return _image(self._bits(x.permute(0, 2, 3, 1)).permute(0, 4, 3, 1, 2))
        flat = x.reshape(x.shape[0], -1)
        features = self.thresholds.shape[0]
        if flat.shape[1] != features:
            raise ValueError(f"DistributiveThermometer: fitted on {features} features, got input {list(x.shape)}")
        return self._bits(flat).view(*x.shape, self.num_bits)

    def feature_thresholds(self, num_features: int) -> np.ndarray:
        if not self.fitted:
            raise ValueError("DistributiveThermometer is not fitted")
        image = self.fitted_image
        if image is not None:  # every pixel with its channel's thresholds, in C order of [C, H, W]
            c, h, w = image
            if num_features != c * h * w:
                raise ValueError(f"DistributiveThermometer: fitted on images {list(image)} ({c * h * w} pixels), not "
                                 f"{num_features} features")
            return np.ascontiguousarray(np.repeat(self._current(), h * w, axis=0))
        features = self.thresholds.shape[0]
        if num_features != features:
            raise ValueError(f"DistributiveThermometer: fitted on {features} features, not {num_features}")
        return self._current()

    def extra_repr(self) -> str:
        learnable = ", learnable=True" if self.learnable else ""
        image = self.fitted_image
        fitted = f"image_shape={image}" if image is not None else f"num_features={self.thresholds.shape[0]}"
        return f"num_bits={self.num_bits}, {fitted}{learnable}"


__all__ = ["MIN_GAP", "DistributiveThermometer", "Thermometer", "ThresholdSTE", "image_shape_of", "ordered_thresholds",
           "raw_thresholds"]
