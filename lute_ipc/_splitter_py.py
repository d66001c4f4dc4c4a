"""Pure-Python reference of the pipe-stream splitters: the spec the Cython twin must match.

:class:`MixedStreamSplitter` cuts a Task's **stdout** into items (see
:mod:`lute_ipc.stream_items`): every pickle a ``write()`` put there, every run of text
``print()`` put there, in stream order, whatever the chunking of the reads.
:class:`SignalTokenizer` cuts the Task's **stderr** into signal names and other text.

The stdout grammar
------------------
Bytes are classified left to right, in *text state*:

1. ``0x80`` followed by a protocol byte ``0x02``-``0x05`` starts a **pickle candidate**,
   unless that ``0x80`` completes a valid UTF-8 character begun by the 1-3 bytes before
   it (``"Ѐ"`` is ``D0 80``: text). A ``0x80`` at the very end of the data is held until
   the next byte tells.
2. A candidate is checked by walking its opcodes (resumably: a pickle cut by a read
   boundary waits for its tail and is never re-scanned). It is a pickle when it reaches
   ``STOP`` with exactly one object on the stack and no open mark; every pickle a
   ``pickle.Pickler`` (protocol 2-5) writes satisfies this. Only then is it unpickled,
   once: a :class:`~lute_ipc.stream_items.Pickled` item, or a ``StreamError`` carrying a
   :class:`~lute_ipc.errors.PayloadError` when ``loads`` refuses it.
3. A candidate that breaks the pickle grammar (unknown opcode, stack underflow, bad
   ``STOP``, a ``STOP`` before the end of a ``FRAME``) is not a pickle: its first byte
   (``0x80``) goes back to the text path and the scan resumes right after it. Such a lone
   ``0x80`` is not UTF-8, so it is delivered as undecodable bytes, never as a pickle error.
4. Anything else is text: valid UTF-8 becomes :class:`~lute_ipc.stream_items.Text`;
   bytes that are not UTF-8 become ``StreamError`` items carrying
   :class:`~lute_ipc.errors.UndecodableBytes` and the raw bytes (``item.text`` shows them
   backslash-escaped). A UTF-8 sequence cut by a read boundary is held and reassembled.

When text is emitted
--------------------
Text is emitted before each pickle and at the end of every :meth:`MixedStreamSplitter.feed`;
only an incomplete UTF-8 sequence (at most 3 bytes) or a trailing ``0x80`` is held back.
So the concatenation of the text items is the text of the stream whatever the chunking,
and :func:`~lute_ipc.stream_items.coalesce` of the items of any chunking is identical;
without coalescing, adjacent text (and adjacent undecodable bytes) may be cut at different
places by different chunkings.

Limits
------
A pickle may be at most ``max_pickle_size`` bytes long, so at most that much is ever
buffered. As soon as an opcode is known to end past that bound (an announced argument
length tells it at once), a ``StreamError`` carrying :class:`~lute_ipc.errors.PickleTooLarge`
and the pickle's bytes *before that opcode* is delivered (the same bytes whatever the
chunking).

Resynchronisation
-----------------
After any error item the splitter goes on in text state at the first byte it has not
delivered: after a too-large pickle, at the opcode that crossed the bound (an announced
length may lie: 11 bytes can announce a terabyte); after a candidate that breaks the
grammar, right after its ``0x80``; after an undecodable pickle, right after its ``STOP``.
So every pickle written after bad bytes, and every text byte that is not part of a
candidate, is delivered, in order; nothing is ever dropped (``skipped_bytes`` stays 0, kept
for compatibility). :meth:`~MixedStreamSplitter.flush` (end of stream) delivers an incomplete pickle
as ``IncompletePickle`` with its bytes: at the end of the stream a started candidate cannot
be told from a pickle cut short by a crash. Work is linear in
the bytes fed for any stream a Task writes; a hostile stream packing many overlapping
``\\x80\\x02`` candidates that each walk far before failing can cost more (pipes are trusted).

Sans-IO: no file descriptors, threads or logging here.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, Callable, FrozenSet, Iterable, List, Optional, Tuple, Union

from . import codec
from .errors import IncompletePickle, PayloadError, PickleTooLarge, ProtocolError, UsageError
from .message import LUTE_SIGNALS
from .stream_items import Item, Pickled, Signal, StreamError, Text, undecodable_error

__all__ = ["DEFAULT_MAX_PICKLE_SIZE", "MixedStreamSplitter", "SignalTokenizer"]

DEFAULT_MAX_PICKLE_SIZE = 256 * 1024 * 1024
"""Default bound on the bytes an incomplete pickle may buffer."""

Buffer = Union[bytes, bytearray, memoryview]
Loads = Callable[[Buffer], Any]
ErrorCallback = Callable[[ProtocolError], None]

# --------------------------------------------------------------------------- pickle grammar
# The grammar tables and protocol bounds are pickle-layout facts (lute_ipc.pickle_layout);
# they are re-exported here under the names both twins have always used.
from .pickle_layout import (  # noqa: E402
    A_FIXED,
    A_LEN,
    A_LINES,
    A_PROTO,
    A_SLEN,
    ARG_KIND,
    ARG_SIZE,
    BELOW,
    EFFECT,
    FRAME,
    HIGHEST_PROTOCOL,
    MAX_ARGUMENT_LENGTH,
    POPS,
    PUSHES,
    S_MARK,
    S_PLAIN,
    S_POP,
    S_POPMARK,
)

# Results of one walk step.
WALK_MORE = 0      # needs more bytes
WALK_STOP = 1      # reached a valid STOP
WALK_INVALID = 2   # not a pickle
WALK_TOO_LARGE = 3  # an argument announces more than max_pickle_size

# --------------------------------------------------------------------------- UTF-8 rules
_CANDIDATE_RE = re.compile(rb"\x80[\x02-\x05]")
_SURROGATES_RE = re.compile("[\udc80-\udcff]+")


def utf8_sequence_length(lead: int) -> int:
    """Length of the UTF-8 sequence ``lead`` starts (2-4), or 0 when it starts none."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def utf8_second_byte_ok(lead: int, byte: int) -> bool:
    """Whether ``byte`` may follow ``lead`` (no overlong form, surrogate or > U+10FFFF)."""
    if lead == 0xE0:
        return 0xA0 <= byte <= 0xBF
    if lead == 0xED:
        return 0x80 <= byte <= 0x9F
    if lead == 0xF0:
        return 0x90 <= byte <= 0xBF
    if lead == 0xF4:
        return 0x80 <= byte <= 0x8F
    return 0x80 <= byte <= 0xBF


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte <= 0xBF


