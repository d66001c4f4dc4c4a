"""Executor side of the ZeroMQ transport: the two sockets it binds and the thread that reads them.

* LUTE's endpoint (``LUTE_SOCKET``/``LUTE_PORT``): a PULL socket, exactly as LUTE's Executor has,
  for LUTE's own Tasks. Every ZeroMQ message holds whole frames. libzmq passes every message
  whatever its size (no ``MAXMSGSIZE``: libzmq would drop a larger one with its connection and
  say nothing), so the reader's decoder sees a frame over the limit and counts it
  (``FrameTooLarge``). On a Unix socket it has no receive high-water mark either: libzmq
  discards what the kernel still holds of a connection whose reading it had stopped (at the
  high-water mark) when its peer hangs up, so it never stops reading one (:data:`LUTE_RCVHWM_UNIX`).
  LUTE's Tasks cannot sign, so
  when the Executor requires authentication (the TCP default) this endpoint serves nobody: it
  stays bound only to refuse and count them (``stats.auth_failures``, one per ZeroMQ peer that
  completes the ZMTP handshake there, logged once): its messages are discarded unread, and
  with ``MAXMSGSIZE`` 256 libzmq drops a peer at its first larger message, before holding it.
* The session endpoint (``LUTE_IPC_ZMQ_SESSION``): a ROUTER socket for lute_ipc Tasks. With a
  key it is a CURVE server, and a ZAP handler (libzmq's authentication protocol, served by
  pyzmq's authenticator thread) accepts only the client key derived from ``LUTE_IPC_KEY``:
  libzmq completes or refuses the handshake before any message of the peer is accepted. It
  refuses ZeroMQ frames over :data:`~lute_ipc.transport.zeromq_wire.PART_LIMIT`, so a peer
  that has not completed the handshake makes it hold at most that much.

On both sockets libzmq drops a connection that has not completed the ZMTP handshake within
:data:`~lute_ipc.transport.zeromq_wire.HANDSHAKE_IVL` seconds (``ZMQ_HANDSHAKE_IVL``), so idle
connections cannot hold the Executor's descriptors for long (``stats.unproven_closed``), and
the process's open-file limit is raised to its hard limit when the sockets are created. Out of
descriptors, libzmq cannot accept: new connections wait in the listen backlog (and libzmq's I/O
thread retries at once). The reader looks for that every :data:`DESCRIPTOR_PROBE_INTERVAL`
seconds and counts each look that finds no descriptor free in ``stats.accept_failures``
(libzmq's own failure events are not asked for: it sends one per retry, hundreds of thousands
a second, which grew the Executor's memory without bound). Each of these is logged once.

:class:`ZmqReader` serves both sockets from one thread, delivers into the message queue
(waiting while it is full: backpressure) and acknowledges to every session what it took.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from .._queue import MessageQueue
from .._reader import DecoderFactory, _count_error, _ReaderThread
from ..errors import AuthenticationError, ProtocolError, SessionError, TransportError
from .zeromq_wire import HANDSHAKE_IVL, PART_LIMIT, curve_keys, decode_batch_header, encode_ack

__all__ = ["ACK_LINGER", "ExecutorSockets", "ZmqReader", "raise_open_file_limit"]

logger = logging.getLogger(__name__)

_BATCH = 1024
"""Messages handed to the queue at once (a ZeroMQ message may hold hundreds of frames)."""
_BATCH_BYTES = 1024 * 1024
"""Octets of LUTE's endpoint read before they are handed to the queue: while the queue is full
the reader holds at most this (plus one message), and libzmq's receive high-water mark bounds
the rest (a batch of a thousand large messages would hold them all and keep libzmq reading)."""
_READS_PER_STEP = 4096
_EVENTS_PER_READ = 1024
"""Monitor events read at once: a flood of them (connections opened and closed as fast as a peer
can) cannot keep the reader from acknowledging (an unbounded read once starved the
acknowledgements until a session Task's confirmation ran out)."""
_EVENT = struct.Struct("=Hi")
_EVENTS, _POLLIN = 15, 1
"""libzmq's ``ZMQ_EVENTS`` option and ``ZMQ_POLLIN`` bit: whether a socket holds a message, without
the exception of an empty non-blocking receive."""
_ZAP_DOMAIN = "lute_ipc"
_REFUSING_MAXMSGSIZE = 256
"""``MAXMSGSIZE`` of LUTE's endpoint when it refuses every message: ZMTP's handshake commands fit
(libzmq applies the limit to them too), a LUTE frame of any use does not."""
ACK_LINGER = 1.0
"""Seconds the Executor's close waits for libzmq to write the acknowledgements the reader sent
last (a socket closed with ``LINGER`` 0 discards them, and its Tasks would report messages the
Executor had queued as not confirmed); a Task whose host stopped reading costs at most that."""
LUTE_RCVHWM_UNIX = 0
"""Receive high-water mark of LUTE's endpoint on a Unix socket: none. libzmq stops reading a
connection at its high-water mark, and when that connection's peer then hangs up (a LUTE Task
ending while the consumer is slow) it discards what the kernel still held of it: measured 300
messages sent, 131 read with a mark of 4, all 300 with none (TCP is not affected). The socket is
private (mode 0600): its peers are this user's Tasks, whose output the Executor then holds as
LUTE's own Executor does."""
PEER_GONE = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
"""Values of libzmq's failed-handshake event when the peer hung up before the handshake ended
(nothing of it could be accepted: not a drop); a timeout is ``EAGAIN``."""
DESCRIPTOR_PROBE_INTERVAL = 0.2
"""Seconds between two looks of the reader for a process out of descriptors."""
KEEPALIVE_INTERVAL = 0.2
"""Seconds between two repeated acknowledgements while the reader waits for queue room: they tell
the Tasks that a stalled Executor is alive (see :class:`~lute_ipc.transport.zeromq_task.SessionLink`)."""


def raise_open_file_limit() -> None:
    """Raise this process's soft open-file limit to its hard limit (every connection a ZeroMQ
    socket accepts holds a descriptor). Nothing happens where the limit cannot be read or set."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > _OPEN_FILES_CEILING:
            hard = _OPEN_FILES_CEILING
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            logger.debug("raised the open-file limit from %d to %d for the ZeroMQ sockets", soft, hard)
    except (OSError, ValueError) as exc:
        logger.debug("could not raise the open-file limit: %s", exc)


_OPEN_FILES_CEILING = 1 << 20
"""Soft open-file limit never raised above this (a hard limit may be "unlimited")."""


class _RunKey:
    """ZAP credentials check: only the run's client key (derived from ``LUTE_IPC_KEY``) is let in."""

    def __init__(self, client_public: bytes) -> None:
        self._client_public = client_public

    def callback(self, domain: str, key: bytes) -> bool:
        return domain == _ZAP_DOMAIN and key == self._client_public


class ExecutorSockets:
    """The Executor's ZeroMQ context, its PULL socket (LUTE's endpoint) and ROUTER socket (session).

    Args:
        max_frame_size: largest payload accepted (the readers' decoders check it).
        rcvhwm: receive high-water mark of both sockets (ZeroMQ messages per connected Task).
        key: ``LUTE_IPC_KEY`` when the Executor has one: the session endpoint is then a CURVE
            server with a ZAP handler; ``None``: no CURVE (a private Unix socket).
        require_auth: the Executor requires authentication: LUTE's endpoint refuses every
            message (LUTE's Tasks cannot sign; lute_ipc Tasks use the session endpoint).
    """

    def __init__(self, *, max_frame_size: int, rcvhwm: int, key: Optional[bytes],
                 require_auth: bool = False) -> None:
        import zmq

        self._zmq = zmq
        self.context: Any = zmq.Context()
        self._authenticator: Any = None
        self.pull: Any = None
        self.router: Any = None
        self.router_monitor: Any = None
        self.pull_monitor: Any = None
        self.session_file: Optional[str] = None
        self.refuses_lute = require_auth
        """LUTE's endpoint refuses every message (see the module's docstring)."""
        raise_open_file_limit()
        try:
            self.pull = self.context.socket(zmq.PULL)
            self.pull.setsockopt(zmq.LINGER, 0)
            self.pull.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_IVL * 1000))
            if require_auth:
                self.pull.setsockopt(zmq.RCVHWM, 1)
                self.pull.setsockopt(zmq.MAXMSGSIZE, _REFUSING_MAXMSGSIZE)
            else:  # no MAXMSGSIZE: the reader checks the frame limit itself (see the module's docstring)
                self.pull.setsockopt(zmq.RCVHWM, rcvhwm)
            self.pull_monitor = self._monitor(self.pull, "lute",
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED  # (connections open: ZmqReader._busy)
                | (zmq.EVENT_HANDSHAKE_SUCCEEDED if require_auth else 0))
            self.router = self.context.socket(zmq.ROUTER)
            router = self.router
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_IVL * 1000))
            router.setsockopt(zmq.RCVHWM, rcvhwm)
            router.setsockopt(zmq.MAXMSGSIZE, PART_LIMIT)
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.SNDHWM, 0)  # acknowledgements only, a few bytes each
            if key is not None:
                from zmq.auth.thread import ThreadAuthenticator

                keys = curve_keys(key)
                self._authenticator = ThreadAuthenticator(self.context, log=logging.getLogger(__name__ + ".zap"))
                self._authenticator.start()
                self._authenticator.configure_curve_callback(_ZAP_DOMAIN, _RunKey(keys.client_public))
                router.curve_server = True
                router.curve_secretkey = keys.server_secret
                router.curve_publickey = keys.server_public
                router.zap_domain = _ZAP_DOMAIN.encode()
                router.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            self.router_monitor = self._monitor(router, "session",
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        except BaseException:
            self.close()
            raise

    def _monitor(self, sock: Any, name: str, events: int) -> Any:
        """A socket monitor of ``sock`` with no high-water mark on its queue: libzmq's I/O thread
        waits when a monitor's queue is full, and every connection's handshake with it (a reader
        waiting for queue room, past about a thousand events, stalled the Executor's endpoints)."""
        zmq = self._zmq
        address = f"inproc://lute-ipc-monitor-{name}-{os.getpid()}-{id(sock)}"
        sock.monitor(address, events)
        monitor = self.context.socket(zmq.PAIR)
        monitor.setsockopt(zmq.RCVHWM, 0)
        monitor.setsockopt(zmq.LINGER, 0)
        monitor.connect(address)
        return monitor

    @property
    def curve(self) -> bool:
        """True when the session endpoint authenticates its peers with CURVE."""
        return self._authenticator is not None

    def bind_unix(self, lute_path: str, session_path: str) -> None:
        """Bind LUTE's endpoint and the session endpoint to Unix socket paths (mode 0600)."""
        zmq = self._zmq
        if not self.refuses_lute:
            self.pull.setsockopt(zmq.RCVHWM, LUTE_RCVHWM_UNIX)
        for sock, path in ((self.pull, lute_path), (self.router, session_path)):
            try:
                sock.bind(f"ipc://{path}")
                os.chmod(path, 0o600)
            except (zmq.ZMQError, OSError) as exc:
                raise TransportError(f"the Executor cannot bind the ZeroMQ Unix socket {path}: {exc}. Check "
                                     "that its directory exists and is writable, or unset LUTE_SOCKET.") from exc
            if sock is self.router:
                self.session_file = path

    def bind_tcp(self, host: str, port: Optional[int], session_port: Optional[int] = None) -> Tuple[int, int]:
        """Bind both endpoints on ``host`` (``*``: every interface): LUTE's on ``port``, the
        session's on ``session_port`` (``None``: a free one). Returns both ports."""
        zmq = self._zmq
        if ":" in host:
            for sock in (self.pull, self.router):
                sock.setsockopt(zmq.IPV6, 1)
            host = f"[{host}]"
        try:
            if port is None:
                port = self.pull.bind_to_random_port(f"tcp://{host}")
            else:
                self.pull.bind(f"tcp://{host}:{port}")
            if session_port is None:
                session_port = self.router.bind_to_random_port(f"tcp://{host}")
            else:
                self.router.bind(f"tcp://{host}:{session_port}")
        except zmq.ZMQError as exc:
            raise TransportError(f"the Executor cannot bind ZeroMQ TCP {host}:{port or 'random'}: {exc}. "
                                 "Choose another LUTE_PORT (or unset it) or LUTE_BIND_HOST.") from exc
        return int(port), int(session_port)

    def close(self) -> None:
        """Close the sockets, stop the authenticator, terminate the context, remove the session file."""
        zmq = self._zmq
        for sock, monitor in ((self.router, self.router_monitor), (self.pull, self.pull_monitor)):
            if sock is not None and monitor is not None:
                try:
                    sock.disable_monitor()
                except zmq.ZMQError:
                    pass
        for sock in (self.router_monitor, self.pull_monitor, self.router, self.pull):
            if sock is not None:
                # the session endpoint's last acknowledgements still go out (see ACK_LINGER)
                sock.close(linger=int(ACK_LINGER * 1000) if sock is self.router else 0)
        self.router_monitor = self.pull_monitor = self.router = self.pull = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self.context is not None:
            self.context.term()
            self.context = None
        path, self.session_file = self.session_file, None
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


class _Session:
    __slots__ = ("next_sequence", "delivered")

    def ack(self) -> bytes:
        return encode_ack(self.next_sequence - 1, self.delivered)


    def __init__(self) -> None:
        self.next_sequence = 1
        self.delivered = 0


class ZmqReader(_ReaderThread):
    """Reads LUTE's endpoint and the session endpoint of :class:`ExecutorSockets` (used only here).

    ``make_decoder`` builds the decoder of LUTE's endpoint (it verifies signed frames and, when
    the Executor requires authentication, rejects plain ones); ``make_session_decoder`` the
    decoder of session batches, which are plain frames (CURVE authenticated their sender).

    Frames never span ZeroMQ messages (nor session batches); a ZeroMQ message that ends inside
    a frame is a ``TruncatedFrame``, and the whole frames found in its bytes are still delivered.
    A session batch whose sequence number is not the next of its connection (replayed,
    reordered, or a connection's first batch that is not number 1) is rejected whole and
    counted as a ``SessionError``. After delivering, the reader acknowledges to each session
    the last batch it took and how many of that session's messages are in the queue.
    A peer that fails the session handshake is counted in ``stats.auth_failures``.

    Backpressure: while the queue is full the thread waits in ``_deliver`` and reads nothing;
    libzmq then holds at most ``rcvhwm`` ZeroMQ messages per connection and stops reading the
    connections, so the Tasks wait at their own high-water mark. Meanwhile it repeats each
    session's last acknowledgement every :data:`KEEPALIVE_INTERVAL` seconds: the Executor is
    slow, not gone.
    """

    def __init__(self, sockets: ExecutorSockets, queue: MessageQueue, make_decoder: DecoderFactory,
                 make_session_decoder: DecoderFactory, *, name: str = "lute-ipc-zmq-reader") -> None:
        super().__init__(queue, name)
        self._sockets = sockets
        self._logged: Set[str] = set()
        self._decoder = make_decoder(self._on_error)
        self._session_decoder = make_session_decoder(self._on_error)
        self._sessions: Dict[bytes, _Session] = {}
        self._acks: Dict[bytes, bytes] = {}  # routing id -> acknowledgement still to send
        self._poller: Any = None
        self._next_keepalive = 0.0
        self._next_probe = 0.0
        self._lute_open = 0
        """Connections open on LUTE's endpoint (its monitor's accepted minus disconnected). A LUTE
        Task's connection is accepted before it can send (ZMTP waits for the Executor's greeting)
        and reported disconnected after libzmq read all it sent: while one is open, a message may
        be on its way (:meth:`_busy`)."""

    @property
    def sessions(self) -> int:
        """Session connections seen so far."""
        return len(self._sessions)

    def _on_error(self, error: ProtocolError) -> None:
        _count_error(self.stats, error)
        kind = type(error).__name__
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning("rejected data on a ZeroMQ socket (%s: %s); later errors of this kind are only "
                           "counted", kind, error)

    def _should_stop(self) -> bool:
        """Polled every 50 ms while the queue is full: also repeats every session's last
        acknowledgement every :data:`KEEPALIVE_INTERVAL` seconds, so that Tasks waiting on a
        stalled Executor know it is alive, and reads the socket monitors (what they report is
        counted while the reader waits, and libzmq's I/O thread never waits for the reader)."""
        if not self._stopping:
            self._read_events(self._sockets.router_monitor, "the session endpoint")
            self._read_events(self._sockets.pull_monitor, "LUTE's endpoint")
            self._probe_descriptors()
        if not self._stopping and self._sessions:
            now = time.monotonic()
            if now >= self._next_keepalive:
                self._next_keepalive = now + KEEPALIVE_INTERVAL
                for peer, session in self._sessions.items():
                    if session.next_sequence > 1:
                        self._acks.setdefault(peer, session.ack())
                self._send_acks()
        return self._stopping

    def _setup(self) -> None:
        import zmq

        self._zmq = zmq
        sockets = self._sockets
        self._poller = zmq.Poller()
        for sock in (sockets.pull, sockets.router, sockets.router_monitor, sockets.pull_monitor):
            self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)

    def _busy(self) -> bool:
        if self._lute_open:
            return True
        sockets = self._sockets
        return any(sock.get(_EVENTS) & _POLLIN for sock in (sockets.pull_monitor, sockets.pull, sockets.router))

    def _teardown(self) -> None:
        """On the way out: hand libzmq the acknowledgements not sent yet (the sockets' close waits
        :data:`ACK_LINGER` for them), so every batch the reader queued is confirmed to its Task."""
        if self._acks:
            self._send_acks()

    def _step(self) -> None:
        sockets = self._sockets
        events = dict(self._poller.poll(250 if not self._acks else 10))
        if self._wake_r in events:
            self._drain_wake()
        if sockets.router_monitor in events:
            self._read_events(sockets.router_monitor, "the session endpoint")
        if sockets.pull_monitor in events:
            self._read_events(sockets.pull_monitor, "LUTE's endpoint")
        if sockets.pull in events:
            self._read_pull()
        if sockets.router in events and not self._stopping:
            self._read_sessions()
        if self._acks:
            self._send_acks()
        self._probe_descriptors()

    def _probe_descriptors(self) -> None:
        """Every :data:`DESCRIPTOR_PROBE_INTERVAL` seconds: count (and log once) a look that finds
        the process out of descriptors (see the module's docstring)."""
        now = time.monotonic()
        if now < self._next_probe:
            return
        self._next_probe = now + DESCRIPTOR_PROBE_INTERVAL
        try:
            os.close(os.dup(self._wake_r))
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.stats.accept_failures += 1
            self._log_once("accept_failures", "the Executor is out of file descriptors (%s): ZeroMQ cannot accept "
                           "new connections, which wait in the listen backlog until one is free; raise the "
                           "open-file limit (ulimit -n)", os.strerror(exc.errno))

    # ---------------------------------------------------------------- LUTE's endpoint
    def _read_pull(self) -> None:
        """Read what LUTE's endpoint holds (a bounded amount); every message is whole frames, and
        a frame over the limit is counted by the decoder (libzmq passes it: no ``MAXMSGSIZE``)."""
        zmq, decoder = self._zmq, self._decoder
        recv = self._sockets.pull.recv
        refused = self._sockets.refuses_lute
        batch: List[Any] = []
        held = 0  # octets read into the batch
        for _ in range(_READS_PER_STEP):
            try:
                data = recv(zmq.NOBLOCK, copy=False).buffer
            except zmq.Again:
                break
            self.stats.bytes_received += len(data)
            if refused:  # its peer was counted when it connected
                continue
            batch += decoder.feed(data)
            batch += decoder.feed_eof()
            held += len(data)
            if len(batch) >= _BATCH or held >= _BATCH_BYTES:
                self._deliver(batch)
                batch, held = [], 0
                if self._stopping:
                    return
        if batch:
            self._deliver(batch)

    # ---------------------------------------------------------------- session endpoint
    def _read_sessions(self) -> None:
        zmq, decoder = self._zmq, self._session_decoder
        router = self._sockets.router
        recv_multipart = router.recv_multipart
        for _ in range(_READS_PER_STEP):
            try:
                parts = recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            peer = parts[0]
            session = self._sessions.get(peer)
            if session is None:
                session = self._sessions[peer] = _Session()
                self.stats.sessions += 1
            try:
                sequence, _ = decode_batch_header(parts[1] if len(parts) > 1 else b"")
            except ValueError as exc:
                self._on_error(SessionError(f"a session message without a valid batch header: {exc}"))
                continue
            if sequence != session.next_sequence:
                self._on_error(SessionError(
                    f"session batch number {sequence} where {session.next_sequence} was due (replayed, "
                    "reordered or spliced): rejected whole"))
                continue
            data = parts[2] if len(parts) == 3 else b"".join(parts[2:])
            self.stats.bytes_received += len(data)
            messages = decoder.feed(data)
            messages += decoder.feed_eof()
            if messages:
                self._deliver(messages)  # (a full queue: the keep-alive acknowledgements it repeats meanwhile
                session.delivered += len(messages)  # must not cover this batch yet, or it looks rejected)
            session.next_sequence += 1
            self._acks[peer] = session.ack()
            if self._stopping:
                return
            if not router.get(_EVENTS) & _POLLIN:  # nothing more waiting: acknowledge now, before this
                self._send_acks()  # thread gives the interpreter to the consumer it just woke
                return

    def _send_acks(self) -> None:
        zmq, router = self._zmq, self._sockets.router
        for peer, ack in list(self._acks.items()):
            try:
                router.send_multipart([peer, ack], zmq.NOBLOCK)
            except zmq.Again:  # its pipe is full: try again on the next step
                continue
            except zmq.ZMQError:  # the peer is gone (ROUTER_MANDATORY): nobody to tell
                self._sessions.pop(peer, None)
            del self._acks[peer]

    def _log_once(self, kind: str, text: str, *args: Any) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(text + "; later ones are only counted", *args)

    def _read_events(self, monitor: Any, endpoint: str) -> None:
        """Count (and log once) what the socket monitor of ``endpoint`` reports, at most
        :data:`_EVENTS_PER_READ` events a call (the rest on the next step)."""
        zmq, stats = self._zmq, self.stats
        for _ in range(_EVENTS_PER_READ):
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2 or len(frames[0]) != _EVENT.size:
                continue
            event, value = _EVENT.unpack(frames[0])
            if event == zmq.EVENT_ACCEPTED:
                self._lute_open += 1
                continue
            if event == zmq.EVENT_DISCONNECTED:
                self._lute_open = max(0, self._lute_open - 1)
                continue
            where = frames[1].decode(errors="replace")
            if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and value in PEER_GONE:
                continue  # the peer hung up before the handshake ended: it could send nothing
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL or (
                    event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and monitor is self._sockets.pull_monitor):
                stats.unproven_closed += 1
                self._log_once("unproven_closed", "a connection to %s %s closed before completing the ZeroMQ "
                               "handshake (gone, idle for %g s, or not ZeroMQ): nothing of it was accepted",
                               endpoint, where, HANDSHAKE_IVL)
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:  # LUTE's endpoint of an Executor requiring authentication
                self._on_error(AuthenticationError(
                    f"a ZeroMQ peer connected to LUTE's endpoint {where}, which takes no message while the Executor "
                    "requires authentication (LUTE's Tasks cannot sign): its messages are refused unread. For LUTE "
                    "Tasks set LUTE_IPC_REQUIRE_AUTH=0 in the Executor's environment; lute_ipc Tasks need the "
                    "Executor's LUTE_IPC_PROTOCOL"))
            else:
                self._on_error(AuthenticationError(
                    f"a peer of {endpoint} {where} failed the handshake (ZeroMQ event {event}, {value}): refused "
                    "before any message was accepted"))
