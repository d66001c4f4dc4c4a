"""An Executor side written with the real LUTE (lute-lcls 0.3.0): runs a Task command and reads it with
LUTE's PipeCommunicator (and SocketCommunicator for requests, answered on the Task's stdin).

argv: the Task command. PEER_PLAIN_REPLY=1: answer requests with a plain ``Message(contents=...)``,
as LUTE's own Executor does, instead of a TaskResponseMessage. Prints, as its last stdout line, the hex of a pickled list of
(repr(contents), signal) it read.
"""
import os
import pickle
import subprocess
import sys
import time

os.environ["LUTE_USE_ZMQ"] = "0"
from lute.execution import ipc  # noqa: E402

sock = ipc.SocketCommunicator(ipc.Party.EXECUTOR)
sock.delayed_setup()
proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        env=dict(os.environ))
for stream in (proc.stdin, proc.stdout, proc.stderr):
    os.set_blocking(stream.fileno(), False)
pipe = ipc.PipeCommunicator(ipc.Party.EXECUTOR)
seen = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    msg = pipe.read(proc)
    if msg.contents is not None or msg.signal is not None:
        seen.append((repr(msg.contents), msg.signal))
    request = sock.read(proc)
    if request.signal == "TASK_REQUEST":
        seen.append((repr(request.contents), request.signal))
        if os.environ.get("PEER_PLAIN_REPLY"):  # what LUTE's Executor itself sends (its task_request hook)
            pipe.write(ipc.Message(contents={"managed_tasks": ["task-a", "task-b"]}), proc)
        else:
            pipe.write(ipc.TaskResponseMessage(contents=ipc.TaskResponse(response=["task-a", "task-b"])), proc)
    if proc.poll() is not None and not sock.has_messages:
        msg = pipe.read(proc)
        if msg.contents is not None or msg.signal is not None:
            seen.append((repr(msg.contents), msg.signal))
        break
    time.sleep(0.01)
sock.clear_communicator()
print(pickle.dumps(seen).hex(), flush=True)
