"""Turning objects into payload bytes and back.

* :func:`dumps` / :func:`loads`: pickle, as LUTE does. ``loads`` maps the class paths of
  ``lute.execution.ipc`` (``Message``, ``TaskRequest``...) to the classes of
  :mod:`lute_ipc.message`, always, whether or not LUTE is installed, so a consumer sees
  one set of types. Payloads that do not mention LUTE's module take the plain
  ``pickle.loads`` fast path.
* :class:`RestrictedUnpickler` / :func:`restricted_loads` / :func:`make_restricted_loads`:
  an allow-list unpickler for data from peers that are not trusted.
* :func:`frame_tag`, :func:`generate_key`, :func:`parse_key`: the HMAC-SHA256 pieces of
  authenticated frames.

Pure functions only: no I/O, no logging, no global state changed after import.
"""

from __future__ import annotations

import _compat_pickle
import functools
import hashlib
import hmac
import io
import pickle
import re
import secrets
from typing import Any, Callable, FrozenSet, Iterable, Optional, Tuple, Union

from . import message as _message
from .errors import ConfigurationError, ForbiddenClass

__all__ = [
    "PICKLE_PROTOCOL",
    "LEGACY_MODULE",
    "dumps",
    "dumps_lute_names",
    "loads",
    "compat_loads",
    "CompatUnpickler",
    "RestrictedUnpickler",
    "restricted_loads",
    "make_restricted_loads",
    "DEFAULT_ALLOWED_GLOBALS",
    "TAG_SIZE",
    "KEY_SIZE",
    "frame_tag",
    "tagger",
    "FrameTagger",
    "generate_key",
    "parse_key",
]

Buffer = Union[bytes, bytearray, memoryview]

PICKLE_PROTOCOL: int = pickle.DEFAULT_PROTOCOL
"""Protocol used by :func:`dumps`: the interpreter's default, as LUTE uses."""

LEGACY_MODULE: str = "lute.execution.ipc"
"""LUTE's module; its mirrored classes are decoded as lute_ipc's own."""
_LEGACY_MARK: bytes = LEGACY_MODULE.encode()
_LEGACY_RE = re.compile(re.escape(_LEGACY_MARK))

MIRRORED_NAMES: FrozenSet[str] = frozenset(
    {
        "Party",
        "Message",
        "TaskRequest",
        "TaskResponse",
        "TaskRequestMessage",
        "TaskResponseMessage",
        "TaskMetadataMessage",
    }
)
"""Names of ``lute.execution.ipc`` that lute_ipc mirrors in :mod:`lute_ipc.message`."""

