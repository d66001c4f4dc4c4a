"""Receiving a frame straight into its final buffer: ``pending_buffer()`` / ``commit()``.

Once a frame's head is read the decoder holds the frame's final buffer and offers the exact
rest of it as a writable view; bytes written there and committed decode as if fed. Both twins,
and the session parser of raw-socket sessions (the same contract for its records).
"""

from __future__ import annotations

import socket
import threading
from types import ModuleType
from typing import Any, List

import pytest

from lute_ipc.errors import TruncatedFrame, UsageError
from lute_ipc.message import Message
from lute_ipc.transport import session as _session

BIG = Message(contents=bytes(range(256)) * 4096, signal="TASK_LOG")  # 1 MiB of contents


def test_pending_buffer_is_the_exact_rest_of_the_frame(impl: ModuleType) -> None:
    frame = impl.encode_frame(BIG)
    decoder = impl.FrameDecoder()
    assert decoder.feed(frame[:100]) == []
    view = decoder.pending_buffer()
    assert view is not None and not view.readonly
    assert len(view) == len(frame) - 100
    view[:] = frame[100:]
    assert decoder.commit(len(view)) == [BIG]
    assert decoder.pending_buffer() is None
    assert (decoder.buffered, decoder.bytes_fed, decoder.frames, decoder.errors) == (0, len(frame), 1, 0)


def test_no_pending_buffer_before_the_frame_size_is_known(impl: ModuleType) -> None:
    decoder = impl.FrameDecoder(loads=None)
    assert decoder.pending_buffer() is None
    decoder.feed(b"MSG;;;12")  # a partial head: the size may still grow
    assert decoder.pending_buffer() is None
    decoder.feed(b"3;;;ab")
    view = decoder.pending_buffer()
    assert view is not None and len(view) == 123 - 2 + 6
    assert decoder.buffered == len(b"MSG;;;123;;;ab")


def test_commit_takes_only_what_the_view_holds(impl: ModuleType) -> None:
    decoder = impl.FrameDecoder()
    assert decoder.commit(0) == []
    with pytest.raises(UsageError):
        decoder.commit(1)  # no frame in progress
    decoder.feed(b"MSG;;;10;;;")
    for bad in (-1, 17, True, 1.0, "1"):
        with pytest.raises(UsageError):
            decoder.commit(bad)
    assert decoder.bytes_fed == len(b"MSG;;;10;;;")


def test_pieces_then_feed_then_more_frames(impl: ModuleType) -> None:
    small = Message(contents={"i": 1}, signal=None)
    frame = impl.encode_frame(BIG)
    stream = frame + impl.encode_frame(small) + impl.encode_frame(small)
    decoder = impl.FrameDecoder()
    pos = 40
    assert decoder.feed(stream[:pos]) == []
    out: List[Any] = []
    for size in (1, 4095, 300_000):  # receive-into in pieces, as recv_into returns them
        view = decoder.pending_buffer()
        view[:size] = stream[pos:pos + size]
        out += decoder.commit(size)
        pos += size
    assert out == [] and decoder.buffered == pos
    out += decoder.feed(stream[pos:])  # the rest of the frame and two more, fed
    assert out == [BIG, small, small]
    assert decoder.bytes_fed == len(stream) and decoder.buffered == 0


def test_eof_inside_a_frame_received_into_reports_its_bytes(impl: ModuleType) -> None:
    frame = impl.encode_frame(BIG)
    found: List[Any] = []
    decoder = impl.FrameDecoder(on_error=found.append)
    decoder.feed(frame[:20])
    view = decoder.pending_buffer()
    view[:1000] = frame[20:1020]
    decoder.commit(1000)
    del view
    assert decoder.feed_eof() == []
    assert [type(e) for e in found] == [TruncatedFrame]
    assert found[0].pending == frame[:1020] and found[0].offset == 0
    assert decoder.pending_buffer() is None and decoder.buffered == 0


