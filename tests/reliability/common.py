"""Shared by the reliability tests and their child processes (no pytest import here).

Messages are ``Message(contents=(sender, seq, payload), signal="TASK_LOG")``; the payload
size is a pure function of ``seq`` (:func:`size_for`), so the Executor checks every
message it gets for loss, reordering, duplication and corruption without any side channel.

Size mix (mean about 1 KiB, range 64 B - 256 KiB): one message in 997 is 256 KiB, one in
101 is 16 KiB, the rest 64 B - 1 KiB.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any, Dict, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

BIG = 256 * 1024
MEDIUM = 16 * 1024
_PATTERN = bytes(range(256)) * (BIG // 256)


def size_for(seq: int) -> int:
    """The payload size of message ``seq`` (64 B - 256 KiB)."""
    if seq % 997 == 996:
        return BIG
    if seq % 101 == 100:
        return MEDIUM
    return 64 + (seq * 7919) % 961


def payload_for(seq: int) -> bytes:
    size = size_for(seq)
    start = seq % 251
    return _PATTERN[start:start + size] if start + size <= len(_PATTERN) else _PATTERN[:size]


def payload_ok(seq: int, payload: Any) -> bool:
    return isinstance(payload, bytes) and payload == payload_for(seq)


def peak_rss_mib() -> float:
    """Peak resident set size of this process (MiB): Linux's ``VmHWM``, the peak of this program's
    own memory. Not ``ru_maxrss``: Linux carries a process's peak across ``execve``, so a child
    started by a large parent (a test process that once held 128 MiB of frames) reports the
    parent's size as its own peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def emit(obj: Dict[str, Any]) -> None:
    """One JSON line on stdout (the child -> test channel)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a child: this one, with the repository on PYTHONPATH, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
