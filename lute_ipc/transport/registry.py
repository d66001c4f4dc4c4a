"""The process-wide session links: one writer per Executor (and options) per process.

LUTE's Tasks create a ``SocketCommunicator`` per message (``delayed_setup(); write();
clear_communicator()``). Between lute_ipc peers those communicators share one writer and its
session link, so a message costs one send instead of a connection and a handshake. A link
stays open after ``clear_communicator()`` (LUTE's per-message end) and is closed by the
``close()`` of its last user, or at exit. A forked child starts with an empty registry (an
``os.register_at_fork`` hook): it never finds its parent's link and opens its own.
At interpreter exit the writers are flushed and confirmed, and then write through (exit
handlers that run later still deliver); a link through an ssh tunnel is closed with its
tunnel instead (``on_close``), so no ssh process outlives its Task.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from .writer import FrameWriter

__all__ = ["Lease", "acquire", "get_or_create", "release", "discard", "close_all"]

_lock = threading.Lock()
_hook_installed = False
logger = logging.getLogger("lute_ipc.transport")
_entries: Dict[Tuple[Any, ...], Lease] = {}
"""This process's shared writers, by spec."""
_inherited: List[Lease] = []
"""In a forked child, the parent's leases: kept referenced (no finaliser runs), never used."""


class Lease:
    """One shared writer and the communicators using it (``users``); what :func:`acquire` and
    :func:`get_or_create` hand out and :func:`release` takes back."""

    __slots__ = ("spec", "writer", "on_close", "users")

    def __init__(self, spec: Tuple[Any, ...], writer: FrameWriter, on_close: Callable[[], None]) -> None:
        self.spec = spec
        self.writer = writer
        self.on_close = on_close
        self.users = 0


def acquire(spec: Tuple[Any, ...]) -> Optional[Lease]:
    """This process's open writer for ``spec`` (counted as one more user), or None."""
    lease = _entries.get(spec)
    if lease is None or lease.writer._closed:
        return None
    with _lock:
        lease.users += 1
    return lease


def get_or_create(spec: Tuple[Any, ...], make: Callable[[], FrameWriter], on_close: Callable[[], None]) -> Lease:
    """This process's writer for ``spec`` (one more user), made by ``make`` when there is none;
    ``on_close`` runs after the writer is closed."""
    global _hook_installed
    with _lock:
        lease = _entries.get(spec)
        if lease is None or lease.writer._closed:
            lease = _entries[spec] = Lease(spec, make(), on_close)
            if not _hook_installed:
                _hook_installed = True
                atexit.register(_at_exit)
        lease.users += 1
        return lease


def release(lease: Lease, *, close: bool, wait: bool = True) -> None:
    """One user fewer. With ``close`` and no user left, the writer is confirmed and closed (its
    errors are raised) and forgotten; otherwise it stays open for the next communicator.
    ``wait`` False: the caller's bounded confirmation ran out: the close does not wait again."""
    with _lock:
        lease.users = max(0, lease.users - 1)
        if not close or lease.users or _entries.get(lease.spec) is not lease:
            return  # still used, or not this process's (a forked child's inherited communicator)
        del _entries[lease.spec]
    try:
        lease.writer.close(wait=wait)
    finally:
        lease.on_close()


def discard(lease: Lease) -> None:
    """Forget ``lease``'s writer (its set-up failed)."""
    with _lock:
        if _entries.get(lease.spec) is lease:
            del _entries[lease.spec]


def close_all() -> None:
    """Confirm and close this process's shared writers, then run their ``on_close`` callbacks.
    The first error is raised once everything was closed."""
    first: Optional[BaseException] = None
    with _lock:
        mine = list(_entries.values())
        _entries.clear()
    for lease in mine:
        for step in (lease.writer.close, lease.on_close):
            try:
                step()
            except Exception as exc:
                first = first or exc
    if first is not None:
        raise first


def _at_exit() -> None:
    """Links through an ssh tunnel are confirmed and closed with their tunnel (no ssh outlives the
    Task); the others are flushed, confirmed and left open, writing through, for exit handlers
    that run later (:meth:`~lute_ipc.transport.writer.FrameWriter.finish_at_exit`)."""
    with _lock:
        mine = list(_entries.values())
        tunnelled = [lease for lease in mine if getattr(lease.writer.link, "tunnel", None) is not None]
        for lease in tunnelled:
            del _entries[lease.spec]
    for lease in mine:
        steps = (lease.writer.close, lease.on_close) if lease in tunnelled else (lease.writer.finish_at_exit,)
        for step in steps:
            try:
                step()
            except Exception as exc:  # no caller left to raise to
                logger.error("lute_ipc: at exit, messages to the Executor were not all delivered or confirmed: %s", exc)


def _forget_parent() -> None:
    """In a forked child: the parent's links are not this process's (and a lock may have been held
    by a thread that does not exist here)."""
    global _lock
    _inherited.extend(_entries.values())
    _entries.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent)
