"""request()/make_response(): Task requests over the socket, matched replies on stdin (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from lute_ipc import Message, Party, PipeCommunicator, SocketCommunicator, TaskRequest, TaskRequestMessage
from lute_ipc.errors import UsageError
from lute_ipc.requests import make_response, request_id

TASKS = Path(__file__).parent / "usage_tasks"
ROOT = Path(__file__).resolve().parent.parent


def run_requesting_task(mode: str, answer: bool = True, reverse: bool = False) -> List[Message]:
    """Run the requesting Task; answer its requests (optionally in reverse order); return its results."""
    results: List[Message] = []
    pipe = PipeCommunicator(Party.EXECUTOR)
    with SocketCommunicator(Party.EXECUTOR, use_zmq=False) as sock:
        sock.delayed_setup()
        env = dict(os.environ, PYTHONPATH=str(ROOT), LUTE_USE_ZMQ="0")
        proc = subprocess.Popen([sys.executable, str(TASKS / "requesting_task.py"), mode], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)  # as LUTE's Executor: blocking pipes mean "read to the end"
        pending: List[Message] = []
        try:
            deadline = time.monotonic() + 60
            done = False
            while time.monotonic() < deadline and not done:
                for msg in (sock.read(wait=0.05), pipe.read(proc)):
                    if msg.signal == "TASK_REQUEST":
                        pending.append(msg)
                        if answer and (len(pending) == 2 or mode != "concurrent"):
                            for req in (reversed(pending) if reverse else pending):
                                pipe.write(make_response(req, f"answer to {req.contents.request}"), proc)
                            pipe.write(Message("unrelated executor note", "TASK_LOG"), proc)
                            pending.clear()
                    elif msg.signal == "TASK_RESULT":
                        results.append(msg)
                    elif msg.signal == "TASK_DONE":
                        done = True
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    return results


def test_concurrent_requests_get_their_own_replies_even_out_of_order() -> None:
    results = run_requesting_task("concurrent", reverse=True)
    # the two results travel on different channels (dict: socket, short text: pipe): any order
    contents = sorted((m.contents for m in results), key=lambda c: isinstance(c, str))
    assert contents == [{"first": "answer to first", "second": "answer to second"},
                        "unrelated executor note"]  # a message that answers no request is kept


def test_request_times_out_with_a_clear_error() -> None:
    results = run_requesting_task("timeout", answer=False)
    assert len(results) == 1 and results[0].contents.startswith("timeout: no reply to request 'nobody answers'")


def test_make_response_copies_the_invisible_id() -> None:
    req = TaskRequest("q", for_task="t")
    object.__setattr__(req, "_lute_ipc_request_id", "abc")
    reply = make_response(TaskRequestMessage(req), [1, 2])
    assert reply.signal == "TASK_RESPONSE" and reply.contents.response == [1, 2] and reply.contents.for_task == "t"
    assert request_id(reply) == "abc"
    # invisible: not a field, not in repr, not in equality
    assert "abc" not in repr(reply) and reply.contents == type(reply.contents)([1, 2], "t")


def test_make_response_needs_a_request() -> None:
    with pytest.raises(UsageError):
        make_response(Message("not a request"), 1)
