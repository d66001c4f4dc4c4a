"""The message shapes the benchmark moves, and the byte streams made of them: the same for every contender.

Every figure of the report names its shape. A LUTE Task sends *text* (log lines: ``str``
contents with a signal, the shape lute_ipc's codec writes without running pickle) and
*objects* (results, dicts: pickled); large payloads are ``bytes`` arrays.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..message import Message

TEXT_LINE = b"2026-11-25 23:00:00 INFO step done: a print() from the Task between two reports\n"
"""The line a pipe-scenario Task prints after every message (mixed text)."""


def contents(size: int) -> bytes:
    """``size`` bytes of contents, not all alike (no run of one value a codec could shortcut)."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def _text(i: int) -> Message:
    return Message(contents=f"log line {i} " + "x" * 100, signal="TASK_LOG")


def _objects(i: int) -> Message:
    return Message(contents={"i": i, "v": "x" * 40})


@dataclass(frozen=True)
class Shape:
    """One message shape: ``make(i)`` is the i-th message of a run (``fixed``: the same message every time)."""

    name: str
    label: str
    code: str
    """The Python expression of the i-th message, as the report prints it."""
    make: Callable[[int], Message]
    fixed: bool = False

    @property
    def payload_bytes(self) -> int:
        """Bytes of one pickled message (the first): what MB/s counts."""
        return len(pickle.dumps(self.make(0)))


_BYTES_CACHE: Dict[int, Message] = {}


def _bytes_maker(size: int) -> Callable[[int], Message]:
    def make(i: int) -> Message:
        if size not in _BYTES_CACHE:
            _BYTES_CACHE[size] = Message(contents=contents(size), signal="TASK_LOG")
        return _BYTES_CACHE[size]
    return make


SHAPES: Tuple[Shape, ...] = (
    Shape("text", "text", 'Message(contents=f"log line {i} " + "x"*100, signal="TASK_LOG")', _text),
    Shape("objects", "objects", 'Message(contents={"i": i, "v": "x"*40})', _objects),
    Shape("64KiB", "64 KiB bytes", 'Message(contents=<65536 bytes>, signal="TASK_LOG")', _bytes_maker(64 * 1024),
          fixed=True),
    Shape("1MiB", "1 MiB bytes", 'Message(contents=<1048576 bytes>, signal="TASK_LOG")', _bytes_maker(1024 * 1024),
          fixed=True),
)
"""Every shape, in report order."""
SHAPE_BY_NAME = {shape.name: shape for shape in SHAPES}


def shape(name: str) -> Shape:
    """The shape called ``name`` (KeyError otherwise)."""
    return SHAPE_BY_NAME[name]


def shape_label(name: str) -> str:
    """``text``, ``objects``, ``64 KiB bytes``... for a shape name (the name itself if unknown)."""
    found = SHAPE_BY_NAME.get(name)
    return found.label if found else name


def messages(name: str, count: int) -> List[Message]:
    """The ``count`` messages of a run of shape ``name`` (one object repeated for a fixed shape)."""
    found = shape(name)
    if found.fixed:
        return [found.make(0)] * count
    return [found.make(i) for i in range(count)]


def check_last(name: str, count: int, last: Any, ordered: bool = True) -> Optional[str]:
    """Why ``last`` does not carry the contents of the ``count``-th message of shape ``name`` (None when it does).

    ``ordered=False`` (a connection per message: nothing orders separate connections) accepts
    the contents of any message of the run.
    """
    contents = getattr(last, "contents", None)
    if contents == shape(name).make(count - 1).contents:
        return None
    if not ordered and any(contents == msg.contents for msg in messages(name, count)):
        return None
    text = repr(getattr(last, "contents", last))
    return f"the last message received is not the last one sent ({text[:80]})"


def frame_stream(name: str, count: int, encode_frame: Callable[[Any], bytes]) -> bytes:
    """``count`` frames of shape ``name`` as lute_ipc writes them (plain frames)."""
    if shape(name).fixed:
        return encode_frame(shape(name).make(0)) * count
    return b"".join(encode_frame(msg) for msg in messages(name, count))


def pipe_contents(name: str, count: int) -> List[Any]:
    """The contents a pipe-scenario Task writes (the pipe carries contents, as LUTE's does)."""
    return [msg.contents for msg in messages(name, count)]


def pipe_stream(name: str, count: int) -> bytes:
    """What a pipe-scenario Task writes on stdout: a pickle of each contents, then a printed line."""
    return b"".join(pickle.dumps(item) + TEXT_LINE for item in pipe_contents(name, count))


def msgpack_stream(name: str, count: int) -> bytes:
    """``count`` msgpack arrays ``[contents, signal]``: the same information in msgpack framing."""
    import msgpack

    return b"".join(msgpack.packb([msg.contents, msg.signal], use_bin_type=True) for msg in messages(name, count))


def pickled_payloads(name: str, count: int) -> List[bytes]:
    """``count`` pickles of the shape's messages: the input of the bare ``pickle.loads`` reference."""
    if shape(name).fixed:
        return [pickle.dumps(shape(name).make(0))] * count
    return [pickle.dumps(msg) for msg in messages(name, count)]
