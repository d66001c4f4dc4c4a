"""Two hosts: the Executor in one network namespace, its Tasks in another, joined by a veth pair.

``10.213.7.1/24`` (Executor host, namespace ``lrelE<pid>``) and ``10.213.7.2/24`` (Task host,
``lrelT<pid>``) exist only inside the namespaces created here; the veth pair is created
inside them too, so no interface or address of the machine is touched. Fixture teardown
kills every process in both namespaces and deletes them (which deletes the veth pair).

Paths: TCP raw, TCP ZeroMQ, and the Unix path through an ``ssh -L`` tunnel to a real
``sshd`` running in the Executor's namespace (``LUTE_EXECUTOR_HOST`` names the alias of
an ssh config passed with ``LUTE_SSH_OPTIONS``). Then the link is cut
(``ip link set ... down``) mid-stream: the Task must end with a clear error within
``CUT_BOUND`` seconds and the Executor keeps every message received before the cut.

Skipped (with the reason) only where namespaces cannot be created: not root, or ``ip netns``
not permitted; CI runs as root and runs them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.reliability.harness import Group, task_env
from tests.socket_tasks.sshd import SSHD, write_sshd_files

pytestmark = pytest.mark.reliability

EXEC_ADDR, TASK_ADDR = "10.213.7.1", "10.213.7.2"
ALIAS = "lute-exec-host"
CUT_BOUND = 15.0
"""Seconds within which a Task must report the cut link (its connect_timeout is 5 s; the defaults
being checked: send_timeout 10 s on TCP, ssh keep-alive about 9 s)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


class Hosts:
    def __init__(self, tag: str) -> None:
        self.exec_ns, self.task_ns = f"lrelE{tag}", f"lrelT{tag}"
        self.exec_if, self.task_if = f"lrE{tag}", f"lrT{tag}"

    def prefix(self, ns: str) -> List[str]:
        return ["ip", "netns", "exec", ns]

    def pids(self, ns: str) -> List[int]:
        out = _ip("netns", "pids", ns, check=False).stdout.split()
        return [int(p) for p in out if p.isdigit()]

    def cut(self) -> None:
        _ip("-n", self.task_ns, "link", "set", self.task_if, "down")


def _namespaces_unavailable() -> str:
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    return ""


