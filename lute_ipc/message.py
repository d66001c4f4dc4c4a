"""The objects that travel between a Task and its Executor.

Names, fields and defaults match ``lute.execution.ipc`` (both the original module and
``lute-lcls`` 0.3.0), so code written against LUTE keeps working and pickles of these
classes made by LUTE decode into these classes (see :mod:`lute_ipc.codec`).
This module imports nothing from lute_ipc.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, FrozenSet, Optional, Set

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

    contents: TaskRequest  # type: ignore[misc]
    signal: str = "TASK_REQUEST"


@dataclass
class TaskResponseMessage(Message):
    """A Message carrying a :class:`TaskResponse` (signal ``TASK_RESPONSE``)."""

    contents: TaskResponse  # type: ignore[misc]
    signal: str = "TASK_RESPONSE"


@dataclass
class TaskMetadataMessage(Message):
    """A Message carrying a dict of metadata for other Tasks (signal ``TASK_METADATA``)."""

    contents: Dict[str, Any]  # type: ignore[misc]
    signal: str = "TASK_METADATA"
