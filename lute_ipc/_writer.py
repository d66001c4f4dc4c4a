"""Task-side sending: frame messages into a send buffer and push it down one connection.

:class:`FrameWriter` batches: ``write()`` pickles and frames a message straight into a
send buffer (:func:`~lute_ipc.framing.append_frame`); the buffer goes out in one system
call (raw sockets) or one ZeroMQ message when

* it holds ``flush_size`` bytes or more;
* ``flush_interval`` seconds passed since its oldest message was written (a flusher
  thread enforces this bound while the Task is idle; ``flush_interval=0`` writes through);
* it holds the first message after the Task was quiet (no ``write()``) for at least
  ``flush_interval``: a lone message goes out at once instead of waiting for the bound,
  and only the messages that follow it closely are batched;
* a message with a signal other than ``TASK_LOG`` is written (``TASK_RESULT``,
  ``TASK_DONE``...: the Executor acts on those at once);
* :meth:`FrameWriter.flush` or :meth:`FrameWriter.close` is called, or the interpreter
  exits normally (an ``atexit`` hook flushes every open writer of the process).

A message holding a large buffer (``bytes``, ``bytearray``, numpy array, see
:mod:`lute_ipc._oob`) is sent at once, before ``write()`` returns, with scatter-gather
I/O: head, pickle pieces, the buffers themselves and the trailer go out in one
``sendmsg`` without being concatenated (ZeroMQ: the pieces are joined and libzmq copies
the message: a frame must not span ZeroMQ messages, and a zero-copy ZeroMQ send can be
read by libzmq after pyzmq released the buffer at interpreter exit, which crashed Tasks
with "Bad address" and sent corrupt frames).

Loss: nothing written before ``flush()`` returns or before a clean ``close()``/exit is
lost. A Task killed by SIGKILL (or ``os._exit``) loses what is still in the buffer: at
most ``flush_interval`` seconds / ``flush_size`` bytes of ``TASK_LOG``/signal-less messages.

Links: :class:`StreamLink` (raw Unix/TCP socket, reconnected on demand) or
:class:`ZmqLink` (ZeroMQ PUSH on a context of its own; closing it, or interpreter exit
after the writers flushed, waits at most ``linger`` for delivery).
"""

from __future__ import annotations

import atexit
import heapq
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import sys
import termios
import threading
import time
import weakref
from typing import Any, Callable, List, Optional

from . import _oob, codec
from .codec import dumps
from .errors import CommunicatorClosed, TransportError
from .framing import AUTH_TRAILER, PLAIN_TRAILER, append_frame, frame_head, message_pieces
from .message import Message

__all__ = ["FrameWriter", "StreamLink", "ZmqLink", "DEFAULT_FLUSH_INTERVAL",
           "DEFAULT_FLUSH_SIZE", "DEFAULT_SEND_TIMEOUT", "DEFAULT_ZMQ_SNDHWM"]

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL = 0.001
"""Seconds a written message may wait in the send buffer (the latency bound)."""
DEFAULT_FLUSH_SIZE = 64 * 1024
"""Send-buffer bytes that trigger a send."""

_PEER_CHECK_AFTER = 0.01
"""Seconds of send inactivity after which a raw link checks whether the Executor closed it."""

_RESET_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_BATCHED_SIGNALS = frozenset({None, "TASK_LOG"})
_IOV_MAX = 512
_LARGE = _oob.LARGE_BUFFER
"""Messages holding a buffer this large are sent at once, scatter-gather (no copy into the send buffer)."""
_OUT_OF_BAND = 512 * 1024
"""From this buffer size on, the buffer is not even copied into the pickle (protocol-5 re-inlining)."""
_NEVER_LARGE = frozenset({str, int, float, bool, type(None)})
_monotonic = time.monotonic


# ---------------------------------------------------------------------- links
DEFAULT_SEND_TIMEOUT = 10.0
"""Seconds the Executor's host may acknowledge nothing a TCP Task sent (while data or a window
probe waits for an answer) before the link is declared dead and ``write()`` raises
TransportError. A live Executor that only reads slowly keeps acknowledging: it never times out."""
DEFAULT_ZMQ_SNDHWM = 64
"""ZeroMQ messages (each a batch of one or more frames) a Task queues before ``write()``
waits for the Executor (backpressure)."""

