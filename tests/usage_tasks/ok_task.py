"""A well-behaved Task: signals and text on the pipes, objects, a result and logs on the socket."""

import argparse
import logging

from lute_ipc import Message
from lute_ipc.log_handler import SocketLogHandler
from lute_ipc.task import report

parser = argparse.ArgumentParser()
parser.add_argument("--objects", type=int, default=100)
parser.add_argument("--signal", default="TASK_DONE", help="final signal ('' for none)")
parser.add_argument("--exit-code", type=int, default=0)
args = parser.parse_args()

handler = SocketLogHandler()
logger = logging.getLogger("usage.ok_task")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False

report(Message(signal="TASK_STARTED"))
print("hello from print()", flush=True)
report(Message(contents="short text report"))
for i in range(args.objects):
    report(Message(contents={"i": i}))
logger.info("logged through the socket")
report(Message(contents={"answer": 42}, signal="TASK_RESULT"))
handler.close()
if args.signal:
    report(Message(signal=args.signal))
raise SystemExit(args.exit_code)
