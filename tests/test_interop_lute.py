"""Interoperability with the real LUTE package (lute-lcls 0.3.0), peer against peer.

LUTE runs only in child processes (importing it configures logging and writes os.environ).
CI installs the package (`pip install --no-deps lute-lcls==0.3.0`); without it these tests
skip locally, and fail under CI so they can never be skipped silently.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from typing import Any, Iterator, List, Tuple

import pytest

from lute_ipc import Message, Party, SocketCommunicator, TaskMetadataMessage, TaskRequest, TaskRequestMessage
from tests.socket_tasks.lute_executor import PEERS, LuteExecutorPeer

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module", autouse=True)
def _needs_lute(lute_package: None) -> None:
    """Every test here runs a LUTE peer."""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LUTE_SOCKET", "LUTE_PORT", "LUTE_USE_TCP", "LUTE_EXECUTOR_HOST", "LUTE_IPC_KEY", "LUTE_USE_ZMQ",
                 "LUTE_IPC_PROTOCOL", "LUTE_IPC_ZMQ_SESSION"):
        monkeypatch.delenv(name, raising=False)
    yield


def _read_all(comm: SocketCommunicator, count: int, timeout: float = 60) -> List[Message]:
    out: List[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        msg = comm.read(wait=0.2)
        if msg.contents is not None or msg.signal is not None:
            out.append(msg)
    return out


SPECS: List[Tuple[str, Any, Any]] = [
    ("Message", "started", "TASK_STARTED"),
    ("Message", {"result": [1, 2, 3]}, "TASK_RESULT"),
    ("Message", "log line with ;;;GSM and ;;; and MSG;;;3;;;inside", "TASK_LOG"),
    ("Message", b"binary ;;;GSM\x80\x04 payload", "TASK_RESULT"),
    ("TaskRequestMessage", {"request": "RUNNING_TASKS", "for_manager": True}, None),
    ("TaskMetadataMessage", {"key": "value"}, None),
    ("Message", "after the separator payloads", "TASK_DONE"),
]


def _expected() -> List[Message]:
    out: List[Message] = []
    for kind, contents, signal in SPECS:
        if kind == "TaskRequestMessage":
            out.append(TaskRequestMessage(TaskRequest(**contents)))
        elif kind == "TaskMetadataMessage":
            out.append(TaskMetadataMessage(contents))
        else:
            out.append(Message(contents, signal))
    return out


@pytest.mark.parametrize("zmq", [False, True], ids=["raw", "zmq"])
def test_lute_task_to_lute_ipc_executor(clean_env: None, zmq: bool) -> None:
    """LUTE Task-side SocketCommunicator (one connection per message) -> our Executor: all delivered, our types."""
    with SocketCommunicator(Party.EXECUTOR, use_zmq=zmq) as comm:
        comm.delayed_setup()
        child = subprocess.run([sys.executable, str(PEERS / "lute_socket_task.py"), "1" if zmq else "0"],
                               input=pickle.dumps(SPECS), capture_output=True, timeout=120, env=dict(os.environ))
        assert child.returncode == 0, child.stderr.decode()[-2000:]
        got = _read_all(comm, len(SPECS))
    assert got == _expected()
    assert [type(m) for m in got] == [type(m) for m in _expected()]


@pytest.mark.parametrize("zmq", [False, True], ids=["raw", "zmq"])
def test_lute_ipc_task_to_lute_executor(clean_env: None, zmq: bool) -> None:
    """Our Task-side SocketCommunicator -> LUTE's Executor-side SocketCommunicator: delivered."""
    sent = [Message(i, "TASK_LOG") for i in range(20)] + [Message({"done": True}, "TASK_DONE")]
    with LuteExecutorPeer("lute_socket_executor.py", "1" if zmq else "0", len(sent), 60, env=dict(os.environ)) as peer:
        os.environ.update(peer.exported)
        with SocketCommunicator(Party.TASK, use_zmq=zmq) as task:
            task.delayed_setup()
            for msg in sent:
                task.write(msg)
        received = peer.report(120)
    assert [(contents, signal) for _, _, contents, signal in received] == [(repr(m.contents), m.signal) for m in sent]


def test_lute_executor_loses_frames_after_a_separator_payload(clean_env: None) -> None:
    """Documents the bug we fix: LUTE's own Executor stalls on a payload containing ';;;'.

    The same messages through our Executor all arrive (test_lute_task_to_lute_ipc_executor).
    """
    sent = [Message("before"), Message("has ;;; inside"), Message("after")]
    with LuteExecutorPeer("lute_socket_executor.py", "0", len(sent), 3, env=dict(os.environ)) as peer:
        os.environ.update(peer.exported)
        for msg in sent:  # one connection per message, as LUTE Tasks do
            with SocketCommunicator(Party.TASK, use_zmq=False) as task:
                task.delayed_setup()
                task.write(msg)
        report = peer.report(60, check=False)
    received = [eval(contents) for _, _, contents, _ in report]
    assert received == ["before"]  # LUTE lost the separator payload and everything after it


