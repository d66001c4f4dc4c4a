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
#
# Its byte pieces and sizes are pickle-layout facts read from lute_ipc.pickle_layout.
# Needs from the includer (_framing.pyx): the compiler directives, and
#   _protocol (int: codec.PICKLE_PROTOCOL), _pickle_dumps (pickle.dumps),
#   _digit_count, _frame_size, _write_head, _write_ending (frame writing helpers), and the
#   cimports of memcmp/memcpy, PyBytes_*/PyByteArray_* and PyObject_GetBuffer/PyBuffer_Release.

from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_CheckExact
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_GET_SIZE
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
cdef bytes _MC_LEGACY_MODULE = _layout.LEGACY_MODULE_BYTES
cdef Py_ssize_t _MC_MODULE_SIZE = len(_MC_MODULE)
cdef Py_ssize_t _MC_QUALNAME_SIZE = len(_MC_QUALNAME)
cdef Py_ssize_t _MC_MAX_BYTES = 0xFFFFFFFF  # BINBYTES' 4-byte length
# utf-8 bytes per text field taken by the fast path: far below pickle's 64 KiB frame target,
# so the whole pickle is one FRAME, as pickle writes it. Longer texts go to pickle.
cdef Py_ssize_t _MC_MAX_TEXT = 16 * 1024
# Set by _mc_self_check(): the fast paths are used only if they reproduce pickle exactly.
cdef bint _mc_enabled = False

# Fixed pieces of the pickle (protocol 4 and 5 write the same opcodes for this shape); the
# bytes objects keep the pointers valid.
cdef bytes _MC_NEWOBJ_BYTES = _layout.MESSAGE_NEWOBJ
cdef const char* _MC_NEWOBJ = _MC_NEWOBJ_BYTES
cdef Py_ssize_t _MC_NEWOBJ_SIZE = len(_MC_NEWOBJ_BYTES)
cdef bytes _MC_KEY_CONTENTS_BYTES = _layout.MESSAGE_KEY_CONTENTS
cdef const char* _MC_KEY_CONTENTS = _MC_KEY_CONTENTS_BYTES
cdef Py_ssize_t _MC_KEY_CONTENTS_SIZE = len(_MC_KEY_CONTENTS_BYTES)
cdef bytes _MC_KEY_SIGNAL_BYTES = _layout.MESSAGE_KEY_SIGNAL
cdef const char* _MC_KEY_SIGNAL = _MC_KEY_SIGNAL_BYTES
cdef Py_ssize_t _MC_KEY_SIGNAL_SIZE = len(_MC_KEY_SIGNAL_BYTES)
cdef bytes _MC_END_BYTES = _layout.MESSAGE_END
cdef const char* _MC_END = _MC_END_BYTES
cdef Py_ssize_t _MC_END_SIZE = len(_MC_END_BYTES)
cdef Py_ssize_t _MC_HEADER_SIZE = _layout.HEADER_SIZE


cdef enum:
    _MC_NONE = 0
    _MC_STR = 1
    _MC_BYTES = 2

# Contents bytes of at least this size: pickle writes them outside its frames (it closes the
# frame before them and opens a new one after), the "split" layout.
cdef Py_ssize_t _MC_FRAME_TARGET = _layout.FRAME_TARGET


cdef struct _MCValue:
    const char* data    # utf-8 text or the bytes' data (NULL for None)
    Py_ssize_t size
    int kind


cdef struct _MCLayout:
    Py_ssize_t total     # size of the whole pickle
    Py_ssize_t head      # bytes before the contents' data (its opcode and length included)
    bint split           # contents bytes stand outside pickle's frames


cdef inline Py_ssize_t _mc_value_size(_MCValue* value) noexcept:
    """Pickled size of one field value: N, or opcode + length + data + MEMOIZE."""
    if value.kind == _MC_NONE:
        return 1
    return (2 if value.size < 256 else 5) + value.size + 1


cdef inline char* _mc_write_u32(char* w, Py_ssize_t size) noexcept:
    w[0] = <char>(size & 0xFF)
    w[1] = <char>((size >> 8) & 0xFF)
    w[2] = <char>((size >> 16) & 0xFF)
    w[3] = <char>((size >> 24) & 0xFF)
    return w + 4


cdef inline char* _mc_write_frame_head(char* w, Py_ssize_t length) noexcept:
    """FRAME <8-byte little-endian length>."""
    cdef int i
    w[0] = b'\x95'
    for i in range(8):
        w[1 + i] = <char>((<uint64_t>length >> (8 * i)) & 0xFF)
    return w + 9


cdef inline char* _mc_write_short(char* w, const char* data, Py_ssize_t size) noexcept:
    w[0] = b'\x8c'
    w[1] = <char>size
    memcpy(w + 2, data, size)
    w[2 + size] = b'\x94'
    return w + 3 + size


