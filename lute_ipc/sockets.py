"""``SocketCommunicator``: LUTE's socket transport (raw sockets or ZeroMQ; Unix or TCP), a facade.

This module reads the environment, binds or picks a link, and hands the work to
:mod:`lute_ipc.transport` (raw sockets: :mod:`~lute_ipc.transport.raw_link` on the Task side,
:mod:`~lute_ipc.transport.raw_reader` on the Executor side, the session protocol of
:mod:`~lute_ipc.transport.session`; the writer :mod:`~lute_ipc.transport.writer`), the ZeroMQ
link and reader, :mod:`lute_ipc.tunnel` (cross-host Unix path) and the frame codec of
:mod:`lute_ipc.framing`. ``docs/ARCHITECTURE.md`` draws the whole picture.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import codec, lute_log
from . import env as _env
from ._queue import MessageQueue
from ._reader import ReaderStats
from ._writer import DEFAULT_SEND_TIMEOUT
from .communicator import Communicator
from .errors import (
    CommunicatorClosed,
    ConfigurationError,
    ProtocolError,
    TransportError,
    UsageError,
)
from .framing import FrameDecoder
from .message import Message, Party, require_message
from .transport import raw_bind, registry
from .transport.limits import frame_limit
from .transport.raw_link import PlainLink, SessionLink, connect_tcp, connect_unix
from .transport.raw_reader import StreamReader, session_factory
from .transport.writer import DEFAULT_FLUSH_INTERVAL, DEFAULT_FLUSH_SIZE, FrameWriter
from .transport.zeromq_executor import ExecutorSockets, ZmqReader
from .transport.zeromq_task import LutePushLink
from .transport.zeromq_task import SessionLink as ZmqSessionLink
from .tunnel import DEFAULT_TUNNEL_TIMEOUT, SshTunnel

__all__ = ["SocketCommunicator", "USE_ZMQ"]

logger = logging.getLogger(__name__)

USE_ZMQ: bool = _env.default_use_zmq()
"""Default transport when ``SocketCommunicator(use_zmq=None)``: LUTE's rule on ``LUTE_USE_ZMQ``
(unset: ZeroMQ when pyzmq is importable; ``"0"``: raw sockets; anything else: ZeroMQ).
Kept as a module attribute for compatibility with ``lute.execution.ipc.USE_ZMQ``."""

PROTOCOL = "lute-ipc/1"
"""What a lute_ipc Executor exports in ``LUTE_IPC_PROTOCOL``: its Tasks open sessions."""
_SOCKET_NAME = "lute.sock"
_FRAMES_PER_ZMQ_MESSAGE = 64
"""About how many messages one ZeroMQ message of a Task holds (a 64 KiB batch of ~1 KiB frames)."""
_ZMQ_RCVHWM_RANGE = (4, 64)
"""Bounds of the Executor's ZeroMQ receive high-water mark (ZeroMQ messages per connected Task)."""
_SESSION_SUFFIX = ".session"
"""The ZeroMQ session socket of a Unix Executor is its LUTE socket's path plus this."""


