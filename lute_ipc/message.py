"""The objects that travel between a Task and its Executor.

Names, fields and defaults match ``lute.execution.ipc`` (both the original module and
``lute-lcls`` 0.3.0), so code written against LUTE keeps working and pickles of these
classes made by LUTE decode into these classes (see :mod:`lute_ipc.codec`).

Validation, as LUTE allows: a Message's ``signal`` is ``None`` or a ``str`` — any text, since
LUTE puts any text on the wire (its Executor dispatches only :data:`LUTE_SIGNALS` and treats
other signals as text), so only a non-text signal such as ``Message(signal=5)`` is refused,
with :class:`~lute_ipc.errors.UsageError` at construction. ``contents`` is anything. Decoding
does not validate: unpickling does not call ``__init__``, so a Message arrives as it was sent.
This module imports nothing from lute_ipc but :mod:`lute_ipc.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, FrozenSet, Optional, Set

from .errors import UsageError

__all__ = [
    "Party",
    "Message",
    "LUTE_SIGNALS",
    "ORIGINAL_SIGNALS",
    "TaskRequest",
    "TaskResponse",
    "TaskRequestMessage",
    "TaskResponseMessage",
    "TaskMetadataMessage",
    "require_message",
]


class Party(Enum):
    """Which end of a communicator this process is."""

    TASK = 0
    """The Task (client) side: writes results, logs and signals."""
    EXECUTOR = 1
    """The Executor (server) side: reads what its Tasks send."""


ORIGINAL_SIGNALS: FrozenSet[str] = frozenset(
    {
        "NO_PICKLE_MODE",
        "TASK_STARTED",
        "TASK_FAILED",
        "TASK_STOPPED",
        "TASK_DONE",
        "TASK_CANCELLED",
        "TASK_RESULT",
        "TASK_LOG",
    }
)
"""The signals of the original ``lute.execution.ipc``."""

LUTE_SIGNALS: Set[str] = set(ORIGINAL_SIGNALS) | {"TASK_REQUEST", "TASK_RESPONSE", "TASK_METADATA"}
"""Every signal name a Message may carry (``lute-lcls`` 0.3.0 added the last three)."""


@dataclass
class Message:
    """One unit of communication: arbitrary ``contents`` and an optional ``signal`` name."""

    contents: Optional[Any] = None
    signal: Optional[str] = None

    def __post_init__(self) -> None:
        signal = self.signal
        if signal is not None and not isinstance(signal, str):
            raise UsageError(f"Message signal must be a str or None (a name such as 'TASK_RESULT'), "
                             f"not {type(signal).__name__} {signal!r}")


@dataclass
class TaskRequest:
    """A request a Task addresses to another Task or to the workflow manager."""

    request: Any
    for_task: Optional[str] = None
    for_manager: bool = False


@dataclass
class TaskResponse:
    """The answer to a :class:`TaskRequest`."""

    response: Optional[Any] = None
    for_task: Optional[str] = None


@dataclass
class TaskRequestMessage(Message):
    """A Message carrying a :class:`TaskRequest` (signal ``TASK_REQUEST``)."""

    contents: TaskRequest
    signal: str = "TASK_REQUEST"


@dataclass
class TaskResponseMessage(Message):
    """A Message carrying a :class:`TaskResponse` (signal ``TASK_RESPONSE``)."""

    contents: TaskResponse
    signal: str = "TASK_RESPONSE"


@dataclass
class TaskMetadataMessage(Message):
    """A Message carrying a dict of metadata for other Tasks (signal ``TASK_METADATA``)."""

    contents: Dict[str, Any]
    signal: str = "TASK_METADATA"


def require_message(msg: object, where: str) -> Message:
    """``msg`` itself when it is a :class:`Message`; otherwise UsageError saying what ``where``
    (e.g. ``"SocketCommunicator.write()"``) takes. Checked before anything is encoded or sent."""
    if isinstance(msg, Message):
        return msg
    raise UsageError(f"{where} takes a lute_ipc.Message (e.g. Message(contents=..., signal='TASK_RESULT')), "
                     f"not {type(msg).__name__}")