_pickle_dumps = pickle.dumps
_pickle_loads = pickle.loads


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` the way every lute_ipc writer does."""
    return _pickle_dumps(obj, PICKLE_PROTOCOL)


def _python3_name(module: str, name: str) -> Tuple[str, str]:
    """Map a Python 2 global name (protocol < 3 pickles) to its Python 3 name, as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _LuteNamesPickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Pure-Python pickler that names lute_ipc's mirrored classes by LUTE's class paths.

    Only ``save_global`` is changed, for exactly the classes of :data:`MIRRORED_NAMES`;
    everything else pickles as usual. LUTE need not be installed: the names are written, not
    looked up.
    """

    def save_global(self, obj: Any, name: Optional[str] = None) -> None:
        if isinstance(obj, type) and obj.__module__ == _message.__name__ and obj.__name__ in MIRRORED_NAMES \
                and getattr(_message, obj.__name__) is obj:
            if self.proto >= 4:
                self.save(LEGACY_MODULE)
                self.save(obj.__name__)
                self.write(pickle.STACK_GLOBAL)
            else:
                self.write(pickle.GLOBAL + f"{LEGACY_MODULE}\n{obj.__name__}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dumps_lute_names(obj: Any) -> bytes:
    """Pickle ``obj`` naming Message & co. as ``lute.execution.ipc`` classes.

    For peers that may be original LUTE code (e.g. replies on a LUTE Task's stdin, where LUTE
    checks ``isinstance(x, lute.execution.ipc.Message)``). lute_ipc's own decoders map the
    names back. Slower than :func:`dumps` (pure-Python pickler): for low-rate traffic.
    """
    buffer = io.BytesIO()
    _LuteNamesPickler(buffer, PICKLE_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _mirrored_class(module: str, name: str) -> Optional[Any]:
    if module == LEGACY_MODULE and name in MIRRORED_NAMES:
        return getattr(_message, name)
    return None


class CompatUnpickler(pickle.Unpickler):
    """A full (trusting) unpickler that maps LUTE's mirrored classes to lute_ipc's."""

    def find_class(self, module: str, name: str) -> Any:
        mirrored = _mirrored_class(module, name)
        if mirrored is not None:
            return mirrored
        return super().find_class(module, name)


class _ViewReader:
    """A read-only binary file over a buffer, handing out zero-copy memoryview slices.

    ``io.BytesIO`` copies anything but ``bytes``; copying a large payload into fresh memory
    costs more than unpickling it. The C unpickler accepts any buffer from ``read``.
    """

    __slots__ = ("_view", "_pos")

    def __init__(self, data: Buffer) -> None:
        view = memoryview(data)
        self._view = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        self._pos = 0

    def read(self, size: int = -1) -> memoryview:
        start = self._pos
        end = len(self._view) if size is None or size < 0 else min(len(self._view), start + size)
        self._pos = end
        return self._view[start:end]

    def readinto(self, target: Any) -> int:
        chunk = self.read(len(memoryview(target).cast("B")))
        memoryview(target).cast("B")[:len(chunk)] = chunk
        return len(chunk)

    def readline(self, size: int = -1) -> bytes:
        view, start = self._view, self._pos
        end = len(view) if size is None or size < 0 else min(len(view), start + size)
        newline = bytes(view[start:end]).find(b"\n")  # only protocol 0/1 text opcodes use lines
        self._pos = end if newline < 0 else start + newline + 1
        return bytes(view[start:self._pos])


def compat_loads(data: Buffer) -> Any:
    """Unpickle ``data`` with :class:`CompatUnpickler` (no fast path)."""
    return CompatUnpickler(io.BytesIO(data) if type(data) is bytes else _ViewReader(data)).load()


SCAN_LIMIT: int = 8192
"""Payloads up to this size are scanned for LUTE's module name (then plain ``pickle.loads``);
larger ones go straight to :class:`CompatUnpickler`, whose mapping costs per global, not per
byte (at 64 KiB a scan costs several times the unpickling)."""


def loads(data: Buffer) -> Any:
    """Unpickle a payload, decoding LUTE's classes as lute_ipc's (trusting: full pickle)."""
    if len(data) > SCAN_LIMIT:
        return compat_loads(data)
    if _LEGACY_RE.search(data) is None:
        return _pickle_loads(data)
    return compat_loads(data)


# --------------------------------------------------------------------------- restricted
def _numpy_globals() -> FrozenSet[Tuple[str, str]]:
    names = set()
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names.update({(core, "_reconstruct"), (core, "scalar")})
    for numeric in ("numpy.core.numeric", "numpy._core.numeric"):
        names.add((numeric, "_frombuffer"))
    names.update({("numpy", "ndarray"), ("numpy", "dtype")})
    return frozenset(names)


DEFAULT_ALLOWED_GLOBALS: FrozenSet[Tuple[str, str]] = frozenset(
    {("builtins", n) for n in (
        "bool", "int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple",
        "dict", "set", "frozenset", "range", "slice", "object",
    )}
    | {("copyreg", "_reconstructor"), ("_codecs", "encode")}
    | {("collections", n) for n in ("OrderedDict", "deque", "defaultdict", "Counter")}
    | {("datetime", n) for n in ("date", "time", "datetime", "timedelta", "timezone")}
    | {("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID")}
    | {("lute_ipc.message", n) for n in MIRRORED_NAMES}
    | _numpy_globals()
)
"""Globals the restricted unpickler resolves: plain data types, Messages, numpy arrays.

numpy entries only resolve when numpy is importable (otherwise the import fails as usual).
"""


def _no_size_argument(kind: type) -> Callable[..., Any]:
    """``kind`` (bytes/bytearray) as a pickle callable that refuses ``kind(n)``: n zero bytes is a memory bomb."""

    def construct(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"restricted unpickler refuses {kind.__name__}(<int>)")
        return kind(*args)

    construct.__name__ = construct.__qualname__ = kind.__name__
    return construct


_GUARDED_CALLABLES = {("builtins", "bytes"): _no_size_argument(bytes),
                      ("builtins", "bytearray"): _no_size_argument(bytearray)}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals.

    Anything else raises :class:`~lute_ipc.errors.ForbiddenClass` before it is imported,
    so a hostile pickle cannot name ``os.system`` or any other callable.

    Args:
        file: a binary file-like object to read the pickle from.
        allowed: extra ``(module, name)`` pairs (or classes) to allow on top of
            :data:`DEFAULT_ALLOWED_GLOBALS`.
    """

    def __init__(self, file: Any, *, allowed: Iterable[Union[Tuple[str, str], type]] = ()) -> None:
        super().__init__(file)
        extra = _normalise_allowed(allowed)
        self._allowed = DEFAULT_ALLOWED_GLOBALS | extra if extra else DEFAULT_ALLOWED_GLOBALS

    def find_class(self, module: str, name: str) -> Any:
        mirrored = _mirrored_class(module, name)
        if mirrored is not None:
            return mirrored
        # Python 2 names only occur in protocol < 3 pickles; pickle maps them the same way.
        module, name = _python3_name(module, name)
        if (module, name) not in self._allowed:
            raise ForbiddenClass(module, name)
        guarded = _GUARDED_CALLABLES.get((module, name))
        if guarded is not None:
            return guarded
        return super().find_class(module, name)


def _normalise_allowed(allowed: Iterable[Union[Tuple[str, str], type]]) -> FrozenSet[Tuple[str, str]]:
    pairs = set()
    for item in allowed:
        if isinstance(item, type):
            pairs.add((item.__module__, item.__qualname__))
        else:
            module, name = item
            pairs.add((str(module), str(name)))
    return frozenset(pairs)


def restricted_loads(data: Buffer) -> Any:
    """Unpickle ``data`` allowing only :data:`DEFAULT_ALLOWED_GLOBALS`."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def make_restricted_loads(allowed: Iterable[Union[Tuple[str, str], type]] = ()) -> Callable[[Buffer], Any]:
    """Return a ``loads`` function like :func:`restricted_loads` that also allows ``allowed``."""
    extra = tuple(allowed)
    _normalise_allowed(extra)  # validate now, not at the first message

    def loads_restricted(data: Buffer) -> Any:
        return RestrictedUnpickler(io.BytesIO(data), allowed=extra).load()

    return loads_restricted


# --------------------------------------------------------------------------- HMAC
TAG_SIZE: int = 32
"""Bytes of an HMAC-SHA256 tag."""
KEY_SIZE: int = 32
"""Bytes of a generated per-run key."""
_MIN_KEY_SIZE = 16


def frame_tag(key: bytes, authenticated: Buffer) -> bytes:
    """HMAC-SHA256 of ``authenticated`` (a frame's head, length and payload) under ``key``."""
    return tagger(key)(authenticated)


_SHA256_BLOCK = 64


class FrameTagger:
    """HMAC-SHA256 under one key, with the keyed inner and outer hash states computed once.

    ``FrameTagger(key)(data) == hmac.digest(key, data, "sha256")`` (RFC 2104), at well under
    half the cost per small frame: only the two state copies and the data are hashed per call.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, data: Buffer) -> bytes:
        return self.over((data,))

    def over(self, pieces: Iterable[Buffer]) -> bytes:
        """The tag of the concatenation of ``pieces`` (a frame sent scatter-gather), without joining them."""
        inner = self._inner.copy()
        for piece in pieces:
            inner.update(piece)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@functools.lru_cache(maxsize=16)
def tagger(key: bytes) -> FrameTagger:
    """The (cached) :class:`FrameTagger` of ``key``."""
    return FrameTagger(bytes(key))


def generate_key() -> bytes:
    """A fresh random per-run key."""
    return secrets.token_bytes(KEY_SIZE)


def parse_key(text: str) -> bytes:
    """Decode a key given as hex (the form of ``LUTE_IPC_KEY``); raise ConfigurationError if unusable."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigurationError("LUTE_IPC_KEY must be a hexadecimal string") from None
    if len(key) < _MIN_KEY_SIZE:
        raise ConfigurationError(f"LUTE_IPC_KEY must hold at least {_MIN_KEY_SIZE} bytes ({2 * _MIN_KEY_SIZE} hex digits)")
    return key
