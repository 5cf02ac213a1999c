"""What a layer accepts as input: floats as they are, bits in a bool or integer tensor converted to floats."""

from __future__ import annotations

import torch
from torch import Tensor

from bitlogic.errors import InputError


def float_inputs(x: Tensor, dtype: torch.dtype, where: str) -> Tensor:
    """``x`` itself when it holds floats; a bool or integer tensor of 0/1 values as ``dtype``.

    The layers' arithmetic needs floats: run on a bool or uint8 tensor it would compute in that dtype, which turns
    the relaxed gates into constants or wraps negative values around. Any other integer value raises
    :class:`bitlogic.InputError` naming ``where``, the dtype and the value.
    """
    if x.is_floating_point():
        return x
    if x.is_complex():
        raise InputError(f"{where}: expected real inputs (floats or 0/1 bits), got {x.dtype}")
    if x.dtype != torch.bool:
        outside = (x < 0) | (x > 1)
        if bool(outside.any()):
            value = int(x[outside][0])
            raise InputError(f"{where}: a {x.dtype} input must hold bits (0 or 1), got {value}")
    return x.to(dtype)


__all__ = ["float_inputs"]
