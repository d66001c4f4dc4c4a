"""``write()`` of something that is not a Message must raise a lute_ipc error.

Promise (brief / docs): bad contents at write time in the Task give a clear ``lute_ipc.errors``
exception, never a raw AttributeError/TypeError. Today ``PipeCommunicator.write({'a': 1})``
raises ``AttributeError: 'dict' object has no attribute 'signal'`` and
``SocketCommunicator.write({'a': 1})`` raises ``AttributeError: ... 'contents'``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TASK = textwrap.dedent(
    """
    import sys
    from lute_ipc import Party
    from lute_ipc.pipe import PipeCommunicator
    from lute_ipc.sockets import SocketCommunicator
    kind, value, out = sys.argv[1], eval(sys.argv[2]), sys.argv[3]
    comm = PipeCommunicator(Party.TASK) if kind == "pipe" else SocketCommunicator(Party.TASK)
    try:
        comm.write(value)
        result = "no error"
    except BaseException as exc:
        result = type(exc).__module__ + "." + type(exc).__name__
    open(out, "w").write(result)
    """
)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
@pytest.mark.parametrize("value", ["{'a': 1}", "'hello'", "None"])
@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_write_non_message_raises_lute_ipc_error(kind: str, value: str, pure: str, tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    runner_code = textwrap.dedent(
        f"""
        import sys
        from lute_ipc.executor import TaskRunner
        runner = TaskRunner([sys.executable, "-c", {TASK!r}, {kind!r}, {value!r}, {str(out)!r}], timeout=60)
        runner.run()
        """
    )
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=pure)
    done = subprocess.run([sys.executable, "-c", runner_code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = out.read_text()
    assert result.startswith("lute_ipc.errors."), f"write({value}) on {kind} raised {result}"
