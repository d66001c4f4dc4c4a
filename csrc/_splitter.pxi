# Included at the end of _framing.pyx (same directives): Cython twin of lute_ipc._splitter_py.
#
# The spec, argument validation, item classes and error factories live in pure Python
# (lute_ipc._splitter_py, lute_ipc.stream_items) and are shared; the opcode tables and
# sizes are pickle-layout facts (lute_ipc.pickle_layout), copied at import. This file only
# re-implements the scanning loops on raw bytes. Every name here starts with _sp / _SP (or
# is a public class) so it cannot clash with the frame decoder's names.
#
# Needs from the includer (_framing.pyx): the compiler directives, and
#   _mc_loads(const unsigned char*, Py_ssize_t) -> object  (from _message_codec.pxi: the
#       Message fast path, None when it does not apply)
#   _lend(const unsigned char*, Py_ssize_t) -> object       (the payload as bytes, or as a
#       read-only memoryview from pickle_layout.LARGE_BUFFER bytes on)
# Nothing else: every other name it uses is imported or defined here.

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_READ
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.list cimport PyList_Append
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.unicode cimport (PyUnicode_DecodeUTF8, PyUnicode_DecodeASCII, PyUnicode_KIND, PyUnicode_DATA,
                              PyUnicode_GET_LENGTH, PyUnicode_2BYTE_KIND)
from libc.string cimport memcmp, memcpy, memchr, memmove
from libc.stdint cimport uint64_t, int32_t

from lute_ipc import codec as _sp_codec
from lute_ipc import pickle_layout as _sp_layout
from lute_ipc import _splitter_py as _sp_spec
from lute_ipc import stream_items as _sp_items
from lute_ipc.errors import UsageError as _SpUsageError

DEFAULT_MAX_PICKLE_SIZE = _sp_spec.DEFAULT_MAX_PICKLE_SIZE

cdef object _sp_default_loads = _sp_codec.loads
cdef object _sp_load_file = _sp_codec.load_file
cdef object _SpPickled = _sp_items.Pickled
cdef object _SpText = _sp_items.Text
cdef object _SpSignal = _sp_items.Signal
cdef object _sp_undecodable = _sp_items.undecodable_error
cdef object _sp_payload_error = _sp_spec._payload_error
cdef object _sp_too_large = _sp_spec._too_large
cdef object _sp_incomplete = _sp_spec._incomplete
cdef object _sp_check_options = _sp_spec._check_splitter_options
cdef object _SpChunkReader = _sp_spec.ChunkReader
cdef object _sp_check_signal_names = _sp_spec._check_signal_names
cdef object _sp_stderr_decoder = _sp_spec._stderr_decoder

# A pickle growing beyond this is kept as the pieces it came in (see MixedStreamSplitter).
cdef Py_ssize_t _SP_BIG = 1024 * 1024

# The pickle grammar, copied at import from pickle_layout's tables (one source of truth).
cdef unsigned char _SP_ARG_KIND[256]
cdef unsigned char _SP_ARG_SIZE[256]
cdef unsigned char _SP_EFFECT[256]
cdef unsigned char _SP_POPS[256]
cdef unsigned char _SP_PUSHES[256]
cdef unsigned char _SP_BELOW[256]
# Derived: 1 + argument size for the opcodes of the fast path (fixed-size argument, plain
# stack effect), else 0.
cdef unsigned char _SP_FAST_STEP[256]
# Kinds as compile-time constants (checked against the spec's values at import below).
cdef enum:
    _SP_A_FIXED = 1
    _SP_A_LEN = 2
    _SP_A_SLEN = 3
    _SP_A_LINES = 4
    _SP_A_PROTO = 5
    _SP_S_PLAIN = 0
    _SP_S_MARK = 1
    _SP_S_POPMARK = 2
    _SP_S_POP = 3
    _SP_HIGHEST = 5
    _SP_MIN_PROTO = 2

if ((_sp_layout.A_FIXED, _sp_layout.A_LEN, _sp_layout.A_SLEN, _sp_layout.A_LINES, _sp_layout.A_PROTO,
     _sp_layout.S_PLAIN, _sp_layout.S_MARK, _sp_layout.S_POPMARK, _sp_layout.S_POP, _sp_layout.HIGHEST_PROTOCOL,
     _sp_layout.MIN_CANDIDATE_PROTOCOL) != (1, 2, 3, 4, 5, 0, 1, 2, 3, 5, 2)):
    raise ImportError("lute_ipc._framing_c was built against other pickle-grammar constants than pickle_layout's")
