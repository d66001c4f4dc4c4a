"""A Task that writes with a long latency bound, then leaves in one of several ways.

usage: sender_exit.py MODE COUNT
  no-close  write COUNT TASK_LOG messages and return without closing (atexit must flush)
  sigkill   write COUNT, flush(), write COUNT more, then SIGKILL itself: the second
            COUNT were never flushed and are lost (documented)
Each message is Message(contents=i, signal="TASK_LOG"). Prints "flushed" after flush().
"""

import os
import signal
import sys
import time

from lute_ipc import Message, Party, SocketCommunicator


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    comm = SocketCommunicator(Party.TASK, flush_interval=60.0, flush_size=1 << 30)
    comm.delayed_setup()
    for i in range(count):
        comm.write(Message(contents=i, signal="TASK_LOG"))
    if mode == "no-close":
        return
    comm.flush()
    print("flushed", flush=True)
    for i in range(count, 2 * count):
        comm.write(Message(contents=i, signal="TASK_LOG"))
    time.sleep(0.3)  # ZeroMQ: let its I/O thread deliver what flush() handed it
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
