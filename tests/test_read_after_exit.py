"""``read(proc)`` once the Task has ended: what it sent before it exited is read (issue 16).

LUTE's Executor loop reads while messages wait, and once the Task's process has ended it reads
once more (``_finalize_task``) and then assumes the Task COMPLETED. A LUTE Task exits as soon as
its sockets hold its last message, so a large result can still be on its way through the kernel,
libzmq and the reader when that last read comes: the read must wait for it. Real sockets, a
LUTE-like Task in a child process (``tests/socket_tasks/lute_writer.py``: one connection per
message), every transport; the Executor runs the core of this test run.
"""

from __future__ import annotations

import os
import sys
import time
from typing import List

import pytest

from lute_ipc import Message
from lute_ipc.executor import TaskRunner
from tests.socket_tasks.helpers import (
    TASKS,
    TRANSPORTS,
    child_env,
    executor,
    finish,
    lute_executor_loop,
    start_task,
    use_transport,
)

pytestmark = pytest.mark.usefixtures("clean_lute_env")

LAST_SIZE = 32 * 1024 * 1024
"""The Task's last two messages (a log and the result): large enough to be in transit for a
while when the Task exits. The final read may get the log: ``has_messages`` must then wait."""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_final_read_gets_a_large_result_still_in_transit(monkeypatch: pytest.MonkeyPatch,
                                                             transport: tuple) -> None:
    use_zmq = use_transport(monkeypatch, transport)
    tcp = "LUTE_USE_TCP" in os.environ
    with executor(use_zmq, require_auth=False if tcp else None) as ex:
        proc = start_task("lute_writer.py", 3, LAST_SIZE, env=child_env(use_zmq))
        got, _ = lute_executor_loop(ex, proc)
        finish(proc)
        late = ex.read_many(10, wait=5)
    signals = [m.signal for m in got]
    assert signals.count("TASK_LOG") == 3 and signals.count(None) == 1, signals
    assert "TASK_RESULT" in signals, (f"the final read missed the {LAST_SIZE}-byte result "
                                     f"({len(late)} message(s) arrived later: {[m.signal for m in late]})")
    result = next(m for m in got if m.signal == "TASK_RESULT")
    assert isinstance(result.contents, bytes) and len(result.contents) == LAST_SIZE


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_has_messages_after_the_exit_waits_for_what_is_in_transit(monkeypatch: pytest.MonkeyPatch,
                                                                  transport: tuple) -> None:
    """LUTE's loop stops reading once ``has_messages`` is False: right after the Task's process
    ended it is True, and reading while it is True gets everything the Task sent."""
    use_zmq = use_transport(monkeypatch, transport)
    tcp = "LUTE_USE_TCP" in os.environ
    with executor(use_zmq, require_auth=False if tcp else None) as ex:
        proc = start_task("lute_writer.py", 1, LAST_SIZE, env=child_env(use_zmq))
        assert ex.read(proc, wait=30).signal == "TASK_LOG"  # read() now knows the Task's process
        finish(proc)
        got: List[Message] = []
        while ex.has_messages:
            got.append(ex.read(proc))
    assert sorted(str(m.signal) for m in got) == ["None", "TASK_RESULT"], [m.signal for m in got]


def test_a_running_task_costs_no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the process runs (and after the wait for one ended process), an empty read returns
    after its own short timeout."""
    with executor(False) as ex:
        proc = start_task("lute_writer.py", 0, env=child_env(False))
        started = time.monotonic()
        assert ex.read(proc) == Message()
        assert time.monotonic() - started < 2.0  # (the wait would be EXIT_READ_WAIT, 5 s)
        finish(proc)
        ex.read(proc)  # the one wait for this ended process
        started = time.monotonic()
        assert ex.read(proc) == Message()
        assert time.monotonic() - started < 2.0  # (the wait would be EXIT_READ_WAIT, 5 s)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_task_runner_dispatches_a_large_result_still_in_transit(transport: tuple) -> None:
    """lute_ipc's own Executor helper: its drain after the exit waits for the reader to be idle
    too (it used to trust 0.2 s of quiet on ZeroMQ)."""
    kind, family = transport
    tcp = family == "tcp"
    runner = TaskRunner([sys.executable, str(TASKS / "lute_writer.py"), "3", str(LAST_SIZE)], timeout=120,
                        use_zmq=kind == "zmq", use_tcp=tcp,
                        socket_options={"bind_host": "127.0.0.1", "require_auth": False} if tcp else {})
    seen: List[Message] = []
    runner.on_message(seen.append)
    runner.on_signal("TASK_RESULT", seen.append)
    runner.on_signal("TASK_LOG", seen.append)
    result = runner.run()
    assert result.returncode == 0, result
    signals = sorted(str(m.signal) for m in seen)
    assert signals == ["None"] + ["TASK_LOG"] * 3 + ["TASK_RESULT"], signals
