"""SocketCommunicator end to end: real processes, real sockets, raw and ZeroMQ, Unix and TCP loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest

from lute_ipc import Message, Party, SocketCommunicator, framing
from lute_ipc.transport import raw_link
from lute_ipc import sockets as sockets_module
from lute_ipc.errors import CommunicatorClosed, ConfigurationError, TransportError, UsageError
from tests.socket_tasks.helpers import (
    TRANSPORTS,
    child_env,
    collect,
    executor,
    finish,
    start_task,
    use_transport,
    write_until_raises,
)


pytestmark = pytest.mark.usefixtures("clean_lute_env")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Sets the environment for one transport; the value is use_zmq."""
    return use_transport(monkeypatch, request.param)


def contents_of(messages):
    return [m.contents for m in messages]


# --------------------------------------------------------------------------- basics
def test_in_process_round_trip(transport: bool) -> None:
    with executor(transport) as ex:
        task = SocketCommunicator(Party.TASK, use_zmq=transport)
        task.delayed_setup()
        for i in range(200):
            task.write(Message(contents=i, signal="TASK_LOG"))
        got = collect(ex, 200, 10)
        task.clear_communicator()
        assert [m.contents for m in got] == list(range(200))
        assert all(m.signal == "TASK_LOG" for m in got)
        assert ex.stats.messages == 200 and ex.stats.auth_failures == 0


def test_environment_exported_and_restored(transport: bool) -> None:
    ex = executor(transport)
    try:
        assert os.environ["LUTE_EXECUTOR_HOST"]
        if "LUTE_USE_TCP" in os.environ:  # authentication required: a per-run key is exported
            assert len(bytes.fromhex(os.environ["LUTE_IPC_KEY"])) == 32
        else:  # Unix accepts unsigned frames: no key, so Tasks do not pay for signatures
            assert "LUTE_IPC_KEY" not in os.environ
        if "LUTE_USE_TCP" in os.environ:
            assert int(os.environ["LUTE_PORT"]) > 0
            assert "LUTE_SOCKET" not in os.environ
        else:
            path = os.environ["LUTE_SOCKET"]
            assert os.stat(path).st_mode & 0o777 == 0o600
            assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    finally:
        ex.clear_communicator()
    for name in ("LUTE_PORT", "LUTE_SOCKET", "LUTE_IPC_KEY"):
        assert name not in os.environ


def test_executor_uses_variables_set_before_it(monkeypatch: pytest.MonkeyPatch, tmp_path, transport: bool) -> None:
    """Variables the user set are used and left alone; a Task started later finds the Executor."""
    key = "ab" * 32
    monkeypatch.setenv("LUTE_IPC_KEY", key)
    if "LUTE_USE_TCP" in os.environ:
        import socket

        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        monkeypatch.setenv("LUTE_PORT", str(port))
    else:
        monkeypatch.setenv("LUTE_SOCKET", str(tmp_path / "user.sock"))
    with executor(transport) as ex:
        if "LUTE_USE_TCP" in os.environ:
            assert ex.address.endswith(f":{port}")
        else:
            assert ex.address == str(tmp_path / "user.sock")
        proc = start_task("writer.py", 50, "persistent-exit", "small", env=child_env(transport))
        got = collect(ex, 50, 20, [proc])
        finish(proc)
    assert [c[1] for c in contents_of(got)] == list(range(50))
    assert os.environ["LUTE_IPC_KEY"] == key
    assert not (tmp_path / "user.sock").exists()


def test_stale_socket_file_is_replaced_but_live_one_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import socket

    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    monkeypatch.setenv("LUTE_SOCKET", path)
    with executor(False) as ex:
        with pytest.raises(ConfigurationError, match="already listening"):
            SocketCommunicator(Party.EXECUTOR, use_zmq=False).delayed_setup()
        assert ex.address == path


