"""Task side of raw stream sockets (Unix or TCP, also through the ssh tunnel): the links.

* :class:`SessionLink`: to a lute_ipc Executor. Opens the connection with the session
  handshake (:mod:`lute_ipc.transport.session`), sends each batch of frames as one data
  record and learns from the Executor's acknowledgements what it took: :meth:`SessionLink.confirm`
  returns once every message was taken and otherwise raises TransportError naming how many
  were not confirmed. It asks for an acknowledgement only where it then waits for it
  (``confirm``, ``close``, exit): nothing comes back unasked, so a Task that ends without
  reading (``os._exit``) never leaves unread data in its socket, for which Linux would reset
  the TCP connection and discard what the kernel had not sent yet.
* :class:`PlainLink`: to LUTE's own Executor: exactly LUTE's bytes (the frames it is given),
  nothing else; LUTE sends no acknowledgements, so delivery cannot be confirmed.

Both implement the link interface of :mod:`lute_ipc.transport` (``pid``, ``max_message``,
``open()``, ``send(pieces, messages)``, ``confirm(timeout)``, ``close()``). Sends never
block in the kernel while the Executor reads slowly: they wait for room as long as it takes
(backpressure is not a failure). What tells a dead Executor from a slow one:

* the Executor process ended: the connection ends (EOF or reset), seen at once;
* the Executor's host or the network path died (TCP): while bytes wait for TCP
  acknowledgements, the kernel's retransmission/probe counters (:class:`AckWatch`); while
  nothing is in flight (waiting for a session acknowledgement), TCP keep-alive probes, which
  the Executor's kernel answers however slowly the Executor reads. Session acknowledgements
  cannot make this distinction on their own: a paused consumer does not acknowledge either.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import sys
import time
from typing import Any, Callable, List, Optional

from ..errors import AuthenticationError, TransportError
from . import process as _process
from . import session as _session

__all__ = ["SessionLink", "PlainLink", "AckWatch", "connect_unix", "connect_tcp", "send_all", "peer_closed",
           "TCP_INFO", "TCP_INFO_HEAD", "STALL_CHECK"]

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
TCP_INFO_HEAD = struct.Struct("8B13I")
"""The start of Linux's ``struct tcp_info``, up to ``tcpi_last_ack_recv``: field 2 is
``tcpi_retransmits``, 3 ``tcpi_probes``, 20 ``tcpi_last_ack_recv`` (ms)."""
STALL_CHECK = 1.0
"""Seconds between two looks at a TCP connection's acknowledgements while data waits."""
_IOV_MAX = 512
_RECV = 65536
_RESET_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_PEER_CHECK_AFTER = 0.01
"""Seconds of send inactivity after which a link looks for what the Executor sent (EOF, acks)."""
_HANDSHAKE_TIMEOUT = 10.0
_JOIN_BELOW = 16 * 1024
"""Records smaller than this are joined into one buffer (a copy costs less than a gathered send)."""


class AckWatch:
    """Tells a dead network path from a slow Executor, from the kernel's view of a TCP connection.

    A live Executor's kernel acknowledges what arrives and, while the receive window is closed
    (the Executor reads slowly: backpressure), answers the window probes, however long that
    lasts: the unanswered-retransmission and unanswered-probe counters stay at 0. When the
    path is cut or the host is down nothing is answered: a counter stays above 0 and the last
    acknowledgement ages. :meth:`sample` reports the connection dead once two or more samples
    in a row found something unanswered and nothing was acknowledged for ``timeout`` seconds.

    Linux only (``TCP_INFO``). ``TCP_USER_TIMEOUT`` cannot make this distinction: Linux also
    applies it to a closed window, so a consumer slower than the timeout would get its Tasks'
    connections aborted with messages in them.
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
        self.due_at = now + STALL_CHECK
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_HEAD.size)  # type: ignore[arg-type]
        except OSError:
            return self.stalled_for
        if len(info) < TCP_INFO_HEAD.size:
            return self.stalled_for
        fields = TCP_INFO_HEAD.unpack_from(info)
        if not (fields[2] or fields[3]):  # no retransmission or window probe waits for an answer
            self._unanswered_since = None
            self.stalled_for = 0.0
        elif self._unanswered_since is None:  # one sample is not enough: an answer may be on its way
            self._unanswered_since = now
        else:
            stalled = min(fields[20] / 1000.0, now - self._unanswered_since + STALL_CHECK)
            self.stalled_for = stalled if stalled >= self.timeout else 0.0
        return self.stalled_for


def _is_tcp(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def _watch_for(sock: socket.socket, send_timeout: float) -> Optional[AckWatch]:
    if send_timeout > 0 and TCP_INFO is not None and _is_tcp(sock):
        return AckWatch(send_timeout)
    return None


def _keep_alive(sock: socket.socket, send_timeout: float) -> None:
    """TCP keep-alive: a dead Executor host is noticed while nothing is in flight (about
    ``send_timeout`` seconds); a live one answers from its kernel, however slowly it reads."""
    if send_timeout <= 0 or not _is_tcp(sock):
        return
    idle = max(1, int(send_timeout / 2))
    interval = max(1, int(send_timeout / 6))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3)):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        pass


def _unreachable(peer: str, stalled: float, send_timeout: float) -> str:
    return (f"the Executor's host {peer} has acknowledged nothing for {stalled:.0f} s "
            f"(send_timeout={send_timeout:g} s): the network path to it or the host is down")


def _peer_name(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "(address unknown)"
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def connect_unix(path: str) -> socket.socket:
    """A connected Unix stream socket (TransportError saying what to check)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot connect to the Executor's Unix socket {path}: {exc}. Is the Executor "
                             "running, and is LUTE_SOCKET the path it exported?") from exc
    return sock


