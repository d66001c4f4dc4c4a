"""Red team 20: a raw session Task's ``close()`` and writes when its Executor is SIGKILLed or frozen
(RELIABILITY 1 and 2: "every fault ends in a clear, bounded outcome"; a dead Executor is
reported to the writing Task). Executor in its own process (``rt14z_executor.py``), Tasks from
``python -c``; both cores, Unix and TCP.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from tests.redteam.rt14z_common import CORES, FAMILIES, ExecutorProcess, base_env, freeze, popen_task, require_core

CLOSE_TASK = r"""
import sys, time
from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.errors import TransportError
confirm = float(sys.argv[1]) if len(sys.argv) > 1 else None
task = SocketCommunicator(Party.TASK, linger=1, connect_timeout=1, confirm_timeout=confirm)
for i in range(50):
    task.write(Message(i, "TASK_LOG"))
task.flush()
print("ready", flush=True)
sys.stdin.readline()
raised = 0
for i in range(50, 60):
    try:
        task.write(Message(i, "TASK_LOG"))
        task.flush()
    except TransportError as exc:
        raised += 1
        print("write-raised", i, exc, flush=True)
t0 = time.monotonic()
try:
    task.close()
    print("close-returned %.1f" % (time.monotonic() - t0), flush=True)
except TransportError as exc:
    print("close-raised %.1f %s" % (time.monotonic() - t0, exc), flush=True)
