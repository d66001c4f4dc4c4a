"""Red team: ``SocketCommunicator.read()`` is typed ``-> Message`` but returns any decoded object.

A peer (here an unauthenticated TCP client, restricted unpickler) sends a frame whose payload is
``pickle.dumps(42)``; the Executor's ``read()`` returns the int ``42``. Code that mypy --strict
accepts (``read().signal``) then dies with a raw AttributeError. ``TaskRunner`` knows this happens
(it logs "sent a int where a Message was expected" and wraps it), but the public ``read()``
does not: either wrap/refuse the payload, or stop promising ``Message``. FIXED: ``read()`` and
``read_many()`` give it as ``Message(contents=payload)``, counted in ``stats.foreign_payloads``.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, pickle, socket, sys, time
    os.environ["LUTE_USE_TCP"] = "1"
    os.environ["LUTE_BIND_HOST"] = "127.0.0.1"
    os.environ.pop("LUTE_IPC_KEY", None)
    from lute_ipc import Message, Party
    from lute_ipc.sockets import SocketCommunicator
    ex = SocketCommunicator(Party.EXECUTOR, use_zmq=False, require_auth=False)
    ex.delayed_setup()
    port = int(os.environ["LUTE_PORT"])
    payload = pickle.dumps(42)
    peer = socket.create_connection(("127.0.0.1", port))
    peer.sendall(b"MSG;;;%d;;;" % len(payload) + payload + b";;;GSM")
    deadline = time.time() + 30
    msg = None
    while msg is None and time.time() < deadline:
        msg = ex.read()
    print(type(msg).__name__, msg.contents, ex.stats.foreign_payloads)
    peer.close()
    ex.close()
    """
)


@pytest.mark.parametrize("pure", ["0", "1"], ids=["cython", "python"])
def test_read_returns_a_message_for_a_non_message_payload(pure: str) -> None:
    env = dict(os.environ, LUTE_IPC_PURE_PYTHON=pure)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "Message 42 1", done.stdout
