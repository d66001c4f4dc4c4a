"""Executor side: run one Task command as a subprocess and dispatch what it reports.

:class:`TaskRunner` does what LUTE's ``Executor.execute_task`` does for IPC, without the
rest of LUTE (database, eLog, workflow manager):

1. sets up an Executor-side :class:`~lute_ipc.sockets.SocketCommunicator` **first**
   (``delayed_setup()``: it binds and exports ``LUTE_SOCKET``/``LUTE_PORT``,
   ``LUTE_EXECUTOR_HOST``, ``LUTE_IPC_KEY``) and gives those variables, plus
   ``LUTE_USE_ZMQ`` matching the socket kind, to the child's environment;
2. starts the command with stdin/stdout/stderr pipes, made non-blocking, read by an
   Executor-side :class:`~lute_ipc.pipe.PipeCommunicator`;
3. polls both communicators and calls a hook per message: ``on_signal(name, fn)`` for
   messages carrying that signal, ``on_message(fn)`` for every other message (no
   signal — ``print()`` output, pickled objects — or a signal without a hook); as LUTE's
   Executor does, ``NO_PICKLE_MODE`` switches the pipe reader to text (``use_pickle=False``);
4. stops the child on timeout or :meth:`TaskRunner.cancel` (terminate, wait, kill:
   bounded), and after the child exits drains both communicators so every message the
   Task sent before exiting is dispatched;
5. returns a :class:`RunResult`.

Example::

    runner = TaskRunner([sys.executable, "-m", "my_task"], timeout=600)
    runner.on_signal("TASK_RESULT", lambda msg: print("result:", msg.contents))
    runner.on_signal("TASK_LOG", lambda msg: print(msg.contents))
    runner.on_message(lambda msg: print("task says:", msg.contents))
    result = runner.run()
    print(result.outcome, result.returncode, result.messages)

Environment: the socket's variables are exported to ``os.environ`` only for the moment
of set-up (under a lock) and then restored, so several runners can work at once in one
process; the child gets them through its own environment.
Hooks run in the thread that called :meth:`TaskRunner.run`. An exception raised by a
hook stops the child, closes everything and propagates out of :meth:`TaskRunner.run`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .communicator import Communicator
from .errors import UsageError
from .message import LUTE_SIGNALS, Message, Party

__all__ = ["TaskRunner", "RunResult", "Outcome", "Hook", "run_task", "TERMINAL_SIGNALS"]

logger = logging.getLogger(__name__)

Hook = Callable[[Message], Any]
"""A hook receives each Message it is registered for; its return value is ignored."""

TERMINAL_SIGNALS = frozenset({"TASK_DONE", "TASK_FAILED", "TASK_CANCELLED", "TASK_STOPPED"})
"""Signals by which a Task announces how it ended (the last one is :attr:`RunResult.last_signal`)."""

_ENV_LOCK = threading.Lock()
_PIPE_BATCH = 1024
_SOCKET_BATCH = 1024
# After the child exited, the drain ends once nothing came for this long (raw / ZeroMQ) and the
# socket is settled; one settle check waits at most _SETTLE_WAIT for the reader to be idle.
_QUIET_RAW = 0.05
_QUIET_ZMQ = 0.2
_SETTLE_WAIT = 0.05


class Outcome(str, Enum):
    """How a run ended (the values are LUTE's signal names, plus ``TIMEOUT``)."""

    DONE = "TASK_DONE"
    """The child exited with code 0 and did not report failure or cancellation."""
    FAILED = "TASK_FAILED"
    """The child exited with a non-zero code, or sent ``TASK_FAILED``."""
    CANCELLED = "TASK_CANCELLED"
    """:meth:`TaskRunner.cancel` stopped it, or the Task sent ``TASK_CANCELLED``."""
    TIMEOUT = "TIMEOUT"
    """The run exceeded ``timeout`` and the child was stopped."""

    def __str__(self) -> str:
        return self.value


@dataclass
class RunResult:
    """What :meth:`TaskRunner.run` returns."""

    outcome: Outcome
    returncode: Optional[int]
    """The child's exit code (negative: killed by that signal); None if it never started
    or could not be reaped."""
    last_signal: Optional[str] = None
    """The last of :data:`TERMINAL_SIGNALS` the Task sent, if any."""
    messages: int = 0
    """Messages dispatched (both channels)."""
    pipe_messages: int = 0
    socket_messages: int = 0
    signals: Dict[str, int] = field(default_factory=dict)
    """Messages per signal name."""
    results: List[Any] = field(default_factory=list)
    """Contents of every ``TASK_RESULT`` message, in arrival order (``keep_results=True``)."""
    duration: float = 0.0
    """Seconds from start to the end of the drain."""
    protocol_errors: int = 0
    """Frames the socket reader rejected (garbage, bad tags, undecodable payloads)."""
    connections: Optional[int] = None
    """Raw sockets: connections the Task (and its children) opened; ``None`` with ZeroMQ."""
    foreign_payloads: int = 0
    """Payloads that were not a :class:`~lute_ipc.message.Message` with a ``str``/``None``
    signal (a bare object, a signal of another type): each was logged and dispatched wrapped
    as ``Message(contents=<payload>)``, to the catch-all hook."""

    @property
    def ok(self) -> bool:
        """True when the outcome is :attr:`Outcome.DONE`."""
        return self.outcome is Outcome.DONE


class TaskRunner:
    """Runs one Task command with a pipe and a socket communicator and dispatches its messages.

    Args:
        cmd: the command (``[sys.executable, "-m", "my.task", ...]``); no shell.
        env: the child's environment (default: this process's ``os.environ``); the socket's
            ``LUTE_*`` variables are added to it.
        cwd: the child's working directory.
        timeout: seconds the child may run; then it is stopped and the outcome is TIMEOUT.
        use_zmq: ZeroMQ (True) or raw sockets (False); ``None``: ``LUTE_USE_ZMQ``'s rule.
        use_tcp: TCP (True) or a Unix socket (False); ``None``: ``LUTE_USE_TCP``'s rule.
        socket_options: more keyword arguments for the Executor's ``SocketCommunicator``
            (``bind_host``, ``require_auth``, ``queue_size``...).
        poll_interval: seconds to wait for a message when none is waiting.
        stop_timeout: seconds to wait after SIGTERM before SIGKILL, and after SIGKILL.
        drain_timeout: after the child exits, at most this many seconds to collect what
            is still in flight.
        keep_results: collect ``TASK_RESULT`` contents in :attr:`RunResult.results`.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        use_zmq: Optional[bool] = None,
        use_tcp: Optional[bool] = None,
        socket_options: Optional[Mapping[str, Any]] = None,
        poll_interval: float = 0.01,
        stop_timeout: float = 5.0,
        drain_timeout: float = 5.0,
        keep_results: bool = True,
    ) -> None:
        if isinstance(cmd, (str, bytes)) or not cmd:
            raise UsageError("cmd must be a non-empty sequence of arguments, e.g. [sys.executable, '-m', 'task']")
        if timeout is not None and timeout <= 0:
            raise UsageError("timeout must be > 0 or None")
        if poll_interval <= 0 or stop_timeout <= 0 or drain_timeout < 0:
            raise UsageError("poll_interval and stop_timeout must be > 0, drain_timeout >= 0")
        try:
            self.cmd = [os.fspath(arg) for arg in cmd]
        except TypeError:
            raise UsageError(f"every argument of cmd must be a str or path: {list(cmd)!r}") from None
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.timeout = timeout
        self.use_zmq = use_zmq
        self.use_tcp = use_tcp
        self.socket_options = dict(socket_options or {})
        self.poll_interval = poll_interval
        self.stop_timeout = stop_timeout
        self.drain_timeout = drain_timeout
        self.keep_results = keep_results
        self._name = " ".join(self.cmd) if len(" ".join(self.cmd)) <= 120 else " ".join(self.cmd)[:117] + "..."
        self._hooks: Dict[str, Hook] = {}
        self._catch_all: Optional[Hook] = None
        self._cancel = threading.Event()
        self._started = False
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._pipe: Optional[Communicator] = None
        self._socket: Any = None
        self._send_lock = threading.Lock()
        self._result = RunResult(outcome=Outcome.DONE, returncode=None)

    # ------------------------------------------------------------------ configuration
    def on_signal(self, signal: str, hook: Hook) -> None:
        """Call ``hook(msg)`` for every message whose signal is ``signal`` (one hook per
        signal: registering again replaces it). ``signal`` is one of
        :data:`lute_ipc.LUTE_SIGNALS` (UsageError otherwise: as LUTE's Executor, only those are
        dispatched; a message with another signal goes to :meth:`on_message`)."""
        if not isinstance(signal, str) or signal not in LUTE_SIGNALS:
            hint = f" (did you mean {signal.strip().upper()!r}?)" if isinstance(signal, str) and \
                signal.strip().upper() in LUTE_SIGNALS else ""
            raise UsageError(f"on_signal: {signal!r} is not a LUTE signal{hint}; LUTE_SIGNALS are "
                             f"{', '.join(sorted(LUTE_SIGNALS))}")
        if not callable(hook):
            raise UsageError("hook must be callable")
        self._hooks[signal] = hook

    def on_message(self, hook: Optional[Hook]) -> None:
        """Call ``hook(msg)`` for every message no signal hook took: messages without a
        signal (text the Task printed, objects it sent) or with a signal that has no hook.
        ``None`` removes it."""
        if hook is not None and not callable(hook):
            raise UsageError("hook must be callable or None")
        self._catch_all = hook

    # ------------------------------------------------------------------ control
    def cancel(self) -> None:
        """Ask the running Task to stop (safe from any thread; the run ends CANCELLED).
        Before :meth:`run`, the run will not start the child at all."""
        self._cancel.set()

    @property
    def proc(self) -> Optional[subprocess.Popen[bytes]]:
        """The child process while (and after) it runs."""
        return self._proc

    @property
    def socket_address(self) -> Optional[str]:
        """The socket path or ``host:port`` the Executor listens on (during the run)."""
        return None if self._socket is None else self._socket.address

    def send(self, msg: Message) -> None:
        """Send ``msg`` to the Task's stdin (it reads it with ``PipeCommunicator(Party.TASK).read()``)."""
        with self._send_lock:
            if self._proc is None or self._pipe is None or self._proc.poll() is not None:
                raise UsageError("send() needs a running Task (call it from a hook or while run() runs)")
            self._pipe.write(msg, self._proc)

    # ------------------------------------------------------------------ running
    def run(self) -> RunResult:
        """Start the Task, dispatch its messages until it ends, and return the result (once per runner)."""
        if self._started:
            raise UsageError("a TaskRunner runs once; create a new one")
        self._started = True
        result = self._result
        start = time.monotonic()
        if self._cancel.is_set():
            result.outcome = Outcome.CANCELLED
            return result
        from .pipe import PipeCommunicator
        from .sockets import SocketCommunicator

        options = dict(self.socket_options)
        options.setdefault("use_zmq", self.use_zmq)
        self._socket = SocketCommunicator(Party.EXECUTOR, **options)
        self._pipe = PipeCommunicator(Party.EXECUTOR)
        stopped: Optional[Outcome] = None
        try:
            child_env = self._set_up_socket()
            self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=child_env, cwd=self.cwd)
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    os.set_blocking(stream.fileno(), False)
            stopped = self._loop(start)
            self._drain()
        finally:
            try:
                if self._proc is not None and self._proc.poll() is None:
                    self._stop_child(dispatch=False)  # a hook raised: do not leave the child behind
            finally:
                self._close()
        result.returncode = None if self._proc is None else self._proc.returncode
        result.outcome = stopped if stopped is not None else self._natural_outcome()
        stats = self._socket.stats
        if stats is not None:
            result.protocol_errors = stats.framing_errors + stats.payload_errors + stats.auth_failures
            result.foreign_payloads += stats.foreign_payloads  # wrapped by read_many() (see _as_message)
            if not self._socket.use_zmq:
                result.connections = stats.connections_accepted
        result.duration = time.monotonic() - start
        return result

    def _set_up_socket(self) -> Dict[str, str]:
        """Bind the socket with ``os.environ`` as the contract says, capture the variables it
        exported for the child, and put ``os.environ`` back as it was."""
        with _ENV_LOCK:
            before = {name: value for name, value in os.environ.items() if name.startswith("LUTE_")}
            try:
                if self.use_tcp is True:
                    os.environ["LUTE_USE_TCP"] = "1"
                elif self.use_tcp is False:
                    os.environ.pop("LUTE_USE_TCP", None)
                self._socket.delayed_setup()
                lute_now = {name: value for name, value in os.environ.items() if name.startswith("LUTE_")}
            finally:
                for name in [name for name in os.environ if name.startswith("LUTE_")]:
                    if name not in before:
                        del os.environ[name]
                os.environ.update(before)
        env = dict(os.environ) if self.env is None else dict(self.env)
        env.update(lute_now)
        if self._socket.use_tcp:
            env["LUTE_USE_TCP"] = "1"
        else:
            env.pop("LUTE_USE_TCP", None)
        env["LUTE_USE_ZMQ"] = "1" if self._socket.use_zmq else "0"
        return env

    def _loop(self, start: float) -> Optional[Outcome]:
        """Dispatch until the child exits (None) or must be stopped (TIMEOUT/CANCELLED)."""
        proc = self._proc
        assert proc is not None
        deadline = None if self.timeout is None else start + self.timeout
        while True:
            self._poll(self.poll_interval)
            if proc.poll() is not None:
                return None
            if self._cancel.is_set():
                self._stop_child()
                return Outcome.CANCELLED
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning("Task %s exceeded its timeout of %g s: stopping it", self._name, self.timeout)
                self._stop_child()
                return Outcome.TIMEOUT

    def _poll(self, wait: float) -> int:
        """Dispatch what is waiting on the pipes, then on the socket (waiting up to ``wait``
        seconds there when the pipes gave nothing). Returns the number dispatched."""
        count = 0
        pipe, proc = self._pipe, self._proc
        assert pipe is not None and proc is not None
        for _ in range(_PIPE_BATCH):
            msg = pipe.read(proc)
            if msg.contents is None and msg.signal is None:
                if not pipe.has_messages:
                    break
                continue
            self._result.pipe_messages += 1
            self._dispatch(msg)
            count += 1
        for payload in self._socket.read_many(_SOCKET_BATCH, wait=0.0 if count else wait):
            self._result.socket_messages += 1
            self._dispatch(self._as_message(payload))
            count += 1
        return count

    def _as_message(self, payload: Message) -> Message:
        """``payload`` itself when its signal is a name (or None); otherwise it is counted, logged
        and wrapped as ``Message(contents=payload)``: a careless or hostile Task cannot make the
        dispatch fail (nothing is dropped either). (Payloads that are not Messages at all were
        wrapped by ``read_many()``, which counts them in ``stats.foreign_payloads``.)"""
        signal: Any = payload.signal  # typed str | None; a peer's pickle may hold anything
        if signal is None or isinstance(signal, str):
            return payload
        self._result.foreign_payloads += 1
        level = logging.WARNING if self._result.foreign_payloads == 1 else logging.DEBUG
        logger.log(level, "Task %s sent a %s where a Message was expected: dispatched as Message(contents=...)",
                   self._name, f"Message with a {type(signal).__name__} signal")
        return Message(contents=payload)

    def _dispatch(self, msg: Message) -> None:
        result = self._result
        result.messages += 1
        signal = msg.signal
        if signal is not None:
            result.signals[signal] = result.signals.get(signal, 0) + 1
            if signal in TERMINAL_SIGNALS:
                result.last_signal = signal
            elif signal == "TASK_RESULT" and self.keep_results:
                result.results.append(msg.contents)
            elif signal == "NO_PICKLE_MODE" and self._pipe is not None:
                self._pipe.use_pickle = False  # type: ignore[attr-defined]  # LUTE: the Task now writes text
            hook = self._hooks.get(signal)
            if hook is not None:
                hook(msg)
                return
        if self._catch_all is not None:
            self._catch_all(msg)

    def _drain(self) -> None:
        """After the child exited: dispatch what is still in the pipes and in flight on the socket."""
        deadline = time.monotonic() + self.drain_timeout
        quiet = _QUIET_ZMQ if self._socket.use_zmq else _QUIET_RAW
        quiet_since: Optional[float] = None
        while True:
            got = self._poll(0.01)
            now = time.monotonic()
            if got:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet and self._socket_settled():
                return
            if now >= deadline:
                if got or not self._socket_settled():
                    logger.warning("Task %s: messages were still arriving %g s after it exited "
                                   "(drain_timeout); later ones are not dispatched", self._name,
                                   self.drain_timeout)
                return

    def _socket_settled(self) -> bool:
        """The socket's reader is idle (every connection closed, what came through it queued:
        ``_ReaderThread.wait_until_idle``) and nothing is left in its queue."""
        return self._socket._reader_idle(_SETTLE_WAIT) and not self._socket.has_messages

    def _stop_child(self, dispatch: bool = True) -> None:
        """SIGTERM, wait, SIGKILL, wait: each wait at most ``stop_timeout``; while waiting, messages
        keep being dispatched (``dispatch``) so a Task that reports on its way out is heard."""
        proc = self._proc
        assert proc is not None
        for action in (proc.terminate, proc.kill):
            if proc.poll() is not None:
                return
            try:
                action()
            except ProcessLookupError:
                return
            deadline = time.monotonic() + self.stop_timeout
            while proc.poll() is None and time.monotonic() < deadline:
                if dispatch:
                    self._poll(0.01)
                else:
                    time.sleep(0.01)
        if proc.poll() is None:
            logger.error("Task %s (pid %d) did not die after SIGKILL within %g s", self._name, proc.pid,
                         self.stop_timeout)

    def _natural_outcome(self) -> Outcome:
        result = self._result
        if result.returncode != 0 or result.last_signal == "TASK_FAILED":
            return Outcome.FAILED
        if result.last_signal == "TASK_CANCELLED":
            return Outcome.CANCELLED
        return Outcome.DONE

    def _close(self) -> None:
        proc = self._proc
        if proc is not None:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
            if proc.poll() is None:
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    pass
        for comm in (self._pipe, self._socket):
            if comm is not None:
                try:
                    comm.close()
                except Exception as exc:
                    logger.warning("closing %s failed: %s", comm, exc)


def run_task(cmd: Sequence[str], hooks: Optional[Mapping[str, Hook]] = None,
             on_message: Optional[Hook] = None, **options: Any) -> RunResult:
    """Run ``cmd`` with a :class:`TaskRunner`: ``hooks`` maps signal names to hooks,
    ``on_message`` is the catch-all, ``options`` are the runner's keyword arguments."""
    runner = TaskRunner(cmd, **options)
    for signal, hook in (hooks or {}).items():
        runner.on_signal(signal, hook)
    runner.on_message(on_message)
    return runner.run()
