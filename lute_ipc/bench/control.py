"""The control channel between the Executor side of a trial and its Task process.

Two pipes carry one JSON document per line: the Executor sends the set-up (addresses,
environment) and ``go``; the Task answers ``ready`` and, when it has written everything,
the time of its first write (``time.perf_counter``: CLOCK_MONOTONIC, one clock for every
process on Linux). The data itself never goes through here.
"""

from __future__ import annotations

import json
import os
import select
import time
from typing import Any, List

from ..errors import TransportError


class Control:
    """One end of the channel: reads ``read_fd``, writes ``write_fd`` (both owned)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._pending = b""

    def send(self, obj: Any) -> None:
        """Write one JSON line."""
        data = (json.dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(self.write_fd, data):]

    def receive(self, timeout: float) -> Any:
        """The next JSON line, waiting at most ``timeout`` seconds (TransportError after that or at EOF)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TransportError(f"the benchmark Task did not answer within {timeout:.0f} s")
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                raise TransportError("the benchmark Task exited before answering (see its stderr)")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        """Close both descriptors (idempotent)."""
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.read_fd = self.write_fd = -1


def pipe_pair() -> List[int]:
    """``[parent_read, child_write, child_read, parent_write]``: the fds of a control channel."""
    up_read, up_write = os.pipe()
    down_read, down_write = os.pipe()
    return [up_read, up_write, down_read, down_write]
