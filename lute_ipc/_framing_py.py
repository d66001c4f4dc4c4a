"""Pure-Python reference of the socket frame codec: the spec the Cython twin must match.

Wire format (see ``docs/PROTOCOL.md`` for the grammar and ``tests/vectors/`` for
byte-exact examples)::

    plain frame          MSG;;;<length>;;;<payload>;;;GSM            (LUTE's format)
    authenticated frame  MAC;;;<length>;;;<payload><tag>;;;CAM

``length`` is 1 to 19 ASCII digits giving ``len(payload)``; ``tag`` is 32 bytes of
HMAC-SHA256, under the per-run key, over everything from ``M`` of the head to the last
payload byte.

The decoder is *length-driven*: it parses a head, takes exactly ``length`` payload bytes
and then checks the trailer, so payloads may contain any bytes (``;;;``, ``;;;GSM``,
``MSG;;;``...). Anything that is not a well-formed frame is a framing error: it is
counted, reported to ``on_error`` and the decoder resynchronises on the next head
(``MSG;;;`` or ``MAC;;;``) after the first byte of the bad region. ``feed`` never raises
for bad input. Work is linear in the bytes fed whatever the chunking, and no more than one
incomplete frame (at most ``max_frame_size`` + overhead) is ever buffered.

Sans-IO: no sockets, threads or logging here.
"""

from __future__ import annotations

import hmac
import mmap
import re
import sys
from typing import Any, Callable, List, Optional, Tuple, Union

from . import codec
from . import message as _message
from . import pickle_layout as _layout
from .errors import (
    AuthenticationError,
    BadHeader,
    BadTrailer,
    FrameTooLarge,
    PayloadError,
    ProtocolError,
    TruncatedFrame,
    UsageError,
)

__all__ = [
    "PLAIN_HEAD",
    "PLAIN_TRAILER",
    "AUTH_HEAD",
    "AUTH_TRAILER",
    "SEPARATOR",
    "TAG_SIZE",
    "MAX_LENGTH_DIGITS",
    "DEFAULT_MAX_FRAME_SIZE",
    "encode_frame",
    "encode_payload",
    "append_frame",
    "append_payload",
    "frame_head",
    "message_pieces",
    "FrameDecoder",
    "MixedStreamSplitter",
    "SignalTokenizer",
    "final_buffer",
    "SendBuffer",
]

PLAIN_HEAD = b"MSG;;;"
PLAIN_TRAILER = b";;;GSM"
AUTH_HEAD = b"MAC;;;"
AUTH_TRAILER = b";;;CAM"
SEPARATOR = b";;;"
TAG_SIZE = codec.TAG_SIZE
MAX_LENGTH_DIGITS = 19
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024

_HEAD_SIZE = len(PLAIN_HEAD)
_TRAILER_SIZE = len(PLAIN_TRAILER)
_HEAD_RE = re.compile(rb"M(?:SG|AC);;;")
_DIGIT_0 = 48
_DIGIT_9 = 57

Buffer = Union[bytes, bytearray, memoryview]
Loads = Callable[[Buffer], Any]
ErrorCallback = Callable[[ProtocolError], None]


def _check_key(key: Optional[bytes]) -> Optional[bytes]:
    if key is None:
        return None
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise UsageError("key must be non-empty bytes (or None)")
    return bytes(key)


def encode_payload(payload: Buffer, *, key: Optional[bytes] = None) -> bytes:
    """Frame already-serialised ``payload`` bytes.

    Without ``key`` the result is LUTE's frame ``MSG;;;<len>;;;<payload>;;;GSM``;
    with ``key`` it is an authenticated frame ``MAC;;;<len>;;;<payload><tag>;;;CAM``.
    """
    key = _check_key(key)
    payload = bytes(payload)
    if key is None:
        return b"%s%d%s%s%s" % (PLAIN_HEAD, len(payload), SEPARATOR, payload, PLAIN_TRAILER)
    signed = b"%s%d%s%s" % (AUTH_HEAD, len(payload), SEPARATOR, payload)
    return signed + codec.frame_tag(key, signed) + AUTH_TRAILER


def encode_frame(msg: Any, *, key: Optional[bytes] = None) -> bytes:
    """Pickle ``msg`` (normally a :class:`~lute_ipc.message.Message`) and frame it."""
    return encode_payload(codec.dumps(msg), key=key)


