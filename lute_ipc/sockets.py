"""``SocketCommunicator``: LUTE's socket transport (raw sockets or ZeroMQ; Unix or TCP).

This module wires environment, sockets, reader thread and writer together; the work is
done by :mod:`lute_ipc._reader` (Executor side), :mod:`lute_ipc._writer` (Task side),
:mod:`lute_ipc.tunnel` (cross-host Unix path) and the frame codec of
:mod:`lute_ipc.framing`.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import codec
from . import env as _env
from ._queue import MessageQueue
from ._reader import ReaderStats, StreamReader, ZmqReader
from ._writer import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_FLUSH_SIZE,
    DEFAULT_SEND_TIMEOUT,
    FrameWriter,
    StreamLink,
    ZmqLink,
)
from .communicator import Communicator
from .errors import (
    CommunicatorClosed,
    ConfigurationError,
    ProtocolError,
    TransportError,
    TunnelError,
    UsageError,
)
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder
from .message import Message, Party
from .tunnel import DEFAULT_TUNNEL_TIMEOUT, SshTunnel

__all__ = ["SocketCommunicator", "USE_ZMQ"]

logger = logging.getLogger(__name__)

USE_ZMQ: bool = _env.default_use_zmq()
"""Default transport when ``SocketCommunicator(use_zmq=None)``: LUTE's rule on ``LUTE_USE_ZMQ``
(unset: ZeroMQ when pyzmq is importable; ``"0"``: raw sockets; anything else: ZeroMQ).
Kept as a module attribute for compatibility with ``lute.execution.ipc.USE_ZMQ``."""

_FRAME_OVERHEAD = 128
"""Upper bound of head + length + tag + trailer bytes around a payload."""
_SOCKET_NAME = "lute.sock"
_FRAMES_PER_ZMQ_MESSAGE = 64
"""About how many messages one ZeroMQ message of a Task holds (a 64 KiB batch of ~1 KiB frames)."""
_ZMQ_RCVHWM_RANGE = (4, 64)
"""Bounds of the Executor's ZeroMQ receive high-water mark (ZeroMQ messages per connected Task)."""


