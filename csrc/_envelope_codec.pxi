# Included by _framing.pyx after _message_codec.pxi (same directives): the Message envelope
# around contents of any type.
#
# ``Message(contents=<anything>, signal=<str or None>)`` (results, dicts, lists) is pickled
# by pickle as an envelope (the class, NEWOBJ, the state dict, its keys, the signal) around
# the contents' own opcodes. Pickling and unpickling the envelope costs pickle more than the
# contents (class lookup by import, the dataclass reduce). This file writes the envelope
# itself around ``pickle.dumps(contents)`` and, when reading, unpickles only the contents.
#
# It is an optimisation of pickle, not a format: the bytes written are exactly
# ``pickle.dumps(msg, PICKLE_PROTOCOL)`` (checked at import and by the tests), so any peer,
# LUTE included, reads them. In pickle's own output the envelope memoizes six objects (memo
# 0-5) before the contents; the contents pickled alone number their memo from 0. The writer
# walks the contents' opcodes and adds 6 to every memo reference (BINGET, LONG_BINGET); the
# reader lends the contents six placeholder memo entries, so the same references resolve.
# Whatever pickle would write differently is left to pickle:
#   * a memo reference the envelope would make (the contents holding the very module or
#     class name strings, the Message itself, its state dict or keys, or the signal object):
#     refused whenever the contents' pickle contains those names' bytes at all;
#   * a pickle that needs more than one frame (64 KiB or more), or a reference index that
#     would need a longer opcode after the shift.
# The reader takes only contents of plain data (no opcode that imports or calls anything:
# no globals, REDUCE, BUILD, NEWOBJ, persistent ids or out-of-band buffers), walked opcode
# by opcode first: exactly one value, no pop below its start, no STOP, no memo reference
# into the envelope. Anything else, or any error, goes to codec.loads (the one full path);
# what is read is the object pickle.loads would build.
#
# The pure-Python reference of this file is pickle itself. Every name here starts with _ev / _EV.
# Needs from the includer: what _message_codec.pxi needs, and _message_codec.pxi itself.

from libc.string cimport memchr as _ev_memchr
from cpython.bytearray cimport PyByteArray_CheckExact
from cpython.dict cimport PyDict_CheckExact
from cpython.list cimport PyList_CheckExact
from cpython.tuple cimport PyTuple_CheckExact
from cpython.sequence cimport PySequence_Fast_GET_SIZE, PySequence_Fast_GET_ITEM
from cpython.unicode cimport PyUnicode_GET_LENGTH

cdef object _ev_pickle_loads = _pickle.loads
cdef bint _ev_enabled = False

# The pickle grammar (pickle_layout's tables), as C arrays.
cdef unsigned char _EV_ARG_KIND[256]
cdef unsigned char _EV_ARG_SIZE[256]
cdef unsigned char _EV_EFFECT[256]
cdef unsigned char _EV_POPS[256]
cdef unsigned char _EV_PUSHES[256]
cdef unsigned char _EV_BELOW[256]
# Opcodes refused inside the contents, as a mask of the modes (_EV_WRITE, _EV_READ) refusing them.
cdef unsigned char _EV_REFUSED[256]

cdef enum:
    _EV_MEMO_SHIFT = 6     # memo entries of the envelope before the contents
    _EV_MAX_MARKS = 64     # deeper nesting goes to pickle
    _EV_WRITE = 1
    _EV_READ = 2
    _EV_ALWAYS = 3         # _EV_WRITE | _EV_READ

