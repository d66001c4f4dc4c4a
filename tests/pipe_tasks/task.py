"""A child Task for tests/test_pipe.py: ``python task.py <scenario> [args]``.

Each scenario writes to its stdout/stderr through ``PipeCommunicator(Party.TASK)`` (or, for
``lute_*``, with a re-creation of LUTE 0.3.0's Task-side write: same bytes, same order),
mixed with plain ``print()`` output, as real Tasks do.
"""

from __future__ import annotations

import os
import pickle
import sys
import time

from lute_ipc import Message, Party
from lute_ipc.pipe import PipeCommunicator


def send(contents=None, signal=None, use_pickle=True) -> None:
    # One communicator per message, as LUTE's Task._report_to_executor does.
    comm = PipeCommunicator(Party.TASK, use_pickle=use_pickle)
    comm.write(Message(contents=contents, signal=signal))
    comm.clear_communicator()


def lute_write(contents, signal) -> None:
    """LUTE 0.3.0 PipeCommunicator.write on the Task side, pickle mode (re-created)."""
    sys.stderr.buffer.write(signal.encode() if signal else b"")
    sys.stdout.buffer.write(pickle.dumps(contents))
    sys.stderr.buffer.flush()
    sys.stdout.buffer.flush()


def lute_write_text(contents, signal) -> None:
    """LUTE 0.3.0 PipeCommunicator.write on the Task side, text mode (re-created)."""
    sys.stderr.write(signal or "")
    sys.stdout.write(contents or "")
    sys.stderr.flush()
    sys.stdout.flush()


def interleave() -> None:
    print("first line")
    send("log one", "TASK_LOG")
    print("no newline", end="")
    send({"k": [1, 2]}, "TASK_RESULT")
    print("Ѐ € ɀ")
    send("a pickled str", "TASK_LOG")
    print("last print", end="", flush=True)
    send(None, "TASK_DONE")


def big(size: str) -> None:
    send("before", "TASK_LOG")
    send({"data": os.urandom(int(size)), "n": 1}, "TASK_RESULT")
    send("after", "TASK_LOG")


def many(count: str) -> None:
    for i in range(int(count)):
        send(f"message {i}", "TASK_LOG")
    send(None, "TASK_DONE")


def non_utf8() -> None:
    sys.stdout.buffer.write(b"raw \xff\xfe bytes\n")
    sys.stdout.buffer.flush()
    send("ok", "TASK_LOG")
    sys.stdout.buffer.write(b"\x80\x04 not a pickle\n")
    sys.stdout.buffer.flush()
    send("done", "TASK_DONE")


def text_signals() -> None:
    # Text mode with no contents: only the signal names, back to back on stderr.
    for signal in ("TASK_STARTED", "TASK_LOG", "TASK_DONE"):
        send(None, signal, use_pickle=False)


def stderr_text() -> None:
    sys.stderr.write("warning: something odd\n")
    sys.stderr.flush()
    time.sleep(0.2)
    send("x", "TASK_LOG")


def abrupt(size: str) -> None:
    send("before", "TASK_LOG")
    print("a print before the crash", flush=True)
    data = pickle.dumps({"blob": b"b" * int(size)})
    sys.stderr.write("TASK_RESULT")
    sys.stderr.flush()
    sys.stdout.buffer.write(data[: len(data) // 2])
    sys.stdout.buffer.flush()
    os._exit(3)


def slow_big(size: str) -> None:
    # A signal, then its pickle trickling in far slower than the signal grace.
    data = pickle.dumps(b"s" * int(size))
    sys.stderr.write("TASK_RESULT")
    sys.stderr.flush()
    step = len(data) // 5 + 1
    for start in range(0, len(data), step):
        sys.stdout.buffer.write(data[start:start + step])
        sys.stdout.buffer.flush()
        time.sleep(0.15)
    send("after", "TASK_LOG")


def paused() -> None:
    # Descheduled between a signal and its contents (a loaded machine does this).
    sys.stderr.write("TASK_RESULT")
    sys.stderr.flush()
    time.sleep(0.25)
    sys.stdout.buffer.write(pickle.dumps("late contents"))
    sys.stdout.buffer.flush()
    time.sleep(0.25)
    send("next", "TASK_LOG")


def signal_then_sleep() -> None:
    send(None, "TASK_STARTED", use_pickle=False)  # text mode, no contents: nothing on stdout
    time.sleep(3)


def print_and_warn() -> None:
    # Both written before the Executor reads anything: one read sees both.
    sys.stderr.write("warned\n")
    sys.stderr.flush()
    print("printed", end="", flush=True)
    time.sleep(0.5)


def echo() -> None:
    comm = PipeCommunicator(Party.TASK)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = comm.read(wait=1.0)
        if msg.contents is None and msg.signal is None:
            continue
        send(("echo", msg.contents, msg.signal), "TASK_RESULT")
        if msg.contents == "quit":
            return


def read_wait(wait: str) -> None:
    comm = PipeCommunicator(Party.TASK)
    start = time.monotonic()
    msg = comm.read(wait=float(wait))
    send((msg.contents, msg.signal, time.monotonic() - start), "TASK_RESULT")


def lute_pickle() -> None:
    lute_write("Started", "TASK_STARTED")
    print("user print")
    lute_write("log line", "TASK_LOG")
    lute_write(None, "TASK_DONE")


def lute_text() -> None:
    lute_write_text("hello", "TASK_LOG")


def silent(seconds: str) -> None:
    time.sleep(float(seconds))


def mirrored() -> None:
    # Contents holding lute_ipc's mirrors of LUTE's classes (a LUTE Executor checks isinstance on them).
    from lute_ipc import TaskResponse

    send({"reply": TaskResponse(["a"]), "nested": Message("x")}, "TASK_RESULT")


def print_after_result(delay: str) -> None:
    # LUTE's TestSocket-like ending: the result, then output while the Task shuts down.
    send({"value": 42}, "TASK_RESULT")
    time.sleep(float(delay))
    print("printed after the result", flush=True)
    sys.stderr.write("stderr after the result\n")
    sys.stderr.flush()
    time.sleep(float(delay))
    print("last words", flush=True)


SCENARIOS = {f.__name__: f for f in (interleave, big, slow_big, paused, signal_then_sleep, print_and_warn, many, non_utf8, text_signals, stderr_text, abrupt, echo,
                                     read_wait, lute_pickle, lute_text, silent, print_after_result, mirrored)}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
