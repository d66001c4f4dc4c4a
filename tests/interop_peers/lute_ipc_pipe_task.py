"""A Task written with lute_ipc, talking to a LUTE Executor: pipe writes (paced so LUTE's reader,
which unpickles one object per read, sees one at a time), then a request answered on stdin."""
import sys
import time

from lute_ipc import Message, Party, PipeCommunicator, SocketCommunicator, TaskRequest, TaskRequestMessage

pipe = PipeCommunicator()
for msg in (Message("started", "TASK_STARTED"), Message({"result": [1, 2, 3]}, "TASK_RESULT")):
    pipe.write(msg)
    time.sleep(0.3)
with SocketCommunicator(Party.TASK, use_zmq=False) as sock:
    sock.delayed_setup()
    sock.write(TaskRequestMessage(TaskRequest("RUNNING_TASKS", for_manager=True)))
reply = pipe.read(wait=20)
time.sleep(0.3)
pipe.write(Message(f"reply {type(reply.contents).__module__}.{type(reply.contents).__name__} "
                   f"{reply.contents.response if reply.contents is not None else None} {reply.signal}", "TASK_LOG"))
time.sleep(0.3)
pipe.write(Message("bye", "TASK_DONE"))