cdef unsigned char _EV_BINGET = _pickle.BINGET[0]
cdef unsigned char _EV_LONG_BINGET = _pickle.LONG_BINGET[0]
cdef unsigned char _EV_STOP_OP = _layout.STOP
cdef bytes _EV_PLACEHOLDERS = bytes((_layout.NONE,)) + bytes((_layout.MEMOIZE,)) * _EV_MEMO_SHIFT + _pickle.POP
cdef bytes _EV_MAIN = b"__main__"
# Grammar constants as C values (the walker's loop must not look up Python attributes).
cdef unsigned char _EV_A_LEN = _layout.A_LEN
cdef unsigned char _EV_S_PLAIN = _layout.S_PLAIN
cdef unsigned char _EV_S_MARK = _layout.S_MARK
cdef unsigned char _EV_S_POPMARK = _layout.S_POPMARK
cdef unsigned char _EV_S_POP = _layout.S_POP
cdef unsigned char _EV_FRAME = _layout.FRAME


cdef _ev_load_tables():
    cdef int i
    cdef bytes op
    for i in range(256):
        _EV_ARG_KIND[i] = _layout.ARG_KIND[i]
        _EV_ARG_SIZE[i] = _layout.ARG_SIZE[i]
        _EV_EFFECT[i] = _layout.EFFECT[i]
        _EV_POPS[i] = _layout.POPS[i]
        _EV_PUSHES[i] = _layout.PUSHES[i]
        _EV_BELOW[i] = _layout.BELOW[i]
        # text-argument (protocol 0) and signed-length opcodes: pickle 4+ writes neither here
        _EV_REFUSED[i] = _EV_ALWAYS if _EV_ARG_KIND[i] in (_layout.A_BAD, _layout.A_LINES, _layout.A_SLEN,
                                                          _layout.A_PROTO) else 0
    for op in (_pickle.FRAME, _pickle.STOP, _pickle.BINPUT, _pickle.LONG_BINPUT, _pickle.NEXT_BUFFER,
               _pickle.READONLY_BUFFER, _pickle.BINPERSID):
        _EV_REFUSED[op[0]] = _EV_ALWAYS
    for op in (_pickle.STACK_GLOBAL, _pickle.EXT1, _pickle.EXT2, _pickle.EXT4, _pickle.REDUCE, _pickle.BUILD,
               _pickle.NEWOBJ, _pickle.NEWOBJ_EX, _pickle.OBJ):
        _EV_REFUSED[op[0]] = _EV_READ


_ev_load_tables()


cdef bint _ev_walk(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end, int mode,
                   unsigned char* patch, Py_ssize_t* gets) noexcept:
    """Walk the opcodes of p[pos:end]: True when they build exactly one value from an empty
    stack, within the rules of ``mode`` (module comment). Counts memo references in *gets;
    when ``patch`` is not NULL, writes each reference shifted by 6 into patch (a copy of
    p[pos:end]) instead."""
    cdef Py_ssize_t depth = 0, start = pos, size, at
    cdef Py_ssize_t marks[_EV_MAX_MARKS]
    cdef Py_ssize_t nmarks = 0, floor, index
    cdef unsigned char op, kind, effect
    cdef int i
    gets[0] = 0
    while pos < end:
        op = p[pos]
        if _EV_REFUSED[op] & mode:
            return False
        kind = _EV_ARG_KIND[op]
        size = _EV_ARG_SIZE[op]
        if kind == _EV_A_LEN:  # little-endian length, then that many bytes
            if end - pos - 1 < size:
                return False
            index = 0
            for i in range(size):
                index |= (<Py_ssize_t>p[pos + 1 + i]) << (8 * i)
            if index < 0 or index > end - pos - 1 - size:
                return False
            size += index
        elif end - pos - 1 < size:
            return False
        if op == _EV_BINGET or op == _EV_LONG_BINGET:
            gets[0] += 1
            index = p[pos + 1] if op == _EV_BINGET else (
                p[pos + 1] | (p[pos + 2] << 8) | (p[pos + 3] << 16) | (<Py_ssize_t>p[pos + 4] << 24))
            if mode == _EV_READ and index < _EV_MEMO_SHIFT:
                return False
            if patch != NULL:
                index += _EV_MEMO_SHIFT
                at = pos - start + 1
                if op == _EV_BINGET:
                    if index > 255:
                        return False  # pickle would write LONG_BINGET
                    patch[at] = <unsigned char>index
                else:
                    patch[at] = index & 0xFF
                    patch[at + 1] = (index >> 8) & 0xFF
                    patch[at + 2] = (index >> 16) & 0xFF
                    patch[at + 3] = (index >> 24) & 0xFF
        floor = marks[nmarks - 1] if nmarks else 0
        effect = _EV_EFFECT[op]
        if effect == _EV_S_PLAIN:
            if depth - floor < _EV_POPS[op]:
                return False
            depth += _EV_PUSHES[op] - _EV_POPS[op]
        elif effect == _EV_S_MARK:
            if nmarks == _EV_MAX_MARKS:
                return False
            marks[nmarks] = depth
            nmarks += 1
        elif effect == _EV_S_POPMARK:
            if nmarks == 0 or depth - floor < _EV_POPS[op]:
                return False
            nmarks -= 1
            if floor - (marks[nmarks - 1] if nmarks else 0) < _EV_BELOW[op]:
                return False
            depth = floor + _EV_PUSHES[op]
        elif effect == _EV_S_POP:
            if depth > floor:
                depth -= 1
            elif nmarks:
                nmarks -= 1
            else:
                return False
        else:
            return False
        pos += 1 + size
    return depth == 1 and nmarks == 0


