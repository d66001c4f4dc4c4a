"""Helpers shared by the usage tests: a clean LUTE environment, child processes, transports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from lute_ipc import Message, SocketCommunicator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

TRANSPORTS = [
    pytest.param((False, False), id="raw-unix"),
    pytest.param((True, False), id="zmq-unix"),
    pytest.param((False, True), id="raw-tcp"),
    pytest.param((True, True), id="zmq-tcp"),
]
"""(use_zmq, use_tcp) pairs."""


def clean_lute_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every LUTE_* variable except the implementation switch."""
    for name in list(os.environ):
        if name.startswith("LUTE_") and name != "LUTE_IPC_PURE_PYTHON":
            monkeypatch.delenv(name)


def use_tcp(monkeypatch: pytest.MonkeyPatch, tcp: bool) -> None:
    """TCP on loopback (authenticated) when ``tcp``, else a private Unix socket."""
    if tcp:
        monkeypatch.setenv("LUTE_USE_TCP", "1")
        monkeypatch.setenv("LUTE_BIND_HOST", "127.0.0.1")


def child_env(use_zmq: Optional[bool] = None, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment for a child Task (``LUTE_USE_ZMQ`` set to match ``use_zmq``)."""
    env = dict(os.environ)
    if use_zmq is not None:
        env["LUTE_USE_ZMQ"] = "1" if use_zmq else "0"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def script(name: str) -> str:
    """Path of a child script in tests/usage_tasks."""
    return str(HERE / name)


def start(name: str, *args: object, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start ``tests/usage_tasks/<name>`` with this interpreter (output captured)."""
    return subprocess.Popen([sys.executable, script(name), *map(str, args)],
                            env=env if env is not None else child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_until(comm: SocketCommunicator, done: Callable[[List[Message]], bool],
               timeout: float = 30.0) -> List[Message]:
    """Read messages from an Executor-side communicator until ``done(messages)`` or timeout."""
    got: List[Message] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s with {len(got)} messages")
        got.extend(comm.read_many(10_000, wait=0.05))
    return got


def read_until_quiet(comm: SocketCommunicator, quiet: float = 0.3, timeout: float = 30.0) -> List[Message]:
    """Read until nothing has arrived for ``quiet`` seconds."""
    got: List[Message] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"messages still arriving after {timeout} s ({len(got)} so far)")
        batch = comm.read_many(10_000, wait=0.05)
        if batch:
            got.extend(batch)
            last = time.monotonic()
    return got
