"""A Task writing like the original LUTE, re-created for tests (no LUTE code).

usage: lute_writer.py COUNT [LAST_SIZE]
COUNT log messages, then (with LAST_SIZE) a log message and a TASK_RESULT of LAST_SIZE random
bytes each (as LUTE's SocketTester), which the Task has handed to its sockets when it exits (as
LUTE's does), not necessarily to its reader.
One new connection per message (raw Unix/TCP, or a ZeroMQ PUSH per message when
LUTE_USE_ZMQ is not "0"), frame MSG;;;<len>;;;<pickle>;;;GSM, unsigned, where the pickle is
of a Message class whose path is lute.execution.ipc.Message (a stand-in module is
registered so pickles name LUTE's class exactly as a LUTE Task's do).
"""

import os
import pickle
import socket
import sys
import types
from dataclasses import dataclass
from typing import Any, Optional


def fake_lute_message_class() -> type:
    for name in ("lute", "lute.execution", "lute.execution.ipc"):
        sys.modules.setdefault(name, types.ModuleType(name))
    module = sys.modules["lute.execution.ipc"]

    @dataclass
    class Message:
        contents: Optional[Any] = None
        signal: Optional[str] = None

    Message.__module__ = "lute.execution.ipc"
    Message.__qualname__ = "Message"
    module.Message = Message
    return Message


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj)
    return b"MSG" + b";;;" + str(len(data)).encode() + b";;;" + data + b";;;" + b"GSM"


def send(packed: bytes) -> None:
    if os.environ.get("LUTE_USE_ZMQ", "1") != "0":
        import zmq

        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        if "LUTE_USE_TCP" in os.environ:
            push.connect(f"tcp://127.0.0.1:{os.environ['LUTE_PORT']}")
        else:
            push.connect(f"ipc://{os.environ['LUTE_SOCKET']}")
        push.send(packed)
        push.close(linger=5000)
        ctx.term()
        return
    sock = connect_raw()
    sock.sendall(packed)
    sock.close()


def connect_raw() -> socket.socket:
    """A raw connection to the Executor's LUTE endpoint named by the environment (``LUTE_PORT`` on
    loopback when ``LUTE_USE_TCP`` is set, as LUTE decides, else the Unix socket ``LUTE_SOCKET``)."""
    if "LUTE_USE_TCP" in os.environ:
        return socket.create_connection(("127.0.0.1", int(os.environ["LUTE_PORT"])))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["LUTE_SOCKET"])
    return sock


def main() -> None:
    message_class = fake_lute_message_class()
    for i in range(int(sys.argv[1])):
        send(frame(message_class(contents=("lute", i, "a;;;GSM" if i % 2 else "plain"), signal="TASK_LOG")))
    if len(sys.argv) > 2:
        send(frame(message_class(contents=os.urandom(int(sys.argv[2])))))
        send(frame(message_class(contents=os.urandom(int(sys.argv[2])), signal="TASK_RESULT")))


if __name__ == "__main__":
    main()
