"""Test-side control of the child processes (used by the tests and by soak.py; no pytest here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from tests.reliability.common import HERE, child_env

PYTHON = sys.executable


class Child:
    """A child process speaking JSON lines on stdout; a thread collects them (never blocks the child)."""

    def __init__(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None, name: str = "child",
                 stdin: bool = True, new_session: bool = True) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(list(argv), env=env if env is not None else child_env(),
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr,
                                     start_new_session=new_session)
        self.lines: List[Dict[str, Any]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                item = json.loads(raw)
            except ValueError:
                item = {"text": raw.decode(errors="replace").rstrip()}
            with self._cond:
                self.lines.append(item)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def find(self, key: str) -> Optional[Any]:
        with self._cond:
            for item in reversed(self.lines):
                if key in item:
                    return item[key]
        return None

    def wait_for(self, pred: Callable[[Dict[str, Any]], bool] | str, timeout: float) -> Dict[str, Any]:
        """The first line satisfying ``pred`` (or holding key ``pred``); AssertionError after ``timeout``."""
        test = (lambda item: pred in item) if isinstance(pred, str) else pred
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for item in self.lines[seen:]:
                    if test(item):
                        return item
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._thread.is_alive()):
                    raise AssertionError(f"{self.name}: no {pred if isinstance(pred, str) else 'matching'} "
                                         f"line within {timeout:g} s; last lines {self.lines[-3:]}; "
                                         f"rc={self.proc.poll()}; stderr: {self.stderr()[-2000:]}")
                self._cond.wait(min(remaining, 0.2))

    def send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float) -> Optional[int]:
        """Exit code, or None if still running after ``timeout``. Once the child has exited, its
        output is read to the end first, so ``find`` sees every line it wrote."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._thread.join(10.0)  # stdout reaches EOF once the child (and its group) closed it
        return code

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the child's whole process group (it runs in its own session)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def cleanup(self) -> None:
        """Kill the process group if anything is left, reap, close pipes. Idempotent."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.close_stdin()
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


def executor_argv(cfg: Dict[str, Any], prefix: Sequence[str] = ()) -> List[str]:
    return [*prefix, PYTHON, os.path.join(HERE, "executor_proc.py"), json.dumps(cfg)]


def task_argv(cfg: Dict[str, Any], prefix: Sequence[str] = ()) -> List[str]:
    return [*prefix, PYTHON, os.path.join(HERE, "task_proc.py"), json.dumps(cfg)]


class Group:
    """Every Child started for one test; ``cleanup()`` in teardown kills whatever is left."""

    def __init__(self) -> None:
        self.children: List[Child] = []

    def executor(self, cfg: Dict[str, Any], env: Optional[Dict[str, str]] = None,
                 prefix: Sequence[str] = (), ready_timeout: float = 30) -> "tuple[Child, Dict[str, Any]]":
        child = Child(executor_argv(cfg, prefix), env=env or child_env(), name="executor")
        self.children.append(child)
        ready = child.wait_for("ready", ready_timeout)
        return child, ready

    def task(self, cfg: Dict[str, Any], env: Dict[str, str], prefix: Sequence[str] = ()) -> Child:
        child = Child(task_argv(cfg, prefix), env=env, name=f"task {cfg.get('sender')}")
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.children:
            child.cleanup()
        self.children.clear()


def task_env(executor_ready: Dict[str, Any], use_zmq: bool, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """What a Task started by that Executor inherits: its exported LUTE_* variables."""
    env = child_env()
    for name in list(env):
        if name.startswith("LUTE_") and name != "LUTE_IPC_PURE_PYTHON":
            del env[name]
    env.update(executor_ready["env"])
    env["LUTE_USE_ZMQ"] = "1" if use_zmq else "0"
    env.update(extra or {})
    return env
