"""Interleaved rounds, medians, spread and same-run ratios: the one timing harness of every benchmark.

Every contender runs once per round, in turn, and figures are medians over rounds, so the
noise of a shared machine hits all contenders alike; the order rotates each round, so
none is always first after a pause. Trials either time themselves (an end-to-end trial
measures from the Task's first write to the Executor's last message, in two processes,
so a clock around the call would add process start-up) or are in-process callables
timed around the call (:func:`timed_rounds`).
"""

from __future__ import annotations

import statistics
from typing import Callable, Dict, Hashable, List, Sequence, TypeVar

Key = TypeVar("Key", bound=Hashable)


def interleaved_rounds(trials: Dict[Key, Callable[[], float]], rounds: int,
                       on_trial: Callable[[Key, float], None] = lambda key, seconds: None) -> Dict[Key, List[float]]:
    """Run every trial once per round (rotating the order), ``rounds`` times; seconds per run."""
    keys = list(trials)
    times: Dict[Key, List[float]] = {key: [] for key in keys}
    for number in range(rounds):
        shift = number % len(keys) if keys else 0
        for key in keys[shift:] + keys[:shift]:
            seconds = trials[key]()
            times[key].append(seconds)
            on_trial(key, seconds)
    return times


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of ``values``: the noise of one measurement (0 for a single run)."""
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle > 0 else 0.0


def timed_rounds(runs: Dict[Key, Callable[[], object]], rounds: int) -> Dict[Key, List[float]]:
    """Interleaved rounds of in-process callables, each timed around its call (a GC pass before each)."""
    import gc
    import time

    def timed(run: Callable[[], object]) -> Callable[[], float]:
        def trial() -> float:
            gc.collect()
            start = time.perf_counter()
            run()
            return time.perf_counter() - start
        return trial

    return interleaved_rounds({key: timed(run) for key, run in runs.items()}, rounds)


def median_ratio(times: Dict[Key, List[float]], numerator: Key, denominator: Key) -> float:
    """Median over rounds of ``times[numerator] / times[denominator]`` (> 1: the denominator is faster)."""
    return median([a / b for a, b in zip(times[numerator], times[denominator])])


def rate(times: Sequence[float], count: int) -> float:
    """Items per second at the median time."""
    return count / median(times)
