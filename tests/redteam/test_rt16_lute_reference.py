"""Red team 16: the open 72 MB ZeroMQ cell of the LUTE matrix is LUTE's own behaviour.

``tests/lute_matrix`` reports ``LUTE-executor+lute_ipc-task/{unix,tcp}-zmq/SocketTester-72MB`` as
an expected failure with "two candidate causes, not yet told apart" (libzmq at the Task's exit,
or LUTE's Executor). LUTE 0.3.0 on *both* sides tells them apart: its own ``SocketTester`` with
the same 72 MB result over its own ZeroMQ IPC ends with "Task did not change from RUNNING
status. Assume COMPLETED." and no result recorded, on every run seen (Unix and TCP, 3 of 3).
The loss is on LUTE's Executor side (its final read runs while its reader thread is still
taking the 72 MB message), whoever the Task is. docs/MIGRATION.md's list "What LUTE itself gets
wrong" names only the raw-socket case.

This test pins LUTE's behaviour (it passes while LUTE loses the result, like the matrix's
``check_lute_raw_reader_72mb``); if a LUTE release fixes it, it fails and the matrix cell's
expectation and MIGRATION.md should change with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.redteam.rt16_common import lute_matrix

pytestmark = [pytest.mark.lute, pytest.mark.timeout(600)]


@pytest.mark.parametrize("transport", ["unix-zmq", "tcp-zmq"])
def test_lute_on_both_sides_loses_its_72mb_result_over_zeromq(tmp_path: Path, transport: str) -> None:
    matrix = lute_matrix()
    from tests.lute_matrix.manager import Manager

    with Manager() as manager:
        run = matrix.run_lute("SocketTester", "0", transport, tmp_path, manager.url, 600)
    assert "(ZMQ)" in run.log, "LUTE's Executor did not use ZeroMQ"
    assert "lute_ipc transport" not in run.log, "lute_ipc served this run: the reference must be LUTE on both sides"
    status, _, size, _ = run.result("TestSocket")
    assert "Assume COMPLETED" in run.log and size == 0, (
        f"LUTE's own ZeroMQ IPC delivered the 72 MB result ({status}, {size} bytes): update the matrix's "
        "LUTE-executor+lute_ipc-task ZeroMQ cells and docs/MIGRATION.md")
