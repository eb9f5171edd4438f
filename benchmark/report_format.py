"""How the report writes numbers: metric values, seconds, parameter counts, p-values, the
▲ / ▼ mark of the one rule (benchmark.comparisons), and the protocols' titles."""

from __future__ import annotations

import numpy as np

from benchmark.comparisons import ALPHA, verdict

PROTOCOL_TITLES = {"loo": "leave-one-out (`loo`)", "cold_item": "cold-start items (`cold_item`)"}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _mark(test: dict | None) -> str:
    """▲ / ▼: better / worse than the reference by the one rule (benchmark.comparisons)."""
    return {1: " ▲", -1: " ▼", 0: ""}[verdict(test)]


def _seconds(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _params(n: float | None) -> str:
    if not n:
        return "0"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{int(n):,}"


def _p(value: float) -> str:
    """A p-value to 3 significant digits, or more where 3 would put it on the other side of
    ALPHA (0.04995 must not print as 0.05 beside "significant")."""
    text = f"{value:.3g}"
    digits = 3
    while digits < 8 and (float(text) < ALPHA) != (value < ALPHA):
        digits += 1
        text = f"{value:.{digits}g}"
    return text