def append_payload(buffer: bytearray, payload: Buffer, *, key: Optional[bytes] = None) -> int:
    """Append the frame of ``payload`` to ``buffer`` (a send buffer); return the bytes added.

    Same bytes as :func:`encode_payload`, without building the frame as a separate object.
    """
    if not isinstance(buffer, bytearray):
        raise UsageError("buffer must be a bytearray")
    if payload is buffer:
        raise UsageError("payload must not be the buffer itself")
    key = _check_key(key)
    payload = memoryview(payload).cast("B") if not isinstance(payload, (bytes, bytearray)) else payload
    start = len(buffer)
    buffer += AUTH_HEAD if key is not None else PLAIN_HEAD
    buffer += b"%d" % len(payload)
    buffer += SEPARATOR
    buffer += payload
    if key is not None:
        buffer += codec.frame_tag(key, memoryview(buffer)[start:])
        buffer += AUTH_TRAILER
    else:
        buffer += PLAIN_TRAILER
    return len(buffer) - start


def append_frame(buffer: bytearray, msg: Any, *, key: Optional[bytes] = None) -> int:
    """Pickle ``msg`` and append its frame to ``buffer``; return the bytes added."""
    return append_payload(buffer, codec.dumps(msg), key=key)


_MESSAGE_NAMES = tuple(
    name.encode() for name in ("contents", "signal", _message.Message.__module__, _message.Message.__qualname__))
_MAX_SIGNAL = 16 * 1024

# The pickle of a Message up to its contents: the class (STACK_GLOBAL), NEWOBJ, the state dict
# (EMPTY_DICT MARK) and its first key (the pieces are pickle_layout's).
_PICKLE_BODY = (_layout.short_text(_MESSAGE_NAMES[2]) + _layout.short_text(_MESSAGE_NAMES[3])
                + _layout.MESSAGE_NEWOBJ + _layout.MESSAGE_KEY_CONTENTS)


def message_pieces(msg: Any) -> Optional[Tuple[List[Any], int]]:
    """``(pieces, size)`` for a :class:`~lute_ipc.message.Message` whose contents are
    ``bytes``: ``[head, msg.contents, tail]``, whose concatenation is exactly
    ``codec.dumps(msg)`` (the contents themselves are the middle piece, so a writer sends
    them with scatter-gather I/O, never copied). ``None`` for any other message, or when
    pickle would write it differently (extra attributes, a signal that is not a plain short
    ``str``/None, a signal pickle would write as a memo reference): pickle it as usual.
    """
    if type(msg) is not _message.Message:
        return None
    state = msg.__dict__
    if list(state) != ["contents", "signal"]:
        return None
    contents, signal = state["contents"], state["signal"]
    if type(contents) is not bytes or len(contents) > 0xFFFFFFFF:
        return None
    if signal is None:
        signal_bytes = bytes((_layout.NONE,))
    elif type(signal) is str:
        try:
            text = signal.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: pickle writes them with surrogatepass
            return None
        if len(text) > _MAX_SIGNAL or text in _MESSAGE_NAMES:
            return None
        size = len(text)
        signal_bytes = (_layout.short_text(text) if size < 256
                        else bytes((_layout.BINUNICODE,)) + size.to_bytes(4, "little") + text
                        + bytes((_layout.MEMOIZE,)))
    else:
        return None
    size = len(contents)
    body = _PICKLE_BODY
    opcode = (bytes((_layout.SHORT_BINBYTES, size)) if size < 256
              else bytes((_layout.BINBYTES,)) + size.to_bytes(4, "little"))
    rest = _layout.MESSAGE_KEY_SIGNAL + signal_bytes + _layout.MESSAGE_END
    memoize = bytes((_layout.MEMOIZE,))
    start = bytes((_layout.PROTO, _layout.PICKLE_PROTOCOL, _layout.FRAME))
    if size >= _layout.FRAME_TARGET:  # frame 1 ends before the bytes; frame 2 holds what follows them
        head = start + len(body).to_bytes(8, "little") + body + opcode
        tail = bytes((_layout.FRAME,)) + (len(rest) + 1).to_bytes(8, "little") + memoize + rest
    else:
        frame = len(body) + len(opcode) + size + 1 + len(rest)
        if frame >= _layout.FRAME_TARGET:  # pickle would close its frame somewhere inside
            return None
        head = start + frame.to_bytes(8, "little") + body + opcode
        tail = memoize + rest
    return [head, contents, tail], len(head) + size + len(tail)


