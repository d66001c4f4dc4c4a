"""The environment contract of the socket transport, read (never written) here.

LUTE's variables: ``LUTE_USE_TCP``, ``LUTE_PORT``, ``LUTE_SOCKET``, ``LUTE_EXECUTOR_HOST``,
``LUTE_USE_ZMQ``; lute_ipc's additions: ``LUTE_IPC_KEY`` (hex per-run HMAC key),
``LUTE_BIND_HOST`` (address the Executor binds on TCP) and ``LUTE_SSH_OPTIONS`` (extra
``ssh`` arguments for the cross-host tunnel). Functions only: nothing happens at import.
The Executor side exports variables itself (:mod:`lute_ipc.sockets`), as LUTE does.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
from typing import List, Mapping, Optional

from .errors import ConfigurationError

__all__ = [
    "USE_TCP",
    "PORT",
    "SOCKET",
    "EXECUTOR_HOST",
    "USE_ZMQ",
    "IPC_KEY",
    "BIND_HOST",
    "SSH_OPTIONS",
    "default_use_zmq",
    "use_tcp",
    "port",
    "socket_path",
    "executor_host",
    "bind_host",
    "ssh_options",
    "is_local_host",
]

USE_TCP = "LUTE_USE_TCP"
PORT = "LUTE_PORT"
SOCKET = "LUTE_SOCKET"
EXECUTOR_HOST = "LUTE_EXECUTOR_HOST"
USE_ZMQ = "LUTE_USE_ZMQ"
IPC_KEY = "LUTE_IPC_KEY"
BIND_HOST = "LUTE_BIND_HOST"
SSH_OPTIONS = "LUTE_SSH_OPTIONS"

_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def _env(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def default_use_zmq(environ: Optional[Mapping[str, str]] = None) -> bool:
    """LUTE's rule for ZeroMQ: ``LUTE_USE_ZMQ`` unset -> ZeroMQ if pyzmq is importable;
    ``"0"`` -> raw sockets; any other value -> ZeroMQ. No logging, no import of zmq."""
    value = _env(environ).get(USE_ZMQ)
    if value is None:
        return importlib.util.find_spec("zmq") is not None
    return value != "0"


def use_tcp(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when ``LUTE_USE_TCP`` is set (to any value, as in LUTE)."""
    return USE_TCP in _env(environ)


def port(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """``LUTE_PORT`` as an int, ``None`` when unset; ConfigurationError when not a port number."""
    text = _env(environ).get(PORT)
    if text is None or text.strip() == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"LUTE_PORT={text!r} is not a port number (an integer 1-65535)") from None
    if not 0 <= value <= 65535:
        raise ConfigurationError(f"LUTE_PORT={text!r} is out of range (1-65535)")
    return value


def socket_path(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """``LUTE_SOCKET`` or ``None`` (an ``ipc://`` prefix, as some LUTE set-ups write it, is removed)."""
    text = _env(environ).get(SOCKET)
    if not text:
        return None
    return text[len("ipc://"):] if text.startswith("ipc://") else text


def executor_host(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """``LUTE_EXECUTOR_HOST`` or ``None``."""
    return _env(environ).get(EXECUTOR_HOST) or None


def bind_host(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """``LUTE_BIND_HOST`` or ``None`` (meaning: LUTE's default, all interfaces)."""
    return _env(environ).get(BIND_HOST) or None


def ssh_options(environ: Optional[Mapping[str, str]] = None) -> List[str]:
    """``LUTE_SSH_OPTIONS`` split like a shell would (``-F cfg -p 2222`` -> 4 arguments)."""
    text = _env(environ).get(SSH_OPTIONS, "")
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ConfigurationError(f"LUTE_SSH_OPTIONS cannot be parsed as shell words: {exc}") from None


def is_local_host(name: str) -> bool:
    """True when ``name`` designates this machine (its hostname or a loopback name)."""
    if name in _LOCAL_NAMES:
        return True
    return name == socket.gethostname()
