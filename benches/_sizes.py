"""How the benchmark scripts name a network's size: gates, LUTs by arity, binary weights."""

from __future__ import annotations


def size_of(stats: dict[str, object]) -> str:
    """``Network.stats()`` as "8,000 gates", "2,000 6-LUTs", "3,211,264 binary weights" (joined by commas)."""
    parts = []
    gates, luts, weights = stats.get("gates"), stats.get("luts"), stats.get("binary_weights")
    if isinstance(gates, int) and gates:
        parts.append(f"{gates:,} gates")
    if isinstance(luts, dict) and luts:
        parts.append(" + ".join(f"{count:,} {arity}-LUTs" for arity, count in sorted(luts.items())))
    if isinstance(weights, int) and weights:
        parts.append(f"{weights:,} binary weights")
    return ", ".join(parts) or "-"