def connect_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket with ``TCP_NODELAY`` (TransportError saying what to check)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise TransportError(f"cannot connect to the Executor at {host}:{port} over TCP: {exc}. Is the "
                             "Executor running, and are LUTE_EXECUTOR_HOST/LUTE_PORT the values it "
                             "exported?") from exc
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_all(sock: socket.socket, pieces: List[Any], stalled: Optional[Callable[[], None]] = None) -> None:
    """Send every octet of ``pieces``, in order, with gathered writes (``sendmsg``).

    While the socket buffer is full it waits for room, as long as it takes. Without
    ``stalled`` it waits in the kernel (a blocking send). With ``stalled`` writes never block
    in the kernel: it waits in ``poll`` and calls ``stalled`` after every :data:`STALL_CHECK`
    seconds without room (``stalled`` raises to give up).
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
            if not poller.poll(None if stalled is None else STALL_CHECK * 1000) and stalled is not None:
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


def peer_closed(sock: socket.socket) -> bool:
    """True when the peer of a socket it never sends on closed its end (readable means EOF/reset)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as exc:
        return exc.errno != errno.EAGAIN


class _StreamBase:
    """A connection opened by ``connect()``; the process that opened it is :attr:`pid`."""

    max_message: Optional[int] = None
    keyed = False
    desc = ""
    queues_in_process = False
    """Link interface: a send returns once its octets are in the kernel."""
    tunnel: Any = None
    """The ssh tunnel the connections go through (owned by whoever made the link), or None."""

    def __init__(self, connect: Callable[[], socket.socket], *, send_timeout: float = 0.0) -> None:
        self._connect = connect
        self._sock: Optional[socket.socket] = None
        self._send_timeout = max(0.0, float(send_timeout))
        self._watch: Optional[AckWatch] = None
        self._last_send = 0.0
        self.pid = _process.pid()
        """The process that created the link; no other process sends on it."""
        self.reconnects = 0

    def _attach(self, sock: socket.socket) -> socket.socket:
        self._sock = sock
        self._last_send = time.monotonic()
        self._watch = _watch_for(sock, self._send_timeout)
        _keep_alive(sock, self._send_timeout)
        return sock

    def _send(self, sock: socket.socket, pieces: List[Any]) -> None:
        watch = self._watch
        if watch is not None and time.monotonic() >= watch.due_at:
            self._check_answers()
        send_all(sock, pieces, None if watch is None else self._check_answers)
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
            raise TransportError(reason)

    def _abort(self) -> None:
        """Close the connection at once (a reset: the kernel stops retrying what it still holds)."""
        sock, self._sock, self._watch = self._sock, None, None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            sock.close()

    def _drop(self) -> None:
        sock, self._sock, self._watch = self._sock, None, None
        if sock is not None:
            sock.close()


