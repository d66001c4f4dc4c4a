"""A lute_ipc Task for LUTE's own Executor (no LUTE_IPC_PROTOCOL in its environment).

usage: lute_peer_task.py LOGS MODE
Writes LOGS TASK_LOG messages, then a TASK_RESULT (a dict with a list of 10,000 floats),
then TASK_DONE, through SocketCommunicator(Party.TASK) on raw sockets; MODE ``per-message``
creates a communicator per message (LUTE's own pattern), ``persistent`` one for all.
"""

import os
import sys

from lute_ipc import Message, Party, SocketCommunicator


def messages(logs: int) -> list:
    out = [Message(f"log line {i}", "TASK_LOG") for i in range(logs)]
    out.append(Message({"result": [float(i) for i in range(10000)]}, "TASK_RESULT"))
    out.append(Message("done", "TASK_DONE"))
    return out


def main() -> None:
    assert "LUTE_IPC_PROTOCOL" not in os.environ
    logs, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "per-message":
        for msg in messages(logs):
            comm = SocketCommunicator(Party.TASK, use_zmq=False)
            comm.delayed_setup()
            comm.write(msg)
            comm.clear_communicator()
        return
    with SocketCommunicator(Party.TASK, use_zmq=False) as comm:
        for msg in messages(logs):
            comm.write(msg)


if __name__ == "__main__":
    main()
