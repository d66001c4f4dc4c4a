"""The speed targets of issue 15, as same-run ratios the report prints next to what it measured.

A target is a ratio of two results of one run: lute_ipc's Executor reading with ``read()``
(LUTE's API, one message per call) over a baseline, for one message shape. They are
benchmark figures, never test assertions: a run on a loaded machine may miss them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from .payloads import shape_label
from .report import Report

OURS = "lute_ipc-cython-read"


@dataclass(frozen=True)
class Target:
    """``ours`` / ``baseline`` (each a scenario and contender) for ``shape`` must reach ``minimum`` (``goal``)."""

    title: str
    shape: str
    ours: Tuple[str, str]
    baseline: Tuple[str, str]
    minimum: float
    goal: Optional[float] = None

    def measured(self, report: Report) -> Optional[float]:
        """The ratio in ``report`` (None when a side was not measured)."""
        ours = report.find(self.ours[0], self.ours[1], self.shape)
        baseline = report.find(self.baseline[0], self.baseline[1], self.shape)
        if ours is None or baseline is None:
            return None
        return ours.msgs_per_s / baseline.msgs_per_s


TARGETS: Tuple[Target, ...] = (
    Target("objects, Unix, read() vs pyzmq send_pyobj/recv_pyobj", "objects",
           ("stream-unix", OURS), ("stream-unix", "pyzmq"), 1.5, 1.8),
    Target("objects, Unix, read() vs in-process pickle.loads loop", "objects",
           ("stream-unix", OURS), ("decode-buffer", "pickle-loads-each"), 0.85),
    Target("objects, TCP signed, read() vs pyzmq", "objects",
           ("stream-tcp", OURS), ("stream-tcp", "pyzmq"), 1.2),
    Target("text, Unix, read() vs pyzmq (no target: the codec's fast path)", "text",
           ("stream-unix", OURS), ("stream-unix", "pyzmq"), 0.0),
    Target("64 KiB, Unix, read() vs multiprocessing.connection", "64KiB",
           ("stream-unix", OURS), ("stream-unix", "mp-connection"), 1.5, 2.0),
    Target("1 MiB, Unix, read() vs raw byte loop", "1MiB",
           ("stream-unix", OURS), ("stream-unix", "raw-bytes"), 0.8),
    Target("1 MiB, TCP signed, read() vs raw byte loop", "1MiB",
           ("stream-tcp", OURS), ("stream-tcp", "raw-bytes"), 0.8),
)


def target_rows(report: Report) -> List[List[str]]:
    """Header and one row per target measured in ``report`` ([] when none was)."""
    rows = [["target", "shape", "measured", "required", "goal", "status"]]
    for target in TARGETS:
        value = target.measured(report)
        if value is None:
            continue
        required = f">= {target.minimum:.2f}x" if target.minimum else "-"
        goal = f"{target.goal:.2f}x" if target.goal else "-"
        status = "-" if not target.minimum else "met" if value >= target.minimum else "below"
        rows.append([target.title, shape_label(target.shape), f"{value:.2f}x", required, goal, status])
    return rows if len(rows) > 1 else []
