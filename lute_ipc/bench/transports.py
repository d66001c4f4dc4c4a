"""Scenarios (b) and (c): the Executor side of each contender over Unix and TCP loopback.

:func:`socket_trial` forks the Task (:mod:`.task_side`), sets up the contender's
receiving end, gives the Task its address, says ``go`` and counts messages until the
last one; the time is from the Task's first write to the moment the last message is in
the Executor's hands (for lute_ipc: returned by ``read_many``, or ``read`` for the
``-read`` contender). Every wait is bounded by ``timeout``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import TransportError
from ..message import Party
from . import payloads
from .forked import ForkedTask
from .lute_algorithm import LuteSocketReader
from .task_side import task_body

TRIAL_TIMEOUT = 300.0
"""Seconds one trial may take before it is abandoned (the Task is killed)."""

_LUTE_TCP = {"LUTE_USE_TCP": "1", "LUTE_BIND_HOST": "127.0.0.1"}


class Deadline:
    """A point in time every wait of one trial must respect (TransportError once it passed, or once
    :attr:`failure` says the trial cannot finish: its Task failed)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.failure: Optional[str] = None

    def left(self) -> float:
        if self.failure is not None:
            raise TransportError(self.failure)
        left = self.end - time.monotonic()
        if left <= 0:
            raise TransportError("a benchmark trial took too long (the machine is overloaded, or a contender hangs)")
        return left


def _watch_task(pid: int, deadline: Deadline, done: threading.Event) -> None:
    """Set ``deadline.failure`` as soon as the Task exits with an error (peeks: does not reap it)."""
    while not done.wait(0.1):
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is not None and info.si_pid == pid:
            if info.si_code != os.CLD_EXITED or info.si_status != 0:
                deadline.failure = (f"the benchmark Task failed (exit status {info.si_status}, code {info.si_code}); "
                                    "its traceback is on stderr")
            return


