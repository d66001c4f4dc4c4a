"""Red team 14z: keyless ZeroMQ peers make the Executor hold whole messages on LUTE's endpoint.

Issue 14, deliverable 1: "the Executor buffers at most a few KiB from a connection that has not
proven itself, under one global budget for all of them" (and docs/SECURITY.md: a longer
announced length "is rejected at once, before any buffering"). The session endpoint keeps it
(CURVE, MAXMSGSIZE 65 KiB: ``test_keyless_peer_cannot_make_the_executor_hold_a_large_message``),
but a TCP Executor also binds LUTE's PULL endpoint (``LUTE_PORT``), where authentication is
required yet any ZMTP/NULL peer is admitted and libzmq receives each message *whole* (MAXMSGSIZE
is the frame limit, 256 MiB) before lute_ipc's decoder rejects it as unsigned. Measured: 4 keyless
PUSH peers x one 64 MiB message took the Executor's peak RSS from 29 to 349 MiB while its
consumer was reading (not stalled); the peers are unbounded, so is the memory.
"""

from __future__ import annotations

import time

import pytest

from tests.redteam.rt14z_common import CORES, executor_process

zmq = pytest.importorskip("zmq")

PEERS = 4
SIZE = 32 << 20


@pytest.mark.parametrize("core", CORES)
def test_keyless_push_peers_cannot_make_the_executor_hold_large_messages(core: str) -> None:
    with executor_process(core, "tcp") as ex:  # TCP: authentication required (default)
        before = ex.command("rss")["peak_mib"]
        context = zmq.Context()
        peers = []
        try:
            frame = b"MSG;;;%d;;;" % SIZE + bytes(SIZE) + b";;;GSM"  # unsigned: refused, once received
            for _ in range(PEERS):
                peer = context.socket(zmq.PUSH)
                peer.connect(f"tcp://127.0.0.1:{ex.exported['LUTE_PORT']}")
                peer.send(frame)
                peers.append(peer)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and ex.stats()["auth_failures"] < PEERS:
                time.sleep(0.1)
            stats = ex.stats()
            grown = ex.command("rss")["peak_mib"] - before
        finally:
            for peer in peers:
                peer.close(0)
            context.term()
        assert stats["messages"] == 0, stats
        assert grown < 64, (f"{PEERS} keyless peers x {SIZE >> 20} MiB grew the Executor's peak RSS by {grown} MiB "
                            f"(stats: {stats})")
