"""Noise-tolerant timing for the benchmark reports: interleaved rounds, medians, ratios."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable, Dict, List


def interleaved(contenders: Dict[str, Callable[[], object]], rounds: int = 7) -> Dict[str, List[float]]:
    """Run every contender once per round, in turn, ``rounds`` times; return seconds per run.

    Interleaving spreads the noise of a shared machine evenly over the contenders, so the
    per-round ratios are more stable than ratios of separately measured medians.
    """
    times: Dict[str, List[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            gc.collect()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(times: Dict[str, List[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of time[numerator] / time[denominator] (> 1: denominator is faster)."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))


def rate(times: List[float], count: int) -> float:
    """Items per second at the median time."""
    return count / statistics.median(times)
