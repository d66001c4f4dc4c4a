"""Splitter resynchronisation (issue 17, item 3), a property of both cores:

for any stream, every well-formed pickle written after bad octets, and every text octet that
is not part of a pickle candidate, is delivered, in order, whatever the chunking.

Bad units: a pickle announcing a length beyond ``max_pickle_size`` (the 11-octet terabyte
case), a FRAME announcing a length beyond it, a pickle growing past it opcode by opcode, a
candidate that breaks the grammar, a pickle ``loads`` refuses, and random octets. Their free
octets are ASCII (a ``\\x80`` could start a candidate of its own, and a UTF-8 lead octet would
make the next ``\\x80`` text: both legitimately absorb what follows); text octets are drawn
from characters that are not pickle opcodes.
"""

from __future__ import annotations

import pickle
from types import ModuleType
from typing import Any, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lute_ipc.message import Message
from lute_ipc.stream_items import Pickled, StreamError, Text

MAX = 256
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])

ascii_octets = st.binary(max_size=20).map(lambda b: bytes(octet & 0x7F for octet in b))
bad_units = st.one_of(
    st.builds(lambda n, tail: b"\x80\x02\x8e" + n.to_bytes(8, "little") + tail,
              st.integers(MAX + 1, 2**63 - 1).map(lambda n: int.from_bytes(bytes(o & 0x7F for o in n.to_bytes(8, "little")),
                                                                            "little") | (1 << 40)), ascii_octets),
    # A FRAME whose announced length lies beyond max_pickle_size (redteam: 1 TiB hid the pickle
    # after it); its octets made ASCII like the above. (A shorter lie may frame what follows:
    # see test_pickle_after_a_frame_longer_than_the_stream_is_delivered.)
    st.builds(lambda n, tail: b"\x80\x04\x95" + n.to_bytes(8, "little") + tail,
              st.integers(MAX - 10, 2**63 - 1).map(
                  lambda n: int.from_bytes(bytes(o & 0x7F for o in n.to_bytes(8, "little")), "little") | (1 << 40)),
              ascii_octets),
    st.builds(lambda n: pickle.dumps([7] * n, 2), st.integers(MAX // 2, 400)),
    st.builds(lambda op, tail: b"\x80\x03" + bytes([op]) + tail, st.sampled_from([0xFF, 0xA0, ord("e"), ord(".")]),
              ascii_octets),
    st.just(pickle.dumps(Message("x")).replace(b"lute_ipc.message", b"no_such_module_q")),
    ascii_octets,
)
safe_text = st.text(alphabet="xyz !?-_wvmk\n", min_size=1, max_size=15)
objects = st.one_of(st.integers(), st.text(max_size=20), st.builds(Message, st.text(max_size=10),
                                                                   st.sampled_from([None, "TASK_LOG"])))
suffix = st.lists(st.one_of(safe_text.map(lambda t: ("text", t)), objects.map(lambda o: ("pickle", o))),
                  min_size=1, max_size=6)


def run(impl: ModuleType, stream: bytes, cuts: List[int]) -> List[Any]:
    splitter = impl.MixedStreamSplitter(max_pickle_size=MAX)
    items: List[Any] = []
    bounds = [0] + sorted(min(c, len(stream)) for c in cuts) + [len(stream)]
    for a, b in zip(bounds, bounds[1:]):
        items += splitter.feed(stream[a:b])
    return items + splitter.flush()


@SETTINGS
@given(bad=st.lists(bad_units, min_size=1, max_size=3), after=suffix, cuts=st.lists(st.integers(0, 2000), max_size=8),
       protocol=st.integers(2, pickle.HIGHEST_PROTOCOL))
def test_everything_after_bad_octets_is_delivered_in_order(impl: ModuleType, bad: List[bytes],
                                                           after: List[Tuple[str, Any]], cuts: List[int],
                                                           protocol: int) -> None:
    written = [(kind, value if kind == "text" else pickle.dumps(value, protocol)) for kind, value in after]
    written = [(kind, data) for kind, data in written if kind == "text" or len(data) <= MAX]
    stream = b"".join(bad) + b"".join(data.encode() if kind == "text" else data for kind, data in written)
    items = run(impl, stream, cuts)
    expected_objects = [pickle.loads(data) for kind, data in written if kind == "pickle"]
    delivered = [item.value for item in items if isinstance(item, Pickled)]
    assert delivered[len(delivered) - len(expected_objects):] == expected_objects
    text = "".join(item.text for item in items if isinstance(item, Text))
    at = 0
    for kind, data in written:
        if kind == "text":
            found = text.find(data, at)
            assert found >= 0, (data, text)
            at = found + len(data)
    assert any(isinstance(item, StreamError) for item in items) or b"".join(bad).isascii()


@pytest.mark.parametrize("announced", [40, 100, MAX - 11])
@pytest.mark.parametrize("chunk", [None, 1])
def test_pickle_after_a_frame_longer_than_the_stream_is_delivered(impl: ModuleType, announced: int,
                                                                  chunk: Any) -> None:
    # Within max_pickle_size, but the candidate's STOP comes before the frame's end: not a pickle.
    after = pickle.dumps({"after": 1}, 4)
    stream = b"\x80\x04\x95" + announced.to_bytes(8, "little") + after + b"tail\n"
    assert len(after) < announced
    items = run(impl, stream, [] if chunk is None else list(range(len(stream))))
    assert [item.value for item in items if isinstance(item, Pickled)] == [{"after": 1}]
    assert "".join(item.text for item in items if isinstance(item, Text)).endswith("tail\n")
