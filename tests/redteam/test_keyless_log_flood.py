"""Keyless TCP peers that fail the session handshake must not flood the Executor's log.

Found by the red team: one warning per connection ('the Task's proof does not match ...'),
unbounded (~2,000 lines/s from one loopback client); the reader thread logs synchronously, so
a slow log sink slowed every Task. Handshake failures of unproven connections are now logged
once per reader and counted in ``stats.handshake_failures``. The Executor runs in a fresh
interpreter (no state left by earlier tests)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

EXECUTOR_AND_PEERS = textwrap.dedent(
    """
    import json, logging, os, socket, time
    from lute_ipc.message import Party
    from lute_ipc.sockets import SocketCommunicator

    class Count(logging.Handler):
        lines = 0
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                Count.lines += 1

    logging.getLogger("lute_ipc").addHandler(Count())
    ex = SocketCommunicator(Party.EXECUTOR, bind_host="127.0.0.1")
    ex.delayed_setup()
    port, n = int(os.environ["LUTE_PORT"]), 300
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"LUTE-IPC/1" + os.urandom(16))
            try:
                s.recv(35)
                s.sendall(b"P" + os.urandom(32))
                s.recv(100)
            except OSError:
                pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and ex.stats.handshake_failures < n:
        time.sleep(0.05)
    print(json.dumps({"failures": ex.stats.handshake_failures, "warnings": Count.lines, "n": n}))
    ex.close()
    """
)


def test_keyless_peers_cannot_flood_the_log() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    env.update(LUTE_USE_ZMQ="0", LUTE_USE_TCP="1")
    done = subprocess.run([sys.executable, "-c", EXECUTOR_AND_PEERS], env=env, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failures"] == result["n"], result
    assert result["warnings"] < 20, f"{result['warnings']} warnings for {result['n']} keyless connections"
