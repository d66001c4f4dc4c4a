"""The messages and byte streams the benchmark moves: the same for every contender."""

from __future__ import annotations

import pickle
from typing import Any, Callable, List

from ..message import Message

SIZES = (64, 1024, 64 * 1024, 1024 * 1024)
"""Payload sizes: the length of each message's ``contents`` (a ``bytes`` object)."""

SIZE_LABELS = {64: "64 B", 1024: "1 KiB", 64 * 1024: "64 KiB", 1024 * 1024: "1 MiB"}
TEXT_LINE = b"2026-11-25 23:00:00 INFO step done: a print() from the Task between two reports\n"
"""The line a pipe-scenario Task prints after every message (mixed text)."""


def size_label(size: int) -> str:
    """``64 B``, ``1 KiB``... for a payload size."""
    return SIZE_LABELS.get(size, f"{size} B")


def contents(size: int) -> bytes:
    """``size`` bytes of contents, not all alike (no run of one value a codec could shortcut)."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def message(size: int, signal: str = "TASK_LOG") -> Message:
    """The message every contender sends: ``Message(contents=<size bytes>, signal="TASK_LOG")``.

    ``TASK_LOG``: the high-rate kind of a LUTE Task (lute_ipc's writer batches it; the
    ``lute_ipc-cython-result`` contender sends ``TASK_RESULT``, which it flushes at once).
    """
    return Message(contents=contents(size), signal=signal)


def frame_stream(size: int, count: int, encode_frame: Callable[[Any], bytes]) -> bytes:
    """``count`` frames of :func:`message` ``(size)`` as lute_ipc writes them (plain frames)."""
    frame = encode_frame(message(size))
    return frame * count


def pipe_stream(size: int, count: int) -> bytes:
    """What a pipe-scenario Task writes on stdout: a pickle of the contents, then a printed line, ``count`` times."""
    unit = pickle.dumps(contents(size)) + TEXT_LINE
    return unit * count


def msgpack_stream(size: int, count: int) -> bytes:
    """``count`` msgpack arrays ``[contents, signal]``: the same information in msgpack framing."""
    import msgpack

    return msgpack.packb([contents(size), "TASK_RESULT"], use_bin_type=True) * count


def pickled_payloads(size: int, count: int) -> List[bytes]:
    """``count`` pickles of :func:`message`: the input of the bare ``pickle.loads`` reference."""
    return [pickle.dumps(message(size))] * count
