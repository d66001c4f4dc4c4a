# Included by _framing.pyx (same directives): a direct pickle codec for the commonest payload.
#
# Most traffic at high rates is ``Message(contents=<str or None>, signal=<str or None>)``
# (logs, progress). For exactly that shape this file writes the bytes ``pickle.dumps(msg,
# PICKLE_PROTOCOL)`` would write, straight into the send buffer, and reads them back without
# running the unpickler (no class lookup by import, no opcode dispatch). It is an
# optimisation of pickle, not a format: the wire bytes are identical (checked once at import
# and by the tests against ``pickle.dumps``/``pickle.loads`` for every generated message),
# and anything that differs in the slightest (another class, extra attributes, other value
# types, memo references, another opcode) goes to pickle as before. The pure-Python
# reference of this file is pickle itself. Every name here starts with _mc / _MC.

from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_CheckExact
from cpython.dict cimport PyDict_Next, PyDict_Size, PyDict_SetItem
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

from lute_ipc import message as _mc_message

cdef object _MCMessage = _mc_message.Message
cdef object _mc_object_new = object.__new__
cdef str _MC_CONTENTS = "contents"
cdef str _MC_SIGNAL = "signal"
# The names pickle writes for the class (ours), and LUTE's module (read, mapped to ours).
cdef bytes _MC_MODULE = _MCMessage.__module__.encode()
cdef bytes _MC_QUALNAME = _MCMessage.__qualname__.encode()
cdef bytes _MC_LEGACY_MODULE = _codec.LEGACY_MODULE.encode()
# utf-8 bytes per text field taken by the fast path: far below pickle's 64 KiB frame target,
# so the whole pickle is one FRAME, as pickle writes it. Longer texts go to pickle.
cdef Py_ssize_t _MC_MAX_TEXT = 16 * 1024
# Set by _mc_self_check(): the fast paths are used only if they reproduce pickle exactly.
cdef bint _mc_enabled = False

# Fixed pieces of the pickle (protocol 4 and 5 write the same opcodes for this shape).
cdef const char* _MC_NEWOBJ = b"\x93\x94)\x81\x94}\x94("     # STACK_GLOBAL MEMOIZE EMPTY_TUPLE NEWOBJ
                                                           # MEMOIZE EMPTY_DICT MEMOIZE MARK
cdef Py_ssize_t _MC_NEWOBJ_SIZE = 8
cdef const char* _MC_KEY_CONTENTS = b"\x8c\x08contents\x94"
cdef Py_ssize_t _MC_KEY_CONTENTS_SIZE = 11
cdef const char* _MC_KEY_SIGNAL = b"\x8c\x06signal\x94"
cdef Py_ssize_t _MC_KEY_SIGNAL_SIZE = 9
cdef const char* _MC_END = b"ub."                            # SETITEMS BUILD STOP
cdef Py_ssize_t _MC_END_SIZE = 3
cdef Py_ssize_t _MC_HEADER_SIZE = 11                         # PROTO p FRAME <8 bytes>


cdef struct _MCText:
    const char* data    # utf-8 bytes, or NULL for None
    Py_ssize_t size


cdef inline Py_ssize_t _mc_text_size(_MCText* text) noexcept:
    """Pickled size of one field value: N, or a string opcode + bytes + MEMOIZE."""
    if text.data == NULL:
        return 1
    return (2 if text.size < 256 else 5) + text.size + 1


cdef inline char* _mc_write_short(char* w, const char* data, Py_ssize_t size) noexcept:
    w[0] = b'\x8c'
    w[1] = <char>size
    memcpy(w + 2, data, size)
    w[2 + size] = b'\x94'
    return w + 3 + size


cdef inline char* _mc_write_text(char* w, _MCText* text) noexcept:
    cdef Py_ssize_t size = text.size
    if text.data == NULL:
        w[0] = b'N'
        return w + 1
    if size < 256:
        return _mc_write_short(w, text.data, size)
    w[0] = b'X'
    w[1] = <char>(size & 0xFF)
    w[2] = <char>((size >> 8) & 0xFF)
    w[3] = <char>((size >> 16) & 0xFF)
    w[4] = <char>((size >> 24) & 0xFF)
    memcpy(w + 5, text.data, size)
    w[5 + size] = b'\x94'
    return w + 6 + size


