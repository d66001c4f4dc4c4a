"""Executor-side background readers: bytes from sockets -> frame decoder -> message queue.

* :class:`StreamReader` serves a listening raw socket (Unix or TCP) and **all** its open
  connections at once with :mod:`selectors`, one :class:`~lute_ipc.framing.FrameDecoder`
  per connection, so a persistent connection streams (messages are queued as soon as
  their frame is complete) and connection-per-message writers are served too.
* :class:`ZmqReader` serves a ZeroMQ PULL socket; every ZeroMQ message holds one or more
  whole frames.

Both run one daemon thread, never die of an exception (each is caught, counted in
:class:`ReaderStats` and logged), stop promptly through a wake-up pipe and apply
backpressure: while the queue is full they stop reading, so senders block; nothing is
dropped. Resource limits of :class:`StreamReader`: at most ``max_connections`` open
connections (the one idle the longest is closed to admit a new one), and a connection
holding an incomplete frame that receives no byte for ``idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ._queue import MessageQueue
from .errors import AuthenticationError, FrameTooLarge, PayloadError, ProtocolError

__all__ = ["ReaderStats", "StreamReader", "ZmqReader", "DecoderFactory"]

logger = logging.getLogger(__name__)

DecoderFactory = Callable[[Callable[[ProtocolError], None]], Any]
"""Makes a FrameDecoder that reports its errors to the given callback."""

_WAKE = object()
_LISTENER = object()
_RECV_SIZE = 256 * 1024
_ZMQ_BATCH = 1024


@dataclass
class ReaderStats:
    """Counters of one reader thread (read them from any thread; they only grow)."""

    messages: int = 0
    bytes_received: int = 0
    connections_accepted: int = 0
    connections_closed: int = 0
    connections_evicted: int = 0
    idle_closed: int = 0
    auth_failures: int = 0
    framing_errors: int = 0
    payload_errors: int = 0
    internal_errors: int = 0
    backpressure_waits: int = 0
    errors_by_type: Dict[str, int] = field(default_factory=dict)


class _Connection:
    __slots__ = ("sock", "serial", "decoder", "accepted", "last_activity", "name", "close_reason", "logged",
                 "registered")

    def __init__(self, sock: socket.socket, serial: int, address: Any, now: float) -> None:
        self.sock = sock
        self.serial = serial
        self.name = f"connection #{serial}" + (f" from {address}" if address else "")
        self.accepted = now
        self.registered = False
        self.decoder: Any = None
        self.last_activity = now
        self.close_reason: Optional[str] = None
        self.logged: set = set()


def _serial_of(conn: _Connection) -> int:
    return conn.serial


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

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish, wait for it, release the wake-up pipe. Idempotent."""
        self._stopping = True
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - would need a wedged syscall
                logger.error("reader thread %s did not stop within %.1f s", self._thread.name, timeout)
                return
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _should_stop(self) -> bool:
        return self._stopping

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


