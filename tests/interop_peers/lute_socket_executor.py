"""An Executor side written with the real LUTE (lute-lcls 0.3.0) SocketCommunicator.

argv: zmq ("0"/"1"), expected message count, timeout seconds. Prints one JSON line with the
environment a Task needs, then (after reading) one line: the received messages as
(class module, class name, contents repr, signal) tuples, pickled and hex-encoded.
"""
import json
import os
import pickle
import sys
import time

# LUTE 0.3.0 imports zmq only when LUTE_USE_ZMQ is unset (LUTE_USE_ZMQ=1 raises NameError
# at delayed_setup), so ZeroMQ is chosen by leaving it unset.
if sys.argv[1] == "0":
    os.environ["LUTE_USE_ZMQ"] = "0"
else:
    os.environ.pop("LUTE_USE_ZMQ", None)
expected, timeout = int(sys.argv[2]), float(sys.argv[3])

from lute.execution.ipc import Party, SocketCommunicator  # noqa: E402

comm = SocketCommunicator(Party.EXECUTOR)
comm.delayed_setup()
print(json.dumps({k: os.environ[k] for k in ("LUTE_SOCKET", "LUTE_EXECUTOR_HOST")}), flush=True)
received = []
deadline = time.monotonic() + timeout
while len(received) < expected and time.monotonic() < deadline:
    msg = comm.read(None)
    if msg.contents is not None or msg.signal is not None:
        received.append((type(msg).__module__, type(msg).__name__, repr(msg.contents), msg.signal))
comm.clear_communicator()
print(pickle.dumps(received).hex(), flush=True)
