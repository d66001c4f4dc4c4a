"""The abstract :class:`Communicator`: what every transport offers, as in ``lute.execution.ipc``.

Subclasses move bytes only; parsing lives in :mod:`lute_ipc.framing`.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Optional, Type, TypeVar

from .errors import UsageError
from .message import Message, Party

__all__ = ["Communicator"]

_C = TypeVar("_C", bound="Communicator")


class Communicator(ABC):
    """Base class of the IPC channels between a Task and its Executor.

    Args:
        party: which end this process is (:attr:`Party.TASK` writes, :attr:`Party.EXECUTOR` reads).
        use_pickle: serialise contents with pickle (otherwise contents must be text).

    The API is that of LUTE's ``Communicator`` in both its generations: ``read(proc=None,
    wait=None)``, ``write(msg, proc=None)``, ``has_messages``, ``delayed_setup()``,
    ``stage_communicator()``/``clear_communicator()`` and use as a context manager, whose
    exit closes everything the communicator opened.
    """

    def __init__(self, party: Party = Party.TASK, use_pickle: bool = True) -> None:
        if not isinstance(party, Party):
            raise UsageError(f"party must be a lute_ipc.Party, not {party!r}")
        self._party = party
        self._use_pickle = bool(use_pickle)
        self.desc = "Communicator abstract base class."

    @property
    def party(self) -> Party:
        """Which end of the channel this communicator serves."""
        return self._party

    @abstractmethod
    def read(self, proc: Optional[subprocess.Popen[bytes]] = None, wait: Optional[float] = None) -> Message:
        """Return the next Message, or an empty ``Message()`` when none is waiting.

        Args:
            proc: the Task's process (Executor side of pipe transports).
            wait: block up to this many seconds for data (``None``: do not block beyond
                the transport's short default).
        """

    @abstractmethod
    def write(self, msg: Message, proc: Optional[subprocess.Popen[bytes]] = None) -> None:
        """Send ``msg`` to the other end (``proc``: the child, for Executor-to-Task pipes)."""

    @property
    def has_messages(self) -> bool:
        """True while messages are waiting to be read."""
        return False

    def delayed_setup(self) -> None:  # noqa: B027  a no-op by default, not abstract: LUTE's API
        """Acquire resources (sockets, threads) later than construction."""

    def close(self) -> None:  # noqa: B027  a no-op by default, not abstract: LUTE's API
        """Release everything this communicator opened. Idempotent."""

    def stage_communicator(self) -> None:
        """Same as entering the context manager."""
        self.__enter__()

    def clear_communicator(self) -> None:
        """Same as leaving the context manager: closes everything."""
        self.__exit__(None, None, None)

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]] = None,
        exc: Optional[BaseException] = None,
        tb: Optional[TracebackType] = None,
    ) -> None:
        self.close()

    def __str__(self) -> str:
        return f"{type(self).__name__}: {self.desc}"

    def __repr__(self) -> str:
        return self.__str__()
