"""Executor side of raw stream sockets: one thread serving a listening socket and all its connections.

Each connection is told apart by its first octets: ``LUTE-IPC/1`` opens a session
(:mod:`lute_ipc.transport.session`: handshake, tagged and numbered records, acknowledgements);
anything else is LUTE's plain frames, served exactly as LUTE's Tasks expect when
authentication is off (Unix sockets by default) and refused when it is on. The frames of a
session's data records, and plain frames, go through one :class:`~lute_ipc.framing.FrameDecoder`
per connection into the message queue.

Rules (the policy itself is :mod:`lute_ipc.transport.admission`):

* a connection that has not proven itself is read at most
  :data:`~lute_ipc.transport.session.UNPROVEN_LIMIT` octets, and at most
  :data:`~lute_ipc.transport.limits.UNPROVEN_CONNECTIONS` of them are open; one that has not
  proven itself within ``handshake_timeout`` seconds is closed;
* proven connections are never closed to make room; at the limit the reader stops accepting
  (Tasks wait in the listen backlog) and says so in :class:`~lute_ipc._reader.ReaderStats`
  and the log;
* time spent waiting for room in the queue (backpressure) never counts against a peer: the
  reader's clock stops while it waits, and no connection is closed while unread octets wait
  in its kernel buffer;
* a session's acknowledgement counts the messages put in the queue (``taken``) and those
  that could not be decoded (``refused``), sent when the Task asks (confirm records);
* frames salvaged at end of stream are delivered; every rejection is counted and logged once
  per connection and kind;
* on TCP, kernel keep-alive probes close connections whose Task host died (the Task's
  kernel answers them however slowly the Task writes).
"""

from __future__ import annotations

import errno
import logging
import select
import selectors
import socket
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from .._queue import MessageQueue
from .._reader import DecoderFactory, _count_error, _ReaderThread
from ..errors import AuthenticationError, FrameTooLarge, ProtocolError
from . import admission
from . import session as _session
from .limits import RECORD_SLACK, UNPROVEN_CONNECTIONS

__all__ = ["StreamReader"]

logger = logging.getLogger("lute_ipc.transport")

_WAKE = object()
_LISTENER = object()
_RECV_SIZE = 256 * 1024
_FLUSH_TICK = 0.005
_KEEPALIVE = (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))

SessionFactory = Callable[[], _session.ExecutorSession]


class _Connection:
    __slots__ = ("sock", "serial", "name", "accepted", "opened", "last_activity", "registered", "kind", "session",
                 "decoder", "proven", "taken", "refused", "outgoing", "close_reason", "logged", "waiting", "ack_due")

    def __init__(self, sock: socket.socket, serial: int, address: Any, now: float) -> None:
        self.sock = sock
        self.serial = serial
        self.name = f"connection #{serial}" + (f" from {address}" if address else "")
        self.accepted = now
        self.opened = time.monotonic()  # real time: the handshake deadline runs while the queue is full
        self.last_activity = now
        self.waiting = 0  # batches of this connection waiting for queue room
        self.ack_due = False  # acknowledge once they are in the queue
        self.registered = False
        self.kind: Optional[str] = None  # None (nothing read yet), "session" or "plain"
        self.session: Optional[_session.ExecutorSession] = None
        self.decoder: Any = None
        self.proven = False
        self.taken = 0
        self.refused = 0
        self.outgoing = bytearray()
        self.close_reason: Optional[str] = None
        self.logged: Set[str] = set()


def _serial_of(conn: _Connection) -> int:
    return conn.serial


