"""A bounded, batch-friendly message queue between a reader thread and its consumer.

``queue.Queue`` takes a lock and notifies per item; a socket read decodes hundreds of
frames at once, so the producer side here adds a whole batch under one lock. The bound
is soft by at most one batch (the messages of one socket read): the producer waits while
the queue holds ``maxsize`` items or more, then adds its batch. Nothing is ever dropped.
Taking an item is lock-free (``deque.popleft`` is atomic); locks are only taken to sleep
and to wake a sleeper.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Deque, List, Optional

__all__ = ["MessageQueue"]


class MessageQueue:
    """FIFO with blocking batch ``put_many`` (backpressure) and timed ``get``/``get_many``.

    Args:
        maxsize: number of queued items at which producers wait (must be >= 1).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: Deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._producer_waiting = False
        self._consumers_waiting = 0
        self.full_waits = 0
        """How many times a producer had to wait for room (backpressure events)."""

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, items: List[Any], should_stop: Callable[[], bool], poll: float = 0.05) -> bool:
        """Append ``items``; wait while the queue is full. Return False if stopped while waiting."""
        if len(self._items) >= self.maxsize:
            with self._lock:
                self.full_waits += 1
                self._producer_waiting = True
                try:
                    while len(self._items) >= self.maxsize:
                        if should_stop():
                            return False
                        self._not_full.wait(poll)
                finally:
                    self._producer_waiting = False
        self._items.extend(items)  # atomic under the GIL
        if self._consumers_waiting:
            with self._lock:
                self._not_empty.notify_all()
        return True

    def get(self, timeout: float) -> Optional[Any]:
        """Pop the oldest item, waiting up to ``timeout`` seconds; ``None`` when none came."""
        items = self._items
        if not items and not self._wait_for_item(timeout):
            return None
        try:
            item = items.popleft()  # atomic under the GIL: the fast path takes no lock
        except IndexError:  # another consumer took it
            return self.get(timeout) if timeout > 0 else None
        if self._producer_waiting:
            self._wake_producer()
        return item

    def get_many(self, max_count: int, timeout: float) -> List[Any]:
        """Pop up to ``max_count`` items, waiting up to ``timeout`` seconds for the first one."""
        items = self._items
        if not items and not self._wait_for_item(timeout):
            return []
        popleft = items.popleft
        out: List[Any] = []
        try:
            for _ in range(min(max_count, len(items))):
                out.append(popleft())
        except IndexError:
            pass
        if self._producer_waiting:
            self._wake_producer()
        return out

    def _wake_producer(self) -> None:
        with self._lock:
            if len(self._items) < self.maxsize:
                self._not_full.notify()

    def _wait_for_item(self, timeout: float) -> bool:
        if timeout <= 0:
            return False
        deadline = time.monotonic() + timeout
        with self._lock:
            self._consumers_waiting += 1
            try:
                # The producer appends without the lock, then notifies under it if it sees a
                # waiting consumer; checking ``_items`` after registering closes the gap.
                while not self._items:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._not_empty.wait(min(remaining, 0.05))
            finally:
                self._consumers_waiting -= 1
        return True
