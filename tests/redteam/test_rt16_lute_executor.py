"""Red team 16: a lute_ipc Task whose Executor is LUTE's, over raw sockets.

docs/MIGRATION.md: LUTE's ``Task._report_to_executor(msg)`` becomes ``lute_ipc.task.report(msg)``,
and "a Task that does not see [``LUTE_IPC_PROTOCOL``] is talking to LUTE's Executor and sends
exactly LUTE's bytes ... nothing else" (issue 16: "sends what LUTE reads").

LUTE 0.3.0's raw-socket Executor serves one connection at a time and reads it *until the peer
closes it* before it decodes anything (its Tasks open one connection per message).
``report()`` and ``SocketLogHandler`` keep one persistent connection per process, also toward
LUTE's Executor: the frame bytes are LUTE's, but LUTE decodes none of them until the Task
exits. Seen with LUTE's own ``run_task`` (``BinaryTester`` running a Task that calls
``report()`` every 2 s for 40 s, LUTE Executor, Unix raw and TCP raw): LUTE receives no sign of
life, declares the Task UNRESPONSIVE at its heartbeat limit (30 s here, 900 s by default), kills
it, and records FAILED with the result lost. Over ZeroMQ, and with LUTE's own per-message
pattern through ``lute.execution.ipc`` on lute_ipc, the same Task ends COMPLETED.

``lute_ipc.requests.request()`` sends through ``report()``: against LUTE's raw Executor (with
``run_task``, ``BinaryTester``, the matrix's stand-in workflow manager) each of three
``request("RUNNING_TASKS", for_manager=True, timeout=5)`` raises ``RequestTimeout``; over
ZeroMQ all three are answered.

Held (passing tests): through ``lute.execution.ipc`` on lute_ipc, the bytes a Task sends to a
LUTE Executor are LUTE's own, byte for byte and connection for connection (raw Unix and TCP) and
message for message (ZeroMQ).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from tests.redteam.rt16_common import lute_matrix

pytestmark = pytest.mark.timeout(180)


class ReadUntilCloseExecutor:
    """A listener that reads the way LUTE 0.3.0's raw Executor does: accept one connection, read
    it until the peer closes it, then look at what arrived (here: record it)."""

    def __init__(self, tcp: bool) -> None:
        self._dir = tempfile.mkdtemp(prefix="rt16-")
        if tcp:
            self.server = socket.socket()
            self.server.bind(("127.0.0.1", 0))
            self.env = {"LUTE_USE_TCP": "1", "LUTE_PORT": str(self.server.getsockname()[1]),
                        "LUTE_EXECUTOR_HOST": "127.0.0.1"}
        else:
            path = os.path.join(self._dir, "lute.sock")
            self.server = socket.socket(socket.AF_UNIX)
            self.server.bind(path)
            self.env = {"LUTE_SOCKET": path, "LUTE_EXECUTOR_HOST": socket.gethostname()}
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.connections: List[bytes] = []
        self.first_decoded = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            data = b""
            with conn:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            self.connections.append(data)
            if b"first report" in data:
                self.first_decoded.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.server.close()


@pytest.fixture(params=["unix", "tcp"])
def lute_like_executor(request: pytest.FixtureRequest) -> Iterator[ReadUntilCloseExecutor]:
    executor = ReadUntilCloseExecutor(tcp=request.param == "tcp")
    yield executor
    executor.close()


def _task_env(executor: ReadUntilCloseExecutor, pure: str = "0") -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}  # no LUTE_IPC_PROTOCOL: LUTE's
    env.update(executor.env, LUTE_USE_ZMQ="0", LUTE_IPC_PURE_PYTHON=pure)
    return env


REPORTING_TASK = textwrap.dedent(
    """
    import os, sys, time
    from lute_ipc import Message
    from lute_ipc.task import report
    report(Message(contents="first report"))
    # Wait (bounded) until the Executor has read it, as a long Task would keep working meanwhile.
    deadline = time.monotonic() + 8
    while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    print("executor read it" if os.path.exists(sys.argv[1]) else "executor read nothing while the Task ran")
    report(Message(contents={"result": 1}, signal="TASK_RESULT"))
    """
)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
def test_report_reaches_a_lute_raw_executor_while_the_task_runs(lute_like_executor: ReadUntilCloseExecutor,
                                                                  pure: str, tmp_path: Path) -> None:
    flag = tmp_path / "executor-read-it"
    task = subprocess.Popen([sys.executable, "-c", REPORTING_TASK, str(flag)], env=_task_env(lute_like_executor, pure),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if lute_like_executor.first_decoded.wait(10):
        flag.write_text("yes")
    out, err = task.communicate(timeout=60)
    assert task.returncode == 0, err[-2000:]
    frames = b"".join(lute_like_executor.connections)
    assert b"first report" in frames, f"never delivered at all: {lute_like_executor.connections}"  # meaningful check
    assert "executor read it" in out, (
        f"{out.strip()}: LUTE's raw Executor got the Task's first report only when the Task exited "
        f"({len(lute_like_executor.connections)} connection(s))")


LUTE_PATTERN_TASK = textwrap.dedent(
    """
    from lute.execution.ipc import Message, SocketCommunicator
    for msg in (Message(contents="hello log", signal="TASK_LOG"),
                Message(contents={"a": [1, 2.5]}, signal="TASK_RESULT")):
        comm = SocketCommunicator()
        comm.delayed_setup()
        comm.write(msg)
        comm.clear_communicator()
    """
)


def _run_lute_pattern(executor: ReadUntilCloseExecutor, shim: str, tmp_path: Path) -> List[bytes]:
    """LUTE's Task pattern with LUTE's own module (shim 0) or lute_ipc behind it (shim 1, through
    a .pth switch installed in a directory of its own)."""
    site_dir = tmp_path / f"site{shim}"
    site_dir.mkdir()
    done = subprocess.run([sys.executable, "-m", "lute_ipc", "lute-shim", "install", "--site-dir", str(site_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runner = f"import site; site.addsitedir({str(site_dir)!r})\n" + LUTE_PATTERN_TASK
    before = len(executor.connections)
    done = subprocess.run([sys.executable, "-c", runner], env=dict(_task_env(executor), LUTE_IPC_SHIM=shim),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    deadline = threading.Event()
    for _ in range(100):  # the listener records a connection once the Task has closed it
        if len(executor.connections) - before >= 2:
            break
        deadline.wait(0.1)
    return executor.connections[before:]


def test_lute_pattern_on_lute_ipc_sends_lutes_bytes(lute_like_executor: ReadUntilCloseExecutor,
                                                    tmp_path: Path, lute_package: None) -> None:
    lute_bytes = _run_lute_pattern(lute_like_executor, "0", tmp_path)
    ours = _run_lute_pattern(lute_like_executor, "1", tmp_path)
    assert len(lute_bytes) == 2 and lute_bytes[0].startswith(b"MSG;;;"), lute_bytes
    assert ours == lute_bytes


# --------------------------------------------------------------------------- with LUTE itself
REPORTER_BINARY = textwrap.dedent(
    """
    import time
    from lute_ipc import Message
    from lute_ipc.task import report
    from lute.tasks.dataclasses import TaskResult, TaskStatus
    for i in range(20):                  # 40 s: longer than the matrix's heartbeat limit (30 s)
        report(Message(contents=f"alive {i}"))
        time.sleep(2)
    report(Message(contents=TaskResult(task_name="TestBinary", task_status=TaskStatus.COMPLETED,
                                       summary="reporter done", payload="x"), signal="TASK_RESULT"))
    """
)


REQUESTING_BINARY = textwrap.dedent(
    """
    from lute_ipc import Message
    from lute_ipc.requests import request
    from lute_ipc.task import report
    from lute.tasks.dataclasses import TaskResult, TaskStatus
    answers = []
    for _ in range(3):
        try:
            answers.append(repr(request("RUNNING_TASKS", for_manager=True, timeout=5).response))
        except Exception as exc:
            answers.append(type(exc).__name__)
    report(Message(contents=TaskResult(task_name="TestBinary", task_status=TaskStatus.COMPLETED,
                                       summary=" | ".join(answers), payload="x"), signal="TASK_RESULT"))
    """
)


def _run_binary_under_lute_executor(tmp_path: Path, source: str, transport: str) -> Tuple[str, str, str]:
    """``run_task -t BinaryTester`` with LUTE's Executor (``LUTE_IPC_SHIM=task``) running ``source``
    as its third-party program: (status, summary, log)."""
    matrix = lute_matrix()
    from tests.lute_matrix.manager import Manager

    script = tmp_path / "binary_task.py"
    script.write_text(source)
    original = matrix._config

    def config(work: Path, timeout: int) -> Path:
        path: Path = original(work, timeout)
        binary = work / "binary_task"
        binary.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
        binary.chmod(0o755)
        path.write_text(path.read_text().replace(str(work / "print_after_result"), str(binary)))
        return path

    work = tmp_path / "work"
    work.mkdir()
    matrix._config = config
    try:
        with Manager() as manager:
            run = matrix.run_lute("BinaryTester", "task", transport, work, manager.url, 600)
    finally:
        matrix._config = original
    status, summary = run.result("TestBinary")[:2]
    return status, summary, run.log


@pytest.mark.lute
def test_lute_executor_hears_a_reporting_lute_ipc_task_over_raw_sockets(tmp_path: Path) -> None:
    status, summary, log = _run_binary_under_lute_executor(tmp_path, REPORTER_BINARY, "unix-raw")
    assert (status, summary) == ("TaskStatus.COMPLETED", "reporter done"), (status, summary, log[-1500:])


@pytest.mark.lute
def test_request_is_answered_by_lute_executor_over_raw_sockets(tmp_path: Path) -> None:
    status, summary, log = _run_binary_under_lute_executor(tmp_path, REQUESTING_BINARY, "unix-raw")
    assert status == "TaskStatus.COMPLETED", (status, log[-1500:])
    assert "RequestTimeout" not in summary and summary.count("MatrixIndexer") == 3, summary
