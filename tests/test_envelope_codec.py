"""The Message envelope around contents of any type (Cython, ``_envelope_codec.pxi``).

Its reference is pickle itself, as for the direct codec (test_message_codec.py): whatever the
envelope writes must be byte-identical to ``pickle.dumps(msg, PICKLE_PROTOCOL)`` (so a LUTE
peer reads it), and whatever it reads must equal :func:`lute_ipc.codec.loads` of the same
bytes. Anything it cannot do exactly it leaves to pickle (the hooks return None). The frame
level (``append_frame``, ``FrameDecoder`` of both twins) is compared in
test_framing_hypothesis.py, whose messages include such contents.
"""

from __future__ import annotations

import datetime
import pickle
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lute_ipc import _framing_py, codec
from lute_ipc.errors import MainModuleContents, UnpicklableContents
from lute_ipc.message import Message, Party

from .conftest import IMPLEMENTATIONS
from .crafted_pickles import set_outer_frame

fast = IMPLEMENTATIONS["c"]
pytestmark = pytest.mark.skipif(fast is None, reason="the Cython extension lute_ipc._framing_c is not built")

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROTOCOL = codec.PICKLE_PROTOCOL

SHARED_TEXT = "shared text object"
SHARED_LIST = [1, 2, 3]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2 ** 70, max_value=2 ** 90),
    st.floats(allow_nan=False),
    st.text(max_size=20), st.binary(max_size=20), st.complex_numbers(allow_nan=False),
    st.sampled_from(["contents", "signal", "Message", "lute_ipc.message", "TASK_LOG", "__main__", SHARED_TEXT]),
    st.just(SHARED_LIST), st.just(Party.TASK),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.tuples(inner, inner), st.frozensets(st.integers(), max_size=4),
        st.sets(st.text(max_size=4), max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=5),
        st.dictionaries(st.integers(), inner, max_size=3),
    ),
    max_leaves=25,
)
signals = st.one_of(st.none(), st.sampled_from(["TASK_LOG", "TASK_RESULT", SHARED_TEXT, "x" * 300]))


def pickled(msg: Any) -> bytes:
    return pickle.dumps(msg, PROTOCOL)


def test_self_check_enabled_the_envelope() -> None:
    assert fast._envelope_enabled()
    msg = Message(contents={"i": 7, "v": "x" * 40})
    assert fast._envelope_dumps(msg) == pickled(msg)
    read = fast._envelope_loads(pickled(msg))
    assert type(read) is Message and read == msg


@SETTINGS
@given(contents=values, signal=signals)
def test_dumps_is_pickle_byte_for_byte_or_declines(contents: Any, signal: Optional[str]) -> None:
    msg = Message(contents=contents, signal=signal)
    written = fast._envelope_dumps(msg)
    if written is not None:
        assert written == pickled(msg)
    buffer = bytearray()
    fast.append_frame(buffer, msg)
    assert bytes(buffer) == _framing_py.encode_frame(msg)


@SETTINGS
@given(contents=values, signal=signals)
def test_loads_equals_pickle_or_declines(contents: Any, signal: Optional[str]) -> None:
    data = pickled(Message(contents=contents, signal=signal))
    read = fast._envelope_loads(data)
    if read is not None:
        expected = codec.loads(data)
        assert type(read) is Message and read == expected
        assert list(vars(read)) == ["contents", "signal"]
        assert pickled(read) == pickled(expected)  # same shape, shared references included


@pytest.mark.parametrize("contents", [
    {"i": 1, "v": "x" * 40},
    [{"n": 1}, {"n": 2}, {"n": 3}],          # repeated keys: memo references, shifted by 6
    {"a": SHARED_LIST, "b": SHARED_LIST},    # one list twice
    list(range(300)) + [SHARED_LIST] * 3,
    (1, 2.5, None, True, b"raw", frozenset({1}), {3, 4}),
], ids=["dict", "repeated-keys", "shared-list", "many", "tuple"])
def test_plain_data_takes_both_paths(contents: Any) -> None:
    msg = Message(contents=contents, signal="TASK_RESULT")
    assert fast._envelope_dumps(msg) == pickled(msg)
    assert fast._envelope_loads(pickled(msg)) == msg


def test_memo_references_beyond_one_byte_are_left_to_pickle() -> None:
    names = [f"k{i}" for i in range(260)]
    contents = {"keys": names, "again": names[-10:]}  # references 250-259: 256+ after the shift
    msg = Message(contents=contents)
    written = fast._envelope_dumps(msg)
    assert written is None or written == pickled(msg)
    assert fast.encode_frame(msg) == _framing_py.encode_frame(msg)
    read = fast._envelope_loads(pickled(msg))
    assert read is None or read == msg


@pytest.mark.parametrize("contents", [
    {"contents": 1},                 # the state dict's own key: pickle writes a memo reference
    {"signal": 1},
    [Message.__module__, "Message"],
    {"party": Party.TASK},           # a class of the Message's module: pickle refers to its name
], ids=["contents-key", "signal-key", "class-names", "same-module"])
def test_references_into_the_envelope_are_left_to_pickle(contents: Any) -> None:
    msg = Message(contents=contents, signal="TASK_LOG")
    assert fast._envelope_dumps(msg) is None
    assert fast._envelope_loads(pickled(msg)) is None
    assert fast.encode_frame(msg) == _framing_py.encode_frame(msg)


