"""Security of the socket transport: authenticated frames, restricted unpickling, resource limits."""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import threading
import time

import pytest

from lute_ipc import Message, Party, SocketCommunicator, codec
from lute_ipc.framing import encode_frame, encode_payload
from tests.socket_tasks.helpers import (
    child_env,
    collect,
    executor,
    finish,
    start_task,
    use_transport,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("clean_lute_env")


class CreatesFile:
    """Unpickling this object opens (creates) a file: a stand-in for arbitrary code execution."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def tcp_port() -> int:
    return int(os.environ["LUTE_PORT"])


def raw_client() -> socket.socket:
    if "LUTE_USE_TCP" in os.environ:
        return socket.create_connection(("127.0.0.1", tcp_port()))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["LUTE_SOCKET"])
    return sock


def send_raw(data: bytes) -> None:
    with raw_client() as sock:
        sock.sendall(data)


def send_zmq(data: bytes) -> None:
    import zmq

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{tcp_port()}")
    push.send(data)
    push.close(linger=2000)
    ctx.term()


def peer_closed(sock: socket.socket, timeout: float) -> bool:
    """True when the Executor closes ``sock`` within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):  # a refusal may come first
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# --------------------------------------------------------------------------- live attack
@pytest.mark.parametrize("kind", ["raw", "zmq"])
@pytest.mark.parametrize("auth", [True, False], ids=["auth-on", "auth-off"])
def test_malicious_pickle_never_runs_while_good_task_is_served(monkeypatch, tmp_path, kind, auth) -> None:
    use_zmq = use_transport(monkeypatch, (kind, "tcp"))
    target = tmp_path / "pwned"
    evil = pickle.dumps(Message(contents=CreatesFile(str(target)), signal="TASK_RESULT"))
    wrong_key = codec.generate_key()
    attacks = [encode_payload(evil), encode_payload(evil, key=wrong_key)]
    count = 5000
    if not auth:  # no key is created when none is required: the user's key is used (Tasks sign)
        monkeypatch.setenv("LUTE_IPC_KEY", codec.generate_key().hex())
    with executor(use_zmq, require_auth=auth) as ex:
        good = start_task("writer.py", count, "persistent-exit", "small", env=child_env(use_zmq))
        send = send_zmq if use_zmq else send_raw
        for _ in range(20):
            for attack in attacks:
                send(attack)
        got = collect(ex, count, 60, [good])
        finish(good)
        assert wait_until(lambda: ex.stats.auth_failures + ex.stats.payload_errors >= 40)
        stats = ex.stats
    assert [m.contents[1] for m in got] == list(range(count))
    assert not target.exists()
    if auth:
        assert stats.auth_failures == 40 and stats.payload_errors == 0
    else:
        # unsigned frames reach the restricted unpickler, which refuses builtins.open;
        # frames signed with a wrong key are still rejected by their tag
        assert stats.payload_errors == 20 and stats.auth_failures == 20
        assert stats.errors_by_type == {"PayloadError": 20, "AuthenticationError": 20}


def test_auth_failure_closes_the_connection_and_logs_once(monkeypatch, caplog) -> None:
    """Unsigned LUTE frames on an Executor requiring authentication: the connection is refused at
    its first octets (counted once, logged once); signed frames without a session are refused too
    (they could be replays); a session Task is served."""
    use_transport(monkeypatch, ("raw", "tcp"))
    caplog.set_level(logging.WARNING, logger="lute_ipc")
    with executor(False) as ex:
        sock = raw_client()
        sock.sendall(encode_frame(Message("unsigned")) * 3)
        assert peer_closed(sock, 5)
        sock.close()
        assert wait_until(lambda: ex.stats.auth_failures == 1)
        key = bytes.fromhex(os.environ["LUTE_IPC_KEY"])
        send_raw(encode_frame(Message("signed"), key=key))
        assert wait_until(lambda: ex.stats.auth_failures == 2)
        with SocketCommunicator(Party.TASK, use_zmq=False) as task:
            task.write(Message("session"))
        assert ex.read(wait=5) == Message("session")
    rejected = [r for r in caplog.records if "AuthenticationError" in r.getMessage()
                or "requires authentication" in r.getMessage()]
    assert len(rejected) == 1 and "refused" in rejected[0].getMessage()


