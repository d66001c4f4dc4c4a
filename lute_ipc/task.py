"""Task side: report messages to the Executor over the right channel, one connection per process.

LUTE's ``Task._report_to_executor`` sends text (and signal-only) messages through the
pipes and everything else through a socket, opening and closing a new socket connection
for every message. :func:`report` keeps LUTE's routing rule, with one refinement, and
does it properly:

* a message **with a signal** whose ``contents`` is ``None`` or a ``str`` of at most
  ``pipe_text_limit`` UTF-8 bytes (default :data:`PIPE_TEXT_LIMIT`) ->
  :class:`~lute_ipc.pipe.PipeCommunicator` (signal on stderr, contents on stdout), as LUTE;
* anything else (objects, long text, and text **without a signal**) -> one
  :class:`~lute_ipc.sockets.SocketCommunicator` opened on first use and kept open:
  ONE persistent connection per process.

Why signal-less text goes through the socket: the pipe carries a signal (stderr) and its
contents (stdout) on two streams, which the Executor pairs by order. A pickled write
*without* a signal between signalled ones makes that pairing ambiguous when the Executor
reads several writes at once (the text takes the next message's signal). Keeping every
pickled pipe write signalled keeps the pairing exact; ``print()`` output stays plain text
on stdout and is never paired. A bonus: signal-less text stays in order with the objects
sent on the socket.

Usage in a Task::

    from lute_ipc import Message
    from lute_ipc.task import report

    report(Message(signal="TASK_STARTED"))                            # pipe
    report(Message(contents={"peaks": peaks}, signal="TASK_RESULT"))  # socket
    report(Message(contents="50% done"))                              # socket (no signal)
    report(Message(signal="TASK_DONE"))                               # pipe

The module-level reporter is created lazily (importing this module does nothing),
is thread-safe, is closed at interpreter exit (``atexit``; ZeroMQ gets its ``linger`` to
deliver what is queued) or explicitly by :func:`close_reporter`, and is reset in a
forked child so parent and child never share one connection.

Ordering: messages on one channel arrive in the order they were reported; the pipe and
the socket are two channels. The socket writer batches (see :mod:`lute_ipc.transport.writer`), so
before a signal other than ``TASK_LOG`` goes through the pipe, the socket's buffer is
flushed: the results a signal concludes have left the Task before the signal does (they
may still be read after it, as in LUTE; the Executor helper :mod:`lute_ipc.executor`
drains both channels after the Task exits and sees everything).
"""

from __future__ import annotations

import atexit
import os
import threading
from types import TracebackType
from typing import List, Optional, Type

from .communicator import Communicator
from .errors import CommunicatorClosed, UsageError
from .message import Message, Party, require_message

__all__ = ["PIPE_TEXT_LIMIT", "TaskReporter", "report", "get_reporter", "close_reporter"]

PIPE_TEXT_LIMIT = 4096
"""Largest text (UTF-8 bytes) sent through the pipe; longer text goes through the socket.
4096 is Linux's ``PIPE_BUF``: a pipe write of at most this size is atomic."""


def goes_to_pipe(msg: Message, pipe_text_limit: int = PIPE_TEXT_LIMIT) -> bool:
    """The routing rule: True for a message with a signal and ``None`` contents or text of at
    most ``pipe_text_limit`` UTF-8 bytes."""
    if not msg.signal:
        return False
    contents = msg.contents
    if contents is None:
        return True
    if not isinstance(contents, str):
        return False
    if len(contents) > pipe_text_limit:  # a character is at least one byte
        return False
    if len(contents) * 4 <= pipe_text_limit:  # at most 4 bytes per character
        return True
    return len(contents.encode("utf-8", "surrogatepass")) <= pipe_text_limit


