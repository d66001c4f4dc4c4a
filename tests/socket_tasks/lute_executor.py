"""Where LUTE's Executor would be, for tests of lute_ipc against LUTE (lute-lcls 0.3.0): a bare
ZeroMQ PULL socket (:class:`PullSocket`), or LUTE's own Executor-side ``SocketCommunicator`` in a
child process (:class:`LuteExecutorPeer`, one of the scripts in ``tests/interop_peers``)."""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

PEERS = Path(__file__).resolve().parent.parent / "interop_peers"


class PullSocket:
    """A bare ZeroMQ PULL socket bound where LUTE's Executor would bind its own; ``env`` holds the
    variables that Executor exports to its Tasks (TCP: on loopback)."""

    def __init__(self, family: str, tmp_path: Path) -> None:
        import zmq

        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PULL)
        if family == "tcp":
            port = self.socket.bind_to_random_port("tcp://127.0.0.1")
            self.env = {"LUTE_USE_TCP": "1", "LUTE_PORT": str(port), "LUTE_EXECUTOR_HOST": "localhost"}
        else:
            path = str(tmp_path / "lute.sock")
            self.socket.bind(f"ipc://{path}")
            self.env = {"LUTE_SOCKET": path, "LUTE_EXECUTOR_HOST": socket.gethostname()}

    def receive(self, total: int, timeout: float) -> List[bytes]:
        """ZeroMQ messages until ``total`` bytes arrived or ``timeout`` seconds passed."""
        got: List[bytes] = []
        deadline = time.monotonic() + timeout
        while sum(map(len, got)) < total and time.monotonic() < deadline:
            if self.socket.poll(100):
                got.append(self.socket.recv())
        return got

    def messages_until_quiet(self, proc: subprocess.Popen[bytes], quiet: float = 0.5) -> List[bytes]:
        """ZeroMQ messages until ``proc`` ended and nothing came for ``quiet`` seconds (120 s at most)."""
        out: List[bytes] = []
        deadline = time.monotonic() + 120
        last = time.monotonic()
        while time.monotonic() < deadline:
            if self.socket.poll(50):
                out.append(self.socket.recv())
                last = time.monotonic()
            elif proc.poll() is not None and time.monotonic() - last > quiet:
                break
        return out

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


class LuteExecutorPeer:
    """LUTE's own Executor, ``tests/interop_peers/<script> <args>``, in a child process with ``env``.

    ``exported`` is the environment it gives its Tasks (its first line); :meth:`report` waits for
    its end and returns what it received (its last line). Leaving the ``with`` block kills it if
    it still runs."""

    def __init__(self, script: str, *args: object, env: Dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(PEERS / script), *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            assert self.proc.stdout is not None
            self.exported: Dict[str, str] = json.loads(self.proc.stdout.readline())
        except BaseException:
            self.close()
            raise

    def report(self, timeout: float, check: bool = True) -> Any:
        """The peer's report, once it ended (within ``timeout``); ``check``: it must have exited 0."""
        out, err = self.proc.communicate(timeout=timeout)
        if check:
            assert self.proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return pickle.loads(bytes.fromhex(out.decode().strip().splitlines()[-1]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> LuteExecutorPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