cdef inline char* _mc_write_value_head(char* w, _MCValue* value) noexcept:
    """The opcode and length of a value (N for None)."""
    cdef bint short = value.size < 256
    if value.kind == _MC_NONE:
        w[0] = b'N'
        return w + 1
    if value.kind == _MC_STR:
        w[0] = b'\x8c' if short else b'X'
    else:
        w[0] = b'C' if short else b'B'
    if short:
        w[1] = <char>value.size
        return w + 2
    return _mc_write_u32(w + 1, value.size)


cdef inline char* _mc_write_value(char* w, _MCValue* value) noexcept:
    w = _mc_write_value_head(w, value)
    if value.kind != _MC_NONE:
        memcpy(w, value.data, value.size)
        w[value.size] = b'\x94'
        w += value.size + 1
    return w


cdef inline bint _mc_same_text(_MCValue* value, bytes other) noexcept:
    return value.kind == _MC_STR and value.size == len(other) and \
        memcmp(value.data, PyBytes_AS_STRING(other), value.size) == 0


cdef inline bint _mc_may_be_memoized(_MCValue* value) noexcept:
    """True when a text value equals one of the pickle's own strings (keys, class names)."""
    return value.kind == _MC_STR and (
        _mc_same_text(value, b"contents") or _mc_same_text(value, b"signal")
        or _mc_same_text(value, _MC_MODULE) or _mc_same_text(value, _MC_QUALNAME))


cdef int _mc_field(object obj, _MCValue* value, bint bytes_allowed) except -1:
    """Describe one field value; return 0 when the fast path cannot write it."""
    value.data = NULL
    value.size = 0
    if obj is None:
        value.kind = _MC_NONE
        return 1
    if PyUnicode_CheckExact(obj):
        value.kind = _MC_STR
        try:
            value.data = PyUnicode_AsUTF8AndSize(obj, &value.size)
        except UnicodeError:  # lone surrogates: pickle writes them with surrogatepass
            return 0
        return value.size <= _MC_MAX_TEXT
    if bytes_allowed and PyBytes_CheckExact(obj):
        value.kind = _MC_BYTES
        value.data = PyBytes_AS_STRING(obj)
        value.size = PyBytes_GET_SIZE(obj)
        return value.size <= _MC_MAX_BYTES
    return 0


cdef int _mc_describe(object msg, _MCValue* contents, _MCValue* signal, _MCLayout* layout) except -1:
    """Fill ``layout`` and return 1 if the fast path writes ``msg`` exactly as pickle would; 0 if not."""
    cdef PyObject* key
    cdef PyObject* value
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t prefix, tail, body
    cdef dict state
    if not _mc_enabled or type(msg) is not _MCMessage:
        return 0
    state = msg.__dict__
    if PyDict_Size(state) != 2:
        return 0
    PyDict_Next(state, &pos, &key, &value)
    if not (<object>key is _MC_CONTENTS or <object>key == _MC_CONTENTS) or not _mc_field(<object>value, contents, True):
        return 0
    PyDict_Next(state, &pos, &key, &value)
    if not (<object>key is _MC_SIGNAL or <object>key == _MC_SIGNAL) or not _mc_field(<object>value, signal, False):
        return 0
    # pickle memoizes strings by identity: a value that may be the very object of another
    # string of the pickle (a key, the class names, the other field) makes pickle write a memo
    # reference for the later one.
    if _mc_may_be_memoized(contents) or _mc_may_be_memoized(signal):
        return 0
    if contents.kind == _MC_STR and signal.kind == _MC_STR and contents.size == signal.size \
            and memcmp(contents.data, signal.data, signal.size) == 0:
        return 0
    prefix = 3 + _MC_MODULE_SIZE + 3 + _MC_QUALNAME_SIZE + _MC_NEWOBJ_SIZE + _MC_KEY_CONTENTS_SIZE
    tail = _MC_KEY_SIGNAL_SIZE + _mc_value_size(signal) + _MC_END_SIZE
    layout.head = _MC_HEADER_SIZE + prefix + (0 if contents.kind == _MC_NONE else (2 if contents.size < 256 else 5))
    if contents.kind == _MC_BYTES and contents.size >= _MC_FRAME_TARGET:
        # pickle: frame 1 ends before the bytes; they follow unframed; frame 2 holds the rest.
        layout.split = True
        layout.total = layout.head + contents.size + 9 + 1 + tail
        return 1
    layout.split = False
    body = prefix + _mc_value_size(contents) + tail
    if body >= _MC_FRAME_TARGET:
        return 0  # pickle would close its frame somewhere inside: leave it to pickle
    layout.total = _MC_HEADER_SIZE + body
    return 1


