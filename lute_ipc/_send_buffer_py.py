"""A Task's send buffer: one call per message frames it, checks it, counts it and decides when
the buffer goes out (pure-Python reference; ``csrc/_send_buffer.pxi`` is its Cython twin).

:class:`SendBuffer` is the per-message core of :class:`lute_ipc.transport.writer.FrameWriter`.
:meth:`SendBuffer.append` does, in this order, for one message:

1. returns :data:`FORKED` (nothing appended) when the calling process is not the one that
   made the buffer: a forked child must not send its parent's messages. This asks the
   operating system (``os.getpid()``), so a fork that ran no at-fork hook is caught too;
2. returns :data:`LARGE` (nothing appended; the size in :attr:`SendBuffer.large`) when the
   message holds a buffer of at least :data:`lute_ipc._oob.LARGE_BUFFER` octets
   (:func:`lute_ipc._oob.largest_buffer`): such a message is sent apart, without copying it;
3. appends the message's frame (``append_frame``, or the frame of ``encode(msg)`` when the
   buffer was given an encoder);
4. returns :data:`REFUSED` (the frame removed again; its payload length in
   :attr:`SendBuffer.refused`) when the payload is over the frame limit (this side's
   ``max_message``, or the peer's when lower);
5. counts the message and returns the batching decision of
   :class:`lute_ipc.transport.batching.FlushPolicy` (FLUSH, SCHEDULE or KEEP), whose rules it
   follows exactly (the Cython twin reimplements them; tests check both against the policy).

The caller holds its own lock around each call: the buffer is not thread-safe by itself.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from . import _oob
from ._framing_py import DEFAULT_MAX_FRAME_SIZE, _check_key, append_frame, append_payload
from .transport import batching

__all__ = ["SendBuffer", "FORKED", "LARGE", "REFUSED"]

LARGE = 4
"""The message holds a large buffer: nothing was appended (send it apart)."""
REFUSED = 5
"""The message's payload is over the frame limit: nothing was kept."""
FORKED = 6
"""The calling process is not the buffer's: nothing was appended."""

_HEAD_SIZE = 6  # len(b"MSG;;;") == len(b"MAC;;;")
_SMALLEST_OVERHEAD = 16  # head, one digit, separator, trailer: a frame is at least its payload + 16


def _payload_length(buffer: bytearray, start: int) -> int:
    """The length digits of the frame that starts at ``buffer[start]``."""
    end = buffer.index(b";", start + _HEAD_SIZE)
    return int(buffer[start + _HEAD_SIZE:end])


class SendBuffer:
    """A Task's send buffer with its batching policy (see the module docstring).

    Args:
        flush_interval: latency bound in seconds (0, the default: every message is sent at once).
        flush_size: buffered octets that trigger a send.
        max_message: this side's frame limit (payload octets; default: the default frame limit).
        key: legacy signed frames (``MAC;;;``) when given; plain frames otherwise.
        encode: makes a message's payload (instead of the codec's ``append_frame``).
        now: the time of the last write, for the policy (default: now).
    """

    def __init__(self, flush_interval: float = 0.0, flush_size: int = 64 * 1024,
                 max_message: int = DEFAULT_MAX_FRAME_SIZE, *, key: Optional[bytes] = None,
                 encode: Optional[Callable[[Any], bytes]] = None, now: Optional[float] = None) -> None:
        self.buffer = bytearray()
        """The frames not sent yet."""
        self.count = 0
        """Messages in :attr:`buffer`."""
        self.max_message = int(max_message)
        """This side's frame limit (payload octets)."""
        self.pid = os.getpid()
        """The process the buffer belongs to."""
        self.large = 0
        """The large buffer size of the last :data:`LARGE` message."""
        self.refused = 0
        """The payload length of the last :data:`REFUSED` message."""
        self._key = _check_key(key)
        self._encode = encode
        self._policy = batching.FlushPolicy(flush_interval, flush_size, time.monotonic() if now is None else now)

    @property
    def flush_interval(self) -> float:
        """Latency bound in seconds (0: write-through)."""
        return self._policy.flush_interval

    @property
    def flush_size(self) -> int:
        """Buffered octets that trigger a send."""
        return self._policy.flush_size

    @property
    def deadline(self) -> float:
        """When the buffer's oldest message must have gone out (valid while it is not empty)."""
        return self._policy.deadline

    def write_through(self) -> None:
        """From now on every message is sent at once (a flush interval of 0)."""
        self._policy = batching.FlushPolicy(0.0, self._policy.flush_size)

    def now(self) -> float:
        """The clock the buffer decides with (``time.monotonic()``)."""
        return time.monotonic()

    def append(self, msg: Any, peer_limit: Optional[int]) -> int:
        """Frame ``msg`` into :attr:`buffer` (module docstring); FLUSH, SCHEDULE, KEEP, LARGE, REFUSED or FORKED.

        Args:
            msg: the message.
            peer_limit: the peer's frame limit once known (it lowers this side's), else None or 0.
        """
        if os.getpid() != self.pid:
            return FORKED
        large = _oob.largest_buffer(msg.contents)
        if large >= _oob.LARGE_BUFFER:
            self.large = large
            return LARGE
        buffer = self.buffer
        start = len(buffer)
        if self._encode is not None:
            added = append_payload(buffer, self._encode(msg), key=self._key)
        else:
            added = append_frame(buffer, msg, key=self._key)
        limit = self.max_message if not peer_limit or peer_limit > self.max_message else peer_limit
        if added - _SMALLEST_OVERHEAD > limit:
            length = _payload_length(buffer, start)
            if length > limit:
                del buffer[start:]
                self.refused = length
                return REFUSED
        self.count += 1
        return self._policy.after_append(time.monotonic(), msg.signal, len(buffer), start == 0)

    def after_append(self, now: float, signal: Optional[str], buffered: int, was_empty: bool) -> int:
        """:meth:`lute_ipc.transport.batching.FlushPolicy.after_append`."""
        return self._policy.after_append(now, signal, buffered, was_empty)

    def busy_until(self, now: float) -> None:
        """:meth:`lute_ipc.transport.batching.FlushPolicy.busy_until`."""
        self._policy.busy_until(now)

    def handed_over(self) -> None:
        """:meth:`lute_ipc.transport.batching.FlushPolicy.handed_over`."""
        self._policy.handed_over()

    def due(self, now: float) -> bool:
        """:meth:`lute_ipc.transport.batching.FlushPolicy.due`."""
        return self._policy.due(now)
