"""A stand-in for a network's native object, for tests that count what the Python side asks of the engine or make
it return what no real network would (a layer kind this version does not know)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import bitlogic


class NativeProxy:
    """Forwards to the real native network, counting each method asked for (in ``calls``, in order in ``order``);
    a method named in ``overrides`` returns the given value instead."""

    def __init__(self, real: Any, **overrides: Any) -> None:
        self.real, self.overrides = real, overrides
        self.calls: Counter[str] = Counter()
        self.order: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        self.order.append(name)
        if name in self.overrides:
            return lambda *args, **kwargs: self.overrides[name]
        return getattr(self.real, name)


def with_native(net: bitlogic.Network, **overrides: Any) -> NativeProxy:
    """Puts a :class:`NativeProxy` between ``net`` and its native object; returns the proxy."""
    proxy = NativeProxy(net._net, **overrides)
    net._net = proxy  # type: ignore[assignment]
    return proxy
