"""Input the API's own messages promise to refuse is refused, clearly (a lute_ipc.errors exception),
and what LUTE itself accepts stays accepted."""

from __future__ import annotations

import pickle
import sys
from typing import Any

import pytest

from lute_ipc import LUTE_SIGNALS, Message, TaskRequest, TaskRequestMessage, env
from lute_ipc.errors import ConfigurationError, UsageError
from lute_ipc.executor import TaskRunner


@pytest.mark.parametrize("text", ["0", "-1", "65536", "99999", "http", "1.5"])
def test_lute_port_outside_1_to_65535_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"LUTE_PORT=.*1-65535"):
        env.port({"LUTE_PORT": text})


@pytest.mark.parametrize("text,port", [("1", 1), ("65535", 65535), (" 5000 ", 5000), ("", None)])
def test_lute_port_in_range_is_read(text: str, port: Any) -> None:
    assert env.port({"LUTE_PORT": text}) == port
    assert env.port({}) is None


@pytest.mark.parametrize("signal", [5, b"TASK_DONE", 1.0, ["TASK_DONE"], object()],
                         ids=["int", "bytes", "float", "list", "object"])
def test_message_signal_must_be_text(signal: Any) -> None:
    with pytest.raises(UsageError, match="signal must be a str or None") as info:
        Message(signal=signal)
    assert type(signal).__name__ in str(info.value)
    with pytest.raises(UsageError):
        Message("contents", signal)


def test_message_accepts_what_lute_accepts() -> None:
    """LUTE's Message takes any text as a signal (its pipe reader turns unknown ones into text,
    its socket delivers them), and any contents: so do we."""
    for signal in [None, "", "TASK_RESULT", "NOT_A_LUTE_SIGNAL", "task_done"]:
        assert Message(contents={"any": object}, signal=signal).signal == signal
    assert TaskRequestMessage(TaskRequest("r")).signal == "TASK_REQUEST"
    with pytest.raises(UsageError):
        TaskRequestMessage(TaskRequest("r"), signal=7)  # type: ignore[arg-type]


def test_decoding_does_not_validate() -> None:
    """Unpickling builds Messages without __init__: what a peer sent is delivered as sent."""
    msg = Message("x", "TASK_LOG")
    msg.signal = 5  # type: ignore[assignment]
    assert pickle.loads(pickle.dumps(msg)).signal == 5


@pytest.mark.parametrize("name", ["NOT_A_SIGNAL", "task_done", "TASK_DONE ", ""])
def test_on_signal_refuses_names_outside_lute_signals(name: str) -> None:
    runner = TaskRunner([sys.executable, "-c", "pass"])
    with pytest.raises(UsageError, match="LUTE_SIGNALS"):
        runner.on_signal(name, print)


def test_on_signal_suggests_the_upper_case_name() -> None:
    runner = TaskRunner([sys.executable, "-c", "pass"])
    with pytest.raises(UsageError, match="'TASK_DONE'"):
        runner.on_signal("task_done", print)


@pytest.mark.parametrize("name", sorted(LUTE_SIGNALS))
def test_on_signal_takes_every_lute_signal(name: str) -> None:
    TaskRunner([sys.executable, "-c", "pass"]).on_signal(name, print)
