"""Size limits of the socket transport, stated once.

* The frame limit (largest message payload) is ``LUTE_IPC_MAX_FRAME_SIZE`` when set (both
  sides read it; a lute_ipc Executor also tells its Tasks its limit in the session handshake),
  else :data:`DEFAULT_MAX_FRAME_SIZE`, which carries what LUTE's own Tasks send (a 72 MB
  ``TASK_RESULT``).
* Connections that have not proven themselves are held to
  :data:`~lute_ipc.transport.session.UNPROVEN_LIMIT` octets each, and at most
  :data:`UNPROVEN_CONNECTIONS` of them are open at once: one global budget of
  ``UNPROVEN_CONNECTIONS * UNPROVEN_LIMIT`` octets (256 KiB).
"""

from __future__ import annotations

from typing import Optional

from .. import env as _env
from ..errors import UsageError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "UNPROVEN_CONNECTIONS", "RECORD_SLACK", "MAX_FLUSH_SIZE", "frame_limit"]

DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024
"""Default largest payload (octets): 256 MiB."""
UNPROVEN_CONNECTIONS = 64
"""Connections that have not proven themselves, open at once (more: the oldest is closed)."""
RECORD_SLACK = 1024 * 1024
"""A session record may exceed the frame limit by this much (a batch of small frames)."""
MAX_FLUSH_SIZE = RECORD_SLACK // 2
"""Largest send-buffer size a Task may choose (a batch always fits in one record)."""


def frame_limit(explicit: Optional[int] = None) -> int:
    """The frame limit: ``explicit`` when given, else ``LUTE_IPC_MAX_FRAME_SIZE``, else the default."""
    if explicit is not None:
        if explicit < 1:
            raise UsageError("max_frame_size must be >= 1")
        return int(explicit)
    from_env = _env.max_frame_size()
    return DEFAULT_MAX_FRAME_SIZE if from_env is None else from_env
