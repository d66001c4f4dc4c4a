"""LUTE's per-message ``clear_communicator()`` on the shared ZeroMQ session when the Executor is
frozen (SIGSTOP): the call is bounded (``linger`` of the Executor's silence), does not claim the
message was confirmed, and the Task's exit names what was not confirmed (docs/RELIABILITY.md 4.7).

The slow-consumer counterpart (a live Executor whose queue is full: ``clear_communicator()``
does not raise, the message is delivered) is ``tests/redteam/test_rt14z_per_message.py``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.redteam.rt14z_common import CORES, FAMILIES, ExecutorProcess, base_env, require_core, freeze

pytest.importorskip("zmq")

PER_MESSAGE_THEN_EXIT = """
import sys
from lute_ipc import Message, Party, SocketCommunicator
def one(i):
    comm = SocketCommunicator(Party.TASK, linger=1)
    comm.delayed_setup()
    comm.write(Message(f"m{i}", "TASK_LOG"))
    comm.clear_communicator()
    print("cleared", i, flush=True)
one(0)
sys.stdin.readline()
one(1)
# no close(): the interpreter exits, as LUTE Tasks do
"""


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_per_message_clear_on_a_frozen_executor_returns_and_exit_names_the_unconfirmed(core: str,
                                                                                      family: str) -> None:
    require_core(core)
    with ExecutorProcess(base_env(core, family)) as ex:
        task = subprocess.Popen([sys.executable, "-c", PER_MESSAGE_THEN_EXIT], env=ex.task_env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert task.stdout is not None and task.stdout.readline() == "cleared 0\n", task.communicate()[1][-2000:]
        assert ex.read(1, 30) == [repr("m0")]
        freeze(ex.proc.pid)
        try:
            out, err = task.communicate("go\n", timeout=60)  # linger=1: bounded, about 2 s
        finally:
            os.kill(ex.proc.pid, signal.SIGCONT)
        got = ex.read(1, 5)
    assert task.returncode == 0, err[-2000:]
    assert out.splitlines() == ["cleared 1"], (out, err[-2000:])  # returned, raised nothing
    # ... and nothing was claimed: the exit names the message the Executor did not confirm
    assert re.search(r"1 of 2 message\(s\) were not confirmed .* sent nothing for 1 s", err), err[-2000:]
    assert got in ([], [repr("m1")])  # libzmq may have written it before the Executor froze
