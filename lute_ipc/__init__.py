"""lute_ipc: fast, safe IPC between a LUTE Executor and the Tasks it runs.

A drop-in successor of ``lute.execution.ipc``: the same ``Party``, ``Message``,
``LUTE_SIGNALS``, ``Communicator``, ``PipeCommunicator`` and ``SocketCommunicator``, the
same environment variables and socket wire format, with a Cython core and a pure-Python
fallback (``lute_ipc.framing.IMPLEMENTATION`` tells which one runs).

Transports are imported on first use, so ``import lute_ipc`` stays cheap and has no side
effects other than one :class:`~lute_ipc.errors.PurePythonFallbackWarning` when the Cython
extension is missing and ``LUTE_IPC_PURE_PYTHON`` does not ask for the pure-Python core.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, List

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

if TYPE_CHECKING:  # the lazily imported names, typed for checkers
    from .executor import RunResult, TaskRunner
    from .framing import IMPLEMENTATION
    from .log_handler import SocketLogHandler
    from .pipe import PipeCommunicator
    from .sockets import SocketCommunicator
    from .task import report

__version__ = "0.1.0"
"""The package version (the only place it is written: the build reads it from here)."""

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
        loaded = sys.modules.get(f"{__name__}.{name}")  # lute_shim, loaded alone by the LUTE switch's .pth line
        if loaded is not None:
            return loaded
        raise AttributeError(f"module 'lute_ipc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


def _warn_if_pure_by_accident() -> None:
    """One warning when the extension is not there and the pure core was not asked for.

    Cheap (a module lookup, no import); ``lute_ipc.framing.IMPLEMENTATION_REASON`` and
    ``python -m lute_ipc info`` give the details.
    """
    if os.environ.get("LUTE_IPC_PURE_PYTHON", "") not in ("", "0"):
        return
    if importlib.util.find_spec(__name__ + "._framing_c") is not None:
        return
    warnings.warn(
        "lute_ipc is using its pure-Python core because the Cython extension lute_ipc._framing_c "
        "was not built (no C compiler at install time?): same behaviour, much slower. Reinstall with "
        "a compiler, or set LUTE_IPC_PURE_PYTHON=1 to choose the pure core and silence this warning; "
        "'python -m lute_ipc info' shows the details.",
        errors.PurePythonFallbackWarning,
        stacklevel=2,
    )


_warn_if_pure_by_accident()