class StreamReader(_ReaderThread):
    """Reads framed messages from every connection of a listening stream socket.

    Args:
        listener: a bound, listening socket (it stays owned by the caller).
        queue: where decoded messages go.
        make_decoder: builds one decoder per connection, given its error callback.
        max_connections: open connections allowed at once; when a new one arrives at the
            limit, the connection idle the longest is closed (and counted as evicted).
        idle_timeout: seconds without a byte after which a connection holding an
            incomplete frame is closed.
        name: thread name (for logs).
    """

    def __init__(
        self,
        listener: socket.socket,
        queue: MessageQueue,
        make_decoder: DecoderFactory,
        *,
        max_connections: int = 1024,
        idle_timeout: float = 60.0,
        name: str = "lute-ipc-reader",
    ) -> None:
        super().__init__(queue, name)
        self._listener = listener
        self._make_decoder = make_decoder
        self.max_connections = max(1, int(max_connections))
        self.idle_timeout = float(idle_timeout)
        self._tick = max(0.005, min(0.25, self.idle_timeout / 4))
        self._next_sweep = 0.0
        self._selector: Optional[selectors.BaseSelector] = None
        self._connections: Dict[int, _Connection] = {}
        self._connections_by_serial: Dict[int, _Connection] = {}
        # Connections that have sent nothing yet, oldest first (serial -> connection).
        self._fresh: Dict[int, _Connection] = {}
        self._buffer = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._serial = 0
        self._evict_logged = False

    @property
    def open_connections(self) -> int:
        """Connections currently open."""
        return len(self._connections)

    # ------------------------------------------------------------------ thread
    def _setup(self) -> None:
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)

    def _step(self) -> None:
        assert self._selector is not None
        ready: List[_Connection] = []
        for key, _ in self._selector.select(self._tick):
            data = key.data
            if data is _LISTENER:
                ready.extend(self._accept())
            elif data is _WAKE:
                self._drain_wake()
            else:
                ready.append(data)
        if len(ready) > 1:
            ready.sort(key=_serial_of)
        for conn in ready:
            if self._stopping:
                return
            if self._fresh and conn.serial > next(iter(self._fresh)):
                self._catch_up(conn.serial)
            if conn.serial in self._connections_by_serial:
                self._receive(conn)
            if not conn.registered and conn.serial in self._connections_by_serial:
                # still open after reading what it sent: watch it from now on
                self._selector.register(conn.sock, selectors.EVENT_READ, conn)
                conn.registered = True
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self._tick
            self._close_idle(now)

    def _teardown(self) -> None:
        for conn in list(self._connections.values()):
            self._close(conn, None)
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    # ------------------------------------------------------------------ connections
    def _catch_up(self, serial: int) -> None:
        """Read connections accepted before ``serial`` that have not sent anything yet.

        Keeps LUTE's one-connection-per-message writers in order: a connection accepted
        before its bytes arrived is read before any younger connection. Only connections
        younger than one second count, so idle connections cost nothing here.
        """
        horizon = time.monotonic() - 1.0
        for older in list(self._fresh.values()):
            if older.serial >= serial:
                break
            if older.accepted < horizon:
                self._fresh.pop(older.serial, None)
                continue
            self._receive(older)

    def _accept(self) -> List[_Connection]:
        accepted: List[_Connection] = []
        for _ in range(64):  # bounded so one burst cannot starve open connections
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError as exc:  # EMFILE, ECONNABORTED...: free a descriptor, retry on next readiness
                self.stats.internal_errors += 1
                logger.warning("accept() failed: %s", exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._connections:
                    self._evict(time.monotonic())
                else:
                    time.sleep(0.01)
                return accepted
            now = time.monotonic()
            if len(self._connections) >= self.max_connections:
                self._evict(now)
            sock.setblocking(False)
            self._serial += 1
            conn = _Connection(sock, self._serial, address, now)
            conn.decoder = self._make_decoder(self._error_callback(conn))
            self._connections[sock.fileno()] = conn
            self._connections_by_serial[conn.serial] = conn
            self._fresh[conn.serial] = conn
            self.stats.connections_accepted += 1
            # Read at once what is already there; a connection-per-message writer has often
            # sent and closed already, so it is served without ever entering the selector.
            accepted.append(conn)
        return accepted

    def _evict(self, now: float) -> None:
        victim = min(self._connections.values(), key=lambda c: c.last_activity)
        self.stats.connections_evicted += 1
        if not self._evict_logged:
            self._evict_logged = True
            logger.warning("more than max_connections=%d connections are open: closing the one idle "
                           "the longest (%s, idle %.1f s); later evictions are only counted",
                           self.max_connections, victim.name, now - victim.last_activity)
        self._close(victim, None)

    def _error_callback(self, conn: _Connection) -> Callable[[ProtocolError], None]:
        stats = self.stats

        def on_error(error: ProtocolError) -> None:
            _count_error(stats, error)
            kind = type(error).__name__
            if isinstance(error, (AuthenticationError, FrameTooLarge)) and conn.close_reason is None:
                conn.close_reason = f"{kind}: {error}"
            if kind not in conn.logged:
                conn.logged.add(kind)
                logger.warning("%s: rejected data (%s: %s)%s", conn.name, kind, error,
                               "; closing the connection" if conn.close_reason else
                               "; later errors of this kind on it are only counted")

        return on_error

    def _receive(self, conn: _Connection) -> None:
        self._receive_once(conn)
        if not conn.registered and conn.serial in self._connections_by_serial:
            self._receive_once(conn)  # a new connection: its EOF may be there already

    def _receive_once(self, conn: _Connection) -> None:
        try:
            size = conn.sock.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # reset by peer...
            conn.decoder.feed_eof()
            self._close(conn, f"receive failed: {exc}")
            return
        if size == 0:
            conn.decoder.feed_eof()
            self._close(conn, None)
            return
        conn.last_activity = time.monotonic()
        if self._fresh:
            self._fresh.pop(conn.serial, None)
        self.stats.bytes_received += size
        messages = conn.decoder.feed(self._view[:size])
        if messages:
            self._deliver(messages)
        if conn.close_reason is not None:
            self._close(conn, None)  # the reason was logged when it was found

    def _close_idle(self, now: float) -> None:
        limit = self.idle_timeout
        for conn in list(self._connections.values()):
            if conn.decoder.buffered and now - conn.last_activity > limit:
                self.stats.idle_closed += 1
                self._close(conn, f"incomplete frame ({conn.decoder.buffered} bytes buffered) and no data "
                                  f"for {now - conn.last_activity:.1f} s (idle_timeout={limit:g} s)")

    def _close(self, conn: _Connection, reason: Optional[str]) -> None:
        fd = conn.sock.fileno()
        if self._connections.pop(fd, None) is None:
            return
        self._connections_by_serial.pop(conn.serial, None)
        self._fresh.pop(conn.serial, None)
        if conn.registered:
            conn.registered = False
            try:
                self._selector.unregister(conn.sock)  # type: ignore[union-attr]
            except (KeyError, ValueError):
                pass
        conn.sock.close()
        self.stats.connections_closed += 1
        if reason:
            logger.warning("%s closed: %s", conn.name, reason)


class ZmqReader(_ReaderThread):
    """Reads framed messages from a ZeroMQ PULL socket (owned by the caller, used only here).

    Frames never span ZeroMQ messages; one message may hold several frames. A ZeroMQ
    message that ends inside a frame is a framing error (``TruncatedFrame``). The padding
    message a closing Task sends last (it starts with :attr:`END_PADDING_MARK`, never a frame
    head; see ``lute_ipc._writer.ZmqLink.close``) is skipped.

    Backpressure: while the queue is full the thread waits in ``_deliver`` and reads nothing;
    libzmq then holds at most the socket's ``RCVHWM`` ZeroMQ messages per connection and stops
    reading the connections, so the Tasks wait at their own high-water mark.
    """

    END_PADDING_MARK = b"LUTE-IPC-END;;;"

    def __init__(self, zsocket: Any, queue: MessageQueue, make_decoder: DecoderFactory,
                 *, name: str = "lute-ipc-zmq-reader") -> None:
        super().__init__(queue, name)
        self._zsocket = zsocket
        self._logged: set = set()
        self._decoder = make_decoder(self._on_error)
        self._poller: Any = None

    def _on_error(self, error: ProtocolError) -> None:
        _count_error(self.stats, error)
        kind = type(error).__name__
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning("rejected data on the ZeroMQ socket (%s: %s); later errors of this kind "
                           "are only counted", kind, error)

    def _setup(self) -> None:
        import zmq

        self._zmq = zmq
        self._poller = zmq.Poller()
        self._poller.register(self._zsocket, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)

    def _step(self) -> None:
        zmq = self._zmq
        events = dict(self._poller.poll(250))
        if self._wake_r in events:
            self._drain_wake()
        if self._zsocket not in events:
            return
        decoder = self._decoder
        batch: List[Any] = []
        recv = self._zsocket.recv
        for _ in range(4096):
            try:
                data = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if data.startswith(self.END_PADDING_MARK):
                continue
            self.stats.bytes_received += len(data)
            messages = decoder.feed(data)
            decoder.feed_eof()
            if messages:
                batch.extend(messages)
                if len(batch) >= _ZMQ_BATCH:  # a ZeroMQ message may hold hundreds of frames:
                    self._deliver(batch)      # hand them over often, so the queue bound holds
                    batch = []
                    if self._stopping:
                        return
        if batch:
            self._deliver(batch)
