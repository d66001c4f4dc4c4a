"""A Task process for the reliability tests: writes numbered messages through SocketCommunicator.

usage: task_proc.py CONFIG_JSON

CONFIG keys: ``sender`` (name), ``count`` (messages, default 1000), ``start`` (first seq),
``rate`` (messages/s, 0 = as fast as possible), ``duration`` (stop writing after that many
seconds), ``on_error`` (``exit``: report the error and exit 3; ``retry``: report it, wait
50 ms and write the same message again, until ``duration``), ``connect_timeout``, ``send_timeout``,
``big`` (after ``count`` messages, announce ``{"big": ...}`` then write one message of that
many bytes), ``hold`` (after writing, wait for stdin to close before closing), ``use_zmq``.

The transport comes from the environment (LUTE_*). JSON lines on stdout: ``{"ready": ...}``
after set-up, ``{"sent": n}`` every 0.25 s, then ``{"done": ...}`` or ``{"error": ...}``
(``type``, ``message``, ``sent``, ``at``: time.time() of the error).
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from lute_ipc import Message, Party, SocketCommunicator  # noqa: E402
from lute_ipc.errors import LuteIPCError  # noqa: E402
from tests.reliability.common import emit, payload_for  # noqa: E402


def main() -> None:
    cfg = json.loads(sys.argv[1])
    sender = cfg.get("sender", "t")
    count = int(cfg.get("count", 1000))
    seq = int(cfg.get("start", 0))
    rate = float(cfg.get("rate", 0))
    duration = float(cfg.get("duration", 600))
    on_error = cfg.get("on_error", "exit")
    options = {}
    if "use_zmq" in cfg:
        options["use_zmq"] = bool(cfg["use_zmq"])
    for name in ("connect_timeout", "send_timeout"):
        if name in cfg:
            options[name] = float(cfg[name])
    t0 = time.monotonic()
    comm = SocketCommunicator(Party.TASK, **options)
    errors = []
    try:
        comm.delayed_setup()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        emit({"error": {"type": type(exc).__name__, "message": str(exc), "sent": 0, "at": time.time(),
                        "lute": isinstance(exc, LuteIPCError), "phase": "setup"}})
        sys.exit(3)
    emit({"ready": True, "pid": os.getpid(), "setup_seconds": round(time.monotonic() - t0, 3)})
    sent = 0
    end = seq + count
    next_report = time.monotonic() + 0.25
    start = time.monotonic()
    while seq < end and time.monotonic() - start < duration:
        msg = Message(contents=(sender, seq, payload_for(seq)), signal="TASK_LOG")
        try:
            comm.write(msg)
        except Exception as exc:  # noqa: BLE001
            err = {"type": type(exc).__name__, "message": str(exc), "sent": sent, "seq": seq, "at": time.time(),
                   "lute": isinstance(exc, LuteIPCError)}
            if on_error == "retry":
                errors.append(err)
                if len(errors) <= 3:
                    emit({"retry_error": err})
                time.sleep(0.05)
                continue
            emit({"error": err})
            sys.stdout.flush()
            os._exit(3)
        sent += 1
        seq += 1
        now = time.monotonic()
        if now >= next_report:
            next_report = now + 0.25
            emit({"sent": sent, "seq": seq})
        if rate > 0:
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if cfg.get("big"):
        emit({"big": int(cfg["big"]), "sent": sent})
        comm.write(Message(contents=(sender, -1, b"\xee" * int(cfg["big"])), signal="TASK_LOG"))
        sent += 1
    if cfg.get("hold"):
        sys.stdin.read()
    t1 = time.monotonic()
    try:
        comm.clear_communicator()
    except Exception as exc:  # noqa: BLE001
        emit({"error": {"type": type(exc).__name__, "message": str(exc), "sent": sent, "at": time.time(),
                        "lute": isinstance(exc, LuteIPCError), "phase": "close"}})
        sys.exit(3)
    emit({"done": {"sent": sent, "next_seq": seq, "errors": errors[:5], "n_errors": len(errors),
                   "close_seconds": round(time.monotonic() - t1, 3)}})


if __name__ == "__main__":
    main()
