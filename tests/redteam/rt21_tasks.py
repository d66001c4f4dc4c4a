"""Task scripts of red-team 21 (exit read). Run as ``python rt21_tasks.py KIND ...``.

real-lute ZMQ COUNT SIZE END : LUTE 0.3.0's own Task side (run it with LUTE_IPC_SHIM=0): one
    SocketCommunicator per message (LUTE's pattern), COUNT TASK_LOGs then a log and a TASK_RESULT
    of SIZE random bytes; END is "exit" (return normally) or "kill" (SIGKILL itself at once).
raw-kill SIZE : a LUTE-like raw Task (no LUTE code): sendall one frame of SIZE bytes
    (TASK_RESULT), then SIGKILL itself without closing.
many-small COUNT : COUNT TASK_LOGs, one raw/ZeroMQ connection each (LUTE-like), then exit.
lute-writer COUNT [SIZE] : tests/socket_tasks/lute_writer.py.
ipc-kill SIZE END : a lute_ipc Task: a TASK_LOG, a SIZE-byte TASK_RESULT, flush(), then END
    ("kill": SIGKILL, "_exit": os._exit(0), else close(); "confirm-kill", "confirm-_exit": confirm() first).
fork-hold SECONDS : write one TASK_LOG (LUTE-like, new connection), then fork a grandchild that
    opens a raw connection to the Executor and holds it idle SECONDS; the Task exits at once.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def real_lute(use_zmq: str, count: int, size: int, end: str) -> None:
    if use_zmq == "0":
        os.environ["LUTE_USE_ZMQ"] = "0"
    else:  # LUTE 0.3.0 picks ZeroMQ when LUTE_USE_ZMQ is unset
        os.environ.pop("LUTE_USE_ZMQ", None)
    from lute.execution import ipc

    assert "lute_ipc" not in getattr(ipc, "__file__", ""), ipc.__file__  # LUTE's own ipc

    def send(msg: object) -> None:
        comm = ipc.SocketCommunicator()
        comm.delayed_setup()
        comm.write(msg)
        comm.clear_communicator()

    for i in range(count):
        send(ipc.Message(contents=f"log {i}", signal="TASK_LOG"))
    if size:
        send(ipc.Message(contents=os.urandom(size)))
        send(ipc.Message(contents=os.urandom(size), signal="TASK_RESULT"))
    if end == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


def raw_kill(size: int) -> None:

    from tests.socket_tasks.lute_writer import connect_raw, fake_lute_message_class, frame

    cls = fake_lute_message_class()
    packed = frame(cls(contents=os.urandom(size), signal="TASK_RESULT"))
    sock = connect_raw()
    sock.sendall(packed)
    os.kill(os.getpid(), signal.SIGKILL)


def many_small(count: int) -> None:
    from tests.socket_tasks.lute_writer import fake_lute_message_class, frame, send

    cls = fake_lute_message_class()
    for i in range(count):
        send(frame(cls(contents=f"small {i}", signal="TASK_LOG")))


def fork_hold(seconds: float) -> None:

    from tests.socket_tasks.lute_writer import connect_raw, fake_lute_message_class, frame, send

    cls = fake_lute_message_class()
    send(frame(cls(contents="before fork", signal="TASK_LOG")))
    if os.fork() == 0:
        os.setsid()
        sock = connect_raw()
        os.close(1)
        os.close(2)
        time.sleep(seconds)
        sock.close()
        os._exit(0)


def relay(listen: str, target: str, rate: float, delay: float, seconds: float) -> None:
    """A forwarder (an SSH tunnel, a slow or distant link): each connection made to the Unix
    socket ``listen`` is read to its end (as a tunnel's buffers take what the Task sends), then,
    ``delay`` seconds later, forwarded to ``target`` (a port on loopback, or a Unix socket path)
    at ``rate`` bytes/s (0: unlimited). One connection after the other; serves ``seconds`` s."""
    import socket

    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(listen)
    lst.listen(64)
    lst.settimeout(0.2)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn, _ = lst.accept()
        except socket.timeout:
            continue
        conn.setblocking(True)
        data = bytearray()
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        conn.close()
        time.sleep(delay)
        if target.isdigit():
            up = socket.create_connection(("127.0.0.1", int(target)))
        else:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(target)
        step = 65536 if not rate else max(1, int(rate / 20))
        for at in range(0, len(data), step):
            up.sendall(bytes(data[at:at + step]))
            if rate:
                time.sleep(0.05)
        up.close()
        sys.stderr.write(f"forwarded {len(data)}\n")
        sys.stderr.flush()


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "real-lute":
        real_lute(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif kind == "raw-kill":
        raw_kill(int(sys.argv[2]))
    elif kind == "many-small":
        many_small(int(sys.argv[2]))
    elif kind == "fork-hold":
        fork_hold(float(sys.argv[2]))
    elif kind == "ipc-kill":  # lute_ipc Task: a log, a SIZE-byte TASK_RESULT, flush(), then END
        from lute_ipc import Message, Party, SocketCommunicator

        comm = SocketCommunicator(Party.TASK)
        comm.delayed_setup()
        comm.write(Message("first", "TASK_LOG"))
        comm.write(Message(os.urandom(int(sys.argv[2])), "TASK_RESULT"))
        comm.flush()
        if sys.argv[3].startswith("confirm"):  # confirm-kill, confirm-_exit: confirm() first
            comm.confirm()
            sys.argv[3] = sys.argv[3][len("confirm-"):]
        if sys.argv[3] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif sys.argv[3] == "_exit":
            os._exit(0)
        comm.close()
    elif kind == "lute-writer":  # tests/socket_tasks/lute_writer.py COUNT [LAST_SIZE]
        from tests.socket_tasks import lute_writer

        sys.argv = [lute_writer.__file__] + sys.argv[2:]
        lute_writer.main()
    elif kind == "relay":
        relay(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
    else:
        raise SystemExit(f"unknown kind {kind}")
