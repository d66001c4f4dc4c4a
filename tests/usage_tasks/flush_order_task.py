"""A Task that, N times: logs a line, flushes its SocketLogHandler, then reports a TASK_RESULT
(lute_ipc.task.report: another connection). Each flushed line must reach the Executor first."""

import logging
import sys

from lute_ipc import Message
from lute_ipc.log_handler import SocketLogHandler
from lute_ipc.task import close_reporter, report

rounds = int(sys.argv[1])
handler = SocketLogHandler()
logger = logging.getLogger("usage.flush_order_task")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False
for i in range(rounds):
    logger.info("done %d", i)
    handler.flush()
    report(Message(contents={"round": i}, signal="TASK_RESULT"))
logger.removeHandler(handler)
handler.close()
close_reporter()
