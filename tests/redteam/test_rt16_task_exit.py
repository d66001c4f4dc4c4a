"""Red team 16: a Task that uses the socket as LUTE's Tasks do leaves a socket open at exit.

LUTE's Task code reports each socket message with a fresh communicator:
``SocketCommunicator(); delayed_setup(); write(msg); clear_communicator()`` (its
``_report_to_executor``), and LUTE's ``task.py`` sets ``PYTHONWARNINGS=default`` for its Tasks.
With lute_ipc behind ``lute.execution.ipc`` on raw sockets (Unix or TCP), the Task still holds
a connected socket when the interpreter exits: Python prints ``sys:1: ResourceWarning: unclosed
<socket.socket ... raddr=.../lute.sock>`` on the Task's stderr, and LUTE's Executor, which reads
that stderr, logs it as a message of the Task in every run. In the same runs of LUTE's own
``Tester`` on lute_ipc (both sides, Unix raw) the Executor also logs ``WARNING
lute_ipc.transport: connection #1 closed: receive failed: [Errno 104] Connection reset by
peer``. LUTE's own IPC prints neither; nothing was lost in these runs, but the promise is "the
same log story", and a user reading a reset warning on every clean run cannot tell it from a
real loss. ZeroMQ and ``lute_ipc.task.report()`` are clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from tests.redteam.rt16_common import lute_matrix

pytestmark = pytest.mark.timeout(180)

EXECUTOR = textwrap.dedent(
    """
    import subprocess, sys, time
    from lute_ipc import Party, SocketCommunicator
    ex = SocketCommunicator(Party.EXECUTOR)
    ex.delayed_setup()                       # exports LUTE_SOCKET / LUTE_PORT (+ key) to the child
    runs = []
    for _ in range(int(sys.argv[2])):         # on Unix sockets the warning shows in most runs, not all
        child = subprocess.run([sys.executable, "-W", "default", "-c", sys.argv[1]], capture_output=True,
                               text=True, timeout=60)
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            msg = ex.read(wait=0.2)
            if msg.signal == "TASK_RESULT":
                got.append(msg.contents)
        runs.append((child.returncode, got, child.stderr))
    ex.clear_communicator()
    print(repr(runs))
    """
)

LUTE_STYLE_TASK = textwrap.dedent(
    """
    from lute_ipc import Message, SocketCommunicator
    for i in range(3):                       # LUTE's _report_to_executor: one communicator per message
        comm = SocketCommunicator()
        comm.delayed_setup()
        comm.write(Message(contents={"i": i}, signal="TASK_RESULT" if i == 2 else None))
        comm.clear_communicator()
    """
)

TRANSPORTS: Dict[str, Dict[str, str]] = {
    "unix-raw": {"LUTE_USE_ZMQ": "0"},
    "tcp-raw": {"LUTE_USE_ZMQ": "0", "LUTE_USE_TCP": "1", "LUTE_BIND_HOST": "127.0.0.1"},
}

RUNS = {"unix-raw": 10, "tcp-raw": 3}
"""Task runs per test: on TCP every run warns, on Unix sockets most runs do (1 to 5 of 5 seen)."""


def _env(transport: str, pure: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    env.update(TRANSPORTS[transport], LUTE_IPC_PURE_PYTHON=pure)
    return env


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_lute_style_task_closes_its_socket(transport: str, pure: str) -> None:
    done = subprocess.run([sys.executable, "-c", EXECUTOR, LUTE_STYLE_TASK, str(RUNS[transport])],
                          env=_env(transport, pure), capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = eval(done.stdout.strip().splitlines()[-1])
    for returncode, got, stderr in runs:
        assert returncode == 0 and got == [{"i": 2}], (returncode, got, stderr)  # delivered: the check is meaningful
    warned = [stderr for _, _, stderr in runs if "ResourceWarning" in stderr]
    assert not warned, f"the Task left a socket open at exit in {len(warned)} of {len(runs)} runs: {warned[0]!r}"


# --------------------------------------------------------------------------- with LUTE itself
@pytest.mark.lute
def test_lute_tester_on_lute_ipc_logs_no_reset_or_resource_warning(tmp_path: Path) -> None:
    matrix = lute_matrix()
    from tests.lute_matrix.manager import Manager

    with Manager() as manager:
        run = matrix.run_lute("Tester", "1", "unix-raw", tmp_path, manager.url, 600)
    matrix.check_tester([run])  # COMPLETED, all ten pipe messages: the run itself is clean
    noise = [line for line in run.log.splitlines()
             if "ResourceWarning" in line or "Connection reset" in line]
    assert not noise, f"a clean run logs: {noise}"
