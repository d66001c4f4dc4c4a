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
import re
from typing import Any, Callable, List, Optional, Tuple, Union

from . import codec
from . import message as _message
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
# Longest possible head + length + separator: what must be seen to know a frame's size.
_MAX_HEADER_SIZE = _HEAD_SIZE + MAX_LENGTH_DIGITS + len(SEPARATOR)
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
_FRAME_TARGET = 64 * 1024  # pickle writes bytes of this size or more outside its frames
_MAX_SIGNAL = 16 * 1024


def _short_text(text: bytes) -> bytes:
    """SHORT_BINUNICODE <text> MEMOIZE."""
    return b"\x8c" + bytes((len(text),)) + text + b"\x94"


# The pickle of a Message up to its contents: the class (STACK_GLOBAL), NEWOBJ, the state dict
# (EMPTY_DICT MARK) and its first key.
_PICKLE_BODY = (_short_text(_MESSAGE_NAMES[2]) + _short_text(_MESSAGE_NAMES[3])
                + b"\x93\x94)\x81\x94}\x94(" + _short_text(b"contents"))


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
        signal_bytes = b"N"
    elif type(signal) is str:
        try:
            text = signal.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: pickle writes them with surrogatepass
            return None
        if len(text) > _MAX_SIGNAL or text in _MESSAGE_NAMES:
            return None
        size = len(text)
        signal_bytes = (_short_text(text) if size < 256 else b"X" + size.to_bytes(4, "little") + text + b"\x94")
    else:
        return None
    size = len(contents)
    body = _PICKLE_BODY
    opcode = b"C" + bytes((size,)) if size < 256 else b"B" + size.to_bytes(4, "little")
    rest = b"\x8c\x06signal\x94" + signal_bytes + b"ub."
    if size >= _FRAME_TARGET:  # frame 1 ends before the bytes; frame 2 holds what follows them
        head = bytes((0x80, codec.PICKLE_PROTOCOL, 0x95)) + len(body).to_bytes(8, "little") + body + opcode
        tail = b"\x95" + (len(rest) + 1).to_bytes(8, "little") + b"\x94" + rest
    else:
        frame = len(body) + len(opcode) + size + 1 + len(rest)
        if frame >= _FRAME_TARGET:  # pickle would close its frame somewhere inside
            return None
        head = bytes((0x80, codec.PICKLE_PROTOCOL, 0x95)) + frame.to_bytes(8, "little") + body + opcode
        tail = b"\x94" + rest
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
# The Cython twin imports these so that both report identical errors and validate identically.
def _check_decoder_options(max_frame_size: int, loads: Optional[Loads], on_error: Optional[ErrorCallback]) -> None:
    if not isinstance(max_frame_size, int) or isinstance(max_frame_size, bool) or max_frame_size < 0:
        raise UsageError("max_frame_size must be a non-negative int")
    if max_frame_size >= 10 ** MAX_LENGTH_DIGITS:
        raise UsageError(f"max_frame_size must be below 10**{MAX_LENGTH_DIGITS}")
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
        # Bytes of one incomplete frame start (never garbage), and their stream offset.
        self._pending = bytearray()
        self._pending_offset = 0
        # Full size of the pending frame once its header is known, else 0.
        self._pending_size = 0
        # True inside a run of bad bytes whose error has been reported already.
        self._skipping = False
        # True while feed_eof() salvages the frames inside a truncated one.
        self._at_eof = False

    # ------------------------------------------------------------------ public
    @property
    def buffered(self) -> int:
        """Number of bytes held while waiting for the rest of a frame."""
        return len(self._pending)

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
        if self._pending and self._pending_size:
            # The header of the buffered frame is known: take exactly the bytes it lacks.
            take = min(self._pending_size - len(self._pending), size)
            self._pending += memoryview(chunk)[:take]
            pos = take
            if len(self._pending) < self._pending_size:
                return out
            pending, offset = self._pending, self._pending_offset
            self._pending = bytearray()
            self._pending_size = 0
            self._scan(pending, 0, len(pending), offset, out)
        if self._pending and pos < size:
            # A partial head (at most _MAX_HEADER_SIZE bytes) is buffered: join it to the
            # rest of the chunk once, so the chunk is scanned in one pass.
            base = self._pending_offset
            chunk = bytes(self._pending) + memoryview(chunk)[pos:]
            self._pending = bytearray()
            self._pending_size = 0
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
        if self._pending:
            pending, offset = bytes(self._pending), self._pending_offset
            self._pending = bytearray()
            self._pending_size = 0
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
        self._pending += memoryview(data)[start:end]
        self._pending_offset = offset + start
        self._pending_size = frame_size

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
                if self._key is None:
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


from ._splitter_py import MixedStreamSplitter, SignalTokenizer  # noqa: E402