# ----------------------------------------------------------------------------- pipes and requests
def _run_lute_pipe_task(*args: str) -> Tuple[List[Message], subprocess.Popen[bytes], List[Message]]:
    """Run the LUTE pipe Task under our Executor-side communicators; answer its socket request."""
    from lute_ipc import PipeCommunicator, TaskResponse, TaskResponseMessage

    pipe = PipeCommunicator(Party.EXECUTOR)
    got: List[Message] = []
    requests: List[Message] = []
    with SocketCommunicator(Party.EXECUTOR, use_zmq=False) as sock:
        sock.delayed_setup()
        proc = subprocess.Popen([sys.executable, "-O", str(PEERS / "lute_pipe_task.py"), *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)  # as LUTE's Executor: blocking pipes mean "read to the end"
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                msg = pipe.read(proc, wait=0.05)
                if msg.contents is not None or msg.signal is not None:
                    got.append(msg)
                request = sock.read()
                if request.signal == "TASK_REQUEST":
                    requests.append(request)
                    pipe.write(TaskResponseMessage(TaskResponse(["task-a", "task-b"])), proc)
                if proc.poll() is not None and not pipe.has_messages and not sock.has_messages:
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return got, proc, requests


def test_lute_pipe_task_to_lute_ipc_executor(clean_env: None) -> None:
    got, proc, _ = _run_lute_pipe_task()
    assert proc.returncode == 0
    assert [(m.contents, m.signal) for m in got] == [
        ("started", "TASK_STARTED"), ("a plain print() line\n", None), ({"result": [1, 2, 3]}, "TASK_RESULT"),
        ("text with ;;;GSM and \u20ac", "TASK_LOG"), ("bye", "TASK_DONE")]


def test_request_round_trip_lute_task_with_lute_ipc_executor(clean_env: None) -> None:
    """A LUTE Task requests over the socket; our Executor answers on its stdin; LUTE's read(wait) gets it."""
    from lute_ipc import TaskRequest

    got, proc, requests = _run_lute_pipe_task("request")
    assert proc.returncode == 0
    assert [r.contents for r in requests] == [TaskRequest("RUNNING_TASKS", None, True)]
    assert type(requests[0]).__name__ == "TaskRequestMessage"
    stderr = proc.stderr.read().decode() if proc.stderr and not proc.stderr.closed else ""
    assert ("bye", "TASK_DONE") in [(m.contents, m.signal) for m in got]
    # Text read from the Task's stderr arrives as whatever each read() returned: the REPLY line may
    # share a message with other text (e.g. a log line written just before it), so look at lines.
    texts = [m.contents for m in got if isinstance(m.contents, str)] + [stderr]
    reply_lines = [line[line.index("REPLY"):] for text in texts for line in text.splitlines()
                   if "REPLY" in line]  # (after whatever the same read() joined to its line: " (", ...)
    assert reply_lines, got
    assert "TaskResponse(response=['task-a', 'task-b'], for_task=None) TASK_RESPONSE" in reply_lines[0]


def _said(seen: list, contents: str, signal: str) -> bool:
    """LUTE's PipeCommunicator read (``repr(contents)``, ``signal``) as one message, or as two: it reads
    a message's contents from stdout and its signal from stderr, so a read that finds the contents
    before the signal arrived gives ``(contents, None)`` and the next one ``(None, signal)``."""
    return (contents, signal) in seen or ((contents, None) in seen and ("None", signal) in seen)


def test_lute_ipc_task_with_lute_executor_pipes_and_request(clean_env: None) -> None:
    """Our Task's pipe writes are read by LUTE's PipeCommunicator; LUTE answers our request on stdin."""
    task = [sys.executable, str(PEERS / "lute_ipc_pipe_task.py")]
    peer = subprocess.run([sys.executable, "-O", str(PEERS / "lute_pipe_executor.py"), *task], capture_output=True,
                          timeout=120, env=dict(os.environ))
    assert peer.returncode == 0, peer.stderr.decode()[-3000:]
    seen = pickle.loads(bytes.fromhex(peer.stdout.decode().strip().splitlines()[-1]))
    assert _said(seen, "'started'", "TASK_STARTED"), seen
    assert _said(seen, "{'result': [1, 2, 3]}", "TASK_RESULT"), seen
    assert any(signal == "TASK_REQUEST" and "RUNNING_TASKS" in contents for contents, signal in seen)
    assert _said(seen, "\"reply lute_ipc.message.TaskResponse ['task-a', 'task-b'] TASK_RESPONSE\"", "TASK_LOG"), seen
    assert _said(seen, "'bye'", "TASK_DONE"), seen


def test_lute_ipc_request_accepts_the_plain_reply_of_lutes_executor(clean_env: None) -> None:
    """LUTE's Executor answers a TASK_REQUEST with ``Message(contents=<answer>)`` (no TaskResponse):
    request() in a lute_ipc Task whose Executor is LUTE (no LUTE_IPC_PROTOCOL) takes it as the reply."""
    task = [sys.executable, str(PEERS / "lute_ipc_pipe_task.py")]
    env = {k: v for k, v in os.environ.items() if k != "LUTE_IPC_PROTOCOL"}
    peer = subprocess.run([sys.executable, "-O", str(PEERS / "lute_pipe_executor.py"), *task], capture_output=True,
                          timeout=120, env=dict(env, PEER_PLAIN_REPLY="1"))
    assert peer.returncode == 0, peer.stderr.decode()[-3000:]
    seen = pickle.loads(bytes.fromhex(peer.stdout.decode().strip().splitlines()[-1]))
    assert _said(seen, "\"reply lute_ipc.message.TaskResponse {'managed_tasks': ['task-a', 'task-b']} TASK_RESPONSE\"",
                 "TASK_LOG"), seen