def _listener(family: str, directory: str) -> Tuple[socket.socket, Any]:
    if family == "unix":
        path = os.path.join(directory, "bench.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        address: Any = path
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        address = list(sock.getsockname())
    sock.listen(socket.SOMAXCONN)
    return sock, address


def _check(last: Any, shape: str, count: int, ordered: bool = True) -> None:
    problem = payloads.check_last(shape, count, last, ordered)
    if problem:
        raise TransportError(problem)


# --------------------------------------------------------------------------- receivers
# Each receiver: set up, return (setup for the Task, receive(count, deadline) -> end time, close).
Receiver = Tuple[Dict[str, Any], Callable[[int, Deadline], float], Callable[[], None]]


def _lute_ipc(mode: str, family: str, shape: str, directory: str, one_at_a_time: bool, use_zmq: bool) -> Receiver:
    from ..sockets import SocketCommunicator

    saved = {name: os.environ.pop(name) for name in list(os.environ)
             if name.startswith("LUTE_") and name != "LUTE_IPC_PURE_PYTHON"}
    if family == "tcp":
        os.environ.update(_LUTE_TCP)
    executor = SocketCommunicator(Party.EXECUTOR, use_zmq=use_zmq)
    executor.delayed_setup()
    env = {name: value for name, value in os.environ.items() if name.startswith("LUTE_")}

    def receive(count: int, deadline: Deadline) -> float:
        got = 0
        last: Any = None
        if one_at_a_time:
            read = executor.read
            while got < count:
                msg = read(wait=min(0.5, deadline.left()))
                if msg.signal is not None or msg.contents is not None:  # Message(): nothing came
                    got += 1
                    last = msg
        else:
            read_many = executor.read_many
            while got < count:
                batch = read_many(4096, wait=min(0.5, deadline.left()))
                if batch:
                    got += len(batch)
                    last = batch[-1]
        end = time.perf_counter()
        _check(last, shape, count, ordered=mode == "stream" or not use_zmq)  # lute_ipc orders raw connections
        return end

    def close() -> None:
        executor.clear_communicator()
        for name in _LUTE_TCP:
            os.environ.pop(name, None)
        os.environ.update(saved)

    return {"env": env, "address": None}, receive, close


def _lute_lcls(mode: str, family: str, shape: str, directory: str, use_zmq: bool) -> Receiver:
    """The real LUTE (``lute-lcls``) Executor: its SocketCommunicator and reader thread, ``read()``."""
    from .lute_lcls import lute_ipc_module

    if family != "unix":
        raise TransportError("LUTE's TCP Executor binds every interface: measured on Unix sockets only")
    ipc = lute_ipc_module(use_zmq)
    saved = {name: os.environ.pop(name) for name in list(os.environ)
             if name.startswith("LUTE_") and name != "LUTE_IPC_PURE_PYTHON"}
    os.environ["LUTE_SOCKET"] = os.path.join(directory, "lute.sock")
    executor = ipc.SocketCommunicator(ipc.Party.EXECUTOR)
    executor.delayed_setup()
    env = {name: value for name, value in os.environ.items() if name.startswith("LUTE_")}

    def receive(count: int, deadline: Deadline) -> float:
        got = 0
        last: Any = None
        read = executor.read
        while got < count:
            deadline.left()
            msg = read()
            if msg.signal is not None or msg.contents is not None:
                got += 1
                last = msg
        end = time.perf_counter()
        _check(last, shape, count, ordered=mode == "stream")
        return end

    def close() -> None:
        executor.clear_communicator()
        for name in [n for n in os.environ if n.startswith("LUTE_") and n != "LUTE_IPC_PURE_PYTHON"]:
            del os.environ[name]
        os.environ.update(saved)

    return {"env": env, "address": None}, receive, close


def _lute(mode: str, family: str, shape: str, directory: str) -> Receiver:
    listener, address = _listener(family, directory)
    reader = LuteSocketReader(listener)

    def receive(count: int, deadline: Deadline) -> float:
        got = 0
        last: Any = None
        while got < count:
            msg = reader.read(min(0.5, deadline.left()))
            if msg is not None:
                got += 1
                last = msg
        end = time.perf_counter()
        _check(last, shape, count, ordered=mode == "stream")
        return end

    return {"env": {}, "address": address}, receive, reader.close


def _raw(mode: str, family: str, shape: str, directory: str, count: int) -> Receiver:
    from ..framing import encode_frame

    listener, address = _listener(family, directory)
    buffer = bytearray(1 << 20)
    expected_bytes = len(payloads.frame_stream(shape, count, encode_frame))  # before the clock starts

    def receive(count: int, deadline: Deadline) -> float:
        expected = expected_bytes
        got = 0
        view = memoryview(buffer)
        while got < expected:
            listener.settimeout(min(0.5, deadline.left()))
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(None)
                recv_into = conn.recv_into
                while True:
                    n = recv_into(view)
                    if not n:
                        break
                    got += n
        end = time.perf_counter()
        if got != expected:
            raise TransportError(f"raw loop received {got} bytes, expected {expected}")
        return end

    return {"env": {}, "address": address}, receive, listener.close


def _mp_connection(mode: str, family: str, shape: str, directory: str) -> Receiver:
    from multiprocessing.connection import Client, Listener, wait

    # backlog: the default (1) drops connections that come faster than accept() (1 s SYN
    # retry); every other contender listens with SOMAXCONN, so this one does too.

    if family == "unix":
        listener = Listener(os.path.join(directory, "mp.sock"), family="AF_UNIX", backlog=socket.SOMAXCONN)
        address: Any = listener.address
    else:
        listener = Listener(("127.0.0.1", 0), family="AF_INET", backlog=socket.SOMAXCONN)
        address = list(listener.address)
    aborted = threading.Event()

    def abort() -> None:  # wakes a blocked accept(): Listener has no timeout of its own
        aborted.set()
        try:
            Client(listener.address).close()
        except OSError:
            pass

    def receive(count: int, deadline: Deadline) -> float:
        stop = threading.Event()

        def watch() -> None:  # aborts a blocked accept() once the deadline passed or the Task failed
            while not stop.wait(0.1):
                if deadline.failure is not None or time.monotonic() >= deadline.end:
                    abort()
                    return

        watchdog = threading.Thread(target=watch, daemon=True)
        watchdog.start()
        try:
            got = 0
            last: Any = None
            conn = None
            while got < count:
                if conn is None:
                    conn = listener.accept()
                    if aborted.is_set():
                        deadline.left()
                if not wait([conn], min(0.5, deadline.left())):
                    continue
                try:
                    last = conn.recv()
                except EOFError:
                    conn.close()
                    conn = None
                    continue
                got += 1
                if mode == "per-message":
                    conn.close()
                    conn = None
            end = time.perf_counter()
            if conn is not None:
                conn.close()
        finally:
            stop.set()
            watchdog.join()
        _check(last, shape, count, ordered=mode == "stream")
        return end

    return {"env": {}, "address": address}, receive, listener.close


def _pyzmq(mode: str, family: str, shape: str, directory: str) -> Receiver:
    import zmq

    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.set_hwm(160000)
    if family == "unix":
        address = f"ipc://{os.path.join(directory, 'zmq.sock')}"
        pull.bind(address)
    else:
        address = f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}"

    def receive(count: int, deadline: Deadline) -> float:
        got = 0
        last: Any = None
        recv, poll = pull.recv_pyobj, pull.poll
        while got < count:
            if poll(int(min(0.5, deadline.left()) * 1000)):
                last = recv()
                got += 1
        end = time.perf_counter()
        _check(last, shape, count, ordered=mode == "stream")
        return end

    def close() -> None:
        pull.close(linger=0)
        context.term()

    return {"env": {}, "address": address}, receive, close


