"""This process's id without a system call per question.

``os.getpid()`` is a system call (the C library no longer caches it), and a Task's
per-message path asks "is this still the process that opened the link?" several times per
message. :func:`pid` answers from a value refreshed in every child of ``os.fork()`` (an
``os.register_at_fork`` hook, installed when this module is first imported).
"""

from __future__ import annotations

import os

__all__ = ["pid"]

_current = os.getpid()


def pid() -> int:
    """This process's id (refreshed in a forked child before any other code of it runs)."""
    return _current


def _refresh() -> None:
    global _current
    _current = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_refresh)
