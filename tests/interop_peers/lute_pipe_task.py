"""A Task written with the real LUTE (lute-lcls 0.3.0): PipeCommunicator writes with print()s between.

Run with python -O: LUTE configures DEBUG logging to stderr at import otherwise.

Then, if argv[1] == "request": sends a TaskRequestMessage over LUTE's SocketCommunicator and waits
for the reply on stdin with LUTE's PipeCommunicator().read(wait=...), printing it to stderr as
``REPLY <repr(contents)> <signal>`` (stdout is the data channel).
"""
import os
import sys

os.environ["LUTE_USE_ZMQ"] = "0"
from lute.execution import ipc  # noqa: E402

os.set_blocking(sys.stdin.fileno(), False)  # as LUTE's Task does before reading replies
comm = ipc.PipeCommunicator()
comm.write(ipc.Message(contents="started", signal="TASK_STARTED"))
print("a plain print() line")
sys.stdout.flush()
comm.write(ipc.Message(contents={"result": [1, 2, 3]}, signal="TASK_RESULT"))
comm.write(ipc.Message(contents="text with ;;;GSM and \u20ac", signal="TASK_LOG"))
if len(sys.argv) > 1 and sys.argv[1] == "request":
    sock = ipc.SocketCommunicator()
    sock.delayed_setup()
    sock.write(ipc.TaskRequestMessage(contents=ipc.TaskRequest(request="RUNNING_TASKS", for_manager=True)))
    sock.clear_communicator()
    reply = ipc.PipeCommunicator().read(wait=20)
    print(f"REPLY {reply.contents!r} {reply.signal}", file=sys.stderr, flush=True)
comm.write(ipc.Message(contents="bye", signal="TASK_DONE"))
