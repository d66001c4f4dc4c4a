"""One decoding path (issue 17, item 4): frame decoder and pipe splitter, Cython and pure twin,
any payload size, give the same result for every payload, crafted ones included.

The reference is :func:`lute_ipc.codec.loads`. Payloads sit under and over 8 KiB (the old
scan limit where the twins diverged), 32 KiB (lending) and 64 KiB (pickle's frame target),
and are bent: outer FRAME lengths changed, module names escaped (``V\\u006cute.execution.ipc``),
LUTE's class paths, truncations.
"""

from __future__ import annotations

import pickle
from types import ModuleType
from typing import Any, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lute_ipc import codec
from lute_ipc.message import Message
from lute_ipc.errors import PayloadError
from lute_ipc.stream_items import Pickled

from .conftest import IMPLEMENTATIONS
from .crafted_pickles import BENDS, SIZES, base_objects, craft, outcome, set_outer_frame

TWINS = {name: module for name, module in IMPLEMENTATIONS.items() if module is not None}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def through_decoder(impl: ModuleType, payload: bytes) -> Any:
    errors: List[Exception] = []
    decoder = impl.FrameDecoder(on_error=errors.append)
    out = decoder.feed(impl.encode_payload(payload))
    if errors:
        raise errors[0].__cause__ or errors[0]
    assert len(out) == 1
    return out[0]


def through_splitter(impl: ModuleType, payload: bytes, chunk: int) -> Any:
    """The value of the payload read from a pipe stream, when the splitter takes it as one pickle."""
    splitter = impl.MixedStreamSplitter()
    items = []
    for start in range(0, len(payload), chunk):
        items += splitter.feed(payload[start:start + chunk])
    items += splitter.flush()
    if len(items) == 1 and isinstance(items[0], Pickled):
        return items[0].value
    if len(items) == 1 and isinstance(getattr(items[0], "error", None), PayloadError):
        raise items[0].error.__cause__ or items[0].error
    return NotOnePickle([type(getattr(item, "error", item)).__name__ for item in items])


class NotOnePickle(tuple):
    """The splitter did not take the payload as one pickle (grammar, size or end of stream)."""


def assert_one_path(payload: bytes, chunk: int = 1 << 30) -> None:
    found = {"codec.loads": outcome(lambda: codec.loads(payload))}
    for name, impl in TWINS.items():
        found[f"{name} decoder"] = outcome(lambda: through_decoder(impl, payload))
    assert len(set(map(repr, found.values()))) == 1, found
    split = {name: outcome(lambda: through_splitter(impl, payload, chunk)) for name, impl in TWINS.items()}
    assert len(set(map(repr, split.values()))) == 1, split
    if not (split["py"][0] == "ok" and isinstance(split["py"][1][1], NotOnePickle)):
        assert split["py"] == found["codec.loads"], (split, found)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("bend", range(len(BENDS)), ids=BENDS)
def test_crafted_payloads_decode_alike_everywhere(size: int, bend: int) -> None:
    for obj in base_objects(size):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            for value in (-3, -1, 1, 9):
                assert_one_path(craft(obj, protocol, bend, value))


def test_escaped_legacy_name_over_8_kib_is_a_message_on_both_twins() -> None:
    """Issue 17, bug 4: Cython raised ModuleNotFoundError where the pure twin made a Message."""
    payload = craft(Message("x" * 9000, "TASK_LOG"), 2, BENDS.index("escaped legacy name"), 0)
    assert b"lute.execution.ipc" not in payload and len(payload) > 8192
    for name, impl in TWINS.items():
        assert through_decoder(impl, payload) == Message("x" * 9000, "TASK_LOG"), name
        assert through_splitter(impl, payload, 1000) == Message("x" * 9000, "TASK_LOG"), name


def test_short_outer_frame_over_8_kib_is_refused_on_both_twins() -> None:
    """Issue 17, bug 4: a too-short outer FRAME gave a tuple on Cython and a PayloadError on pure."""
    data = pickle.dumps((1, "s" * 9000), 4)
    payload = set_outer_frame(data, 5)
    for name, impl in TWINS.items():
        with pytest.raises(pickle.UnpicklingError):
            through_decoder(impl, payload)
        with pytest.raises(pickle.UnpicklingError):
            through_splitter(impl, payload, 4096)


@SETTINGS
@given(obj=st.sampled_from(range(5)), size=st.sampled_from(SIZES) | st.integers(0, 70_000),
       protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), bend=st.integers(0, len(BENDS) - 1),
       value=st.integers(-20, 20) | st.integers(-(1 << 40), 1 << 40),
       chunk=st.sampled_from([1 << 30, 4096, 777]))
def test_hypothesis_crafted_payloads_decode_alike(obj: int, size: int, protocol: int, bend: int, value: int,
                                                  chunk: int) -> None:
    assert_one_path(craft(base_objects(size)[obj], protocol, bend, value), chunk)


@SETTINGS
@given(data=st.binary(max_size=200), size=st.sampled_from([0, 9000]))
def test_hypothesis_random_bytes_after_a_real_pickle_head_decode_alike(data: bytes, size: int) -> None:
    head = pickle.dumps(Message("p" * size, "TASK_LOG"), 4)[:60]
    assert_one_path(head + data)
