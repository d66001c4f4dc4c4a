"""A Task writing COUNT numbered messages (i, 3 KB of text) as fast as it can, then closing (confirmed delivery).

usage: slow_consumer_task.py COUNT [lute]
``lute``: drop LUTE_IPC_PROTOCOL first, so the Task speaks LUTE's plain frames.
Prints "done" once close() returned; an error makes it exit 3 with the error on stderr.
"""

import os
import sys

from lute_ipc import Message, Party, SocketCommunicator

PAD = "x" * 3000  # frames of ~3 KB: a socket read (256 KiB) ends inside one, as it did in the reports


def main() -> None:
    count = int(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "lute":
        os.environ.pop("LUTE_IPC_PROTOCOL", None)
    try:
        with SocketCommunicator(Party.TASK, use_zmq=False) as comm:
            for i in range(count):
                comm.write(Message(contents=(i, PAD), signal="TASK_LOG"))
    except Exception as exc:
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        sys.exit(3)
    print("done", flush=True)


if __name__ == "__main__":
    main()
