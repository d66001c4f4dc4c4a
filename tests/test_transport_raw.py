"""Transport v2 on raw sockets (Unix and TCP): each bullet of the reliability list of issue 14.

Real processes and sockets; every test runs under the core in use (the suite runs twice:
Cython, then ``LUTE_IPC_PURE_PYTHON=1``). Each test reproduces a loss or an attack that the
transport before the session protocol let through (see the docstrings).
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Tuple

import pytest

from lute_ipc import Message, Party, SocketCommunicator, codec
from lute_ipc.errors import AuthenticationError, MessageTooLarge, TransportError
from lute_ipc.framing import encode_frame
from lute_ipc.transport import session as S
from tests.socket_tasks.helpers import (
    TASKS,
    child_env,
    collect,
    executor,
    finish,
    start_task,
    use_transport,
    wait_until,
)
from tests.socket_tasks.idle_clients import connect as _connect
from tests.socket_tasks.lute_executor import LuteExecutorPeer
from tests.socket_tasks.relay import Relay

FAMILIES = [pytest.param("unix", id="unix"), pytest.param("tcp", id="tcp")]


pytestmark = pytest.mark.usefixtures("clean_lute_env")


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    use_transport(monkeypatch, ("raw", request.param))
    return str(request.param)


def _closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# --------------------------------------------------------------------------- slow consumer
@pytest.mark.parametrize("speaker", ["session", "lute"])
def test_slow_consumer_is_not_an_idle_peer(family: str, speaker: str) -> None:
    """Before: the reader stamped activity, then blocked on a full queue; the idle timer counted
    that wait and closed the Task's connection with its bytes in the kernel (3,000 written,
    260-823 delivered). Now the wait does not count: every message arrives, the Task's close()
    returns (session: confirmed)."""
    count = 3000
    with executor(False, idle_timeout=1, queue_size=1, require_auth=None if family == "tcp" and
                  speaker == "session" else False) as ex:
        args = [count] + (["lute"] if speaker == "lute" else [])
        proc = start_task("slow_consumer_task.py", *args, env=child_env(False))
        first = collect(ex, 10, 30, [proc])
        time.sleep(2.5)  # the consumer pauses longer than idle_timeout
        rest = collect(ex, count - len(first), 60, [proc])
        finish(proc)
        got = first + rest
        assert [m.contents[0] for m in got] == list(range(count))
        assert ex.stats.idle_closed == 0


# --------------------------------------------------------------------------- eviction
def test_quiet_task_keeps_its_connection_when_the_table_fills(family: str) -> None:
    """Before: at max_connections the least recently read connection was closed, unread data
    and all; a quiet Task that then wrote 50 messages lost them. Now proven connections are never
    closed; unproven ones are."""
    with executor(False, max_connections=8) as ex:
        task = SocketCommunicator(Party.TASK, use_zmq=False)
        task.write(Message("hello"))
        assert ex.read(wait=5).contents == "hello"
        peers = []
        for _ in range(20):  # unauthenticated peers sending one byte each
            peer = _connect()
            peer.sendall(b"L")
            peers.append(peer)
        assert wait_until(lambda: ex.stats.unproven_closed >= 12)
        for i in range(50):
            task.write(Message(i))
        task.close()  # confirmed by the Executor
        assert [m.contents for m in collect(ex, 50, 10)] == list(range(50))
        assert ex.stats.unproven_closed >= 12
        for peer in peers:
            peer.close()


# --------------------------------------------------------------------------- memory bound
@pytest.mark.parametrize("opening", [b"", S.MAGIC + bytes(S.NONCE_SIZE)], ids=["garbage", "session-opening"])
def test_unauthenticated_peers_cannot_make_the_executor_buffer(monkeypatch: pytest.MonkeyPatch,
                                                               opening: bytes) -> None:
    """Before: a frame was buffered whole before its tag was checked (8 keyless peers x 16 MiB:
    +128 MiB). Now an unproven connection is read at most a few KiB, then closed."""
    use_transport(monkeypatch, ("raw", "tcp"))
    chunk = b"MAC;;;16777216;;;" + b"x" * (1 << 20) if not opening else b"P" + b"x" * (1 << 20)
    with executor(False) as ex:
        peers = [_connect() for _ in range(8)]
        senders = []
        for peer in peers:
            def flood(sock: socket.socket = peer) -> None:
                try:
                    sock.sendall(opening)
                    for _ in range(16):
                        sock.sendall(chunk)
                except OSError:
                    pass
            thread = threading.Thread(target=flood)
            thread.start()
            senders.append(thread)
        for thread in senders:
            thread.join(30)
        assert wait_until(lambda: ex.stats.connections_closed == 8)
        assert ex.stats.bytes_received <= 8 * (S.UNPROVEN_LIMIT + S.OPENING_SIZE)
        for peer in peers:
            peer.close()


# --------------------------------------------------------------------------- keys
def test_wrong_or_missing_key_raises_at_setup(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a Task with a well-formed wrong key wrote 21 messages without error, 0 arrived.
    Now delayed_setup() raises AuthenticationError at once; nothing is delivered."""
    with executor(False, require_auth=True) as ex:
        right = os.environ["LUTE_IPC_KEY"]
        monkeypatch.setenv("LUTE_IPC_KEY", codec.generate_key().hex())
        task = SocketCommunicator(Party.TASK, use_zmq=False)
        with pytest.raises(AuthenticationError, match="wrong key"):
            task.delayed_setup()
        with pytest.raises(AuthenticationError):
            SocketCommunicator(Party.TASK, use_zmq=False).write(Message("first write"))
        monkeypatch.delenv("LUTE_IPC_KEY")
        with pytest.raises(AuthenticationError, match="LUTE_IPC_KEY is not set"):
            SocketCommunicator(Party.TASK, use_zmq=False).delayed_setup()
        monkeypatch.setenv("LUTE_IPC_KEY", right)
        with SocketCommunicator(Party.TASK, use_zmq=False) as good:
            good.write(Message("good"))
        assert ex.read(wait=5).contents == "good"
        assert ex.read(wait=0.2) == Message()
        assert ex.stats.handshake_failures == 2  # the keyless Task gave up before its proof


