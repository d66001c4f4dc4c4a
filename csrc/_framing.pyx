# cython: language_level=3, embedsignature=True, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, infer_types=False
"""Cython twin of :mod:`lute_ipc._framing_py` (the spec): same names, same behaviour.

Hot loops work on raw ``const unsigned char*`` obtained through the buffer protocol; the
only Python objects touched per frame are the payload handed to ``loads`` and the list the
result is appended to. Validation and error construction are shared with the pure twin
(its ``_check_*`` and error factory helpers), so both report identical errors.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.bytearray cimport (PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize,
                                PyByteArray_FromStringAndSize)
from cpython.list cimport PyList_Append
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ
from libc.string cimport memcmp, memcpy, memchr

import hmac as _hmac
import pickle as _pickle

from lute_ipc import codec as _codec
from lute_ipc import pickle_layout as _layout
from lute_ipc import _framing_py as _spec
from lute_ipc.errors import UsageError

__all__ = [
    "PLAIN_HEAD", "PLAIN_TRAILER", "AUTH_HEAD", "AUTH_TRAILER", "SEPARATOR", "TAG_SIZE",
    "MAX_LENGTH_DIGITS", "DEFAULT_MAX_FRAME_SIZE", "encode_frame", "encode_payload", "append_frame",
    "append_payload", "frame_head", "message_pieces", "FrameDecoder", "final_buffer",
    "MixedStreamSplitter", "SignalTokenizer", "SendBuffer",
]

PLAIN_HEAD = _spec.PLAIN_HEAD
PLAIN_TRAILER = _spec.PLAIN_TRAILER
AUTH_HEAD = _spec.AUTH_HEAD
AUTH_TRAILER = _spec.AUTH_TRAILER
SEPARATOR = _spec.SEPARATOR
TAG_SIZE = _spec.TAG_SIZE
MAX_LENGTH_DIGITS = _spec.MAX_LENGTH_DIGITS
DEFAULT_MAX_FRAME_SIZE = _spec.DEFAULT_MAX_FRAME_SIZE

cdef const char* C_PLAIN_HEAD = b"MSG;;;"
cdef const char* C_AUTH_HEAD = b"MAC;;;"
cdef const char* C_PLAIN_TRAILER = b";;;GSM"
cdef const char* C_AUTH_TRAILER = b";;;CAM"
cdef const char* C_SEP = b";;;"
cdef Py_ssize_t HEAD_SIZE = 6
cdef Py_ssize_t TRAILER_SIZE = 6
cdef Py_ssize_t SEP_SIZE = 3
cdef Py_ssize_t C_TAG_SIZE = 32
cdef Py_ssize_t C_MAX_DIGITS = 19
# Payloads at least this long are lent to the unpickler as a memoryview instead of being copied.
cdef Py_ssize_t LEND_THRESHOLD = _layout.LARGE_BUFFER

cdef object _pickle_dumps = _pickle.dumps
cdef object _dumps = _codec.dumps            # pickle with clear errors for unpicklable contents
cdef object _default_loads = _codec.loads    # the one decoding path (both twins, any size)
cdef object _tagger = _codec.tagger
cdef object _compare_digest = _hmac.compare_digest
cdef int _protocol = _layout.PICKLE_PROTOCOL


# ----------------------------------------------------------------------------- helpers
cdef inline bint _is_head(const unsigned char* p, Py_ssize_t avail, bint* authenticated) noexcept nogil:
    """True when a complete head starts at p (sets *authenticated)."""
    if avail < HEAD_SIZE:
        return False
    if memcmp(p, C_PLAIN_HEAD, HEAD_SIZE) == 0:
        authenticated[0] = False
        return True
    if memcmp(p, C_AUTH_HEAD, HEAD_SIZE) == 0:
        authenticated[0] = True
        return True
    return False


cdef inline bint _is_head_prefix(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """True when the n (< 6) bytes at p are a proper prefix of a head."""
    return n < HEAD_SIZE and (memcmp(p, C_PLAIN_HEAD, n) == 0 or memcmp(p, C_AUTH_HEAD, n) == 0)


cdef inline Py_ssize_t _find_head(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end) noexcept nogil:
    """Index of the first complete head in buf[pos:end], or -1."""
    cdef const unsigned char* hit
    cdef bint authenticated
    while pos < end:
        hit = <const unsigned char*>memchr(buf + pos, 77, end - pos)  # 'M'
        if hit == NULL:
            return -1
        pos = hit - buf
        if _is_head(hit, end - pos, &authenticated):
            return pos
        pos += 1
    return -1


cdef inline Py_ssize_t _head_prefix_suffix(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end) noexcept nogil:
    """Length of the longest tail of buf[pos:end] that is a proper prefix of a head."""
    cdef Py_ssize_t size = HEAD_SIZE - 1
    if size > end - pos:
        size = end - pos
    while size > 0:
        if _is_head_prefix(buf + end - size, size):
            return size
        size -= 1
    return 0


cdef object _lend(const unsigned char* payload, Py_ssize_t length):
    """The payload for codec.loads: a copy when small, a read-only view of our buffer when large
    (the unpickler copies what it keeps; lending saves a copy of the whole payload first)."""
    if length >= LEND_THRESHOLD:
        return PyMemoryView_FromMemory(<char*>payload, length, PyBUF_READ)
    return PyBytes_FromStringAndSize(<const char*>payload, length)


cdef inline Py_ssize_t _digit_count(Py_ssize_t value) noexcept nogil:
    cdef Py_ssize_t count = 1
    while value >= 10:
        value //= 10
        count += 1
    return count


cdef inline void _write_digits(char* out, Py_ssize_t value, Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i = count - 1
    while i >= 0:
        out[i] = <char>(48 + value % 10)
        value //= 10
        i -= 1


# ----------------------------------------------------------------------------- encoding
cdef inline char* _write_head(char* w, Py_ssize_t length, Py_ssize_t digits, bint authenticated) noexcept:
    """Write head, length digits and separator at w; return where the payload goes."""
    memcpy(w, C_AUTH_HEAD if authenticated else C_PLAIN_HEAD, HEAD_SIZE)
    _write_digits(w + HEAD_SIZE, length, digits)
    memcpy(w + HEAD_SIZE + digits, C_SEP, SEP_SIZE)
    return w + HEAD_SIZE + digits + SEP_SIZE


cdef Py_ssize_t _write_ending(char* w, Py_ssize_t signed_size, object key) except -1:
    """After the payload of the frame starting at w (``signed_size`` bytes so far): the tag
    (when ``key`` is given) and the trailer. Return the frame's size."""
    cdef bytes tag
    if key is None:
        memcpy(w + signed_size, C_PLAIN_TRAILER, TRAILER_SIZE)
        return signed_size + TRAILER_SIZE
    tag = _tagger(key)(PyMemoryView_FromMemory(w, signed_size, PyBUF_READ))
    memcpy(w + signed_size, PyBytes_AS_STRING(tag), C_TAG_SIZE)
    memcpy(w + signed_size + C_TAG_SIZE, C_AUTH_TRAILER, TRAILER_SIZE)
    return signed_size + C_TAG_SIZE + TRAILER_SIZE


