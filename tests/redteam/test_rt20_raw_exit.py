"""Red team 20: raw session links, a Task ending with ``os._exit`` (RELIABILITY 4.8, PROTOCOL 5/6).

The promise: a Task that asks the Executor for acknowledgements only where it waits for them
loses nothing when it ends with ``os._exit`` right after ``flush()``/``clear_communicator()``
(Unix and TCP): Linux resets a TCP connection closed with unread data in its receive buffer and
discards its unsent send queue, so nothing may come back unasked. Attacked here with an
Executor in its own process (``rt14z_executor.py``, it reads only when told: a small
``queue_size`` makes a slow consumer) and Tasks from ``python -c``; both cores, Unix and TCP.
"""

from __future__ import annotations

import time
from typing import List

import pytest

from tests.redteam.rt14z_common import CORES, FAMILIES, ExecutorProcess, base_env, popen_task, require_core

COUNT = 6000


def _executor(core: str, family: str, **options: object) -> ExecutorProcess:
    require_core(core)
    return ExecutorProcess(base_env(core, family, use_zmq=False), dict({"queue_size": 8}, **options))


def _read_slowly(ex: ExecutorProcess, count: int, timeout: float) -> List[str]:
    """A slow consumer: 50 messages per command (the Executor's queue holds 8)."""
    got: List[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        batch = ex.read(50, 0.05)
        got += batch
        if not batch and ex.stats()["connections_closed"] >= ex.stats()["connections_accepted"] > 0:
            got += ex.read(count, 0.5)  # the connection ended: what is left is in the queue
            break
    return got


CONFIRM_TIMED_OUT = """
import os, sys
from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.errors import TransportError
count = int(sys.argv[1])
task = SocketCommunicator(Party.TASK)
payload = "x" * 1024
i = 0
while True:  # the consumer is paused: a confirmation soon runs out, its request answered later
    for i in range(i, i + 50):
        task.write(Message((i, payload), "TASK_LOG"))
    i += 1
    try:
        task.confirm(timeout=0.01)
    except TransportError:
        break
print("not-confirmed", flush=True)
sys.stdin.readline()
for i in range(i, count):
    task.write(Message((i, payload), "TASK_LOG"))
task.flush()
print("flushed", flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("family", FAMILIES)
def test_os_exit_after_a_confirm_that_timed_out_loses_nothing(core: str, family: str) -> None:
    """``confirm(timeout=...)`` that runs out leaves its confirmation request outstanding: the
    Executor answers it later, unasked from the Task's point of view; the Task then writes more,
    flushes and ends with ``os._exit``. Nothing the Task flushed may be lost."""
    with _executor(core, family) as ex:
        task = popen_task(CONFIRM_TIMED_OUT, ex.task_env, str(COUNT), ready="not-confirmed")
        assert task.stdin is not None
        task.stdin.write("go\n")
        task.stdin.flush()
        got = _read_slowly(ex, COUNT, 50)
        out, err = task.communicate(timeout=30)
        assert task.returncode == 0 and "flushed" in out, err[-2000:]
        numbers = [int(text.split(",")[0].lstrip("(")) for text in got]
        assert numbers == list(range(COUNT)), (f"{COUNT} flushed, {len(numbers)} read "
                                               f"(first missing: {sorted(set(range(COUNT)) - set(numbers))[:1]}); "
                                               f"stats {ex.stats()}")


REFUSED_THEN_EXIT = """
import os, sys, types
from lute_ipc import Message, Party, SocketCommunicator
only_here = types.ModuleType("rt20_only_here")  # a module the Executor cannot import
class OnlyHere:
    pass
OnlyHere.__module__ = "rt20_only_here"
only_here.OnlyHere = OnlyHere
sys.modules["rt20_only_here"] = only_here
count = int(sys.argv[1])
task = SocketCommunicator(Party.TASK)
payload = "x" * 1024
for i in range(count):
    task.write(Message((i, payload), "TASK_LOG"))
    if i == 10:
        task.write(Message(OnlyHere(), "TASK_LOG"))
task.flush()
print("flushed", flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("family", FAMILIES)
def test_os_exit_after_a_refused_message_loses_nothing_else(core: str, family: str) -> None:
    """A message the Executor cannot decode early in the stream: the Executor must not answer
    it unasked (that answer would reset the TCP connection at ``os._exit``); every other
    message arrives and the refused one is counted."""
    with _executor(core, family) as ex:
        task = popen_task(REFUSED_THEN_EXIT, ex.task_env, str(COUNT))
        got = _read_slowly(ex, COUNT, 50)
        out, err = task.communicate(timeout=30)
        assert task.returncode == 0 and "flushed" in out, err[-2000:]
        numbers = [int(text.split(",")[0].lstrip("(")) for text in got]
        stats = ex.stats()
        assert numbers == list(range(COUNT)), f"{COUNT} sent, {len(numbers)} read; stats {stats}"
        assert stats["messages_refused"] == 1, stats


PER_MESSAGE_THEN_EXIT = """
import os, sys
from lute_ipc import Message, Party, SocketCommunicator
payload = "x" * 1024
for i in range(int(sys.argv[1])):
    comm = SocketCommunicator(Party.TASK)
    comm.delayed_setup()
    comm.write(Message((i, payload), "TASK_LOG"))
    comm.clear_communicator()
print("cleared", flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("family", FAMILIES)
def test_os_exit_after_per_message_clear_communicator_loses_nothing(core: str, family: str) -> None:
    """LUTE's per-message pattern (a communicator per message, ``clear_communicator()``) on the
    shared raw session link, slow consumer, then ``os._exit``."""
    count = 3000
    with _executor(core, family) as ex:
        task = popen_task(PER_MESSAGE_THEN_EXIT, ex.task_env, str(count))
        got = _read_slowly(ex, count, 50)
        out, err = task.communicate(timeout=30)
        assert task.returncode == 0 and "cleared" in out, err[-2000:]
        numbers = [int(text.split(",")[0].lstrip("(")) for text in got]
        assert numbers == list(range(count)), f"{count} sent, {len(numbers)} read; stats {ex.stats()}"


FORK_CHILD_EXITS_NORMALLY = """
import os, sys
from lute_ipc import Message, Party, SocketCommunicator
payload = "x" * 1024
task = SocketCommunicator(Party.TASK)
for i in range(500):
    task.write(Message(("parent", i, payload), "TASK_LOG"))
task.flush()
pid = os.fork()
if pid == 0:
    if sys.argv[1] == "write":
        for i in range(100):
            task.write(Message(("child", i, payload), "TASK_LOG"))
    sys.exit(0)  # a normal exit: the child's exit hooks run
_, status = os.waitpid(pid, 0)
for i in range(500, 1000):
    task.write(Message(("parent", i, payload), "TASK_LOG"))
task.flush()
print("child", status, flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("child", ["write", "silent"])
def test_forked_child_exit_hooks_leave_the_parents_link_alone(core: str, family: str, child: str) -> None:
    """A forked child that ends normally runs the exit confirmation: it must not ask anything
    on the parent's connection (an answer the parent never reads resets its TCP connection at
    ``os._exit``; a record out of the parent's sequence breaks its session). The parent writes
    on, flushes and ends with ``os._exit``: all 1,000 of its messages, in order, and the child's."""
    with _executor(core, family) as ex:
        task = popen_task(FORK_CHILD_EXITS_NORMALLY, ex.task_env, child)
        expected = 1000 + (100 if child == "write" else 0)
        got = _read_slowly(ex, expected, 50)
        out, err = task.communicate(timeout=30)
        assert task.returncode == 0 and "child 0" in out, (out, err[-2000:])
        parent = [int(text.split(",")[1]) for text in got if "'parent'" in text]
        children = [int(text.split(",")[1]) for text in got if "'child'" in text]
        stats = ex.stats()
        assert parent == list(range(1000)), f"parent: 1000 sent, {len(parent)} read; stats {stats}"
        assert children == list(range(expected - 1000)), f"child: {len(children)} read; stats {stats}"
