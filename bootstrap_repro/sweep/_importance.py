"""Parameter importances for the report: each param's main effect, as its share of the objective's variance.

For each param, the complete trials are grouped (by value for a categorical param, else into
``~sqrt(n)`` quantile bins of the value, of its log for a log-scale param) and the importance is
the correlation ratio η² = between-group variance / total variance of the objective, normalised so
that the params sum to 1.  It is a first-order (main-effect) estimate, as fANOVA reports for single
params, but pure Python and milliseconds at 1,000 trials; Optuna's evaluators would pull in
scikit-learn through ``optuna.importance`` (over a second of imports) for the fANOVA one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["main_effect_importances"]


def _keys(values: list[Any], dist: Any, bins: int) -> list[Any]:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return [repr(v) for v in values]
    xs = [math.log10(v) if getattr(dist, "log", False) and v > 0 else float(v) for v in values]
    order = sorted(range(len(xs)), key=lambda i: (xs[i], i))
    keys: list[Any] = [0] * len(xs)
    for rank, i in enumerate(order):
        keys[i] = rank * bins // len(xs)
    return keys


def main_effect_importances(trials: Sequence[Any], names: Sequence[str]) -> dict[str, float]:
    """``{param: importance}`` over ``trials`` (complete, with a value and every param), summing to 1 (or all 0)."""
    rows = [t for t in trials if t.value is not None and math.isfinite(t.value) and all(n in t.params for n in names)]
    out = {n: 0.0 for n in names}
    if len(rows) < 2:
        return out
    ys = [float(t.value) for t in rows]
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    if total <= 0:
        return out
    bins = max(2, min(10, int(math.sqrt(len(rows)))))
    for name in names:
        groups: dict[Any, list[float]] = {}
        for key, y in zip(_keys([t.params[name] for t in rows], rows[-1].distributions[name], bins), ys):
            groups.setdefault(key, []).append(y)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        out[name] = between / total
    s = sum(out.values())
    return {n: v / s for n, v in out.items()} if s > 0 else out
