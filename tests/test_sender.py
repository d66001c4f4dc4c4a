"""Task-side send buffer: flush rules, latency bound, close/exit semantics, large payloads, interop."""

from __future__ import annotations

import os
import pickle
import pickletools
import socket
import time
from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc._oob import has_large_buffer, largest_buffer, pickle_pieces
from lute_ipc.bench.lute_algorithm import LuteSocketReader
from tests.socket_tasks.helpers import (
    TRANSPORTS,
    child_env,
    collect,
    executor,
    finish,
    start_task,
    use_transport,
)

LONG = 60.0  # a latency bound that never expires during a test


pytestmark = pytest.mark.usefixtures("clean_lute_env")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    return use_transport(monkeypatch, request.param)


def task(use_zmq: bool, **options: Any) -> SocketCommunicator:
    comm = SocketCommunicator(Party.TASK, use_zmq=use_zmq, **options)
    comm.delayed_setup()
    return comm


def log(i: Any) -> Message:
    return Message(contents=i, signal="TASK_LOG")


def nothing_arrives(ex: SocketCommunicator, wait: float = 0.15) -> bool:
    return ex.read(wait=wait) == Message()


# --------------------------------------------------------------------------- flush rules
def test_size_threshold_sends_full_batches_in_order(transport: bool) -> None:
    with executor(transport) as ex:
        t = task(transport, flush_interval=LONG, flush_size=2000)
        for i in range(1000):
            t.write(log(i))
        sent_before_flush = t._writer.frames_sent
        assert sent_before_flush > 900 and t._writer.sends < 100  # batches, not one send each
        t.flush()
        assert [m.contents for m in collect(ex, 1000, 10)] == list(range(1000))
        t.clear_communicator()


def test_signal_other_than_task_log_flushes_everything_before_it(transport: bool) -> None:
    with executor(transport) as ex:
        t = task(transport, flush_interval=LONG)
        for i in range(5):
            t.write(log(i))
        t.write(Message(contents="plain"))  # no signal: batched too
        assert nothing_arrives(ex)
        t.write(Message(contents="done", signal="TASK_RESULT"))
        got = collect(ex, 7, 10)
        assert [m.contents for m in got] == [0, 1, 2, 3, 4, "plain", "done"]
        t.clear_communicator()


def test_flush_and_close_deliver_everything(transport: bool) -> None:
    with executor(transport) as ex:
        t = task(transport, flush_interval=LONG)
        t.write(log("a"))
        assert nothing_arrives(ex)
        t.flush()
        assert ex.read(wait=5).contents == "a"
        t.write(log("b"))
        t.write(log("c"))
        t.close()
        assert [m.contents for m in collect(ex, 2, 10)] == ["b", "c"]


def test_write_through_when_interval_is_zero(transport: bool) -> None:
    with executor(transport) as ex:
        t = task(transport, flush_interval=0)
        for i in range(20):
            t.write(log(i))
        assert t._writer.sends == 20 and t._writer.buffered == 0
        assert [m.contents for m in collect(ex, 20, 10)] == list(range(20))
        t.clear_communicator()


def test_lone_message_on_idle_task_arrives_within_the_bound(transport: bool) -> None:
    """Default bound (1 ms): asserted loosely (scheduling slack on a shared machine)."""
    with executor(transport) as ex:
        t = task(transport)
        t.write(log("warm-up"))
        assert ex.read(wait=5).contents == "warm-up"
        for _ in range(3):
            time.sleep(0.05)  # the Task is idle: only the flusher thread can send
            start = time.monotonic()
            t.write(log("lone"))
            assert ex.read(wait=5).contents == "lone"
            assert time.monotonic() - start < 1.0
        t.clear_communicator()


def test_interleaved_threads_and_triggers_lose_nothing(transport: bool) -> None:
    import threading

    with executor(transport) as ex:
        t = task(transport, flush_interval=0.002, flush_size=4096)

        def run(tag: int) -> None:
            for i in range(500):
                t.write(Message(contents=(tag, i), signal="TASK_RESULT" if i % 97 == 0 else "TASK_LOG"))
                if i % 131 == 0:
                    t.flush()

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        got = collect(ex, 2000, 20)
        t.clear_communicator()
    assert len(got) == 2000
    for tag in range(4):
        assert [m.contents[1] for m in got if m.contents[0] == tag] == list(range(500))


