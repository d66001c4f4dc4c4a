"""A Task that announces NO_PICKLE_MODE and then writes text on the pipes, as LUTE allows."""

from lute_ipc import Message, Party, PipeCommunicator
from lute_ipc.task import report

report(Message(signal="NO_PICKLE_MODE"))
text_pipe = PipeCommunicator(Party.TASK, use_pickle=False)
for i in range(3):
    text_pipe.write(Message(contents=f"plain text {i}", signal="TASK_LOG"))
report(Message(signal="TASK_DONE"))