cdef Py_ssize_t _write_frame(char* w, const unsigned char* payload, Py_ssize_t length,
                             Py_ssize_t digits, object key) except -1:
    """Write the frame of payload into w (room for _frame_size bytes); return its size."""
    cdef char* body = _write_head(w, length, digits, key is not None)
    if length:
        memcpy(body, payload, length)
    return _write_ending(w, (body - w) + length, key)


cdef inline Py_ssize_t _frame_size(Py_ssize_t length, Py_ssize_t digits, bint authenticated) noexcept:
    return HEAD_SIZE + digits + SEP_SIZE + length + (C_TAG_SIZE if authenticated else 0) + TRAILER_SIZE


cdef bytes _encode(const unsigned char* payload, Py_ssize_t length, object key):
    cdef Py_ssize_t digits = _digit_count(length)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _frame_size(length, digits, key is not None))
    _write_frame(PyBytes_AS_STRING(out), payload, length, digits, key)
    return out


cdef Py_ssize_t _append(bytearray buffer, const unsigned char* payload, Py_ssize_t length, object key) except -1:
    cdef Py_ssize_t digits = _digit_count(length)
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(buffer)
    cdef Py_ssize_t size = _frame_size(length, digits, key is not None)
    PyByteArray_Resize(buffer, start + size)
    return _write_frame(PyByteArray_AS_STRING(buffer) + start, payload, length, digits, key)