def test_read_wait_and_has_messages(transport: bool) -> None:
    with executor(transport) as ex:
        start = time.monotonic()
        assert ex.read() == Message()
        assert time.monotonic() - start < 0.5
        start = time.monotonic()
        assert ex.read(wait=0.3) == Message()
        assert 0.25 <= time.monotonic() - start < 2
        assert not ex.has_messages
        assert ex.read_many(10, wait=0.05) == []
        task = SocketCommunicator(Party.TASK, use_zmq=transport)
        task.delayed_setup()
        for i in range(5):
            task.write(Message(contents=i))
        deadline = time.monotonic() + 5
        while len(ex._queue) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex.has_messages
        assert ex.read(wait=1).contents == 0
        assert [m.contents for m in ex.read_many(3)] == [1, 2, 3]
        assert ex.read(wait=1).contents == 4
        # a writer in another thread wakes a blocked read at once
        threading.Timer(0.2, task.write, [Message(contents="late")]).start()
        assert ex.read(wait=5).contents == "late"
        assert not task.has_messages
        task.clear_communicator()


def test_api_misuse_is_reported() -> None:
    ex = SocketCommunicator(Party.EXECUTOR, use_zmq=False)
    with pytest.raises(UsageError, match="delayed_setup"):
        ex.read()
    with pytest.raises(UsageError):
        ex.write(Message())
    ex.delayed_setup()
    ex.delayed_setup()  # idempotent
    ex.clear_communicator()
    ex.clear_communicator()  # idempotent
    with pytest.raises(CommunicatorClosed):
        ex.read()
    with pytest.raises(CommunicatorClosed):
        ex.delayed_setup()
    task = SocketCommunicator(Party.TASK, use_zmq=False)
    with pytest.raises(UsageError):
        task.read()
    with pytest.raises(UsageError):
        SocketCommunicator(Party.EXECUTOR, queue_size=0)


def test_task_write_after_close_is_refused(transport: bool) -> None:
    with executor(transport) as ex:
        task = SocketCommunicator(Party.TASK, use_zmq=transport)
        task.write(Message("set up on first write"))
        assert ex.read(wait=5) == Message("set up on first write")
        task.clear_communicator()
        with pytest.raises(CommunicatorClosed):
            task.write(Message("too late"))


