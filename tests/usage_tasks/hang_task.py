"""A Task that reports TASK_STARTED and then never ends (optionally ignoring SIGTERM)."""

import signal
import sys
import time

from lute_ipc import Message
from lute_ipc.task import report

if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
report(Message(signal="TASK_STARTED"))
report(Message(contents={"hanging": True}))
while True:
    time.sleep(1)
