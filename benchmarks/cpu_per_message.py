"""Where the CPU goes, per message and per thread: lute_ipc vs multiprocessing.connection vs the raw byte loop.

The throughput report (``python -m lute_ipc bench``) says how fast; this script says what each
side spends to get there, so a target that is missed can be explained with figures. One
persistent connection, a Task process writing ``--messages`` messages of one shape
(``--shape``, the report's shapes: text, objects, 64KiB, 1MiB) over ``--transport`` (``unix``
or ``tcp`` loopback, where lute_ipc signs every record), the Executor in this process:

* ``lute_ipc``: ``SocketCommunicator`` on both sides, the Executor calls ``read()`` (LUTE's
  API, one message per call);
* ``mp.connection``: ``Client.send`` / ``Connection.recv`` (pickle, one message per call);
* ``raw loop``: the Task ``sendall``-s the bytes of one lute_ipc frame per message, the
  Executor ``recv_into``-s a 1 MiB buffer and counts bytes (no message is made: the floor).

For each contender and round: wall time per message (Task's first write to the last message
in the Executor's hands), the Task process's CPU per message (``getrusage``, user + system),
the Executor's main thread (the consumer) and its other threads (lute_ipc's reader) from
``/proc/self/task``, and the total. Rounds are interleaved; the table shows medians. CPU
time is a count, not a race: it is far less noisy than throughput on a shared machine.
Linux only (``/proc``).

    python benchmarks/cpu_per_message.py [--shape 64KiB] [--transport unix] [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener
from typing import Any, Dict, List, Tuple

from lute_ipc.bench import payloads
from lute_ipc.bench.task_side import connect
from lute_ipc.bench.transports import _LUTE_TCP, _listener
from lute_ipc.framing import encode_frame
from lute_ipc.message import Party
from lute_ipc.sockets import SocketCommunicator

_TICK = os.sysconf("SC_CLK_TCK")
CONTENDERS = ("lute_ipc", "mp.connection", "raw loop")


def thread_cpu() -> Dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by thread id."""
    times = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        times[int(tid)] = (int(fields[11]) + int(fields[12])) / _TICK
    return times


