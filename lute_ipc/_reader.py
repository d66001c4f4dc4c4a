"""Executor-side background readers: what they share (thread plumbing, counters).

* :class:`_ReaderThread`: one daemon thread that never dies of an exception (each is caught,
  counted in :class:`ReaderStats` and logged), stops promptly through a wake-up pipe and
  applies backpressure: while the queue is full it stops reading, so senders wait; nothing
  is dropped. :meth:`_ReaderThread.wait_until_idle` lets another thread wait until everything
  the peers sent is in the queue and no connection is open (a Task that has exited).
* The raw-socket reader is :class:`lute_ipc.transport.raw_reader.StreamReader` (also
  importable from here); the ZeroMQ reader is
  :class:`lute_ipc.transport.zeromq_executor.ZmqReader`, on the same plumbing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

from ._queue import MessageQueue
from .errors import AuthenticationError, PayloadError, ProtocolError

__all__ = ["ReaderStats", "StreamReader", "DecoderFactory"]  # noqa: F822 (StreamReader: __getattr__)


def __getattr__(name: str) -> Any:
    if name == "StreamReader":  # lives with the raw-socket transport
        from .transport.raw_reader import StreamReader

        return StreamReader
    raise AttributeError(name)

logger = logging.getLogger(__name__)

DecoderFactory = Callable[[Callable[[ProtocolError], None]], Any]
"""Makes a FrameDecoder that reports its errors to the given callback."""


@dataclass
class ReaderStats:
    """Counters of one reader thread (read them from any thread; they only grow).

    Every message or connection dropped anywhere is counted here: ``auth_failures``,
    ``framing_errors``, ``payload_errors`` (by type in ``errors_by_type``), ``records_rejected``
    (session records whose tag failed: forged, replayed, reordered, spliced),
    ``handshake_failures`` (missing or wrong key), ``records_truncated`` (a session ended
    inside a record; its Task reports the messages), ``messages_refused`` (messages of
    authentic records that could not be decoded; their Task is told), ``unproven_closed``
    (connections closed before proving themselves: at the limit, or after
    ``handshake_timeout``), ``idle_closed`` (LUTE connections stalled mid-frame). Not losses:
    ``foreign_payloads`` (payloads that were not Messages: ``read()``/``read_many()`` gave each
    as ``Message(contents=payload)``),
    ``accept_pauses`` (times the reader stopped accepting because every open connection was
    proven and the limit was reached), ``accept_failures`` (ZeroMQ: looks, every 0.2 s, that
    found the Executor out of descriptors: new connections waited in the listen backlog), ``salvaged`` (frames
    recovered at end of stream and delivered), ``backpressure_waits``. ``bytes_received_into``
    (raw sockets): the part of ``bytes_received`` received straight into the final buffer of a
    large frame or record, with no copy.
    """

    messages: int = 0
    bytes_received: int = 0
    bytes_received_into: int = 0
    connections_accepted: int = 0
    connections_closed: int = 0
    idle_closed: int = 0
    unproven_closed: int = 0
    accept_pauses: int = 0
    accept_failures: int = 0
    auth_failures: int = 0
    handshake_failures: int = 0
    framing_errors: int = 0
    payload_errors: int = 0
    internal_errors: int = 0
    backpressure_waits: int = 0
    sessions: int = 0
    records: int = 0
    records_rejected: int = 0
    records_truncated: int = 0
    messages_refused: int = 0
    acks_sent: int = 0
    salvaged: int = 0
    foreign_payloads: int = 0
    errors_by_type: Dict[str, int] = field(default_factory=dict)


def _count_error(stats: ReaderStats, error: ProtocolError) -> None:
    kind = type(error).__name__
    stats.errors_by_type[kind] = stats.errors_by_type.get(kind, 0) + 1
    if isinstance(error, AuthenticationError):
        stats.auth_failures += 1
    elif isinstance(error, PayloadError):
        stats.payload_errors += 1
    else:
        stats.framing_errors += 1


class _ReaderThread:
    """Thread plumbing shared by both readers: start, stop via a wake-up pipe, never crash."""

    def __init__(self, queue: MessageQueue, name: str) -> None:
        self.queue = queue
        self.stats = ReaderStats()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._idle = threading.Condition()
        self._idle_checks = 0  # checks that found the reader idle (see wait_until_idle)
        self._idle_waiters = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish, wait for it, release the wake-up pipe. Idempotent."""
        self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - would need a wedged syscall
                logger.error("reader thread %s did not stop within %.1f s", self._thread.name, timeout)
                return
        with self._idle:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _should_stop(self) -> bool:
        return self._stopping

    def wait_until_idle(self, timeout: float) -> bool:
        """Block until a check of the reader thread, made after this call, finds it idle: no
        connection open or waiting to be accepted and nothing received that is not in the queue
        (what a Task sent before it exited has been read, or counted if bad); or until
        ``timeout`` seconds passed, or the thread stopped. True if it was found idle."""
        deadline = time.monotonic() + timeout
        with self._idle:
            seen = self._idle_checks
            self._idle_waiters += 1
        try:
            while True:
                self._wake()  # a check runs after the next step, now
                with self._idle:
                    if self._idle_checks != seen:
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stopping or not self._thread.is_alive():
                        return False
                    self._idle.wait(min(remaining, 0.05))
        finally:
            with self._idle:
                self._idle_waiters -= 1

    def _busy(self) -> bool:
        """Whether a connection is open, waits to be accepted, or holds octets not yet read or
        messages not yet queued (run in the thread, after a step; see :meth:`wait_until_idle`)."""
        raise NotImplementedError

    def _check_idle(self) -> None:
        if not self._busy():
            with self._idle:
                self._idle_checks += 1
                self._idle.notify_all()

    def _wake(self) -> None:
        with self._idle:  # (stop() closes the pipe under this lock: never a write to a reused descriptor)
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"x")
                except OSError:  # full: a wake-up is pending anyway
                    pass

    def _deliver(self, messages: List[Any]) -> None:
        self.stats.messages += len(messages)
        if len(self.queue) >= self.queue.maxsize:
            self.stats.backpressure_waits += 1
        self.queue.put_many(messages, self._should_stop)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _run(self) -> None:
        try:
            self._setup()
            while not self._stopping:
                try:
                    self._step()
                    if self._idle_waiters and not self._stopping:
                        self._check_idle()
                except Exception:  # the reader thread must survive anything
                    self.stats.internal_errors += 1
                    logger.exception("%s: unexpected error in the reader thread (it keeps serving)",
                                     self._thread.name)
                    time.sleep(0.01)
        finally:
            try:
                self._teardown()
            except Exception:
                logger.exception("%s: error while closing reader resources", self._thread.name)

    def _setup(self) -> None:
        """Prepare polling (runs in the thread)."""

    def _step(self) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        """Release what the thread owns (runs in the thread)."""
