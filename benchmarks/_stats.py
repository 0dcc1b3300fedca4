"""Statistics shared by the benchmarks."""

from __future__ import annotations

import random
import statistics


def median_interval(ratios: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median of ``ratios`` (resampled with a fixed seed).

    On a shared machine one run's median moves by several percent: the interval says how far.
    """
    rng = random.Random(0)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return meds[int(0.025 * draws)], meds[int(0.975 * draws) - 1]
