"""Executor side of red-team 21, run in a child process so that each core can be chosen
(``LUTE_IPC_PURE_PYTHON``). usage: rt21_executor.py SCENARIO TRANSPORT(raw-unix|raw-tcp|zmq-unix|zmq-tcp) [ARGS...]
Prints one JSON line with what it measured."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, REPO)

from lute_ipc import Party, SocketCommunicator  # noqa: E402
from tests.socket_tasks.helpers import lute_executor_loop  # noqa: E402
from tests.socket_tasks.lute_writer import connect_raw  # noqa: E402


def core_name() -> str:
    import lute_ipc

    for name in ("IMPLEMENTATION", "implementation", "CORE"):
        if hasattr(lute_ipc, name):
            value = getattr(lute_ipc, name)
            return value() if callable(value) else str(value)
    return os.environ.get("LUTE_IPC_PURE_PYTHON", "")


def setup(transport: str):
    for name in list(os.environ):
        if name.startswith("LUTE_") and name not in ("LUTE_IPC_PURE_PYTHON",):
            del os.environ[name]
    kind, family = transport.split("-")
    if family == "tcp":
        os.environ["LUTE_USE_TCP"] = "1"
        os.environ["LUTE_BIND_HOST"] = "127.0.0.1"
        os.environ["LUTE_EXECUTOR_HOST"] = "127.0.0.1"
    else:
        os.environ["LUTE_SOCKET"] = os.path.join(tempfile.mkdtemp(prefix="rt21"), "s")
    use_zmq = kind == "zmq"
    ex = SocketCommunicator(Party.EXECUTOR, use_zmq=use_zmq, require_auth=False if family == "tcp" else None)
    ex.delayed_setup()
    env = dict(os.environ, PYTHONPATH=REPO, LUTE_USE_ZMQ="1" if use_zmq else "0")
    return ex, env, use_zmq


def task(env, *args, shim=None):
    e = dict(env)
    if shim is not None:
        e["LUTE_IPC_SHIM"] = shim
    return subprocess.Popen([sys.executable, os.path.join(HERE, "rt21_tasks.py"), *map(str, args)], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def poll_has_messages(ex, stop, after=None):
    """A second thread of the Executor (a heartbeat or progress monitor) polling ``has_messages``
    every 5 ms until ``stop`` is set; from the exit of ``after`` on, when given."""

    def monitor():
        if after is not None:
            after.wait()
        while not stop.is_set():
            _ = ex.has_messages
            time.sleep(0.005)

    threading.Thread(target=monitor, daemon=True).start()


def drain(ex, limit, quiet):
    """Everything that arrives within ``limit`` s, stopping after ``quiet`` s with nothing."""
    out = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = ex.read_many(1000, wait=quiet)
        if not got:
            break
        out.extend(got)
    return out


def describe(msgs):
    return [[m.signal, len(m.contents) if isinstance(m.contents, (bytes, str)) else None] for m in msgs]


def stats_dict(ex):
    s = ex.stats
    return {k: getattr(s, k) for k in ("messages", "internal_errors", "framing_errors", "payload_errors",
                                      "connections_accepted", "unproven_closed", "idle_closed")
            if hasattr(s, k)}


def main() -> None:
    scenario, transport, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    ex, env, use_zmq = setup(transport)
    out = {"scenario": scenario, "transport": transport, "core": core_name()}
    try:
        if scenario == "loop":  # task kind + args, e.g. real-lute 1 3 16000000 exit
            shim = args[0]  # "0": LUTE's own ipc in the Task, "-": not set
            proc = task(env, *args[1:], shim=None if shim == "-" else shim)
            stop = threading.Event()
            if os.environ.get("RT21_MONITOR") == "1":  # a second thread polls has_messages
                poll_has_messages(ex, stop)
            got, final = lute_executor_loop(ex, proc)
            stop.set()
            proc.wait(30)
            out["returncode"] = proc.returncode
            out["stderr"] = proc.stderr.read().decode(errors="replace")[-800:]
            out["final_loop_s"] = round(final, 3)
            out["got"] = describe(got)
            out["late"] = describe(drain(ex, 6, 1.5))
        elif scenario == "relay":  # RATE DELAY SIZE: the Task reaches the Executor through a forwarder
            import logging

            records = []

            class Keep(logging.Handler):
                def emit(self, record):
                    records.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])

            logging.getLogger("lute_ipc").addHandler(Keep(logging.INFO))
            logging.getLogger("lute_ipc").setLevel(logging.INFO)
            rate, delay, size = args[0], args[1], int(args[2])
            target = os.environ.get("LUTE_PORT") or os.environ["LUTE_SOCKET"]
            listen = os.path.join(tempfile.mkdtemp(prefix="rt21relay"), "r")
            rel = task(env, "relay", listen, target, rate, delay, 25)
            assert rel.stdout.readline().strip() == b"ready"
            tenv = dict(env, LUTE_SOCKET=listen)
            tenv.pop("LUTE_USE_TCP", None)
            tenv.pop("LUTE_PORT", None)
            t0 = time.monotonic()
            if size:
                proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "socket_tasks", "lute_writer.py"),
                                         "1", str(size)], env=tenv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            else:
                proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "socket_tasks", "lute_writer.py"),
                                         "3"], env=tenv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            mark = len(records)
            monitor_stop = threading.Event()
            if len(args) > 3 and args[3] == "monitor":  # a second thread polls has_messages
                poll_has_messages(ex, monitor_stop, after=proc)  # (it learns of the exit first)
            got, final = lute_executor_loop(ex, proc)
            monitor_stop.set()
            out["task_exit_to_final_end_s"] = round(time.monotonic() - t0, 3)
            proc.wait(30)
            out["returncode"] = proc.returncode
            out["final_loop_s"] = round(final, 3)
            out["got"] = describe(got)
            out["logs_during_loop"] = records[mark:]
            out["late"] = describe(drain(ex, 15, 2.5))
            rel.kill()
            out["relay_stderr"] = rel.communicate()[1].decode(errors="replace")[-600:]
        elif scenario == "drift":  # junk connections first; then is an ended Task's exit wait still short?

            held = []
            for i in range(int(args[0])):
                c = connect_raw()
                if i % 4 == 0:
                    c.close()  # gone at once
                elif i % 4 == 1:
                    c.sendall(b"GET / HTTP/1.0\r\n\r\n" * 3)  # not ZMTP / not a frame
                    c.close()
                elif i % 4 == 2:
                    c.sendall(b"\xff" + b"\x00" * 8 + b"\x01\x7f")  # a ZMTP signature, then gone
                    c.close()
                else:
                    held.append(c)  # idle: closed by the peer's handshake/idle timeout, or by us
            time.sleep(0.5)
            for c in held:
                c.close()
            time.sleep(float(args[1]))  # let the Executor see the ends
            proc = task(env, "many-small", 2)
            got, final = lute_executor_loop(ex, proc)
            proc.wait(30)
            out["final_loop_s"] = round(final, 3)
            t0 = time.monotonic()
            proc2 = task(env, "many-small", 0)
            proc2.wait(30)
            ex.read(proc2)
            out["empty_task_exit_read_s"] = round(time.monotonic() - t0, 3)
            out["got"] = describe(got)
            out["late"] = describe(drain(ex, 3, 1))
        elif scenario == "hold":  # an idle connection held open; how long do the exit reads take?
            wait = float(args[0])
            ex.EXIT_READ_WAIT = wait

            if use_zmq:
                import zmq

                ctx = zmq.Context()
                hold = ctx.socket(zmq.PUSH)
                hold.connect(ex.address if ex.address and ex.address.startswith("tcp") else
                             ("tcp://127.0.0.1:" + os.environ["LUTE_PORT"] if "LUTE_PORT" in os.environ
                              else "ipc://" + os.environ["LUTE_SOCKET"]))
            else:
                hold = connect_raw()
            time.sleep(0.3)
            procs = [task(env, "many-small", 1) for _ in range(2)]
            for p in procs:
                p.wait(30)
            times = []
            order = [procs[0], procs[1], procs[0], procs[1]]
            got = 0
            for p in order:
                t0 = time.monotonic()
                if ex.read(p).signal is not None:
                    got += 1
                while ex.has_messages:
                    if ex.read(p).signal is not None:
                        got += 1
                times.append(round(time.monotonic() - t0, 3))
            t0 = time.monotonic()
            for _ in range(50):
                ex.read(procs[1])
                _ = ex.has_messages
            out["repeat_50_s"] = round(time.monotonic() - t0, 3)
            t0 = time.monotonic()
            ex.read(None)
            out["read_none_s"] = round(time.monotonic() - t0, 3)
            out["times"] = times
            out["got"] = got
        elif scenario == "close-during-wait":
            ex.EXIT_READ_WAIT = 5.0

            hold = connect_raw()
            proc = task(env, "many-small", 1)
            proc.wait(30)
            first = ex.read(proc, wait=5)
            out["first"] = first.signal
            result = {}
            proc2 = task(env, "many-small", 0)
            proc2.wait(30)

            # read(proc2) waits for the held connection; close from another thread meanwhile
            def reader_proc2():
                t0 = time.monotonic()
                try:
                    result["value"] = repr(ex.read(proc2))
                except Exception as exc:
                    result["value"] = type(exc).__name__ + ": " + str(exc)
                result["s"] = round(time.monotonic() - t0, 3)

            th = threading.Thread(target=reader_proc2)
            th.start()
            time.sleep(0.5)
            t0 = time.monotonic()
            stats = stats_dict(ex)
            ex.close()
            out["close_s"] = round(time.monotonic() - t0, 3)
            th.join(10)
            out["reader_alive"] = th.is_alive()
            out.update(result)
            out["stats"] = stats
            hold.close()
        else:
            raise SystemExit("unknown scenario")
        if "stats" not in out:
            out["stats"] = stats_dict(ex)
    finally:
        try:
            ex.close()
        except Exception as exc:
            out["close_error"] = repr(exc)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
