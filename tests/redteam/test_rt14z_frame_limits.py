"""Red team 14z: frame limits over ZeroMQ when the Task's and the Executor's limits differ.

Issue 14, deliverable 4: "A message over the frame limit raises FrameTooLarge-family errors in the
Task at write(), before anything is sent, naming the limit and how to raise it", and 5: "Every
drop anywhere is counted in stats, logged once".

1. Session (lute_ipc peers): the raw session's challenge tells the Task the Executor's limit, so a
   raw Task whose own ``LUTE_IPC_MAX_FRAME_SIZE`` is larger still gets ``MessageTooLarge`` from
   ``write()``. The ZeroMQ session does not: with the Executor at 1 MiB and the Task at 8 MiB, a
   4 MiB ``write()`` returns, the whole message is sent, the Executor rejects it
   (``FrameTooLarge`` + a spurious ``TruncatedFrame``: two framing errors for one message) and the
   Task hears of it only at ``close()`` ("the Executor rejected 1 message(s)").
2. LUTE's endpoint (PULL, what LUTE's own Tasks use): a message over the Executor's limit is
   dropped by libzmq (MAXMSGSIZE) with the connection; the Executor's ``stats`` stay at zero and
   nothing is logged -- the silent drop of the issue's 72 MB example, for any LUTE Task message
   over ``LUTE_IPC_MAX_FRAME_SIZE``.
"""

from __future__ import annotations

import time

import pytest

from lute_ipc import Message
from tests.redteam.rt14z_common import CORES, FAMILIES, executor_process, run_task_ok

zmq = pytest.importorskip("zmq")

LIMIT = 1 << 20

TASK_WITH_A_LARGER_LIMIT = """
from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.errors import FrameTooLarge
task = SocketCommunicator(Party.TASK, linger=10)
task.delayed_setup()
task.write(Message("before", "TASK_LOG"))
try:
    task.write(Message(b"x" * (4 << 20), "TASK_RESULT"))
except FrameTooLarge as exc:
    print("refused at write():", exc)
else:
    print("write() accepted it")
task.write(Message("after", "TASK_LOG"))
try:
    task.close()
except Exception as exc:
    print("close() raised:", type(exc).__name__, exc)
"""


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_session_task_learns_the_executors_frame_limit(core: str, family: str) -> None:
    with executor_process(core, family, {"max_frame_size": LIMIT}) as ex:
        env = dict(ex.task_env, LUTE_IPC_MAX_FRAME_SIZE=str(8 << 20))
        done = run_task_ok(TASK_WITH_A_LARGER_LIMIT, env)
        assert ex.read(2, 30) == ["'before'", "'after'"]
        assert "refused at write():" in done.stdout and str(LIMIT) in done.stdout, done.stdout


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_oversize_lute_message_on_the_pull_endpoint_is_counted(core: str, family: str) -> None:
    from lute_ipc.framing import encode_frame

    options = {"max_frame_size": LIMIT, "require_auth": False}  # LUTE's frames are unsigned
    with executor_process(core, family, options) as ex:
        where = ex.exported.get("LUTE_PORT")
        address = f"tcp://127.0.0.1:{where}" if family == "tcp" else f"ipc://{ex.exported['LUTE_SOCKET']}"
        context = zmq.Context()
        try:
            # One LUTE Task message per connection, like LUTE's PUSH. The second connection is open
            # before the first ends: a connection whose descriptor the kernel hands to the next one
            # before its messages are read is not judged (docs/RELIABILITY.md 4.5), and that limit
            # is not what this test is about.
            later = context.socket(zmq.PUSH)
            later.connect(address)
            push = context.socket(zmq.PUSH)
            push.connect(address)
            push.send(bytes(encode_frame(Message(b"x" * (2 * LIMIT), "TASK_RESULT"))))
            push.close(linger=10_000)
            later.send(bytes(encode_frame(Message("after", "TASK_RESULT"))))
            later.close(linger=10_000)
            assert ex.read(1, 30) == ["'after'"]
            deadline = time.monotonic() + 2  # the drop, once counted, shows at once: wait for it, bounded
            while True:
                stats = ex.stats()
                dropped = stats["framing_errors"] + stats["messages_refused"] + stats["payload_errors"] \
                    + sum(stats["errors_by_type"].values())
                if dropped or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            context.destroy(linger=0)  # (sockets a failure left open must not hang it)
        assert dropped >= 1, f"a {2 * LIMIT}-byte message was dropped and nothing counts it: {stats}"