def test_lying_frame_then_receive_into_the_next(impl: ModuleType) -> None:
    """A frame whose trailer is wrong is rejected; a head inside it starts the next frame,
    whose buffer is offered in turn: the same result as feeding."""
    inner = impl.encode_frame(Message(contents=b"z" * 50, signal=None))
    liar = b"MSG;;;%d;;;" % 30 + inner[:30] + b"XXXXXX"
    stream = liar + inner[30:] + impl.encode_frame(BIG)

    def drive(into: bool) -> Any:
        found: List[Any] = []
        decoder = impl.FrameDecoder(on_error=lambda e: found.append((type(e).__name__, e.offset)))
        out = decoder.feed(stream[:10])
        pos = 10
        while pos < len(stream):
            view = decoder.pending_buffer() if into else None
            if view is not None:
                size = min(len(view), 7000, len(stream) - pos)
                view[:size] = stream[pos:pos + size]
                out += decoder.commit(size)
            else:
                size = min(7000, len(stream) - pos)
                out += decoder.feed(stream[pos:pos + size])
            pos += size
        out += decoder.feed_eof()
        return out, found, decoder.frames, decoder.skipped_bytes, decoder.bytes_fed

    assert drive(True) == drive(False)
    assert drive(True)[0][-1] == BIG


def test_recv_into_from_a_real_socket(impl: ModuleType) -> None:
    frames = [impl.encode_frame(BIG), impl.encode_frame(Message(contents="done", signal="TASK_DONE"))]
    left, right = socket.socketpair()
    sender = threading.Thread(target=lambda: (left.sendall(b"".join(frames)), left.close()))
    sender.start()
    decoder = impl.FrameDecoder()
    buffer = bytearray(8192)
    out: List[Any] = []
    direct = 0
    try:
        while True:
            view = decoder.pending_buffer()
            if view is not None:
                size = right.recv_into(view)
                direct += size
                out += decoder.commit(size)
            else:
                size = right.recv_into(buffer)
                out += decoder.feed(memoryview(buffer)[:size])
            if size == 0:
                break
    finally:
        sender.join()
        right.close()
    assert out == [BIG, Message(contents="done", signal="TASK_DONE")]
    assert direct == len(frames[0]) - len(buffer)  # all but the first read of the large frame went straight in


# --------------------------------------------------------------------------- session records
def _established_pair(key: Any = None, limit: int = 1 << 24) -> Any:
    """A Task and an Executor session past the handshake (octets passed by hand: sans-IO)."""
    task = _session.TaskSession(key)
    executor = _session.ExecutorSession(key, require_auth=key is not None, max_message=limit, max_record=limit)
    for kind, value in executor.receive(task.opening()):
        if kind == _session.SEND:
            for kind2, value2 in task.receive(value):
                if kind2 == _session.SEND:
                    for kind3, value3 in executor.receive(value2):
                        if kind3 == _session.SEND:
                            task.receive(value3)
    assert task.established and executor.proven and executor.keyed == (key is not None)
    return task, executor


def _keyed_pair() -> Any:
    return _established_pair(b"k" * 32)


@pytest.mark.parametrize("keyed", [False, True])
def test_session_record_received_into_its_buffer(impl: ModuleType, keyed: bool) -> None:
    task, executor = _established_pair() if not keyed else _keyed_pair()
    body = impl.encode_frame(BIG)
    head, tag = task.record(_session.DATA, [body], len(body))
    record = head + body + tag
    assert executor.receive_buffer() is None  # no record in progress
    events = executor.receive(record[:1000])
    assert events == []
    view = executor.receive_buffer()
    assert view is not None and len(view) == len(record) - 1000
    view[:] = record[1000:]
    events = executor.received(len(view))
    assert [kind for kind, _ in events] == [_session.BODY]
    assert bytes(events[0][1]) == body
    assert executor.receive_buffer() is None and executor.buffered == 0
    with pytest.raises(UsageError):
        executor.received(1)


