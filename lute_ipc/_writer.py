"""Task-side sending: frame a message and push the bytes down one connection.

:class:`FrameWriter` is the one place that frames and sends (a later send buffer with a
latency bound and ``sendmsg`` scatter-gather slots in here). It is thread-safe and sits
on a *link*: :class:`StreamLink` (raw Unix/TCP socket, reconnected on demand) or
:class:`ZmqLink` (ZeroMQ PUSH with a bounded linger, so closing never hangs).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any, Callable, Optional

from .errors import CommunicatorClosed, TransportError
from .framing import encode_frame
from .message import Message

__all__ = ["FrameWriter", "StreamLink", "ZmqLink"]

_PEER_CHECK_AFTER = 0.01
"""Seconds of send inactivity after which a raw link checks whether the Executor closed it."""

_RESET_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class StreamLink:
    """One raw stream connection to the Executor, opened by ``connect()`` and reopened on demand.

    Before a send that follows a pause, the link checks (without blocking) whether the
    Executor closed the connection (e.g. evicted it as idle) and reconnects first, so a
    message is not written into a connection that is already gone.
    """

    def __init__(self, connect: Callable[[], socket.socket]) -> None:
        self._connect = connect
        self._sock: Optional[socket.socket] = None
        self._last_send = 0.0
        self.reconnects = 0

    def open(self) -> None:
        """Connect now (raises TransportError with the reason when the Executor is unreachable)."""
        if self._sock is None:
            self._sock = self._connect()
            self._last_send = time.monotonic()

    def send(self, data: bytes) -> None:
        """Send all of ``data``; on a connection closed by the peer reconnect once and resend."""
        sock = self._sock
        now = time.monotonic()
        if sock is None or (now - self._last_send > _PEER_CHECK_AFTER and _peer_closed(sock)):
            sock = self._reopen()
        try:
            sock.sendall(data)
        except _RESET_ERRORS:
            sock = self._reopen()
            try:
                sock.sendall(data)
            except OSError as exc:
                raise TransportError(f"sending to the Executor failed after reconnecting: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"sending to the Executor failed: {exc}") from exc
        self._last_send = time.monotonic()

    def _reopen(self) -> socket.socket:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.reconnects += 1
        self._sock = self._connect()
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _peer_closed(sock: socket.socket) -> bool:
    """True when the Executor closed its end (it never sends, so readable means EOF/reset)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as exc:
        return exc.errno != errno.EAGAIN


class ZmqLink:
    """A ZeroMQ PUSH socket with its own context.

    Args:
        context: the ``zmq.Context`` (terminated by :meth:`close`).
        zsocket: the connected PUSH socket.
        linger: seconds ``close()`` may wait to deliver queued messages before dropping them.
    """

    def __init__(self, context: Any, zsocket: Any, linger: float) -> None:
        self._context = context
        self._zsocket = zsocket
        self._linger_ms = max(0, int(linger * 1000))

    def open(self) -> None:
        """ZeroMQ connects in the background: nothing to do."""

    def send(self, data: bytes) -> None:
        import zmq

        try:
            self._zsocket.send(data, copy=len(data) < 65536)
        except zmq.ZMQError as exc:
            raise TransportError(f"sending to the Executor over ZeroMQ failed: {exc}") from exc

    def close(self) -> None:
        if self._zsocket is not None:
            self._zsocket.close(linger=self._linger_ms)
            self._zsocket = None
        if self._context is not None:
            self._context.term()
            self._context = None


class FrameWriter:
    """Frames each message (signed when a key is given) and sends it; safe to call from many threads."""

    def __init__(self, link: Any, key: Optional[bytes]) -> None:
        self._link = link
        self._key = key
        self._lock = threading.Lock()
        self._closed = False
        self.frames_sent = 0

    def open(self) -> None:
        with self._lock:
            self._link.open()

    def write(self, msg: Message) -> None:
        frame = encode_frame(msg, key=self._key)
        with self._lock:
            if self._closed:
                raise CommunicatorClosed("this SocketCommunicator was closed")
            self._link.send(frame)
            self.frames_sent += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._link.close()
