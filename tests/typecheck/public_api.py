"""Type-checked by .ci/run (``mypy --strict --disallow-any-expr``) against the INSTALLED package:
the public names, lazily imported at run time, must have real types for checkers, not Any.
Not a test module (pytest does not collect it); it is never run."""

from __future__ import annotations

import logging

import lute_ipc
from lute_ipc import LUTE_SIGNALS, Message, Party
from lute_ipc.errors import LuteIPCError, PurePythonFallbackWarning


def executor_side(command: list[str]) -> int:
    runner: lute_ipc.TaskRunner = lute_ipc.TaskRunner(command, timeout=60.0)
    runner.on_signal("TASK_RESULT", lambda msg: None)
    result: lute_ipc.RunResult = runner.run()
    comm: lute_ipc.SocketCommunicator = lute_ipc.SocketCommunicator(Party.EXECUTOR)
    pipe: lute_ipc.PipeCommunicator = lute_ipc.PipeCommunicator(Party.TASK)
    comm.close()
    pipe.close()
    return result.returncode if result.returncode is not None else -1


def task_side() -> str:
    lute_ipc.report(Message(contents="text", signal="TASK_LOG"))
    handler: logging.Handler = lute_ipc.SocketLogHandler(structured=True)
    handler.flush()
    implementation: str = lute_ipc.IMPLEMENTATION
    version: str = lute_ipc.__version__
    names: set[str] = LUTE_SIGNALS
    warning: type[Warning] = PurePythonFallbackWarning
    error: type[Exception] = LuteIPCError
    return f"{implementation} {version} {len(names)} {warning.__name__} {error.__name__}"