cdef inline bint _mc_same_text(_MCText* text, bytes other) noexcept:
    return text.data != NULL and text.size == len(other) and \
        memcmp(text.data, PyBytes_AS_STRING(other), text.size) == 0


cdef int _mc_field(object value, _MCText* text) except -1:
    """Describe one field value; return 0 when the fast path cannot write it."""
    if value is None:
        text.data = NULL
        text.size = 0
        return 1
    if not PyUnicode_CheckExact(value):
        return 0
    try:
        text.data = PyUnicode_AsUTF8AndSize(value, &text.size)
    except UnicodeError:  # lone surrogates: pickle writes them with surrogatepass
        return 0
    return text.size <= _MC_MAX_TEXT


cdef Py_ssize_t _mc_describe(object msg, _MCText* contents, _MCText* signal) except -2:
    """Pickled size of ``msg`` if the fast path can write it exactly as pickle would, else -1."""
    cdef PyObject* key
    cdef PyObject* value
    cdef Py_ssize_t pos = 0
    cdef dict state
    if not _mc_enabled or type(msg) is not _MCMessage:
        return -1
    state = msg.__dict__
    if PyDict_Size(state) != 2:
        return -1
    PyDict_Next(state, &pos, &key, &value)
    if not (<object>key is _MC_CONTENTS or <object>key == _MC_CONTENTS) or not _mc_field(<object>value, contents):
        return -1
    PyDict_Next(state, &pos, &key, &value)
    if not (<object>key is _MC_SIGNAL or <object>key == _MC_SIGNAL) or not _mc_field(<object>value, signal):
        return -1
    # pickle memoizes strings by identity: a value that may be the very object of another
    # string of the pickle (a key, the class names, the other field) makes pickle write a memo
    # reference for the later one.
    if contents.data != NULL:
        if _mc_same_text(contents, b"contents") or _mc_same_text(contents, b"signal") \
                or _mc_same_text(contents, _MC_MODULE) or _mc_same_text(contents, _MC_QUALNAME):
            return -1
    if signal.data != NULL:
        if _mc_same_text(signal, b"contents") or _mc_same_text(signal, b"signal") \
                or _mc_same_text(signal, _MC_MODULE) or _mc_same_text(signal, _MC_QUALNAME):
            return -1
        if contents.data != NULL and contents.size == signal.size \
                and memcmp(contents.data, signal.data, signal.size) == 0:
            return -1
    return (_MC_HEADER_SIZE + 3 + len(_MC_MODULE) + 3 + len(_MC_QUALNAME) + _MC_NEWOBJ_SIZE
            + _MC_KEY_CONTENTS_SIZE + _mc_text_size(contents) + _MC_KEY_SIGNAL_SIZE
            + _mc_text_size(signal) + _MC_END_SIZE)


cdef void _mc_write(char* w, Py_ssize_t size, _MCText* contents, _MCText* signal) noexcept:
    """Write the pickle described by _mc_describe (``size`` bytes) at w."""
    cdef Py_ssize_t body = size - _MC_HEADER_SIZE
    cdef int i
    w[0] = b'\x80'
    w[1] = <char>_protocol
    w[2] = b'\x95'
    for i in range(8):
        w[3 + i] = <char>((<uint64_t>body >> (8 * i)) & 0xFF)
    w = _mc_write_short(w + _MC_HEADER_SIZE, PyBytes_AS_STRING(_MC_MODULE), len(_MC_MODULE))
    w = _mc_write_short(w, PyBytes_AS_STRING(_MC_QUALNAME), len(_MC_QUALNAME))
    memcpy(w, _MC_NEWOBJ, _MC_NEWOBJ_SIZE)
    w += _MC_NEWOBJ_SIZE
    memcpy(w, _MC_KEY_CONTENTS, _MC_KEY_CONTENTS_SIZE)
    w = _mc_write_text(w + _MC_KEY_CONTENTS_SIZE, contents)
    memcpy(w, _MC_KEY_SIGNAL, _MC_KEY_SIGNAL_SIZE)
    w = _mc_write_text(w + _MC_KEY_SIGNAL_SIZE, signal)
    memcpy(w, _MC_END, _MC_END_SIZE)


