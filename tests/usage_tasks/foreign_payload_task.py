"""A careless Task: frames whose payloads are not Messages (an int, a Message with a list as
signal) on the raw Unix socket, then a result and TASK_DONE through the reporter."""

import os
import pickle
import socket

from lute_ipc import Message
from lute_ipc.framing import encode_frame, encode_payload
from lute_ipc.task import report

odd = Message("odd")
object.__setattr__(odd, "signal", ["not", "a", "name"])  # as a peer's pickle makes it: the constructor refuses it
key = bytes.fromhex(os.environ["LUTE_IPC_KEY"]) if os.environ.get("LUTE_IPC_KEY") else None
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect(os.environ["LUTE_SOCKET"])
    sock.sendall(encode_payload(pickle.dumps(1), key=key)
                 + encode_payload(pickle.dumps(odd), key=key)
                 + encode_frame(Message({"after": "the odd ones"}, "TASK_RESULT"), key=key))
report(Message(signal="TASK_DONE"))