cdef uint64_t _SP_MAX_ARG = _sp_layout.MAX_ARGUMENT_LENGTH
cdef unsigned char _SP_FRAME = _sp_layout.FRAME
cdef enum:
    _SP_MORE = 0
    _SP_STOP = 1
    _SP_INVALID = 2
    _SP_TOO_LARGE = 3


cdef _sp_load_tables():
    cdef int i
    for i in range(256):
        _SP_ARG_KIND[i] = _sp_layout.ARG_KIND[i]
        _SP_ARG_SIZE[i] = _sp_layout.ARG_SIZE[i]
        _SP_EFFECT[i] = _sp_layout.EFFECT[i]
        _SP_POPS[i] = _sp_layout.POPS[i]
        _SP_PUSHES[i] = _sp_layout.PUSHES[i]
        _SP_BELOW[i] = _sp_layout.BELOW[i]
        _SP_FAST_STEP[i] = 0
        if _SP_ARG_KIND[i] == _sp_layout.A_FIXED and _SP_EFFECT[i] == _sp_layout.S_PLAIN and i != _sp_layout.FRAME:
            _SP_FAST_STEP[i] = 1 + _SP_ARG_SIZE[i]


_sp_load_tables()


# ----------------------------------------------------------------------------- UTF-8 helpers
cdef inline int _sp_seq_len(unsigned char lead) noexcept nogil:
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


cdef inline bint _sp_second_ok(unsigned char lead, unsigned char b) noexcept nogil:
    if lead == 0xE0:
        return 0xA0 <= b <= 0xBF
    if lead == 0xED:
        return 0x80 <= b <= 0x9F
    if lead == 0xF0:
        return 0x90 <= b <= 0xBF
    if lead == 0xF4:
        return 0x80 <= b <= 0x8F
    return 0x80 <= b <= 0xBF


cdef inline bint _sp_is_cont(unsigned char b) noexcept nogil:
    return 0x80 <= b <= 0xBF


cdef inline bint _sp_completes_char(const unsigned char* buf, Py_ssize_t p) noexcept nogil:
    """Whether buf[p] ends a valid UTF-8 character begun in buf[0:p] (see _splitter_py.completes_char)."""
    cdef Py_ssize_t k, q
    cdef unsigned char lead
    for k in range(1, 4):
        q = p - k
        if q < 0:
            return False
        lead = buf[q]
        if not _sp_is_cont(lead):
            if _sp_seq_len(lead) != k + 1:
                return False
            return k == 1 or _sp_second_ok(lead, buf[q + 1])
    return False


cdef inline Py_ssize_t _sp_incomplete_tail(const unsigned char* buf, Py_ssize_t lo, Py_ssize_t end) noexcept nogil:
    """Length of a valid but incomplete UTF-8 sequence ending buf[lo:end] (0-3)."""
    cdef Py_ssize_t k, q
    cdef unsigned char lead
    for k in range(1, 4):
        q = end - k
        if q < lo:
            return 0
        lead = buf[q]
        if _sp_is_cont(lead):
            continue
        if _sp_seq_len(lead) <= k:
            return 0
        if k >= 2 and not _sp_second_ok(lead, buf[q + 1]):
            return 0
        return k
    return 0


