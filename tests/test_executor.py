"""TaskRunner: real Task processes over real pipes and sockets; success, failure, timeout, cancel, drain."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Dict, List

import pytest

from lute_ipc import Message
from lute_ipc.errors import UsageError
from lute_ipc.executor import Outcome, RunResult, TaskRunner, run_task
from tests.socket_tasks.helpers import clear_lute_env

from .usage_tasks.common import TRANSPORTS, child_env, script


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_lute_env(monkeypatch)
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])


def _runner(name: str, *args: object, **options: object) -> TaskRunner:
    return TaskRunner([sys.executable, script(name), *map(str, args)], **options)  # type: ignore[arg-type]


def _record(runner: TaskRunner) -> Dict[str, List[Message]]:
    seen: Dict[str, List[Message]] = {"other": []}
    for name in ("TASK_STARTED", "TASK_DONE", "TASK_FAILED", "TASK_RESULT", "TASK_LOG"):
        seen[name] = []
        runner.on_signal(name, seen[name].append)
    runner.on_message(seen["other"].append)
    return seen


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_task_that_succeeds(transport: tuple) -> None:
    use_zmq, use_tcp = transport
    options = {"bind_host": "127.0.0.1"} if use_tcp else {}
    runner = _runner("ok_task.py", "--objects", 200, timeout=30, use_zmq=use_zmq, use_tcp=use_tcp,
                     socket_options=options)
    seen = _record(runner)
    before = {k: v for k, v in os.environ.items() if k.startswith("LUTE_")}
    result = runner.run()
    assert result.outcome is Outcome.DONE and result.ok, result
    assert result.returncode == 0 and result.last_signal == "TASK_DONE"
    assert len(seen["TASK_STARTED"]) == 1 and len(seen["TASK_DONE"]) == 1
    assert [m.contents for m in seen["TASK_RESULT"]] == [{"answer": 42}] == [r for r in result.results]
    assert [m.contents for m in seen["TASK_LOG"]] == ["logged through the socket"]
    objects = [m.contents["i"] for m in seen["other"] if isinstance(m.contents, dict)]
    texts = [m.contents for m in seen["other"] if isinstance(m.contents, str)]
    assert objects == list(range(200))
    assert sorted(texts) == ["hello from print()\n", "short text report"]  # pipe and socket: two channels
    assert result.signals == {"TASK_STARTED": 1, "TASK_RESULT": 1, "TASK_LOG": 1, "TASK_DONE": 1}
    assert result.messages == result.pipe_messages + result.socket_messages == sum(map(len, seen.values()))
    assert result.protocol_errors == 0
    assert {k: v for k, v in os.environ.items() if k.startswith("LUTE_")} == before  # env left as it was


def test_a_nonzero_exit_code_is_a_failure() -> None:
    result = run_task([sys.executable, script("ok_task.py"), "--objects", "3", "--signal", "", "--exit-code", "3"],
                      timeout=30)
    assert result.outcome is Outcome.FAILED and not result.ok
    assert result.returncode == 3 and result.last_signal is None
    assert result.results == [{"answer": 42}]  # what it sent before failing is still there


def test_task_failed_signal_with_exit_code_0_is_a_failure() -> None:
    failed: List[Message] = []
    result = run_task([sys.executable, script("ok_task.py"), "--objects", "3", "--signal", "TASK_FAILED"],
                      hooks={"TASK_FAILED": failed.append}, timeout=30)
    assert result.outcome is Outcome.FAILED and result.returncode == 0
    assert result.last_signal == "TASK_FAILED" and len(failed) == 1


def test_a_task_that_hangs_is_stopped_at_the_timeout() -> None:
    runner = _runner("hang_task.py", timeout=5)  # room for a slow start on a loaded machine
    started: List[Message] = []
    runner.on_signal("TASK_STARTED", started.append)
    t0 = time.monotonic()
    result = runner.run()
    assert result.outcome is Outcome.TIMEOUT and not result.ok
    assert result.returncode == -15  # SIGTERM was enough
    assert len(started) == 1 and result.messages == 2
    assert time.monotonic() - t0 < 15
    assert runner.proc is not None and runner.proc.poll() is not None


def test_a_task_ignoring_sigterm_is_killed() -> None:
    runner = _runner("hang_task.py", "--ignore-term", timeout=60, stop_timeout=0.5)
    # SIG_IGN is set before TASK_STARTED is sent: stop it from then on
    runner.on_signal("TASK_STARTED", lambda msg: runner.cancel())
    t0 = time.monotonic()
    result = runner.run()
    assert result.outcome is Outcome.CANCELLED
    assert result.returncode == -9  # SIGTERM was ignored: SIGKILL after stop_timeout
    assert time.monotonic() - t0 < 10


def test_cancel_from_another_thread() -> None:
    runner = _runner("hang_task.py", timeout=60)
    runner.on_signal("TASK_STARTED", lambda msg: threading.Timer(0.2, runner.cancel).start())
    t0 = time.monotonic()
    result = runner.run()
    assert result.outcome is Outcome.CANCELLED and result.returncode == -15
    assert time.monotonic() - t0 < 10


def test_cancel_before_run_starts_nothing() -> None:
    runner = _runner("ok_task.py")
    runner.cancel()
    result = runner.run()
    assert result.outcome is Outcome.CANCELLED and result.returncode is None and runner.proc is None
    with pytest.raises(UsageError):
        runner.run()  # once per runner


@pytest.mark.parametrize("use_zmq", [False, True], ids=["raw", "zmq"])
def test_every_message_sent_before_exit_is_dispatched(use_zmq: bool) -> None:
    count = 20_000
    objects: List[int] = []
    texts: List[str] = []

    def other(msg: Message) -> None:
        if isinstance(msg.contents, dict):
            objects.append(msg.contents["i"])
        elif msg.signal is None:
            texts.append(msg.contents)
        else:
            assert msg == Message(signal="TASK_DONE")  # no hook for it: the catch-all gets it

    result = run_task([sys.executable, script("burst_task.py"), str(count)], on_message=other, use_zmq=use_zmq,
                      timeout=60)
    assert result.outcome is Outcome.DONE
    assert objects == list(range(count))
    assert "".join(texts) == "".join(f"pipe {i}" for i in range(0, count, 100))


def test_raw_socket_data_of_a_task_that_skips_atexit_is_dispatched() -> None:
    count = 5000
    objects: List[int] = []
    result = run_task([sys.executable, script("burst_task.py"), str(count), "--os-exit"], use_zmq=False,
                      on_message=lambda m: objects.append(m.contents["i"]) if isinstance(m.contents, dict)
                      else None, timeout=60)
    assert result.outcome is Outcome.DONE and objects == list(range(count))


def test_a_hook_that_raises_stops_the_task_and_propagates() -> None:
    runner = _runner("hang_task.py", timeout=60)

    def boom(msg: Message) -> None:
        raise RuntimeError("hook failed")

    runner.on_signal("TASK_STARTED", boom)
    with pytest.raises(RuntimeError, match="hook failed"):
        runner.run()
    assert runner.proc is not None and runner.proc.returncode is not None  # not left running


def test_send_reaches_the_task_stdin() -> None:
    runner = _runner("echo_task.py", timeout=30)
    results: List[object] = []
    runner.on_signal("TASK_RESULT", lambda m: results.append(m.contents))

    def poke() -> None:  # echo_task reads its stdin first: send as soon as the process runs
        _wait_for_proc(runner)
        runner.send(Message(contents={"question": 6 * 7}, signal="TASK_RESPONSE"))

    sender = threading.Thread(target=poke)
    sender.start()
    result = runner.run()
    sender.join(5)
    assert result.outcome is Outcome.DONE
    assert results == [{"echo": {"question": 42}, "signal": "TASK_RESPONSE"}]


def _wait_for_proc(runner: TaskRunner) -> None:
    deadline = time.monotonic() + 10
    while runner.proc is None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_runners_in_parallel_threads_do_not_share_sockets() -> None:
    results: List[RunResult] = []

    def one() -> None:
        results.append(run_task([sys.executable, script("ok_task.py"), "--objects", "500"], timeout=60))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.outcome for r in results] == [Outcome.DONE] * 3
    assert [r.socket_messages for r in results] == [500 + 3] * 3  # objects, text, result, log
    assert [r.pipe_messages for r in results] == [3] * 3  # TASK_STARTED, print(), TASK_DONE


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        TaskRunner("python task.py")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        TaskRunner([])
    with pytest.raises(UsageError):
        TaskRunner([sys.executable, 3])  # type: ignore[list-item]
    with pytest.raises(UsageError):
        TaskRunner([sys.executable], timeout=0)
    runner = TaskRunner([sys.executable])
    with pytest.raises(UsageError):
        runner.on_signal("", print)
    with pytest.raises(UsageError):
        runner.send(Message(contents=1))  # not running


def test_a_missing_executable_raises_and_cleans_up() -> None:
    before = {k: v for k, v in os.environ.items() if k.startswith("LUTE_")}
    with pytest.raises(FileNotFoundError):
        TaskRunner(["/nonexistent/lute-task"]).run()
    assert {k: v for k, v in os.environ.items() if k.startswith("LUTE_")} == before


def test_no_pickle_mode_text_is_all_delivered() -> None:
    """After NO_PICKLE_MODE the pipe reader expects text (as LUTE's Executor). Text and signals
    read in the same pass as the switch may be paired either way; none of it is lost."""
    seen: List[Message] = []
    result = run_task([sys.executable, script("nopickle_task.py")], on_message=seen.append,
                      hooks={"TASK_LOG": seen.append}, timeout=30)
    assert result.outcome is Outcome.DONE
    assert result.signals == {"NO_PICKLE_MODE": 1, "TASK_LOG": 3, "TASK_DONE": 1}
    assert "".join(m.contents for m in seen if isinstance(m.contents, str)) == \
        "plain text 0plain text 1plain text 2"


def test_payloads_that_are_not_messages_are_counted_and_dispatched_wrapped() -> None:
    """Issue 17, bug 2: a frame holding pickle.dumps(1) made run() raise AttributeError and killed the Task."""
    other: List[Message] = []
    results: List[Message] = []
    runner = _runner("foreign_payload_task.py", use_zmq=False, use_tcp=False, timeout=60)
    runner.on_message(other.append)
    runner.on_signal("TASK_RESULT", results.append)
    result = runner.run()
    assert result.ok, result
    assert result.foreign_payloads == 2
    wrapped = [msg.contents for msg in other if msg.signal is None]
    assert 1 in wrapped
    assert any(isinstance(c, Message) and c.signal == ["not", "a", "name"] for c in wrapped)
    assert [msg.contents for msg in results] == [{"after": "the odd ones"}]
    assert result.last_signal == "TASK_DONE"
