# Cython twin of lute_ipc/_send_buffer_py.py (the spec): a Task's send buffer, one C call per message.
# Included by _framing.pyx.

from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next
from cpython.ref cimport PyObject
from posix.time cimport clock_gettime, CLOCK_MONOTONIC, timespec
from posix.unistd cimport getpid
from libc.math cimport INFINITY

from lute_ipc import _oob
from lute_ipc import _send_buffer_py as _sb_spec
from lute_ipc.transport import batching as _batching

LARGE = _sb_spec.LARGE
REFUSED = _sb_spec.REFUSED
FORKED = _sb_spec.FORKED

cdef int _SB_FLUSH = _batching.FLUSH
cdef int _SB_SCHEDULE = _batching.SCHEDULE
cdef int _SB_KEEP = _batching.KEEP
cdef int _SB_LARGE = _sb_spec.LARGE
cdef int _SB_REFUSED = _sb_spec.REFUSED
cdef int _SB_FORKED = _sb_spec.FORKED
cdef Py_ssize_t _SB_LARGE_BUFFER = _oob.LARGE_BUFFER
cdef Py_ssize_t _SB_SCAN_ITEMS = _oob._SCAN_ITEMS
cdef object _sb_largest_buffer = _oob.largest_buffer
cdef object _sb_batched = _batching.BATCHED_SIGNALS
cdef object _sb_payload_length = _sb_spec._payload_length
cdef Py_ssize_t _SB_SMALLEST_OVERHEAD = _sb_spec._SMALLEST_OVERHEAD


cdef inline double _sb_now() noexcept:
    """time.monotonic() (CLOCK_MONOTONIC, as CPython reads it on Linux)."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline Py_ssize_t _sb_item_size(object item) noexcept:
    """A plain item's buffer size: 0 for text and numbers, len() for bytes/bytearray; -1: ask _oob."""
    cdef type kind = type(item)
    if kind is str or kind is int or kind is float or kind is bool or item is None or kind is complex:
        return 0
    if kind is bytes:
        return PyBytes_GET_SIZE(item)
    if kind is bytearray:
        return PyByteArray_GET_SIZE(item)
    return -1


cdef Py_ssize_t _sb_largest(object contents) except -1:
    """_oob.largest_buffer(contents), without a Python call for plain items."""
    cdef type kind = type(contents)
    cdef Py_ssize_t largest = 0, size, i, n
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    if kind is dict:
        n = 0
        while n < _SB_SCAN_ITEMS and PyDict_Next(contents, &pos, &key, &value):
            size = _sb_item_size(<object>value)
            if size < 0:
                return _sb_largest_buffer(contents)
            if size > largest:
                largest = size
            n += 1
        return largest
    if kind is list or kind is tuple:
        n = min(len(contents), _SB_SCAN_ITEMS)
        for i in range(n):
            size = _sb_item_size(contents[i])
            if size < 0:
                return _sb_largest_buffer(contents)
            if size > largest:
                largest = size
        return largest
    size = _sb_item_size(contents)
    return _sb_largest_buffer(contents) if size < 0 else size


cdef class SendBuffer:
    """A Task's send buffer with its batching policy (see :class:`lute_ipc._send_buffer_py.SendBuffer`)."""

    cdef public bytearray buffer
    cdef public Py_ssize_t count
    cdef public Py_ssize_t max_message
    cdef public long pid
    cdef readonly Py_ssize_t large
    cdef readonly Py_ssize_t refused
    cdef readonly double flush_interval
    cdef readonly Py_ssize_t flush_size
    cdef readonly double deadline
    cdef double _last_write
    cdef object _key
    cdef object _encode

    def __init__(self, flush_interval=0.0, flush_size=64 * 1024, max_message=DEFAULT_MAX_FRAME_SIZE, *, key=None, encode=None, now=None):
        self._key = _spec._check_key(key)
        self._encode = encode
        self.buffer = bytearray()
        self.count = 0
        self.max_message = max_message
        self.pid = getpid()
        self.large = 0
        self.refused = 0
        self.flush_interval = max(0.0, float(flush_interval))
        self.flush_size = max(1, int(flush_size))
        self.deadline = 0.0
        self._last_write = _sb_now() if now is None else float(now)

    def write_through(self):
        """From now on every message is sent at once (a flush interval of 0)."""
        self.flush_interval = 0.0
        self.deadline = 0.0
        self._last_write = 0.0

    def now(self):
        """The clock the buffer decides with (``time.monotonic()``)."""
        return _sb_now()

    def append(self, msg, peer_limit):
        """Frame ``msg`` into :attr:`buffer`; FLUSH, SCHEDULE, KEEP, LARGE, REFUSED or FORKED."""
        cdef Py_ssize_t large, start, added, limit, length
        cdef bytearray buffer
        cdef object payload
        if getpid() != self.pid:
            return _SB_FORKED
        large = _sb_largest(msg.contents)
        if large >= _SB_LARGE_BUFFER:
            self.large = large
            return _SB_LARGE
        buffer = self.buffer
        start = PyByteArray_GET_SIZE(buffer)
        if self._encode is not None:
            payload = self._encode(msg)
            if type(payload) is not bytes:
                payload = bytes(payload)
            added = _append(buffer, <const unsigned char*>PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                            self._key)
        else:
            added = _mc_append_frame(buffer, msg, self._key)
            if added < 0:
                added = _ev_append_frame(buffer, msg, self._key)
            if added < 0:
                payload = _dumps(msg)
                added = _append(buffer, <const unsigned char*>PyBytes_AS_STRING(payload),
                                PyBytes_GET_SIZE(payload), self._key)
        limit = self.max_message
        if peer_limit is not None and peer_limit and peer_limit < limit:
            limit = peer_limit
        if added - _SB_SMALLEST_OVERHEAD > limit:
            length = _sb_payload_length(buffer, start)
            if length > limit:
                del buffer[start:]
                self.refused = length
                return _SB_REFUSED
        self.count += 1
        return self._decide(_sb_now(), msg.signal, PyByteArray_GET_SIZE(buffer), start == 0)

    cdef int _decide(self, double now, object signal, Py_ssize_t buffered, bint was_empty) except -1:
        cdef double last = self._last_write
        cdef bint batched
        self._last_write = now
        if signal is None:
            batched = True
        elif type(signal) is str:
            batched = signal == "TASK_LOG"
        else:
            batched = signal in _sb_batched
        if not batched or buffered >= self.flush_size or not self.flush_interval:
            return _SB_FLUSH
        if was_empty:
            if now - last >= self.flush_interval:
                return _SB_FLUSH
            self.deadline = now + self.flush_interval
            return _SB_SCHEDULE
        if now >= self.deadline:
            return _SB_FLUSH
        return _SB_KEEP

    def after_append(self, double now, signal, Py_ssize_t buffered, bint was_empty):
        """:meth:`lute_ipc.transport.batching.FlushPolicy.after_append`."""
        return self._decide(now, signal, buffered, was_empty)

    def busy_until(self, double now):
        """:meth:`lute_ipc.transport.batching.FlushPolicy.busy_until`."""
        if now > self._last_write:
            self._last_write = now

    def handed_over(self):
        """:meth:`lute_ipc.transport.batching.FlushPolicy.handed_over`."""
        self._last_write = -INFINITY

    def due(self, double now):
        """:meth:`lute_ipc.transport.batching.FlushPolicy.due`."""
        return now >= self.deadline