cdef bint _ev_contains(const unsigned char* p, Py_ssize_t n, const char* needle, Py_ssize_t m) noexcept:
    cdef const unsigned char* hit
    cdef Py_ssize_t pos = 0
    if m == 0:
        return True
    while n - pos >= m:
        hit = <const unsigned char*>_ev_memchr(p + pos, needle[0], n - pos - m + 1)
        if hit == NULL:
            return False
        if memcmp(hit, needle, m) == 0:
            return True
        pos = hit - p + 1
    return False


cdef enum:
    _EV_SCAN_ITEMS = 16    # items of a container looked at by _ev_looks_small


cdef inline Py_ssize_t _ev_known_size(PyObject* obj) noexcept:
    """Bytes of a str, bytes or bytearray (a lower bound of its pickle); 0 for anything else."""
    if PyUnicode_CheckExact(<object>obj):
        return PyUnicode_GET_LENGTH(<object>obj)
    if PyBytes_CheckExact(<object>obj):
        return PyBytes_GET_SIZE(<object>obj)
    if PyByteArray_CheckExact(<object>obj):
        return PyByteArray_GET_SIZE(<object>obj)
    return 0


cdef bint _ev_looks_small(object contents) noexcept:
    """False when the contents or one of their first items is a string or buffer so large that
    pickle would need a second frame: then pickling the contents alone would be wasted work."""
    cdef Py_ssize_t total = _ev_known_size(<PyObject*>contents), pos = 0, i, n
    cdef PyObject* key
    cdef PyObject* value
    if PyDict_CheckExact(contents):
        i = 0
        while i < _EV_SCAN_ITEMS and PyDict_Next(contents, &pos, &key, &value):
            total += _ev_known_size(key) + _ev_known_size(value)
            i += 1
    elif PyList_CheckExact(contents) or PyTuple_CheckExact(contents):
        n = PySequence_Fast_GET_SIZE(contents)
        for i in range(min(n, _EV_SCAN_ITEMS)):
            total += _ev_known_size(PySequence_Fast_GET_ITEM(contents, i))
    return total < _MC_FRAME_TARGET


cdef struct _EVLayout:
    const unsigned char* region   # the contents' opcodes in their own pickle
    Py_ssize_t size               # their length
    Py_ssize_t gets               # memo references among them
    Py_ssize_t total              # size of the Message's whole pickle


