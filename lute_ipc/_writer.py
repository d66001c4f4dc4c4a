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
import logging
import os
import socket
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
           "DEFAULT_FLUSH_SIZE"]

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

    def send(self, pieces: List[Any]) -> None:
        """Send all ``pieces`` (buffers, in order) with gathered writes; on a connection
        closed by the peer reconnect once and resend."""
        sock = self._sock
        now = time.monotonic()
        if sock is None or (now - self._last_send > _PEER_CHECK_AFTER and _peer_closed(sock)):
            sock = self._reopen()
        try:
            _send_all(sock, pieces)
        except _RESET_ERRORS:
            sock = self._reopen()
            try:
                _send_all(sock, pieces)
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


def _send_all(sock: socket.socket, pieces: List[Any]) -> None:
    """``sendall`` for a list of buffers: ``sendmsg`` until every byte went out."""
    if len(pieces) == 1:
        sock.sendall(pieces[0])
        return
    views = [memoryview(p).cast("B") for p in pieces]
    while views:
        sent = sock.sendmsg(views[:_IOV_MAX])
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
        hwm: send high-water mark (messages queued before ``send`` blocks).

    :meth:`close` terminates the context, which waits at most ``linger`` for queued
    messages to be delivered; at interpreter exit every writer is flushed and closed.
    """

    def __init__(self, address: str, linger: float, hwm: int = 160000) -> None:
        self._address = address
        self._linger_ms = max(0, int(linger * 1000))
        self._hwm = hwm
        self._zsocket: Any = None
        self._context: Any = None  # a private context, only after the shared one ended

    def open(self) -> None:
        """Create and connect the socket (ZeroMQ connects in the background)."""
        if self._zsocket is not None:
            return
        # A private context: close() terminates it, which is what waits (at most ``linger``)
        # until queued messages are delivered. On a shared context close() returned at once
        # and a Task that then ended with os._exit (a forked child) lost what was queued.
        import zmq

        context = self._context = self._context or zmq.Context()
        self._zsocket = self._connect(context)

    def _connect(self, context: Any) -> Any:
        import zmq

        zsock = context.socket(zmq.PUSH)
        zsock.setsockopt(zmq.SNDHWM, self._hwm)
        zsock.setsockopt(zmq.LINGER, self._linger_ms)
        try:
            zsock.connect(self._address)
        except zmq.ZMQError as exc:
            zsock.close(linger=0)
            raise TransportError(f"cannot connect a ZeroMQ PUSH socket to {self._address}: {exc}") from exc
        return zsock

    def send(self, pieces: List[Any]) -> None:
        """Send ``pieces`` as one ZeroMQ message (frames never span ZeroMQ messages)."""
        import zmq

        if self._zsocket is None:
            self.open()
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        try:
            # Always let libzmq copy: with copy=False, pyzmq may release the buffer (its
            # garbage-collector thread stops when the context ends at exit) while libzmq's I/O
            # thread still sends from it: crashes ("Bad address") and corrupt frames.
            self._zsocket.send(data, copy=True)
        except zmq.ZMQError as exc:
            raise TransportError(f"sending to the Executor over ZeroMQ failed: {exc}") from exc

    def detach(self) -> None:
        """Close the socket (queued messages stay with the context for ``linger``)."""
        if self._zsocket is not None:
            self._zsocket.close(linger=self._linger_ms)
            self._zsocket = None

    def close(self) -> None:
        self.detach()
        if self._context is not None:
            self._context.term()
            self._context = None


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
