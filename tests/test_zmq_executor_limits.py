"""The ZeroMQ Executor's limits toward peers that have not proven themselves, and its reports.

Real sockets, an Executor in a process of its own (``tests/redteam/rt14z_executor.py``), both
cores, Unix and TCP where it applies. The red-team tests ``tests/redteam/test_rt14z_*`` hold the
attacks themselves; these hold what must not be reported falsely, and the documented bounds.
"""

from __future__ import annotations

import socket
import time
import warnings
from typing import Any, Dict

import pytest

from lute_ipc import Message
from tests.redteam.rt14z_common import (
    CORES,
    FAMILIES,
    ExecutorProcess,
    base_env,
    open_descriptors,
    require_core,
    run_task,
)

zmq = pytest.importorskip("zmq")

COUNT = 200


def _lute_address(ex: ExecutorProcess, family: str) -> str:
    if family == "tcp":
        return f"tcp://127.0.0.1:{ex.exported['LUTE_PORT']}"
    return f"ipc://{ex.exported['LUTE_SOCKET']}"


def _wait_stats(ex: ExecutorProcess, done: Any, wait: float = 15) -> Dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        stats = ex.stats()
        if done(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def _drops(stats: Dict[str, Any]) -> int:
    return int(stats["framing_errors"] + stats["payload_errors"] + stats["auth_failures"]
               + sum(stats["errors_by_type"].values()))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_lute_peers_that_close_normally_are_not_reported(core: str, family: str) -> None:
    """LUTE's per-message pattern (a PUSH per message, closed after it) reports no drop, even
    when the Executor's descriptors are reused by the next connection at once."""
    require_core(core)
    from lute_ipc.framing import encode_frame

    with ExecutorProcess(base_env(core, family), {"require_auth": False}) as ex:
        context = zmq.Context()
        try:
            for i in range(COUNT):
                push = context.socket(zmq.PUSH)
                push.connect(_lute_address(ex, family))
                push.send(bytes(encode_frame(Message(i, "TASK_LOG"))))
                push.close(linger=10_000)
        finally:
            context.destroy(linger=0)  # (sockets a failure left open must not hang it)
        got = ex.read(COUNT, 30)  # (one connection each: libzmq fair-queues them, in any order)
        assert sorted(got, key=int) == [repr(i) for i in range(COUNT)]
        stats = _wait_stats(ex, lambda s: False, wait=0.5)  # disconnections are read meanwhile
        assert _drops(stats) == 0, stats


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_idle_connection_to_lute_endpoint_is_closed_and_counted_not_as_a_drop(core: str, family: str) -> None:
    """A connection that never speaks ZeroMQ is closed after the handshake interval (its
    descriptor given back) and counted in ``unproven_closed``, not as a dropped message."""
    require_core(core)
    with ExecutorProcess(base_env(core, family), {"require_auth": False}) as ex:
        if family == "tcp":
            idle = socket.create_connection(("127.0.0.1", int(ex.exported["LUTE_PORT"])), timeout=5)
        else:
            idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.connect(ex.exported["LUTE_SOCKET"])
        try:
            idle.settimeout(30)
            assert idle.recv(1 << 16) is not None  # libzmq's greeting; then EOF when it gives up on us
            while idle.recv(1 << 16):
                pass
            stats = _wait_stats(ex, lambda s: s["unproven_closed"] >= 1)
        finally:
            idle.close()
        assert stats["unproven_closed"] == 1, stats
        assert _drops(stats) == 0, stats


@pytest.mark.parametrize("core", CORES)
def test_lute_endpoint_refuses_unread_when_authentication_is_required(core: str) -> None:
    """TCP, authentication required (the default): a LUTE Task's message is refused before it
    is held (MAXMSGSIZE 0) and counted as an authentication failure; the Executor holds nothing
    of it, and a session Task still delivers."""
    require_core(core)
    from lute_ipc.framing import encode_frame

    with ExecutorProcess(base_env(core, "tcp")) as ex:
        context = zmq.Context()
        try:
            push = context.socket(zmq.PUSH)
            push.connect(_lute_address(ex, "tcp"))
            push.send(bytes(encode_frame(Message("unsigned", "TASK_RESULT"))))
            stats = _wait_stats(ex, lambda s: s["auth_failures"] >= 1)
            push.close(0)
        finally:
            context.destroy(linger=0)  # (sockets a failure left open must not hang it)
        assert stats["auth_failures"] >= 1 and stats["messages"] == 0 , stats
        done = run_task("from lute_ipc import Message, Party, SocketCommunicator\n"
                        "t = SocketCommunicator(Party.TASK)\nt.write(Message('legit', 'TASK_RESULT'))\nt.close()\n",
                        ex.task_env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert ex.read(1, 30) == ["'legit'"]
        assert ex.read(1, 0.3) == []  # nothing of the refused peer


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_executor_exports_its_frame_limit(core: str, family: str) -> None:
    require_core(core)
    with ExecutorProcess(base_env(core, family), {"max_frame_size": 12345}) as ex:
        assert ex.exported["LUTE_IPC_EXECUTOR_MAX_FRAME_SIZE"] == "12345"
        # a Task whose own limit is lower keeps its own: refused at its limit, named
        env = dict(ex.task_env, LUTE_IPC_MAX_FRAME_SIZE="1000")
        done = run_task("from lute_ipc import Message, Party, SocketCommunicator\n"
                        "from lute_ipc.errors import FrameTooLarge\n"
                        "t = SocketCommunicator(Party.TASK)\n"
                        "try:\n    t.write(Message(b'x' * 5000, 'TASK_RESULT'))\n"
                        "except FrameTooLarge as exc:\n    print(exc.limit, 'LUTE_IPC_MAX_FRAME_SIZE' in str(exc))\n"
                        "t.close()\n", env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["1000", "True"], done.stdout


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_a_descriptor_reused_while_the_reader_waits_is_not_a_drop(core: str, family: str) -> None:
    """The reader waits on a full queue in the middle of a batch; meanwhile a counted connection
    closes and the next one takes its descriptor, delivers one message and closes. That message
    is read before the monitor's news of the two connections: it is counted to its own
    connection, not to the closed one (which left the new one with none: a false drop)."""
    require_core(core)
    from lute_ipc.framing import encode_frame

    def frames(start: int, count: int) -> bytes:
        return b"".join(bytes(encode_frame(Message(i, "TASK_LOG"))) for i in range(start, start + count))

    with ExecutorProcess(base_env(core, family), {"require_auth": False, "queue_size": 4}) as ex:
        context = zmq.Context()
        try:
            first = context.socket(zmq.PUSH)
            first.connect(_lute_address(ex, family))
            first.send(frames(0, 1))
            assert ex.read(1, 30) == ["0"]  # the first connection is known, with one message
            filler = context.socket(zmq.PUSH)
            filler.connect(_lute_address(ex, family))
            filler.send(frames(1, 8))  # the queue (4) is full
            assert _wait_stats(ex, lambda s: s["messages"] == 9)["messages"] == 9
            filler.send(frames(9, 1100))  # a batch over the reader's 1024: it waits in the middle of it
            assert _wait_stats(ex, lambda s: s["backpressure_waits"] >= 1)["backpressure_waits"] >= 1
            before = open_descriptors(ex.proc.pid)
            first.close(linger=10_000)
            last = context.socket(zmq.PUSH)
            last.connect(_lute_address(ex, family))
            last.send(frames(1109, 1))
            last.close(linger=10_000)
            deadline = time.monotonic() + 30  # both gone: the last one's message is in the Executor
            while open_descriptors(ex.proc.pid) >= before and time.monotonic() < deadline:
                time.sleep(0.01)
            if open_descriptors(ex.proc.pid) >= before:  # (once under CI load: what is asserted holds all the same)
                warnings.warn(f"the Executor still has {open_descriptors(ex.proc.pid)} descriptors open (had "
                              f"{before}): the two connections may not both be closed while its reader waits")
            got = ex.read(1109, 30)
            filler.close(linger=10_000)
        finally:
            context.destroy(linger=0)  # (sockets a failure left open must not hang it)
        assert sorted(got, key=int) == [repr(i) for i in range(1, 1110)]
        stats = _wait_stats(ex, lambda s: _drops(s) > 0, wait=1)
        assert _drops(stats) == 0, stats