@pytest.fixture
def hosts(group: Group) -> Iterator[Hosts]:
    reason = _namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    h = Hosts(str(os.getpid() % 100000))
    for ns in (h.exec_ns, h.task_ns):  # leftovers of a crashed run with the same pid
        _ip("netns", "del", ns, check=False)
    made = _ip("netns", "add", h.exec_ns, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        _ip("netns", "add", h.task_ns)
        _ip("-n", h.exec_ns, "link", "add", h.exec_if, "type", "veth", "peer", "name", h.task_if,
            "netns", h.task_ns)
        _ip("-n", h.exec_ns, "addr", "add", f"{EXEC_ADDR}/24", "dev", h.exec_if)
        _ip("-n", h.task_ns, "addr", "add", f"{TASK_ADDR}/24", "dev", h.task_if)
        for ns, ifname in ((h.exec_ns, h.exec_if), (h.task_ns, h.task_if)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", ifname, "up")
        ping = subprocess.run([*h.prefix(h.task_ns), "ping", "-c", "1", "-W", "5", EXEC_ADDR],
                              capture_output=True, text=True, timeout=30) if shutil.which("ping") else None
        assert ping is None or ping.returncode == 0, ping.stdout + ping.stderr
        yield h
    finally:
        group.cleanup()
        for ns in (h.exec_ns, h.task_ns):
            for pid in h.pids(ns):  # anything still running in our namespaces was started by this test
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _ip("netns", "del", ns, check=False)
        left = _ip("netns", "list").stdout
        assert h.exec_ns not in left and h.task_ns not in left


@pytest.fixture
def sshd(hosts: Hosts, tmp_path: Path) -> Iterator[Dict[str, str]]:
    """A private sshd on 10.213.7.1:2222 in the Executor's namespace; an ssh config naming it ALIAS."""
    if SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh (sshd, ssh, ssh-keygen) is not installed")
    root = tmp_path / "sshd"
    root.mkdir()
    port = 2222
    write_sshd_files(root, EXEC_ADDR, port, ALIAS, "  ConnectTimeout 5\n")
    proc = subprocess.Popen([*hosts.prefix(hosts.exec_ns), SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail("sshd did not start: " + proc.stderr.read().decode(errors="replace"))
            probe = subprocess.run([*hosts.prefix(hosts.task_ns), "python3", "-c",
                                    f"import socket; socket.create_connection(('{EXEC_ADDR}', {port}), 1).close()"],
                                   capture_output=True, timeout=20)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail("sshd did not listen within 15 s")
            time.sleep(0.1)
        yield {"options": f"-F {root / 'ssh_config'}"}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()


PATHS = [
    pytest.param(("tcp", False), id="tcp-raw"),
    pytest.param(("tcp", True), id="tcp-zmq"),
    pytest.param(("ssh", False), id="unix-ssh-raw"),
    pytest.param(("ssh", True), id="unix-ssh-zmq"),
]


def _start(hosts: Hosts, group: Group, request: pytest.FixtureRequest, path, cfg_extra=None):
    """Executor in the Executor namespace; returns (executor child, Task environment)."""
    kind, use_zmq = path
    cfg = {"use_zmq": use_zmq, "tcp": kind == "tcp", "bind_host": EXEC_ADDR, "duration": 120, "progress": 0.25}
    cfg.update(cfg_extra or {})
    ex, ready = group.executor(cfg, prefix=hosts.prefix(hosts.exec_ns))
    env = task_env(ready, use_zmq)
    if kind == "tcp":
        env["LUTE_EXECUTOR_HOST"] = EXEC_ADDR
    else:
        ssh = request.getfixturevalue("sshd")
        env["LUTE_EXECUTOR_HOST"] = ALIAS
        env["LUTE_SSH_OPTIONS"] = ssh["options"]
    return ex, env


@pytest.mark.parametrize("path", PATHS)
def test_tasks_on_another_host(hosts: Hosts, group: Group, request, path) -> None:
    """Two Tasks on the Task host deliver 5,000 messages each (64 B - 256 KiB), in order."""
    count = 5000
    ex, env = _start(hosts, group, request, path, {"expect_total": 2 * count})
    tasks = [group.task({"sender": f"h{i}", "count": count}, env, prefix=hosts.prefix(hosts.task_ns))
             for i in range(2)]
    codes = [t.wait(120) for t in tasks]
    assert codes == [0, 0], [(t.find("error"), t.stderr()[-1000:]) for t in tasks]
    result = ex.wait_for("result", 30)["result"]
    assert result["counts"] == {"h0": count, "h1": count}, result
    assert result["n_gaps"] == 0 and result["n_reorders"] == 0 and result["n_corrupt"] == 0
    assert not hosts.pids(hosts.task_ns), "processes (ssh?) left on the Task host"


@pytest.mark.parametrize("path", PATHS)
def test_link_cut_mid_stream(hosts: Hosts, group: Group, request, path) -> None:
    """Tasks write 2,000 messages/s; once the Executor has 2,000 of them the Task host's link
    goes down. The Task must end with a clear lute_ipc error within CUT_BOUND seconds; the
    Executor keeps (and delivers) every message received before the cut, gap-free and in order.

    Regression test for docs/RELIABILITY.md 4.3: raw TCP blocked in sendall() for ~15 min, ZeroMQ
    TCP queued silently, the ssh paths waited ~2 min for ssh's keep-alive. Now: TCP links watch the
    kernel's acknowledgements (send_timeout, 10 s), ssh runs with ServerAliveInterval=3 x
    ServerAliveCountMax=2 (about 9 s)."""
    ex, env = _start(hosts, group, request, path)
    env = dict(env)
    task = group.task({"sender": "c0", "count": 10**6, "rate": 2000, "duration": 90, "connect_timeout": 5.0},
                      env, prefix=hosts.prefix(hosts.task_ns))
    ex.wait_for(lambda line: line.get("total", 0) >= 2000, 60)
    hosts.cut()
    cut_at = time.time()
    time.sleep(1.0)
    ex.wait_for(lambda line: "progress" in line, 5)
    received_before = ex.lines[-1].get("total", 0)
    code = task.wait(CUT_BOUND)
    report = task.find("error") or task.find("done")
    ex.send("stop")
    result = ex.wait_for("result", 30)["result"]
    got = result["counts"].get("c0", 0)
    print(f"\nlink cut {request.node.callspec.id}: Task exit {code} after "
          f"{(report or {}).get('at', time.time()) - cut_at:.1f} s: {report}; Executor kept {got} messages")
    assert got >= received_before and result["first_seq"].get("c0") == 0
    assert result["n_gaps"] == 0 and result["n_reorders"] == 0 and result["n_corrupt"] == 0, result
    if code is None:
        pytest.fail(f"Task still running {CUT_BOUND:g} s after the cut, no error: {task.lines[-2:]}")
    assert code == 3, f"Task exited {code} after the link was cut (no error): {report}"
    assert report["lute"] and report["type"] in ("TransportError", "TunnelError"), report
    assert report["at"] - cut_at <= CUT_BOUND


def test_executor_exit_leaves_no_ssh_on_task_host(hosts: Hosts, group: Group, request) -> None:
    """A raw Unix Task tunnelled through ssh; the Executor process is SIGKILLed: the Task ends
    with a clear error within 20 s and no ssh process is left on the Task host."""
    ex, env = _start(hosts, group, request, ("ssh", False))
    task = group.task({"sender": "s0", "count": 10**6, "rate": 2000, "duration": 60, "connect_timeout": 5.0},
                      env, prefix=hosts.prefix(hosts.task_ns))
    ex.wait_for(lambda line: line.get("total", 0) >= 1000, 60)
    ex.kill(signal.SIGKILL)
    code = task.wait(20)
    report = task.find("error") or task.find("done")
    assert code == 3, f"Task exit {code}: {report}"
    assert report["lute"] and report["type"] in ("TransportError", "TunnelError"), report
    deadline = time.monotonic() + 10
    while hosts.pids(hosts.task_ns) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = hosts.pids(hosts.task_ns)
    assert not left, "orphaned processes on the Task host: " + subprocess.run(
        ["ps", "-o", "pid,args", "-p", ",".join(map(str, left))], capture_output=True, text=True).stdout