class PlainLink(_StreamBase):
    """LUTE's bytes to LUTE's Executor: one connection per send, closed once sent.

    LUTE's raw-socket Executor (0.3.0) serves one connection at a time and decodes what it
    read only when the peer closes it, as LUTE's own Tasks do after each message. So each
    :meth:`send` (one message, or one flush of a batch) goes on its own connection, half-closed
    right after (the Executor sees the messages while the Task runs). The next send first waits
    until the Executor has read that connection to its end and closed it (LUTE's Executor does
    so at once; a lute_ipc Executor once it delivered its messages): messages keep their order
    on an Executor that reads connections in parallel, and a slow one slows the Task down
    (backpressure) instead of piling up connections. :meth:`open` connects (LUTE's
    ``delayed_setup()``); the first send uses that connection. :meth:`rest` and :meth:`close`
    leave nothing open. :meth:`confirm` can only say that everything was handed to the
    kernel: LUTE's Executor does not acknowledge.
    """

    def __init__(self, connect: Callable[[], socket.socket], *, send_timeout: float = 0.0) -> None:
        super().__init__(connect, send_timeout=send_timeout)
        self._sent: Optional[socket.socket] = None  # the last connection sent on, half-closed

    def open(self) -> None:
        """Connect now (TransportError with the reason when the Executor is unreachable)."""
        if self._sock is None:
            self._attach(self._connect())

    def send(self, pieces: List[Any], messages: int) -> None:
        """Send the ``messages`` whole frames in ``pieces`` on a connection of their own; TransportError
        when that fails or a lute_ipc Executor refused the connection (it requires a session)."""
        self._settle(wait=True)
        sock = self._sock
        if sock is not None and time.monotonic() - self._last_send > _PEER_CHECK_AFTER and self._peer_gone(sock):
            self._drop()  # the connection open() made was closed by the Executor meanwhile
            self.reconnects += 1
            sock = None
        if sock is None:
            sock = self._attach(self._connect())
        try:
            self._send(sock, pieces)
            sock.shutdown(socket.SHUT_WR)  # the end of this connection's messages: LUTE decodes them now
        except TransportError:
            raise
        except OSError as exc:
            self._drop()
            raise TransportError(f"sending {messages} message(s) to LUTE's Executor failed: {exc}") from exc
        self._sock, self._watch, self._sent = None, None, sock

    def _settle(self, wait: bool) -> None:
        """Close the last connection sent on: once the Executor closed it (``wait``), or now."""
        sock, self._sent = self._sent, None
        if sock is None:
            return
        try:
            if wait:
                select.select([sock], [], [])  # readable: the Executor's EOF (or its refusal)
            reason = None
            try:
                data = sock.recv(1024, _DONTWAIT)
            except OSError:
                data = b""
            if data:
                reason = _session.parse_refusal(data)
            if reason is not None:
                raise TransportError(f"the Executor refused this connection: {reason}")
        finally:
            sock.close()

    def _peer_gone(self, sock: socket.socket) -> bool:
        """True when the Executor closed the connection; TransportError when it refused it (a
        lute_ipc Executor that requires authentication sends its reason; LUTE's sends nothing)."""
        try:
            data = sock.recv(1024, socket.MSG_PEEK | _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        reason = _session.parse_refusal(data) if data else None
        if reason is not None:
            self._drop()
            raise TransportError(f"the Executor refused this connection: {reason}")
        return not data

    def confirm(self, timeout: Optional[float] = None) -> None:
        """LUTE's Executor sends no acknowledgements: only a refusal already received is raised."""
        sock = self._sock
        if sock is not None and self._peer_gone(sock):
            self._drop()

    def rest(self) -> None:
        """Close every connection now (what was sent is in the kernel); the next send opens a new one.
        TransportError when a lute_ipc Executor had refused a connection."""
        try:
            self._settle(wait=False)
        finally:
            self.close()

    def close(self) -> None:
        """Close the connections; TransportError when the Executor had refused one."""
        try:
            self._settle(wait=False)
            self.confirm(0)
        finally:
            self._drop()


class SessionLink(_StreamBase):
    """A session connection to a lute_ipc Executor (reopened, with a new handshake, when needed).

    Args:
        connect: opens a new connection (raises TransportError with the reason).
        key: ``LUTE_IPC_KEY`` (bytes) or None.
        send_timeout: TCP: seconds the Executor's host may answer nothing before the link is
            declared dead (0: as long as TCP waits).
        handshake_timeout: seconds :meth:`open` waits for the Executor's answers.

    Counters (this connection): ``sent`` messages handed to the kernel, ``taken`` and
    ``refused`` as last acknowledged by the Executor.
    """

    def __init__(self, connect: Callable[[], socket.socket], key: Optional[bytes], *, send_timeout: float = 0.0,
                 handshake_timeout: float = _HANDSHAKE_TIMEOUT, exit_timeout: Optional[float] = None) -> None:
        super().__init__(connect, send_timeout=send_timeout)
        self.exit_timeout = exit_timeout
        """Link interface (optional): seconds the confirmation at interpreter exit waits (None: as
        long as the connection lives). What was sent is in the kernel: it is still delivered
        after the Task's exit; the wait only decides what is reported as confirmed."""
        self._key = key
        self._handshake_timeout = handshake_timeout
        self._session: Optional[_session.TaskSession] = None
        self._buffer = bytearray(_RECV)
        self._last_look = 0.0
        self.lost_unconfirmed = 0
        """Messages sent on sessions that ended before confirming them (read by the writer)."""
        self._reset_counts()

    def _reset_counts(self) -> None:
        self.sent = 0
        self.taken = 0
        self.refused = 0
        self._reported_refused = 0
        self._rejection: Optional[str] = None

    @property
    def keyed(self) -> bool:  # type: ignore[override]
        """True when the current session is authenticated (records tagged under the key)."""
        return self._session is not None and self._session.keyed

    @property
    def unconfirmed(self) -> int:
        """Messages sent on this connection that the Executor has not acknowledged yet."""
        return self.sent - self.taken - self.refused

    # ------------------------------------------------------------------ opening
    def open(self) -> None:
        """Connect and run the handshake. AuthenticationError when the key is missing or wrong
        (raised at once, nothing was sent), TransportError when the Executor is unreachable."""
        if self._sock is not None:
            return
        sock = self._connect()
        session = _session.TaskSession(self._key)
        try:
            sock.sendall(session.opening())
            deadline = time.monotonic() + self._handshake_timeout
            while not session.established:
                data = self._recv_until(sock, deadline)
                for kind, value in session.receive(data):
                    if kind == _session.SEND:
                        sock.sendall(value)
                    elif kind == _session.REJECTED:
                        raise AuthenticationError(f"the Executor refused this Task: {value}")
                    elif kind == _session.FAILED:
                        raise value if isinstance(value, AuthenticationError) else TransportError(
                            f"the session handshake with the Executor failed: {value}")
        except BaseException:
            sock.close()
            raise
        self._session = session
        self.max_message = session.max_message
        self._reset_counts()
        self._attach(sock)

    def _recv_until(self, sock: socket.socket, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            raise TransportError(f"the Executor did not answer the session handshake within "
                                 f"{self._handshake_timeout:g} s (is it a lute_ipc Executor? LUTE_IPC_PROTOCOL "
                                 "is set in this Task's environment)")
        try:
            data = sock.recv(4096)
        except OSError as exc:
            raise TransportError(f"the connection to the Executor failed during the handshake: {exc}") from exc
        if not data:
            raise TransportError("the Executor closed the connection during the handshake (too many "
                                 "connections not yet authenticated, or it is shutting down)")
        return data

    # ------------------------------------------------------------------ sending
    def send(self, pieces: List[Any], messages: int) -> None:
        """Send the ``messages`` whole frames in ``pieces`` as one data record.

        Raises TransportError (naming the messages that were not confirmed) when the
        connection failed, the Executor refused messages, or its host stopped answering;
        the next send opens a new session.
        """
        sock = self._sock
        if sock is None:
            self.open()
            sock = self._sock
            assert sock is not None
        now = time.monotonic()
        if now - self._last_look >= _PEER_CHECK_AFTER:
            self._last_look = now
            self._receive(sock, block=False)
            if self._sock is None:  # the Executor closed it after confirming everything: reopen
                self.open()
                sock = self._sock
                assert sock is not None
        session = self._session
        assert session is not None
        if len(pieces) == 1 and type(pieces[0]) in (bytes, bytearray):
            size = len(pieces[0])
        else:
            size = 0
            for piece in pieces:
                size += memoryview(piece).nbytes
        head, tail = session.record(_session.DATA, pieces, size)
        if size <= _JOIN_BELOW and len(pieces) == 1:  # small: one buffer, one plain send
            out: List[Any] = [b"".join((head, pieces[0], tail))]
        else:
            out = [head, *pieces]
            if tail:
                out.append(tail)
        try:
            self._send(sock, out)
        except TransportError as exc:
            raise self._lost(str(exc)) from exc
        except OSError as exc:
            raise self._lost(f"sending to the Executor failed: {exc}") from exc
        self.sent += messages  # (a record cut by a failed send is never taken: its messages were not sent)

    def confirm(self, timeout: Optional[float] = None) -> None:
        """Wait until the Executor acknowledged every message sent (``timeout`` None: as long as
        the connection lives; 0: only look at what already arrived). TransportError names the
        messages not confirmed (the connection failed, the wait ran out) or refused."""
        sock = self._sock
        if sock is None:
            return
        if timeout == 0:  # what already arrived (looked at most every _PEER_CHECK_AFTER: no syscall per call)
            now = time.monotonic()
            if now - self._last_look >= _PEER_CHECK_AFTER:
                self._last_look = now
                self._receive(sock, block=False)
            else:
                self._raise_refused()
            return
        session = self._session
        assert session is not None
        if self.unconfirmed > 0:
            try:
                self._send(sock, [session.confirm_request()])
            except (OSError, TransportError) as exc:
                raise self._lost(f"asking the Executor for confirmation failed: {exc}") from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.unconfirmed > 0:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise TransportError(f"{self.unconfirmed} message(s) were not confirmed by the Executor within "
                                     f"{timeout:g} s (it may still read them)")
            self._receive(sock, block=True, wait=wait)
            if self._sock is None:
                return
        self._raise_refused()

    def close(self) -> None:
        """Confirm everything (as long as the Executor lives), then close. TransportError names what was not
        confirmed; the connection is released either way."""
        try:
            self.confirm(None)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close without waiting for confirmation (a bounded wait already ran out and named what was
        not confirmed): what was sent stays in the kernel and is still delivered."""
        self._drop()
        self._session = None

    def rest(self) -> None:
        """At exit, once everything was confirmed: close the connection (no socket is left for the
        interpreter to find open); a later send (an exit handler logging) opens a new session."""
        self.close()

    # ------------------------------------------------------------------ receiving
    def _receive(self, sock: socket.socket, *, block: bool, wait: Optional[float] = None) -> None:
        """Read what the Executor sent (acknowledgements, a refusal, EOF) and act on it."""
        if block:
            step = STALL_CHECK if self._watch is not None else wait
            if wait is not None and step is not None:
                step = min(step, wait)
            if not select.select([sock], [], [], step)[0]:
                if self._watch is not None:
                    self._check_answers_or_lose()
                return
        try:
            data = sock.recv_into(self._buffer, 0, 0 if block else _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            self._raise_refused()
            return
        except OSError as exc:
            raise self._lost(f"the connection to the Executor failed: {exc}") from exc
        if not data:
            if self.unconfirmed or self._rejection:
                raise self._lost("the Executor closed the connection")
            self._drop()  # everything was confirmed: the next send opens a new session
            return
        session = self._session
        assert session is not None
        for kind, value in session.receive(memoryview(self._buffer)[:data]):
            if kind == _session.ACKED:
                self.taken, self.refused = value
            elif kind == _session.REJECTED:
                self._rejection = value
            elif kind == _session.FAILED:
                raise self._lost(f"the Executor broke the session protocol: {value}")
        if self._rejection is not None:
            raise self._lost(f"the Executor refused this Task's data: {self._rejection}")
        self._raise_refused()

    def _check_answers_or_lose(self) -> None:
        try:
            self._check_answers()
        except TransportError as exc:
            raise self._lost(str(exc)) from exc

    def _raise_refused(self) -> None:
        new = self.refused - self._reported_refused
        if new > 0:
            self._reported_refused = self.refused
            raise TransportError(f"the Executor refused {new} message(s) this Task sent (they could not be "
                                 "decoded there: see the Executor's log); the others were delivered")

    def _lost(self, reason: str) -> TransportError:
        """Drop the connection; the error names the messages it leaves unconfirmed."""
        unconfirmed = self.unconfirmed
        refused = self.refused - self._reported_refused
        self.lost_unconfirmed += unconfirmed
        self._abort()
        self._session = None
        self._reset_counts()
        detail = f"{unconfirmed} message(s) sent on it were not confirmed" if unconfirmed else \
            "no message was left unconfirmed"
        if refused > 0:
            detail += f" and {refused} were refused"
        kind = TransportError
        if self.tunnel is not None:  # the ssh tunnel's end is the cause: say so (TunnelError)
            try:
                self.tunnel.check()
            except TransportError as exc:
                reason, kind = f"{exc}; {reason}", type(exc)
        return kind(f"{reason}: {detail} (the next write opens a new connection)")
