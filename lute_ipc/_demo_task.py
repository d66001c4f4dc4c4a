"""The Task that ``python -m lute_ipc demo`` runs: ``python -m lute_ipc._demo_task --messages N``.

It uses the Task-side API a real Task would: :func:`lute_ipc.task.report` (signals and
short text through the pipes, objects through one persistent socket connection) and a
:class:`~lute_ipc.log_handler.SocketLogHandler` for its log lines. It also ``print()``s
to stdout, mixed with the pickled messages there, and logs a line containing ``;;;`` and
``;;;GSM`` (the original LUTE socket decoder stalls forever on such a payload).
Run outside an Executor it fails with a ConfigurationError: it needs the ``LUTE_*``
environment an Executor exports.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import List, Optional

from .log_handler import SocketLogHandler
from .message import Message
from .task import close_reporter, report

__all__ = ["main", "LOG_FORMAT", "DONE_LINE", "checksum"]

LOG_FORMAT = "TASK_LOG -- %(levelname)s:%(name)s: %(message)s"
"""LUTE's Task log format."""

DONE_LINE = "done: reporting the result"
"""The message the Task logs, and flushes, right before its TASK_RESULT: the Executor checks
that this line arrives before the result."""


def checksum(count: int) -> int:
    """The value the Task reports for ``count`` data messages (the Executor checks it)."""
    return sum(i * i for i in range(count)) % 1_000_003


def main(argv: Optional[List[str]] = None) -> int:
    """Send the demo's messages; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m lute_ipc._demo_task")
    parser.add_argument("--messages", type=int, default=20_000, help="data messages to send")
    parser.add_argument("--fail", action="store_true", help="report TASK_FAILED and exit with code 1")
    args = parser.parse_args(argv)

    logger = logging.getLogger("lute_ipc.demo.task")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = SocketLogHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    try:
        report(Message(signal="TASK_STARTED"))
        logger.info("started (pid %d): sending %d data messages over the socket", os.getpid(), args.messages)
        print("a plain print() on stdout, between pickled messages on the same pipe", flush=True)
        report(Message(contents="a text report without a signal: through the socket, in order with the data"))
        quarter = max(1, args.messages // 4)
        for i in range(args.messages):
            report(Message(contents={"i": i, "square": i * i, "note": "data;;;GSM"}))
            if i and i % quarter == 0:
                logger.info("%d of %d data messages sent", i, args.messages)
        logger.info("this line contains ;;; and ;;;GSM: the original LUTE decoder stalls here, lute_ipc does not")
        if args.fail:
            logger.error("failing on purpose (--fail)")
            report(Message(signal="TASK_FAILED"))
            return 1
        logger.info(DONE_LINE)
        handler.flush()  # the line leaves before the result (same connection, in order)
        report(Message(contents={"messages": args.messages, "checksum": checksum(args.messages)},
                       signal="TASK_RESULT"))
        report(Message(signal="TASK_DONE"))
        return 0
    finally:
        logger.removeHandler(handler)
        handler.close()
        close_reporter()


if __name__ == "__main__":
    raise SystemExit(main())
