"""A raw-session Task that exits without ``close()`` while its Executor is frozen (SIGSTOP): the
exit confirmation is bounded by ``linger`` and names what was not confirmed; what was sent is in
the kernel and is delivered once the Executor runs again (docs/RELIABILITY.md 4.5 and 4.7; the
ZeroMQ counterpart is ``tests/redteam/test_rt14z_acks.py``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.redteam.rt14z_common import (CORES, EXIT_WITHOUT_CLOSE, FAMILIES, ExecutorProcess, base_env, require_core,
                                         freeze)

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("core", CORES)
def test_raw_exit_without_close_is_bounded_while_the_executor_is_frozen(core: str, family: str) -> None:
    require_core(core)
    with ExecutorProcess(base_env(core, family, use_zmq=False)) as ex:
        task = subprocess.Popen([sys.executable, "-c", EXIT_WITHOUT_CLOSE], env=ex.task_env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert task.stdout is not None and task.stdout.readline() == "written\n", task.communicate()[1][-2000:]
        assert ex.read(10, 30) == [repr(i) for i in range(10)]
        freeze(ex.proc.pid)
        try:
            _, err = task.communicate("go\n", timeout=30)  # linger=1: a bounded exit takes about a second
            exited = True
        except subprocess.TimeoutExpired:
            exited = False
        finally:
            os.kill(ex.proc.pid, signal.SIGCONT)
            if task.poll() is None:
                _, err = task.communicate(timeout=60)
        got = ex.read(20, 10)
    assert exited, "the Task was still exiting 30 s after its last write, its Executor frozen (linger=1)"
    assert task.returncode == 0, err[-2000:]
    assert re.search(r"\b\d+ message\(s\) were not confirmed by the Executor within 1 s", err), err[-2000:]
    assert got == [repr(i) for i in range(10, 30)]  # in the kernel: delivered after the Task's exit
