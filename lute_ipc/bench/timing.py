"""Interleaved rounds of self-timed trials, medians and spread.

The rule of ``benchmarks/_timing.py`` (every contender once per round, in turn, then
medians) applied to trials that time themselves: an end-to-end trial measures from the
Task's first write to the Executor's last message, in two processes, so the caller's
clock around it would add process start-up. The order of contenders rotates each round,
so none is always first after a pause.
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
