"""Helpers shared by the socket tests: transports, child processes, environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import pytest

from lute_ipc import Message, Party, SocketCommunicator

TASKS = Path(__file__).resolve().parent
REPO = TASKS.parent.parent

TRANSPORTS = [
    pytest.param(("raw", "unix"), id="raw-unix"),
    pytest.param(("raw", "tcp"), id="raw-tcp"),
    pytest.param(("zmq", "unix"), id="zmq-unix"),
    pytest.param(("zmq", "tcp"), id="zmq-tcp"),
]


def clear_lute_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every LUTE_* variable except the implementation switch."""
    for name in list(os.environ):
        if name.startswith("LUTE_") and name != "LUTE_IPC_PURE_PYTHON":
            monkeypatch.delenv(name)


def use_transport(monkeypatch: pytest.MonkeyPatch, transport: tuple) -> bool:
    """Set the environment for ``(kind, family)``; return use_zmq. TCP binds loopback only."""
    kind, family = transport
    if family == "tcp":
        monkeypatch.setenv("LUTE_USE_TCP", "1")
        monkeypatch.setenv("LUTE_BIND_HOST", "127.0.0.1")
    return kind == "zmq"


def child_env(use_zmq: Optional[bool] = None, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment a Task inherits from this (Executor) process, plus ``extra``;
    ``use_zmq`` sets ``LUTE_USE_ZMQ`` so the child picks the same transport."""
    env = dict(os.environ)
    if use_zmq is not None:
        env["LUTE_USE_ZMQ"] = "1" if use_zmq else "0"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def start_task(script: str, *args: object, env: Optional[Dict[str, str]] = None,
               stdin: Optional[int] = None) -> subprocess.Popen:
    """Start ``tests/socket_tasks/<script>`` with this interpreter."""
    return subprocess.Popen([sys.executable, str(TASKS / script), *map(str, args)],
                            env=env if env is not None else child_env(), stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def executor(use_zmq: bool, **options: object) -> SocketCommunicator:
    comm = SocketCommunicator(Party.EXECUTOR, use_zmq=use_zmq, **options)
    comm.delayed_setup()
    return comm


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """True once ``predicate()`` is true, polled every 10 ms; False if it is still false after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def collect(comm: SocketCommunicator, count: int, timeout: float,
            procs: Iterable[subprocess.Popen] = ()) -> List[Message]:
    """Read until ``count`` messages came or ``timeout`` passed (or every proc failed)."""
    procs = list(procs)
    out: List[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        out.extend(comm.read_many(count - len(out), wait=0.2))
        failed = [p for p in procs if p.poll() not in (None, 0)]
        if failed:
            raise AssertionError("Task failed: " + failed[0].stderr.read().decode(errors="replace"))
    return out


def lute_executor_loop(ex: SocketCommunicator, proc: subprocess.Popen, poll_interval: float = 0.05,
                       limit: float = 40.0) -> Tuple[List[Message], float]:
    """What LUTE 0.3.0's Executor does with its communicator (``execute_task``, ``_task_loop``,
    ``_finalize_task``): read while messages wait, sleep, and once the process has ended (or after
    ``limit`` seconds) one final loop. Returns the messages read and the final loop's seconds."""
    got: List[Message] = []

    def task_loop() -> None:
        while True:
            msg = ex.read(proc)
            if msg.contents is not None or msg.signal is not None:
                got.append(msg)
            if not ex.has_messages:
                break

    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        task_loop()
        time.sleep(poll_interval)
    started = time.monotonic()
    task_loop()  # the final read
    return got, time.monotonic() - started


def finish(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait for a Task; fail with its stderr if it did not exit 0."""
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError("Task did not finish: " + err.decode(errors="replace"))
    assert proc.returncode == 0, err.decode(errors="replace")


def write_until_raises(task: SocketCommunicator, error: type, match: str, text: str,
                       pause: float, timeout: float = 10) -> BaseException:
    """Write ``Message(text)`` every ``pause`` seconds until ``write()`` raises ``error``
    (matching ``match``) — fails the test if it has not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with pytest.raises(error, match=match) as info:
        while time.monotonic() < deadline:
            task.write(Message(text))
            time.sleep(pause)
    return info.value