cdef object _ev_describe(object msg, _MCValue* signal, _EVLayout* layout):
    """The pickle of ``msg``'s contents (kept alive by the caller while ``layout`` is used)
    when the envelope writes ``msg`` exactly as pickle would, else None."""
    cdef PyObject* key
    cdef PyObject* value
    cdef PyObject* contents
    cdef Py_ssize_t pos = 0, n, start, body
    cdef const unsigned char* p
    cdef dict state
    cdef bytes data
    if not _ev_enabled or type(msg) is not _MCMessage:
        return None
    state = msg.__dict__
    if PyDict_Size(state) != 2:
        return None
    PyDict_Next(state, &pos, &key, &contents)
    if not (<object>key is _MC_CONTENTS or <object>key == _MC_CONTENTS):
        return None
    PyDict_Next(state, &pos, &key, &value)
    if not (<object>key is _MC_SIGNAL or <object>key == _MC_SIGNAL) or not _mc_field(<object>value, signal, False):
        return None
    if _mc_may_be_memoized(signal) or not _ev_looks_small(<object>contents):
        return None
    try:
        data = _pickle_dumps(<object>contents, _protocol)
    except Exception:  # codec.dumps pickles the whole message again and reports the error
        return None
    p = <const unsigned char*>PyBytes_AS_STRING(data)
    n = PyBytes_GET_SIZE(data)
    start = _MC_HEADER_SIZE if n > _MC_HEADER_SIZE and p[2] == _EV_FRAME else 2
    layout.region = p + start
    layout.size = n - 1 - start
    body = 3 + _MC_MODULE_SIZE + 3 + _MC_QUALNAME_SIZE + _MC_NEWOBJ_SIZE + _MC_KEY_CONTENTS_SIZE + layout.size \
        + _MC_KEY_SIGNAL_SIZE + _mc_value_size(signal) + _MC_END_SIZE
    if body >= _MC_FRAME_TARGET:
        return None  # pickle would close its frame somewhere inside: leave it to pickle
    layout.total = _MC_HEADER_SIZE + body
    # names pickle may write as a reference to the envelope's memo; __main__: codec.dumps refuses it
    if _ev_contains(layout.region, layout.size, PyBytes_AS_STRING(_MC_QUALNAME), _MC_QUALNAME_SIZE) \
            or _ev_contains(layout.region, layout.size, PyBytes_AS_STRING(_MC_MODULE), _MC_MODULE_SIZE) \
            or _ev_contains(layout.region, layout.size, b"contents", 8) \
            or _ev_contains(layout.region, layout.size, b"signal", 6) \
            or _ev_contains(layout.region, layout.size, PyBytes_AS_STRING(_EV_MAIN), 8) \
            or (signal.kind == _MC_STR and _ev_contains(layout.region, layout.size, signal.data, signal.size)):
        return None
    if not _ev_walk(layout.region, 0, layout.size, _EV_WRITE, NULL, &layout.gets):
        return None
    return data


cdef void _ev_write(char* w, _MCValue* signal, _EVLayout* layout) noexcept:
    """Write the whole pickle (layout.total bytes) at w."""
    cdef Py_ssize_t gets
    w[0] = b'\x80'
    w[1] = <char>_protocol
    w = _mc_write_frame_head(w + 2, layout.total - _MC_HEADER_SIZE)
    w = _mc_write_short(w, PyBytes_AS_STRING(_MC_MODULE), _MC_MODULE_SIZE)
    w = _mc_write_short(w, PyBytes_AS_STRING(_MC_QUALNAME), _MC_QUALNAME_SIZE)
    memcpy(w, _MC_NEWOBJ, _MC_NEWOBJ_SIZE)
    w += _MC_NEWOBJ_SIZE
    memcpy(w, _MC_KEY_CONTENTS, _MC_KEY_CONTENTS_SIZE)
    w += _MC_KEY_CONTENTS_SIZE
    memcpy(w, layout.region, layout.size)
    if layout.gets:
        _ev_walk(layout.region, 0, layout.size, _EV_WRITE, <unsigned char*>w, &gets)
    w += layout.size
    memcpy(w, _MC_KEY_SIGNAL, _MC_KEY_SIGNAL_SIZE)
    w = _mc_write_value(w + _MC_KEY_SIGNAL_SIZE, signal)
    memcpy(w, _MC_END, _MC_END_SIZE)