cdef inline Py_ssize_t _sp_char_len(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """Length of the valid UTF-8 character at p (n bytes available), or 0 when p[0] starts none."""
    cdef unsigned char b = p[0]
    cdef int size, i
    if b < 0x80:
        return 1
    size = _sp_seq_len(b)
    if size == 0 or size > n or not _sp_second_ok(b, p[1]):
        return 0
    for i in range(2, size):
        if not _sp_is_cont(p[i]):
            return 0
    return size


cdef inline Py_ssize_t _sp_valid_prefix(const unsigned char* p, Py_ssize_t n, bint* ascii) noexcept nogil:
    """Length of the longest valid UTF-8 prefix of p[0:n]; *ascii tells whether it is all ASCII."""
    cdef Py_ssize_t i = 0, size
    cdef uint64_t word
    ascii[0] = True
    while i < n:
        while i + 8 <= n:
            memcpy(&word, p + i, 8)
            if word & <uint64_t>0x8080808080808080ULL:
                break
            i += 8
        if i >= n:
            break
        if p[i] < 0x80:
            i += 1
            continue
        size = _sp_char_len(p + i, n - i)
        if size == 0:
            return i
        ascii[0] = False
        i += size
    return i


cdef inline bint _sp_has_escapes(str text) noexcept:
    """Whether text decoded with surrogateescape holds an escaped byte (a code point U+DC80..U+DCFF)."""
    cdef unsigned int kind = PyUnicode_KIND(text)
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(text)
    cdef const unsigned short* ucs2
    cdef const unsigned int* ucs4
    if kind == 1:
        return False  # Latin-1 range only
    if kind == PyUnicode_2BYTE_KIND:
        ucs2 = <const unsigned short*>PyUnicode_DATA(text)
        for i in range(n):
            if 0xDC80 <= ucs2[i] <= 0xDCFF:
                return True
        return False
    ucs4 = <const unsigned int*>PyUnicode_DATA(text)
    for i in range(n):
        if 0xDC80 <= ucs4[i] <= 0xDCFF:
            return True
    return False


cdef inline Py_ssize_t _sp_get_buffer(object data, Py_buffer* view) except -1:
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except TypeError:
        raise _SpUsageError(f"feed() needs a bytes-like object, not {type(data).__name__}") from None
    return 0


# ----------------------------------------------------------------------------- stdout splitter
cdef class MixedStreamSplitter:
    """Incremental splitter of a stream mixing pickles and text (see :class:`lute_ipc._splitter_py.MixedStreamSplitter`).

    Same items, counters and errors as the reference. One difference inside: a pickle that
    grows beyond ``_SP_BIG`` bytes is not copied into one contiguous buffer; the buffers it
    was fed in are kept (without copy when they are ``bytes``) and it is unpickled through
    :class:`lute_ipc._splitter_py.ChunkReader`, while its opcodes are walked in a small
    buffer (the mode that also skips the rest of a too-large pickle).
    """

    cdef readonly Py_ssize_t max_pickle_size
    cdef readonly long long bytes_fed
    cdef readonly long long objects
    cdef readonly long long errors
    cdef readonly long long undecodable_bytes
    cdef readonly long long skipped_bytes
    cdef object _loads
    cdef bint _loads_default
    cdef object _on_error
    # Up to 3 handled bytes (UTF-8 look-behind), then unhandled bytes.
    cdef unsigned char* _buf
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef long long _base          # stream offset of _buf[0]
    cdef Py_ssize_t _pos          # start of unemitted text
    cdef Py_ssize_t _search       # where to look for the next candidate
    cdef Py_ssize_t _cand         # candidate start in _buf (>= 0: walking one), else -1
    cdef long long _cand_abs      # stream offset of the candidate
    cdef Py_ssize_t _wpos
    cdef Py_ssize_t _depth
    cdef Py_ssize_t* _marks
    cdef Py_ssize_t _nmarks
    cdef Py_ssize_t _marks_cap
    cdef Py_ssize_t _nl_op
    cdef Py_ssize_t _nl_from
    cdef Py_ssize_t _nl_found
    cdef long long _frame_end     # stream offset where the candidate's furthest FRAME ends
    # Streaming: the candidate's bytes are not kept in _buf (only the opcode being walked).
    cdef bint _streaming          # a large pickle: its pieces are kept in _chunks
    cdef list _chunks

    def __cinit__(self):
        self._buf = NULL
        self._len = 0
        self._cap = 0
        self._marks = NULL
        self._nmarks = 0
        self._marks_cap = 0

    def __dealloc__(self):
        PyMem_Free(self._buf)
        PyMem_Free(self._marks)

    def __init__(self, *, max_pickle_size=DEFAULT_MAX_PICKLE_SIZE, loads=_sp_default_loads, on_error=None):
        _sp_check_options(max_pickle_size, loads, on_error)
        self.max_pickle_size = max_pickle_size
        self._loads = loads
        self._loads_default = loads is _sp_default_loads
        self._on_error = on_error
        self.bytes_fed = 0
        self.objects = 0
        self.errors = 0
        self.undecodable_bytes = 0
        self.skipped_bytes = 0
        self._reset()

    cdef void _reset(self) noexcept:
        self._len = 0
        self._base = self.bytes_fed
        self._pos = 0
        self._search = 0
        self._cand = -1
        self._cand_abs = 0
        self._wpos = 0
        self._depth = 0
        self._nmarks = 0
        self._nl_op = -1
        self._nl_from = 0
        self._nl_found = 0
        self._frame_end = 0
        self._streaming = False
        self._chunks = None

    @property
    def buffered(self):
        """Bytes held: an incomplete pickle, or the tail of text that cannot be decided yet."""
        cdef Py_ssize_t held
        if self._streaming:
            return self._base + self._len - self._cand_abs
        held = self._len - self._keep_from()
        return held if held > 0 else 0

    # ------------------------------------------------------------------ public
    def feed(self, data):
        """Add bytes of the stream; return every item they complete, in stream order."""
        cdef Py_buffer view
        cdef list out = []
        _sp_get_buffer(data, &view)
        try:
            if self._streaming and view.len:
                self._chunks.append(_sp_keepable(data, &view))
            self._reserve(self._len + view.len)
            memcpy(self._buf + self._len, view.buf, view.len)
            self._len += view.len
            self.bytes_fed += view.len
        finally:
            PyBuffer_Release(&view)
        self._process(out)
        self._compact()
        return out

    def flush(self):
        """End of stream: return what is left (an incomplete pickle becomes an error item)."""
        cdef list out = []
        self._process(out)
        if self._streaming:
            self._error(_sp_incomplete(self._cand_abs, b"".join(self._chunks)), out)
        elif self._cand >= 0:
            self._error(_sp_incomplete(self._cand_abs, self._bytes(self._cand, self._len)), out)
        else:
            self._emit_text(self._pos, self._len, out)
        self._reset()
        return out

    # ------------------------------------------------------------------ internals
    cdef int _reserve(self, Py_ssize_t capacity) except -1:
        cdef unsigned char* grown
        cdef Py_ssize_t new_cap
        if capacity <= self._cap:
            return 0
        new_cap = self._cap * 2
        if new_cap < capacity:
            new_cap = capacity
        if new_cap < 4096:
            new_cap = 4096
        grown = <unsigned char*>PyMem_Realloc(self._buf, new_cap)
        if grown == NULL:
            raise MemoryError()
        self._buf = grown
        self._cap = new_cap
        return 0

    cdef int _push_mark(self, Py_ssize_t depth) except -1:
        cdef Py_ssize_t* grown
        cdef Py_ssize_t new_cap
        if self._nmarks == self._marks_cap:
            new_cap = self._marks_cap * 2 if self._marks_cap else 64
            grown = <Py_ssize_t*>PyMem_Realloc(self._marks, new_cap * sizeof(Py_ssize_t))
            if grown == NULL:
                raise MemoryError()
            self._marks = grown
            self._marks_cap = new_cap
        self._marks[self._nmarks] = depth
        self._nmarks += 1
        return 0

    cdef inline bytes _bytes(self, Py_ssize_t start, Py_ssize_t end):
        return PyBytes_FromStringAndSize(<const char*>self._buf + start, end - start)

    cdef int _error(self, object item, list out) except -1:
        self.errors += 1
        PyList_Append(out, item)
        if self._on_error is not None:
            self._on_error(item.error)
        return 0

    cdef int _emit_text(self, Py_ssize_t start, Py_ssize_t end, list out) except -1:
        cdef const unsigned char* p
        cdef Py_ssize_t n, valid, bad
        cdef bint ascii
        cdef bytes raw
        cdef str text
        if start >= end:
            return 0
        # One decoding pass; invalid bytes would show as lone surrogates U+DC80..U+DCFF.
        text = PyUnicode_DecodeUTF8(<const char*>self._buf + start, end - start, "surrogateescape")
        if not _sp_has_escapes(text):
            PyList_Append(out, _SpText(text))
            return 0
        while start < end:
            p = self._buf + start
            n = end - start
            valid = _sp_valid_prefix(p, n, &ascii)
            if valid:
                if ascii:
                    PyList_Append(out, _SpText(PyUnicode_DecodeASCII(<const char*>p, valid, NULL)))
                else:
                    PyList_Append(out, _SpText(PyUnicode_DecodeUTF8(<const char*>p, valid, NULL)))
                start += valid
                continue
            bad = 1
            while bad < n and _sp_char_len(p + bad, n - bad) == 0:
                bad += 1
            raw = PyBytes_FromStringAndSize(<const char*>p, bad)
            self.undecodable_bytes += bad
            self._error(_sp_undecodable(self._base + start, raw), out)
            start += bad
        return 0

    cdef void _end_candidate(self, Py_ssize_t resume) noexcept:
        """Leave candidate state; text resumes at _buf[resume]."""
        self._pos = resume
        self._search = resume
        self._cand = -1
        self._streaming = False
        self._chunks = None

    cdef int _start_streaming(self, Py_ssize_t end) except -1:
        self._streaming = True
        self._chunks = [self._bytes(self._cand, end)]
        return 0

    cdef int _too_large(self, list out) except -1:
        """Report the candidate as too large (with its bytes before the opcode crossing the
        limit, at _wpos, and at least its first byte); text resumes right after them."""
        cdef object data
        cdef Py_ssize_t resume = self._wpos
        if self._streaming:
            data = b"".join(self._chunks)[:self._base + self._wpos - self._cand_abs]
        else:
            if resume <= self._cand:
                resume = self._cand + 1
            data = self._bytes(self._cand, resume)
        self._error(_sp_too_large(self._cand_abs, data, self.max_pickle_size), out)
        self._end_candidate(resume)
        return 0

    cdef int _process(self, list out) except -1:
        cdef int status
        cdef Py_ssize_t end, candidate, hold
        cdef long long held
        while True:
            end = self._len
            if self._cand >= 0:
                status = self._walk(end)
                if status == _SP_MORE:
                    # At most max_pickle_size bytes are held (see _walk).
                    if not self._streaming and self._base + end - self._cand_abs > _SP_BIG:
                        self._start_streaming(end)
                    return 0
                if status == _SP_STOP:
                    if self._streaming:
                        self._deliver_chunks(self._base + self._wpos - self._cand_abs, out)
                    else:
                        self._deliver(self._cand, self._wpos, out)
                    self._end_candidate(self._wpos)
                elif status == _SP_INVALID:
                    # Not a pickle: its 0x80 is text; look for candidates after it.
                    if self._streaming:
                        self._restore(end)
                    self._pos = self._cand
                    self._search = self._cand + 1
                    self._cand = -1
                    self._streaming = False
                    self._chunks = None
                else:
                    self._too_large(out)
                continue
            candidate = self._find_candidate(end)
            if candidate >= 0:
                self._emit_text(self._pos, candidate, out)
                self._cand = candidate
                self._cand_abs = self._base + candidate
                self._wpos = candidate
                self._depth = 0
                self._nmarks = 0
                self._nl_op = -1
                self._frame_end = 0
                continue
            hold = self._text_hold(end)
            self._emit_text(self._pos, hold, out)
            self._pos = hold
            if self._search < hold:
                self._search = hold
            return 0

    cdef int _restore(self, Py_ssize_t end) except -1:
        """A large candidate broke the grammar: put its bytes back in _buf to read them as text."""
        cdef bytes data = b"".join(self._chunks)
        cdef Py_ssize_t size = len(data)
        self._reserve(size)
        memcpy(self._buf, PyBytes_AS_STRING(data), size)
        self._len = size
        self._base = self._cand_abs
        self._cand = 0
        return 0

    cdef inline Py_ssize_t _find_candidate(self, Py_ssize_t end) noexcept:
        cdef const unsigned char* buf = self._buf
        cdef const unsigned char* hit
        cdef Py_ssize_t p = self._search
        cdef unsigned char proto
        while p + 1 < end:
            hit = <const unsigned char*>memchr(buf + p, 0x80, end - 1 - p)
            if hit == NULL:
                return -1
            p = hit - buf
            proto = buf[p + 1]
            if _SP_MIN_PROTO <= proto <= _SP_HIGHEST and not _sp_completes_char(buf, p):
                return p
            p += 1
        return -1

    cdef inline Py_ssize_t _text_hold(self, Py_ssize_t end) noexcept:
        cdef Py_ssize_t tail = _sp_incomplete_tail(self._buf, self._pos, end)
        if tail:
            return end - tail
        if end > self._pos and self._buf[end - 1] == 0x80 and not _sp_completes_char(self._buf, end - 1):
            return end - 1
        return end

    cdef int _deliver(self, Py_ssize_t start, Py_ssize_t stop, list out) except -1:
        cdef const unsigned char* p = self._buf + start
        cdef Py_ssize_t n = stop - start
        cdef object value
        if self._loads is None:
            value = PyBytes_FromStringAndSize(<const char*>p, n)
        else:
            try:
                if self._loads_default:
                    # The commonest shape is read directly (see _message_codec.pxi: the same
                    # object pickle makes); anything else goes to codec.loads, the one path.
                    value = _mc_loads(p, n)
                    if value is None:
                        value = _sp_default_loads(_lend(p, n))
                else:
                    value = self._loads(PyBytes_FromStringAndSize(<const char*>p, n))
            except Exception as exc:
                self._error(_sp_payload_error(self._base + start, self._bytes(start, stop), exc), out)
                return 0
        self.objects += 1
        PyList_Append(out, _SpPickled(value))
        return 0

    cdef int _deliver_chunks(self, Py_ssize_t size, list out) except -1:
        """Deliver a large pickle of ``size`` bytes kept as the pieces in _chunks."""
        cdef list chunks = self._chunks
        cdef object value
        try:
            if self._loads_default:
                value = _sp_load_file(_SpChunkReader(chunks, size))  # codec.loads' mechanism, without a copy
            elif self._loads is None:
                value = _SpChunkReader(chunks, size).read()
            else:
                value = self._loads(_SpChunkReader(chunks, size).read())
        except Exception as exc:
            self._error(_sp_payload_error(self._cand_abs, _SpChunkReader(chunks, size).read(), exc), out)
            return 0
        self.objects += 1
        PyList_Append(out, _SpPickled(value))
        return 0

    cdef int _walk(self, Py_ssize_t end) except -1:
        """Walk opcodes of the candidate from _wpos; resumable where it stops."""
        cdef const unsigned char* buf = self._buf
        cdef Py_ssize_t pos = self._wpos
        cdef Py_ssize_t depth = self._depth
        cdef Py_ssize_t limit = <Py_ssize_t>(self._cand_abs - self._base) + self.max_pickle_size
        cdef Py_ssize_t nxt = 0, header, search, found, want, bound, stop
        cdef const unsigned char* newline
        cdef unsigned char op, kind, effect
        cdef uint64_t length
        cdef int32_t slength
        cdef int status = _SP_MORE
        cdef bint streaming = self._streaming
        cdef int i
        cdef unsigned char step
        while pos < end:
            op = buf[pos]
            step = _SP_FAST_STEP[op]
            if step:
                # Most opcodes: a fixed-size argument and a plain stack effect.
                if pos + step > limit:
                    status = _SP_TOO_LARGE
                    break
                if pos + step > end:
                    break
                if depth < _SP_POPS[op]:
                    status = _SP_INVALID
                    break
                depth += _SP_PUSHES[op] - _SP_POPS[op]
                pos += step
                continue
            kind = _SP_ARG_KIND[op]
            if kind == _SP_A_FIXED:
                nxt = pos + 1 + _SP_ARG_SIZE[op]
                if nxt > limit:
                    status = _SP_TOO_LARGE
                    break
                if nxt > end:
                    break
                if op == _SP_FRAME:
                    # The frame's bytes are part of the pickle: its announced length must fit
                    # in the bound, and the pickle must not stop before the frame ends.
                    length = 0
                    for i in range(7, -1, -1):
                        length = (length << 8) | buf[pos + 1 + i]
                    if length > <uint64_t>(limit - nxt):
                        status = _SP_TOO_LARGE
                        break
                    if length > _SP_MAX_ARG:
                        status = _SP_INVALID
                        break
                    if self._base + nxt + <long long>length > self._frame_end:
                        self._frame_end = self._base + nxt + <long long>length
            elif kind == _SP_A_LEN or kind == _SP_A_SLEN:
                header = pos + 1 + _SP_ARG_SIZE[op]
                if header > limit:
                    status = _SP_TOO_LARGE
                    break
                if header > end:
                    break
                if kind == _SP_A_SLEN:
                    memcpy(&slength, buf + pos + 1, 4)  # little-endian hosts only (x86, ARM)
                    if slength < 0:
                        status = _SP_INVALID
                        break
                    length = <uint64_t>slength
                else:
                    length = 0
                    for i in range(_SP_ARG_SIZE[op] - 1, -1, -1):
                        length = (length << 8) | buf[pos + 1 + i]
                if length > <uint64_t>(limit - header):
                    status = _SP_TOO_LARGE
                    break
                if length > _SP_MAX_ARG:
                    status = _SP_INVALID  # no pickle is that long; keeps the index arithmetic in range
                    break
                nxt = header + <Py_ssize_t>length
                if nxt > end and not streaming:
                    break
            elif kind == _SP_A_LINES:
                # The line(s) must end by limit.
                bound = limit
                stop = end if end < bound else bound
                if self._nl_op == pos:
                    search = self._nl_from
                    found = self._nl_found
                else:
                    search = pos + 1
                    found = 0
                want = _SP_ARG_SIZE[op]
                while found < want and search < stop:
                    newline = <const unsigned char*>memchr(buf + search, 10, stop - search)
                    if newline == NULL:
                        search = stop
                        break
                    found += 1
                    search = newline - buf + 1
                if found < want:
                    if end >= bound:
                        status = _SP_TOO_LARGE
                        break
                    self._nl_op = pos
                    self._nl_from = end
                    self._nl_found = found
                    break
                nxt = search
            elif kind == _SP_A_PROTO:
                if pos + 2 > limit:
                    status = _SP_TOO_LARGE
                    break
                if pos + 2 > end:
                    break
                if buf[pos + 1] > _SP_HIGHEST:
                    status = _SP_INVALID
                    break
                nxt = pos + 2
            else:
                status = _SP_INVALID
                break
            effect = _SP_EFFECT[op]
            if effect == _SP_S_PLAIN:
                if depth < _SP_POPS[op]:
                    status = _SP_INVALID
                    break
                depth += _SP_PUSHES[op] - _SP_POPS[op]
            elif effect == _SP_S_MARK:
                self._push_mark(depth)
                depth = 0
            elif effect == _SP_S_POPMARK:
                if self._nmarks == 0 or depth < _SP_POPS[op]:
                    status = _SP_INVALID
                    break
                self._nmarks -= 1
                depth = self._marks[self._nmarks]
                if depth < _SP_BELOW[op]:
                    status = _SP_INVALID
                    break
                depth += _SP_PUSHES[op]
            elif effect == _SP_S_POP:
                if depth:
                    depth -= 1
                elif self._nmarks:
                    self._nmarks -= 1
                    depth = self._marks[self._nmarks]
                else:
                    status = _SP_INVALID
                    break
            else:  # STOP
                if depth != 1 or self._nmarks or self._base + nxt < self._frame_end:
                    status = _SP_INVALID
                    break
                pos = nxt
                status = _SP_STOP
                break
            pos = nxt
        self._wpos = pos
        self._depth = depth
        return status

    cdef inline Py_ssize_t _keep_from(self) noexcept:
        """Index of the first byte still needed (look-behind excluded)."""
        if self._streaming:
            return self._wpos if self._wpos < self._len else self._len
        return self._cand if self._cand >= 0 else self._pos

    cdef void _compact(self) noexcept:
        cdef Py_ssize_t drop = self._keep_from() - 3
        if drop <= 0:
            return
        memmove(self._buf, self._buf + drop, self._len - drop)
        self._len -= drop
        self._base += drop
        self._pos -= drop
        self._search -= drop
        if self._cand >= 0:
            self._cand = self._cand - drop if self._cand > drop else 0  # while streaming only its sign matters
            self._wpos -= drop
            if self._nl_op >= 0:
                self._nl_op -= drop
                self._nl_from -= drop


cdef object _sp_keepable(object data, Py_buffer* view):
    """``data`` itself when it can be kept without copy (immutable bytes), else a copy."""
    if type(data) is bytes:
        return data
    if type(data) is memoryview and type((<memoryview>data).obj) is bytes and (<memoryview>data).c_contiguous:
        return data
    return PyBytes_FromStringAndSize(<const char*>view.buf, view.len)


# ----------------------------------------------------------------------------- stderr tokenizer
cdef class SignalTokenizer:
    """Incremental tokenizer of a Task's stderr (see :class:`lute_ipc._splitter_py.SignalTokenizer`)."""

    cdef readonly long long bytes_fed
    cdef readonly long long signals
    cdef tuple _names             # ASCII bytes, kept alive for the pointers below
    cdef list _texts
    cdef Py_ssize_t _longest
    cdef const char* _name_ptr[64]
    cdef Py_ssize_t _name_len[64]
    cdef Py_ssize_t _count
    cdef object _decoder
    cdef bytes _held
    cdef bint _boundary           # the next byte starts a token

    def __init__(self, *, signals=_sp_spec.LUTE_SIGNALS):
        cdef bytes name
        cdef int i
        self._names = _sp_check_signal_names(signals)
        if len(self._names) > 64:
            raise _SpUsageError("at most 64 signal names are supported")
        self._count = len(self._names)
        for i in range(self._count):
            name = <bytes>self._names[i]
            self._name_ptr[i] = PyBytes_AS_STRING(name)
            self._name_len[i] = len(name)
        self._texts = [name.decode("ascii") for name in self._names]
        self._longest = len(self._names[0])
        self._decoder = _sp_stderr_decoder()
        self._held = b""
        self._boundary = True
        self.bytes_fed = 0
        self.signals = 0

    @property
    def buffered(self):
        """Bytes held: the start of a possible signal name."""
        return len(self._held)

    cdef inline Py_ssize_t _match(self, const unsigned char* p, Py_ssize_t avail) noexcept:
        """Index of the name starting at p, or -1."""
        cdef Py_ssize_t j
        for j in range(self._count):
            if self._name_len[j] <= avail and memcmp(p, self._name_ptr[j], self._name_len[j]) == 0:
                return j
        return -1

    cdef inline bint _is_prefix(self, const unsigned char* p, Py_ssize_t avail) noexcept:
        """Whether p[0:avail] is a proper prefix of a name."""
        cdef Py_ssize_t j
        for j in range(self._count):
            if self._name_len[j] > avail and memcmp(p, self._name_ptr[j], avail) == 0:
                return True
        return False

    cdef int _text(self, const unsigned char* p, Py_ssize_t n, bint final, list out) except -1:
        cdef str text = self._decoder.decode(PyBytes_FromStringAndSize(<const char*>p, n), final)
        if text:
            PyList_Append(out, _SpText(text))
        return 0

    def feed(self, data):
        """Add bytes of stderr; return the signals and text they complete, in order."""
        cdef Py_buffer view
        cdef bytes joined
        cdef const unsigned char* buf
        cdef Py_ssize_t end, pos = 0, text_from = 0, j, hold = 0
        cdef bint boundary
        cdef unsigned char c
        cdef list out = []
        _sp_get_buffer(data, &view)
        try:
            self.bytes_fed += view.len
            joined = self._held + PyBytes_FromStringAndSize(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        boundary = True if self._held else self._boundary
        buf = <const unsigned char*>PyBytes_AS_STRING(joined)
        end = len(joined)
        while pos < end:
            if boundary:
                j = self._match(buf + pos, end - pos)
                if j >= 0:
                    self._text(buf + text_from, pos - text_from, True, out)
                    PyList_Append(out, _SpSignal(self._texts[j]))
                    self.signals += 1
                    pos += self._name_len[j]
                    text_from = pos
                    continue
                if end - pos < self._longest and self._is_prefix(buf + pos, end - pos):
                    hold = end - pos
                    break
            # Skip to just after the next line break.
            boundary = False
            while pos < end:
                c = buf[pos]
                pos += 1
                if c == 10 or c == 13:
                    boundary = True
                    break
        self._text(buf + text_from, end - hold - text_from, False, out)
        self._held = PyBytes_FromStringAndSize(<const char*>buf + end - hold, hold) if hold else b""
        self._boundary = boundary
        return out

    def flush(self):
        """End of stream: return the text still held. The tokenizer may then be reused."""
        cdef list out = []
        cdef bytes held = self._held
        self._held = b""
        self._text(<const unsigned char*>PyBytes_AS_STRING(held), len(held), True, out)
        self._boundary = True
        return out
