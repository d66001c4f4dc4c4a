"""Task side of the ZeroMQ transport: the links a :class:`~lute_ipc.transport.writer.FrameWriter` sends through.

* :class:`LutePushLink`: toward LUTE's own Executor (no ``LUTE_IPC_PROTOCOL`` in the Task's
  environment). A PUSH socket that sends exactly what LUTE's Tasks send: whole frames
  ``MSG;;;<len>;;;<pickle>;;;GSM``, nothing else. LUTE's wire carries no acknowledgement, so
  :meth:`LutePushLink.close` can only tell that ZeroMQ still held messages when ``linger`` ran out.
* :class:`SessionLink`: toward a lute_ipc Executor. A DEALER socket to the Executor's session
  (ROUTER) socket: CURVE-authenticated and encrypted when a key applies (the handshake is
  completed, or refused with :class:`~lute_ipc.errors.AuthenticationError`, before
  :meth:`SessionLink.open` returns), batches numbered, and the Executor acknowledges what its
  reader took: :meth:`SessionLink.close` returns once everything was confirmed, else raises
  :class:`~lute_ipc.errors.TransportError` naming how many messages were not.

Both links:

* offer the link interface of :mod:`lute_ipc.transport` (``pid``, ``max_message``, ``open``,
  ``send``, ``confirm``, ``close``); a forked child's writer uses a link of its own
  (:meth:`_ZmqLink.renewed`);
* are opened by the process that uses them: after ``fork()`` the child's first send opens a
  link of its own, on a new ZeroMQ context; the parent's sockets and context are never used,
  closed or terminated by the child (they are kept referenced, so no finaliser runs either);
* never let a ZeroMQ message exceed the receiver's limit: a batch over it is split at frame
  boundaries, and a message over the frame limit raises
  :class:`~lute_ipc.errors.FrameTooLarge` before anything of it is sent;
* wait while the Executor reads slowly (backpressure: a send at the high-water mark waits for
  room, as long as it takes) and raise TransportError only when the connection is gone;
* are safe to share between threads and between communicators of one process (one lock per
  link; :meth:`close` is idempotent and a send after it opens the link again).
"""

from __future__ import annotations

import collections
import struct
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from ..errors import AuthenticationError, TransportError
from . import process as _process
from .zeromq_wire import (
    FRAME_OVERHEAD,
    curve_keys,
    decode_ack,
    encode_batch_header,
    parts_of,
    split_batch,
)

__all__ = ["LutePushLink", "SessionLink", "DEFAULT_SNDHWM"]

DEFAULT_SNDHWM = 64
"""ZeroMQ messages (batches) a Task queues before a send waits for the Executor (backpressure)."""

_WAIT_MS = 250
"""Milliseconds a send at the high-water mark waits before it looks at the connection again."""
_LINGER_SLACK = 0.02
"""A context termination that took ``linger`` minus this long ran out of linger."""

EXIT_LINGER = 60.0
"""Seconds a LUTE-wire link waits at interpreter exit (at least ``linger``) for LUTE's Executor
to take what ZeroMQ still holds, since LUTE's wire has no acknowledgement (LUTE's own Task waits
without bound): a 72 MB result behind another one needs more than the default ``linger`` while
LUTE's Executor is still reading. An Executor that died costs the Task this wait at exit, then
the usual TransportError."""
_EVENT = struct.Struct("=Hi")
_REFUSALS = 3
"""Session handshakes refused in a row (libzmq retries every 100 ms) that make
:meth:`SessionLink.open` raise AuthenticationError: a single failure can also be an Executor
that closed in the middle of the handshake."""

