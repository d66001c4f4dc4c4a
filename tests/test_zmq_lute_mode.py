"""ZeroMQ between lute_ipc and LUTE's own peers (lute-lcls 0.3.0): LUTE's exact bytes, nothing else.

A lute_ipc Task that does not see ``LUTE_IPC_PROTOCOL`` talks to LUTE's Executor: every ZeroMQ
message it sends is whole ``MSG;;;<len>;;;<pickle>;;;GSM`` frames with LUTE's class paths,
unsigned, and nothing else (no padding). Tasks run as child processes on the run's core
(``LUTE_IPC_PURE_PYTHON`` 0 or 1: the suite runs once per core, see conftest), on Unix and TCP loopback.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from lute_ipc import Message, codec
from lute_ipc.framing import encode_payload
from tests.socket_tasks.helpers import REPO, TASKS, collect, executor
from tests.socket_tasks.lute_executor import PEERS, LuteExecutorPeer, PullSocket

pytestmark = pytest.mark.usefixtures("clean_lute_env")
FAMILIES = ["unix", "tcp"]


def task_env(core: str, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    env.update(extra, LUTE_IPC_PURE_PYTHON=core, LUTE_USE_ZMQ="1")
    env["PYTHONPATH"] = str(REPO)
    return env


def run_task(env: Dict[str, str], *args: object, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, str(TASKS / "zmq_writer.py"), *map(str, args)], env=env,
                          capture_output=True, timeout=timeout)


def expected_messages(count: int) -> List[Message]:
    return [Message(f"log line {i}", "TASK_LOG") for i in range(count)] + [
        Message({"result": count}, "TASK_RESULT"), Message("done", "TASK_DONE")]


@pytest.mark.parametrize("per_message", [False, True], ids=["one-communicator", "per-message"])
@pytest.mark.parametrize("pull_socket", FAMILIES, indirect=True)
def test_task_sends_exactly_lutes_bytes_to_a_lute_executor(pull_socket: PullSocket, core: str,
                                                             per_message: bool) -> None:
    """Every ZeroMQ message holds whole LUTE frames (LUTE's class paths, unsigned even on TCP),
    and their bytes are exactly the frames of the messages written: no padding, nothing extra."""
    proc = subprocess.Popen([sys.executable, str(TASKS / "zmq_writer.py"), "logs-then-result", "30",
                             str(int(per_message))], env=task_env(core, **pull_socket.env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        got = pull_socket.messages_until_quiet(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert all(m.startswith(b"MSG;;;") and m.endswith(b";;;GSM") for m in got), [m[:40] for m in got]
    expected = [encode_payload(codec.dumps_lute_names(m)) for m in expected_messages(30)]
    if per_message:  # a connection per message: ZeroMQ fair-queues them, LUTE's wire has no order across them
        assert sorted(got) == sorted(expected)
    else:
        assert b"".join(got) == b"".join(expected)
    assert b"lute.execution.ipc" in got[0] and b"lute_ipc.message" not in b"".join(got)


def run_lute_executor(family: str, expected: int, task_args: List[object], core: str,
                      timeout: float = 120) -> Dict[str, Any]:
    with LuteExecutorPeer("lute_zmq_executor.py", "1" if family == "tcp" else "0", expected, 90,
                          env={k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}) as peer:
        exported = dict(peer.exported, LUTE_EXECUTOR_HOST="localhost")  # loopback only
        task = run_task(task_env(core, **exported), *task_args, timeout=timeout)
        assert task.returncode == 0, task.stderr.decode(errors="replace")[-2000:]
        report: Dict[str, Any] = peer.report(timeout)
    return report


@pytest.mark.parametrize("per_message", [False, True], ids=["one-communicator", "per-message"])
@pytest.mark.parametrize("family", FAMILIES)
def test_lute_ipc_task_into_lutes_executor(lute_package: None, family: str, core: str, per_message: bool) -> None:
    """LUTE's own Executor gets every message, the TASK_RESULT after many log frames included, as
    its own classes, and its decoder is left clean (the padding message used to stay there as an
    unfinished message and swallow every later message)."""
    count = 60
    report = run_lute_executor(family, count + 2, ["logs-then-result", count, int(per_message)], core)
    received = [(r[2], r[3]) for r in report["received"]]
    expected = [(m.signal, repr(m.contents)) for m in expected_messages(count)]
    if per_message:  # a connection per message: no order across connections on LUTE's wire
        received, expected = sorted(received), sorted(expected)
    assert received == expected
    assert {(r[0], r[1]) for r in report["received"]} == {("lute.execution.ipc", "Message")}
    assert report["clean"]


@pytest.mark.parametrize("family", FAMILIES)
def test_72mb_result_into_lutes_executor(lute_package: None, family: str) -> None:
    """LUTE's SocketTester-sized result (9,000,000 float64, 72 MB) reaches LUTE's Executor. (Its
    values are 0.5: LUTE's own decoder splits on ``;;;`` and never delivers a payload holding it,
    which 72 MB of ``arange`` do.)"""
    report = run_lute_executor(family, 2, ["big-result", 9_000_000, "halves"], "1" if family == "tcp" else "0",
                               timeout=300)
    total = 0.5 * 9_000_000
    assert [(r[2], r[3]) for r in report["received"]] == [
        ("TASK_RESULT", f"ndarray (9000000,) {total}"), ("TASK_DONE", "'done'")]
    assert report["clean"]


@pytest.mark.parametrize("family", FAMILIES)
def test_lute_task_into_lute_ipc_executor(lute_package: None, monkeypatch: pytest.MonkeyPatch, family: str) -> None:
    """LUTE's own Task (one communicator per message, PUSH) is served by the lute_ipc Executor's
    PULL socket as before (on TCP with authentication off: LUTE's frames are unsigned)."""
    if family == "tcp":
        monkeypatch.setenv("LUTE_USE_TCP", "1")
        monkeypatch.setenv("LUTE_BIND_HOST", "127.0.0.1")
    specs = [("Message", f"log {i}", "TASK_LOG") for i in range(20)] + [("Message", {"r": 1}, "TASK_RESULT")]
    with executor(True, require_auth=False if family == "tcp" else None) as ex:
        env = dict(os.environ)
        if family == "tcp":  # LUTE connects to LUTE_EXECUTOR_HOST: keep it on loopback
            env["LUTE_EXECUTOR_HOST"] = "localhost"
        child = subprocess.run([sys.executable, str(PEERS / "lute_socket_task.py"), "1"], input=pickle.dumps(specs),
                               capture_output=True, timeout=120, env=env)
        assert child.returncode == 0, child.stderr.decode()[-2000:]
        got = collect(ex, len(specs), 30)  # a connection per message: no order across connections
        assert sorted(map(repr, ((m.contents, m.signal) for m in got))) == sorted(repr((c, s)) for _, c, s in specs)
        assert ex.stats is not None and ex.stats.framing_errors == 0 and ex.stats.auth_failures == 0


def test_lute_mode_task_into_lute_ipc_pull(monkeypatch: pytest.MonkeyPatch, core: str) -> None:
    """A lute_ipc Task whose environment lost LUTE_IPC_PROTOCOL talks LUTE to the lute_ipc
    Executor's PULL socket: still delivered (LUTE's class paths decode as lute_ipc's)."""
    with executor(True) as ex:
        env = task_env(core, LUTE_SOCKET=os.environ["LUTE_SOCKET"], LUTE_EXECUTOR_HOST="localhost")
        task = run_task(env, "logs-then-result", 40, 0)
        assert task.returncode == 0, task.stderr.decode(errors="replace")[-2000:]
        got = collect(ex, 42, 30)
    assert got == expected_messages(40)
    assert type(got[0]) is Message