def frame_head(length: int, *, authenticated: bool = False) -> bytes:
    """The bytes before a payload of ``length`` bytes (for scatter-gather sends).

    A frame is ``frame_head(n) + payload + PLAIN_TRAILER``, or for an authenticated frame
    ``frame_head(n, authenticated=True) + payload + tag + AUTH_TRAILER`` where the tag is
    :func:`lute_ipc.codec.frame_tag` over head and payload.
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 0 or length >= 10 ** MAX_LENGTH_DIGITS:
        raise UsageError(f"length must be an int in [0, 10**{MAX_LENGTH_DIGITS})")
    return b"%s%d%s" % (AUTH_HEAD if authenticated else PLAIN_HEAD, length, SEPARATOR)


def _longest_head_prefix_suffix(data: Buffer, start: int, end: int) -> int:
    """Length of the longest tail of ``data[start:end]`` that is a proper prefix of a head."""
    for size in range(min(_HEAD_SIZE - 1, end - start), 0, -1):
        tail = bytes(data[end - size:end])
        if PLAIN_HEAD.startswith(tail) or AUTH_HEAD.startswith(tail):
            return size
    return 0


# --------------------------------------------------------------------------- shared by both twins
LAZY_BUFFER_SIZE = 256 * 1024
"""From this size on, :func:`final_buffer` maps fresh pages instead of making a ``bytearray``."""

FinalBuffer = Union[bytearray, mmap.mmap]


def final_buffer(size: int) -> FinalBuffer:
    """A writable buffer of ``size`` octets for a frame or record whose head announced that size
    (its octets are only defined once written).

    What is held must follow what was received: ``bytearray(size)`` zeroes every octet at once,
    so a peer announcing a large frame and sending nothing more would make the process hold the
    whole size. Here, from :data:`LAZY_BUFFER_SIZE` on, the buffer is anonymous memory the kernel
    provides page by page as octets are written (slow: a page fault per page). The Cython twin
    returns a ``bytearray`` it does not zero, from the allocator, whose fresh pages are equally
    lazy and whose freed ones are reused.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise UsageError("size must be a non-negative int")
    return bytearray(size) if size < LAZY_BUFFER_SIZE else mmap.mmap(-1, size)


# A length has at most 19 digits, and the Cython twin holds sizes in a C ssize_t.
_FRAME_SIZE_BOUND = min(10 ** MAX_LENGTH_DIGITS, sys.maxsize + 1)

# The Cython twin imports these so that both report identical errors and validate identically.
def _check_decoder_options(max_frame_size: int, loads: Optional[Loads], on_error: Optional[ErrorCallback]) -> None:
    if not isinstance(max_frame_size, int) or isinstance(max_frame_size, bool) or max_frame_size < 0:
        raise UsageError("max_frame_size must be a non-negative int")
    if max_frame_size >= _FRAME_SIZE_BOUND:
        raise UsageError(f"max_frame_size must be below {_FRAME_SIZE_BOUND}")
    if loads is not None and not callable(loads):
        raise UsageError("loads must be callable or None")
    if on_error is not None and not callable(on_error):
        raise UsageError("on_error must be callable or None")


def _bad_head(offset: int, first_byte: int) -> BadHeader:
    return BadHeader(f"no frame head at stream offset {offset} (byte 0x{first_byte:02x})", offset=offset)


def _bad_length(offset: int) -> BadHeader:
    return BadHeader(f"bad length field in frame at stream offset {offset}", offset=offset)


def _too_large(offset: int, length: int, limit: int) -> FrameTooLarge:
    return FrameTooLarge(f"frame at stream offset {offset} announces more than max_frame_size={limit} bytes",
                         offset=offset, length=length, limit=limit)


def _bad_trailer(offset: int, authenticated: bool, length: int) -> BadTrailer:
    trailer = AUTH_TRAILER if authenticated else PLAIN_TRAILER
    return BadTrailer(f"frame at stream offset {offset} does not end with {trailer!r} after {length} payload bytes",
                      offset=offset)


def _no_key(offset: int) -> AuthenticationError:
    return AuthenticationError(f"authenticated frame at stream offset {offset} but no key is configured",
                               offset=offset)


