"""The names older code imported from here.

The technology-neutral writer lives in :mod:`lute_ipc.transport.writer`, the raw-socket links
in :mod:`lute_ipc.transport.raw_link`, the ZeroMQ links in
:mod:`lute_ipc.transport.zeromq_task`.
"""

from __future__ import annotations

from .transport.raw_link import PlainLink as StreamLink
from .transport.writer import DEFAULT_FLUSH_INTERVAL, DEFAULT_FLUSH_SIZE, FrameWriter

__all__ = ["FrameWriter", "StreamLink", "DEFAULT_FLUSH_INTERVAL", "DEFAULT_FLUSH_SIZE",
           "DEFAULT_SEND_TIMEOUT"]

DEFAULT_SEND_TIMEOUT = 10.0
"""Seconds the Executor's host may acknowledge nothing a TCP Task sent (while data or a window
probe waits for an answer) before the link is declared dead and ``write()`` raises
TransportError. A live Executor that only reads slowly keeps acknowledging: it never times out."""
