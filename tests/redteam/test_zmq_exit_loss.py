"""Red team: a ZeroMQ Task that writes a large message and exits normally loses it silently.

docs/RELIABILITY.md section 1: a ZeroMQ Task loses "nothing while the Executor keeps up", and "at
normal interpreter exit without close(), a delivery failure is logged as a warning". Here the
Executor is idle and keeps up, the Task writes a 100 MiB ``bytes`` message then a small
``TASK_RESULT``, both ``write()`` calls return, the Task exits 0 without calling ``close()``
(as LUTE Tasks do) -- and the Executor receives neither message, with no warning and no error
anywhere (observed 0 of 2 delivered on every run at 100 MiB; at 65 MiB the small TASK_RESULT
after the big one is lost on some runs). With an explicit ``close()`` both arrive; over raw
sockets both arrive without ``close()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("zmq")

TASK = textwrap.dedent(
    """
    from lute_ipc import Message, Party
    from lute_ipc.sockets import SocketCommunicator
    comm = SocketCommunicator(Party.TASK)
    comm.write(Message(contents=b"x" * (100 << 20)))
    comm.write(Message(contents="after", signal="TASK_RESULT"))
    # no close(): the interpreter exits normally
    """
)

RUNNER = textwrap.dedent(
    """
    import sys
    from lute_ipc.executor import TaskRunner
    got = []
    runner = TaskRunner([sys.executable, "-c", sys.argv[1]], timeout=120, use_zmq=True)
    runner.on_message(lambda m: got.append(len(m.contents) if isinstance(m.contents, bytes) else m.contents))
    result = runner.run()
    print(repr((str(result.outcome), result.returncode, got, list(result.results))))
    """
)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
def test_zmq_task_exit_without_close_delivers_large_message(pure: str) -> None:
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=pure)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, TASK], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    outcome, returncode, got, results = eval(done.stdout.strip().splitlines()[-1])
    assert returncode == 0
    assert 100 << 20 in got, f"the 100 MiB message was lost silently: {got}, stderr={done.stderr[-500:]!r}"
    assert results == ["after"], f"the TASK_RESULT written after it was lost: {results}"
