"""Helpers shared by the usage tests: child processes, transports, reading until done."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from lute_ipc import Message, SocketCommunicator
from tests.socket_tasks.helpers import child_env

HERE = Path(__file__).resolve().parent

TRANSPORTS = [
    pytest.param((False, False), id="raw-unix"),
    pytest.param((True, False), id="zmq-unix"),
    pytest.param((False, True), id="raw-tcp"),
    pytest.param((True, True), id="zmq-tcp"),
]
"""(use_zmq, use_tcp) pairs."""


def use_tcp(monkeypatch: pytest.MonkeyPatch, tcp: bool) -> None:
    """TCP on loopback (authenticated) when ``tcp``, else a private Unix socket."""
    if tcp:
        monkeypatch.setenv("LUTE_USE_TCP", "1")
        monkeypatch.setenv("LUTE_BIND_HOST", "127.0.0.1")


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