cdef char* _mc_write_head(char* w, _MCValue* contents, _MCLayout* layout) noexcept:
    """Write the pickle up to the contents' data (layout.head bytes)."""
    w[0] = b'\x80'
    w[1] = <char>_protocol
    if layout.split:
        w = _mc_write_frame_head(w + 2, layout.head - _MC_HEADER_SIZE - 5)
    else:
        w = _mc_write_frame_head(w + 2, layout.total - _MC_HEADER_SIZE)
    w = _mc_write_short(w, PyBytes_AS_STRING(_MC_MODULE), _MC_MODULE_SIZE)
    w = _mc_write_short(w, PyBytes_AS_STRING(_MC_QUALNAME), _MC_QUALNAME_SIZE)
    memcpy(w, _MC_NEWOBJ, _MC_NEWOBJ_SIZE)
    w += _MC_NEWOBJ_SIZE
    memcpy(w, _MC_KEY_CONTENTS, _MC_KEY_CONTENTS_SIZE)
    return _mc_write_value_head(w + _MC_KEY_CONTENTS_SIZE, contents)


cdef char* _mc_write_tail(char* w, _MCValue* contents, _MCValue* signal, _MCLayout* layout) noexcept:
    """Write the pickle after the contents' data."""
    cdef Py_ssize_t tail = _MC_KEY_SIGNAL_SIZE + _mc_value_size(signal) + _MC_END_SIZE
    if layout.split:
        w = _mc_write_frame_head(w, 1 + tail)
    if contents.kind != _MC_NONE:
        w[0] = b'\x94'
        w += 1
    memcpy(w, _MC_KEY_SIGNAL, _MC_KEY_SIGNAL_SIZE)
    w = _mc_write_value(w + _MC_KEY_SIGNAL_SIZE, signal)
    memcpy(w, _MC_END, _MC_END_SIZE)
    return w + _MC_END_SIZE


cdef void _mc_write(char* w, _MCValue* contents, _MCValue* signal, _MCLayout* layout) noexcept:
    """Write the whole pickle (layout.total bytes) at w."""
    w = _mc_write_head(w, contents, layout)
    if contents.kind != _MC_NONE:
        memcpy(w, contents.data, contents.size)
        w += contents.size
    _mc_write_tail(w, contents, signal, layout)


cdef Py_ssize_t _mc_append_frame(bytearray buffer, object msg, object key) except -2:
    """Append the frame of ``msg`` pickled by the fast path; -1 (nothing written) if it can't."""
    cdef _MCValue contents, signal
    cdef _MCLayout layout
    cdef Py_ssize_t digits, start
    cdef char* w
    cdef char* body
    if not _mc_describe(msg, &contents, &signal, &layout):
        return -1
    digits = _digit_count(layout.total)
    start = PyByteArray_GET_SIZE(buffer)
    PyByteArray_Resize(buffer, start + _frame_size(layout.total, digits, key is not None))
    w = PyByteArray_AS_STRING(buffer) + start
    body = _write_head(w, layout.total, digits, key is not None)
    _mc_write(body, &contents, &signal, &layout)
    return _write_ending(w, (body - w) + layout.total, key)


cdef object _mc_dumps(object msg):
    """The pickle of ``msg`` by the fast path, or None when it does not apply."""
    cdef _MCValue contents, signal
    cdef _MCLayout layout
    cdef bytes out
    if not _mc_describe(msg, &contents, &signal, &layout):
        return None
    out = PyBytes_FromStringAndSize(NULL, layout.total)
    _mc_write(PyBytes_AS_STRING(out), &contents, &signal, &layout)
    return out


def message_pieces(msg):
    """``(pieces, size)``: the pickle of a ``Message`` whose contents are ``bytes``, as
    ``[head, contents, tail]`` whose concatenation is exactly ``pickle.dumps(msg)`` (the
    contents object itself is the middle piece: send it with scatter-gather, never copied);
    ``None`` for any other message (pickle it as usual)."""
    cdef _MCValue contents, signal
    cdef _MCLayout layout
    cdef bytes head, tail
    if not _mc_describe(msg, &contents, &signal, &layout) or contents.kind != _MC_BYTES:
        return None
    head = PyBytes_FromStringAndSize(NULL, layout.head)
    _mc_write_head(PyBytes_AS_STRING(head), &contents, &layout)
    tail = PyBytes_FromStringAndSize(NULL, layout.total - layout.head - contents.size)
    _mc_write_tail(PyBytes_AS_STRING(tail), &contents, &signal, &layout)
    return [head, msg.contents, tail], layout.total


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


cdef object _MC_NOT_VALUE = object()