class TaskReporter:
    """Routes each message to the pipe or to one persistent socket connection (thread-safe).

    Args:
        pipe_text_limit: signalled messages whose contents are ``None`` or text up to this
            many UTF-8 bytes go through the pipe; everything else through the socket.
        pipe: the Task-side pipe communicator (default: ``PipeCommunicator(Party.TASK)``,
            created on first use).
        socket: the Task-side socket communicator (default: ``SocketCommunicator(Party.TASK)``,
            set up on first use from the ``LUTE_*`` environment the Executor exported).
            Communicators passed in are closed by :meth:`close` too.

    Raises (from :meth:`report`): ConfigurationError when the socket environment is
    missing, TransportError when the Executor cannot be reached, CommunicatorClosed
    after :meth:`close`.
    """

    def __init__(self, *, pipe_text_limit: int = PIPE_TEXT_LIMIT,
                 pipe: Optional[Communicator] = None, socket: Optional[Communicator] = None) -> None:
        if pipe_text_limit < 0:
            raise UsageError("pipe_text_limit must be >= 0")
        self.pipe_text_limit = pipe_text_limit
        self._pipe = pipe
        self._socket = socket
        self._socket_ready = False
        self._pipe_lock = threading.Lock()
        self._socket_lock = threading.Lock()
        self._closed = False
        self.pipe_messages = 0
        """Messages sent through the pipe so far."""
        self.socket_messages = 0
        """Messages sent through the socket so far."""

    def report(self, msg: Message) -> None:
        """Send ``msg`` to the Executor through the pipe or the socket (see the module docs)."""
        require_message(msg, "report()")
        if self._closed:
            raise CommunicatorClosed("this TaskReporter was closed")
        if goes_to_pipe(msg, self.pipe_text_limit):
            if msg.signal is not None and msg.signal != "TASK_LOG":
                # A signal concludes what was sent before it: the socket writer batches, so
                # push its buffer out first, or the signal could overtake (and, if the Task
                # then exits abruptly, outlive) the results it concludes.
                sock = self._socket
                if sock is not None:
                    flush = getattr(sock, "flush", None)
                    if flush is not None:
                        flush()
            with self._pipe_lock:  # keeps each message's stdout and stderr parts together
                self._pipe_communicator().write(msg)
                self.pipe_messages += 1
        else:
            comm = self._socket_communicator()
            comm.write(msg)  # the socket writer is thread-safe itself
            with self._socket_lock:
                self.socket_messages += 1

    def _pipe_communicator(self) -> Communicator:
        if self._pipe is None:
            from .pipe import PipeCommunicator

            self._pipe = PipeCommunicator(Party.TASK)
        return self._pipe

    def _socket_communicator(self) -> Communicator:
        if self._socket_ready:
            return self._socket  # type: ignore[return-value]
        with self._socket_lock:
            if self._closed:
                raise CommunicatorClosed("this TaskReporter was closed")
            if self._socket is None:
                from .sockets import SocketCommunicator

                self._socket = SocketCommunicator(Party.TASK)
            if not self._socket_ready:
                self._socket.delayed_setup()
                self._socket_ready = True
        return self._socket

    @property
    def connected(self) -> bool:
        """True once the socket connection has been opened (and not closed)."""
        return self._socket_ready and not self._closed

    def close(self) -> None:
        """Close the socket connection (delivering what is queued) and the pipe communicator. Idempotent."""
        with self._socket_lock:
            if self._closed:
                return
            self._closed = True
            sock, self._socket = self._socket, None
            self._socket_ready = False
        with self._pipe_lock:
            pipe, self._pipe = self._pipe, None
        for comm in (sock, pipe):
            if comm is not None:
                comm.close()

    def __enter__(self) -> TaskReporter:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()


# ---------------------------------------------------------------------- the process's reporter
_lock = threading.Lock()
_reporter: Optional[TaskReporter] = None
_reporter_pid: Optional[int] = None
_hooks_installed = False


def get_reporter() -> TaskReporter:
    """The process's reporter, created on first call (thread-safe; a new one after fork or close)."""
    global _reporter, _reporter_pid, _hooks_installed
    reporter = _reporter
    if reporter is not None and _reporter_pid == os.getpid() and not reporter._closed:
        return reporter
    with _lock:
        if _reporter is None or _reporter_pid != os.getpid() or _reporter._closed:
            _reporter = TaskReporter()
            _reporter_pid = os.getpid()
            if not _hooks_installed:
                _hooks_installed = True
                atexit.register(close_reporter)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_forget_in_child)
        return _reporter


def report(msg: Message) -> None:
    """Send ``msg`` to the Executor with the process's reporter (see :class:`TaskReporter`)."""
    get_reporter().report(msg)


def close_reporter() -> None:
    """Close the process's reporter, if any (also runs at interpreter exit). Idempotent."""
    global _reporter
    with _lock:
        reporter, _reporter = _reporter, None
        owned = _reporter_pid == os.getpid()
    if reporter is not None and owned:
        reporter.close()


_inherited: List[TaskReporter] = []
"""Reporters inherited through fork: kept referenced (never closed, never collected) so no
destructor touches the parent's connection or ZeroMQ context from the child."""


def _forget_in_child() -> None:
    """After fork: the parent's connection belongs to the parent; the child opens its own."""
    global _reporter, _reporter_pid, _lock
    _lock = threading.Lock()
    if _reporter is not None:
        _inherited.append(_reporter)
    _reporter = None
    _reporter_pid = None