def _receiver(contender: str, mode: str, family: str, shape: str, directory: str, count: int) -> Receiver:
    if contender.startswith("lute_ipc"):
        return _lute_ipc(mode, family, shape, directory, one_at_a_time=contender.endswith("-read"),
                         use_zmq=contender.endswith("-zmq"))
    if contender.startswith("lute-lcls"):
        return _lute_lcls(mode, family, shape, directory, use_zmq=contender.endswith("-zmq"))
    if contender == "raw-bytes":
        return _raw(mode, family, shape, directory, count)
    makers: Dict[str, Callable[[str, str, str, str], Receiver]] = {
        "lute": _lute, "mp-connection": _mp_connection, "pyzmq": _pyzmq}
    if contender not in makers:
        raise TransportError(f"no socket scenario for contender {contender!r}")
    return makers[contender](mode, family, shape, directory)


def socket_trial(contender: str, mode: str, family: str, shape: str, count: int,
                 timeout: float = TRIAL_TIMEOUT) -> Dict[str, float]:
    """One timed run: ``count`` messages of ``shape``, Task -> Executor; ``{"seconds": ...}``."""
    deadline = Deadline(timeout)
    task = ForkedTask(task_body(contender, mode, shape, count))
    directory = tempfile.mkdtemp(prefix="lute-ipc-bench-")
    close: Optional[Callable[[], None]] = None
    done = threading.Event()
    watcher = threading.Thread(target=_watch_task, args=(task.pid, deadline, done), daemon=True)
    watcher.start()
    try:
        setup, receive, close = _receiver(contender, mode, family, shape, directory, count)
        control = task.control
        control.send(setup)
        if control.receive(deadline.left()) != "ready":
            raise TransportError("the benchmark Task did not get ready")
        control.send("go")
        end = receive(count, deadline)
        first = control.receive(deadline.left())["first_write"]
        status = task.wait(deadline.left())
        if status != 0:
            raise TransportError(f"the benchmark Task exited with {status}")
    finally:
        done.set()
        watcher.join()
        task.kill()
        if close is not None:
            close()
        shutil.rmtree(directory, ignore_errors=True)
    if end <= first:
        raise TransportError("the Task's clock and the Executor's disagree (need one monotonic clock)")
    return {"seconds": end - first}