def test_auth_off_on_tcp_warns_and_unpickles_restricted(monkeypatch, caplog) -> None:
    use_transport(monkeypatch, ("raw", "tcp"))
    caplog.set_level(logging.WARNING, logger="lute_ipc")
    import pathlib

    with executor(False, require_auth=False) as ex:
        assert any("SECURITY" in r.getMessage() for r in caplog.records)
        send_raw(encode_frame(Message(contents={"a": [1, 2.5, b"x"]})))
        assert ex.read(wait=5) == Message(contents={"a": [1, 2.5, b"x"]})
        send_raw(encode_frame(Message(contents=pathlib.PurePosixPath("/x"))))
        assert ex.read(wait=0.5) == Message()
        assert wait_until(lambda: ex.stats.payload_errors == 1)
    # a user may choose the decoder (here: full pickle)
    with executor(False, require_auth=False, loads=pickle.loads) as ex:
        send_raw(encode_frame(Message(contents=pathlib.PurePosixPath("/x"))))
        assert ex.read(wait=5).contents == pathlib.PurePosixPath("/x")


def test_unix_socket_accepts_unsigned_frames_unless_required(monkeypatch) -> None:
    with executor(False) as ex:
        send_raw(encode_frame(Message("plain")))
        assert ex.read(wait=5) == Message("plain")
    with executor(False, require_auth=True) as ex:
        send_raw(encode_frame(Message("plain")))
        with SocketCommunicator(Party.TASK, use_zmq=False) as task:
            task.write(Message("session"))
        assert ex.read(wait=5) == Message("session")
        assert ex.stats.auth_failures == 1


