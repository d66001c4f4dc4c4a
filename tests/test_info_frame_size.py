"""``python -m lute_ipc info`` misreports the socket transport's max frame size.

``info`` says it shows "transport defaults (from the environment, as SocketCommunicator resolves
them)" and prints ``max frame size 64 MiB (default)``; README (``LUTE_IPC_MAX_FRAME_SIZE``,
default 256 MiB) and docs/PROTOCOL.md section 3 say 256 MiB, and a set-up SocketCommunicator
indeed uses 268435456 (a 100 MiB message is delivered). docs/SECURITY.md "Resource limits" also
still says 64 MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_info_reports_the_max_frame_size_the_transport_uses() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    done = subprocess.run([sys.executable, "-m", "lute_ipc", "info"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if "max frame size" in x)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lute_ipc import Party\n"
            "from lute_ipc.sockets import SocketCommunicator\n"
            "ex = SocketCommunicator(Party.EXECUTOR, use_zmq=False)\n"
            "ex.delayed_setup()\n"
            "print(ex.max_frame_size)\n"
            "ex.close()\n",
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )
    used = int(probe.stdout.strip().splitlines()[-1])
    assert used == 256 * 1024 * 1024
    assert "256 MiB" in line, f"info says {line.strip()!r}, the transport uses {used} bytes"
