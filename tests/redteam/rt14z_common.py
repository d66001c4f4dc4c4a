"""Shared pieces of the red-team 14z tests (ZeroMQ transport, per-message pattern): an Executor
in a process of its own (``rt14z_executor.py``) driven over its stdin, Task environments, and
Tasks run from a few lines of code (``python -c``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORES = [pytest.param("0", id="c"), pytest.param("1", id="py")]
FAMILIES = ["unix", "tcp"]


def require_core(core: str) -> None:
    if core == "0":
        try:
            import lute_ipc._framing_c  # noqa: F401
        except ImportError:
            pytest.skip("the Cython extension is not built")


def base_env(core: str, family: str, use_zmq: bool = True) -> Dict[str, str]:
    """A clean environment (no LUTE_* of the test run) for ``family`` on ``core``; TCP on loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(LUTE_IPC_PURE_PYTHON=core, LUTE_USE_ZMQ="1" if use_zmq else "0")
    if family == "tcp":
        env.update(LUTE_USE_TCP="1", LUTE_BIND_HOST="127.0.0.1")
    return env


class ExecutorProcess:
    """``rt14z_executor.py`` in a child process; ``exported`` is the environment it exports."""

    def __init__(self, env: Dict[str, str], options: Optional[Dict[str, Any]] = None,
                 nofile: Optional[int] = None) -> None:
        args = [sys.executable, str(HERE / "rt14z_executor.py"), json.dumps(options or {})]
        if nofile is not None:
            args.append(str(nofile))
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("the Executor did not start: " + self.proc.communicate()[1][-2000:])
        self.exported: Dict[str, str] = json.loads(line)
        self.task_env = dict(env, **self.exported)

    def command(self, text: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("the Executor died: " + self.proc.communicate()[1][-2000:])
        return json.loads(line)

    def read(self, count: int, wait: float) -> List[str]:
        return list(self.command(f"read {count} {wait}")["contents"])

    def stats(self) -> Dict[str, Any]:
        return dict(self.command("stats"))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("close")
            except (AssertionError, OSError):
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ExecutorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_descriptors(pid: int) -> int:
    """Descriptors process ``pid`` holds open (read from /proc: the Executor may have none to spare)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def executor_process(core: str, family: str, options: Optional[Dict[str, Any]] = None,
                     nofile: Optional[int] = None) -> ExecutorProcess:
    """An Executor process for ``family`` on ``core`` (skips the Cython core when it is not built)."""
    require_core(core)
    return ExecutorProcess(base_env(core, family), options, nofile)


def run_task(code: str, env: Dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a Task process (``python -c``) with ``env``."""
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_task_ok(code: str, env: Dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """:func:`run_task`; the test fails (with the Task's stderr) unless the Task exits 0."""
    done = run_task(code, env, *args, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def popen_task(code: str, env: Dict[str, str], *args: str, ready: Optional[str] = None) -> subprocess.Popen[str]:
    """Start ``code`` as a Task process (``python -c``) with ``env``, its standard streams piped
    (text); with ``ready``, return once the Task printed that line."""
    task = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if ready is not None:
        assert task.stdout is not None
        line = task.stdout.readline()
        if line != ready + "\n":
            task.kill()
            raise AssertionError(f"the Task printed {line!r}, not {ready!r}: " + task.communicate()[1][-2000:])
    return task


EXIT_WITHOUT_CLOSE = """
import sys
from lute_ipc import Message, Party, SocketCommunicator
task = SocketCommunicator(Party.TASK, linger=1)
for i in range(10):
    task.write(Message(i))
task.flush()
print("written", flush=True)
sys.stdin.readline()
for i in range(10, 30):
    task.write(Message(i))
# no close(): the interpreter exits normally, as LUTE Tasks do
"""
"""A Task that writes 10 messages, flushes, says ``written``, waits for a line on stdin, writes 20
more and ends without ``close()`` (``linger`` 1 s)."""


def stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (state T)."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as stat:
            states.append(stat.read().rsplit(")", 1)[1].split()[0])
    return all(state == "T" for state in states)


def freeze(pid: int, wait: float = 10) -> None:
    """SIGSTOP ``pid`` and return once every thread of it is stopped."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + wait
    while not stopped(pid):  # wait for the condition: every thread stopped
        assert time.monotonic() < deadline, "the Executor did not stop"
        time.sleep(0.01)


COUNTED = ("framing_errors", "payload_errors", "auth_failures", "unproven_closed")
"""``stats`` counters of what LUTE's ZeroMQ endpoint refused or dropped (red teams 19 and 20)."""


def lute_address(ex: ExecutorProcess, family: str) -> str:
    """The ZeroMQ address of ``ex``'s LUTE endpoint (the PULL socket LUTE's Tasks connect to)."""
    if family == "tcp":
        return f"tcp://127.0.0.1:{ex.exported['LUTE_PORT']}"
    return f"ipc://{ex.exported['LUTE_SOCKET']}"


def lute_frame(i: int, size: int = 0) -> bytes:
    """One frame as a LUTE Task sends it: ``Message(i, "TASK_LOG")``, or with ``size`` octets, the
    contents ``(i, b"x" * size)``."""
    from lute_ipc import Message
    from lute_ipc.framing import encode_frame

    return bytes(encode_frame(Message((i, b"x" * size) if size else i, "TASK_LOG")))


def counted(stats: Dict[str, Any]) -> int:
    """What ``stats`` counts as refused or dropped on LUTE's endpoint (:data:`COUNTED`)."""
    return sum(int(stats[name]) for name in COUNTED)
