"""The cross-host Unix path: a Task reaches its Executor's socket through an ssh tunnel.

A real ``sshd`` runs on 127.0.0.1 (high port, private config, generated host and user keys);
"another host" is the alias ``lute-test-executor`` defined in a private ssh client config
that the Task receives through ``LUTE_SSH_OPTIONS="-F <config>"``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.errors import TunnelError, UsageError
from lute_ipc.tunnel import SshTunnel
from tests.socket_tasks.helpers import (
    child_env,
    clear_lute_env,
    collect,
    executor,
    finish,
    start_task,
    write_until_raises,
)
from tests.socket_tasks.sshd import SSHD, write_sshd_files

ALIAS = "lute-test-executor"

pytestmark = [
    pytest.mark.skipif(SSHD is None, reason="sshd (openssh-server) is not installed"),
    pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
                       reason="ssh/ssh-keygen (openssh-client) is not installed"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, str]]:
    """A private sshd on 127.0.0.1 and an ssh client config naming it ``lute-test-executor``."""
    root = tmp_path_factory.mktemp("sshd")
    port = _free_port()
    write_sshd_files(root, "127.0.0.1", port, ALIAS,
                     f"Host lute-test-unreachable\n  HostName 127.0.0.1\n  Port {_free_port()}\n  ConnectTimeout 5\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.fail("sshd did not start: " + proc.stderr.read().decode(errors="replace"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("sshd did not listen within 10 s")
            time.sleep(0.05)
    yield {"options": f"-F {root / 'ssh_config'}", "config": str(root / "ssh_config")}
    proc.terminate()
    proc.wait(10)
    proc.stderr.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_lute_env(monkeypatch)


def _ssh_processes() -> int:
    out = subprocess.run(["pgrep", "-c", "-x", "ssh"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


@pytest.mark.parametrize("use_zmq", [False, True], ids=["raw", "zmq"])
def test_task_on_another_host_streams_through_the_tunnel(sshd, use_zmq: bool) -> None:
    count = 2000
    with executor(use_zmq) as ex:
        env = child_env(use_zmq, {"LUTE_EXECUTOR_HOST": ALIAS, "LUTE_SSH_OPTIONS": sshd["options"]})
        proc = start_task("writer.py", count, "persistent-exit", "gsm", env=env)
        got = collect(ex, count, 60, [proc])
        finish(proc)
    assert sorted(m.contents[1] for m in got) == list(range(count))
    if not use_zmq:
        assert [m.contents[1] for m in got] == list(range(count))


def test_tunnel_is_stopped_and_removed_on_close(sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _ssh_processes()
    with executor(False) as ex:
        monkeypatch.setenv("LUTE_EXECUTOR_HOST", ALIAS)
        task = SocketCommunicator(Party.TASK, use_zmq=False, ssh_options=["-F", sshd["config"]])
        task.delayed_setup()
        tunnel = task.tunnel
        assert tunnel is not None and tunnel.running
        local = tunnel.local_socket
        assert os.stat(os.path.dirname(local)).st_mode & 0o777 == 0o700
        task.write(Message("via ssh"))
        assert ex.read(wait=10) == Message("via ssh")
        task.close()  # the last user of the process's session link closes it, and its tunnel
        assert not tunnel.running
        assert not os.path.exists(os.path.dirname(local))
    assert _ssh_processes() == before


def test_ssh_failure_is_a_clear_tunnel_error(sshd, tmp_path) -> None:
    tunnel = SshTunnel("lute-test-unreachable", str(tmp_path / "x.sock"), ssh_options=["-F", sshd["config"]],
                       timeout=20)
    start = time.monotonic()
    with pytest.raises(TunnelError) as info:
        tunnel.open()
    message = str(info.value)
    assert "lute-test-unreachable" in message and "ssh exit code 255" in message
    assert "Connection refused" in message  # ssh's own stderr is included
    assert time.monotonic() - start < 15
    assert tunnel.local_socket is not None and not os.path.exists(os.path.dirname(tunnel.local_socket))


def test_unknown_host_key_is_refused_in_batch_mode(sshd, tmp_path) -> None:
    config = Path(sshd["config"]).read_text().replace("UserKnownHostsFile", f"UserKnownHostsFile {tmp_path}/empty #")
    (tmp_path / "cfg").write_text(config)
    with pytest.raises(TunnelError, match="(?i)host key"):
        SshTunnel(ALIAS, str(tmp_path / "x.sock"), ssh_options=["-F", str(tmp_path / "cfg")], timeout=20).open()


def test_tunnel_open_timeout(sshd, tmp_path) -> None:
    """A tunnel not accepting within the timeout is an error, and ssh is stopped."""
    tunnel = SshTunnel(ALIAS, str(tmp_path / "x.sock"), ssh_options=["-F", sshd["config"]], timeout=0.001)
    with pytest.raises(TunnelError, match="did not accept connections within"):
        tunnel.open()
    assert not tunnel.running


def test_keep_alive_options_bound_a_dead_link_and_user_options_win() -> None:
    """Default keep-alive (3 s x (2 + 1) = about 9 s to give up on a silent host), placed after the
    user's options so that a -o ServerAlive... there wins (ssh keeps the first value it reads)."""
    cmd = SshTunnel("h", "/remote.sock").command("/local.sock")
    assert cmd[cmd.index("ServerAliveInterval=3") - 1] == "-o" and "ServerAliveCountMax=2" in cmd
    user = ["-o", "ServerAliveInterval=30"]
    cmd = SshTunnel("h", "/remote.sock", ssh_options=user).command("/local.sock")
    assert cmd.index("ServerAliveInterval=30") < cmd.index("ServerAliveInterval=3")
    cmd = SshTunnel("h", "/remote.sock", server_alive_interval=0).command("/local.sock")
    assert not [a for a in cmd if a.startswith("ServerAlive")]
    with pytest.raises(UsageError):
        SshTunnel("h", "/remote.sock", server_alive_count_max=0)