_STALL_CHECK = 1.0
"""Seconds between two looks at a TCP connection's acknowledgements (while sending, or
while a send waits for room)."""
_ZMQ_EVENTS_AFTER = 0.01
"""Seconds between two reads of a healthy ZeroMQ link's connection events (done on send)."""
_ZMQ_WAIT_MS = 250
"""Milliseconds a ZeroMQ send at the high-water mark waits before it looks at the link again."""
_LINGER_SLACK = 0.02
"""A ZeroMQ close that took ``linger`` minus this long ran out of linger (libzmq's timers are
about 1 ms precise)."""
_END_PADDING_SIZE = 16 * 1024
"""Size of the padding ZeroMQ message a closing link sends last: at least twice libzmq's
output batch (8 KiB), see :meth:`ZmqLink.close`."""
_CONSUMED_POLL = (0.0002, 0.005)
"""First and longest pause between two looks at a closing connection's unread bytes (doubling)."""
_OUTQ = getattr(termios, "TIOCOUTQ", None) if sys.platform.startswith("linux") else None
"""``SIOCOUTQ``: on a Unix stream socket, what it sent that the peer has not read yet."""
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCP_INFO_HEAD = struct.Struct("8B13I")
"""The start of Linux's ``struct tcp_info``, up to ``tcpi_last_ack_recv``: field 2 is
``tcpi_retransmits``, 3 ``tcpi_probes``, 20 ``tcpi_last_ack_recv`` (ms)."""


class _AckWatch:
    """Tells a dead network path from a slow Executor, from the kernel's view of a TCP connection.

    A live Executor acknowledges what arrives and, while its receive window is closed (it
    reads slowly: backpressure), answers the window probes, however long that lasts: the
    kernel's unanswered-retransmission and unanswered-probe counters stay at 0. When the path
    is cut or the host is down nothing is answered: a counter stays above 0 and the last
    acknowledgement ages. :meth:`sample` reports the connection dead once two or more
    samples in a row found something unanswered and nothing was acknowledged for
    ``timeout`` seconds.

    Linux only (``TCP_INFO``). ``TCP_USER_TIMEOUT`` (ZeroMQ's ``TCP_MAXRT``) cannot make this
    distinction: Linux also applies it to a closed window, so a consumer slower than the
    timeout would get its Tasks' connections aborted with messages in them (measured: a live
    receiver that stopped reading for 1.5 s, ``TCP_USER_TIMEOUT`` of 1 s: ETIMEDOUT). ZeroMQ
    heartbeats have the same flaw: a PULL socket at its high-water mark stops reading, the
    heartbeats go unanswered and libzmq drops the connection and the messages in it
    (measured: 179 of 2,000 lost after a 5 s pause of the consumer).
    """

    __slots__ = ("timeout", "due_at", "stalled_for", "_unanswered_since")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.due_at = 0.0
        """``time.monotonic()`` from which the next periodic sample is due."""
        self.stalled_for = 0.0
        """Verdict of the last sample: seconds without an answer when that is ``timeout`` or more, else 0."""
        self._unanswered_since: Optional[float] = None

    def sample(self, sock: socket.socket, now: float) -> float:
        """Look at ``sock`` now; return :attr:`stalled_for` (non-zero: the peer is unreachable)."""
        self.due_at = now + _STALL_CHECK
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_HEAD.size)  # type: ignore[arg-type]
        except OSError:
            return self.stalled_for
        if len(info) < _TCP_INFO_HEAD.size:
            return self.stalled_for
        fields = _TCP_INFO_HEAD.unpack_from(info)
        if not (fields[2] or fields[3]):  # no retransmission or window probe waits for an answer
            self._unanswered_since = None
            self.stalled_for = 0.0
        elif self._unanswered_since is None:  # one sample is not enough: an answer may be on its way
            self._unanswered_since = now
        else:
            stalled = min(fields[20] / 1000.0, now - self._unanswered_since + _STALL_CHECK)
            self.stalled_for = stalled if stalled >= self.timeout else 0.0
        return self.stalled_for


def _watch_for(sock: socket.socket, send_timeout: float) -> Optional[_AckWatch]:
    """An :class:`_AckWatch` for a TCP socket when ``send_timeout`` is on and the kernel reports TCP_INFO."""
    if send_timeout > 0 and _TCP_INFO is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        return _AckWatch(send_timeout)
    return None


def _unreachable(peer: str, stalled: float, send_timeout: float) -> str:
    return (f"the Executor's host {peer} has acknowledged nothing for {stalled:.0f} s "
            f"(send_timeout={send_timeout:g} s): the network path to it or the host is down")


