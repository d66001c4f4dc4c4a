"""A Task that sends a burst on both channels and exits at once (the Executor must drain).

argv: N [--os-exit]  (--os-exit: skip atexit; raw socket data is already in the kernel)
"""

import os
import sys

from lute_ipc import Message
from lute_ipc.task import report

count = int(sys.argv[1])
for i in range(count):
    report(Message(contents={"i": i, "pad": "z" * 100}))
    if i % 100 == 0:
        report(Message(contents=f"pipe {i}"))
report(Message(signal="TASK_DONE"))
if "--os-exit" in sys.argv:
    sys.stdout.flush()
    os._exit(0)
