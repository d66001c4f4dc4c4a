"""LUTE's own (lute-lcls 0.3.0) Executor-side SocketCommunicator on ZeroMQ, Unix or TCP.

argv: tcp ("0"/"1"), expected message count, timeout seconds. Prints one JSON line with the
environment a Task needs, then, after reading, one line: a hex-encoded pickle of
``{"received": [(class module, class name, signal, summary)], "clean": bool}`` where
``summary`` is the contents' repr (an array: its type, shape and sum) and ``clean`` tells that
LUTE's decoder holds no unfinished message (``_partial_msg``) at the end.
"""
import json
import os
import pickle
import sys
import time

os.environ.pop("LUTE_USE_ZMQ", None)  # LUTE 0.3.0 picks ZeroMQ when the variable is unset
if sys.argv[1] == "1":
    os.environ["LUTE_USE_TCP"] = "1"
else:
    os.environ.pop("LUTE_USE_TCP", None)
expected, timeout = int(sys.argv[2]), float(sys.argv[3])

from lute.execution.ipc import Party, SocketCommunicator  # noqa: E402


def summary(contents: object) -> str:
    shape = getattr(contents, "shape", None)
    if shape is not None:
        return f"{type(contents).__name__} {shape} {float(contents.sum())}"
    return repr(contents)


comm = SocketCommunicator(Party.EXECUTOR)
comm.delayed_setup()
names = ("LUTE_SOCKET", "LUTE_PORT", "LUTE_EXECUTOR_HOST", "LUTE_USE_TCP")
print(json.dumps({k: os.environ[k] for k in names if k in os.environ}), flush=True)
received = []
deadline = time.monotonic() + timeout
while len(received) < expected and time.monotonic() < deadline:
    msg = comm.read(None)
    if msg.contents is not None or msg.signal is not None:
        received.append((type(msg).__module__, type(msg).__name__, msg.signal, summary(msg.contents)))
time.sleep(0.2)  # anything sent after the expected messages (e.g. padding) reaches the decoder
clean = not comm._partial_msg and comm._msg_queue.qsize() == 0
comm.clear_communicator()
print(pickle.dumps({"received": received, "clean": clean}).hex(), flush=True)
