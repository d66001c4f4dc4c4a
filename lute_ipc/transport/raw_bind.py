"""Executor side of raw stream sockets: binding the listening socket (Unix or TCP).

The Unix socket file is made private (0600; the facade puts it in a 0700 directory unless
the user chose ``LUTE_SOCKET``); a stale socket file nobody listens on is replaced, a live
one or a non-socket is refused. Errors are :class:`~lute_ipc.errors.TransportError` or
:class:`~lute_ipc.errors.ConfigurationError` saying what to change.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Optional

from ..errors import ConfigurationError, TransportError

__all__ = ["bind_tcp", "bind_unix", "remove_stale_socket", "default_max_connections"]


def bind_tcp(host: Optional[str], port: Optional[int]) -> socket.socket:
    """A listening TCP socket on ``host`` (None: all interfaces) and ``port`` (None: a free one)."""
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "", port or 0))
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise TransportError(f"the Executor cannot bind TCP {host or '*'}:{port or 0}: {exc}. "
                             "Choose another LUTE_PORT (or unset it to get a free one) or "
                             "another LUTE_BIND_HOST.") from exc
    return sock


def bind_unix(path: str) -> socket.socket:
    """A listening Unix stream socket at ``path``, mode 0600."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise TransportError(f"the Executor cannot bind the Unix socket {path}: {exc}. Check that "
                             "its directory exists and is writable, or unset LUTE_SOCKET.") from exc
    return sock


def remove_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on; refuse to take over a live one or a non-socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigurationError(f"LUTE_SOCKET={path} exists and is not a socket; unset LUTE_SOCKET or "
                                 "choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    finally:
        probe.close()
    raise ConfigurationError(f"another process is already listening on LUTE_SOCKET={path}; unset LUTE_SOCKET "
                             "to get a private socket, or choose another path")


def default_max_connections() -> int:
    """1024, or half the soft open-file limit when that is lower (at least 16)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))
