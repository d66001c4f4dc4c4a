"""What the Task process does in the socket scenarios, for each contender.

Every body follows one script on the control channel: receive the set-up (environment
and address), prepare (connect, for a persistent connection; build the frames), answer
``ready``, wait for ``go``, note the time, write ``count`` messages, close, and send
the time of the first write. ``stream``: one persistent connection; ``per-message``: a
new connection (a new communicator, for lute_ipc) for every message, as a LUTE Task does.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Dict, List

from ..message import Message, Party
from . import payloads
from .control import Control
from .lute_algorithm import lute_encode

SETUP_TIMEOUT = 60.0


def task_body(contender: str, mode: str, shape: str, count: int) -> Callable[[Control], None]:
    """The function a forked Task runs for ``contender`` in ``mode`` (``stream`` or ``per-message``)."""

    def body(control: Control) -> None:
        setup = control.receive(SETUP_TIMEOUT)
        for name in [n for n in os.environ if n.startswith("LUTE_") and n != "LUTE_IPC_PURE_PYTHON"]:
            del os.environ[name]
        os.environ.update(setup["env"])
        runner = _RUNNERS[contender]
        first = runner(control, mode, payloads.messages(shape, count), setup["address"], contender)
        control.send({"first_write": first})

    return body


def wait_for_go(control: Control) -> float:
    """Answer ``ready``, wait for ``go``; returns the time (``perf_counter``) the Task starts writing."""
    control.send("ready")
    if control.receive(SETUP_TIMEOUT) != "go":
        raise RuntimeError("expected 'go' on the control channel")
    return time.perf_counter()


def _lute_ipc(control: Control, mode: str, msgs: List[Message], address: Any, contender: str) -> float:
    from ..sockets import SocketCommunicator

    use_zmq = contender.endswith("-zmq")
    if contender == "lute_ipc-cython-result":
        msgs = [Message(contents=msg.contents, signal="TASK_RESULT") for msg in msgs]
    if mode == "stream":
        comm = SocketCommunicator(Party.TASK, use_zmq=use_zmq)
        comm.delayed_setup()
        first = wait_for_go(control)
        write = comm.write
        for msg in msgs:
            write(msg)
        # This forked Task ends with os._exit, which skips the at-exit wait for the Executor's
        # acknowledgement: wait here (a Task closing a TCP socket with the acknowledgements
        # unread resets it, and the Executor's kernel drops what it had not read yet).
        comm.confirm()
        comm.clear_communicator()
        return first
    first = wait_for_go(control)
    for i, msg in enumerate(msgs):  # what a LUTE Task does for every message
        comm = SocketCommunicator(Party.TASK, use_zmq=use_zmq)
        comm.delayed_setup()
        comm.write(msg)
        if i == len(msgs) - 1:
            comm.confirm()  # as above
        comm.clear_communicator()
    return first


def _lute_lcls(control: Control, mode: str, msgs: List[Message], address: Any, contender: str) -> float:
    """The real LUTE (``lute-lcls``) Task side: a new communicator per message."""
    from .lute_lcls import lute_ipc_module

    ipc = lute_ipc_module(contender.endswith("-zmq"))
    lute_msgs = [ipc.Message(contents=msg.contents, signal=msg.signal) for msg in msgs]
    first = wait_for_go(control)
    for msg in lute_msgs:
        comm = ipc.SocketCommunicator(ipc.Party.TASK)
        comm.delayed_setup()
        comm.write(msg)
        comm.clear_communicator()
    return first


def connect(address: Any) -> socket.socket:
    """A stream socket connected to ``address``: a Unix path (str) or ``[host, port]``."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
        return sock
    sock = socket.create_connection((address[0], address[1]))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _lute(control: Control, mode: str, msgs: List[Message], address: Any, contender: str) -> float:
    frames = [lute_encode(msg) for msg in msgs]
    if mode == "stream":
        sock = connect(address)
        first = wait_for_go(control)
        for frame in frames:
            sock.sendall(frame)
        sock.close()
        return first
    first = wait_for_go(control)
    for frame in frames:  # LUTE's Task: connect, send one frame, close
        sock = connect(address)
        sock.sendall(frame)
        sock.close()
    return first


def _raw(control: Control, mode: str, msgs: List[Message], address: Any, contender: str) -> float:
    from ..framing import encode_frame

    frames = [encode_frame(msgs[0])] * len(msgs) if all(msg is msgs[0] for msg in msgs) \
        else [encode_frame(msg) for msg in msgs]
    if mode == "stream":
        stream = b"".join(frames)
        sock = connect(address)
        first = wait_for_go(control)
        sock.sendall(stream)
        sock.close()
        return first
    first = wait_for_go(control)
    for frame in frames:
        sock = connect(address)
        sock.sendall(frame)
        sock.close()
    return first


def _mp_address(address: Any) -> Any:
    return address if isinstance(address, str) else (address[0], address[1])


def _mp_connection(control: Control, mode: str, msgs: List[Message], address: Any, contender: str) -> float:
    from multiprocessing.connection import Client

    target = _mp_address(address)
    if mode == "stream":
        conn = Client(target)
        first = wait_for_go(control)
        send = conn.send
        for msg in msgs:
            send(msg)
        conn.close()
        return first
    first = wait_for_go(control)
    for msg in msgs:
        conn = Client(target)
        conn.send(msg)
        conn.close()
    return first


def _pyzmq(control: Control, mode: str, msgs: List[Message], address: Any, contender: str) -> float:
    import zmq

    context = zmq.Context()
    try:
        if mode == "stream":
            push = context.socket(zmq.PUSH)
            push.set_hwm(160000)
            push.connect(address)
            first = wait_for_go(control)
            send = push.send_pyobj
            for msg in msgs:
                send(msg)
            push.close(linger=-1)
            return first
        first = wait_for_go(control)
        for msg in msgs:  # a socket per message, as LUTE's ZeroMQ Task does per communicator
            push = context.socket(zmq.PUSH)
            push.connect(address)
            push.send_pyobj(msg)
            push.close(linger=-1)
        return first
    finally:
        context.term()


_RUNNERS: Dict[str, Callable[[Control, str, List[Message], Any, str], float]] = {
    "lute_ipc-cython": _lute_ipc,
    "lute_ipc-cython-zmq": _lute_ipc,
    "lute-lcls": _lute_lcls,
    "lute-lcls-zmq": _lute_lcls,
    "lute_ipc-cython-result": _lute_ipc,
    "lute_ipc-cython-read": _lute_ipc,
    "lute_ipc-pure": _lute_ipc,
    "lute": _lute,
    "mp-connection": _mp_connection,
    "pyzmq": _pyzmq,
    "raw-bytes": _raw,
}