_EVENTS, _POLLIN = 15, 1
"""libzmq's ``ZMQ_EVENTS`` option and its ``ZMQ_POLLIN`` bit (fixed by libzmq's ABI), as plain ints:
a look at a socket that costs no exception (pyzmq raises ``Again`` from an empty non-blocking receive).
It is not free (libzmq processes the socket's pending commands, a system call): the per-message
path of a session avoids it when nothing can be waiting."""
_NOBLOCK, _SNDMORE = 1, 2
"""libzmq's ``ZMQ_DONTWAIT`` and ``ZMQ_SNDMORE`` send flags as plain ints (pyzmq's flag enums cost
a Python call per ``|``)."""
_LOOK_EVERY = 0.01
"""Seconds between two looks at a session's connection events on the send path (a lost connection
is also seen by every confirmation's wait)."""

_abandoned: List[Any] = []
"""ZeroMQ objects a forked child inherited from its parent: kept referenced, never closed here."""


def _event_of(frames: List[bytes]) -> Tuple[int, int]:
    if len(frames) != 2 or len(frames[0]) != _EVENT.size:
        return 0, 0
    return _EVENT.unpack(frames[0])


class _ZmqLink:
    """What both links share: a private context opened by the current process, a monitored socket."""

    max_message: Optional[int] = None
    """Link interface: the Executor's frame limit is not learnt on ZeroMQ (its ``MAXMSGSIZE``
    follows the same ``LUTE_IPC_MAX_FRAME_SIZE``): the writer's own limit applies."""
    queues_in_process = True
    """Link interface: a send returns once libzmq queued the message, in this process."""
    keyed = False
    """True when the link authenticates the peer (CURVE)."""
    desc = ""
    """What the link is, for the communicator's ``desc``."""
    tunnel: Any = None
    """The ssh tunnel the link goes through (owned by whoever made the link), or None."""

    def __init__(self, address: str, *, linger: float, max_frame_size: int, hwm: int,
                 connect_timeout: float, via: str) -> None:
        self.pid = _process.pid()
        """Link interface: the process that created the link."""
        self._options: Dict[str, Any] = {"linger": linger, "max_frame_size": max_frame_size, "hwm": hwm,
                                         "connect_timeout": connect_timeout, "via": via}
        self.address = address
        self.linger = max(0.0, float(linger))
        self.max_frame_size = int(max_frame_size)
        self.message_limit = self.max_frame_size + FRAME_OVERHEAD
        """Largest ZeroMQ message (or session batch) sent: the receiver's MAXMSGSIZE."""
        self.hwm = int(hwm)
        self.connect_timeout = max(0.0, float(connect_timeout))
        self.where = f"{address} ({via})" if via else address
        self._lock = threading.RLock()
        self._zmq: Any = None
        self._context: Any = None
        self._socket: Any = None
        self._monitor: Any = None
        self._pid = 0
        self.opened = 0
        """Times this link opened a connection (a forked child's own link counts once more)."""

    # ---------------------------------------------------------------- lifecycle
    def open(self) -> None:
        """Create the context and socket in this process and connect (see the subclasses)."""
        with self._lock:
            self._ensure_open()

    def _ensure_open(self) -> None:
        if not self._open_here():  # closed, or the parent's (a forked child opens its own)
            import zmq

            self._zmq = zmq
            self._context = zmq.Context()
            self._pid = _process.pid()
            self._reset()
            try:
                self._connect()
            except BaseException:
                self._release(0)
                raise
            self.opened += 1

    def renewed(self) -> _ZmqLink:
        """A new link to the same address with the same options, for a forked child (this
        link's ZeroMQ objects, the parent's, are kept referenced and never touched)."""
        if self.pid != _process.pid():
            self._abandon()
            _abandoned.append(self)
        link = type(self)(self.address, **self._options)
        link.desc = self.desc
        return link

    def _open_here(self) -> bool:
        """True when the link is open and this process opened it. In a forked child the parent's
        context and sockets are forgotten, untouched (:meth:`_abandon`), and the answer is False:
        there is nothing of this process's to confirm or close. Call with the lock held."""
        if self._socket is None:
            return False
        if self._pid != _process.pid():
            self._abandon()
            return False
        return True

    def _abandon(self) -> None:
        """In a forked child: forget the parent's context and sockets without touching them."""
        _abandoned.extend(o for o in (self._monitor, self._socket, self._context) if o is not None)
        self._monitor = self._socket = self._context = None

    def _release(self, linger_ms: int) -> float:
        """Close the sockets and terminate the context; return how long termination took."""
        zmq = self._zmq
        monitor, sock, context = self._monitor, self._socket, self._context
        self._monitor = self._socket = self._context = None
        started = time.monotonic()
        if sock is not None:
            if monitor is not None:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
            sock.close(linger=linger_ms)
        if monitor is not None:
            monitor.close(linger=0)
        if context is not None:
            context.term()
        return time.monotonic() - started

    def _monitored_socket(self, kind: int, events: int) -> Any:
        zmq = self._zmq
        sock = self._context.socket(kind)
        self._socket = sock
        sock.setsockopt(zmq.SNDHWM, self.hwm)
        # Before connect(), so that no event is missed.
        self._monitor = sock.get_monitor_socket(events)
        return sock

    def _events(self, timeout_ms: int = 0) -> List[Tuple[int, int]]:
        """Connection events waiting on the monitor (waiting up to ``timeout_ms`` for the first)."""
        zmq, monitor = self._zmq, self._monitor
        out: List[Tuple[int, int]] = []
        if monitor is None:
            return out
        if timeout_ms and not monitor.poll(timeout_ms):
            return out
        while monitor.get(_EVENTS) & _POLLIN:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            out.append(_event_of(frames))
        return out

    def _send_parts(self, parts: List[Any]) -> None:
        """Queue one ZeroMQ message (multipart when ``parts`` has several), waiting for room."""
        zmq, sock = self._zmq, self._socket
        last = len(parts) - 1
        while True:
            try:
                for i, part in enumerate(parts):
                    # libzmq copies (copy=True): a zero-copy send can be read by libzmq's I/O thread
                    # after pyzmq released the buffer.
                    sock.send(part, (_SNDMORE if i < last else 0) | (_NOBLOCK if i == 0 else 0))
                return
            except zmq.Again:  # only the first part can meet the high-water mark
                pass
            except zmq.ZMQError as exc:
                raise TransportError(f"sending to the Executor at {self.where} over ZeroMQ failed: {exc}") from exc
            sock.poll(_WAIT_MS, zmq.POLLOUT)
            self._while_waiting()

    # ---------------------------------------------------------------- subclass hooks
    def _reset(self) -> None:
        raise NotImplementedError

    def _connect(self) -> None:
        raise NotImplementedError

    def _while_waiting(self) -> None:
        """Called every ``_WAIT_MS`` while a send waits for room; raises when the link is gone."""


