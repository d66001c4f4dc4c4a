"""Red team 20: LUTE's ZeroMQ endpoint (the PULL socket, authentication off) after it lost
``MAXMSGSIZE`` and, on Unix sockets, its receive high-water mark (RELIABILITY 4.5, 4.8;
SECURITY's limits table).

The promises tried: every message a peer sends there is read or counted (an oversize frame as
``FrameTooLarge``), nothing delivered is counted as dropped, a peer that hangs up before the ZeroMQ
handshake ends is not counted, and on TCP the Executor's memory under a paused consumer is
bounded by ``RCVHWM`` messages per peer. Executor in its own process (``rt14z_executor.py``: it
reads only when told, so a small ``queue_size`` is a paused consumer); peers are pyzmq PUSH
sockets sending LUTE's bytes and plain sockets; both cores, Unix and TCP.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Dict

import pytest

from tests.redteam.rt14z_common import (
    CORES,
    FAMILIES,
    ExecutorProcess,
    base_env,
    counted,
    lute_address,
    lute_frame,
    require_core,
)

zmq = pytest.importorskip("zmq")

LIMIT = 1 << 20


def _executor(core: str, family: str, **options: Any) -> ExecutorProcess:
    require_core(core)
    env = base_env(core, family)
    env["LUTE_IPC_MAX_FRAME_SIZE"] = str(LIMIT)
    return ExecutorProcess(env, dict({"require_auth": False}, **options))




def _wait(ex: ExecutorProcess, done: Callable[[Dict[str, Any]], bool], wait: float = 20) -> Dict[str, Any]:
    deadline = time.monotonic() + wait
    stats = ex.stats()
    while not done(stats) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = ex.stats()
    return stats


def _push(address: str) -> Any:
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(address)
    return push


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_oversize_frame_between_good_frames_in_one_message(core: str, family: str) -> None:
    """One ZeroMQ message ``good, oversize, good`` and a multipart message ``[good] [oversize] [good]``,
    consumer paused while they arrive: the four good frames are read, the two oversize frames
    counted once each, nothing else counted."""
    with _executor(core, family, queue_size=2) as ex:
        push = _push(lute_address(ex, family))
        try:
            push.send(lute_frame(0) + lute_frame(1, LIMIT + 10) + lute_frame(2))
            push.send_multipart([lute_frame(3), lute_frame(4, LIMIT + 10), lute_frame(5)])
            stats = _wait(ex, lambda s: s["messages"] >= 2 and counted(s) >= 1)
            got = ex.read(4, 15) + ex.read(10, 0.5)
            stats = _wait(ex, lambda s: counted(s) >= 2, 5)
        finally:
            push.close(linger=0)
        numbers = sorted(int(text.split(",")[0].lstrip("(")) for text in got)
        assert numbers == [0, 2, 3, 5], (got[:6], stats)
        assert stats["errors_by_type"].get("FrameTooLarge") == 2 and counted(stats) == 2, stats


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_peers_that_hang_up_at_once_are_notcounted(core: str, family: str) -> None:
    """30 plain sockets connect to the endpoint and close at once (no ZMTP greeting), 10 send a
    ZMTP greeting's first octets and close, with the consumer paused; then a PUSH sends 3 frames:
    the 3 are read and nothing is counted."""
    with _executor(core, family, queue_size=2) as ex:
        if family == "tcp":
            target: Any = ("127.0.0.1", int(ex.exported["LUTE_PORT"]))
            kind = socket.AF_INET
        else:
            target, kind = ex.exported["LUTE_SOCKET"], socket.AF_UNIX
        for i in range(40):
            with socket.socket(kind, socket.SOCK_STREAM) as peer:
                peer.connect(target)
                if i >= 30:
                    peer.sendall(b"\xff" + b"\0" * 8 + b"\x7f")  # ZMTP signature, then gone
        push = _push(f"tcp://{target[0]}:{target[1]}" if family == "tcp" else f"ipc://{target}")
        try:
            for i in range(3):
                push.send(lute_frame(i))
            got = ex.read(3, 15)
        finally:
            push.close(linger=0)
        stats = _wait(ex, lambda s: s["connections_closed"] >= 40 if "connections_closed" in s else True, 3)
        assert len(got) == 3, (got, stats)
        assert counted(stats) == 0, stats


MIB = 1 << 20


def _rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return -1


@pytest.mark.parametrize("core", CORES)
def test_tcp_memory_with_a_paused_consumer_is_bounded_per_peer(core: str) -> None:
    """TCP, authentication off, consumer paused (queue_size 8: RCVHWM 4): 4 peers each try to send
    30 messages of 1 MiB - 64 KiB (PUSH SNDHWM 2, non-blocking sends). RELIABILITY 1 / 4.5 and
    SECURITY's limits table: the Executor holds ``queue_size`` messages plus ``RCVHWM`` ZeroMQ
    messages per peer, so a peer's sends wait once about 4 of its messages are held. Checked with
    generous slack (one in progress per peer, socket buffers, allocator): growth <= 4 x 6 + 8 + 2 +
    24 = 58 MiB.

    FINDING (main at a199493, 2 shared cores, both cores; racy: over the bound in 5 of 8 runs):
    every one of the 120 sends is accepted at once (no peer ever waits) and the Executor's RSS goes
    29 -> 146 MiB (Cython) / 28 -> 139 MiB (pure Python) before its consumer reads anything (other
    runs: 28 -> 91 MiB; within the bound in 3 runs, when the reader delivered its batch early);
    all 120 are read afterwards. Cause: ``ZmqReader._read_pull`` reads up to ``_READS_PER_STEP``
    (4,096) ZeroMQ messages per step and delivers them in batches of ``_BATCH`` (1,024) decoded
    messages: while the queue is full the reader itself holds up to 1,024 messages (each up to
    ``LUTE_IPC_MAX_FRAME_SIZE``, 256 MiB by default) taken from libzmq, so the ``RCVHWM`` bound does
    not bound anything. Reproduce:
    ``python -m pytest tests/redteam/test_rt20_lute_endpoint.py -k memory --runxfail``.
    FIXED: the reader hands its batch to the queue once it holds 1 MiB (``_BATCH_BYTES``): 6 of 6
    runs within the bound, both cores."""
    family = "tcp"
    with _executor(core, family, queue_size=8) as ex:
        address = lute_address(ex, family)
        ex.read(1, 0.1)
        base = _rss_mib(ex.proc.pid)
        pushes = []
        for _ in range(4):
            push = zmq.Context.instance().socket(zmq.PUSH)
            push.setsockopt(zmq.SNDHWM, 2)
            push.connect(address)
            pushes.append(push)
        payload = lute_frame(0, MIB - 64 * 1024)
        sent = [0] * 4
        try:
            deadline = time.monotonic() + 10  # unbounded, all 120 went at once; bounded, peers wait here
            while sum(sent) < 120 and time.monotonic() < deadline:
                progress = False
                for n, push in enumerate(pushes):
                    if sent[n] < 30:
                        try:
                            push.send(payload, zmq.NOBLOCK)
                            sent[n] += 1
                            progress = True
                        except zmq.Again:
                            pass
                if not progress:
                    time.sleep(0.05)  # every peer at its high-water mark: libzmq stopped reading
            peak = max(_rss_mib(ex.proc.pid) for _ in range(5))
            got = ex.read(sum(sent), 10)  # returns once every message sent is read
        finally:
            for push in pushes:
                push.close(linger=0)
        growth = peak - base
        assert growth <= 4 * 6 + 8 + 2 + 24, f"RSS {base} -> {peak} MiB with {sent} sent, {len(got)} read later"
        assert len(got) >= 8, (sent, len(got))
