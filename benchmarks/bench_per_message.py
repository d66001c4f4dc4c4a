"""LUTE's per-message pattern, same run: lute_ipc vs LUTE's own ipc.py vs multiprocessing.connection.

A LUTE Task creates a communicator per message: ``SocketCommunicator(Party.TASK);
delayed_setup(); write(msg); clear_communicator()``. This script times that pattern end to
end (Task loop start to the Executor holding the last message), 64-byte ``TASK_LOG`` text
messages, over one transport (``--transport``):

* ``unix``: raw Unix sockets; ``tcp``: raw TCP on the loopback (lute_ipc authenticates its
  session, LUTE and multiprocessing.connection do not); ``zmq``: ZeroMQ over Unix sockets
  (``LUTE_USE_ZMQ=1``; multiprocessing.connection stays on a Unix socket).

Contenders:

* ``lute_ipc``: lute_ipc's Executor and Task (the communicators share one session link);
* ``lute``: LUTE 0.3.0's own ``lute.execution.ipc`` on both sides (a connection per message);
* ``mp.connection``: ``multiprocessing.connection`` with a connection per message
  (``Client(address).send(msg)``, then close; the Executor accepts and ``recv()``s; backlog
  ``SOMAXCONN`` as the others);
* ``zmq.round-trip`` (``--transport zmq`` only, the floor of lute_ipc's ZeroMQ hand-over): bare
  pyzmq, one DEALER connected before the loop sends each pickled message and waits for the
  ROUTER's one-byte reply (the Executor's thread receives, unpickles, replies): what a
  ``clear_communicator()`` that waits for its Executor's acknowledgement costs at least.

Every side runs in its own process; rounds are interleaved; the report gives the median
messages per second of each and the ratios of lute_ipc to the others. Needs
``lute-lcls==0.3.0`` (``pip install --no-deps lute-lcls==0.3.0``).

    python benchmarks/bench_per_message.py [--transport unix|tcp|zmq] [--messages 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

TEXT = "x" * 64
KINDS = ("lute_ipc", "lute", "mp.connection")
FLOOR = "zmq.round-trip"
TRANSPORTS = ("unix", "tcp", "zmq")
Sender = Callable[[Any], None]


def _communicator_sender(module: str) -> Tuple[Sender, Any]:
    """LUTE's pattern with ``module``'s SocketCommunicator; the Message class to send."""
    ipc = __import__(module, fromlist=["SocketCommunicator"])
    communicator, task = ipc.SocketCommunicator, ipc.Party.TASK
    if communicator.__module__.split(".")[0] != module.split(".")[0]:  # e.g. lute_ipc's LUTE shim
        raise RuntimeError(f"{module}.SocketCommunicator is {communicator.__module__}'s: not the contender")

    def send(msg: Any) -> None:
        comm = communicator(task)
        comm.delayed_setup()
        comm.write(msg)
        comm.clear_communicator()

    return send, ipc.Message


def _mp_sender() -> Tuple[Sender, Any]:
    from multiprocessing.connection import Client

    from lute_ipc import Message

    address, family = os.environ["MP_ADDRESS"], os.environ["MP_FAMILY"]
    target: Any = tuple(json.loads(address)) if family == "AF_INET" else address

    def send(msg: Any) -> None:
        with Client(target, family=family) as conn:
            conn.send(msg)

    return send, Message


def _round_trip_sender() -> Tuple[Sender, Any]:
    import pickle

    import zmq

    from lute_ipc import Message

    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.connect(os.environ["FLOOR_ADDRESS"])

    def send(msg: Any) -> None:
        dealer.send(pickle.dumps(msg))
        dealer.recv()

    return send, Message


def _task(kind: str, count: int) -> None:
    """The one timing loop: ``count`` messages, each in LUTE's per-message pattern of ``kind``."""
    if kind == FLOOR:
        send, message = _round_trip_sender()
    elif kind == "mp.connection":
        send, message = _mp_sender()
    else:
        send, message = _communicator_sender("lute_ipc" if kind == "lute_ipc" else "lute.execution.ipc")
    msg = message(TEXT, "TASK_LOG")
    cpu = time.process_time()
    print(time.time(), flush=True)
    for _ in range(count):
        send(msg)
    print(time.time(), (time.process_time() - cpu) / count, flush=True)  # the loop's end, its CPU per message


def _executor(kind: str, count: int) -> None:
    """Receive ``count`` messages; print the exported environment first, the time at the last one."""
    if kind == "mp.connection":
        _mp_executor(count)
        return
    if kind == FLOOR:
        _round_trip_executor(count)
        return
    if kind == "lute_ipc":
        from lute_ipc import Party, SocketCommunicator

        comm: Any = SocketCommunicator(Party.EXECUTOR)
    else:
        from lute.execution.ipc import Party, SocketCommunicator  # type: ignore[import-not-found]

        comm = SocketCommunicator(Party.EXECUTOR)
    comm.delayed_setup()
    print(json.dumps({k: v for k, v in os.environ.items() if k.startswith("LUTE_")}), flush=True)
    got = 0
    while got < count:
        if kind == "lute_ipc":
            got += len(comm.read_many(count - got, wait=1.0))
        else:
            msg = comm.read(None)
            got += msg.contents is not None or msg.signal is not None
    print(time.time(), flush=True)
    sys.stdin.readline()  # the Task confirmed (or ended): close
    comm.clear_communicator() if kind == "lute" else comm.close()
    os._exit(0)  # LUTE's reader thread is not a daemon in every version


