"""A Task using lute_ipc.task.report in various ways.

argv: MODE [N]
  plain   N objects + N//10 short texts + one long text, then TASK_DONE
  threads 8 threads x N objects each (contents: (thread, i))
  fork    N objects from the parent and N from a forked child (contents: (pid-role, i))
  reopen  N objects, close_reporter(), N more
"""

import os
import sys
import threading

from lute_ipc import Message
from lute_ipc.task import PIPE_TEXT_LIMIT, close_reporter, get_reporter, report

mode = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 100

if mode == "plain":
    for i in range(count):
        report(Message(contents={"i": i}))
        if i % 10 == 0:
            report(Message(contents=f"text {i}"))
    report(Message(contents="L" * (PIPE_TEXT_LIMIT + 1), signal="TASK_RESULT"))
elif mode == "threads":
    def work(t: int) -> None:
        for i in range(count):
            report(Message(contents=(t, i)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
elif mode == "fork":
    report(Message(contents=("parent", -1)))  # the parent's connection exists before the fork
    pid = os.fork()
    role = "child" if pid == 0 else "parent"
    for i in range(count):
        report(Message(contents=(role, i)))
    if pid == 0:
        close_reporter()
        os._exit(0)
    os.waitpid(pid, 0)
elif mode == "reopen":
    for i in range(count):
        report(Message(contents=("first", i)))
    first = get_reporter()
    close_reporter()
    for i in range(count):
        report(Message(contents=("second", i)))
    assert get_reporter() is not first
report(Message(signal="TASK_DONE"))
