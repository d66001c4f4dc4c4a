"""A bounded, batch-friendly message queue between a reader thread and its consumer.

``queue.Queue`` takes a lock and notifies per item; a socket read decodes hundreds of
frames at once, so the producer side here adds a whole batch under one lock. The bound
is soft by at most one batch (the messages of one socket read): the producer waits while
the queue holds ``maxsize`` items or more, then adds its batch. Nothing is ever dropped.
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
        self.full_waits = 0
        """How many times a producer had to wait for room (backpressure events)."""

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, items: List[Any], should_stop: Callable[[], bool], poll: float = 0.1) -> bool:
        """Append ``items``; wait while the queue is full. Return False if stopped while waiting."""
        with self._lock:
            if len(self._items) >= self.maxsize:
                self.full_waits += 1
                while len(self._items) >= self.maxsize:
                    if should_stop():
                        return False
                    self._not_full.wait(poll)
            self._items.extend(items)
            self._not_empty.notify()
        return True

    def get(self, timeout: float) -> Optional[Any]:
        """Pop the oldest item, waiting up to ``timeout`` seconds; ``None`` when none came."""
        with self._lock:
            if not self._items and not self._wait_for_item(timeout):
                return None
            item = self._items.popleft()
            self._not_full.notify()
            if self._items:
                self._not_empty.notify()
            return item

    def get_many(self, max_count: int, timeout: float) -> List[Any]:
        """Pop up to ``max_count`` items, waiting up to ``timeout`` seconds for the first one."""
        with self._lock:
            if not self._items and not self._wait_for_item(timeout):
                return []
            items = self._items
            count = min(max_count, len(items))
            if count == len(items):
                out = list(items)
                items.clear()
            else:
                popleft = items.popleft
                out = [popleft() for _ in range(count)]
            self._not_full.notify()
            if items:
                self._not_empty.notify()
            return out

    def _wait_for_item(self, timeout: float) -> bool:
        if timeout <= 0:
            return False
        deadline = time.monotonic() + timeout
        while not self._items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._not_empty.wait(remaining)
        return True