cdef Py_ssize_t _mc_append_frame(bytearray buffer, object msg, object key) except -2:
    """Append the frame of ``msg`` pickled by the fast path; -1 (nothing written) if it can't."""
    cdef _MCText contents, signal
    cdef Py_ssize_t length = _mc_describe(msg, &contents, &signal)
    cdef Py_ssize_t digits, start, size, signed_size
    cdef bint authenticated = key is not None
    cdef char* w
    cdef bytes tag
    if length < 0:
        return -1
    digits = _digit_count(length)
    start = PyByteArray_GET_SIZE(buffer)
    size = _frame_size(length, digits, authenticated)
    PyByteArray_Resize(buffer, start + size)
    w = PyByteArray_AS_STRING(buffer) + start
    memcpy(w, C_AUTH_HEAD if authenticated else C_PLAIN_HEAD, HEAD_SIZE)
    _write_digits(w + HEAD_SIZE, length, digits)
    memcpy(w + HEAD_SIZE + digits, C_SEP, SEP_SIZE)
    _mc_write(w + HEAD_SIZE + digits + SEP_SIZE, length, &contents, &signal)
    signed_size = HEAD_SIZE + digits + SEP_SIZE + length
    if authenticated:
        tag = _tagger(key)(PyMemoryView_FromMemory(w, signed_size, PyBUF_READ))
        w = PyByteArray_AS_STRING(buffer) + start  # (the tagger cannot resize the buffer; be safe)
        memcpy(w + signed_size, PyBytes_AS_STRING(tag), C_TAG_SIZE)
        memcpy(w + signed_size + C_TAG_SIZE, C_AUTH_TRAILER, TRAILER_SIZE)
    else:
        memcpy(w + signed_size, C_PLAIN_TRAILER, TRAILER_SIZE)
    return size


cdef object _mc_dumps(object msg):
    """The pickle of ``msg`` by the fast path, or None when it does not apply."""
    cdef _MCText contents, signal
    cdef Py_ssize_t length = _mc_describe(msg, &contents, &signal)
    cdef bytes out
    if length < 0:
        return None
    out = PyBytes_FromStringAndSize(NULL, length)
    _mc_write(PyBytes_AS_STRING(out), length, &contents, &signal)
    return out


# ----------------------------------------------------------------------------- reading
cdef inline bint _mc_expect(const unsigned char* p, Py_ssize_t end, Py_ssize_t* pos,
                            const char* piece, Py_ssize_t size) noexcept:
    if end - pos[0] < size or memcmp(p + pos[0], piece, size) != 0:
        return False
    pos[0] += size
    return True


cdef inline bint _mc_expect_name(const unsigned char* p, Py_ssize_t end, Py_ssize_t* pos,
                                 bytes name) noexcept:
    """SHORT_BINUNICODE <name> MEMOIZE."""
    cdef Py_ssize_t size = len(name)
    cdef Py_ssize_t at = pos[0]
    if end - at < size + 3 or p[at] != 0x8c or p[at + 1] != size or p[at + 2 + size] != 0x94:
        return False
    if memcmp(p + at + 2, PyBytes_AS_STRING(name), size) != 0:
        return False
    pos[0] = at + size + 3
    return True


cdef object _MC_NOT_TEXT = object()