cdef bint _ev_shift_fits(_EVLayout* layout) noexcept:
    """False when a shifted memo reference would need LONG_BINGET (then pickle writes it)."""
    cdef unsigned char scratch_small[256]
    cdef unsigned char* scratch
    cdef Py_ssize_t gets
    cdef bint ok
    if not layout.gets:
        return True
    if layout.size <= 256:
        scratch = scratch_small
    else:
        scratch = <unsigned char*>PyMem_Malloc(layout.size)
    if scratch == NULL:
        return False
    ok = _ev_walk(layout.region, 0, layout.size, _EV_WRITE, scratch, &gets)
    if scratch != scratch_small:
        PyMem_Free(scratch)
    return ok


cdef Py_ssize_t _ev_append_frame(bytearray buffer, object msg, object key) except -2:
    """Append the frame of ``msg`` written by the envelope; -1 (nothing written) if it can't."""
    cdef _MCValue signal
    cdef _EVLayout layout
    cdef Py_ssize_t digits, start
    cdef char* w
    cdef char* body
    cdef object data = _ev_describe(msg, &signal, &layout)
    if data is None or not _ev_shift_fits(&layout):
        return -1
    digits = _digit_count(layout.total)
    start = PyByteArray_GET_SIZE(buffer)
    PyByteArray_Resize(buffer, start + _frame_size(layout.total, digits, key is not None))
    w = PyByteArray_AS_STRING(buffer) + start
    body = _write_head(w, layout.total, digits, key is not None)
    _ev_write(body, &signal, &layout)
    return _write_ending(w, (body - w) + layout.total, key)


cdef object _ev_dumps(object msg):
    """The pickle of ``msg`` written by the envelope, or None when it does not apply."""
    cdef _MCValue signal
    cdef _EVLayout layout
    cdef bytes out
    cdef object data = _ev_describe(msg, &signal, &layout)
    if data is None or not _ev_shift_fits(&layout):
        return None
    out = PyBytes_FromStringAndSize(NULL, layout.total)
    _ev_write(PyBytes_AS_STRING(out), &signal, &layout)
    return out


# ----------------------------------------------------------------------------- reading
cdef Py_ssize_t _ev_signal_start(const unsigned char* p, Py_ssize_t begin, Py_ssize_t n) noexcept:
    """Where ``KEY_SIGNAL <N or short str> MESSAGE_END`` starts at the end of p[begin:n], or -1."""
    cdef Py_ssize_t value_end = n - _MC_END_SIZE, size, key
    if value_end - begin < 1 or memcmp(p + value_end, _MC_END, _MC_END_SIZE) != 0:
        return -1
    if p[value_end - 1] == b'N':
        key = value_end - 1 - _MC_KEY_SIGNAL_SIZE
        if key >= begin and memcmp(p + key, _MC_KEY_SIGNAL, _MC_KEY_SIGNAL_SIZE) == 0:
            return key
        return -1
    if p[value_end - 1] != 0x94:
        return -1
    for size in range(256):  # SHORT_BINUNICODE <size> <text> MEMOIZE
        key = value_end - 1 - size - 2 - _MC_KEY_SIGNAL_SIZE
        if key < begin:
            return -1
        if p[key + _MC_KEY_SIGNAL_SIZE] == 0x8c and p[key + _MC_KEY_SIGNAL_SIZE + 1] == size \
                and memcmp(p + key, _MC_KEY_SIGNAL, _MC_KEY_SIGNAL_SIZE) == 0:
            return key
    return -1