class SocketCommunicator(Communicator):
    """IPC over a Unix or TCP socket, with raw sockets or ZeroMQ (PUSH on the Task, PULL on the Executor).

    The Executor side calls :meth:`delayed_setup` first: it binds, starts one reader
    thread and exports the environment its Tasks inherit (``os.environ``, as LUTE):
    ``LUTE_EXECUTOR_HOST``; ``LUTE_SOCKET`` (a socket in a new private 0700 directory) or
    ``LUTE_PORT`` (a free port, bound atomically) when the user did not set them; and,
    when it requires authentication (TCP by default, or ``require_auth=True``) and
    ``LUTE_IPC_KEY`` is not set, a fresh per-run HMAC key in ``LUTE_IPC_KEY``. A key set by
    the user is always used: Tasks sign with it and the Executor verifies signed frames
    (on a Unix socket without ``require_auth`` it also accepts unsigned ones, so no key is
    created there: signatures would protect nothing). The Task side reads the
    same variables: Unix socket unless ``LUTE_USE_TCP`` is set; across hosts a Unix
    socket is reached through an ssh tunnel (:class:`~lute_ipc.tunnel.SshTunnel`).

    Security: TCP requires authenticated frames by default (the Task signs every frame
    with ``LUTE_IPC_KEY``; unsigned or badly signed frames are rejected before any
    unpickling and the connection is closed). If you turn that off on TCP
    (``require_auth=False``), payloads are decoded with the restricted (allow-list)
    unpickler unless you pass ``loads``. Unix sockets are private to your user (0600
    socket in a 0700 directory), so they accept LUTE's unsigned frames unless
    ``require_auth=True``. **Risk**: TCP binds on all interfaces by default, as LUTE
    does: anyone who can reach the port can connect (and, with authentication off, send
    pickles). Prefer ``bind_host="127.0.0.1"`` (or ``LUTE_BIND_HOST``) when Tasks run on
    the same machine.

    Args:
        party: ``Party.EXECUTOR`` (reads) or ``Party.TASK`` (writes).
        use_pickle: kept for LUTE compatibility; sockets always pickle.
        use_zmq: ZeroMQ (True) or raw sockets (False); ``None``: the module default
            :data:`USE_ZMQ` (from ``LUTE_USE_ZMQ``).
        require_auth: Executor: reject unsigned frames. ``None``: True on TCP, False on Unix.
            Task: with TCP and ``require_auth`` not False, a missing ``LUTE_IPC_KEY`` is a
            ConfigurationError.
        loads: payload decoder on the Executor (default: full pickle, or the restricted
            unpickler when TCP runs without authentication).
        bind_host: address the Executor binds on TCP (default ``LUTE_BIND_HOST``, else all
            interfaces).
        max_frame_size: largest accepted payload (bytes), default 64 MiB.
        max_connections: raw Executor: connections open at once (default 1024, or half the
            process's open-file limit if lower); at the limit the connection idle the longest
            is closed to admit a new one (a Task's writer reconnects on its next write).
        idle_timeout: raw Executor: seconds a connection may hold an incomplete frame
            without sending a byte before it is closed (default 60).
        queue_size: messages buffered for :meth:`read` before the reader stops reading
            (backpressure; default 100,000).
        linger: ZeroMQ Task: seconds queued messages may still be delivered after
            :meth:`close` (in the background; the process waits at most this long at exit).
        flush_interval: Task: latency bound of the send buffer, seconds (default 0.001);
            ``0`` sends every message at once (write-through).
        flush_size: Task: buffered bytes that trigger a send (default 64 KiB).
        connect_timeout: Task: seconds to wait for a connection (raw TCP), or that a ZeroMQ
            Task may stay without its first connection (ZeroMQ connects in the background and
            queues meanwhile) before :meth:`write` raises TransportError.
        send_timeout: TCP Task (raw or ZeroMQ, Linux): seconds the Executor's host may
            acknowledge nothing of what was sent before :meth:`write` raises
            TransportError (default 10; 0: wait as long as TCP does, about 15 minutes).
            This detects a cut network or a dead host; an Executor that is alive but reads
            slowly is not a timeout (writes wait: backpressure).
        ssh_options: Task across hosts: extra ssh arguments (default: ``LUTE_SSH_OPTIONS``).
        tunnel_timeout: Task across hosts: seconds to wait for the ssh tunnel.

    Task-side batching: :meth:`write` frames into a send buffer that goes out (one system
    call, or one ZeroMQ message holding several frames) when it reaches ``flush_size``,
    when its oldest message is ``flush_interval`` old (even if the Task is idle), at once
    for the first message after the Task was quiet for ``flush_interval`` (a lone message
    does not wait) and for a message with a signal other than ``TASK_LOG``, on :meth:`flush`, on
    :meth:`close` and at normal interpreter exit. Large ``bytes``/``bytearray``/numpy
    payloads are sent before :meth:`write` returns, without being copied (scatter-gather).
    A Task killed with SIGKILL loses what was still buffered (at most ``flush_interval``
    of ``TASK_LOG`` messages); call :meth:`flush` where that matters.

    ZeroMQ notes: the PULL socket rejects ZeroMQ messages larger than ``max_frame_size``
    (plus framing) and ZeroMQ manages connections itself, so ``max_connections`` and
    ``idle_timeout`` apply to raw sockets only; authentication failures are counted and
    logged but cannot close one connection. The Executor's receive high-water mark is
    derived from ``queue_size`` (``queue_size // 64`` ZeroMQ messages per connected Task,
    between 4 and 64), so a slow consumer holds the Tasks back instead of growing the
    Executor's memory. A ZeroMQ Task raises TransportError on :meth:`write` once its
    Executor dropped the connection (exited or died) and has not come back.

    Losses are reported, never silent: on the Task, :meth:`close` (``clear_communicator``)
    raises TransportError, after releasing everything, when messages that :meth:`write`
    accepted could not be delivered (the final send failed, or ZeroMQ still held messages
    when ``linger`` ran out); on the Executor, closing with messages received but not read
    logs one warning with their number.
    """

    READ_TIMEOUT: float = 0.01
    """Seconds :meth:`read` waits when called without ``wait`` (LUTE's ``ACCEPT_TIMEOUT``)."""
    ACCEPT_TIMEOUT: float = READ_TIMEOUT
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
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_connections: Optional[int] = None,
        idle_timeout: float = 60.0,
        queue_size: int = 100_000,
        linger: float = 5.0,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        flush_size: int = DEFAULT_FLUSH_SIZE,
        connect_timeout: float = 10.0,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        ssh_options: Optional[Sequence[str]] = None,
        tunnel_timeout: float = DEFAULT_TUNNEL_TIMEOUT,
    ) -> None:
        super().__init__(party=party, use_pickle=use_pickle)
        if (max_connections is not None and max_connections < 1) or idle_timeout <= 0 or queue_size < 1 \
                or linger < 0 or flush_interval < 0 or flush_size < 1 or send_timeout < 0:
            raise UsageError("max_connections, queue_size and flush_size must be >= 1, idle_timeout > 0, "
                             "linger, flush_interval and send_timeout >= 0")
        self._use_zmq_arg = use_zmq
        self._require_auth_arg = require_auth
        self._loads_arg = loads
        self._bind_host_arg = bind_host
        self.max_frame_size = max_frame_size
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
        self.use_tcp: bool = False
        self.require_auth: bool = False
        self.desc = "Communicates through sockets (not set up yet: call delayed_setup())."
        self._set_up = False
        self._closed = False
        self._exported: Dict[str, str] = {}
        # Executor resources
        self._queue: Optional[MessageQueue] = None
        self._reader: Any = None
        self._listener: Optional[socket.socket] = None
        self._zcontext: Any = None
        self._zsocket: Any = None
        self._socket_file: Optional[str] = None
        self._private_dir: Optional[str] = None
        # Task resources
        self._writer: Optional[FrameWriter] = None
        self._tunnel: Optional[SshTunnel] = None

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
        self.use_tcp = _env.use_tcp()
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
        self.require_auth = self.use_tcp if self._require_auth_arg is None else bool(self._require_auth_arg)
        key = self._executor_key()
        loads = self._loads_arg
        if loads is None:
            if self.use_tcp and not self.require_auth:
                logger.warning("SECURITY: authentication is OFF on a TCP SocketCommunicator: anyone who can "
                               "reach the port can send data. Payloads are decoded with the restricted "
                               "(allow-list) unpickler; pass loads= to choose otherwise.")
                loads = codec.restricted_loads
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

        self._queue = MessageQueue(self.queue_size)
        if self.use_zmq:
            self._bind_zmq()
            self._reader = ZmqReader(self._zsocket, self._queue, make_decoder)
        else:
            self._bind_raw()
            self._reader = StreamReader(self._listener, self._queue, make_decoder,  # type: ignore[arg-type]
                                        max_connections=self.max_connections, idle_timeout=self.idle_timeout)
        self._export(_env.EXECUTOR_HOST, socket.gethostname(), always=True)
        self._reader.start()

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
            host = self._bind_host()
            port = _env.port()
            family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host or "", port or 0))
                sock.listen(socket.SOMAXCONN)
            except OSError as exc:
                sock.close()
                raise TransportError(f"the Executor cannot bind TCP {host or '*'}:{port or 0}: {exc}. "
                                     "Choose another LUTE_PORT (or unset it to get a free one) or "
                                     "another LUTE_BIND_HOST.") from exc
            self._listener = sock
            if port is None:
                self._export(_env.PORT, str(sock.getsockname()[1]))
        else:
            path = self._unix_path_for_executor()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                os.chmod(path, 0o600)
                sock.listen(socket.SOMAXCONN)
            except OSError as exc:
                sock.close()
                raise TransportError(f"the Executor cannot bind the Unix socket {path}: {exc}. Check that "
                                     "its directory exists and is writable, or unset LUTE_SOCKET.") from exc
            self._listener = sock
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
        _remove_stale_socket(path)
        return path

    # Executor, ZeroMQ
    def _bind_zmq(self) -> None:
        import zmq

        self._zcontext = zmq.Context()
        zsock = self._zcontext.socket(zmq.PULL)
        self._zsocket = zsock
        zsock.setsockopt(zmq.LINGER, 0)
        # Counted in ZeroMQ messages, each a batch of frames: keep it small, so that the bound on
        # memory is queue_size messages plus a few batches per connected Task (libzmq stops
        # reading a connection whose queue is full; its Task then waits: backpressure).
        zsock.setsockopt(zmq.RCVHWM, _zmq_receive_hwm(self.queue_size))
        zsock.setsockopt(zmq.MAXMSGSIZE, self.max_frame_size + _FRAME_OVERHEAD)
        if self.use_tcp:
            host = self._bind_host() or "*"
            if ":" in host:
                zsock.setsockopt(zmq.IPV6, 1)
                host = f"[{host}]"
            port = _env.port()
            try:
                if port is None:
                    port = zsock.bind_to_random_port(f"tcp://{host}")
                    self._export(_env.PORT, str(port))
                else:
                    zsock.bind(f"tcp://{host}:{port}")
            except zmq.ZMQError as exc:
                raise TransportError(f"the Executor cannot bind ZeroMQ TCP {host}:{port or 'random'}: {exc}. "
                                     "Choose another LUTE_PORT (or unset it) or LUTE_BIND_HOST.") from exc
        else:
            path = self._unix_path_for_executor()
            try:
                zsock.bind(f"ipc://{path}")
                os.chmod(path, 0o600)
            except (zmq.ZMQError, OSError) as exc:
                raise TransportError(f"the Executor cannot bind the ZeroMQ Unix socket {path}: {exc}. Check "
                                     "that its directory exists and is writable, or unset LUTE_SOCKET.") from exc
            self._socket_file = path

    # Task
    def _setup_task(self) -> None:
        key_text = os.environ.get(_env.IPC_KEY)
        key = codec.parse_key(key_text) if key_text else None
        if key is None and self.use_tcp and self._require_auth_arg is not False:
            raise ConfigurationError(
                "LUTE_IPC_KEY is not set: a Task on TCP must sign its frames with the Executor's key. "
                "Start the Task from its Executor (which exports LUTE_IPC_KEY), copy LUTE_IPC_KEY from the "
                "Executor's environment, or (not recommended) run both sides with require_auth=False.")
        self.require_auth = key is not None
        host = _env.executor_host()
        if host is None:
            raise ConfigurationError(
                "LUTE_EXECUTOR_HOST is not set: the Task does not know where its Executor is. Start the Task "
                "from an Executor (it exports LUTE_EXECUTOR_HOST and LUTE_SOCKET or LUTE_PORT), or set them.")
        if self.use_tcp:
            port = _env.port()
            if port is None:
                raise ConfigurationError("LUTE_USE_TCP is set but LUTE_PORT is not: set LUTE_PORT to the "
                                         "Executor's port (the Executor exports it when it picks one).")
            target = self._local_tcp_host() if _env.is_local_host(host) else host
            link: Any = self._zmq_link(f"tcp://{_zmq_host(target)}:{port}") if self.use_zmq \
                else StreamLink(lambda: _connect_tcp(target, port, self.connect_timeout),
                                send_timeout=self.send_timeout)
        else:
            path = _env.socket_path()
            if path is None:
                raise ConfigurationError("LUTE_SOCKET is not set: set it to the Executor's Unix socket path "
                                         "(the Executor exports it), or set LUTE_USE_TCP and LUTE_PORT.")
            if not _env.is_local_host(host):
                options = self._ssh_options_arg if self._ssh_options_arg is not None else _env.ssh_options()
                self._tunnel = SshTunnel(host, path, ssh_options=options, timeout=self.tunnel_timeout)
                path = self._tunnel.open()
            local_path = path
            via = "" if self._tunnel is None else f"through the ssh tunnel to {host}"
            link = self._zmq_link(f"ipc://{local_path}", via) if self.use_zmq \
                else StreamLink(lambda: self._connect_local(local_path))
        self._writer = FrameWriter(link, key, flush_interval=self.flush_interval, flush_size=self.flush_size)
        self._writer.open()

    def _local_tcp_host(self) -> str:
        host = self._bind_host()
        return host if host is not None else "127.0.0.1"  # an address: no name lookup per connection

    def _zmq_link(self, address: str, via: str = "") -> ZmqLink:
        link = ZmqLink(address, self.linger, send_timeout=self.send_timeout,
                       connect_timeout=self.connect_timeout, via=via)
        link.open()
        return link

    def _connect_local(self, path: str) -> socket.socket:
        """Connect to the Executor's Unix socket, or to the local end of the ssh tunnel (checked first:
        a tunnel whose ssh ended is a TunnelError with ssh's reason, not a refused connection)."""
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.check()
        return _connect_unix(path)

    # ------------------------------------------------------------------ reading
    def read(self, proc: Optional[subprocess.Popen] = None, wait: Optional[float] = None) -> Message:
        """Return the next message, or an empty ``Message()`` if none arrives in time.

        Args:
            proc: ignored (LUTE compatibility).
            wait: seconds to block for a message (default :attr:`READ_TIMEOUT`, 10 ms).
        """
        queue = self._queue  # set only on a set-up Executor
        if queue is None or self._closed:
            queue = self._executor_queue()  # raises the matching error
        msg = queue.get(self.READ_TIMEOUT if wait is None else wait)
        return Message() if msg is None else msg

    def read_many(self, max_count: int, wait: Optional[float] = None) -> List[Message]:
        """Return up to ``max_count`` waiting messages (oldest first), blocking up to ``wait``
        seconds (default :attr:`READ_TIMEOUT`) for the first; ``[]`` if none came."""
        if max_count < 1:
            raise UsageError("max_count must be >= 1")
        return self._executor_queue().get_many(max_count, self.READ_TIMEOUT if wait is None else wait)

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
        """True while messages are waiting (always False on the Task side, as in LUTE)."""
        return self._party == Party.EXECUTOR and self._queue is not None and len(self._queue) > 0

    @property
    def max_connections(self) -> int:
        """Raw Executor: open connections allowed at once (see the class docstring)."""
        if self._max_connections is None:
            self._max_connections = default_max_connections()
        return self._max_connections

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
            return "%s:%d" % self._listener.getsockname()[:2]
        if self._zsocket is not None and self.use_tcp:
            import zmq

            return self._zsocket.getsockopt_string(zmq.LAST_ENDPOINT)
        return None

    # ------------------------------------------------------------------ writing
    def write(self, msg: Message, proc: Optional[subprocess.Popen] = None) -> None:
        """Send one Message to the Executor (thread-safe). Sets up on first use if needed."""
        if self._party != Party.TASK:
            raise UsageError("write() is for the Task side; the Executor side of a SocketCommunicator reads")
        if self._closed:
            raise CommunicatorClosed("this SocketCommunicator was closed")
        writer = self._writer
        if writer is None:
            self.delayed_setup()
            writer = self._writer
        writer.write(msg)  # type: ignore[union-attr]

    def flush(self) -> None:
        """Task side: send every buffered message now (no-op before set-up and on the Executor)."""
        writer = self._writer
        if writer is not None:
            writer.flush()

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the reader thread, close sockets/contexts, remove the socket file, private
        directory and ssh tunnel, and undo the environment variables this Executor chose. Idempotent.

        Task side: raises TransportError, once everything is released, when messages that
        :meth:`write` accepted could not be delivered (the final send failed, or ZeroMQ still
        held messages when ``linger`` ran out). Executor side: messages received but not read
        are discarded with one warning giving their number. Other failures while closing are
        logged.
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
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._zsocket is not None:
            self._zsocket.close(linger=0)
            self._zsocket = None
        if self._zcontext is not None:
            self._zcontext.term()
            self._zcontext = None

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

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
def default_max_connections() -> int:
    """1024, or half the soft open-file limit when that is lower (at least 16)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))


def _zmq_receive_hwm(queue_size: int) -> int:
    """The Executor's ZeroMQ receive high-water mark for ``queue_size`` (ZeroMQ messages per connected Task).

    ZeroMQ counts messages, and a Task's ZeroMQ message is a batch of frames (up to its
    ``flush_size``, 64 KiB by default) or one large message: ``queue_size // 64`` batches,
    between 4 and 64, keeps what libzmq buffers per Task in the order of the queue itself.
    """
    low, high = _ZMQ_RCVHWM_RANGE
    return max(low, min(high, queue_size // _FRAMES_PER_ZMQ_MESSAGE))


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on; refuse to take over a live one or a non-socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigurationError(f"LUTE_SOCKET={path} exists and is not a socket; unset LUTE_SOCKET or "
                                 "choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    finally:
        probe.close()
    raise ConfigurationError(f"another process is already listening on LUTE_SOCKET={path}; unset LUTE_SOCKET "
                             "to get a private socket, or choose another path")


def _connect_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot connect to the Executor's Unix socket {path}: {exc}. Is the Executor "
                             "running, and is LUTE_SOCKET the path it exported?") from exc
    return sock


def _connect_tcp(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise TransportError(f"cannot connect to the Executor at {host}:{port} over TCP: {exc}. Is the "
                             "Executor running, and are LUTE_EXECUTOR_HOST/LUTE_PORT the values it "
                             "exported?") from exc
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _zmq_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