def _bad_tag(offset: int) -> AuthenticationError:
    return AuthenticationError(f"frame at stream offset {offset} has a bad authentication tag", offset=offset)


def _unauthenticated(offset: int) -> AuthenticationError:
    return AuthenticationError(
        f"unauthenticated frame at stream offset {offset} where authentication is required", offset=offset)


def _payload_error(offset: int, payload: bytes, exc: BaseException) -> PayloadError:
    error = PayloadError(f"payload of frame at stream offset {offset} could not be decoded: "
                         f"{type(exc).__name__}: {exc}", offset=offset, payload=payload)
    error.__cause__ = exc
    return error


def _truncated(offset: int, pending: bytes) -> TruncatedFrame:
    return TruncatedFrame(f"stream ended inside a frame ({len(pending)} bytes buffered)",
                          offset=offset, pending=pending)


class FrameDecoder:
    """Incremental, length-driven decoder of a byte stream of frames.

    Args:
        max_frame_size: largest accepted payload length, in bytes; a longer announced
            length is a :class:`~lute_ipc.errors.FrameTooLarge` framing error.
        loads: turns a payload into an object (default: :func:`lute_ipc.codec.loads`,
            pickle with LUTE class mapping). ``None`` returns the raw payload ``bytes``.
        key: per-run HMAC key. Authenticated frames are verified with it; without a key
            an authenticated frame is an :class:`~lute_ipc.errors.AuthenticationError`.
        require_auth: reject plain (unauthenticated) frames.
        on_error: called with each :class:`~lute_ipc.errors.ProtocolError` found.

    Attributes:
        errors: number of protocol errors found so far.
        frames: number of frames delivered so far (payloads that decoded).
        skipped_bytes: number of bytes discarded while resynchronising.
        bytes_fed: total number of bytes fed.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        loads: Optional[Loads] = codec.loads,
        key: Optional[bytes] = None,
        require_auth: bool = False,
        on_error: Optional[ErrorCallback] = None,
    ) -> None:
        _check_decoder_options(max_frame_size, loads, on_error)
        self.max_frame_size = max_frame_size
        self._loads = loads
        self._key = _check_key(key)
        self._frame_tag = None if self._key is None else codec.tagger(self._key)
        self.require_auth = bool(require_auth)
        self._on_error = on_error
        self.errors = 0
        self.frames = 0
        self.skipped_bytes = 0
        self.bytes_fed = 0
        # Bytes of an incomplete frame head (never garbage), and their stream offset.
        self._pending = bytearray()
        self._pending_offset = 0
        # Once a frame's head is read: its final buffer, allocated whole at the frame's size
        # (the head included), and how much of it is filled (``_pending`` is then empty).
        self._frame: Optional[FinalBuffer] = None
        self._filled = 0
        # True inside a run of bad bytes whose error has been reported already.
        self._skipping = False
        # True while feed_eof() salvages the frames inside a truncated one.
        self._at_eof = False

    # ------------------------------------------------------------------ public
    @property
    def buffered(self) -> int:
        """Number of bytes held while waiting for the rest of a frame."""
        return self._filled if self._frame is not None else len(self._pending)

    def pending_buffer(self) -> Optional[memoryview]:
        """Where the rest of the frame in progress goes: receive straight into it.

        Once a frame's head has been read, the decoder holds the frame's final buffer, allocated
        whole at the announced size (at most ``max_frame_size`` + overhead). This returns a
        writable view of exactly the bytes that frame still lacks; write the next stream bytes
        at its start (``sock.recv_into(view)``), then call :meth:`commit` with their number. So a
        large frame is received with no copy and no growing buffer. ``None`` when no frame
        is in progress (or only part of a head is buffered): use :meth:`feed`. The view is valid
        until the next call to :meth:`feed`, :meth:`commit` or :meth:`feed_eof`.
        """
        if self._frame is None:
            return None
        return memoryview(self._frame)[self._filled:]

    def commit(self, size: int) -> List[Any]:
        """``size`` stream bytes were written at the start of :meth:`pending_buffer`'s view:
        take them as fed, and return the messages they complete (as :meth:`feed` would)."""
        frame = self._frame
        room = 0 if frame is None else len(frame) - self._filled
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= room:
            raise UsageError(f"commit() takes the number of bytes written into pending_buffer(), "
                             f"0 to {room}, not {size!r}")
        self.bytes_fed += size
        self._filled += size
        out: List[Any] = []
        if frame is not None and self._filled == len(frame):
            self._complete(out)
        return out

    def feed(self, data: Buffer) -> List[Any]:
        """Add bytes from the stream; return the messages of every frame they complete."""
        if isinstance(data, (bytes, bytearray)):
            chunk: Union[bytes, bytearray] = data
        else:
            try:
                chunk = memoryview(data).tobytes()
            except TypeError:
                raise UsageError(f"feed() needs a bytes-like object, not {type(data).__name__}") from None
        base = self.bytes_fed
        size = len(chunk)
        self.bytes_fed += size
        out: List[Any] = []
        pos = 0
        frame = self._frame
        if frame is not None:
            # The head of the frame in progress is known: take exactly the bytes it lacks.
            take = min(len(frame) - self._filled, size)
            frame[self._filled:self._filled + take] = memoryview(chunk)[:take]
            self._filled += take
            pos = take
            if self._filled < len(frame):
                return out
            self._complete(out)
        if (self._pending or self._frame is not None) and pos < size:
            # A partial head (at most head + 19 digits + separator) is buffered, or the frame
            # just decoded was a lie and another incomplete one starts inside it: join what is
            # held to the rest of the chunk once, so the chunk is scanned in one pass.
            base = self._pending_offset
            held = self._pending if self._frame is None else memoryview(self._frame)[:self._filled]
            chunk = bytes(held) + memoryview(chunk)[pos:]
            self._pending = bytearray()
            self._frame = None
            self._filled = 0
            pos, size = 0, len(chunk)
        if pos < size:
            self._scan(chunk, pos, size, base, out)
        return out

    def feed_eof(self) -> List[Any]:
        """Declare the end of the stream and return the frames it still completes.

        An incomplete frame left over is reported as one :class:`TruncatedFrame` holding all
        its bytes. Because its length may have lied, its bytes are then searched for whole
        frames, which are returned (nothing valid is lost). The decoder is reset and may be
        fed a new stream afterwards.
        """
        out: List[Any] = []
        if self._skipping and self._frame is None and self._pending:
            # held back while skipping, in case a frame began there: the end of bytes already
            # reported (e.g. the trailer of a frame over the limit), not a frame of its own
            self.skipped_bytes += len(self._pending)
            self._pending = bytearray()
        if self._frame is not None or self._pending:
            if self._frame is not None:
                pending = bytes(memoryview(self._frame)[:self._filled])
                self._frame = None
                self._filled = 0
            else:
                pending = bytes(self._pending)
                self._pending = bytearray()
            offset = self._pending_offset
            self._report(_truncated(offset, pending))
            self._skipping = True
            self.skipped_bytes += 1
            self._at_eof = True
            try:
                self._scan(pending, 1, len(pending), offset, out)
            finally:
                self._at_eof = False
        self._skipping = False
        return out

    # ------------------------------------------------------------------ internals
    def _report(self, error: ProtocolError) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(error)

    def _fail(self, error: ProtocolError, at: int) -> int:
        """Report ``error`` for the frame starting at ``at``; resume scanning after its first byte."""
        self._report(error)
        self._skipping = True
        self.skipped_bytes += 1
        return at + 1

    def _skip_incomplete(self, at: int) -> int:
        """At EOF, an incomplete frame is part of the truncated region already reported: skip a byte."""
        self._skipping = True
        self.skipped_bytes += 1
        return at + 1

    def _keep(self, data: Buffer, start: int, end: int, offset: int, frame_size: int = 0) -> None:
        """Hold ``data[start:end]``, the start of an incomplete frame (nothing is held yet):
        in the frame's final buffer when its size is known, else as a partial head."""
        if frame_size:
            frame = final_buffer(frame_size)
            frame[:end - start] = memoryview(data)[start:end]
            self._frame = frame
            self._filled = end - start
        else:
            self._pending += memoryview(data)[start:end]
        self._pending_offset = offset + start

    def _complete(self, out: List[Any]) -> None:
        """The frame in progress is whole: decode it from its buffer."""
        frame, offset = self._frame, self._pending_offset
        assert frame is not None
        self._frame = None
        self._filled = 0
        data = frame if type(frame) is bytearray else bytes(frame)  # the scan needs bytes methods
        self._scan(data, 0, len(data), offset, out)

    def _scan(self, data: Union[bytes, bytearray], pos: int, end: int, offset: int, out: List[Any]) -> None:
        """Decode every complete frame of ``data[pos:end]``; keep an incomplete tail in ``_pending``.

        ``offset`` is the stream offset of ``data[0]``.
        """
        max_size = self.max_frame_size
        while pos < end:
            if self._skipping:
                found = _HEAD_RE.search(data, pos, end)
                if found is None:
                    keep = 0 if self._at_eof else _longest_head_prefix_suffix(data, pos, end)
                    self.skipped_bytes += end - keep - pos
                    if keep:
                        self._keep(data, end - keep, end, offset)
                    return
                self.skipped_bytes += found.start() - pos
                pos = found.start()
                self._skipping = False

            # A frame must start at pos.
            authenticated = data.startswith(AUTH_HEAD, pos)
            if not authenticated and not data.startswith(PLAIN_HEAD, pos):
                head = bytes(data[pos:min(end, pos + _HEAD_SIZE)])
                if len(head) < _HEAD_SIZE and (PLAIN_HEAD.startswith(head) or AUTH_HEAD.startswith(head)):
                    if self._at_eof:
                        pos = self._skip_incomplete(pos)
                        continue
                    self._keep(data, pos, end, offset)
                    return
                pos = self._fail(_bad_head(offset + pos, data[pos]), pos)
                continue

            # Length digits.
            cursor = pos + _HEAD_SIZE
            length = 0
            digits = 0
            too_large = False
            while cursor < end and digits <= MAX_LENGTH_DIGITS:
                byte = data[cursor]
                if byte < _DIGIT_0 or byte > _DIGIT_9:
                    break
                length = length * 10 + (byte - _DIGIT_0)
                digits += 1
                cursor += 1
                if length > max_size:
                    too_large = True
                    break
            if too_large:
                pos = self._fail(_too_large(offset + pos, length, max_size), pos)
                continue
            if digits > MAX_LENGTH_DIGITS or (digits == 0 and cursor < end):
                pos = self._fail(_bad_length(offset + pos), pos)
                continue
            if end - cursor < len(SEPARATOR):
                if SEPARATOR.startswith(bytes(data[cursor:end])):
                    if self._at_eof:
                        pos = self._skip_incomplete(pos)
                        continue
                    self._keep(data, pos, end, offset)
                    return
                pos = self._fail(_bad_length(offset + pos), pos)
                continue
            if not data.startswith(SEPARATOR, cursor):
                pos = self._fail(_bad_length(offset + pos), pos)
                continue

            # Payload, tag and trailer.
            payload_start = cursor + len(SEPARATOR)
            payload_end = payload_start + length
            tag_end = payload_end + (TAG_SIZE if authenticated else 0)
            frame_end = tag_end + _TRAILER_SIZE
            if frame_end > end:
                if self._at_eof:
                    pos = self._skip_incomplete(pos)
                    continue
                self._keep(data, pos, end, offset, frame_end - pos)
                return
            trailer = AUTH_TRAILER if authenticated else PLAIN_TRAILER
            if not data.startswith(trailer, tag_end):
                pos = self._fail(_bad_trailer(offset + pos, authenticated, length), pos)
                continue

            # A well-formed frame: it is consumed whole whatever happens next.
            frame_start = pos
            frame_offset = offset + pos
            pos = frame_end
            if authenticated:
                if self._frame_tag is None:  # no key (the two are set together)
                    self._report(_no_key(frame_offset))
                    continue
                view = memoryview(data)
                expected = self._frame_tag(view[frame_start:payload_end])
                if not hmac.compare_digest(expected, view[payload_end:tag_end]):
                    self._report(_bad_tag(frame_offset))
                    continue
            elif self.require_auth:
                self._report(_unauthenticated(frame_offset))
                continue
            payload = bytes(memoryview(data)[payload_start:payload_end])
            if self._loads is None:
                out.append(payload)
                self.frames += 1
                continue
            try:
                obj = self._loads(payload)
            except Exception as exc:  # any failure of loads is this frame's error only
                self._report(_payload_error(frame_offset, payload, exc))
                continue
            out.append(obj)
            self.frames += 1


from ._send_buffer_py import SendBuffer  # noqa: E402
from ._splitter_py import MixedStreamSplitter, SignalTokenizer  # noqa: E402
