"""When a Task's send buffer goes out: the batching policy as plain code (no sockets, no clock).

The caller passes the time (``now``, from ``time.monotonic()``); the policy only decides.
The buffer goes out

* when it holds ``flush_size`` octets or more;
* for a message whose signal is not ``TASK_LOG`` (nor None): the Executor acts on those at once;
* for every message when ``flush_interval`` is 0 (write-through);
* for the first message after the Task was quiet (no write) for ``flush_interval``: a lone
  message does not wait, only messages that follow it closely are batched. Time the writer
  itself spent sending (a send that waited for room, or failed after ``connect_timeout``) is
  not quiet time (:meth:`FlushPolicy.busy_until`), and a hand-over (LUTE's per-message
  ``clear_communicator()``: the Task is done for now) makes it quiet (:meth:`FlushPolicy.handed_over`);
* once its oldest message is ``flush_interval`` old (a write after that sends it; while the
  Task is idle the flusher thread does, at :attr:`FlushPolicy.deadline`).
"""

from __future__ import annotations

from typing import Optional

__all__ = ["FLUSH", "SCHEDULE", "KEEP", "BATCHED_SIGNALS", "FlushPolicy"]

FLUSH = 1
"""Send the buffer now."""
SCHEDULE = 2
"""Keep the buffer; make sure it goes out at :attr:`FlushPolicy.deadline` (a new deadline)."""
KEEP = 3
"""Keep the buffer; its deadline is already scheduled."""

BATCHED_SIGNALS = frozenset({None, "TASK_LOG"})
"""Signals whose messages may wait in the buffer."""


class FlushPolicy:
    """Decides, after each message appended to the send buffer, whether the buffer goes out.

    Args:
        flush_interval: seconds a message may wait (0: write-through).
        flush_size: buffered octets that trigger a send.
    """

    __slots__ = ("flush_interval", "flush_size", "deadline", "_last_write")

    def __init__(self, flush_interval: float, flush_size: int, now: float = 0.0) -> None:
        self.flush_interval = max(0.0, float(flush_interval))
        self.flush_size = max(1, int(flush_size))
        self.deadline = 0.0
        """When the buffer's oldest message must have gone out (valid while the buffer is not empty)."""
        self._last_write = now

    def after_append(self, now: float, signal: Optional[str], buffered: int, was_empty: bool) -> int:
        """The decision after a message was appended: FLUSH, SCHEDULE or KEEP.

        Args:
            now: the current time (monotonic seconds).
            signal: the message's signal.
            buffered: octets in the buffer, this message included.
            was_empty: True when the buffer was empty before this message.
        """
        last, self._last_write = self._last_write, now
        interval = self.flush_interval
        if signal not in BATCHED_SIGNALS or buffered >= self.flush_size or not interval:
            return FLUSH
        if was_empty:
            if now - last >= interval:  # quiet before: a lone message goes at once
                return FLUSH
            self.deadline = now + interval
            return SCHEDULE
        if now >= self.deadline:
            return FLUSH
        return KEEP

    def busy_until(self, now: float) -> None:
        """The writer was sending until ``now``: the Task was not quiet meanwhile, so a message
        written right after is batched, not sent alone (a send that keeps failing slowly does not
        make every later write wait for its own failed send)."""
        if now > self._last_write:
            self._last_write = now

    def handed_over(self) -> None:
        """The Task handed its messages over (``clear_communicator()``): it said it is done for
        now, so the next message is a lone one and goes at once (batching it would only make the
        flusher thread wait for the hand-over's lock)."""
        self._last_write = float("-inf")

    def due(self, now: float) -> bool:
        """True when a non-empty buffer's deadline has passed (the flusher thread asks)."""
        return now >= self.deadline