cdef object _mc_read_text(const unsigned char* p, Py_ssize_t end, Py_ssize_t* pos):
    """Read N or a string opcode + MEMOIZE; _MC_NOT_TEXT if it is something else."""
    cdef Py_ssize_t at = pos[0]
    cdef Py_ssize_t size, start
    cdef unsigned char op
    cdef object text
    if at >= end:
        return _MC_NOT_TEXT
    op = p[at]
    if op == b'N':
        pos[0] = at + 1
        return None
    if op == 0x8c:  # SHORT_BINUNICODE
        if end - at < 2:
            return _MC_NOT_TEXT
        size = p[at + 1]
        start = at + 2
    elif op == b'X':  # BINUNICODE
        if end - at < 5:
            return _MC_NOT_TEXT
        size = p[at + 1] | (p[at + 2] << 8) | (p[at + 3] << 16) | (<Py_ssize_t>p[at + 4] << 24)
        start = at + 5
    else:
        return _MC_NOT_TEXT
    if end - start < size + 1 or p[start + size] != 0x94:
        return _MC_NOT_TEXT
    try:
        text = PyUnicode_DecodeUTF8(<const char*>p + start, size, "surrogatepass")
    except UnicodeDecodeError:  # pickle fails too: let it report the error
        return _MC_NOT_TEXT
    pos[0] = start + size + 1
    return text


cdef object _mc_loads(const unsigned char* p, Py_ssize_t n):
    """The Message pickled in p[:n] when it has exactly the fast path's shape, else None."""
    cdef Py_ssize_t pos = _MC_HEADER_SIZE
    cdef uint64_t body = 0
    cdef object contents, signal, msg, state
    cdef int i
    if not _mc_enabled or n < _MC_HEADER_SIZE or p[0] != 0x80 or (p[1] != 4 and p[1] != 5) or p[2] != 0x95:
        return None
    for i in range(8):
        body |= (<uint64_t>p[3 + i]) << (8 * i)
    if body != <uint64_t>(n - _MC_HEADER_SIZE):
        return None
    if not (_mc_expect_name(p, n, &pos, _MC_MODULE) or _mc_expect_name(p, n, &pos, _MC_LEGACY_MODULE)):
        return None
    if not _mc_expect_name(p, n, &pos, _MC_QUALNAME):
        return None
    if not _mc_expect(p, n, &pos, _MC_NEWOBJ, _MC_NEWOBJ_SIZE):
        return None
    if not _mc_expect(p, n, &pos, _MC_KEY_CONTENTS, _MC_KEY_CONTENTS_SIZE):
        return None
    contents = _mc_read_text(p, n, &pos)
    if contents is _MC_NOT_TEXT or not _mc_expect(p, n, &pos, _MC_KEY_SIGNAL, _MC_KEY_SIGNAL_SIZE):
        return None
    signal = _mc_read_text(p, n, &pos)
    if signal is _MC_NOT_TEXT:
        return None
    if not _mc_expect(p, n, &pos, _MC_END, _MC_END_SIZE) or pos != n:
        return None
    msg = _mc_object_new(_MCMessage)
    state = msg.__dict__
    PyDict_SetItem(state, _MC_CONTENTS, contents)
    PyDict_SetItem(state, _MC_SIGNAL, signal)
    return msg


def _mc_self_check():
    """Enable the fast paths only if they reproduce pickle on this interpreter, byte for byte."""
    global _mc_enabled
    samples = [
        _MCMessage(),
        _MCMessage(contents="a log line", signal="TASK_LOG"),
        _MCMessage(contents="\u00e9t\u00e9 \u2603 " * 40, signal=None),
        _MCMessage(contents="x" * 300, signal="TASK_RESULT"),
    ]
    _mc_enabled = True
    try:
        for sample in samples:
            expected = _pickle_dumps(sample, _protocol)
            if _mc_dumps(sample) != expected:
                _mc_enabled = False
                return False
            decoded = _mc_loads(<const unsigned char*>PyBytes_AS_STRING(expected), len(expected))
            if decoded != sample or type(decoded) is not _MCMessage:
                _mc_enabled = False
                return False
    except Exception:
        _mc_enabled = False
        raise
    return True


_mc_self_check()


def _fast_message_dumps(msg):
    """Test hook: the fast path's pickle of ``msg``, or None when it leaves it to pickle."""
    return _mc_dumps(msg)


def _fast_message_loads(data):
    """Test hook: the Message the fast path reads from ``data``, or None when it leaves it to pickle."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _mc_loads(<const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def _fast_message_enabled():
    """Test hook: whether the import-time self-check enabled the fast paths."""
    return bool(_mc_enabled)
