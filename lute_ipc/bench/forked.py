"""A Task process made by ``os.fork`` from a single-threaded benchmark worker.

Forking costs a few milliseconds where starting an interpreter costs half a second on a
busy machine, and the child is a real, separate process with its own core (the worker's
framing implementation, Cython or pure, comes with it). The worker forks *before* it
starts any Executor thread or ZeroMQ context, so the child inherits no lock held by
another thread; it learns the addresses over the control channel.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Callable, Optional

from ..errors import TransportError
from .control import Control, pipe_pair


class ForkedTask:
    """Fork a child running ``body(control)``; the parent talks to it through :attr:`control`."""

    def __init__(self, body: Callable[[Control], None]) -> None:
        parent_read, child_write, child_read, parent_write = pipe_pair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the Task
            status = 0
            try:
                os.close(parent_read)
                os.close(parent_write)
                body(Control(child_read, child_write))
            except BaseException:  # report and exit: never return into the worker's code
                traceback.print_exc()
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        os.close(child_read)
        os.close(child_write)
        self.pid = pid
        self.control = Control(parent_read, parent_write)
        self._status: Optional[int] = None

    def alive(self) -> bool:
        """True while the child runs."""
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._status = os.waitstatus_to_exitcode(status)
        return self._status is None

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the exit code (the child is killed after that)."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                self.kill()
                raise TransportError(f"the benchmark Task {self.pid} did not exit within {timeout:.0f} s")
            time.sleep(0.002)
        self.control.close()
        return self._status  # type: ignore[return-value]

    def kill(self) -> None:
        """SIGKILL the child and reap it (idempotent)."""
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self._status = os.waitstatus_to_exitcode(status)
        self.control.close()
