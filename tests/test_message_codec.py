"""The direct pickle codec for ``Message(str|bytes|None, str|None)`` (Cython) and
``message_pieces`` (both twins).

Its reference is pickle itself: whatever the fast path writes must be byte-identical to
``pickle.dumps(msg, PICKLE_PROTOCOL)``, and whatever it reads must equal ``pickle.loads``
(through :func:`lute_ipc.codec.loads`, which maps LUTE's class paths). Anything it does not
handle exactly must be left to pickle (the hooks return None). The frame-level twins
(``append_frame``/``encode_frame``/``FrameDecoder``) are compared with the pure-Python
reference in test_framing_hypothesis.py; here the fast path itself is pinned down.
"""

from __future__ import annotations

import pickle
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lute_ipc import _framing_py, codec
from lute_ipc.message import Message, TaskMetadataMessage

from .conftest import IMPLEMENTATIONS

fast = IMPLEMENTATIONS["c"]
pytestmark = pytest.mark.skipif(fast is None, reason="the Cython extension lute_ipc._framing_c is not built")

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROTOCOL = codec.PICKLE_PROTOCOL
KEY = b"s" * 32

texts = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(min_size=200, max_size=400),                       # BINUNICODE beyond 255 utf-8 bytes
    st.sampled_from(["", "contents", "signal", "Message", "lute_ipc.message", "TASK_LOG", "\udc80"]),
    st.integers(0, 20000).map(lambda n: "y" * n),              # around the 16 KiB limit
)


class Text(str):
    """A str subclass: pickle writes its class, so the fast path must not take it."""


def expected_pickle(msg: Any) -> bytes:
    return pickle.dumps(msg, PROTOCOL)


def test_self_check_enabled_the_fast_path() -> None:
    assert fast._fast_message_enabled()
    msg = Message(contents="a log line", signal="TASK_LOG")
    assert fast._fast_message_dumps(msg) == expected_pickle(msg)
    assert fast._fast_message_loads(expected_pickle(msg)) == msg


@SETTINGS
@given(contents=texts, signal=texts)
def test_dumps_is_pickle_byte_for_byte_or_declines(contents: Optional[str], signal: Optional[str]) -> None:
    msg = Message(contents=contents, signal=signal)
    written = fast._fast_message_dumps(msg)
    if written is not None:
        assert written == expected_pickle(msg)
    ordinary = all(v is None or (len(v.encode("utf-8", "surrogatepass")) <= 16 * 1024 and "\udc80" not in v
                                 and v not in ("contents", "signal", "Message", "lute_ipc.message"))
                   for v in (contents, signal))
    if ordinary and not (contents is not None and contents == signal):
        assert written is not None, "an ordinary text message must take the fast path"


@SETTINGS
@given(contents=texts, signal=texts)
def test_loads_equals_pickle_or_declines(contents: Optional[str], signal: Optional[str]) -> None:
    msg = Message(contents=contents, signal=signal)
    data = expected_pickle(msg)
    read = fast._fast_message_loads(data)
    if read is not None:
        assert type(read) is Message
        assert read == codec.loads(data) == msg
        assert list(vars(read)) == ["contents", "signal"]


@SETTINGS
@given(contents=st.text(max_size=30), signal=st.one_of(st.none(), st.text(max_size=10)),
       cut=st.integers(0, 400), byte=st.integers(0, 255), data=st.data())
def test_damaged_pickles_are_read_as_pickle_reads_them(contents: str, signal: Optional[str], cut: int,
                                                       byte: int, data: Any) -> None:
    good = bytearray(expected_pickle(Message(contents=contents, signal=signal)))
    where = data.draw(st.integers(0, len(good) - 1))
    mode = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if mode == "flip":
        good[where] = byte
    elif mode == "truncate":
        del good[min(cut, len(good) - 1):]
    else:
        good.insert(where, byte)
    damaged = bytes(good)
    read = fast._fast_message_loads(damaged)
    if read is None:
        return
    assert read == codec.loads(damaged)  # the fast path only accepts what pickle reads the same way


def test_lute_class_path_is_read_as_ours() -> None:
    lute_bytes = codec.dumps_lute_names(Message(contents="from LUTE", signal="TASK_LOG"))
    assert b"lute.execution.ipc" in lute_bytes
    read = fast._fast_message_loads(lute_bytes)
    assert type(read) is Message and read == Message("from LUTE", "TASK_LOG") == codec.loads(lute_bytes)


def _as_a_peer_may_send(contents: object, signal: object) -> Message:
    """A Message the constructor refuses (a non-text signal) but a LUTE peer can still pickle."""
    msg = Message(contents)
    msg.signal = signal  # type: ignore[assignment]
    return msg


@pytest.mark.parametrize("msg", [
    Message(contents=1, signal="TASK_LOG"),
    Message(contents=bytearray(b"bytes"), signal="TASK_LOG"),
    _as_a_peer_may_send("x", 7),
    TaskMetadataMessage(contents={"a": 1}),
    Message(contents="x" * (16 * 1024 + 1), signal="TASK_LOG"),
], ids=["int", "bytearray", "int-signal", "subclass", "too-long"])
def test_other_shapes_are_left_to_pickle(msg: Message) -> None:
    assert fast._fast_message_dumps(msg) is None
    buffer = bytearray()
    fast.append_frame(buffer, msg)
    assert bytes(buffer) == _framing_py.encode_frame(msg)


