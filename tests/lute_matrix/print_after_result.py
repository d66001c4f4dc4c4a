"""A third-party program for LUTE's ``BinaryTester`` (``TestBinary``): LUTE execs it in place of
its Task process. It reports a ``TASK_RESULT`` through ``lute.execution.ipc`` as LUTE's Tasks do,
then keeps printing while it shuts down: output LUTE's Executor captures in its final read."""

import time

from lute.execution.ipc import Message, SocketCommunicator
from lute.tasks.dataclasses import TaskResult, TaskStatus

print("binary started", flush=True)
result = TaskResult(task_name="TestBinary", task_status=TaskStatus.COMPLETED, summary="binary result",
                    payload="printed after its result")
comm = SocketCommunicator()
comm.delayed_setup()
comm.write(Message(contents=result, signal="TASK_RESULT"))
comm.clear_communicator()
time.sleep(0.5)
print("printed after TASK_RESULT", flush=True)
time.sleep(0.5)
print("last words after TASK_RESULT", flush=True)