include "_message_codec.pxi"
include "_envelope_codec.pxi"


def encode_payload(payload, *, key=None):
    """Frame already-serialised ``payload`` bytes (see :func:`lute_ipc._framing_py.encode_payload`)."""
    key = _spec._check_key(key)
    cdef Py_buffer view
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        return _encode(<const unsigned char*>view.buf, view.len, key)
    finally:
        PyBuffer_Release(&view)


def encode_frame(msg, *, key=None):
    """Pickle ``msg`` and frame it (see :func:`lute_ipc._framing_py.encode_frame`)."""
    if key is not None:
        key = _spec._check_key(key)
    cdef object payload = _mc_dumps(msg)
    if payload is None:
        payload = _ev_dumps(msg)
    if payload is None:
        payload = _dumps(msg)
    return _encode(<const unsigned char*>PyBytes_AS_STRING(payload), len(payload), key)


def append_payload(buffer, payload, *, key=None):
    """Append the frame of ``payload`` to the bytearray ``buffer``; return the bytes added."""
    if not isinstance(buffer, bytearray):
        raise UsageError("buffer must be a bytearray")
    key = _spec._check_key(key)
    cdef Py_buffer view
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if view.obj is buffer:
            raise UsageError("payload must not be the buffer itself")
        return _append(buffer, <const unsigned char*>view.buf, view.len, key)
    finally:
        PyBuffer_Release(&view)


def append_frame(buffer, msg, *, key=None):
    """Pickle ``msg`` and append its frame to the bytearray ``buffer``; return the bytes added."""
    if not isinstance(buffer, bytearray):
        raise UsageError("buffer must be a bytearray")
    if key is not None:
        key = _spec._check_key(key)
    cdef Py_ssize_t added = _mc_append_frame(buffer, msg, key)
    if added < 0:
        added = _ev_append_frame(buffer, msg, key)
    if added >= 0:
        return added
    cdef bytes payload = _dumps(msg)
    return _append(buffer, <const unsigned char*>PyBytes_AS_STRING(payload), len(payload), key)


def frame_head(length, *, authenticated=False):
    """The bytes before a payload of ``length`` bytes (see :func:`lute_ipc._framing_py.frame_head`)."""
    return _spec.frame_head(length, authenticated=authenticated)


# ----------------------------------------------------------------------------- decoding
def final_buffer(size):
    """A writable buffer of ``size`` octets, not zeroed (see :func:`lute_ipc._framing_py.final_buffer`)."""
    if type(size) is not int or size < 0:
        raise UsageError("size must be a non-negative int")
    return PyByteArray_FromStringAndSize(NULL, size)