class SocketCommunicator(Communicator):
    """IPC over a Unix or TCP socket, with raw sockets or ZeroMQ (PUSH on the Task, PULL on the Executor).

    The Executor side calls :meth:`delayed_setup` first: it binds, starts one reader
    thread and exports the environment its Tasks inherit (``os.environ``, as LUTE):
    ``LUTE_EXECUTOR_HOST``; ``LUTE_IPC_PROTOCOL`` (``lute-ipc/1``: its Tasks open sessions);
    ``LUTE_SOCKET`` (a socket in a new private 0700 directory) or ``LUTE_PORT`` (a free port,
    bound atomically) when the user did not set them; and, when it requires authentication
    (TCP by default, ``require_auth=True`` or ``LUTE_IPC_REQUIRE_AUTH=1``) and
    ``LUTE_IPC_KEY`` is not set, a fresh per-run key in ``LUTE_IPC_KEY``. The Task side reads
    the same variables: Unix socket unless ``LUTE_USE_TCP`` is set; across hosts a Unix
    socket is reached through an ssh tunnel (:class:`~lute_ipc.tunnel.SshTunnel`).

    Two wire modes, chosen by what the Executor is (raw sockets; ZeroMQ: see its link):

    * ``LUTE_IPC_PROTOCOL`` set (a lute_ipc Executor): a **session** (``docs/PROTOCOL.md``
      section 5; ZeroMQ: a CURVE DEALER/ROUTER session, section 6). The Task proves the key
      in a handshake before sending anything (a missing or wrong key raises
      AuthenticationError from :meth:`delayed_setup`), its records carry sequence numbers
      under the tag (replays are rejected) and the Executor acknowledges what it took. All
      communicators of one process share one session link per Executor (raw or ZeroMQ; a
      forked child opens its own), so LUTE's pattern of a communicator per message costs one
      send per message, not a connection.
    * not set (LUTE's own Executor): exactly LUTE's bytes, ``MSG;;;<len>;;;<pickle>;;;GSM``
      with LUTE's class paths, unsigned, nothing else, on a connection of its own.

    A lute_ipc Executor serves both on the same raw socket, told apart by the first octets:
    LUTE Tasks as LUTE's Executor does when authentication is off (Unix sockets by default),
    refused (and counted) when it is on.

    Security: TCP requires authentication by default. If you turn that off on TCP
    (``require_auth=False`` or ``LUTE_IPC_REQUIRE_AUTH=0``, logged as a warning), payloads
    are decoded with the restricted (allow-list, ``LUTE_IPC_ALLOW``) unpickler unless you pass
    ``loads``. Unix sockets are private to your user (0600 socket in a 0700 directory), so
    they accept LUTE's unsigned frames unless authentication is required. **Risk**: TCP
    binds on all interfaces by default, as LUTE does: prefer ``bind_host="127.0.0.1"`` (or
    ``LUTE_BIND_HOST``) when Tasks run on the same machine.

    Args:
        party: ``Party.EXECUTOR`` (reads) or ``Party.TASK`` (writes).
        use_pickle: kept for LUTE compatibility; sockets always pickle.
        use_zmq: ZeroMQ (True) or raw sockets (False); ``None``: the module default
            :data:`USE_ZMQ` (from ``LUTE_USE_ZMQ``).
        require_auth: Executor: require Tasks to prove the key. ``None``: ``LUTE_IPC_REQUIRE_AUTH``
            when set, else True on TCP, False on Unix.
        loads: payload decoder on the Executor (default: full pickle, or the restricted
            unpickler when TCP runs without authentication).
        bind_host: address the Executor binds on TCP (default ``LUTE_BIND_HOST``, else all
            interfaces).
        max_frame_size: largest payload (bytes), both sides; default ``LUTE_IPC_MAX_FRAME_SIZE``,
            else 256 MiB. A Task's :meth:`write` of a larger message raises MessageTooLarge
            before sending anything.
        max_connections: raw Executor: connections open at once (default 1024, or half the
            process's open-file limit if lower). At the limit the oldest connection that has
            not proven itself is closed; when all are proven, new ones wait in the listen
            backlog (``stats.accept_pauses``). A proven connection is never closed to make room.
        idle_timeout: raw Executor: seconds a LUTE connection may hold an incomplete frame
            without sending a byte before it is closed (default 60; time the reader waits for
            queue room does not count).
        handshake_timeout: raw: seconds a connection may take to prove itself (both sides).
        queue_size: messages buffered for :meth:`read` before the reader stops reading
            (backpressure; default 100,000).
        linger: ZeroMQ Task: seconds :meth:`close` waits for the Executor to take what was
            sent (session, unless ``confirm_timeout`` is given; LUTE's Executor: for libzmq to
            hand it over); the session's :meth:`clear_communicator` and exit confirmation give
            up once the Executor sent nothing (no acknowledgement, no keep-alive) for that long.
            Raw session Task: seconds the confirmation at interpreter exit waits (default 5).
        flush_interval: Task: latency bound of the send buffer, seconds (default 0.001);
            ``0`` sends every message at once (write-through).
        flush_size: Task: buffered bytes that trigger a send (default 64 KiB, at most 512 KiB).
        connect_timeout: Task: seconds to wait for a connection (raw TCP), or that a ZeroMQ
            Task may stay without its first connection before :meth:`write` raises TransportError.
        send_timeout: TCP Task (raw or ZeroMQ, Linux): seconds the Executor's host may
            answer nothing before :meth:`write` (or :meth:`close`) raises TransportError
            (default 10; 0: wait as long as TCP does). This detects a cut network or a dead
            host; an Executor that is alive but reads slowly is not a timeout (backpressure).
        confirm_timeout: session Task: seconds :meth:`close` (ZeroMQ: also
            :meth:`clear_communicator`, which then raises when it runs out) waits for the
            Executor's acknowledgement (default None: raw, as long as the Executor lives, a frozen one
            included: docs/RELIABILITY.md, 4.9;
            ZeroMQ, ``linger``; ZeroMQ's :meth:`clear_communicator`: see ``linger``).
        ssh_options: Task across hosts: extra ssh arguments (default: ``LUTE_SSH_OPTIONS``).
        tunnel_timeout: Task across hosts: seconds to wait for the ssh tunnel.

    Task-side batching (:mod:`lute_ipc.transport.batching`): :meth:`write` frames into a
    send buffer that goes out (one system call, or one ZeroMQ message) when it reaches
    ``flush_size``, when its oldest message is ``flush_interval`` old (even if the Task is
    idle), at once for the first message after a quiet spell and for a message with a signal
    other than ``TASK_LOG``, on :meth:`flush`, :meth:`clear_communicator`, :meth:`close` and at
    normal interpreter exit. Large ``bytes``/``bytearray``/numpy payloads are sent before
    :meth:`write` returns, without being copied (scatter-gather). A Task killed with SIGKILL
    loses what was still buffered (at most ``flush_interval`` of ``TASK_LOG`` messages).

    Losses are reported, never silent. Task, session link: :meth:`clear_communicator` hands
    the buffer to the kernel and raises what is already known to be lost (ZeroMQ: it waits
    for the Executor's acknowledgement while the Executor is heard from, since libzmq holds
    the message in the Task's memory until its I/O thread writes it; see
    :meth:`clear_communicator`); :meth:`close`
    (and ``with``) also waits for the Executor's acknowledgement and raises TransportError
    naming the messages that were not confirmed; at exit the shared link is confirmed and
    losses are logged as errors. A send that failed in the background is raised by the next
    :meth:`write`/:meth:`flush`/:meth:`close`. Executor: every rejection is counted in
    :attr:`stats` and logged once; closing with messages received but not read logs one
    warning with their number.

    ZeroMQ notes: a frame over ``max_frame_size`` is counted (``FrameTooLarge``) and skipped, the
    frames beside it read; ``max_connections`` and ``idle_timeout`` apply to raw sockets.
    """

    max_frame_size: int = 0
    """The frame limit in force (set by :meth:`delayed_setup`)."""
    READ_TIMEOUT: float = 0.01
    """Seconds :meth:`read` waits when called without ``wait`` (LUTE's ``ACCEPT_TIMEOUT``)."""
    ACCEPT_TIMEOUT: float = READ_TIMEOUT
    EXIT_READ_WAIT: float = 5.0
    """Seconds at most that :meth:`read` waits, once per ended Task process, for what that Task
    sent before it exited to reach the queue (a large result may still be on its way)."""
    MSG_HEAD: bytes = b"MSG"
    MSG_SEP: bytes = b";;;"

    def __init__(
        self,
        party: Party = Party.TASK,
        use_pickle: bool = True,
        *,
        use_zmq: Optional[bool] = None,
        require_auth: Optional[bool] = None,
        loads: Optional[Callable[[Any], Any]] = None,
        bind_host: Optional[str] = None,
        max_frame_size: Optional[int] = None,
        max_connections: Optional[int] = None,
        idle_timeout: float = 60.0,
        handshake_timeout: float = 10.0,
        queue_size: int = 100_000,
        linger: float = 5.0,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        flush_size: int = DEFAULT_FLUSH_SIZE,
        connect_timeout: float = 10.0,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        confirm_timeout: Optional[float] = None,
        ssh_options: Optional[Sequence[str]] = None,
        tunnel_timeout: float = DEFAULT_TUNNEL_TIMEOUT,
    ) -> None:
        super().__init__(party=party, use_pickle=use_pickle)
        if (max_connections is not None and max_connections < 1) or idle_timeout <= 0 or queue_size < 1 \
                or linger < 0 or flush_interval < 0 or flush_size < 1 or send_timeout < 0 \
                or handshake_timeout <= 0 or (confirm_timeout is not None and confirm_timeout < 0):
            raise UsageError("max_connections, queue_size and flush_size must be >= 1, idle_timeout and "
                             "handshake_timeout > 0, linger, flush_interval, send_timeout and confirm_timeout >= 0")
        self._use_zmq_arg = use_zmq
        self._require_auth_arg = require_auth
        self._loads_arg = loads
        self._bind_host_arg = bind_host
        self._max_frame_size_arg = max_frame_size
        self.handshake_timeout = handshake_timeout
        self.confirm_timeout = confirm_timeout
        self._max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.queue_size = queue_size
        self.linger = linger
        self.flush_interval = flush_interval
        self.flush_size = flush_size
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self._ssh_options_arg = None if ssh_options is None else list(ssh_options)
        self.tunnel_timeout = tunnel_timeout
        self.use_zmq: bool = USE_ZMQ if use_zmq is None else bool(use_zmq)
        self._exported: Dict[str, str] = {}

    # Per-instance state whose start value is shared (class attributes: a Task creating a
    # communicator per message pays for what it sets, not for the Executor's resources).
    use_tcp: bool = False
    require_auth: bool = False
    desc = "Communicates through sockets (not set up yet: call delayed_setup())."
    _set_up = False
    _closed = False
    # Executor resources
    _queue: Optional[MessageQueue] = None
    _reader: Any = None
    _task_proc: Any = None  # the Task process last given to read()
    _waited_procs: Any = None  # WeakSet: the ended Task processes read() or has_messages waited for
    _listener: Optional[socket.socket] = None
    _zmq_sockets: Optional[ExecutorSockets] = None
    _zsocket: Any = None
    _socket_file: Optional[str] = None
    _private_dir: Optional[str] = None
    # Task resources
    _writer: Optional[FrameWriter] = None
    _lease: Optional[registry.Lease] = None
    """Set when the writer is this process's shared session link (:mod:`lute_ipc.transport.registry`)."""
    _tunnel: Optional[SshTunnel] = None

    # ------------------------------------------------------------------ setup
    def delayed_setup(self) -> None:
        """Acquire sockets (and, on the Executor, the reader thread). Idempotent.

        Raises ConfigurationError (environment/options), TransportError (bind/connect)
        or TunnelError (ssh) with a message saying what to fix.
        """
        if self._closed:
            raise CommunicatorClosed("this SocketCommunicator was closed; create a new one")
        if self._set_up:
            return
        if self._party == Party.TASK and self._attach_shared():
            self._set_up = True
            return
        self.use_tcp = _env.use_tcp()
        self.max_frame_size = frame_limit(self._max_frame_size_arg)
        kind = "TCP" if self.use_tcp else "Unix"
        self.desc = f"Communicates using ZMQ through {kind} sockets." if self.use_zmq \
            else f"Communicates through {kind} sockets."
        try:
            if self._party == Party.EXECUTOR:
                self._setup_executor()
            else:
                self._setup_task()
        except BaseException:
            self.close()
            self._closed = False
            raise
        self._set_up = True

    def _setup_executor(self) -> None:
        required = self._require_auth_arg if self._require_auth_arg is not None else _env.require_auth()
        self.require_auth = self.use_tcp if required is None else bool(required)
        if required is False and self._require_auth_arg is None:
            logger.warning("SECURITY: LUTE_IPC_REQUIRE_AUTH=0 turns authentication OFF for this Executor (%s): "
                           "Tasks are not asked to prove LUTE_IPC_KEY", "TCP" if self.use_tcp else "Unix")
        key = self._executor_key()
        loads = self._loads_arg
        if loads is None:
            if self.use_tcp and not self.require_auth:
                logger.warning("SECURITY: authentication is OFF on a TCP SocketCommunicator: anyone who can "
                               "reach the port can send data. Payloads are decoded with the restricted "
                               "(allow-list) unpickler; pass loads= to choose otherwise.")
                loads = codec.make_restricted_loads()
            else:
                loads = codec.loads
        elif self.use_tcp and not self.require_auth:
            logger.warning("SECURITY: authentication is OFF on a TCP SocketCommunicator and a custom loads= "
                           "is used: make sure it is safe for data from anyone on the network.")
        max_frame_size = self.max_frame_size
        require_auth = self.require_auth

        def make_decoder(on_error: Callable[[ProtocolError], None]) -> Any:
            return FrameDecoder(max_frame_size=max_frame_size, loads=loads, key=key,
                                require_auth=require_auth, on_error=on_error)

        def make_raw_decoder(on_error: Callable[[ProtocolError], None]) -> Any:
            # LUTE's plain frames, or the frames inside authenticated session records: no frame tags
            return FrameDecoder(max_frame_size=max_frame_size, loads=loads, on_error=on_error)

        self._queue = MessageQueue(self.queue_size)
        if self.use_zmq:
            # ZeroMQ sessions carry plain frames too: libzmq's CURVE authenticated the peer (and
            # every message) whenever this Executor requires authentication.
            self._reader = ZmqReader(self._bind_zmq(key), self._queue, make_decoder, make_raw_decoder)
        else:
            self._bind_raw()
            self._reader = StreamReader(self._listener, self._queue, make_raw_decoder,  # type: ignore[arg-type]
                                        session_factory(key, require_auth, max_frame_size),
                                        require_auth=require_auth, max_connections=self.max_connections,
                                        idle_timeout=self.idle_timeout, handshake_timeout=self.handshake_timeout)
        self._export(_env.EXECUTOR_HOST, socket.gethostname(), always=True)
        self._export(_env.IPC_PROTOCOL, PROTOCOL)
        self._export(_env.EXECUTOR_MAX_FRAME_SIZE, str(self.max_frame_size))
        self._reader.start()
        lute_log.executor_ready(self.use_zmq, self.use_tcp, self.address)

    def _executor_key(self) -> Optional[bytes]:
        """The user's ``LUTE_IPC_KEY``; else a new exported key when authentication is required; else None."""
        text = os.environ.get(_env.IPC_KEY)
        if text:
            return codec.parse_key(text)
        if not self.require_auth:
            return None  # unsigned frames are accepted: a key would only cost signing time
        key = codec.generate_key()
        self._export(_env.IPC_KEY, key.hex())
        return key

    def _export(self, name: str, value: str, always: bool = False) -> None:
        """Set an environment variable for the Tasks; remember it to undo on close (not the host)."""
        os.environ[name] = value
        if not always:
            self._exported[name] = value

    # Executor, raw
    def _bind_raw(self) -> None:
        if self.use_tcp:
            port = _env.port()
            self._listener = raw_bind.bind_tcp(self._bind_host(), port)
            if port is None:
                self._export(_env.PORT, str(self._listener.getsockname()[1]))
        else:
            path = self._unix_path_for_executor()
            self._listener = raw_bind.bind_unix(path)
            self._socket_file = path

    def _bind_host(self) -> Optional[str]:
        host = self._bind_host_arg if self._bind_host_arg is not None else _env.bind_host()
        return None if host in (None, "", "*", "0.0.0.0") else host

    def _unix_path_for_executor(self) -> str:
        """The socket path: ``LUTE_SOCKET`` (stale socket removed) or a new private one, exported."""
        path = _env.socket_path()
        if path is None:
            try:
                self._private_dir = tempfile.mkdtemp(prefix="lute-ipc-")  # mode 0700
            except OSError as exc:
                raise TransportError(f"cannot create a private directory for the Executor's socket in "
                                     f"{tempfile.gettempdir()}: {exc}. Set TMPDIR or LUTE_SOCKET.") from exc
            path = os.path.join(self._private_dir, _SOCKET_NAME)
            self._export(_env.SOCKET, path)
            return path
        raw_bind.remove_stale_socket(path)
        return path

    # Executor, ZeroMQ
    def _bind_zmq(self, key: Optional[bytes]) -> ExecutorSockets:
        """PULL at LUTE's address (for LUTE's Tasks) and the session ROUTER (for lute_ipc Tasks)."""
        sockets = self._zmq_sockets = ExecutorSockets(
            max_frame_size=self.max_frame_size, rcvhwm=_zmq_receive_hwm(self.queue_size), key=key,
            require_auth=self.require_auth)
        self._zsocket = sockets.pull
        fixed = _env.zmq_session()  # the user's, for an Executor restarted on the same addresses
        if self.use_tcp:
            if fixed is not None and not fixed.isdigit():
                raise ConfigurationError(f"{_env.ZMQ_SESSION}={fixed!r} is not a TCP port")
            port, session_port = sockets.bind_tcp(self._bind_host() or "*", _env.port(),
                                                  None if fixed is None else int(fixed))
            if _env.port() is None:
                self._export(_env.PORT, str(port))
            session = str(session_port)
        else:
            path = self._unix_path_for_executor()
            session = fixed or path + _SESSION_SUFFIX
            raw_bind.remove_stale_socket(session)
            sockets.bind_unix(path, session)
            self._socket_file = path
        if fixed is None:
            self._export(_env.ZMQ_SESSION, session)
        return sockets

    # Task
    def _attach_shared(self) -> bool:
        """Use this process's session link to the same Executor when there is one (the fast path
        of LUTE's communicator-per-message pattern); False when a link must be set up."""
        lease = registry.acquire(self._link_spec())
        if lease is None:
            return False
        self._lease = lease
        self._writer = writer = lease.writer
        self.use_tcp = lease.spec[2] is not None  # LUTE_USE_TCP (see _LINK_VARIABLES)
        link = writer.link
        self.require_auth = link.keyed
        self.max_frame_size = writer.max_message
        self.desc = link.desc
        return True

    def _link_spec(self) -> Tuple[Any, ...]:
        """What identifies a shared session link: the Executor's environment and the writer's options."""
        return (self.use_zmq, *_link_environment(), self._max_frame_size_arg, self.flush_interval, self.flush_size,
                self.send_timeout, self.connect_timeout, self.confirm_timeout, self.handshake_timeout, self.linger)

    def _setup_task(self) -> None:
        key_text = os.environ.get(_env.IPC_KEY)
        key = codec.parse_key(key_text) if key_text else None
        host = _env.executor_host()
        if host is None:
            raise ConfigurationError(
                "LUTE_EXECUTOR_HOST is not set: the Task does not know where its Executor is. Start the Task "
                "from an Executor (it exports LUTE_EXECUTOR_HOST and LUTE_SOCKET or LUTE_PORT), or set them.")
        if _env.executor_protocol() is None:
            self._setup_lute_peer_task(host)
            return
        if self.use_zmq and key is None and self.use_tcp and self._task_requires_auth():
            raise ConfigurationError(
                "LUTE_IPC_KEY is not set: a Task on TCP must sign its frames with the Executor's key. "
                "Start the Task from its Executor (which exports LUTE_IPC_KEY), copy LUTE_IPC_KEY from the "
                "Executor's environment, or (not recommended) run both sides with require_auth=False.")
        if self.use_zmq:  # the Executor's limit, when lower: refused at write(), naming the limit that applies
            theirs = _env.executor_max_frame_size()
            if theirs is not None and theirs < self.max_frame_size:
                self.max_frame_size = theirs
        spec = self._link_spec()
        tunnel_box: List[Optional[SshTunnel]] = [None]
        make_link = self._zmq_session_maker(host, key, tunnel_box) if self.use_zmq \
            else self._raw_session_maker(host, key, tunnel_box)

        def make_writer() -> FrameWriter:
            link = make_link()
            # a forked child's writer opens a link of its own (ZeroMQ: on a new context, the parent's kept)
            return FrameWriter(link, None, flush_interval=self.flush_interval, flush_size=self.flush_size,
                               max_message=self.max_frame_size,
                               relink=_relinker(link) if self.use_zmq else make_link)

        lease = registry.get_or_create(spec, make_writer, lambda: _close_tunnel(tunnel_box))
        writer = lease.writer
        try:
            writer.open()
        except BaseException:
            registry.discard(lease)
            _close_tunnel(tunnel_box)
            raise
        self._writer = writer
        self._lease = lease
        self.require_auth = writer.link.keyed

    def _raw_session_maker(self, host: str, key: Optional[bytes], tunnel_box: List[Optional[SshTunnel]]) -> \
            Callable[[], SessionLink]:
        """Makes the raw session link of this process (and, after fork, the child's)."""
        send_timeout, handshake_timeout = self.send_timeout, self.handshake_timeout

        def make_link() -> SessionLink:
            _close_tunnel(tunnel_box)  # a forked child's new link gets a tunnel of its own
            link = SessionLink(self._raw_connector(host, tunnel_box), key, send_timeout=send_timeout,
                               handshake_timeout=handshake_timeout, exit_timeout=self.linger)
            link.desc = self.desc
            link.tunnel = tunnel_box[0]
            return link

        return make_link

    def _zmq_session_maker(self, host: str, key: Optional[bytes], tunnel_box: List[Optional[SshTunnel]]) -> \
            Callable[[], ZmqSessionLink]:
        """Makes the ZeroMQ session link of this process (a forked child's is its ``renewed()``)."""

        def make_link() -> ZmqSessionLink:
            if self.use_tcp:
                _executor_port()  # LUTE_PORT is checked on every TCP Task (ConfigurationError)
            session = self._zmq_session_endpoint()
            if self.use_tcp:
                if not session.isdigit():
                    raise ConfigurationError(f"{_env.ZMQ_SESSION}={session!r} is not a TCP port")
                address, via = f"tcp://{_zmq_host(self._task_target(host))}:{session}", ""
            else:
                address, via = f"ipc://{self._tunnelled(host, session, tunnel_box)}", ""
                if tunnel_box[0] is not None:
                    via = f"through the ssh tunnel to {host}"
            link = ZmqSessionLink(address, key=key, linger=self.linger, max_frame_size=self.max_frame_size,
                                  connect_timeout=self.connect_timeout, send_timeout=self.send_timeout, via=via)
            link.desc = self.desc
            link.tunnel = tunnel_box[0]
            return link

        return make_link

    def _setup_lute_peer_task(self, host: str) -> None:
        """LUTE's own Executor: exactly its bytes, on a link of this communicator's own."""
        relink: Optional[Callable[[], Any]] = None
        if not self.use_zmq:
            link: Any = PlainLink(self._raw_connector(host), send_timeout=self.send_timeout)
        else:
            if self.use_tcp:
                address, via = f"tcp://{_zmq_host(self._task_target(host))}:{_executor_port()}", ""
            else:
                box: List[Optional[SshTunnel]] = [None]
                address = f"ipc://{self._tunnelled(host, _executor_socket_path(), box)}"
                self._tunnel = box[0]
                via = "" if self._tunnel is None else f"through the ssh tunnel to {host}"
            link = LutePushLink(address, linger=self.linger, max_frame_size=self.max_frame_size,
                                connect_timeout=self.connect_timeout, via=via)
            relink = _relinker(link)
        self._writer = FrameWriter(link, None, flush_interval=self.flush_interval, flush_size=self.flush_size,
                                   max_message=self.max_frame_size, lute_names=True, relink=relink)
        self._writer.open()

    def _task_target(self, host: str) -> str:
        """The TCP address a Task connects to: the Executor's bind address on this host, else ``host``."""
        if not _env.is_local_host(host):
            return host
        bound = self._bind_host()
        return bound if bound is not None else "127.0.0.1"  # an address: no name lookup per connection

    def _tunnelled(self, host: str, path: str, box: List[Optional[SshTunnel]]) -> str:
        """The Unix socket path to connect to: ``path`` on this host, else the local end of an ssh
        tunnel to ``path`` on ``host`` (kept in ``box``)."""
        if _env.is_local_host(host):
            return path
        options = self._ssh_options_arg if self._ssh_options_arg is not None else _env.ssh_options()
        tunnel = box[0] = SshTunnel(host, path, ssh_options=options, timeout=self.tunnel_timeout)
        return tunnel.open()

    def _raw_connector(self, host: str, tunnel_box: Optional[List[Optional[SshTunnel]]] = None) -> \
            Callable[[], socket.socket]:
        """Opens a raw connection to the Executor (through an ssh tunnel across hosts, opened once)."""
        if self.use_tcp:
            port = _executor_port()
            target = self._task_target(host)
            timeout = self.connect_timeout
            return lambda: connect_tcp(target, port, timeout)
        path = _executor_socket_path()
        if _env.is_local_host(host):
            return lambda: connect_unix(path)
        box: List[Optional[SshTunnel]] = [None] if tunnel_box is None else tunnel_box
        local_path = self._tunnelled(host, path, box)
        tunnel = box[0]
        assert tunnel is not None
        if tunnel_box is None:
            self._tunnel = tunnel

        def connect() -> socket.socket:
            tunnel.check()  # a tunnel whose ssh ended is a TunnelError with ssh's reason
            return connect_unix(local_path)

        return connect

    def _task_requires_auth(self) -> bool:
        """Whether a keyless Task on TCP refuses to start: not when the run turned authentication
        off (``require_auth=False``, or ``LUTE_IPC_REQUIRE_AUTH=0`` inherited from its Executor,
        which then runs unkeyed sessions, as raw sockets do)."""
        required = self._require_auth_arg if self._require_auth_arg is not None else _env.require_auth()
        return required is not False

    def _zmq_session_endpoint(self) -> str:
        """``LUTE_IPC_ZMQ_SESSION``: the session socket's path (Unix) or port (TCP)."""
        where = _env.zmq_session()
        if where is None:
            raise ConfigurationError(
                f"{_env.IPC_PROTOCOL} is set but {_env.ZMQ_SESSION} is not: the Executor is a lute_ipc Executor "
                "that does not use ZeroMQ. Use the same LUTE_USE_ZMQ on both sides.")
        return where

    # ------------------------------------------------------------------ reading
    def read(self, proc: Optional[subprocess.Popen[bytes]] = None, wait: Optional[float] = None) -> Message:
        """Return the next message, or an empty ``Message()`` if none arrives in time. A peer's
        payload that is not a Message (e.g. ``pickle.dumps(42)``) is given as
        ``Message(contents=payload)`` and counted in ``stats.foreign_payloads`` (logged once).

        LUTE's Executor reads once more after its Task's process ended and then takes what it
        has as all there is. So once ``proc`` has ended, the first read (or :attr:`has_messages`)
        that finds nothing waits (at most :attr:`EXIT_READ_WAIT`) until the reader is idle: every
        connection closed and what came through it in the queue, or counted if it was bad.

        Args:
            proc: the Task's process (LUTE's Executor passes it), or None.
            wait: seconds to block for a message (default :attr:`READ_TIMEOUT`, 10 ms).
        """
        queue = self._queue  # set only on a set-up Executor
        if queue is None or self._closed:
            queue = self._executor_queue()  # raises the matching error
        if proc is not None:
            self._task_proc = proc
        msg = queue.get(self.READ_TIMEOUT if wait is None else wait)
        if msg is None:
            if proc is None or not self._waited_for_exit(proc):
                return Message()
            msg = queue.get(0)
            if msg is None:
                return Message()
        if msg.__class__ is not Message and not isinstance(msg, Message):
            return self._foreign(msg)
        return msg

    def _waited_for_exit(self, proc: subprocess.Popen[bytes]) -> bool:
        """Wait for the reader to be idle if ``proc`` has ended and was not waited for yet (a
        process is marked once a wait for it ended: a caller in another thread meanwhile waits
        too). Logs a warning when :attr:`EXIT_READ_WAIT` ran out first."""
        waited = self._waited_procs
        if waited is None:
            waited = self._waited_procs = weakref.WeakSet()
        try:
            if proc in waited:
                return False
        except TypeError:  # not weakly referable: waited for at each such call
            pass
        if self._reader is None or proc.poll() is None:
            return False
        if not self._reader_idle(self.EXIT_READ_WAIT) and not self._closed:
            logger.warning("the Task process %s ended, and %g s later (EXIT_READ_WAIT) the Executor was still "
                           "receiving (a connection open or data unread): read() and has_messages go on with what "
                           "is queued; what arrives later stays in the queue until read", getattr(proc, "pid", "?"),
                           self.EXIT_READ_WAIT)
        try:
            waited.add(proc)
        except TypeError:
            pass
        return True

    def _reader_idle(self, timeout: float) -> bool:
        """Executor: whether the reader thread is idle, waiting at most ``timeout`` seconds for it
        (``_ReaderThread.wait_until_idle``); True when there is no reader."""
        reader = self._reader
        return reader is None or bool(reader.wait_until_idle(timeout))

    def read_many(self, max_count: int, wait: Optional[float] = None) -> List[Message]:
        """Return up to ``max_count`` waiting messages (oldest first), blocking up to ``wait``
        seconds (default :attr:`READ_TIMEOUT`) for the first; ``[]`` if none came."""
        if max_count < 1:
            raise UsageError("max_count must be >= 1")
        got = self._executor_queue().get_many(max_count, self.READ_TIMEOUT if wait is None else wait)
        for index, msg in enumerate(got):
            if msg.__class__ is not Message and not isinstance(msg, Message):
                got[index] = self._foreign(msg)
        return got

    def _foreign(self, payload: Any) -> Message:
        """A peer's payload that is not a Message, as ``Message(contents=payload)`` (counted, logged once)."""
        stats = self.stats
        if stats is not None:
            stats.foreign_payloads += 1
            if stats.foreign_payloads == 1:
                logger.warning("a peer sent a %s where a Message was expected: read() gives it as "
                               "Message(contents=...) (later ones are only counted in stats.foreign_payloads)",
                               type(payload).__name__)
        return Message(contents=payload)

    def _executor_queue(self) -> MessageQueue:
        if self._party != Party.EXECUTOR:
            raise UsageError("read() is for the Executor side; a Task-side SocketCommunicator only writes")
        if self._closed:
            raise CommunicatorClosed("this SocketCommunicator was closed")
        if self._queue is None:
            raise UsageError("call delayed_setup() before read()")
        return self._queue

    @property
    def has_messages(self) -> bool:
        """True while messages are waiting (always False on the Task side, as in LUTE). Once the
        process last given to :meth:`read` has ended, the first call that finds none waits as
        :meth:`read` does (LUTE's final loop stops reading when this is False)."""
        queue = self._queue
        if self._party != Party.EXECUTOR or queue is None:
            return False
        if len(queue) > 0:
            return True
        proc = self._task_proc
        return proc is not None and self._waited_for_exit(proc) and len(queue) > 0

    @property
    def max_connections(self) -> int:
        """Raw Executor: open connections allowed at once (see the class docstring)."""
        if self._max_connections is None:
            self._max_connections = raw_bind.default_max_connections()
        return self._max_connections

    @property
    def tunnel(self) -> Optional[SshTunnel]:
        """Task across hosts: the ssh tunnel in use (its own, or its process's shared link's)."""
        if self._tunnel is not None:
            return self._tunnel
        writer = self._writer
        return None if writer is None else getattr(writer.link, "tunnel", None)

    @property
    def stats(self) -> Optional[ReaderStats]:
        """Executor side: counters of the reader thread (messages, errors, connections...)."""
        return None if self._reader is None else self._reader.stats

    @property
    def address(self) -> Optional[str]:
        """Executor side: the socket path or ``host:port`` bound (None before setup)."""
        if self._socket_file is not None:
            return self._socket_file
        if self._listener is not None and self.use_tcp:
            host, port = self._listener.getsockname()[:2]
            return f"{host}:{port}"
        if self._zsocket is not None and self.use_tcp:
            import zmq

            endpoint: str = self._zsocket.getsockopt_string(zmq.LAST_ENDPOINT)
            return endpoint
        return None

    # ------------------------------------------------------------------ writing
    def write(self, msg: Message, proc: Optional[subprocess.Popen[bytes]] = None) -> None:
        """Send one Message to the Executor (thread-safe). Sets up on first use if needed.

        Raises MessageTooLarge (over the frame limit; nothing sent), AuthenticationError (set-up:
        missing or wrong key) or TransportError (this send, or an earlier background one, failed)."""
        require_message(msg, "SocketCommunicator.write()")
        writer = self._writer
        if writer is None:
            if self._party != Party.TASK:
                raise UsageError("write() is for the Task side; the Executor side of a SocketCommunicator reads")
            if self._closed:
                raise CommunicatorClosed("this SocketCommunicator was closed")
            self.delayed_setup()
            writer = self._writer
        elif self._closed:
            raise CommunicatorClosed("this SocketCommunicator was closed")
        writer.write(msg)  # type: ignore[union-attr]

    def flush(self) -> None:
        """Task side: send every buffered message now, without waiting for the Executor (no-op
        before set-up and on the Executor). Raw sockets hand them to the kernel. ZeroMQ hands them
        to libzmq, whose I/O thread in this process writes them later: a Task that ends with
        ``os._exit`` must call :meth:`confirm` or :meth:`clear_communicator` first, which wait
        for the Executor's acknowledgement (a flush that waited would hold the Task behind a slow
        consumer)."""
        writer = self._writer
        if writer is not None:
            writer.flush()

    def confirm(self, timeout: Optional[float] = None) -> None:
        """Task side: flush and wait until the Executor acknowledged everything this process sent on
        the link (session links, raw and ZeroMQ; returns at once toward LUTE's own Executor, which
        acknowledges nothing). TransportError names the messages not confirmed."""
        writer = self._writer
        if writer is not None:
            writer.confirm(self.confirm_timeout if timeout is None else timeout)

    def clear_communicator(self) -> None:
        """LUTE's end of a communicator. Task on the shared session link: raw sockets hand the
        messages to the kernel and raise what is already known to be lost, without waiting for
        the Executor's acknowledgement (it is awaited by :meth:`close`, :meth:`confirm` and at
        exit). ZeroMQ waits for it, because until libzmq's I/O thread wrote them the messages
        are only in this process (a Task ending with ``os._exit`` would lose them): as long as
        the Executor is heard from (an Executor whose consumer is slow repeats its
        acknowledgements: backpressure); once it sent nothing for ``linger`` seconds it returns
        without raising, the messages in flight and still unconfirmed (:meth:`close`,
        :meth:`confirm` and the exit confirmation name them if they never are). With
        ``confirm_timeout`` it waits that long and raises TransportError naming what was not
        confirmed. A lost session or rejected messages raise TransportError. The link stays
        open for the next communicator. Otherwise the same as :meth:`close`."""
        writer, lease = self._writer, self._lease
        if lease is not None and writer is not None and not self._closed:
            self._closed = True
            self._writer = self._lease = None
            registry.release(lease, close=False)
            writer.hand_over(self.confirm_timeout)
            return
        self.close()

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the reader thread, close sockets/contexts, remove the socket file, private
        directory and ssh tunnel, and undo the environment variables this Executor chose. Idempotent.

        Task side: flushes, waits for the Executor's acknowledgement on a session link
        (``confirm_timeout``), then raises TransportError, once everything is released, when
        messages that :meth:`write` accepted were not delivered or not confirmed. Executor side:
        messages received but not read are discarded with one warning giving their number.
        Other failures while closing are logged.
        """
        first = not self._closed
        address = self.address if first else None
        self._closed = True
        errors: List[BaseException] = []
        undelivered: Optional[TransportError] = None
        for step in (self._close_reader, self._close_writer, self._close_tunnel, self._close_files,
                     self._restore_env):
            try:
                step()
            except TransportError as exc:  # close everything even if one step fails
                if step == self._close_writer:
                    undelivered = exc
                else:
                    errors.append(exc)
            except Exception as exc:
                errors.append(exc)
        if first:
            self._report_unread(address)
        if errors:
            logger.warning("errors while closing %s: %s", self, "; ".join(map(str, errors)))
        if undelivered is not None:
            raise undelivered

    def __exit__(self, exc_type: Optional[type] = None, exc: Optional[BaseException] = None,
                 tb: Any = None) -> None:
        """Close (see :meth:`close`). While another exception propagates, an undelivered-messages
        TransportError from closing is logged as a warning instead of replacing it."""
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except TransportError as err:
            logger.warning("while handling %s: %s", exc_type.__name__, err)

    def _report_unread(self, address: Optional[str]) -> None:
        """Executor: one warning when closing discards messages that were received but not read."""
        queue = self._queue
        unread = 0 if queue is None or self._party != Party.EXECUTOR else len(queue)
        if unread:
            logger.warning("closing the Executor's SocketCommunicator (%s) discards %d queued message(s) "
                           "received but not read (read them first, e.g. with read_many(), to keep them)",
                           address or "not bound", unread)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            lute_log.reader_stopped()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        sockets, self._zmq_sockets, self._zsocket = self._zmq_sockets, None, None
        if sockets is not None:
            sockets.close()

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        lease, self._lease = self._lease, None
        if writer is None:
            return
        if lease is not None:  # confirm; the last user closes the process's link
            wait = self._confirm_wait()
            confirmed = False
            try:
                writer.confirm(wait)
                confirmed = True
            finally:  # a bounded wait that ran out is not waited again by the link's close
                registry.release(lease, close=True, wait=confirmed or wait is None)
        else:
            writer.close()

    def _confirm_wait(self) -> Optional[float]:
        """Seconds a Task's close waits for the Executor's acknowledgement: ``confirm_timeout``; on
        ZeroMQ without it, ``linger``."""
        if self.confirm_timeout is None and self.use_zmq:
            return self.linger
        return self.confirm_timeout

    def _close_tunnel(self) -> None:
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            tunnel.close()

    def _close_files(self) -> None:
        path, self._socket_file = self._socket_file, None
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        directory, self._private_dir = self._private_dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _restore_env(self) -> None:
        for name, value in self._exported.items():
            if os.environ.get(name) == value:
                del os.environ[name]
        self._exported.clear()


# ---------------------------------------------------------------------- helpers
def _zmq_receive_hwm(queue_size: int) -> int:
    """The Executor's ZeroMQ receive high-water mark for ``queue_size`` (ZeroMQ messages per connected Task).

    ZeroMQ counts messages, and a Task's ZeroMQ message is a batch of frames (up to its
    ``flush_size``, 64 KiB by default) or one large message: ``queue_size // 64`` batches,
    between 4 and 64, keeps what libzmq buffers per Task in the order of the queue itself.
    """
    low, high = _ZMQ_RCVHWM_RANGE
    return max(low, min(high, queue_size // _FRAMES_PER_ZMQ_MESSAGE))


_LINK_VARIABLES = (_env.IPC_PROTOCOL, _env.USE_TCP, _env.EXECUTOR_HOST, _env.SOCKET, _env.PORT, _env.IPC_KEY,
                   _env.BIND_HOST, _env.ZMQ_SESSION, _env.MAX_FRAME_SIZE, _env.EXECUTOR_MAX_FRAME_SIZE)
"""The variables that say which Executor a Task's link goes to (``_link_spec``; ``USE_TCP`` is second)."""
_ENV_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None
_LINK_KEYS = tuple(os.fsencode(name) for name in _LINK_VARIABLES)