def process_cpu() -> float:
    """CPU seconds (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Trial:
    """One contender's run: the Executor's receiving end, set up before the Task is forked."""

    def __init__(self, contender: str, shape: str, transport: str, count: int, directory: str) -> None:
        self.contender, self.shape, self.count = contender, shape, count
        self.msgs = payloads.messages(shape, count)
        self.env: Dict[str, str] = {}
        tcp = transport == "tcp"
        if contender == "lute_ipc":
            for name in [n for n in os.environ if n.startswith("LUTE_") and n != "LUTE_IPC_PURE_PYTHON"]:
                del os.environ[name]
            if tcp:
                os.environ.update(_LUTE_TCP)
            self.executor = SocketCommunicator(Party.EXECUTOR, use_zmq=False)
            self.executor.delayed_setup()
            self.env = {n: v for n, v in os.environ.items() if n.startswith("LUTE_")}
        elif contender == "mp.connection":
            self.listener = Listener(("127.0.0.1", 0) if tcp else os.path.join(directory, "mp.sock"),
                                     family="AF_INET" if tcp else "AF_UNIX")
            self.address: Any = self.listener.address
        else:
            self.server, self.address = _listener(transport, directory)
            self.frames = [encode_frame(self.msgs[0])] * count if payloads.shape(shape).fixed \
                else [encode_frame(msg) for msg in self.msgs]

    def task(self) -> None:
        """The forked Task: connect, write every message, close (and let the Executor confirm)."""
        if self.contender == "lute_ipc":
            os.environ.update(self.env)
            comm = SocketCommunicator(Party.TASK, use_zmq=False)
            comm.delayed_setup()
            write = comm.write
            for msg in self.msgs:
                write(msg)
            comm.confirm()
            comm.clear_communicator()
        elif self.contender == "mp.connection":
            conn = Client(self.address)
            send = conn.send
            for msg in self.msgs:
                send(msg)
            conn.close()
        else:
            sock = connect(self.address)
            sendall = sock.sendall
            for frame in self.frames:
                sendall(frame)
            sock.close()

    def receive(self) -> Any:
        """Everything the Task sends; returns the last message (the byte count for the raw loop)."""
        last: Any = None
        if self.contender == "lute_ipc":
            read, got = self.executor.read, 0
            while got < self.count:
                msg = read(wait=5.0)
                if msg.signal is not None or msg.contents is not None:
                    got, last = got + 1, msg
        elif self.contender == "mp.connection":
            with self.listener.accept() as conn:
                for _ in range(self.count):
                    last = conn.recv()
        else:
            conn, _ = self.server.accept()
            buffer, got = bytearray(1 << 20), 0
            with conn:
                while True:
                    size = conn.recv_into(buffer)
                    if not size:
                        break
                    got += size
            last = got
        return last

    def check(self, last: Any) -> None:
        if self.contender == "raw loop":
            expected = sum(len(frame) for frame in self.frames)
            problem = None if last == expected else f"received {last} bytes, expected {expected}"
        else:
            problem = payloads.check_last(self.shape, self.count, last)
        if problem:
            raise SystemExit(f"{self.contender}: {problem}")

    def close(self) -> None:
        if self.contender == "lute_ipc":
            self.executor.clear_communicator()
        elif self.contender == "mp.connection":
            self.listener.close()
        else:
            self.server.close()


def run(trial: Trial) -> Tuple[float, float, float, float]:
    """Fork the Task, receive; per message, in microseconds: wall, Task, Executor consumer, other threads."""
    go_read, go_write = os.pipe()
    cpu_read, cpu_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the Task
        status = 1
        try:
            os.close(go_write)
            os.read(go_read, 1)
            before = process_cpu()
            trial.task()
            os.write(cpu_write, repr(process_cpu() - before).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(go_read)
    os.close(cpu_write)
    main = os.getpid()  # Linux: the main thread's id is the process id
    before = thread_cpu()
    start = time.perf_counter()
    os.write(go_write, b"g")
    last = trial.receive()
    wall = time.perf_counter() - start
    after = thread_cpu()
    task_cpu = float(os.read(cpu_read, 64) or b"nan")
    _, status = os.waitpid(pid, 0)
    os.close(go_write)
    os.close(cpu_read)
    if status:
        raise SystemExit(f"{trial.contender}: the Task failed (status {status})")
    trial.check(last)
    consumer = after.get(main, 0.0) - before.get(main, 0.0)
    others = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items() if tid != main)
    scale = 1e6 / trial.count
    return wall * scale, task_cpu * scale, consumer * scale, others * scale


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="64KiB", choices=[s.name for s in payloads.SHAPES])
    parser.add_argument("--transport", default="unix", choices=("unix", "tcp"))
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be at least 1")
    if not os.path.isdir("/proc/self/task"):
        parser.error("needs Linux's /proc")
    results: Dict[str, List[Tuple[float, float, float, float]]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory(prefix="lute-ipc-cpu-") as directory:
        for _ in range(args.rounds):
            for name in CONTENDERS:
                trial = Trial(name, args.shape, args.transport, args.messages, directory)
                try:
                    results[name].append(run(trial))
                finally:
                    trial.close()
                for leftover in os.listdir(directory):
                    os.unlink(os.path.join(directory, leftover))
    label = payloads.shape_label(args.shape)
    print(f"{label} ({payloads.shape(args.shape).code}), {args.transport}, {args.messages} messages, "
          f"median of {args.rounds} interleaved round(s), load average {os.getloadavg()[0]:.1f}; "
          "microseconds per message:")
    print(f"{'contender':<15}{'wall':>8}{'Task CPU':>10}{'consumer':>10}{'other thr.':>11}{'total CPU':>11}")
    for name in CONTENDERS:
        columns = [statistics.median(row[i] for row in results[name]) for i in range(4)]
        total = sum(columns[1:])
        print(f"{name:<15}" + "".join(f"{value:>{w}.1f}" for value, w in zip(columns, (8, 10, 10, 11))) +
              f"{total:>11.1f}")
    print("(consumer: the Executor's main thread, where read()/recv() run; other thr.: lute_ipc's reader "
          "and flusher threads. Two CPUs carry both processes: total CPU / 2 bounds the wall time from below.)")


if __name__ == "__main__":
    main(sys.argv[1:])
