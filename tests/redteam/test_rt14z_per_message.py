"""Red team 14z: LUTE's per-message pattern over ZeroMQ (a new SocketCommunicator per message:
``delayed_setup(); write(); clear_communicator()``).

Issue 14, deliverable 6: "Between lute_ipc peers, communicators created per message in one process
share one process-wide session link (clear_communicator() hands its message to the kernel and
returns; delivery is still confirmed at close/exit)". Raw sockets do (one connection for 5,000
messages, ~12k msg/s on Unix in our run). Over ZeroMQ every per-message communicator opens a
session of its own -- a new connection (and, on TCP, a CURVE handshake) and an acknowledgement
round trip per message: 5,000 messages made 5,000 connections, 773 msg/s on Unix and 292 msg/s on
TCP (Cython; pure: 538 / 256), against 12,171 / 4,652 on raw sockets in the same run -- and in a
second run, same run for all three (1,500 messages, Cython, loaded machine): lute_ipc ZeroMQ 464-480
msg/s, LUTE 0.3.0's own ZeroMQ per-message Task 1,025-1,406, lute_ipc raw 10,099-18,454 on Unix;
113-128 / 749-786 / 17,150-18,137 on TCP: 0.15-0.45x LUTE's own, where the goal is 5x.
The test counts connections through a relay, so it asserts no timing.

A consequence: under backpressure a per-message ``clear_communicator()`` waits for that
acknowledgement at most ``linger`` (5 s), then raises ``TransportError("1 of 1 message(s) were not
confirmed ... (is it still reading?)")`` -- for a live Executor whose consumer is merely slow, and
for a message it then delivers. A LUTE Task does not catch that error: a consumer pause over 5 s
kills Tasks that use LUTE's pattern (raw sockets: ``clear_communicator()`` returns, backpressure
waits).

What holds (passing tests): nothing is lost or reordered over thousands of per-message
communicators, and the Task's descriptors and threads do not grow with the number of messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.redteam.rt14z_common import CORES, FAMILIES, executor_process, popen_task, run_task, run_task_ok
from tests.socket_tasks.relay import Relay

pytest.importorskip("zmq")


PER_MESSAGE = """
import os, sys, threading
from lute_ipc import Message, Party, SocketCommunicator
count = int(sys.argv[1])
def descriptors():
    return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))
for i in range(count):
    comm = SocketCommunicator(Party.TASK)
    comm.delayed_setup()
    comm.write(Message(f"m{i}", "TASK_LOG"))
    comm.clear_communicator()
    if i == 99:
        early = descriptors()
print("descriptors", *early, *descriptors())
"""


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_per_message_communicators_share_one_zeromq_link(core: str, family: str, tmp_path: Path) -> None:
    with executor_process(core, family) as ex:
        relay = Relay(ex.exported["LUTE_IPC_ZMQ_SESSION"], tmp_path)
        try:
            run_task_ok(PER_MESSAGE, dict(ex.task_env, LUTE_IPC_ZMQ_SESSION=relay.address), "120")
            assert ex.read(120, 30) == [repr(f"m{i}") for i in range(120)]
        finally:
            relay.close()
        assert relay.connections == 1, f"{relay.connections} connections for 120 per-message communicators"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_thousand_per_message_communicators_lose_nothing_and_leak_nothing(core: str, family: str) -> None:
    with executor_process(core, family) as ex:
        done = run_task_ok(PER_MESSAGE, ex.task_env, "1000")
        assert ex.read(1000, 60) == [repr(f"m{i}") for i in range(1000)]
        assert ex.read(1, 0.3) == []
    fds_early, threads_early, fds_late, threads_late = map(int, done.stdout.split()[1:])
    assert fds_late <= fds_early and threads_late <= threads_early, done.stdout



FILL = """
from lute_ipc import Message, Party, SocketCommunicator
task = SocketCommunicator(Party.TASK, linger=0.5)
for i in range(200):
    task.write(Message(f"fill{i}"))
try:
    task.close()
except Exception:
    pass  # the consumer is stalled on purpose: close() may not get its confirmation
"""

ONE_PER_MESSAGE = """
from lute_ipc import Message, Party, SocketCommunicator
comm = SocketCommunicator(Party.TASK)
comm.delayed_setup()
comm.write(Message("one", "TASK_RESULT"))
try:
    comm.clear_communicator()
    print("clear_communicator returned", flush=True)
except Exception as exc:
    print("clear_communicator raised", type(exc).__name__, exc, flush=True)
"""


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_per_message_clear_does_not_fail_on_a_slow_consumer(core: str, family: str) -> None:
    with executor_process(core, family, {"queue_size": 10}) as ex:
        run_task(FILL, ex.task_env)  # the Executor's queue is full: its consumer is slow
        task = popen_task(ONE_PER_MESSAGE, ex.task_env)
        try:
            assert task.stdout is not None
            outcome = task.stdout.readline().strip()
            got = ex.read(201, 30)  # the consumer catches up
        finally:
            _, err = task.communicate(timeout=120)
        assert task.returncode == 0, err[-2000:]
    assert repr("one") in got, got[-5:]
    assert outcome == "clear_communicator returned", outcome