class StreamLink:
    """One raw stream connection to the Executor, opened by ``connect()`` and reopened on demand.

    Before a send that follows a pause, the link checks (without blocking) whether the
    Executor closed the connection (e.g. evicted it as idle) and reconnects first, so a
    message is not written into a connection that is already gone.

    Sends never block in the kernel: while the socket buffer is full (the Executor reads
    slowly) the link waits for room, as long as it takes (backpressure). On TCP (Linux) it
    also watches, at most once a second, whether the Executor's host still acknowledges what
    was sent (:class:`_AckWatch`); after ``send_timeout`` seconds without any answer,
    :meth:`send` aborts the connection and raises :class:`~lute_ipc.errors.TransportError`
    (what was in flight on it is lost). The send after that raises it again instead of
    reconnecting (the error may have gone to the writer's flusher thread, which only logs
    it; a reconnect would first wait ``connect_timeout`` on a dead path); later sends reconnect.

    Args:
        connect: opens a new connection (raises TransportError with the reason).
        send_timeout: TCP: seconds the Executor's host may acknowledge nothing while data
            waits; 0 waits as long as TCP does (``tcp_retries2``, about 15 minutes).
    """

    def __init__(self, connect: Callable[[], socket.socket], *, send_timeout: float = 0.0) -> None:
        self._connect = connect
        self._sock: Optional[socket.socket] = None
        self._last_send = 0.0
        self._send_timeout = max(0.0, float(send_timeout))
        self._watch: Optional[_AckWatch] = None
        self._unreachable: Optional[str] = None  # why the last connection was aborted, told once more
        self.reconnects = 0

    def open(self) -> None:
        """Connect now (raises TransportError with the reason when the Executor is unreachable)."""
        if self._sock is None:
            self._attach(self._connect())

    def send(self, pieces: List[Any]) -> None:
        """Send all ``pieces`` (buffers, in order) with gathered writes; on a connection
        closed by the peer reconnect once and resend. Raises TransportError when sending
        fails or (TCP) the Executor's host stopped answering for ``send_timeout`` seconds."""
        if self._unreachable is not None:
            reason, self._unreachable = self._unreachable, None
            raise TransportError(reason + "; this message was not sent either")
        sock = self._sock
        now = time.monotonic()
        if sock is None or (now - self._last_send > _PEER_CHECK_AFTER and _peer_closed(sock)):
            sock = self._reopen()
        watch = self._watch
        if watch is not None and now >= watch.due_at:
            self._check_answers()
        try:
            _send_all(sock, pieces, None if watch is None else self._check_answers)
        except TransportError:
            raise
        except _RESET_ERRORS:
            sock = self._reopen()
            try:
                _send_all(sock, pieces, None if self._watch is None else self._check_answers)
            except TransportError:
                raise
            except OSError as exc:
                raise TransportError(f"sending to the Executor failed after reconnecting: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"sending to the Executor failed: {exc}") from exc
        self._last_send = time.monotonic()

    def _check_answers(self) -> None:
        """Raise TransportError (and drop the connection) when the Executor's host stopped answering."""
        sock, watch = self._sock, self._watch
        if sock is None or watch is None:
            return
        stalled = watch.sample(sock, time.monotonic())
        if stalled:
            reason = _unreachable(_peer_name(sock), stalled, self._send_timeout)
            self._abort()
            self._unreachable = reason
            raise TransportError(reason + "; what was in flight on this connection is lost")

    def _attach(self, sock: socket.socket) -> socket.socket:
        self._sock = sock
        self._last_send = time.monotonic()
        self._watch = _watch_for(sock, self._send_timeout)
        return sock

    def _abort(self) -> None:
        """Close the connection at once (a reset: the kernel stops retrying what it still holds)."""
        sock, self._sock, self._watch = self._sock, None, None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            sock.close()

    def _reopen(self) -> socket.socket:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.reconnects += 1
        return self._attach(self._connect())

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _peer_name(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "(address unknown)"
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _send_all(sock: socket.socket, pieces: List[Any], stalled: Optional[Callable[[], None]] = None) -> None:
    """Send every byte of ``pieces``, in order, with gathered writes (``sendmsg``).

    While the socket buffer is full the function waits for room, as long as it takes. Without
    ``stalled`` it waits in the kernel (a blocking send: one system call however often the
    buffer fills and drains). With ``stalled`` writes never block in the kernel: it waits in
    ``poll`` and calls ``stalled`` after every ``_STALL_CHECK`` seconds without room (it
    raises to give up).
    """
    flags = 0 if stalled is None else _DONTWAIT
    if len(pieces) == 1 and type(pieces[0]) in (bytes, bytearray):
        data = pieces[0]
        try:
            sent = sock.send(data, flags)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        views = [memoryview(data)[sent:]]
    else:
        views = [memoryview(p).cast("B") for p in pieces]
    views = [v for v in views if v.nbytes]
    poller: Any = None
    while views:
        try:
            sent = sock.sendmsg(views[:_IOV_MAX], (), flags)
        except BlockingIOError:
            sent = 0
        if not sent:  # no room: wait for the Executor to read
            if poller is None:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLOUT)
            if not poller.poll(None if stalled is None else _STALL_CHECK * 1000) and stalled is not None:
                stalled()
            continue
        while sent:
            size = views[0].nbytes
            if sent >= size:
                sent -= size
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def _peer_closed(sock: socket.socket) -> bool:
    """True when the Executor closed its end (it never sends, so readable means EOF/reset)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as exc:
        return exc.errno != errno.EAGAIN


class ZmqLink:
    """A ZeroMQ PUSH socket connected to ``address``, on a context of its own.

    Args:
        address: ZeroMQ endpoint (``ipc://...`` or ``tcp://host:port``).
        linger: seconds queued messages may still be delivered after :meth:`close`
            (ZeroMQ delivers them in the background; the process waits at most this long
            at exit).
        hwm: send high-water mark: ZeroMQ messages (batches of frames) queued before
            :meth:`send` waits for the Executor (backpressure).
        send_timeout: TCP: seconds the Executor's host may acknowledge nothing while data
            waits before :meth:`send` raises TransportError (0: no such check).
        connect_timeout: seconds the link may stay without a first connection (ZeroMQ
            connects in the background and queues meanwhile) before :meth:`send` raises
            TransportError.
        via: how the address is reached, for error messages (e.g. "through the ssh tunnel to X").

    ZeroMQ reconnects by itself and queues while it is disconnected, which used to make a
    Task whose Executor had died write on, and exit 0, into nothing. So the link follows the
    socket's connection events (a ZeroMQ socket monitor, read on send at most every 10 ms, no
    thread): once the Executor dropped the connection, or when no connection came up within
    ``connect_timeout``, :meth:`send` raises :class:`~lute_ipc.errors.TransportError`
    (queueing nothing) until the connection is (back) up. On TCP (Linux) it also watches
    whether the Executor's host still acknowledges what is sent (:class:`_AckWatch`). A send
    at the high-water mark waits for room (backpressure), looking at the link every 250 ms,
    so a Task blocked there gets the error too.

    :meth:`close` terminates the context, which waits at most ``linger`` for queued
    messages to be delivered; when that runs out (messages were dropped) it raises
    TransportError. At interpreter exit every writer is flushed and closed.
    """

    def __init__(self, address: str, linger: float, hwm: int = DEFAULT_ZMQ_SNDHWM, *,
                 send_timeout: float = 0.0, connect_timeout: float = 10.0, via: str = "") -> None:
        self._address = address
        self._linger = max(0.0, float(linger))
        self._linger_ms = int(self._linger * 1000)
        self._hwm = hwm
        self._send_timeout = max(0.0, float(send_timeout))
        self._connect_timeout = max(0.0, float(connect_timeout))
        self._where = f"{address} ({via})" if via else address
        self._port = _tcp_port(address) if self._send_timeout and _TCP_INFO is not None else None
        self._zmq: Any = None
        self._zsocket: Any = None
        self._monitor: Any = None
        self._context: Any = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._connected: Optional[bool] = None  # None: not connected yet since open()
        self._changed_at = time.monotonic()  # when _connected last changed (or open() ran)
        self._fd = -1  # the connection's descriptor (libzmq's; only inspected, for TCP_INFO)
        self._next_check = 0.0
        self._watch: Optional[_AckWatch] = None if self._port is None else _AckWatch(self._send_timeout)
        self.sent = 0
        """ZeroMQ messages handed to libzmq since the link was opened."""

    def open(self) -> None:
        """Create and connect the socket (ZeroMQ connects in the background)."""
        if self._zsocket is not None:
            return
        # A private context: close() terminates it, which is what waits (at most ``linger``)
        # until queued messages are delivered. On a shared context close() returned at once
        # and a Task that then ended with os._exit (a forked child) lost what was queued.
        import zmq

        self._zmq = zmq
        context = self._context = self._context or zmq.Context()
        self._reset_state()
        self._zsocket = self._connect(context)

    def _connect(self, context: Any) -> Any:
        zmq = self._zmq
        zsock = context.socket(zmq.PUSH)
        zsock.setsockopt(zmq.SNDHWM, self._hwm)
        zsock.setsockopt(zmq.LINGER, self._linger_ms)
        # Before connect(), so that no connection event is missed.
        self._monitor = zsock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        try:
            zsock.connect(self._address)
        except zmq.ZMQError as exc:
            self._close_sockets(zsock, 0)
            raise TransportError(f"cannot connect a ZeroMQ PUSH socket to {self._where}: {exc}") from exc
        return zsock

    def send(self, pieces: List[Any]) -> None:
        """Send ``pieces`` as one ZeroMQ message (frames never span ZeroMQ messages).

        Raises TransportError, queueing nothing, while the Executor is known to be gone.
        """
        if self._zsocket is None:
            self.open()
        now = time.monotonic()
        if now >= self._next_check:
            self._check(now)
        zmq = self._zmq
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        try:
            # Always let libzmq copy: with copy=False, pyzmq may release the buffer (its
            # garbage-collector thread stops when the context ends at exit) while libzmq's I/O
            # thread still sends from it: crashes ("Bad address") and corrupt frames.
            self._zsocket.send(data, zmq.NOBLOCK, copy=True)
        except zmq.Again:
            self._send_when_room(data)
        except zmq.ZMQError as exc:
            raise TransportError(f"sending to the Executor over ZeroMQ failed: {exc}") from exc
        self.sent += 1

    def _send_when_room(self, data: Any) -> None:
        """At the high-water mark: wait for room (the Executor reads slowly), looking at the link
        every ``_ZMQ_WAIT_MS`` so that a lost Executor ends the wait with TransportError."""
        zmq, zsock = self._zmq, self._zsocket
        while True:
            try:
                if zsock.poll(_ZMQ_WAIT_MS, zmq.POLLOUT):
                    zsock.send(data, zmq.NOBLOCK, copy=True)
                    return
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                raise TransportError(f"sending to the Executor over ZeroMQ failed: {exc}") from exc
            self._check(time.monotonic())

    def _check(self, now: float) -> None:
        """Read the connection events; raise TransportError when the Executor is gone."""
        self._next_check = now + _ZMQ_EVENTS_AFTER
        self._read_events(now)
        if self._connected is None and now - self._changed_at > self._connect_timeout:
            self._next_check = 0.0
            raise TransportError(
                f"cannot connect to the Executor at {self._where}: no connection within "
                f"{self._connect_timeout:g} s (connect_timeout). Is the Executor running, and are "
                "LUTE_SOCKET/LUTE_PORT the values it exported? Nothing of this send was queued")
        if self._connected is False:
            self._next_check = 0.0  # look at every send until it is back
            raise TransportError(
                f"the Executor at {self._where} dropped its ZeroMQ connection {now - self._changed_at:.1f} s "
                "ago and has not come back (did it exit or die?); nothing of this send was queued. What "
                "ZeroMQ still holds goes out if it comes back (e.g. restarted on the same address)")
        watch = self._watch
        if watch is not None and self._connected:
            if now >= watch.due_at:
                self._sample_acks(watch, now)
            if watch.stalled_for:
                self._next_check = 0.0
                raise TransportError(_unreachable(self._where, watch.stalled_for, self._send_timeout)
                                     + "; nothing of this send was queued (ZeroMQ keeps the connection "
                                     "and delivers what it holds if the host answers again)")

    def _read_events(self, now: float) -> None:
        zmq, monitor = self._zmq, self._monitor
        if monitor is None:
            return
        while True:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2 or len(frames[0]) != 6:
                continue
            event, value = struct.unpack("=Hi", frames[0])
            if event == zmq.EVENT_CONNECTED:
                self._connected, self._changed_at, self._fd = True, now, value
                if self._watch is not None:
                    self._watch = _AckWatch(self._send_timeout)
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected, self._changed_at, self._fd = False, now, -1

    def _sample_acks(self, watch: _AckWatch, now: float) -> None:
        """Sample the kernel's TCP_INFO of libzmq's connection (a duplicate of its descriptor,
        only read; skipped unless it is still a TCP socket connected to the Executor's port)."""
        watch.due_at = now + _STALL_CHECK
        try:
            fd = os.dup(self._fd)
        except OSError:
            return
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        with sock:
            try:
                if sock.getpeername()[1] != self._port:
                    return
            except (OSError, IndexError, TypeError):
                return
            watch.sample(sock, now)

    def _state(self, now: float) -> str:
        if self._connected is None:
            return "it never connected"
        if self._connected is False:
            return f"its connection was lost {now - self._changed_at:.1f} s before close"
        if self._watch is not None and self._watch.stalled_for:
            return f"its host had acknowledged nothing for {self._watch.stalled_for:.0f} s"
        return "it was connected but did not take them in time"

    def _close_sockets(self, zsock: Any, linger_ms: int) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            try:
                zsock.disable_monitor()
            except self._zmq.ZMQError:
                pass
            monitor.close(linger=0)
        zsock.close(linger=linger_ms)

    def close(self) -> None:
        """Close the socket and terminate the context, waiting at most ``linger`` until the
        Executor has taken what was queued.

        Raises TransportError (after releasing everything) when that did not happen: linger
        ran out with messages still queued or unread, or the Executor went away meanwhile.

        libzmq's linger alone is not enough under backpressure. It ends once its queue is
        empty, when its I/O engine has taken the last message, and discards what the engine
        has not written yet; and when a Unix socket is closed while the Executor's PULL socket
        is at its high-water mark, libzmq on the Executor's side discards what the kernel still
        holds for it (measured: a Task exited 0 without its last 36 messages). So, while
        connected, a padding message (:data:`END_PADDING`, skipped by the Executor) goes last,
        larger than the engine's output batch, so that only padding can be left unwritten. On
        a Unix socket (Linux), a duplicate of the connection's descriptor also keeps the
        connection open after libzmq closed its own, until the Executor has read every byte
        (``SIOCOUTQ`` is 0) or linger ran out. (TCP delivers what was written before the
        connection's end even to a PULL socket at its high-water mark.)
        """
        if self._zsocket is None and self._context is None:
            return
        now = time.monotonic()
        deadline = now + self._linger
        state = "the socket was closed before"
        held: Optional[socket.socket] = None
        if self._zsocket is not None:
            self._read_events(now)
            if self._connected is None and self.sent and self._linger_ms:
                self._await_connection(deadline)  # written at once after open(): ZeroMQ still connects
            state = self._state(time.monotonic())
            if self._connected and self.sent and self._linger_ms:
                if self._address.startswith("ipc://") and _OUTQ is not None:
                    held = self._hold_connection()
                if not self._send_padding(deadline) and held is not None:
                    held.close()  # the queue stayed full until the deadline: linger decides
                    held = None
        sent = self.sent
        unread = 0
        try:
            zsock, self._zsocket = self._zsocket, None
            if zsock is not None:  # the linger left
                self._close_sockets(zsock, max(0, int((deadline - time.monotonic()) * 1000)))
            if self._context is not None:
                self._context.term()
                self._context = None
            if held is not None:
                unread = _wait_consumed(held, deadline)
                if unread < 0:
                    state = "it closed the connection before taking everything"
                elif unread:
                    state = f"it had not taken the last {unread} bytes"
        finally:
            if held is not None:
                held.close()
        ran_out = time.monotonic() - now >= self._linger - _LINGER_SLACK
        if sent and self._linger_ms and (unread or (held is None and ran_out)):
            raise TransportError(
                f"ZeroMQ could not deliver every message queued for the Executor at {self._where} within "
                f"linger={self._linger:g} s ({state}); the rest were dropped: up to {min(sent, self._hwm + 1)} "
                "ZeroMQ messages, each a batch of one or more frames. Is the Executor running and reading?")

    def _await_connection(self, deadline: float) -> None:
        pause, longest = _CONSUMED_POLL
        while self._connected is None and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, longest)
            self._read_events(time.monotonic())

    def _hold_connection(self) -> Optional[socket.socket]:
        """A duplicate of libzmq's descriptor of the Unix connection to the Executor, or None if it
        cannot be identified (it must still be a socket whose peer is the Executor's path)."""
        try:
            fd = os.dup(self._fd)
        except OSError:
            return None
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return None
        try:
            ours = sock.getpeername() == self._address[len("ipc://"):]
        except OSError:
            ours = False
        if not ours:
            sock.close()
            return None
        return sock

    def _send_padding(self, deadline: float) -> bool:
        """Queue :data:`END_PADDING` last (waiting for room until ``deadline``); False if it could not be."""
        zmq, zsock = self._zmq, self._zsocket
        while True:
            try:
                zsock.send(END_PADDING, zmq.NOBLOCK, copy=True)
                return True
            except zmq.Again:
                pass
            except zmq.ZMQError:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                zsock.poll(min(_ZMQ_WAIT_MS, int(remaining * 1000) + 1), zmq.POLLOUT)
            except zmq.ZMQError:
                return False


END_PADDING = b"LUTE-IPC-END;;;" + bytes(_END_PADDING_SIZE - 15)
"""The ZeroMQ message a closing Task link sends last (see :meth:`ZmqLink.close`); the Executor's
reader skips ZeroMQ messages that start with :data:`END_PADDING_MARK`. It cannot be mistaken
for data: a Task's ZeroMQ message starts with a frame head (``MSG;;;`` or ``MAC;;;``)."""
END_PADDING_MARK = END_PADDING[:15]


def _wait_consumed(sock: socket.socket, deadline: float) -> int:
    """Wait until the peer of the Unix socket ``sock`` has read every byte sent, or ``deadline``;
    return the bytes still unread (0: all read; -1: the peer closed first)."""
    buf = bytearray(4)
    pause, longest = _CONSUMED_POLL
    while True:
        try:
            fcntl.ioctl(sock.fileno(), _OUTQ, buf)  # type: ignore[arg-type]
        except OSError:
            return -1
        pending = int.from_bytes(buf, sys.byteorder, signed=True)
        if pending <= 0:
            return -1 if _peer_closed(sock) else 0
        if time.monotonic() >= deadline:
            return pending
        time.sleep(pause)
        pause = min(pause * 2, longest)


def _tcp_port(address: str) -> Optional[int]:
    """The port of a ``tcp://host:port`` endpoint, else None."""
    if not address.startswith("tcp://"):
        return None
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


# ---------------------------------------------------------------------- exit hook
_writers: "weakref.WeakSet[FrameWriter]" = weakref.WeakSet()
_pending: set = set()
"""Writers holding unsent messages: referenced strongly, so a communicator dropped without
close() still has its buffer flushed (by the flusher thread, or at exit)."""
_hook_installed = False


def _install_exit_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        _hook_installed = True
        atexit.register(_flush_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_in_child)


def _reset_in_child() -> None:
    """After fork: locks may have been held by threads that do not exist in the child, and the
    parent's buffered bytes are the parent's: start afresh."""
    _flusher.__init__()  # type: ignore[misc]
    for writer in list(_writers):
        writer._after_fork()


def _flush_at_exit() -> None:
    """Flush every writer of this process (ZeroMQ links are closed, bounded by their linger)."""
    pid = os.getpid()
    for writer in list(_writers) + [w for w in list(_pending) if w not in _writers]:
        if writer._pid == pid:
            try:
                writer._flush_for_exit()
            except Exception as exc:  # exit must go on
                logger.warning("could not flush a SocketCommunicator at exit: %s", exc)


# ---------------------------------------------------------------------- signing
# ---------------------------------------------------------------------- writer
class FrameWriter:
    """Frames messages (signed when a key is given) into a send buffer and sends it in
    batches (see the module docs for when); safe to call from many threads.

    Args:
        link: a :class:`StreamLink` or :class:`ZmqLink`.
        key: HMAC key to sign frames with, or None for plain frames.
        flush_interval: latency bound in seconds (0: every write is sent at once).
        flush_size: buffered bytes that trigger a send.
    """

    def __init__(self, link: Any, key: Optional[bytes], *, flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 flush_size: int = DEFAULT_FLUSH_SIZE) -> None:
        self._link = link
        self._key = key
        self._gather_tagger = codec.tagger(key).over if key is not None else None
        self.flush_interval = max(0.0, float(flush_interval))
        self.flush_size = max(1, int(flush_size))
        self._buffer = bytearray()
        self._buffered = 0  # messages in the buffer
        self._deadline = 0.0
        self._last_write = time.monotonic()  # when write() was last called
        self._cond = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self.frames_sent = 0
        """Messages handed to the link (sent, or queued by ZeroMQ)."""
        self.sends = 0
        """System calls / ZeroMQ messages used so far."""
        self.frames_lost = 0
        """Buffered messages dropped because a send failed (the failure was raised)."""
        _writers.add(self)
        _install_exit_hook()

    def open(self) -> None:
        with self._cond:
            self._link.open()

    def write(self, msg: Message) -> None:
        """Frame ``msg`` into the buffer; send now if a flush rule says so."""
        contents = msg.contents
        large = 0 if type(contents) in _NEVER_LARGE else _oob.largest_buffer(contents)
        if large < _LARGE:
            large = 0
        with self._cond:
            if self._closed:
                raise CommunicatorClosed("this SocketCommunicator was closed")
            if large:
                self._send_large(msg, large >= _OUT_OF_BAND)
                return
            buffer = self._buffer
            was_empty = not buffer
            append_frame(buffer, msg, key=self._key)
            self._buffered += 1
            now = _monotonic()
            quiet = now - self._last_write >= self.flush_interval
            self._last_write = now
            if msg.signal not in _BATCHED_SIGNALS or len(buffer) >= self.flush_size or not self.flush_interval:
                self._flush_locked()
            elif was_empty:
                if quiet:  # a lone message: nothing to batch it with, do not make it wait
                    self._flush_locked()
                    return
                self._deadline = deadline = now + self.flush_interval
                _pending.add(self)
                _flusher.schedule(self, deadline)
            elif now >= self._deadline:
                self._flush_locked()

    def flush(self) -> None:
        """Send everything buffered now (returns once it is handed to the socket/ZeroMQ)."""
        with self._cond:
            if self._buffer and self._pid == os.getpid():
                self._flush_locked()

    def close(self) -> None:
        """Flush, stop the flusher thread and close the link. Idempotent."""
        with self._cond:
            if self._closed:
                return
            try:
                if self._buffer and self._pid == os.getpid():
                    self._flush_locked()
            finally:
                self._closed = True
                self._link.close()
        _writers.discard(self)

    def _flush_for_exit(self) -> None:
        """At exit: flush, then close a ZeroMQ link, whose context termination waits (at most
        ``linger``) until the queued messages are delivered (a later write reconnects)."""
        with self._cond:
            if self._pid != os.getpid() or self._closed:
                return
            try:
                if self._buffer:
                    self._flush_locked()
            finally:
                if isinstance(self._link, ZmqLink):
                    self._link.close()

    @property
    def buffered(self) -> int:
        """Messages waiting in the send buffer."""
        return self._buffered

    # ------------------------------------------------------------------ internals
    def _after_fork(self) -> None:
        """A forked child must not send its parent's buffered bytes (nor use its thread)."""
        self._cond = threading.Lock()
        self._buffer = bytearray()
        self._buffered = 0
        _pending.discard(self)
        self._pid = os.getpid()

    def _flush_locked(self) -> None:
        buffer = self._buffer
        count = self._buffered
        self._buffered = 0
        _pending.discard(self)
        try:
            self._link.send([buffer])
        except BaseException:
            self.frames_lost += count
            self._buffer = bytearray()  # a traceback may still hold a view of the old one
            raise
        if self._buffer is buffer:
            del buffer[:]
        self.sends += 1
        self.frames_sent += count

    def _send_large(self, msg: Message, out_of_band: bool) -> None:
        direct = message_pieces(msg)  # Message(bytes, ...): pickle's bytes around the contents
        if direct is not None:
            pieces, size = direct
        elif out_of_band:  # pickle without copying the buffers
            pieces, size = _oob.pickle_pieces(msg)
        else:  # one copy (into the pickle) costs less than walking the opcodes in Python
            payload = dumps(msg)
            pieces, size = [payload], len(payload)
        signed = self._gather_tagger is not None
        head = frame_head(size, authenticated=signed)
        frame: List[Any] = [head, *pieces]
        if signed:
            frame.append(self._gather_tagger(frame) + AUTH_TRAILER)  # type: ignore[misc]
        else:
            frame.append(PLAIN_TRAILER)
        count = self._buffered
        if count:
            if isinstance(self._link, ZmqLink):
                self._flush_locked()
                count = 0
            else:
                frame.insert(0, self._buffer)
        self._buffered = 0
        _pending.discard(self)
        try:
            self._link.send(frame)
        except BaseException:
            self.frames_lost += count + 1
            self._buffer = bytearray()  # a traceback may still hold a view of the old one
            raise
        del frame
        del self._buffer[:]
        self.sends += 1
        self.frames_sent += count + 1

    def _flush_due(self) -> None:
        """Called by the flusher thread: send the buffer if its latency bound expired."""
        with self._cond:
            if self._closed or not self._buffer or self._pid != os.getpid():
                return
            if time.monotonic() < self._deadline:
                return  # refilled since: its own entry for the new deadline is scheduled
            try:
                self._flush_locked()
            except Exception as exc:  # the flusher never dies; the loss is counted in frames_lost
                logger.warning("sending buffered messages to the Executor failed: %s", exc)


class _Flusher:
    """One daemon thread per process that flushes writers whose latency bound expired.

    Writers schedule themselves when their buffer stops being empty; the thread sleeps
    until the earliest deadline. One thread for all writers, so a connection-per-message
    Task does not start a thread per connection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._due: List[Any] = []  # heap of (deadline, serial, weakref to writer)
        self._serial = 0
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        self._sleeping_until = 0.0  # 0: running; inf: idle

    def schedule(self, writer: FrameWriter, deadline: float) -> None:
        if self._pid != os.getpid():
            self.__init__()  # type: ignore[misc]  # forked: the parent's thread is not here
        with self._lock:
            self._serial += 1
            heapq.heappush(self._due, (deadline, self._serial, weakref.ref(writer)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lute-ipc-flusher", daemon=True)
                self._thread.start()
            elif deadline < self._sleeping_until:
                self._wake.notify()

    def _run(self) -> None:
        due = self._due
        while True:
            ready = []
            with self._lock:
                while True:
                    now = time.monotonic()
                    while due and due[0][0] <= now:
                        ready.append(heapq.heappop(due)[2])
                    if ready:
                        break
                    self._sleeping_until = due[0][0] if due else float("inf")
                    self._wake.wait(None if not due else due[0][0] - now)
                self._sleeping_until = 0.0
            for ref in ready:
                writer = ref()
                if writer is not None:
                    try:
                        writer._flush_due()
                    except Exception:  # pragma: no cover - _flush_due catches; never die
                        logger.exception("flusher: unexpected error")


_flusher = _Flusher()
