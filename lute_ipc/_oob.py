"""Pickle a message whose large buffers stay where they are, as a list of pieces to send.

:func:`pickle_pieces` pickles with protocol 5 and a ``buffer_callback`` so large
``bytes``/``bytearray`` objects and numpy arrays are *not* copied into the pickle, then
rebuilds the ordinary **in-band** pickle as a list of pieces: pickle opcodes, and each
out-of-band buffer re-inlined where it stood, behind the in-band opcode it would have had
(``BINBYTES8`` for a read-only buffer, ``BYTEARRAY8`` for a writable one). Joined, the
pieces are a normal pickle any ``pickle.loads`` reads (no ``NEXT_BUFFER`` in it); sent
with scatter-gather I/O, the large buffers are never concatenated.

The opcode stream is walked with :func:`pickletools.genops` (never by guessing bytes):
``NEXT_BUFFER`` [``READONLY_BUFFER``] is replaced by the inline opcode and the buffer,
the ``BINPERSID`` that follows a ``bytes``/``bytearray`` handed out by ``persistent_id``
is dropped, and ``FRAME`` opcodes (optional in protocols 4 and 5) are dropped because the
re-inlined data changes the frame sizes.
"""

from __future__ import annotations

import pickle
import pickletools
import struct
from itertools import islice
from typing import Any, List, Optional, Set, Tuple

from . import codec
from .errors import UnpicklableContents
from .pickle_layout import BINBYTES8, BYTEARRAY8, LARGE_BUFFER

__all__ = ["pickle_pieces", "has_large_buffer", "largest_buffer", "LARGE_BUFFER"]

_BINBYTES8 = bytes((BINBYTES8,))
_BYTEARRAY8 = bytes((BYTEARRAY8,))
_SCAN_ITEMS = 16


def _is_large(obj: Any, threshold: int) -> bool:
    kind = type(obj)
    if kind is bytes or kind is bytearray:
        return len(obj) >= threshold
    if kind.__name__ == "ndarray" and kind.__module__ == "numpy":
        nbytes: int = obj.nbytes
        return nbytes >= threshold
    return False


def _size(obj: Any) -> int:
    kind = type(obj)
    if kind is bytes or kind is bytearray:
        return len(obj)
    if kind.__name__ == "ndarray" and kind.__module__ == "numpy":
        return int(obj.nbytes)
    return 0


_NEVER_BUFFERS = frozenset({str, int, float, bool, type(None), complex})
"""Types that are never a large buffer: skipped without looking further."""


def largest_buffer(contents: Any) -> int:
    """Size of the largest ``bytes``/``bytearray``/numpy array that ``contents`` is or directly
    holds (first items of a list, tuple or dict's values); 0 if none. Cheap: the writer calls
    it on every message, so the common items (text, numbers) cost one type test each."""
    kind = type(contents)
    if kind is tuple or kind is list:
        items: Any = contents[:_SCAN_ITEMS]
    elif kind is dict:
        items = islice(contents.values(), _SCAN_ITEMS)
    else:
        return 0 if kind in _NEVER_BUFFERS else _size(contents)
    largest = 0
    for item in items:
        if type(item) not in _NEVER_BUFFERS:
            size = _size(item)
            if size > largest:
                largest = size
    return largest


def has_large_buffer(contents: Any, threshold: int = LARGE_BUFFER) -> bool:
    """True when :func:`largest_buffer` of ``contents`` is at least ``threshold`` bytes."""
    return largest_buffer(contents) >= threshold


class _Repeated(Exception):
    """A large bytes/bytearray object occurs twice: pickle in band to keep the sharing."""


class _OutOfBandPickler(pickle.Pickler):
    def __init__(self, file: Any, threshold: int, buffers: List[pickle.PickleBuffer]) -> None:
        super().__init__(file, protocol=5, buffer_callback=self._keep)
        self._threshold = threshold
        self._buffers = buffers
        self._seen: Set[int] = set()

    def _keep(self, buffer: pickle.PickleBuffer) -> bool:
        """Out of band (False) when large; in band (True) otherwise."""
        if buffer.raw().nbytes >= self._threshold:
            self._buffers.append(buffer)
            return False
        return True

    def persistent_id(self, obj: Any) -> Optional[pickle.PickleBuffer]:
        kind = type(obj)
        if (kind is bytes or kind is bytearray) and len(obj) >= self._threshold:
            if id(obj) in self._seen:
                raise _Repeated
            self._seen.add(id(obj))
            return pickle.PickleBuffer(obj)
        return None


def _dumps5(obj: Any) -> bytes:
    data = pickle.dumps(obj, 5)
    codec.check_sendable(obj, data)
    return data


class _Sink:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: List[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)


def pickle_pieces(obj: Any, threshold: int = LARGE_BUFFER) -> Tuple[List[Any], int]:
    """Return ``(pieces, total_size)``: ``b"".join(pieces)`` is an in-band pickle of ``obj``.

    Pieces are ``bytes`` (opcodes) and read-only ``memoryview``s of the large buffers
    (zero-copy: keep ``obj`` unchanged until the pieces are sent). If ``obj`` holds no large
    buffer the result is one piece, a plain protocol-5 pickle.

    Raises :class:`~lute_ipc.errors.UnpicklableContents` (or ``MainModuleContents``) as
    :func:`lute_ipc.codec.dumps` does.
    """
    sink = _Sink()
    buffers: List[pickle.PickleBuffer] = []
    try:
        _OutOfBandPickler(sink, threshold, buffers).dump(obj)
    except _Repeated:
        data = _dumps5(obj)
        return [data], len(data)
    except UnpicklableContents:
        raise
    except Exception as exc:  # pickle's own error for an object it cannot write
        codec.dumps(obj)  # raises UnpicklableContents (or MainModuleContents) with pickle's error as cause
        raise UnpicklableContents(f"cannot pickle {type(obj).__name__}: {type(exc).__name__}: {exc}") from exc
    stream = b"".join(sink.parts)
    codec.check_sendable(obj, stream)
    if not buffers:
        return [stream], len(stream)
    pieces: List[Any] = []
    total = 0
    start = 0  # start of the opcode bytes not yet emitted
    index = 0
    drop_persid = False
    for opcode, _arg, pos in pickletools.genops(stream):
        assert pos is not None  # genops over bytes always knows the position
        name = opcode.name
        if name == "FRAME":
            if pos > start:
                pieces.append(stream[start:pos])
            start = pos + 9  # opcode + 8-byte length
        elif name == "NEXT_BUFFER":
            if pos > start:
                pieces.append(stream[start:pos])
            view = buffers[index].raw()
            index += 1
            opcode_byte = _BINBYTES8 if view.readonly else _BYTEARRAY8
            pieces.append(opcode_byte + struct.pack("<Q", view.nbytes))
            pieces.append(view.toreadonly() if not view.readonly else view)
            start = pos + 1
            drop_persid = True
        elif name == "READONLY_BUFFER":
            # follows NEXT_BUFFER: the read-only kind is already chosen (BINBYTES8)
            start = pos + 1
        elif name == "BINPERSID" and drop_persid:
            start = pos + 1
            drop_persid = False
        else:
            drop_persid = False
            if name == "STOP":
                pieces.append(stream[start:])
                start = len(stream)
                break
    if index != len(buffers):  # pragma: no cover - pickle wrote buffers it did not announce
        data = _dumps5(obj)
        return [data], len(data)
    for piece in pieces:
        total += len(piece) if isinstance(piece, bytes) else piece.nbytes
    return pieces, total
