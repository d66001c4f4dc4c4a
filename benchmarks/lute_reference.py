"""The original LUTE algorithms, re-expressed from their description in DESIGN.md.

Baselines for benchmarks and for compatibility tests only; not part of the library.
Written from the description (find the trailer, split on the separator, re-slice the
buffer; keep the whole remainder as "partial" when a frame is not complete), not copied.
"""

from __future__ import annotations

import pickle
from typing import Any, List, Optional

HEAD = b"MSG"
SEP = b";;;"
TRAILER = SEP + HEAD[::-1]


def lute_encode(msg: Any) -> bytes:
    """LUTE's writer: ``MSG;;;<len>;;;<pickle>;;;GSM`` with the interpreter's default protocol."""
    payload = pickle.dumps(msg)
    return HEAD + SEP + str(len(payload)).encode() + SEP + payload + TRAILER


class LuteDecoder:
    """LUTE's reader: concatenate, find the trailer, split on ``;;;``, re-slice.

    Quadratic on buffers of many frames, and it stalls forever when a payload contains
    ``;;;`` (the split does not give three parts: the rest is kept as partial).
    """

    def __init__(self) -> None:
        self.partial: Optional[bytes] = None

    def feed(self, data: bytes) -> List[Any]:
        out: List[Any] = []
        work = self.partial + data if self.partial else data
        self.partial = None
        while work:
            end = work.find(TRAILER)
            parts = work[:end].split(SEP)
            if len(parts) != 3:
                self.partial = work
                break
            _, length, payload = parts
            if len(payload) != int(length):
                self.partial = work
                break
            try:
                out.append(pickle.loads(payload))
            except pickle.UnpicklingError:
                self.partial = work
                break
            if end < len(work):
                work = work[end + len(TRAILER):]
            else:
                work = b""
        return out