def completes_char(buf: Buffer, lo: int, p: int) -> bool:
    """Whether the continuation byte ``buf[p]`` ends a valid UTF-8 character begun in ``buf[lo:p]``."""
    for k in (1, 2, 3):
        q = p - k
        if q < lo:
            return False
        lead = buf[q]
        if not _is_continuation(lead):
            if utf8_sequence_length(lead) != k + 1:
                return False
            return k == 1 or utf8_second_byte_ok(lead, buf[q + 1])
    return False


def incomplete_utf8_tail(buf: Buffer, lo: int, end: int) -> int:
    """Length of the tail of ``buf[lo:end]`` that is a valid but incomplete UTF-8 sequence (0-3)."""
    for k in (1, 2, 3):
        q = end - k
        if q < lo:
            return 0
        lead = buf[q]
        if _is_continuation(lead):
            continue
        if utf8_sequence_length(lead) <= k:
            return 0
        if k >= 2 and not utf8_second_byte_ok(lead, buf[q + 1]):
            return 0
        return k
    return 0


def text_items(raw: bytes, offset: int) -> List[Item]:
    """Items of a complete run of text bytes: ``Text`` runs and undecodable-bytes errors.

    ``offset`` is the stream offset of ``raw[0]``.
    """
    if raw.isascii():
        return [Text(raw.decode("ascii"))]
    decoded = raw.decode("utf-8", "surrogateescape")
    if _SURROGATES_RE.search(decoded) is None:
        return [Text(decoded)]
    items: List[Item] = []
    done = 0
    position = offset
    for match in _SURROGATES_RE.finditer(decoded):
        if match.start() > done:
            text = decoded[done:match.start()]
            items.append(Text(text))
            position += len(text.encode("utf-8"))
        data = match.group().encode("utf-8", "surrogateescape")
        items.append(undecodable_error(position, data))
        position += len(data)
        done = match.end()
    if done < len(decoded):
        items.append(Text(decoded[done:]))
    return items