def test_signal_object_inside_the_contents_is_left_to_pickle() -> None:
    signal = "TASK_" + "RESULT"  # not interned: pickle memoizes this very object
    msg = Message(contents={"which": signal}, signal=signal)
    assert fast._envelope_dumps(msg) is None
    assert fast.encode_frame(msg) == _framing_py.encode_frame(msg)
    [read] = fast.FrameDecoder().feed(fast.encode_frame(msg))
    assert read == msg


def test_self_reference_is_left_to_pickle() -> None:
    msg = Message(contents=[])
    msg.contents.append(msg)
    assert fast._envelope_dumps(msg) is None
    [read] = fast.FrameDecoder().feed(fast.encode_frame(msg))
    assert read.contents[0] is read


def test_classes_are_written_but_read_by_the_full_path() -> None:
    msg = Message(contents={"day": datetime.date(2026, 12, 2), "n": 1})
    assert fast._envelope_dumps(msg) == pickled(msg)
    assert fast._envelope_loads(pickled(msg)) is None  # globals: codec.loads (LUTE names mapped)
    [read] = fast.FrameDecoder().feed(fast.encode_frame(msg))
    assert read == msg


def test_lute_class_path_is_read_as_ours() -> None:
    lute_bytes = codec.dumps_lute_names(Message(contents={"from": "LUTE", "n": [1, 2]}, signal="TASK_RESULT"))
    assert b"lute.execution.ipc" in lute_bytes
    read = fast._envelope_loads(lute_bytes)
    assert type(read) is Message and read == codec.loads(lute_bytes)


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("no")


def test_errors_are_pickles_errors() -> None:
    with pytest.raises(UnpicklableContents):
        fast.append_frame(bytearray(), Message(contents={"bad": _Unpicklable()}))
    local = type("Local", (), {"__module__": "__main__", "__qualname__": "Local"})
    import __main__
    __main__.Local = local  # type: ignore[attr-defined]
    try:
        with pytest.raises(MainModuleContents):
            fast.append_frame(bytearray(), Message(contents={"obj": local()}))
    finally:
        delattr(__main__, "Local")


@SETTINGS
@given(contents=values, signal=signals, byte=st.integers(0, 255), data=st.data())
def test_damaged_pickles_are_read_as_pickle_reads_them(contents: Any, signal: Optional[str], byte: int,
                                                       data: Any) -> None:
    good = bytearray(pickled(Message(contents=contents, signal=signal)))
    where = data.draw(st.integers(0, len(good) - 1))
    mode = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    if mode == "flip":
        good[where] = byte
    elif mode == "truncate":
        del good[where:]
    elif mode == "insert":
        good.insert(where, byte)
    else:
        del good[where]
    damaged = bytes(good)
    read = fast._envelope_loads(damaged)
    if read is None:
        return
    # The envelope only accepts what pickle reads the same way. Compared as pickles: a damaged
    # float can read as NaN, which equals nothing, itself included.
    assert type(read) is Message and pickle.dumps(read) == pickle.dumps(codec.loads(damaged))


# Pickles pickle.dumps never writes but pickle.loads reads: the envelope serves the trusting
# decoder, so it reads them as codec.loads does (not as the restricted unpickler, which refuses
# them). The first is the input with which the fuzzer (fuzz/fuzz_message_codec.py) caught its
# own harness comparing against the restricted unpickler.
def _envelope_around(contents_ops: bytes) -> bytes:
    """A Message pickle (one frame) whose contents are the opcodes ``contents_ops``."""
    data = pickled(Message(contents=None, signal="TASK_RESULT")) \
        .replace(b"\x8c\x08contents\x94N", b"\x8c\x08contents\x94" + contents_ops)
    return set_outer_frame(data, len(data) - 11)  # PROTO 2 + FRAME 9 octets before the frame


@pytest.mark.parametrize("contents_ops", [
    b"]\x94(}\x94\x8c\x01n\x94K\x01s}\x94h\x08K\x02sG?\xf8\x00\x00\x00\x00\x00\x00NC\x01b\x94(\x90e",  # ADDITEMS onto bytes
    b"](K\x01K\x02eK\x00K\ts",                  # SETITEM into a list
    b"}(" + b"".join(b"\x8a\x09" + (k * (2 ** 61 - 1)).to_bytes(9, "little") + b"N"
                     for k in range(1, 41)) + b"u",  # 40 int keys of one hash
], ids=["empty-additems-on-bytes", "setitem-into-list", "colliding-keys"])
def test_plain_data_pickle_never_writes_is_read_as_codec_loads_reads_it(contents_ops: bytes) -> None:
    data = _envelope_around(contents_ops)
    expected = codec.loads(data)
    assert type(expected) is Message
    read = fast._envelope_loads(data)
    assert read is not None and pickled(read) == pickled(expected)
    frame = _framing_py.encode_payload(data)
    decoded = [impl.FrameDecoder().feed(frame) for impl in (fast, _framing_py)]
    assert pickled(decoded[0]) == pickled(decoded[1]) == pickled([expected])
