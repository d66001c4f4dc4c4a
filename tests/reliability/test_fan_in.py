"""Fan-in under load: 8 Task processes into one Executor, with a deliberately slow consumer.

Per transport (raw/ZeroMQ x Unix/TCP loopback), 8 Task processes each write
``MESSAGES`` numbered messages (sizes 64 B - 256 KiB, mean about 1 KiB, see
``common.size_for``) as fast as they can into one Executor process. For the first
``SLOW_SECONDS`` seconds after the first message the Executor's consumer is slow (about
1,600 messages/s against a ``queue_size`` of 2,000): the reader must push back on the
Tasks, not drop. Checked: zero loss, no duplicate, per-sender order, every payload intact,
every Task exits 0, and the Executor's peak RSS grows by less than ``RSS_GROWTH_LIMIT_MIB``
(printed).

Sizes: 8 x 50,000 messages per transport on the Cython core (the issue's matrix). The
pure-Python core (``LUTE_IPC_PURE_PYTHON=1``, CI's second run) decodes several times
slower on 2 cores, so that leg uses 8 x 12,500 per transport to keep the whole
reliability suite within about 6 minutes per run. ``LUTE_IPC_RELIABILITY_SCALE``
scales both (development). Both framing implementations are covered by CI's two runs
(the children inherit ``LUTE_IPC_PURE_PYTHON``; the result records which core ran).
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.common import size_for
from tests.reliability.conftest import TRANSPORTS, pure_python, scale
from tests.reliability.harness import Group, task_env

pytestmark = pytest.mark.reliability

SENDERS = 8
MESSAGES = max(50, int((12_500 if pure_python() else 50_000) * scale()))
SLOW_SECONDS = 3.0
QUEUE_SIZE = 2000
RSS_GROWTH_LIMIT_MIB = 128.0
"""Bound on the Executor process's peak RSS above its RSS once bound (printed as
``baseline``). What may legitimately be held: the queue (2,000 messages of about 1 KiB on
average, plus one socket read or ZeroMQ batch over the bound), the 256 KiB receive buffer,
libzmq's receive queues (RCVHWM ZeroMQ messages per Task, derived from queue_size), allocator
slack. Raw sockets measure about 11-15 MiB, ZeroMQ about 20-30 MiB. A reader that buffers what the
Tasks send while the consumer is slow exceeds it: the run sends 367 MiB (92 MiB in the pure-Python
leg); the ZeroMQ Executor did, +580-670 MiB, until its RCVHWM (160,000 ZeroMQ messages) was
derived from queue_size (docs/RELIABILITY.md 4.4)."""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fan_in_8_tasks_no_loss_order_kept_memory_bounded(group: Group, transport) -> None:
    use_zmq, tcp = transport
    total = SENDERS * MESSAGES
    volume = sum(size_for(i) for i in range(MESSAGES)) * SENDERS
    cfg = {"use_zmq": use_zmq, "tcp": tcp, "bind_host": "127.0.0.1", "queue_size": QUEUE_SIZE,
           "expect_total": total, "slow_seconds": SLOW_SECONDS, "duration": 240, "progress": 1.0}
    ex, ready = group.executor(cfg)
    env = task_env(ready, use_zmq)
    tasks = [group.task({"sender": f"s{i}", "count": MESSAGES}, env) for i in range(SENDERS)]
    deadline = time.monotonic() + 240
    codes = [t.wait(max(0.1, deadline - time.monotonic())) for t in tasks]
    try:  # every Task has ended: what they sent must arrive soon
        result = ex.wait_for("result", 15)["result"]
    except AssertionError:
        ex.send("stop")
        result = ex.wait_for("result", 30)["result"]
    print(f"\nfan-in {ready['implementation']} {'zmq' if use_zmq else 'raw'}-{'tcp' if tcp else 'unix'}: "
          f"{SENDERS}x{MESSAGES} msgs ({volume / 2**20:.0f} MiB) in {result['elapsed']:.1f} s, "
          f"peak RSS {result['peak_rss_mib']:.0f} MiB (baseline {ready['rss_baseline_mib']:.0f} MiB), "
          f"slow batches {result['slow_batches']}, backpressure waits {result['stats']['backpressure_waits']}")
    assert codes == [0] * SENDERS, [(t.find("error"), t.stderr()[-1500:]) for t in tasks if t.proc.returncode != 0]
    assert result["stop_reason"] == "expected count reached", result
    assert result["total"] == total
    assert result["counts"] == {f"s{i}": MESSAGES for i in range(SENDERS)}
    assert result["first_seq"] == {f"s{i}": 0 for i in range(SENDERS)}
    assert result["n_gaps"] == 0 and result["n_reorders"] == 0 and result["n_corrupt"] == 0, result
    assert result["foreign"] == 0
    stats = result["stats"]
    assert stats["messages"] == total and stats["framing_errors"] == 0 and stats["payload_errors"] == 0
    assert result["slow_batches"] > 0  # the slow phase really happened
    growth = result["peak_rss_mib"] - ready["rss_baseline_mib"]
    assert growth < RSS_GROWTH_LIMIT_MIB, f"Executor RSS grew by {growth:.0f} MiB: memory not bounded by queue_size"
    # The reader itself pushed back (ZeroMQ too: its small RCVHWM no longer absorbs what the Tasks send).
    assert stats["backpressure_waits"] > 0
    for t in tasks:
        done = t.find("done")
        assert done is not None and done["sent"] == MESSAGES
