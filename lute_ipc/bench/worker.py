"""``python -m lute_ipc.bench.worker``: runs end-to-end trials for the benchmark's main process.

One worker per framing core: the main process starts one normally and one with
``LUTE_IPC_PURE_PYTHON=1``; the core is chosen at import, so the pure contender needs
a process of its own, and the Tasks it forks inherit it. Protocol: one JSON request per
line on stdin (``{"scenario", "contender", "shape", "count"}``), one JSON answer per line
(``{"seconds": s}`` or ``{"error": text}``); the first answer, unasked, is
``{"implementation": "cython" | "python"}``. Answers go to the original stdout, which
the worker keeps for itself: anything else printed goes to stderr. EOF on stdin ends it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Dict

SCENARIO_KINDS = {
    "stream-unix": ("stream", "unix"),
    "stream-tcp": ("stream", "tcp"),
    "lute-per-message": ("per-message", "unix"),
    "lute-per-message-tcp": ("per-message", "tcp"),
}


def run_request(request: Dict[str, Any]) -> Dict[str, Any]:
    """Run one trial; an exception becomes ``{"error": ...}``."""
    from .pipes import pipe_trial
    from .transports import socket_trial

    try:
        scenario = request["scenario"]
        if scenario == "pipe-mixed":
            return pipe_trial(request["contender"], request["shape"], request["count"])
        mode, family = SCENARIO_KINDS[scenario]
        return socket_trial(request["contender"], mode, family, request["shape"], request["count"])
    except Exception as exc:  # reported to the main process, which says which trial failed
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    """Serve requests until stdin closes."""
    from ..framing import IMPLEMENTATION

    logging.getLogger("lute_ipc").setLevel(logging.ERROR)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    answers.write(json.dumps({"implementation": IMPLEMENTATION}) + "\n")
    answers.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        answers.write(json.dumps(run_request(json.loads(line))) + "\n")
        answers.flush()
    answers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