cdef object _ev_loads(const unsigned char* p, Py_ssize_t n):
    """The Message pickled in p[:n] when it is an envelope around plain-data contents, else None."""
    cdef Py_ssize_t pos = _MC_HEADER_SIZE, key, gets, size, skip
    cdef uint64_t body = 0
    cdef object contents, signal, msg, state
    cdef bytes piece
    cdef char* w
    cdef int i
    if not _ev_enabled or n < _MC_HEADER_SIZE or p[0] != 0x80 or (p[1] != 4 and p[1] != 5) or p[2] != 0x95:
        return None
    for i in range(8):
        body |= (<uint64_t>p[3 + i]) << (8 * i)
    if body != <uint64_t>(n - _MC_HEADER_SIZE):
        return None  # several frames (large contents): pickle reads them
    if not (_mc_expect_name(p, n, &pos, _MC_MODULE) or _mc_expect_name(p, n, &pos, _MC_LEGACY_MODULE)):
        return None
    if not _mc_expect_name(p, n, &pos, _MC_QUALNAME) or not _mc_expect(p, n, &pos, _MC_NEWOBJ, _MC_NEWOBJ_SIZE) \
            or not _mc_expect(p, n, &pos, _MC_KEY_CONTENTS, _MC_KEY_CONTENTS_SIZE):
        return None
    key = _ev_signal_start(p, pos, n)
    if key < 0 or not _ev_walk(p, pos, key, _EV_READ, NULL, &gets):
        return None
    skip = key + _MC_KEY_SIGNAL_SIZE
    signal = _mc_read_value(p, n, &skip, False, False)
    if signal is _MC_NOT_VALUE or skip != n - _MC_END_SIZE:
        return None
    # the contents alone: six placeholder memo entries when they refer to the memo, then STOP
    size = key - pos
    piece = PyBytes_FromStringAndSize(NULL, size + 1 + (len(_EV_PLACEHOLDERS) if gets else 0))
    w = PyBytes_AS_STRING(piece)
    if gets:
        memcpy(w, PyBytes_AS_STRING(_EV_PLACEHOLDERS), len(_EV_PLACEHOLDERS))
        w += len(_EV_PLACEHOLDERS)
    memcpy(w, p + pos, size)
    w[size] = <char>_EV_STOP_OP
    try:
        contents = _ev_pickle_loads(piece)
    except Exception:  # codec.loads reads the whole pickle again and reports pickle's error
        return None
    msg = _mc_object_new(_MCMessage)
    state = msg.__dict__
    PyDict_SetItem(state, _MC_CONTENTS, contents)
    PyDict_SetItem(state, _MC_SIGNAL, signal)
    return msg


def _ev_self_check():
    """Enable the envelope only if it reproduces pickle on this interpreter, byte for byte."""
    global _ev_enabled
    shared = ["x" * 10]
    samples = [
        _MCMessage(contents={"i": 1, "v": "x" * 40}),
        _MCMessage(contents=[1, 2.5, None, True, (3, "four"), {5: b"six"}], signal="TASK_RESULT"),
        _MCMessage(contents={"a": shared, "b": shared, "k": [{"n": 1}, {"n": 2}]}, signal="TASK_LOG"),
        _MCMessage(contents=12345678901234567890, signal=None),
        _MCMessage(contents=frozenset({1}), signal="TASK_RESULT"),
    ]
    _ev_enabled = True
    try:
        for sample in samples:
            expected = _pickle_dumps(sample, _protocol)
            if _ev_dumps(sample) != expected:
                _ev_enabled = False
                return False
            decoded = _ev_loads(<const unsigned char*>PyBytes_AS_STRING(expected), len(expected))
            if decoded != sample or type(decoded) is not _MCMessage:
                _ev_enabled = False
                return False
    except Exception:
        _ev_enabled = False
        raise
    return True


_ev_self_check()


def _envelope_dumps(msg):
    """Test hook: the envelope's pickle of ``msg``, or None when it leaves it to pickle."""
    return _ev_dumps(msg)


def _envelope_loads(data):
    """Test hook: the Message the envelope reads from ``data``, or None when it leaves it to pickle."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _ev_loads(<const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def _envelope_enabled():
    """Test hook: whether the import-time self-check enabled the envelope."""
    return bool(_ev_enabled)
