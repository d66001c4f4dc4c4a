"""Why LUTE's Executor loses ``SocketTester``'s 72 MB result over ZeroMQ: the proof behind the
matrix's expected failure (``LUTE-executor+lute_ipc-task`` and ``both-LUTE``, ``*-zmq``,
``SocketTester-72MB``).

* :func:`test_every_byte_reaches_lutes_pull_socket_though_the_task_is_killed`: a lute_ipc Task
  in LUTE's wire mode hands both 72 MB messages to ZeroMQ; once its last
  ``clear_communicator()`` returned it is killed (SIGKILL: no exit handler, no linger); a bare
  ZeroMQ PULL socket where LUTE's Executor would be still receives every byte, exactly LUTE's
  frames. Nothing is lost by lute_ipc or by libzmq at close or at exit.
* :func:`test_lutes_executor_never_delivers_a_payload_holding_its_separator`: LUTE's own
  Executor-side ``SocketCommunicator`` (its PULL socket and reader thread) gets the same
  messages, from a lute_ipc Task or from LUTE's own Task, and delivers none of them when one
  float64 among 9 million holds the bytes ``;;;`` (LUTE's decoder splits a frame on every
  ``;;;``, keeps it as unfinished for ever, and every later message with it); the same
  messages without it are delivered. 72 MB of ``SocketTester``'s random values hold ``;;;``
  in most runs (about 1.7 times on average: both arrays are free of it in about 3 runs of 100).

Runs where the matrix runs (``.ci/run``'s LUTE section); skips otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from tests.socket_tasks.lute_executor import LuteExecutorPeer, PullSocket

from .test_lute_matrix import _full_lute_installed

pytestmark = pytest.mark.lute

HERE = Path(__file__).resolve().parent
TASK = HERE / "socket_tester_task.py"
FAMILIES = ["unix", "tcp"]


@pytest.fixture(scope="module", autouse=True)
def _where_the_matrix_runs() -> None:
    """Runs with the matrix (LUTE with its dependencies, numpy among them, and the switch installed:
    ``.ci/run``'s LUTE section), not in every leg of the suite."""
    reason = _full_lute_installed()
    if reason and os.environ.get("LUTE_IPC_MATRIX_REQUIRED"):
        pytest.fail(f"LUTE_IPC_MATRIX_REQUIRED is set but the proof cannot run: {reason}")
    if reason:
        pytest.skip(reason)


def _clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def _lute_frames(kind: str) -> List[bytes]:
    """LUTE's frames of the two messages, as the lute_ipc Task encodes them for LUTE's Executor."""
    sys.path.insert(0, str(HERE))
    try:
        import socket_tester_task
    finally:
        sys.path.remove(str(HERE))
    from lute_ipc import Message, codec
    from lute_ipc.framing import encode_payload

    return [bytes(encode_payload(codec.dumps_lute_names(Message(array, signal))))
            for array, signal in zip(socket_tester_task.arrays(kind), (None, "TASK_RESULT"))]


@pytest.mark.parametrize("pull_socket", FAMILIES, indirect=True)
def test_every_byte_reaches_lutes_pull_socket_though_the_task_is_killed(pull_socket: PullSocket,
                                                                        core: str) -> None:
    expected = _lute_frames("separator")
    task = subprocess.Popen([sys.executable, str(TASK), "lute_ipc", "separator"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_clean_env(**pull_socket.env, LUTE_IPC_PURE_PYTHON=core))
    try:
        assert task.stdout is not None
        line = task.stdout.readline()
        assert line == b"handed over\n", (line, task.stderr.read().decode(errors="replace")[-2000:]
                                          if task.stderr else "")
        task.send_signal(signal.SIGKILL)  # right after the last clear_communicator(): nothing runs at exit
        task.wait(timeout=30)
        got = pull_socket.receive(sum(map(len, expected)), timeout=60)
    finally:
        if task.poll() is None:
            task.kill()
            task.wait()
        for stream in (task.stdin, task.stdout, task.stderr):
            if stream is not None:
                stream.close()
    assert [len(m) for m in got] == [len(f) for f in expected], "bytes lost between the Task and LUTE's socket"
    assert got == expected, "the bytes at LUTE's socket are not the Task's frames"
    assert all(b";;;" in f[f.index(b";;;", 6) + 3:-6] for f in got), "each payload holds LUTE's separator"


def _run_lute_executor(family: str, sender: str, kind: str) -> Dict[str, object]:
    """LUTE's own Executor-side SocketCommunicator reads 20 s for the Task's two messages."""
    with LuteExecutorPeer("lute_zmq_executor.py", "1" if family == "tcp" else "0", 2, 20,
                          env=_clean_env(LUTE_IPC_SHIM="0")) as peer:
        task_env = _clean_env(**peer.exported, LUTE_IPC_SHIM="0" if sender == "lute" else "1")
        if family == "tcp" and sender == "lute_ipc":
            task_env["LUTE_EXECUTOR_HOST"] = "localhost"  # loopback (LUTE's own Task needs the host name)
        task = subprocess.run([sys.executable, str(TASK), sender, kind], input=b"", capture_output=True,
                              timeout=120, env=task_env)
        assert task.returncode == 0 and task.stdout == b"handed over\n", task.stderr.decode(errors="replace")[-2000:]
        report: Dict[str, object] = peer.report(120)
    return report


@pytest.mark.parametrize("sender", ["lute_ipc", "lute"], ids=["lute_ipc-task", "LUTE-task"])
@pytest.mark.parametrize("family", FAMILIES)
def test_lutes_executor_never_delivers_a_payload_holding_its_separator(family: str, sender: str) -> None:
    report = _run_lute_executor(family, sender, "separator")
    assert report["received"] == [], "LUTE's decoder delivered a payload holding ';;;' (update docs/MIGRATION.md)"
    assert report["clean"] is False, "LUTE's decoder should keep the message as unfinished"


@pytest.mark.parametrize("family", FAMILIES)
def test_lutes_executor_delivers_the_same_messages_without_its_separator(family: str) -> None:
    report = _run_lute_executor(family, "lute_ipc", "plain")
    assert [(r[2], r[3]) for r in report["received"]] == [  # type: ignore[index, union-attr]
        (None, "ndarray (9000000,) 4500000.0"), ("TASK_RESULT", "ndarray (9000000,) 4500000.0")]
    assert report["clean"] is True
