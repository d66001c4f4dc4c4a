"""A Task that reports which frame codec it runs, then writes COUNT messages (persistent connection)."""

import sys

from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc.framing import IMPLEMENTATION


def main() -> None:
    comm = SocketCommunicator(Party.TASK)
    comm.delayed_setup()
    comm.write(Message(contents=IMPLEMENTATION, signal="TASK_STARTED"))
    for i in range(int(sys.argv[1])):
        comm.write(Message(contents=("impl", i, ";;;GSM" * (i % 3)), signal="TASK_LOG"))
    comm.write(Message(signal="TASK_DONE"))
    comm.clear_communicator()


if __name__ == "__main__":
    main()