def test_dead_tunnel_found_by_the_background_flush_is_still_a_tunnel_error(sshd, monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The flusher thread, not write(), meets the dead tunnel first: the next write() raises it as the
    TunnelError it is (CI once saw a plain TransportError there, by this race)."""
    with executor(False) as ex:
        monkeypatch.setenv("LUTE_EXECUTOR_HOST", ALIAS)
        # A 5 s latency bound: a message written within 5 s of the last one waits for the flusher.
        task = SocketCommunicator(Party.TASK, use_zmq=False, ssh_options=["-F", sshd["config"]], flush_interval=5)
        task.write(Message("via ssh"))
        task.flush()
        assert ex.read(wait=4) == Message("via ssh")
        task.tunnel._proc.kill()
        task.tunnel._proc.wait(10)
        with caplog.at_level("WARNING", logger="lute_ipc.transport"):
            task.write(Message("buffered when ssh died"))  # left to the flusher (written < 5 s after the last)
            deadline = time.monotonic() + 20
            while not any("background send" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the flusher never reported the failed send"
                time.sleep(0.01)
        with pytest.raises(TunnelError, match="earlier background send failed: the ssh tunnel"):
            task.write(Message("after the flusher failed"))
        try:
            task.clear_communicator()
        except TunnelError:
            pass


def test_dead_tunnel_is_a_tunnel_error_on_the_next_write(sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    """ssh ends (here: killed; on a cut link: its keep-alive gives up): a raw Task's next write raises
    TunnelError with ssh's exit code, not a puzzling 'connection refused' on a local socket."""
    with executor(False) as ex:
        monkeypatch.setenv("LUTE_EXECUTOR_HOST", ALIAS)
        task = SocketCommunicator(Party.TASK, use_zmq=False, ssh_options=["-F", sshd["config"]])
        task.write(Message("via ssh"))
        assert ex.read(wait=10) == Message("via ssh")
        task.tunnel._proc.kill()
        task.tunnel._proc.wait(10)
        error = write_until_raises(task, TunnelError, "ssh tunnel to the Executor's host .* ended", "after ssh died",
                                   pause=0.02)
        assert "exit code" in str(error)
        try:
            task.clear_communicator()
        except TunnelError:  # the last buffered messages could not go anywhere
            pass