def _keep_alive(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE:
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        pass


def _has_unread(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False


class StreamReader(_ReaderThread):
    """Reads LUTE's plain frames and lute_ipc sessions from every connection of a listening stream socket.

    Args:
        listener: a bound, listening socket (it stays owned by the caller).
        queue: where decoded messages go.
        make_decoder: builds one frame decoder per connection, given its error callback.
        make_session: builds the Executor side of a session (key, limits).
        require_auth: refuse LUTE's plain frames (they carry no proof).
        max_connections: open connections allowed at once (see the module docs).
        idle_timeout: seconds a plain connection may hold an incomplete frame without sending
            an octet (the reader's own waits excluded) before it is closed.
        handshake_timeout: seconds a connection may stay unproven.
        max_unproven: unproven connections allowed at once.
        name: thread name (for logs).
    """

    def __init__(
        self,
        listener: socket.socket,
        queue: MessageQueue,
        make_decoder: DecoderFactory,
        make_session: SessionFactory,
        *,
        require_auth: bool,
        max_connections: int = 1024,
        idle_timeout: float = 60.0,
        handshake_timeout: float = 10.0,
        max_unproven: int = UNPROVEN_CONNECTIONS,
        name: str = "lute-ipc-reader",
    ) -> None:
        super().__init__(queue, name)
        self._listener = listener
        self._tcp = listener.family in (socket.AF_INET, socket.AF_INET6)
        self._make_decoder = make_decoder
        self._make_session = make_session
        self._require_auth = require_auth
        self.max_connections = max(1, int(max_connections))
        self.max_unproven = max(1, int(max_unproven))
        self.idle_timeout = float(idle_timeout)
        self.handshake_timeout = float(handshake_timeout)
        self._tick = max(0.005, min(0.25, self.idle_timeout / 4, self.handshake_timeout / 4))
        self._next_sweep = 0.0
        self._selector: Optional[selectors.BaseSelector] = None
        self._connections: Dict[int, _Connection] = {}  # by serial, oldest first
        self._unproven: Dict[int, _Connection] = {}  # by serial, oldest first
        self._fresh: Dict[int, _Connection] = {}  # nothing received yet, oldest first
        self._sending: Dict[int, _Connection] = {}  # with octets waiting to be sent
        self._buffer = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._serial = 0
        self._paused = 0.0  # seconds spent waiting for queue room: the reader's clock stops meanwhile
        self._backlog: Deque[Tuple[_Connection, List[Any]]] = deque()  # decoded, waiting for queue room
        self._backlog_since = 0.0
        self._parked: List[_Connection] = []  # proven connections not read while the queue is full
        self._accepting = True
        self._logged: Set[str] = set()

    @property
    def open_connections(self) -> int:
        """Connections currently open."""
        return len(self._connections)

    def _clock(self) -> float:
        """Monotonic time minus the time spent waiting for queue room (it stops while the queue is full)."""
        now = self._backlog_since if self._backlog else time.monotonic()
        return now - self._paused

    def _deliver_from(self, conn: _Connection, messages: List[Any]) -> None:
        """Queue ``conn``'s messages; when the queue is full keep them (in order) and stop reading
        proven connections until there is room. The reader goes on accepting and serving
        handshakes meanwhile, and never blocks."""
        if not self._backlog and len(self.queue) < self.queue.maxsize:
            self.queue.put_many(messages, self._should_stop)  # below the bound: does not wait
            self.stats.messages += len(messages)
            conn.taken += len(messages)
            return
        if not self._backlog:
            self._backlog_since = time.monotonic()
            self.stats.backpressure_waits += 1
            self._park()
        self._backlog.append((conn, messages))
        conn.waiting += 1

    def _park(self) -> None:
        selector = self._selector
        for conn in self._connections.values():
            if conn.proven and conn.registered:
                conn.registered = False
                selector.unregister(conn.sock)  # type: ignore[union-attr]
                self._parked.append(conn)

    def _drain_backlog(self) -> None:
        """Move waiting messages into the queue as room appears; acknowledge and resume reading once
        they all went."""
        backlog, queue = self._backlog, self.queue
        while backlog and len(queue) < queue.maxsize:
            conn, messages = backlog.popleft()
            queue.put_many(messages, self._should_stop)
            self.stats.messages += len(messages)
            conn.taken += len(messages)
            conn.waiting -= 1
            if not conn.waiting and conn.ack_due and conn.serial in self._connections:
                self._acknowledge(conn)
        if backlog:
            return
        self._paused += time.monotonic() - self._backlog_since
        parked, self._parked = self._parked, []
        for conn in parked:
            if conn.serial in self._connections and not conn.registered:
                self._selector.register(conn.sock, selectors.EVENT_READ, conn)  # type: ignore[union-attr]
                conn.registered = True

    def _acknowledge(self, conn: _Connection) -> None:
        session = conn.session
        assert session is not None
        conn.ack_due = False
        conn.outgoing += session.ack(conn.taken, conn.refused)
        self.stats.acks_sent += 1
        self._send_pending(conn)

    def _log_once(self, kind: str, text: str, *args: Any) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(text + " (later occurrences are only counted in stats)", *args)

    # ------------------------------------------------------------------ thread
    def _busy(self) -> bool:
        if self._connections or self._backlog or self._parked:
            return True
        poller = select.poll()  # (not select.select: the descriptor may be over FD_SETSIZE)
        poller.register(self._listener, select.POLLIN)
        return bool(poller.poll(0))  # a connection waits to be accepted

    def _setup(self) -> None:
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)

    def _step(self) -> None:
        selector = self._selector
        assert selector is not None
        ready: List[_Connection] = []
        if self._backlog:
            self._drain_backlog()
        for key, _ in selector.select(_FLUSH_TICK if self._sending or self._backlog else self._tick):
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
            if conn.serial in self._connections:
                self._receive(conn)
            if self._backlog and conn.proven:
                if conn.registered:
                    self._park()
                elif conn.serial in self._connections and conn not in self._parked:
                    self._parked.append(conn)
            elif not conn.registered and conn.serial in self._connections:
                selector.register(conn.sock, selectors.EVENT_READ, conn)
                conn.registered = True
        for conn in list(self._sending.values()):
            self._send_pending(conn)
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._tick
            self._sweep(now)

    def _teardown(self) -> None:
        waiting = sum(len(messages) for _, messages in self._backlog)
        if waiting:
            logger.warning("the reader stops with %d message(s) received but not queued (the queue was full): "
                           "discarded, never acknowledged (session Tasks report them)", waiting)
            self._backlog.clear()
        for conn in list(self._connections.values()):
            self._close(conn, None)
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    # ------------------------------------------------------------------ connections
    def _catch_up(self, serial: int) -> None:
        """Read connections accepted before ``serial`` that have not sent anything yet, so
        LUTE's one-connection-per-message Tasks are read in the order they connected. Only
        connections younger than one second count."""
        horizon = self._clock() - 1.0
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
            decision = admission.admit(len(self._connections), len(self._unproven), self.max_connections,
                                       self.max_unproven)
            if decision != admission.ACCEPT and not select.select([self._listener], [], [], 0)[0]:
                return accepted  # nobody is waiting: nothing to make room for
            if decision == admission.MAKE_ROOM and not self._make_room():
                decision = admission.PAUSE
            if decision == admission.PAUSE:
                self._pause_accepting()
                return accepted
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError as exc:  # EMFILE, ECONNABORTED...: retry on the next readiness
                self.stats.internal_errors += 1
                logger.warning("accept() failed: %s", exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self._pause_accepting()
                return accepted
            now = self._clock()
            sock.setblocking(False)
            if self._tcp:
                _keep_alive(sock)
            self._serial += 1
            conn = _Connection(sock, self._serial, address, now)
            self._connections[conn.serial] = conn
            self._unproven[conn.serial] = conn
            self._fresh[conn.serial] = conn
            self.stats.connections_accepted += 1
            # Read at once (in accept order): a per-message writer may have sent and closed already,
            # and a LUTE connection proves itself by its first octets.
            if next(iter(self._fresh)) < conn.serial:
                self._catch_up(conn.serial)
            self._receive(conn)
            if conn.serial in self._connections:
                accepted.append(conn)
        return accepted

    def _make_room(self) -> bool:
        """Close the oldest unproven connection that has nothing unread (those with unread octets are
        read first: they may prove themselves). False when none could be closed."""
        for conn in list(self._unproven.values()):
            if _has_unread(conn.sock):
                self._receive(conn)
                if conn.serial not in self._unproven:
                    return True  # proven (or closed) by what it sent: room made
                continue
            self.stats.unproven_closed += 1
            self._log_once("unproven", "at the limit of open or unproven connections (max_connections=%d, "
                           "max_unproven=%d): closing the oldest connection that has not proven itself (%s)",
                           self.max_connections, self.max_unproven, conn.name)
            self._close(conn, None)
            return True
        return False

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            self.stats.accept_pauses += 1
            self._selector.unregister(self._listener)  # type: ignore[union-attr]
            self._log_once("pause", "%d connections are open, all proven (max_connections=%d): new connections "
                           "wait in the listen backlog until one closes", len(self._connections), self.max_connections)

    def _resume_accepting(self) -> None:
        if not self._accepting and self._selector is not None:
            self._accepting = True
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)

    def _error_callback(self, conn: _Connection) -> Callable[[ProtocolError], None]:
        stats = self.stats

        def on_error(error: ProtocolError) -> None:
            _count_error(stats, error)
            if conn.kind == "session":
                conn.refused += 1  # a message of an authentic record that could not be decoded
                stats.messages_refused += 1
            kind = type(error).__name__
            if isinstance(error, (AuthenticationError, FrameTooLarge)) and conn.close_reason is None \
                    and conn.kind == "plain":
                conn.close_reason = f"{kind}: {error}"
            if kind not in conn.logged:
                conn.logged.add(kind)
                logger.warning("%s: rejected data (%s: %s)%s", conn.name, kind, error,
                               "; closing the connection" if conn.close_reason else
                               "; later errors of this kind on it are only counted")

        return on_error

    def _receive(self, conn: _Connection) -> None:
        self._receive_once(conn)
        if not conn.registered and conn.serial in self._connections:
            self._receive_once(conn)  # a new connection: its EOF may be there already

    def _receive_once(self, conn: _Connection) -> None:
        direct = self._final_buffer(conn)
        if direct is not None:
            limit = len(direct)
        elif conn.proven:
            limit = _RECV_SIZE
        else:
            limit = _session.UNPROVEN_LIMIT - (conn.session.buffered if conn.session is not None else 0)
            limit = max(1, limit)
        try:
            size = conn.sock.recv_into(self._buffer if direct is None else direct, limit)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # reset by peer...
            self._end_of_stream(conn, f"receive failed: {exc}")
            return
        if size == 0:
            self._end_of_stream(conn, None)
            return
        conn.last_activity = self._clock()
        if self._fresh:
            self._fresh.pop(conn.serial, None)
        self.stats.bytes_received += size
        if direct is not None:
            del direct  # the decoder's buffer: released before it is decoded
            self.stats.bytes_received_into += size
            if conn.kind == "plain":
                messages = conn.decoder.commit(size)
                if messages:
                    self._deliver_from(conn, messages)
            else:
                assert conn.session is not None
                self._session_events(conn, conn.session.received(size))
            if conn.close_reason is not None:
                self._close(conn, None)
            return
        data = self._view[:size]
        if conn.kind is None and not self._classify(conn, data):
            return
        if conn.kind == "plain":
            messages = conn.decoder.feed(data)
            if messages:
                self._deliver_from(conn, messages)
        else:
            self._session_data(conn, data)
        if conn.close_reason is not None:
            self._close(conn, None)  # the reason was logged when it was found

    @staticmethod
    def _final_buffer(conn: _Connection) -> Optional[memoryview]:
        """The rest of the frame (plain) or record (session) in progress on a proven connection,
        when its head is read and that rest is at least a read's worth: received straight into its
        final buffer, with no copy. A shorter rest is read with the reader's buffer as before, so
        receiving into a frame never makes a read shorter than an ordinary one (what one read
        holds is what is decoded before a connection found faulty is closed)."""
        if not conn.proven:
            return None
        view: Optional[memoryview] = None
        if conn.kind == "plain":
            pending_buffer = getattr(conn.decoder, "pending_buffer", None)  # a factory's decoder may lack it
            view = pending_buffer() if pending_buffer is not None else None
        elif conn.session is not None:
            view = conn.session.receive_buffer()
        return view if view is not None and len(view) >= _RECV_SIZE else None

    def _classify(self, conn: _Connection, data: memoryview) -> bool:
        """Tell a session from LUTE's plain frames by the first octets; False when the connection was refused."""
        if _session.starts_session(data[:1]):
            conn.kind = "session"
            conn.session = self._make_session()
            return True
        if self._require_auth:
            error = AuthenticationError("LUTE frames without a session on an Executor that requires "
                                        "authentication (a LUTE Task, or a lute_ipc Task without LUTE_IPC_PROTOCOL)")
            _count_error(self.stats, error)
            self._log_once("plain-refused", "%s: refused: %s", conn.name, error)
            # A lute_ipc Task that missed LUTE_IPC_PROTOCOL reads this refusal; LUTE's ignore it.
            conn.outgoing += _session.refusal("this Executor requires authentication: LUTE's plain frames are "
                                              "refused (is LUTE_IPC_PROTOCOL missing from the Task's environment?)")
            self._close(conn, None)
            return False
        conn.kind = "plain"
        conn.decoder = self._make_decoder(self._error_callback(conn))
        self._set_proven(conn)
        return True

    def _set_proven(self, conn: _Connection) -> None:
        conn.proven = True
        self._unproven.pop(conn.serial, None)

    def _session_data(self, conn: _Connection, data: memoryview) -> None:
        session = conn.session
        assert session is not None
        self._session_events(conn, session.receive(data))

    def _session_events(self, conn: _Connection, events: List[_session.Event]) -> None:
        messages: List[Any] = []
        for kind, value in events:
            if kind == _session.BODY:
                self.stats.records += 1
                messages.extend(conn.decoder.feed(value))
            elif kind == _session.SEND:
                conn.outgoing += value
            elif kind == _session.CONFIRM_REQUESTED:
                if messages:
                    self._deliver_from(conn, messages)
                    messages = []
                conn.ack_due = True
                if not conn.waiting:
                    self._acknowledge(conn)
            elif kind == _session.ESTABLISHED:
                self._set_proven(conn)
                self.stats.sessions += 1
                conn.decoder = self._make_decoder(self._error_callback(conn))
            elif kind == _session.FAILED:
                self._session_failed(conn, value)
        if messages:
            self._deliver_from(conn, messages)
        if conn.outgoing:
            self._send_pending(conn)

    def _session_failed(self, conn: _Connection, error: ProtocolError) -> None:
        _count_error(self.stats, error)
        if isinstance(error, _session.RecordRejected):
            self.stats.records_rejected += 1
        elif isinstance(error, AuthenticationError):
            self.stats.handshake_failures += 1
        kind = type(error).__name__
        conn.close_reason = f"{kind}: {error}"
        proven = conn.session is not None and conn.session.proven
        if proven and not isinstance(error, _session.RecordRejected):
            conn.outgoing += conn.session.reject(str(error))  # type: ignore[union-attr]
        if not proven:
            # anyone who can connect can fail a handshake: logged once per reader, then counted
            self._log_once(f"handshake-{kind}", "%s: %s: %s; closing the connection", conn.name, kind, error)
        elif kind not in conn.logged:
            conn.logged.add(kind)
            logger.warning("%s: %s: %s; closing the connection", conn.name, kind, error)

    def _send_pending(self, conn: _Connection) -> None:
        """Send what waits for the Task without blocking (acknowledgements are small and cumulative)."""
        try:
            sent = conn.sock.send(conn.outgoing)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            conn.outgoing.clear()
            self._sending.pop(conn.serial, None)
            return
        del conn.outgoing[:sent]
        if conn.outgoing:
            self._sending[conn.serial] = conn
        else:
            self._sending.pop(conn.serial, None)

    def _end_of_stream(self, conn: _Connection, reason: Optional[str]) -> None:
        """The Task closed (or the connection failed): deliver what can be salvaged, count the rest."""
        if conn.decoder is not None:
            salvaged = conn.decoder.feed_eof()
            if salvaged:
                self.stats.salvaged += len(salvaged)
                self._deliver_from(conn, salvaged)
        session = conn.session
        if session is not None and session.proven and session.buffered:
            self.stats.records_truncated += 1
            self._log_once("truncated", "%s ended inside a session record (%d octets): its messages were not "
                           "acknowledged, the Task reports them", conn.name, session.buffered)
        self._close(conn, reason)

    def _sweep(self, now: float) -> None:
        """Close connections that stayed unproven too long, and plain ones idle mid-frame (never one
        with unread octets in its kernel buffer)."""
        for conn in list(self._unproven.values()):
            if time.monotonic() - conn.opened > self.handshake_timeout and not _has_unread(conn.sock):
                self.stats.unproven_closed += 1
                self._close(conn, f"not proven within handshake_timeout={self.handshake_timeout:g} s")
        limit = self.idle_timeout
        for conn in list(self._connections.values()):
            if conn.kind == "plain" and conn.decoder.buffered and now - conn.last_activity > limit \
                    and not _has_unread(conn.sock):
                self.stats.idle_closed += 1
                self._close(conn, f"incomplete frame ({conn.decoder.buffered} bytes buffered) and no data "
                                  f"for {now - conn.last_activity:.1f} s (idle_timeout={limit:g} s)")

    def _close(self, conn: _Connection, reason: Optional[str]) -> None:
        if self._connections.pop(conn.serial, None) is None:
            return
        self._unproven.pop(conn.serial, None)
        self._fresh.pop(conn.serial, None)
        self._sending.pop(conn.serial, None)
        if conn.outgoing:
            try:
                conn.sock.send(conn.outgoing)  # a last refusal record, if it fits
            except OSError:
                pass
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
        self._resume_accepting()


def session_factory(key: Optional[bytes], require_auth: bool, max_message: int) -> SessionFactory:
    """Makes the Executor side of each new session."""
    max_record = max_message + RECORD_SLACK

    def make() -> _session.ExecutorSession:
        return _session.ExecutorSession(key, require_auth=require_auth, max_message=max_message,
                                        max_record=max_record)

    return make
