"""The original LUTE algorithms, re-expressed from their description in DESIGN.md.

Baselines for benchmarks and for compatibility tests only; not part of the library.
Written from the description (find the trailer, split on the separator, re-slice the
buffer; keep the whole remainder as "partial" when a frame is not complete), not copied.
"""

from __future__ import annotations

import pickle
import socket
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


class LuteSocketReader:
    """LUTE's raw-socket Executor reader, re-expressed from its description (not copied).

    One background thread: ``accept`` one connection (the listening socket has a 10 ms
    timeout), read it until the peer closes, decode the bytes with :class:`LuteDecoder`,
    put the messages on a ``queue.Queue``; then the next connection. ``read()`` waits up to
    10 ms for a message and returns ``None`` when none came (LUTE returns ``Message()``).
    Connections are served strictly one after the other, so a connection that stays open
    blocks every other one, and nothing is delivered before its connection closes.
    """

    ACCEPT_TIMEOUT = 0.01

    def __init__(self, listener: socket.socket) -> None:
        import queue
        import threading

        self._listener = listener
        self._listener.settimeout(self.ACCEPT_TIMEOUT)
        self._decoder = LuteDecoder()
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            data = b""
            while True:
                chunk = conn.recv(8192)
                if not chunk:
                    break
                data += chunk
            conn.close()
            for msg in self._decoder.feed(data):
                self._queue.put(msg)

    def read(self) -> Any:
        import queue

        try:
            return self._queue.get(timeout=self.ACCEPT_TIMEOUT)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self._listener.close()
