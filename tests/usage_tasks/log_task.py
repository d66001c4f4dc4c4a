"""A Task that logs N records through a SocketLogHandler, then exits (logging.shutdown delivers)."""

import logging
import sys

from lute_ipc.log_handler import SocketLogHandler

count = int(sys.argv[1])
handler = SocketLogHandler(structured="--structured" in sys.argv)
logger = logging.getLogger("usage.log_task")
logger.addHandler(handler)
logger.setLevel(logging.DEBUG)
logger.propagate = False
for i in range(count):
    logger.info("record %d with ;;; and ;;;GSM inside", i)
print(f"sent={handler.sent} buffered={handler.buffered}", flush=True)