def _link_environment() -> Tuple[Any, ...]:
    """The values of :data:`_LINK_VARIABLES` (raw octets when the platform allows: this runs once
    per communicator in LUTE's per-message pattern, and ``os.environ.get`` decodes every value)."""
    data = _ENV_DATA
    if data is not None:
        return tuple(map(data.get, _LINK_KEYS))
    environ = os.environ
    return tuple(environ.get(name) for name in _LINK_VARIABLES)


def _close_tunnel(box: List[Optional[SshTunnel]]) -> None:
    tunnel, box[0] = box[0], None
    if tunnel is not None:
        tunnel.close()


def _relinker(link: Any) -> Callable[[], Any]:
    """A forked child's writer gets a ZeroMQ link of its own (the parent's is left untouched)."""
    box = [link]

    def relink() -> Any:
        box[0] = box[0].renewed()
        return box[0]

    return relink


def _zmq_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _executor_port() -> int:
    """The Executor's TCP port for a Task (``LUTE_PORT``); ConfigurationError when it is missing."""
    port = _env.port()
    if port is None:
        raise ConfigurationError("LUTE_USE_TCP is set but LUTE_PORT is not: set LUTE_PORT to the "
                                 "Executor's port (the Executor exports it when it picks one).")
    return port


def _executor_socket_path() -> str:
    """The Executor's Unix socket path for a Task (``LUTE_SOCKET``); ConfigurationError when it is missing."""
    path = _env.socket_path()
    if path is None:
        raise ConfigurationError("LUTE_SOCKET is not set: set it to the Executor's Unix socket path "
                                 "(the Executor exports it), or set LUTE_USE_TCP and LUTE_PORT.")
    return path
