"""A Task written with the real LUTE (lute-lcls 0.3.0): one SocketCommunicator per message, as LUTE Tasks do.

argv: zmq ("0"/"1"), then the messages to send as a pickled list on stdin.
"""
import os
import pickle
import sys

# LUTE 0.3.0 imports zmq only when LUTE_USE_ZMQ is unset (LUTE_USE_ZMQ=1 raises NameError
# at delayed_setup), so ZeroMQ is chosen by leaving it unset.
if sys.argv[1] == "0":
    os.environ["LUTE_USE_ZMQ"] = "0"
else:
    os.environ.pop("LUTE_USE_ZMQ", None)

from lute.execution import ipc  # noqa: E402

mapping = {"Message": ipc.Message, "TaskRequestMessage": ipc.TaskRequestMessage,
           "TaskRequest": ipc.TaskRequest, "TaskMetadataMessage": ipc.TaskMetadataMessage}
for kind, contents, signal in pickle.loads(sys.stdin.buffer.read()):
    if kind == "TaskRequestMessage":
        msg = ipc.TaskRequestMessage(contents=ipc.TaskRequest(**contents))
    elif kind == "TaskMetadataMessage":
        msg = ipc.TaskMetadataMessage(contents=contents)
    else:
        msg = ipc.Message(contents=contents, signal=signal)
    comm = ipc.SocketCommunicator()
    comm.delayed_setup()
    comm.write(msg)
    comm.clear_communicator()
print("sent", flush=True)