def test_zmq_task_close_never_hangs_without_executor(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Nobody reads: close() gives up after the linger instead of blocking the Task's exit, and
    says that the messages were dropped (TransportError) instead of returning as if delivered."""
    monkeypatch.setenv("LUTE_EXECUTOR_HOST", "localhost")
    monkeypatch.setenv("LUTE_SOCKET", str(tmp_path / "nobody.sock"))
    task = SocketCommunicator(Party.TASK, use_zmq=True, linger=0.3)
    task.delayed_setup()
    for i in range(10):
        task.write(Message(i))
    start = time.monotonic()
    with pytest.raises(TransportError, match="never connected"):
        task.clear_communicator()
    assert time.monotonic() - start < 3
    with pytest.raises(CommunicatorClosed):  # closed all the same
        task.write(Message("too late"))


def test_zmq_task_without_executor_gets_an_error_after_connect_timeout(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path) -> None:
    """ZeroMQ connects in the background and queues meanwhile; once connect_timeout passed without a
    connection, write() raises TransportError (queueing nothing) instead of queueing for nobody."""
    monkeypatch.setenv("LUTE_EXECUTOR_HOST", "localhost")
    monkeypatch.setenv("LUTE_SOCKET", str(tmp_path / "nobody.sock"))
    task = SocketCommunicator(Party.TASK, use_zmq=True, linger=0, connect_timeout=0.3)
    task.write(Message("queued while ZeroMQ tries to connect"))
    time.sleep(0.4)
    with pytest.raises(TransportError, match="no connection within 0.3 s"):
        task.write(Message("refused"))
    task.clear_communicator()  # linger=0: the queue is dropped as asked, nothing is raised


def test_zmq_task_write_fails_once_its_executor_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Executor closes: the ZeroMQ Task's next writes raise TransportError (within a bound) instead
    of queueing into libzmq for nobody; close() then reports what it could not deliver."""
    use_transport(monkeypatch, ("zmq", "unix"))
    ex = executor(True)
    task = SocketCommunicator(Party.TASK, use_zmq=True, linger=0.2)
    task.write(Message("first"))
    assert ex.read(wait=10) == Message("first")
    ex.clear_communicator()
    error = write_until_raises(task, TransportError, "closed the session", "after the Executor closed",
                               pause=0.005)
    assert "not confirmed" in str(error)
    task.clear_communicator()  # the lost session was reported by write(); nothing new since


def test_executor_close_reports_unread_messages(transport: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Closing an Executor that received messages nobody read logs one warning with their number."""
    ex = executor(transport)
    task = SocketCommunicator(Party.TASK, use_zmq=transport)
    for i in range(5):
        task.write(Message(i))
    task.clear_communicator()
    deadline = time.monotonic() + 10
    while len(ex._queue) < 5 and time.monotonic() < deadline:  # received, not read
        time.sleep(0.01)
    caplog.set_level("WARNING", logger="lute_ipc")
    ex.clear_communicator()
    ex.clear_communicator()  # idempotent: no second warning
    warnings = [r.getMessage() for r in caplog.records if "received but not read" in r.getMessage()]
    assert len(warnings) == 1 and "discards 5 queued message(s)" in warnings[0], warnings


def test_send_timeout_is_validated() -> None:
    with pytest.raises(UsageError, match="send_timeout"):
        SocketCommunicator(Party.TASK, send_timeout=-1)
    assert SocketCommunicator(Party.TASK).send_timeout == 10.0
    assert SocketCommunicator(Party.TASK, send_timeout=0).send_timeout == 0


@pytest.mark.skipif(raw_link.TCP_INFO is None, reason="TCP_INFO is Linux-only")
def test_send_timeout_tells_a_dead_path_from_a_slow_executor() -> None:
    """The rule behind send_timeout, on crafted TCP_INFO samples (1 s apart): a live Executor whose
    window stays closed answers its probes (counters at 0) and is never dead, however old its last
    acknowledgement; unanswered retransmissions or probes with no acknowledgement for send_timeout
    are, but never on a single sample (an answer may be on its way)."""

    class Info:
        def __init__(self) -> None:
            self.fields = [0] * 21

        def set(self, retransmits: int, probes: int, last_ack_ms: int) -> None:
            self.fields[2], self.fields[3], self.fields[20] = retransmits, probes, last_ack_ms

        def getsockopt(self, level: int, name: int, size: int) -> bytes:
            return raw_link.TCP_INFO_HEAD.pack(*self.fields)

    info, watch = Info(), raw_link.AckWatch(10.0)
    for t in range(60):  # 60 s of a closed window, probes answered
        info.set(0, 0, 1000 * t)
        assert watch.sample(info, float(t)) == 0.0
    info.set(0, 1, 50_000)  # a probe in flight after a long back-off: one sample proves nothing
    assert watch.sample(info, 60.0) == 0.0
    info.set(0, 0, 0)
    assert watch.sample(info, 61.0) == 0.0
    for t in range(62, 80):  # cut: retransmissions pile up, no acknowledgement any more
        info.set(t - 61, 0, 1000 * (t - 62))
        dead = watch.sample(info, float(t))
        if dead:
            break
    assert dead >= 10.0 and t <= 73, (t, dead)


def test_zmq_executor_receive_hwm_follows_queue_size() -> None:
    """ZeroMQ counts messages and a Task's ZeroMQ message is a batch of frames: the Executor's
    RCVHWM is derived from queue_size (small), so memory is bounded by it, not by 160,000 batches."""
    hwm = sockets_module._zmq_receive_hwm
    assert hwm(2000) == 31
    assert hwm(1) == 4 and hwm(100_000) == 64


# --------------------------------------------------------------------------- Task set-up errors
def test_task_without_environment_gets_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="LUTE_EXECUTOR_HOST"):
        SocketCommunicator(Party.TASK, use_zmq=False).delayed_setup()
    monkeypatch.setenv("LUTE_EXECUTOR_HOST", "localhost")
    with pytest.raises(ConfigurationError, match="LUTE_SOCKET"):
        SocketCommunicator(Party.TASK, use_zmq=False).delayed_setup()
    monkeypatch.setenv("LUTE_SOCKET", "/nonexistent/lute.sock")
    with pytest.raises(TransportError, match="Is the Executor running"):
        SocketCommunicator(Party.TASK, use_zmq=False).delayed_setup()
    monkeypatch.setenv("LUTE_USE_TCP", "1")
    # LUTE's Executor (no LUTE_IPC_PROTOCOL): no key is needed, LUTE's bytes go unsigned
    with pytest.raises(ConfigurationError, match="LUTE_PORT"):
        SocketCommunicator(Party.TASK, use_zmq=False).delayed_setup()
    monkeypatch.setenv("LUTE_IPC_PROTOCOL", "lute-ipc/1")
    with pytest.raises(ConfigurationError, match="LUTE_IPC_KEY"):
        SocketCommunicator(Party.TASK, use_zmq=True).delayed_setup()
    monkeypatch.setenv("LUTE_IPC_KEY", "00" * 32)
    with pytest.raises(ConfigurationError, match="LUTE_PORT"):
        SocketCommunicator(Party.TASK, use_zmq=False).delayed_setup()
    monkeypatch.setenv("LUTE_PORT", "not-a-port")
    with pytest.raises(ConfigurationError, match="LUTE_PORT"):
        SocketCommunicator(Party.TASK, use_zmq=True).delayed_setup()


def test_task_process_without_environment_fails_clearly() -> None:
    proc = start_task("writer.py", 1, "persistent-exit", "small", env=child_env(False))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert b"ConfigurationError" in err and b"LUTE_EXECUTOR_HOST is not set" in err


# --------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("count", [100_000])
def test_persistent_connection_streams_in_order(transport: bool, count: int) -> None:
    """100k messages on one connection arrive complete and in order while it stays open."""
    with executor(transport) as ex:
        proc = start_task("writer.py", count, "persistent", "small", env=child_env(transport), stdin=subprocess.PIPE)
        got = collect(ex, count, 120, [proc])
        still_open = proc.poll() is None  # the Task waits on stdin: its connection is still open
        proc.stdin.close()
        finish(proc)
    assert still_open
    assert len(got) == count
    assert [c[1] for c in contents_of(got)] == list(range(count))
    if not transport:
        assert ex.stats.connections_accepted == 1


def test_connection_per_message(transport: bool) -> None:
    """LUTE's pattern: a new communicator (connection) per message, 1,000 times."""
    count = 1000
    with executor(transport) as ex:
        proc = start_task("writer.py", count, "per-message", "small", env=child_env(transport))
        got = collect(ex, count, 120, [proc])
        finish(proc)
    indexes = [c[1] for c in contents_of(got)]
    assert sorted(indexes) == list(range(count))
    if not transport:  # raw: the communicators share one session link (one connection)
        assert indexes == list(range(count))
        assert ex.stats.connections_accepted == 1


@pytest.mark.parametrize("mode", ["persistent-exit", "per-message"])
def test_payloads_containing_frame_markers(transport: bool, mode: str) -> None:
    count = 300
    with executor(transport) as ex:
        proc = start_task("writer.py", count, mode, "gsm", env=child_env(transport))
        got = collect(ex, count, 60, [proc])
        finish(proc)
    from tests.socket_tasks.writer import payload_for

    assert sorted(contents_of(got), key=lambda c: c[1]) == [("t", i, payload_for("gsm", i)) for i in range(count)]
    assert ex.stats.framing_errors == 0


def test_sixteen_concurrent_tasks(transport: bool) -> None:
    tasks, count = 16, 2000
    with executor(transport) as ex:
        procs = [start_task("writer.py", count if i % 4 else 100, "persistent-exit" if i % 4 else "per-message",
                            "small", f"task{i}", env=child_env(transport)) for i in range(tasks)]
        expected = sum(count if i % 4 else 100 for i in range(tasks))
        got = collect(ex, expected, 120, procs)
        for proc in procs:
            finish(proc)
    per_task = defaultdict(list)
    for tag, i, _ in contents_of(got):
        per_task[tag].append(i)
    assert len(got) == expected
    for t in range(tasks):
        n = count if t % 4 else 100
        assert sorted(per_task[f"task{t}"]) == list(range(n))
        if t % 4:  # a persistent connection keeps its order
            assert per_task[f"task{t}"] == list(range(n))


def test_writes_from_many_threads(transport: bool) -> None:
    threads, count = 8, 500
    with executor(transport) as ex:
        task = SocketCommunicator(Party.TASK, use_zmq=transport)
        task.delayed_setup()

        def work(t: int) -> None:
            for i in range(count):
                task.write(Message(contents=(t, i)))

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        got = collect(ex, threads * count, 30)
        task.clear_communicator()
    per_thread = defaultdict(list)
    for t, i in contents_of(got):
        per_thread[t].append(i)
    assert all(per_thread[t] == list(range(count)) for t in range(threads))


def test_backpressure_bounds_the_queue_and_loses_nothing(transport: bool) -> None:
    queue_size, count = 200, 20_000
    with executor(transport, queue_size=queue_size) as ex:
        proc = start_task("writer.py", count, "persistent-exit", "small", env=child_env(transport))
        deadline = time.monotonic() + 60  # nobody reads: the reader must stop reading
        while ex.stats.backpressure_waits == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex.stats.backpressure_waits > 0, "the reader never found its queue full"
        queued = len(ex._queue)
        assert queue_size <= queued < queue_size + 5000  # full, bounded by one read's worth
        got = collect(ex, count, 60, [proc])
        finish(proc)
    assert [c[1] for c in contents_of(got)] == list(range(count))
    assert ex.stats.backpressure_waits > 0


def test_proven_connection_is_never_closed_to_make_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """At max_connections with every connection proven, a new one waits in the listen backlog
    (counted and logged); the Task's connection stays open and loses nothing."""
    use_transport(monkeypatch, ("raw", "tcp"))
    import socket

    with executor(False, max_connections=1) as ex:
        task = SocketCommunicator(Party.TASK, use_zmq=False)
        task.delayed_setup()
        task.write(Message(contents="first"))
        assert ex.read(wait=5).contents == "first"
        intruder = socket.create_connection(("127.0.0.1", int(os.environ["LUTE_PORT"])))
        deadline = time.monotonic() + 5
        while ex.stats.accept_pauses == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex.stats.accept_pauses == 1 and ex.stats.connections_accepted == 1
        task.write(Message(contents="second"))
        assert ex.read(wait=5).contents == "second"
        task.close()  # confirmed; the last user closes the link: the intruder is admitted
        deadline = time.monotonic() + 5
        while ex.stats.connections_accepted < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex.stats.connections_accepted == 2
        intruder.close()


# --------------------------------------------------------------------------- compatibility
def test_original_lute_frames_are_read(monkeypatch: pytest.MonkeyPatch, transport: bool) -> None:
    """LUTE's writer (plain frames, one connection per message, pickles of lute.execution.ipc.Message)."""
    tcp = "LUTE_USE_TCP" in os.environ
    count = 200
    # On TCP an original Task cannot sign: its Executor must allow unsigned frames.
    with executor(transport, require_auth=False if tcp else None) as ex:
        proc = start_task("lute_writer.py", count, env=child_env(transport))
        got = collect(ex, count, 60, [proc])
        finish(proc)
    assert all(type(m) is Message for m in got)
    assert sorted(c[1] for c in contents_of(got)) == list(range(count))
    assert {c[2] for c in contents_of(got)} == {"plain", "a;;;GSM"}


def test_original_lute_frames_rejected_on_tcp_with_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    use_transport(monkeypatch, ("raw", "tcp"))
    with executor(False) as ex:
        proc = start_task("lute_writer.py", 3, env=child_env(False))
        finish(proc)
        time.sleep(0.3)
        assert ex.read(wait=0.2) == Message()
        assert ex.stats.auth_failures == 3


def test_pure_python_task_against_cython_executor(transport: bool) -> None:
    if framing.IMPLEMENTATION != "cython":
        pytest.skip("this Executor runs the pure-Python core (extension not built or LUTE_IPC_PURE_PYTHON set)")
    with executor(transport) as ex:
        proc = start_task("implementation.py", 500, env=child_env(transport, {"LUTE_IPC_PURE_PYTHON": "1"}))
        got = collect(ex, 502, 30, [proc])
        finish(proc)
    assert got[0] == Message(contents="python", signal="TASK_STARTED")
    assert [m.contents for m in got[1:-1]] == [("impl", i, ";;;GSM" * (i % 3)) for i in range(500)]
    assert got[-1].signal == "TASK_DONE"


# --------------------------------------------------------------------------- USE_ZMQ default
@pytest.mark.parametrize("value,expected", [(None, True), ("0", False), ("1", True), ("no", True)])
def test_use_zmq_default_follows_lute(value, expected) -> None:
    env = child_env()
    env.pop("LUTE_USE_ZMQ", None)
    if value is not None:
        env["LUTE_USE_ZMQ"] = value
    code = ("import logging, os; before = dict(os.environ); import lute_ipc.sockets as s; "
            "assert dict(os.environ) == before; assert not logging.getLogger().handlers; print(s.USE_ZMQ)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)


def test_module_default_used_when_use_zmq_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets_module, "USE_ZMQ", False)
    assert SocketCommunicator(Party.EXECUTOR).use_zmq is False
    monkeypatch.setattr(sockets_module, "USE_ZMQ", True)
    assert SocketCommunicator(Party.EXECUTOR).use_zmq is True
    assert SocketCommunicator(Party.EXECUTOR, use_zmq=False).use_zmq is False


# --------------------------------------------------------------------------- shutdown
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_leaked_threads_fds_or_files(transport: bool) -> None:
    def cycle() -> str:
        ex = executor(transport)
        task = SocketCommunicator(Party.TASK, use_zmq=transport)
        task.delayed_setup()
        for i in range(100):
            task.write(Message(contents=i))
        assert len(collect(ex, 100, 10)) == 100
        task.close()  # the last user of the process's link closes it
        address = ex.address
        ex.clear_communicator()
        return address

    cycle()  # warm up (imports, lazily created objects)
    threads, fds = set(threading.enumerate()), _fds()
    addresses = [cycle() for _ in range(3)]
    assert set(threading.enumerate()) == threads
    # a closed ZeroMQ socket is released by the shared context's I/O thread, shortly after close()
    deadline = time.monotonic() + 5
    while _fds() != fds and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _fds() == fds
    if "LUTE_USE_TCP" not in os.environ:
        for address in addresses:
            assert not os.path.exists(address)
            assert not os.path.exists(os.path.dirname(address))


def test_zmq_message_with_several_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """One ZeroMQ message may carry several frames (LUTE's reader accepts that); a frame cut
    at the end of a ZeroMQ message is an error: frames never span ZeroMQ messages."""
    import zmq

    from lute_ipc.framing import encode_frame

    with executor(True) as ex:
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(f"ipc://{os.environ['LUTE_SOCKET']}")
        push.send(b"".join(encode_frame(Message(i)) for i in range(3)))
        whole = encode_frame(Message("split"))
        push.send(whole[:10])
        push.send(whole[10:])
        push.send(encode_frame(Message("after")))
        push.close(linger=2000)
        ctx.term()
        got = collect(ex, 4, 10)
        assert [m.contents for m in got] == [0, 1, 2, "after"]
        assert ex.stats.errors_by_type.get("TruncatedFrame", 0) >= 1  # the cut frame is reported, not joined
