"""The restricted unpickler: decodes data from peers that are not trusted, safe by construction.

pickle is a small stack machine whose dangerous instructions are few: the ones that *call*
something (``REDUCE``, ``NEWOBJ``, ``NEWOBJ_EX``, ``OBJ``, ``INST``), the one that *sets
attributes* (``BUILD``), the ones that call a container's methods (``APPEND(S)``,
``SETITEM(S)``, ``ADDITEMS``) and the ones that name globals. :class:`RestrictedUnpickler`
runs pickle's own pure-Python machine with exactly those instructions replaced:

* a global resolves only when it is on the allow-list (:data:`DEFAULT_CONSTRUCTORS`, extra
  ``(module, name)`` pairs, or a class defined in a module under an allowed prefix);
* a call runs only for an allowed callable, through its *constructor*: a function that checks
  the argument types and sizes (and charges the payload's :class:`Budget`) before anything
  runs. A callable without a constructor (``list``, ``range``'s result, a class used as a
  value...) is never called;
* ``BUILD`` applies only to an *instance* of an allowed class (never to a class, a module or a
  function), with a dict state of ``str`` keys; slot state may not name dunder attributes;
* containers are filled only when they are exactly ``list``, ``dict``, ``set`` or one of the
  allowed ``collections`` mappings, through the type's own method;
* numpy arrays are rebuilt from their raw bytes through a dtype check (no object dtype, no
  structured or datetime dtype); numpy's own ``__setstate__`` never sees the pickle's state.

Every refusal raises a :class:`~lute_ipc.errors.RestrictedRefusal` (a
``pickle.UnpicklingError``); the frame decoder and the pipe splitter report it as the
payload's :class:`~lute_ipc.errors.PayloadError` and go on with the next payload.

Pure: no I/O, no global state changed after import (numpy is imported only when a payload
names it).
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import importlib
import io
import pickle
import struct
import sys
import types
import uuid
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from . import message as _message
from . import pickle_layout as _layout
from .errors import (
    BudgetExceeded,
    ForbiddenBuild,
    ForbiddenCall,
    ForbiddenClass,
    UsageError,
)
from .pickle_layout import LEGACY_MODULE, MIRRORED_NAMES

__all__ = ["Budget", "DEFAULT_BUDGET", "RestrictedUnpickler", "DEFAULT_ALLOWED_GLOBALS", "Policy", "make_policy"]

Buffer = Union[bytes, bytearray, memoryview]
AllowedItem = Union[Tuple[str, str], type]


@dataclass(frozen=True)
class Budget:
    """What one payload may cost the decoder; exceeding any limit refuses the payload.

    Attributes:
        max_bytes: bytes of text, bytes, bytearray and array data made while decoding.
        max_items: container items made (list/tuple/dict/set entries, constructor outputs
            and range lengths; a numpy array's numeric elements cost their bytes, not items).
        max_digits: decimal digits of any number: integers (also binary ones, converted at
            log2(10) bits per digit), and the digits and exponent of ``Decimal``/``Fraction``
            strings (pickle writes both as text).
    """

    max_bytes: int = 256 * 1024 * 1024
    max_items: int = 4 * 1024 * 1024
    max_digits: int = 4300


DEFAULT_BUDGET = Budget()
"""The budget of :func:`lute_ipc.codec.restricted_loads`."""

_BITS_PER_DIGIT = 3.3219280948873626  # log2(10)

_UNSEEN = object()
_MAX_COLLISIONS = 32
"""Distinct set members/dict keys of one payload that may share a hash value."""

_CONTAINER_OVERHEAD = 64
"""Bytes charged for a container on top of its empty size (allocator, GC and reference overhead)."""
_CONTAINER_BYTES: Dict[type, int] = {
    kind: sys.getsizeof(kind()) + _CONTAINER_OVERHEAD
    for kind in (list, tuple, dict, set, frozenset, collections.deque, collections.OrderedDict,
                 collections.Counter, collections.defaultdict)
}
"""What :meth:`_Spend.add_container` charges to ``max_bytes`` for each container kind."""


class _Spend:
    """The running costs of one payload against its :class:`Budget`."""

    __slots__ = ("budget", "bytes", "items", "max_int_bits", "_hashes", "_collisions")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.bytes = 0
        self.items = 0
        self.max_int_bits = int(budget.max_digits * _BITS_PER_DIGIT) + 1
        self._hashes: Dict[int, Any] = {}  # hash -> first set member/dict key seen with it
        self._collisions: Dict[int, List[Any]] = {}  # hash -> later distinct keys with it

    def check_keys(self, keys: Iterable[Any]) -> None:
        """Refuse set members/dict keys of which too many distinct ones share one hash.

        ``str`` and ``bytes`` hashes are randomised; others (int, float, tuple...) are not,
        and N keys with equal hashes cost O(N**2) to insert (hash flooding). Call before
        inserting; at most ``_MAX_COLLISIONS`` distinct keys of the payload may share a hash.
        """
        hashes = self._hashes
        for key in keys:
            kind = type(key)
            if kind is str or kind is bytes:
                continue
            value = hash(key)
            first = hashes.get(value, _UNSEEN)
            if first is _UNSEEN:
                hashes[value] = key
                continue
            if first is key or first == key:
                continue
            later = self._collisions.setdefault(value, [])
            if any(other is key or other == key for other in later):
                continue
            later.append(key)
            if len(later) >= _MAX_COLLISIONS:
                raise BudgetExceeded(f"more than {_MAX_COLLISIONS} distinct set members/dict keys share one "
                                     "hash value (hash flooding)")

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.budget.max_bytes:
            raise BudgetExceeded(f"payload makes more than max_bytes={self.budget.max_bytes} bytes of data")

    def add_items(self, count: int) -> None:
        self.items += count
        if self.items > self.budget.max_items:
            raise BudgetExceeded(f"payload makes more than max_items={self.budget.max_items} items")

    def add_container(self, kind: type) -> None:
        """Charge one container made: one item, and its empty size plus overhead as bytes."""
        self.add_items(1)
        self.add_bytes(_CONTAINER_BYTES.get(kind, _CONTAINER_OVERHEAD))

    def check_bytes(self, count: int) -> None:
        """Refuse, before allocating, data of ``count`` bytes the budget cannot pay for."""
        if count > self.budget.max_bytes - self.bytes:
            raise BudgetExceeded(f"payload makes more than max_bytes={self.budget.max_bytes} bytes of data")

    def check_int(self, value: Any) -> None:
        if type(value) is int and value.bit_length() > self.max_int_bits:
            raise BudgetExceeded(f"integer of {value.bit_length()} bits exceeds max_digits={self.budget.max_digits}")

    def check_digits(self, count: int, what: str) -> None:
        if count > self.budget.max_digits:
            raise BudgetExceeded(f"{what} of {count} digits exceeds max_digits={self.budget.max_digits}")


# --------------------------------------------------------------------------- argument checks
def _refuse(name: str, args: Tuple[Any, ...]) -> ForbiddenCall:
    kinds = ", ".join(type(arg).__name__ for arg in args)
    return ForbiddenCall(f"restricted unpickler refuses {name}({kinds})")


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_small_int(value: Any, bound: int = 1 << 63) -> bool:
    return type(value) is int and -bound <= value < bound


def _check_number_text(text: Any, spend: _Spend, what: str) -> decimal.Decimal:
    """A Decimal-syntax string within the digit budget: its digits and its exponent."""
    if type(text) is not str or len(text) > 2 * spend.budget.max_digits + 64:
        raise ForbiddenCall(f"restricted unpickler refuses {what} text of type {type(text).__name__} "
                            f"or of {len(text) if isinstance(text, str) else '?'} characters")
    try:
        number = decimal.Decimal(text)  # linear in the text; no arithmetic yet
    except decimal.InvalidOperation:
        raise ForbiddenCall(f"restricted unpickler refuses {what}({text[:40]!r})") from None
    if number.is_finite():
        _, digits, exponent = number.as_tuple()
        spend.check_digits(len(digits), what)
        spend.check_digits(abs(int(exponent)), f"{what} exponent")
    return number


Constructor = Callable[[Any, Tuple[Any, ...], _Spend], Any]
"""``(target, args, spend) -> object``: checks ``args`` then builds the object."""


def _no_args(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if args:
        raise _refuse(getattr(target, "__name__", "?"), args)
    return target.__new__(target)


def _bytes_like(value: Any) -> bool:
    return type(value) is bytes or type(value) is bytearray


_LATIN1 = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1"})


def _make_bytes(kind: type) -> Constructor:
    def construct(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and _bytes_like(args[0]):
            spend.add_bytes(len(args[0]))
            return kind(args[0])
        if len(args) == 2 and type(args[0]) is str and type(args[1]) is str and args[1].lower() in _LATIN1:
            spend.add_bytes(len(args[0]))
            return kind(args[0], "latin-1")
        raise _refuse(kind.__name__, args)  # bytes(<int>), bytearray(numpy.int64(n)): memory bombs

    return construct


def _codecs_encode(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    # pickle protocol < 3 writes bytes as _codecs.encode(<latin-1 text>, "latin1").
    if len(args) == 2 and type(args[0]) is str and type(args[1]) is str and args[1].lower() in _LATIN1:
        spend.add_bytes(len(args[0]))
        return args[0].encode("latin-1")
    raise _refuse("_codecs.encode", args)


def _sequence_arg(args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) == 1 and type(args[0]) in (list, tuple):
        spend.add_items(len(args[0]))
        return args[0]
    return None


def _make_set(kind: type) -> Constructor:
    def construct(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
        if not args:
            return kind()
        items = _sequence_arg(args, spend)
        if items is None:
            raise _refuse(kind.__name__, args)
        spend.check_keys(items)
        return kind(items)

    return construct


def _complex(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) <= 2 and all(type(arg) is float or _is_int(arg) for arg in args):
        for arg in args:
            spend.check_int(arg)
        return complex(*args)
    raise _refuse("complex", args)


def _range(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if 1 <= len(args) <= 3 and all(_is_int(arg) for arg in args):
        for arg in args:
            spend.check_int(arg)
        value = range(*args)
        spend.add_items(len(value))  # whatever the consumer later does with it stays in budget
        return value
    raise _refuse("range", args)


def _slice(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if 1 <= len(args) <= 3 and all(arg is None or _is_int(arg) for arg in args):
        for arg in args:
            spend.check_int(arg)
        return slice(*args)
    raise _refuse("slice", args)


def _object(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if args:
        raise _refuse("object", args)
    return object()


def _ordered_dict(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if not args:
        return collections.OrderedDict()
    items = _sequence_arg(args, spend)
    if items is None or not all(type(pair) in (list, tuple) and len(pair) == 2 for pair in items):
        raise _refuse("OrderedDict", args)
    spend.check_keys(pair[0] for pair in items)
    return collections.OrderedDict(items)


def _deque(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if not args:
        return collections.deque()
    if 1 <= len(args) <= 2 and type(args[0]) in (list, tuple) and (len(args) == 1 or args[1] is None
                                                                   or _is_small_int(args[1], 1 << 62)):
        spend.add_items(len(args[0]))
        return collections.deque(*args)
    raise _refuse("deque", args)


def _counter(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if not args:
        return collections.Counter()
    if len(args) == 1 and type(args[0]) is dict:
        spend.add_items(len(args[0]))
        return collections.Counter(args[0])
    raise _refuse("Counter", args)


_FACTORIES: FrozenSet[Any] = frozenset({int, float, complex, str, bytes, bytearray, bool, list, tuple, dict, set,
                                        frozenset, collections.OrderedDict, collections.deque, collections.Counter,
                                        collections.defaultdict})


def _defaultdict(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if not args or (len(args) == 1 and (args[0] is None or args[0] in _FACTORIES)):
        return collections.defaultdict(*args)
    raise _refuse("defaultdict", args)


def _make_datetime(kind: type, state_sizes: Tuple[int, ...]) -> Constructor:
    """date/time/datetime: pickled as (state bytes[, tzinfo]); or small ints as fields."""

    def construct(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
        if 1 <= len(args) <= 2 and type(args[0]) in (bytes, str) and len(args[0]) in state_sizes \
                and (len(args) == 1 or args[1] is None or isinstance(args[1], datetime.tzinfo)):
            return kind(*args)
        if 1 <= len(args) <= 8 and all(_is_small_int(arg, 1 << 31) for arg in args[:7]) \
                and (len(args) < 8 or args[7] is None or isinstance(args[7], datetime.tzinfo)):
            return kind(*args)
        raise _refuse(kind.__name__, args)

    return construct


def _timedelta(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) <= 3 and all(_is_small_int(arg, 1 << 40) for arg in args):
        return datetime.timedelta(*args)
    raise _refuse("timedelta", args)


def _timezone(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if 1 <= len(args) <= 2 and type(args[0]) is datetime.timedelta \
            and (len(args) == 1 or (type(args[1]) is str and len(args[1]) <= 256)):
        return datetime.timezone(*args)
    raise _refuse("timezone", args)


def _decimal(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) == 1:
        return _check_number_text(args[0], spend, "Decimal")
    raise _refuse("Decimal", args)


def _fraction(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) == 1 and type(args[0]) is str:
        text = args[0]
        if "/" in text:
            numerator, _, denominator = text.partition("/")
            for part in (numerator, denominator):
                if not part.strip().lstrip("+-").replace("_", "").isdigit():
                    raise _refuse("Fraction", args)
                spend.check_digits(len(part.strip()), "Fraction")
        else:
            _check_number_text(text, spend, "Fraction")  # '1e6000000' would cost seconds
        return fractions.Fraction(text)
    if 1 <= len(args) <= 2 and all(_is_int(arg) for arg in args):
        for arg in args:
            spend.check_int(arg)
        return fractions.Fraction(*args)
    raise _refuse("Fraction", args)


def _enum_value(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    """An Enum member by value (how pickle writes enums)."""
    if len(args) == 1 and type(args[0]) in (str, int, float, bool, type(None)):
        spend.check_int(args[0])
        return target(args[0])
    raise _refuse(getattr(target, "__qualname__", "enum"), args)


# ------------------------------------------------------------------- numpy, dtype-checked
_DTYPE_KINDS = frozenset("biufcSUV?")  # no 'O' (objects), no 'M'/'m' (datetime: metadata state)


class _PendingDtype:
    """A numpy dtype being rebuilt: ``dtype(<typestr>, align, copy)`` waits for its BUILD state."""

    __slots__ = ("typestr",)

    def __init__(self, typestr: str) -> None:
        self.typestr = typestr

    def finish(self, state: Any, spend: _Spend) -> Any:
        import numpy

        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if type(state) is not tuple or not 8 <= len(state) <= 9 or state[0] not in (3, 4):
            raise ForbiddenBuild("numpy dtype state has an unknown layout")
        byteorder, subarray, names, fields, elsize = state[1], state[2], state[3], state[4], state[5]
        if byteorder not in ("<", ">", "|", "=") or subarray is not None or names is not None or fields is not None:
            raise ForbiddenBuild("restricted unpickler rebuilds only plain numpy dtypes (no fields, no subarray)")
        if len(state) == 9 and state[8] not in (None, {}):
            raise ForbiddenBuild("numpy dtype metadata is refused")
        dtype = numpy.dtype(self.typestr)
        if byteorder in "<>" and dtype.byteorder != "|":
            dtype = dtype.newbyteorder(byteorder)
        if not _is_int(elsize) or elsize not in (-1, dtype.itemsize):
            raise ForbiddenBuild("numpy dtype state gives another item size than its type")
        if state[7] != dtype.flags:  # e.g. a flag claiming Python objects in plain bytes
            raise ForbiddenBuild("numpy dtype state gives other flags than its type has")
        return dtype


def _dtype(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if 1 <= len(args) <= 3 and type(args[0]) is str and len(args[0]) <= 16:
        typestr = args[0].lstrip("<>|=")
        if typestr[:1] in _DTYPE_KINDS and (typestr[1:].isdigit() or typestr[1:] == ""):
            return _PendingDtype(args[0])
    raise _refuse("numpy.dtype", args)


def _check_dtype(dtype: Any) -> None:
    import numpy

    if not isinstance(dtype, numpy.dtype):
        raise ForbiddenCall("numpy array with a dtype the restricted unpickler did not rebuild")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in _DTYPE_KINDS:
        raise ForbiddenCall(f"restricted unpickler refuses numpy dtype {dtype}")


def _array_from(raw: Any, dtype: Any, shape: Any, fortran: bool, spend: _Spend) -> Any:
    import numpy

    _check_dtype(dtype)
    if not _bytes_like(raw) or type(shape) is not tuple or not all(_is_small_int(n) and n >= 0 for n in shape):
        raise ForbiddenCall("numpy array state must be raw bytes and a shape of non-negative ints")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(raw):
        raise ForbiddenCall("numpy array data does not match its shape and dtype")
    spend.add_bytes(len(raw))  # numeric elements are not objects: their bytes are the cost
    flat = numpy.frombuffer(raw, dtype=dtype)
    if type(raw) is bytes:
        flat = flat.copy()  # pickle's arrays own writable data
    return flat.reshape(shape, order="F" if fortran else "C")


class _PendingArray:
    """A numpy array being rebuilt: ``_reconstruct(ndarray, (0,), b'b')`` waits for its BUILD state."""

    __slots__ = ()

    def finish(self, state: Any, spend: _Spend) -> Any:
        # (version, shape, dtype, is_fortran, raw data)
        if type(state) is not tuple or len(state) != 5 or state[0] != 1 or type(state[3]) is not bool:
            raise ForbiddenBuild("numpy array state has an unknown layout")
        return _array_from(state[4], state[2], state[1], state[3], spend)


def _is_ndarray(value: Any) -> bool:
    return getattr(value, "__module__", None) == "numpy" and getattr(value, "__name__", None) == "ndarray"


def _reconstruct(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) == 3 and _is_ndarray(args[0]) and args[1] == (0,) and args[2] in (b"b", "b"):
        return _PendingArray()
    raise _refuse("numpy _reconstruct", args)


def _frombuffer(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) == 4 and args[3] in ("C", "F", "A"):
        return _array_from(args[0], args[1], args[2], args[3] == "F", spend)
    raise _refuse("numpy _frombuffer", args)


def _scalar(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    if len(args) == 2 and _bytes_like(args[1]):
        _check_dtype(args[0])
        if len(args[1]) != args[0].itemsize:
            raise ForbiddenCall("numpy scalar data does not match its dtype")
        import numpy

        return numpy.frombuffer(args[1], dtype=args[0])[0]
    raise _refuse("numpy scalar", args)


def _numpy_entries() -> Dict[Tuple[str, str], Constructor]:
    entries: Dict[Tuple[str, str], Constructor] = {}
    for core in ("numpy.core", "numpy._core"):
        entries[(core + ".multiarray", "_reconstruct")] = _reconstruct
        entries[(core + ".multiarray", "scalar")] = _scalar
        entries[(core + ".numeric", "_frombuffer")] = _frombuffer
    entries[("numpy", "dtype")] = _dtype
    entries[("numpy", "ndarray")] = _value_only
    return entries


def _value_only(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    raise _refuse(getattr(target, "__qualname__", "?"), args)


# --------------------------------------------------------------------------- the allow-list
DEFAULT_CONSTRUCTORS: Mapping[Tuple[str, str], Constructor] = {
    **{("builtins", name): _value_only for name in ("bool", "int", "float", "str", "list", "tuple", "dict")},
    ("builtins", "complex"): _complex,
    ("builtins", "bytes"): _make_bytes(bytes),
    ("builtins", "bytearray"): _make_bytes(bytearray),
    ("builtins", "set"): _make_set(set),
    ("builtins", "frozenset"): _make_set(frozenset),
    ("builtins", "range"): _range,
    ("builtins", "slice"): _slice,
    ("builtins", "object"): _object,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _value_only,  # replaced per policy (needs the allowed classes)
    ("collections", "OrderedDict"): _ordered_dict,
    ("collections", "deque"): _deque,
    ("collections", "defaultdict"): _defaultdict,
    ("collections", "Counter"): _counter,
    ("datetime", "date"): _make_datetime(datetime.date, (4,)),
    ("datetime", "time"): _make_datetime(datetime.time, (6,)),
    ("datetime", "datetime"): _make_datetime(datetime.datetime, (10,)),
    ("datetime", "timedelta"): _timedelta,
    ("datetime", "timezone"): _timezone,
    ("decimal", "Decimal"): _decimal,
    ("fractions", "Fraction"): _fraction,
    ("uuid", "UUID"): _no_args,
    **{("lute_ipc.message", name): (_enum_value if name == "Party" else _no_args) for name in MIRRORED_NAMES},
    **_numpy_entries(),
}
"""Each allowed global and the constructor that checks a call of it (:data:`_value_only`: never called)."""

DEFAULT_ALLOWED_GLOBALS: FrozenSet[Tuple[str, str]] = frozenset(DEFAULT_CONSTRUCTORS)
"""Globals the restricted unpickler resolves by default (numpy ones only when numpy is importable)."""

# Instances of these may receive BUILD (their state); numpy's pending objects are finished instead.
_DEFAULT_BUILDABLE: FrozenSet[type] = frozenset(
    {uuid.UUID} | {getattr(_message, name) for name in MIRRORED_NAMES if name != "Party"})


def _check_uuid_state(state: Any) -> None:
    if type(state) is not dict or not set(state) <= {"int", "is_safe"} or not _is_int(state.get("int")) \
            or not 0 <= state["int"] < 1 << 128:
        raise ForbiddenBuild("UUID state must be {'int': <128-bit int>}")


# --------------------------------------------------------------------------- policy
class Policy:
    """What one restricted decoder allows: globals, their constructors and the buildable classes.

    Made once (by :func:`make_policy`) and shared by every payload the decoder reads.
    """

    def __init__(self, allowed: Iterable[AllowedItem] = (), module_prefixes: Iterable[str] = (),
                 budget: Budget = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.prefixes: Tuple[str, ...] = tuple(module_prefixes)
        self.constructors: Dict[Tuple[str, str], Constructor] = dict(DEFAULT_CONSTRUCTORS)
        self.constructors[("copyreg", "_reconstructor")] = self._reconstructor
        self.buildable = set(_DEFAULT_BUILDABLE)
        self.prefix_classes: set[type] = set()  # classes allowed by a module prefix (own __setstate__ never run)
        self._state_bases: Dict[type, Optional[type]] = {}
        self.dropped_state: collections.Counter[str] = collections.Counter()
        """State keys of prefix classes dropped instead of applied (key -> payloads), see :meth:`state_base`."""
        self.extra_classes: Dict[Tuple[str, str], Optional[type]] = {}
        for item in allowed:
            if isinstance(item, type):
                self.extra_classes[(item.__module__, item.__qualname__)] = item
            else:
                module, name = item
                self.extra_classes[(str(module), str(name))] = None
        # Resolved globals: (module, name) -> (object, constructor or None).
        self._resolved: Dict[Tuple[str, str], Tuple[Any, Optional[Constructor]]] = {}
        # Callable objects (by identity) -> their constructor.
        self.callables: Dict[int, Tuple[Any, Constructor]] = {}

    def _prefixed(self, module: str) -> bool:
        return any(module == prefix or module.startswith(prefix + ".") for prefix in self.prefixes)

    def resolve(self, module: str, name: str) -> Any:
        """The object a pickle's global ``module.name`` means, or ForbiddenClass."""
        key = (module, name)
        found = self._resolved.get(key)
        if found is not None:
            return found[0]
        constructor = self.constructors.get(key)
        if constructor is not None:
            obj = _import(module, name)
        elif key in self.extra_classes or self._prefixed(module):
            obj = self._allowed_global(module, name)
            if isinstance(obj, type):
                constructor = _enum_value if _is_enum(obj) else _no_args
                self.buildable.add(obj)
                if (module, name) not in self.extra_classes:
                    self.prefix_classes.add(obj)
                    if constructor is _no_args:
                        constructor = _plain_new
            else:
                constructor = _value_only  # an allowed function is a value, never called
        else:
            raise ForbiddenClass(module, name)
        self._resolved[key] = (obj, constructor)
        self.callables[id(obj)] = (obj, constructor)
        return obj

    def _allowed_global(self, module: str, name: str) -> Any:
        """An explicitly allowed global (any object), or a class defined under an allowed prefix."""
        given = self.extra_classes.get((module, name))
        if given is not None:
            return given
        if any(part.startswith("__") for part in name.split(".")):
            raise ForbiddenClass(module, name)
        obj = _import(module, name)
        if (module, name) in self.extra_classes:
            return obj
        owner = getattr(obj, "__module__", None)
        if not isinstance(obj, type) or not isinstance(owner, str) or not self._prefixed(owner):
            raise ForbiddenClass(module, name)  # a function, or a class imported from elsewhere
        return obj

    def state_base(self, kind: type) -> Optional[type]:
        """The vetted base through which an instance of the prefix class ``kind`` takes its state.

        ``None``: no ``__setstate__`` outside the allowed prefixes (the state is an instance
        ``__dict__`` update). A pydantic ``BaseModel``: its state's instance parts only. A
        ``__setstate__`` defined under an allowed prefix is never run (it is the payload's
        sender's choice of code, e.g. LUTE's ``TaskParameters.__setstate__`` writes to its
        class); any other ``__setstate__`` refuses the class (``ForbiddenBuild``).
        """
        if kind in self._state_bases:
            return self._state_bases[kind]
        found: Optional[type] = None
        for klass in kind.__mro__:
            if "__setstate__" not in vars(klass) or klass is object:
                continue
            if isinstance(klass.__module__, str) and self._prefixed(klass.__module__):
                continue
            if _pydantic_state_keys(klass) is None:
                raise ForbiddenBuild(f"{kind.__qualname__} takes its state through "
                                     f"{klass.__module__}.{klass.__qualname__}.__setstate__, which the restricted "
                                     "unpickler does not run")
            found = klass
            break
        self._state_bases[kind] = found
        return found

    def constructor_of(self, func: Any) -> Constructor:
        entry = self.callables.get(id(func))
        if entry is None or entry[0] is not func:
            raise ForbiddenCall(f"restricted unpickler refuses to call a {type(func).__name__}")
        return entry[1]

    def _reconstructor(self, target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
        # protocol 0/1: copyreg._reconstructor(cls, object, None) then BUILD
        if len(args) == 3 and isinstance(args[0], type) and args[0] in self.buildable and args[1] is object \
                and args[2] is None:
            return object.__new__(args[0])
        raise _refuse("copyreg._reconstructor", args)


def _plain_new(target: Any, args: Tuple[Any, ...], spend: _Spend) -> Any:
    """A prefix class created as pickle creates instances, never through its own ``__new__``."""
    if args or target.__new__ is not object.__new__:
        raise _refuse(getattr(target, "__qualname__", "?"), args)
    return object.__new__(target)


_PYDANTIC_V1_KEYS = frozenset({"__dict__", "__fields_set__", "__private_attribute_values__"})
_PYDANTIC_V2_KEYS = frozenset({"__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"})


def _pydantic_state_keys(klass: type) -> Optional[FrozenSet[str]]:
    """The state keys pydantic's own ``BaseModel.__setstate__`` reads, when ``klass`` is that class."""
    module = sys.modules.get(klass.__module__) if isinstance(klass.__module__, str) else None
    if klass.__qualname__ != "BaseModel" or module is None or getattr(module, "BaseModel", None) is not klass \
            or klass.__module__ not in ("pydantic.main", "pydantic.v1.main"):
        return None
    slots = set(getattr(klass, "__slots__", ()))
    if "__fields_set__" in slots:
        return _PYDANTIC_V1_KEYS
    if "__pydantic_fields_set__" in slots:
        return _PYDANTIC_V2_KEYS
    return None


def _str_keyed(value: Any) -> bool:
    return type(value) is dict and all(type(key) is str for key in value)


def _str_set(value: Any) -> bool:
    return type(value) in (set, frozenset) and all(type(item) is str for item in value)


def _vetted_pydantic_state(kind: type, base: type, state: Any, dropped: collections.Counter[str]) -> Dict[str, Any]:
    """The instance parts of a pydantic model's state, checked; other keys dropped and counted."""
    keys = _pydantic_state_keys(base)
    assert keys is not None
    if not _str_keyed(state) or not _str_keyed(state.get("__dict__")):
        raise ForbiddenBuild(f"state of a {kind.__qualname__} must be a dict with a str-keyed '__dict__'")
    vetted: Dict[str, Any] = {}
    for key, value in state.items():
        if key not in keys:
            dropped[key] += 1
            continue
        vetted[key] = value
    fields_set = "__fields_set__" if "__fields_set__" in keys else "__pydantic_fields_set__"
    if fields_set not in vetted:
        vetted[fields_set] = set()  # pydantic v1 requires it; v2 defaults it
    if not _str_set(vetted[fields_set]):
        raise ForbiddenBuild(f"{fields_set} of a {kind.__qualname__} must be a set of str")
    private = vetted.get("__private_attribute_values__", vetted.get("__pydantic_private__"))
    if private is not None:
        names = getattr(kind, "__private_attributes__", {})
        if not _str_keyed(private) or not all(name in names and not name.startswith("__") for name in private):
            raise ForbiddenBuild(f"private attributes of a {kind.__qualname__} must be ones the class declares")
    extra = vetted.get("__pydantic_extra__")
    if extra is not None and not _str_keyed(extra):
        raise ForbiddenBuild(f"__pydantic_extra__ of a {kind.__qualname__} must be a str-keyed dict")
    return vetted


def _is_enum(obj: Any) -> bool:
    import enum

    return isinstance(obj, type) and issubclass(obj, enum.Enum)


def _import(module: str, name: str) -> Any:
    if module == LEGACY_MODULE and name in MIRRORED_NAMES:
        return getattr(_message, name)
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ForbiddenClass(module, name) from exc
    return obj


def make_policy(allowed: Iterable[AllowedItem] = (), module_prefixes: Iterable[str] = (),
                budget: Budget = DEFAULT_BUDGET) -> Policy:
    """Validate the options now (not at the first payload) and return the shared :class:`Policy`."""
    items = tuple(allowed)
    for item in items:
        if not isinstance(item, type) and not (isinstance(item, tuple) and len(item) == 2
                                               and all(isinstance(part, str) for part in item)):
            raise UsageError(f"allowed entries are classes or (module, name) pairs, not {item!r}")
    prefixes = tuple(module_prefixes)
    for prefix in prefixes:
        if not isinstance(prefix, str) or not all(part.isidentifier() for part in prefix.split(".")):
            raise UsageError(f"module prefixes are dotted module names, not {prefix!r}")
    if not isinstance(budget, Budget):
        raise UsageError("budget must be a lute_ipc.codec.Budget")
    return Policy(items, prefixes, budget)


# --------------------------------------------------------------------------- the machine
_Base: Any = pickle._Unpickler
_D: Dict[int, Any] = pickle._Unpickler.dispatch


class RestrictedUnpickler(_Base):  # type: ignore[misc]
    """pickle's own machine with every instruction that calls, imports or sets attributes checked.

    Args:
        file: a binary file-like object to read the pickle from.
        allowed: extra classes (or ``(module, name)`` pairs naming classes) to allow.
        policy: a shared :class:`Policy` (from :func:`make_policy`); overrides ``allowed``.
    """

    dispatch: ClassVar[Dict[int, Any]] = dict(_D)  # pickle's machine, with the checked instructions below

    def __init__(self, file: Any, *, allowed: Iterable[AllowedItem] = (), policy: Optional[Policy] = None) -> None:
        super().__init__(file)
        self._source = file if isinstance(file, io.BytesIO) else None
        self._policy = policy if policy is not None else make_policy(allowed)
        self._spend = _Spend(self._policy.budget)
        self._pending_memo: Dict[int, List[Any]] = {}

    # ------------------------------------------------------------------ globals
    def find_class(self, module: str, name: str) -> Any:
        if type(module) is not str or type(name) is not str:
            raise ForbiddenClass(str(module), str(name))
        if module == LEGACY_MODULE and name in MIRRORED_NAMES:
            return self._policy.resolve(_message.__name__, name)
        if self.proto < 3:  # Python 2 names, mapped as pickle maps them
            module, name = _python3_name(module, name)
        return self._policy.resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenCall("restricted unpickler refuses persistent ids")

    # ------------------------------------------------------------------ calls
    def _call(self, func: Any, args: Any) -> Any:
        if type(args) is not tuple:
            raise ForbiddenCall("call arguments must be a tuple")
        result = self._policy.constructor_of(func)(func, args, self._spend)
        if type(result) in _CONTAINER_BYTES:
            self._spend.add_container(type(result))
        return result

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        stack[-1] = self._call(stack[-1], args)
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._call(cls, args))
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if kwargs != {}:
            raise ForbiddenCall("restricted unpickler refuses keyword arguments")
        self.append(self._call(cls, args))
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _instantiate(self, klass: Any, args: Any) -> None:
        self.append(self._call(klass, tuple(args)))

    # ------------------------------------------------------------------ state
    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        kind = type(inst)
        if kind is _PendingArray or kind is _PendingDtype:
            finished = inst.finish(state, self._spend)
            stack[-1] = finished
            for memo_key in self._pending_memo.pop(id(inst), ()):
                if self.memo.get(memo_key) is inst:
                    self.memo[memo_key] = finished
            return
        if kind not in self._policy.buildable:
            raise ForbiddenBuild(f"restricted unpickler refuses BUILD on a {kind.__name__}"
                                 + (" (a class)" if isinstance(inst, type) else ""))
        if kind is uuid.UUID:
            _check_uuid_state(state)
        if kind in self._policy.prefix_classes:
            self._build_prefixed(inst, kind, state)
            return
        own_setstate = getattr(kind, "__setstate__", None)
        if own_setstate is not None and own_setstate is not getattr(object, "__setstate__", None):
            if type(state) is not dict:
                raise ForbiddenBuild(f"state of a {kind.__name__} must be a dict")
            own_setstate(inst, state)
            return
        slotstate = None
        if type(state) is tuple and len(state) == 2:
            state, slotstate = state
        for part in (state, slotstate):
            if part is not None and (type(part) is not dict or not all(type(key) is str for key in part)):
                raise ForbiddenBuild("BUILD state must be a dict with str keys")
        if state:
            inst.__dict__.update(state)
        if slotstate:
            for key, value in slotstate.items():
                if key.startswith("__"):
                    raise ForbiddenBuild(f"restricted unpickler refuses to set {key}")
                setattr(inst, key, value)
    dispatch[pickle.BUILD[0]] = load_build

    def _build_prefixed(self, inst: Any, kind: type, state: Any) -> None:
        """BUILD on an instance of a prefix class: only the instance changes, no class code runs.

        Through pydantic's ``BaseModel.__setstate__`` with the vetted instance parts of the
        state, or as an instance ``__dict__`` update plus real slots (member descriptors).
        """
        base = self._policy.state_base(kind)
        if base is not None:
            vars(base)["__setstate__"](inst, _vetted_pydantic_state(kind, base, state, self._policy.dropped_state))
            return
        slotstate = None
        if type(state) is tuple and len(state) == 2:
            state, slotstate = state
        for part in (state, slotstate):
            if part is not None and not _str_keyed(part):
                raise ForbiddenBuild("BUILD state must be a dict with str keys")
        if state:
            if not isinstance(getattr(inst, "__dict__", None), dict):
                raise ForbiddenBuild(f"a {kind.__qualname__} has no instance dict")
            inst.__dict__.update(state)
        for key, value in (slotstate or {}).items():
            if key.startswith("__") or type(getattr(kind, key, None)) is not _MEMBER_DESCRIPTOR:
                raise ForbiddenBuild(f"restricted unpickler sets only declared slots of a {kind.__qualname__}, "
                                     f"not {key}")
            object.__setattr__(inst, key, value)

    def _note_memo(self, key: Any) -> None:
        top = self.stack[-1]
        if type(top) is _PendingArray or type(top) is _PendingDtype:
            self._pending_memo.setdefault(id(top), []).append(key)

    def load_memoize(self) -> None:
        _D[pickle.MEMOIZE[0]](self)
        self._note_memo(len(self.memo) - 1)
    dispatch[pickle.MEMOIZE[0]] = load_memoize

    def load_binput(self) -> None:
        key = self.read(1)[0]
        if key in self.memo:
            raise ForbiddenBuild("memo entries may not be replaced")
        self.memo[key] = self.stack[-1]
        self._note_memo(key)
    dispatch[pickle.BINPUT[0]] = load_binput

    def load_long_binput(self) -> None:
        key = int.from_bytes(self.read(4), "little")
        if key in self.memo:
            raise ForbiddenBuild("memo entries may not be replaced")
        self.memo[key] = self.stack[-1]
        self._note_memo(key)
    dispatch[pickle.LONG_BINPUT[0]] = load_long_binput

    def load_put(self) -> None:
        line = self.readline()[:-1]
        if len(line) > 20:
            raise BudgetExceeded("PUT index too long")
        key = int(line)
        if key in self.memo:
            raise ForbiddenBuild("memo entries may not be replaced")
        self.memo[key] = self.stack[-1]
        self._note_memo(key)
    dispatch[pickle.PUT[0]] = load_put

    # ------------------------------------------------------------------ containers
    def _sequence(self) -> Any:
        target = self.stack[-1]
        if type(target) not in _SEQUENCES:
            raise ForbiddenCall(f"restricted unpickler appends only to lists, not to a {type(target).__name__}")
        return target

    def load_append(self) -> None:
        value = self.stack.pop()
        target = self._sequence()
        self._spend.add_items(1)
        target.append(value)
    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self._sequence()
        self._spend.add_items(len(items))
        target.extend(items)
    dispatch[pickle.APPENDS[0]] = load_appends

    def _mapping(self) -> Any:
        target = self.stack[-1]
        if type(target) not in _MAPPINGS:
            raise ForbiddenCall(f"restricted unpickler sets items only in dicts, not in a {type(target).__name__}")
        return target

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._spend.add_items(1)
        target = self._mapping()
        self._spend.check_keys((key,))
        target[key] = value
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._mapping()
        self._spend.add_items(len(items) // 2)
        self._spend.check_keys(items[0::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise ForbiddenCall(f"restricted unpickler adds items only to sets, not to a {type(target).__name__}")
        self._spend.add_items(len(items))
        self._spend.check_keys(items)
        target.update(items)
    dispatch[pickle.ADDITEMS[0]] = load_additems

    # ------------------------------------------------------------------ counted lengths
    # pickle's loaders allocate what a length announces (BYTEARRAY8: a zeroed bytearray) before
    # reading the data; these check the length against the bytes left and the budget first.
    def _remaining(self) -> int:
        """Bytes of the payload not read yet (rest of the current frame and of the file)."""
        left = 0
        for part in (getattr(self._unframer, "current_frame", None), self._source):
            if part is not None:
                with part.getbuffer() as view:
                    left += view.nbytes - part.tell()
        return left if self._source is not None else sys.maxsize

    def _read_counted(self, size_format: str, what: str, data: bool = True) -> bytes:
        count, = struct.unpack(size_format, self.read(struct.calcsize(size_format)))
        if count < 0:
            raise pickle.UnpicklingError(f"{what} has a negative byte count")
        if count > self._remaining():
            raise pickle.UnpicklingError(f"{what} announces {count} bytes; the pickle has fewer left")
        if data:
            self._spend.check_bytes(count)
        raw: bytes = self.read(count)
        if len(raw) != count:
            raise pickle.UnpicklingError("pickle data was truncated")
        return raw

    def load_binstring(self) -> None:
        self.append(self._decode_string(self._read_counted("<i", "BINSTRING")))
    dispatch[pickle.BINSTRING[0]] = load_binstring

    def load_binbytes(self) -> None:
        self.append(self._read_counted("<I", "BINBYTES"))
    dispatch[pickle.BINBYTES[0]] = load_binbytes

    def load_binbytes8(self) -> None:
        self.append(self._read_counted("<Q", "BINBYTES8"))
    dispatch[pickle.BINBYTES8[0]] = load_binbytes8

    def load_bytearray8(self) -> None:
        self.append(bytearray(self._read_counted("<Q", "BYTEARRAY8")))
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def load_binunicode(self) -> None:
        self.append(str(self._read_counted("<I", "BINUNICODE"), "utf-8", "surrogatepass"))
    dispatch[pickle.BINUNICODE[0]] = load_binunicode

    def load_binunicode8(self) -> None:
        self.append(str(self._read_counted("<Q", "BINUNICODE8"), "utf-8", "surrogatepass"))
    dispatch[pickle.BINUNICODE8[0]] = load_binunicode8

    def load_long4(self) -> None:
        count, = struct.unpack("<i", self.read(4))
        if count < 0:
            raise pickle.UnpicklingError("LONG pickle has negative byte count")
        if count * 8 > self._spend.max_int_bits + 8:
            raise BudgetExceeded(f"integer of {count} bytes exceeds max_digits={self._spend.budget.max_digits}")
        if count > self._remaining():
            raise pickle.UnpicklingError(f"LONG4 announces {count} bytes; the pickle has fewer left")
        self.append(pickle.decode_long(self.read(count)))
    dispatch[pickle.LONG4[0]] = load_long4

    def load_frame(self) -> None:
        size, = struct.unpack("<Q", self.read(8))
        if size > self._remaining():
            raise pickle.UnpicklingError(f"FRAME announces {size} bytes; the pickle has fewer left")
        self._unframer.load_frame(size)
    dispatch[pickle.FRAME[0]] = load_frame

    def load_dict(self) -> None:
        self._spend.check_keys(self.stack[0::2])  # the items since the mark
        _D[pickle.DICT[0]](self)
    dispatch[pickle.DICT[0]] = load_dict

    def load_frozenset(self) -> None:
        self._spend.check_keys(self.stack)
        _D[pickle.FROZENSET[0]](self)
    dispatch[pickle.FROZENSET[0]] = load_frozenset

    def _counted(original: Callable[[Any], None]) -> Callable[[Any], None]:
        """The loader ``original``, then the budget charged for what it pushed."""

        def load(self: RestrictedUnpickler) -> None:
            original(self)
            self._charge(self.stack[-1])

        return load

    for _opcode in (pickle.LIST, pickle.TUPLE, pickle.DICT, pickle.FROZENSET, pickle.TUPLE1, pickle.TUPLE2,
                    pickle.TUPLE3, pickle.BINUNICODE, pickle.SHORT_BINUNICODE, pickle.BINUNICODE8, pickle.UNICODE,
                    pickle.STRING, pickle.BINSTRING, pickle.SHORT_BINSTRING, pickle.BINBYTES, pickle.SHORT_BINBYTES,
                    pickle.BINBYTES8, pickle.BYTEARRAY8, pickle.LONG1, pickle.LONG4, pickle.INT, pickle.LONG,
                    pickle.EMPTY_LIST, pickle.EMPTY_TUPLE, pickle.EMPTY_DICT, pickle.EMPTY_SET):
        dispatch[_opcode[0]] = _counted(dispatch[_opcode[0]])
    del _opcode, _counted

    def _charge(self, value: Any) -> None:
        kind = type(value)
        if kind is str or kind is bytes or kind is bytearray:
            self._spend.add_bytes(len(value))
        elif kind is int:
            self._spend.check_int(value)
        elif kind is list or kind is tuple or kind is dict or kind is frozenset or kind is set:
            self._spend.add_items(len(value))
            self._spend.add_container(kind)


_MEMBER_DESCRIPTOR = types.MemberDescriptorType
_SEQUENCES: FrozenSet[type] = frozenset({list, collections.deque})
_MAPPINGS: FrozenSet[type] = frozenset({dict, collections.OrderedDict, collections.defaultdict, collections.Counter})


def _python3_name(module: str, name: str) -> Tuple[str, str]:
    """Map a Python 2 global name (protocol < 3 pickles) to its Python 3 name, as pickle does."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


# --------------------------------------------------------------------------- the commonest shape
# The pickle of a Message up to its contents value, naming our module or LUTE's.
_MESSAGE_PREFIXES = tuple(
    _layout.short_text(module) + _layout.short_text(_message.Message.__qualname__.encode()) + _layout.MESSAGE_NEWOBJ
    + _layout.MESSAGE_KEY_CONTENTS for module in (_message.Message.__module__.encode(), LEGACY_MODULE.encode()))


def _read_text_or_bytes(data: bytes, pos: int, allow_bytes: bool) -> Tuple[Any, int]:
    """``N``, or a (SHORT_)BINUNICODE / (SHORT_)BINBYTES value followed by MEMOIZE; (_NO, pos) otherwise."""
    op = data[pos] if pos < len(data) else -1
    if op == _layout.NONE:
        return None, pos + 1
    if op in (_layout.SHORT_BINUNICODE, _layout.SHORT_BINBYTES):
        size, start = (data[pos + 1] if pos + 1 < len(data) else -1), pos + 2
    elif op in (_layout.BINUNICODE, _layout.BINBYTES):
        size, start = int.from_bytes(data[pos + 1:pos + 5], "little"), pos + 5
    else:
        return _NO, pos
    is_bytes = op in (_layout.SHORT_BINBYTES, _layout.BINBYTES)
    end = start + size
    if size < 0 or end >= len(data) or data[end] != _layout.MEMOIZE or (is_bytes and not allow_bytes):
        return _NO, pos
    raw = data[start:end]
    if is_bytes:
        return raw, end + 1
    try:
        return raw.decode("utf-8", "surrogatepass"), end + 1
    except UnicodeDecodeError:
        return _NO, pos


_NO = object()


def read_plain_message(data: bytes, budget: Budget) -> Optional[Any]:
    """The Message pickled in ``data`` when it has exactly the shape pickle gives
    ``Message(<str|bytes|None>, <str|None>)`` in one frame (protocol 4/5), else None.

    The restricted unpickler would make the same object from these bytes: this is only a
    shortcut for the commonest payload (no arbitrary global, call or state is possible here).
    """
    if len(data) < _layout.HEADER_SIZE or data[0] != _layout.PROTO or data[1] not in (4, 5) \
            or data[2] != _layout.FRAME or int.from_bytes(data[3:11], "little") != len(data) - _layout.HEADER_SIZE:
        return None
    pos = _layout.HEADER_SIZE
    prefix = next((p for p in _MESSAGE_PREFIXES if data.startswith(p, pos)), None)
    if prefix is None:
        return None
    pos += len(prefix)
    contents, pos = _read_text_or_bytes(data, pos, True)
    if contents is _NO or not data.startswith(_layout.MESSAGE_KEY_SIGNAL, pos):
        return None
    signal, pos = _read_text_or_bytes(data, pos + len(_layout.MESSAGE_KEY_SIGNAL), False)
    if signal is _NO or data[pos:] != _layout.MESSAGE_END:
        return None
    if (len(contents) if contents is not None else 0) + (len(signal) if signal is not None else 0) > budget.max_bytes:
        return None  # the full machine refuses it with BudgetExceeded
    msg = object.__new__(_message.Message)
    msg.__dict__.update(contents=contents, signal=signal)
    return msg


def restricted_load(data: Buffer, policy: Policy) -> Any:
    """Unpickle ``data`` under ``policy`` (a fresh budget per payload)."""
    if type(data) is not bytes:
        data = bytes(data)
    msg = read_plain_message(data, policy.budget)
    if msg is not None:
        return msg
    return RestrictedUnpickler(io.BytesIO(data), policy=policy).load()