cdef class FrameDecoder:
    """Incremental, length-driven frame decoder (see :class:`lute_ipc._framing_py.FrameDecoder`)."""

    cdef readonly Py_ssize_t max_frame_size
    cdef readonly bint require_auth
    cdef readonly long long errors
    cdef readonly long long frames
    cdef readonly long long skipped_bytes
    cdef readonly long long bytes_fed
    cdef object _loads
    cdef bint _loads_is_default
    cdef object _key
    cdef object _frame_tag
    cdef object _on_error
    # An incomplete frame head: raw buffer and capacity; _plen is the fill of whichever holds
    # the pending bytes, _poffset their stream offset.
    cdef unsigned char* _pbuf
    cdef Py_ssize_t _plen
    cdef Py_ssize_t _pcap
    cdef long long _poffset
    # Once a frame's head is read: its final buffer (a bytearray of the whole frame, not zeroed:
    # pages are touched as bytes arrive) and its size; _plen counts the bytes filled.
    cdef object _frame
    cdef Py_ssize_t _psize
    cdef bint _skipping
    # True while feed_eof() salvages the frames inside a truncated one.
    cdef bint _at_eof

    def __cinit__(self):
        self._pbuf = NULL
        self._plen = 0
        self._pcap = 0

    def __dealloc__(self):
        PyMem_Free(self._pbuf)

    def __init__(self, *, max_frame_size=DEFAULT_MAX_FRAME_SIZE, loads=_default_loads, key=None,
                 require_auth=False, on_error=None):
        _spec._check_decoder_options(max_frame_size, loads, on_error)
        self.max_frame_size = max_frame_size
        self._loads = loads
        self._loads_is_default = loads is _default_loads
        self._key = _spec._check_key(key)
        self._frame_tag = None if self._key is None else _tagger(self._key)
        self.require_auth = bool(require_auth)
        self._on_error = on_error
        self.errors = 0
        self.frames = 0
        self.skipped_bytes = 0
        self.bytes_fed = 0
        self._plen = 0
        self._psize = 0
        self._poffset = 0
        self._frame = None
        self._skipping = False
        self._at_eof = False

    @property
    def buffered(self):
        """Number of bytes held while waiting for the rest of a frame."""
        return self._plen

    def pending_buffer(self):
        """Where the rest of the frame in progress goes (see :meth:`lute_ipc._framing_py.FrameDecoder.pending_buffer`)."""
        if self._frame is None:
            return None
        return memoryview(self._frame)[self._plen:self._psize]

    def commit(self, size):
        """Take ``size`` bytes written into :meth:`pending_buffer`'s view as fed; return the messages completed."""
        cdef Py_ssize_t room = 0 if self._frame is None else self._psize - self._plen
        cdef list out = []
        if type(size) is not int or not 0 <= size <= room:
            raise UsageError(f"commit() takes the number of bytes written into pending_buffer(), "
                             f"0 to {room}, not {size!r}")
        self.bytes_fed += size
        self._plen += <Py_ssize_t>size
        if self._frame is not None and self._plen == self._psize:
            self._complete(out)
        return out

    # ------------------------------------------------------------------ pending buffer
    cdef int _keep(self, const unsigned char* buf, Py_ssize_t start, Py_ssize_t end,
                   long long offset, Py_ssize_t frame_size) except -1:
        """Buffer buf[start:end] as the start of an incomplete frame (nothing is pending): in the
        frame's final buffer when its size is known, else as a partial head."""
        if frame_size:
            self._frame = PyByteArray_FromStringAndSize(NULL, frame_size)
            memcpy(PyByteArray_AS_STRING(self._frame), buf + start, end - start)
        else:
            self._reserve(end - start)
            memcpy(self._pbuf, buf + start, end - start)
        self._plen = end - start
        self._poffset = offset + start
        self._psize = frame_size
        return 0

    cdef const unsigned char* _held(self) except NULL:
        """The pending bytes (``_plen`` of them), wherever they are held."""
        if self._frame is None:
            return self._pbuf
        if PyByteArray_GET_SIZE(self._frame) != self._psize:
            raise UsageError("the buffer of pending_buffer() was resized")
        return <const unsigned char*>PyByteArray_AS_STRING(self._frame)

    cdef object _take_frame(self):
        """Take the frame buffer out of the decoder (checked: a caller may not resize it)."""
        cdef object frame = self._frame
        self._frame = None
        self._plen = 0
        self._psize = 0
        return frame

    cdef int _complete(self, list out) except -1:
        """The frame in progress is whole: decode it from its buffer."""
        cdef long long poffset = self._poffset
        cdef Py_ssize_t size = self._psize
        cdef object frame = self._take_frame()
        cdef Py_buffer view
        # Holding a buffer export keeps the bytearray from being resized during the scan.
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            if view.len != size:
                raise UsageError("the buffer of pending_buffer() was resized")
            self._scan(<const unsigned char*>view.buf, 0, size, poffset, out)
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef int _reserve(self, Py_ssize_t capacity) except -1:
        cdef unsigned char* grown
        if capacity <= self._pcap:
            return 0
        grown = <unsigned char*>PyMem_Realloc(self._pbuf, capacity)
        if grown == NULL:
            raise MemoryError()
        self._pbuf = grown
        self._pcap = capacity
        return 0

    cdef unsigned char* _detach(self, Py_ssize_t* length, long long* offset):
        """Take the pending buffer out of the decoder (the caller frees it)."""
        cdef unsigned char* buf = self._pbuf
        length[0] = self._plen
        offset[0] = self._poffset
        self._pbuf = NULL
        self._plen = 0
        self._pcap = 0
        self._psize = 0
        return buf

    # ------------------------------------------------------------------ public
    def feed(self, data):
        """Add bytes from the stream; return the messages of every frame they complete."""
        cdef Py_buffer view
        cdef list out = []
        cdef const unsigned char* chunk
        cdef Py_ssize_t size, pos = 0, take
        cdef long long base = self.bytes_fed
        cdef bytes joined
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except TypeError:
            raise UsageError(f"feed() needs a bytes-like object, not {type(data).__name__}") from None
        try:
            chunk = <const unsigned char*>view.buf
            size = view.len
            self.bytes_fed += size
            if self._frame is not None:
                # The head of the frame in progress is known: take exactly the bytes it lacks.
                take = self._psize - self._plen
                if take > size:
                    take = size
                if PyByteArray_GET_SIZE(self._frame) != self._psize:
                    raise UsageError("the buffer of pending_buffer() was resized")
                memcpy(PyByteArray_AS_STRING(self._frame) + self._plen, chunk, take)
                self._plen += take
                pos = take
                if self._plen < self._psize:
                    return out
                self._complete(out)
            if self._plen and pos < size:
                # A partial head is buffered (or the frame just decoded was a lie and another
                # incomplete one starts inside it): join it to the rest of the chunk, scan once.
                joined = PyBytes_FromStringAndSize(NULL, self._plen + size - pos)
                memcpy(PyBytes_AS_STRING(joined), self._held(), self._plen)
                self._frame = None
                memcpy(PyBytes_AS_STRING(joined) + self._plen, chunk + pos, size - pos)
                base = self._poffset
                self._plen = 0
                self._psize = 0
                self._scan(<const unsigned char*>PyBytes_AS_STRING(joined), 0, len(joined), base, out)
            elif pos < size:
                self._scan(chunk, pos, size, base, out)
        finally:
            PyBuffer_Release(&view)
        return out

    def feed_eof(self):
        """Declare the end of the stream and return the frames it still completes."""
        cdef list out = []
        cdef unsigned char* detached
        cdef Py_ssize_t plen
        cdef long long poffset
        if self._skipping and self._frame is None and self._plen:
            # held back while skipping, in case a frame began there: the end of bytes already
            # reported (e.g. the trailer of a frame over the limit), not a frame of its own
            PyMem_Free(self._detach(&plen, &poffset))
            self.skipped_bytes += plen
        if self._frame is not None:
            # Copied out of the frame buffer: the salvage below scans a buffer the decoder owns.
            poffset = self._poffset
            plen = self._plen
            self._keep(self._held(), 0, plen, poffset, 0)
            self._frame = None
        if self._plen:
            detached = self._detach(&plen, &poffset)
            try:
                self._report(_spec._truncated(
                    poffset, PyBytes_FromStringAndSize(<char*>detached, plen)))
                self._skipping = True
                self.skipped_bytes += 1
                self._at_eof = True
                self._scan(detached, 1, plen, poffset, out)
            finally:
                self._at_eof = False
                PyMem_Free(detached)
        self._skipping = False
        return out

    # ------------------------------------------------------------------ internals
    cdef int _report(self, object error) except -1:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(error)
        return 0

    cdef Py_ssize_t _fail(self, object error, Py_ssize_t at) except -1:
        self._report(error)
        self._skipping = True
        self.skipped_bytes += 1
        return at + 1

    cdef inline Py_ssize_t _skip_incomplete(self, Py_ssize_t at) noexcept:
        self._skipping = True
        self.skipped_bytes += 1
        return at + 1

    cdef int _deliver(self, const unsigned char* payload, Py_ssize_t length,
                      long long frame_offset, list out) except -1:
        cdef bytes raw
        cdef object obj
        if self._loads is None:
            PyList_Append(out, PyBytes_FromStringAndSize(<const char*>payload, length))
            self.frames += 1
            return 0
        try:
            if self._loads_is_default:
                # The commonest shape is read directly (see _message_codec.pxi: the same object
                # pickle makes); anything else goes to codec.loads, the one path.
                obj = _mc_loads(payload, length)
                if obj is None:
                    obj = _ev_loads(payload, length)  # _envelope_codec.pxi: any contents of plain data
                if obj is None:
                    obj = _default_loads(_lend(payload, length))
            else:
                obj = self._loads(PyBytes_FromStringAndSize(<const char*>payload, length))
        except Exception as exc:
            self._report(_spec._payload_error(
                frame_offset, PyBytes_FromStringAndSize(<const char*>payload, length), exc))
            return 0
        PyList_Append(out, obj)
        self.frames += 1
        return 0

    cdef int _scan(self, const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end,
                   long long offset, list out) except -1:
        """Decode every complete frame of buf[pos:end]; keep an incomplete tail pending."""
        cdef Py_ssize_t found, keep, cursor, digits, payload_start, payload_end, tag_end, frame_end
        cdef Py_ssize_t frame_start, length
        cdef Py_ssize_t max_size = self.max_frame_size
        cdef bint authenticated = False
        cdef bint too_large
        cdef unsigned char byte
        cdef object expected
        while pos < end:
            if self._skipping:
                found = _find_head(buf, pos, end)
                if found < 0:
                    keep = 0 if self._at_eof else _head_prefix_suffix(buf, pos, end)
                    self.skipped_bytes += end - keep - pos
                    if keep:
                        self._keep(buf, end - keep, end, offset, 0)
                    return 0
                self.skipped_bytes += found - pos
                pos = found
                self._skipping = False

            # A frame must start at pos.
            if not _is_head(buf + pos, end - pos, &authenticated):
                if _is_head_prefix(buf + pos, end - pos):
                    if self._at_eof:
                        pos = self._skip_incomplete(pos)
                        continue
                    self._keep(buf, pos, end, offset, 0)
                    return 0
                pos = self._fail(_spec._bad_head(offset + pos, buf[pos]), pos)
                continue

            # Length digits.
            cursor = pos + HEAD_SIZE
            length = 0
            digits = 0
            too_large = False
            while cursor < end and digits <= C_MAX_DIGITS:
                byte = buf[cursor]
                if byte < 48 or byte > 57:
                    break
                length = length * 10 + (byte - 48)
                digits += 1
                cursor += 1
                if length > max_size:
                    too_large = True
                    break
            if too_large:
                pos = self._fail(_spec._too_large(offset + pos, length, max_size), pos)
                continue
            if digits > C_MAX_DIGITS or (digits == 0 and cursor < end):
                pos = self._fail(_spec._bad_length(offset + pos), pos)
                continue
            if end - cursor < SEP_SIZE:
                if memcmp(buf + cursor, C_SEP, end - cursor) == 0:
                    if self._at_eof:
                        pos = self._skip_incomplete(pos)
                        continue
                    self._keep(buf, pos, end, offset, 0)
                    return 0
                pos = self._fail(_spec._bad_length(offset + pos), pos)
                continue
            if memcmp(buf + cursor, C_SEP, SEP_SIZE) != 0:
                pos = self._fail(_spec._bad_length(offset + pos), pos)
                continue

            # Payload, tag and trailer.
            payload_start = cursor + SEP_SIZE
            payload_end = payload_start + length
            tag_end = payload_end + (C_TAG_SIZE if authenticated else 0)
            frame_end = tag_end + TRAILER_SIZE
            if frame_end > end:
                if self._at_eof:
                    pos = self._skip_incomplete(pos)
                    continue
                self._keep(buf, pos, end, offset, frame_end - pos)
                return 0
            if memcmp(buf + tag_end, C_AUTH_TRAILER if authenticated else C_PLAIN_TRAILER, TRAILER_SIZE) != 0:
                pos = self._fail(_spec._bad_trailer(offset + pos, authenticated, length), pos)
                continue

            # A well-formed frame: it is consumed whole whatever happens next.
            frame_start = pos
            pos = frame_end
            if authenticated:
                if self._key is None:
                    self._report(_spec._no_key(offset + frame_start))
                    continue
                expected = self._frame_tag(
                    PyMemoryView_FromMemory(<char*>buf + frame_start, payload_end - frame_start, PyBUF_READ))
                if not _compare_digest(
                        expected, PyMemoryView_FromMemory(<char*>buf + payload_end, C_TAG_SIZE, PyBUF_READ)):
                    self._report(_spec._bad_tag(offset + frame_start))
                    continue
            elif self.require_auth:
                self._report(_spec._unauthenticated(offset + frame_start))
                continue
            self._deliver(buf + payload_start, length, offset + frame_start, out)
        return 0


include "_splitter.pxi"
include "_send_buffer.pxi"