def test_session_record_with_a_bad_tag_received_into_fails() -> None:
    task, executor = _keyed_pair()
    body = b"x" * 100_000
    head, tag = task.record(_session.DATA, [body], len(body))
    record = head + body + bytes(len(tag))
    executor.receive(record[:10])
    view = executor.receive_buffer()
    view[:] = record[10:]
    events = executor.received(len(view))
    assert [kind for kind, _ in events] == [_session.FAILED]
    assert isinstance(events[0][1], _session.RecordRejected)
    assert executor.receive_buffer() is None


# --------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("mode", ["session", "plain"])
@pytest.mark.usefixtures("clean_lute_env")
def test_large_messages_go_straight_into_their_buffers(monkeypatch: pytest.MonkeyPatch, core: str,
                                                       mode: str) -> None:
    """A Task process sends 1 MiB messages over a raw Unix socket; the Executor's reader receives
    their bytes straight into the frame's (plain) or record's (session) final buffer while at least
    a read's worth (256 KiB) of it is missing."""
    from tests.socket_tasks.helpers import child_env, collect, executor, finish, start_task, use_transport

    monkeypatch.setenv("LUTE_IPC_PURE_PYTHON", core)
    use_zmq = use_transport(monkeypatch, ("raw", "unix"))
    size, count = 1 << 20, 4
    ex = executor(use_zmq)
    try:
        proc = start_task("large_writer.py", mode, count, size, env=child_env(use_zmq))
        got = collect(ex, count, 60, [proc])
        finish(proc)
        assert [m.contents for m in got] == [bytes([i]) * size for i in range(count)]
        assert ex.stats.framing_errors == 0 and ex.stats.auth_failures == 0
        assert ex.stats.bytes_received_into >= count * (size // 4)
    finally:
        ex.clear_communicator()


# --------------------------------------------------------------------------- memory bounds
def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


ANNOUNCED = 512 << 20


def test_an_announced_frame_size_is_not_held_before_it_arrives(impl: ModuleType) -> None:
    """The final buffer is allocated at the announced size, but a peer that announces 512 MiB and
    sends ten octets does not make the process hold 512 MiB (docs/SECURITY.md, max_frame_size)."""
    decoder = impl.FrameDecoder(max_frame_size=1 << 30)
    before = _rss_mib()
    decoder.feed(b"MSG;;;%d;;;" % ANNOUNCED + b"x" * 10)
    view = decoder.pending_buffer()
    assert view is not None and len(view) == ANNOUNCED - 10 + 6
    view[:1 << 20] = bytes(1 << 20)  # a first MiB arrives
    del view
    decoder.commit(1 << 20)
    grown = _rss_mib() - before
    assert grown < 64, f"holding {grown:.0f} MiB for 1 MiB received of a frame announcing 512 MiB"
    assert decoder.buffered == (1 << 20) + 10 + len(b"MSG;;;%d;;;" % ANNOUNCED)


def test_an_announced_record_size_is_not_held_before_it_arrives() -> None:
    task, executor = _established_pair(limit=1 << 30)
    before = _rss_mib()
    head, _tag = task.record(_session.DATA, [], ANNOUNCED)  # the head of a 512 MiB record, sent alone
    assert executor.receive(head + b"MSG;;;") == []
    view = executor.receive_buffer()
    assert view is not None and len(view) == ANNOUNCED - 6
    view[:1 << 20] = bytes(1 << 20)  # a first MiB arrives
    del view
    assert executor.received(1 << 20) == []
    grown = _rss_mib() - before
    assert grown < 64, f"holding {grown:.0f} MiB for 1 MiB received of a record announcing 512 MiB"


@pytest.mark.parametrize("size", [0, 1, 300 << 10])
def test_final_buffer_is_writable_and_exact(impl: ModuleType, size: int) -> None:
    buffer = impl.final_buffer(size)
    view = memoryview(buffer)
    assert len(view) == size and not view.readonly
    view[:] = b"\x07" * size
    assert bytes(buffer) == b"\x07" * size
    for bad in (-1, True, 1.0, "1"):
        with pytest.raises(UsageError):
            impl.final_buffer(bad)
