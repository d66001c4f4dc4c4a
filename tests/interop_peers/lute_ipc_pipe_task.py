"""A Task written with lute_ipc, talking to a LUTE Executor: pipe writes (paced so LUTE's reader,
which unpickles one object per read, sees one at a time), then request() answered on stdin.

LUTE's raw-socket reader delivers a connection's frames only when it closes, so the request
goes over a one-shot connection (RequestChannel's ``send``), as LUTE Tasks do.
"""
import time

from lute_ipc import Message, Party, PipeCommunicator, SocketCommunicator
from lute_ipc.requests import RequestChannel


def send_once(msg: Message) -> None:
    with SocketCommunicator(Party.TASK, use_zmq=False) as sock:
        sock.delayed_setup()
        sock.write(msg)


pipe = PipeCommunicator()
for msg in (Message("started", "TASK_STARTED"), Message({"result": [1, 2, 3]}, "TASK_RESULT")):
    pipe.write(msg)
    time.sleep(0.3)
reply = RequestChannel(send=send_once, stdin=pipe).request("RUNNING_TASKS", for_manager=True, timeout=20)
time.sleep(0.3)
pipe.write(Message(f"reply {type(reply).__module__}.{type(reply).__name__} {reply.response} TASK_RESPONSE",
                   "TASK_LOG"))
time.sleep(0.3)
pipe.write(Message("bye", "TASK_DONE"))