def _mp_executor(count: int) -> None:
    from multiprocessing.connection import Listener

    backlog = socket.SOMAXCONN  # the others' backlog (the default, 1, drops connections under load)
    if os.environ.get("LUTE_USE_TCP"):
        listener = Listener(("127.0.0.1", 0), family="AF_INET", backlog=backlog)
        address, family = json.dumps(listener.address), "AF_INET"
    else:
        address = os.path.join(tempfile.mkdtemp(prefix="bench-mp-"), "mp.sock")
        listener, family = Listener(address, family="AF_UNIX", backlog=backlog), "AF_UNIX"
    with listener:
        print(json.dumps({"MP_ADDRESS": address, "MP_FAMILY": family}), flush=True)
        for _ in range(count):
            with listener.accept() as conn:
                conn.recv()
        print(time.time(), flush=True)
        sys.stdin.readline()


def _round_trip_executor(count: int) -> None:
    import pickle

    import zmq

    router = zmq.Context.instance().socket(zmq.ROUTER)
    address = "ipc://" + os.path.join(tempfile.mkdtemp(prefix="bench-zmq-"), "floor.sock")
    router.bind(address)
    print(json.dumps({"FLOOR_ADDRESS": address}), flush=True)
    for _ in range(count):
        peer, data = router.recv_multipart()
        pickle.loads(data)
        router.send_multipart([peer, b"A"])
    print(time.time(), flush=True)
    sys.stdin.readline()
    router.close(linger=0)


def _environment(kind: str, transport: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUTE_") or k == "LUTE_IPC_PURE_PYTHON"}
    env["LUTE_IPC_SHIM"] = "0"  # LUTE's own ipc.py even where lute_ipc's LUTE shim is installed
    if transport != "zmq" or kind == "mp.connection":
        env["LUTE_USE_ZMQ"] = "0"
    # else unset: ZeroMQ, both packages' default (LUTE 0.3.0 does not import pyzmq for LUTE_USE_ZMQ=1)
    if transport == "tcp":
        env["LUTE_USE_TCP"] = "1"
        env["LUTE_BIND_HOST"] = "127.0.0.1"  # lute_ipc's Executor binds the loopback only
    return env


def run_once(kind: str, transport: str, count: int) -> Tuple[float, float, float]:
    """One run of ``kind``: messages per second (Task loop start to last message received), the
    Task loop's own messages per second, and the Task process's CPU seconds per message."""
    env = _environment(kind, transport)
    role = [sys.executable, __file__, "--kind", kind, "--messages", str(count)]
    executor = subprocess.Popen(role + ["--role", "executor"], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                env=env, text=True)
    try:
        assert executor.stdout is not None and executor.stdin is not None
        env.update(json.loads(executor.stdout.readline()))
        if kind == "lute" and transport == "tcp":
            env["LUTE_EXECUTOR_HOST"] = "127.0.0.1"  # LUTE binds every interface: use the loopback
        task = subprocess.run(role + ["--role", "task"], capture_output=True, env=env, text=True, timeout=600)
        if task.returncode:
            raise RuntimeError(f"the {kind} Task failed: {task.stderr[-2000:]}")
        started, loop_end, cpu = map(float, task.stdout.split()[:3])
        ended = float(executor.stdout.readline())
        executor.stdin.write("\n")
        executor.stdin.flush()
        executor.wait(60)
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.wait()
    return count / (ended - started), count / (loop_end - started), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=TRANSPORTS, default="unix")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--role", choices=("executor", "task"), help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=KINDS + (FLOOR,), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        (_executor if args.role == "executor" else _task)(args.kind, args.messages)
        return
    kinds = KINDS + ((FLOOR,) if args.transport == "zmq" else ())
    rates: Dict[str, List[float]] = {kind: [] for kind in kinds}
    loops: Dict[str, List[float]] = {kind: [] for kind in kinds}
    cpus: Dict[str, List[float]] = {kind: [] for kind in kinds}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for kind in kinds:
            rate, loop, cpu = run_once(kind, args.transport, args.messages)
            rates[kind].append(rate)
            loops[kind].append(loop)
            cpus[kind].append(cpu)
    from lute_ipc.framing import IMPLEMENTATION

    print(f"per-message pattern, {args.transport}, {args.messages} x 64 B TASK_LOG, {args.rounds} interleaved "
          f"rounds, core={IMPLEMENTATION}, load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    for kind in kinds:
        print(f"  {kind:14s} median {medians[kind]:9.0f} msg/s   rounds: "
              + ", ".join(f"{v:.0f}" for v in rates[kind])
              + f"   (Task loop {statistics.median(loops[kind]):.0f} msg/s, "
              f"Task CPU {1e6 * statistics.median(cpus[kind]):.1f} us/msg)")
    print(f"  lute_ipc / lute          {medians['lute_ipc'] / medians['lute']:.1f}x")
    print(f"  lute_ipc / mp.connection {medians['lute_ipc'] / medians['mp.connection']:.1f}x")
    if FLOOR in medians:
        print(f"  lute_ipc / {FLOOR}   {medians['lute_ipc'] / medians[FLOOR]:.2f}x (the acknowledgement's floor)")


if __name__ == "__main__":
    main()
