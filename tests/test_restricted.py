"""The restricted unpickler (issue 17): safe by construction, budgeted, extendable by module prefix.

Each hostile payload is written with pickle opcodes, as an attacker would; each must be
refused with a RestrictedRefusal/ForbiddenClass (reported by the readers as a PayloadError),
and leave the process unchanged.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import pickle
import tracemalloc
import uuid
from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lute_ipc import codec, errors
from lute_ipc.message import Message, Party, TaskRequest, TaskRequestMessage

from . import restricted_models

REFUSED = (errors.RestrictedRefusal, errors.ForbiddenClass)


def global_op(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(value: str) -> bytes:
    data = value.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def int4(value: int) -> bytes:
    return b"J" + value.to_bytes(4, "little", signed=True)


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) with REDUCE."""
    return func + b"(" + b"".join(args) + b"tR"


# --------------------------------------------------------------------------- issue 17, bug 1
def test_memory_bomb_list_of_range_is_refused_without_allocating() -> None:
    bomb = b"\x80\x02" + call(global_op("builtins", "list"), call(global_op("builtins", "range"), int4(3_000_000))) + b"."
    assert len(bomb) < 60
    tracemalloc.start()
    try:
        with pytest.raises(REFUSED):
            codec.restricted_loads(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # the list (115 MiB on main at c2c950d) is never made


def test_range_beyond_the_item_budget_is_refused() -> None:
    with pytest.raises(errors.BudgetExceeded):
        codec.restricted_loads(b"\x80\x02" + call(global_op("builtins", "range"), int4(2**31 - 1)) + b".")
    assert codec.restricted_loads(pickle.dumps(range(5))) == range(5)


@pytest.mark.parametrize("module, name, number", [
    ("fractions", "Fraction", "1e6000000"),
    ("fractions", "Fraction", "1" * 5000 + "/3"),
    ("decimal", "Decimal", "1e999999999"),
    ("decimal", "Decimal", "9" * 5000),
], ids=["fraction-exponent", "fraction-digits", "decimal-exponent", "decimal-digits"])
def test_cpu_bomb_number_strings_are_refused(module: str, name: str, number: str) -> None:
    with pytest.raises(errors.BudgetExceeded):
        codec.restricted_loads(call(global_op(module, name), text(number)) + b".")


def test_big_integers_beyond_the_digit_budget_are_refused() -> None:
    size = 8 * 1024  # bytes: about 19,700 decimal digits
    with pytest.raises(errors.BudgetExceeded):
        codec.restricted_loads(b"\x80\x02\x8b" + size.to_bytes(4, "little") + b"\x01" * size + b".")
    big = 10 ** 4000
    assert codec.restricted_loads(pickle.dumps(big)) == big


@pytest.mark.parametrize("argument", [
    int4(1 << 30),
    b"\x8a\x05" + (1 << 33).to_bytes(5, "little"),  # LONG1
])
def test_bytes_and_bytearray_of_a_size_are_refused(argument: bytes) -> None:
    for kind in ("bytes", "bytearray"):
        with pytest.raises(REFUSED):
            codec.restricted_loads(call(global_op("builtins", kind), argument) + b".")


def test_bytearray_of_a_numpy_integer_is_refused() -> None:
    numpy = pytest.importorskip("numpy")
    scalar = pickle.dumps(numpy.int64(200 * 1024 * 1024), 2)
    numpy_int = scalar[2:-1]  # the opcodes that make numpy.int64(N)
    bomb = b"\x80\x02" + call(global_op("builtins", "bytearray"), numpy_int) + b"."
    with pytest.raises(REFUSED):
        codec.restricted_loads(bomb)


@pytest.mark.parametrize("module, name", [
    ("lute_ipc.message", "Message"), ("lute.execution.ipc", "Message"), ("fractions", "Fraction"),
    ("uuid", "UUID"), ("collections", "Counter"), ("collections", "OrderedDict"), ("decimal", "Decimal"),
])
@pytest.mark.parametrize("state", ["dict", "slots"])
def test_build_on_an_allowed_class_is_refused_and_the_class_is_untouched(module: str, name: str, state: str) -> None:
    replacement = text("replaced")
    attributes = b"}" + text("__init__") + replacement + b"s" + text("__repr__") + replacement + b"s"
    build_state = attributes if state == "dict" else b"N" + attributes + b"\x86"
    tamper = b"\x80\x02" + global_op(module, name) + build_state + b"b."
    with pytest.raises(errors.ForbiddenBuild):
        codec.restricted_loads(tamper)
    assert Message("still", "works") == Message(contents="still", signal="works")
    assert fractions.Fraction(1, 3) + 1 == fractions.Fraction(4, 3)
    assert repr(collections.Counter("aa")) == "Counter({'a': 2})"


def test_build_on_a_module_or_function_value_is_refused() -> None:
    loads = codec.make_restricted_loads([("json", "dumps")])
    with pytest.raises(errors.ForbiddenBuild):
        loads(b"\x80\x02" + global_op("json", "dumps") + b"}" + text("__name__") + text("x") + b"sb.")
    with pytest.raises(errors.ForbiddenCall):  # an allowed function is a value, never called
        loads(call(global_op("json", "dumps"), text("x")) + b".")


def test_slot_state_may_not_name_dunders_even_on_allowed_instances() -> None:
    message = pickle.dumps(Message("a", "b"), 2)[:-2]  # up to the BUILD of its dict state
    tamper = message + b"b" + b"N}" + text("__class__") + global_op("lute_ipc.message", "Party") + b"s\x86b."
    with pytest.raises(errors.ForbiddenBuild):
        codec.restricted_loads(tamper)


def test_containers_are_filled_only_through_their_own_type() -> None:
    # APPENDS on a Message instance whose 'append' was set by BUILD: pickle would call it.
    message = pickle.dumps(Message("a", "b"), 2)[:-1]  # a Message on the stack
    with pytest.raises(errors.ForbiddenCall):
        codec.restricted_loads(message + b"(K\x01e.")
    with pytest.raises(errors.ForbiddenCall):
        codec.restricted_loads(message + b"K\x01K\x02s.")


def test_reduce_of_arbitrary_callables_is_refused() -> None:
    for module, name in (("builtins", "list"), ("builtins", "dict"), ("builtins", "str"), ("builtins", "int")):
        with pytest.raises(REFUSED):
            codec.restricted_loads(call(global_op(module, name), b"]") + b".")
    for module, name in (("os", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen")):
        with pytest.raises(errors.ForbiddenClass):
            codec.restricted_loads(call(global_op(module, name), text("true")) + b".")


# --------------------------------------------------------------------------- what it accepts
VALUES: List[Any] = [
    Message("x", "TASK_LOG"), Message(b"y" * 100_000, None), TaskRequestMessage(TaskRequest("r")), Party.TASK,
    {1: [1, 2.5, "a", b"b", None, True]}, (1, (2,)), {"a", "b"}, frozenset({3}), bytearray(b"ab"), b"", bytearray(),
    collections.OrderedDict(a=1), collections.deque([1, 2], 5), collections.Counter("aab"),
    collections.defaultdict(list, {1: [2]}), datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.date(2024, 1, 2),
    datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc), datetime.time(1, 2, 3), datetime.timedelta(3, 4, 5),
    datetime.timezone(datetime.timedelta(hours=2), "X"), decimal.Decimal("1.5"), decimal.Decimal("-inf"),
    fractions.Fraction(3, 4), uuid.UUID(int=12345), complex(1, 2), range(5), slice(1, 2), 10 ** 100, -1.5,
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips_at_every_protocol(protocol: int) -> None:
    for value in VALUES:
        out = codec.restricted_loads(pickle.dumps(value, protocol))
        assert out == value and type(out) is type(value), (protocol, value)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_round_trip_through_the_dtype_check(protocol: int) -> None:
    numpy = pytest.importorskip("numpy")
    arrays = [numpy.arange(12.0).reshape(3, 4), numpy.array([1, 2], dtype=">i4"), numpy.asfortranarray(numpy.ones((3, 2))),
              numpy.array(["ab", "c"]), numpy.zeros(0, dtype="u1"), numpy.array(True)]
    for array in arrays:
        out = codec.restricted_loads(pickle.dumps(array, protocol))
        assert type(out) is numpy.ndarray and out.dtype == array.dtype and numpy.array_equal(out, array)
        assert out.flags.f_contiguous == array.flags.f_contiguous and out.flags.writeable
    assert codec.restricted_loads(pickle.dumps(numpy.float64(2.5), protocol)) == 2.5


def test_numpy_out_of_band_pieces_decode_restricted() -> None:
    numpy = pytest.importorskip("numpy")
    from lute_ipc import _oob

    array = numpy.arange(40_000, dtype="f8")
    pieces, _ = _oob.pickle_pieces(Message(array, "TASK_RESULT"))
    out = codec.restricted_loads(b"".join(bytes(piece) for piece in pieces))
    assert numpy.array_equal(out.contents, array) and out.signal == "TASK_RESULT"


@pytest.mark.parametrize("make", [
    lambda numpy: numpy.array([1, "a"], dtype=object),
    lambda numpy: numpy.zeros(2, dtype=[("a", "i4"), ("b", "O")]),
    lambda numpy: numpy.zeros(2, dtype=[("a", "i4")]),
    lambda numpy: numpy.zeros(2, dtype="M8[ns]"),
])
def test_numpy_object_structured_and_datetime_dtypes_are_refused(make: Any) -> None:
    numpy = pytest.importorskip("numpy")
    with pytest.raises(REFUSED):
        codec.restricted_loads(pickle.dumps(make(numpy)))


def test_numpy_dtype_state_claiming_objects_is_refused() -> None:
    numpy = pytest.importorskip("numpy")
    data = pickle.dumps(numpy.zeros(2, dtype="V8"), 2)
    # dtype state: (3, '|', None, None, None, 8, 1, flags): mark the void dtype as holding objects.
    tampered = data.replace(b"NNNK\x08K\x01K\x00t", b"NNNK\x08K\x01K\x3ft")
    assert tampered != data
    with pytest.raises(REFUSED):
        codec.restricted_loads(tampered)


def test_budget_is_per_payload_and_configurable() -> None:
    small = codec.Budget(max_bytes=1000, max_items=100, max_digits=10)
    loads = codec.make_restricted_loads(module_prefixes=(), budget=small)
    with pytest.raises(errors.BudgetExceeded):
        loads(pickle.dumps("x" * 1001))
    with pytest.raises(errors.BudgetExceeded):
        loads(pickle.dumps(list(range(101))))
    with pytest.raises(errors.BudgetExceeded):
        loads(pickle.dumps(10 ** 20))
    for _ in range(3):  # a fresh budget per payload
        assert loads(pickle.dumps("x" * 900)) == "x" * 900


# --------------------------------------------------------------------------- user extension
def test_classes_under_an_allowed_module_prefix_are_rebuilt() -> None:
    if restricted_models.Parameters is None:
        pytest.skip("needs pydantic")
    params = restricted_models.Parameters(extra={"a": 1.5}, inner=restricted_models.Inner(values=[1, 2]))
    data = pickle.dumps(Message(params, "TASK_RESULT"))
    with pytest.raises(errors.ForbiddenClass):
        codec.restricted_loads(data)
    loads = codec.make_restricted_loads(module_prefixes=["tests.restricted_models"])
    out = loads(data)
    assert type(out.contents) is restricted_models.Parameters and out.contents == params
    assert out.contents.mode is restricted_models.Mode.SAFE
    assert codec.make_restricted_loads(module_prefixes=["tests"])(data) == Message(params, "TASK_RESULT")


def test_the_prefix_rule_refuses_functions_imported_names_and_build_on_the_class() -> None:
    loads = codec.make_restricted_loads(module_prefixes=["tests.restricted_models"])
    for name in ("not_a_class", "List", "Mode.__init__"):  # List is typing's, imported there
        with pytest.raises(errors.ForbiddenClass):
            loads(global_op("tests.restricted_models", name) + b".")
    with pytest.raises(errors.ForbiddenBuild):
        loads(b"\x80\x02" + global_op("tests.restricted_models", "Plain") + b"}" + text("__init__") + b"Nsb.")
    with pytest.raises(errors.ForbiddenCall):  # constructors of allowed classes take no arguments
        loads(call(global_op("tests.restricted_models", "Plain"), text("x")) + b".")
    assert restricted_models.Plain().value == 1


def test_module_prefixes_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pickle.dumps(restricted_models.Plain())
    monkeypatch.setenv("LUTE_IPC_ALLOW", "tests.restricted_models, other.package")
    loads = codec.make_restricted_loads()
    monkeypatch.delenv("LUTE_IPC_ALLOW")
    assert loads(data).value == 1  # read when the decoder was made
    with pytest.raises(errors.ForbiddenClass):
        codec.make_restricted_loads()(data)
    with pytest.raises(errors.UsageError):
        codec.make_restricted_loads(module_prefixes=["not a module"])


def test_lute_parameter_models_decode_with_the_lute_prefix() -> None:
    models = pytest.importorskip("lute.io.models.tests", reason="LUTE's models need pydantic<2")
    params = models.TestSocketParameters.construct(array_size=10, num_arrays=2)
    data = pickle.dumps(Message(params, "TASK_RESULT"))
    with pytest.raises(errors.ForbiddenClass):
        codec.restricted_loads(data)
    out = codec.make_restricted_loads(module_prefixes=["lute"])(data)
    assert type(out.contents) is models.TestSocketParameters and out.contents.dict() == params.dict()


# --------------------------------------------------------------------------- readers keep serving
def test_refusals_are_counted_payload_errors_and_the_decoder_keeps_serving(impl: Any) -> None:
    seen: List[Exception] = []
    decoder = impl.FrameDecoder(loads=codec.restricted_loads, on_error=seen.append)
    bomb = b"\x80\x02" + call(global_op("builtins", "list"), call(global_op("builtins", "range"), int4(10))) + b"."
    stream = impl.encode_payload(bomb) + impl.encode_frame(Message("after", "TASK_LOG")) * 2
    assert decoder.feed(stream) == [Message("after", "TASK_LOG")] * 2
    assert decoder.errors == 1 and decoder.frames == 2
    assert isinstance(seen[0], errors.PayloadError) and isinstance(seen[0].__cause__, errors.ForbiddenCall)
    assert seen[0].payload == bomb


# --------------------------------------------------------------------------- the Message shortcut
def _slow(data: bytes) -> Any:
    from lute_ipc import _restricted

    return _restricted.RestrictedUnpickler(__import__("io").BytesIO(data)).load()


@settings(max_examples=300, deadline=None)
@given(contents=st.one_of(st.none(), st.text(max_size=300), st.binary(max_size=300)),
       signal=st.one_of(st.none(), st.text(max_size=20)), protocol=st.integers(4, 5), lute_names=st.booleans(),
       flip=st.tuples(st.integers(0, 10_000), st.integers(0, 255)))
def test_the_message_shortcut_makes_what_the_full_machine_makes(contents: Any, signal: Any, protocol: int,
                                                               lute_names: bool, flip: Any) -> None:
    from lute_ipc import _restricted

    msg = Message(contents, signal)
    data = codec.dumps_lute_names(msg) if lute_names else pickle.dumps(msg, protocol)
    fast = _restricted.read_plain_message(data, _restricted.DEFAULT_BUDGET)
    assert fast is None or (fast == _slow(data) == msg and type(fast) is Message)
    at, value = flip
    bent = bytearray(data)
    bent[at % len(bent)] = value
    fast = _restricted.read_plain_message(bytes(bent), _restricted.DEFAULT_BUDGET)
    if fast is not None:
        assert fast == _slow(bytes(bent)) and type(fast) is Message


def test_the_message_shortcut_respects_a_small_budget() -> None:
    loads = codec.make_restricted_loads(module_prefixes=(), budget=codec.Budget(max_bytes=100))
    with pytest.raises(errors.BudgetExceeded):
        loads(pickle.dumps(Message("x" * 200, "TASK_LOG")))


def test_colliding_set_members_and_dict_keys_are_bounded() -> None:
    colliding = [i * ((1 << 61) - 1) for i in range(1, 41)]  # all hash to 0
    assert len({hash(value) for value in colliding}) == 1
    assert codec.restricted_loads(pickle.dumps(set(colliding[:31]))) == set(colliding[:31])
    for value in (set(colliding), frozenset(colliding), dict.fromkeys(colliding), [dict.fromkeys(colliding)]):
        with pytest.raises(errors.BudgetExceeded):
            codec.restricted_loads(pickle.dumps(value))
    # equal keys repeated across containers are not collisions
    records = [{1: 2, 1.5: 3, (1, 2): 4} for _ in range(100)] + [{1.0: 5}]
    assert codec.restricted_loads(pickle.dumps(records)) == records


# --------------------------------------------------------------------------- prefix classes: state stays in the instance
def _prefix_loads() -> Any:
    return codec.make_restricted_loads(module_prefixes=["tests.restricted_models"])


def _build(cls: type, state: Any) -> bytes:
    """A protocol-2 pickle: ``cls`` made by NEWOBJ without arguments, then BUILD with ``state``."""
    body = pickle.dumps(state, protocol=2)[2:-1]  # the state's opcodes, without PROTO and STOP
    return b"\x80\x02" + global_op(cls.__module__, cls.__qualname__) + b")\x81" + body + b"b."


def test_a_prefix_class_own_setstate_never_runs() -> None:
    data = _build(restricted_models.WritesItsClass, {"_class_attrs": {"setting": "hostile"}, "kept": 1})
    out = _prefix_loads()(data)
    assert restricted_models.Registry.setting == "original"
    assert type(out) is restricted_models.WritesItsClass and out.kept == 1  # applied as an instance dict
    assert out.__dict__["_class_attrs"] == {"setting": "hostile"}  # inside the object only


def test_pydantic_prefix_models_take_only_their_instance_state() -> None:
    if restricted_models.ModelWritesItsClass is None:
        pytest.skip("needs pydantic")
    from lute_ipc import _restricted

    model = restricted_models.ModelWritesItsClass(size=3)
    state = model.__getstate__()
    state["_config_attrs"] = {"set_result": True}
    policy = _restricted.make_policy(module_prefixes=["tests.restricted_models"])
    out = _restricted.restricted_load(_build(type(model), state), policy)
    assert restricted_models.ModelWritesItsClass.Config.set_result is False
    assert type(out) is type(model) and out.size == 3 and out == model
    assert policy.dropped_state == {"_config_attrs": 1}  # dropped and counted, never applied


def test_pydantic_private_attributes_must_be_declared() -> None:
    if restricted_models.Parameters is None:
        pytest.skip("needs pydantic")
    state = restricted_models.Parameters().__getstate__()
    key = "__private_attribute_values__" if "__fields_set__" in state else "__pydantic_private__"
    state[key] = {"__class__": "x"}
    with pytest.raises(errors.ForbiddenBuild):
        _prefix_loads()(_build(restricted_models.Parameters, state))
    state[key] = {"undeclared": 1}
    with pytest.raises(errors.ForbiddenBuild):
        _prefix_loads()(_build(restricted_models.Parameters, state))


def test_prefix_classes_are_made_without_their_own_new_and_slots_only_through_slots() -> None:
    with pytest.raises(errors.ForbiddenCall):
        _prefix_loads()(b"\x80\x02" + global_op("tests.restricted_models", "CustomNew") + b")\x81.")
    assert restricted_models.CustomNew.made == 0
    out = _prefix_loads()(_build(restricted_models.Slotted, (None, {"value": 5})))
    assert out.value == 5
    with pytest.raises(errors.ForbiddenBuild):  # a property is class code, not a slot
        _prefix_loads()(_build(restricted_models.Slotted, (None, {"shadow": 1})))
    assert restricted_models.Registry.setting == "original"


def test_lute_models_drop_their_config_attrs() -> None:
    models = pytest.importorskip("lute.io.models.tests", reason="LUTE's models need pydantic<2")
    from lute_ipc import _restricted

    params = models.TestSocketParameters.construct(array_size=10, num_arrays=2)
    state = params.__getstate__()
    assert "_lute_config_attrs" in state
    state["_lute_config_attrs"] = {"set_result": True, "run_directory": "/elsewhere"}
    policy = _restricted.make_policy(module_prefixes=["lute"])
    out = _restricted.restricted_load(_build(models.TestSocketParameters, state), policy)
    assert out.dict() == params.dict() and policy.dropped_state == {"_lute_config_attrs": 1}
    assert models.TestSocketParameters.Config.set_result is False
    assert models.TestSocketParameters.Config.run_directory != "/elsewhere"