"""


def _executor(core: str, family: str) -> ExecutorProcess:
    require_core(core)
    return ExecutorProcess(base_env(core, family, use_zmq=False), {})


def _kill_after_50_read(ex: ExecutorProcess, task: subprocess.Popen) -> str:
    """Let the consumer read the Task's first 50 messages, SIGKILL the Executor, let the Task go on;
    its output, once it ended (with 0)."""
    assert len(ex.read(50, 15)) == 50
    os.kill(ex.proc.pid, signal.SIGKILL)
    ex.proc.wait()
    assert task.stdin is not None
    task.stdin.write("go\n")
    task.stdin.flush()
    out, err = task.communicate(timeout=40)
    assert task.returncode == 0, err[-2000:]
    return out


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("family", FAMILIES)
def test_sigkilled_executor_is_reported_to_the_writing_task(core: str, family: str) -> None:
    """50 messages read by the consumer, Executor SIGKILLed, the Task writes 10 more (each flushed)
    and closes: a write or ``close()`` raises ``TransportError`` (none of the 10 can have arrived),
    and the Task ends within its bounds (``connect_timeout`` 1 s per write)."""
    with _executor(core, family) as ex:
        task = popen_task(CLOSE_TASK, ex.task_env, ready="ready")
        out = _kill_after_50_read(ex, task)
        assert "write-raised 5" in out or "close-raised" in out, out


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("family", FAMILIES)
def test_close_with_a_frozen_executor_ends_within_confirm_timeout(core: str, family: str) -> None:
    """The Executor is frozen (SIGSTOP, every thread stopped) after it took the Task's first 50
    messages; the Task writes 10 more and calls ``close()`` (``linger=1``, default
    ``confirm_timeout``). RELIABILITY's opening promise: every fault ends in a clear, bounded
    outcome; section 2 gives ZeroMQ's ``close()`` the bound ``linger`` for an Executor that stopped
    reading, and 4.7 bounds the raw exit confirmation by ``linger``. Expected: ``close()`` returns
    or raises ``TransportError`` naming the 10 (or 60) unconfirmed messages within 20 s.

    FINDING (main at a199493, 2 shared cores, both cores, Unix and TCP, every run): ``close()`` is
    still waiting after 20 s (probe: 25 s), for as long as the Executor stays frozen
    (``SessionLink.close`` calls ``confirm(None)``; TCP's ``send_timeout`` never fires, the frozen
    Executor's kernel still acknowledges TCP). A Task whose Executor is stopped (a debugger, a
    job-control stop, an overloaded host's frozen process) hangs in ``close()`` /
    ``clear_communicator()`` of a non-shared link forever unless the user sets ``confirm_timeout``.
    Reproduce: ``python -m pytest tests/redteam/test_rt20_raw_close.py -k frozen --runxfail``.

    KEPT AS DESIGNED (RELIABILITY 4.9): a raw Executor cannot tell a waiting Task "slow, but alive"
    without sending data the Task did not ask for, which makes Linux reset the TCP connection of a
    Task that ends with ``os._exit`` (4.8); so by default a raw ``close()`` waits for a frozen
    Executor as for a slow one (the exit confirmation is bounded by ``linger``), and
    ``confirm_timeout`` should bound it. This test checks that bound: ``confirm_timeout=2``, the frozen
    Executor's Task should get ``close()`` raising ``TransportError`` naming the unconfirmed messages.
    FINDING (this session, Unix and TCP, both cores): it does not: ``writer.confirm(2)`` raises, then
    ``registry.release(close=True)`` closes the shared link, whose ``close()`` confirms again with
    no bound. FIXED: a bounded confirmation that ran out is not waited again: the link is closed
    without waiting (what was sent stays in the kernel)."""
    with _executor(core, family) as ex:
        task = popen_task(CLOSE_TASK, ex.task_env, "2", ready="ready")
        try:
            assert len(ex.read(50, 15)) == 50
            freeze(ex.proc.pid)
            assert task.stdin is not None
            task.stdin.write("go\n")
            task.stdin.flush()
            try:
                out, err = task.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                task.kill()
                out, err = task.communicate()
                raise AssertionError("close() still waiting after 20 s with a frozen Executor (linger=1)")
            match = re.search(r"close-raised ([0-9.]+) .*\b(\d+) message\(s\) were not confirmed", out)
            assert match, (out, err[-2000:])
            assert float(match.group(1)) < 10 and 10 <= int(match.group(2)) <= 60, out
        finally:
            os.kill(ex.proc.pid, signal.SIGCONT)
        # what close() gave up on was in the kernel: the resumed Executor still reads all of it
        assert ex.read(10, 15) == [repr(i) for i in range(50, 60)]


BACKGROUND_TASK = r"""
import sys, time
from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.errors import TransportError
task = SocketCommunicator(Party.TASK, linger=1, connect_timeout=1)
for i in range(50):
    task.write(Message(i, "TASK_LOG"))
task.flush()
print("ready", flush=True)
sys.stdin.readline()
accepted = 0
for i in range(50, 55):
    try:
        task.write(Message(i, "TASK_LOG"))  # no flush: the writer's background flush sends them
        accepted += 1
    except TransportError:
        pass
time.sleep(3)  # the background send fails meanwhile (connect_timeout 1 s)
try:
    task.close()
    print("close-returned", accepted, flush=True)
except TransportError as exc:
    print("close-raised", accepted, exc, flush=True)
"""


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["raw", "zmq"])
def test_close_names_what_a_failed_background_send_lost(kind: str, core: str, family: str) -> None:
    """Executor SIGKILLed after its consumer read 50 messages; the Task writes 5 more without
    flushing (the first write may raise: the Executor's end is seen), the background flush fails,
    ``close()`` raises naming the whole loss as one number: the messages ``write()`` accepted
    (none of them can have arrived).

    Held: raw Unix (the first write raises EPIPE at once, close() names the 4 it accepted) and
    ZeroMQ Unix and TCP ('(4 message(s) that write() had accepted were not sent)').

    FINDING, raw TCP (a199493, both cores, 2 of 2 runs each): all 5 writes are accepted (the first
    background send goes into the kernel of a connection the dead Executor's host resets) and
    ``close()`` raises "an earlier background send failed: sending to the Executor failed: [Errno
    32] Broken pipe: 55 message(s) sent on it were not confirmed (the next write opens a new
    connection) (4 message(s) that write() had accepted were not sent)" (other run: "the Executor
    closed the connection: 51 message(s) sent on it were not confirmed ... (4 ...)"). The loss is 5;
    the text gives 55 or 51 (``SessionLink.send`` counts a batch as sent before its send fails, so
    the 4 are in both numbers; the 50 the consumer read are "not confirmed" because the Task never
    asked) and 4, and no "in all" total (the raw link has no ``lost_unconfirmed``). Reproduce:
    ``python -m pytest tests/redteam/test_rt20_raw_close.py -k "background and raw-tcp" --runxfail``.
    FIXED: a batch counts as sent only once its send succeeded, and the raw link keeps
    ``lost_unconfirmed``, so the writer names the whole as one number ("in all, N message(s) that
    write() had accepted were not confirmed delivered"); the 50 read before the kill stay in it, as
    not confirmed (the Task asks only at close: RELIABILITY 4.8)."""
    require_core(core)
    with ExecutorProcess(base_env(core, family, use_zmq=kind == "zmq"), {}) as ex:
        task = popen_task(BACKGROUND_TASK, ex.task_env, ready="ready")
        out = _kill_after_50_read(ex, task)
        line = next(text for text in out.splitlines() if text.startswith("close-"))
        accepted = int(line.split()[1])
        assert accepted > 0, line
        assert line.startswith("close-raised"), line
        # the whole is one number: the largest one named; the parts named add up to it (nothing
        # counted twice). It is at least what write() accepted after the kill, and at most that plus
        # the 50 sent before (a raw Task asks for confirmation only at close: those 50, read by the
        # consumer, are "not confirmed"; ZeroMQ sessions confirm every batch)
        numbers = [int(n) for n in re.findall(r"\b(\d+) message\(s\)", line)]
        whole = max(numbers)
        parts = [n for n in numbers if n != whole] if numbers.count(whole) == 1 else []
        assert accepted <= whole <= 50 + accepted, line
        assert not parts or sum(parts) == whole, line
