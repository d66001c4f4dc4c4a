"""LUTE's socket framing and reader, re-expressed from their behaviour ("What is fixed", docs/MIGRATION.md).

A benchmark baseline only, written from the description, not from LUTE's source:
the writer frames ``MSG;;;<len>;;;<pickle>;;;GSM``; the decoder concatenates what it is
given to what it kept, finds the trailer, splits on ``;;;``, unpickles, re-slices the
rest (quadratic on a buffer of many frames); the reader thread serves one connection at a
time, reads it until the peer closes, then decodes everything it got.

It lives in the package, its only copy, so ``python -m lute_ipc bench`` works from an
installed lute_ipc; the tests and ``benchmarks/`` import it from here. The real LUTE
(``lute-lcls``), when importable, is measured too (:mod:`.lute_lcls`).
"""

from __future__ import annotations

import pickle
import queue
import socket
import threading
from typing import Any, List, Optional

HEAD = b"MSG"
SEP = b";;;"
TRAILER = b";;;GSM"


def lute_encode(msg: Any) -> bytes:
    """One LUTE frame of ``pickle.dumps(msg)`` (the interpreter's default protocol)."""
    payload = pickle.dumps(msg)
    return b"".join((HEAD, SEP, str(len(payload)).encode("ascii"), SEP, payload, TRAILER))


class LuteDecoder:
    """LUTE's decoding loop: find the trailer, split on the separator, re-slice."""

    def __init__(self) -> None:
        self.partial: Optional[bytes] = None

    def feed(self, data: bytes) -> List[Any]:
        """Messages completed by ``data``; an incomplete (or undecodable) rest is kept whole."""
        decoded: List[Any] = []
        buffer = self.partial + data if self.partial else bytes(data)
        self.partial = None
        while buffer:
            end = buffer.find(TRAILER)
            fields = buffer[:end].split(SEP)
            if end < 0 or len(fields) != 3 or len(fields[2]) != int(fields[1] or -1):
                self.partial = buffer  # LUTE keeps it and waits (forever, if a payload holds ';;;')
                break
            try:
                decoded.append(pickle.loads(fields[2]))
            except pickle.UnpicklingError:
                self.partial = buffer  # as LUTE: kept, and retried with the next data
                break
            buffer = buffer[end + len(TRAILER):]
        return decoded


class LuteSocketReader:
    """LUTE's Executor reader thread: one connection at a time, decoded when it closes.

    ``read(timeout)`` returns the next message or ``None``. ``close()`` stops the thread
    (it notices within :attr:`ACCEPT_TIMEOUT`) and closes the listening socket.
    """

    ACCEPT_TIMEOUT = 0.01
    RECV_SIZE = 8192

    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        listener.settimeout(self.ACCEPT_TIMEOUT)
        self._decoder = LuteDecoder()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="lute-reader", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            received = b""
            with conn:
                conn.settimeout(None)
                while not self._stop.is_set():
                    chunk = conn.recv(self.RECV_SIZE)
                    if not chunk:
                        break
                    received += chunk  # as LUTE: bytes concatenation
            for msg in self._decoder.feed(received):
                self._queue.put(msg)

    def read(self, timeout: float = ACCEPT_TIMEOUT) -> Any:
        """The next message, or ``None`` when none came within ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the thread and close the listening socket."""
        self._stop.set()
        self._thread.join(5.0)
        self._listener.close()
