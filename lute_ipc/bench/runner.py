"""Runs the trials: in this process (decoding) or in a worker process per framing core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Callable, Dict, Optional

from ..errors import TransportError

WORKER_TIMEOUT = 900.0
"""Seconds to wait for one answer from a worker (a trial bounds itself well below this)."""


class Worker:
    """A ``python -m lute_ipc.bench.worker`` process for one core (``pure`` or not)."""

    def __init__(self, pure: bool) -> None:
        env = dict(os.environ)
        env["LUTE_IPC_PURE_PYTHON"] = "1" if pure else ""
        self.proc = subprocess.Popen([sys.executable, "-m", "lute_ipc.bench.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True)
        self.implementation = str(self._answer().get("implementation"))

    def _answer(self) -> Dict[str, Any]:
        import select

        stdout = self.proc.stdout
        assert stdout is not None
        if not select.select([stdout], [], [], WORKER_TIMEOUT)[0]:
            raise TransportError("a benchmark worker did not answer in time")
        line = stdout.readline()
        if not line:
            raise TransportError(f"a benchmark worker exited (code {self.proc.wait()}); see its stderr above")
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def trial(self, scenario: str, contender: str, shape: str, count: int) -> float:
        """Seconds of one trial (TransportError with the worker's message if it failed)."""
        assert self.proc.stdin is not None
        request = {"scenario": scenario, "contender": contender, "shape": shape, "count": count}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self._answer()
        if "error" in answer:
            raise TransportError(answer["error"])
        return float(answer["seconds"])

    def close(self) -> None:
        """End the worker (EOF on its stdin; killed if it does not exit within 10 s)."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Workers:
    """The workers, started on first use: one on the default core, one pure."""

    def __init__(self) -> None:
        self._workers: Dict[bool, Worker] = {}

    def get(self, pure: bool) -> Worker:
        """The worker for the pure core (``pure``) or the default one."""
        if pure not in self._workers:
            self._workers[pure] = Worker(pure)
        return self._workers[pure]

    def trial_callable(self, scenario: str, contender: str, shape: str, count: int) -> Callable[[], float]:
        """A callable running one trial in the right worker."""
        worker = self.get(contender == "lute_ipc-pure")
        return lambda: worker.trial(scenario, contender, shape, count)

    def close(self) -> None:
        """End every worker."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()

    def implementation(self, pure: bool) -> Optional[str]:
        """The core a worker reports (starts it)."""
        return self.get(pure).implementation
