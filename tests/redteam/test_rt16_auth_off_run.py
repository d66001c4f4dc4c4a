"""Red team 16: the mixed-TCP variables set for a run, and the lute_ipc Tasks of that run.

docs/MIGRATION.md: a lute_ipc Executor serving LUTE Tasks over TCP needs
``LUTE_IPC_REQUIRE_AUTH=0`` and ``LUTE_IPC_ALLOW=lute`` "for the Executor"; the Executor's
Tasks inherit its environment, so in a workflow half-way through a migration the same run also
starts Tasks that already have lute_ipc (their environment has the switch). docs/SECURITY.md,
defaults table: a Task signs "always (required; with require_auth=False on both sides, set a
key yourself or none is used)".

Broken on TCP ZeroMQ (LUTE's default transport once ``LUTE_USE_TCP`` is set): with the two
variables set, the Executor exports ``LUTE_IPC_PROTOCOL`` but no key, and a lute_ipc Task fails
at its first ``delayed_setup()`` with ``ConfigurationError: LUTE_IPC_KEY is not set`` (with
LUTE's ``run_task`` and ``Tester`` on lute_ipc on both sides: FAILED after 5 s, nothing
reported). Over TCP raw sockets the same Task is served (passing test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Dict

import pytest

pytestmark = pytest.mark.timeout(120)

EXECUTOR = textwrap.dedent(
    """
    import subprocess, sys, time
    from lute_ipc import Party, SocketCommunicator
    ex = SocketCommunicator(Party.EXECUTOR)
    ex.delayed_setup()                           # exports what its Tasks inherit
    child = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True, timeout=60)
    got = None
    deadline = time.monotonic() + 10
    while got is None and time.monotonic() < deadline:
        msg = ex.read(wait=0.2)
        if msg.signal == "TASK_RESULT":
            got = msg.contents
    ex.clear_communicator()
    print(repr((child.returncode, got, child.stderr[-600:])))
    """
)

TASK = textwrap.dedent(
    """
    from lute_ipc import Message, SocketCommunicator
    comm = SocketCommunicator()
    comm.delayed_setup()
    comm.write(Message(contents={"answer": 42}, signal="TASK_RESULT"))
    comm.clear_communicator()
    """
)


def _env(use_zmq: str, pure: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_")}
    env.update(LUTE_USE_TCP="1", LUTE_USE_ZMQ=use_zmq, LUTE_BIND_HOST="127.0.0.1", LUTE_IPC_REQUIRE_AUTH="0",
               LUTE_IPC_ALLOW="lute", LUTE_IPC_PURE_PYTHON=pure)
    return env


def _run(use_zmq: str, pure: str) -> None:
    done = subprocess.run([sys.executable, "-c", EXECUTOR, TASK], env=_env(use_zmq, pure), capture_output=True,
                          text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    returncode, got, stderr = eval(done.stdout.strip().splitlines()[-1])
    assert (returncode, got) == (0, {"answer": 42}), (
        f"a lute_ipc Task of a run with LUTE_IPC_REQUIRE_AUTH=0 and LUTE_IPC_ALLOW=lute: exit {returncode}, "
        f"result {got!r}; its stderr: {stderr}")


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
def test_lute_ipc_task_of_an_auth_off_run_over_tcp_zeromq(pure: str) -> None:
    pytest.importorskip("zmq")
    _run("1", pure)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
def test_lute_ipc_task_of_an_auth_off_run_over_tcp_raw(pure: str) -> None:
    _run("0", pure)
