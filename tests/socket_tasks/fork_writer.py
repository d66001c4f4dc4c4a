"""A Task that forks while holding a SocketCommunicator, and writes from both processes.

usage: fork_writer.py COUNT
The parent writes Message(("parent", 0)), forks; the child writes COUNT messages
("child", i) through the communicator it inherited and exits normally (sys.exit), the parent
waits for it, then writes COUNT messages ("parent", i) for i in 1..COUNT and closes.
Prints the child's exit status and any error as one line: "child=<status> error=<text>".
"""

import os
import sys

from lute_ipc import Message, Party, SocketCommunicator


def main() -> None:
    count = int(sys.argv[1])
    comm = SocketCommunicator(Party.TASK, flush_interval=0.05)
    comm.delayed_setup()
    comm.write(Message(contents=("parent", 0), signal="TASK_LOG"))
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for i in range(count):
                comm.write(Message(contents=("child", i), signal="TASK_LOG"))
            comm.close()
        except BaseException as exc:  # reported through the exit status
            sys.stderr.write(f"child error: {type(exc).__name__}: {exc}\n")
            code = 3
        sys.stdout.flush()
        sys.exit(code)
    _, status = os.waitpid(pid, 0)
    for i in range(1, count + 1):
        comm.write(Message(contents=("parent", i), signal="TASK_LOG"))
    comm.close()
    print(f"child={os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
