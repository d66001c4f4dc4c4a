"""The environment contract of the socket transport, read (never written) here.

LUTE's variables: ``LUTE_USE_TCP``, ``LUTE_PORT``, ``LUTE_SOCKET``, ``LUTE_EXECUTOR_HOST``,
``LUTE_USE_ZMQ``; lute_ipc's additions: ``LUTE_IPC_KEY`` (hex per-run HMAC key),
``LUTE_BIND_HOST`` (address the Executor binds on TCP), ``LUTE_SSH_OPTIONS`` (extra
``ssh`` arguments for the cross-host tunnel), ``LUTE_IPC_PROTOCOL`` (exported by a lute_ipc
Executor: a Task that does not see it talks to LUTE's own Executor and sends exactly LUTE's
bytes), ``LUTE_IPC_REQUIRE_AUTH`` (``0``/``1``: override whether the Executor requires
authenticated frames), ``LUTE_IPC_ALLOW`` (comma-separated module prefixes added to the
restricted unpickler's allow-list), ``LUTE_IPC_MAX_FRAME_SIZE`` (the frame size limit, on
both sides) and ``LUTE_IPC_EXECUTOR_MAX_FRAME_SIZE`` (exported by a lute_ipc Executor: its own
frame limit, which its ZeroMQ session Tasks apply when it is lower than theirs). Functions
only: nothing happens at import.
The Executor side exports variables itself (:mod:`lute_ipc.sockets`), as LUTE does.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
from typing import List, Mapping, Optional, Tuple

from .errors import ConfigurationError

__all__ = [
    "USE_TCP",
    "EXECUTOR_MAX_FRAME_SIZE",
    "executor_max_frame_size",
    "PORT",
    "SOCKET",
    "EXECUTOR_HOST",
    "USE_ZMQ",
    "IPC_KEY",
    "BIND_HOST",
    "SSH_OPTIONS",
    "IPC_PROTOCOL",
    "REQUIRE_AUTH",
    "ALLOW",
    "MAX_FRAME_SIZE",
    "default_use_zmq",
    "use_tcp",
    "port",
    "socket_path",
    "executor_host",
    "bind_host",
    "ssh_options",
    "is_local_host",
    "executor_protocol",
    "require_auth",
    "allowed_module_prefixes",
    "max_frame_size",
    "ZMQ_SESSION",
    "zmq_session",
]

USE_TCP = "LUTE_USE_TCP"
PORT = "LUTE_PORT"
SOCKET = "LUTE_SOCKET"
EXECUTOR_HOST = "LUTE_EXECUTOR_HOST"
USE_ZMQ = "LUTE_USE_ZMQ"
IPC_KEY = "LUTE_IPC_KEY"
BIND_HOST = "LUTE_BIND_HOST"
SSH_OPTIONS = "LUTE_SSH_OPTIONS"
IPC_PROTOCOL = "LUTE_IPC_PROTOCOL"
REQUIRE_AUTH = "LUTE_IPC_REQUIRE_AUTH"
ALLOW = "LUTE_IPC_ALLOW"
MAX_FRAME_SIZE = "LUTE_IPC_MAX_FRAME_SIZE"
ZMQ_SESSION = "LUTE_IPC_ZMQ_SESSION"
EXECUTOR_MAX_FRAME_SIZE = "LUTE_IPC_EXECUTOR_MAX_FRAME_SIZE"

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
    if not 1 <= value <= 65535:  # 0 would mean "any free port" to bind() but no port to connect to
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


def executor_protocol(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """``LUTE_IPC_PROTOCOL`` as exported by a lute_ipc Executor, or ``None``: the Executor is
    LUTE's own (or older), and a Task must send exactly LUTE's bytes."""
    return _env(environ).get(IPC_PROTOCOL) or None


_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def require_auth(environ: Optional[Mapping[str, str]] = None) -> Optional[bool]:
    """``LUTE_IPC_REQUIRE_AUTH`` as a bool (``1/true/yes/on`` or ``0/false/no/off``), ``None``
    when unset or empty (the transport's default applies); ConfigurationError otherwise."""
    text = _env(environ).get(REQUIRE_AUTH, "").strip().lower()
    if text == "":
        return None
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ConfigurationError(f"{REQUIRE_AUTH}={text!r} is not a yes/no value (use 1 or 0)")


def allowed_module_prefixes(environ: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """``LUTE_IPC_ALLOW`` split on commas: module prefixes (``lute`` allows ``lute`` and
    ``lute.*``) whose classes the restricted unpickler may rebuild. Empty when unset."""
    text = _env(environ).get(ALLOW, "")
    prefixes = []
    for word in text.split(","):
        word = word.strip()
        if not word:
            continue
        if not all(part.isidentifier() for part in word.split(".")):
            raise ConfigurationError(f"{ALLOW}: {word!r} is not a dotted module name")
        prefixes.append(word)
    return tuple(prefixes)


def max_frame_size(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """``LUTE_IPC_MAX_FRAME_SIZE`` in bytes (an integer, optionally with a ``K``/``M``/``G``
    binary suffix), ``None`` when unset; ConfigurationError when not a positive size."""
    text = _env(environ).get(MAX_FRAME_SIZE, "").strip()
    if text == "":
        return None
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale != 1 else text
    if not digits.isdigit() or int(digits) <= 0:
        raise ConfigurationError(f"{MAX_FRAME_SIZE}={text!r} is not a positive size in bytes (e.g. 256M)")
    return int(digits) * scale


def executor_max_frame_size(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """``LUTE_IPC_EXECUTOR_MAX_FRAME_SIZE`` as exported by a lute_ipc Executor: its frame limit in
    bytes, ``None`` when unset; ConfigurationError when not a positive integer."""
    text = _env(environ).get(EXECUTOR_MAX_FRAME_SIZE, "").strip()
    if text == "":
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ConfigurationError(f"{EXECUTOR_MAX_FRAME_SIZE}={text!r} is not a positive size in bytes: it is "
                                 "exported by the Executor, do not set it by hand")
    return int(text)


def zmq_session(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """``LUTE_IPC_ZMQ_SESSION`` as exported by a lute_ipc Executor on ZeroMQ: where its session
    (ROUTER) socket is, a Unix socket path or, with ``LUTE_USE_TCP``, a port; ``None`` when unset."""
    return _env(environ).get(ZMQ_SESSION) or None
