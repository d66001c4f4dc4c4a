"""lute_ipc: fast, safe IPC between a LUTE Executor and the Tasks it runs.

A drop-in successor of ``lute.execution.ipc``: the same ``Party``, ``Message``,
``LUTE_SIGNALS``, ``Communicator``, ``PipeCommunicator`` and ``SocketCommunicator``, the
same environment variables and socket wire format, with a Cython core and a pure-Python
fallback (``lute_ipc.framing.IMPLEMENTATION`` tells which one runs).

Transports are imported on first use, so ``import lute_ipc`` stays cheap and has no side
effects.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import errors
from .communicator import Communicator
from .errors import LuteIPCError
from .message import (
    LUTE_SIGNALS,
    Message,
    Party,
    TaskMetadataMessage,
    TaskRequest,
    TaskRequestMessage,
    TaskResponse,
    TaskResponseMessage,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "errors",
    "LuteIPCError",
    "Party",
    "Message",
    "LUTE_SIGNALS",
    "TaskRequest",
    "TaskResponse",
    "TaskRequestMessage",
    "TaskResponseMessage",
    "TaskMetadataMessage",
    "Communicator",
    "PipeCommunicator",
    "SocketCommunicator",
    "IMPLEMENTATION",
    "TaskRunner",
    "RunResult",
    "report",
    "SocketLogHandler",
]

# name -> module that defines it; imported lazily (PEP 562).
_LAZY = {
    "PipeCommunicator": ".pipe",
    "SocketCommunicator": ".sockets",
    "IMPLEMENTATION": ".framing",
    "TaskRunner": ".executor",
    "RunResult": ".executor",
    "report": ".task",
    "SocketLogHandler": ".log_handler",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lute_ipc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
