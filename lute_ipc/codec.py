"""Turning objects into payload bytes and back.

* :func:`dumps`: pickle, as LUTE does, with a clear :class:`~lute_ipc.errors.UnpicklableContents`
  (or :class:`~lute_ipc.errors.MainModuleContents` for a class of the sender's ``__main__``,
  which the receiver cannot import) instead of pickle's own error.
* :func:`loads`: the one decoding path of every trusting reader (frame decoder and pipe
  splitter, both twins, any payload size). It maps the class paths of
  ``lute.execution.ipc`` (``Message``, ``TaskRequest``...) to the classes of
  :mod:`lute_ipc.message`, always, whether or not LUTE is installed.
* :func:`restricted_loads` / :func:`make_restricted_loads`: the decoder for data from peers
  that are not trusted (see :mod:`lute_ipc._restricted` and ``docs/SECURITY.md``).
* :func:`frame_tag`, :func:`generate_key`, :func:`parse_key`: the HMAC-SHA256 pieces of
  authenticated frames.

Pure functions only: no I/O, no logging, no global state changed after import.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import secrets
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Tuple, Union

from . import message as _message
from .errors import ConfigurationError, MainModuleContents, UnpicklableContents
from .pickle_layout import LEGACY_MODULE, MIRRORED_NAMES, PICKLE_PROTOCOL

__all__ = [
    "PICKLE_PROTOCOL",
    "LEGACY_MODULE",
    "MIRRORED_NAMES",
    "dumps",
    "dumps_lute_names",
    "check_sendable",
    "loads",
    "load_file",
    "compat_loads",
    "CompatUnpickler",
    "Budget",
    "DEFAULT_BUDGET",
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

if TYPE_CHECKING:  # the restricted unpickler is imported on first use (Tasks never need it)
    from ._restricted import DEFAULT_ALLOWED_GLOBALS, DEFAULT_BUDGET, Budget, RestrictedUnpickler

Buffer = Union[bytes, bytearray, memoryview]

if TYPE_CHECKING:
    class _PyPickler(pickle._Pickler):
        """pickle's pure-Python pickler with the undocumented members typeshed leaves out."""

        proto: int

        def save(self, obj: Any, save_persistent_id: bool = True) -> None: ...
        def write(self, data: bytes) -> Any: ...
        def memoize(self, obj: Any) -> None: ...
        def save_global(self, obj: Any, name: Optional[str] = None) -> None: ...

    def _whichmodule(obj: Any, name: Any) -> str: ...
else:
    _PyPickler = pickle._Pickler
    _whichmodule = pickle.whichmodule

_pickle_dumps = pickle.dumps
_MAIN_MARK = b"__main__"
# What pickle raises for an object it cannot pickle (AttributeError: local objects).
_PICKLING_ERRORS = (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError)


# --------------------------------------------------------------------------- encoding
class _MainModuleFinder(_PyPickler):
    """Pure-Python pickler that names the first global of ``__main__`` it would write."""

    def save_global(self, obj: Any, name: Optional[str] = None) -> None:
        module = getattr(obj, "__module__", None)
        if module is None:
            module = _whichmodule(obj, name or getattr(obj, "__qualname__", ""))
        if module == "__main__":
            raise MainModuleContents(
                f"cannot send {getattr(obj, '__qualname__', obj)!r}: it is defined in the sender's __main__ "
                "module, which the receiving process cannot import; define it in an importable module")
        super().save_global(obj, name)


def _unpicklable(obj: Any, exc: BaseException) -> UnpicklableContents:
    what = type(obj).__name__
    contents = getattr(obj, "contents", None) if type(obj).__module__ == _message.__name__ else None
    if contents is not None:
        what = f"{what} with contents of type {type(contents).__name__}"
    return UnpicklableContents(f"cannot pickle {what}: {type(exc).__name__}: {exc}")


