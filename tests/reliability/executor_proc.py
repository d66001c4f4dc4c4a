"""An Executor process for the reliability tests: reads and checks every message it gets.

usage: executor_proc.py CONFIG_JSON

CONFIG keys (all optional): ``use_zmq`` (bool), ``tcp`` (bool: LUTE_USE_TCP), ``bind_host``,
``queue_size``, ``idle_timeout``, ``expect_total`` (stop once that many messages arrived),
``duration`` (hard limit, s, default 300), ``slow_seconds`` (the consumer is deliberately
slow for that long after the first message: ``read_many(16)`` then a 10 ms sleep, about
1,600 messages/s), ``progress`` (seconds between progress lines), ``exit`` (``close``:
clear_communicator then exit 0; ``hard``: ``os._exit(0)`` with connections open).

Talks JSON lines on stdout: ``{"ready": ..., "env": {LUTE_*...}}`` once bound, then
``{"progress": {sender: count}, ...}`` lines, then one ``{"result": ...}``. Lines on
stdin: ``stop`` (finish now), ``exit`` (finish, and skip the drain).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from lute_ipc import Party, SocketCommunicator, framing  # noqa: E402
from tests.reliability.common import current_rss_mib, emit, open_fds, payload_ok, peak_rss_mib  # noqa: E402


def main() -> None:
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if cfg.get("tcp"):
        os.environ["LUTE_USE_TCP"] = "1"
    options = {"use_zmq": bool(cfg.get("use_zmq"))}
    for name in ("bind_host", "queue_size", "idle_timeout", "max_frame_size"):
        if name in cfg:
            options[name] = cfg[name]
    fds_before = open_fds()
    ex = SocketCommunicator(Party.EXECUTOR, **options)
    ex.delayed_setup()
    env = {k: v for k, v in os.environ.items() if k.startswith("LUTE_") and k != "LUTE_IPC_PURE_PYTHON"}
    emit({"ready": True, "pid": os.getpid(), "env": env, "implementation": framing.IMPLEMENTATION,
          "rss_baseline_mib": round(current_rss_mib(), 1)})

    commands = []

    def listen() -> None:
        for line in sys.stdin:
            commands.append(line.strip())
        commands.append("stop")  # stdin closed: the test is gone or done

    threading.Thread(target=listen, daemon=True).start()

    expect_total = cfg.get("expect_total")
    duration = float(cfg.get("duration", 300))
    slow_seconds = float(cfg.get("slow_seconds", 0))
    progress_every = float(cfg.get("progress", 0.5))
    start = time.monotonic()
    first_at = None
    counts, first_seq, next_seq = {}, {}, {}
    gaps, reorders, corrupt, foreign = [], [], [], 0
    total = 0
    slow_batches = 0
    next_progress = start + progress_every
    stop_reason = "duration"
    drain = True

    def account(contents: Any) -> bool:
        """Count one (sender, seq, payload) message: order, gaps, payload; False for anything else."""
        nonlocal total
        if not (isinstance(contents, tuple) and len(contents) == 3):
            return False
        sender, seq, payload = contents
        total += 1
        counts[sender] = counts.get(sender, 0) + 1
        expected = next_seq.get(sender)
        if expected is None:
            first_seq[sender] = seq
        elif seq > expected:
            gaps.append([sender, expected, seq])
        elif seq < expected:
            reorders.append([sender, expected, seq])
        next_seq[sender] = max(seq + 1, expected or 0)
        if not payload_ok(seq, payload):
            corrupt.append([sender, seq])
        return True

    while time.monotonic() - start < duration:
        if commands:
            cmd = commands[0]
            stop_reason = cmd
            drain = cmd != "exit"
            break
        if expect_total is not None and total >= expect_total:
            stop_reason = "expected count reached"
            break
        slow = first_at is not None and time.monotonic() - first_at < slow_seconds
        batch = ex.read_many(16 if slow else 2000, wait=0.05)
        if slow and batch:
            slow_batches += 1
            time.sleep(0.01)
        for msg in batch:
            if not account(msg.contents):
                foreign += 1
            elif first_at is None:
                first_at = time.monotonic()
        now = time.monotonic()
        if now >= next_progress:
            next_progress = now + progress_every
            emit({"progress": counts, "total": total, "t": round(now - start, 3)})
    if drain:  # what already arrived is read too (bounded)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            batch = ex.read_many(2000, wait=0.2)
            if not batch:
                break
            for msg in batch:
                account(msg.contents)
    stats = ex.stats
    result = {
        "stop_reason": stop_reason, "total": total, "counts": counts, "first_seq": first_seq,
        "next_seq": next_seq, "gaps": gaps[:20], "n_gaps": len(gaps), "reorders": reorders[:20],
        "n_reorders": len(reorders), "corrupt": corrupt[:20], "n_corrupt": len(corrupt), "foreign": foreign,
        "slow_batches": slow_batches, "peak_rss_mib": round(peak_rss_mib(), 1),
        "elapsed": round(time.monotonic() - start, 3), "implementation": framing.IMPLEMENTATION,
        "stats": None if stats is None else {k: v for k, v in vars(stats).items()},
    }
    if cfg.get("exit") == "hard":
        emit({"result": result})
        os._exit(0)
    ex.clear_communicator()
    result["fds_before"] = fds_before
    result["fds_after"] = open_fds()
    emit({"result": result})


if __name__ == "__main__":
    main()
