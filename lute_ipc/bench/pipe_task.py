"""``python -m lute_ipc.bench.pipe_task CONTENDER SHAPE COUNT``: the Task of the pipe scenario.

Started by :mod:`.pipes` with the control channel's descriptors in ``LUTE_IPC_BENCH_CONTROL``
(``read_fd,write_fd``). After ``go`` it writes ``COUNT`` messages of ``SIZE`` bytes on
stdout, each followed by a printed line (text mixed with the pickles):

* ``lute_ipc-*``: ``PipeCommunicator(Party.TASK).write(Message(contents))`` then ``print()``
  (the pipe carries the contents of each message of the shape, as LUTE's pipe does);
* ``raw-bytes``: the same bytes (pickles and lines), pre-built, with ``os.write``.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from ..message import Message, Party
from . import payloads
from .control import Control
from .task_side import SETUP_TIMEOUT, wait_for_go

CONTROL_ENV = "LUTE_IPC_BENCH_CONTROL"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the Task; the exit code is 0 when everything was written."""
    contender, shape, count_text = sys.argv[1:] if argv is None else argv
    count = int(count_text)
    read_fd, write_fd = (int(fd) for fd in os.environ[CONTROL_ENV].split(","))
    control = Control(read_fd, write_fd)
    control.receive(SETUP_TIMEOUT)
    if contender == "raw-bytes":
        stream = memoryview(payloads.pipe_stream(shape, count))
        first = wait_for_go(control)
        while stream:
            stream = stream[os.write(1, stream):]
    else:
        from ..pipe import PipeCommunicator

        comm = PipeCommunicator(Party.TASK)
        msgs = [Message(contents=item) for item in payloads.pipe_contents(shape, count)]
        line = payloads.TEXT_LINE.decode()
        first = wait_for_go(control)
        for msg in msgs:
            comm.write(msg)
            print(line, end="")
        sys.stdout.flush()
    control.send({"first_write": first})
    return 0


if __name__ == "__main__":
    sys.exit(main())