def test_key_is_never_logged(monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for transport in (("raw", "tcp"), ("zmq", "tcp"), ("raw", "unix")):
        use_zmq = use_transport(monkeypatch, transport)
        with executor(use_zmq, require_auth=True) as ex:
            key = os.environ["LUTE_IPC_KEY"]
            task = SocketCommunicator(Party.TASK, use_zmq=use_zmq)
            task.write(Message("hello"))
            assert ex.read(wait=5) == Message("hello")
            send_raw(b"MSG;;;3;;;abc;;;GSM garbage") if not use_zmq else None
            task.clear_communicator()
        assert key not in caplog.text
        assert key not in repr(ex) and key not in str(vars(ex))


def test_bind_host_option_and_environment(monkeypatch) -> None:
    monkeypatch.setenv("LUTE_USE_TCP", "1")
    assert SocketCommunicator(Party.EXECUTOR)._bind_host() is None  # LUTE's default: all interfaces
    for use_zmq in (False, True):
        with executor(use_zmq, bind_host="127.0.0.1") as ex:
            assert "127.0.0.1:" in ex.address
        monkeypatch.setenv("LUTE_BIND_HOST", "127.0.0.1")
        with executor(use_zmq) as ex:
            assert "127.0.0.1:" in ex.address
        monkeypatch.delenv("LUTE_BIND_HOST")
    assert "all interfaces" in SocketCommunicator.__doc__ and "Risk" in SocketCommunicator.__doc__


# --------------------------------------------------------------------------- resource limits
def _hold_idle_connections(count: int) -> subprocess.Popen:
    proc = start_task("idle_clients.py", count, stdin=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    assert line.startswith("ready"), proc.stderr.read().decode()
    return proc


@pytest.mark.parametrize("family", ["tcp", "unix"])
@pytest.mark.parametrize("max_connections", [None, 100])
def test_thousand_idle_connections_do_not_block_the_executor(monkeypatch, family, max_connections) -> None:
    use_transport(monkeypatch, ("raw", family))
    threads = threading.active_count()
    with executor(False, max_connections=max_connections) as ex:
        idle = _hold_idle_connections(1000)
        count = 5000
        good = start_task("writer.py", count, "persistent-exit", "small", env=child_env(False))
        got = collect(ex, count, 60, [good])
        finish(good)
        assert [m.contents[1] for m in got] == list(range(count))
        assert ex._reader.open_connections <= ex.max_connections
        assert threading.active_count() == threads + 1  # only the reader thread
        # idle connections never prove themselves: at most 64 are kept, the oldest is closed first
        assert ex.stats.unproven_closed >= 900
        idle.stdin.close()
        idle.wait(30)
        idle.stdout.close()
        idle.stderr.close()
        assert wait_until(lambda: ex._reader.open_connections == 0, 10)


@pytest.mark.parametrize("head", [b"MSG"])
def test_ten_gigabyte_length_header_is_refused(monkeypatch, head) -> None:
    use_transport(monkeypatch, ("raw", "tcp"))
    with executor(False, require_auth=False) as ex:
        good = start_task("writer.py", 2000, "persistent-exit", "small", env=child_env(False))
        attacker = raw_client()
        attacker.sendall(head + b";;;10000000000;;;" + b"x" * 65536)
        assert peer_closed(attacker, 5)
        attacker.close()
        got = collect(ex, 2000, 60, [good])
        finish(good)
        assert len(got) == 2000
        assert ex.stats.errors_by_type.get("FrameTooLarge") == 1


def test_zmq_oversized_message_is_dropped(monkeypatch) -> None:
    use_transport(monkeypatch, ("zmq", "tcp"))
    with executor(True, max_frame_size=1 << 20) as ex:
        key = bytes.fromhex(os.environ["LUTE_IPC_KEY"])
        send_zmq(encode_frame(Message(b"x" * (2 << 20)), key=key))
        send_zmq(encode_payload(b"MSG;;;10000000000;;;"))
        task = SocketCommunicator(Party.TASK, use_zmq=True)
        task.write(Message("after"))
        assert ex.read(wait=5) == Message("after")
        task.clear_communicator()


def test_idle_connection_with_incomplete_frame_is_closed(monkeypatch) -> None:
    use_transport(monkeypatch, ("raw", "tcp"))
    with executor(False, idle_timeout=0.5, require_auth=False) as ex:
        partial = raw_client()
        partial.sendall(b"MSG;;;100;;;abc")
        quiet = raw_client()  # no incomplete frame: a quiet persistent Task, kept open
        start = time.monotonic()
        assert peer_closed(partial, 5)
        assert 0.4 < time.monotonic() - start < 3
        assert not peer_closed(quiet, 0.5)
        quiet.sendall(encode_frame(Message("still here")))
        assert ex.read(wait=5) == Message("still here")
        assert ex.stats.idle_closed == 1
        partial.close()
        quiet.close()


def test_bombs_and_tampering_are_refused_and_the_reader_keeps_serving(monkeypatch) -> None:
    """Issue 17, bug 1, over a real TCP socket without authentication (restricted unpickler)."""
    use_transport(monkeypatch, ("raw", "tcp"))
    list_of_range = b"\x80\x02cbuiltins\nlist\n(cbuiltins\nrange\n(J\xc0\xc6-\x00tRtR."
    fraction = b"cfractions\nFraction\n(X\x09\x00\x00\x001e6000000tR."
    tamper = b"\x80\x02clute_ipc.message\nMessage\n}X\x08\x00\x00\x00__init__Nsb."
    with executor(False, require_auth=False) as ex:
        send_raw(b"".join(encode_payload(bomb) for bomb in (list_of_range, fraction, tamper))
                 + encode_frame(Message("still served", "TASK_LOG")))
        assert ex.read(wait=5) == Message("still served", "TASK_LOG")
        assert wait_until(lambda: ex.stats.payload_errors == 3)
    assert Message("a", "b").contents == "a"  # the class was not tampered with
