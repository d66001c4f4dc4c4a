"""Red team 14z: fork safety of the ZeroMQ session link beyond the suite's one-child case.

Issue 14, deliverable 3: "after fork() the child's first write opens its own link (new ZeroMQ
context), and the parent's link is untouched". Attacked three ways that
``test_forked_child_opens_its_own_link`` does not cover; all three hold (passing tests):

* fork while another thread of the parent writes without pause (the writer's lock and libzmq's
  state may be held mid-send at the fork): 20 children each write and close, none hangs, the
  parent's stream goes on, every child message arrives;
* a ``multiprocessing`` pool (fork start method) whose workers use LUTE's per-message pattern,
  after the parent opened its own link: every message arrives (a pool worker ends with
  ``os._exit``, no ``atexit``);
* a forked child that writes one message without flushing and stays alive: the message arrives
  while the child lives (the latency bound holds in the child, whose parent's flusher thread did
  not survive the fork).
"""

from __future__ import annotations

import pytest

from tests.redteam.rt14z_common import CORES, FAMILIES, executor_process, popen_task, run_task_ok

pytest.importorskip("zmq")

FORK_WHILE_WRITING = """
import os, signal, threading
from lute_ipc import Message, Party, SocketCommunicator
comm = SocketCommunicator(Party.TASK)
comm.delayed_setup()
stop = threading.Event()
sent = [0]
def stream():
    while not stop.is_set() and sent[0] < 50_000:  # under the Executor's queue_size: no backpressure
        comm.write(Message(f"p{sent[0]}"))
        sent[0] += 1
writer = threading.Thread(target=stream)
writer.start()
statuses = []
for k in range(20):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a child that hangs dies loudly instead of blocking the test
        status = 1
        try:
            comm.write(Message(f"child{k}"))
            comm.clear_communicator()
            status = 0
        finally:
            os._exit(status)
    statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
stop.set()
writer.join()
comm.close()
print(sent[0], *statuses)
"""

POOL = """
import multiprocessing
from lute_ipc import Message, Party, SocketCommunicator
def per_message(text):
    comm = SocketCommunicator(Party.TASK)
    comm.delayed_setup()
    comm.write(Message(text))
    comm.clear_communicator()
    return 1
if __name__ == "__main__":
    per_message("parent")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        print(sum(pool.map(per_message, [f"w{i}" for i in range(60)])))
"""

UNFLUSHED_CHILD = """
import os, sys
from lute_ipc import Message, Party, SocketCommunicator
comm = SocketCommunicator(Party.TASK)
comm.write(Message("parent"))
comm.flush()
pid = os.fork()
if pid == 0:
    comm.write(Message("child, not flushed"))
    print("written", flush=True)
    sys.stdin.readline()  # alive until the test has looked
    os._exit(0)
os.waitpid(pid, 0)
comm.close()
"""


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_fork_while_another_thread_writes(core: str, family: str) -> None:
    with executor_process(core, family) as ex:
        done = run_task_ok(FORK_WHILE_WRITING, ex.task_env, timeout=120)
        sent, *statuses = map(int, done.stdout.split())
        assert statuses == [0] * 20, done.stderr[-2000:]
        got = ex.read(sent + 20, 60)
    assert sorted(c for c in got if c.startswith("'child")) == sorted(repr(f"child{k}") for k in range(20))
    assert [c for c in got if c.startswith("'p")] == [repr(f"p{i}") for i in range(sent)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_multiprocessing_fork_pool_per_message(core: str, family: str) -> None:
    with executor_process(core, family) as ex:
        done = run_task_ok(POOL, ex.task_env, timeout=120)
        assert done.stdout.split() == ["60"], done.stderr[-2000:]
        got = ex.read(61, 60)
    assert sorted(got) == sorted([repr("parent")] + [repr(f"w{i}") for i in range(60)])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_forked_child_message_is_sent_while_the_child_lives(core: str, family: str) -> None:
    with executor_process(core, family) as ex:
        task = popen_task(UNFLUSHED_CHILD, ex.task_env, ready="written")
        try:
            got = ex.read(2, 30)  # the child is alive, waiting on its stdin
        finally:
            _, err = task.communicate("go\n", timeout=60)
        assert task.returncode == 0, err[-2000:]
    # (two links, two connections: the Executor may take the child's first)
    assert sorted(got) == sorted([repr("parent"), repr("child, not flushed")])