def test_options_are_checked() -> None:
    from lute_ipc.errors import UsageError

    with pytest.raises(UsageError):
        SocketCommunicator(Party.TASK, flush_interval=-1)
    with pytest.raises(UsageError):
        SocketCommunicator(Party.TASK, flush_size=0)


# --------------------------------------------------------------------------- process exit
@pytest.mark.parametrize("kind", ["raw", "zmq"])
def test_task_returning_without_close_is_flushed_at_exit(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    use_zmq = use_transport(monkeypatch, (kind, "unix"))
    with executor(use_zmq) as ex:
        proc = start_task("sender_exit.py", "no-close", 300, env=child_env(use_zmq))
        got = collect(ex, 300, 20, [proc])
        finish(proc)
    assert [m.contents for m in got] == list(range(300))


@pytest.mark.parametrize("kind", ["raw", "zmq"])
def test_sigkill_loses_only_what_was_not_flushed(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Documented limit: a killed Task loses its unflushed buffer (here: the second 100)."""
    use_zmq = use_transport(monkeypatch, (kind, "unix"))
    with executor(use_zmq) as ex:
        proc = start_task("sender_exit.py", "sigkill", 100, env=child_env(use_zmq))
        proc.wait(20)
        assert proc.returncode == -9
        got = collect(ex, 100, 10)
        time.sleep(0.2)
        got += ex.read_many(1000, wait=0.1)
    assert [m.contents for m in got] == list(range(100))


# --------------------------------------------------------------------------- large payloads
def _numpy() -> Any:
    return pytest.importorskip("numpy")


def large_messages() -> List[Message]:
    msgs = [
        Message(contents=b"\x97;;;GSM" * 20000, signal="TASK_RESULT"),
        Message(contents=bytearray(b"MSG;;;") * 10000),
        Message(contents=("name", b"y" * 70000, bytearray(40000), 7), signal="TASK_LOG"),
        Message(contents={"a": b"z" * 50000, "b": "small"}),
        # from 512 KiB on, buffers are not even copied into the pickle (protocol-5 re-inlining)
        Message(contents=(b"\x97" * 600000, bytearray(b"\x98;;;GSM") * 80000), signal="TASK_RESULT"),
    ]
    return msgs


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_large_payloads_round_trip_in_order_with_small_ones(monkeypatch: pytest.MonkeyPatch, transport) -> None:
    use_zmq = use_transport(monkeypatch, transport)
    msgs = large_messages()
    with executor(use_zmq) as ex:
        t = task(use_zmq, flush_interval=LONG)
        expected = []
        for n, msg in enumerate(msgs):
            t.write(log(n))
            t.write(msg)
            expected += [log(n), msg]
        t.write(log("end"))
        t.flush()
        got = collect(ex, len(expected) + 1, 20)
        t.clear_communicator()
    assert got[:-1] == expected and got[-1] == log("end")
    assert type(got[3].contents) is bytearray and type(got[1].contents) is bytes


@pytest.mark.parametrize("contents", [
    {"a": b"z" * 50000, "b": "small"},                     # found once its frame is known to be large
    ["name", bytearray(b"y" * 600000)],                      # out of band
    {"only small": [b"x" * 100] * 1000},                     # a large frame without a large buffer
], ids=["dict", "list-oob", "no-large-buffer"])
def test_a_container_is_sent_in_place_only_when_it_holds_a_large_buffer(contents: Any) -> None:
    with executor(False) as ex:
        t = task(False, flush_interval=LONG)
        t.write(log(0))
        t.write(Message(contents=contents))
        holds_large = has_large_buffer(contents)
        if holds_large:  # in place: the buffered message goes first, then the large frame on its own
            assert t._writer.sends == 2 and t._writer.buffered == 0
        else:  # batched with the other one (the batching policy decides when)
            assert t._writer.sends + t._writer.buffered in (1, 2) and t._writer.sends < 2
        t.flush()
        got = collect(ex, 2, 20)
        t.clear_communicator()
    assert got == [log(0), Message(contents=contents)]


def test_numpy_arrays_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    np = _numpy()
    arrays = [np.arange(50000, dtype=np.float64).reshape(500, 100),
              np.arange(200000, dtype=np.float64).reshape(400, 500),  # 1.6 MB: out of band
              np.asfortranarray(np.ones((200, 300), dtype=np.int32)),
              np.arange(10)]
    readonly = np.arange(20000)
    readonly.flags.writeable = False
    arrays.append(readonly)
    with executor(False) as ex:
        t = task(False)
        for a in arrays:
            t.write(Message(contents=a, signal="TASK_RESULT"))
        got = collect(ex, len(arrays), 20)
        t.clear_communicator()
    for a, m in zip(arrays, got):
        assert m.contents.dtype == a.dtype and m.contents.shape == a.shape and (m.contents == a).all()
        assert m.contents.flags.f_contiguous == a.flags.f_contiguous


def test_signed_large_payload_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    use_transport(monkeypatch, ("raw", "tcp"))
    with executor(False) as ex:
        assert ex.require_auth
        t = task(False)
        t.write(log(1))
        t.write(Message(contents=b"q" * 200000))
        got = collect(ex, 2, 10)
        t.clear_communicator()
        assert ex.stats.auth_failures == 0
    assert got == [log(1), Message(contents=b"q" * 200000)]


# --------------------------------------------------------------------------- protocol-5 re-inlining
def _joined(pieces: List[Any]) -> bytes:
    return b"".join(bytes(p) for p in pieces)


@pytest.mark.parametrize("obj", [
    Message(contents=b"a" * 100000),
    Message(contents=bytearray(b"\x97\x98") * 30000),
    [b"\x97" * 40000, "s", bytearray(b"\x95" * 50000), ("t", 1.5)],
    {"x": b"b" * 33000, "y": [1, 2, 3]},
    (b"small", b"c" * 40000),
])
def test_reinlined_pickle_is_an_ordinary_in_band_pickle(obj: Any) -> None:
    pieces, size = pickle_pieces(obj)
    data = _joined(pieces)
    assert len(data) == size
    names = [op.name for op, _, _ in pickletools.genops(data)]
    assert "NEXT_BUFFER" not in names and "READONLY_BUFFER" not in names and "BINPERSID" not in names
    assert pickle.loads(data) == obj == pickle._loads(data)  # C and strict pure-Python unpicklers
    assert type(pickle.loads(data)) is type(obj)
    assert any(isinstance(p, memoryview) for p in pieces)  # large buffers were not copied


def test_reinlined_types_and_sharing() -> None:
    shared = bytearray(40000)
    data = _joined(pickle_pieces([shared, shared])[0])
    a, b = pickle.loads(data)
    assert a is b  # a repeated buffer keeps its identity (pickled in band)
    s = "memo"
    out = pickle.loads(_joined(pickle_pieces([s, b"x" * 40000, s, bytearray(b"y" * 40000), s])[0]))
    assert out[0] is out[2] is out[4] and type(out[1]) is bytes and type(out[3]) is bytearray


def test_numpy_reinlined_like_in_band() -> None:
    np = _numpy()
    a = np.arange(30000, dtype=np.int64)
    data = _joined(pickle_pieces(a)[0])
    b = pickle.loads(data)
    assert (a == b).all() and b.flags.writeable
    assert (pickle.loads(pickle.dumps(a, 5)) == b).all()


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=64),
                              st.binary(max_size=64).map(bytearray)),
                    lambda inner: st.one_of(st.lists(inner, max_size=20), st.tuples(inner, inner),
                                            st.dictionaries(st.text(max_size=3), inner, max_size=20)),
                    max_leaves=30))
def test_largest_buffer_is_the_largest_of_the_first_items(contents: Any) -> None:
    def size(obj: Any) -> int:
        return len(obj) if type(obj) in (bytes, bytearray) else 0
    items = (list(contents.values()) if type(contents) is dict
             else list(contents) if type(contents) in (list, tuple) else [])
    expected = max([size(contents)] + [size(item) for item in items[:16]])
    assert largest_buffer(contents) == expected


def test_large_buffer_scan() -> None:
    assert has_large_buffer(b"x" * 40000) and has_large_buffer(("a", bytearray(40000)))
    assert has_large_buffer({"k": b"x" * 40000})
    assert not has_large_buffer("x" * 100000) and not has_large_buffer([b"x" * 100] * 1000)


# --------------------------------------------------------------------------- interop
def lute_executor_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> socket.socket:
    """A listening Unix socket where a LUTE Executor's would be, exported as LUTE's Executor does."""
    path = str(tmp_path / "lute.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(16)
    monkeypatch.setenv("LUTE_SOCKET", path)
    monkeypatch.setenv("LUTE_EXECUTOR_HOST", socket.gethostname())
    return listener


def test_batched_frames_read_by_the_lute_reader(lute_package: None, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """LUTE's reader algorithm (re-expressed) decodes buffers holding many frames (LUTE's class
    paths: the frames unpickle only where LUTE is installed)."""
    listener = lute_executor_socket(monkeypatch, tmp_path)
    reader = LuteSocketReader(listener)
    try:
        t = task(False, flush_interval=LONG)
        for i in range(500):
            t.write(log(i))
        t.write(Message(contents=b"L" * 50000, signal="TASK_RESULT"))
        t.write(log("last"))
        t.close()  # LUTE's reader delivers a connection's messages when it closes
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 502 and time.monotonic() < deadline:
            msg = reader.read()
            if msg is not None:
                got.append(msg)
    finally:
        reader.close()
    assert [m.contents for m in got[:500]] == list(range(500))
    assert got[500].contents == b"L" * 50000 and got[501].contents == "last"
    assert type(got[0]).__name__ == "Message"


def test_forked_child_does_not_resend_the_parents_buffer(transport: bool) -> None:
    with executor(transport) as ex:
        t = task(transport, flush_interval=LONG)
        t.write(log("parent"))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                t._writer.flush()  # nothing of the parent's to send
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert nothing_arrives(ex)
        t.flush()
        assert [m.contents for m in collect(ex, 1, 5)] == ["parent"]
        assert nothing_arrives(ex)
        t.clear_communicator()


def test_first_message_after_a_quiet_spell_goes_out_at_once(transport: bool) -> None:
    """A lone message does not wait for the bound; the messages right behind it are batched."""
    with executor(transport) as ex:
        t = task(transport, flush_interval=0.5)
        time.sleep(0.6)  # quiet for longer than the bound
        t.write(log("lone"))
        assert t._writer.sends == 1 and t._writer.buffered == 0  # sent by write() itself
        assert ex.read(wait=0.3).contents == "lone"  # well before the 0.5 s bound
        t.write(log("next-1"))  # right behind it: batched until the bound
        t.write(log("next-2"))
        assert t._writer.sends == 1 and t._writer.buffered == 2
        t.flush()
        assert [m.contents for m in collect(ex, 2, 10)] == ["next-1", "next-2"]
        t.clear_communicator()


def test_lute_separator_in_a_pickle_is_reported_once_and_still_sent(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """LUTE 0.3.0's Executor splits frames on ';;;' whatever their length says: a Task talking to it
    sends LUTE's exact bytes still, and says once (then counts) that such a message will be lost there."""
    import threading

    for name in [n for n in os.environ if n.startswith("LUTE_")]:
        monkeypatch.delenv(name)
    listener = lute_executor_socket(monkeypatch, tmp_path)
    received = bytearray()

    def serve() -> None:  # LUTE's Executor, as far as bytes go: read each connection to its end
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    received.extend(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    hostile = [Message(contents=b"a;;;b", signal="TASK_LOG"), Message(contents="x;;;y")]
    try:
        with caplog.at_level("WARNING", logger="lute_ipc.transport"):
            t = task(False)
            t.write(Message(contents="clean"))
            for msg in hostile:
                t.write(msg)
            writer = t._writer
            t.clear_communicator()
        from lute_ipc import codec

        frames = [b"MSG;;;%d;;;" % len(p) + p + b";;;GSM" for p in map(codec.dumps_lute_names, hostile)]
        deadline = time.monotonic() + 10  # the stand-in reads connections in its own thread
        while not all(frame in received for frame in frames) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        listener.close()
        thread.join(5)
    warnings = [r for r in caplog.records if "LUTE's separator" in r.getMessage()]
    assert len(warnings) == 1 and "signal TASK_LOG" in warnings[0].getMessage()
    assert writer.lute_undecodable == 2
    for frame in frames:  # still sent, in LUTE's frame, byte for byte what LUTE's own Task sends
        assert frame in received
