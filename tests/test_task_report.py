"""lute_ipc.task.report: the routing rule, one persistent connection per process, threads, fork."""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Dict, List

import pytest

from lute_ipc import Message
from lute_ipc.errors import CommunicatorClosed, ConfigurationError, UsageError
from lute_ipc.executor import Outcome, RunResult, TaskRunner
from lute_ipc.task import PIPE_TEXT_LIMIT, TaskReporter, goes_to_pipe
from tests.socket_tasks.helpers import clear_lute_env

from .usage_tasks.common import child_env, script


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_lute_env(monkeypatch)
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])


def _run(mode: str, count: int, use_zmq: bool = False) -> tuple[RunResult, List[Message]]:
    seen: List[Message] = []
    runner = TaskRunner([sys.executable, script("report_task.py"), mode, str(count)], use_zmq=use_zmq, timeout=60)
    runner.on_message(seen.append)
    result = runner.run()
    assert result.outcome is Outcome.DONE, result
    assert result.protocol_errors == 0
    return result, seen


def test_routing_rule() -> None:
    assert goes_to_pipe(Message(signal="TASK_DONE"))
    assert goes_to_pipe(Message(contents="short", signal="TASK_LOG"))
    assert goes_to_pipe(Message(contents="x" * PIPE_TEXT_LIMIT, signal="TASK_LOG"))
    assert not goes_to_pipe(Message(contents="x" * (PIPE_TEXT_LIMIT + 1), signal="TASK_LOG"))
    # the limit is in UTF-8 bytes, not characters
    assert goes_to_pipe(Message(contents="é" * (PIPE_TEXT_LIMIT // 2), signal="TASK_LOG"))
    assert not goes_to_pipe(Message(contents="é" * (PIPE_TEXT_LIMIT // 2 + 1), signal="TASK_LOG"))
    assert not goes_to_pipe(Message(contents={"a": 1}, signal="TASK_RESULT"))
    assert not goes_to_pipe(Message(contents=b"bytes", signal="TASK_RESULT"))
    # no signal: the socket, so pickles on the pipe always pair with a signal
    assert not goes_to_pipe(Message(contents="text"))
    assert not goes_to_pipe(Message())
    assert goes_to_pipe(Message(contents="x" * 10, signal="TASK_LOG"), pipe_text_limit=10)
    assert not goes_to_pipe(Message(contents="x" * 11, signal="TASK_LOG"), pipe_text_limit=10)


def test_one_persistent_connection_for_all_socket_messages() -> None:
    count = 1000
    result, seen = _run("plain", count)
    assert result.connections == 1  # LUTE opens one per message: 1100 here
    expected: List[object] = []
    for i in range(count):
        expected.append({"i": i})
        if i % 10 == 0:
            expected.append(f"text {i}")
    body = [m.contents for m in seen if m.signal is None]
    assert body == expected  # text without a signal travels with the objects, in order
    assert result.results == ["L" * (PIPE_TEXT_LIMIT + 1)]  # long text: socket
    assert result.signals == {"TASK_RESULT": 1, "TASK_DONE": 1}
    assert result.pipe_messages == 1  # TASK_DONE


def test_threads_share_the_connection_safely() -> None:
    count = 500
    result, seen = _run("threads", count)
    assert result.connections == 1
    per_thread: Dict[int, List[int]] = defaultdict(list)
    for msg in seen:
        if msg.signal is None:
            thread, i = msg.contents
            per_thread[thread].append(i)
    assert sorted(per_thread) == list(range(8))
    assert all(values == list(range(count)) for values in per_thread.values())


@pytest.mark.parametrize("use_zmq", [False, True], ids=["raw", "zmq"])
def test_a_forked_child_gets_its_own_connection(use_zmq: bool) -> None:
    count = 300
    result, seen = _run("fork", count, use_zmq)
    assert result.connections == (None if use_zmq else 2)
    by_role: Dict[str, List[int]] = defaultdict(list)
    for msg in seen:
        if msg.signal is None:
            role, i = msg.contents
            by_role[role].append(i)
    assert by_role["parent"] == [-1] + list(range(count))
    assert by_role["child"] == list(range(count))


def test_close_reporter_then_report_opens_a_new_connection() -> None:
    count = 50
    result, seen = _run("reopen", count)
    assert result.connections == 2
    assert [m.contents for m in seen if m.signal is None] == \
        [("first", i) for i in range(count)] + [("second", i) for i in range(count)]


def test_without_an_executor_objects_fail_clearly() -> None:
    reporter = TaskReporter()
    with pytest.raises(ConfigurationError, match="LUTE_EXECUTOR_HOST"):
        reporter.report(Message(contents={"a": 1}))
    with pytest.raises(UsageError):
        reporter.report("not a message")  # type: ignore[arg-type]
    reporter.close()
    reporter.close()
    with pytest.raises(CommunicatorClosed):
        reporter.report(Message(signal="TASK_DONE"))
    with pytest.raises(UsageError):
        TaskReporter(pipe_text_limit=-1)
