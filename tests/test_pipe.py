"""PipeCommunicator with real child processes (no mocks of the transport).

Runs with whatever core :mod:`lute_ipc.framing` selects (CI runs it twice: Cython, then
``LUTE_IPC_PURE_PYTHON=1``).
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

from lute_ipc import Message, Party
from lute_ipc.errors import CommunicatorClosed, IncompletePickle, TransportError, UsageError
from lute_ipc.pipe import PipeCommunicator
from lute_ipc.stream_items import StreamError

TASK = str(Path(__file__).parent / "pipe_tasks" / "task.py")
REPO = str(Path(__file__).resolve().parent.parent)


def spawn(*args: str, nonblocking: bool = True) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, TASK, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    if nonblocking:  # as LUTE's Executor._submit_task does
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
    return proc


def collect(comm: PipeCommunicator, proc: subprocess.Popen, timeout: float = 60.0) -> List[Message]:
    """Read everything the child sends until it exits and nothing is left."""
    messages: List[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = comm.read(proc, wait=0.2)
        if msg.contents is not None or msg.signal is not None:
            messages.append(msg)
            continue
        if proc.poll() is not None and not comm.has_messages:
            return messages
    raise AssertionError(f"child still talking after {timeout} s: {messages[-3:]}")


@pytest.fixture
def executor() -> Iterator[PipeCommunicator]:
    with PipeCommunicator(Party.EXECUTOR) as comm:
        yield comm


@pytest.fixture(params=[True, False], ids=["nonblocking", "blocking"])
def nonblocking(request: pytest.FixtureRequest) -> bool:
    return request.param


def finish(proc: subprocess.Popen) -> int:
    code = proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()
    return code


# --------------------------------------------------------------------------- Task -> Executor
def text_of(messages: List[Message]) -> str:
    """The stdout text (print() output) among the messages, joined."""
    return "".join(m.contents for m in messages if isinstance(m.contents, str) and m.signal is None)


def signalled(messages: List[Message]) -> List[Any]:
    return [(m.contents, m.signal) for m in messages if m.signal is not None]


def test_prints_interleaved_with_writes(executor: PipeCommunicator, nonblocking: bool) -> None:
    proc = spawn("interleave", nonblocking=nonblocking)
    messages = collect(executor, proc)
    assert finish(proc) == 0
    # Every pickled object arrives once, in order, with its own signal.
    assert signalled(messages) == [("log one", "TASK_LOG"), ({"k": [1, 2]}, "TASK_RESULT"),
                                   ("a pickled str", "TASK_LOG"), (None, "TASK_DONE")]
    assert text_of(messages) == "first line\nno newlineЀ € ɀ\nlast print"
    # ... and the print()s sit between the writes they were made between.
    kinds = ["text" if m.signal is None else m.signal for m in messages]
    assert kinds.index("TASK_LOG") < kinds.index("TASK_RESULT") < kinds.index("TASK_DONE")
    first_text = next(m.contents for m in messages if m.signal is None)
    assert first_text.startswith("first line") and messages.index(Message("log one", "TASK_LOG")) > 0


def test_ten_megabyte_result(executor: PipeCommunicator, nonblocking: bool) -> None:
    proc = spawn("big", str(10 * 1024 * 1024), nonblocking=nonblocking)
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert [m.signal for m in messages] == ["TASK_LOG", "TASK_RESULT", "TASK_LOG"]
    result = messages[1].contents
    assert result["n"] == 1 and len(result["data"]) == 10 * 1024 * 1024
    assert [messages[0].contents, messages[2].contents] == ["before", "after"]


def test_thousands_of_tiny_messages(executor: PipeCommunicator) -> None:
    count = 3000
    proc = spawn("many", str(count))
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert [m.contents for m in messages[:-1]] == [f"message {i}" for i in range(count)]
    assert all(m.signal == "TASK_LOG" for m in messages[:-1])
    assert messages[-1] == Message(None, "TASK_DONE")


def test_non_utf8_bytes_are_delivered_escaped(executor: PipeCommunicator) -> None:
    proc = spawn("non_utf8")
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert text_of(messages) == "raw \\xff\\xfe bytes\n\\x80\x04 not a pickle\n"
    assert signalled(messages) == [("ok", "TASK_LOG"), ("done", "TASK_DONE")]


def test_back_to_back_signals_on_stderr(executor: PipeCommunicator) -> None:
    proc = spawn("text_signals")
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert messages == [Message(signal="TASK_STARTED"), Message(signal="TASK_LOG"), Message(signal="TASK_DONE")]


def test_stderr_text_goes_into_contents_like_lute(executor: PipeCommunicator) -> None:
    proc = spawn("stderr_text")
    messages = collect(executor, proc)
    assert finish(proc) == 0
    # Usually the text comes in a read of its own; a (very) late read that sees both puts it
    # after the pass's Messages: a pickled str is never altered.
    assert messages in ([Message(contents="(warning: something odd\n)"), Message("x", "TASK_LOG")],
                        [Message("x", "TASK_LOG"), Message(contents="(warning: something odd\n)")])


def test_stderr_text_joins_print_output_of_the_same_read(executor: PipeCommunicator) -> None:
    proc = spawn("print_and_warn")
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:  # let it write both, then read once
        time.sleep(0.05)
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert messages == [Message("printed (warned\n)")]


def test_signal_waits_for_contents_written_late(executor: PipeCommunicator) -> None:
    proc = spawn("paused")
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert messages == [Message("late contents", "TASK_RESULT"), Message("next", "TASK_LOG")]


def test_signal_without_contents_is_delivered_after_the_grace() -> None:
    proc = spawn("signal_then_sleep")
    try:
        with PipeCommunicator(Party.EXECUTOR, signal_grace=0.3) as comm:
            start = time.monotonic()
            got = Message()
            while got == Message() and time.monotonic() - start < 10:
                call = time.monotonic()
                got = comm.read(proc, wait=0.02)
                assert time.monotonic() - call < 0.25  # a held signal never blocks a read long
            assert got == Message(signal="TASK_STARTED")
            assert time.monotonic() - start >= 0.3
            assert proc.poll() is None  # delivered by the grace, not by the end of the Task
    finally:
        proc.kill()
        finish(proc)


def test_signal_waits_for_a_pickle_arriving_slowly(executor: PipeCommunicator) -> None:
    proc = spawn("slow_big", "300000")
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert messages == [Message(b"s" * 300000, "TASK_RESULT"), Message("after", "TASK_LOG")]


def test_abrupt_exit_mid_pickle(executor: PipeCommunicator, nonblocking: bool) -> None:
    proc = spawn("abrupt", str(200_000), nonblocking=nonblocking)
    messages = collect(executor, proc)
    assert finish(proc) == 3
    assert messages[0] == Message("before", "TASK_LOG")
    assert text_of(messages) == "a print before the crash\n"
    last = messages[-1]
    assert isinstance(last.contents, StreamError) and isinstance(last.contents.error, IncompletePickle)
    # Its signal, written just before it, pairs with it (or, on a machine so loaded that no
    # byte of the pickle came within the signal grace, comes alone just before it).
    assert last.signal == "TASK_RESULT" or (last.signal is None and messages[-2] == Message(signal="TASK_RESULT"))
    full = pickle.dumps({"blob": b"b" * 200_000})
    assert last.contents.data == full[: len(full) // 2]


def test_original_lute_task_output(executor: PipeCommunicator) -> None:
    proc = spawn("lute_pickle")
    messages = collect(executor, proc)
    assert finish(proc) == 0
    assert signalled(messages) == [("Started", "TASK_STARTED"), ("log line", "TASK_LOG"), (None, "TASK_DONE")]
    assert text_of(messages) == "user print\n"
    kinds = [m.signal or "text" for m in messages]
    assert kinds.index("text") == 1 and kinds.index("TASK_LOG") > 1  # the print sits between the writes


def test_original_lute_text_mode_task(nonblocking: bool) -> None:
    proc = spawn("lute_text", nonblocking=nonblocking)
    with PipeCommunicator(Party.EXECUTOR, use_pickle=False) as comm:
        messages = collect(comm, proc)
    assert finish(proc) == 0
    assert messages == [Message("hello", "TASK_LOG")]


def test_read_returns_within_wait_when_nothing_comes(executor: PipeCommunicator) -> None:
    """Non-blocking pipes (LUTE's Executor loop): ``wait`` bounds the read. Blocking pipes wait
    for the end of the streams instead, as LUTE's final read does (see the tests at the end)."""
    proc = spawn("silent", "5")
    try:
        start = time.monotonic()
        assert executor.read(proc, wait=0.5) == Message()
        elapsed = time.monotonic() - start
        assert 0.4 <= elapsed < 2.5
        start = time.monotonic()
        assert executor.read(proc) == Message()
        assert time.monotonic() - start < 1.0
        assert not executor.has_messages
    finally:
        proc.kill()
        finish(proc)


def test_waiting_does_not_busy_loop(executor: PipeCommunicator) -> None:
    proc = spawn("silent", "5")
    try:
        cpu = time.process_time()
        start = time.monotonic()
        while time.monotonic() - start < 1.0:
            executor.read(proc, wait=0.25)
        assert time.process_time() - cpu < 0.3  # select sleeps; a busy loop would burn ~1 s
    finally:
        proc.kill()
        finish(proc)


def test_held_signal_waits_for_its_object_without_busy_looping(executor: PipeCommunicator) -> None:
    proc = spawn("text_signals")
    try:
        cpu = time.process_time()
        messages = collect(executor, proc)
        assert [m.signal for m in messages] == ["TASK_STARTED", "TASK_LOG", "TASK_DONE"]
        assert time.process_time() - cpu < 0.5
    finally:
        finish(proc)


def _above_1024(proc: subprocess.Popen, first: int) -> None:
    for number, name in ((first, "stdout"), (first + 1, "stderr")):
        os.dup2(getattr(proc, name).fileno(), number)
        getattr(proc, name).close()
        setattr(proc, name, os.fdopen(number, "rb"))


def test_file_descriptors_above_1024(executor: PipeCommunicator) -> None:
    """select() cannot watch fds >= FD_SETSIZE (1024); an Executor with many Tasks has such fds."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1600:
        pytest.skip("cannot open file descriptors above 1024 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1600), hard))
    silent, talker = spawn("silent", "4"), spawn("many", "50")
    try:
        _above_1024(silent, 1500)
        _above_1024(talker, 1510)
        start = time.monotonic()
        assert executor.read(silent, wait=0.3) == Message()
        assert time.monotonic() - start < 2.0
        messages = collect(executor, talker)
        assert [m.contents for m in messages[:-1]] == [f"message {i}" for i in range(50)]
        assert messages[-1] == Message(None, "TASK_DONE")
    finally:
        silent.kill()
        finish(silent)
        finish(talker)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------- Executor -> Task
def test_executor_to_task_round_trip(executor: PipeCommunicator, nonblocking: bool) -> None:
    proc = spawn("echo", nonblocking=nonblocking)
    executor.write(Message({"answer": 42}, "TASK_RESPONSE"), proc)
    executor.write(Message("second"), proc)
    big = "y" * 300_000  # larger than a pipe buffer: partial writes on a non-blocking stdin
    executor.write(Message(big, "TASK_RESPONSE"), proc)
    executor.use_pickle = False
    executor.write(Message("quit"), proc)
    messages = collect(executor, proc)
    assert finish(proc) == 0
    echoes = [m.contents for m in messages]
    assert echoes[0] == ("echo", {"answer": 42}, "TASK_RESPONSE")
    assert echoes[1] == ("echo", "second", None)
    assert echoes[2] == ("echo", big, "TASK_RESPONSE")
    assert echoes[3] == ("echo", "quit", None)


def test_task_read_waits_then_returns_empty() -> None:
    proc = spawn("read_wait", "0.5")
    with PipeCommunicator(Party.EXECUTOR) as comm:
        messages = collect(comm, proc)
    assert finish(proc) == 0
    contents, signal, elapsed = messages[0].contents
    assert (contents, signal) == (None, None)
    assert 0.4 <= elapsed < 2.5


def test_task_read_gets_a_reply_sent_before_it_reads() -> None:
    proc = spawn("read_wait", "10")
    with PipeCommunicator(Party.EXECUTOR) as comm:
        comm.write(Message("the reply", "TASK_RESPONSE"), proc)
        messages = collect(comm, proc)
    assert finish(proc) == 0
    contents, signal, elapsed = messages[0].contents
    assert (contents, signal) == ("the reply", "TASK_RESPONSE")
    assert elapsed < 5


def test_write_to_a_dead_child_is_a_transport_error(executor: PipeCommunicator) -> None:
    proc = spawn("silent", "0")
    proc.wait(timeout=30)
    with pytest.raises(TransportError):
        executor.write(Message("x" * 1_000_000), proc)
    finish(proc)


def test_write_to_a_child_that_never_reads_times_out() -> None:
    proc = spawn("silent", "10")
    try:
        with PipeCommunicator(Party.EXECUTOR, write_timeout=0.5) as comm:
            start = time.monotonic()
            with pytest.raises(TransportError):
                comm.write(Message("z" * 2_000_000), proc)
            assert time.monotonic() - start < 5
    finally:
        proc.kill()
        finish(proc)


# --------------------------------------------------------------------------- API
def test_text_mode_refuses_objects_like_lute(executor: PipeCommunicator) -> None:
    executor.use_pickle = False
    assert executor.use_pickle is False
    proc = spawn("silent", "0")
    try:
        with pytest.raises(ValueError):
            executor.write(Message({"not": "text"}), proc)
    finally:
        finish(proc)
    task = PipeCommunicator(Party.TASK, use_pickle=False)
    with pytest.raises(ValueError):
        task.write(Message(3))


def test_task_write_bytes_are_lute_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, write_through=True))
    PipeCommunicator(Party.TASK).write(Message({"a": 1}, "TASK_RESULT"))
    assert out.getvalue() == pickle.dumps({"a": 1})  # what LUTE 0.3.0's Task writes
    assert err.getvalue() == b"TASK_RESULT"
    PipeCommunicator(Party.TASK).write(Message())
    assert out.getvalue() == pickle.dumps({"a": 1}) + pickle.dumps(None)
    assert err.getvalue() == b"TASK_RESULT"
    PipeCommunicator(Party.TASK, use_pickle=False).write(Message("text", "TASK_LOG"))
    assert out.getvalue().endswith(b"text") and err.getvalue() == b"TASK_RESULTTASK_LOG"


def test_usage_errors() -> None:
    comm = PipeCommunicator(Party.EXECUTOR)
    with pytest.raises(UsageError):
        comm.read()
    with pytest.raises(UsageError):
        comm.write(Message("x"))
    comm.close()
    comm.close()
    assert not comm.has_messages
    with pytest.raises(CommunicatorClosed):
        comm.read(None)
    assert str(PipeCommunicator()).startswith("PipeCommunicator")


# --------------------------------------------------------------------------- LUTE's final read
def _set_blocking(proc: subprocess.Popen, blocking: bool) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), blocking)


def test_blocking_pipes_make_the_final_read_wait_for_the_task_to_close_them(executor: PipeCommunicator) -> None:
    """LUTE's Executor sets the pipes blocking once the Task reported its result, then reads once:
    everything the Task writes until it closes its pipes must be in that read (issue 16, 3)."""
    proc = spawn("print_after_result", "0.5")
    first = executor.read(proc, wait=30)
    assert first == Message({"value": 42}, "TASK_RESULT")
    _set_blocking(proc, True)  # as LUTE's execute_task does before _finalize_task
    start = time.monotonic()
    final: List[Message] = [executor.read(proc)]
    while executor.has_messages:
        final.append(executor.read(proc))
    assert time.monotonic() - start >= 0.8  # it waited for the Task, not for a timeout
    assert proc.poll() is not None or proc.wait(timeout=5) == 0
    text = " ".join(str(m.contents) for m in final)
    assert "printed after the result" in text and "last words" in text
    assert "stderr after the result" in text
    assert finish(proc) == 0


def test_blocking_pipes_read_stdout_and_stderr_together(executor: PipeCommunicator) -> None:
    """LUTE reads stderr to its end, then stdout: a Task that fills stdout's pipe buffer before
    closing stderr would never finish. Both streams are drained together here."""
    proc = spawn("big", str(2 * 1024 * 1024), nonblocking=False)
    messages = [executor.read(proc)]
    while executor.has_messages:
        messages.append(executor.read(proc))
    assert [m.signal for m in messages] == ["TASK_LOG", "TASK_RESULT", "TASK_LOG"]
    assert len(messages[1].contents["data"]) == 2 * 1024 * 1024
    assert finish(proc) == 0


def test_non_blocking_pipes_keep_the_polling_read(executor: PipeCommunicator) -> None:
    proc = spawn("print_after_result", "1.5")
    try:
        assert executor.read(proc, wait=30) == Message({"value": 42}, "TASK_RESULT")
        start = time.monotonic()
        assert executor.read(proc, wait=0.2) == Message()
        assert time.monotonic() - start < 1.2
    finally:
        finish(proc)


@pytest.mark.parametrize("protocol", [None, "lute_ipc"], ids=["lute-executor", "lute_ipc-executor"])
def test_task_pickles_name_lutes_classes_for_a_lute_executor(protocol: Optional[str]) -> None:
    """A Task whose Executor does not advertise lute_ipc (LUTE_IPC_PROTOCOL unset: LUTE's) writes
    Message & co. under LUTE's class paths, so LUTE's isinstance checks pass; lute_ipc reads both."""
    env = {k: v for k, v in os.environ.items() if k != "LUTE_IPC_PROTOCOL"}
    if protocol:
        env["LUTE_IPC_PROTOCOL"] = protocol
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, TASK, "mirrored"], capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (b"lute.execution.ipc" in done.stdout) is (protocol is None)
    assert (b"lute_ipc.message" in done.stdout) is (protocol is not None)
    from lute_ipc import TaskResponse
    from lute_ipc.codec import loads

    assert loads(done.stdout) == {"reply": TaskResponse(["a"]), "nested": Message("x")}
