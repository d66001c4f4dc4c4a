"""A lute_ipc Task on ZeroMQ for the transport tests (it reads its Executor from the environment).

argv: scenario, then its arguments:

* ``logs-then-result N per_message``: N ``TASK_LOG`` messages, a ``TASK_RESULT`` and a
  ``TASK_DONE``; ``per_message=1`` uses a new SocketCommunicator per message (LUTE's pattern).
* ``big-result N [halves]``: a ``TASK_RESULT`` holding a numpy array of N float64 (``arange``,
  or N times 0.5: bytes without LUTE's separator ``;;;``), then ``TASK_DONE``.
* ``batch-over-limit N SIZE``: N small ``TASK_LOG`` messages batched together with one
  ``TASK_LOG`` of SIZE characters (their batch is over the frame limit), then ``TASK_DONE``.
* ``oversize SIZE``: one message of SIZE bytes, over the limit: exits 0 if write() raised
  FrameTooLarge (printing its text on stdout), 3 if it did not.
* ``fork N``: writes ``parent-0``, forks; the child writes ``child-0..N-1`` through the
  inherited communicator and exits; then the parent writes ``parent-1`` and closes.
* ``multiprocessing-unclosed N``: a multiprocessing child (fork) writes ``child-0..N-1``
  ``TASK_LOG`` messages through one communicator it never closes, and ends as multiprocessing
  children do (``os._exit``, no ``atexit``); then the parent writes ``parent-1``. This scenario
  uses the transport ``LUTE_USE_ZMQ`` names (raw sockets too).
* ``fork-per-message N``: the same with a new communicator per message (LUTE's pattern) on
  both sides; the child ends with ``os._exit`` (no exit handler runs, as in a multiprocessing
  child): what its ``clear_communicator()`` returned from must have been delivered.

Exit status 0 when every write and close succeeded.
"""

import os
import sys

from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.errors import FrameTooLarge


def per_message(msg: Message) -> None:
    comm = SocketCommunicator(Party.TASK, use_zmq=True)
    comm.delayed_setup()
    comm.write(msg)
    comm.clear_communicator()


def write_unclosed(count: int) -> None:
    comm = SocketCommunicator(Party.TASK)  # LUTE_USE_ZMQ's transport
    for i in range(count):
        comm.write(Message(f"child-{i}", "TASK_LOG"))


def main() -> int:
    scenario, args = sys.argv[1], sys.argv[2:]
    if scenario == "logs-then-result":
        count, one_each = int(args[0]), args[1] == "1"
        messages = [Message(f"log line {i}", "TASK_LOG") for i in range(count)]
        messages += [Message({"result": count}, "TASK_RESULT"), Message("done", "TASK_DONE")]
        if one_each:
            for msg in messages:
                per_message(msg)
        else:
            with SocketCommunicator(Party.TASK, use_zmq=True) as comm:
                for msg in messages:
                    comm.write(msg)
        return 0
    if scenario == "big-result":
        import numpy

        with SocketCommunicator(Party.TASK, use_zmq=True, linger=120) as comm:  # 72 MB to confirm: time
            size = int(args[0])
            array = numpy.full(size, 0.5) if args[1:] == ["halves"] else numpy.arange(size, dtype=numpy.float64)
            comm.write(Message(array, "TASK_RESULT"))
            comm.write(Message("done", "TASK_DONE"))
        return 0
    if scenario == "batch-over-limit":
        count, size = int(args[0]), int(args[1])
        with SocketCommunicator(Party.TASK, use_zmq=True, flush_interval=60, flush_size=1 << 30) as comm:
            for i in range(count):
                comm.write(Message(f"small {i}", "TASK_LOG"))
            comm.write(Message("x" * size, "TASK_LOG"))
            comm.write(Message("done", "TASK_DONE"))
        return 0
    if scenario == "oversize":
        with SocketCommunicator(Party.TASK, use_zmq=True) as comm:
            try:
                comm.write(Message(b"x" * int(args[0]), "TASK_RESULT"))
            except FrameTooLarge as exc:
                print(f"FrameTooLarge: {exc}", flush=True)
                comm.write(Message("after the refused one", "TASK_DONE"))
                return 0
        return 3
    if scenario == "fork":
        count = int(args[0])
        comm = SocketCommunicator(Party.TASK, use_zmq=True)
        comm.write(Message("parent-0"))
        comm.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                for i in range(count):
                    comm.write(Message(f"child-{i}"))
                comm.clear_communicator()
                status = 0
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        comm.write(Message("parent-1"))
        comm.clear_communicator()
        return os.waitstatus_to_exitcode(wait_status)
    if scenario == "multiprocessing-unclosed":
        import multiprocessing

        with SocketCommunicator(Party.TASK) as comm:
            comm.write(Message("parent-0"))
        child = multiprocessing.get_context("fork").Process(target=write_unclosed, args=(int(args[0]),))
        child.start()
        child.join(120)
        with SocketCommunicator(Party.TASK) as comm:
            comm.write(Message("parent-1"))
        return child.exitcode or 0
    if scenario == "fork-per-message":
        count = int(args[0])
        per_message(Message("parent-0"))
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                for i in range(count):
                    per_message(Message(f"child-{i}"))
                status = 0
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        per_message(Message("parent-1"))
        return os.waitstatus_to_exitcode(wait_status)
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    sys.exit(main())