def check_sendable(obj: Any, data: Any) -> None:
    """Raise :class:`MainModuleContents` if the pickle ``data`` of ``obj`` needs the sender's
    ``__main__`` (checked only when the name occurs in the bytes: a cheap scan)."""
    if _MAIN_MARK in data:
        try:
            _MainModuleFinder(io.BytesIO(), PICKLE_PROTOCOL).dump(obj)
        except MainModuleContents:
            raise
        except _PICKLING_ERRORS:  # pragma: no cover - pickle accepted it a moment ago
            pass


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` the way every lute_ipc writer does.

    Raises:
        UnpicklableContents: pickle cannot write ``obj`` (pickle's error is the ``__cause__``).
        MainModuleContents: ``obj`` needs a class or function of the sender's ``__main__``.
    """
    try:
        data = _pickle_dumps(obj, PICKLE_PROTOCOL)
    except _PICKLING_ERRORS as exc:
        raise _unpicklable(obj, exc) from exc
    check_sendable(obj, data)
    return data


class _LuteNamesPickler(_PyPickler):
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
    try:
        _LuteNamesPickler(buffer, PICKLE_PROTOCOL).dump(obj)
    except _PICKLING_ERRORS as exc:
        raise _unpicklable(obj, exc) from exc
    data = buffer.getvalue()
    check_sendable(obj, data)
    return data


# --------------------------------------------------------------------------- trusting decoding
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


def load_file(file: Any) -> Any:
    """Unpickle from a binary file-like object: the mechanism behind :func:`loads`.

    Readers that hold a large pickle in pieces (the Cython pipe splitter) call this with a
    reader over the pieces, so every payload goes through the same unpickler whatever its
    size or shape in memory.
    """
    return CompatUnpickler(file).load()


def loads(data: Buffer) -> Any:
    """Unpickle a payload, decoding LUTE's classes as lute_ipc's (trusting: full pickle).

    One path for every size: pickle's file-reading unpickler, which checks pickle's FRAME
    lengths (``pickle.loads`` on bytes does not); ``bytes`` are read in place, other buffers
    through zero-copy views.
    """
    # Any: _ViewReader.read hands out memoryviews, which the C unpickler takes but typeshed's
    # _ReadableFileobj (read -> bytes) does not.
    file: Any = io.BytesIO(data) if type(data) is bytes else _ViewReader(data)
    return CompatUnpickler(file).load()


compat_loads = loads
"""Former name of :func:`loads` (there is one trusting path)."""


# --------------------------------------------------------------------------- restricted decoding
AllowedItem = Union[Tuple[str, str], type]


_LAZY = frozenset({"Budget", "DEFAULT_BUDGET", "RestrictedUnpickler", "DEFAULT_ALLOWED_GLOBALS"})


def __getattr__(name: str) -> Any:
    """The restricted unpickler's names, imported on first use."""
    if name in _LAZY:
        from . import _restricted

        return getattr(_restricted, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_restricted_loads(allowed: Iterable[AllowedItem] = (), *, module_prefixes: Optional[Sequence[str]] = None,
                          budget: Optional[Budget] = None) -> Callable[[Buffer], Any]:
    """Return a restricted ``loads`` for data from peers that are not trusted.

    Args:
        allowed: extra classes (or ``(module, name)`` pairs naming classes) whose instances may
            be rebuilt (created without calling ``__init__``, then given their pickled state).
        module_prefixes: classes defined in modules under these prefixes (``"lute"`` covers
            ``lute`` and ``lute.*``) may be rebuilt likewise. ``None``: read
            :func:`lute_ipc.env.allowed_module_prefixes` (``LUTE_IPC_ALLOW``) now.
        budget: what one payload may cost (:class:`Budget`; default :data:`DEFAULT_BUDGET`).

    The options are checked now, not at the first payload. See ``docs/SECURITY.md``.
    """
    from . import _restricted

    if module_prefixes is None:
        from .env import allowed_module_prefixes

        module_prefixes = allowed_module_prefixes()
    policy = _restricted.make_policy(allowed, module_prefixes,
                                     _restricted.DEFAULT_BUDGET if budget is None else budget)
    load = _restricted.restricted_load

    def loads_restricted(data: Buffer) -> Any:
        return load(data, policy)

    return loads_restricted


_default: Optional[Callable[[Buffer], Any]] = None


def restricted_loads(data: Buffer) -> Any:
    """Unpickle ``data`` allowing only :data:`DEFAULT_ALLOWED_GLOBALS`, within :data:`DEFAULT_BUDGET`."""
    global _default
    if _default is None:
        _default = make_restricted_loads(module_prefixes=())
    return _default(data)


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
        raise ConfigurationError(
            f"LUTE_IPC_KEY must hold at least {_MIN_KEY_SIZE} bytes ({2 * _MIN_KEY_SIZE} hex digits)")
    return key
