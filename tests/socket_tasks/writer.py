"""A Task that writes messages through lute_ipc's SocketCommunicator.

usage: writer.py COUNT MODE PAYLOAD [TAG]
  MODE     persistent: one communicator, then waits for stdin to close before closing
           persistent-exit: one communicator, closes right after writing
           per-message: LUTE's pattern, delayed_setup/write/clear_communicator per message
  PAYLOAD  small (about 140-byte frames) | gsm (payloads full of ;;;GSM and MSG;;;)
Each message is Message(contents=(TAG, i, payload), signal="TASK_LOG").
The transport comes from the environment (LUTE_USE_ZMQ chooses raw or ZeroMQ).
"""

import sys

from lute_ipc import Message, Party, SocketCommunicator


def payload_for(kind: str, i: int) -> object:
    if kind == "gsm":
        return f"log line {i} ;;;GSM ;;; MSG;;;12;;;".encode() + b"\x80\x04;;;GSM" * (i % 5)
    return "x" * 60


def main() -> None:
    count, mode, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    tag = sys.argv[4] if len(sys.argv) > 4 else "t"
    if mode == "per-message":
        for i in range(count):
            comm = SocketCommunicator(Party.TASK)
            comm.delayed_setup()
            comm.write(Message(contents=(tag, i, payload_for(kind, i)), signal="TASK_LOG"))
            comm.clear_communicator()
        return
    comm = SocketCommunicator(Party.TASK)
    comm.delayed_setup()
    for i in range(count):
        comm.write(Message(contents=(tag, i, payload_for(kind, i)), signal="TASK_LOG"))
    if mode == "persistent":
        sys.stdin.read()  # the test closes stdin once it has read everything
    comm.clear_communicator()


if __name__ == "__main__":
    main()