class LutePushLink(_ZmqLink):
    """A ZeroMQ PUSH socket to LUTE's Executor (``LUTE_SOCKET``/``LUTE_PORT``), LUTE's bytes only.

    Args:
        address: ``ipc://<path>`` or ``tcp://<host>:<port>``.
        linger: seconds :meth:`close` (or interpreter exit) waits for ZeroMQ to hand over what
            it still holds.
        max_frame_size: largest payload sent (``LUTE_IPC_MAX_FRAME_SIZE``); a ZeroMQ message
            never exceeds it plus the frame's head and trailer.
        hwm: send high-water mark (ZeroMQ messages).
        connect_timeout: seconds the link may stay without a first connection (ZeroMQ connects
            in the background and queues meanwhile) before a send raises TransportError.
        via: how the address is reached, for error messages.

    A send raises TransportError, queueing nothing, once the Executor dropped the connection
    (LUTE's Executor exited) or when no connection came up within ``connect_timeout``.
    """

    def __init__(self, address: str, *, linger: float = 5.0, max_frame_size: int, hwm: int = DEFAULT_SNDHWM,
                 connect_timeout: float = 10.0, via: str = "") -> None:
        super().__init__(address, linger=linger, max_frame_size=max_frame_size, hwm=hwm,
                         connect_timeout=connect_timeout, via=via)
        self._reset()

    def _reset(self) -> None:
        self.sent = 0
        """ZeroMQ messages handed to libzmq since the link was opened."""
        self._connected: Optional[bool] = None
        self._changed_at = time.monotonic()

    def _connect(self) -> None:
        zmq = self._zmq
        sock = self._monitored_socket(zmq.PUSH, zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        sock.setsockopt(zmq.LINGER, int(self.linger * 1000))
        try:
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot connect a ZeroMQ PUSH socket to {self.where}: {exc}") from exc

    def send(self, pieces: List[Any], messages: int = 1) -> None:
        """Send ``pieces`` (whole frames, ``messages`` of them) as one ZeroMQ message, or several
        when together they exceed the receiver's limit."""
        batches = split_batch(pieces, messages, self.message_limit, self.max_frame_size)
        with self._lock:
            self._ensure_open()
            self._check()
            for batch, _count in batches:
                self._send_parts([batch[0] if len(batch) == 1 else b"".join(batch)])
                self.sent += 1

    def _while_waiting(self) -> None:
        self._check()

    def _read_connection_events(self, timeout_ms: int = 0) -> None:
        events = self._events(timeout_ms)
        now = time.monotonic()
        for event, _ in events:
            if event == self._zmq.EVENT_CONNECTED:
                self._connected, self._changed_at = True, now
            elif event == self._zmq.EVENT_DISCONNECTED:
                self._connected, self._changed_at = False, now

    def _check(self) -> None:
        self._read_connection_events()
        now = time.monotonic()
        if self._connected is None and now - self._changed_at > self.connect_timeout:
            raise TransportError(
                f"cannot connect to the Executor at {self.where}: no connection within "
                f"{self.connect_timeout:g} s (connect_timeout). Is the Executor running, and are "
                "LUTE_SOCKET/LUTE_PORT the values it exported? Nothing of this send was queued")
        if self._connected is False:
            raise TransportError(
                f"the Executor at {self.where} dropped its ZeroMQ connection {now - self._changed_at:.1f} s "
                "ago and has not come back (did it exit?); nothing of this send was queued")

    def confirm(self, timeout: Optional[float] = None) -> None:
        """Link interface. LUTE's wire has no acknowledgements: with a ``timeout`` (0 included)
        this returns at once; ``None`` (wait as long as it takes: the writer at interpreter exit)
        closes the link, so that ZeroMQ hands over what it holds within ``linger``
        (TransportError as :meth:`close`); a later send opens the link again."""
        if timeout is None:
            self._close(max(self.linger, EXIT_LINGER) if self.linger else 0.0)

    def close(self) -> None:
        """Close the socket and terminate the context, waiting at most ``linger`` for ZeroMQ to
        hand over what it holds; raise TransportError when that time ran out (or the link never
        connected) with messages sent. ``linger=0`` drops what ZeroMQ holds, as asked, silently.
        Idempotent; a send afterwards opens the link again."""
        self._close(self.linger)

    def _close(self, linger: float) -> None:
        with self._lock:
            if not self._open_here():
                return
            sent = self.sent
            deadline = time.monotonic() + linger
            self._read_connection_events()
            while sent and self._connected is None and time.monotonic() < deadline:
                # written at once after open(): ZeroMQ may still be connecting
                self._read_connection_events(max(1, int((deadline - time.monotonic()) * 1000)))
            if self._connected is None:
                state = "it never connected"
            elif self._connected is False:
                state = "it dropped the connection"
            else:
                state = "it did not take them in time"
            left = max(0.0, deadline - time.monotonic()) if self._connected is not False else 0.0
            took = self._release(int(left * 1000))
            if sent and linger and (self._connected is not True or (left and took >= left - _LINGER_SLACK)):
                raise TransportError(
                    f"ZeroMQ could not hand every message to the Executor at {self.where} within "
                    f"linger={linger:g} s ({state}); up to {min(sent, self.hwm + 1)} ZeroMQ messages "
                    "(each one or more messages) were dropped")


class SessionLink(_ZmqLink):
    """A DEALER socket in session with a lute_ipc Executor's ROUTER socket (``LUTE_IPC_ZMQ_SESSION``).

    Args:
        address: ``ipc://<path>`` or ``tcp://<host>:<port>`` of the session socket.
        key: ``LUTE_IPC_KEY``: the CURVE key pairs are derived from it; ``None`` runs without
            CURVE (a Unix socket of an Executor that requires no authentication).
        linger: seconds :meth:`close` waits for the Executor to confirm what was sent;
            ``confirm(None)`` (the exit confirmation) and :meth:`hand_over` give up once the
            Executor sent nothing (acknowledgement or keep-alive) for that long.
        max_frame_size: largest payload sent (``LUTE_IPC_MAX_FRAME_SIZE``); a batch never
            holds more than one such frame and its framing.
        hwm: send high-water mark (batches).
        connect_timeout: seconds :meth:`open` waits for the session to be established.
        send_timeout: TCP: seconds the Executor may stay silent while batches it acknowledged
            before wait for confirmation, before a send (or :meth:`close`) gives the session up
            as lost (a cut network path, a dead host); 0: no such check. A stalled Executor
            repeats its acknowledgements every 0.2 s while its consumer reads nothing, so it
            is never taken for a dead one. (A session never acknowledged yet is left to TCP's
            own timeout, about 15 minutes.)
        via: how the address is reached, for error messages.

    :meth:`open` returns once libzmq completed the handshake (for CURVE: the Executor's ZAP
    handler accepted the client key). A refused handshake (wrong or missing key) raises
    AuthenticationError; no session within ``connect_timeout`` raises TransportError.
    Nothing a Task sends is queued before that.

    :meth:`confirm` waits for the acknowledgements; :meth:`close` confirms (bounded by
    ``linger``) and raises TransportError naming the messages that were not confirmed, or
    that the Executor rejected. A lost connection makes the next send raise TransportError
    with the same count, and the send after that opens a new session.
    """

    def __init__(self, address: str, *, key: Optional[bytes], linger: float = 5.0, max_frame_size: int,
                 hwm: int = DEFAULT_SNDHWM, connect_timeout: float = 10.0, send_timeout: float = 10.0,
                 via: str = "") -> None:
        super().__init__(address, linger=linger, max_frame_size=max_frame_size, hwm=hwm,
                         connect_timeout=connect_timeout, via=via)
        self._options.update(key=key, send_timeout=send_timeout)
        self._key = key
        self.keyed = key is not None
        self.send_timeout = max(0.0, float(send_timeout)) if address.startswith("tcp://") else 0.0
        self.lost_unconfirmed = 0
        """Link interface (optional): messages sent on sessions that ended (lost, or closed) before
        confirming them, in all; each was named by the TransportError raised then."""
        self._reset()

    def _reset(self) -> None:
        self.sequence = 0
        """Batches sent on the current session."""
        self.sent = 0
        """Messages sent on the current session."""
        self._pending: Deque[Tuple[int, int]] = collections.deque()  # (sequence, messages) not acknowledged
        self.acknowledged = 0
        """Messages acknowledged on the current session (taken by the Executor's reader)."""
        self.delivered = 0
        """Of those, messages the Executor put in its queue (the rest it rejected, and counted)."""
        self._lost: Optional[str] = None
        self._rejected_reported = 0  # rejected messages confirm() already raised
        self._heard_at = time.monotonic()  # the Executor's last acknowledgement (or the session's start)
        self._receive_timeout = -1  # the socket's RCVTIMEO (milliseconds; -1: libzmq's default, block)
        self._next_look = 0.0  # when the send path looks at the connection events next

    # ---------------------------------------------------------------- open
    def _connect(self) -> None:
        zmq = self._zmq
        failed = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL \
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        sock = self._monitored_socket(zmq.DEALER, zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | failed)
        sock.setsockopt(zmq.LINGER, 0)  # what matters is confirmed by acknowledgements, not by linger
        # ZMQ_IMMEDIATE stays 0: with it libzmq discards the acknowledgements the connection
        # delivered but this socket did not read yet when the Executor disconnects (it closed after
        # confirming). open() waits for the handshake, so nothing is queued before the session is up.
        sock.setsockopt(zmq.RCVHWM, 0)  # acknowledgements are small and read on every send
        if self.address.startswith("tcp://"):
            sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        if self._key is not None:
            keys = curve_keys(self._key)
            sock.curve_serverkey = keys.server_public
            sock.curve_publickey = keys.client_public
            sock.curve_secretkey = keys.client_secret
        try:
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot connect a ZeroMQ DEALER socket to {self.where}: {exc}") from exc
        deadline = time.monotonic() + self.connect_timeout
        refusals = 0  # handshakes failed in a row: one may be an Executor that was closing
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(
                    f"no session with the Executor at {self.where} within {self.connect_timeout:g} s "
                    "(connect_timeout). Is the Executor running, and are LUTE_EXECUTOR_HOST and "
                    "LUTE_IPC_ZMQ_SESSION the values it exported?")
            for event, value in self._events(max(1, int(remaining * 1000))):
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    return
                if event & failed:
                    refusals += 1
                    # a protocol failure (e.g. NULL against CURVE) is final: libzmq does not reconnect
                    if refusals >= _REFUSALS or event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                        raise AuthenticationError(self._refusal(event, value))

    def _refusal(self, event: int, value: int) -> str:
        zmq = self._zmq
        if self._key is None:
            why = ("this Task has no LUTE_IPC_KEY and the Executor requires authentication: start the Task "
                   "from its Executor (which exports LUTE_IPC_KEY) or copy LUTE_IPC_KEY from its environment")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            why = f"the Executor's authenticator refused this Task's key (status {value}): LUTE_IPC_KEY differs"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            why = "the Executor does not use CURVE: it requires no authentication, unset LUTE_IPC_KEY"
        else:
            why = "the Executor could not decrypt the handshake: LUTE_IPC_KEY is not the Executor's key"
        return f"the Executor at {self.where} refused the session handshake: {why}. Nothing was sent"

    # ---------------------------------------------------------------- send
    def send(self, pieces: List[Any], messages: int = 1) -> None:
        """Send ``pieces`` (whole frames, ``messages`` of them) as one numbered batch, or several
        when together they exceed the receiver's limit. Raises TransportError when the session
        was lost (naming the messages it did not confirm); the next send opens a new one."""
        batches = split_batch(pieces, messages, self.message_limit, self.max_frame_size)
        with self._lock:
            self._ensure_open()
            if self._pending:  # acknowledgements can only be waiting for batches in flight
                self._read_acks()
            now = time.monotonic()
            look = now >= self._next_look  # connection events: at most every _LOOK_EVERY here
            if look:
                self._next_look = now + _LOOK_EVERY
            self._check(look)
            if not self._pending:  # the Executor's silence counts from now: an idle Task awaited nothing
                self._heard_at = now
            for batch, count in batches:
                self.sequence += 1
                parts: List[Any] = [encode_batch_header(self.sequence, count)]
                parts += parts_of(batch)
                self._send_parts(parts)
                self._pending.append((self.sequence, count))
                self.sent += count

    def _while_waiting(self) -> None:
        self._read_acks()
        self._check_liveness()
        self._check()

    def _check_liveness(self) -> None:
        """Give the session up when the Executor, which acknowledged before, went silent for
        ``send_timeout`` seconds with batches unconfirmed (a live one repeats its acknowledgements)."""
        if self.send_timeout and self._pending and self.acknowledged and self._lost is None:
            silent = time.monotonic() - self._heard_at
            if silent >= self.send_timeout:
                self._lost = (f"the Executor at {self.where} sent nothing for {silent:.0f} s (send_timeout="
                              f"{self.send_timeout:g} s) while batches waited for confirmation: the network "
                              "path to it or its host is down")

    def _check(self, look: bool = True) -> None:
        """Raise TransportError (once) when the session's connection is gone (``look``: read the
        connection events first; else only what is already known)."""
        if look:
            self._read_disconnection()
        self._raise_lost()

    def _read_disconnection(self) -> None:
        """Note a lost connection reported by the socket monitor (raised by :meth:`_raise_lost`)."""
        for event, _ in self._events():
            if event == self._zmq.EVENT_DISCONNECTED and self._lost is None:
                self._lost = "the Executor closed the session (did it exit?)"

    def _raise_lost(self) -> None:
        """Raise TransportError (once) naming the unconfirmed messages when the session was lost."""
        if self._lost is not None:
            reason, unconfirmed = self._lost, self.sent - self.acknowledged
            self.lost_unconfirmed += unconfirmed
            self._release(0)
            raise TransportError(f"{reason}: {unconfirmed} message(s) sent to {self.where} were not "
                                 "confirmed; a new session is opened on the next send")

    def _read_acks(self) -> None:
        zmq, sock = self._zmq, self._socket
        while sock.get(_EVENTS) & _POLLIN:
            try:
                data = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._take_ack(data)

    def _await_ack(self, timeout_ms: int) -> bool:
        """Take the next acknowledgement, waiting in libzmq up to ``timeout_ms`` for it (no poller
        per wait: the blocking receive wakes on the message itself); False when none came."""
        zmq, sock = self._zmq, self._socket
        if self._receive_timeout != timeout_ms:
            sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._receive_timeout = timeout_ms
        try:
            data = sock.recv()
        except zmq.Again:
            return False
        self._take_ack(data)
        return True

    def _take_ack(self, data: bytes) -> None:
        try:
            sequence, delivered = decode_ack(data)
        except ValueError:
            return  # not from a lute_ipc Executor's reader: ignore
        pending = self._pending
        self._heard_at = time.monotonic()
        while pending and pending[0][0] <= sequence:
            self.acknowledged += pending.popleft()[1]
        if delivered > self.delivered:
            self.delivered = delivered

    # ---------------------------------------------------------------- confirm / close
    def confirm(self, timeout: Optional[float] = None) -> None:
        """Link interface: return once the Executor acknowledged every batch sent (``timeout``
        None: as long as the Executor is heard from, see :meth:`unconfirmed`; 0: only look at
        what already arrived). Raises TransportError naming the messages not confirmed (the
        session was lost, the wait ran out, the Executor fell silent) or rejected by the
        Executor; a lost session is reopened by the next send."""
        with self._lock:
            if not self._open_here():
                return
            unconfirmed = self.unconfirmed(timeout)
            if self._lost is not None:
                self._check()  # raises, names the unconfirmed messages, releases the session
            if unconfirmed and timeout is None:
                raise TransportError(f"{unconfirmed} of {self.sent} message(s) were not confirmed by the Executor "
                                     f"at {self.where}: it sent nothing for {self.linger:g} s (linger) while they "
                                     "waited (is it frozen, or its host unreachable?)")
            if unconfirmed and timeout:
                raise TransportError(f"{unconfirmed} of {self.sent} message(s) were not confirmed by the Executor "
                                     f"at {self.where} within {timeout:g} s (is it still reading?)")
            self._raise_rejected()

    def hand_over(self, timeout: Optional[float] = None) -> None:
        """LUTE's per-message ``clear_communicator()`` on the shared session: wait for the
        acknowledgement of what was sent, because until libzmq's I/O thread wrote it the
        messages are only in this process's memory (a Task ending with ``os._exit`` would lose
        them). ``timeout`` given: exactly :meth:`confirm`. ``None``: as long as the Executor is
        heard from (an Executor whose consumer is slow repeats its acknowledgements: the wait
        is backpressure, as a send at the high-water mark); once it sent nothing for ``linger``
        seconds (its reader, waiting for queue room, has not seen this session yet, or it is
        frozen) return without raising: the messages are in flight, not confirmed, and
        :meth:`confirm`, :meth:`close` and the confirmation at exit wait for them again and
        name them if they never are. Raises TransportError when the session was lost (naming
        the messages not confirmed) or when the Executor rejected messages."""
        if timeout is not None:
            self.confirm(timeout)
            return
        with self._lock:
            if not self._open_here():
                return
            self.unconfirmed(None)
            if self._lost is not None:
                self._check()  # raises, names the unconfirmed messages, releases the session
            self._raise_rejected()

    def _raise_rejected(self) -> None:
        """Raise TransportError naming the messages the Executor rejected since the last such error."""
        rejected = self.acknowledged - self.delivered - self._rejected_reported
        if rejected > 0:
            self._rejected_reported += rejected
            raise TransportError(f"the Executor at {self.where} rejected {rejected} message(s) (counted in its "
                                 "stats and logged)")

    def unconfirmed(self, timeout: Optional[float]) -> int:
        """Wait up to ``timeout`` seconds until the Executor acknowledged every batch sent; return
        the messages still unconfirmed (0: all taken). ``None``: as long as the Executor is heard
        from: it gives up once the Executor sent nothing (no acknowledgement, no keep-alive) for
        ``linger`` seconds, counted from the start of the wait. A live Executor whose consumer is
        slow repeats its acknowledgements (slow, not gone); a frozen one (SIGSTOP), or one whose
        host became unreachable, falls silent."""
        with self._lock:
            if not self._open_here():
                return 0
            started = time.monotonic()
            deadline = None if timeout is None else started + timeout
            while self._pending:
                remaining = self._time_left(started, deadline)
                # a receive that blocks wakes on the acknowledgement itself (one that arrived is taken at once)
                if remaining > 0 and self._lost is None and \
                        self._await_ack(max(1, min(_WAIT_MS, int(remaining * 1000)))):
                    continue
                # nothing came within _WAIT_MS, or no time is left: look at the connection
                self._read_disconnection()
                self._check_liveness()
                if self._lost is not None or self._time_left(started, deadline) <= 0:
                    self._read_acks()  # what already arrived
                    return self.sent - self.acknowledged
            return 0

    def _time_left(self, started: float, deadline: Optional[float]) -> float:
        """Seconds :meth:`unconfirmed` may still wait: to ``deadline``, or (None) until the Executor was
        silent for ``linger`` seconds, counted from ``started`` at the earliest."""
        if deadline is None:
            return self.linger - (time.monotonic() - max(started, self._heard_at))
        return deadline - time.monotonic()

    def close(self) -> None:
        """Confirm what was sent (waiting at most ``linger``), then close the socket and
        terminate the context. Raises TransportError when messages were not confirmed, or
        were rejected by the Executor. Idempotent; a send afterwards opens a new session."""
        with self._lock:
            if not self._open_here():
                return
            unconfirmed = self.unconfirmed(self.linger)
            rejected = self.acknowledged - self.delivered - self._rejected_reported
            lost = self._lost
            self.lost_unconfirmed += unconfirmed
            self._release(0)
            problems = []
            if unconfirmed:
                problems.append(f"{unconfirmed} of {self.sent} message(s) were not confirmed by the Executor at "
                                f"{self.where} within linger={self.linger:g} s"
                                + (f" ({lost})" if lost else " (is it still reading?)"))
            if rejected > 0:
                problems.append(f"the Executor rejected {rejected} message(s) (counted in its stats and logged)")
            if problems:
                raise TransportError("; ".join(problems))
