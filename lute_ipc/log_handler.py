"""``SocketLogHandler``: ship a Task's log records to its Executor over one persistent socket.

The drop-in successor of LUTE's ``SocketCommunicatorHandler``: each record becomes
``Message(contents=<formatted record>, signal="TASK_LOG")`` — the text LUTE's Executor
``task_log`` hook prints — sent over the Task's one persistent socket connection, the
one :func:`lute_ipc.task.report` uses (or over a communicator you pass). Records and reports
share that connection, so they arrive in the order they were sent: a record :meth:`flush`
pushed out before a ``report(Message(..., signal="TASK_RESULT"))`` arrives before the result.

Contents (choose with ``structured``):

* ``structured=False`` (default): ``self.format(record)``, a ``str``, exactly what LUTE
  sends, so an unmodified LUTE Executor shows the lines.
* ``structured=True``: a ``dict`` of the record's fields (``name``, ``levelno``,
  ``levelname``, ``message``, ``formatted``, ``created``, ``msecs``, ``process``,
  ``processName``, ``thread``, ``threadName``, ``pathname``, ``filename``, ``module``,
  ``lineno``, ``funcName``, ``exc_text``, ``stack_info``): the Executor can re-create a
  ``LogRecord`` with :func:`log_record_from_contents` and route it through its own
  logging at the right level. Every value is a plain ``str``/``int``/``float``/``None``.

The Task never waits for the Executor on the hot path: :meth:`emit` formats the record in
the caller's thread and appends it to a bounded buffer that a background thread drains
to the socket. When the buffer is full:

* default (``drop_when_full=False``): :meth:`emit` waits up to ``block_timeout`` seconds
  for room (``None``: as long as it takes). If there is still none, the record is not
  lost silently: its text is written to the fallback stream (default ``sys.stderr``, the
  signal pipe of a LUTE Task, so the Executor still receives it as text) and counted
  in :attr:`spilled`.
* ``drop_when_full=True``: :meth:`emit` never waits; the record is dropped and counted
  in :attr:`dropped`, and the drain thread sends a ``TASK_LOG`` notice with the number
  of records dropped so the Executor knows.

A record the transport fails to send is also written to the fallback stream and counted
in :attr:`spilled`. :meth:`flush` waits until everything buffered was handed to the
connection and flushes the connection's batching buffer; :meth:`close` (called at exit, before
the process's connection is closed) delivers everything buffered and stops the thread. The
connection itself belongs to :mod:`lute_ipc.task` (``close_reporter()``, or at exit).

Create the handler in the process that logs. In a forked child, an inherited handler does not
use its parent's connection: it writes records to the fallback stream; add a new handler there.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from typing import IO, Any, Callable, Deque, Dict, List, Optional

from .communicator import Communicator
from .errors import UsageError
from .message import Message

__all__ = ["SocketLogHandler", "log_record_from_contents", "LOG_SIGNAL"]

LOG_SIGNAL = "TASK_LOG"
"""The signal every message of the handler carries."""

_BATCH = 256
_RECORD_FIELDS = ("name", "levelno", "levelname", "created", "msecs", "process", "processName",
                  "thread", "threadName", "pathname", "filename", "module", "lineno", "funcName",
                  "exc_text", "stack_info")


class SocketLogHandler(logging.Handler):
    """A logging handler that sends records to the Executor through a bounded buffer and one connection.

    Args:
        level: the handler's level.
        communicator: a Task-side communicator to send through (it stays yours: the
            handler does not close it). Default: the socket connection of the process's
            :func:`lute_ipc.task.get_reporter`, opened at construction from the ``LUTE_*``
            environment (so a missing environment raises ConfigurationError here, and no
            handler is created).
        capacity: records buffered at most (>= 1).
        block_timeout: seconds :meth:`emit` waits for room when the buffer is full
            (``None``: no limit). Ignored with ``drop_when_full``.
        drop_when_full: drop (and count) records instead of waiting when the buffer is full.
        structured: send a dict of the record's fields instead of the formatted text.
        close_timeout: seconds :meth:`flush` and :meth:`close` wait for delivery before
            reporting (and, in close, spilling) what is left.
        fallback: stream for records that could not be delivered (default: ``sys.stderr``
            at the time of writing).

    Counters (read any time): :attr:`sent`, :attr:`dropped`, :attr:`spilled`, and
    :attr:`buffered` (records waiting).
    """

    def __init__(
        self,
        level: int = logging.NOTSET,
        *,
        communicator: Optional[Communicator] = None,
        capacity: int = 10_000,
        block_timeout: Optional[float] = 2.0,
        drop_when_full: bool = False,
        structured: bool = False,
        close_timeout: float = 10.0,
        fallback: Optional[IO[str]] = None,
    ) -> None:
        if capacity < 1:
            raise UsageError("capacity must be >= 1")
        if block_timeout is not None and block_timeout < 0:
            raise UsageError("block_timeout must be >= 0 or None")
        if communicator is None:
            # Open the process's connection before logging.Handler.__init__ registers this handler
            # for logging.shutdown(): a constructor that fails leaves nothing half-built behind.
            _process_connection()
        super().__init__(level)
        self.capacity = capacity
        self.block_timeout = block_timeout
        self.drop_when_full = bool(drop_when_full)
        self.structured = bool(structured)
        self.close_timeout = close_timeout
        self._fallback = fallback
        self.sent = 0
        """Records delivered to the transport."""
        self.dropped = 0
        """Records dropped because the buffer was full (only with ``drop_when_full=True``)."""
        self.spilled = 0
        """Records written to the fallback stream instead (buffer full past ``block_timeout``,
        transport failure, or emitted after close)."""
        self.last_error: Optional[BaseException] = None
        """The last transport error the drain thread met, if any."""
        self._buffer: Deque[Message] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._sending = False
        self._drops_reported = 0
        self._closing = False
        self._stopping = False
        self._handler_closed = False
        self._error_reported = False
        self._link: Callable[[], Communicator] = _process_connection if communicator is None \
            else (lambda: communicator)
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._drain, name="lute-ipc-log-handler", daemon=True)
        self._thread.start()
        self._at_exit: Optional[Callable[[], None]] = None
        if communicator is None:
            # Deliver before lute_ipc.task closes the process's connection at exit: atexit runs
            # the last registered first, and get_reporter() registered its closing already.
            self._at_exit = _close_at_exit(weakref.ref(self))
            atexit.register(self._at_exit)

    # ------------------------------------------------------------------ caller side
    @property
    def buffered(self) -> int:
        """Records waiting to be sent (buffered or being sent now)."""
        return len(self._buffer) + self._in_flight

    def handle(self, record: logging.LogRecord) -> bool:
        """As ``Handler.handle``; a record logged *by the drain thread itself* (e.g. a transport
        warning) is buffered without taking the handler lock or waiting, so it cannot deadlock."""
        if threading.current_thread() is self._thread:
            if not self.filter(record):
                return False
            try:
                msg = self._to_message(record)
            except Exception:
                return False
            with self._cond:
                self._buffer.append(msg)
                self._cond.notify_all()
            return True
        return bool(super().handle(record))  # 3.12+: a LogRecord (true) when it was emitted

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and buffer it for the drain thread (see the module docs when full)."""
        try:
            msg = self._to_message(record)
        except Exception:
            self.handleError(record)
            return
        if not self._enqueue(msg):
            self._spill([msg], "the handler is closed" if self._closing
                        else f"the buffer stayed full for {self.block_timeout} s")

    def _enqueue(self, msg: Message) -> bool:
        with self._cond:
            if self._closing or os.getpid() != self._pid:
                return False
            if len(self._buffer) >= self.capacity:
                if self.drop_when_full:
                    self.dropped += 1
                    return True
                deadline = None if self.block_timeout is None else time.monotonic() + self.block_timeout
                while len(self._buffer) >= self.capacity:
                    if self._closing or not self._thread.is_alive():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))
            self._buffer.append(msg)
            if len(self._buffer) == 1:
                self._cond.notify_all()
        return True

    def _to_message(self, record: logging.LogRecord) -> Message:
        text = self.format(record)
        if not self.structured:
            return Message(contents=text, signal=LOG_SIGNAL)
        fields: Dict[str, Any] = {name: getattr(record, name, None) for name in _RECORD_FIELDS}
        fields["message"] = record.getMessage()
        fields["formatted"] = text
        return Message(contents=fields, signal=LOG_SIGNAL)

    def flush(self) -> None:
        """Send every record emitted so far: wait (at most ``close_timeout`` s) until the drain
        thread handed them to the communicator, then flush the communicator's link, which batches.
        A record flushed this way is sent before anything the Task reports afterwards."""
        if self._handler_closed:  # closed: nothing is buffered, and the connection may be gone
            return
        if not self._wait_delivered(self.close_timeout):
            self._write_fallback(f"lute_ipc SocketLogHandler: {self.buffered} log record(s) not delivered "
                                 f"after {self.close_timeout} s (still buffered)\n")
            return
        if os.getpid() != self._pid:
            return
        try:
            flush_link = getattr(self._link(), "flush", None)  # the socket writer's is thread-safe
            if flush_link is not None:
                flush_link()
        except Exception as exc:  # as in the drain thread: report, never raise out of logging
            self.last_error = exc
            self._write_fallback(f"lute_ipc SocketLogHandler: flushing the connection failed: {exc}\n")

    def _wait_delivered(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._buffer or self._sending or self.dropped != self._drops_reported:
                if not self._thread.is_alive():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def close(self) -> None:
        """Deliver everything buffered, stop the drain thread, close the connection it opened. Idempotent."""
        with self._cond:
            already = self._handler_closed
            self._handler_closed = True
        if already:
            super().close()
            return
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)
        try:
            if os.getpid() == self._pid:
                delivered = self._wait_delivered(self.close_timeout)
                with self._cond:
                    self._closing = True
                    self._stopping = True
                    self._cond.notify_all()
                self._thread.join(self.close_timeout if delivered else 1.0)
                with self._cond:
                    left: List[Message] = list(self._buffer)
                    self._buffer.clear()
                    stuck = self._in_flight if self._thread.is_alive() else 0
                if left:
                    self._spill(left, "the Executor did not take them before close")
                if stuck:
                    self._write_fallback(f"lute_ipc SocketLogHandler: {stuck} log record(s) were being sent "
                                         f"when close() gave up waiting for the Executor; they may be lost\n")
        finally:
            super().close()

    # ------------------------------------------------------------------ drain thread
    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._stopping and self.dropped == self._drops_reported:
                    self._cond.wait()
                drops = self.dropped - self._drops_reported
                self._drops_reported += drops
                if not self._buffer and not drops:
                    return
                count = min(len(self._buffer), _BATCH)
                popleft = self._buffer.popleft
                batch = [popleft() for _ in range(count)]
                self._in_flight = count
                self._sending = True
                self._cond.notify_all()  # room for waiting emitters
            done = 0
            try:
                send = self._link().write
                for msg in batch:
                    send(msg)
                    done += 1
                if drops:
                    send(self._drop_notice(drops))
            except Exception as exc:  # the thread must survive a dead Executor
                self.last_error = exc
                self._spill(batch[done:], f"sending failed: {exc}")
            finally:
                with self._cond:
                    self.sent += done
                    self._in_flight = 0
                    self._sending = False
                    self._cond.notify_all()

    def _drop_notice(self, count: int) -> Message:
        record = logging.makeLogRecord({
            "name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
            "msg": "%d log record(s) dropped: the SocketLogHandler buffer (capacity %d) was full",
            "args": (count, self.capacity),
        })
        return self._to_message(record)

    # ------------------------------------------------------------------ fallback
    def _spill(self, messages: List[Message], reason: str) -> None:
        if not messages:
            return
        with self._cond:
            self.spilled += len(messages)
            first = not self._error_reported
            self._error_reported = True
        lines = []
        if first:
            lines.append(f"lute_ipc SocketLogHandler: writing log records here because {reason}\n")
        for msg in messages:
            text = msg.contents.get("formatted") if isinstance(msg.contents, dict) else msg.contents
            lines.append(f"{text}\n")
        self._write_fallback("".join(lines))

    def _write_fallback(self, text: str) -> None:
        stream = self._fallback if self._fallback is not None else sys.stderr
        try:
            if stream is not None:
                stream.write(text)
                stream.flush()
        except Exception:  # nowhere left to report to
            pass


def _process_connection() -> Communicator:
    """The socket connection of the process's :class:`lute_ipc.task.TaskReporter` (set up on
    first use), so log records and reports travel in one ordered stream."""
    from .task import get_reporter

    return get_reporter()._socket_communicator()


def _close_at_exit(handler: weakref.ReferenceType[SocketLogHandler]) -> Callable[[], None]:
    def close() -> None:
        alive = handler()
        if alive is not None:
            alive.close()
    return close


def log_record_from_contents(contents: Any) -> logging.LogRecord:
    """Executor side: a ``LogRecord`` from the contents of a ``TASK_LOG`` message.

    A dict from ``structured=True`` keeps the Task's level, logger name, time and place;
    text (LUTE's format) becomes an INFO record of logger ``"task"`` whose message is the text.
    """
    if isinstance(contents, dict):
        fields = {name: contents.get(name) for name in _RECORD_FIELDS if name in contents}
        fields["msg"] = contents.get("message", "")
        fields["args"] = None
        return logging.makeLogRecord(fields)
    return logging.makeLogRecord({"name": "task", "levelno": logging.INFO, "levelname": "INFO",
                                  "msg": "" if contents is None else str(contents), "args": None})
