"""Crafted pickles for the differential tests and fuzzers of the decoding path (issue 17, item 4).

A crafted pickle starts from a real one (a Message or plain data, under or over 8 KiB and
over pickle's 64 KiB frame target) and is then bent the ways that once split the twins:
its outer FRAME length changed, its module name written with an escape
(``V\\u006cute.execution.ipc``), LUTE's class path, Python 2 names. :func:`outcome` is what
a reader makes of a payload, in comparable form.
"""

from __future__ import annotations

import pickle
import re
from typing import Any, Callable, List, Tuple

from lute_ipc import codec
from lute_ipc.message import Message, TaskRequest, TaskRequestMessage

SIZES = (0, 100, 8 * 1024 - 200, 8 * 1024 + 100, 40 * 1024, 64 * 1024 + 10)
"""Contents sizes around the old 8 KiB scan limit, the 32 KiB lending threshold and the 64 KiB frame target."""


def base_objects(size: int) -> List[Any]:
    return [
        Message("t" * size, "TASK_LOG"),
        Message(b"b" * size, "TASK_RESULT"),
        Message({"blob": b"x" * size, "n": 1}, None),
        (1, "s" * size),
        TaskRequestMessage(TaskRequest("r" * size)),
    ]


def set_outer_frame(data: bytes, length: int) -> bytes:
    """The pickle with the length of its first FRAME replaced (protocol 4+ pickles only)."""
    if len(data) < 11 or data[2] != 0x95:
        return data
    return data[:3] + (length % (1 << 64)).to_bytes(8, "little") + data[11:]


def escaped_globals(data: bytes, module: bytes) -> bytes:
    """A protocol 0-3 pickle whose ``lute_ipc.message`` GLOBALs become STACK_GLOBALs of two
    UNICODE opcodes naming ``module`` with its first letter escaped (``V\\u006c...``)."""
    escaped = b"\\u%04x" % module[0] + module[1:]
    return re.sub(rb"clute_ipc\.message\n(\w+)\n", lambda m: b"V" + escaped + b"\nV" + m.group(1) + b"\n\x93", data)


BENDS = ("none", "frame", "escaped legacy name", "legacy class path", "escaped own name", "truncated")


def craft(obj: Any, protocol: int, bend: int, value: int) -> bytes:
    """Pickle ``obj`` then bend it (see :data:`BENDS`; ``value`` tunes the frame change or the cut)."""
    if bend == 1:
        data = pickle.dumps(obj, max(protocol, 4))
        return set_outer_frame(data, int.from_bytes(data[3:11], "little") + value)
    if bend == 2:
        return escaped_globals(pickle.dumps(obj, min(protocol, 3)), b"lute.execution.ipc")
    if bend == 3:
        return codec.dumps_lute_names(obj) if protocol >= 4 else \
            pickle.dumps(obj, protocol).replace(b"lute_ipc.message", b"lute.execution.ipc")
    if bend == 4:
        return escaped_globals(pickle.dumps(obj, min(protocol, 3)), b"lute_ipc.message")
    data = pickle.dumps(obj, protocol)
    if bend == 5:
        return data[:max(0, len(data) - value)]
    return data


def outcome(make: Callable[[], Any]) -> Tuple[str, Any]:
    """``("ok", type, value)`` or ``("error", exception type)`` of ``make()``, comparable across twins."""
    try:
        value = make()
    except Exception as exc:  # compared by type only
        return ("error", type(exc).__name__)
    return ("ok", (type(value).__name__, value))