# --------------------------------------------------------------------------- replay
def test_captured_traffic_replayed_on_a_new_connection_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: signed frames captured on the wire were accepted again on a new connection.
    Now a new connection gets a new nonce: the captured proof fails, nothing is delivered twice,
    and the rejection is counted."""
    use_transport(monkeypatch, ("raw", "tcp"))
    with executor(False) as ex:
        proxy = Relay(os.environ["LUTE_PORT"])
        monkeypatch.setenv("LUTE_PORT", proxy.address)
        with SocketCommunicator(Party.TASK, use_zmq=False) as task:
            for i in range(5):
                task.write(Message(i))
        assert [m.contents for m in collect(ex, 5, 10)] == list(range(5))
        assert proxy.wait_sent(10), "the Task's connection did not end: the capture may be incomplete"
        proxy.close()
        replay = socket.create_connection(("127.0.0.1", int(proxy.target)))
        replay.sendall(bytes(proxy.sent))
        assert _closed_by_peer(replay, 5)
        replay.close()
        assert ex.read(wait=0.5) == Message()
        assert ex.stats.handshake_failures == 1


def _session_records(key: Optional[bytes], bodies: List[bytes]) -> Tuple[S.TaskSession, socket.socket, List[bytes]]:
    """A real connection to the Executor through the sans-IO Task session: handshake done, the
    data records of ``bodies`` built (not sent)."""
    sock = _connect()
    task = S.TaskSession(key)
    sock.sendall(task.opening())
    while not task.established:
        for kind, value in task.receive(sock.recv(4096)):
            if kind == S.SEND:
                sock.sendall(value)
            assert kind != S.FAILED, value
    records = []
    for body in bodies:
        head, tail = task.record(S.DATA, [body], len(body))
        records.append(head + body + tail)
    return task, sock, records


@pytest.mark.parametrize("attack", ["reorder", "replay-within", "splice"])
def test_reordered_replayed_or_spliced_records_are_rejected(monkeypatch: pytest.MonkeyPatch, attack: str) -> None:
    use_transport(monkeypatch, ("raw", "tcp"))
    with executor(False) as ex:
        key = bytes.fromhex(os.environ["LUTE_IPC_KEY"])
        bodies = [encode_frame(Message(i)) for i in range(3)]
        _, sock, records = _session_records(key, bodies)
        if attack == "reorder":
            stream = records[0] + records[2] + records[1]
        elif attack == "replay-within":
            stream = records[0] + records[1] + records[1]
        else:
            _, other, foreign = _session_records(key, [encode_frame(Message("foreign"))])
            other.close()
            stream = records[0] + foreign[0]
        sock.sendall(stream)
        assert _closed_by_peer(sock, 5)
        sock.close()
        assert [m.contents for m in collect(ex, 2, 2)] == ([0, 1] if attack == "replay-within" else [0])
        assert ex.stats.records_rejected == 1


# --------------------------------------------------------------------------- fork
def test_forked_child_writes_on_a_link_of_its_own(family: str) -> None:
    """Before: a child writing through its parent's communicator interleaved bytes on the
    parent's connection (14 of 41 frames arrived, the rest rejected as garbage, no error).
    Now the child's first write opens its own link: everything arrives, in order per process."""
    count = 20
    with executor(False) as ex:
        proc = start_task("fork_writer.py", count, env=child_env(False))
        got = collect(ex, 2 * count + 1, 30, [proc])
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and b"child=0" in out, err.decode()
        assert ex.read(wait=0.3) == Message()
        assert ex.stats.framing_errors == 0 and ex.stats.records_rejected == 0
        assert ex.stats.sessions == 2
    parent = [m.contents[1] for m in got if m.contents[0] == "parent"]
    child = [m.contents[1] for m in got if m.contents[0] == "child"]
    assert parent == list(range(count + 1)) and child == list(range(count))


