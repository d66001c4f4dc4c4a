"""A Task that reads one Message from its stdin (sent by the Executor) and reports it back."""

from lute_ipc import Message, Party, PipeCommunicator
from lute_ipc.task import report

pipe = PipeCommunicator(Party.TASK)
msg = Message()
for _ in range(100):
    msg = pipe.read(wait=0.1)
    if msg.contents is not None or msg.signal is not None:
        break
report(Message(contents={"echo": msg.contents, "signal": msg.signal}, signal="TASK_RESULT"))
report(Message(signal="TASK_DONE"))