# --------------------------------------------------------------------------- shared by both twins
class ChunkReader:
    """A read-only binary file over the pieces of one large pickle, for ``pickle.Unpickler``.

    The Cython twin keeps a large pickle as the list of buffers it was fed in (no
    contiguous copy: for tens of MB that copy, into memory never touched before, costs more
    than the unpickling) and unpickles it through this reader. ``size`` bytes are readable.
    """

    def __init__(self, chunks: List[Buffer], size: int) -> None:
        self._chunks = [memoryview(chunk) for chunk in chunks]
        self._index = 0
        self._offset = 0
        self._left = size

    def _views(self, n: int) -> List[memoryview]:
        """Consume and return up to ``n`` bytes as views."""
        views = []
        n = min(n, self._left)
        self._left -= n
        while n > 0:
            chunk = self._chunks[self._index]
            take = min(n, len(chunk) - self._offset)
            views.append(chunk[self._offset:self._offset + take])
            n -= take
            self._offset += take
            if self._offset == len(chunk):
                self._index += 1
                self._offset = 0
        return views

    def read(self, n: int = -1) -> bytes:
        """Read ``n`` bytes (all that is left when ``n`` < 0)."""
        views = self._views(self._left if n is None or n < 0 else n)
        return views[0].tobytes() if len(views) == 1 else b"".join(views)

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` as far as possible; return the number of bytes written."""
        target = memoryview(buffer).cast("B")
        done = 0
        for view in self._views(len(target)):
            target[done:done + len(view)] = view
            done += len(view)
        return done

    def readline(self) -> bytes:
        """Read up to and including the next newline."""
        parts = []
        while self._left:
            chunk = self._chunks[self._index]
            end = min(len(chunk), self._offset + self._left)
            newline = chunk[self._offset:end].tobytes().find(b"\n")
            if newline >= 0:
                parts += self._views(newline + 1)
                break
            parts += self._views(end - self._offset)
        return b"".join(parts)

    def peek(self, n: int = 0) -> bytes:
        """Bytes at the current position, not consumed (the rest of the current piece)."""
        if not self._left:
            return b""
        chunk = self._chunks[self._index]
        return chunk[self._offset:min(len(chunk), self._offset + self._left)].tobytes()


def _check_splitter_options(max_pickle_size: int, loads: Optional[Loads], on_error: Optional[ErrorCallback]) -> None:
    if not isinstance(max_pickle_size, int) or isinstance(max_pickle_size, bool) or max_pickle_size < 1:
        raise UsageError("max_pickle_size must be a positive int")
    if max_pickle_size > 2 ** 62:
        raise UsageError("max_pickle_size must be at most 2**62")
    if loads is not None and not callable(loads):
        raise UsageError("loads must be callable or None")
    if on_error is not None and not callable(on_error):
        raise UsageError("on_error must be callable or None")


def _as_bytes(data: Any) -> Union[bytes, bytearray]:
    if isinstance(data, (bytes, bytearray)):
        return data
    try:
        return memoryview(data).tobytes()
    except TypeError:
        raise UsageError(f"feed() needs a bytes-like object, not {type(data).__name__}") from None


def _payload_error(offset: int, data: bytes, exc: BaseException) -> StreamError:
    error = PayloadError(f"pickle at stream offset {offset} ({len(data)} bytes) could not be decoded: "
                         f"{type(exc).__name__}: {exc}", offset=offset, payload=data)
    error.__cause__ = exc
    return StreamError(error, data)


def _too_large(offset: int, data: bytes, limit: int) -> StreamError:
    error = PickleTooLarge(f"pickle at stream offset {offset} exceeds max_pickle_size={limit} bytes "
                           f"(its first {len(data)} bytes are delivered; the rest is read as text)",
                           offset=offset)
    return StreamError(error, data)


def _incomplete(offset: int, data: bytes) -> StreamError:
    error = IncompletePickle(f"stream ended inside a pickle at stream offset {offset} ({len(data)} bytes)",
                             offset=offset, data=data)
    return StreamError(error, data)


class MixedStreamSplitter:
    """Incremental splitter of a stream mixing pickles and text (a Task's stdout).

    Args:
        max_pickle_size: most bytes an incomplete pickle may buffer (see module docstring).
        loads: turns a complete pickle into an object (default :func:`lute_ipc.codec.loads`);
            ``None`` delivers the raw pickle ``bytes`` as the ``Pickled`` value.
        on_error: called with each error's exception as its ``StreamError`` item is made.

    Attributes:
        bytes_fed: total number of bytes fed.
        objects: number of ``Pickled`` items delivered.
        errors: number of ``StreamError`` items delivered.
        undecodable_bytes: number of bytes delivered as undecodable (chunking-independent).
        skipped_bytes: always 0 (nothing is skipped: see *Resynchronisation*); kept for compatibility.
    """

    def __init__(
        self,
        *,
        max_pickle_size: int = DEFAULT_MAX_PICKLE_SIZE,
        loads: Optional[Loads] = codec.loads,
        on_error: Optional[ErrorCallback] = None,
    ) -> None:
        _check_splitter_options(max_pickle_size, loads, on_error)
        self.max_pickle_size = max_pickle_size
        self._loads = loads
        self._on_error = on_error
        self.bytes_fed = 0
        self.objects = 0
        self.errors = 0
        self.undecodable_bytes = 0
        self.skipped_bytes = 0
        self._reset()

    def _reset(self) -> None:
        # buf holds up to 3 bytes already handled (UTF-8 look-behind), then unhandled bytes.
        self._buf = bytearray()
        self._base = self.bytes_fed  # stream offset of _buf[0]
        self._pos = 0                # start of unemitted text (text state)
        self._search = 0             # where to look for the next candidate
        self._cand = -1              # start of the pickle candidate being walked, or -1
        self._wpos = 0               # next opcode of the candidate
        self._depth = 0              # items above the top mark
        self._marks: List[int] = []  # item counts under each open mark
        self._nl_op = -1             # opcode whose newline search is under way
        self._nl_from = 0
        self._nl_found = 0
        self._frame_end = 0          # stream offset where the candidate's furthest FRAME ends

    # ------------------------------------------------------------------ public
    @property
    def buffered(self) -> int:
        """Bytes held: an incomplete pickle, or the tail of text that cannot be decided yet."""
        start = self._keep_from()
        return max(0, len(self._buf) - start)

    def feed(self, data: Buffer) -> List[Item]:
        """Add bytes of the stream; return every item they complete, in stream order."""
        chunk = _as_bytes(data)
        self.bytes_fed += len(chunk)
        self._buf += chunk
        out: List[Item] = []
        self._process(out)
        self._compact()
        return out

    def flush(self) -> List[Item]:
        """End of stream: return what is left (an incomplete pickle becomes an error item).

        The splitter is reset and may be fed a new stream.
        """
        out: List[Item] = []
        self._process(out)
        end = len(self._buf)
        if self._cand >= 0:
            self._error(_incomplete(self._base + self._cand, bytes(self._buf[self._cand:end])), out)
        else:
            self._emit_text(self._pos, end, out)
        self._reset()
        return out

    # ------------------------------------------------------------------ internals
    def _error(self, item: StreamError, out: List[Item]) -> None:
        self.errors += 1
        out.append(item)
        if self._on_error is not None:
            self._on_error(item.error)  # type: ignore[arg-type]

    def _emit_text(self, start: int, end: int, out: List[Item]) -> None:
        if start >= end:
            return
        for item in text_items(bytes(self._buf[start:end]), self._base + start):
            if type(item) is StreamError:
                self.undecodable_bytes += len(item.data)
                self._error(item, out)
            else:
                out.append(item)

    def _process(self, out: List[Item]) -> None:
        buf = self._buf
        end = len(buf)
        while True:
            if self._cand >= 0:
                status = self._walk(end)
                if status == WALK_MORE:
                    return  # at most max_pickle_size bytes are held (see _walk)
                if status == WALK_STOP:
                    self._deliver(self._cand, self._wpos, out)
                    self._pos = self._search = self._wpos
                elif status == WALK_INVALID:
                    # Not a pickle: its 0x80 is text; look for candidates after it.
                    self._pos = self._cand
                    self._search = self._cand + 1
                else:
                    # Deliver what fits (up to the opcode that crosses the limit, at least the
                    # candidate's first byte); text resumes right after it.
                    resume = max(self._wpos, self._cand + 1)
                    self._error(_too_large(self._base + self._cand, bytes(buf[self._cand:resume]),
                                           self.max_pickle_size), out)
                    self._pos = self._search = resume
                self._cand = -1
                continue
            candidate = self._find_candidate(end)
            if candidate >= 0:
                self._emit_text(self._pos, candidate, out)
                self._start_candidate(candidate)
                continue
            hold = self._text_hold(end)
            self._emit_text(self._pos, hold, out)
            self._pos = hold
            if self._search < hold:
                self._search = hold
            return

    def _find_candidate(self, end: int) -> int:
        buf = self._buf
        start = self._search
        while True:
            found = _CANDIDATE_RE.search(buf, start, end)
            if found is None:
                return -1
            p = found.start()
            if not completes_char(buf, 0, p):
                return p
            start = p + 1

    def _text_hold(self, end: int) -> int:
        """Where undecidable tail bytes of the pending text start (``end`` when none)."""
        tail = incomplete_utf8_tail(self._buf, self._pos, end)
        if tail:
            return end - tail
        if end > self._pos and self._buf[end - 1] == 0x80 and not completes_char(self._buf, 0, end - 1):
            return end - 1
        return end

    def _start_candidate(self, p: int) -> None:
        self._cand = p
        self._wpos = p
        self._depth = 0
        self._marks = []
        self._nl_op = -1
        self._frame_end = 0

    def _deliver(self, start: int, stop: int, out: List[Item]) -> None:
        data = bytes(self._buf[start:stop])
        if self._loads is None:
            value: Any = data
        else:
            try:
                value = self._loads(data)
            except Exception as exc:  # any failure of loads is this pickle's error only
                self._error(_payload_error(self._base + start, data, exc), out)
                return
        self.objects += 1
        out.append(Pickled(value))

    def _walk(self, end: int) -> int:
        """Walk opcodes of the candidate from ``_wpos``; resumable where it stops."""
        buf = self._buf
        pos = self._wpos
        depth = self._depth
        marks = self._marks
        # An opcode ending past ``limit`` makes the pickle too large: where that happens
        # depends on the stream only, never on how it was cut into reads.
        limit = self._cand + self.max_pickle_size
        status = WALK_MORE
        while pos < end:
            op = buf[pos]
            kind = ARG_KIND[op]
            if kind == A_FIXED:
                nxt = pos + 1 + ARG_SIZE[op]
                if nxt > limit:
                    status = WALK_TOO_LARGE
                    break
                if nxt > end:
                    break
                if op == FRAME:
                    # The frame's bytes are part of the pickle: its announced length must fit
                    # in the bound, and the pickle must not stop before the frame ends.
                    length = int.from_bytes(buf[pos + 1:nxt], "little")
                    if nxt + length > limit:
                        status = WALK_TOO_LARGE
                        break
                    if length > MAX_ARGUMENT_LENGTH:
                        status = WALK_INVALID
                        break
                    self._frame_end = max(self._frame_end, self._base + nxt + length)
            elif kind in (A_LEN, A_SLEN):
                header = pos + 1 + ARG_SIZE[op]
                if header > limit:
                    status = WALK_TOO_LARGE
                    break
                if header > end:
                    break
                length = int.from_bytes(buf[pos + 1:header], "little", signed=kind == A_SLEN)
                if length < 0:
                    status = WALK_INVALID
                    break
                nxt = header + length
                if nxt > limit:
                    status = WALK_TOO_LARGE
                    break
                if length > MAX_ARGUMENT_LENGTH:
                    status = WALK_INVALID
                    break
                if nxt > end:
                    break
            elif kind == A_LINES:
                # The line(s) must end by ``limit``.
                bound = limit
                stop = min(end, bound)
                if self._nl_op == pos:
                    search, found = self._nl_from, self._nl_found
                else:
                    search, found = pos + 1, 0
                while found < ARG_SIZE[op]:
                    newline = buf.find(b"\n", search, stop)
                    if newline < 0:
                        break
                    found += 1
                    search = newline + 1
                if found < ARG_SIZE[op]:
                    if end >= bound:
                        status = WALK_TOO_LARGE
                        break
                    self._nl_op, self._nl_from, self._nl_found = pos, end, found
                    break
                nxt = search
            elif kind == A_PROTO:
                if pos + 2 > limit:
                    status = WALK_TOO_LARGE
                    break
                if pos + 2 > end:
                    break
                if buf[pos + 1] > HIGHEST_PROTOCOL:
                    status = WALK_INVALID
                    break
                nxt = pos + 2
            else:
                status = WALK_INVALID
                break
            # The opcode is complete: apply its stack effect.
            effect = EFFECT[op]
            if effect == S_PLAIN:
                if depth < POPS[op]:
                    status = WALK_INVALID
                    break
                depth += PUSHES[op] - POPS[op]
            elif effect == S_MARK:
                marks.append(depth)
                depth = 0
            elif effect == S_POPMARK:
                if not marks or depth < POPS[op]:
                    status = WALK_INVALID
                    break
                depth = marks.pop()
                if depth < BELOW[op]:
                    status = WALK_INVALID
                    break
                depth += PUSHES[op]
            elif effect == S_POP:
                if depth:
                    depth -= 1
                elif marks:
                    depth = marks.pop()
                else:
                    status = WALK_INVALID
                    break
            else:  # STOP
                if depth != 1 or marks or self._base + nxt < self._frame_end:
                    status = WALK_INVALID
                    break
                pos = nxt
                status = WALK_STOP
                break
            pos = nxt
        self._wpos = pos
        self._depth = depth
        return status

    def _keep_from(self) -> int:
        """Index of the first byte still needed (look-behind excluded)."""
        return self._cand if self._cand >= 0 else self._pos

    def _compact(self) -> None:
        drop = self._keep_from() - 3
        if drop <= 0:
            return
        del self._buf[:drop]
        self._base += drop
        self._pos -= drop
        self._search -= drop
        if self._cand >= 0:
            self._cand -= drop
            self._wpos -= drop
            if self._nl_op >= 0:
                self._nl_op -= drop
                self._nl_from -= drop


# --------------------------------------------------------------------------- stderr
def _check_signal_names(signals: Iterable[str]) -> Tuple[bytes, ...]:
    """Validate signal names; return them as ASCII bytes, longest first."""
    if isinstance(signals, (str, bytes)):
        raise UsageError("signals must be an iterable of names, not a single string")
    names = []
    for name in signals:
        if not isinstance(name, str) or not name or not name.isascii():
            raise UsageError(f"signal names must be non-empty ASCII strings, not {name!r}")
        names.append(name.encode("ascii"))
    if not names:
        raise UsageError("signals must not be empty")
    unique = sorted(set(names), key=lambda n: (-len(n), n))
    for a in unique:
        for b in unique:
            if a != b and b.startswith(a):
                raise UsageError(f"signal name {a!r} is a prefix of {b!r}: the stream would be ambiguous")
    return tuple(unique)


def _signal_prefixes(names: Iterable[bytes]) -> FrozenSet[bytes]:
    """Every proper, non-empty prefix of the names: what may be held at the end of a feed."""
    return frozenset(name[:k] for name in names for k in range(1, len(name)))


_LINE_BREAK_RE = re.compile(rb"[\r\n]")


def _stderr_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")("backslashreplace")


class SignalTokenizer:
    """Incremental tokenizer of a Task's stderr: signal names and other text.

    A signal name is recognised where a token may start: at the start of the stream, right
    after another signal, or right after a line break (``\\n`` or ``\\r``). So names written
    back to back (``TASK_STARTEDTASK_LOGTASK_DONE``), after a log line, or split across
    reads are all found, in order, while a log line that merely *mentions* a signal
    (``"... got TASK_DONE"``) stays text. Everything else is delivered as
    :class:`~lute_ipc.stream_items.Text`, decoded as UTF-8 with invalid bytes
    backslash-escaped (a character split across reads is reassembled; one interrupted by a
    signal is escaped). Text is emitted before each signal and at the end of every feed; at
    most the start of a possible signal name and an incomplete UTF-8 sequence are held
    between feeds.

    Args:
        signals: the names to recognise (default :data:`lute_ipc.message.LUTE_SIGNALS`);
            ASCII, and none may be a prefix of another.

    Attributes:
        bytes_fed: total number of bytes fed.
        signals: number of signals delivered.
    """

    def __init__(self, *, signals: Iterable[str] = LUTE_SIGNALS) -> None:
        self._names = _check_signal_names(signals)
        self._prefixes = _signal_prefixes(self._names)
        self._longest = len(self._names[0])
        self._name_re = re.compile(b"|".join(re.escape(name) for name in self._names))
        self._decoder = _stderr_decoder()
        self._held = b""
        self._boundary = True  # the next byte starts a token
        self.bytes_fed = 0
        self.signals = 0

    @property
    def buffered(self) -> int:
        """Bytes held: the start of a possible signal name (text held in the decoder not counted)."""
        return len(self._held)

    def feed(self, data: Buffer) -> List[Item]:
        """Add bytes of stderr; return the signals and text they complete, in order."""
        chunk = _as_bytes(data)
        self.bytes_fed += len(chunk)
        buf = self._held + chunk if self._held else bytes(chunk)
        boundary = True if self._held else self._boundary
        out: List[Item] = []
        end = len(buf)
        text_from = pos = 0
        hold = 0
        while pos < end:
            if boundary:
                found = self._name_re.match(buf, pos)
                if found is not None:
                    self._text(buf[text_from:pos], True, out)
                    out.append(Signal(found.group().decode("ascii")))
                    self.signals += 1
                    text_from = pos = found.end()
                    continue
                if end - pos < self._longest and buf[pos:] in self._prefixes:
                    hold = end - pos
                    break
            line_break = _LINE_BREAK_RE.search(buf, pos)
            if line_break is None:
                pos = end
                boundary = False
                break
            pos = line_break.end()
            boundary = True
        self._text(buf[text_from:end - hold], False, out)
        self._held = buf[end - hold:] if hold else b""
        self._boundary = boundary
        return out

    def flush(self) -> List[Item]:
        """End of stream: return the text still held. The tokenizer may then be reused."""
        out: List[Item] = []
        held, self._held = self._held, b""
        self._text(held, True, out)
        self._boundary = True
        return out

    def _text(self, raw: bytes, final: bool, out: List[Item]) -> None:
        text = self._decoder.decode(raw, final)
        if text:
            out.append(Text(text))
