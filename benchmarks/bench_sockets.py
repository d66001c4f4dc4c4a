"""Socket transport benchmark: Task process -> Executor ``read()``, against baselines measured in the same run.

Run: ``python benchmarks/bench_sockets.py [--count 100000] [--repeats 3] [--quick]``.
Prints one table per experiment; every figure is the median of ``--repeats`` runs
(contenders interleaved run by run, so a noisy shared machine hurts them alike).

1. Stream: COUNT messages (~140-byte frames) from one Task process over one connection,
   received one by one with ``SocketCommunicator.read()``; baseline: a bare pyzmq
   PUSH/PULL ``send_pyobj``/``recv_pyobj`` loop between the same two kinds of processes on
   the same transport (Unix ``ipc://`` or TCP loopback). Target: ratio >= 1.5 (issue 9; goal 1.8).
2. Connection per message (LUTE's Task pattern): ``delayed_setup(); write();
   clear_communicator()`` per message, vs the LUTE reader re-expressed in
   ``benchmarks/lute_reference.py`` fed by a LUTE-style writer (connect, send, close).
   Target: >= 5x.
3. Latency at a fixed rate: messages carry their send time (``time.perf_counter``, the
   system-wide monotonic clock on Linux); p50/p99 of receive - send. At a low rate (the
   default 50 msg/s) every message is a lone message on an idle Task: it waits for the
   send buffer's latency bound (default 1 ms) and the flusher thread.
4. Large payloads: COUNT messages of 64 KiB ``bytes`` (sent in place with ``sendmsg``),
   one Task -> ``read()``, against ``multiprocessing.connection`` ``send``/``recv`` over
   the same family (AF_UNIX; TCP loopback) between the same two kinds of processes; TCP
   both signed (lute_ipc's default there) and plain. Target: ratio >= 1.0.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.lute_reference import LuteSocketReader, lute_encode  # noqa: E402
from lute_ipc import Message, Party, SocketCommunicator  # noqa: E402
from lute_ipc.framing import IMPLEMENTATION  # noqa: E402

CONTENTS = "x" * 48  # a Message with this text pickles to a ~124-byte payload (~140-byte frame)
LARGE = b"L" * 65536
TRANSPORTS = [("raw", "unix"), ("raw", "tcp"), ("zmq", "unix"), ("zmq", "tcp")]


# =========================================================================== child side
def _child(argv: List[str]) -> None:
    """Task-side roles, run in a separate process: ``--child ROLE COUNT [RATE]``."""
    role, count = argv[0], int(argv[1])
    rate = float(argv[2]) if len(argv) > 2 else 0.0
    msg = Message(contents=CONTENTS, signal="TASK_LOG")
    if role == "ours-stream":
        comm = SocketCommunicator(Party.TASK)
        comm.delayed_setup()
        _ready()
        write = comm.write
        for _ in range(count):
            write(msg)
        comm.clear_communicator()
    elif role == "pyzmq-stream":
        ctx, push = _bare_push()
        _ready()
        send = push.send_pyobj
        for _ in range(count):
            send(msg)
        push.close(linger=10000)
        ctx.term()
    elif role == "ours-per-message":
        _ready()
        for _ in range(count):
            comm = SocketCommunicator(Party.TASK)
            comm.delayed_setup()
            comm.write(msg)
            comm.clear_communicator()
    elif role == "lute-per-message":
        _ready()
        for _ in range(count):
            _lute_send(lute_encode(msg))
    elif role in ("ours-large", "ours-large-plain"):
        comm = SocketCommunicator(Party.TASK, require_auth=False if role == "ours-large-plain" else None)
        comm.delayed_setup()
        _ready()
        write = comm.write
        big = Message(contents=LARGE, signal="TASK_LOG")
        for _ in range(count):
            write(big)
        comm.clear_communicator()
    elif role == "mpc-large":
        from multiprocessing.connection import Client

        address = os.environ["BENCH_MPC_ADDRESS"]
        if address.startswith("tcp:"):
            conn = Client(("127.0.0.1", int(address[4:])), family="AF_INET")
        else:
            conn = Client(address, family="AF_UNIX")
        _ready()
        big = Message(contents=LARGE, signal="TASK_LOG")
        for _ in range(count):
            conn.send(big)
        conn.close()
    elif role in ("ours-rate", "pyzmq-rate"):
        if role == "ours-rate":
            comm = SocketCommunicator(Party.TASK)
            comm.delayed_setup()
            send = comm.write
        else:
            ctx, push = _bare_push()
            send = push.send_pyobj
        _ready()
        period = 1.0 / rate
        start = time.perf_counter()
        for i in range(count):
            target = start + i * period
            gap = target - time.perf_counter()
            if gap > 0.001:  # idle (sleeping) Task: a busy Python loop would hold the GIL
                time.sleep(gap - 0.0005)  # the flusher thread needs (up to the 5 ms switch interval)
            while time.perf_counter() < target:
                pass
            send(Message(contents=(time.perf_counter(), CONTENTS), signal="TASK_LOG"))
        if role == "ours-rate":
            comm.clear_communicator()
        else:
            push.close(linger=10000)
            ctx.term()
    else:
        raise SystemExit(f"unknown role {role}")


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()


def _bare_push():
    import zmq

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.set_hwm(160000)
    push.connect(os.environ["BENCH_ZMQ_ADDRESS"])
    return ctx, push


def _lute_send(frame: bytes) -> None:
    if "LUTE_USE_TCP" in os.environ:
        sock = socket.create_connection(("127.0.0.1", int(os.environ["LUTE_PORT"])))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(os.environ["LUTE_SOCKET"])
    sock.sendall(frame)
    sock.close()


# =========================================================================== parent side
def _env_for(kind: str, family: str) -> None:
    for name in [n for n in os.environ if n.startswith("LUTE_") and n != "LUTE_IPC_PURE_PYTHON"]:
        del os.environ[name]
    os.environ["LUTE_USE_ZMQ"] = "1" if kind == "zmq" else "0"
    if family == "tcp":
        os.environ["LUTE_USE_TCP"] = "1"
        os.environ["LUTE_BIND_HOST"] = "127.0.0.1"


def _spawn(role: str, count: int, rate: float = 0.0, extra: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    proc = subprocess.Popen([sys.executable, __file__, "--child", role, str(count), str(rate)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"child {role} failed to start")
    return proc


def _go(proc: subprocess.Popen) -> float:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return time.perf_counter()


def _end(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(60)
    proc.stdout.close()
    if proc.returncode:
        raise RuntimeError(f"child exited with {proc.returncode}")


def run_ours(kind: str, family: str, role: str, count: int, writers: int = 1) -> float:
    """Seconds from 'go' until ``read()`` returned the last of ``count`` messages
    (sent by ``writers`` Task processes, ``count // writers`` each)."""
    _env_for(kind, family)
    plain = role.startswith("lute") or role.endswith("-plain")
    ex = SocketCommunicator(Party.EXECUTOR, use_zmq=(kind == "zmq"), require_auth=False if plain else None,
                            loads=pickle.loads if role.startswith("lute") else None)
    ex.delayed_setup()
    try:
        count -= count % writers
        procs = [_spawn(role, count // writers) for _ in range(writers)]
        start = min(_go(proc) for proc in procs)
        got, read = 0, ex.read
        while got < count:
            if read(wait=5.0).signal is not None:
                got += 1
            elif any(proc.poll() not in (None, 0) for proc in procs):
                raise RuntimeError("Task failed")
        elapsed = time.perf_counter() - start
        for proc in procs:
            _end(proc)
        return elapsed
    finally:
        ex.clear_communicator()


def _bare_pull(family: str):
    import zmq

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.set_hwm(160000)
    tmpdir = None
    if family == "tcp":
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        address = f"tcp://127.0.0.1:{port}"
    else:
        tmpdir = tempfile.mkdtemp(prefix="bench-zmq-")
        address = f"ipc://{tmpdir}/pull.sock"
        pull.bind(address)
    return ctx, pull, address, tmpdir


def run_pyzmq(family: str, count: int) -> float:
    """The bare pyzmq baseline: PUSH send_pyobj -> PULL recv_pyobj."""
    ctx, pull, address, tmpdir = _bare_pull(family)
    try:
        proc = _spawn("pyzmq-stream", count, extra={"BENCH_ZMQ_ADDRESS": address})
        return _timed_receive(proc, pull.recv_pyobj, count)
    finally:
        pull.close(linger=0)
        ctx.term()
        if tmpdir:
            os.rmdir(tmpdir) if not os.listdir(tmpdir) else None


def run_lute_reader(family: str, count: int, writers: int = 1) -> float:
    """LUTE's reader (re-expressed) fed by a LUTE-style connection-per-message writer."""
    _env_for("raw", family)
    tmpdir = None
    if family == "tcp":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        os.environ["LUTE_PORT"] = str(listener.getsockname()[1])
    else:
        tmpdir = tempfile.mkdtemp(prefix="bench-lute-")
        path = os.path.join(tmpdir, "lute.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        os.environ["LUTE_SOCKET"] = path
    listener.listen(socket.SOMAXCONN)
    reader = LuteSocketReader(listener)
    try:
        count -= count % writers
        procs = [_spawn("lute-per-message", count // writers) for _ in range(writers)]
        start = min(_go(proc) for proc in procs)
        got = 0
        while got < count:
            if reader.read() is not None:
                got += 1
        elapsed = time.perf_counter() - start
        for proc in procs:
            _end(proc)
        return elapsed
    finally:
        reader.close()
        if tmpdir:
            for name in os.listdir(tmpdir):
                os.unlink(os.path.join(tmpdir, name))
            os.rmdir(tmpdir)


def _timed_receive(proc: subprocess.Popen, recv: Callable[[], object], count: int) -> float:
    """Seconds from 'go' to the ``count``-th ``recv()``; then wait for the Task to end."""
    start = _go(proc)
    for _ in range(count):
        recv()
    elapsed = time.perf_counter() - start
    _end(proc)
    return elapsed


def run_mpc_large(count: int, family: str = "unix") -> float:
    """multiprocessing.connection send/recv over AF_UNIX or TCP loopback (the 64 KiB baseline)."""
    from multiprocessing.connection import Listener

    tmpdir = tempfile.mkdtemp(prefix="bench-mpc-")
    address = os.path.join(tmpdir, "mpc.sock")
    if family == "tcp":
        listener = Listener(("127.0.0.1", 0), family="AF_INET")
        child_address = f"tcp:{listener.address[1]}"
    else:
        listener = Listener(address, family="AF_UNIX")
        child_address = address
    try:
        proc = _spawn_after_accept(listener, "mpc-large", count, {"BENCH_MPC_ADDRESS": child_address})
        conn, proc = proc
        elapsed = _timed_receive(proc, conn.recv, count)
        conn.close()
        return elapsed
    finally:
        listener.close()
        if os.path.exists(address):
            os.unlink(address)
        os.rmdir(tmpdir)


def _spawn_after_accept(listener, role: str, count: int, extra: Dict[str, str]):
    import threading

    box: Dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(conn=listener.accept()))
    thread.start()
    proc = _spawn(role, count, extra=extra)
    thread.join(30)
    return box["conn"], proc


def latency_ours(kind: str, family: str, count: int, rate: float) -> List[float]:
    _env_for(kind, family)
    ex = SocketCommunicator(Party.EXECUTOR, use_zmq=(kind == "zmq"))
    ex.delayed_setup()
    try:
        proc = _spawn("ours-rate", count, rate)
        _go(proc)
        out = []
        while len(out) < count:
            msg = ex.read(wait=5.0)
            if msg.signal is not None:
                out.append(time.perf_counter() - msg.contents[0])
        _end(proc)
        return out
    finally:
        ex.clear_communicator()


def latency_pyzmq(family: str, count: int, rate: float) -> List[float]:
    ctx, pull, address, tmpdir = _bare_pull(family)
    try:
        proc = _spawn("pyzmq-rate", count, rate, extra={"BENCH_ZMQ_ADDRESS": address})
        _go(proc)
        out = []
        for _ in range(count):
            sent = pull.recv_pyobj().contents[0]
            out.append(time.perf_counter() - sent)
        _end(proc)
        return out
    finally:
        pull.close(linger=0)
        ctx.term()


# =========================================================================== report
def _median_runs(runs: Dict[str, Callable[[], float]], repeats: int) -> Dict[str, List[float]]:
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return times


def _table(title: str, header: Tuple[str, ...], rows: List[Tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def stream_report(count: int, repeats: int) -> None:
    rows = []
    for kind, family in TRANSPORTS:
        times = _median_runs({
            "ours": lambda: run_ours(kind, family, "ours-stream", count),
            "pyzmq": lambda: run_pyzmq(family, count),
        }, repeats)
        ratios = [b / a for a, b in zip(times["ours"], times["pyzmq"])]
        rows.append((f"{kind}-{family}", f"{count / statistics.median(times['ours']):,.0f}",
                     f"{count / statistics.median(times['pyzmq']):,.0f}", f"{statistics.median(ratios):.2f}x",
                     "ok" if statistics.median(ratios) >= 1.5 else "BELOW 1.5x"))
    _table(f"1. Stream: {count:,} messages, one Task connection -> read() (median of {repeats})",
           ("transport", "ours msg/s", "pyzmq PUSH/PULL msg/s", "ours/pyzmq", "target 1.5x"), rows)


def per_message_report(count: int, repeats: int, writers: int) -> None:
    rows = []
    for n in (1, writers):
        lute = {family: _median_runs({"lute": lambda: run_lute_reader(family, count, n)}, repeats)["lute"]
                for family in ("unix", "tcp")}
        contenders = [(f"{kind}-{family}", kind, family, "ours-per-message") for kind, family in TRANSPORTS]
        # the same LUTE-style client against both readers: compares the readers alone
        contenders += [(f"raw-{family}, LUTE client", "raw", family, "lute-per-message") for family in ("unix", "tcp")]
        for name, kind, family, role in contenders:
            ours = _median_runs({"ours": lambda: run_ours(kind, family, role, count, n)}, repeats)["ours"]
            ratio = statistics.median(lute[family]) / statistics.median(ours)
            rows.append((name, str(n), f"{count / statistics.median(ours):,.0f}",
                         f"{count / statistics.median(lute[family]):,.0f}", f"{ratio:.2f}x",
                         "ok" if ratio >= 5 else "below 5x"))
    _table(f"2. Connection per message: {count:,} messages (median of {repeats}); LUTE = re-expressed "
           "reader + LUTE-style raw writer", ("transport / client", "writers", "ours msg/s",
                                            "LUTE reader msg/s (raw, same family)", "ours/LUTE", "target 5x"), rows)


def latency_report(count: int, rate: float, repeats: int) -> None:
    rows = []
    for kind, family in TRANSPORTS:
        ours = [latency_ours(kind, family, count, rate) for _ in range(repeats)]
        base = [latency_pyzmq(family, count, rate) for _ in range(repeats)]

        def pct(samples: List[List[float]], q: float) -> float:
            return statistics.median(sorted(s)[int(q * (len(s) - 1))] for s in samples) * 1e6

        rows.append((f"{kind}-{family}", f"{pct(ours, 0.5):.0f}", f"{pct(ours, 0.99):.0f}",
                     f"{pct(base, 0.5):.0f}", f"{pct(base, 0.99):.0f}"))
    _table(f"3. Latency at {rate:,.0f} msg/s, {count:,} messages (median of {repeats}), microseconds",
           ("transport", "ours p50", "ours p99", "pyzmq p50", "pyzmq p99"), rows)


def large_report(count: int, repeats: int) -> None:
    rows = []
    mib = count * len(LARGE) / 2 ** 20
    for label, family, role in (("raw-unix", "unix", "ours-large"), ("raw-tcp signed", "tcp", "ours-large"),
                                ("raw-tcp plain", "tcp", "ours-large-plain")):
        times = _median_runs({
            "ours": lambda: run_ours("raw", family, role, count),
            "mpc": lambda: run_mpc_large(count, family),
        }, repeats)
        ratios = [b / a for a, b in zip(times["ours"], times["mpc"])]
        rows.append((label, f"{count / statistics.median(times['ours']):,.0f}",
                     f"{mib / statistics.median(times['ours']):,.0f}",
                     f"{count / statistics.median(times['mpc']):,.0f}",
                     "AF_UNIX" if family == "unix" else "TCP", f"{statistics.median(ratios):.2f}x",
                     "ok" if statistics.median(ratios) >= 1.0 else "BELOW 1.0x"))
    _table(f"4. Large payloads: {count:,} x 64 KiB bytes, one Task -> read() vs multiprocessing.connection "
           f"send/recv on the same family (median of {repeats}); 'signed' = HMAC-SHA256 on every frame, "
           "lute_ipc's TCP default (mpc does not authenticate)",
           ("transport", "ours msg/s", "ours MiB/s", "mpc msg/s", "mpc over", "ours/mpc", "target 1.0x"), rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages per stream run")
    parser.add_argument("--per-message-count", type=int, default=2000, help="messages per connection-per-message run")
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s for the latency runs (50: each "
                        "message is a lone message on an idle Task)")
    parser.add_argument("--latency-count", type=int, default=400, help="messages per latency run")
    parser.add_argument("--large-count", type=int, default=20000, help="64 KiB messages per large-payload run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--writers", type=int, default=4, help="concurrent Task processes in the second "
                        "connection-per-message round")
    parser.add_argument("--quick", action="store_true", help="10x fewer messages, 1 repeat")
    parser.add_argument("--only", choices=["stream", "per-message", "latency", "large"], action="append")
    args = parser.parse_args()
    if args.quick:
        args.count //= 10
        args.per_message_count //= 4
        args.latency_count //= 4
        args.large_count //= 5
        args.repeats = 1
    print(f"lute_ipc socket benchmark: framing core {IMPLEMENTATION}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    logging.getLogger("lute_ipc").setLevel(logging.ERROR)  # the LUTE-client rows turn authentication off
    only = set(args.only or ["stream", "per-message", "latency", "large"])
    if "stream" in only:
        stream_report(args.count, args.repeats)
    if "per-message" in only:
        per_message_report(args.per_message_count, args.repeats, args.writers)
    if "latency" in only:
        latency_report(args.latency_count, args.rate, args.repeats)
    if "large" in only:
        large_report(args.large_count, args.repeats)


if __name__ == "__main__":
    main()