# --------------------------------------------------------------------------- sizes
def test_oversize_message_is_refused_at_write_before_sending(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the Task got a misleading "Broken pipe" (or ZeroMQ dropped it silently). Now
    write() raises MessageTooLarge naming the limit and LUTE_IPC_MAX_FRAME_SIZE; nothing is sent
    and the link stays usable."""
    monkeypatch.setenv("LUTE_IPC_MAX_FRAME_SIZE", "64K")
    with executor(False) as ex:
        assert ex.max_frame_size == 64 * 1024
        with SocketCommunicator(Party.TASK, use_zmq=False) as task:
            task.write(Message("before"))
            for big in (b"x" * (100 * 1024), "y" * (100 * 1024), list(range(30000))):
                with pytest.raises(MessageTooLarge, match="LUTE_IPC_MAX_FRAME_SIZE") as info:
                    task.write(Message(big, "TASK_RESULT"))
                assert info.value.limit == 64 * 1024
            task.write(Message("after"))
        assert [m.contents for m in collect(ex, 2, 10)] == ["before", "after"]
        assert ex.read(wait=0.2) == Message()


def test_default_limit_carries_a_72_mb_result(family: str) -> None:
    """LUTE's SocketTester result with array_size 9,000,000: 72 MB in one TASK_RESULT."""
    numpy = pytest.importorskip("numpy")
    array = numpy.arange(9_000_000, dtype=numpy.float64)
    with executor(False) as ex:
        with SocketCommunicator(Party.TASK, use_zmq=False) as task:
            for i in range(100):
                task.write(Message(f"log {i}", "TASK_LOG"))
            task.write(Message({"array": array}, "TASK_RESULT"))
            task.write(Message(None, "TASK_DONE"))
        got = collect(ex, 102, 60)
    assert [m.signal for m in got[-2:]] == ["TASK_RESULT", "TASK_DONE"]
    assert numpy.array_equal(got[100].contents["array"], array)


# --------------------------------------------------------------------------- nothing lost quietly
def test_frames_salvaged_at_end_of_stream_are_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: feed_eof() returned the frames found inside a truncated frame, and the reader
    dropped them. Now they are delivered and counted."""
    with executor(False) as ex:
        sock = _connect()
        inner = encode_frame(Message("inside")) + encode_frame(Message("also inside"))
        sock.sendall(b"MSG;;;100000;;;" + inner)
        sock.close()
        assert [m.contents for m in collect(ex, 2, 5)] == ["inside", "also inside"]
        assert ex.stats.salvaged == 2


def test_failed_background_flush_is_raised_by_the_next_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a send failing in the flusher thread was only logged; the next write went to a new
    Executor at the same address and the lost messages were never reported. Now the next
    write()/flush()/close() raises TransportError."""
    monkeypatch.setenv("LUTE_SOCKET", os.path.join(os.environ.get("TMPDIR", "/tmp"), f"t14-{os.getpid()}.sock"))
    ex = executor(False)
    task = SocketCommunicator(Party.TASK, use_zmq=False, flush_interval=0.2)
    task.write(Message("lone"))  # first message: sent at once
    assert ex.read(wait=5).contents == "lone"
    task.write(Message("buffered"))  # waits for the 0.2 s bound, in the background
    ex.close()
    time.sleep(0.6)  # the flusher's send fails meanwhile (nothing confirmed it)
    with executor(False) as again:
        with pytest.raises(TransportError):
            task.write(Message("next"))
        task.close()
        assert again.read(wait=0.3) == Message()


def test_close_names_the_messages_not_confirmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() waits for the Executor's acknowledgement; when the Executor goes away first it
    raises TransportError naming how many messages were not confirmed."""
    ex = executor(False, queue_size=1)
    task = SocketCommunicator(Party.TASK, use_zmq=False)
    task.write(Message("fills the queue"))
    task.flush()
    assert wait_until(lambda: ex.has_messages)  # the queue is full from now on: nobody reads
    for i in range(200):
        task.write(Message(i))
    errors: List[BaseException] = []

    def close() -> None:
        try:
            task.close()
        except BaseException as exc:
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    time.sleep(0.5)
    assert closer.is_alive()  # the queue is full: close() waits for the acknowledgement
    ex.close()  # the Executor leaves without reading
    closer.join(10)
    assert len(errors) == 1 and isinstance(errors[0], TransportError)
    assert "not confirmed" in str(errors[0])
    unconfirmed = int(str(errors[0]).split(" message(s) sent on it were not confirmed")[0].rsplit(" ", 1)[1])
    assert unconfirmed in (200, 201)  # 201: the first one was taken but its acknowledgement never came


def test_undecodable_messages_are_reported_to_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message the Executor cannot decode is counted there and reported to the Task by close()."""
    use_transport(monkeypatch, ("raw", "tcp"))
    monkeypatch.setenv("LUTE_IPC_REQUIRE_AUTH", "0")
    with executor(False) as ex:  # auth off on TCP: restricted unpickler
        with pytest.raises(TransportError, match="refused 1 message"):
            with SocketCommunicator(Party.TASK, use_zmq=False) as task:
                task.write(Message(0))
                task.write(Message(pickle.PickleBuffer))  # a class outside the allow-list
                task.write(Message(2))
        assert [m.contents for m in collect(ex, 2, 5)] == [0, 2]
        assert ex.stats.messages_refused == 1


# --------------------------------------------------------------------------- LUTE's pattern
def test_per_message_communicators_share_one_link_and_do_not_wait(family: str) -> None:
    with executor(False, queue_size=10) as ex:
        started = time.monotonic()
        for i in range(50):  # the consumer is not reading: 50 > queue_size
            comm = SocketCommunicator(Party.TASK, use_zmq=False)
            comm.delayed_setup()
            comm.write(Message(i, "TASK_LOG"))
            comm.clear_communicator()
        assert time.monotonic() - started < 5
        assert [m.contents for m in collect(ex, 50, 10)] == list(range(50))
        assert ex.stats.connections_accepted == 1


def test_multiprocessing_child_loses_nothing_at_its_exit(family: str, core: str) -> None:
    """A multiprocessing child ends with os._exit (no atexit): what its unclosed communicator still
    buffered (the 1 ms latency bound) is flushed and confirmed in multiprocessing's finalizers first."""
    count = 500
    with executor(False) as ex:
        env = child_env(False, {"LUTE_IPC_PURE_PYTHON": core})
        result = subprocess.run([sys.executable, str(TASKS / "zmq_writer.py"), "multiprocessing-unclosed", str(count)],
                                env=env, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
        got = collect(ex, count + 2, 30)
    contents = [m.contents for m in got]
    assert [c for c in contents if c.startswith("child")] == [f"child-{i}" for i in range(count)]
    assert sorted(c for c in contents if c.startswith("parent")) == ["parent-0", "parent-1"]


# --------------------------------------------------------------------------- LUTE Tasks still served
def test_lute_ipc_executor_serves_lute_plain_frames_and_sessions_on_one_socket() -> None:
    with executor(False) as ex:
        proc = start_task("lute_writer.py", 20, env=child_env(False))
        with SocketCommunicator(Party.TASK, use_zmq=False) as task:
            task.write(Message(("session", 0)))
        got = collect(ex, 21, 30, [proc])
        finish(proc)
    assert sorted(m.contents[1] for m in got if m.contents[0] != "session") == list(range(20))
    assert ("session", 0) in [m.contents for m in got]


def test_connection_ending_inside_a_record_is_counted() -> None:
    """A Task that dies mid-record: the whole records before are delivered, the cut one is
    counted (its messages were never acknowledged: a live Task would report them)."""
    with executor(False) as ex:
        task, sock, _ = _session_records(None, [])
        body = encode_frame(Message("whole"))
        head, tail = task.record(S.DATA, [body], len(body))
        cut = encode_frame(Message("cut"))
        head2, _ = task.record(S.DATA, [cut], len(cut))
        sock.sendall(head + body + tail + head2 + cut[:5])
        sock.close()
        assert ex.read(wait=5).contents == "whole"
        assert wait_until(lambda: ex.stats.records_truncated == 1)
        assert ex.read(wait=0.2) == Message()


# --------------------------------------------------------------------------- mixed versions
@pytest.mark.interop
@pytest.mark.parametrize("mode", ["per-message", "persistent"])
def test_lute_ipc_task_into_lutes_own_executor_loses_nothing(lute_package: None, mode: str) -> None:
    """A lute_ipc Task (no LUTE_IPC_PROTOCOL) into the real LUTE 0.3.0 Executor over raw Unix
    sockets: LUTE's exact bytes; every message, TASK_RESULT after many log frames included,
    arrives, as LUTE's own Message class."""
    logs = 300
    with LuteExecutorPeer("lute_socket_executor.py", "0", logs + 2, 120, env=dict(os.environ)) as peer:
        task_env = child_env(False, peer.exported)
        task_env.pop("LUTE_IPC_PROTOCOL", None)
        proc = start_task("lute_peer_task.py", logs, mode, env=task_env)
        finish(proc, 120)
        received = peer.report(180)
    assert [signal for _, _, _, signal in received] == ["TASK_LOG"] * logs + ["TASK_RESULT", "TASK_DONE"]
    assert [contents for _, _, contents, _ in received[:logs]] == [repr(f"log line {i}") for i in range(logs)]
    assert {(module, name) for module, name, _, _ in received} == {("lute.execution.ipc", "Message")}


def test_task_without_the_protocol_variable_hears_the_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lute_ipc Task whose environment lost LUTE_IPC_PROTOCOL speaks LUTE's frames; an Executor
    requiring authentication refuses them and says why: the Task raises instead of losing quietly."""
    use_transport(monkeypatch, ("raw", "tcp"))
    with executor(False) as ex:
        monkeypatch.delenv("LUTE_IPC_PROTOCOL")
        task = SocketCommunicator(Party.TASK, use_zmq=False)
        task.write(Message("refused"))
        assert wait_until(lambda: ex.stats.auth_failures == 1)
        time.sleep(0.05)
        with pytest.raises(TransportError, match="LUTE_IPC_PROTOCOL"):
            task.write(Message("next"))
        task.close()
