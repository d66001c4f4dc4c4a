"""A Task that writes large messages: lute_ipc's session, or LUTE's plain frames on a raw socket.

usage: large_writer.py MODE COUNT SIZE
  MODE  session: lute_ipc's SocketCommunicator (a raw session)
        plain: LUTE's unsigned frames MSG;;;<len>;;;<pickle>;;;GSM on one Unix connection
Message i is Message(contents=bytes([i]) * SIZE, signal="TASK_LOG").
"""

import os
import socket
import sys

from lute_ipc import Message, Party, SocketCommunicator
from lute_ipc._framing_py import encode_frame


def main() -> None:
    mode, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    messages = [Message(contents=bytes([i % 256]) * size, signal="TASK_LOG") for i in range(count)]
    if mode == "session":
        comm = SocketCommunicator(Party.TASK)
        comm.delayed_setup()
        for message in messages:
            comm.write(message)
        comm.clear_communicator()
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(os.environ["LUTE_SOCKET"])
        for message in messages:
            sock.sendall(encode_frame(message))


if __name__ == "__main__":
    main()
