"""``python -m lute_ipc.bench.latency``: how long a message takes from a Task's ``write`` to the Executor's ``read``.

A forked Task (:mod:`.forked`) sends ``--count`` messages at a fixed rate (default 50 msg/s:
each one is a lone message on an idle Task, which waits for no batch), each carrying its
send time (``time.perf_counter``, CLOCK_MONOTONIC: one clock for both processes); the
Executor notes when ``read()`` returns it. The shape is the text shape with the send time
in front: ``Message(contents=(sent, f"log line {i} " + "x"*100), signal="TASK_LOG")``.
Contenders: lute_ipc over raw sockets and over ZeroMQ, and bare pyzmq PUSH/PULL
``send_pyobj``/``recv_pyobj``; Unix sockets and TCP loopback (lute_ipc signs on TCP).
Output: p50 and p99 in microseconds, the median over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..message import Message, Party
from .control import Control
from .forked import ForkedTask
from .task_side import SETUP_TIMEOUT, wait_for_go

CONTENDERS = ("lute_ipc-raw", "lute_ipc-zmq", "pyzmq")
FAMILIES = ("unix", "tcp")


def _message(i: int) -> Message:
    return Message(contents=(time.perf_counter(), f"log line {i} " + "x" * 100), signal="TASK_LOG")


def _paced(count: int, rate: float, send: Callable[[Message], Any]) -> None:
    period = 1.0 / rate
    start = time.perf_counter()
    for i in range(count):
        target = start + i * period
        gap = target - time.perf_counter()
        if gap > 0.001:  # an idle (sleeping) Task, so its background threads can run
            time.sleep(gap - 0.0005)
        while time.perf_counter() < target:
            pass
        send(_message(i))


def _task(contender: str, count: int, rate: float) -> Callable[[Control], None]:
    def body(control: Control) -> None:
        setup = control.receive(SETUP_TIMEOUT)
        for name in [n for n in os.environ if n.startswith("LUTE_") and n != "LUTE_IPC_PURE_PYTHON"]:
            del os.environ[name]
        os.environ.update(setup["env"])
        if contender == "pyzmq":
            import zmq

            context = zmq.Context()
            push = context.socket(zmq.PUSH)
            push.connect(setup["address"])
            wait_for_go(control)
            _paced(count, rate, push.send_pyobj)
            push.close(linger=-1)
            context.term()
        else:
            from ..sockets import SocketCommunicator

            comm = SocketCommunicator(Party.TASK, use_zmq=contender.endswith("-zmq"))
            comm.delayed_setup()
            wait_for_go(control)
            _paced(count, rate, comm.write)
            comm.clear_communicator()
        control.send({"first_write": 0.0})
    return body


def _receiver(contender: str, family: str, directory: str) -> Tuple[Dict[str, Any], Callable[[], Any],
                                                                         Callable[[], None]]:
    if contender == "pyzmq":
        import zmq

        context = zmq.Context()
        pull = context.socket(zmq.PULL)
        if family == "unix":
            address = f"ipc://{os.path.join(directory, 'zmq.sock')}"
            pull.bind(address)
        else:
            address = f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}"

        def close_zmq() -> None:
            pull.close(linger=0)
            context.term()
        return {"env": {}, "address": address}, pull.recv_pyobj, close_zmq
    from ..sockets import SocketCommunicator

    saved = {n: os.environ.pop(n) for n in list(os.environ) if n.startswith("LUTE_") and n != "LUTE_IPC_PURE_PYTHON"}
    if family == "tcp":
        os.environ.update({"LUTE_USE_TCP": "1", "LUTE_BIND_HOST": "127.0.0.1"})
    executor = SocketCommunicator(Party.EXECUTOR, use_zmq=contender.endswith("-zmq"))
    executor.delayed_setup()
    env = {n: v for n, v in os.environ.items() if n.startswith("LUTE_")}

    def read() -> Any:
        while True:
            msg = executor.read(wait=5.0)
            if msg.contents is not None:
                return msg

    def close() -> None:
        executor.clear_communicator()
        for name in [n for n in os.environ if n.startswith("LUTE_") and n != "LUTE_IPC_PURE_PYTHON"]:
            del os.environ[name]
        os.environ.update(saved)
    return {"env": env, "address": None}, read, close


def latencies(contender: str, family: str, count: int, rate: float) -> List[float]:
    """Seconds from send to receive of each of ``count`` messages sent at ``rate`` msg/s."""
    task = ForkedTask(_task(contender, count, rate))
    directory = tempfile.mkdtemp(prefix="lute-ipc-latency-")
    close: Optional[Callable[[], None]] = None
    try:
        setup, read, close = _receiver(contender, family, directory)
        task.control.send(setup)
        if task.control.receive(SETUP_TIMEOUT) != "ready":
            raise RuntimeError("the latency Task did not get ready")
        task.control.send("go")
        out = []
        for _ in range(count):
            msg = read()
            out.append(time.perf_counter() - msg.contents[0])
        task.control.receive(SETUP_TIMEOUT)
        if task.wait(SETUP_TIMEOUT) != 0:
            raise RuntimeError("the latency Task failed")
        return out
    finally:
        task.kill()
        if close is not None:
            close()
        shutil.rmtree(directory, ignore_errors=True)


def _percentile(samples: List[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[int(q * (len(ordered) - 1))]


def main(argv: Optional[List[str]] = None) -> int:
    """Measure and print the table."""
    import logging

    parser = argparse.ArgumentParser(prog="python -m lute_ipc.bench.latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.getLogger("lute_ipc").setLevel(logging.ERROR)
    print(f"latency at {args.rate:g} msg/s, {args.count} messages, median of {args.repeats} runs, microseconds; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'contender':<14}{'family':<8}{'p50':>8}{'p99':>8}")
    for family in FAMILIES:
        for contender in CONTENDERS:
            runs = [latencies(contender, family, args.count, args.rate) for _ in range(args.repeats)]
            p50 = statistics.median(_percentile(r, 0.5) for r in runs) * 1e6
            p99 = statistics.median(_percentile(r, 0.99) for r in runs) * 1e6
            print(f"{contender:<14}{family:<8}{p50:>8.0f}{p99:>8.0f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
