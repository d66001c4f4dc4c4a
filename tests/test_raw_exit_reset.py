"""A raw session Task that ends with ``os._exit`` right after its last send loses nothing.

RELIABILITY 4.8 (found by the benchmark's forked Task): a Task that had asked the Executor for
acknowledgements while it wrote ends without reading the answers; on TCP, Linux resets a
connection closed with unread data (or that receives data after its close) and discards what
its send queue still held: 2,016 of 2,044 messages arrived, uncounted. The Task now asks for an
acknowledgement only where it then waits for it (``confirm()``, ``close()``, exit), so nothing
comes back unasked. Unix sockets keep what was sent whatever the receiver holds; both run here.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.socket_tasks.helpers import child_env, executor, use_transport, wait_until

pytestmark = pytest.mark.usefixtures("clean_lute_env")

COUNT = 8000
EXITING_TASK = """
import os, sys
from lute_ipc import Message, Party, SocketCommunicator
task = SocketCommunicator(Party.TASK)
payload = "x" * 1024
for i in range(int(sys.argv[1])):
    task.write(Message((i, payload), "TASK_LOG"))
task.flush()  # every message is in the kernel now
print("flushed", flush=True)
os._exit(0)
"""


def _read_slowly(ex, count: int, timeout: float) -> list:
    """A slow consumer: the Task's kernel keeps unsent data while acknowledgements flow back."""
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        got = ex.read_many(20, wait=0.2)
        if not got and ex.stats.connections_closed:  # the Task's connection ended and all of it was read
            break
        out.extend(got)
        time.sleep(0.002)
    return out


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_task_ending_with_os_exit_after_its_last_send_loses_nothing(family: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    use_transport(monkeypatch, ("raw", family))
    with executor(False, queue_size=8) as ex:
        proc = subprocess.Popen([sys.executable, "-c", EXITING_TASK, str(COUNT)], env=child_env(False),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            got = _read_slowly(ex, COUNT, 60)
        finally:
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "flushed" in out, err[-2000:]
        assert wait_until(lambda: ex.stats.connections_closed >= 1, 10)
    numbers = [m.contents[0] for m in got]
    assert numbers == list(range(COUNT)), f"{COUNT} sent, {len(numbers)} read; stats {ex.stats}"
