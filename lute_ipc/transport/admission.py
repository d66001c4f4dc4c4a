"""Which connections an Executor admits, and which it may close: plain code, no sockets.

A connection is *proven* once it completed the session handshake, or (when authentication
is off) once its first octets showed LUTE's plain frames. Proven connections are never
closed to make room: they may hold a legitimate Task's unread data. At a limit (all open
connections, or connections not proven yet), the reader closes the oldest unproven
connection, or, when every open connection is proven, stops accepting until one closes (new
Tasks wait in the listen backlog: nothing is lost).
"""

from __future__ import annotations

__all__ = ["ACCEPT", "MAKE_ROOM", "PAUSE", "admit"]

ACCEPT = 1
"""Accept the next connection."""
MAKE_ROOM = 2
"""Close the oldest unproven connection, then accept."""
PAUSE = 3
"""Stop accepting until a connection closes."""


def admit(open_count: int, unproven: int, max_connections: int, max_unproven: int) -> int:
    """The decision for the next pending connection.

    Args:
        open_count: connections open now.
        unproven: how many of them have not proven themselves.
        max_connections: open connections allowed.
        max_unproven: unproven connections allowed (the global budget of unproven octets
            divided by what each may buffer).
    """
    if open_count < max_connections and unproven < max_unproven:
        return ACCEPT
    if unproven > 0:
        return MAKE_ROOM
    return PAUSE