def test_identity_sharing_values_are_left_to_pickle() -> None:
    shared = "same text"
    msg = Message(contents=shared, signal=shared)  # pickle writes a memo reference for the second
    assert fast._fast_message_dumps(msg) is None
    assert fast.encode_frame(msg) == _framing_py.encode_frame(msg)


def test_extra_attributes_and_str_subclasses_are_left_to_pickle() -> None:
    msg = Message(contents="x", signal="TASK_LOG")
    msg.extra = 1  # type: ignore[attr-defined]
    assert fast._fast_message_dumps(msg) is None
    [payload] = _framing_py.FrameDecoder(loads=None).feed(fast.encode_frame(msg))
    assert pickle.loads(payload).extra == 1

    odd = Message(contents=Text("x"), signal="TASK_LOG")
    assert fast._fast_message_dumps(odd) is None
    assert fast.encode_frame(odd) == _framing_py.encode_frame(odd)


@pytest.mark.parametrize("module", [b"lute_ipc.messagf", b"lute.execution.ipd", b"other_module"])
def test_a_foreign_class_with_the_same_shape_is_not_taken(module: bytes) -> None:
    data = expected_pickle(Message("x", "TASK_LOG"))
    name = b"lute_ipc.message"
    foreign = data.replace(bytes([len(name)]) + name, bytes([len(module)]) + module)
    if len(module) != len(name):  # keep pickle's frame length right, so only the name differs
        body = int.from_bytes(foreign[3:11], "little") + len(module) - len(name)
        foreign = foreign[:3] + body.to_bytes(8, "little") + foreign[11:]
    assert foreign != data
    assert fast._fast_message_loads(foreign) is None


@SETTINGS
@given(contents=texts, signal=texts, signed=st.booleans())
def test_frames_match_the_pure_reference_byte_for_byte(contents: Optional[str], signal: Optional[str],
                                                      signed: bool) -> None:
    msg = Message(contents=contents, signal=signal)
    key = KEY if signed else None
    ours, reference = bytearray(b"prefix"), bytearray(b"prefix")
    added = fast.append_frame(ours, msg, key=key)
    assert added == _framing_py.append_frame(reference, msg, key=key)
    assert ours == reference
    assert fast.encode_frame(msg, key=key) == _framing_py.encode_frame(msg, key=key)
    decoded = fast.FrameDecoder(key=key).feed(bytes(ours[len(b"prefix"):]))
    assert decoded == _framing_py.FrameDecoder(key=key).feed(bytes(reference[len(b"prefix"):])) == [msg]


# ----------------------------------------------------------------------------- bytes contents
byte_sizes = st.one_of(st.integers(0, 300), st.integers(32 * 1024, 33 * 1024),
                       st.integers(65536 - 200, 65536 + 64), st.sampled_from([100_000, 1 << 20]))
signals = st.one_of(st.none(), st.sampled_from(["TASK_RESULT", "TASK_LOG", "signal", "contents", "Message"]),
                    st.text(max_size=20), st.text(min_size=256, max_size=300))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=byte_sizes, signal=signals)
def test_bytes_contents_pickles_match_pickle_in_both_twins(size: int, signal: Optional[str]) -> None:
    msg = Message(contents=bytes(range(256)) * (size // 256) + b"x" * (size % 256), signal=signal)
    expected = expected_pickle(msg)
    found = {name: impl.message_pieces(msg) for name, impl in (("c", fast), ("py", _framing_py))}
    assert (found["c"] is None) == (found["py"] is None)
    for pieces in found.values():
        if pieces is not None:
            parts, total = pieces
            assert parts[1] is msg.contents  # sent in place, never copied
            assert b"".join(parts) == expected and total == len(expected)
    if signal not in ("signal", "contents", "Message"):
        # a plain bytes message always has a direct form, except where pickle closes its frame
        # inside (a few hundred sizes just below 64 KiB)
        assert found["c"] is not None or 65536 - 400 < size < 65536
    written = fast._fast_message_dumps(msg)
    if written is not None:
        assert written == expected
    read = fast._fast_message_loads(expected)
    if read is not None:
        assert read == msg and type(read.contents) is bytes
    if found["c"] is not None:
        assert read is not None, "what the fast path writes, it must read"


def test_message_pieces_declines_other_messages() -> None:
    for impl in (fast, _framing_py):
        assert impl.message_pieces(Message(contents="text", signal="TASK_LOG")) is None
        assert impl.message_pieces(Message(contents=bytearray(b"x"), signal="TASK_LOG")) is None
        assert impl.message_pieces(TaskMetadataMessage(contents={"a": b"x"})) is None
        odd = Message(contents=b"x", signal="TASK_LOG")
        odd.extra = 2  # type: ignore[attr-defined]
        assert impl.message_pieces(odd) is None