cdef object _mc_read_value(const unsigned char* p, Py_ssize_t end, Py_ssize_t* pos, bint bytes_allowed,
                           bint split):
    """Read N, or a string (bytes if allowed) opcode + data + MEMOIZE; _MC_NOT_VALUE if it is
    something else. ``split``: bytes of >= 64 KiB followed by FRAME before the MEMOIZE."""
    cdef Py_ssize_t at = pos[0]
    cdef Py_ssize_t size, start, after
    cdef unsigned char op
    cdef uint64_t frame = 0
    cdef object value
    cdef int i
    if at >= end:
        return _MC_NOT_VALUE
    op = p[at]
    if op == b'N' and not split:
        pos[0] = at + 1
        return None
    if (op == 0x8c or op == b'C') and not split:  # SHORT_BINUNICODE, SHORT_BINBYTES
        if end - at < 2:
            return _MC_NOT_VALUE
        size = p[at + 1]
        start = at + 2
    elif op == b'X' or op == b'B':  # BINUNICODE, BINBYTES
        if end - at < 5:
            return _MC_NOT_VALUE
        size = p[at + 1] | (p[at + 2] << 8) | (p[at + 3] << 16) | (<Py_ssize_t>p[at + 4] << 24)
        start = at + 5
    else:
        return _MC_NOT_VALUE
    if (op == b'C' or op == b'B') and not bytes_allowed:
        return _MC_NOT_VALUE
    if split and (op != b'B' or size < _MC_FRAME_TARGET):
        return _MC_NOT_VALUE
    if end - start < size + 1:
        return _MC_NOT_VALUE
    after = start + size
    if split:  # FRAME <length of the rest> before the MEMOIZE
        if end - after < 10 or p[after] != 0x95:
            return _MC_NOT_VALUE
        for i in range(8):
            frame |= (<uint64_t>p[after + 1 + i]) << (8 * i)
        after += 9
        if frame != <uint64_t>(end - after):
            return _MC_NOT_VALUE
    if p[after] != 0x94:
        return _MC_NOT_VALUE
    if op == b'C' or op == b'B':
        value = PyBytes_FromStringAndSize(<const char*>p + start, size)
    else:
        try:
            value = PyUnicode_DecodeUTF8(<const char*>p + start, size, "surrogatepass")
        except UnicodeDecodeError:  # pickle fails too: let it report the error
            return _MC_NOT_VALUE
    pos[0] = after + 1
    return value


cdef object _mc_loads(const unsigned char* p, Py_ssize_t n):
    """The Message pickled in p[:n] when it has exactly the fast path's shape, else None."""
    cdef Py_ssize_t pos = _MC_HEADER_SIZE
    cdef uint64_t body = 0
    cdef bint split
    cdef object contents, signal, msg, state
    cdef int i
    if not _mc_enabled or n < _MC_HEADER_SIZE or p[0] != 0x80 or (p[1] != 4 and p[1] != 5) or p[2] != 0x95:
        return None
    for i in range(8):
        body |= (<uint64_t>p[3 + i]) << (8 * i)
    if body > <uint64_t>(n - _MC_HEADER_SIZE):
        return None
    split = body != <uint64_t>(n - _MC_HEADER_SIZE)  # the first frame ends before large contents
    if not (_mc_expect_name(p, n, &pos, _MC_MODULE) or _mc_expect_name(p, n, &pos, _MC_LEGACY_MODULE)):
        return None
    if not _mc_expect_name(p, n, &pos, _MC_QUALNAME):
        return None
    if not _mc_expect(p, n, &pos, _MC_NEWOBJ, _MC_NEWOBJ_SIZE):
        return None
    if not _mc_expect(p, n, &pos, _MC_KEY_CONTENTS, _MC_KEY_CONTENTS_SIZE):
        return None
    if split and <uint64_t>pos != _MC_HEADER_SIZE + body:
        return None
    contents = _mc_read_value(p, n, &pos, True, split)
    if contents is _MC_NOT_VALUE or not _mc_expect(p, n, &pos, _MC_KEY_SIGNAL, _MC_KEY_SIGNAL_SIZE):
        return None
    signal = _mc_read_value(p, n, &pos, False, False)
    if signal is _MC_NOT_VALUE:
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
        _MCMessage(contents=b"raw \x00 data", signal="TASK_RESULT"),
        _MCMessage(contents=b"y" * 40000, signal=None),
        _MCMessage(contents=b"z" * (_MC_FRAME_TARGET + 10), signal="TASK_RESULT"),
    ]
    _mc_enabled = True
    try:
        for sample in samples:
            expected = _pickle_dumps(sample, _protocol)
            pieces = message_pieces(sample)
            if _mc_dumps(sample) != expected or (pieces is not None and b"".join(pieces[0]) != expected):
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
