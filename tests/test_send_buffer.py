"""The Task's send buffer (``SendBuffer``, both twins): one call per message frames it, checks
it and applies the batching policy of :mod:`lute_ipc.transport.batching`, exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import ModuleType
from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lute_ipc import _oob
from lute_ipc._send_buffer_py import FORKED, LARGE, REFUSED
from lute_ipc.errors import UsageError
from lute_ipc.message import Message
from lute_ipc.transport import batching

from .conftest import IMPLEMENTATIONS

KEY = b"k" * 32
NEVER = 1e9  # a flush interval no test reaches: decisions do not depend on the clock


def _twins() -> List[ModuleType]:
    return [module for module in IMPLEMENTATIONS.values() if module is not None]


def test_frames_are_the_codecs_frames(impl: ModuleType) -> None:
    buffer = impl.SendBuffer(NEVER, 1 << 20, 1 << 20)
    messages = [Message(contents={"i": 1, "v": "x" * 40}), Message(contents="text", signal="TASK_LOG"),
                Message(contents=[1, 2.0, None], signal=None), Message(contents=b"b" * 100)]
    expected = bytearray()
    decisions = [buffer.append(msg, None) for msg in messages]
    for msg in messages:
        impl.append_frame(expected, msg)
    assert buffer.buffer == expected
    assert buffer.count == 4
    assert decisions == [batching.SCHEDULE, batching.KEEP, batching.KEEP, batching.KEEP]


def test_signed_frames_and_encoder(impl: ModuleType) -> None:
    signed = impl.SendBuffer(NEVER, 1 << 20, 1 << 20, key=KEY)
    msg = Message(contents={"a": 1}, signal="TASK_RESULT")
    assert signed.append(msg, None) == batching.FLUSH  # not a batched signal
    assert bytes(signed.buffer) == impl.encode_frame(msg, key=KEY)
    encoded = impl.SendBuffer(NEVER, 1 << 20, 1 << 20, encode=lambda m: b"payload:" + m.signal.encode())
    encoded.append(msg, None)
    assert bytes(encoded.buffer) == impl.encode_payload(b"payload:TASK_RESULT")
    with pytest.raises(UsageError):
        impl.SendBuffer(NEVER, 1, 1, key=b"")


def test_large_buffer_is_not_appended(impl: ModuleType) -> None:
    buffer = impl.SendBuffer(NEVER, 1 << 20, 1 << 30)
    size = _oob.LARGE_BUFFER
    for contents in (b"x" * size, bytearray(size), {"a": 1, "data": b"x" * size}, ["t", 1, b"x" * size],
                     ("t", bytearray(size + 1))):
        assert buffer.append(Message(contents=contents), None) == LARGE
        assert buffer.large == _oob.largest_buffer(contents) >= size
    assert buffer.append(Message(contents={"data": b"x" * (size - 1)}), None) == batching.SCHEDULE
    assert buffer.count == 1


def test_over_the_limit_is_refused_and_removed(impl: ModuleType) -> None:
    buffer = impl.SendBuffer(NEVER, 1 << 20, 200)
    buffer.append(Message(contents="first"), None)
    kept = bytes(buffer.buffer)
    assert buffer.append(Message(contents="x" * 300), None) == REFUSED
    assert buffer.refused == len(impl.encode_frame(Message(contents="x" * 300))) - len(b"MSG;;;343;;;;;;GSM")
    assert bytes(buffer.buffer) == kept and buffer.count == 1
    # the peer's limit lowers this side's, never raises it
    assert buffer.append(Message(contents="x" * 100), 50) == REFUSED
    assert buffer.append(Message(contents="x" * 250), 10_000) == REFUSED
    assert buffer.append(Message(contents="x" * 100), 0) == batching.KEEP


def test_clock_is_time_monotonic(impl: ModuleType) -> None:
    import time
    buffer = impl.SendBuffer(0.001, 100, 100)
    before = time.monotonic()
    now = buffer.now()
    after = time.monotonic()
    assert before <= now <= after


def test_write_through(impl: ModuleType) -> None:
    buffer = impl.SendBuffer(NEVER, 1 << 20, 1 << 20)
    assert buffer.append(Message(contents="a"), None) == batching.SCHEDULE
    buffer.write_through()
    assert buffer.flush_interval == 0.0
    assert buffer.append(Message(contents="b"), None) == batching.FLUSH


_STEP = st.tuples(st.floats(0.0, 0.01), st.sampled_from([None, "TASK_LOG", "TASK_RESULT", "X"]),
                  st.integers(1, 300), st.booleans(), st.sampled_from(["append", "busy", "due", "handed_over"]))


@settings(max_examples=300, deadline=None)
@given(interval=st.sampled_from([0.0, 0.001, 0.005]), size=st.integers(1, 2000), start=st.floats(0.0, 1.0),
       steps=st.lists(_STEP, max_size=40))
def test_twins_decide_as_the_batching_policy(interval: float, size: int, start: float,
                                             steps: List[Tuple[float, Optional[str], int, bool, str]]) -> None:
    policy = batching.FlushPolicy(interval, size, start)
    twins = [module.SendBuffer(interval, size, 1 << 20, now=start) for module in _twins()]
    now, buffered = start, 0
    for delta, signal, added, was_empty, what in steps:
        now += delta
        if what == "busy":
            policy.busy_until(now)
            for twin in twins:
                twin.busy_until(now)
            continue
        if what == "handed_over":
            policy.handed_over()
            for twin in twins:
                twin.handed_over()
            continue
        if what == "due":
            assert all(twin.due(now) == policy.due(now) for twin in twins)
            continue
        buffered = added if was_empty else buffered + added
        expected = policy.after_append(now, signal, buffered, was_empty)
        assert [twin.after_append(now, signal, buffered, was_empty) for twin in twins] == [expected] * len(twins)
        assert all(twin.deadline == policy.deadline for twin in twins)


@settings(max_examples=100, deadline=None)
@given(contents=st.lists(st.one_of(st.text(max_size=30), st.integers(), st.binary(max_size=50), st.none(),
                                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)), max_size=20),
       signal=st.sampled_from([None, "TASK_LOG", "TASK_RESULT"]), limit=st.integers(20, 400))
def test_twins_write_the_same_buffer(contents: list, signal: Optional[str], limit: int) -> None:
    twins = [module.SendBuffer(NEVER, 1 << 20, limit) for module in _twins()]
    for item in contents:
        msg = Message(contents=item, signal=signal)
        decisions = {twin.append(msg, None) for twin in twins}
        assert len(decisions) == 1
    assert len({bytes(twin.buffer) for twin in twins}) == 1
    assert len({(twin.count, twin.refused) for twin in twins}) == 1


FORK_CHILD = textwrap.dedent(
    """
    import ctypes, os, sys
    from lute_ipc import _framing_py
    from lute_ipc.message import Message
    if sys.argv[1] == "c":
        from lute_ipc import _framing_c as module
    else:
        module = _framing_py
    buffer = module.SendBuffer(1e9, 1 << 20, 1 << 20)
    buffer.append(Message(contents="parent's"), None)
    read, write = os.pipe()
    pid = ctypes.CDLL(None).fork()  # the C library's fork: no Python at-fork hook runs
    if pid == 0:
        os.write(write, str(buffer.append(Message(contents="child's"), None)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    print(os.read(read, 100).decode())
    """
)


@pytest.mark.parametrize("twin", ["c", "py"])
def test_a_fork_without_at_fork_hooks_is_caught(twin: str) -> None:
    if IMPLEMENTATIONS[twin] is None:
        pytest.skip("the Cython extension lute_ipc._framing_c is not built")
    out = subprocess.run([sys.executable, "-c", FORK_CHILD, twin], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(FORKED)
